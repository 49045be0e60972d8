//! Benchmark of Modbus polling (not a timed test). Run with
//! `cargo bench --bench modbus`; figures go to docs/PERF.md.
//!
//! firmware-sim (a separate process) serves N solar heaters over Modbus TCP
//! on loopback, a server each. This process polls them with a 30-point map
//! (22 u16, 2 f32, 1 i16 input registers with gaps, 5 discrete inputs), all
//! devices at once with 64 in flight, as the daemon does:
//!
//! 1. aftercare's poll engine (`run_plan`: merged requests, timeouts, decoding),
//! 2. the same merged requests from a bare tokio-modbus client (no decoding):
//!    the round trip the engine should stay within 1.5x of,
//! 3. one request per point, as a naive client would.
//!
//! Then CPU: 500 devices of 30 points polled every second for 10 s, as the share of one core.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aftercare::ingest::modbus::{ConnectFuture, Failure, run_plan};
use aftercare::modbus::{DataType, Endpoint, Function, Order, Point, RegisterMap, Transport};
use tokio::sync::Semaphore;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::Slave;

const IN_FLIGHT: usize = 64;

fn sim_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new(env!("CARGO"))
        .args(["build", "--release", "-q", "-p", "firmware-sim"])
        .current_dir(&root)
        .status()
        .expect("cargo build firmware-sim");
    assert!(ok.success());
    root.join("target/release/firmware-sim")
}

/// 30 points over input registers 0–30 and discrete inputs 0–4.
fn map() -> RegisterMap {
    let pt =
        |function, address, ty| Point { metric: 0, function, address, ty, order: Order::Abcd, scale: 0.1, offset: 0.0 };
    let mut points: Vec<Point> = (0..16).map(|a| pt(Function::Input, a, DataType::U16)).collect();
    points.push(pt(Function::Input, 20, DataType::F32));
    points.push(pt(Function::Input, 22, DataType::F32));
    points.extend((24..30).map(|a| pt(Function::Input, a, DataType::U16)));
    points.push(pt(Function::Input, 30, DataType::I16));
    points.extend((0..5).map(|a| pt(Function::Discrete, a, DataType::Bool)));
    RegisterMap::new(points, 8)
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based, in ticks of 1/100 s).
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        transport: Transport::Tcp(addr.to_string()),
        unit: 1,
        poll: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        retries: 0,
        pause: Duration::ZERO,
        offline_after: 3,
    }
}

async fn connect(addr: SocketAddr) -> Context {
    tokio_modbus::client::tcp::connect_slave(addr, Slave(1)).await.expect("connect")
}

/// A device's connection, kept across cycles as the daemon keeps it.
struct Conn {
    addr: SocketAddr,
    ctx: Option<Context>,
}

#[derive(Clone, Copy)]
enum Client {
    Engine,
    Raw,
    PerPoint,
}

/// One cycle over every device; returns (wall time, requests sent, points read).
async fn cycle(conns: &mut [Conn], map: &Arc<RegisterMap>, client: Client) -> (Duration, usize, usize) {
    let sem = Arc::new(Semaphore::new(IN_FLIGHT));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for c in conns.iter_mut() {
        let (addr, mut ctx) = (c.addr, c.ctx.take());
        let map = Arc::clone(map);
        let sem = Arc::clone(&sem);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let (mut requests, mut points) = (0, 0);
            match client {
                Client::Engine => {
                    let ep = endpoint(addr);
                    let mut reconnect = move || -> ConnectFuture {
                        Box::pin(async move {
                            tokio_modbus::client::tcp::connect_slave(addr, Slave(1)).await.map_err(|_| Failure::Connect)
                        })
                    };
                    let p = run_plan(&mut ctx, &map, &ep, 1, &mut reconnect).await;
                    assert!(p.failures.is_empty(), "{:?}", p.failures);
                    requests += p.answered;
                    points += p.readings.len();
                }
                Client::Raw => {
                    let c = ctx.as_mut().unwrap();
                    for r in &map.requests {
                        match r.function {
                            Function::Discrete => {
                                c.read_discrete_inputs(r.start, r.count).await.unwrap().unwrap().len()
                            }
                            _ => c.read_input_registers(r.start, r.count).await.unwrap().unwrap().len(),
                        };
                        requests += 1;
                        points += r.points.len();
                    }
                }
                Client::PerPoint => {
                    let c = ctx.as_mut().unwrap();
                    for p in &map.points {
                        match p.function {
                            Function::Discrete => c.read_discrete_inputs(p.address, 1).await.unwrap().unwrap().len(),
                            _ => c.read_input_registers(p.address, p.ty.width()).await.unwrap().unwrap().len(),
                        };
                        requests += 1;
                        points += 1;
                    }
                }
            }
            (ctx, requests, points)
        }));
    }
    let (mut requests, mut points) = (0, 0);
    for (c, t) in conns.iter_mut().zip(tasks) {
        let (ctx, r, p) = t.await.unwrap();
        c.ctx = ctx;
        requests += r;
        points += p;
    }
    (start.elapsed(), requests, points)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn fleet(n: usize) -> (Vec<Conn>, std::process::Child) {
    let mut sim = Command::new(sim_binary())
        .args(["run", "--modbus-tcp", "127.0.0.1:0", "--fleet", &format!("solar_heater={n}"), "--interval", "1s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(sim.stdout.take().unwrap()).lines();
    let mut addrs = Vec::new();
    while addrs.len() < n {
        let l = lines.next().unwrap().unwrap();
        if let Some(rest) = l.strip_prefix("modbus ") {
            addrs.push(rest.rsplit_once(' ').unwrap().1.parse::<SocketAddr>().unwrap());
        }
    }
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let mut conns = Vec::with_capacity(n);
    for a in addrs {
        conns.push(Conn { addr: a, ctx: Some(connect(a).await) });
    }
    (conns, sim)
}

#[tokio::main]
async fn main() {
    let map = Arc::new(map());
    println!(
        "map: {} points in {} merged requests ({:?})",
        map.points.len(),
        map.requests.len(),
        map.requests.iter().map(|r| (r.function.name(), r.start, r.count)).collect::<Vec<_>>()
    );
    for n in [10, 100, 1000] {
        let (mut conns, mut sim) = fleet(n).await;
        // Warm up: every connection made and used once.
        cycle(&mut conns, &map, Client::Engine).await;
        let mut rows = Vec::new();
        for (name, client) in
            [("engine", Client::Engine), ("raw merged", Client::Raw), ("one per point", Client::PerPoint)]
        {
            let mut walls = Vec::new();
            let cpu0 = cpu_seconds();
            let (mut requests, mut points) = (0, 0);
            for _ in 0..7 {
                let (w, r, p) = cycle(&mut conns, &map, client).await;
                walls.push(w);
                (requests, points) = (r, p);
            }
            let cpu = (cpu_seconds() - cpu0) / 7.0;
            rows.push((name, median(walls), requests, points, cpu));
        }
        let raw = rows[1].1.as_secs_f64();
        for (name, wall, requests, points, cpu) in rows {
            println!(
                "{n:>5} devices  {name:<14} cycle {:>8.2} ms ({:.2}x raw)  {requests:>6} requests for {points:>6} points  client CPU {:>6.1} ms/cycle",
                wall.as_secs_f64() * 1e3,
                wall.as_secs_f64() / raw,
                cpu * 1e3,
            );
        }
        let _ = sim.kill();
        let _ = sim.wait();
    }

    // CPU at the daemon's pace: 500 devices of 30 points, every second, for 10 s.
    let (mut conns, mut sim) = fleet(500).await;
    cycle(&mut conns, &map, Client::Engine).await;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        tick.tick().await;
        worst = worst.max(cycle(&mut conns, &map, Client::Engine).await.0);
    }
    tick.tick().await;
    let share = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();
    println!(
        "  500 devices x {} points every 1 s for 10 s: {:.1} % of one core (poll engine, this process); slowest cycle {:.1} ms",
        map.points.len(),
        share * 100.0,
        worst.as_secs_f64() * 1e3
    );
    let _ = sim.kill();
    let _ = sim.wait();
}
