//! One device's rule state: latest values, rate windows, rule phases and presence.

use super::{Profile, Rule};
use crate::domain::Value;

const NONE: i64 = i64::MIN;

/// The latest value of one metric; `at` is NONE until there is one (no `Option`, whose tag
/// would add a third to every slot of every device).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub v: f64,
    /// When it was reported (device time, ms).
    pub at: i64,
    /// When it last moved by more than a stuck rule's tolerance (device time, ms).
    pub changed_at: i64,
}

impl Slot {
    const EMPTY: Slot = Slot { v: 0.0, at: NONE, changed_at: NONE };
}

#[derive(Debug, Clone, Copy)]
struct RateWindow {
    ref_v: f64,
    ref_t: i64,
    /// The rate measured over the last complete window; NaN until there is one.
    rate: f64,
}

#[derive(Debug, Clone, Copy)]
struct RulePhase {
    active: bool,
    /// Since when the raise (inactive) or clear (active) condition has held; NONE if it does not.
    since: i64,
}

/// A rule's fault was raised or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleChange {
    pub rule: u16,
    pub raised: bool,
    /// Device time of the reading that completed the hold, in ms.
    pub at: i64,
}

/// The device's presence changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// Silent past its heartbeat window, or it said so (its last will). `since` is its last message.
    Offline {
        since: i64,
    },
    /// The outage passed the profile's major threshold.
    Promoted {
        since: i64,
    },
    Online,
}

/// Everything aftercare keeps about one device between messages. Owned by one shard.
#[derive(Debug, Clone)]
pub struct DeviceState {
    slots: Box<[Slot]>,
    rates: Box<[RateWindow]>,
    rules: Box<[RulePhase]>,
    codes: u64,
    last_at: i64,
    tracking_since: i64,
    last_seen: i64,
    outage_since: i64,
    promoted: bool,
}

impl DeviceState {
    /// A device first tracked at `now` (ms): it has that long of a heartbeat window before it is offline.
    pub fn new(profile: &Profile, now: i64) -> DeviceState {
        DeviceState {
            slots: vec![Slot::EMPTY; profile.metrics.len()].into_boxed_slice(),
            rates: vec![RateWindow { ref_v: 0.0, ref_t: NONE, rate: f64::NAN }; profile.rate_slots as usize]
                .into_boxed_slice(),
            rules: vec![RulePhase { active: false, since: NONE }; profile.rules.len()].into_boxed_slice(),
            codes: 0,
            last_at: NONE,
            tracking_since: now,
            last_seen: now,
            outage_since: NONE,
            promoted: false,
        }
    }

    /// Bytes this state holds, its own struct included.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of_val(&*self.slots)
            + std::mem::size_of_val(&*self.rates)
            + std::mem::size_of_val(&*self.rules)
    }

    pub(crate) fn slot(&self, m: u16) -> Option<&Slot> {
        self.slots.get(m as usize).filter(|s| s.at != NONE)
    }
    pub(crate) fn num(&self, m: u16) -> Option<f64> {
        self.slot(m).map(|s| s.v)
    }
    pub(crate) fn rate(&self, slot: u16) -> Option<f64> {
        let r = self.rates.get(slot as usize)?.rate;
        if r.is_nan() { None } else { Some(r) }
    }
    pub(crate) fn code_active(&self, code: u8) -> bool {
        (self.codes >> code) & 1 == 1
    }
    pub(crate) fn tracking_since(&self) -> i64 {
        self.tracking_since
    }
    /// The latest value of a metric, for the API and for tests.
    pub fn value(&self, m: u16) -> Option<f64> {
        self.num(m)
    }
    /// Device time of the newest reading applied, if any.
    pub fn last_reading_at(&self) -> Option<i64> {
        (self.last_at != NONE).then_some(self.last_at)
    }

    /// Restores a fault that was active before a restart, so that it is not raised twice.
    pub fn restore_active(&mut self, rule: u16) {
        if let Some(r) = self.rules.get_mut(rule as usize) {
            *r = RulePhase { active: true, since: NONE };
        }
    }
    /// Restores an outage that was open before a restart.
    pub fn restore_offline(&mut self, since: i64, promoted: bool) {
        self.outage_since = since;
        self.promoted = promoted;
    }

    /// Applies one message's readings taken at device time `at`, then evaluates the rules.
    /// Readings older than the newest one applied are ignored (returns false).
    pub fn apply(&mut self, profile: &Profile, at: i64, readings: &[(u16, Value)], out: &mut Vec<RuleChange>) -> bool {
        if self.last_at != NONE && at < self.last_at {
            return false;
        }
        self.last_at = at;
        for &(m, v) in readings {
            let v = match v {
                Value::Num(x) => x,
                Value::Bool(b) => f64::from(u8::from(b)),
                Value::Text => continue,
            };
            let Some(slot) = self.slots.get_mut(m as usize) else {
                continue;
            };
            let old = *slot;
            *slot = if old.at != NONE && (old.v - v).abs() <= profile.stuck_tolerance[m as usize] {
                Slot { v, at, changed_at: old.changed_at }
            } else {
                Slot { v, at, changed_at: at }
            };
        }
        self.advance_rates(profile, at, readings);
        self.evaluate(profile, at, false, out);
        true
    }

    /// A device-reported code turned on or off at device time `at`; returns whether that
    /// changed it (a device may repeat itself).
    pub fn set_code(&mut self, profile: &Profile, code: u8, active: bool, at: i64, out: &mut Vec<RuleChange>) -> bool {
        let before = self.codes;
        if active {
            self.codes |= 1 << code;
        } else {
            self.codes &= !(1 << code);
        }
        let at = at.max(self.last_at);
        self.evaluate(profile, at, false, out);
        before != self.codes
    }

    /// Restores a device-reported code that was active before a restart.
    pub fn restore_code(&mut self, code: u8) {
        self.codes |= 1 << code;
    }

    /// Evaluates the rules that depend on time passing (stuck values, missing data).
    pub fn tick(&mut self, profile: &Profile, now: i64, out: &mut Vec<RuleChange>) {
        if self.outage_since != NONE {
            return;
        }
        self.evaluate(profile, now, true, out);
    }

    fn advance_rates(&mut self, profile: &Profile, at: i64, readings: &[(u16, Value)]) {
        for rule in &profile.rules {
            rule.raise.for_each_rate(&mut |m, s, per, win| self.advance_rate(m, s, per, win, at, readings));
            if let Some(c) = &rule.clear {
                c.for_each_rate(&mut |m, s, per, win| self.advance_rate(m, s, per, win, at, readings));
            }
        }
    }

    fn advance_rate(&mut self, m: u16, slot: u16, per_ms: i64, window_ms: i64, at: i64, readings: &[(u16, Value)]) {
        if !readings.iter().any(|(r, _)| *r == m) {
            return;
        }
        let Some(v) = self.num(m) else { return };
        let Some(w) = self.rates.get_mut(slot as usize) else {
            return;
        };
        if w.ref_t == NONE {
            w.ref_v = v;
            w.ref_t = at;
        } else if at - w.ref_t >= window_ms {
            w.rate = (v - w.ref_v) * per_ms as f64 / (at - w.ref_t) as f64;
            w.ref_v = v;
            w.ref_t = at;
        }
    }

    fn reset_rates(&mut self, rule: &Rule) {
        let mut reset = |_m, s: u16, _p, _w| {
            if let Some(w) = self.rates.get_mut(s as usize) {
                *w = RateWindow { ref_v: 0.0, ref_t: NONE, rate: f64::NAN };
            }
        };
        rule.raise.for_each_rate(&mut reset);
        if let Some(c) = &rule.clear {
            c.for_each_rate(&mut reset);
        }
    }

    fn evaluate(&mut self, profile: &Profile, at: i64, tick: bool, out: &mut Vec<RuleChange>) {
        for (i, rule) in profile.rules.iter().enumerate() {
            if tick && !rule.time_driven() {
                continue;
            }
            let guard = rule.when.as_ref().map_or(Some(true), |w| w.eval(self, at));
            let phase = self.rules[i];
            if guard != Some(true) {
                // Frozen: the fault can be neither confirmed nor disproved now.
                if phase.since != NONE || guard == Some(false) {
                    self.rules[i].since = NONE;
                    if guard == Some(false) {
                        self.reset_rates(rule);
                    }
                }
                continue;
            }
            let (holding, hold_ms) = if phase.active {
                let c = match &rule.clear {
                    Some(c) => c.eval(self, at),
                    None => rule.raise.eval(self, at).map(|b| !b),
                };
                (c, rule.clear_hold_ms)
            } else {
                (rule.raise.eval(self, at), rule.hold_ms)
            };
            let p = &mut self.rules[i];
            match holding {
                Some(true) => {
                    if p.since == NONE {
                        p.since = at;
                    }
                    if at - p.since >= hold_ms {
                        p.active = !p.active;
                        p.since = NONE;
                        out.push(RuleChange { rule: i as u16, raised: p.active, at });
                    }
                }
                Some(false) => p.since = NONE,
                None => {}
            }
        }
    }

    /// The device spoke (any message) at gateway time `now`.
    pub fn seen(&mut self, now: i64) -> Option<PresenceChange> {
        self.last_seen = self.last_seen.max(now);
        if self.outage_since != NONE {
            self.outage_since = NONE;
            self.promoted = false;
            return Some(PresenceChange::Online);
        }
        None
    }

    /// Something else answers for the device at `now` (its bus is down): a healthy
    /// device is not found silent meanwhile; an offline one stays offline.
    pub fn covered(&mut self, now: i64) {
        if self.outage_since == NONE {
            self.last_seen = self.last_seen.max(now);
        }
    }

    /// The device's status topic said `offline` (its last will) at `now`.
    pub fn said_offline(&mut self, profile: &Profile, now: i64) -> Option<PresenceChange> {
        if self.outage_since != NONE {
            return None;
        }
        self.outage_since = self.last_seen.min(now);
        self.check_promotion(profile, now).or(Some(PresenceChange::Offline { since: self.outage_since }))
    }

    /// Checks the heartbeat window and the outage's length at gateway time `now`.
    pub fn check_presence(&mut self, profile: &Profile, now: i64) -> Option<PresenceChange> {
        if self.outage_since == NONE {
            if now - self.last_seen > profile.heartbeat_ms {
                self.outage_since = self.last_seen;
                return Some(PresenceChange::Offline { since: self.last_seen });
            }
            return None;
        }
        self.check_promotion(profile, now)
    }

    fn check_promotion(&mut self, profile: &Profile, now: i64) -> Option<PresenceChange> {
        if !self.promoted
            && profile.offline_tier != crate::domain::Tier::Major
            && now - self.outage_since > profile.offline_major_after_ms
        {
            self.promoted = true;
            return Some(PresenceChange::Promoted { since: self.outage_since });
        }
        None
    }

    pub fn last_seen(&self) -> i64 {
        self.last_seen
    }
}
