//! `aftercare demo`: the whole loop on one machine with nothing installed.
//! An embedded broker, SQLite under a data folder, and firmware-sim's fleet
//! playing a scenario of faults in every kind and tier.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::ingest::mqtt::BrokerMode;
use crate::tickets::model::Outcome;

/// The demo's config files, built into the binary so it runs from anywhere.
const FILES: &[(&str, &str)] = &[
    ("config/demo.toml", include_str!("../config/demo.toml")),
    ("config/kinds/recorder.toml", include_str!("../config/kinds/recorder.toml")),
    ("config/kinds/solar_heater.toml", include_str!("../config/kinds/solar_heater.toml")),
    ("config/kinds/led_display.toml", include_str!("../config/kinds/led_display.toml")),
    ("config/kinds/lighting.toml", include_str!("../config/kinds/lighting.toml")),
    ("config/contracts/recorders-tender.toml", include_str!("../config/contracts/recorders-tender.toml")),
    ("config/contracts/detailed-plan.toml", include_str!("../config/contracts/detailed-plan.toml")),
    ("config/contracts/lighting.toml", include_str!("../config/contracts/lighting.toml")),
    ("config/contracts/solar-heaters.toml", include_str!("../config/contracts/solar-heaters.toml")),
    ("config/contracts/led-displays.toml", include_str!("../config/contracts/led-displays.toml")),
    ("config/calendars/cn-2026.toml", include_str!("../config/calendars/cn-2026.toml")),
];

/// Loads the built-in demo config.
pub fn config() -> Result<Config, crate::config::ConfigError> {
    let read = |p: &Path| {
        let key = p.to_string_lossy().replace('\\', "/");
        FILES
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, text)| text.to_string())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, key))
    };
    Config::load_with(Path::new("config/demo.toml"), &read)
}

pub struct DemoOptions {
    pub data: PathBuf,
    pub interval: Duration,
    pub seed: u64,
}

/// `addr` if it is free, else any free port on the same interface, saying so.
fn free_or_other(addr: SocketAddr, what: &str) -> anyhow::Result<SocketAddr> {
    match crate::broker::reserve(addr) {
        Ok(a) => Ok(a),
        Err(_) => {
            let other = crate::broker::reserve(SocketAddr::new(addr.ip(), 0))?;
            println!("port {} is taken; the {what} listens on {other} instead", addr.port());
            Ok(other)
        }
    }
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let mut config = config().map_err(|e| anyhow::anyhow!("the built-in demo config is broken:\n{e}"))?;
    std::fs::create_dir_all(&opts.data).with_context(|| format!("creating {}", opts.data.display()))?;
    config.store_path = opts.data.join("aftercare.db");
    if let BrokerMode::Embedded { listen } = &mut config.broker.mode {
        *listen = free_or_other(*listen, "embedded MQTT broker")?;
    }
    config.http_listen = free_or_other(config.http_listen, "HTTP API")?;
    let fleet = Arc::clone(&config.fleet);
    let (password, token) = logins(&config).await?;

    let app = app::start(config, Arc::new(SystemClock)).await?;
    let broker = app.broker.context("the demo runs an embedded broker")?;
    let mut notices = app.notices.subscribe();
    let api = format!("http://{}", app.http);
    println!();
    println!("aftercare demo");
    println!("  console    {api}/   (open it in a browser; log in as manager, desk, engineer or customer)");
    println!("  API        {api}/api/v1/tickets   {api}/api/v1/devices   {api}/metrics");
    println!("  MQTT       mqtt://{broker} (embedded broker; topics aftercare/{{site}}/{{device}}/telemetry)");
    println!("  login      {} with password {password}", names().join(", "));
    println!("             (in the console, or POST {api}/api/v1/login; the customer sees its own devices only)");
    println!("  try        curl -H 'Authorization: Bearer {token}' {api}/api/v1/tickets");
    println!("  data       {}", opts.data.display());
    println!("  fleet      {} devices; faults start in 10 s. Ctrl-C stops.", fleet.devices.len());
    println!();

    let devices = fleet
        .devices
        .iter()
        .filter_map(|d| {
            let kind = firmware_sim::Kind::parse(&fleet.kinds[d.kind].name)?;
            Some(firmware_sim::DeviceSpec { id: d.id.0.clone(), kind, site: d.site.0.clone() })
        })
        .collect::<Vec<_>>();
    let scenario = firmware_sim::scenario::demo(&devices);
    let sim_opts = firmware_sim::SimOptions {
        host: broker.ip().to_string(),
        port: broker.port(),
        username: None,
        password: None,
        prefix: "aftercare".into(),
        devices,
        interval: opts.interval,
        speed: 1.0,
        seed: opts.seed,
        start: None,
        utc_offset: chrono::FixedOffset::east_opt(8 * 3600).context("offset")?,
        scenario,
        verbose: false,
        modbus: None,
    };
    let sim_stop = CancellationToken::new();
    let (_commands, commands) = mpsc::channel(1);
    let sim = tokio::spawn(firmware_sim::run(sim_opts, commands, sim_stop.clone()));

    let printer = tokio::spawn(async move {
        loop {
            match notices.recv().await {
                Ok(n) => {
                    if n.outcome == Outcome::Nothing {
                        continue;
                    }
                    println!(
                        "ticket #{:<3} {:<9}  tier {}  {:<8} {:<20} {}  ({})",
                        n.ticket.0, n.outcome, n.tier, n.device, n.code, n.title, n.detail
                    );
                }
                Err(broadcast::error::RecvError::Lagged(k)) => {
                    println!("({k} ticket lines skipped)")
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });

    app::stop_signal().await;
    println!("stopping…");
    // The daemon first: the simulated devices' goodbyes are the demo ending, not outages.
    app.stop().await;
    printer.abort();
    sim_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), sim).await;
    Ok(())
}

/// The demo's users: one of each role, named for it.
fn names() -> Vec<&'static str> {
    crate::access::Role::ALL.iter().map(|r| r.as_str()).collect()
}

/// A user of each role with one fresh password (the customer's user sees the first customer
/// only), and an admin token for a day: so that a newcomer can try every role at once.
async fn logins(config: &Config) -> anyhow::Result<(String, String)> {
    use crate::access::Role;
    use crate::clock::Clock as _;
    let store = crate::store::Store::open(&config.store_path).await?;
    let now = SystemClock.now();
    let (secret, _) = crate::identity::new_secret("")?;
    let password: String = secret.chars().filter(char::is_ascii_alphanumeric).take(16).collect();
    let first = config.fleet.customers.first().map(|c| c.id.as_str().to_string());
    // One hash for all six: argon2 takes a while, and the password is printed anyway.
    let hash = crate::identity::hash_password(&password)?;
    for &role in Role::ALL {
        let customers: Vec<String> = if role == Role::Customer { first.iter().cloned().collect() } else { Vec::new() };
        crate::access::check_user(role, &customers).map_err(|m| anyhow::anyhow!(m))?;
        if store.add_user(role.as_str(), role, &customers, Some(&hash), now).await?.is_none() {
            store.set_password(role.as_str(), &hash, now).await?;
        }
    }
    let (token, _) =
        crate::identity::create_token(&store, "admin", "demo", None, Some(now + chrono::TimeDelta::days(1)), now)
            .await?;
    Ok((password, token))
}
