//! Who hears of what, pure: roles mapped to people, the channels that reach them, and the
//! notifications a contract clock's firing makes (an escalation step to its role by its
//! channel word, a breach, a loaner owed, a dispatched ticket left without progress). Each
//! notification has a key made of its ticket, its firing and its recipient, so that one firing
//! makes it once whatever happens after.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::store::{Brief, Notice};
use crate::tickets::clocks::{ClockName, Firing};

/// A person who can be notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub roles: Vec<String>,
    pub email: Option<String>,
    /// For SMS gateways and the robots' @-mentions.
    pub phone: Option<String>,
}

/// How a channel delivers.
#[derive(Clone)]
pub enum ChannelKind {
    /// A mail to each person's address.
    Email(crate::outbox::email::EmailConfig),
    /// A signed JSON POST per person (Standard Webhooks headers), for an SMS gateway or a pager.
    Webhook { url: String, secret: Option<Vec<u8>> },
    /// A WeCom (企业微信) group robot: one message to the group, @-mentioning the people by phone.
    WeCom { url: String },
    /// A DingTalk (钉钉) group robot, with its signed URL when the robot has a secret (`SEC…`).
    DingTalk { url: String, secret: Option<secrecy::SecretString> },
}

impl ChannelKind {
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Email(_) => "email",
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::WeCom { .. } => "wecom",
            ChannelKind::DingTalk { .. } => "dingtalk",
        }
    }

    /// A group robot: one message for all the people it names.
    pub fn is_group(&self) -> bool {
        matches!(self, ChannelKind::WeCom { .. } | ChannelKind::DingTalk { .. })
    }
}

impl std::fmt::Debug for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Robots' URLs carry their keys (`key=`, `access_token=`): never shown.
        match self {
            ChannelKind::Email(e) => f.debug_tuple("Email").field(e).finish(),
            other => write!(f, "{}([redacted])", other.name()),
        }
    }
}

/// A notification channel.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// The words (an escalation step's `channel`, a rule's `by`) it carries: `email`, `sms`, `phone`…
    pub carries: Vec<String>,
    /// A group robot's roles: it posts only their notifications (empty: every role's).
    pub roles: Vec<String>,
    /// The whole exchange of one delivery.
    pub timeout: Duration,
}

/// Who hears of a kind of firing, and by which words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub to: Vec<String>,
    pub by: Vec<String>,
}

/// Roles, people and channels as configured.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub people: Vec<Person>,
    pub channels: Vec<Channel>,
    /// A clock missed.
    pub breach: Rule,
    /// A loaner unit owed.
    pub loaner: Rule,
    /// A dispatched ticket without progress: to the contract's `inaction_to`, by these words.
    pub inaction_by: Vec<String>,
}

impl Routing {
    /// Whether anything is configured to be told.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The people a name stands for: the person of that name, or everyone holding that role.
    fn people_of<'a>(&'a self, to: &'a str) -> impl Iterator<Item = &'a Person> + 'a {
        let by_name = self.people.iter().any(|p| p.name == to);
        self.people.iter().filter(move |p| if by_name { p.name == to } else { p.roles.iter().any(|r| r == to) })
    }

    /// The notifications one firing on ticket `t` makes.
    pub fn plan(&self, f: &Firing, t: &Brief) -> Vec<Notice> {
        let mut out = Vec::new();
        let at = |d: chrono::DateTime<chrono::Utc>| {
            format!("{} ({} UTC)", d.with_timezone(&t.offset).format("%Y-%m-%d %H:%M %:z"), d.format("%H:%M"))
        };
        let head =
            format!("ticket #{} {} (tier {}, {} at {}, {})", t.id, t.title, t.tier, t.device, t.site, t.customer);
        match f {
            Firing::Escalate { level, to, channel, due, unless } => {
                let subject = format!("[aftercare #{}] escalation level {level}: {}", t.id, t.title);
                let body =
                    format!("{head}: not {} by {}; escalated to {to} (level {level}).", unless.as_str(), at(*due));
                self.add(
                    &mut out,
                    &format!("escalate-{level}"),
                    std::slice::from_ref(to),
                    std::slice::from_ref(channel),
                    &subject,
                    &body,
                );
            }
            Firing::Breach { clock, due, loaner } => {
                let what = match clock {
                    ClockName::Acknowledge => "acknowledge",
                    ClockName::OnSite => "on-site",
                    ClockName::Resolve => "resolve",
                    ClockName::RemoteFix => "remote-fix",
                    ClockName::OnSiteFix => "on-site fix",
                    ClockName::Factory => "factory",
                };
                let subject = format!("[aftercare #{}] {what} clock missed: {}", t.id, t.title);
                let body = format!("{head}: the {what} clock ran out at {}.", at(*due));
                // A stage clock runs again on a ticket's next trip or arrival: its deadline keys it.
                let key = match clock {
                    ClockName::Acknowledge | ClockName::OnSite | ClockName::Resolve => {
                        format!("breach-{}", clock.as_str())
                    }
                    _ => format!("breach-{}-{}", clock.as_str(), due.timestamp_millis()),
                };
                self.add(&mut out, &key, &self.breach.to, &self.breach.by, &subject, &body);
                if *loaner {
                    let subject = format!("[aftercare #{}] loaner unit owed: {}", t.id, t.title);
                    let body =
                        format!("{head}: not fixed by {}; the contract owes a loaner unit until it is.", at(*due));
                    self.add(&mut out, "loaner", &self.loaner.to, &self.loaner.by, &subject, &body);
                }
            }
            Firing::Loaner { since } => {
                let subject = format!("[aftercare #{}] loaner unit owed: {}", t.id, t.title);
                let body = format!(
                    "{head}: the unit went to the factory at {}; the contract owes a loaner unit while it is away.",
                    at(*since)
                );
                let key = format!("loaner-factory-{}", since.timestamp_millis());
                self.add(&mut out, &key, &self.loaner.to, &self.loaner.by, &subject, &body);
            }
            Firing::Inaction { since, to } => {
                let subject = format!("[aftercare #{}] no progress since dispatch: {}", t.id, t.title);
                let body = format!("{head}: dispatched at {} and nothing done since; to {to}.", at(*since));
                let key = format!("inaction-{}", since.timestamp_millis());
                self.add(&mut out, &key, std::slice::from_ref(to), &self.inaction_by, &subject, &body);
            }
        }
        for n in &mut out {
            n.key = format!("{}-{}", t.id, n.key);
        }
        out
    }

    fn add(&self, out: &mut Vec<Notice>, key: &str, to: &[String], by: &[String], subject: &str, body: &str) {
        for c in self.channels.iter().filter(|c| c.carries.iter().any(|w| by.contains(w))) {
            if c.kind.is_group() {
                let roles: Vec<&String> = to.iter().filter(|r| c.roles.is_empty() || c.roles.contains(r)).collect();
                if roles.is_empty() {
                    continue;
                }
                let mut mentions: Vec<String> =
                    roles.iter().flat_map(|r| self.people_of(r)).filter_map(|p| p.phone.clone()).collect();
                mentions.sort();
                mentions.dedup();
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                out.push(Notice {
                    key: format!("{key}-{}-group", c.name),
                    channel: c.name.clone(),
                    recipient: format!("group:{}", names.join(",")),
                    address: String::new(),
                    mentions,
                    subject: subject.to_string(),
                    body: body.to_string(),
                });
                continue;
            }
            let mut seen: Vec<&str> = Vec::new();
            for p in to.iter().flat_map(|r| self.people_of(r)) {
                if seen.contains(&p.name.as_str()) {
                    continue;
                }
                seen.push(&p.name);
                let address = match c.kind {
                    ChannelKind::Email(_) => p.email.clone(),
                    _ => p.phone.clone(),
                };
                let Some(address) = address else { continue };
                out.push(Notice {
                    key: format!("{key}-{}-{}", c.name, p.name),
                    channel: c.name.clone(),
                    recipient: p.name.clone(),
                    address,
                    mentions: Vec::new(),
                    subject: subject.to_string(),
                    body: body.to_string(),
                });
            }
        }
    }
}

/// DingTalk's signed robot URL: `&timestamp=MS&sign=S` where S is the URL-encoded base64 of
/// HMAC-SHA256 keyed with the secret over `"{MS}\n{secret}"`.
pub fn dingtalk_url(url: &str, secret: &str, timestamp_ms: i64) -> String {
    let sign = dingtalk_sign(secret, timestamp_ms);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}timestamp={timestamp_ms}&sign={}", percent(&sign))
}

/// The base64 of HMAC-SHA256(secret, "{timestamp}\n{secret}").
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Percent-encodes what base64 holds that a query may not (`+`, `/`, `=`).
fn percent(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '~' => c.to_string(),
            c => format!("%{:02X}", c as u32),
        })
        .collect()
}

/// A robot's message text: the body, and the mentioned phones as `@phone` (which both robots
/// need in the text for the mention to show), cut to fit the robots' 2,048 bytes.
pub fn robot_text(n_subject: &str, body: &str, mentions: &[String]) -> String {
    let at: String = mentions.iter().map(|m| format!(" @{m}")).collect();
    let mut text = format!("{n_subject}\n{body}");
    let room = 2000usize.saturating_sub(at.len());
    if text.len() > room {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text + &at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::Milestone;
    use chrono::{TimeZone, Utc};

    fn routing() -> Routing {
        let person = |name: &str, roles: &[&str], email: Option<&str>, phone: Option<&str>| Person {
            name: name.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            email: email.map(Into::into),
            phone: phone.map(Into::into),
        };
        let channel = |name: &str, kind: ChannelKind, carries: &[&str]| Channel {
            name: name.into(),
            kind,
            carries: carries.iter().map(|c| c.to_string()).collect(),
            roles: Vec::new(),
            timeout: Duration::from_secs(5),
        };
        Routing {
            people: vec![
                person("li", &["manager"], Some("li@x.cn"), Some("13800000001")),
                person("wu", &["manager", "duty"], None, Some("13800000002")),
                person("he", &["duty"], Some("he@x.cn"), None),
            ],
            channels: vec![
                channel("sms", ChannelKind::Webhook { url: "http://gw".into(), secret: None }, &["sms", "phone"]),
                channel("group", ChannelKind::DingTalk { url: "http://dt".into(), secret: None }, &["phone"]),
            ],
            breach: Rule { to: vec!["duty".into()], by: vec!["sms".into()] },
            loaner: Rule::default(),
            inaction_by: vec!["sms".into()],
        }
    }

    fn brief() -> Brief {
        Brief {
            id: 7,
            title: "Leakage".into(),
            device: "lit-a".into(),
            site: "site-a".into(),
            customer: "c".into(),
            tier: 1,
            offset: chrono::FixedOffset::east_opt(8 * 3600).unwrap(),
        }
    }

    #[test]
    fn an_escalation_reaches_each_person_of_its_role_that_the_channel_can_reach_and_the_group_once() {
        let due = Utc.with_ymd_and_hms(2026, 12, 7, 2, 0, 0).unwrap();
        let f = Firing::Escalate {
            level: 2,
            to: "manager".into(),
            channel: "phone".into(),
            due,
            unless: Milestone::Acknowledged,
        };
        let n = routing().plan(&f, &brief());
        let keys: Vec<&str> = n.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(keys, ["7-escalate-2-sms-li", "7-escalate-2-sms-wu", "7-escalate-2-group-group"]);
        assert_eq!(n[0].address, "13800000001");
        assert_eq!(n[2].mentions, ["13800000001", "13800000002"]);
        assert!(n[0].body.contains("2026-12-07 10:00 +08:00 (02:00 UTC)"), "{}", n[0].body);
    }

    #[test]
    fn a_breach_goes_by_its_rule_and_skips_people_the_channel_cannot_reach() {
        let f = Firing::Breach {
            clock: ClockName::OnSite,
            due: Utc.with_ymd_and_hms(2026, 12, 7, 2, 0, 0).unwrap(),
            loaner: true,
        };
        let n = routing().plan(&f, &brief());
        // duty: wu has a phone, he has none; the loaner rule names nobody.
        assert_eq!(n.iter().map(|n| n.key.as_str()).collect::<Vec<_>>(), ["7-breach-on_site-sms-wu"]);
    }

    #[test]
    fn a_name_that_is_a_person_reaches_that_person_alone() {
        let f = Firing::Inaction { since: Utc.with_ymd_and_hms(2026, 12, 7, 2, 0, 0).unwrap(), to: "li".into() };
        let n = routing().plan(&f, &brief());
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].recipient, "li");
    }

    #[test]
    fn dingtalk_signs_as_its_documentation_shows() {
        // HMAC-SHA256 keyed with the secret over "timestamp\nsecret", base64, then URL-encoded.
        let sign = dingtalk_sign("SEC000", 1_700_000_000_000);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"SEC000").unwrap();
        mac.update(b"1700000000000\nSEC000");
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(sign, want);
        let url = dingtalk_url("https://oapi.dingtalk.com/robot/send?access_token=t", "SEC000", 1_700_000_000_000);
        assert!(url.starts_with("https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000000&sign="));
        let (_, sign) = url.split_once("&sign=").unwrap();
        assert!(!sign.contains(['+', '/', '=']), "base64 URL-encoded: {sign}");
    }

    #[test]
    fn robot_text_mentions_and_fits() {
        let t = robot_text("s", &"长".repeat(1000), &["13800000001".into()]);
        assert!(t.len() <= 2000 && t.ends_with(" @13800000001"), "{t}");
        assert!(robot_text("s", "b", &["138".into()]).ends_with(" @138"));
    }
}
