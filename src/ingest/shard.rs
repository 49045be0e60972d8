//! Shard workers: each owns the state of the devices routed to it (device
//! index modulo the shard count), parses their messages, runs the rules, and
//! sends fault events to the ticket writer. No lock on this path.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::DateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Reject;
use super::payload::{self, Channel};
use crate::clock::{Clock, Stopwatch};
use crate::domain::Value;
use crate::domain::{DeviceIdx, FaultCode, FaultEvent, OFFLINE, Tier};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::rules::{DeviceState, PresenceChange, Profile, RuleChange};
use crate::store::ActiveFault;

/// One message, routed to the shard that owns its device.
#[derive(Debug)]
pub struct Msg {
    pub device: DeviceIdx,
    pub channel: Channel,
    pub payload: Bytes,
    /// Gateway time of receipt, ms.
    pub recv_ms: i64,
    /// Started on receipt: a fault's time to its ticket counts its wait in the queues.
    pub recv: Stopwatch,
    /// Decoded readings, for `Channel::Polled`; empty (and unallocated) otherwise.
    pub readings: Vec<(u16, Value)>,
}

/// Whether a device is heard from, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Presence {
    /// Not heard from since the daemon started, and its heartbeat window not over.
    Unknown = 0,
    Online = 1,
    Offline = 2,
}

/// What the API may read about a device while shards own its state.
#[derive(Debug, Default)]
pub(crate) struct DeviceLive {
    /// Gateway time of its last message, ms; 0 if none since start.
    pub last_seen: AtomicI64,
    /// A [`Presence`], in an atomic.
    presence: AtomicU8,
    /// Active fault codes; written only when a fault is raised or cleared.
    pub active: Mutex<Vec<FaultCode>>,
}

impl DeviceLive {
    pub(crate) fn presence(&self) -> Presence {
        match self.presence.load(Ordering::Relaxed) {
            p if p == Presence::Online as u8 => Presence::Online,
            p if p == Presence::Offline as u8 => Presence::Offline,
            _ => Presence::Unknown,
        }
    }
    pub(crate) fn set_presence(&self, p: Presence) {
        self.presence.store(p as u8, Ordering::Relaxed);
    }
}

/// The live view of every device, indexed like the fleet.
#[derive(Debug)]
pub(crate) struct Live {
    pub devices: Vec<DeviceLive>,
}

impl Live {
    pub(crate) fn new(n: usize) -> Live {
        Live { devices: (0..n).map(|_| DeviceLive::default()).collect() }
    }
    fn set_active(&self, idx: DeviceIdx, code: &FaultCode, on: bool) {
        let Some(d) = self.devices.get(idx.0 as usize) else {
            return;
        };
        let mut a = d.active.lock().unwrap_or_else(|p| p.into_inner());
        a.retain(|c| c != code);
        if on {
            a.push(code.clone());
        }
    }
    pub(crate) fn active(&self, idx: DeviceIdx) -> Vec<FaultCode> {
        self.devices
            .get(idx.0 as usize)
            .map(|d| d.active.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }
}

/// Everything a shard needs, shared read-only.
#[derive(Clone)]
pub(crate) struct ShardCtx {
    pub fleet: Arc<Fleet>,
    pub live: Arc<Live>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// A device time further ahead of the gateway's clock than this is refused, ms.
    pub max_clock_skew_ms: i64,
    /// Where hourly rollups go (the embedded history), if anywhere.
    pub history: Option<crate::history::RollupSender>,
    /// Where line protocol for InfluxDB goes, when it is configured.
    pub influx: Option<mpsc::Sender<crate::history::influx::Chunk>>,
}

/// What told the shard a device is offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    /// Its MQTT last will, or its own `offline` status.
    LastWill,
    /// Its Modbus polls went unanswered.
    Unanswered,
    /// Nothing: it fell silent past its heartbeat.
    Nothing,
}

/// The devices one shard owns and the scratch buffers it reuses.
pub(crate) struct Shard {
    index: usize,
    count: usize,
    states: Vec<DeviceState>,
    readings: Vec<(u16, Value)>,
    changes: Vec<RuleChange>,
    ctx: ShardCtx,
    /// Per owned device: this hour's rollup so far.
    rollups: Vec<crate::rollup::DeviceRollup>,
    /// Partial hours waiting to be handed to the history writer.
    pending: Vec<crate::rollup::RollupRow>,
    ticks: u32,
    /// Line protocol waiting for the InfluxDB batcher, and how many lines it holds.
    lines: Vec<u8>,
    line_count: usize,
}

impl Shard {
    /// A shard owning devices `i` with `i % count == index`, with faults and devices' alarms
    /// (`(device, code)`) restored from the store.
    pub(crate) fn new(
        index: usize,
        count: usize,
        ctx: ShardCtx,
        restored: &[ActiveFault],
        alarms: &[(String, String)],
    ) -> Shard {
        let now = ctx.clock.now().timestamp_millis();
        // Sized once: a filter's collect would grow it by doubling, with room to spare.
        let mut states = Vec::with_capacity(ctx.fleet.devices.len().div_ceil(count));
        states.extend(
            ctx.fleet
                .devices
                .iter()
                .filter(|d| d.idx.0 as usize % count == index)
                .map(|d| DeviceState::new(&ctx.fleet.kinds[d.kind], now)),
        );
        let rollups = vec![crate::rollup::DeviceRollup::default(); states.len()];
        let mut shard = Shard {
            index,
            count,
            states,
            readings: Vec::with_capacity(32),
            changes: Vec::new(),
            ctx,
            rollups,
            pending: Vec::new(),
            ticks: 0,
            lines: Vec::new(),
            line_count: 0,
        };
        for f in restored {
            let Some(idx) = shard.ctx.fleet.lookup(&f.device) else {
                continue;
            };
            if idx.0 as usize % count != index {
                continue;
            }
            let profile = shard.ctx.fleet.profile_of(idx);
            let local = idx.0 as usize / count;
            if f.code == OFFLINE {
                shard.states[local].restore_offline(f.since.timestamp_millis(), f.tier == Tier::Major);
                shard.ctx.live.devices[idx.0 as usize].set_presence(Presence::Offline);
            } else if let Some(r) = profile.rules.iter().position(|r| r.code.as_str() == f.code) {
                shard.states[local].restore_active(r as u16);
            } else {
                continue;
            }
            shard.ctx.live.set_active(idx, &FaultCode(f.code.clone()), true);
        }
        for (device, code) in alarms {
            let Some(idx) = shard.ctx.fleet.lookup(device).filter(|i| i.0 as usize % count == index) else {
                continue;
            };
            if let Some(&bit) = shard.ctx.fleet.profile_of(idx).codes.get(code) {
                shard.states[idx.0 as usize / count].restore_code(bit);
            }
        }
        shard
    }

    /// Runs until shutdown or until the router hangs up.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        tx: mpsc::Sender<(FaultEvent, Stopwatch)>,
        shutdown: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(256);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events = Vec::new();
        // For each event, the stopwatch of the message that made it (or of the tick).
        let mut stamps: Vec<Stopwatch> = Vec::new();
        'run: loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    let sw = Stopwatch::start();
                    if n == 0 {
                        break;
                    }
                    let mut accepted = 0u64;
                    for msg in batch.drain(..) {
                        match self.handle(&msg, &mut events) {
                            Ok(()) => accepted += 1,
                            Err(r) => self.rejected(r, &msg),
                        }
                        stamps.resize(events.len(), msg.recv);
                    }
                    self.ctx.metrics.accepted.inc_by(accepted);
                    self.ctx.metrics.rule_eval_seconds.observe(sw.elapsed_secs() / n as f64);
                    if self.pending.len() >= 1024 {
                        self.hand_on_rollups();
                    }
                    if self.lines.len() >= 256 * 1024 {
                        self.hand_on_lines();
                    }
                }
                _ = tick.tick() => {
                    self.tick(&mut events);
                    stamps.resize(events.len(), Stopwatch::start());
                    self.hand_on_lines();
                    // Every minute the partial hours go to the store, so a crash loses a minute at most.
                    self.ticks += 1;
                    if self.ticks.is_multiple_of(60) {
                        self.drain_rollups();
                        self.hand_on_rollups();
                    }
                }
                _ = shutdown.cancelled() => break,
            }
            for (e, sw) in events.drain(..).zip(stamps.drain(..)) {
                if tx.send((e, sw)).await.is_err() {
                    break 'run;
                }
            }
        }
        self.flush_rollups().await;
    }

    fn drain_rollups(&mut self) {
        for (local, r) in self.rollups.iter_mut().enumerate() {
            r.drain(DeviceIdx((local * self.count + self.index) as u32), &mut self.pending);
        }
    }

    /// Hands pending rollups to the history writer without waiting; a full queue drops them, counted.
    fn hand_on_rollups(&mut self) {
        let Some(h) = &self.ctx.history else { return };
        if self.pending.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.pending);
        let n = rows.len() as u64;
        if h.try_send(rows).is_err() {
            self.ctx.metrics.history_dropped.inc_by(n);
        }
    }

    /// On the way out: every partial hour to the history writer, and every line to
    /// the InfluxDB batcher, waiting for room.
    async fn flush_rollups(&mut self) {
        self.drain_rollups();
        if let (Some(h), false) = (&self.ctx.history, self.pending.is_empty()) {
            let _ = h.send(std::mem::take(&mut self.pending)).await;
        }
        if let (Some(i), false) = (&self.ctx.influx, self.lines.is_empty()) {
            let chunk = (bytes::Bytes::from(std::mem::take(&mut self.lines)), self.line_count);
            let _ = i.send(chunk).await;
        }
    }

    /// Hands the lines so far to the InfluxDB batcher without waiting; a full queue drops them, counted.
    fn hand_on_lines(&mut self) {
        let Some(i) = &self.ctx.influx else { return };
        if self.lines.is_empty() {
            return;
        }
        let n = std::mem::take(&mut self.line_count);
        let chunk = (bytes::Bytes::from(std::mem::replace(&mut self.lines, Vec::with_capacity(64 * 1024))), n);
        if i.try_send(chunk).is_err() {
            self.ctx.metrics.influx_lines_dropped.inc_by(n as u64);
        }
    }

    fn rejected(&self, r: Reject, msg: &Msg) {
        self.ctx.metrics.reject(r.label());
        if let Some(held) = r.may_log() {
            let device = &self.ctx.fleet.device(msg.device).id;
            let sample = String::from_utf8_lossy(&msg.payload[..msg.payload.len().min(120)]).into_owned();
            warn!(%device, reason = r.label(), hint = r.hint(), payload = %sample, similar_suppressed = held, "message rejected");
        }
    }

    /// Applies one message; fault events go to `events`.
    pub(crate) fn handle(&mut self, msg: &Msg, events: &mut Vec<FaultEvent>) -> Result<(), Reject> {
        let idx = msg.device;
        let local = idx.0 as usize / self.count;
        debug_assert_eq!(idx.0 as usize % self.count, self.index);
        let fleet = Arc::clone(&self.ctx.fleet);
        let profile = fleet.profile_of(idx);
        let live = &self.ctx.live.devices[idx.0 as usize];
        self.changes.clear();
        match msg.channel {
            Channel::Telemetry => {
                self.readings.clear();
                let meta = payload::parse_telemetry(&msg.payload, profile, &mut self.readings)?;
                let at = self.device_time(meta.ts, msg.recv_ms)?;
                let st = &mut self.states[local];
                if !st.apply(profile, at, &self.readings, &mut self.changes) {
                    return Err(Reject::OutOfOrder);
                }
                if self.ctx.history.is_some() {
                    self.rollups[local].add(idx, profile.metrics.len(), at, &self.readings, &mut self.pending);
                }
                if self.ctx.influx.is_some()
                    && crate::history::influx::encode_line(&fleet, idx, at, &self.readings, &mut self.lines)
                {
                    self.line_count += 1;
                }
            }
            Channel::Event => {
                let ev = payload::parse_event(&msg.payload)?;
                let code = *profile.codes.get(ev.code.as_ref()).ok_or(Reject::UnknownCode)?;
                let at = self.device_time(ev.ts, msg.recv_ms)?;
                // An alarm that says when it happened is in order with the readings or refused, as they are;
                // one that does not happened now, and never before the newest reading.
                if ev.ts.is_some() && self.states[local].last_reading_at().is_some_and(|newest| at < newest) {
                    return Err(Reject::OutOfOrder);
                }
                if self.states[local].set_code(profile, code, ev.active, at, &mut self.changes) {
                    // Kept in the store, so that an alarm a device sends once outlives a restart.
                    events.push(FaultEvent::Alarm {
                        device: idx,
                        code: profile.code_names[code as usize].clone(),
                        active: ev.active,
                        at: DateTime::from_timestamp_millis(at).unwrap_or_default(),
                    });
                }
            }
            Channel::Status => {
                let online = payload::parse_status(&msg.payload)?;
                if !online {
                    if let Some(p) = self.states[local].said_offline(profile, msg.recv_ms) {
                        self.presence(idx, profile, p, msg.recv_ms, Said::LastWill, events);
                    }
                    return Ok(());
                }
            }
            Channel::Polled => {
                let st = &mut self.states[local];
                if !st.apply(profile, msg.recv_ms, &msg.readings, &mut self.changes) {
                    return Err(Reject::OutOfOrder);
                }
                if self.ctx.history.is_some() {
                    self.rollups[local].add(idx, profile.metrics.len(), msg.recv_ms, &msg.readings, &mut self.pending);
                }
                if self.ctx.influx.is_some()
                    && crate::history::influx::encode_line(&fleet, idx, msg.recv_ms, &msg.readings, &mut self.lines)
                {
                    self.line_count += 1;
                }
            }
            Channel::Unreachable => {
                if let Some(p) = self.states[local].said_offline(profile, msg.recv_ms) {
                    self.presence(idx, profile, p, msg.recv_ms, Said::Unanswered, events);
                }
                return Ok(());
            }
            Channel::Covered => {
                // Offline for whoever looks, though its bus's fault stands for it: no ticket of its own.
                self.states[local].covered(msg.recv_ms);
                live.set_presence(Presence::Offline);
                return Ok(());
            }
        }
        live.last_seen.store(msg.recv_ms, Ordering::Relaxed);
        live.set_presence(Presence::Online);
        if let Some(p) = self.states[local].seen(msg.recv_ms) {
            self.presence(idx, profile, p, msg.recv_ms, Said::Nothing, events);
        }
        self.rule_events(idx, profile, local, events);
        Ok(())
    }

    /// The device time of a message: its own `ts` unless that is too far ahead of the
    /// gateway's clock, else the time it was received.
    fn device_time(&self, ts: Option<i64>, recv_ms: i64) -> Result<i64, Reject> {
        match ts {
            Some(ts) if ts > recv_ms.saturating_add(self.ctx.max_clock_skew_ms) => Err(Reject::FutureTimestamp),
            Some(ts) => Ok(ts),
            None => Ok(recv_ms),
        }
    }

    fn rule_events(&mut self, idx: DeviceIdx, profile: &Profile, local: usize, events: &mut Vec<FaultEvent>) {
        for ch in self.changes.drain(..) {
            let rule = &profile.rules[ch.rule as usize];
            let st = &self.states[local];
            let mut detail = String::new();
            let at = DateTime::from_timestamp_millis(ch.at).unwrap_or_default();
            self.ctx.live.set_active(idx, &rule.code, ch.raised);
            if ch.raised {
                rule.raise.describe(st, profile, &mut detail);
                events.push(FaultEvent::Raised { device: idx, code: rule.code.clone(), tier: rule.tier, at, detail });
            } else {
                match &rule.clear {
                    Some(c) => c.describe(st, profile, &mut detail),
                    None => {
                        detail.push_str("cleared: ");
                        rule.raise.describe(st, profile, &mut detail);
                    }
                }
                events.push(FaultEvent::Cleared { device: idx, code: rule.code.clone(), at, detail });
            }
        }
    }

    fn presence(
        &self,
        idx: DeviceIdx,
        profile: &Profile,
        p: PresenceChange,
        now: i64,
        said: Said,
        events: &mut Vec<FaultEvent>,
    ) {
        let code = FaultCode(OFFLINE.to_string());
        let live = &self.ctx.live;
        let fmt = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        let hb = humantime::format_duration(std::time::Duration::from_millis(profile.heartbeat_ms as u64));
        match p {
            PresenceChange::Offline { since } => {
                live.devices[idx.0 as usize].set_presence(Presence::Offline);
                live.set_active(idx, &code, true);
                let detail = match said {
                    Said::LastWill => {
                        format!("the device reported offline (last will); last message {}", fmt(since).to_rfc3339())
                    }
                    Said::Unanswered => {
                        format!(
                            "the device stopped answering its Modbus polls; last answer {}",
                            fmt(since).to_rfc3339()
                        )
                    }
                    Said::Nothing => format!(
                        "no message for longer than its heartbeat window ({hb}); last message {}",
                        fmt(since).to_rfc3339()
                    ),
                };
                events.push(FaultEvent::Raised {
                    device: idx,
                    code,
                    tier: profile.offline_tier,
                    at: fmt(since),
                    detail,
                });
            }
            PresenceChange::Promoted { since } => {
                let major =
                    humantime::format_duration(std::time::Duration::from_millis(profile.offline_major_after_ms as u64));
                let detail = format!("outage since {} passed {major}: a major fault", fmt(since).to_rfc3339());
                events.push(FaultEvent::Promoted { device: idx, code, tier: Tier::Major, at: fmt(now), detail });
            }
            PresenceChange::Online => {
                live.set_active(idx, &code, false);
                events.push(FaultEvent::Cleared {
                    device: idx,
                    code,
                    at: fmt(now),
                    detail: "the device is back online".into(),
                });
            }
        }
    }

    /// Checks heartbeats and outages, and rules that time alone can change.
    pub(crate) fn tick(&mut self, events: &mut Vec<FaultEvent>) {
        let now = self.ctx.clock.now().timestamp_millis();
        let fleet = Arc::clone(&self.ctx.fleet);
        for local in 0..self.states.len() {
            let idx = DeviceIdx((local * self.count + self.index) as u32);
            let profile = fleet.profile_of(idx);
            if let Some(p) = self.states[local].check_presence(profile, now) {
                self.presence(idx, profile, p, now, Said::Nothing, events);
            }
            self.changes.clear();
            self.states[local].tick(profile, now, &mut self.changes);
            self.rule_events(idx, profile, local, events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_s_presence_reads_back_as_set() {
        let d = DeviceLive::default();
        assert_eq!(d.presence(), Presence::Unknown, "not heard from yet");
        for p in [Presence::Online, Presence::Offline, Presence::Unknown] {
            d.set_presence(p);
            assert_eq!(d.presence(), p);
        }
    }
}
