//! What a contract promises besides its clocks: the visits of its plans (patrols,
//! inspections, maintenance, follow-up calls) with the dates they fall due, and how often
//! its customer gets a report. Pure.

use chrono::{Datelike, Days, NaiveDate};
use serde::Serialize;

use super::{Contract, Covered, Period};
use crate::domain::VisitKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Date(NaiveDate),
    /// Each device's acceptance date.
    Acceptance,
    /// Each device's delivery date.
    Delivery,
}

/// The service a plan follows, instead of a calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Every ticket resolved by people.
    Service,
    /// Every ticket resolved after somebody was on site.
    OnSiteRepair,
}

impl After {
    pub fn parse(s: &str) -> Option<After> {
        match s {
            "service" => Some(After::Service),
            "on_site_repair" => Some(After::OnSiteRepair),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One visit this long after the anchor.
    At(Period),
    /// A visit every `every`, from where the previous step ended, until `until` after the anchor
    /// (`None`: the contract's end).
    Every { every: Period, until: Option<Period> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub kind: VisitKind,
    pub anchor: Anchor,
    pub steps: Vec<Step>,
    /// A work order is made this many days before its visit is due.
    pub lead_days: u32,
    /// Device kinds the plan covers; empty: all the contract covers.
    pub kinds: Vec<String>,
    /// What to check, per device kind.
    pub checklist: Vec<(String, Vec<String>)>,
    /// Checklist items the telemetry answers.
    pub measured: Vec<(String, Measure)>,
    /// Whether its visits go to the customer's helpdesk, like tickets (default yes).
    pub helpdesk: bool,
    /// The service it follows, with how many days after it the visit is due; `None`: the
    /// calendar of `anchor` and `steps`.
    pub after: Option<(After, u32)>,
    /// The plan's name and checklist items in Chinese: English → 中文.
    pub zh: Vec<(String, String)>,
    /// Its visits go on after the contract's end, to its own last step.
    pub past_contract_end: bool,
}

impl Plan {
    /// The checklist for a device kind: its own, else the one for every kind (`"*"`).
    pub fn checklist_for(&self, kind: &str) -> Vec<String> {
        let own = self.checklist.iter().find(|(k, _)| k == kind);
        own.or_else(|| self.checklist.iter().find(|(k, _)| k == "*")).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// A word of the plan (its name, a checklist item) in Chinese, when the config gives it.
    pub fn zh_of(&self, word: &str) -> Option<&str> {
        self.zh.iter().find(|(en, _)| en == word).map(|(_, zh)| zh.as_str())
    }

    /// Whether the plan covers a device of contract `c`.
    pub fn covers(&self, c: &Contract, d: Covered<'_>) -> bool {
        c.coverage(d) > 0 && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == d.kind))
    }
}

/// How the telemetry answers a checklist item, over the time since the device's previous visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    /// A statistic of a metric's hourly rollups: min, max, mean or last.
    Metric { metric: String, stat: String },
    /// The share of the time the device was online.
    Online,
    /// How many faults were raised (offline aside), or of one fault code only: the tank's
    /// heat-loss faults answer its insulation, its broken-tube faults its tubes.
    Faults { code: Option<String> },
}

impl Measure {
    pub fn parse(s: &str) -> Option<Measure> {
        match s.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["online"] => Some(Measure::Online),
            ["faults"] => Some(Measure::Faults { code: None }),
            ["faults", code] => Some(Measure::Faults { code: Some(code.to_string()) }),
            [m, stat] if ["min", "max", "mean", "last"].contains(stat) => {
                Some(Measure::Metric { metric: m.to_string(), stat: stat.to_string() })
            }
            _ => None,
        }
    }
}

/// The dates a plan's visits fall due for an anchor date, up to `last` (inclusive; the contract's end).
pub(crate) fn due_dates(steps: &[Step], anchor: NaiveDate, last: NaiveDate) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    // Where the current step starts, as an offset from the anchor.
    let mut from: Option<Period> = None;
    let start_of = |p: Option<Period>| p.map_or(Some(anchor), |p| p.end(anchor));
    for step in steps {
        match *step {
            Step::At(p) => {
                // A one-off: the steps after it still count from where the schedule stood.
                if let Some(d) = p.end(anchor).filter(|d| *d <= last) {
                    out.push(d);
                }
            }
            Step::Every { every, until } => {
                let Some(start) = start_of(from) else { break };
                let end = until.and_then(|u| u.end(anchor)).map_or(last, |u| u.min(last));
                // Offsets counted from the anchor: start + k × every is anchor + (from + k × every).
                for k in 1.. {
                    let Some(step) = every.times(k) else { break };
                    let d = match (from, step) {
                        (Some(Period::Months(a)), Period::Months(b)) => Period::Months(a + b).end(anchor),
                        (Some(Period::Days(a)), Period::Days(b)) => Period::Days(a + b).end(anchor),
                        (None, s) => s.end(anchor),
                        (Some(_), s) => s.end(start),
                    };
                    let Some(d) = d else { break };
                    // A visit on the step's last day is its own; the next step's first comes one period on.
                    if d > end {
                        break;
                    }
                    out.push(d);
                }
                from = until;
                if until.is_none() {
                    break;
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// How often a report is made for a customer, each after a whole period of the
/// customer's local calendar (weeks start on Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    Weekly,
    Monthly,
    Quarterly,
    Yearly,
}

impl Cadence {
    pub fn parse(s: &str) -> Option<Cadence> {
        match s {
            "weekly" => Some(Cadence::Weekly),
            "monthly" => Some(Cadence::Monthly),
            "quarterly" => Some(Cadence::Quarterly),
            "yearly" => Some(Cadence::Yearly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cadence::Weekly => "weekly",
            Cadence::Monthly => "monthly",
            Cadence::Quarterly => "quarterly",
            Cadence::Yearly => "yearly",
        }
    }

    /// The last whole period before the one `today` is in: its first day and the day after its last.
    pub fn last_whole(self, today: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        let (y, m) = (today.year(), today.month());
        let start = match self {
            Cadence::Weekly => today.checked_sub_days(Days::new(today.weekday().num_days_from_monday() as u64))?,
            Cadence::Monthly => NaiveDate::from_ymd_opt(y, m, 1)?,
            Cadence::Quarterly => NaiveDate::from_ymd_opt(y, (m - 1) / 3 * 3 + 1, 1)?,
            Cadence::Yearly => NaiveDate::from_ymd_opt(y, 1, 1)?,
        };
        let from = match self {
            Cadence::Weekly => start.checked_sub_days(Days::new(7))?,
            Cadence::Monthly => start.checked_sub_months(chrono::Months::new(1))?,
            Cadence::Quarterly => start.checked_sub_months(chrono::Months::new(3))?,
            Cadence::Yearly => start.checked_sub_months(chrono::Months::new(12))?,
        };
        Some((from, start))
    }
}
