//! Notifications: people with their roles, channels, and who hears of what.

use std::path::Path;
use std::time::Duration;

use super::helpdesks::{email, signing_key};
use super::{Report, secret};
use crate::config::raw::{RawNotify, RawPerson};
use crate::notify::route::{Channel, ChannelKind, Person, Routing, Rule};

/// The routing of notifications, checked.
pub(super) fn routing(people: &[toml::Spanned<RawPerson>], n: &RawNotify, base: &Path, r: &mut Report<'_>) -> Routing {
    let mut out = Routing::default();
    for p in people {
        let raw = p.get_ref();
        if raw.name.trim().is_empty() || out.people.iter().any(|q: &Person| q.name == raw.name) {
            r.at(p.span(), format!("a person needs a name of its own; `{}` is empty or given twice", raw.name));
            continue;
        }
        if let Some(e) = &raw.email
            && e.get_ref().parse::<lettre::Address>().is_err()
        {
            r.at(e.span(), format!("`{}` is not a mail address", e.get_ref()));
        }
        out.people.push(Person {
            name: raw.name.clone(),
            roles: raw.roles.clone(),
            email: raw.email.as_ref().map(|e| e.get_ref().clone()),
            phone: raw.phone.clone(),
        });
    }
    for (name, c) in &n.channels {
        let span = c.span();
        let raw = c.get_ref();
        let given = [raw.email.is_some(), raw.webhook.is_some(), raw.wecom.is_some(), raw.dingtalk.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            r.at(span.clone(), format!("channel `{name}`: give exactly one of email, webhook, wecom, dingtalk"));
            continue;
        }
        if raw.carries.is_empty() {
            r.at(
                span.clone(),
                format!("channel `{name}`: say what it carries, such as carries = [\"sms\", \"phone\"]"),
            );
            continue;
        }
        let http = |url: &str, r: &mut Report<'_>| {
            let ok = url.starts_with("http://") || url.starts_with("https://");
            if !ok {
                r.at(span.clone(), format!("channel `{name}`: its url must start with http:// or https://"));
            }
            ok
        };
        let (kind, timeout) = if let Some(e) = &raw.email {
            let Some(cfg) = email(e.get_ref(), base, r) else { continue };
            let t = cfg.timeout;
            (ChannelKind::Email(cfg), t)
        } else if let Some(w) = &raw.webhook {
            let w = w.get_ref();
            let Ok(secret) = signing_key(w.secret.as_ref(), base, r) else { continue };
            if !http(w.url.get_ref(), r) {
                continue;
            }
            let t = w.timeout.map_or(Duration::from_secs(10), |d| d.0);
            (ChannelKind::Webhook { url: w.url.get_ref().clone(), secret }, t)
        } else {
            use secrecy::ExposeSecret as _;
            let (robot, dingtalk) = match (&raw.wecom, &raw.dingtalk) {
                (Some(w), _) => (w.get_ref(), false),
                (_, Some(d)) => (d.get_ref(), true),
                _ => continue,
            };
            let Some(url) = secret(&robot.url, base, r) else { continue };
            let url = url.expose_secret().to_string();
            if !http(&url, r) {
                continue;
            }
            let t = robot.timeout.map_or(Duration::from_secs(10), |d| d.0);
            if dingtalk {
                let s = match &robot.secret {
                    Some(s) => match secret(s, base, r) {
                        Some(s) => Some(s),
                        None => continue,
                    },
                    None => None,
                };
                (ChannelKind::DingTalk { url, secret: s }, t)
            } else {
                if robot.secret.is_some() {
                    r.at(span.clone(), format!("channel `{name}`: a WeCom robot has no secret; its key is in the url"));
                    continue;
                }
                (ChannelKind::WeCom { url }, t)
            }
        };
        out.channels.push(Channel {
            name: name.clone(),
            kind,
            carries: raw.carries.clone(),
            roles: raw.roles.clone(),
            timeout,
        });
    }
    let rule = |x: &Option<crate::config::raw::RawNotifyRule>| {
        x.as_ref().map_or_else(Rule::default, |x| Rule { to: x.to.clone(), by: x.by.clone() })
    };
    out.breach = rule(&n.breach);
    out.loaner = rule(&n.loaner);
    out.inaction_by = n.inaction_by.clone();
    out
}
