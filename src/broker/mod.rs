//! The embedded MQTT broker: an MQTT 3.1.1 server inside the daemon, for a
//! site that runs no broker of its own.
//!
//! Devices connect to it as to any broker; what they publish under the topic
//! prefix goes straight to ingest, in process, and waits there while the shards
//! are full, so a flood slows the devices' connections instead of losing
//! messages. Other clients (a `mosquitto_sub` for a look, another aftercare
//! using it as its external broker) may subscribe and get what is published,
//! at QoS 0, from a bounded queue each: a slow one loses its own messages,
//! counted, and never holds up a device.
//!
//! Memory is bounded by configuration, not by traffic: per connection a read
//! buffer that starts at 1 KiB (and shrinks again after a large message), a
//! publish larger than `ingest.max_payload_bytes` is skipped as it streams in,
//! never buffered; payloads are copied out of the read buffer into exactly
//! sized blocks; retained messages are capped in total bytes; nothing is kept
//! for a client after it disconnects (every session is clean).

mod conn;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::LogLimiter;
use crate::ingest::mqtt::Router;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub(crate) enum BrokerError {
    #[error(
        "the embedded MQTT broker cannot listen on {addr}: {source}; set broker.listen to a free address, or port 0 for any"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Finds the address to listen on: `addr` itself, or a free port when its port is 0.
pub(crate) fn reserve(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    let l = std::net::TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    l.local_addr().map_err(|source| BrokerError::Bind { addr, source })
}

/// The embedded broker's limits.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Clients connected at once, at most; one more is refused (CONNACK 3, server unavailable).
    pub max_connections: usize,
    /// A publish with a larger payload is skipped and counted `oversized`.
    pub max_payload: usize,
    /// Bytes of retained messages (topics and payloads) kept at most; more are not retained.
    pub max_retained_bytes: usize,
    /// Messages queued for one subscriber at most; more are dropped for it and counted.
    pub subscriber_queue: usize,
    /// A connection that sends no CONNECT within this long is closed.
    pub connect_timeout: Duration,
    /// Who may connect, and where each may publish.
    pub auth: crate::ingest::mqtt::MqttAuth,
    /// Speak MQTT over TLS (mqtts) on the listener.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 20_000,
            max_payload: 64 * 1024,
            max_retained_bytes: 16 << 20,
            subscriber_queue: 1024,
            connect_timeout: Duration::from_secs(10),
            auth: crate::ingest::mqtt::MqttAuth { allow_anonymous: true, users: Vec::new() },
            tls: None,
        }
    }
}

/// Whether `topic` matches the subscription `filter` (`+` one level, `#` the rest). A topic
/// that starts with `$` matches no filter that starts with a wildcard (MQTT 3.1.1, 4.7.2).
pub(crate) fn matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(t) if f == "+" || f == t => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// Filters a subscriber may hold at once, and their longest length: a subscription costs a
/// scan on every publish.
const MAX_FILTERS: usize = 64;
const MAX_FILTER_LEN: usize = 1024;

/// A message on its way to a subscriber.
#[derive(Debug, Clone)]
struct Outgoing {
    topic: Arc<str>,
    payload: Bytes,
    retain: bool,
}

/// A subscriber's filter.
struct Subscription {
    conn: u64,
    filter: String,
    tx: mpsc::Sender<Outgoing>,
}

/// The connection that holds a client id, so that a second one with the same id takes over.
struct Session {
    conn: u64,
    kick: Arc<Notify>,
    gone: watch::Receiver<bool>,
}

#[derive(Default)]
struct Retained {
    messages: HashMap<String, Bytes>,
    bytes: usize,
}

/// What every connection shares.
pub(crate) struct Shared {
    router: Arc<Router>,
    /// Topics under this prefix (and the prefix itself) go to ingest.
    prefix: String,
    limits: Limits,
    metrics: Arc<Metrics>,
    sessions: Mutex<HashMap<String, Session>>,
    subscriptions: RwLock<Vec<Subscription>>,
    retained: Mutex<Retained>,
    connections: AtomicUsize,
    next_conn: AtomicU64,
}

/// Client connections and disconnections, at most one line per 10 s with a count of the rest.
static CHURN_LOG: LogLimiter = LogLimiter::new(10.0);
/// Clients that break the protocol, likewise.
static PROTOCOL_LOG: LogLimiter = LogLimiter::new(10.0);

impl Shared {
    /// A message a client published (or its will): to ingest, to subscribers, and kept if retained.
    async fn publish(&self, topic: &str, payload: Bytes, retain: bool) {
        if retain {
            self.retain(topic, &payload);
            // An empty retained message only deletes the one kept; it is not data.
            if payload.is_empty() {
                return;
            }
        }
        self.deliver(topic, &payload, false);
        if self.for_ingest(topic) {
            self.router.route(topic, payload).await;
        }
    }

    fn for_ingest(&self, topic: &str) -> bool {
        topic.strip_prefix(self.prefix.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// A publish too large to take, skipped as it streamed in.
    fn oversized(&self, topic: &str, len: usize) {
        if self.for_ingest(topic) {
            self.router.oversized(topic, len);
        } else {
            self.metrics.broker_skipped.inc();
        }
    }

    fn deliver(&self, topic: &str, payload: &Bytes, retain: bool) {
        let subs = self.subscriptions.read().unwrap_or_else(|p| p.into_inner());
        if subs.is_empty() {
            return;
        }
        let mut shared_topic: Option<Arc<str>> = None;
        for s in subs.iter().filter(|s| matches(topic, &s.filter)) {
            let topic = shared_topic.get_or_insert_with(|| Arc::from(topic)).clone();
            if s.tx.try_send(Outgoing { topic, payload: payload.clone(), retain }).is_err() {
                self.metrics.broker_dropped.inc();
            }
        }
    }

    fn retain(&self, topic: &str, payload: &Bytes) {
        let mut r = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = r.messages.remove(topic) {
            r.bytes -= topic.len() + old.len();
        }
        if payload.is_empty() {
            return;
        }
        let size = topic.len() + payload.len();
        if r.bytes + size > self.limits.max_retained_bytes {
            self.metrics.broker_retained_refused.inc();
            return;
        }
        r.bytes += size;
        // Copied, so that a retained payload never pins a larger block.
        r.messages.insert(topic.to_string(), Bytes::copy_from_slice(payload));
    }

    /// Adds a subscription and hands the retained messages it matches to its queue; false when
    /// the connection holds as many filters as it may.
    fn subscribe(&self, conn: u64, filter: &str, tx: &mpsc::Sender<Outgoing>) -> bool {
        {
            let mut subs = self.subscriptions.write().unwrap_or_else(|p| p.into_inner());
            if !subs.iter().any(|s| s.conn == conn && s.filter == filter) {
                if subs.iter().filter(|s| s.conn == conn).count() >= MAX_FILTERS {
                    return false;
                }
                subs.push(Subscription { conn, filter: filter.to_string(), tx: tx.clone() });
            }
        }
        let r = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, payload) in r.messages.iter().filter(|(t, _)| matches(t, filter)) {
            let o = Outgoing { topic: Arc::from(topic.as_str()), payload: payload.clone(), retain: true };
            if tx.try_send(o).is_err() {
                self.metrics.broker_dropped.inc();
            }
        }
        true
    }

    fn unsubscribe(&self, conn: u64, filter: Option<&str>) {
        let mut subs = self.subscriptions.write().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| s.conn != conn || filter.is_some_and(|f| f != s.filter));
    }
}

/// A running embedded broker.
pub(crate) struct Broker {
    pub addr: SocketAddr,
}

/// Listens on `addr` (port 0: any free port) and serves until `shutdown`; what is published
/// under `prefix` goes to `router`.
pub(crate) async fn start(
    addr: SocketAddr,
    prefix: String,
    limits: Limits,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(Broker, tokio::task::JoinHandle<()>), BrokerError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| BrokerError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| BrokerError::Bind { addr, source })?;
    let shared = Arc::new(Shared {
        router,
        prefix,
        limits,
        metrics,
        sessions: Mutex::new(HashMap::new()),
        subscriptions: RwLock::new(Vec::new()),
        retained: Mutex::new(Retained::default()),
        connections: AtomicUsize::new(0),
        next_conn: AtomicU64::new(1),
    });
    let task = tokio::spawn(accept(listener, shared, shutdown));
    Ok((Broker { addr }, task))
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                conns.spawn(conn::serve(stream, peer, id, Arc::clone(&shared), shutdown.clone()));
            }
            Err(e) => {
                // Out of file descriptors, most likely: wait a little rather than spin.
                if let Some(held) = PROTOCOL_LOG.allow() {
                    warn!(error = %e, similar_suppressed = held, "the embedded MQTT broker cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Connections end on the same token; give them a moment to close their sockets.
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while conns.join_next().await.is_some() {} }).await;
    info!("the embedded MQTT broker stopped");
}

#[cfg(test)]
mod tests;
