//! Service-level clocks, pure: how long a contract allows for acknowledging,
//! reaching the site and resolving, and when that runs out.
//!
//! A clock is written as one of:
//! - `"15m"`, `"24h"`: elapsed time, 7x24;
//! - `"4h business"`: time within the calendar's business hours;
//! - `"3 working days"`: until close of business on the 3rd working day after the day it starts.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::calendar::Calendar;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSpec {
    /// Elapsed time around the clock.
    Elapsed(Duration),
    /// Time counted only within business hours.
    Business(Duration),
    /// Close of business on the n-th working day after the start's day.
    WorkingDays(u32),
}

impl ClockSpec {
    /// Parses a clock; `business_by_default` makes a bare duration count business hours.
    pub fn parse(s: &str, business_by_default: bool) -> Result<ClockSpec, String> {
        let s = s.trim();
        let hint = r#"write a clock such as "15m", "24h", "4h business" or "3 working days""#;
        if let Some(n) = s.strip_suffix("working days").or_else(|| s.strip_suffix("working day")) {
            let n: u32 = n.trim().parse().map_err(|_| format!("`{s}` is not a clock; {hint}"))?;
            if n == 0 {
                return Err(format!("`{s}`: a number of working days must be at least 1"));
            }
            return Ok(ClockSpec::WorkingDays(n));
        }
        let (d, business) = match s.strip_suffix("business") {
            Some(d) => (d.trim(), true),
            None => match s.strip_suffix("7x24") {
                Some(d) => (d.trim(), false),
                None => (s, business_by_default),
            },
        };
        let d = humantime::parse_duration(d).map_err(|_| format!("`{s}` is not a clock; {hint}"))?;
        Ok(if business { ClockSpec::Business(d) } else { ClockSpec::Elapsed(d) })
    }

    /// Whether this clock needs a business calendar.
    pub fn needs_calendar(self) -> bool {
        !matches!(self, ClockSpec::Elapsed(_))
    }

    /// When a clock started at `start` runs out; `None` if it needs a calendar and has none.
    pub fn deadline(self, start: DateTime<Utc>, cal: Option<&Calendar>) -> Option<DateTime<Utc>> {
        match self {
            ClockSpec::Elapsed(d) => Some(start + chrono::TimeDelta::from_std(d).ok()?),
            ClockSpec::Business(d) => cal?.add_business_time(start, d),
            ClockSpec::WorkingDays(n) => cal?.add_working_days(start, n),
        }
    }
}

impl fmt::Display for ClockSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockSpec::Elapsed(d) => write!(f, "{}", humantime::format_duration(*d)),
            ClockSpec::Business(d) => write!(f, "{} business", humantime::format_duration(*d)),
            ClockSpec::WorkingDays(n) => {
                write!(f, "{n} working day{}", if *n == 1 { "" } else { "s" })
            }
        }
    }
}

/// The rule for a tier promotion: the stricter clock runs from the moment the
/// fault became that severe, and a deadline never moves later than it was.
pub fn promoted_deadline(
    old: Option<DateTime<Utc>>,
    promoted_at: DateTime<Utc>,
    new_clock: Option<ClockSpec>,
    cal: Option<&Calendar>,
) -> Option<DateTime<Utc>> {
    let new = new_clock.and_then(|c| c.deadline(promoted_at, cal));
    match (old, new) {
        (Some(o), Some(n)) => Some(o.min(n)),
        (o, n) => o.or(n),
    }
}

/// Whether one clock of one ticket was met: `None` while its moment has not come (or no clock runs).
pub type Met = Option<bool>;

/// Compliance with one clock over a set of tickets.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ClockCompliance {
    pub met: u32,
    pub missed: u32,
    /// Met / (met + missed); `null` when no ticket's moment has come.
    pub share: Option<f64>,
}

/// Compliance of one tier's tickets with their three clocks.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TierCompliance {
    pub tier: u8,
    pub tickets: u32,
    pub acknowledge: ClockCompliance,
    pub on_site: ClockCompliance,
    pub resolve: ClockCompliance,
}

/// Aggregates (tier, acknowledge, on-site, resolve) outcomes into compliance per tier, tiers 1 to 3.
pub fn compliance(rows: impl IntoIterator<Item = (u8, Met, Met, Met)>) -> Vec<TierCompliance> {
    let mut out: Vec<TierCompliance> = (1..=3).map(|tier| TierCompliance { tier, ..Default::default() }).collect();
    let add = |c: &mut ClockCompliance, m: Met| match m {
        Some(true) => c.met += 1,
        Some(false) => c.missed += 1,
        None => {}
    };
    for (tier, a, o, r) in rows {
        let Some(t) = out.get_mut(tier.saturating_sub(1) as usize) else { continue };
        t.tickets += 1;
        add(&mut t.acknowledge, a);
        add(&mut t.on_site, o);
        add(&mut t.resolve, r);
    }
    for t in &mut out {
        for c in [&mut t.acknowledge, &mut t.on_site, &mut t.resolve] {
            let n = c.met + c.missed;
            c.share = (n > 0).then(|| c.met as f64 / n as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{s}+08:00")).unwrap().to_utc()
    }

    fn cal() -> Calendar {
        Calendar::parse(
            r#"name = "t"
workdays = ["mon", "tue", "wed", "thu", "fri"]
holidays = ["2026-10-01..2026-10-07"]
[hours]
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]
"#,
        )
        .unwrap()
    }

    #[test]
    fn clocks_parse() {
        let check =
            |s: &str, business: bool, want: ClockSpec| assert_eq!(ClockSpec::parse(s, business), Ok(want), "{s}");
        check("15m", false, ClockSpec::Elapsed(Duration::from_secs(900)));
        check("15m", true, ClockSpec::Business(Duration::from_secs(900)));
        check("1h 30m 7x24", true, ClockSpec::Elapsed(Duration::from_secs(5400)));
        check("4h business", false, ClockSpec::Business(Duration::from_secs(14_400)));
        check("3 working days", false, ClockSpec::WorkingDays(3));
        check("1 working day", false, ClockSpec::WorkingDays(1));
        for bad in ["soon", "0 working days", "x working days", ""] {
            assert!(ClockSpec::parse(bad, false).is_err(), "{bad}");
        }
        assert_eq!(ClockSpec::parse("3 working days", false).unwrap().to_string(), "3 working days");
    }

    #[test]
    fn deadlines_by_kind_of_clock() {
        let c = cal();
        // Friday 16:00.
        let start = t("2026-09-25T16:00:00");
        let e = ClockSpec::parse("2h", false).unwrap();
        assert_eq!(e.deadline(start, None), Some(t("2026-09-25T18:00:00")));
        let b = ClockSpec::parse("2h business", false).unwrap();
        assert_eq!(b.deadline(start, Some(&c)), Some(t("2026-09-28T10:00:00")));
        assert_eq!(b.deadline(start, None), None, "a business clock without a calendar has no deadline");
        let w = ClockSpec::parse("3 working days", false).unwrap();
        // Wednesday 30 September + 3 working days crosses National Day: 8, 9 and 12 October.
        assert_eq!(w.deadline(t("2026-09-30T10:00:00"), Some(&c)), Some(t("2026-10-12T17:00:00")));
    }

    #[test]
    fn compliance_counts_met_and_missed_per_tier_and_clock() {
        let rows = [
            (1, Some(true), Some(true), Some(false)),
            (1, Some(false), None, None),
            (3, Some(true), None, Some(true)),
            (2, None, None, None),
        ];
        let c = compliance(rows);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].tickets, c[0].acknowledge.met, c[0].acknowledge.missed), (2, 1, 1));
        assert_eq!(c[0].acknowledge.share, Some(0.5));
        assert_eq!(c[0].on_site.share, Some(1.0));
        assert_eq!(c[0].resolve.share, Some(0.0));
        assert_eq!((c[1].tickets, c[1].acknowledge.share), (1, None));
        assert_eq!(c[2].resolve.share, Some(1.0));
    }

    #[test]
    fn promotion_never_moves_a_deadline_later() {
        let c = cal();
        let opened = t("2026-09-22T10:00:00");
        let old = Some(opened + chrono::TimeDelta::hours(24));
        // Promoted 10 minutes in to a 2 h clock: 12:10, earlier than before.
        let p = opened + chrono::TimeDelta::minutes(10);
        let two_h = ClockSpec::parse("2h", false).ok();
        assert_eq!(promoted_deadline(old, p, two_h, Some(&c)), Some(t("2026-09-22T12:10:00")));
        // A promotion whose clock would end later keeps the old deadline.
        let week = ClockSpec::parse("7 working days", false).ok();
        assert_eq!(promoted_deadline(old, p, week, Some(&c)), old);
        // No clock before: the new one applies.
        assert_eq!(promoted_deadline(None, p, two_h, Some(&c)), Some(t("2026-09-22T12:10:00")));
    }
}
