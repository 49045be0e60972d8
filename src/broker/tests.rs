//! The embedded broker against real MQTT clients (rumqttc) over loopback TCP,
//! with ingest stood in for by the shards' own queue.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::ingest::payload::Channel;
use crate::ingest::shard::Msg;

struct Fixture {
    addr: SocketAddr,
    /// What ingest received, in order.
    rx: mpsc::Receiver<Msg>,
    metrics: Arc<Metrics>,
    fleet: Arc<crate::fleet::Fleet>,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A broker on a free port whose ingest is one queue of `queue` messages, read by the test.
async fn broker(limits: Limits, queue: usize) -> Fixture {
    let fleet = crate::demo::config().unwrap().fleet;
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = mpsc::channel(queue);
    let router = Router {
        prefix: "aftercare".into(),
        fleet: Arc::clone(&fleet),
        shards: vec![tx],
        clock: Arc::new(crate::clock::SystemClock),
        metrics: Arc::clone(&metrics),
        max_payload: limits.max_payload,
    };
    let stop = CancellationToken::new();
    let (b, _task) = start(
        "127.0.0.1:0".parse().unwrap(),
        "aftercare".into(),
        limits,
        Arc::new(router),
        Arc::clone(&metrics),
        stop.clone(),
    )
    .await
    .unwrap();
    Fixture { addr: b.addr, rx, metrics, fleet, stop }
}

fn client(f: &Fixture, id: &str, opts: impl FnOnce(&mut MqttOptions)) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", f.addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(1 << 22, 1 << 22);
    opts(&mut o);
    AsyncClient::new(o, 64)
}

/// Polls until `want` matches an event; panics after 5 s.
async fn until(el: &mut EventLoop, what: &str, mut want: impl FnMut(&Event) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let Ok(ev) = tokio::time::timeout_at(deadline, el.poll()).await else { panic!("no {what} in 5 s") };
        match ev {
            Ok(e) if want(&e) => return,
            Ok(_) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// Drives a client in the background until its connection ends (it does not reconnect).
fn drive(mut el: EventLoop) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while el.poll().await.is_ok() {} })
}

async fn next(f: &mut Fixture) -> Msg {
    tokio::time::timeout(Duration::from_secs(5), f.rx.recv()).await.expect("a message for ingest in 5 s").unwrap()
}

fn device(f: &Fixture, m: &Msg) -> String {
    f.fleet.device(m.device).id.0.clone()
}

fn rejected(f: &Fixture, reason: &'static str) -> u64 {
    f.metrics.rejected.get_or_create(&crate::metrics::ReasonLabel { reason }).get()
}

#[tokio::test]
async fn publishes_at_every_qos_reach_ingest_once_and_are_acknowledged() {
    let mut f = broker(Limits::default(), 64).await;
    let (c, mut el) = client(&f, "rec-001", |_| {});
    until(&mut el, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
    let body = br#"{"metrics": {"temp_c": 30}}"#.to_vec();
    let topic = "aftercare/site-a/rec-001/telemetry";
    c.publish(topic, QoS::AtMostOnce, false, body.clone()).await.unwrap();
    c.publish(topic, QoS::AtLeastOnce, false, body.clone()).await.unwrap();
    until(&mut el, "PUBACK", |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await;
    c.publish(topic, QoS::ExactlyOnce, false, body.clone()).await.unwrap();
    until(&mut el, "PUBCOMP", |e| matches!(e, Event::Incoming(Packet::PubComp(_)))).await;
    for _ in 0..3 {
        let m = next(&mut f).await;
        assert_eq!((device(&f, &m), m.channel, m.payload.as_ref()), ("rec-001".into(), Channel::Telemetry, &body[..]));
    }
    assert!(f.rx.try_recv().is_err(), "each publish once");
    // A topic outside the prefix is not for ingest; one under it with a level too many is counted.
    c.publish("elsewhere/x", QoS::AtLeastOnce, false, body.clone()).await.unwrap();
    c.publish("aftercare/site-a/rec-001/telemetry/extra", QoS::AtLeastOnce, false, body).await.unwrap();
    until(&mut el, "PUBACK", |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await;
    until(&mut el, "PUBACK", |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await;
    assert_eq!(rejected(&f, "bad_topic"), 1);
    assert!(f.rx.try_recv().is_err());
}

#[tokio::test]
async fn a_message_over_the_limit_is_skipped_and_counted_and_the_connection_stays() {
    let limits = Limits { max_payload: 64 * 1024, ..Default::default() };
    let mut f = broker(limits, 64).await;
    let (c, mut el) = client(&f, "rec-001", |_| {});
    until(&mut el, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
    let big = format!(r#"{{"metrics": {{"firmware": "{}"}}}}"#, "x".repeat(3 << 20));
    c.publish("aftercare/site-a/rec-001/telemetry", QoS::AtLeastOnce, true, big).await.unwrap();
    until(&mut el, "PUBACK of the oversized message", |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await;
    c.publish("aftercare/site-a/rec-001/telemetry", QoS::AtLeastOnce, false, r#"{"metrics": {}}"#).await.unwrap();
    until(&mut el, "PUBACK", |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await;
    let m = next(&mut f).await;
    assert_eq!(m.payload.as_ref(), br#"{"metrics": {}}"#);
    assert_eq!(rejected(&f, "oversized"), 1);
    assert_eq!(f.metrics.broker_connections_total.get(), 1, "one connection all along");
    // Nothing of it was retained.
    assert!(f.rx.try_recv().is_err());
}

#[tokio::test]
async fn a_lost_client_s_will_is_published_and_a_taken_over_one_s_comes_before_the_new_connack() {
    let mut f = broker(Limits::default(), 64).await;
    let will = |id: &str| {
        let id = id.to_string();
        move |o: &mut MqttOptions| {
            o.set_last_will(LastWill::new(format!("aftercare/site-a/{id}/status"), "offline", QoS::AtLeastOnce, true));
        }
    };
    // A power cut: the socket just goes.
    let (_c, mut el) = client(&f, "rec-001", will("rec-001"));
    until(&mut el, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
    drop(el);
    let m = next(&mut f).await;
    assert_eq!((device(&f, &m), m.channel, m.payload.as_ref()), ("rec-001".into(), Channel::Status, &b"offline"[..]));
    // A clean DISCONNECT: no will.
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let mut connect = rumqttc::mqttbytes::v4::Connect::new("rec-002");
    connect.last_will = Some(LastWill::new("aftercare/site-a/rec-002/status", "offline", QoS::AtMostOnce, false));
    s.write_all(&conn::encode(Packet::Connect(connect))).await.unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    s.write_all(&[0xe0, 0]).await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0, "closed after DISCONNECT");
    // The same client id twice: the first goes, its will before the second is acknowledged.
    let (_a, mut first) = client(&f, "swh-001", will("swh-001"));
    until(&mut first, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
    let first_task = drive(first);
    let (b, mut second) = client(&f, "swh-001", |_| {});
    until(&mut second, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
    b.publish("aftercare/site-a/swh-001/status", QoS::AtLeastOnce, true, "online").await.unwrap();
    until(&mut second, "PUBACK", |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await;
    let will_msg = next(&mut f).await;
    let online = next(&mut f).await;
    assert_eq!(will_msg.payload.as_ref(), b"offline");
    assert_eq!(online.payload.as_ref(), b"online");
    assert!(f.rx.try_recv().is_err(), "rec-002 left cleanly: no will");
    first_task.abort();
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_one_and_a_half_keep_alives() {
    let mut f = broker(Limits::default(), 64).await;
    // A raw client that connects with a 1 s keep-alive and a will, then says nothing.
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let mut connect = rumqttc::mqttbytes::v4::Connect::new("rec-001");
    connect.keep_alive = 1;
    connect.last_will = Some(LastWill::new("aftercare/site-a/rec-001/status", "offline", QoS::AtMostOnce, false));
    s.write_all(&conn::encode(Packet::Connect(connect))).await.unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0]);
    let started = tokio::time::Instant::now();
    let m = next(&mut f).await;
    assert_eq!(m.payload.as_ref(), b"offline");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_secs(3), "{waited:?}");
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0, "the broker closed the connection");
}

#[tokio::test]
async fn subscribers_get_what_is_published_and_what_was_retained() {
    let f = broker(Limits::default(), 1024).await;
    let (p, mut pel) = client(&f, "rec-001", |_| {});
    until(&mut pel, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
    p.publish("aftercare/site-a/rec-001/status", QoS::AtLeastOnce, true, "online").await.unwrap();
    until(&mut pel, "PUBACK", |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await;
    let _publisher = drive(pel);

    let (s, mut sel) = client(&f, "watcher", |_| {});
    until(&mut sel, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
    s.subscribe("aftercare/+/+/status", QoS::AtLeastOnce).await.unwrap();
    let mut retained = None;
    until(&mut sel, "the retained status", |e| match e {
        Event::Incoming(Packet::Publish(m)) => {
            retained = Some((m.topic.clone(), m.payload.clone(), m.retain));
            true
        }
        _ => false,
    })
    .await;
    assert_eq!(retained, Some(("aftercare/site-a/rec-001/status".into(), "online".into(), true)));
    p.publish("aftercare/site-a/rec-001/status", QoS::AtMostOnce, false, "offline").await.unwrap();
    p.publish("aftercare/site-a/rec-001/telemetry", QoS::AtMostOnce, false, "{}").await.unwrap();
    let mut live = None;
    until(&mut sel, "a live message", |e| match e {
        Event::Incoming(Packet::Publish(m)) => {
            live = Some((m.topic.clone(), m.payload.clone(), m.retain));
            true
        }
        _ => false,
    })
    .await;
    assert_eq!(live, Some(("aftercare/site-a/rec-001/status".into(), "offline".into(), false)));
}

#[tokio::test]
async fn a_full_ingest_holds_the_publisher_back_and_loses_nothing() {
    // Ingest takes 4 messages at a time and nobody reads them yet: the publisher must wait.
    let mut f = broker(Limits::default(), 4).await;
    let (c, el) = client(&f, "rec-001", |o| {
        o.set_inflight(1000);
    });
    let _publisher = drive(el);
    let n = 2000;
    let body = format!(r#"{{"metrics": {{"firmware": "{}"}}}}"#, "y".repeat(512));
    let publish = tokio::spawn(async move {
        for _ in 0..n {
            c.publish("aftercare/site-a/rec-001/telemetry", QoS::AtMostOnce, false, body.clone()).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.rx.len(), 4, "the queue is full and stays so while nobody reads it");
    let mut got = 0;
    while got < n {
        next(&mut f).await;
        got += 1;
    }
    publish.await.unwrap();
    assert_eq!(rejected(&f, "queue_full"), 0);
    assert!(f.metrics.ingest_waits.get() > 0, "ingest waited for room");
}

#[tokio::test]
async fn clients_beyond_the_limit_and_mqtt_5_are_refused_with_a_reason() {
    let f = broker(Limits { max_connections: 1, ..Default::default() }, 64).await;
    let (_a, mut a) = client(&f, "one", |_| {});
    until(&mut a, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
    let _first = drive(a);
    let (_b, mut b) = client(&f, "two", |_| {});
    match tokio::time::timeout(Duration::from_secs(5), b.poll()).await.unwrap() {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::ServiceUnavailable)
        }
        other => panic!("{other:?}"),
    }
    // MQTT 5's CONNECT: protocol level 5.
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    s.write_all(&[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 10, 0, 0, 0]).await.unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 2, 0, 1], "CONNACK: unacceptable protocol version");
    let refused =
        |r: &'static str| f.metrics.broker_refused.get_or_create(&crate::metrics::ReasonLabel { reason: r }).get();
    assert_eq!((refused("max_connections"), refused("protocol_version")), (1, 1));
}

#[tokio::test]
async fn a_client_that_breaks_the_protocol_is_closed_and_its_will_published() {
    let mut f = broker(Limits::default(), 64).await;
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let mut connect = rumqttc::mqttbytes::v4::Connect::new("rec-001");
    connect.last_will = Some(LastWill::new("aftercare/site-a/rec-001/status", "offline", QoS::AtMostOnce, false));
    s.write_all(&conn::encode(Packet::Connect(connect))).await.unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    // A publish to a topic with a wildcard.
    let bad = rumqttc::mqttbytes::v4::Publish::new("aftercare/+/x", QoS::AtMostOnce, "{}");
    s.write_all(&conn::encode(Packet::Publish(bad))).await.unwrap();
    let m = next(&mut f).await;
    assert_eq!(m.payload.as_ref(), b"offline");
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0);
}

#[test]
fn filters_match_topics_level_by_level_whatever_their_characters() {
    for (topic, filter, want) in [
        ("a/b/c", "a/+/c", true),
        ("a/b/c", "a/#", true),
        ("a", "a/#", true),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
        ("é/x", "#", true),
        ("é/x", "+/x", true),
        ("灯/1", "灯/+", true),
        ("$SYS/x", "#", false),
        ("$SYS/x", "$SYS/#", true),
    ] {
        assert_eq!(matches(topic, filter), want, "{topic} against {filter}");
    }
}

#[tokio::test]
async fn a_topic_of_any_characters_breaks_nothing_and_every_connection_is_given_back() {
    let f = broker(Limits { max_connections: 3, ..Default::default() }, 64).await;
    let (s, mut sel) = client(&f, "watcher", |_| {});
    until(&mut sel, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
    s.subscribe("#", QoS::AtMostOnce).await.unwrap();
    until(&mut sel, "SUBACK", |e| matches!(e, Event::Incoming(Packet::SubAck(_)))).await;
    // Publishers come and go, on topics whose first character takes more than a byte.
    for i in 0..10 {
        let (p, mut pel) = client(&f, &format!("p{i}"), |_| {});
        until(&mut pel, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
        p.publish("é/x", QoS::AtLeastOnce, true, "1").await.unwrap();
        until(&mut pel, "PUBACK", |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await;
    }
    let mut got = 0;
    until(&mut sel, "a message on é/x", |e| {
        got += usize::from(matches!(e, Event::Incoming(Packet::Publish(m)) if m.topic == "é/x"));
        got > 0
    })
    .await;
    // Ten connections came and went under a limit of three: every one was given back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.metrics.broker_connections.get(), 1, "only the watcher is left");
    let (_late, mut lel) = client(&f, "late", |_| {});
    until(&mut lel, "CONNACK", |e| matches!(e, Event::Incoming(Packet::ConnAck(_)))).await;
}
