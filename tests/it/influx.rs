//! Telemetry to a server of the InfluxDB v2 write API: VictoriaMetrics (from
//! `scripts/peers.sh`) behind the test's own proxy, for an outage and a
//! restart; and a small HTTP server of the test's own for the error paths
//! (VictoriaMetrics accepts bad lines silently).

use std::io::Read as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::all_online;
use super::proxy::{Mode, Proxy};
use crate::harness::*;

fn vm_url() -> Option<String> {
    match std::env::var("AFTERCARE_TEST_VM_URL") {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() => {
            panic!("AFTERCARE_TEST_VM_URL is not set; run `eval \"$(scripts/peers.sh)\"` first")
        }
        _ => {
            eprintln!(
                "AFTERCARE_TEST_VM_URL is not set: skipping; `eval \"$(scripts/peers.sh)\"` starts VictoriaMetrics"
            );
            None
        }
    }
}

/// A daemon for `fleet` that writes telemetry to `url`.
fn setup(fleet: &[&str], url: &str) -> (tempfile::TempDir, String) {
    let (dir, prefix) = Daemon::setup(fleet, "30s", "10m", &Broker::Embedded);
    let path = dir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path).unwrap()
        + &format!(
            "[history.influxdb]\nurl = \"{url}\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t0ken\"\nbatch_age = \"200ms\"\ntimeout = \"2s\"\n"
        );
    std::fs::write(&path, cfg).unwrap();
    (dir, prefix)
}

/// The samples VictoriaMetrics holds for a device's metric: their timestamps.
async fn samples(vm: &str, metric: &str, device: &str) -> Vec<i64> {
    let q = format!("{{__name__=\"{metric}\",device=\"{device}\"}}");
    let r = http().get(format!("{vm}/api/v1/export")).query(&[("match[]", q.as_str())]).send().await.unwrap();
    let text = r.text().await.unwrap();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        out.extend(v["timestamps"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()));
    }
    out
}

/// How many readings of `metric` the daemon folded into its hourly rollups.
async fn rollup_count(d: &Daemon, device: &str, metric: &str) -> u64 {
    let h = get(
        &d.url(&format!("/api/v1/devices/{device}/history?metric={metric}&from=2026-06-20&to=2026-06-23&step=24h"))
    )
    .await;
    h["points"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_reaches_victoriametrics_once_across_an_outage_and_a_restart() {
    let Some(vm) = vm_url() else { return };
    let proxy = Proxy::start(vm.strip_prefix("http://").unwrap().parse().unwrap()).await;
    // A device id of this run's own: VictoriaMetrics keeps earlier runs' series.
    #[allow(clippy::disallowed_methods)]
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 1_000_000;
    let id = format!("lit-vm{}-{n}", std::process::id());
    let dev = format!("{id}:lighting");
    let fleet = [dev.as_str()];
    let (dir, prefix) = setup(&fleet, &format!("http://{}", proxy.addr));
    let d = Daemon::start(dir, &prefix, &Broker::Embedded);
    let sim = Sim::start(&d, &fleet);
    all_online(&d, 1).await;
    wait_for("the first points in VictoriaMetrics", 30, || async {
        (!samples(&vm, "lighting_leakage_ma", &id).await.is_empty()).then_some(())
    })
    .await;

    // The server goes away; telemetry keeps coming, and the daemon is restarted meanwhile.
    proxy.set(Mode::Down);
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(sim);
    let (clean, dir) = d.terminate();
    assert!(clean);
    let d = Daemon::start(dir, &prefix, &Broker::Embedded);
    let sim = Sim::start(&d, &fleet);
    all_online(&d, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(metric(&d, "aftercare_influx_failed_attempts_total").await >= 1.0, "the outage was felt");
    drop(sim);
    // Everything the daemon took in is in its rollups once it stops; then the server comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (clean, dir) = d.terminate();
    assert!(clean);
    proxy.set(Mode::Up);
    let d = Daemon::start(dir, &prefix, &Broker::Embedded);
    let want = rollup_count(&d, &id, "leakage_ma").await;
    assert!(want >= 10, "{want} readings");
    let got = wait_for("every point in VictoriaMetrics", 60, || async {
        let s = samples(&vm, "lighting_leakage_ma", &id).await;
        (s.len() as u64 >= want).then_some(s)
    })
    .await;
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), got.len(), "no point twice");
    assert_eq!(got.len() as u64, want, "every reading once, none lost across the outage and the restart");
    assert_eq!(metric(&d, "aftercare_influx_spool_torn_frames_total").await, 0.0);
}

/// What the test's own server answers next, in order; then 204 for ever.
struct Script {
    answers: Mutex<Vec<(u16, &'static str)>>,
    /// (content-encoding, body, authorization) of every request.
    got: Mutex<Vec<(String, String, String)>>,
    accepted_lines: AtomicUsize,
}

async fn write(
    axum::extract::State(s): axum::extract::State<Arc<Script>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, [(&'static str, &'static str); 1], String) {
    let enc = headers.get("content-encoding").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let text = if enc == "gzip" {
        let mut out = String::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut out).unwrap();
        out
    } else {
        String::from_utf8_lossy(&body).to_string()
    };
    s.got.lock().unwrap().push((enc, text.clone(), auth));
    let next = {
        let mut a = s.answers.lock().unwrap();
        if a.is_empty() { (204, "") } else { a.remove(0) }
    };
    if next.0 == 204 {
        s.accepted_lines.fetch_add(text.lines().count(), Ordering::SeqCst);
    }
    let code = axum::http::StatusCode::from_u16(next.0).unwrap();
    (code, [("retry-after", "1")], next.1.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_errors_are_retried_or_reported_never_retried_for_ever() {
    let script = Arc::new(Script {
        answers: Mutex::new(vec![
            (415, "gzip? no"),
            (400, "{\"code\":\"invalid\",\"message\":\"unable to parse line 1\"}"),
            (401, "{\"code\":\"unauthorized\",\"message\":\"token expired\"}"),
            (503, "busy"),
            (429, "slow down"),
        ]),
        got: Mutex::new(Vec::new()),
        accepted_lines: AtomicUsize::new(0),
    });
    let app = axum::Router::new().route("/api/v2/write", axum::routing::post(write)).with_state(Arc::clone(&script));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let fleet = ["lit-012:lighting"];
    let (dir, prefix) = setup(&fleet, &format!("http://{addr}"));
    let d = Daemon::start(dir, &prefix, &Broker::Embedded);
    let _sim = Sim::start(&d, &fleet);
    wait_for("lines accepted after the errors", 30, || async {
        (script.accepted_lines.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let got = script.got.lock().unwrap().clone();
    // gzip first; after the 415 plain; the token goes along.
    assert_eq!(got[0].0, "gzip");
    assert!(got[1..].iter().all(|g| g.0.is_empty()), "{:?}", got.iter().map(|g| &g.0).collect::<Vec<_>>());
    assert!(got.iter().all(|g| g.2 == "Token t0ken"));
    assert!(got[0].1.starts_with("lighting,customer=cust-1,device=lit-012,site=site-a "), "{}", got[0].1);
    // The 415 resent the batch (with what queued up since, after it); 400 and 401 each dropped
    // what they were sent (reported, not retried); 503 and 429 were retried from the same batch.
    let first_line = |b: &str| b.lines().next().unwrap_or_default().to_string();
    assert!(got[1].1.starts_with(&got[0].1));
    assert!(!got[2].1.contains(&first_line(&got[1].1)), "a refused batch is not sent again");
    assert!(!got[3].1.contains(&first_line(&got[2].1)), "a refused batch is not sent again");
    assert!(got[4].1.starts_with(&got[3].1));
    assert!(got[5].1.starts_with(&got[4].1));
    assert_eq!(metric(&d, "aftercare_influx_refused_batches_total").await, 2.0);
    assert!(metric(&d, "aftercare_influx_failed_attempts_total").await >= 2.0);
    let log = d.log();
    assert!(
        log.contains("unable to parse line 1") && log.contains("token expired"),
        "the server's message is reported"
    );
    assert_eq!(get(&d.url("/healthz")).await["status"], json!("ok"));
}
