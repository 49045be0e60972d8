//! A contract's clocks, pure: how long it allows for acknowledging, reaching the
//! site and resolving, and when that runs out.
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
}
