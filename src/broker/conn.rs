//! One client connection of the embedded broker: CONNECT, then publishes,
//! subscriptions and pings until the client leaves, its keep-alive runs out,
//! another connection takes its client id, or the daemon stops.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Protocol, QoS};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection's halves, over TCP or TLS.
type Rd = Box<dyn AsyncRead + Send + Unpin>;
type Wr = Box<dyn AsyncWrite + Send + Unpin>;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{CHURN_LOG, Outgoing, PROTOCOL_LOG, Session, Shared};

/// A read buffer larger than this is given back once it is empty again.
const KEEP_BUFFER: usize = 64 * 1024;
/// Control packets other than PUBLISH and CONNECT are small; a larger one is an attack or a bug.
const MAX_CONTROL: usize = 64 * 1024;
/// The read buffer grows by at most this much at a time, as bytes arrive.
const RESERVE_STEP: usize = 64 * 1024;
/// QoS 2 publishes received and not yet released that a client may have at once.
const MAX_QOS2_PENDING: usize = 1024;
/// A write that takes longer than this means the client stopped reading: it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

const PUBLISH: u8 = 3;
const CONNECT: u8 = 1;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client sent DISCONNECT: no will.
    Disconnect,
    /// The daemon stops: no will, since nothing is left to take it.
    Shutdown,
    /// Anything else publishes the will: the socket closed, the keep-alive ran out, the
    /// protocol was broken, another connection took the client id.
    Lost(&'static str),
}

/// A fixed header: first byte, its own length, and the length of what follows it.
fn fixed_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, &'static str> {
    let Some(&byte1) = buf.first() else { return Ok(None) };
    let mut len = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else { return Ok(None) };
        len |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((byte1, 2 + i, len)));
        }
    }
    Err("a remaining length longer than 4 bytes")
}

/// What an authenticated client may do.
struct Grant {
    /// Its publishes, will and subscriptions stay under this prefix.
    topics: String,
    /// It subscribes and never publishes.
    read_only: bool,
}

impl Grant {
    fn may_publish(&self, topic: &str) -> bool {
        !self.read_only && topic.starts_with(self.topics.as_str())
    }
}

struct Conn {
    id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    wr: Wr,
    out: BytesMut,
    client_id: String,
    /// Subscriptions' queue, made at the first SUBSCRIBE.
    outgoing: Option<(mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>)>,
    /// QoS 2 packet ids received and not yet released, so that a resent one is not taken twice.
    qos2: HashSet<u16>,
    /// Bytes of an oversized publish still to be skipped.
    skip: usize,
    /// The topic prefix its user may publish and subscribe under; `None`: anywhere.
    grant: Option<Grant>,
}

pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, id: u64, shared: Arc<Shared>, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    // Counted from the first byte, CONNECT or not, so that connections that never say who they
    // are cannot pile up past the limit; the slot gives everything back however this ends.
    let over = shared.connections.fetch_add(1, Ordering::AcqRel) >= shared.limits.max_connections;
    let mut slot = Slot { shared: Arc::clone(&shared), id, client_id: None, gone: None, counted: false };
    let (mut rd, wr): (Rd, Wr) = match &shared.limits.tls {
        None => {
            let (r, w) = stream.into_split();
            (Box::new(r), Box::new(w))
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(config));
            let handshake = tokio::select! {
                h = tokio::time::timeout(shared.limits.connect_timeout, acceptor.accept(stream)) => h,
                _ = stop.cancelled() => return,
            };
            match handshake {
                Ok(Ok(tls)) => {
                    let (r, w) = tokio::io::split(tls);
                    (Box::new(r), Box::new(w))
                }
                Ok(Err(_)) | Err(_) => {
                    refused(&shared, "tls", peer, "no TLS handshake");
                    return;
                }
            }
        }
    };
    let mut buf = BytesMut::with_capacity(1024);
    let mut conn = Conn {
        id,
        peer,
        shared: Arc::clone(&shared),
        wr,
        out: BytesMut::new(),
        client_id: String::new(),
        outgoing: None,
        qos2: HashSet::new(),
        skip: 0,
        grant: None,
    };
    let connect = tokio::select! {
        c = tokio::time::timeout(shared.limits.connect_timeout, read_connect(&mut rd, &mut buf, &shared)) => c,
        _ = stop.cancelled() => return,
    };
    let connect = match connect {
        Ok(Ok(c)) => c,
        Ok(Err(why)) => {
            refused(&shared, "protocol", peer, why);
            return;
        }
        Err(_) => {
            refused(&shared, "connect_timeout", peer, "no CONNECT in time");
            return;
        }
    };
    if connect.protocol != Protocol::V4 {
        let _ = conn.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::RefusedProtocolVersion, false))).await;
        refused(&shared, "protocol_version", peer, "MQTT 5: this broker speaks MQTT 3.1.1");
        return;
    }
    if connect.client_id.is_empty() && !connect.clean_session {
        let _ = conn.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::BadClientId, false))).await;
        refused(&shared, "client_id", peer, "an empty client id asks for a session that cannot be kept");
        return;
    }
    let login = connect.login.as_ref().map(|l| (l.username.as_str(), l.password.as_str()));
    match shared.limits.auth.check(login) {
        Ok(user) => conn.grant = user.map(|u| Grant { topics: u.topics.clone(), read_only: u.read_only }),
        Err(why) => {
            let (code, reason) = match why {
                crate::ingest::mqtt::AuthRefusal::NotAuthorized => (ConnectReturnCode::NotAuthorized, "anonymous"),
                crate::ingest::mqtt::AuthRefusal::BadPassword => (ConnectReturnCode::BadUserNamePassword, "password"),
            };
            let _ = conn.send(Packet::ConnAck(ConnAck::new(code, false))).await;
            refused(&shared, reason, peer, "no valid user name and password");
            return;
        }
    }
    if let (Some(grant), Some(will)) = (&conn.grant, &connect.last_will)
        && !grant.may_publish(&will.topic)
    {
        let _ = conn.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false))).await;
        refused(&shared, "acl", peer, "a will outside the client's own topics");
        return;
    }
    if over {
        let _ = conn.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::ServiceUnavailable, false))).await;
        refused(&shared, "max_connections", peer, "broker.max_connections reached");
        return;
    }
    shared.metrics.broker_connections.inc();
    shared.metrics.broker_connections_total.inc();
    slot.counted = true;
    conn.client_id =
        if connect.client_id.is_empty() { format!("aftercare-anonymous-{id}") } else { connect.client_id.clone() };

    // A second connection with the same client id takes over: the first closes (its will
    // published) before this one is acknowledged, so their messages never cross.
    let kick = Arc::new(Notify::new());
    let (gone_tx, gone_rx) = watch::channel(false);
    let old = {
        let mut sessions = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.insert(conn.client_id.clone(), Session { conn: id, kick: Arc::clone(&kick), gone: gone_rx })
    };
    slot.client_id = Some(conn.client_id.clone());
    slot.gone = Some(gone_tx);
    if let Some(mut old) = old {
        old.kick.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(5), old.gone.wait_for(|g| *g)).await;
    }

    let end = match conn.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await {
        Ok(()) => {
            if let Some(held) = CHURN_LOG.allow() {
                info!(client = %conn.client_id, %peer, similar_suppressed = held, "MQTT client connected");
            }
            conn.run(&mut rd, &mut buf, connect.keep_alive, &kick, &stop).await
        }
        Err(_) => End::Lost("the socket failed"),
    };

    shared.unsubscribe(id, None);
    if let (End::Lost(why), Some(will)) = (end, connect.last_will) {
        debug!(client = %conn.client_id, why, topic = %will.topic, "publishing the client's will");
        publish_will(&shared, will).await;
    }
    // The session goes, and a connection taking it over goes on, only after the will.
    drop(slot);
    if let Some(held) = CHURN_LOG.allow() {
        let why = match end {
            End::Disconnect => "disconnected",
            End::Shutdown => "shutting down",
            End::Lost(why) => why,
        };
        info!(client = %conn.client_id, %peer, why, similar_suppressed = held, "MQTT client gone");
    }
}

/// What a connection holds in the broker's shared state, given back when it ends, even by a panic.
struct Slot {
    shared: Arc<Shared>,
    id: u64,
    /// The client id it registered its session under.
    client_id: Option<String>,
    /// Told when it is gone, so that a connection taking its client id over may go on.
    gone: Option<watch::Sender<bool>>,
    /// Whether it was counted as connected (past CONNACK).
    counted: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(cid) = &self.client_id {
            let mut sessions = self.shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if sessions.get(cid).is_some_and(|s| s.conn == self.id) {
                sessions.remove(cid);
            }
        }
        self.shared.unsubscribe(self.id, None);
        if let Some(g) = self.gone.take() {
            let _ = g.send(true);
        }
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        if self.counted {
            self.shared.metrics.broker_connections.dec();
        }
    }
}

async fn publish_will(shared: &Shared, will: LastWill) {
    if !will.topic.is_empty() && rumqttc::valid_topic(&will.topic) && will.message.len() <= shared.limits.max_payload {
        shared.publish(&will.topic, Bytes::copy_from_slice(&will.message), will.retain).await;
    }
}

fn refused(shared: &Shared, reason: &'static str, peer: SocketAddr, why: &str) {
    shared.metrics.broker_refused.get_or_create(&crate::metrics::ReasonLabel { reason }).inc();
    if let Some(held) = PROTOCOL_LOG.allow() {
        warn!(%peer, reason, why, similar_suppressed = held, "MQTT client refused");
    }
}

/// Reads until a whole CONNECT is in; anything else first is a protocol error.
async fn read_connect(rd: &mut Rd, buf: &mut BytesMut, shared: &Shared) -> Result<Connect, &'static str> {
    // A will's payload may be as large as any publish.
    let max = MAX_CONTROL + shared.limits.max_payload;
    loop {
        if let Some((byte1, head, len)) = fixed_header(buf)? {
            if byte1 >> 4 != CONNECT {
                return Err("the first packet is not CONNECT");
            }
            if len > max {
                return Err("a CONNECT too large");
            }
            if buf.len() >= head + len {
                return match Packet::read(buf, max) {
                    Ok(Packet::Connect(c)) => Ok(c),
                    _ => Err("a malformed CONNECT"),
                };
            }
            // Room as the bytes come, never on a header's word alone.
            buf.reserve((head + len - buf.len()).min(RESERVE_STEP));
        } else {
            buf.reserve(64);
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return Err("closed before CONNECT"),
            Ok(_) => {}
        }
    }
}

impl Conn {
    async fn run(
        &mut self,
        rd: &mut Rd,
        buf: &mut BytesMut,
        keep_alive: u16,
        kick: &Notify,
        stop: &CancellationToken,
    ) -> End {
        // MQTT: a client silent for one and a half times its keep-alive is gone.
        let grace = (keep_alive > 0).then(|| Duration::from_millis(keep_alive as u64 * 1500));
        let mut deadline = grace.map(|g| tokio::time::Instant::now() + g);
        // Bytes that came with the CONNECT.
        if let Err(end) = self.frames(buf).await {
            return end;
        }
        loop {
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(1024);
            }
            let keep_alive_over = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => return End::Shutdown,
                _ = kick.notified() => return End::Lost("another connection took its client id"),
                n = rd.read_buf(buf) => {
                    match n {
                        Ok(0) => return End::Lost("the connection closed"),
                        Err(_) => return End::Lost("the connection failed"),
                        Ok(_) => {}
                    }
                    deadline = grace.map(|g| tokio::time::Instant::now() + g);
                    if let Err(end) = self.frames(buf).await {
                        return end;
                    }
                    if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
                        *buf = BytesMut::with_capacity(1024);
                    }
                }
                Some(o) = recv(&mut self.outgoing) => {
                    let mut p = Publish::from_bytes(o.topic.as_ref(), QoS::AtMostOnce, o.payload);
                    p.retain = o.retain;
                    if self.send(Packet::Publish(p)).await.is_err() {
                        return End::Lost("a subscriber stopped reading");
                    }
                }
                _ = keep_alive_over => return End::Lost("its keep-alive ran out"),
            }
        }
    }

    /// Handles every whole packet in `buf`; leaves a partial one there.
    async fn frames(&mut self, buf: &mut BytesMut) -> Result<(), End> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                buf.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(());
                }
            }
            let Some((byte1, head, len)) = fixed_header(buf).map_err(|w| self.violation(w))? else {
                return Ok(());
            };
            if byte1 >> 4 == PUBLISH {
                if !self.publish(buf, byte1, head, len).await? {
                    return Ok(());
                }
                continue;
            }
            if len > MAX_CONTROL {
                return Err(self.violation("a control packet larger than 64 KiB"));
            }
            if buf.len() < head + len {
                buf.reserve((head + len - buf.len()).min(RESERVE_STEP));
                return Ok(());
            }
            let packet = Packet::read(buf, MAX_CONTROL).map_err(|_| self.violation("a malformed packet"))?;
            self.control(packet).await?;
        }
    }

    /// Takes the PUBLISH at the front of `buf`, or skips it if its payload is too large.
    /// `Ok(false)`: more bytes are needed first.
    async fn publish(&mut self, buf: &mut BytesMut, byte1: u8, head: usize, len: usize) -> Result<bool, End> {
        let qos = (byte1 >> 1) & 0b11;
        if qos == 3 {
            return Err(self.violation("a publish with QoS 3"));
        }
        if buf.len() < head + 2 {
            return Ok(false);
        }
        let topic_len = u16::from_be_bytes([buf[head], buf[head + 1]]) as usize;
        let variable = 2 + topic_len + if qos > 0 { 2 } else { 0 };
        if variable > len {
            return Err(self.violation("a publish shorter than its topic"));
        }
        let payload_len = len - variable;
        let oversized = payload_len > self.shared.limits.max_payload;
        // The topic and packet id first: enough to acknowledge and count an oversized one.
        let needed = if oversized { head + variable } else { head + len };
        if buf.len() < needed {
            buf.reserve((needed - buf.len()).min(RESERVE_STEP));
            return Ok(false);
        }
        let topic = std::str::from_utf8(&buf[head + 2..head + 2 + topic_len])
            .map_err(|_| self.violation("a topic that is not UTF-8"))?;
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(self.violation("a publish to an empty topic or one with wildcards"));
        }
        let pkid = if qos > 0 { u16::from_be_bytes([buf[head + variable - 2], buf[head + variable - 1]]) } else { 0 };
        let retain = byte1 & 1 == 1;
        if oversized {
            self.shared.oversized(topic, payload_len);
            let here = buf.len().min(head + len);
            buf.advance(here);
            self.skip = head + len - here;
        } else {
            // A copy of exactly the payload: a queued message never pins the read buffer.
            let payload = Bytes::copy_from_slice(&buf[head + variable..head + len]);
            let topic = topic.to_string();
            buf.advance(head + len);
            // QoS 2 is taken once per packet id, however often the client resends it before PUBREL.
            if qos == 2 && self.qos2.len() >= MAX_QOS2_PENDING && !self.qos2.contains(&pkid) {
                return Err(self.violation("more than 1024 QoS 2 publishes not released"));
            }
            let fresh = qos < 2 || self.qos2.insert(pkid);
            let allowed = self.grant.as_ref().is_none_or(|g| g.may_publish(&topic));
            if !allowed {
                // As Mosquitto does: acknowledged as usual, and dropped.
                refused(&self.shared, "acl", self.peer, "a publish outside the client's own topics");
            } else if fresh {
                self.shared.publish(&topic, payload, retain).await;
            }
        }
        match qos {
            1 => self.ack(0x40, pkid).await?,
            2 => self.ack(0x50, pkid).await?,
            _ => {}
        }
        Ok(true)
    }

    async fn control(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::PingReq => self.send(Packet::PingResp).await.map_err(|_| End::Lost("the socket failed")),
            Packet::Disconnect => Err(End::Disconnect),
            Packet::PubRel(r) => {
                self.qos2.remove(&r.pkid);
                self.ack(0x70, r.pkid).await
            }
            Packet::Subscribe(s) => {
                let (tx, _) = self.outgoing.get_or_insert_with(|| mpsc::channel(self.shared.limits.subscriber_queue));
                let tx = tx.clone();
                let mut codes = Vec::with_capacity(s.filters.len());
                for f in &s.filters {
                    let ok = f.path.len() <= super::MAX_FILTER_LEN
                        && rumqttc::valid_filter(&f.path)
                        && self.grant.as_ref().is_none_or(|g| f.path.starts_with(g.topics.as_str()))
                        && self.shared.subscribe(self.id, &f.path, &tx);
                    // Delivered at QoS 0, whatever was asked: the broker keeps no state per message.
                    codes.push(if ok {
                        SubscribeReasonCode::Success(QoS::AtMostOnce)
                    } else {
                        SubscribeReasonCode::Failure
                    });
                }
                self.send(Packet::SubAck(SubAck::new(s.pkid, codes))).await.map_err(|_| End::Lost("the socket failed"))
            }
            Packet::Unsubscribe(u) => {
                for t in &u.topics {
                    self.shared.unsubscribe(self.id, Some(t));
                }
                self.send(Packet::UnsubAck(UnsubAck::new(u.pkid))).await.map_err(|_| End::Lost("the socket failed"))
            }
            // Acknowledgements of what we never send at QoS above 0: nothing to do.
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => Ok(()),
            Packet::Connect(_) => Err(self.violation("a second CONNECT")),
            _ => Err(self.violation("a packet only a broker sends")),
        }
    }

    /// A PUBACK (0x40), PUBREC (0x50) or PUBCOMP (0x70).
    async fn ack(&mut self, kind: u8, pkid: u16) -> Result<(), End> {
        let [hi, lo] = pkid.to_be_bytes();
        self.write(&[kind, 2, hi, lo]).await.map_err(|_| End::Lost("the socket failed"))
    }

    async fn send(&mut self, p: Packet) -> std::io::Result<()> {
        self.out.clear();
        p.write(&mut self.out, usize::MAX).map_err(|e| std::io::Error::other(e.to_string()))?;
        let out = std::mem::take(&mut self.out);
        let r = self.write(&out).await;
        self.out = out;
        r
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.wr.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    fn violation(&self, why: &'static str) -> End {
        self.shared.metrics.broker_refused.get_or_create(&crate::metrics::ReasonLabel { reason: "protocol" }).inc();
        if let Some(held) = PROTOCOL_LOG.allow() {
            warn!(client = %self.client_id, peer = %self.peer, why, similar_suppressed = held,
                  "MQTT client broke the protocol; closing its connection");
        }
        End::Lost(why)
    }
}

/// The next message for a subscriber, or never for a connection that subscribed to nothing.
async fn recv(outgoing: &mut Option<(mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>)>) -> Option<Outgoing> {
    match outgoing {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
pub(super) fn encode(p: Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    let _ = p.write(&mut b, usize::MAX);
    b.to_vec()
}
