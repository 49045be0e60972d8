//! The web console in a real browser: Debian's Chromium, headless, driven by Playwright's
//! client library (tests/browser/console.js) against the real daemon and firmware-sim. Each
//! test keeps a screenshot in target/screenshots.

use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

use crate::access::{token_of, two_customers_edited, two_customers_quiet};
use crate::harness::*;

const PASSWORD: &str = "a console password 1";

/// Chromium, or `None` (then the test says so and passes, unless AFTERCARE_TEST_REQUIRE_PEERS
/// is set, as in CI).
fn chromium() -> Option<String> {
    match std::env::var("AFTERCARE_TEST_CHROMIUM") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() => {
            panic!("AFTERCARE_TEST_CHROMIUM is not set; run `eval \"$(scripts/peers.sh)\"` first")
        }
        _ => {
            eprintln!("AFTERCARE_TEST_CHROMIUM is not set: skipping; `eval \"$(scripts/peers.sh)\"` installs Chromium");
            None
        }
    }
}

/// One run of a scenario of tests/browser/console.js.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    said: Vec<String>,
}

impl Browser {
    fn start(chromium: &str, scenario: &str, d: &Daemon, user: &str, args: &[&str]) -> Browser {
        let shots = repo().join("target/screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let mut child = Command::new("node")
            .arg(repo().join("tests/browser/console.js"))
            .args([scenario, d.http.as_str(), user, PASSWORD, shots.to_str().unwrap()])
            .args(args)
            .env("CHROMIUM", chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node, to drive the browser");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Browser { child, stdin, lines, said: Vec::new() }
    }

    /// The next line that starts with `what`; a `FAIL` or silence fails the test.
    #[allow(clippy::disallowed_methods)] // a deadline for the browser, not the daemon's clock
    fn expect(&mut self, what: &str, secs: u64) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.said.push(l.clone());
                    if let Some(rest) = l.strip_prefix(what) {
                        return rest.trim().to_string();
                    }
                    assert!(!l.starts_with("FAIL"), "the browser: {}", self.said.join("\n"));
                }
                Err(_) => panic!("no `{what}` from the browser in {secs} s: {}", self.said.join("\n")),
            }
        }
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn finish(mut self) {
        self.expect("OK", 60);
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the browser run: {}", self.said.join("\n"));
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the browser did not exit after its scenario: {}", self.said.join("\n"));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Gives the users of [`two_customers_quiet`] a password to log in with.
fn passwords(d: &Daemon, names: &[&str]) {
    let config = d.dir.path().join("aftercare.toml");
    for n in names {
        let (ok, _, err) = cli(&config, &["user", "passwd", n], &format!("{PASSWORD}\n"));
        assert!(ok, "passwd {n}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_appears_in_the_managers_queue_without_a_reload() {
    let Some(chromium) = chromium() else { return };
    let (d, mut sim) = two_customers_quiet("");
    passwords(&d, &["max"]);
    let mut b = Browser::start(&chromium, "queue", &d, "max", &[]);
    let before: usize = b.expect("READY", 60).parse().unwrap();
    sim.send("inject lit-a leakage");
    b.say("GO leakage on lit-a");
    let id = b.expect("SEEN", 45);
    b.finish();
    let t = get(&d.url(&format!("/api/v1/tickets/{id}"))).await;
    assert_eq!((&t["device"], &t["code"]), (&json!("lit-a"), &json!("leakage")), "{t}");
    let open = get(&d.url("/api/v1/tickets?open=true")).await;
    assert_eq!(open.as_array().unwrap().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countdown_runs_out_into_a_missed_mark_without_a_reload() {
    let Some(chromium) = chromium() else { return };
    let fleet = ["lit-c:lighting"];
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let slow = super::FAST_CONTRACT
        .replace("acknowledge = \"2s\"", "acknowledge = \"20s\"")
        .replace("on_site = \"3s\"", "on_site = \"10m\"")
        .replace("resolve = \"4s\"", "resolve = \"1h\"");
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + &slow).unwrap();
    provision(&path, "max", "manager", &[], &token_of("max"));
    let d = Daemon::start(dir, &prefix, &broker);
    passwords(&d, &["max"]);
    let mut sim = Sim::start(&d, &fleet);
    super::all_online(&d, 1).await;
    sim.send("inject lit-c leakage");
    super::one_ticket(&d, "lit-c", "leakage", "opened", |_| true).await;
    let mut b = Browser::start(&chromium, "breach", &d, "max", &[]);
    let row = b.expect("SEEN", 60);
    b.finish();
    assert!(row.contains("missed"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chinese_queue_has_no_english_left() {
    let Some(chromium) = chromium() else { return };
    let (d, mut sim) = two_customers_quiet("");
    passwords(&d, &["max"]);
    sim.send("inject lit-a leakage");
    let call = json!({"channel": "phone", "category": "request", "customer": "cust-1", "problem": "换季检修"});
    let r = as_user(&token_of("dee")).post(d.url("/api/v1/tickets")).json(&call).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    wait_for("the fault's ticket", 30, || async {
        let t = get(&d.url("/api/v1/tickets?device=lit-a")).await;
        (!t.as_array()?.is_empty()).then_some(())
    })
    .await;
    let b = Browser::start(&chromium, "zh", &d, "max", &["lit-a", "site-a", "lit-b", "site-b"]);
    b.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reaches_its_own_tickets_and_never_anothers_by_url() {
    let Some(chromium) = chromium() else { return };
    let (d, mut sim) = two_customers_quiet("");
    passwords(&d, &["cat"]);
    sim.send("inject lit-a leakage");
    sim.send("inject lit-b leakage");
    let both = wait_for("a ticket for each customer", 30, || async {
        let t = get(&d.url("/api/v1/tickets")).await;
        (t.as_array()?.len() == 2).then_some(t)
    })
    .await;
    let id_of = |c: &str| both.as_array().unwrap().iter().find(|t| t["customer"] == c).unwrap()["id"].to_string();
    let (own, other) = (id_of("cust-1"), id_of("cust-2"));
    let b = Browser::start(&chromium, "scope", &d, "cat", &[&own, &other]);
    b.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_sends_an_undelivered_helpdesk_event_again() {
    let Some(chromium) = chromium() else { return };
    let fleet = ["lit-d:lighting"];
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    // A helpdesk that never answers, and events that die after two seconds.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[[customers]]\nid = \"cust-1\"\n", "[[customers]]\nid = \"cust-1\"\nhelpdesk = \"gone\"\n")
        + &format!("[helpdesks.gone]\nwebhook = {{ url = \"http://127.0.0.1:{closed}/hook\", timeout = \"1s\" }}\n")
        + "[outbox]\ndead_after = \"2s\"\nmax_backoff = \"1s\"\n";
    std::fs::write(&path, cfg).unwrap();
    provision(&path, "max", "manager", &[], &token_of("max"));
    let d = Daemon::start(dir, &prefix, &broker);
    passwords(&d, &["max"]);
    let mut sim = Sim::start(&d, &fleet);
    super::all_online(&d, 1).await;
    sim.send("inject lit-d leakage");
    let dead = wait_for("a dead helpdesk event", 40, || async {
        let rows = get(&d.url("/api/v1/outbox?state=dead")).await;
        (!rows.as_array()?.is_empty()).then_some(rows)
    })
    .await;
    let first = dead[0]["id"].clone();
    let mut b = Browser::start(&chromium, "outbox", &d, "max", &[]);
    b.expect("SEEN", 60);
    b.finish();
    // Sent again: pending, or tried again (and dead once more) since.
    let row = wait_for("the event tried again", 20, || async {
        let all = get(&d.url("/api/v1/outbox?state=pending")).await;
        let dead = get(&d.url("/api/v1/outbox?state=dead")).await;
        let mut rows = all.as_array()?.clone();
        rows.extend(dead.as_array()?.iter().cloned());
        let r = rows.into_iter().find(|r| r["id"] == first)?;
        (r["state"] == json!("pending") || r["next_attempt_at"] != dead[0]["next_attempt_at"]).then_some(r)
    })
    .await;
    assert_eq!(row["event_id"], dead[0]["event_id"], "the same event: {row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_opens_a_ticket_from_a_call_in_one_form() {
    let Some(chromium) = chromium() else { return };
    let (d, _sim) = two_customers_quiet("");
    passwords(&d, &["dee"]);
    let mut b = Browser::start(&chromium, "call", &d, "dee", &[]);
    let id = b.expect("SEEN", 60);
    b.finish();
    let t = get(&d.url(&format!("/api/v1/tickets/{id}"))).await;
    assert_eq!(
        (&t["device"], &t["channel"], &t["category"]),
        (&json!("lit-a"), &json!("phone"), &json!("fault")),
        "{t}"
    );
    assert_eq!(t["reporter"], json!({"name": "Wang Li", "phone": "138 0000 0000"}));
    assert_eq!((&t["reported_by"], &t["clock"]["contract"]), (&json!("dee"), &json!("k")), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engineer_completes_a_visit_on_a_phone() {
    let Some(chromium) = chromium() else { return };
    let (d, _sim) = two_customers_quiet("");
    passwords(&d, &["eve"]);
    let all = get(&d.url("/api/v1/work-orders?customer=cust-1&state=open")).await;
    let visit = all.as_array().unwrap().first().expect("an open visit").clone();
    let id = visit["id"].to_string();
    let r = as_user(&token_of("dee"))
        .post(d.url(&format!("/api/v1/work-orders/{id}/assign")))
        .json(&json!({"assignee": "eve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut b = Browser::start(&chromium, "visit", &d, "eve", &[&id]);
    b.expect("SEEN", 60);
    b.finish();
    let w = get(&d.url(&format!("/api/v1/work-orders/{id}"))).await;
    assert_eq!((&w["state"], &w["completed_by"]), (&json!("done"), &json!("eve")), "{w}");
    assert_eq!(w["answers"]["lamps"], json!("checked, 2 lamps replaced"), "{w}");
    assert_eq!(w["answers"]["circuits"]["measured"], json!(true), "the telemetry's answer is kept: {w}");
    // The customer's signature is kept with who signed, as a PNG of the visit's.
    assert_eq!(w["signed_by"], json!("Zhang Wei"), "{w}");
    // Each defect found is a repair task: a request of the device under the visit's contract,
    // its clock giving the date it is due (001 ¶14-15).
    let defects = w["defects"].as_array().unwrap();
    let texts: Vec<&str> = defects.iter().map(|d| d["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["lamp 3 flickers", "bracket <b>loose</b>"], "{w}");
    for defect in defects {
        let t = get(&d.url(&format!("/api/v1/tickets/{}", defect["ticket"]))).await;
        assert_eq!(
            (&t["category"], &t["channel"], &t["device"]),
            (&json!("request"), &json!("visit"), &json!("lit-a")),
            "{t}"
        );
        assert_eq!(t["clock"]["contract"], visit["contract"], "{t}");
        assert!(t["clock"]["next_due"].is_string(), "a date it is due by: {t}");
        assert!(t["problem"].as_str().unwrap().starts_with(&format!("defect found on visit #{id}")), "{t}");
    }
    // The inspection's report says what it found, with its repair tasks, and who signed.
    let kept = get(&d.url("/api/v1/reports/kept")).await;
    let en = kept.as_array().unwrap().iter().find(|r| r["lang"] == "en").expect("an English report")["id"].clone();
    let html = as_user(&token_of("mia")).get(d.url(&format!("/api/v1/reports/kept/{en}"))).send().await.unwrap();
    let html = html.text().await.unwrap();
    let first = defects[0]["ticket"].as_i64().unwrap();
    assert!(html.contains(&format!("defect: lamp 3 flickers → #{first}")), "{html}");
    assert!(html.contains("bracket &lt;b&gt;loose&lt;/b&gt;") && html.contains("signed by Zhang Wei"), "{html}");
    let sig = w["signature"].as_i64().expect("a signature id");
    let r = as_user(&token_of("mia"))
        .get(d.url(&format!("/api/v1/work-orders/{id}/attachments/{sig}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = r.bytes().await.unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 1_000, "a drawn signature: {} bytes", png.len());
    // The photo too; and no other visit's address serves them.
    let photo = sig - 1;
    let r = as_user(&token_of("mia"))
        .get(d.url(&format!("/api/v1/work-orders/{id}/attachments/{photo}")))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.bytes().await.unwrap().len()), (200, 74), "the photo as chosen");
    let theirs = get(&d.url("/api/v1/work-orders?customer=cust-2")).await;
    let theirs = theirs.as_array().unwrap().first().expect("a visit of cust-2").clone();
    let answers: serde_json::Map<String, Value> = theirs["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i.as_str().unwrap().to_string(), json!("ok")))
        .collect();
    let theirs = theirs["id"].as_i64().unwrap();
    for (user, visit) in [("max", theirs), ("mia", theirs)] {
        let url = d.url(&format!("/api/v1/work-orders/{visit}/attachments/{sig}"));
        let r = as_user(&token_of(user)).get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{user}: the signature under visit {visit}");
    }
    // A visit done takes no more pictures, and a signature must be one of the visit's.
    let r = as_user(&token_of("eve"))
        .post(d.url(&format!("/api/v1/work-orders/{id}/attachments?kind=photo")))
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let r = as_user(&token_of("max"))
        .post(d.url(&format!("/api/v1/work-orders/{theirs}/complete")))
        .json(&json!({"answers": answers, "signed_by": "Zhang Wei", "signature": sig}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 400, "another visit's signature: {text}");
    assert!(text.contains("signature"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_acknowledges_and_comments_from_a_phone() {
    let Some(chromium) = chromium() else { return };
    let (d, _sim) = two_customers_quiet("");
    passwords(&d, &["dee"]);
    let call = json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": "Dark since 6 pm"});
    let r = as_user(&token_of("dee")).post(d.url("/api/v1/tickets")).json(&call).send().await.unwrap();
    let t: Value = r.json().await.unwrap();
    let id = t["id"].to_string();
    let b = Browser::start(&chromium, "act", &d, "dee", &[&id]);
    b.finish();
    let t = get(&d.url(&format!("/api/v1/tickets/{id}"))).await;
    assert_eq!(t["state"], json!("acknowledged"));
    let lines = t["timeline"].as_array().unwrap();
    assert!(lines.iter().any(|l| l["actor"] == json!("dee") && l["note"] == json!("engineer on the way")), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engineer_records_a_repair_with_a_signature_and_a_photo_on_a_phone() {
    let Some(chromium) = chromium() else { return };
    let (d, mut sim) = two_customers_quiet("");
    passwords(&d, &["eve"]);
    sim.send("inject lit-a leakage");
    let t = wait_for("the fault's ticket", 30, || async {
        let t = get(&d.url("/api/v1/tickets?device=lit-a")).await;
        t.as_array()?.first().cloned()
    })
    .await;
    let id = t["id"].to_string();
    for (to, assignee) in [("acknowledged", None), ("dispatched", Some("eve"))] {
        let mut body = json!({"to": to});
        if let Some(a) = assignee {
            body["assignee"] = json!(a);
        }
        let url = d.url(&format!("/api/v1/tickets/{id}/transition"));
        let r = as_user(&token_of("dee")).post(url).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{to}: {}", r.text().await.unwrap());
    }
    let mut b = Browser::start(&chromium, "repair", &d, "eve", &[&id]);
    b.expect("SEEN", 60);
    b.finish();
    let t = as_user(&token_of("mia")).get(d.url(&format!("/api/v1/tickets/{id}"))).send().await.unwrap();
    let t: Value = t.json().await.unwrap();
    let r = &t["repair"];
    let part = &r["record"]["parts"][0];
    assert_eq!(
        (&part["number"], &part["quantity"], &part["stock"], &part["wear"], &part["unit_cost"]),
        (&json!("LED-DRV-60W"), &json!(2), &json!("van 3"), &json!(true), &json!(5250)),
        "{r}"
    );
    assert_eq!((&r["record"]["labour_minutes"], &r["record"]["travel_km"]), (&json!(45), &json!(12)), "{r}");
    assert_eq!((&r["recorded_by"], &r["charge"]["parts"]), (&json!("eve"), &json!(10500)), "{r}");
    let confirmation = &r["record"]["confirmation"];
    assert_eq!(confirmation["name"], json!("Zhang Wei"), "{r}");
    let kinds: Vec<(i64, String)> = t["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_i64().unwrap(), a["kind"].as_str().unwrap().to_string()))
        .collect();
    let sig = confirmation["signature"].as_i64().expect("a signature");
    assert!(kinds.contains(&(sig, "signature".into())), "{kinds:?}");
    let photo = r["record"]["photos"][0].as_i64().expect("a photo");
    assert!(kinds.contains(&(photo, "photo".into())), "{kinds:?}");
    // The customer's user reads what it is charged, not what the parts cost.
    let seen: Value = as_user(&token_of("cat"))
        .get(d.url(&format!("/api/v1/tickets/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(seen["repair"]["charge"].get("parts").is_none(), "{}", seen["repair"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_sees_visits_on_a_calendar_makes_reports_and_reads_levels_per_contract() {
    let Some(chromium) = chromium() else { return };
    let (d, mut sim) = two_customers_quiet("");
    passwords(&d, &["max"]);
    sim.send("inject lit-a leakage");
    wait_for("the fault's ticket", 30, || async {
        let t = get(&d.url("/api/v1/tickets?device=lit-a")).await;
        (!t.as_array()?.is_empty()).then_some(())
    })
    .await;
    // One inspection done, so that its report is kept.
    let all = get(&d.url("/api/v1/work-orders?customer=cust-1&state=open")).await;
    let visit = all.as_array().unwrap().first().expect("an open visit").clone();
    let id = visit["id"].to_string();
    let answers: serde_json::Map<String, Value> =
        visit["checklist"].as_array().unwrap().iter().map(|i| (i.as_str().unwrap().to_string(), json!("ok"))).collect();
    let r = as_user(&token_of("mia"))
        .post(d.url(&format!("/api/v1/work-orders/{id}/complete")))
        .json(&json!({ "answers": answers }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut b = Browser::start(&chromium, "manage", &d, "max", &[&id, "k"]);
    let size: usize = b.expect("SEEN", 120).parse().unwrap();
    b.finish();
    assert!(size > 1_000, "a PDF of {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_passes_an_accessibility_audit_and_the_keyboard_reaches_it() {
    let Some(chromium) = chromium() else { return };
    let (d, mut sim) = two_customers_quiet("");
    passwords(&d, &["max"]);
    sim.send("inject lit-a leakage");
    let t = wait_for("the fault's ticket", 30, || async {
        let t = get(&d.url("/api/v1/tickets?device=lit-a")).await;
        t.as_array()?.first().cloned()
    })
    .await;
    let all = get(&d.url("/api/v1/work-orders?customer=cust-1&state=open")).await;
    let visit = all.as_array().unwrap().first().expect("an open visit")["id"].to_string();
    let mut b = Browser::start(&chromium, "a11y", &d, "max", &[&t["id"].to_string(), &visit]);
    let pages: usize = b.expect("SEEN", 120).parse().unwrap();
    b.finish();
    assert_eq!(pages, 28, "14 pages at two sizes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_sends_a_unit_to_the_factory_and_records_its_arrival_on_the_ticket_page() {
    let Some(chromium) = chromium() else { return };
    let tiers = "{ acknowledge = \"1h\", factory = \"2h\" }";
    let (d, mut sim) = two_customers_edited("", &|k| k.replace("{ acknowledge = \"1h\" }", tiers));
    passwords(&d, &["dee"]);
    sim.send("inject lit-a leakage");
    let t = wait_for("the fault's ticket", 30, || async {
        let t = get(&d.url("/api/v1/tickets?device=lit-a")).await;
        t.as_array()?.first().cloned()
    })
    .await;
    let id = t["id"].to_string();
    let url = d.url(&format!("/api/v1/tickets/{id}/transition"));
    let r = as_user(&token_of("dee")).post(url).json(&json!({"to": "acknowledged"})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut b = Browser::start(&chromium, "factory", &d, "dee", &[&id]);
    let seen: Value = serde_json::from_str(&b.expect("SEEN", 60)).unwrap();
    b.finish();
    let t: Value = as_user(&token_of("dee"))
        .get(d.url(&format!("/api/v1/tickets/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((&t["state"], &t["factory"]["reference"]), (&json!("at_factory"), &json!("RMA-88 <i>")), "{t}");
    let stage =
        t["clock"]["stages"].as_array().unwrap().iter().find(|s| s["clock"] == json!("factory")).cloned().unwrap();
    let arrived = chrono::DateTime::parse_from_rfc3339(t["factory"]["arrived_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(stage["due_by"].as_str().unwrap()).unwrap();
    assert_eq!(due - arrived, chrono::TimeDelta::hours(2), "{t}");
    // The page shows that deadline in the site's time (+08:00).
    let local =
        due.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).format("%Y-%m-%d %H:%M").to_string();
    assert!(seen["due"].as_str().unwrap().contains(&local), "{seen} vs {local}");
    assert!(seen["trip"].as_str().unwrap().contains("RMA-88 <i>"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_sees_a_spare_part_below_the_reserve_and_records_a_stocktake() {
    let Some(chromium) = chromium() else { return };
    let spares = "\n[[spares]]\nmodel = \"M\"\npart = \"RELAY/16A\"\nname = \"channel relay\"\nper_unit = 2\n";
    let (d, _sim) =
        two_customers_edited("", &|k| k.replace("title = \"k\"\n", "title = \"k\"\nspares_share = 0.5\n") + spares);
    passwords(&d, &["max"]);
    let mut b = Browser::start(&chromium, "spares", &d, "max", &["RELAY/16A"]);
    let seen = b.expect("SEEN", 60);
    b.finish();
    assert!(seen.contains("RELAY/16A"), "{seen}");
    let all: Value = as_user(&token_of("max")).get(d.url("/api/v1/spares")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (&all[0]["part"], &all[0]["stock"], &all[0]["short"]),
        (&json!("RELAY/16A"), &json!(7), &json!(false)),
        "{all}"
    );
}
