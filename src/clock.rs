//! The one source of time. Nothing else in aftercare reads the system clock
//! (clippy.toml bans it), so every deadline and hold is testable without waiting.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// Wall-clock time as the daemon sees it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock { micros: AtomicI64::new(start.timestamp_micros()) }
    }
    pub fn advance(&self, by: TimeDelta) {
        self.micros.fetch_add(by.num_microseconds().unwrap_or(i64::MAX), Ordering::SeqCst);
    }
    pub fn set(&self, to: DateTime<Utc>) {
        self.micros.store(to.timestamp_micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

/// Measures short spans of work (rule evaluation, fault-to-ticket latency)
/// on the monotonic clock. Spans are metrics, never decisions.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(#[allow(clippy::disallowed_types)] std::time::Instant);

impl Stopwatch {
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Stopwatch {
        Stopwatch(std::time::Instant::now())
    }
    pub fn elapsed_secs(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// Lets one log line through per interval and counts the ones it held back,
/// so that a flood of bad input cannot flood the log.
#[derive(Debug)]
pub struct LogLimiter {
    interval_secs: f64,
    state: Mutex<(Option<Stopwatch>, u64)>,
}

impl LogLimiter {
    pub const fn new(interval_secs: f64) -> LogLimiter {
        LogLimiter { interval_secs, state: Mutex::new((None, 0)) }
    }
    /// `Some(suppressed)` when this call may log, with how many were held back since the last one.
    pub fn allow(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.0 {
            Some(sw) if sw.elapsed_secs() < self.interval_secs => {
                st.1 += 1;
                None
            }
            _ => {
                let held = st.1;
                *st = (Some(Stopwatch::start()), 0);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z").unwrap().to_utc();
        let c = ManualClock::new(t0);
        assert_eq!(c.now(), t0);
        c.advance(TimeDelta::minutes(15));
        assert_eq!(c.now(), t0 + TimeDelta::minutes(15));
    }

    #[test]
    fn limiter_holds_back_repeats() {
        let l = LogLimiter::new(3600.0);
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
    }
}
