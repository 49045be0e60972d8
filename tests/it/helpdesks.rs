//! Request Tracker 5 and Redmine 5, the real servers (`scripts/peers.sh`
//! starts them on loopback and prints the environment these tests read),
//! behind a proxy of the test's own that can take them down or lose answers.
//! Each test files into a queue or project of its own.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::proxy::{Mode, Proxy};
use super::{all_online, one_ticket};
use crate::harness::*;

/// A remote ticket as the test reads it from the helpdesk itself.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub id: String,
    pub subject: String,
    pub status: String,
    pub priority: String,
}

pub(crate) enum Desk {
    Rt { base: String, path: String, token: String, queue: String },
    Redmine { base: String, key: String, project: String },
}

/// The env var, or `None` when the helpdesk servers were not started (then
/// the test says so and passes, unless AFTERCARE_TEST_REQUIRE_PEERS is set, as in CI).
fn env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() => {
            panic!("{name} is not set; run `eval \"$(scripts/peers.sh)\"` first")
        }
        _ => {
            eprintln!("{name} is not set: skipping; `eval \"$(scripts/peers.sh)\"` starts RT and Redmine");
            None
        }
    }
}

/// `http://host:port/path` → (`http://host:port`, `/path`).
fn split(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    match rest.split_once('/') {
        Some((host, path)) => (format!("http://{host}"), format!("/{}", path.trim_end_matches('/'))),
        None => (format!("http://{rest}"), String::new()),
    }
}

fn unique(prefix: &str) -> String {
    #[allow(clippy::disallowed_methods)] // a name no earlier run used
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    format!("{prefix}-{}-{n}", std::process::id())
}

impl Desk {
    pub(crate) async fn rt() -> Option<Desk> {
        let (base, path) = split(&env("AFTERCARE_TEST_RT_URL")?);
        let token = env("AFTERCARE_TEST_RT_TOKEN")?;
        let desk = Desk::Rt { base, path, token, queue: unique("aftercare") };
        let Desk::Rt { queue, .. } = &desk else { unreachable!() };
        let r = desk.req(reqwest::Method::POST, "queue").json(&json!({ "Name": queue })).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201, "creating queue {queue}: {}", r.text().await.unwrap());
        Some(desk)
    }

    pub(crate) async fn redmine() -> Option<Desk> {
        let (base, _) = split(&env("AFTERCARE_TEST_REDMINE_URL")?);
        let key = env("AFTERCARE_TEST_REDMINE_KEY")?;
        let desk = Desk::Redmine { base, key, project: unique("aftercare") };
        let Desk::Redmine { project, .. } = &desk else { unreachable!() };
        let body = json!({"project": {"name": project, "identifier": project, "enabled_module_names": ["issue_tracking"], "tracker_ids": [1, 2, 3]}});
        let r = desk.req(reqwest::Method::POST, "projects.json").json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201, "creating project {project}: {}", r.text().await.unwrap());
        Some(desk)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        let base = match self {
            Desk::Rt { base, .. } | Desk::Redmine { base, .. } => base,
        };
        base.strip_prefix("http://").unwrap().parse().unwrap()
    }

    /// The helpdesk's config, pointing at `via`.
    pub(crate) fn config(&self, via: SocketAddr) -> String {
        match self {
            Desk::Rt { path, token, queue, .. } => format!(
                "request_tracker = {{ url = \"http://{via}{path}\", token = \"{token}\", queue = \"{queue}\", \
                 reference_field = \"aftercare\", poll_every = \"1s\", timeout = \"10s\" }}\n"
            ),
            Desk::Redmine { key, project, .. } => format!(
                "redmine = {{ url = \"http://{via}\", api_key = \"{key}\", project = \"{project}\", \
                 poll_every = \"1s\", timeout = \"10s\" }}\n"
            ),
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        match self {
            Desk::Rt { base, path: root, token, .. } => http()
                .request(method, format!("{base}{root}/REST/2.0/{path}"))
                .header("authorization", format!("token {token}")),
            Desk::Redmine { base, key, .. } => {
                http().request(method, format!("{base}/{path}")).header("x-redmine-api-key", key.as_str())
            }
        }
    }

    async fn json(&self, path: &str) -> Value {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Every ticket in the test's queue or project, oldest first.
    pub(crate) async fn tickets(&self) -> Vec<Remote> {
        match self {
            Desk::Rt { queue, .. } => {
                let q = format!("Queue = '{queue}'");
                let v = self
                    .json(&format!(
                        "tickets?query={}&fields=Subject,Status,Priority&orderby=id&order=ASC&per_page=100",
                        urlencode(&q)
                    ))
                    .await;
                v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| Remote {
                        id: i["id"].as_str().unwrap().to_string(),
                        subject: i["Subject"].as_str().unwrap_or_default().to_string(),
                        status: i["Status"].as_str().unwrap_or_default().to_string(),
                        priority: i["Priority"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            }
            Desk::Redmine { project, .. } => {
                let v = self.json(&format!("issues.json?project_id={project}&status_id=*&sort=id&limit=100")).await;
                v["issues"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| Remote {
                        id: i["id"].to_string(),
                        subject: i["subject"].as_str().unwrap_or_default().to_string(),
                        status: i["status"]["name"].as_str().unwrap_or_default().to_string(),
                        priority: i["priority"]["name"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            }
        }
    }

    /// How many updates (RT comments, Redmine notes) a ticket has.
    pub(crate) async fn updates(&self, id: &str) -> usize {
        match self {
            Desk::Rt { .. } => {
                let v = self.json(&format!("ticket/{id}/history?fields=Type&per_page=100")).await;
                v["items"].as_array().unwrap().iter().filter(|t| t["Type"] == json!("Comment")).count()
            }
            Desk::Redmine { .. } => {
                let v = self.json(&format!("issues/{id}.json?include=journals")).await;
                v["issue"]["journals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|j| !j["notes"].as_str().unwrap_or_default().is_empty())
                    .count()
            }
        }
    }

    /// Everything written on a ticket: its description and every update.
    pub(crate) async fn text(&self, id: &str) -> String {
        let (v, items, field) = match self {
            Desk::Rt { .. } => {
                (self.json(&format!("ticket/{id}/attachments?fields=Content&per_page=100")).await, "items", "Content")
            }
            Desk::Redmine { .. } => {
                let v = self.json(&format!("issues/{id}.json?include=journals")).await;
                let mut all = vec![v["issue"]["description"].clone()];
                all.extend(v["issue"]["journals"].as_array().unwrap().iter().map(|j| j["notes"].clone()));
                (
                    json!({ "items": all.into_iter().map(|n| json!({ "notes": n })).collect::<Vec<_>>() }),
                    "items",
                    "notes",
                )
            }
        };
        v[items].as_array().unwrap().iter().filter_map(|i| i[field].as_str()).collect::<Vec<_>>().join("\n---\n")
    }

    /// A person changes a ticket's status in the helpdesk.
    pub(crate) async fn set_status(&self, id: &str, status: &str) {
        let r = match self {
            Desk::Rt { .. } => {
                self.req(reqwest::Method::PUT, &format!("ticket/{id}")).json(&json!({ "Status": status })).send().await
            }
            Desk::Redmine { .. } => {
                let statuses = self.json("issue_statuses.json").await;
                let sid = statuses["issue_statuses"].as_array().unwrap().iter().find(|s| s["name"] == json!(status));
                let body = json!({"issue": {"status_id": sid.unwrap()["id"]}});
                self.req(reqwest::Method::PUT, &format!("issues/{id}.json")).json(&body).send().await
            }
        }
        .unwrap();
        assert!(r.status().is_success(), "setting {id} to {status}: {}", r.status());
    }

    /// A person deletes a ticket, where the helpdesk lets one (Redmine; RT only marks it deleted).
    pub(crate) async fn delete(&self, id: &str) -> bool {
        match self {
            Desk::Rt { .. } => false,
            Desk::Redmine { .. } => {
                let r = self.req(reqwest::Method::DELETE, &format!("issues/{id}.json")).send().await.unwrap();
                assert!(r.status().is_success(), "deleting {id}: {}", r.status());
                true
            }
        }
    }

    /// The status names the test expects: (active, resolved, closed).
    pub(crate) fn statuses(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            Desk::Rt { .. } => ("open", "resolved", "resolved"),
            Desk::Redmine { .. } => ("In Progress", "Resolved", "Closed"),
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn transition(d: &Daemon, ticket: i64, to: &str) {
    let url = d.url(&format!("/api/v1/tickets/{ticket}/transition"));
    let r = api().post(&url).json(&json!({"to": to})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{to}: {}", r.text().await.unwrap());
}

async fn ticket(d: &Daemon, id: i64) -> Value {
    get(&d.url(&format!("/api/v1/tickets/{id}"))).await
}

async fn outbox(d: &Daemon, state: &str) -> Vec<Value> {
    get(&d.url(&format!("/api/v1/outbox?state={state}"))).await.as_array().unwrap().clone()
}

/// The whole round trip against one helpdesk: a fault opens, recovers and
/// closes through an outage; a create whose answer is lost, with a kill -9;
/// status changed in the helpdesk, reflected here and not echoed.
async fn round_trip(desk: Desk, a: &str, b: &str, tier1_priority: &str) {
    let proxy = Proxy::start(desk.addr()).await;
    let fleet = [&format!("{a}:lighting")[..], &format!("{b}:lighting")[..]];
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[[customers]]\nid = \"cust-1\"\n", "[[customers]]\nid = \"cust-1\"\nhelpdesk = \"desk\"\n")
        + &format!("[helpdesks.desk]\n{}", desk.config(proxy.addr));
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::start(dir, &prefix, &broker);
    let mut sim = Sim::start(&d, &fleet);
    all_online(&d, 2).await;
    let (active, resolved, closed) = desk.statuses();

    // A fault opens: one remote ticket, tagged, at the tier's priority.
    sim.send(&format!("inject {a} leakage"));
    let t1 = one_ticket(&d, a, "leakage", "opened", |_| true).await["id"].as_i64().unwrap();
    let first = wait_for("the remote ticket", 30, || async {
        let t = desk.tickets().await;
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(first.len(), 1, "{first:?}");
    let r1 = first[0].clone();
    assert!(r1.subject.starts_with(&format!("[aftercare #{t1}] Tier 1 leakage on {a}")), "{r1:?}");
    assert_eq!(r1.priority, tier1_priority, "{r1:?}");

    // The helpdesk is down while the fault recovers and people resolve and close the ticket.
    proxy.set(Mode::Down);
    sim.send(&format!("clear {a} leakage"));
    one_ticket(&d, a, "leakage", "recovered", |t| t["recovered"] == json!(true)).await;
    transition(&d, t1, "resolved").await;
    transition(&d, t1, "closed").await;
    wait_for("failed attempts while the helpdesk is down", 30, || async {
        outbox(&d, "pending").await.iter().any(|r| r["attempts"].as_i64() >= Some(1)).then_some(())
    })
    .await;
    proxy.set(Mode::Up);
    wait_for("every event after the outage", 60, || async {
        let t = desk.tickets().await;
        (t.len() == 1 && t[0].status == closed && desk.updates(&t[0].id).await >= 3).then_some(())
    })
    .await;
    assert_eq!(desk.updates(&r1.id).await, 3, "recovered, resolved and closed, once each");

    // A create takes effect in the helpdesk but its answer is lost, and the daemon is killed.
    proxy.set(Mode::SwallowPosts);
    sim.send(&format!("inject {b} leakage"));
    let t2 = one_ticket(&d, b, "leakage", "opened", |_| true).await["id"].as_i64().unwrap();
    wait_for("the second remote ticket", 30, || async { (desk.tickets().await.len() == 2).then_some(()) }).await;
    // The daemon dies first: a simulator stopped before it would leave its last will, an
    // offline ticket per device, in the daemon's hands.
    let dir = d.kill9();
    drop(sim);
    proxy.set(Mode::Up);
    let d = Daemon::start(dir, &prefix, &broker);
    wait_for("the open event delivered after the restart", 60, || async {
        let done = outbox(&d, "delivered").await;
        done.iter().any(|r| r["ticket_id"] == json!(t2) && r["seq"] == json!(1)).then_some(())
    })
    .await;
    let all = desk.tickets().await;
    assert_eq!(all.len(), 2, "still one remote ticket per fault: {all:?}");
    let r2 = all[1].clone();
    assert!(r2.subject.starts_with(&format!("[aftercare #{t2}]")), "{r2:?}");
    assert_eq!(desk.updates(&r2.id).await, 0, "the lost create is not followed by a repeat of its event");

    // A person resolves it in the helpdesk: resolved here, naming the helpdesk; not sent back.
    desk.set_status(&r2.id, resolved).await;
    let t = wait_for("the resolution to come back", 30, || async {
        let t = ticket(&d, t2).await;
        (t["state"] == json!("resolved")).then_some(t)
    })
    .await;
    let last = t["timeline"].as_array().unwrap().last().unwrap().clone();
    assert!(last["actor"].as_str().unwrap().starts_with("helpdesk:desk"), "{last:#}");
    // And reopens it there: open again here.
    desk.set_status(&r2.id, active).await;
    wait_for("the reopening to come back", 30, || async {
        (ticket(&d, t2).await["state"] == json!("open")).then_some(())
    })
    .await;
    wait_for("both echoes skipped", 10, || async {
        let skipped = outbox(&d, "skipped").await;
        (skipped.iter().filter(|r| r["ticket_id"] == json!(t2)).count() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = desk.tickets().await;
    assert_eq!(now[1].status, active, "aftercare does not undo what the person did: {now:?}");
    assert_eq!(desk.updates(&r2.id).await, 0, "nothing was sent back");
    assert!(outbox(&d, "dead").await.is_empty());

    // Somebody deletes a remote ticket: its next event is refused for good and
    // dead-lettered, and the other ticket's events still flow.
    if desk.delete(&r1.id).await {
        transition(&d, t1, "open").await;
        transition(&d, t2, "acknowledged").await;
        let dead = wait_for("the refused event dead-lettered", 30, || async {
            let dead = outbox(&d, "dead").await;
            (!dead.is_empty()).then_some(dead)
        })
        .await;
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0]["ticket_id"], json!(t1));
        assert!(dead[0]["last_error"].as_str().unwrap().contains("404"), "{:?}", dead[0]);
        wait_for("the other ticket's event", 30, || async { (desk.updates(&r2.id).await == 1).then_some(()) }).await;
    }

    // An update takes effect in the helpdesk but its answer is lost, on every try: the retry
    // finds the event's text there, and tells it once.
    let told = desk.updates(&r2.id).await;
    proxy.set(Mode::SwallowWrites);
    transition(&d, t2, "dispatched").await;
    wait_for("the update delivered while its answers are lost", 40, || async {
        let done = outbox(&d, "delivered").await;
        done.iter()
            .any(|r| {
                r["ticket_id"] == json!(t2) && r["event"] == json!("transition") && r["attempts"].as_i64() >= Some(2)
            })
            .then_some(())
    })
    .await;
    proxy.set(Mode::Up);
    assert_eq!(desk.updates(&r2.id).await, told + 1, "once, though the first try took without an answer");
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_reach_request_tracker_once_each_and_its_status_comes_back() {
    let Some(desk) = Desk::rt().await else { return };
    round_trip(desk, "lit-021", "lit-022", "High").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_reach_redmine_once_each_and_its_status_comes_back() {
    let Some(desk) = Desk::redmine().await else { return };
    round_trip(desk, "lit-031", "lit-032", "Urgent").await;
}

async fn work_order(d: &Daemon, id: i64) -> Value {
    get(&d.url(&format!("/api/v1/work-orders/{id}"))).await
}

/// Planned visits go to the helpdesk like tickets: one remote ticket per work
/// order, at the lowest priority, updated when it is missed, started and done
/// (with the checklist's answers), and resolved there when it is done.
async fn visits(desk: Desk, device: &str, low_priority: &str) {
    let fleet = [&format!("{device}:lighting")[..]];
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    // A monthly inspection whose last visit was due about four weeks ago (missed) and whose
    // next is due in three days, and patrols kept out of the helpdesk.
    let patrols = "[[contracts.k.plans]]\nname = \"patrol\"\nkind = \"patrol\"\nanchor = \"{anchor}\"\n\
                   every = \"1 month\"\nlead = \"5 days\"\nhelpdesk = false\n";
    let (contract, next) = monthly_inspection(patrols);
    // A store that has watched the site for two months: the visit due four weeks ago was its to make.
    let (_, dir) = Daemon::start(dir, &prefix, &broker).terminate();
    backdate_store(dir.path(), 60);
    let path = dir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[[customers]]\nid = \"cust-1\"\n", "[[customers]]\nid = \"cust-1\"\nhelpdesk = \"desk\"\n")
        + &format!("[helpdesks.desk]\n{}", desk.config(desk.addr()))
        + &contract;
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::start(dir, &prefix, &broker);
    let orders = wait_for("the work orders", 30, || async {
        let w = get(&d.url("/api/v1/work-orders?kind=inspection")).await;
        (w.as_array()?.len() == 2).then_some(w)
    })
    .await;
    let (missed, open) = (orders[0]["id"].as_i64().unwrap(), orders[1]["id"].as_i64().unwrap());
    assert_eq!(orders[0]["state"], json!("missed"), "{orders:#}");
    let (_, resolved, _) = desk.statuses();
    let remotes = wait_for("a remote ticket per inspection", 30, || async {
        let t = desk.tickets().await;
        (t.len() >= 2).then_some(t)
    })
    .await;
    assert_eq!(remotes.len(), 2, "one per inspection; the patrol plan keeps out of the helpdesk: {remotes:?}");
    let remote_of = |id: i64| {
        let tag = format!("[aftercare WO-{id}] Inspection of {device} at site-a, due ");
        remotes.iter().find(|r| r.subject.starts_with(&tag)).unwrap_or_else(|| panic!("{tag}: {remotes:?}")).clone()
    };
    let (rm, ro) = (remote_of(missed), remote_of(open));
    assert!(ro.subject.ends_with(&next.to_string()), "{ro:?}");
    assert_eq!((ro.priority.as_str(), rm.priority.as_str()), (low_priority, low_priority));
    wait_for("the missed visit told", 30, || async { (desk.updates(&rm.id).await == 1).then_some(()) }).await;
    assert!(desk.tickets().await.iter().all(|r| r.status != resolved), "both still owed");

    // The engineer starts and completes the visit; the inspection's reports are kept.
    // The engineer signs in as herself: the visit is hers.
    let li = format!("{}-li", *TOKEN);
    provision(&d.dir.path().join("aftercare.toml"), "li.wei", "engineer", &["cust-1"], &li);
    let post = |path: String, body: Value| {
        let (url, li) = (d.url(&path), li.clone());
        async move { as_user(&li).post(url).json(&body).send().await.unwrap() }
    };
    let r = post(format!("/api/v1/work-orders/{open}/start"), json!({})).await;
    assert_eq!(r.status().as_u16(), 200);
    let body = json!({"answers": {"lamps": "2 replaced"}});
    let r = post(format!("/api/v1/work-orders/{open}/complete"), body).await;
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    wait_for("the done visit resolved in the helpdesk", 60, || async {
        let t = desk.tickets().await;
        t.iter().any(|r| r.id == ro.id && r.status == resolved).then_some(())
    })
    .await;
    // started, completed, and a report kept in each language: once each.
    wait_for("the visit's updates", 60, || async { (desk.updates(&ro.id).await >= 4).then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(desk.updates(&ro.id).await, 4);
    assert_eq!(desk.updates(&rm.id).await, 1);
    let text = desk.text(&ro.id).await;
    assert!(text.contains("lamps: 2 replaced") && text.contains("circuits: 1.0 (measured)"), "{text}");
    assert!(text.contains("visit done by li.wei"), "{text}");

    // A work order is done through the API, with its answers: what people do to its remote
    // ticket is not taken for a visit.
    desk.set_status(&rm.id, resolved).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(work_order(&d, missed).await["state"], json!("missed"));
    // The patrol plan's visits are kept out of the helpdesk: their events are skipped.
    let patrols = get(&d.url("/api/v1/work-orders?kind=patrol")).await;
    let patrols: Vec<Value> = patrols.as_array().unwrap().iter().map(|w| w["id"].clone()).collect();
    assert_eq!(patrols.len(), 2, "{patrols:?}");
    let skipped = outbox(&d, "skipped").await;
    assert!(skipped.iter().all(|r| patrols.contains(&r["work_order_id"])), "{skipped:?}");
    assert!(patrols.iter().all(|p| skipped.iter().any(|r| r["work_order_id"] == *p)), "{skipped:?}");
    assert!(outbox(&d, "dead").await.is_empty(), "{:?}", outbox(&d, "dead").await);
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_orders_reach_request_tracker_and_resolve_when_done() {
    let Some(desk) = Desk::rt().await else { return };
    visits(desk, "lit-041", "Low").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_orders_reach_redmine_and_resolve_when_done() {
    let Some(desk) = Desk::redmine().await else { return };
    visits(desk, "lit-051", "Normal").await;
}

impl Desk {
    /// A person opens a ticket in the helpdesk: (its id).
    async fn open_as_person(&self, subject: &str, text: &str) -> String {
        let r = match self {
            Desk::Rt { queue, .. } => {
                let body = json!({"Queue": queue, "Subject": subject, "Content": text, "ContentType": "text/plain",
                                  "Requestor": "wang.li@example.net"});
                self.req(reqwest::Method::POST, "ticket").json(&body).send().await.unwrap()
            }
            Desk::Redmine { project, .. } => {
                let body = json!({"issue": {"project_id": project, "subject": subject, "description": text}});
                self.req(reqwest::Method::POST, "issues.json").json(&body).send().await.unwrap()
            }
        };
        assert_eq!(r.status().as_u16(), 201, "opening a ticket as a person");
        let v: Value = r.json().await.unwrap();
        match self {
            Desk::Rt { .. } => v["id"].as_str().map(String::from).unwrap_or_else(|| v["id"].to_string()),
            Desk::Redmine { .. } => v["issue"]["id"].to_string(),
        }
    }
}

/// Tickets people open in the helpdesk become aftercare tickets with the contract's clocks,
/// linked to the remote ticket (tagged there) and never taken twice; the status people set
/// there comes back, and what aftercare does goes there.
async fn intake(desk: Desk) {
    let fleet = ["lit-in1:lighting", "lit-in2:lighting"];
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[[customers]]\nid = \"cust-1\"\n", "[[customers]]\nid = \"cust-1\"\nhelpdesk = \"desk\"\n")
        + &format!("[helpdesks.desk]\n{}", desk.config(desk.addr()).replace("poll_every", "intake = true, poll_every"))
        + &contract("", "");
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::start(dir, &prefix, &broker);

    let remote = desk
        .open_as_person("Pole lit-in2 is dark", "The pole lit-in2 by the east gate has been dark since last night.")
        .await;
    // One that names nothing this helpdesk's customers own still comes in, as a request at the
    // customer's only site.
    let other = desk.open_as_person("Please move the inspection to Friday", "").await;
    let taken = wait_for("both tickets taken in", 60, || async {
        let t = get(&d.url("/api/v1/tickets?channel=helpdesk&sort=due")).await;
        (t.as_array()?.len() == 2).then_some(t)
    })
    .await;
    let t = taken
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["device"] == json!("lit-in2"))
        .expect("the fault on lit-in2")
        .clone();
    let id = t["id"].as_i64().unwrap();
    assert_eq!(
        (&t["category"], &t["channel"], &t["customer"]),
        (&json!("fault"), &json!("helpdesk"), &json!("cust-1"))
    );
    assert_eq!(t["clock"]["contract"], json!("k"), "{t}");
    assert!(t["clock"]["acknowledge_by"].is_string(), "the contract's clock runs: {t}");
    assert!(t["reported_by"].as_str().unwrap().starts_with("helpdesk:desk"), "{t}");
    assert!(t["problem"].as_str().unwrap().contains("east gate"), "what the person wrote: {t}");
    let req = taken.as_array().unwrap().iter().find(|t| t["device"].is_null()).expect("the request").clone();
    assert_eq!((&req["category"], &req["site"]), (&json!("request"), &json!("site-a")), "{req}");

    // The remote ticket is tagged as aftercare's, and no second one is made for it.
    let tagged = wait_for("the remote ticket tagged", 30, || async {
        let all = desk.tickets().await;
        let r = all.iter().find(|r| r.id == remote)?.clone();
        r.subject.starts_with(&format!("[aftercare #{id}] ")).then_some(all)
    })
    .await;
    assert_eq!(tagged.len(), 2, "only the two tickets people opened: {tagged:?}");

    // The desk acknowledges in aftercare: the remote ticket hears of it.
    let url = d.url(&format!("/api/v1/tickets/{id}/transition"));
    let r = api().post(&url).json(&json!({"to": "acknowledged", "note": "on our way"})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    wait_for("the acknowledgement in the helpdesk", 30, || async {
        desk.text(&remote).await.contains("on our way").then_some(())
    })
    .await;
    // A person resolves it there: aftercare follows.
    let (_, resolved, _) = desk.statuses();
    desk.set_status(&remote, resolved).await;
    wait_for("the resolution from the helpdesk", 30, || async {
        (ticket(&d, id).await["state"] == json!("resolved")).then_some(())
    })
    .await;

    // Still taken once each after more polls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = get(&d.url("/api/v1/tickets?channel=helpdesk")).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    assert_eq!(desk.tickets().await.len(), 2);
    // The request's remote ticket is tagged with its own aftercare ticket.
    let r = desk.tickets().await.into_iter().find(|r| r.id == other).expect("the request's remote ticket");
    assert!(r.subject.starts_with(&format!("[aftercare #{}] ", req["id"])), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_people_open_in_request_tracker_become_aftercare_tickets_once() {
    let Some(desk) = Desk::rt().await else { return };
    intake(desk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_people_open_in_redmine_become_aftercare_tickets_once() {
    let Some(desk) = Desk::redmine().await else { return };
    intake(desk).await;
}
