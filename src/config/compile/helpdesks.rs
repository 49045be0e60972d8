//! Helpdesks: one connector each (webhook, email, Request Tracker, Redmine).

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::{Report, secret};
use crate::config::raw::RawSecret;
use crate::config::raw::{RawEmail, RawHelpdesk, RawStatuses};
use crate::outbox::{HelpdeskConfig, HelpdeskKind, StatusMap};

pub(super) fn http_url(r: &mut Report<'_>, url: &Spanned<String>, what: &str) -> Option<String> {
    let u = url.get_ref().trim_end_matches('/');
    if u.starts_with("http://") || u.starts_with("https://") {
        Some(u.to_string())
    } else {
        r.at(url.span(), format!("{what} url `{u}` must start with http:// or https://"));
        None
    }
}

pub(super) fn statuses(raw: Option<&RawStatuses>, default: StatusMap) -> StatusMap {
    let Some(s) = raw else { return default };
    StatusMap {
        active: s.active.clone().unwrap_or(default.active),
        resolved: s.resolved.clone().unwrap_or(default.resolved),
        closed: s.closed.clone().unwrap_or(default.closed),
        cancelled: s.cancelled.clone().unwrap_or(default.cancelled),
    }
}

/// One helpdesk: exactly one connector, checked.
pub(super) fn helpdesk(
    name: &str,
    h: &Spanned<RawHelpdesk>,
    base: &Path,
    r: &mut Report<'_>,
) -> Option<HelpdeskConfig> {
    let span = h.span();
    let h = h.get_ref();
    let given: Vec<(&str, Range<usize>)> = [
        h.webhook.as_ref().map(|w| ("webhook", w.span())),
        h.email.as_ref().map(|w| ("email", w.span())),
        h.request_tracker.as_ref().map(|w| ("request_tracker", w.span())),
        h.redmine.as_ref().map(|w| ("redmine", w.span())),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.as_slice() {
        [] => {
            r.at(
                span,
                format!(
                    "helpdesk `{name}` names no connector; add one of webhook = {{ url = \"https://…\" }}, \
                     email = {{ … }}, request_tracker = {{ … }} or redmine = {{ … }}"
                ),
            );
            return None;
        }
        [_] => {}
        [_, (second, at), ..] => {
            let names: Vec<&str> = given.iter().map(|g| g.0).collect();
            r.at(
                at.clone(),
                format!(
                    "helpdesk `{name}` has {}; give it one, or make one helpdesk each (`{second}` is the second)",
                    names.join(" and ")
                ),
            );
            return None;
        }
    }
    let default_priorities: [&str; 3] = if h.request_tracker.is_some() {
        ["High", "Medium", "Low"]
    } else if h.redmine.is_some() {
        ["Urgent", "High", "Normal"]
    } else {
        ["urgent", "high", "normal"]
    };
    let priorities: [String; 3] = match &h.priorities {
        Some(p) => match <[String; 3]>::try_from(p.get_ref().clone()) {
            Ok(a) => a,
            Err(_) => {
                r.at(p.span(), "priorities lists the helpdesk's priority for tiers 1, 2 and 3: three names");
                return None;
            }
        },
        None => default_priorities.map(String::from),
    };
    let mut signing = None;
    let kind = if let Some(e) = &h.email {
        signing = signing_key(e.get_ref().secret.as_ref(), base, r).ok()?;
        if e.get_ref().to.is_none() {
            r.at(
                e.span(),
                format!("helpdesk `{name}`: an email helpdesk needs `to`, the address it files tickets from"),
            );
            return None;
        }
        HelpdeskKind::Email(email(e.get_ref(), base, r)?)
    } else if let Some(rt) = &h.request_tracker {
        let rt = rt.get_ref();
        HelpdeskKind::RequestTracker(crate::outbox::rt::RtConfig {
            url: http_url(r, &rt.url, "request_tracker")?,
            token: secret(&rt.token, base, r)?,
            queue: rt.queue.clone().unwrap_or_else(|| "General".into()),
            reference_field: rt.reference_field.clone(),
            statuses: statuses(rt.statuses.as_ref(), crate::outbox::rt::RtConfig::default_statuses()),
            timeout: rt.timeout.map_or(Duration::from_secs(10), |d| d.0),
            poll_every: rt.poll_every.map_or(Duration::from_secs(30), |d| d.0.max(Duration::from_millis(200))),
            intake: rt.intake.unwrap_or(false),
        })
    } else if let Some(rm) = &h.redmine {
        let rm = rm.get_ref();
        if rm.project.get_ref().trim().is_empty() {
            r.at(rm.project.span(), "project is the identifier of a Redmine project, as in its URL /projects/ID");
            return None;
        }
        HelpdeskKind::Redmine(crate::outbox::redmine::RedmineConfig {
            url: http_url(r, &rm.url, "redmine")?,
            api_key: secret(&rm.api_key, base, r)?,
            project: rm.project.get_ref().clone(),
            tracker: rm.tracker.clone(),
            statuses: statuses(rm.statuses.as_ref(), crate::outbox::redmine::RedmineConfig::default_statuses()),
            timeout: rm.timeout.map_or(Duration::from_secs(10), |d| d.0),
            poll_every: rm.poll_every.map_or(Duration::from_secs(30), |d| d.0.max(Duration::from_millis(200))),
            intake: rm.intake.unwrap_or(false),
        })
    } else if let Some(w) = &h.webhook {
        let w = w.get_ref();
        let url = http_url(r, &w.url, "webhook")?;
        signing = signing_key(w.secret.as_ref(), base, r).ok()?;
        HelpdeskKind::Webhook {
            url,
            secret: signing.clone(),
            timeout: w.timeout.map_or(Duration::from_secs(10), |d| d.0),
        }
    } else {
        return None;
    };
    Some(HelpdeskConfig { name: name.to_string(), kind, priorities, secret: signing })
}

/// A Standard Webhooks secret, `whsec_` and the base64 of the key; `Err` once reported.
pub(super) fn signing_key(
    s: Option<&Spanned<RawSecret>>,
    base: &Path,
    r: &mut Report<'_>,
) -> Result<Option<Vec<u8>>, ()> {
    use base64::Engine as _;
    use secrecy::ExposeSecret as _;
    let Some(s) = s else { return Ok(None) };
    let Some(text) = secret(s, base, r) else { return Err(()) };
    match text.expose_secret().strip_prefix("whsec_").map(|k| base64::engine::general_purpose::STANDARD.decode(k)) {
        Some(Ok(key)) if !key.is_empty() => Ok(Some(key)),
        _ => {
            r.at(s.span(), "a secret is `whsec_` followed by the base64 of the key, as Standard Webhooks write it");
            Err(())
        }
    }
}

pub(super) fn email(e: &RawEmail, base: &Path, r: &mut Report<'_>) -> Option<crate::outbox::email::EmailConfig> {
    let srv = e.server.get_ref();
    let (security, rest, default_port) = if let Some(r) = srv.strip_prefix("smtps://") {
        (crate::outbox::email::Security::Tls, r, 465)
    } else if let Some(r) = srv.strip_prefix("smtp+starttls://") {
        (crate::outbox::email::Security::StartTls, r, 587)
    } else if let Some(r) = srv.strip_prefix("smtp://") {
        (crate::outbox::email::Security::None, r, 25)
    } else {
        r.at(
            e.server.span(),
            format!("server `{srv}`: write smtp://host:25, smtp+starttls://host:587 or smtps://host:465"),
        );
        return None;
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h.to_string(), p),
            Err(_) => {
                r.at(e.server.span(), format!("`{p}` is not a port in `{srv}`"));
                return None;
            }
        },
        None => (rest.to_string(), default_port),
    };
    let mut ok = true;
    for a in std::iter::once(&e.from).chain(&e.to) {
        if a.get_ref().parse::<lettre::message::Mailbox>().is_err() {
            r.at(
                a.span(),
                format!(
                    "`{}` is not a mail address; write one such as \"Service desk <desk@example.net>\"",
                    a.get_ref()
                ),
            );
            ok = false;
        }
    }
    let password = match &e.password {
        Some(p) => Some(secret(p, base, r)?),
        None => None,
    };
    ok.then(|| crate::outbox::email::EmailConfig {
        host,
        port,
        security,
        username: e.username.clone(),
        password,
        from: e.from.get_ref().clone(),
        to: e.to.as_ref().map(|t| t.get_ref().clone()).unwrap_or_default(),
        timeout: e.timeout.map_or(Duration::from_secs(30), |d| d.0),
        ca_file: e.ca_file.as_ref().map(|f| base.join(f)),
    })
}
