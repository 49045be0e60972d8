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
pub struct Dur(pub Duration);

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

/// A number; `true` and `false` count as 1 and 0, so boolean metrics compare naturally.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

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
pub struct RawConfig {
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
    /// Business calendars by name: file paths relative to this file.
    #[serde(default)]
    pub calendars: BTreeMap<String, Spanned<String>>,
    /// Helpdesks by name, which customers name to receive their tickets.
    #[serde(default)]
    pub helpdesks: BTreeMap<String, RawHelpdesk>,
    #[serde(default)]
    pub outbox: RawOutbox,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHelpdesk {
    pub webhook: Option<RawWebhook>,
    pub email: Option<RawEmail>,
    /// The helpdesk's priority for tiers 1, 2 and 3 (default "urgent", "high", "normal").
    pub priorities: Option<Spanned<Vec<String>>>,
}

/// Mail to an email-to-ticket helpdesk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// `smtp://host:25` (plain), `smtp+starttls://host:587` or `smtps://host:465`.
    pub server: Spanned<String>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub timeout: Option<Dur>,
}

/// A signed webhook (Standard Webhooks headers).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: Spanned<String>,
    /// `whsec_` and the base64 of the signing key.
    pub secret: Option<Spanned<String>>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    /// A row still failing this long after it was written is dead (default 24h).
    pub dead_after: Option<Dur>,
    /// The longest wait between two attempts (default 10m).
    pub max_backoff: Option<Dur>,
    /// Deliveries in flight at once, across tickets (default 8).
    pub concurrency: Option<usize>,
}

/// An included file: device kind profiles and service contracts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncluded {
    #[serde(default)]
    pub kinds: BTreeMap<String, RawKind>,
    #[serde(default)]
    pub contracts: BTreeMap<String, RawContract>,
}

/// A service contract: which devices it covers and the clocks it promises per tier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContract {
    pub customer: Spanned<String>,
    pub title: String,
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
    /// A dispatched ticket with no progress for this long goes to `inaction_to`.
    pub inaction: Option<Spanned<String>>,
    pub inaction_to: Option<String>,
    #[serde(default)]
    pub warranty: Option<RawWarranty>,
    /// Causes a person may name to bill a repair.
    #[serde(default)]
    pub billable: Vec<Spanned<String>>,
    /// A fault back within this long after its repair counts as a failed repair (default 30 days).
    pub repeat_window: Option<Spanned<String>>,
    /// More failed repairs than this, in warranty, and the unit is replaced (default 2).
    pub replace_after: Option<u32>,
    pub tier1: Option<RawTier>,
    pub tier2: Option<RawTier>,
    pub tier3: Option<RawTier>,
}

/// Warranty periods per component class, counted from the device's acceptance date.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWarranty {
    /// Class → period: "24 months", "3 years", "90 days".
    pub periods: BTreeMap<String, Spanned<String>>,
    /// The class of faults not listed in `faults`.
    pub default: Option<Spanned<String>>,
    /// Fault code → class.
    #[serde(default)]
    pub faults: BTreeMap<String, Spanned<String>>,
}

/// Empty lists cover all of the customer's devices.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCovers {
    #[serde(default)]
    pub sites: Vec<Spanned<String>>,
    #[serde(default)]
    pub kinds: Vec<Spanned<String>>,
    #[serde(default)]
    pub devices: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub acknowledge: Option<Spanned<String>>,
    pub on_site: Option<Spanned<String>>,
    pub resolve: Option<Spanned<String>>,
    /// Overrides the contract's `hours` for this tier.
    pub hours: Option<Spanned<String>>,
    #[serde(default)]
    pub escalation: Vec<RawEscalation>,
}

/// One step of an escalation chain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEscalation {
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
pub struct RawBroker {
    pub embedded: Option<Spanned<bool>>,
    /// Embedded broker's listener.
    pub listen: Option<Spanned<String>>,
    /// External broker: `mqtt://host:port` or `mqtts://host:port`.
    pub url: Option<Spanned<String>>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub ca_file: Option<String>,
    pub client_id: Option<String>,
    pub keep_alive: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    pub topic_prefix: Option<Spanned<String>>,
    pub max_payload_bytes: Option<usize>,
    pub shards: Option<Spanned<usize>>,
    pub queue_capacity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTickets {
    pub reopen_window: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub id: Spanned<String>,
    pub name: Option<String>,
    pub address: Option<String>,
    /// Local time offset, such as "+08:00".
    pub utc_offset: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomer {
    pub id: Spanned<String>,
    /// The helpdesk (under [helpdesks]) that receives this customer's tickets.
    pub helpdesk: Option<Spanned<String>>,
    pub name: Option<String>,
    pub contact: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
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
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKind {
    pub title: String,
    /// Silence longer than this raises `offline`.
    pub heartbeat: Dur,
    #[serde(default)]
    pub offline_major_after: Option<Dur>,
    pub metrics: BTreeMap<String, RawMetric>,
    #[serde(default)]
    pub codes: Vec<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetric {
    #[serde(default)]
    pub unit: String,
    #[serde(rename = "type", default)]
    pub ty: RawMetricType,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawMetricType {
    #[default]
    Number,
    Bool,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub code: Spanned<String>,
    pub tier: Spanned<u8>,
    pub title: String,
    #[serde(default)]
    pub description: String,
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
pub enum RawCond {
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
pub struct RawThreshold {
    pub metric: Spanned<String>,
    pub op: Op,
    pub value: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
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
pub struct RawRate {
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
pub struct RawStuck {
    pub metric: Spanned<String>,
    #[serde(rename = "for")]
    pub for_: Dur,
    #[serde(default)]
    pub tolerance: Option<Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPair {
    pub a: Spanned<String>,
    pub b: Spanned<String>,
    pub op: Op,
    pub value: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlag {
    pub metric: Spanned<String>,
    pub bit: Spanned<u8>,
    #[serde(default = "yes")]
    pub set: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCode {
    pub code: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNoData {
    pub metric: Spanned<String>,
    #[serde(rename = "for")]
    pub for_: Dur,
}
