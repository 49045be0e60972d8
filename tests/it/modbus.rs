//! Modbus devices end to end: firmware-sim's Modbus face over TCP and over
//! RTU (a socat pseudo-terminal pair), an independent pymodbus server, mbpoll
//! reading the simulator, and a peer that answers garbage.

use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::one_ticket;
use crate::harness::*;

/// firmware-sim serving devices over Modbus; where each answers.
struct ModbusSim {
    child: Child,
    stdin: ChildStdin,
    /// (device id, `tcp ADDR` or `rtu PATH unit N`)
    pub endpoints: Vec<(String, String)>,
}

impl ModbusSim {
    fn start(devices: &[&str], mode: &[&str]) -> ModbusSim {
        let mut cmd = Command::new(sim_binary());
        cmd.args(["run", "--interval", "200ms", "--speed", "120", "--seed", "7", "--start", "2026-06-21T04:00:00Z"])
            .args(mode);
        for d in devices {
            cmd.args(["--device", &format!("{d}:site-a")]);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut endpoints = Vec::new();
        while endpoints.len() < devices.len() {
            let line = lines.next().expect("firmware-sim to print its endpoints").unwrap();
            if let Some(rest) = line.strip_prefix("modbus ") {
                let (id, ep) = rest.split_once(' ').unwrap();
                endpoints.push((id.to_string(), ep.to_string()));
            }
        }
        // Keep draining stdout, so the simulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        ModbusSim { child, stdin, endpoints }
    }

    fn addr(&self, id: &str) -> String {
        let ep = &self.endpoints.iter().find(|(d, _)| d == id).unwrap().1;
        ep.strip_prefix("tcp ").unwrap().to_string()
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for ModbusSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon whose devices are polled with the given `modbus = { … }` each.
fn daemon(devices: &[(&str, String)]) -> Daemon {
    let broker = Broker::Embedded;
    let ids: Vec<&str> = devices.iter().map(|(d, _)| *d).collect();
    let (dir, prefix) = Daemon::setup(&ids, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let mut cfg = std::fs::read_to_string(&path).unwrap();
    for (d, modbus) in devices {
        let id = d.split_once(':').unwrap().0;
        let serial = format!("serial = \"S-{id}\"\n");
        cfg = cfg.replace(&serial, &format!("{serial}modbus = {{ {modbus} }}\n"));
    }
    std::fs::write(&path, cfg).unwrap();
    // Polled readings carry the gateway's real time, not the simulator's fast clock:
    // shorten the one hold these tests wait out.
    let kind = dir.path().join("kinds/lighting.toml");
    let text = std::fs::read_to_string(&kind).unwrap().replace("clear_hold = \"30s\"", "clear_hold = \"1s\"");
    std::fs::write(&kind, text).unwrap();
    Daemon::start(dir, &prefix, &broker)
}

async fn online(d: &Daemon, id: &str) -> bool {
    get(&d.url(&format!("/api/v1/devices/{id}"))).await["online"] == json!(true)
}

async fn failures(d: &Daemon, id: &str, reason: &str) -> f64 {
    metric(d, &format!("aftercare_modbus_failures_total{{device=\"{id}\",reason=\"{reason}\"}}")).await
}

const FAST: &str = "poll = \"200ms\", timeout = \"300ms\", retries = 0, offline_after = 3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_tcp_devices_are_polled_and_their_faults_become_tickets() {
    let devices = ["lit-051:lighting", "swh-051:solar_heater"];
    let mut sim = ModbusSim::start(&devices, &["--modbus-tcp", "127.0.0.1:0"]);
    let d = daemon(&[
        (devices[0], format!("tcp = \"{}\", {FAST}", sim.addr("lit-051"))),
        (devices[1], format!("tcp = \"{}\", {FAST}", sim.addr("swh-051"))),
    ]);
    wait_for("both devices polled", 30, || async {
        (online(&d, "lit-051").await && online(&d, "swh-051").await).then_some(())
    })
    .await;

    // A fault in the registers opens a ticket, and clears like any other.
    sim.send("inject lit-051 leakage");
    let t = one_ticket(&d, "lit-051", "leakage", "opened", |_| true).await;
    assert_eq!(t["tier"], json!(1));
    assert!(t["detail"].as_str().unwrap().contains("leakage_ma = 45"), "{t:#}");
    sim.send("clear lit-051 leakage");
    one_ticket(&d, "lit-051", "leakage", "recovered", |t| t["recovered"] == json!(true)).await;

    // A non-standard exception is counted as such; three failed polls make the device offline.
    sim.send("inject lit-051 modbus_odd_exception");
    let t = one_ticket(&d, "lit-051", "offline", "opened", |_| true).await;
    assert!(t["detail"].as_str().unwrap().contains("stopped answering its Modbus polls"), "{t:#}");
    assert!(failures(&d, "lit-051", "exception_0c").await >= 3.0);
    sim.send("clear lit-051 modbus_odd_exception");
    one_ticket(&d, "lit-051", "offline", "back online", |t| t["recovered"] == json!(true)).await;

    // Garbled frames are counted as garbage, and the connection is made again.
    sim.send("inject lit-051 modbus_garbage");
    wait_for("garbage counted", 30, || async { (failures(&d, "lit-051", "garbage").await >= 1.0).then_some(()) }).await;
    sim.send("clear lit-051 modbus_garbage");
    wait_for("answers again", 30, || async { online(&d, "lit-051").await.then_some(()) }).await;

    // A silent device times out on every poll and holds up nobody else.
    sim.send("inject swh-051 modbus_silent");
    wait_for("the silent heater offline", 30, || async { (!online(&d, "swh-051").await).then_some(()) }).await;
    assert!(failures(&d, "swh-051", "timeout").await >= 3.0);
    let before = metric(&d, "aftercare_modbus_polls_total{result=\"ok\"}").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = metric(&d, "aftercare_modbus_polls_total{result=\"ok\"}").await;
    assert!(after - before >= 6.0, "the lighting controller is still polled every 200 ms: {before} → {after}");
    sim.send("clear swh-051 modbus_silent");
    wait_for("the heater back", 30, || async { online(&d, "swh-051").await.then_some(()) }).await;
    let h = get(&d.url("/healthz")).await;
    assert_eq!(h["status"], json!("ok"));
}

/// pymodbus from Debian (see RECIPES): `/usr/bin/python3`, not the pyenv one on PATH.
fn pymodbus(port: u16) -> Option<(Reaped, ChildStdin, std::io::Lines<std::io::BufReader<std::process::ChildStdout>>)> {
    let ok = Command::new("/usr/bin/python3").args(["-c", "import pymodbus"]).status().is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() {
            panic!("Debian's python3-pymodbus is missing; scripts/peers.sh installs it");
        }
        eprintln!("python3-pymodbus is not installed: skipping; scripts/peers.sh installs it");
        return None;
    }
    let mut child = Command::new("/usr/bin/python3")
        .arg(repo().join("tests/peers/modbus_server.py"))
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "READY");
    Some((Reaped(child), stdin, lines))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_of_a_pymodbus_server_raise_and_clear_a_fault() {
    let port = free_port();
    let Some((_server, mut stdin, mut out)) = pymodbus(port) else { return };
    let mut set = |cmd: &str| {
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        assert_eq!(out.next().unwrap().unwrap(), "OK");
    };
    // A lighting controller by day: 4 circuits, none lit, off schedule; 5.0 mA of leakage.
    let f = |x: f32| {
        let b = x.to_bits();
        format!("{} {}", b >> 16, b & 0xFFFF)
    };
    set(&format!("ir 0 4 0 {} {} 50 2200", f(0.0), f(8.0)));
    set("di 0 0");
    let d = daemon(&[("lit-061:lighting", format!("tcp = \"127.0.0.1:{port}\", {FAST}"))]);
    wait_for("the device polled", 30, || async { online(&d, "lit-061").await.then_some(()) }).await;
    let dev = get(&d.url("/api/v1/devices/lit-061")).await;
    assert_eq!(dev["active_faults"], json!([]), "{dev:#}");

    set("ir 6 450");
    let t = one_ticket(&d, "lit-061", "leakage", "opened", |_| true).await;
    assert!(t["detail"].as_str().unwrap().contains("leakage_ma = 45"), "{t:#}");
    set("ir 6 60");
    one_ticket(&d, "lit-061", "leakage", "recovered", |t| t["recovered"] == json!(true)).await;
    // One read per function per poll: the map's 6 register points in one request, the bit in another.
    let polls = metric(&d, "aftercare_modbus_polls_total{result=\"ok\"}").await;
    let requests = metric(&d, "aftercare_modbus_requests_total").await;
    assert!(polls > 0.0 && requests <= 2.0 * polls + 2.0, "{requests} requests for {polls} polls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_the_simulator_s_registers() {
    if Command::new("mbpoll").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        if std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() {
            panic!("mbpoll is missing; scripts/peers.sh installs it");
        }
        eprintln!("mbpoll is not installed: skipping");
        return;
    }
    sim_binary();
    let mut sim = ModbusSim::start(&["lit-081:lighting"], &["--modbus-tcp", "127.0.0.1:0"]);
    let port = sim.addr("lit-081").rsplit_once(':').unwrap().1.to_string();
    sim.send("inject lit-081 leakage");
    // mbpoll counts references from 1: input register 6 (leakage, 0.1 mA) is reference 7.
    let read = |reference: &str, count: &str, ty: &str| {
        let out = Command::new("mbpoll")
            .args([
                "-m",
                "tcp",
                "-a",
                "1",
                "-r",
                reference,
                "-c",
                count,
                "-t",
                ty,
                "-B",
                "-1",
                "-p",
                &port,
                "127.0.0.1",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let out = wait_for("the leakage register", 10, || async {
        let out = read("7", "1", "3");
        out.contains("[7]: \t450").then_some(out)
    })
    .await;
    assert!(out.contains("Polling slave 1"), "{out}");
    // Rated current, a big-endian float at input registers 4–5: 8 circuits' worth, never zero.
    let out = read("5", "1", "3:float");
    let rated: f64 = out.lines().find_map(|l| l.strip_prefix("[5]: \t")).unwrap().trim().parse().unwrap();
    assert!(rated > 1.0, "{out}");
    // Past the map: the simulator refuses with illegal data address, as a device would.
    let out = Command::new("mbpoll")
        .args(["-m", "tcp", "-a", "1", "-r", "70", "-c", "1", "-t", "3", "-1", "-p", &port, "127.0.0.1"])
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.to_lowercase().contains("illegal data address"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_are_counted_and_survived() {
    // A peer that answers every request with bytes that are no Modbus frame, then hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 260];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    // The request's transaction id, then protocol id 0x1234 (Modbus is 0) and a PDU
                    // that says two bytes follow and has none.
                    let _ = s.write_all(&[buf[0], buf[1], 0x12, 0x34, 0x00, 0x03, 0x01, 0x04, 0x02]).await;
                }
            });
        }
    });
    let d = daemon(&[("lit-091:lighting", format!("tcp = \"{addr}\", {FAST}"))]);
    wait_for("garbage counted", 30, || async { (failures(&d, "lit-091", "garbage").await >= 3.0).then_some(()) }).await;
    one_ticket(&d, "lit-091", "offline", "opened", |_| true).await;
    assert_eq!(get(&d.url("/healthz")).await["status"], json!("ok"));
}

/// socat's pseudo-terminal pair: what one end writes the other reads, like a serial line.
struct Line {
    _socat: Reaped,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn serial_line() -> Option<Line> {
    if Command::new("socat").arg("-V").stdout(Stdio::null()).status().is_err() {
        if std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() {
            panic!("socat is missing; scripts/peers.sh installs it");
        }
        eprintln!("socat is not installed: skipping");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("ttyA"), dir.path().join("ttyB"));
    let socat = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if a.exists() && b.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Line { _socat: Reaped(socat), a, b, _dir: dir })
}

async fn ticket_count(d: &Daemon, device: &str, code: &str) -> usize {
    tickets_for(d, device, code).await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_units_share_a_line_and_a_dead_bus_is_one_fault() {
    let Some(line) = serial_line() else { return };
    let devices = ["lit-071:lighting", "lit-072:lighting"];
    let rtu_mode = ["--modbus-rtu", line.a.to_str().unwrap(), "--baud", "38400"];
    let mut sim = ModbusSim::start(&devices, &rtu_mode);
    let rtu = |unit: u8| {
        format!(
            "rtu = \"{}\", baud = 38400, unit = {unit}, poll = \"300ms\", timeout = \"200ms\", retries = 0, offline_after = 3",
            line.b.display()
        )
    };
    let d = daemon(&[(devices[0], rtu(1)), (devices[1], rtu(2))]);
    wait_for("both units polled", 30, || async {
        (online(&d, "lit-071").await && online(&d, "lit-072").await).then_some(())
    })
    .await;

    // A fault on unit 2 is a ticket of its own device.
    sim.send("inject lit-072 leakage");
    one_ticket(&d, "lit-072", "leakage", "opened", |_| true).await;

    // Unit 1 goes silent: it alone is offline, and unit 2 is still polled (its fault clears).
    sim.send("inject lit-071 modbus_silent");
    one_ticket(&d, "lit-071", "offline", "opened", |_| true).await;
    sim.send("clear lit-072 leakage");
    one_ticket(&d, "lit-072", "leakage", "recovered", |t| t["recovered"] == json!(true)).await;
    assert_eq!(ticket_count(&d, "lit-072", "offline").await, 0);
    sim.send("clear lit-071 modbus_silent");
    one_ticket(&d, "lit-071", "offline", "back online", |t| t["recovered"] == json!(true)).await;

    // Every unit falls silent at once: the line is down, one bus_down fault and no offline per unit.
    drop(sim);
    let t = one_ticket(&d, "lit-071", "bus_down", "opened", |_| true).await;
    assert!(t["detail"].as_str().unwrap().contains("no unit of 2"), "{t:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ticket_count(&d, "lit-072", "offline").await, 0, "unit 2 is covered by the bus fault");
    let open_offline: Vec<Value> =
        tickets_for(&d, "lit-071", "offline").await.into_iter().filter(|t| t["recovered"] == json!(false)).collect();
    assert!(open_offline.is_empty(), "unit 1 is covered by the bus fault: {open_offline:?}");

    // The line answers again: the bus fault clears.
    let _sim = ModbusSim::start(&devices, &rtu_mode);
    one_ticket(&d, "lit-071", "bus_down", "recovered", |t| t["recovered"] == json!(true)).await;
}

/// Healthy units keep the line's cadence; a dead unit costs its neighbours one timeout a cycle
/// and is not retried within it; a dead line is down within `offline_after` cycles, its units offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtu_line_keeps_its_cadence_and_a_dead_unit_or_line_is_found_in_time() {
    let Some(line) = serial_line() else { return };
    let devices = ["lit-081:lighting", "lit-082:lighting", "lit-083:lighting"];
    let rtu_mode = ["--modbus-rtu", line.a.to_str().unwrap(), "--baud", "38400"];
    let mut sim = ModbusSim::start(&devices, &rtu_mode);
    let rtu = |unit: u8| {
        format!(
            "rtu = \"{}\", baud = 38400, unit = {unit}, poll = \"1s\", timeout = \"400ms\", retries = 1, offline_after = 3",
            line.b.display()
        )
    };
    let d = daemon(&[(devices[0], rtu(1)), (devices[1], rtu(2)), (devices[2], rtu(3))]);
    wait_for("every unit polled", 30, || async {
        let mut all = true;
        for dev in devices {
            all &= online(&d, dev.split_once(':').unwrap().0).await;
        }
        all.then_some(())
    })
    .await;
    let polls = || async { metric(&d, "aftercare_modbus_polls_total{result=\"ok\"}").await };

    // Three healthy units at a 1 s poll: three answers a second, not one every other tick.
    let (before, started) = (polls().await, tokio::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let rate = (polls().await - before) / started.elapsed().as_secs_f64();
    assert!(rate >= 2.5, "{rate:.2} polls a second answered by 3 units polled every second");

    // Unit 3 dies: it times out once a cycle at most (no retry, no further requests), then backs off,
    // and the other two keep their cadence.
    sim.send("inject lit-083 modbus_silent");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let timeouts = || async { failures(&d, "lit-083", "timeout").await };
    let (before, t_before, started) = (polls().await, timeouts().await, tokio::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let secs = started.elapsed().as_secs_f64();
    let rate = (polls().await - before) / secs;
    let dead_timeouts = timeouts().await - t_before;
    assert!(rate >= 1.7, "{rate:.2} polls a second answered by the 2 live units");
    assert!(dead_timeouts <= secs.ceil(), "{dead_timeouts} timeouts of the dead unit in {secs:.1} s");
    one_ticket(&d, "lit-083", "offline", "the dead unit offline", |_| true).await;
    sim.send("clear lit-083 modbus_silent");
    wait_for("unit 3 back", 40, || async { online(&d, "lit-083").await.then_some(()) }).await;

    // The whole line dies: bus_down within offline_after (3) cycles of the last answer, plus the
    // timeouts of one cycle and a margin; every unit shows offline, and no unit has an offline ticket.
    let died = tokio::time::Instant::now();
    drop(sim);
    one_ticket(&d, "lit-081", "bus_down", "the line down", |_| true).await;
    let took = died.elapsed();
    assert!(took < Duration::from_secs(7), "bus_down after {took:?}");
    wait_for("every unit offline", 10, || async {
        let mut none = true;
        for dev in devices {
            none &= !online(&d, dev.split_once(':').unwrap().0).await;
        }
        none.then_some(())
    })
    .await;
    for dev in ["lit-081", "lit-082"] {
        assert_eq!(ticket_count(&d, dev, "offline").await, 0, "{dev} is covered by the bus fault");
    }
}
