//! Benchmark of a quarterly report (not a timed test). Run with
//! `cargo bench --bench report`; figures go to docs/PERF.md.
//!
//! 10,000 devices of one customer (2,500 of each kind), a quarter with
//! 20,000 tickets (one fault every ~6.5 minutes; half acknowledged and
//! resolved, some recurring) and 10,000 outages in the state history, plus
//! 30,000 work orders. Measured: the time to compute the report and to render
//! it as HTML, JSON and CSV, and the process's peak memory.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use aftercare::config::Config;
use aftercare::domain::{FaultChange, Tier};
use aftercare::report::{Lang, Scope, compute, render};
use aftercare::store::{FaultRecord, NewWorkOrder, Store};
use aftercare::tickets::State;
use chrono::{DateTime, TimeDelta, Utc};

const DEVICES: usize = 10_000;
const TICKETS: usize = 20_000;

fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("kinds")).unwrap();
    for k in ["recorder", "solar_heater", "led_display", "lighting"] {
        std::fs::copy(root.join(format!("config/kinds/{k}.toml")), dir.path().join(format!("kinds/{k}.toml"))).unwrap();
    }
    let kinds = ["recorder", "solar_heater", "led_display", "lighting"];
    let mut cfg = String::from(
        "include = [\"kinds/recorder.toml\", \"kinds/solar_heater.toml\", \"kinds/led_display.toml\", \"kinds/lighting.toml\"]\n\
         [store]\npath = \"a.db\"\n[[sites]]\nid = \"s\"\nutc_offset = \"+08:00\"\n[[customers]]\nid = \"c\"\n",
    );
    for i in 0..DEVICES {
        cfg.push_str(&format!(
            "[[devices]]\nid = \"d-{i:05}\"\nkind = \"{}\"\nsite = \"s\"\ncustomer = \"c\"\nmodel = \"M{}\"\naccepted_on = \"2025-06-01\"\n",
            kinds[i % 4],
            i % 40
        ));
    }
    std::fs::write(dir.path().join("a.toml"), cfg).unwrap();
    let config = Config::load(&dir.path().join("a.toml")).unwrap();
    let store = Store::open(&config.store_path).await.unwrap();
    let from: DateTime<Utc> = "2026-07-01T00:00:00Z".parse().unwrap();
    let to: DateTime<Utc> = "2026-10-01T00:00:00Z".parse().unwrap();
    let span = (to - from).num_seconds();
    let t = Instant::now();
    let rec = |i: usize, code: &str, change: FaultChange, at: DateTime<Utc>| FaultRecord {
        device: format!("d-{:05}", (i * 7919) % DEVICES),
        site: "s".into(),
        customer: "c".into(),
        kind: kinds[((i * 7919) % DEVICES) % 4].into(),
        code: code.into(),
        title: code.into(),
        tier: [Tier::Major, Tier::Main, Tier::Minor][i % 3],
        at,
        detail: String::new(),
        change,
        deadlines: Default::default(),
        warranty: None,
        repeat: None,
    };
    let mut batch = Vec::new();
    for i in 0..TICKETS {
        let at = from + TimeDelta::seconds(span * i as i64 / TICKETS as i64);
        let code = ["leak", "offline", "overheat", "sensor"][i % 4];
        batch.push(rec(i % (DEVICES * 3 / 2), code, FaultChange::Raised, at));
        if code == "offline" {
            batch.push(rec(i % (DEVICES * 3 / 2), code, FaultChange::Cleared, at + TimeDelta::minutes(90)));
        }
        if batch.len() >= 500 {
            store.apply_faults(&batch, at, Duration::from_secs(86_400)).await.unwrap();
            batch.clear();
        }
    }
    store.apply_faults(&batch, to, Duration::from_secs(86_400)).await.unwrap();
    // Half the tickets acknowledged and resolved.
    for id in (1..=TICKETS as i64).step_by(2) {
        let at = from + TimeDelta::seconds(span * id / TICKETS as i64);
        let _ = store
            .transition(aftercare::domain::TicketId(id), State::Acknowledged, "eng", "", at + TimeDelta::minutes(20))
            .await;
        let _ = store
            .transition(aftercare::domain::TicketId(id), State::Resolved, "eng", "", at + TimeDelta::hours(5))
            .await;
    }
    let orders: Vec<NewWorkOrder> = (0..DEVICES * 3)
        .map(|i| NewWorkOrder {
            contract: "k".into(),
            plan: "patrol".into(),
            kind: aftercare::domain::VisitKind::Patrol,
            device: format!("d-{:05}", i % DEVICES),
            site: "s".into(),
            customer: "c".into(),
            due_on: (from + TimeDelta::days(10 + 30 * (i / DEVICES) as i64)).date_naive(),
            checklist: vec!["a".into(), "b".into()],
            to_helpdesk: true,
            ticket_id: None,
        })
        .collect();
    store.add_work_orders(&orders, from).await.unwrap();
    println!(
        "fixture: {DEVICES} devices, {TICKETS} fault reports, 30,000 work orders, made in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let before = peak_rss_mb();
    let scope = Scope { customer: Some("c".into()), site: None, from, to };
    for run in 1..=3 {
        let t = Instant::now();
        let r = compute(&store, &config.fleet, &scope, Lang::Zh, to).await.unwrap();
        let computed = t.elapsed();
        let html = render::html(&r, Lang::Zh);
        let json = serde_json::to_string(&r).unwrap();
        let csv = render::csv(&r);
        let all = t.elapsed();
        println!(
            "run {run}: quarterly report of {} devices, {} tickets, {} outages: computed in {:.2} s, rendered (HTML {} KB, JSON {} KB, CSV {} KB) in {:.2} s total",
            r.devices.len(),
            r.faults.iter().map(|f| f.tickets).sum::<u32>(),
            r.devices.iter().map(|d| d.outages).sum::<u32>(),
            computed.as_secs_f64(),
            html.len() / 1024,
            json.len() / 1024,
            csv.len() / 1024,
            all.as_secs_f64()
        );
    }
    match render::fonts() {
        Ok(fonts) => {
            let r = compute(&store, &config.fleet, &scope, Lang::Zh, to).await.unwrap();
            for run in 1..=3 {
                let t = Instant::now();
                let pdf = render::pdf(&r, Lang::Zh, &fonts).await.unwrap();
                println!(
                    "run {run}: the same as PDF ({} KB, its tables cut at 500 rows) in {:.2} s",
                    pdf.len() / 1024,
                    t.elapsed().as_secs_f64()
                );
            }
        }
        Err(e) => println!("no PDF: {e}"),
    }
    println!("peak memory: {:.0} MB (after the fixture: {before:.0} MB)", peak_rss_mb());
}
