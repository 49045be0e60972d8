//! MQTT in: the [`Router`] that hands each message to the shard owning its
//! device, and the client of an external broker. (The embedded broker calls
//! the router itself.)
//!
//! Routing waits while a shard's queue is full: the reading stops, and an
//! overload shows as a backlog in the broker, which is made to hold one,
//! never as messages lost here. The client keeps a persistent session (QoS 1,
//! a client id of its own), so a backlog also waits in the broker across a
//! restart of the daemon; it subscribes on every connection, takes messages
//! of any size (one too large is skipped and counted, and the connection
//! stays), and says on `/healthz` and in the log when and why it is cut off.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Reject;
use super::payload::parse_topic;
use super::shard::Msg;
use crate::clock::{Clock, Stopwatch};
use crate::domain::DeviceIdx;
use crate::fleet::Fleet;
use crate::metrics::Metrics;

/// The largest packet MQTT can frame (its remaining length is at most 268,435,455): nothing a
/// broker sends can break the connection by its size. Ours is lower, and counted.
const MAX_PACKET: usize = 268_435_455 + 5;

/// How the daemon reaches its MQTT broker.
#[derive(Debug, Clone)]
pub enum BrokerMode {
    /// rumqttd inside the daemon, listening here (port 0: any free port).
    Embedded { listen: std::net::SocketAddr },
    External {
        tls: bool,
        host: String,
        port: u16,
        username: Option<String>,
        password: Option<secrecy::SecretString>,
        ca_file: Option<std::path::PathBuf>,
        /// A client certificate chain and its key (PEM), for mutual TLS.
        client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    },
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub mode: BrokerMode,
    /// The external broker's client id; by default `aftercare-` and this installation's id, so
    /// that two daemons never take each other's session.
    pub client_id: Option<String>,
    pub keep_alive: Duration,
    /// Disconnected this long, `/healthz` answers 503.
    pub unhealthy_after: Duration,
    /// The embedded broker's limit of clients connected at once.
    pub max_connections: usize,
    /// Who may connect to the embedded broker.
    pub auth: MqttAuth,
    /// The embedded broker speaks MQTT over TLS with this (read from `broker.tls`'s PEM files).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Who may connect to the embedded broker, and under which topics each may publish.
#[derive(Debug, Clone, Default)]
pub struct MqttAuth {
    /// Clients with no user name (or an unknown one) connect, and publish anywhere.
    pub allow_anonymous: bool,
    pub users: Vec<MqttUser>,
}

/// A device (user name: its id) or a site's gateway (its site's id), and where it publishes.
#[derive(Debug, Clone)]
pub struct MqttUser {
    pub name: String,
    pub password: secrecy::SecretString,
    /// The topic prefix its publishes, will and subscriptions must be under, such as
    /// `aftercare/site-a/rec-001/`.
    pub topics: String,
    /// A monitor (a dashboard, `mosquitto_sub`): it subscribes and never publishes.
    pub read_only: bool,
}

impl MqttAuth {
    /// What a CONNECT with `login` may do: `Ok(None)` anything (anonymous, allowed),
    /// `Ok(Some(user))` what that user may, `Err` refused (a wrong or missing password).
    pub fn check(&self, login: Option<(&str, &str)>) -> Result<Option<&MqttUser>, AuthRefusal> {
        use subtle::ConstantTimeEq as _;
        let Some((name, password)) = login else {
            return if self.allow_anonymous { Ok(None) } else { Err(AuthRefusal::NotAuthorized) };
        };
        match self.users.iter().find(|u| u.name == name) {
            Some(u) => {
                let want = secrecy::ExposeSecret::expose_secret(&u.password).as_bytes();
                if bool::from(want.ct_eq(password.as_bytes())) { Ok(Some(u)) } else { Err(AuthRefusal::BadPassword) }
            }
            None if self.allow_anonymous => Ok(None),
            None => Err(AuthRefusal::BadPassword),
        }
    }
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No credentials, and anonymous clients are not allowed.
    NotAuthorized,
    /// An unknown user or a wrong password.
    BadPassword,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MqttSetupError {
    #[error("reading the broker's CA file {path}: {source}")]
    CaFile { path: String, source: std::io::Error },
    #[error("the broker's CA file {0} holds no usable certificate")]
    NoCerts(String),
    #[error("the client certificate: {0}")]
    ClientCert(String),
}

/// Client options for an external broker; `None` for the embedded one, which needs no client.
pub(crate) fn options(cfg: &BrokerConfig, client_id: &str) -> Result<Option<MqttOptions>, MqttSetupError> {
    let BrokerMode::External { host, port, tls, username, password, ca_file, client_cert } = &cfg.mode else {
        return Ok(None);
    };
    let mut opts = MqttOptions::new(client_id, host, *port);
    opts.set_keep_alive(cfg.keep_alive);
    opts.set_max_packet_size(MAX_PACKET, 64 * 1024);
    // The broker keeps our subscription and what arrives for it while we are away.
    opts.set_clean_session(false);
    if let Some(u) = username {
        let p = password.as_ref().map(|p| p.expose_secret().to_string()).unwrap_or_default();
        opts.set_credentials(u, p);
    }
    if *tls {
        opts.set_transport(Transport::tls_with_config(tls_config(ca_file.as_deref(), client_cert.as_ref())?));
    }
    Ok(Some(opts))
}

fn tls_config(
    ca_file: Option<&std::path::Path>,
    client_cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<TlsConfiguration, MqttSetupError> {
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
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let cfg = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, key_der) = crate::tls::identity(cert, key).map_err(MqttSetupError::ClientCert)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| MqttSetupError::ClientCert(e.to_string()))?
        }
    };
    Ok(TlsConfiguration::Rustls(Arc::new(cfg)))
}

/// The state of the daemon's link to its broker, for `/healthz`.
#[derive(Debug)]
pub(crate) struct Link {
    connected: AtomicBool,
    /// Gateway time (ms) since which it is connected, or disconnected.
    since_ms: AtomicI64,
    /// Why the last connection ended or the last attempt failed.
    error: Mutex<Option<String>>,
}

/// What `/healthz` says of the broker link.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct LinkStatus {
    pub connected: bool,
    pub since: DateTime<Utc>,
    pub error: Option<String>,
}

impl Link {
    /// A link that is down since `now` (it has not connected yet).
    pub(crate) fn new(now: DateTime<Utc>) -> Link {
        Link {
            connected: AtomicBool::new(false),
            since_ms: AtomicI64::new(now.timestamp_millis()),
            error: Mutex::new(None),
        }
    }
    /// The embedded broker's link: ingest is in the same process, always connected.
    pub(crate) fn in_process(now: DateTime<Utc>) -> Link {
        let l = Link::new(now);
        l.connected.store(true, Ordering::Relaxed);
        l
    }
    fn up(&self, now: DateTime<Utc>) {
        if !self.connected.swap(true, Ordering::AcqRel) {
            self.since_ms.store(now.timestamp_millis(), Ordering::Relaxed);
        }
    }
    fn down(&self, now: DateTime<Utc>, why: String) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.since_ms.store(now.timestamp_millis(), Ordering::Relaxed);
        }
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
    pub(crate) fn status(&self) -> LinkStatus {
        LinkStatus {
            connected: self.connected.load(Ordering::Acquire),
            since: DateTime::from_timestamp_millis(self.since_ms.load(Ordering::Relaxed)).unwrap_or_default(),
            error: self.error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// Routes messages to shards.
pub(crate) struct Router {
    pub prefix: String,
    pub fleet: Arc<Fleet>,
    pub shards: Vec<mpsc::Sender<Msg>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// A larger payload is rejected `oversized`.
    pub max_payload: usize,
}

impl Router {
    /// Routes one message to the shard that owns its device, waiting while that shard's queue
    /// is full. Returns at once for a message it rejects, counted by reason.
    pub(crate) async fn route(&self, topic: &str, payload: Bytes) {
        self.metrics.received.inc();
        if payload.len() > self.max_payload {
            return self.reject(topic, Reject::Oversized, payload.len());
        }
        let (idx, channel) = match self.target(topic) {
            Ok(t) => t,
            Err(r) => return self.reject(topic, r, payload.len()),
        };
        let shard = &self.shards[idx.0 as usize % self.shards.len()];
        let msg = Msg {
            device: idx,
            channel,
            payload,
            recv_ms: self.clock.now().timestamp_millis(),
            recv: Stopwatch::start(),
            readings: Vec::new(),
        };
        match shard.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                // Ingest outran the rules: wait, and let the broker hold the rest.
                let sw = Stopwatch::start();
                let _ = shard.send(msg).await;
                self.metrics.ingest_waits.inc();
                self.metrics.ingest_wait_seconds.inc_by(sw.elapsed_secs());
            }
            // The shard stopped: the daemon is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// A message too large to take, skipped before its payload was read (embedded broker).
    pub(crate) fn oversized(&self, topic: &str, len: usize) {
        self.metrics.received.inc();
        self.reject(topic, Reject::Oversized, len);
    }

    fn target(&self, topic: &str) -> Result<(DeviceIdx, super::payload::Channel), Reject> {
        let (site, device, channel) = parse_topic(&self.prefix, topic)?;
        let idx = self.fleet.lookup(device).ok_or(Reject::UnknownDevice)?;
        if self.fleet.device(idx).site.as_str() != site {
            return Err(Reject::WrongSite);
        }
        Ok((idx, channel))
    }

    fn reject(&self, topic: &str, r: Reject, len: usize) {
        self.metrics.reject(r.label());
        if let Some(held) = r.may_log() {
            warn!(
                topic,
                reason = r.label(),
                hint = r.hint(),
                bytes = len,
                similar_suppressed = held,
                "message rejected"
            );
        }
    }
}

/// Why a connection to the broker ended, in words for the log and `/healthz`.
fn why(e: &ConnectionError) -> String {
    use rumqttc::StateError;
    match e {
        ConnectionError::ConnectionRefused(code) => format!("the broker refused the connection: {code:?}"),
        ConnectionError::NetworkTimeout => "no answer from the broker in time (connect timeout)".into(),
        ConnectionError::FlushTimeout => "the broker stopped reading (write timeout)".into(),
        ConnectionError::MqttState(StateError::AwaitPingResp) => {
            "the broker stopped answering pings (keep-alive timeout)".into()
        }
        ConnectionError::MqttState(StateError::ConnectionAborted) => "the broker closed the connection".into(),
        ConnectionError::Io(e) => format!("cannot reach the broker: {e}"),
        other => other.to_string(),
    }
}

/// Runs the client of an external broker until shutdown: connects, subscribes on every
/// ConnAck, routes publishes, and backs off between failed attempts.
pub(crate) async fn run(opts: MqttOptions, router: Router, link: Arc<Link>, shutdown: CancellationToken) {
    // Wide enough to see (and count) a topic with a level too many or too few.
    let filter = format!("{}/#", router.prefix);
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
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                failures = 0;
                link.up(router.clock.now());
                router.metrics.mqtt_connected.set(1);
                router.metrics.mqtt_connections.inc();
                info!(filter = %filter, session_present = ack.session_present, "connected to the MQTT broker; subscribing");
                if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    warn!(error = %e, "subscribe request could not be queued");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => router.route(&p.topic, p.payload).await,
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                info!(codes = ?s.return_codes, "subscribed");
            }
            Ok(_) => {}
            Err(e) => {
                let reason = why(&e);
                let was_up = router.metrics.mqtt_connected.get() == 1;
                link.down(router.clock.now(), reason.clone());
                router.metrics.mqtt_connected.set(0);
                failures += 1;
                // Losing a connection is always told; failing to get one back, less and less often.
                if was_up || failures.is_power_of_two() {
                    warn!(reason = %reason, retry_in = ?backoff, attempts = failures, "MQTT connection lost or refused");
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
