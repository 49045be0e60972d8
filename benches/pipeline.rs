//! Benchmarks of the telemetry path (not timed tests). Run with
//! `cargo bench --bench pipeline`; figures go to docs/PERF.md.
//!
//! 1. In process, one core: parse + per-device rules for 10,000 recorders.
//! 2. End to end: firmware-sim's load generator publishes 1,000,000 messages
//!    from 10,000 devices to the broker (the daemon's embedded one, or the
//!    broker at AFTERCARE_BENCH_MQTT_URL), through ingest, rules and state;
//!    one message carries a storage failure, and its ticket row is timed.
//! 3. Memory (`memory`): the daemon's RSS with its embedded broker, at start,
//!    after 1M messages from 10,000 devices, after 300,000 messages from as many
//!    distinct unknown device ids, and after another 1M messages.
//!
//! A benchmark measures wall time itself; the daemon's rule against reading
//! the clock outside clock.rs does not apply here.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aftercare::domain::Value;
use aftercare::ingest::payload::parse_telemetry;
use aftercare::rules::DeviceState;

const DEVICES: usize = 10_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only = |name: &str| args.iter().skip(1).filter(|a| !a.starts_with("--")).all(|a| name.contains(a.as_str()));
    if only("in_process") {
        in_process();
    }
    if only("memory") {
        memory();
    }
    if only("end_to_end") {
        // Throughput: as fast as the load generator can publish.
        end_to_end(0);
        // Latency: at a rate the pipeline sustains, so no backlog hides in the broker.
        end_to_end(50_000);
    }
}

fn recorder_profile() -> aftercare::rules::Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kinds/recorder.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    aftercare::config::profiles_from_str(&path.display().to_string(), &text).unwrap().remove(0)
}

fn payload(n: u64, ts: &str) -> String {
    format!(
        r#"{{"ts":"{ts}","metrics":{{"storage_used_pct":{:.1},"recording":true,"status_flags":0,"battery_pct":97.5,"charging":true,"clock_offset_s":0.12,"temp_c":31.4}}}}"#,
        40.0 + (n % 400) as f64 / 10.0
    )
}

fn in_process() {
    let p = recorder_profile();
    let mut states: Vec<DeviceState> = (0..DEVICES).map(|_| DeviceState::new(&p, 0)).collect();
    let payloads: Vec<String> = (0..1000).map(|n| payload(n, "2026-11-22T08:00:00.000Z")).collect();
    let mut readings: Vec<(u16, Value)> = Vec::with_capacity(16);
    let mut changes = Vec::new();
    let n: u64 = 2_000_000;
    let start = Instant::now();
    for i in 0..n {
        let body = payloads[(i % 1000) as usize].as_bytes();
        readings.clear();
        let meta = parse_telemetry(body, &p, &mut readings).unwrap();
        let st = &mut states[(i as usize) % DEVICES];
        st.apply(&p, meta.ts.unwrap_or(0) + (i / DEVICES as u64) as i64 * 1000, &readings, &mut changes);
        changes.clear();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("in_process: parse + rules, recorder profile, {DEVICES} devices, one core");
    println!("  {n} messages in {secs:.3} s: {:.0} msg/s, {:.3} µs/msg", n as f64 / secs, secs * 1e6 / n as f64);
    println!("  device state: {} bytes per device", states[0].footprint());
}

fn sim_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    // Build it every time: `cargo bench` builds only this package, and a stale simulator misleads.
    let st = Command::new(env!("CARGO")).args(["build", "--release", "-p", "firmware-sim"]).status().unwrap();
    assert!(st.success(), "building firmware-sim failed");
    dir.join("firmware-sim")
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.trim().parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

fn scrape(http: &str) -> String {
    // A tiny HTTP/1.0 GET; the bench avoids an HTTP client dependency.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The bench's admin token, given to its daemon's store (a throwaway one) by the CLI.
const BENCH_TOKEN: &str = "bench-token-of-a-throwaway-store-0001";

/// Adds the bench's admin and its token to the store of `config`.
fn provision(config: &std::path::Path) {
    use std::io::Write;
    let run = |args: &[&str], stdin: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_aftercare"))
            .args(&args[..1])
            .arg("--config")
            .arg(config)
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success(), "aftercare {args:?}");
    };
    run(&["user", "add", "bench", "--role", "admin"], "");
    run(&["token", "create", "bench", "--secret-stdin"], &format!("{BENCH_TOKEN}\n"));
}

fn get_json(http: &str, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {BENCH_TOKEN}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("null");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

fn end_to_end(rate: u64) {
    let messages: u64 = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("kinds")).unwrap();
    // The shipped recorder profile, with the storage failure raised at its first message,
    // so that the time measured is the pipeline's and not the rule's hold.
    let kind =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kinds/recorder.toml")).unwrap();
    let kind = kind.replacen("hold = \"30s\"", "hold = \"0s\"", 1);
    std::fs::write(dir.path().join("kinds/recorder.toml"), kind).unwrap();
    let external = std::env::var("AFTERCARE_BENCH_MQTT_URL").ok();
    let broker = match &external {
        Some(url) => format!("[broker]\nembedded = false\nurl = \"{url}\"\n"),
        None => "[broker]\nembedded = true\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n".into(),
    };
    let mut cfg = format!(
        "include = [\"kinds/recorder.toml\"]\n{broker}[http]\nlisten = \"127.0.0.1:0\"\nmetrics_public = true\n[store]\npath = \"a.db\"\n\
         [ingest]\nqueue_capacity = 65536\n[[sites]]\nid = \"load\"\n[[customers]]\nid = \"c\"\n"
    );
    for i in 0..DEVICES {
        cfg.push_str(&format!(
            "[[devices]]\nid = \"load-{i:05}\"\nkind = \"recorder\"\nsite = \"load\"\ncustomer = \"c\"\naccepted_on = \"2025-01-01\"\n"
        ));
    }
    // With AFTERCARE_BENCH_INFLUX_URL, the daemon also writes every reading to that server.
    if let Ok(url) = std::env::var("AFTERCARE_BENCH_INFLUX_URL") {
        cfg.push_str(&format!("[history.influxdb]\nurl = \"{url}\"\norg = \"o\"\nbucket = \"b\"\n"));
        println!("  (writing telemetry to {url})");
    }
    std::fs::write(dir.path().join("a.toml"), cfg).unwrap();
    provision(&dir.path().join("a.toml"));
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(["run", "--config"])
        .arg(dir.path().join("a.toml"))
        .env("AFTERCARE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap().to_string();
    let http = field("http=");
    let mqtt = external.clone().unwrap_or_else(|| format!("mqtt://{}", field("mqtt=")));
    std::thread::sleep(Duration::from_secs(1));

    let fault_at = messages / 2;
    let mut load = Command::new(sim_binary())
        .args(["load", "--broker", &mqtt, "--devices", &DEVICES.to_string(), "--messages", &messages.to_string()])
        .args(["--connections", "2", "--fault-at", &fault_at.to_string(), "--rate", &rate.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let cpu0 = cpu_seconds(daemon.id());
    // Sample the daemon's counters while the load runs.
    let mut first: Option<(Instant, f64)> = None;
    let mut last = (Instant::now(), 0.0);
    let mut idle = 0;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let text = scrape(&http);
        let done =
            metric(&text, "aftercare_messages_accepted_total") + metric(&text, "aftercare_messages_rejected_total");
        let now = Instant::now();
        if done > 0.0 && first.is_none() {
            first = Some((now, done));
        }
        if done == last.1 && done > 0.0 {
            idle += 1;
        } else {
            idle = 0;
            last = (now, done);
        }
        let generator_done = matches!(load.try_wait(), Ok(Some(_)));
        if done >= messages as f64 || idle >= 30 || (generator_done && now - last.0 > Duration::from_secs(5)) {
            break;
        }
    }
    let cpu1 = cpu_seconds(daemon.id());
    let out = load.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let text = scrape(&http);
    let accepted = metric(&text, "aftercare_messages_accepted_total");
    let received = metric(&text, "aftercare_messages_received_total");
    let rejected = metric(&text, "aftercare_messages_rejected_total");
    let Some((t0, c0)) = first else {
        println!("end_to_end: the daemon received nothing; load generator said: {report}");
        let _ = daemon.kill();
        let _ = daemon.wait();
        return;
    };
    let secs = (last.0 - t0).as_secs_f64().max(1e-3);
    let pace = if rate == 0 { "as fast as possible".to_string() } else { format!("paced at {rate} msg/s") };
    println!(
        "end_to_end: {} broker, {DEVICES} devices, {messages} messages, {pace}",
        if external.is_some() { "external" } else { "embedded" }
    );
    print!("  load generator: {report}");
    println!("  daemon received {received:.0}, accepted {accepted:.0}, rejected {rejected:.0}");
    println!("  ingest → rules → state: {:.0} msg/s over {secs:.2} s", (last.1 - c0) / secs);
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        println!("  daemon CPU: {:.2} s for the run ({:.0}% of one core)", b - a, (b - a) / secs * 100.0);
    }
    let sum = metric(&text, "aftercare_fault_to_ticket_seconds_sum");
    let count = metric(&text, "aftercare_fault_to_ticket_seconds_count");
    if count > 0.0 {
        println!("  fault → ticket row (in daemon, from rule evaluation to commit): {:.2} ms", sum / count * 1e3);
    }
    if let Some(sent) = report.lines().find_map(|l| l.strip_prefix("fault sent ")) {
        let (ts, dev) = sent.split_once(' ').unwrap();
        let sent = chrono::DateTime::parse_from_rfc3339(ts).unwrap();
        let tickets = get_json(&http, &format!("/api/v1/tickets?device={dev}"));
        if let Some(opened) = tickets.get(0).and_then(|t| t["opened_at"].as_str()) {
            let opened = chrono::DateTime::parse_from_rfc3339(opened).unwrap();
            println!(
                "  fault → ticket row (publish to opened_at, under load): {} ms",
                (opened - sent).num_milliseconds()
            );
        } else {
            println!("  the fault's message was dropped under load: no ticket");
        }
    }
    let all = get_json(&http, "/api/v1/tickets?limit=10000");
    let mut codes = std::collections::BTreeMap::new();
    for t in all.as_array().into_iter().flatten() {
        *codes.entry(t["code"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    println!("  tickets opened: {codes:?}");
    let _ = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    let _ = daemon.wait();
}

/// User + system CPU seconds of a process, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Resident memory of a process, MB, from /proc.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// Publishes `messages` messages from `devices` devices named `{prefix}NNNNN` through the
/// daemon's embedded broker and waits until it has taken them all (accepted or rejected).
fn load_through(sim: &Path, mqtt: &str, http: &str, id_prefix: &str, devices: usize, messages: u64) {
    let before = {
        let t = scrape(http);
        metric(&t, "aftercare_messages_accepted_total") + metric(&t, "aftercare_messages_rejected_total")
    };
    let st = Command::new(sim)
        .args(["load", "--broker", mqtt, "--devices", &devices.to_string(), "--messages", &messages.to_string()])
        .args(["--connections", "2", "--id-prefix", id_prefix])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = scrape(http);
        let done = metric(&t, "aftercare_messages_accepted_total") + metric(&t, "aftercare_messages_rejected_total");
        if done - before >= messages as f64 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn memory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("kinds")).unwrap();
    let kind =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kinds/recorder.toml")).unwrap();
    // The devices stay online between the phases: this measures the broker and ingest, not
    // 10,000 offline tickets.
    let kind = kind
        .lines()
        .map(|l| if l.starts_with("heartbeat = ") { "heartbeat = \"1h\"" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("kinds/recorder.toml"), kind).unwrap();
    let mut cfg = "include = [\"kinds/recorder.toml\"]\n[broker]\nembedded = true\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n\
                   [http]\nlisten = \"127.0.0.1:0\"\nmetrics_public = true\n[store]\npath = \"a.db\"\n[[sites]]\nid = \"load\"\n\
                   [[customers]]\nid = \"c\"\n"
        .to_string();
    for i in 0..DEVICES {
        cfg.push_str(&format!(
            "[[devices]]\nid = \"load-{i:05}\"\nkind = \"recorder\"\nsite = \"load\"\ncustomer = \"c\"\naccepted_on = \"2025-01-01\"\n"
        ));
    }
    std::fs::write(dir.path().join("a.toml"), cfg).unwrap();
    provision(&dir.path().join("a.toml"));
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(["run", "--config"])
        .arg(dir.path().join("a.toml"))
        .env("AFTERCARE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap().to_string();
    let (http, mqtt) = (field("http="), format!("mqtt://{}", field("mqtt=")));
    let sim = sim_binary();
    let pid = daemon.id();
    std::thread::sleep(Duration::from_secs(1));
    let rss = || rss_mb(pid).unwrap_or(f64::NAN);
    println!("memory: embedded broker, {DEVICES} devices configured");
    println!("  at start: {:.1} MB", rss());
    load_through(&sim, &mqtt, &http, "load-", DEVICES, 1_000_000);
    println!("  after 1M messages from {DEVICES} devices: {:.1} MB", rss());
    load_through(&sim, &mqtt, &http, "unknown-", 300_000, 300_000);
    println!("  after 300k messages from 300k distinct unknown ids: {:.1} MB", rss());
    load_through(&sim, &mqtt, &http, "load-", DEVICES, 1_000_000);
    println!("  after another 1M messages: {:.1} MB", rss());
    std::thread::sleep(Duration::from_secs(20));
    println!("  after 20 s idle: {:.1} MB", rss());
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = daemon.wait();
}
