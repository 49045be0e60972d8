//! Fault rules: pure, synchronous and allocation-free on the hot path.
//!
//! A device kind's [`Profile`] holds its metrics and rules, compiled from
//! config with metric names resolved to slots. A [`DeviceState`] holds one
//! device's latest values and the state of each rule; it is owned by exactly
//! one shard worker, so nothing here locks. Nothing here does I/O or reads
//! the clock: time comes in as arguments, in milliseconds since the epoch.

mod cond;
mod state;

pub use cond::{Cond, Op};
pub use state::{DeviceState, PresenceChange, RuleChange};

use std::collections::HashMap;

use crate::domain::{FaultCode, Tier};

/// What a metric carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Number,
    Bool,
    Text,
}

#[derive(Debug, Clone)]
pub struct MetricDef {
    pub name: String,
    pub unit: String,
    pub ty: MetricType,
}

/// One fault rule of a device kind.
#[derive(Debug, Clone)]
pub struct Rule {
    pub code: FaultCode,
    pub tier: Tier,
    pub title: String,
    /// The title in Chinese (the English one where the kind gives none).
    pub title_zh: String,
    /// While false, the rule is frozen: it neither raises nor clears, and
    /// its hold timers and rate windows start over.
    pub when: Option<Cond>,
    pub raise: Cond,
    pub hold_ms: i64,
    /// `None`: the fault clears when `raise` is false.
    pub clear: Option<Cond>,
    pub clear_hold_ms: i64,
}

impl Rule {
    /// True when the rule can change state with no new reading (stuck values, missing data).
    pub fn time_driven(&self) -> bool {
        self.raise.time_driven() || self.clear.as_ref().is_some_and(Cond::time_driven)
    }
}

/// A device kind: metrics, device-reported codes, rules and the offline rule.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub title: String,
    pub title_zh: String,
    pub metrics: Vec<MetricDef>,
    pub metric_index: HashMap<String, u16>,
    /// Device-reported codes the rules refer to, each a bit of the device's code set.
    pub codes: HashMap<String, u8>,
    /// Code names by bit, for descriptions.
    pub code_names: Vec<String>,
    /// Per metric: the smallest move that counts as a change for stuck rules (0 when none watch it).
    pub stuck_tolerance: Vec<f64>,
    pub rules: Vec<Rule>,
    /// Number of rate windows the rules keep (one per `rate` condition).
    pub rate_slots: u16,
    /// Silence longer than this raises `offline`.
    pub heartbeat_ms: i64,
    pub offline_tier: Tier,
    /// An outage longer than this promotes `offline` to tier 1 (DOMAIN.md: service interrupted > 10 min).
    pub offline_major_after_ms: i64,
    pub offline_title: String,
    pub offline_title_zh: String,
    /// Where the metrics are in a Modbus device's registers, for kinds that have one.
    pub modbus: Option<std::sync::Arc<crate::modbus::RegisterMap>>,
}

impl Profile {
    pub fn metric(&self, name: &str) -> Option<u16> {
        self.metric_index.get(name).copied()
    }
    pub fn metric_names(&self) -> impl Iterator<Item = &str> {
        self.metrics.iter().map(|m| m.name.as_str())
    }
    pub fn rule(&self, code: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.code.as_str() == code)
    }
    /// The title of a fault code, the offline fault included.
    pub fn fault_title(&self, code: &str) -> String {
        if code == crate::domain::OFFLINE {
            return self.offline_title.clone();
        }
        if code == crate::domain::BUS_DOWN {
            return "RTU line down: no unit answers".to_string();
        }
        self.rule(code).map(|r| r.title.clone()).unwrap_or_else(|| code.to_string())
    }

    /// A fault's title in Chinese.
    pub fn fault_title_zh(&self, code: &str) -> String {
        if code == crate::domain::OFFLINE {
            return self.offline_title_zh.clone();
        }
        if code == crate::domain::BUS_DOWN {
            return "RTU 总线中断：无设备应答".to_string();
        }
        self.rule(code).map(|r| r.title_zh.clone()).unwrap_or_else(|| code.to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests;
