//! Starts the real `aftercare` and `firmware-sim` binaries on ephemeral
//! ports with a temporary database, and talks to them as a user would.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The admin every test daemon has, and its API token: one random secret for the whole test
/// run, given to each daemon's store by `aftercare token create --secret-stdin`.
pub(crate) const ADMIN: &str = "it-admin";
pub(crate) static TOKEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut b = [0u8; 24];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    format!("it_{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
});

/// Runs `aftercare COMMAND --config CONFIG REST` with `stdin`; its exit status and output.
pub(crate) fn cli(config: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    cli_with(config, args, stdin, &[])
}

/// [`cli`] with more variables in its environment.
pub(crate) fn cli_with(config: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .envs(env.iter().copied())
        .args(&args[..1])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Adds user `name` with `role` (and `customers`) to the store of `config`, and gives it the
/// API token `secret`.
pub(crate) fn provision(config: &Path, name: &str, role: &str, customers: &[&str], secret: &str) {
    provision_with(config, name, role, customers, secret, &[]);
}

/// [`provision`] with more variables in the CLI's environment (the config may need them).
pub(crate) fn provision_with(
    config: &Path,
    name: &str,
    role: &str,
    customers: &[&str],
    secret: &str,
    env: &[(&str, &str)],
) {
    let mut args = vec!["user", "add", name, "--role", role];
    for c in customers {
        args.extend(["--customer", c]);
    }
    let (ok, _, err) = cli_with(config, &args, "", env);
    assert!(ok || err.contains("exists already"), "user add {name}: {err}");
    let stdin = format!("{secret}\n");
    let (ok, _, err) = cli_with(config, &["token", "create", name, "--name", "tests", "--secret-stdin"], &stdin, env);
    assert!(ok || err.contains("UNIQUE"), "token create {name}: {err}");
}

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The firmware-sim binary beside our own test binary (cargo builds it with the workspace).
pub(crate) fn sim_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let target = deps.parent().unwrap().parent().unwrap();
    let bin = target.join(format!("firmware-sim{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let status = Command::new(env!("CARGO")).args(["build", "-p", "firmware-sim"]).status().unwrap();
        assert!(status.success(), "building firmware-sim failed");
    }
    bin
}

/// Where a test's MQTT traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Broker {
    /// The daemon's embedded rumqttd.
    Embedded,
    /// A broker of the machine's, such as Mosquitto: `mqtt://host:port`.
    External(String),
}

/// The brokers to test against: the embedded one always, and the broker
/// named by AFTERCARE_TEST_MQTT_URL too when it is set (CI sets the machine's Mosquitto).
pub(crate) fn brokers() -> Vec<Broker> {
    let mut b = vec![Broker::Embedded];
    if let Some(url) = std::env::var("AFTERCARE_TEST_MQTT_URL").ok().filter(|s| !s.is_empty()) {
        b.push(Broker::External(url));
    }
    b
}

pub(crate) struct Daemon {
    child: Child,
    pub http: String,
    /// host:port of the broker the daemon uses.
    pub mqtt: String,
    pub prefix: String,
    pub broker: Broker,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

/// Kind profiles copied from config/kinds with shorter clocks, so tests run in seconds.
pub(crate) fn write_kinds(dir: &Path, heartbeat: &str, major_after: &str) {
    std::fs::create_dir_all(dir.join("kinds")).unwrap();
    for k in ["recorder", "solar_heater", "led_display", "lighting"] {
        let text = std::fs::read_to_string(repo().join(format!("config/kinds/{k}.toml"))).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("heartbeat = ") {
                out.push_str(&format!("heartbeat = \"{heartbeat}\"\n"));
            } else if line.starts_with("offline_major_after = ") {
                out.push_str(&format!("offline_major_after = \"{major_after}\"\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(dir.join(format!("kinds/{k}.toml")), out).unwrap();
    }
}

/// A config for `devices` (`id:kind`), all at site `site-a` of customer `cust-1`.
pub(crate) fn config(devices: &[&str], prefix: &str, broker: &Broker) -> String {
    let broker = match broker {
        Broker::External(url) => {
            format!("[broker]\nembedded = false\nurl = \"{url}\"\nclient_id = \"{prefix}-gw\"\n")
        }
        Broker::Embedded => "[broker]\nembedded = true\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n".to_string(),
    };
    let mut c = format!(
        r#"include = ["kinds/recorder.toml", "kinds/solar_heater.toml", "kinds/led_display.toml", "kinds/lighting.toml"]
{broker}
[http]
listen = "127.0.0.1:0"
[store]
path = "data/aftercare.db"
[ingest]
topic_prefix = "{prefix}"
shards = 2
[tickets]
reopen_window = "1h"
[[sites]]
id = "site-a"
utc_offset = "+08:00"
[[customers]]
id = "cust-1"
"#
    );
    for d in devices {
        let (id, kind) = d.split_once(':').unwrap();
        c.push_str(&format!(
            "[[devices]]\nid = \"{id}\"\nkind = \"{kind}\"\nsite = \"site-a\"\ncustomer = \"cust-1\"\nmodel = \"M\"\nserial = \"S-{id}\"\naccepted_on = \"2025-06-01\"\n"
        ));
    }
    c
}

impl Daemon {
    /// A fresh temporary folder with kind profiles and a config for `devices`.
    pub(crate) fn setup(
        devices: &[&str],
        heartbeat: &str,
        major_after: &str,
        broker: &Broker,
    ) -> (tempfile::TempDir, String) {
        // Build the simulator first, so no daemon's heartbeat window runs while it compiles.
        sim_binary();
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("it{}x{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        write_kinds(dir.path(), heartbeat, major_after);
        std::fs::write(dir.path().join("aftercare.toml"), config(devices, &prefix, broker)).unwrap();
        (dir, prefix)
    }

    /// Starts `aftercare run` on the config in `dir` and waits for its ready line.
    pub(crate) fn start(dir: tempfile::TempDir, prefix: &str, broker: &Broker) -> Daemon {
        Daemon::start_logging(dir, prefix, broker, "info,rumqttd=warn", &[])
    }

    /// Starts the daemon with `AFTERCARE_LOG=log` and more variables in its environment.
    pub(crate) fn start_logging(
        dir: tempfile::TempDir,
        prefix: &str,
        broker: &Broker,
        log_level: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        provision_with(&dir.path().join("aftercare.toml"), ADMIN, "admin", &[], &TOKEN, env);
        let log = dir.path().join(format!("aftercare-{}.log", SEQ.fetch_add(1, Ordering::SeqCst)));
        let mut child = Command::new(env!("CARGO_BIN_EXE_aftercare"))
            .args(["run", "--config"])
            .arg(dir.path().join("aftercare.toml"))
            .env("AFTERCARE_LOG", log_level)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start aftercare");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("aftercare ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("aftercare did not get ready:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string).unwrap();
        let mqtt = match broker {
            Broker::External(url) => url.trim_start_matches("mqtt://").trim_end_matches('/').to_string(),
            Broker::Embedded => field("mqtt="),
        };
        Daemon {
            child,
            http: format!("http://{}", field("http=")),
            mqtt,
            prefix: prefix.to_string(),
            broker: broker.clone(),
            dir,
            log,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited 0.
    pub(crate) fn terminate(mut self) -> (bool, tempfile::TempDir) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let mut ok = false;
        for _ in 0..200 {
            if let Ok(Some(st)) = self.child.try_wait() {
                ok = st.success();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (ok, dir)
    }

    /// Kills the daemon with SIGKILL, as a power cut would, and hands back its folder.
    pub(crate) fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- aftercare log ({:?}) ---\n{}", self.broker, self.log());
        }
    }
}

/// A running firmware-sim, driven through its stdin.
pub(crate) struct Sim {
    child: Child,
    stdin: ChildStdin,
}

impl Sim {
    /// Simulates `devices` (`id:kind`) at site-a against the daemon's broker.
    /// Simulated time starts at local noon and runs 120 times real time.
    pub(crate) fn start(d: &Daemon, devices: &[&str]) -> Sim {
        let mut cmd = Command::new(sim_binary());
        cmd.args(["run", "--broker", &format!("mqtt://{}", d.mqtt), "--prefix", &d.prefix]).args([
            "--interval",
            "200ms",
            "--speed",
            "120",
            "--seed",
            "7",
            "--start",
            "2026-06-21T04:00:00Z",
        ]);
        for dev in devices {
            // `id:kind` at site-a, or `id:kind:site`.
            let spec = if dev.matches(':').count() == 2 { dev.to_string() } else { format!("{dev}:site-a") };
            cmd.args(["--device", &spec]);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        Sim { child, stdin }
    }

    pub(crate) fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// A client that signs in to the test daemons as their admin.
pub(crate) fn api() -> reqwest::Client {
    as_user(&TOKEN)
}

/// A client that signs in with `token`.
pub(crate) fn as_user(token: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().timeout(Duration::from_secs(10)).default_headers(h).build().unwrap()
}

pub(crate) async fn get(url: &str) -> Value {
    let r = api().get(url).send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.unwrap()
}

/// Polls `check` until it returns Some, or panics with `what` after `secs`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tickets of the daemon for (device, code).
pub(crate) async fn tickets_for(d: &Daemon, device: &str, code: &str) -> Vec<Value> {
    let v = get(&d.url(&format!("/api/v1/tickets?device={device}&code={code}"))).await;
    v.as_array().unwrap().clone()
}

/// Reads one counter from /metrics text.
pub(crate) async fn metric(d: &Daemon, name: &str) -> f64 {
    let text = api().get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// A helper process that is killed and reaped when the test ends, pass or fail.
pub(crate) struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Contract `k` of cust-1, in force since 2020 with an hour on every clock; `keys` go into its
/// table (`reports = […]`), `plans` after it.
pub(crate) fn contract(keys: &str, plans: &str) -> String {
    format!(
        "[contracts.k]\ncustomer = \"cust-1\"\ntitle = \"k\"\nstarts = \"2020-01-01\"\n{keys}\
         tier1 = {{ acknowledge = \"1h\" }}\ntier2 = {{ acknowledge = \"1h\" }}\ntier3 = {{ acknowledge = \"1h\" }}\n{plans}"
    )
}

/// A monthly inspection of lighting (`circuits` answered by the time online, `lamps` by hand)
/// whose last visit was due about four weeks ago and whose next is due in three days; with
/// that next due date. `extra` are more plans on the same anchor (`{anchor}` in them is replaced).
pub(crate) fn monthly_inspection(extra: &str) -> (String, chrono::NaiveDate) {
    #[allow(clippy::disallowed_methods)]
    let today = chrono::Utc::now().date_naive();
    let next = today + chrono::Days::new(3);
    let anchor = next.checked_sub_months(chrono::Months::new(2)).unwrap();
    let plans = format!(
        "[[contracts.k.plans]]\nname = \"inspection\"\nkind = \"inspection\"\nanchor = \"{anchor}\"\n\
         every = \"1 month\"\nlead = \"5 days\"\nchecklist = {{ lighting = [\"circuits\", \"lamps\"] }}\n\
         measured = {{ circuits = \"online\" }}\n{}",
        extra.replace("{anchor}", &anchor.to_string())
    );
    (contract("", &plans), next)
}

/// Makes the daemon's store (in `dir`, not running) look made `days` ago, as a store that has
/// watched the fleet that long: what was due since then is the daemon's to have done. The
/// store's age is the first migration's `installed_on`; Python's sqlite3 module writes it.
pub(crate) fn backdate_store(dir: &Path, days: i64) {
    let db = dir.join("data/aftercare.db");
    #[allow(clippy::disallowed_methods)]
    let then = (chrono::Utc::now() - chrono::TimeDelta::days(days)).format("%Y-%m-%d %H:%M:%S").to_string();
    let script = format!(
        "import sqlite3; c = sqlite3.connect({db:?}); c.execute(\"UPDATE _sqlx_migrations SET installed_on = '{then}' WHERE version = 1\"); c.commit()"
    );
    let ok = Command::new("python3").args(["-c", &script]).status().expect("python3 for sqlite3");
    assert!(ok.success(), "backdating the store failed");
}

/// A Mosquitto of the test's own on a free loopback port, made to hold any backlog (no limit
/// on queued messages), with its URL; `None` when Mosquitto is not installed (a failure when
/// AFTERCARE_TEST_REQUIRE_PEERS is set, as in CI).
pub(crate) fn own_mosquitto() -> Option<(Reaped, String, tempfile::TempDir)> {
    let found = Command::new("mosquitto").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(
            std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_none(),
            "mosquitto is not installed and AFTERCARE_TEST_REQUIRE_PEERS is set"
        );
        eprintln!("mosquitto is not installed: skipping its half of the test");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n\
             max_queued_bytes 0\nlog_dest none\n"
        ),
    )
    .unwrap();
    Some((mosquitto_on(&conf, port), format!("mqtt://127.0.0.1:{port}"), dir))
}

/// Runs Mosquitto on the config file `conf` and waits until it listens on `port`.
pub(crate) fn mosquitto_on(conf: &Path, port: u16) -> Reaped {
    let child =
        Command::new("mosquitto").arg("-c").arg(conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let reaped = Reaped(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return reaped;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("mosquitto did not listen on port {port}");
}

/// A self-signed certificate for `localhost`: its PEM certificate and key.
pub(crate) fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success());
    (cert, key)
}
