//! The business calendar: working days (weekdays, public holidays and the
//! make-up working days of the Chinese calendar) and business hours, and the
//! clock arithmetic the contracts need: "4 business hours", "3 working days".
//! Pure: no I/O, no clock.
//!
//! A calendar file (TOML), one per year of official schedule:
//!
//! ```toml
//! name = "cn-2026"
//! year = 2026                                           # the year whose days it settles
//! utc_offset = "+08:00"
//! workdays = ["mon", "tue", "wed", "thu", "fri"]
//! holidays = ["2026-01-01", "2026-02-15..2026-02-23"]   # single days or inclusive ranges
//! makeup_workdays = ["2026-01-04", "2026-02-14"]        # weekend days worked instead
//! [hours]                                               # business hours, per weekday
//! mon = ["08:30-12:00", "13:30-17:30"]
//! makeup = ["08:30-12:00", "13:30-17:30"]               # on make-up days; default: Monday's
//! ```
//!
//! Several years' files make one calendar ([`Calendar::merge`]). A day in a
//! year no file covers is counted by the weekdays alone, which is wrong around
//! that year's holidays: [`Calendar::gap`] says when a clock ran into one.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Deserialize;
use toml::Spanned;

/// Searching further than this for a working day means the calendar has none.
const MAX_DAYS: i64 = 3 * 366;

#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub name: String,
    pub offset: FixedOffset,
    /// Monday first.
    workdays: [bool; 7],
    hours: [Vec<(NaiveTime, NaiveTime)>; 7],
    makeup_hours: Vec<(NaiveTime, NaiveTime)>,
    holidays: BTreeSet<NaiveDate>,
    makeup: BTreeSet<NaiveDate>,
    /// The years whose holidays and make-up days the calendar knows.
    years: BTreeSet<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CalendarError {
    /// Byte span in the calendar's source, when known.
    pub span: Option<std::ops::Range<usize>>,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    name: String,
    /// The year the file settles; by default the year of its holidays.
    #[serde(default)]
    year: Option<Spanned<i32>>,
    #[serde(default)]
    utc_offset: Option<Spanned<String>>,
    workdays: Vec<Spanned<String>>,
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
    #[serde(default)]
    makeup_workdays: Vec<Spanned<String>>,
    hours: RawHours,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHours {
    mon: Option<Vec<Spanned<String>>>,
    tue: Option<Vec<Spanned<String>>>,
    wed: Option<Vec<Spanned<String>>>,
    thu: Option<Vec<Spanned<String>>>,
    fri: Option<Vec<Spanned<String>>>,
    sat: Option<Vec<Spanned<String>>>,
    sun: Option<Vec<Spanned<String>>>,
    makeup: Option<Vec<Spanned<String>>>,
}

fn weekday(s: &str) -> Option<usize> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].iter().position(|d| *d == s)
}

fn err(span: std::ops::Range<usize>, message: String) -> CalendarError {
    CalendarError { span: Some(span), message }
}

fn date(s: &Spanned<String>, text: &str) -> Result<NaiveDate, CalendarError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
        err(s.span(), format!("`{text}` is not a date; write \"2026-10-01\" or a range \"2026-10-01..2026-10-07\""))
    })
}

fn ranges(list: &[Spanned<String>]) -> Result<Vec<(NaiveTime, NaiveTime)>, CalendarError> {
    let mut out = Vec::new();
    for s in list {
        let bad =
            || err(s.span(), format!("`{}` is not a span of hours; write one such as \"08:30-17:30\"", s.get_ref()));
        let (a, b) = s.get_ref().split_once('-').ok_or_else(bad)?;
        let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").map_err(|_| bad())?;
        let b = NaiveTime::parse_from_str(b.trim(), "%H:%M").map_err(|_| bad())?;
        if b <= a {
            return Err(err(s.span(), format!("`{}` ends before it starts", s.get_ref())));
        }
        if out.last().is_some_and(|&(_, end)| a < end) {
            return Err(err(
                s.span(),
                format!("`{}` overlaps or precedes the span before it; list spans in order", s.get_ref()),
            ));
        }
        out.push((a, b));
    }
    Ok(out)
}

impl Calendar {
    /// Parses a calendar file's text.
    pub fn parse(text: &str) -> Result<Calendar, CalendarError> {
        let raw: RawCalendar = toml::from_str(text)
            .map_err(|e| CalendarError { span: e.span(), message: e.message().trim().to_string() })?;
        let offset = match &raw.utc_offset {
            Some(o) => o.get_ref().parse::<FixedOffset>().map_err(|_| {
                err(o.span(), format!("`{}` is not an offset; write one such as \"+08:00\"", o.get_ref()))
            })?,
            None => FixedOffset::east_opt(8 * 3600).ok_or_else(|| err(0..0, "offset".into()))?,
        };
        let mut workdays = [false; 7];
        for w in &raw.workdays {
            let i = weekday(w.get_ref()).ok_or_else(|| {
                err(w.span(), format!("`{}` is not a weekday; write mon, tue, wed, thu, fri, sat or sun", w.get_ref()))
            })?;
            workdays[i] = true;
        }
        let h = &raw.hours;
        let per_day = [&h.mon, &h.tue, &h.wed, &h.thu, &h.fri, &h.sat, &h.sun];
        let mut hours: [Vec<(NaiveTime, NaiveTime)>; 7] = Default::default();
        for (i, spans) in per_day.iter().enumerate() {
            if let Some(spans) = spans {
                hours[i] = ranges(spans)?;
            }
        }
        for w in &raw.workdays {
            let d = weekday(w.get_ref()).unwrap_or(0);
            if hours[d].is_empty() {
                return Err(err(
                    w.span(),
                    format!(
                        "`{}` is a workday without business hours; add [hours] {} = [\"08:30-17:30\"]",
                        w.get_ref(),
                        w.get_ref()
                    ),
                ));
            }
        }
        if !workdays.iter().any(|w| *w) {
            return Err(CalendarError { span: None, message: "a calendar needs at least one workday".into() });
        }
        let makeup_hours = match &h.makeup {
            Some(spans) => ranges(spans)?,
            None => hours.iter().find(|h| !h.is_empty()).cloned().unwrap_or_default(),
        };
        let mut holidays = BTreeSet::new();
        for s in &raw.holidays {
            let (a, b) = match s.get_ref().split_once("..") {
                Some((a, b)) => (date(s, a)?, date(s, b)?),
                None => (date(s, s.get_ref())?, date(s, s.get_ref())?),
            };
            if b < a || (b - a).num_days() > 366 {
                return Err(err(
                    s.span(),
                    format!("`{}` is not a range of at most a year, first day first", s.get_ref()),
                ));
            }
            holidays.extend(a.iter_days().take_while(|d| *d <= b));
        }
        let mut makeup = BTreeSet::new();
        for s in &raw.makeup_workdays {
            let d = date(s, s.get_ref())?;
            if holidays.contains(&d) {
                return Err(err(s.span(), format!("{d} is listed both as a holiday and as a make-up workday")));
            }
            makeup.insert(d);
        }
        let mentioned: BTreeSet<i32> = holidays.iter().chain(&makeup).map(|d| d.year()).collect();
        let year = match (&raw.year, mentioned.len()) {
            (Some(y), _) => {
                // An official schedule may reach into the next or previous year (New Year's Day
                // 2023 was 2022-12-31..2023-01-02), no further.
                if let Some(other) = mentioned.iter().find(|m| (**m - *y.get_ref()).abs() > 1) {
                    return Err(err(
                        y.span(),
                        format!("the file settles {}, but lists days of {other}: keep one year a file", y.get_ref()),
                    ));
                }
                *y.get_ref()
            }
            (None, 1) => mentioned.iter().copied().next().unwrap_or_default(),
            (None, _) => {
                return Err(CalendarError {
                    span: None,
                    message: "say which year the file settles, as year = 2026 (one file a year)".into(),
                });
            }
        };
        Ok(Calendar {
            name: raw.name,
            offset,
            workdays,
            hours,
            makeup_hours,
            holidays,
            makeup,
            years: BTreeSet::from([year]),
        })
    }

    /// One calendar of two years' files: their offset, workdays and hours must agree.
    pub fn merge(mut self, other: Calendar) -> Result<Calendar, String> {
        if self.offset != other.offset || self.workdays != other.workdays || self.hours != other.hours {
            return Err(format!(
                "{} and {} differ in utc_offset, workdays or hours; one calendar keeps the same week every year",
                self.name, other.name
            ));
        }
        if let Some(y) = self.years.intersection(&other.years).next() {
            return Err(format!("{} and {} both settle {y}", self.name, other.name));
        }
        self.holidays.extend(other.holidays);
        self.makeup.extend(other.makeup);
        self.years.extend(other.years);
        Ok(self)
    }

    /// Whether the calendar knows `d`'s year (its holidays and make-up days).
    pub fn covers(&self, d: NaiveDate) -> bool {
        self.years.contains(&d.year())
    }

    /// The last day of the last year the calendar knows.
    pub fn last_covered_day(&self) -> Option<NaiveDate> {
        self.years.last().and_then(|y| NaiveDate::from_ymd_opt(*y, 12, 31))
    }

    /// The first day in `from..=to` (local days of the instants) of a year the calendar does
    /// not know, if any: a clock across it was counted by weekdays alone.
    pub fn gap(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<NaiveDate> {
        let (a, b) = (from.with_timezone(&self.offset).date_naive(), to.with_timezone(&self.offset).date_naive());
        (a.year()..=b.year())
            .find(|y| !self.years.contains(y))
            .map(|y| if y == a.year() { a } else { NaiveDate::from_ymd_opt(y, 1, 1).unwrap_or(a) })
    }

    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.holidays.contains(&d) {
            return false;
        }
        self.makeup.contains(&d) || self.workdays[d.weekday().num_days_from_monday() as usize]
    }

    /// Business hours on a day, in order; empty on days off.
    pub fn hours_on(&self, d: NaiveDate) -> &[(NaiveTime, NaiveTime)] {
        if !self.is_working_day(d) {
            return &[];
        }
        if self.makeup.contains(&d) {
            return &self.makeup_hours;
        }
        &self.hours[d.weekday().num_days_from_monday() as usize]
    }

    fn at(&self, d: NaiveDate, t: NaiveTime) -> DateTime<Utc> {
        d.and_time(t).and_local_timezone(self.offset).single().map(|t| t.to_utc()).unwrap_or_default()
    }

    /// `start` plus `dur` of business time: the clock runs only within business hours.
    pub fn add_business_time(&self, start: DateTime<Utc>, dur: Duration) -> Option<DateTime<Utc>> {
        let local = start.with_timezone(&self.offset);
        let mut left = TimeDelta::from_std(dur).ok()?;
        let mut day = local.date_naive();
        let mut from = local.time();
        for _ in 0..MAX_DAYS {
            for &(a, b) in self.hours_on(day) {
                if b <= from {
                    continue;
                }
                let open = a.max(from);
                let span = b - open;
                if left <= span {
                    return Some(self.at(day, open) + left);
                }
                left -= span;
            }
            day = day.succ_opt()?;
            from = NaiveTime::MIN;
        }
        None
    }

    /// The close of business on the `n`-th working day after `start`'s day
    /// ("within 3 working days": the day of the event does not count).
    pub fn add_working_days(&self, start: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
        let mut day = start.with_timezone(&self.offset).date_naive();
        let mut left = n;
        for _ in 0..MAX_DAYS {
            day = day.succ_opt()?;
            if self.is_working_day(day) {
                left -= 1;
                if left == 0 {
                    let close = self.hours_on(day).last()?.1;
                    return Some(self.at(day, close));
                }
            }
        }
        None
    }

    /// Whether `t` falls within business hours.
    pub fn in_business_hours(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.offset);
        let time = local.time();
        self.hours_on(local.date_naive()).iter().any(|&(a, b)| a <= time && time < b)
    }
}

impl fmt::Display for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let years: Vec<String> = self.years.iter().map(i32::to_string).collect();
        write!(
            f,
            "{} ({}: {} holidays, {} make-up workdays)",
            self.name,
            years.join(", "),
            self.holidays.len(),
            self.makeup.len()
        )
    }
}

#[cfg(test)]
mod tests;
