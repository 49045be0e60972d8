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
        let r = http().get(b.url("/healthz")).send().await.unwrap();
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

    let text = http().get(d.url("/metrics")).send().await.unwrap();
    assert!(
        text.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"),
        "{:?}",
        text.headers()
    );
    let text = text.text().await.unwrap();
    assert!(text.contains("# TYPE aftercare_messages_received_total counter"), "{text}");
    assert!(!text.contains("event=\"nothing\""), "{text}");
    let om = http().get(d.url("/metrics")).header("accept", "application/openmetrics-text; version=1.0.0").send().await;
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
