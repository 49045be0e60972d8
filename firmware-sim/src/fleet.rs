//! Runs the simulated fleet: one task and one MQTT connection per device.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::models::{Kind, Model};
use crate::scenario::Step;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub id: String,
    pub kind: Kind,
    pub site: String,
}

/// Something to do to a device, from stdin or a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Inject {
        device: String,
        fault: String,
    },
    /// `fault: None` clears every fault of the device.
    Clear {
        device: String,
        fault: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub prefix: String,
    pub devices: Vec<DeviceSpec>,
    /// Real time between two telemetry messages of a device.
    pub interval: Duration,
    /// Simulated seconds per real second.
    pub speed: f64,
    pub seed: u64,
    /// Simulated time at start; now if unset.
    pub start: Option<DateTime<Utc>>,
    /// The sites' local time, which drives the sun and the schedules.
    pub utc_offset: FixedOffset,
    pub scenario: Vec<Step>,
    /// Print a line per injected or cleared fault.
    pub verbose: bool,
    /// Serve the devices over Modbus instead of publishing over MQTT.
    pub modbus: Option<ModbusMode>,
}

/// How the devices are served over Modbus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModbusMode {
    /// A TCP server per device: at `host:port`, `port + 1`, … (port 0: any free port each).
    Tcp { host: String, port: u16 },
    /// Every device a unit (1, 2, …) on one serial line.
    Rtu { path: String, baud: u32 },
}

/// Starts the Modbus servers and prints where each device answers.
async fn serve_modbus(mode: &ModbusMode, devices: &[(DeviceSpec, crate::modbus::Shared)]) -> anyhow::Result<()> {
    use crate::modbus::{RtuLine, TcpDevice};
    match mode {
        ModbusMode::Tcp { host, port } => {
            for (i, (spec, face)) in devices.iter().enumerate() {
                let p = if *port == 0 { 0 } else { port.saturating_add(i as u16) };
                let listener = tokio::net::TcpListener::bind((host.as_str(), p)).await?;
                println!("modbus {} tcp {}", spec.id, listener.local_addr()?);
                let service = TcpDevice { kind: spec.kind, face: Arc::clone(face) };
                let server = tokio_modbus::server::tcp::Server::new(listener);
                tokio::spawn(async move {
                    let on_connected = |stream, _addr| {
                        let s = service.clone();
                        let stream = crate::modbus::Garbling { inner: stream, face: Arc::clone(&s.face) };
                        async move { Ok(Some((s, stream))) }
                    };
                    let _ = server.serve(&on_connected, |e| eprintln!("firmware-sim: Modbus TCP: {e}")).await;
                });
            }
        }
        ModbusMode::Rtu { path, baud } => {
            let units: Vec<(u8, Kind, crate::modbus::Shared)> = devices
                .iter()
                .enumerate()
                .map(|(i, (spec, face))| ((i + 1).min(247) as u8, spec.kind, Arc::clone(face)))
                .collect();
            for (i, (spec, _)) in devices.iter().enumerate() {
                println!("modbus {} rtu {path} unit {}", spec.id, i + 1);
            }
            let server = tokio_modbus::server::rtu::Server::new_from_path(path, *baud)?;
            let service = RtuLine { units: Arc::new(units) };
            tokio::spawn(async move {
                if let Err(e) = server.serve_forever(service).await {
                    eprintln!("firmware-sim: Modbus RTU: {e}");
                }
            });
        }
    }
    Ok(())
}

/// The simulated clock: starts at `start` and runs `speed` times real time.
#[derive(Debug, Clone, Copy)]
struct SimClock {
    origin: Instant,
    start: DateTime<Utc>,
    speed: f64,
}

impl SimClock {
    fn now(&self) -> DateTime<Utc> {
        let real = self.origin.elapsed().as_secs_f64();
        self.start + TimeDelta::milliseconds((real * self.speed * 1000.0) as i64)
    }
}

/// Runs the fleet until `shutdown`; commands arrive on `commands` and from the scenario.
pub async fn run(
    opts: SimOptions,
    mut commands: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    #[allow(clippy::disallowed_methods)]
    let start = opts.start.unwrap_or_else(Utc::now);
    let clock = SimClock { origin: Instant::now(), start, speed: opts.speed.max(0.001) };
    let mut inboxes: HashMap<String, mpsc::Sender<Command>> = HashMap::new();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut seeder = StdRng::seed_from_u64(opts.seed);
    let faces: Vec<(DeviceSpec, crate::modbus::Shared)> =
        opts.devices.iter().map(|d| (d.clone(), crate::modbus::Shared::default())).collect();
    if let Some(mode) = &opts.modbus {
        for (spec, _) in &faces {
            if crate::modbus::map(spec.kind).is_none() {
                anyhow::bail!("{}: kind {} has no Modbus register map", spec.id, spec.kind.name());
            }
        }
        serve_modbus(mode, &faces).await?;
    }
    for (i, (spec, face)) in faces.iter().enumerate() {
        let (tx, rx) = mpsc::channel(64);
        inboxes.insert(spec.id.clone(), tx);
        let dev = SimDevice {
            spec: spec.clone(),
            opts: opts.clone(),
            clock,
            rng: StdRng::seed_from_u64(seeder.random::<u64>() ^ i as u64),
            face: opts.modbus.is_some().then(|| Arc::clone(face)),
        };
        tasks.push(tokio::spawn(dev.run(rx, shutdown.clone())));
    }
    let mut scenario = opts.scenario.clone().into_iter().peekable();
    let origin = clock.origin;
    let mut commands_open = true;
    loop {
        let next_at = scenario.peek().map(|s| origin + s.at);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            cmd = commands.recv(), if commands_open => match cmd {
                Some(c) => deliver(&inboxes, c).await,
                // Commands closed (stdin ended): keep running the scenario and the fleet.
                None => commands_open = false,
            },
            _ = async { tokio::time::sleep_until(next_at.unwrap_or_else(Instant::now)).await }, if next_at.is_some() => {
                if let Some(step) = scenario.next() {
                    deliver(&inboxes, step.command).await;
                }
            }
        }
    }
    drop(inboxes);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    Ok(())
}

async fn deliver(inboxes: &HashMap<String, mpsc::Sender<Command>>, c: Command) {
    let id = match &c {
        Command::Inject { device, .. } | Command::Clear { device, .. } => device.clone(),
    };
    match inboxes.get(&id) {
        Some(tx) => {
            let _ = tx.send(c).await;
        }
        None => eprintln!("firmware-sim: no simulated device `{id}`"),
    }
}

struct SimDevice {
    spec: DeviceSpec,
    opts: SimOptions,
    clock: SimClock,
    rng: StdRng,
    /// Its Modbus face, when the fleet is served over Modbus instead of MQTT.
    face: Option<crate::modbus::Shared>,
}

/// A live MQTT connection of one device; dropping its task cuts the TCP
/// connection without a DISCONNECT, so the broker sends the last will.
struct Link {
    client: AsyncClient,
    poller: JoinHandle<()>,
}

impl SimDevice {
    fn topic(&self, channel: &str) -> String {
        format!("{}/{}/{}/{}", self.opts.prefix, self.spec.site, self.spec.id, channel)
    }

    fn connect(&self) -> Link {
        let mut o = MqttOptions::new(format!("sim-{}", self.spec.id), &self.opts.host, self.opts.port);
        o.set_keep_alive(Duration::from_secs(15));
        o.set_last_will(LastWill::new(self.topic("status"), "offline", QoS::AtLeastOnce, true));
        if let Some(u) = &self.opts.username {
            o.set_credentials(u, self.opts.password.clone().unwrap_or_default());
        }
        let (client, mut el) = AsyncClient::new(o, 256);
        let status = self.topic("status");
        let c2 = client.clone();
        let poller = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(100);
                        let _ = c2.try_publish(status.clone(), QoS::AtLeastOnce, true, "online");
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Link { client, poller }
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut model = Model::new(self.spec.kind, &mut self.rng);
        let mut faults: BTreeSet<String> = BTreeSet::new();
        let mut link = if self.face.is_none() { Some(self.connect()) } else { None };
        // Spread the fleet's messages over the interval.
        let offset = self.rng.random_range(0.0..1.0) * self.opts.interval.as_secs_f64();
        let mut tick = tokio::time::interval_at(Instant::now() + Duration::from_secs_f64(offset), self.opts.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let dt = self.opts.interval.as_secs_f64() * self.clock.speed;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = inbox.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.command(cmd, &mut faults, &mut link).await;
                }
                _ = tick.tick() => {
                    let now = self.clock.now();
                    let local = now.with_timezone(&self.opts.utc_offset);
                    let metrics = model.step(local, dt, &mut self.rng, &faults);
                    if let Some(face) = &self.face {
                        face.lock().unwrap_or_else(|p| p.into_inner()).metrics = metrics;
                    } else if let Some(l) = &link {
                        let body = json!({
                            "ts": now.to_rfc3339_opts(SecondsFormat::Millis, true),
                            "metrics": metrics,
                        });
                        let _ = l.client.try_publish(self.topic("telemetry"), QoS::AtMostOnce, false, body.to_string());
                    }
                }
            }
        }
        if let Some(l) = link {
            // A clean goodbye: the device says it is going offline.
            let _ = l.client.publish(self.topic("status"), QoS::AtLeastOnce, true, "offline").await;
            let _ = l.client.disconnect().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            l.poller.abort();
        }
    }

    async fn command(&mut self, cmd: Command, faults: &mut BTreeSet<String>, link: &mut Option<Link>) {
        let kind = self.spec.kind;
        if let Some(face) = &self.face {
            // On Modbus a power cut is silence; the Modbus faults show on the wire.
            let (fault, on) = match &cmd {
                Command::Inject { fault, .. } => (Some(fault.clone()), true),
                Command::Clear { fault, .. } => (fault.clone(), false),
            };
            let wire = |f: &str| crate::modbus::FAULTS.contains(&f) || f == "offline";
            if fault.as_deref().is_none_or(wire) {
                let mut face = face.lock().unwrap_or_else(|p| p.into_inner());
                face.fault = match (on, fault.as_deref()) {
                    (true, Some("offline")) => Some("modbus_silent".into()),
                    (true, f) => f.map(String::from),
                    (false, _) => None,
                };
                if self.opts.verbose {
                    println!(
                        "{} {} {}",
                        if on { "injected" } else { "cleared" },
                        self.spec.id,
                        fault.as_deref().unwrap_or_default()
                    );
                }
                if fault.is_some() {
                    return;
                }
            }
        }
        match cmd {
            Command::Inject { fault, .. } => {
                if let Err(e) = crate::scenario::check_fault(kind, &fault) {
                    eprintln!("firmware-sim: {}: {e}", self.spec.id);
                    return;
                }
                if self.opts.verbose {
                    println!("injected {} {fault}", self.spec.id);
                }
                if fault == "offline" {
                    // Power cut: the connection drops without a goodbye.
                    if let Some(l) = link.take() {
                        l.poller.abort();
                    }
                } else {
                    self.event(link, &fault, true).await;
                }
                faults.insert(fault);
            }
            Command::Clear { fault, .. } => {
                let cleared: Vec<String> = match fault {
                    Some(f) => faults.take(&f).into_iter().collect(),
                    None => std::mem::take(faults).into_iter().collect(),
                };
                for f in cleared {
                    if self.opts.verbose {
                        println!("cleared {} {f}", self.spec.id);
                    }
                    if f == "offline" {
                        if link.is_none() {
                            *link = Some(self.connect());
                        }
                    } else {
                        self.event(link, &f, false).await;
                    }
                }
            }
        }
    }

    async fn event(&self, link: &Option<Link>, fault: &str, active: bool) {
        let (Some(code), Some(l)) = (self.spec.kind.event_code(fault), link) else {
            return;
        };
        let ts = self.clock.now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let body = json!({ "code": code, "active": active, "ts": ts }).to_string();
        let _ = l.client.publish(self.topic("event"), QoS::AtLeastOnce, false, body).await;
    }
}
