//! Conditions over a device's latest values, in three-valued logic:
//! `None` means "cannot tell yet" (a metric never reported, a rate window
//! not yet complete), and neither raises nor clears a fault.

use std::fmt::Write as _;

use super::state::{DeviceState, Slot};
use super::{MetricType, Profile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn test(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => (a - b).abs() < 1e-9,
            Op::Ne => (a - b).abs() >= 1e-9,
        }
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// A compiled condition; metrics are slot numbers of the device's profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `metric op value`.
    Threshold {
        metric: u16,
        op: Op,
        value: f64,
    },
    /// The metric is outside `[min, max]` (or inside, when `outside` is false).
    Range {
        metric: u16,
        min: f64,
        max: f64,
        outside: bool,
    },
    /// The metric's change per `per_ms`, measured over a window of `window_ms`, `op value`.
    Rate {
        metric: u16,
        op: Op,
        value: f64,
        per_ms: i64,
        window_ms: i64,
        slot: u16,
    },
    /// The metric has not moved by more than `tolerance` for `for_ms`.
    Stuck {
        metric: u16,
        for_ms: i64,
        tolerance: f64,
    },
    /// `a - b op value`.
    Difference {
        a: u16,
        b: u16,
        op: Op,
        value: f64,
    },
    /// `a / b op value` (unknown when b is 0).
    Ratio {
        a: u16,
        b: u16,
        op: Op,
        value: f64,
    },
    /// Bit `bit` of an integer metric is set (or clear, when `set` is false).
    Flag {
        metric: u16,
        bit: u8,
        set: bool,
    },
    /// The device reports code number `code` active.
    Code {
        code: u8,
    },
    /// The metric has not been reported for `for_ms` while the device reports.
    NoData {
        metric: u16,
        for_ms: i64,
    },
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    /// Evaluates at time `at` (ms).
    pub(crate) fn eval(&self, st: &DeviceState, at: i64) -> Option<bool> {
        match self {
            Cond::Threshold { metric, op, value } => st.num(*metric).map(|v| op.test(v, *value)),
            Cond::Range { metric, min, max, outside } => st.num(*metric).map(|v| {
                let inside = v >= *min && v <= *max;
                inside != *outside
            }),
            Cond::Rate { op, value, slot, .. } => st.rate(*slot).map(|r| op.test(r, *value)),
            Cond::Stuck { metric, for_ms, .. } => {
                let s: &Slot = st.slot(*metric)?;
                Some(at - s.changed_at >= *for_ms)
            }
            Cond::Difference { a, b, op, value } => Some(op.test(st.num(*a)? - st.num(*b)?, *value)),
            Cond::Ratio { a, b, op, value } => {
                let d = st.num(*b)?;
                if d == 0.0 {
                    return None;
                }
                Some(op.test(st.num(*a)? / d, *value))
            }
            Cond::Flag { metric, bit, set } => {
                let v = st.num(*metric)?;
                let on = (v as i64 >> bit) & 1 == 1;
                Some(on == *set)
            }
            Cond::Code { code } => Some(st.code_active(*code)),
            Cond::NoData { metric, for_ms } => {
                let since = st.slot(*metric).map(|s| s.at).unwrap_or(st.tracking_since());
                Some(at - since >= *for_ms)
            }
            Cond::All(cs) => {
                let mut unknown = false;
                for c in cs {
                    match c.eval(st, at) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown { None } else { Some(true) }
            }
            Cond::Any(cs) => {
                let mut unknown = false;
                for c in cs {
                    match c.eval(st, at) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown { None } else { Some(false) }
            }
            Cond::Not(c) => c.eval(st, at).map(|b| !b),
        }
    }

    /// Whether evaluating this condition depends on time passing, not only on readings.
    pub fn time_driven(&self) -> bool {
        match self {
            // An alarm a device sent once must complete its hold without another message.
            Cond::Stuck { .. } | Cond::NoData { .. } | Cond::Code { .. } => true,
            Cond::All(cs) | Cond::Any(cs) => cs.iter().any(Cond::time_driven),
            Cond::Not(c) => c.time_driven(),
            _ => false,
        }
    }

    /// Calls `f` on every rate condition, to keep its window.
    pub(crate) fn for_each_rate(&self, f: &mut impl FnMut(u16, u16, i64, i64)) {
        match self {
            Cond::Rate { metric, slot, per_ms, window_ms, .. } => f(*metric, *slot, *per_ms, *window_ms),
            Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| c.for_each_rate(f)),
            Cond::Not(c) => c.for_each_rate(f),
            _ => {}
        }
    }

    /// A human sentence of the values behind this condition, for the ticket's
    /// timeline. Of an `any`, only the branches that hold are told.
    pub fn describe(&self, st: &DeviceState, profile: &Profile, out: &mut String) {
        let name = |m: &u16| profile.metrics.get(*m as usize).map(|d| d.name.as_str()).unwrap_or("?");
        let is_bool = |m: &u16| profile.metrics.get(*m as usize).is_some_and(|d| d.ty == MetricType::Bool);
        let val = |m: &u16| match st.num(*m) {
            Some(v) if is_bool(m) => (v != 0.0).to_string(),
            Some(v) => format!("{}", (v * 1000.0).round() / 1000.0),
            None => "unknown".to_string(),
        };
        let lit = |m: &u16, x: f64| {
            if is_bool(m) { (x != 0.0).to_string() } else { x.to_string() }
        };
        let dur = |ms: &i64| humantime::format_duration(std::time::Duration::from_millis(*ms as u64)).to_string();
        match self {
            Cond::Threshold { metric, op, value } => {
                let _ = write!(out, "{} = {} ({} {})", name(metric), val(metric), op.symbol(), lit(metric, *value));
            }
            Cond::Range { metric, min, max, outside } => {
                let w = if *outside { "outside" } else { "inside" };
                let _ = write!(out, "{} = {} ({w} {min}..{max})", name(metric), val(metric));
            }
            Cond::Rate { metric, op, value, per_ms, slot, .. } => {
                let r = st.rate(*slot).map(|r| format!("{r:.3}")).unwrap_or("unknown".into());
                let _ = write!(out, "{} changing {r} per {} ({} {value})", name(metric), dur(per_ms), op.symbol());
            }
            Cond::Stuck { metric, for_ms, .. } => {
                let _ = write!(out, "{} stuck at {} for {}", name(metric), val(metric), dur(for_ms));
            }
            Cond::Difference { a, b, op, value } => {
                let _ = write!(out, "{} - {} = {} - {} ({} {value})", name(a), name(b), val(a), val(b), op.symbol());
            }
            Cond::Ratio { a, b, op, value } => {
                let _ = write!(out, "{} / {} = {} / {} ({} {value})", name(a), name(b), val(a), val(b), op.symbol());
            }
            Cond::Flag { metric, bit, set } => {
                let s = if *set { "set" } else { "clear" };
                let _ = write!(out, "{} = {} (bit {bit} {s})", name(metric), val(metric));
            }
            Cond::Code { code } => {
                let n = profile.code_names.get(*code as usize).map(String::as_str).unwrap_or("?");
                let s = if st.code_active(*code) { "active" } else { "inactive" };
                let _ = write!(out, "device code {n} {s}");
            }
            Cond::NoData { metric, for_ms } => {
                let _ = write!(out, "no {} for {}", name(metric), dur(for_ms));
            }
            Cond::All(cs) => join(cs.iter(), " and ", st, profile, out),
            Cond::Any(cs) => {
                let at = st.last_reading_at().unwrap_or(st.tracking_since());
                let holding: Vec<&Cond> = cs.iter().filter(|c| c.eval(st, at) == Some(true)).collect();
                if holding.is_empty() {
                    join(cs.iter(), " or ", st, profile, out);
                } else {
                    join(holding.into_iter(), " or ", st, profile, out);
                }
            }
            Cond::Not(c) => {
                out.push_str("not (");
                c.describe(st, profile, out);
                out.push(')');
            }
        }
    }
}

fn join<'a>(cs: impl Iterator<Item = &'a Cond>, sep: &str, st: &DeviceState, profile: &Profile, out: &mut String) {
    for (i, c) in cs.enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        c.describe(st, profile, out);
    }
}
