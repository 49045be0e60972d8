//! Polling Modbus devices. A TCP device is a task of its own (its own
//! connection, reconnected with backoff); the devices on one RTU line share
//! one task that takes the units in turn. Every request has a timeout, after
//! which the connection is dropped (a late answer would otherwise be read as
//! the next one's). Readings go to the device's shard like MQTT telemetry;
//! `offline_after` failed polls in a row send `Unreachable`.
//!
//! A request that times out ends the device's turn: its remaining requests
//! wait for the next poll, so a dead unit costs the others one timeout a
//! cycle at most, and is not retried within the cycle. On an RTU line a unit
//! that fails is skipped with a backoff of its own and gets one attempt when
//! it is due again. Units are due on the line's schedule (the tick), not on
//! the time their turn happened to start, so a healthy unit keeps its
//! cadence. When no unit on a line has answered for `offline_after` cycles
//! and each has failed, the line is down: one `bus_down` fault on its first
//! unit, and its units show offline, covered by it rather than reported
//! offline one by one.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::{ExceptionCode, Slave, SlaveContext};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::{Clock, LogLimiter, Stopwatch};
use crate::domain::{BUS_DOWN, DeviceIdx, FaultCode, FaultEvent, Value};
use crate::fleet::Fleet;
use crate::ingest::payload::Channel;
use crate::ingest::shard::Msg;
use crate::metrics::Metrics;
use crate::modbus::map::{Function, value};
use crate::modbus::{Endpoint, Line, Parity, RegisterMap, Transport};

/// Poll failures, logged at most once per 10 s.
static POLL_LOG: LogLimiter = LogLimiter::new(10.0);

/// Why a poll or a request failed; the metric's `reason` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect,
    /// The device answered with an exception (standard or not).
    Exception(u8),
    /// A frame that does not parse, or does not answer the request.
    Garbage,
    /// Fewer registers or bits than asked for.
    Short,
    /// Waiting out a reconnect backoff.
    Backoff,
}

impl Failure {
    pub fn label(&self) -> String {
        match self {
            Failure::Timeout => "timeout".into(),
            Failure::Connect => "connect".into(),
            Failure::Exception(c) => format!("exception_{c:02x}"),
            Failure::Garbage => "garbage".into(),
            Failure::Short => "short_response".into(),
            Failure::Backoff => "backoff".into(),
        }
    }
    /// Whether the connection can still be trusted after this failure.
    fn keeps_connection(&self) -> bool {
        matches!(self, Failure::Exception(_) | Failure::Short)
    }
}

/// Where pollers deliver: the shards, and (for `bus_down`) the ticket writer.
#[derive(Clone)]
pub struct Outlet {
    pub shards: Vec<mpsc::Sender<Msg>>,
    pub faults: mpsc::Sender<(FaultEvent, Stopwatch)>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub fleet: Arc<Fleet>,
}

impl Outlet {
    /// Hands a poll's result to the device's shard, waiting for room: a poll is never lost to load.
    async fn send(&self, device: DeviceIdx, channel: Channel, readings: Vec<(u16, Value)>) {
        let msg = Msg {
            device,
            channel,
            payload: bytes::Bytes::new(),
            recv_ms: self.clock.now().timestamp_millis(),
            recv: crate::clock::Stopwatch::start(),
            readings,
        };
        self.metrics.received.inc();
        // An error means the shard stopped: the daemon is shutting down.
        let _ = self.shards[device.0 as usize % self.shards.len()].send(msg).await;
    }

    fn failed(&self, device: DeviceIdx, f: &Failure) {
        let id = self.fleet.device(device).id.0.as_str();
        self.metrics.modbus_failure(id, &f.label());
        if let Some(held) = POLL_LOG.allow() {
            warn!(device = id, reason = %f.label(), similar_suppressed = held, "Modbus request failed");
        }
    }
}

/// Reads one request's worth of registers or bits.
async fn read(ctx: &mut Context, f: Function, start: u16, count: u16) -> Result<Data, Failure> {
    let r = match f {
        Function::Coil => ctx.read_coils(start, count).await.map(|r| r.map(Data::Bits)),
        Function::Discrete => ctx.read_discrete_inputs(start, count).await.map(|r| r.map(Data::Bits)),
        Function::Input => ctx.read_input_registers(start, count).await.map(|r| r.map(Data::Words)),
        Function::Holding => ctx.read_holding_registers(start, count).await.map(|r| r.map(Data::Words)),
    };
    match r {
        Ok(Ok(d)) if d.len() < count as usize => Err(Failure::Short),
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(Failure::Exception(exception_code(e))),
        Err(tokio_modbus::Error::Transport(e)) if e.kind() == std::io::ErrorKind::InvalidData => Err(Failure::Garbage),
        Err(tokio_modbus::Error::Transport(_)) => Err(Failure::Connect),
        Err(tokio_modbus::Error::Protocol(_)) => Err(Failure::Garbage),
    }
}

fn exception_code(e: ExceptionCode) -> u8 {
    u8::from(e)
}

enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Data::Words(w) => w.len(),
            Data::Bits(b) => b.len(),
        }
    }
}

/// Decodes a request's answer into readings.
fn decode(map: &RegisterMap, req: usize, data: &Data, out: &mut Vec<(u16, Value)>) {
    for &(i, off) in &map.requests[req].points {
        let p = &map.points[i];
        let off = off as usize;
        let v = match data {
            Data::Words(w) => value(p, w.get(off..).unwrap_or_default(), &[]),
            Data::Bits(b) => value(p, &[], b.get(off..).unwrap_or_default()),
        };
        if let Some(v) = v {
            out.push((p.metric, v));
        }
    }
}

/// The result of one poll of one device.
pub struct Polled {
    pub readings: Vec<(u16, Value)>,
    /// Requests that failed, with why.
    pub failures: Vec<Failure>,
    /// Requests that were answered.
    pub answered: usize,
}

/// Runs a device's plan over a connection; drops the connection when it can no longer be trusted.
/// `attempts` is how often a failed request is tried in all; `reconnect` makes a new connection.
pub async fn run_plan(
    ctx: &mut Option<Context>,
    map: &RegisterMap,
    ep: &Endpoint,
    attempts: u32,
    reconnect: &mut (dyn FnMut() -> ConnectFuture + Send),
) -> Polled {
    let mut out = Polled { readings: Vec::with_capacity(map.points.len()), failures: Vec::new(), answered: 0 };
    for (i, req) in map.requests.iter().enumerate() {
        if i > 0 && !ep.pause.is_zero() {
            tokio::time::sleep(ep.pause).await;
        }
        let mut last = None;
        let mut timed_out = false;
        for _ in 0..attempts.max(1) {
            if ctx.is_none() {
                match reconnect().await {
                    Ok(c) => *ctx = Some(c),
                    Err(f) => {
                        last = Some(f);
                        break;
                    }
                }
            }
            let Some(c) = ctx.as_mut() else { break };
            match timeout(ep.timeout, read(c, req.function, req.start, req.count)).await {
                Ok(Ok(data)) => {
                    decode(map, i, &data, &mut out.readings);
                    out.answered += 1;
                    last = None;
                    break;
                }
                Ok(Err(f)) => {
                    if !f.keeps_connection() {
                        *ctx = None;
                    }
                    // A device that refuses the request (an exception) refuses it again.
                    let again = !matches!(f, Failure::Exception(c) if c != 0x05 && c != 0x06);
                    last = Some(f);
                    if !again {
                        break;
                    }
                }
                Err(_) => {
                    *ctx = None;
                    last = Some(Failure::Timeout);
                    timed_out = true;
                    // Silence is not noise: asking again costs another timeout, for this device and
                    // for every other one on its line.
                    break;
                }
            }
        }
        if let Some(f) = last {
            out.failures.push(f);
            // A device that cannot be reached, or did not answer in time, will not answer the
            // next request now either.
            if timed_out || matches!(out.failures.last(), Some(Failure::Connect | Failure::Backoff)) {
                break;
            }
        }
    }
    out
}

pub type ConnectFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Context, Failure>> + Send>>;

/// Starts one task per TCP device and one per RTU line.
pub fn spawn(outlet: Outlet, concurrency: usize, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    let mut lines: Vec<(Line, Vec<Unit>)> = Vec::new();
    for d in &outlet.fleet.devices {
        let (Some(ep), Some(map)) = (&d.modbus, &outlet.fleet.kinds[d.kind].modbus) else { continue };
        match &ep.transport {
            Transport::Tcp(addr) => tasks.push(tokio::spawn(tcp_device(
                d.idx,
                addr.clone(),
                (**ep).clone(),
                Arc::clone(map),
                outlet.clone(),
                Arc::clone(&sem),
                shutdown.clone(),
            ))),
            Transport::Rtu(line) => {
                let unit = Unit::new(d.idx, (**ep).clone(), Arc::clone(map));
                match lines.iter_mut().find(|(l, _)| l.path == line.path) {
                    Some((_, units)) => units.push(unit),
                    None => lines.push((line.clone(), vec![unit])),
                }
            }
        }
    }
    for (line, units) in lines {
        tasks.push(tokio::spawn(rtu_line(line, units, outlet.clone(), shutdown.clone())));
    }
    tasks
}

/// Backoff before reconnecting after `n` failures in a row: 0.5 s doubling, capped at 60 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(500).saturating_mul(1 << n.min(7)).min(Duration::from_secs(60))
}

async fn tcp_device(
    idx: DeviceIdx,
    addr: String,
    ep: Endpoint,
    map: Arc<RegisterMap>,
    out: Outlet,
    sem: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let mut ctx: Option<Context> = None;
    let mut failed_polls = 0u32;
    let mut connect_failures = 0u32;
    let mut retry_at = Instant::now();
    // Spread the first polls over the interval, so a fleet does not poll in one burst.
    let stagger = ep.poll.mul_f64((idx.0 % 97) as f64 / 97.0);
    let mut tick = tokio::time::interval_at(Instant::now() + stagger, ep.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let Ok(_permit) = sem.acquire().await else { return };
        let started = Stopwatch::start();
        let (a, unit, to) = (addr.clone(), ep.unit, ep.timeout);
        let mut connect_now = Instant::now() >= retry_at;
        let mut reconnect = move || -> ConnectFuture {
            let a = a.clone();
            let allowed = std::mem::replace(&mut connect_now, false);
            Box::pin(async move {
                if !allowed {
                    return Err(Failure::Backoff);
                }
                let sa = tokio::net::lookup_host(&a).await.ok().and_then(|mut s| s.next()).ok_or(Failure::Connect)?;
                match timeout(to, tokio_modbus::client::tcp::connect_slave(sa, Slave(unit))).await {
                    Ok(Ok(c)) => Ok(c),
                    _ => Err(Failure::Connect),
                }
            })
        };
        let was_connected = ctx.is_some();
        let polled = run_plan(&mut ctx, &map, &ep, ep.retries + 1, &mut reconnect).await;
        out.metrics.modbus_requests.inc_by((polled.answered + polled.failures.len()) as u64);
        if ctx.is_some() {
            connect_failures = 0;
            if !was_connected {
                info!(device = %out.fleet.device(idx).id, addr = %addr, "Modbus connection up");
            }
        } else if polled.failures.iter().any(|f| matches!(f, Failure::Connect)) {
            connect_failures += 1;
            retry_at = Instant::now() + backoff(connect_failures);
        }
        for f in &polled.failures {
            out.failed(idx, f);
        }
        out.metrics.modbus_poll_seconds.observe(started.elapsed_secs());
        if polled.answered > 0 {
            failed_polls = 0;
            out.metrics.modbus_polls.get_or_create(&crate::metrics::ResultLabel { result: "ok" }).inc();
            out.send(idx, Channel::Polled, polled.readings).await;
        } else {
            failed_polls += 1;
            out.metrics.modbus_polls.get_or_create(&crate::metrics::ResultLabel { result: "failed" }).inc();
            if failed_polls == ep.offline_after {
                out.send(idx, Channel::Unreachable, Vec::new()).await;
            }
        }
    }
}

/// One unit on an RTU line, with its own schedule and backoff.
struct Unit {
    idx: DeviceIdx,
    ep: Endpoint,
    map: Arc<RegisterMap>,
    next: Instant,
    failed_polls: u32,
    /// When its current run of failures began.
    failing_since: Option<Instant>,
    /// Whether its `Unreachable` was sent for the current run.
    reported: bool,
}

impl Unit {
    fn new(idx: DeviceIdx, ep: Endpoint, map: Arc<RegisterMap>) -> Unit {
        Unit { idx, ep, map, next: Instant::now(), failed_polls: 0, failing_since: None, reported: false }
    }
}

fn open_line(line: &Line) -> Result<tokio_serial::SerialStream, Failure> {
    use tokio_serial::SerialPortBuilderExt as _;
    tokio_serial::new(&line.path, line.baud)
        .parity(match line.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .data_bits(match line.data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            _ => tokio_serial::DataBits::Eight,
        })
        .stop_bits(if line.stop_bits == 2 { tokio_serial::StopBits::Two } else { tokio_serial::StopBits::One })
        .open_native_async()
        .map_err(|_| Failure::Connect)
}

async fn rtu_line(line: Line, mut units: Vec<Unit>, out: Outlet, shutdown: CancellationToken) {
    let mut ctx: Option<Context> = None;
    let cycle = units.iter().map(|u| u.ep.poll).min().unwrap_or(Duration::from_secs(1));
    let bus_after = units.first().map_or(3, |u| u.ep.offline_after);
    let mut bus_down = false;
    let mut bus_known = false;
    let mut last_answer: Option<Instant> = None;
    let started = Instant::now();
    let mut port_failures = 0u32;
    let mut tick = tokio::time::interval(cycle);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Units are due by the schedule, not by when their turn came: a turn that starts late in
        // the cycle must not push the unit past the next tick.
        let tick_at = tokio::select! {
            t = tick.tick() => t,
            _ = shutdown.cancelled() => return,
        };
        let (mut tried, mut answered) = (0usize, 0usize);
        for u in units.iter_mut() {
            let now = Instant::now();
            if u.next > now {
                continue;
            }
            tried += 1;
            let started = Stopwatch::start();
            let l2 = line.clone();
            let unit = u.ep.unit;
            let mut reconnect = move || -> ConnectFuture {
                let l2 = l2.clone();
                Box::pin(async move {
                    let port = open_line(&l2)?;
                    Ok(tokio_modbus::client::rtu::attach_slave(port, Slave(unit)))
                })
            };
            if let Some(c) = ctx.as_mut() {
                c.set_slave(Slave(unit));
            }
            // A unit that failed last time gets one attempt, so it costs the others one timeout at most.
            let attempts = if u.failed_polls > 0 { 1 } else { u.ep.retries + 1 };
            let polled = run_plan(&mut ctx, &u.map, &u.ep, attempts, &mut reconnect).await;
            out.metrics.modbus_requests.inc_by((polled.answered + polled.failures.len()) as u64);
            out.metrics.modbus_poll_seconds.observe(started.elapsed_secs());
            for f in &polled.failures {
                out.failed(u.idx, f);
            }
            if polled.failures.iter().any(|f| matches!(f, Failure::Connect)) {
                port_failures += 1;
            } else {
                port_failures = 0;
            }
            if polled.answered > 0 {
                answered += 1;
                last_answer = Some(Instant::now());
                u.failed_polls = 0;
                u.failing_since = None;
                u.reported = false;
                u.next = tick_at + u.ep.poll;
                out.metrics.modbus_polls.get_or_create(&crate::metrics::ResultLabel { result: "ok" }).inc();
                out.send(u.idx, Channel::Polled, polled.readings).await;
            } else {
                u.failed_polls += 1;
                u.failing_since.get_or_insert(now);
                // Its own backoff: the poll interval doubling, up to 16 intervals or a minute.
                let cap = u.ep.poll.saturating_mul(16).min(Duration::from_secs(60));
                u.next = tick_at + u.ep.poll.saturating_mul(1 << u.failed_polls.min(6)).min(cap);
                out.metrics.modbus_polls.get_or_create(&crate::metrics::ResultLabel { result: "failed" }).inc();
            }
            if port_failures > 0 {
                // The port itself cannot be opened: every unit would fail the same way.
                tokio::time::sleep(backoff(port_failures).min(cycle)).await;
            }
        }
        // A unit is offline on its own only while the line still carries other units'
        // answers; when nobody answers, it is the bus, and the bus fault says so once.
        let lone = units.len() == 1;
        for u in units.iter_mut() {
            let others_answer = last_answer.zip(u.failing_since).is_some_and(|(a, since)| a > since);
            if !u.reported && u.failed_polls >= u.ep.offline_after && (lone || others_answer) && !bus_down {
                u.reported = true;
                out.send(u.idx, Channel::Unreachable, Vec::new()).await;
            }
        }
        if answered > 0 {
            // After a start the bus's state is unknown: clear a bus fault an earlier run left open.
            if bus_down || !bus_known {
                if bus_down {
                    info!(line = %line.path, "RTU line answers again");
                }
                bus_down = false;
                bus_known = true;
                bus_fault(&out, &units, &line, false).await;
            }
        } else if units.len() > 1 && !bus_down && units.iter().all(|u| u.failed_polls > 0) {
            // Counted in time, not in turns taken: units in backoff take none.
            let silent = Instant::now().saturating_duration_since(last_answer.unwrap_or(started));
            if silent >= cycle.saturating_mul(bus_after) {
                bus_down = true;
                bus_known = true;
                warn!(line = %line.path, units = units.len(), silent = ?silent,
                      "no unit on the RTU line answers: the bus is down");
                bus_fault(&out, &units, &line, true).await;
            }
        }
        if tried == 0 && !bus_down {
            continue;
        }
        if bus_down {
            for u in &units {
                out.send(u.idx, Channel::Covered, Vec::new()).await;
            }
            // Ask again soon: the line, not each unit, is what is down.
            for u in units.iter_mut() {
                u.next = u.next.min(Instant::now() + u.ep.poll);
            }
        }
    }
}

/// Raises or clears `bus_down` on the line's first unit.
async fn bus_fault(out: &Outlet, units: &[Unit], line: &Line, raised: bool) {
    let Some(first) = units.first() else { return };
    let at = DateTime::from_timestamp_millis(out.clock.now().timestamp_millis()).unwrap_or_default();
    let code = FaultCode(BUS_DOWN.to_string());
    let ev = if raised {
        FaultEvent::Raised {
            device: first.idx,
            code,
            tier: crate::domain::Tier::Main,
            at,
            detail: format!("no unit of {} on RTU line {} answers", units.len(), line.path),
        }
    } else {
        FaultEvent::Cleared { device: first.idx, code, at, detail: format!("RTU line {} answers again", line.path) }
    };
    // Faults are rare and never dropped: wait for the writer, as shards do.
    if out.faults.send((ev, Stopwatch::start())).await.is_err() {
        warn!(line = %line.path, "the ticket writer has stopped; the bus fault is not recorded");
    }
}
