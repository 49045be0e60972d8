//! Telemetry to InfluxDB (or any server of its v2 write API, such as
//! VictoriaMetrics): line protocol made in the shards, batched by size and
//! age, written through the on-disk spool (so an outage or a restart loses
//! nothing within its quota), and sent oldest first, gzipped, with retries.
//!
//! The v2 write API is one POST; the `influxdb2` crate would add a second
//! HTTP stack (reqwest 0.11) and cannot gzip line protocol or show
//! `Retry-After`, so this speaks the API directly.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::spool::Spool;
use crate::domain::Value;
use crate::fleet::Fleet;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct InfluxConfig {
    /// The server's root, such as `http://127.0.0.1:8086`.
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: Option<SecretString>,
    pub batch_lines: usize,
    pub batch_age: Duration,
    pub gzip: bool,
    pub timeout: Duration,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
}

/// A chunk of line protocol from a shard, with how many lines it holds.
pub type Chunk = (Bytes, usize);

fn escape(out: &mut Vec<u8>, s: &str, also_eq: bool) {
    for b in s.bytes() {
        if b == b',' || b == b' ' || (also_eq && b == b'=') || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Appends one line: measurement = the kind, tags device, site and customer,
/// a field per number or bool, the reading's time in milliseconds.
/// Returns whether a line was written (a reading without numbers makes none).
pub fn encode_line(
    fleet: &Fleet,
    device: crate::domain::DeviceIdx,
    at_ms: i64,
    readings: &[(u16, Value)],
    out: &mut Vec<u8>,
) -> bool {
    let d = fleet.device(device);
    let profile = &fleet.kinds[d.kind];
    let start = out.len();
    escape(out, &profile.name, false);
    out.extend_from_slice(b",customer=");
    escape(out, d.customer.as_str(), true);
    out.extend_from_slice(b",device=");
    escape(out, d.id.as_str(), true);
    out.extend_from_slice(b",site=");
    escape(out, d.site.as_str(), true);
    let mut sep = b' ';
    for (m, v) in readings {
        let Some(def) = profile.metrics.get(*m as usize) else { continue };
        if matches!(v, Value::Text) || matches!(v, Value::Num(x) if !x.is_finite()) {
            continue;
        }
        out.push(sep);
        sep = b',';
        escape(out, &def.name, true);
        out.push(b'=');
        // Straight into the buffer: this runs for every reading.
        let _ = match v {
            Value::Num(x) => write!(out, "{x:?}"),
            Value::Bool(b) => write!(out, "{b}"),
            Value::Text => Ok(()),
        };
    }
    if sep == b' ' {
        out.truncate(start);
        return false;
    }
    let _ = writeln!(out, " {at_ms}");
    true
}

/// Batches chunks into the spool by size and age; returns when every shard has hung up.
pub async fn batcher(
    cfg: InfluxConfig,
    spool: Arc<Mutex<Spool>>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Chunk>,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut lines = 0usize;
    let mut tick = tokio::time::interval(cfg.batch_age);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let push = |batch: &mut Vec<u8>, lines: &mut usize| {
        if batch.is_empty() {
            return;
        }
        let r = spool.lock().map_err(|_| std::io::Error::other("spool lock poisoned")).and_then(|mut s| {
            let r = s.push(batch);
            metrics
                .influx_spool_dropped_bytes
                .inner()
                .store(s.losses.dropped_bytes, std::sync::atomic::Ordering::Relaxed);
            r
        });
        match r {
            Ok(()) => {
                metrics.influx_lines_spooled.inc_by(*lines as u64);
            }
            Err(e) => {
                metrics.influx_lines_dropped.inc_by(*lines as u64);
                error!(error = %e, lines = *lines, "cannot write the InfluxDB spool; these lines are lost");
            }
        }
        batch.clear();
        *lines = 0;
        wake.notify_one();
    };
    loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some((bytes, n)) => {
                    batch.extend_from_slice(&bytes);
                    lines += n;
                    if lines >= cfg.batch_lines {
                        push(&mut batch, &mut lines);
                    }
                }
                None => {
                    push(&mut batch, &mut lines);
                    if let Ok(mut s) = spool.lock() {
                        let _ = s.sync();
                    }
                    return;
                }
            },
            _ = tick.tick() => push(&mut batch, &mut lines),
        }
    }
}

enum Outcome {
    Sent,
    Retry(Option<Duration>, String),
    /// The server refuses this batch for good: skip it.
    Refused(u16, String),
    /// The server does not take gzip: send plain.
    NoGzip,
}

async fn send(client: &reqwest::Client, cfg: &InfluxConfig, body: &[u8], gzip: bool) -> Outcome {
    let url = format!("{}/api/v2/write", cfg.url.trim_end_matches('/'));
    let mut req = client
        .post(&url)
        .query(&[("org", cfg.org.as_str()), ("bucket", cfg.bucket.as_str()), ("precision", "ms")])
        .header("content-type", "text/plain; charset=utf-8");
    if let Some(t) = &cfg.token {
        req = req.header("authorization", format!("Token {}", t.expose_secret()));
    }
    let req = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
        if enc.write_all(body).is_err() {
            return Outcome::NoGzip;
        }
        match enc.finish() {
            Ok(z) => req.header("content-encoding", "gzip").body(z),
            Err(_) => return Outcome::NoGzip,
        }
    } else {
        req.body(body.to_vec())
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(None, format!("{}: {e}", crate::outbox::redact(&url))),
    };
    let status = resp.status().as_u16();
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text: String = resp.text().await.unwrap_or_default().chars().take(300).collect();
    match status {
        200..=299 => Outcome::Sent,
        415 if gzip => Outcome::NoGzip,
        400 if gzip && text.to_lowercase().contains("gzip") => Outcome::NoGzip,
        408 | 425 | 429 | 500..=599 => Outcome::Retry(after, format!("HTTP {status}: {text}")),
        _ => Outcome::Refused(status, text),
    }
}

/// Sends the spool's batches oldest first until shutdown.
pub async fn sender(
    cfg: InfluxConfig,
    spool: Arc<Mutex<Spool>>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match crate::outbox::http_client(cfg.timeout) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot make the InfluxDB client; telemetry stays in the spool");
            return;
        }
    };
    let mut gzip = cfg.gzip;
    let mut failures = 0u32;
    let mut down_since_logged = false;
    loop {
        let next = match spool.lock() {
            Ok(mut s) => {
                // A backlog (after an outage) goes 4 MB at a time: fewer round trips.
                let r = s.peek_many(4 << 20);
                metrics
                    .influx_spool_torn_frames
                    .inner()
                    .store(s.losses.torn_frames, std::sync::atomic::Ordering::Relaxed);
                r
            }
            Err(_) => return,
        };
        let (batch, cursor) = match next {
            Ok(Some(b)) => b,
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => continue,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            Err(e) => {
                error!(error = %e, "reading the InfluxDB spool failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        let lines = batch.iter().filter(|b| **b == b'\n').count() as u64;
        // A send in flight is let finish (within its timeout): cut off, it would be sent again.
        let outcome = send(&client, &cfg, &batch, gzip).await;
        let wait = match outcome {
            Outcome::Sent => {
                if down_since_logged {
                    info!(url = %cfg.url, "InfluxDB answers again; sending what waited in the spool");
                    down_since_logged = false;
                }
                failures = 0;
                metrics.influx_lines_written.inc_by(lines);
                if let Err(e) =
                    spool.lock().map_err(|_| std::io::Error::other("poisoned")).and_then(|mut s| s.commit(cursor))
                {
                    error!(error = %e, "recording what was sent to InfluxDB failed");
                }
                continue;
            }
            Outcome::NoGzip => {
                warn!(url = %crate::outbox::redact(&cfg.url), "the server does not take gzip; sending plain");
                gzip = false;
                continue;
            }
            Outcome::Refused(status, text) => {
                metrics.influx_refused_batches.inc();
                error!(status, server = %text, lines, "InfluxDB refused a batch for good; it is skipped");
                if let Ok(mut s) = spool.lock() {
                    let _ = s.commit(cursor);
                }
                continue;
            }
            Outcome::Retry(after, msg) => {
                metrics.influx_failed_attempts.inc();
                if !down_since_logged {
                    warn!(error = %msg, "writing to InfluxDB failed; telemetry waits in the spool and is retried");
                    down_since_logged = true;
                }
                failures += 1;
                after.unwrap_or_else(|| {
                    Duration::from_millis(200).saturating_mul(1 << failures.min(8)).min(Duration::from_secs(30))
                })
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_kind_tags_fields_and_the_reading_s_time() {
        let config = crate::demo::config().unwrap();
        let fleet = &config.fleet;
        let dev = fleet.lookup("lit-001").unwrap();
        let p = fleet.profile_of(dev);
        let (leak, on, volts) =
            (p.metric("leakage_ma").unwrap(), p.metric("scheduled_on").unwrap(), p.metric("voltage_v").unwrap());
        let mut out = Vec::new();
        let at = 1_780_000_000_123;
        assert!(encode_line(
            fleet,
            dev,
            at,
            &[(leak, Value::Num(4.5)), (on, Value::Bool(true)), (volts, Value::Num(220.0))],
            &mut out
        ));
        let line = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            line,
            format!(
                "lighting,customer=city-transit,device=lit-001,site=site-a leakage_ma=4.5,scheduled_on=true,voltage_v=220.0 {at}\n"
            )
        );
        assert!(!encode_line(fleet, dev, at, &[(leak, Value::Num(f64::NAN)), (leak, Value::Text)], &mut out));
        assert_eq!(out.len(), line.len(), "no line without a field");
        let mut e = Vec::new();
        escape(&mut e, "a b,c=d", true);
        assert_eq!(e, b"a\\ b\\,c\\=d");
    }
}
