//! What a device or a broker can throw at ingest: bad clocks, huge messages,
//! topics of the wrong shape, alarms sent once across a crash, a broker that
//! goes away; and what the daemon tells Prometheus and `/healthz` about it.

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

use super::one_ticket;
use crate::harness::*;

/// A client of the daemon's broker, driven in the background (reconnecting as needed).
fn publisher(d: &Daemon, id: &str) -> AsyncClient {
    publisher_at(&d.mqtt, &d.prefix, id)
}

/// A client of the broker at `mqtt` (host:port).
fn publisher_at(mqtt: &str, prefix: &str, id: &str) -> AsyncClient {
    let (host, port) = mqtt.rsplit_once(':').unwrap();
    let mut o = MqttOptions::new(format!("{prefix}-{id}"), host, port.parse().unwrap());
    o.set_max_packet_size(64 << 20, 64 << 20);
    let (client, mut el) = AsyncClient::new(o, 100);
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

async fn rejected(d: &Daemon, reason: &str) -> f64 {
    metric(d, &format!("aftercare_messages_rejected_total{{reason=\"{reason}\"}}")).await
}

/// Publishes `body` to a device's topic until `done` holds (the daemon's subscription may still be on its way).
async fn publish_until<F, Fut>(c: &AsyncClient, topic: &str, body: &str, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(what, 30, || {
        let fut = c.publish(topic, QoS::AtLeastOnce, false, body.to_string());
        let check = done();
        async move {
            fut.await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            check.await.then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_timestamps_are_refused_and_never_blind_a_device() {
    for broker in brokers() {
        bad_timestamps_are_refused_and_never_blind_a_device_on(&broker).await;
    }
}

async fn bad_timestamps_are_refused_and_never_blind_a_device_on(broker: &Broker) {
    let fleet = ["lit-101:lighting"];
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", broker);
    let d = Daemon::start(dir, &prefix, broker);
    let c = publisher(&d, "dev");
    let topic = format!("{prefix}/site-a/lit-101/telemetry");
    let calm = r#""metrics": {"leakage_ma": 2, "scheduled_on": false}"#;
    // Once, a clock in the year 2100.
    publish_until(
        &c,
        &topic,
        &format!(r#"{{"ts": "2100-01-01T00:00:00Z", {calm}}}"#),
        "a future ts refused",
        || async { rejected(&d, "future_timestamp").await >= 1.0 },
    )
    .await;
    // Epoch seconds where milliseconds are expected (1970-01-21), and a number beyond any date.
    for ts in ["1732000000", "9000000000000000000"] {
        c.publish(&topic, QoS::AtLeastOnce, false, format!(r#"{{"ts": {ts}, {calm}}}"#)).await.unwrap();
    }
    // Cut off right after the time's key: malformed, not a bad time.
    c.publish(&topic, QoS::AtLeastOnce, false, r#"{"ts""#).await.unwrap();
    wait_for("bad times and a cut-off message counted", 20, || async {
        (rejected(&d, "bad_timestamp").await >= 2.0 && rejected(&d, "malformed").await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(rejected(&d, "out_of_order").await, 0.0);
    assert!(d.log().contains("epoch milliseconds"), "the log says which unit was expected:\n{}", d.log());

    // The device is not blinded: a real leakage with no ts opens its tier-1 ticket, and it is online.
    publish_until(
        &c,
        &topic,
        r#"{"metrics": {"leakage_ma": 45, "scheduled_on": false}}"#,
        "the leakage ticket",
        || async { !tickets_for(&d, "lit-101", "leakage").await.is_empty() },
    )
    .await;
    let t = one_ticket(&d, "lit-101", "leakage", "opened", |_| true).await;
    assert_eq!(t["tier"], json!(1));
    assert_eq!(get(&d.url("/api/v1/devices/lit-101")).await["online"], json!(true));
    // A time a little ahead of the gateway (within max_clock_skew) is the device's own and stands.
    #[allow(clippy::disallowed_methods)]
    let soon = (chrono::Utc::now() + chrono::TimeDelta::minutes(2)).to_rfc3339();
    let before = metric(&d, "aftercare_messages_accepted_total").await;
    c.publish(&topic, QoS::AtLeastOnce, false, format!(r#"{{"ts": "{soon}", {calm}}}"#)).await.unwrap();
    wait_for("a slightly fast clock accepted", 20, || async {
        (metric(&d, "aftercare_messages_accepted_total").await > before).then_some(())
    })
    .await;
    assert_eq!(rejected(&d, "future_timestamp").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_counted_and_the_connection_stays() {
    for broker in brokers() {
        an_oversized_message_is_counted_and_the_connection_stays_on(&broker).await;
    }
}

async fn an_oversized_message_is_counted_and_the_connection_stays_on(broker: &Broker) {
    let fleet = ["lit-102:lighting"];
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", broker);
    let d = Daemon::start(dir, &prefix, broker);
    let c = publisher(&d, "dev");
    let topic = format!("{prefix}/site-a/lit-102/telemetry");
    // 3 MiB, retained: a broker hands it over again on every new connection.
    let big = format!(r#"{{"metrics": {{"firmware": "{}"}}}}"#, "x".repeat(3 << 20));
    c.publish(&topic, QoS::AtLeastOnce, true, big).await.unwrap();
    wait_for("the oversized message counted", 30, || async { (rejected(&d, "oversized").await >= 1.0).then_some(()) })
        .await;
    // A tier-1 fault right after it still opens its ticket, on the same connection.
    publish_until(&c, &topic, r#"{"metrics": {"leakage_ma": 45}}"#, "the leakage ticket", || async {
        !tickets_for(&d, "lit-102", "leakage").await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Broker::External(_) = broker {
        assert_eq!(metric(&d, "aftercare_mqtt_connections_total").await, 1.0, "no reconnect loop");
    }
    assert_eq!(rejected(&d, "oversized").await, 1.0, "counted once");
    let health = get(&d.url("/healthz")).await;
    assert_eq!((health["status"].as_str(), health["mqtt"]["connected"].as_bool()), (Some("ok"), Some(true)));
    // Leave the broker as it was.
    c.publish(&topic, QoS::AtLeastOnce, true, Vec::<u8>::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_sent_once_opens_its_ticket_after_a_kill_during_its_hold() {
    for broker in brokers() {
        an_alarm_sent_once_opens_its_ticket_after_a_kill_during_its_hold_on(&broker).await;
    }
}

/// rec-201 with its storage_failure hold shortened to 3 s.
fn recorder_daemon_dir(broker: &Broker) -> (tempfile::TempDir, String) {
    let (dir, prefix) = Daemon::setup(&["rec-201:recorder"], "10m", "10m", broker);
    let kind = dir.path().join("kinds/recorder.toml");
    let text = std::fs::read_to_string(&kind).unwrap().replacen("hold = \"30s\"", "hold = \"3s\"", 1);
    std::fs::write(&kind, text).unwrap();
    (dir, prefix)
}

async fn an_alarm_sent_once_opens_its_ticket_after_a_kill_during_its_hold_on(broker: &Broker) {
    let (dir, prefix) = recorder_daemon_dir(broker);
    let d = Daemon::start(dir, &prefix, broker);
    let c = publisher(&d, "rec");
    let event = format!("{prefix}/site-a/rec-201/event");
    // The alarm, once, as devices send it; the daemon dies before the rule's hold is over.
    publish_until(&c, &event, r#"{"code": "SD_ERR", "active": true}"#, "the alarm taken", || async {
        metric(&d, "aftercare_messages_accepted_total").await >= 1.0
    })
    .await;
    // The alarm reaches the store within a writer batch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = d.kill9();
    assert!(
        std::fs::metadata(dir.path().join("data/aftercare.db")).is_ok(),
        "the daemon had its store before it was killed"
    );
    let d = Daemon::start(dir, &prefix, broker);
    let t = one_ticket(&d, "rec-201", "storage_failure", "opened after the restart", |_| true).await;
    assert_eq!(t["tier"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_sent_while_the_daemon_is_down_waits_in_the_broker() {
    // The embedded broker is down with the daemon; this is about an external one's persistent session.
    let Some(Broker::External(url)) = brokers().into_iter().find(|b| matches!(b, Broker::External(_))) else {
        eprintln!("AFTERCARE_TEST_MQTT_URL is not set: skipping");
        return;
    };
    let broker = Broker::External(url.clone());
    let (dir, prefix) = recorder_daemon_dir(&broker);
    let d = Daemon::start(dir, &prefix, &broker);
    wait_for("connected and subscribed", 20, || async {
        (metric(&d, "aftercare_mqtt_connected").await == 1.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (clean, dir) = d.terminate();
    assert!(clean);
    let c = publisher_at(url.trim_start_matches("mqtt://").trim_end_matches('/'), &prefix, "rec");
    c.publish(
        format!("{prefix}/site-a/rec-201/event"),
        QoS::AtLeastOnce,
        false,
        r#"{"code": "SD_ERR", "active": true}"#,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = Daemon::start(dir, &prefix, &broker);
    let t = one_ticket(&d, "rec-201", "storage_failure", "opened from what the broker kept", |_| true).await;
    assert_eq!(t["tier"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_when_and_why_the_broker_is_gone_and_fails_after_a_while() {
    // Daemon A is only a broker; daemon B uses it as its external broker and watches its link.
    let (dir_a, prefix_a) = Daemon::setup(&[], "30s", "10m", &Broker::Embedded);
    let a = Daemon::start(dir_a, &prefix_a, &Broker::Embedded);
    let external = Broker::External(format!("mqtt://{}", a.mqtt));
    let (dir_b, prefix) = Daemon::setup(&["rec-202:recorder"], "30s", "10m", &external);
    let cfg = dir_b.path().join("aftercare.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("[broker]\n", "[broker]\nunhealthy_after = \"2s\"\n", 1);
    std::fs::write(&cfg, text).unwrap();
    let b = Daemon::start(dir_b, &prefix, &external);
    wait_for("B connected", 20, || async { (get(&b.url("/healthz")).await["status"] == json!("ok")).then_some(()) })
        .await;

    let _ = a.terminate();
    let h = wait_for("B degraded", 20, || async {
        let h = get(&b.url("/healthz")).await;
        (h["status"] == json!("degraded")).then_some(h)
    })
    .await;
    assert_eq!(h["mqtt"]["connected"], json!(false), "{h:#}");
    assert!(h["mqtt"]["last_error"].is_string(), "it says why: {h:#}");
    let (code, h) = wait_for("B unhealthy", 20, || async {
        let r = api().get(b.url("/healthz")).send().await.unwrap();
        let code = r.status().as_u16();
        let h: Value = r.json().await.unwrap();
        (code == 503).then_some((code, h))
    })
    .await;
    assert_eq!((code, h["status"].as_str()), (503, Some("mqtt_disconnected")));
    assert!(b.log().contains("MQTT connection lost or refused"), "{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_what_prometheus_asks_for_and_pass_promtool() {
    let fleet = ["lit-103:lighting"];
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    let d = Daemon::start(dir, &prefix, &broker);
    let c = publisher(&d, "dev");
    let topic = format!("{prefix}/site-a/lit-103/telemetry");
    // A fault, its clear, and the same clear again (which changes no ticket).
    publish_until(&c, &topic, r#"{"metrics": {"leakage_ma": 45}}"#, "a ticket", || async {
        !tickets_for(&d, "lit-103", "leakage").await.is_empty()
    })
    .await;
    c.publish(&topic, QoS::AtLeastOnce, false, r#"{"metrics": {"nonsense": 1"#).await.unwrap();
    wait_for("a rejection counted", 20, || async { (rejected(&d, "malformed").await >= 1.0).then_some(()) }).await;

    let text = api().get(d.url("/metrics")).send().await.unwrap();
    assert!(
        text.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"),
        "{:?}",
        text.headers()
    );
    let text = text.text().await.unwrap();
    assert!(text.contains("# TYPE aftercare_messages_received_total counter"), "{text}");
    assert!(!text.contains("event=\"nothing\""), "{text}");
    let om = api().get(d.url("/metrics")).header("accept", "application/openmetrics-text; version=1.0.0").send().await;
    let om = om.unwrap();
    assert!(om.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert!(om.text().await.unwrap().trim_end().ends_with("# EOF"));

    let Some(promtool) = promtool() else { return };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n---\n{text}");
}

fn promtool() -> Option<&'static str> {
    if std::process::Command::new("promtool").arg("--version").output().is_ok() {
        return Some("promtool");
    }
    if std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() {
        panic!("promtool is missing; scripts/peers.sh installs Debian's prometheus package");
    }
    eprintln!("promtool is not installed: skipping its check");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_sim_stops_on_a_signal_while_its_input_is_open() {
    for signal in ["-TERM", "-INT"] {
        let mut child = std::process::Command::new(sim_binary())
            .args(["run", "--broker", "mqtt://127.0.0.1:9", "--device", "lit-1:lighting:site-a"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _stdin = child.stdin.take();
        std::thread::sleep(Duration::from_millis(500));
        let _ = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status();
        let mut stopped = false;
        for _ in 0..100 {
            if child.try_wait().unwrap().is_some() {
                stopped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(stopped, "firmware-sim ignored kill {signal} while its standard input was open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_churn_on_the_embedded_broker_does_not_flood_the_log() {
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&["lit-104:lighting"], "30s", "10m", &broker);
    let d = Daemon::start(dir, &prefix, &broker);
    let (host, port) = d.mqtt.rsplit_once(':').unwrap();
    for i in 0..150 {
        let o = MqttOptions::new(format!("{prefix}-churn-{i}"), host, port.parse().unwrap());
        let (c, mut el) = AsyncClient::new(o, 10);
        // Connected, then gone: half say goodbye, half just drop.
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) = el.poll().await.unwrap() {
                break;
            }
        }
        if i % 2 == 0 {
            c.disconnect().await.unwrap();
            let _ = tokio::time::timeout(Duration::from_millis(50), el.poll()).await;
        }
    }
    wait_for("every churned connection counted", 10, || async {
        (metric(&d, "aftercare_broker_accepted_connections_total").await >= 150.0).then_some(())
    })
    .await;
    let log = d.log();
    let lines = log.lines().filter(|l| l.contains("MQTT client connected") || l.contains("MQTT client gone")).count();
    assert!(lines <= 6, "{lines} log lines for 150 connections:\n{log}");
    assert!(log.contains("similar_suppressed"), "{log}");
}

/// More than the daemon's queues hold, faster than it takes them: every message is taken and
/// every raise the publisher counted is a ticket or an occurrence. Through the embedded broker
/// the publisher is held back; through Mosquitto the backlog waits in the broker, at QoS 0 and
/// QoS 1, and the connection stays up all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_queues_loses_no_message_and_no_raise() {
    flood_on(&Broker::Embedded, 0).await;
    if let Some((_mosquitto, url, _dir)) = own_mosquitto() {
        flood_on(&Broker::External(url.clone()), 0).await;
        flood_on(&Broker::External(url), 1).await;
    }
}

async fn flood_on(broker: &Broker, qos: u8) {
    const DEVICES: usize = 100;
    const MESSAGES: u64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("flood{}q{qos}{}", std::process::id(), matches!(broker, Broker::Embedded));
    std::fs::write(
        dir.path().join("meter.toml"),
        "[kinds.meter]\ntitle = \"Meter\"\nheartbeat = \"1h\"\n[kinds.meter.metrics]\n\
         storage_used_pct = {}\nrecording = { type = \"bool\" }\nstatus_flags = {}\nbattery_pct = {}\n\
         charging = { type = \"bool\" }\nclock_offset_s = {}\ntemp_c = {}\n\
         [[kinds.meter.rules]]\ncode = \"over_temperature\"\ntier = 2\ntitle = \"Over-temperature\"\n\
         raise = { threshold = { metric = \"temp_c\", op = \">\", value = 70 } }\nhold = \"0s\"\n\
         clear = { threshold = { metric = \"temp_c\", op = \"<\", value = 65 } }\n",
    )
    .unwrap();
    let broker_cfg = match broker {
        Broker::External(url) => format!("embedded = false\nurl = \"{url}\"\nclient_id = \"{prefix}-gw\""),
        Broker::Embedded => "embedded = true\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true".to_string(),
    };
    // The smallest shard queues there are, so that the flood fills them.
    let mut cfg = format!(
        "include = [\"meter.toml\"]\n[broker]\n{broker_cfg}\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [store]\npath = \"data/aftercare.db\"\n[ingest]\ntopic_prefix = \"{prefix}\"\nshards = 2\nqueue_capacity = 64\n\
         [[sites]]\nid = \"load\"\n[[customers]]\nid = \"c\"\n"
    );
    for i in 0..DEVICES {
        cfg.push_str(&format!(
            "[[devices]]\nid = \"m-{i:05}\"\nkind = \"meter\"\nsite = \"load\"\ncustomer = \"c\"\naccepted_on = \"2025-01-01\"\n"
        ));
    }
    std::fs::write(dir.path().join("aftercare.toml"), cfg).unwrap();
    let d = Daemon::start(dir, &prefix, broker);
    wait_for("connected to the broker", 20, || async {
        (metric(&d, "aftercare_mqtt_connected").await == 1.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let out = tokio::process::Command::new(sim_binary())
        .args(["load", "--broker", &format!("mqtt://{}", d.mqtt), "--prefix", &prefix, "--site", "load"])
        .args(["--id-prefix", "m-", "--devices", &DEVICES.to_string(), "--messages", &MESSAGES.to_string()])
        .args(["--spike-pct", "5", "--qos", &qos.to_string(), "--connections", "2"])
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let raises: u64 = report.lines().find_map(|l| l.strip_prefix("raises ")).unwrap().parse().unwrap();
    assert!(raises > 1000, "{report}");

    let what = format!("{MESSAGES} messages accepted ({broker:?}, QoS {qos})");
    wait_for(&what, 180, || async {
        (metric(&d, "aftercare_messages_accepted_total").await >= MESSAGES as f64).then_some(())
    })
    .await;
    let what = format!("{raises} raises as tickets or occurrences ({broker:?}, QoS {qos})");
    let occurrences = wait_for(&what, 60, || async {
        let v = get(&d.url("/api/v1/tickets?code=over_temperature&limit=10000")).await;
        let n: u64 = v.as_array().unwrap().iter().map(|t| t["occurrences"].as_u64().unwrap()).sum();
        (n >= raises).then_some(n)
    })
    .await;
    assert_eq!(occurrences, raises);
    let text = api().get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let rejected: Vec<&str> =
        text.lines().filter(|l| l.starts_with("aftercare_messages_rejected_total{") && !l.ends_with(" 0")).collect();
    assert!(rejected.is_empty(), "nothing is rejected for load: {rejected:?}");
    assert_eq!(metric(&d, "aftercare_messages_accepted_total").await, MESSAGES as f64);
    assert!(metric(&d, "aftercare_ingest_waits_total").await > 0.0, "the flood filled the queues ({broker:?})");
    if matches!(broker, Broker::External(_)) {
        assert_eq!(metric(&d, "aftercare_mqtt_connections_total").await, 1.0, "the connection stayed up");
    }
    let (clean, _) = d.terminate();
    assert!(clean);
}
