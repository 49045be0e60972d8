//! firmware-sim: simulated field devices speaking aftercare's MQTT convention.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset, Utc};
use clap::{Parser, Subcommand};
use firmware_sim::load::{self, LoadOptions};
use firmware_sim::{Command, DeviceSpec, Kind, SimOptions, scenario};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "firmware-sim",
    version,
    about = "Simulated recorders, solar water heaters, LED displays and lighting controllers over MQTT"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a simulated fleet. Reads commands from stdin: `inject DEVICE FAULT`, `clear DEVICE [FAULT]`.
    Run(RunArgs),
    /// Publish telemetry of many devices as fast as the broker takes it, and report the rate.
    Load(LoadArgs),
    /// List the device kinds and the faults each can show.
    Faults,
}

#[derive(clap::Args)]
struct Broker {
    /// The broker, as mqtt://host:port.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    #[arg(long, default_value = "aftercare")]
    prefix: String,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    broker: Broker,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    password: Option<String>,
    /// How many devices of each kind: `recorder=2,solar_heater=1,...` (ids rec-001, swh-001, led-001, lit-001...).
    #[arg(long, default_value = "recorder=1,solar_heater=1,led_display=1,lighting=1")]
    fleet: String,
    /// Site of the devices made by --fleet.
    #[arg(long, default_value = "site-a")]
    site: String,
    /// An explicit device, `ID:KIND:SITE`; repeatable; replaces --fleet.
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Real time between a device's messages.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated start time (RFC 3339); now if unset.
    #[arg(long)]
    start: Option<DateTime<Utc>>,
    #[arg(long, default_value = "+08:00")]
    utc_offset: FixedOffset,
    /// A scenario file of faults to inject and clear.
    #[arg(long)]
    scenario: Option<std::path::PathBuf>,
    /// Play the built-in demo scenario.
    #[arg(long)]
    demo_scenario: bool,
    /// Print a line per injected or cleared fault.
    #[arg(long)]
    verbose: bool,
    /// Serve the devices over Modbus TCP instead of MQTT: a server per device at HOST:PORT,
    /// PORT+1, … (PORT 0: a free port each); prints `modbus ID tcp ADDR` per device.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "modbus_rtu")]
    modbus_tcp: Option<String>,
    /// Serve the devices as units 1, 2, … on this serial line (Modbus RTU) instead of MQTT.
    #[arg(long, value_name = "PATH")]
    modbus_rtu: Option<String>,
    /// The RTU line's speed.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
}

#[derive(clap::Args)]
struct LoadArgs {
    #[command(flatten)]
    broker: Broker,
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 2)]
    connections: usize,
    #[arg(long, default_value = "load")]
    site: String,
    #[arg(long, default_value = "load-")]
    id_prefix: String,
    /// Messages per second (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Message number that carries a storage failure, to time fault-to-ticket under load.
    #[arg(long)]
    fault_at: Option<u64>,
    /// QoS of the publishes: 0 or 1.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// Percent of messages whose temp_c is over 70 °C; the raises of a `temp_c > 70` rule
    /// (no hold) are printed as `raises N`.
    #[arg(long, default_value_t = 0.0)]
    spike_pct: f64,
}

fn broker_addr(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.strip_prefix("mqtt://").with_context(|| format!("--broker {url}: expected mqtt://host:port"))?;
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').unwrap_or((rest, "1883"));
    Ok((host.to_string(), port.parse().with_context(|| format!("--broker {url}: bad port"))?))
}

fn fleet(args: &RunArgs) -> anyhow::Result<Vec<DeviceSpec>> {
    if !args.devices.is_empty() {
        return args
            .devices
            .iter()
            .map(|d| {
                let mut p = d.split(':');
                match (p.next(), p.next().and_then(Kind::parse), p.next(), p.next()) {
                    (Some(id), Some(kind), Some(site), None) => Ok(DeviceSpec { id: id.into(), kind, site: site.into() }),
                    _ => bail!("--device {d}: expected ID:KIND:SITE with KIND one of recorder, solar_heater, led_display, lighting"),
                }
            })
            .collect();
    }
    let mut out = Vec::new();
    for part in args.fleet.split(',').filter(|p| !p.is_empty()) {
        let (k, n) = part.split_once('=').with_context(|| format!("--fleet {part}: expected KIND=COUNT"))?;
        let kind = Kind::parse(k).with_context(|| format!("--fleet: unknown kind `{k}`"))?;
        let n: usize = n.parse().with_context(|| format!("--fleet {part}: bad count"))?;
        for i in 1..=n {
            out.push(DeviceSpec { id: format!("{}-{i:03}", kind.id_prefix()), kind, site: args.site.clone() });
        }
    }
    Ok(out)
}

fn parse_command(line: &str) -> Result<Command, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.as_slice() {
        ["inject", d, f] => Ok(Command::Inject { device: d.to_string(), fault: f.to_string() }),
        ["clear", d] | ["clear", d, "all"] => Ok(Command::Clear { device: d.to_string(), fault: None }),
        ["clear", d, f] => Ok(Command::Clear { device: d.to_string(), fault: Some(f.to_string()) }),
        _ => Err(format!("cannot read `{line}`: write `inject DEVICE FAULT` or `clear DEVICE [FAULT]`")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(command(cli));
    // Standard input is read on a blocking thread that waits for a line for as long as the
    // terminal stays open; a plain runtime drop would wait for it, so a signal would not stop us.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

async fn command(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Faults => {
            for k in Kind::ALL {
                println!("{:<13} {}", k.name(), k.faults().join(", "));
            }
            Ok(())
        }
        Cmd::Load(a) => {
            let (host, port) = broker_addr(&a.broker.broker)?;
            let r = load::run(LoadOptions {
                host,
                port,
                prefix: a.broker.prefix,
                site: a.site,
                id_prefix: a.id_prefix,
                devices: a.devices.max(1),
                messages: a.messages,
                connections: a.connections,
                rate: a.rate,
                fault_at: a.fault_at,
                qos: a.qos,
                spike_pct: a.spike_pct,
            })
            .await?;
            println!(
                "published {} messages of {} bytes in {:.3} s: {:.0} msg/s",
                r.messages,
                r.payload_bytes,
                r.seconds,
                r.messages as f64 / r.seconds
            );
            if a.spike_pct > 0.0 {
                println!("raises {}", r.raises);
            }
            if let (Some(t), Some(d)) = (r.fault_sent, r.fault_device) {
                println!("fault sent {} {d}", t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            }
            Ok(())
        }
        Cmd::Run(a) => {
            let (host, port) = broker_addr(&a.broker.broker)?;
            let devices = fleet(&a)?;
            if devices.is_empty() {
                bail!("the fleet is empty: give --fleet or --device");
            }
            let mut steps = Vec::new();
            if let Some(path) = &a.scenario {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                steps = scenario::parse(&text, &devices).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            }
            if a.demo_scenario {
                steps.extend(scenario::demo(&devices));
                steps.sort_by_key(|s| s.at);
            }
            let opts = SimOptions {
                host,
                port,
                username: a.username,
                password: a.password,
                prefix: a.broker.prefix,
                devices,
                interval: a.interval,
                speed: a.speed,
                seed: a.seed,
                start: a.start,
                utc_offset: a.utc_offset,
                scenario: steps,
                verbose: a.verbose,
                modbus: match (a.modbus_tcp, a.modbus_rtu) {
                    (Some(t), _) => {
                        let (h, p) =
                            t.rsplit_once(':').with_context(|| format!("--modbus-tcp {t}: write HOST:PORT"))?;
                        let port = p.parse().with_context(|| format!("--modbus-tcp {t}: bad port"))?;
                        Some(firmware_sim::ModbusMode::Tcp { host: h.to_string(), port })
                    }
                    (None, Some(path)) => Some(firmware_sim::ModbusMode::Rtu { path, baud: a.baud }),
                    (None, None) => None,
                },
            };
            let (tx, rx) = mpsc::channel(64);
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    match parse_command(line) {
                        Ok(c) => {
                            if tx.send(c).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => eprintln!("firmware-sim: {e}"),
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            });
            #[cfg(unix)]
            {
                let stop = shutdown.clone();
                if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    tokio::spawn(async move {
                        term.recv().await;
                        stop.cancel();
                    });
                }
            }
            match &opts.modbus {
                None => println!("firmware-sim running {} devices against {}", opts.devices.len(), a.broker.broker),
                Some(m) => println!("firmware-sim serving {} devices over Modbus ({m:?})", opts.devices.len()),
            }
            firmware_sim::run(opts, rx, shutdown).await
        }
    }
}
