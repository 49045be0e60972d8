//! The MQTT client: one event loop task that only moves messages to the
//! shard that owns their device. It subscribes again after every connection
//! (rumqttc does not), backs off between failed attempts, and never waits on
//! a shard: a full queue drops the message and counts it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Reject;
use super::payload::parse_topic;
use super::shard::Msg;
use crate::clock::{Clock, LogLimiter};
use crate::config::{BrokerConfig, BrokerMode};
use crate::fleet::Fleet;
use crate::metrics::Metrics;

/// Messages larger than this break the connection (rumqttc's limit); ours is lower and counted.
const MAX_PACKET: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    #[error("reading the broker's CA file {path}: {source}")]
    CaFile { path: String, source: std::io::Error },
    #[error("the broker's CA file {0} holds no usable certificate")]
    NoCerts(String),
}

/// Client options for the configured broker; `embedded` is the embedded broker's real address.
pub fn options(cfg: &BrokerConfig, embedded: Option<std::net::SocketAddr>) -> Result<MqttOptions, MqttSetupError> {
    let mut opts = match (&cfg.mode, embedded) {
        (BrokerMode::External { host, port, .. }, _) => MqttOptions::new(&cfg.client_id, host, *port),
        (BrokerMode::Embedded { listen }, real) => {
            let addr = real.unwrap_or(*listen);
            let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
            MqttOptions::new(&cfg.client_id, host, addr.port())
        }
    };
    opts.set_keep_alive(cfg.keep_alive);
    opts.set_max_packet_size(MAX_PACKET, 64 * 1024);
    opts.set_clean_session(true);
    if let BrokerMode::External { tls, username, password, ca_file, .. } = &cfg.mode {
        if let Some(u) = username {
            let p = password.as_ref().map(|p| p.expose_secret().to_string()).unwrap_or_default();
            opts.set_credentials(u, p);
        }
        if *tls {
            opts.set_transport(Transport::tls_with_config(tls_config(ca_file.as_deref())?));
        }
    }
    Ok(opts)
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<TlsConfiguration, MqttSetupError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let name = path.display().to_string();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| MqttSetupError::CaFile {
                path: name.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            for c in certs.flatten() {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(MqttSetupError::NoCerts(name));
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(cfg)))
}

/// Routes messages from the event loop to shards.
pub struct Router {
    pub prefix: String,
    pub fleet: Arc<Fleet>,
    pub shards: Vec<mpsc::Sender<Msg>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

static ROUTE_LOG: LogLimiter = LogLimiter::new(10.0);

impl Router {
    /// Routes one message; never waits.
    pub fn route(&self, topic: &str, payload: Bytes) {
        self.metrics.received.inc();
        match self.try_route(topic, payload) {
            Ok(()) => {}
            Err(r) => {
                self.metrics.reject(r.label());
                if let Some(held) = ROUTE_LOG.allow() {
                    warn!(topic, reason = r.label(), similar_suppressed = held, "message rejected");
                }
            }
        }
    }

    fn try_route(&self, topic: &str, payload: Bytes) -> Result<(), Reject> {
        let (site, device, channel) = parse_topic(&self.prefix, topic)?;
        let idx = self.fleet.lookup(device).ok_or(Reject::UnknownDevice)?;
        if self.fleet.device(idx).site.as_str() != site {
            return Err(Reject::WrongSite);
        }
        let shard = &self.shards[idx.0 as usize % self.shards.len()];
        let msg =
            Msg { device: idx, channel, payload, recv_ms: self.clock.now().timestamp_millis(), readings: Vec::new() };
        shard.try_send(msg).map_err(|_| Reject::QueueFull)
    }
}

/// Runs the client until shutdown: connects, subscribes on every ConnAck, routes publishes.
pub async fn run(opts: MqttOptions, router: Router, shutdown: CancellationToken) {
    let filter = format!("{}/+/+/+", router.prefix);
    let (client, mut eventloop): (AsyncClient, EventLoop) = AsyncClient::new(opts, 64);
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(10);
    eventloop.set_network_options(net);
    let mut backoff = Duration::from_millis(100);
    let mut failures: u32 = 0;
    loop {
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = shutdown.cancelled() => break,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                failures = 0;
                router.metrics.mqtt_connected.set(1);
                router.metrics.mqtt_connections.inc();
                info!(filter = %filter, "connected to the MQTT broker; subscribing");
                if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    warn!(error = %e, "subscribe request could not be queued");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => router.route(&p.topic, p.payload),
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                info!(codes = ?s.return_codes, "subscribed");
            }
            Ok(_) => {}
            Err(e) => {
                router.metrics.mqtt_connected.set(0);
                failures += 1;
                // The first refusal is usually a broker still starting; say so from the second on.
                if failures >= 2 && failures.is_power_of_two() {
                    warn!(error = %e, retry_in = ?backoff, attempts = failures, "MQTT connection failed");
                }
                // Jitter from the sub-millisecond part of the clock keeps a fleet of gateways apart.
                let jitter = Duration::from_millis((router.clock.now().timestamp_subsec_micros() % 250) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(backoff + jitter) => {}
                    _ = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    router.metrics.mqtt_connected.set(0);
    let _ = client.try_disconnect();
    // Give the DISCONNECT a moment to leave, so the broker does not wait for our keep-alive.
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
}
