//! Benchmark of the InfluxDB writer (not a timed test). Run with
//! `cargo bench --bench influx`; figures go to docs/PERF.md.
//!
//! 1,000,000 lines of lighting telemetry (7 fields each) are made as the
//! shards make them, batched into the spool (a temporary folder) and sent to
//! the server at AFTERCARE_BENCH_INFLUX_URL (default VictoriaMetrics on
//! 127.0.0.1:18428, as scripts/peers.sh starts it), gzipped. Measured: lines
//! a second from the first line made to the last line accepted, with the
//! encoding, the spool and the sender sharing the two cores with the server.
#![allow(clippy::disallowed_methods)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aftercare::domain::Value;
use aftercare::history::influx::{self, InfluxConfig};
use aftercare::history::spool::Spool;
use aftercare::metrics::Metrics;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

const LINES: usize = 1_000_000;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = std::env::var("AFTERCARE_BENCH_INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:18428".into());
    if reqwest::get(format!("{url}/health")).await.is_err() {
        println!("no server at {url}: start one with scripts/peers.sh, or set AFTERCARE_BENCH_INFLUX_URL");
        return;
    }
    let config = aftercare::demo::config().unwrap();
    let fleet = Arc::clone(&config.fleet);
    let dev = fleet.lookup("lit-001").unwrap();
    let p = fleet.profile_of(dev);
    let metrics_of: Vec<u16> =
        ["circuits_total", "circuits_lit", "total_current_a", "rated_current_a", "leakage_ma", "voltage_v"]
            .iter()
            .map(|m| p.metric(m).unwrap())
            .collect();
    let on = p.metric("scheduled_on").unwrap();
    for gzip in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = InfluxConfig {
            url: url.clone(),
            org: "o".into(),
            bucket: "bench".into(),
            token: None,
            batch_lines: 5000,
            batch_age: Duration::from_secs(1),
            gzip,
            timeout: Duration::from_secs(30),
            spool_dir: dir.path().to_path_buf(),
            spool_max_bytes: 4 << 30,
        };
        let metrics = Arc::new(Metrics::new());
        let spool = Arc::new(Mutex::new(Spool::open(dir.path(), cfg.spool_max_bytes).unwrap()));
        let wake = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let start = Instant::now();
        let batcher =
            tokio::spawn(influx::batcher(cfg.clone(), Arc::clone(&spool), Arc::clone(&wake), Arc::clone(&metrics), rx));
        let sender = tokio::spawn(influx::sender(cfg.clone(), spool, wake, Arc::clone(&metrics), stop.clone()));
        // As the shards do: 256 KB chunks of lines, each reading at its own millisecond.
        let t0 = 1_780_000_000_000i64 + (gzip as i64) * 10_000_000_000;
        let mut buf = Vec::with_capacity(300 * 1024);
        let mut n = 0;
        for i in 0..LINES {
            let x = (i % 1000) as f64 / 10.0;
            let mut readings: Vec<(u16, Value)> = metrics_of.iter().map(|m| (*m, Value::Num(x))).collect();
            readings.push((on, Value::Bool(i % 2 == 0)));
            if influx::encode_line(&fleet, dev, t0 + i as i64, &readings, &mut buf) {
                n += 1;
            }
            if buf.len() >= 256 * 1024 {
                tx.send((bytes::Bytes::from(std::mem::take(&mut buf)), n)).await.unwrap();
                n = 0;
            }
        }
        tx.send((bytes::Bytes::from(buf), n)).await.unwrap();
        drop(tx);
        let made = start.elapsed();
        batcher.await.unwrap();
        while metrics.influx_lines_written.get() < LINES as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all = start.elapsed();
        stop.cancel();
        let _ = sender.await;
        println!(
            "{LINES} lines, gzip {gzip}: made and spooled in {:.2} s, all accepted after {:.2} s: {:.0} lines/s",
            made.as_secs_f64(),
            all.as_secs_f64(),
            LINES as f64 / all.as_secs_f64()
        );
    }
}
