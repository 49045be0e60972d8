//! The config file as written: serde types that mirror the TOML, with spans
//! kept where validation needs to point back at a line. Every struct denies
//! unknown keys, and nothing is flattened, so serde's errors keep their position.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use crate::rules::Op;

/// A duration written as `"30s"`, `"15m"`, `"2h"` or `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration such as "30s", "15m" or "2h""#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
                    E::custom(format!(r#"`{s}` is not a duration ({e}); write one such as "30s", "15m" or "2h""#))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A secret as written: inline (`"…"`), or where to find it: `{ env = "NAME" }` (an
/// environment variable) or `{ file = "/run/secrets/x" }` (a file's content, trimmed).
#[derive(Clone)]
pub(crate) enum RawSecret {
    Inline(SecretString),
    Env(String),
    File(String),
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawSecret::Inline(_) => f.write_str("RawSecret::Inline([redacted])"),
            RawSecret::Env(n) => write!(f, "RawSecret::Env({n})"),
            RawSecret::File(p) => write!(f, "RawSecret::File({p})"),
        }
    }
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawSecret, D::Error> {
        struct V;
        const HOW: &str = r#"a secret: "…", { env = "NAME" } or { file = "/path" }"#;
        impl<'de> Visitor<'de> for V {
            type Value = RawSecret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(HOW)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawSecret, E> {
                Ok(RawSecret::Inline(SecretString::from(s.to_string())))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<RawSecret, A::Error> {
                let Some(key) = m.next_key::<String>()? else { return Err(de::Error::custom(format!("write {HOW}"))) };
                let value: String = m.next_value()?;
                if m.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(format!("write one of env or file: {HOW}")));
                }
                match key.as_str() {
                    "env" => Ok(RawSecret::Env(value)),
                    "file" => Ok(RawSecret::File(value)),
                    other => Err(de::Error::custom(format!("`{other}`: write {HOW}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A number; `true` and `false` count as 1 and 0, so boolean metrics compare naturally.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Num(pub f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, true or false")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Num, E> {
                Ok(Num(if v { 1.0 } else { 0.0 }))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Files of device kind profiles, relative to this file.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    #[serde(default)]
    pub broker: RawBroker,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub ingest: RawIngest,
    #[serde(default)]
    pub tickets: RawTickets,
    #[serde(default)]
    pub sites: Vec<RawSite>,
    #[serde(default)]
    pub customers: Vec<RawCustomer>,
    #[serde(default)]
    pub devices: Vec<RawDevice>,
    #[serde(default)]
    pub kinds: BTreeMap<String, RawKind>,
    #[serde(default)]
    pub contracts: BTreeMap<String, RawContract>,
    /// Business calendars by name: a file path relative to this file, or a list of them (one a year).
    #[serde(default)]
    pub calendars: BTreeMap<String, Spanned<RawCalendarFiles>>,
    /// Helpdesks by name, which customers name to receive their tickets.
    #[serde(default)]
    pub helpdesks: BTreeMap<String, Spanned<RawHelpdesk>>,
    #[serde(default)]
    pub outbox: RawOutbox,
    #[serde(default)]
    pub history: RawHistory,
    /// The people notifications reach, with their roles.
    #[serde(default)]
    pub people: Vec<Spanned<RawPerson>>,
    #[serde(default)]
    pub notify: RawNotify,
    /// The spare parts kept, per device model.
    #[serde(default)]
    pub spares: Vec<RawSpare>,
}

/// A spare part kept for a device model (004 L77 "备品备件库").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpare {
    pub model: Spanned<String>,
    /// The part number, as repair records name it.
    pub part: Spanned<String>,
    #[serde(default)]
    pub name: String,
    /// How many of the part one unit holds (default 1).
    pub per_unit: Option<Spanned<u32>>,
}

/// A person to notify.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPerson {
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub email: Option<Spanned<String>>,
    /// For an SMS gateway and the robots' @-mentions.
    pub phone: Option<String>,
}

/// Who hears of what, and through which channels.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    /// A missed clock: `{ to = ["roles or people"], by = ["email", "sms"] }`.
    pub breach: Option<RawNotifyRule>,
    /// A loaner unit owed.
    pub loaner: Option<RawNotifyRule>,
    /// A dispatched ticket left without progress goes to the contract's `inaction_to` by these.
    #[serde(default)]
    pub inaction_by: Vec<String>,
    /// Channels by name.
    #[serde(default)]
    pub channels: BTreeMap<String, Spanned<RawNotifyChannel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotifyRule {
    pub to: Vec<String>,
    pub by: Vec<String>,
}

/// A notification channel: exactly one of email, webhook, wecom, dingtalk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotifyChannel {
    /// The words it carries: an escalation step's `channel` (phone, sms, email) or a rule's `by`.
    pub carries: Vec<String>,
    /// A group robot's roles: it posts only their notifications (default: every role's).
    #[serde(default)]
    pub roles: Vec<String>,
    pub email: Option<Spanned<RawEmail>>,
    pub webhook: Option<Spanned<RawWebhook>>,
    pub wecom: Option<Spanned<RawRobot>>,
    pub dingtalk: Option<Spanned<RawRobot>>,
}

/// A group robot's webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRobot {
    /// The robot's webhook, key or access token included.
    pub url: Spanned<RawSecret>,
    /// DingTalk's signing secret (`SEC…`), when the robot is set to sign.
    pub secret: Option<Spanned<RawSecret>>,
    pub timeout: Option<Dur>,
}

/// Telemetry history in the embedded store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistory {
    /// How long hourly rollups and device state changes are kept (default 5 years,
    /// as long as the contracts keep service records).
    pub retention: Option<Dur>,
    /// Telemetry to InfluxDB, or a server of its v2 write API (VictoriaMetrics, InfluxDB 3).
    pub influxdb: Option<Spanned<RawInflux>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInflux {
    /// The server's root, such as "http://127.0.0.1:8086".
    pub url: Spanned<String>,
    pub org: String,
    pub bucket: String,
    pub token: Option<Spanned<RawSecret>>,
    /// Lines per batch (default 5000).
    pub batch_lines: Option<usize>,
    /// The longest a line waits for its batch (default 1s).
    pub batch_age: Option<Dur>,
    /// Compress batches (default true; turned off by itself if the server refuses gzip).
    pub gzip: Option<bool>,
    pub timeout: Option<Dur>,
    /// The on-disk buffer for outages, relative to this file (default: `influx-spool` beside the store).
    pub spool: Option<String>,
    /// Its quota in MB (default 1024); past it the oldest data is dropped, and counted.
    pub spool_max_mb: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHelpdesk {
    pub webhook: Option<Spanned<RawWebhook>>,
    pub email: Option<Spanned<RawEmail>>,
    pub request_tracker: Option<Spanned<RawRequestTracker>>,
    pub redmine: Option<Spanned<RawRedmine>>,
    /// The helpdesk's priority for tiers 1, 2 and 3 (the default depends on the connector).
    pub priorities: Option<Spanned<Vec<String>>>,
}

/// Request Tracker 5 through its REST2 API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequestTracker {
    /// RT's web root, such as `https://rt.example.net/rt`.
    pub url: Spanned<String>,
    /// An auth token (RT: Settings → Auth Tokens).
    pub token: Spanned<RawSecret>,
    /// The queue new tickets go to (default "General").
    pub queue: Option<String>,
    /// A ticket custom field that holds aftercare's reference; without one, the subject tag does.
    pub reference_field: Option<String>,
    pub statuses: Option<RawStatuses>,
    pub timeout: Option<Dur>,
    /// How often to ask RT for status changes (default 30s).
    pub poll_every: Option<Dur>,
    /// Take in the tickets people open there themselves (default false).
    pub intake: Option<bool>,
}

/// Redmine through its REST API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedmine {
    pub url: Spanned<String>,
    /// The API access key of the user aftercare acts as (My account → API access key).
    pub api_key: Spanned<RawSecret>,
    /// The project's identifier.
    pub project: Spanned<String>,
    /// The tracker of new issues, by name (default: the project's first).
    pub tracker: Option<String>,
    pub statuses: Option<RawStatuses>,
    pub timeout: Option<Dur>,
    /// How often to ask Redmine for status changes (default 30s).
    pub poll_every: Option<Dur>,
    /// Take in the tickets people open there themselves (default false).
    pub intake: Option<bool>,
}

/// The helpdesk's status names for aftercare's states.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatuses {
    /// Open, acknowledged, dispatched and on site.
    pub active: Option<String>,
    pub resolved: Option<String>,
    pub closed: Option<String>,
    pub cancelled: Option<String>,
}

/// Mail to an email-to-ticket helpdesk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    /// `smtp://host:25` (plain), `smtp+starttls://host:587` or `smtps://host:465`.
    pub server: Spanned<String>,
    pub username: Option<String>,
    pub password: Option<Spanned<RawSecret>>,
    pub from: Spanned<String>,
    /// A helpdesk's address (a notification channel mails each person instead).
    pub to: Option<Spanned<String>>,
    pub timeout: Option<Dur>,
    /// A PEM file of the CA that signed the server's certificate, when it is not a public one.
    pub ca_file: Option<String>,
    /// `whsec_…`: the key with which the helpdesk signs the status events it sends back.
    pub secret: Option<Spanned<RawSecret>>,
}

/// A signed webhook (Standard Webhooks headers).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub url: Spanned<String>,
    /// `whsec_` and the base64 of the signing key.
    pub secret: Option<Spanned<RawSecret>>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbox {
    /// A row still failing this long after it was written is dead (default 24h).
    pub dead_after: Option<Dur>,
    /// The longest wait between two attempts (default 10m).
    pub max_backoff: Option<Dur>,
    /// Deliveries in flight at once, across tickets (default 8).
    pub concurrency: Option<usize>,
}

/// A calendar's files: one path, or a list of them (one a year).
#[derive(Debug)]
pub(crate) struct RawCalendarFiles(pub Vec<String>);

impl<'de> Deserialize<'de> for RawCalendarFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawCalendarFiles, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCalendarFiles;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a calendar file's path, or a list of them (one a year)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawCalendarFiles, E> {
                Ok(RawCalendarFiles(vec![s.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawCalendarFiles, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("an empty list: name at least one calendar file"));
                }
                Ok(RawCalendarFiles(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// An included file: device kind profiles and service contracts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIncluded {
    #[serde(default)]
    pub kinds: BTreeMap<String, RawKind>,
    #[serde(default)]
    pub contracts: BTreeMap<String, RawContract>,
}

/// A service contract: which devices it covers and the clocks it promises per tier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContract {
    pub customer: Spanned<String>,
    /// A title, or `{ en = "…", zh-CN = "…" }`.
    pub title: RawText,
    /// Who gives the service, as the reports' cover names it: a name, or
    /// `{ en = "…", zh-CN = "…" }`.
    pub supplier: Option<RawText>,
    /// The fee scale shown to the customer before a charged repair: text, or
    /// `{ en = "…", zh-CN = "…" }` (002 L400 "出示收费标准").
    pub fee_scale: Option<RawText>,
    /// The share of tickets the contract expects within each clock, 0–1 (default 1: every
    /// one, as the clocks promise); the reports colour compliance against it.
    pub sla_target: Option<Spanned<f64>>,
    /// The share of its delivered units' parts kept in stock, 0–1 (004 L77: 0.03).
    pub spares_share: Option<Spanned<f64>>,
    /// First and last day in force, "YYYY-MM-DD"; no end: open-ended.
    pub starts: Spanned<String>,
    pub ends: Option<Spanned<String>>,
    /// A calendar named under [calendars], for business hours and working days.
    pub calendar: Option<Spanned<String>>,
    /// How bare durations count: "7x24" (the default) or "business".
    pub hours: Option<Spanned<String>>,
    #[serde(default)]
    pub covers: RawCovers,
    /// A missed resolve clock owes the customer a loaner unit.
    #[serde(default)]
    pub loaner_on_resolve_breach: bool,
    /// A unit sent to the factory owes the customer a loaner while it is away.
    #[serde(default)]
    pub loaner_at_factory: bool,
    /// A dispatched ticket with no progress for this long goes to `inaction_to`.
    pub inaction: Option<Spanned<String>>,
    pub inaction_to: Option<String>,
    #[serde(default)]
    pub warranty: Option<RawWarranty>,
    /// Causes a person may name to bill a repair.
    #[serde(default)]
    pub billable: Vec<Spanned<String>>,
    /// Of those, the causes charged at cost only ("只收取成本费"): `billable_at_cost`.
    #[serde(default)]
    pub at_cost: Vec<Spanned<String>>,
    /// What a repair record must hold when an on-site repair is resolved: cause, work_done,
    /// parts, labour, travel, cost, confirmation, signature, photos.
    #[serde(default)]
    pub repair_requires: Vec<Spanned<String>>,
    /// Out of warranty, wear parts are charged at half their cost (004).
    #[serde(default)]
    pub wear_parts_half_price: bool,
    /// After the contract's end its devices are still repaired, at cost, with no clock (004 L6
    /// "设备终身维修，只收取维修的成本费").
    #[serde(default)]
    pub lifetime_repair_at_cost: bool,
    /// A fault back within this long after its repair counts as a failed repair (default 30 days).
    pub repeat_window: Option<Spanned<String>>,
    /// This many failed repairs within the window, in warranty, and the unit is replaced (default 2).
    pub replace_at_failed_repairs: Option<Spanned<u32>>,
    /// The old name of `replace_at_failed_repairs`, which counted one repair late; refused with a hint.
    pub replace_after: Option<Spanned<u32>>,
    pub tier1: Option<RawTier>,
    pub tier2: Option<RawTier>,
    pub tier3: Option<RawTier>,
    /// Visits the contract promises: patrols, inspections, maintenance, follow-up calls.
    #[serde(default)]
    pub plans: Vec<Spanned<RawPlan>>,
    /// Reports made for the customer after each whole period: "weekly", "monthly",
    /// "quarterly", "yearly".
    #[serde(default)]
    pub reports: Vec<Spanned<String>>,
    /// Who each kept report is mailed to, as a PDF, through an email channel of [notify.channels].
    pub report_mail: Option<Spanned<RawReportMail>>,
}

/// Kept reports mailed to the customer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReportMail {
    /// Addresses, such as "Facilities <facilities@customer.example>".
    pub to: Vec<String>,
    /// The languages mailed: "zh-CN", "en" (default both).
    pub langs: Option<Vec<String>>,
    /// An email channel of [notify.channels].
    pub channel: String,
}

/// Words for people: one text for every language, or each language's.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawText {
    Plain(String),
    Both {
        en: String,
        #[serde(rename = "zh-CN")]
        zh: String,
    },
}

impl RawText {
    /// (English, Chinese).
    pub(crate) fn both(&self) -> (String, String) {
        match self {
            RawText::Plain(t) => (t.clone(), t.clone()),
            RawText::Both { en, zh } => (en.clone(), zh.clone()),
        }
    }

    /// (English, Chinese), the Chinese from `zh` when given.
    pub(crate) fn with_zh(&self, zh: Option<&String>) -> (String, String) {
        let (en, own) = self.both();
        (en, zh.cloned().unwrap_or(own))
    }
}

/// A visit plan: `every` period, or `steps`, from an anchor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlan {
    pub name: Spanned<String>,
    /// patrol, inspection, maintenance or follow_up.
    pub kind: Spanned<String>,
    /// "contract" (its start, the default), "acceptance" or "delivery" (each device's), or a date.
    pub anchor: Option<Spanned<String>>,
    /// Shorthand for one step: "1 month", "3 months", "6 months".
    pub every: Option<Spanned<String>>,
    pub steps: Option<Vec<Spanned<RawPlanStep>>>,
    /// How long before a visit is due its work order is made (default "7 days").
    pub lead: Option<Spanned<String>>,
    /// The device kinds it covers (default: every device the contract covers).
    #[serde(default)]
    pub kinds: Vec<Spanned<String>>,
    /// What to check, per device kind.
    #[serde(default)]
    pub checklist: BTreeMap<String, Vec<String>>,
    /// Checklist items the telemetry answers: item → "METRIC min|max|mean|last", "online" (the
    /// share of the time online) or "faults" (faults raised); pre-filled and marked as measured.
    #[serde(default)]
    pub measured: BTreeMap<String, Spanned<String>>,
    /// Whether its visits go to the customer's helpdesk like tickets (default true).
    pub helpdesk: Option<bool>,
    /// Instead of a calendar, a visit after every "service" (a ticket people resolved) or
    /// every "on_site_repair" (one resolved after somebody was on site)…
    pub after: Option<Spanned<String>>,
    /// …due this long after it (default "3 days").
    pub within: Option<Spanned<String>>,
    /// Its visits go on after the contract's end, to the plan's own last step (004's follow-up
    /// calls until year 5 of a 3-year contract).
    #[serde(default)]
    pub past_contract_end: bool,
    /// The plan's name and its checklist items in Chinese, for the console and the zh-CN
    /// reports: `"zh-CN" = { "return visit" = "回访检测", pixels = "像素" }`.
    #[serde(default, rename = "zh-CN")]
    pub zh: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlanStep {
    /// One visit this long after the anchor.
    pub at: Option<Spanned<String>>,
    /// Or a visit every this long…
    pub every: Option<Spanned<String>>,
    /// …until this long after the anchor (default: the contract's end).
    pub until: Option<Spanned<String>>,
}

/// Warranty periods per component class, counted from the device's acceptance date.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWarranty {
    /// Class → period: "24 months", "3 years", "90 days".
    pub periods: BTreeMap<String, Spanned<String>>,
    /// The class of faults not listed in `faults`.
    pub default: Option<Spanned<String>>,
    /// Fault code → class.
    #[serde(default)]
    pub faults: BTreeMap<String, Spanned<String>>,
    /// Class → its normal life from acceptance: failing out of warranty before it may be an
    /// abnormally short life, replaced free once appraised (001 ¶18).
    #[serde(default)]
    pub normal_life: BTreeMap<String, Spanned<String>>,
}

/// Empty lists cover all of the customer's devices.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCovers {
    #[serde(default)]
    pub sites: Vec<Spanned<String>>,
    #[serde(default)]
    pub kinds: Vec<Spanned<String>>,
    #[serde(default)]
    pub devices: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTier {
    pub acknowledge: Option<Spanned<String>>,
    pub on_site: Option<Spanned<String>>,
    pub resolve: Option<Spanned<String>>,
    /// From the ticket's opening: fixed by then, or handed on to the field (004 L65 "30分钟内解决问题").
    pub remote_fix: Option<Spanned<String>>,
    /// From the engineer's arrival on site: fixed by then (004 L61-62 "现场更换维修 3小时").
    pub on_site_fix: Option<Spanned<String>>,
    /// From the unit's arrival at the factory: back by then (002 L108 "设备到工厂后,返修期不超过5个工作日").
    pub factory: Option<Spanned<String>>,
    /// Overrides the contract's `hours` for this tier.
    pub hours: Option<Spanned<String>>,
    #[serde(default)]
    pub escalation: Vec<RawEscalation>,
}

/// One step of an escalation chain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEscalation {
    pub level: Spanned<u8>,
    /// Elapsed time after the ticket opened.
    pub after: Spanned<String>,
    /// The step fires only if by then the ticket has not reached this: acknowledged, on_site or resolved (default).
    pub unless: Option<Spanned<String>>,
    /// A role or a contact.
    pub to: String,
    /// phone, sms, email or helpdesk.
    #[serde(default)]
    pub channel: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBroker {
    pub embedded: Option<Spanned<bool>>,
    /// Embedded broker's listener.
    pub listen: Option<Spanned<String>>,
    /// External broker: `mqtt://host:port` or `mqtts://host:port`.
    pub url: Option<Spanned<String>>,
    pub username: Option<String>,
    pub password: Option<Spanned<RawSecret>>,
    pub ca_file: Option<String>,
    /// A client certificate (PEM) for a broker that asks for one (mTLS), with its key.
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<String>,
    pub client_id: Option<String>,
    pub keep_alive: Option<Dur>,
    /// Disconnected from the broker this long, `/healthz` answers 503 (default 1m).
    pub unhealthy_after: Option<Dur>,
    /// The embedded broker's limit of clients connected at once (default 20000).
    pub max_connections: Option<Spanned<usize>>,
    /// The embedded broker lets clients in without a password (default false).
    pub allow_anonymous: Option<bool>,
    /// Clients that may read every device's topics and publish nothing (dashboards).
    #[serde(default)]
    pub monitors: Vec<RawMonitor>,
    /// The embedded broker speaks MQTT over TLS: `{ cert = "cert.pem", key = "key.pem" }`.
    pub tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMonitor {
    pub name: Spanned<String>,
    pub password: Spanned<RawSecret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub listen: Option<Spanned<String>>,
    /// `/metrics` without a token (default false: a token of an admin, manager or integration).
    pub metrics_public: Option<bool>,
    /// How long a login lasts (default 12h).
    pub session_ttl: Option<Dur>,
    /// Behind a reverse proxy that sets X-Forwarded-For, -Proto and -Host (default false).
    pub behind_proxy: Option<bool>,
    /// The host names the API answers to (default: any).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Changes a user may make a minute (default 300; a fifth of it, at least 60, at once).
    pub writes_per_minute: Option<Spanned<u32>>,
    /// Connections open at once (default 1024).
    pub max_connections: Option<Spanned<usize>>,
    /// How long a client has to send a request's headers (default 10s).
    pub header_timeout: Option<Dur>,
    /// Serve HTTPS: `{ cert = "cert.pem", key = "key.pem" }`.
    pub tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub path: Option<String>,
    /// How long the audit log is kept (default 400 days; at least 90).
    pub audit_retention: Option<Spanned<Dur>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIngest {
    pub topic_prefix: Option<Spanned<String>>,
    pub max_payload_bytes: Option<Spanned<usize>>,
    /// A device time further ahead of the gateway's clock than this is refused (default 5m).
    pub max_clock_skew: Option<Dur>,
    pub shards: Option<Spanned<usize>>,
    pub queue_capacity: Option<usize>,
    /// Modbus TCP devices polled at the same time, at most (default 64).
    pub modbus_concurrency: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTickets {
    pub reopen_window: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSite {
    pub id: Spanned<String>,
    pub name: Option<String>,
    pub address: Option<String>,
    /// Local time offset, such as "+08:00".
    pub utc_offset: Option<Spanned<String>>,
    /// The password of the site's gateway on the embedded broker (user name: the site's id);
    /// it publishes for every device of the site.
    pub mqtt_password: Option<Spanned<RawSecret>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustomer {
    pub id: Spanned<String>,
    /// The helpdesk (under [helpdesks]) that receives this customer's tickets.
    pub helpdesk: Option<Spanned<String>>,
    pub name: Option<String>,
    pub contact: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDevice {
    pub id: Spanned<String>,
    pub kind: Spanned<String>,
    pub site: Spanned<String>,
    pub customer: Spanned<String>,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub serial: String,
    /// Date of acceptance (验收), "YYYY-MM-DD": warranties run from it.
    pub accepted_on: Spanned<String>,
    /// Date of delivery (到货), "YYYY-MM-DD" (default: the acceptance date): plans anchored on
    /// "delivery" run from it.
    pub delivered_on: Option<Spanned<String>>,
    pub name: Option<String>,
    /// How to poll the device over Modbus, when it does not speak MQTT.
    pub modbus: Option<Spanned<RawModbusDevice>>,
    /// The device's password on the embedded broker (user name: its id); it publishes under
    /// its own topics only.
    pub mqtt_password: Option<Spanned<RawSecret>>,
}

/// A Modbus device: `tcp = "host:port"`, or `rtu = "/dev/ttyUSB0"` with its line settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModbusDevice {
    pub tcp: Option<Spanned<String>>,
    pub rtu: Option<Spanned<String>>,
    /// RTU line settings (default 9600 baud, parity "none", 8 data bits, 1 stop bit).
    pub baud: Option<u32>,
    pub parity: Option<Spanned<String>>,
    pub data_bits: Option<Spanned<u8>>,
    pub stop_bits: Option<Spanned<u8>>,
    /// The unit (slave) id, 1–247 (0–255 over TCP); default 1.
    pub unit: Option<Spanned<u32>>,
    /// Default 5s.
    pub poll: Option<Dur>,
    /// Per request; default 1s.
    pub timeout: Option<Dur>,
    /// Default 1.
    pub retries: Option<u32>,
    /// Between requests; default 0 over TCP, 5ms over RTU.
    pub pause: Option<Dur>,
    /// Consecutive failed polls that make the device offline; default 3.
    pub offline_after: Option<u32>,
}

/// A kind's register map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModbusMap {
    /// Unused registers a request may bridge to take in the next point (default 8).
    pub gap: Option<u16>,
    pub points: Vec<Spanned<RawPoint>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPoint {
    pub metric: Spanned<String>,
    /// coil, discrete, input or holding; implied by `ref`.
    pub function: Option<Spanned<String>>,
    /// The 0-based protocol address, as on the wire.
    pub address: Option<Spanned<u32>>,
    /// Or the 1-based Modicon reference (40001 = holding register 0), which names its function.
    #[serde(rename = "ref")]
    pub reference: Option<Spanned<u32>>,
    /// bool, bit, u16, i16, u32, i32, u64, i64, f32, f64 (default bool for bits, u16 for registers).
    #[serde(rename = "type")]
    pub ty: Option<Spanned<String>>,
    /// For `type = "bit"`: which bit of the register, 0 the least significant.
    pub bit: Option<Spanned<u8>>,
    /// ABCD (default), DCBA, BADC or CDAB.
    pub order: Option<Spanned<String>>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKind {
    /// A title, or `{ en = "…", zh-CN = "…" }`.
    pub title: RawText,
    /// The title in Chinese, for the console and the zh-CN reports (default: `title`'s).
    pub title_zh: Option<String>,
    /// Silence longer than this raises `offline`.
    pub heartbeat: Dur,
    #[serde(default)]
    pub offline_major_after: Option<Dur>,
    pub metrics: BTreeMap<String, RawMetric>,
    #[serde(default)]
    pub codes: Vec<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Where the metrics are in a Modbus device's registers.
    pub modbus: Option<RawModbusMap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetric {
    #[serde(default)]
    pub unit: String,
    #[serde(rename = "type", default)]
    pub ty: RawMetricType,
    /// For the people who read the file; aftercare does not use it.
    #[serde(default, rename = "description")]
    _description: serde::de::IgnoredAny,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawMetricType {
    #[default]
    Number,
    Bool,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub code: Spanned<String>,
    pub tier: Spanned<u8>,
    /// A title, or `{ en = "…", zh-CN = "…" }`.
    pub title: RawText,
    /// The title in Chinese (default: `title`'s).
    pub title_zh: Option<String>,
    /// For the people who read the file; aftercare does not use it.
    #[serde(default, rename = "description")]
    _description: serde::de::IgnoredAny,
    pub when: Option<RawCond>,
    pub raise: RawCond,
    #[serde(default)]
    pub hold: Option<Dur>,
    pub clear: Option<RawCond>,
    #[serde(default)]
    pub clear_hold: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawCond {
    Threshold(RawThreshold),
    Range(RawRange),
    Rate(RawRate),
    Stuck(RawStuck),
    Difference(RawPair),
    Ratio(RawPair),
    Flag(RawFlag),
    Code(RawCode),
    NoData(RawNoData),
    All(Vec<RawCond>),
    Any(Vec<RawCond>),
    Not(Box<RawCond>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThreshold {
    pub metric: Spanned<String>,
    pub op: Op,
    pub value: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRange {
    pub metric: Spanned<String>,
    pub min: Num,
    pub max: Num,
    /// true (the default): the condition holds outside [min, max].
    #[serde(default = "yes")]
    pub outside: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    pub metric: Spanned<String>,
    pub op: Op,
    pub value: Num,
    /// The unit of the rate: `value` is a change per this long.
    pub per: Dur,
    /// How long a span the rate is measured over.
    pub window: Dur,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStuck {
    pub metric: Spanned<String>,
    #[serde(rename = "for")]
    pub for_: Dur,
    #[serde(default)]
    pub tolerance: Option<Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPair {
    pub a: Spanned<String>,
    pub b: Spanned<String>,
    pub op: Op,
    pub value: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFlag {
    pub metric: Spanned<String>,
    pub bit: Spanned<u8>,
    #[serde(default = "yes")]
    pub set: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCode {
    pub code: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNoData {
    pub metric: Spanned<String>,
    #[serde(rename = "for")]
    pub for_: Dur,
}
