use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::TimeDelta;

use super::*;
use crate::clock::ManualClock;
use crate::domain::{FaultChange, TicketId, Tier};
use crate::store::FaultRecord;
use tokio_util::sync::CancellationToken;

/// A connector that answers from a script per event name, and records what it got.
struct Scripted {
    answers: Mutex<Vec<(String, Result<(), DeliveryError>)>>,
    got: Mutex<Vec<String>>,
    /// The remote ticket each delivery was given.
    remotes: Mutex<Vec<Option<String>>>,
    /// While set, every delivery fails as a helpdesk that is down fails.
    down: std::sync::atomic::AtomicBool,
    /// Events (`TICKET#event`) answered only after 2 s.
    slow: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(answers: &[(&str, Result<(), DeliveryError>)]) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: Mutex::new(answers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
            got: Mutex::new(Vec::new()),
            remotes: Mutex::new(Vec::new()),
            down: Default::default(),
            slow: Mutex::new(Vec::new()),
        })
    }
    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

impl Connector for Scripted {
    fn name(&self) -> &str {
        "hd"
    }
    fn budget(&self) -> StdDuration {
        StdDuration::from_secs(5)
    }
    fn deliver<'a>(&'a self, d: &'a Delivery, _now: DateTime<Utc>) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            let key = match d.row.subject {
                SubjectId::Ticket(t) => format!("{}#{}", t.0, d.row.event),
                SubjectId::WorkOrder(w) => format!("WO-{w}#{}", d.row.event),
            };
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(DeliveryError::Retryable { after: None, message: "connection refused".into() });
            }
            let slow = self.slow.lock().unwrap().contains(&key);
            if slow {
                tokio::time::sleep(StdDuration::from_secs(2)).await;
            }
            self.got.lock().unwrap().push(key.clone());
            self.remotes.lock().unwrap().push(d.remote.as_ref().map(|r| r.id.clone()));
            let mut a = self.answers.lock().unwrap();
            let answer = match a.iter().position(|(k, _)| *k == key) {
                Some(i) => a.remove(i).1,
                None => Ok(()),
            };
            let remote = match &d.subject {
                Subject::Ticket(t) => RemoteTicket { id: format!("R{}", t.id.0), status: Some(t.state.to_string()) },
                Subject::WorkOrder(w) => RemoteTicket { id: format!("RW{}", w.id), status: Some(w.state.to_string()) },
            };
            answer.map(|()| Delivered { remote: Some(remote) })
        })
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z").unwrap().to_utc()
}

fn cfg() -> OutboxConfig {
    OutboxConfig { dead_after: StdDuration::from_secs(3600), max_backoff: StdDuration::from_secs(60), concurrency: 4 }
}

struct Rig {
    store: Store,
    clock: Arc<ManualClock>,
    relay: Relay,
    _dir: tempfile::TempDir,
}

/// A store and a relay whose customer `city-transit` (the demo's) routes to `conn`.
async fn rig(conn: Arc<Scripted>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    let mut config = crate::demo::config().unwrap();
    let fleet = Arc::make_mut(&mut config.fleet);
    for c in &mut fleet.customers {
        c.helpdesk = (c.id.as_str() == "city-transit").then(|| "hd".to_string());
    }
    let clock = Arc::new(ManualClock::new(t0()));
    let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    connectors.insert("hd".into(), conn);
    let relay = Relay::new(store.clone(), config.fleet, connectors, clock.clone(), Arc::new(Metrics::new()), cfg());
    store.set_routes(&relay.routes()).await.unwrap();
    Rig { store, clock, relay, _dir: dir }
}

async fn raise(store: &Store, device: &str, customer: &str, code: &str, change: FaultChange, at: DateTime<Utc>) {
    let rec = FaultRecord {
        device: device.into(),
        site: "site-a".into(),
        customer: customer.into(),
        kind: "recorder".into(),
        code: code.into(),
        title: code.into(),
        tier: Tier::Main,
        at,
        detail: String::new(),
        change,
        deadlines: Default::default(),
        warranty: None,
        repeat: None,
    };
    store.apply_faults(&[rec], at, StdDuration::from_secs(3600)).await.unwrap();
}

#[tokio::test]
async fn a_ticket_s_events_go_in_order_and_wait_for_a_failing_one() {
    let conn = Scripted::new(&[("1#opened", Err(DeliveryError::Retryable { after: None, message: "503".into() }))]);
    let r = rig(conn.clone()).await;
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Raised, t0()).await;
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Cleared, t0()).await;
    raise(&r.store, "rec-002", "city-transit", "tilt", FaultChange::Raised, t0()).await;
    r.relay.run_once().await.unwrap();
    // Ticket 1's first event failed, so its second waits; ticket 2 is not held up.
    assert_eq!(conn.got(), ["1#opened", "2#opened"]);
    r.relay.run_once().await.unwrap();
    assert_eq!(conn.got().len(), 2, "not due again before the backoff");
    r.clock.advance(TimeDelta::seconds(2));
    r.relay.run_once().await.unwrap();
    r.relay.run_once().await.unwrap();
    assert_eq!(conn.got(), ["1#opened", "2#opened", "1#opened", "1#recovered"]);
    assert!(r.store.due_outbox(r.clock.now() + TimeDelta::days(1), 10).await.unwrap().is_empty());
    let delivered = r.store.outbox(crate::domain::OutboxState::Delivered, 10, None).await.unwrap();
    assert_eq!(delivered.len(), 3);
    let first = delivered.iter().find(|d| d.subject == SubjectId::Ticket(TicketId(1)) && d.seq == 1).unwrap();
    assert_eq!((first.attempts, first.event_id.as_str()), (2, "aftercare-1-1"));
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_blocks_nothing() {
    let conn = Scripted::new(&[("1#opened", Err(DeliveryError::Permanent("HTTP 422: bad".into())))]);
    let r = rig(conn.clone()).await;
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Raised, t0()).await;
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Cleared, t0()).await;
    r.relay.run_once().await.unwrap();
    r.relay.run_once().await.unwrap();
    assert_eq!(conn.got(), ["1#opened", "1#recovered"]);
    let dead = r.store.outbox(crate::domain::OutboxState::Dead, 10, None).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 422: bad"));
    // Requeued by a person, it goes again.
    assert!(r.store.outbox_retry(dead[0].id, r.clock.now(), None).await.unwrap());
    assert!(!r.store.outbox_retry(dead[0].id, r.clock.now(), None).await.unwrap(), "no longer dead");
    r.relay.run_once().await.unwrap();
    assert_eq!(conn.got().last().map(String::as_str), Some("1#opened"));
    assert!(r.store.outbox(crate::domain::OutboxState::Dead, 10, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn retries_stop_at_dead_after_and_honour_retry_after() {
    let retry = || Err(DeliveryError::Retryable { after: Some(StdDuration::from_secs(120)), message: "429".into() });
    let conn = Scripted::new(&[("1#opened", retry()), ("1#opened", retry())]);
    let r = rig(conn.clone()).await;
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Raised, t0()).await;
    r.relay.run_once().await.unwrap();
    let row = &r.store.outbox(crate::domain::OutboxState::Pending, 10, None).await.unwrap()[0];
    assert_eq!(row.next_attempt_at, t0() + TimeDelta::seconds(120), "Retry-After wins over the backoff");
    // Past dead_after (1 h), a retryable failure is final.
    r.clock.advance(TimeDelta::minutes(59));
    r.relay.run_once().await.unwrap();
    assert_eq!(r.store.outbox(crate::domain::OutboxState::Dead, 10, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_gone_endpoint_is_disabled_and_its_rows_wait() {
    let conn = Scripted::new(&[("1#opened", Err(DeliveryError::Gone("HTTP 410".into())))]);
    let r = rig(conn.clone()).await;
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Raised, t0()).await;
    raise(&r.store, "rec-002", "city-transit", "leak", FaultChange::Raised, t0()).await;
    r.relay.run_once().await.unwrap();
    let first = conn.got().len();
    r.relay.run_once().await.unwrap();
    assert_eq!(conn.got().len(), first, "no delivery to a gone endpoint");
    assert_eq!(r.store.outbox(crate::domain::OutboxState::Dead, 10, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn customers_without_a_helpdesk_cost_the_outbox_nothing() {
    let conn = Scripted::new(&[]);
    let r = rig(conn.clone()).await;
    raise(&r.store, "lit-002", "north-square", "leak", FaultChange::Raised, t0()).await;
    r.relay.run_once().await.unwrap();
    assert!(conn.got().is_empty());
    use crate::domain::OutboxState::{Delivered, Pending, Skipped};
    for state in [Pending, Skipped, Delivered] {
        assert!(
            r.store.outbox(state, 10, None).await.unwrap().is_empty(),
            "no {state:?} row for a customer without a helpdesk"
        );
    }
    // A customer whose helpdesk is dropped from the config: its pending rows are skipped at start.
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Raised, t0()).await;
    assert_eq!(r.store.outbox(crate::domain::OutboxState::Pending, 10, None).await.unwrap().len(), 1);
    r.store.set_routes(&[]).await.unwrap();
    assert_eq!(r.store.outbox(crate::domain::OutboxState::Skipped, 10, None).await.unwrap().len(), 1);
}

#[test]
fn backoff_doubles_with_jitter_up_to_its_cap() {
    let max = StdDuration::from_secs(600);
    assert_eq!(backoff(0, max, 0), StdDuration::from_secs(1));
    assert_eq!(backoff(3, max, 0), StdDuration::from_secs(8));
    let j = backoff(3, max, 999);
    assert!(j > StdDuration::from_secs(8) && j <= StdDuration::from_millis(9600), "{j:?}");
    assert_eq!(backoff(40, max, 999), max);
}

#[test]
fn changes_from_a_helpdesk_are_echoes_only_for_that_helpdesk() {
    assert!(is_echo(&origin_of("rt", "alice"), "rt"));
    assert!(is_echo(&origin_of("rt", ""), "rt"));
    assert!(!is_echo(&origin_of("rt2", "alice"), "rt"));
    assert!(!is_echo("alice", "rt"));
    assert!(!is_echo("aftercare", "rt"));
}

#[tokio::test]
async fn the_remote_ticket_is_remembered_and_handed_to_later_events() {
    let conn = Scripted::new(&[]);
    let r = rig(conn.clone()).await;
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Raised, t0()).await;
    r.relay.run_once().await.unwrap();
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Cleared, t0()).await;
    r.relay.run_once().await.unwrap();
    assert_eq!(*conn.remotes.lock().unwrap(), [None, Some("R1".to_string())]);
    let remote = r.store.remote(SubjectId::Ticket(TicketId(1)), "hd").await.unwrap().unwrap();
    assert_eq!((remote.id.as_str(), remote.status.as_deref()), ("R1", Some("open")));
}

/// A helpdesk whose polls answer from a script.
struct Polls {
    answers: Mutex<Vec<status::Polled>>,
    cursors: Mutex<Vec<Option<String>>>,
}

impl status::StatusSource for Polls {
    fn every(&self) -> StdDuration {
        StdDuration::from_secs(1)
    }
    fn changed<'a>(
        &'a self,
        cursor: Option<&'a str>,
        _now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<status::Polled, DeliveryError>> {
        self.cursors.lock().unwrap().push(cursor.map(String::from));
        let next = self.answers.lock().unwrap().remove(0);
        Box::pin(async move { Ok(next) })
    }
}

fn change(remote: &str, status: &str, meaning: Meaning) -> status::RemoteChange {
    status::RemoteChange { remote_id: remote.into(), status: status.into(), meaning, by: Some("alice".into()) }
}

#[tokio::test]
async fn a_status_change_in_the_helpdesk_applies_once_and_is_not_sent_back() {
    let conn = Scripted::new(&[]);
    let r = rig(conn.clone()).await;
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Raised, t0()).await;
    r.relay.run_once().await.unwrap(); // remote R1, status "open"
    let polled = |status: &str, meaning, cursor: &str| status::Polled {
        changes: vec![change("R1", status, meaning), change("R99", "resolved", Meaning::Resolved)],
        cursor: Some(cursor.into()),
    };
    let src = Polls {
        answers: Mutex::new(vec![
            polled("open", Meaning::Active, "2026-11-22T08:00:00Z"),
            polled("resolved", Meaning::Resolved, "2026-11-22T08:01:00Z"),
            polled("resolved", Meaning::Resolved, "2026-11-22T08:01:00Z"),
            polled("open", Meaning::Active, "2026-11-22T08:00:30Z"),
        ]),
        cursors: Mutex::new(Vec::new()),
    };
    let clock = r.clock.as_ref();
    // What aftercare set itself is no change; a ticket that is not ours (R99) is ignored.
    assert_eq!(status::poll(&r.store, "hd", &src, clock).await.unwrap(), 0);
    // Somebody resolved it there.
    assert_eq!(status::poll(&r.store, "hd", &src, clock).await.unwrap(), 1);
    let t = r.store.ticket(TicketId(1)).await.unwrap().unwrap();
    assert_eq!(t.state, State::Resolved);
    // Seen once is applied once.
    assert_eq!(status::poll(&r.store, "hd", &src, clock).await.unwrap(), 0);
    // And reopened there: it reopens here.
    assert_eq!(status::poll(&r.store, "hd", &src, clock).await.unwrap(), 1);
    let t = r.store.ticket(TicketId(1)).await.unwrap().unwrap();
    assert_eq!(t.state, State::Open);
    let actors: Vec<&str> = t.timeline.as_ref().unwrap().iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors.iter().filter(|a| **a == "helpdesk:hd (alice)").count(), 2, "{actors:?}");
    // The cursor moves forward only, and each poll starts from it.
    assert_eq!(
        *src.cursors.lock().unwrap(),
        [
            None,
            Some("2026-11-22T08:00:00Z".into()),
            Some("2026-11-22T08:01:00Z".into()),
            Some("2026-11-22T08:01:00Z".into())
        ]
    );
    // The changes the helpdesk made are not sent back to it.
    r.relay.run_once().await.unwrap();
    r.relay.run_once().await.unwrap();
    assert_eq!(conn.got(), ["1#opened"]);
    assert_eq!(r.store.outbox(crate::domain::OutboxState::Skipped, 10, None).await.unwrap().len(), 2);
}

fn visit(device: &str, due: &str, to_helpdesk: bool) -> crate::store::NewWorkOrder {
    crate::store::NewWorkOrder {
        contract: "k".into(),
        plan: if to_helpdesk { "inspection" } else { "patrol" }.into(),
        kind: if to_helpdesk { crate::domain::VisitKind::Inspection } else { crate::domain::VisitKind::Patrol },
        device: device.into(),
        site: "site-a".into(),
        customer: "city-transit".into(),
        due_on: due.parse().unwrap(),
        checklist: vec!["storage".into(), "battery".into()],
        to_helpdesk,
        ticket_id: None,
    }
}

#[tokio::test]
async fn work_orders_go_to_the_helpdesk_in_order_beside_tickets() {
    let conn =
        Scripted::new(&[("WO-1#scheduled", Err(DeliveryError::Retryable { after: None, message: "503".into() }))]);
    let r = rig(conn.clone()).await;
    let orders = [visit("rec-001", "2026-11-25", true), visit("rec-002", "2026-11-25", false)];
    assert_eq!(r.store.add_work_orders(&orders, t0()).await.unwrap(), 2);
    assert_eq!(r.store.add_work_orders(&orders, t0()).await.unwrap(), 0, "made once");
    raise(&r.store, "rec-001", "city-transit", "leak", FaultChange::Raised, t0()).await;
    assert!(r.store.start_work_order(1, "Li Wei", t0()).await.unwrap());
    r.relay.run_once().await.unwrap();
    // The work order's first event failed, so its next waits; the ticket is not held up,
    // and the patrol (kept out of the helpdesk) sends nothing.
    assert_eq!(conn.got(), ["WO-1#scheduled", "1#opened"]);
    r.clock.advance(TimeDelta::seconds(2));
    let answers = serde_json::json!({"storage": "ok", "battery": {"value": 12.6, "measured": true}});
    assert_eq!(
        r.store.complete_work_order(1, "Li Wei", &answers, None, r.clock.now()).await.unwrap(),
        crate::store::Completion::Done
    );
    for _ in 0..3 {
        r.relay.run_once().await.unwrap();
    }
    assert_eq!(conn.got(), ["WO-1#scheduled", "1#opened", "WO-1#scheduled", "WO-1#started", "WO-1#completed"]);
    let remotes = conn.remotes.lock().unwrap().clone();
    assert_eq!(&remotes[3..], [Some("RW1".to_string()), Some("RW1".to_string())], "later events find the remote");
    let rows = r.store.outbox(crate::domain::OutboxState::Delivered, 10, None).await.unwrap();
    let wo: Vec<_> = rows.iter().filter(|o| o.subject == SubjectId::WorkOrder(1)).collect();
    assert_eq!(wo.len(), 3);
    assert!(wo.iter().any(|o| o.event_id == "aftercare-wo-1-3"
        && o.action == crate::domain::HelpdeskAction::Resolve
        && o.origin == "Li Wei"));
    let skipped = r.store.outbox(crate::domain::OutboxState::Skipped, 10, None).await.unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!((skipped[0].subject, skipped[0].event.as_str()), (SubjectId::WorkOrder(2), "scheduled"));
    // A missed visit is told too, and only the visits that go to the helpdesk are delivered.
    let more = [visit("rec-001", "2026-11-20", true), visit("rec-002", "2026-11-20", false)];
    r.store.add_work_orders(&more, t0()).await.unwrap();
    assert_eq!(r.store.mark_missed(t0().date_naive(), t0()).await.unwrap(), 2);
    r.relay.run_once().await.unwrap();
    r.relay.run_once().await.unwrap();
    assert_eq!(&conn.got()[5..], ["WO-3#scheduled", "WO-3#missed"]);
    assert_eq!(r.store.outbox(crate::domain::OutboxState::Skipped, 10, None).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_work_order_reads_well_in_a_mail_and_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    store.set_routes(&[("city-transit".into(), "hd".into())]).await.unwrap();
    store.add_work_orders(&[visit("rec-001", "2026-11-25", true)], t0()).await.unwrap();
    let answers = serde_json::json!({"storage": "ok", "battery": {"value": 12.6, "measured": true}});
    store.complete_work_order(1, "Li Wei", &answers, None, t0()).await.unwrap();
    let w = store.work_order(1).await.unwrap().unwrap();
    let row = store
        .outbox(crate::domain::OutboxState::Pending, 10, None)
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.event == crate::store::OutboxEvent::Visit(crate::domain::VisitEvent::Completed))
        .unwrap();
    let d = Delivery { row, subject: Subject::WorkOrder(Box::new(w)), remote: None };
    assert_eq!(d.subject.title(), "[aftercare WO-1] Inspection of rec-001 at site-a, due 2026-11-25");
    assert_eq!(email::subject(&d), "[aftercare WO-1] Inspection of rec-001 due 2026-11-25: completed");
    let p = ["P1".to_string(), "P2".to_string(), "P3".to_string()];
    let text = describe(&d, d.subject.priority(&p));
    for want in ["Priority: P3", "- storage: ok", "- battery: 12.6 (measured)", "Note: visit done by Li Wei"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let body = webhook::body(&d, &p);
    assert_eq!(body["type"], "work_order.completed");
    assert_eq!(body["dedup_key"], "aftercare-work-order-1");
    assert_eq!(body["action"], "resolve");
    assert_eq!(body["work_order"]["state"], "done");
    assert!(body.get("ticket").is_none());
    assert_eq!(d.subject.meaning(), Meaning::Resolved);
    assert_eq!(email::message_id(&d.subject.first_event_id(), "x"), "<aftercare-wo-1-1@x>");
}

#[tokio::test]
async fn a_found_remote_ticket_already_holds_the_first_event_of_a_ticket_or_a_work_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    store.add_work_orders(&[visit("rec-001", "2026-11-25", true)], t0()).await.unwrap();
    store.start_work_order(1, "Li Wei", t0()).await.unwrap();
    let w = store.work_order(1).await.unwrap().unwrap();
    let mut rows = store.outbox(crate::domain::OutboxState::Pending, 10, None).await.unwrap();
    rows.sort_by_key(|r| r.seq);
    let found = || async { Ok(Some(RemoteTicket { id: "R9".into(), status: None })) };
    let create = || async { Err::<RemoteTicket, _>(DeliveryError::Permanent("not to be called".into())) };
    for (row, tell) in rows.into_iter().zip([false, true]) {
        let d = Delivery { row, subject: Subject::WorkOrder(Box::new(w.clone())), remote: None };
        // A create whose answer was lost made R9 with the `scheduled` event: not told again.
        let (remote, comment) = remote_for(&d, found, create).await.unwrap();
        assert_eq!((remote.id.as_str(), comment), ("R9", tell), "{}", d.row.event);
    }
}

/// A helpdesk that takes a connection and never says a word: an SMTP tarpit.
async fn tarpit() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

/// A relay over `connectors` with customers routed `(customer, helpdesk)`, run in the background.
async fn lanes(
    connectors: Vec<(&str, Arc<dyn Connector>)>,
    routes: &[(&str, &str)],
) -> (Store, Arc<ManualClock>, CancellationToken, tokio::task::JoinHandle<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    let mut config = crate::demo::config().unwrap();
    let fleet = Arc::make_mut(&mut config.fleet);
    for c in &mut fleet.customers {
        c.helpdesk = routes.iter().find(|(cu, _)| *cu == c.id.as_str()).map(|(_, h)| h.to_string());
    }
    let clock = Arc::new(ManualClock::new(t0()));
    let connectors = connectors.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
    let relay = Relay::new(store.clone(), config.fleet, connectors, clock.clone(), Arc::new(Metrics::new()), cfg());
    store.set_routes(&relay.routes()).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    (store, clock, stop, task, dir)
}

#[tokio::test]
async fn a_helpdesk_that_never_answers_holds_up_no_other_and_its_tries_end_within_the_timeout() {
    let (port, _tarpit) = tarpit().await;
    let mail = crate::outbox::email::EmailConfig {
        host: "127.0.0.1".into(),
        port,
        security: crate::outbox::email::Security::None,
        username: None,
        password: None,
        from: "aftercare <aftercare@example.net>".into(),
        to: "desk@example.net".into(),
        timeout: StdDuration::from_secs(1),
        ca_file: None,
    };
    let p = ["P1".to_string(), "P2".to_string(), "P3".to_string()];
    let email: Arc<dyn Connector> = Arc::new(email::Email::new("mail", &mail, p).unwrap());
    let quick = Scripted::new(&[]);
    let (store, _clock, stop, task, _dir) =
        lanes(vec![("mail", email), ("hd", quick.clone())], &[("north-square", "mail"), ("city-transit", "hd")]).await;
    raise(&store, "lit-002", "north-square", "leak", FaultChange::Raised, t0()).await;
    for (n, dev) in ["rec-001", "rec-002", "led-001"].iter().enumerate() {
        raise(&store, dev, "city-transit", &format!("f{n}"), FaultChange::Raised, t0()).await;
    }
    // The quick helpdesk has its three events while the tarpit still holds the first mail.
    let started = tokio::time::Instant::now();
    while quick.got().len() < 3 {
        assert!(started.elapsed() < StdDuration::from_millis(900), "held up: {:?}", quick.got());
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    // The mail's try ends in its timeout, however silent the server: a retry is due, with why.
    let failed = loop {
        let pending = store.outbox(crate::domain::OutboxState::Pending, 10, None).await.unwrap();
        if let Some(row) = pending.iter().find(|o| o.customer == "north-square" && o.attempts > 0) {
            break row.clone();
        }
        assert!(started.elapsed() < StdDuration::from_secs(3), "the tarpit held the mail past its timeout");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    };
    assert!(failed.last_error.as_deref().is_some_and(|e| e.contains("1s")), "{failed:?}");
    stop.cancel();
    let _ = task.await;
}

#[tokio::test]
async fn a_helpdesk_back_from_an_outage_gets_its_backlog_at_once_in_order() {
    let hd = Scripted::new(&[]);
    hd.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let (store, clock, stop, task, _dir) = lanes(vec![("hd", hd.clone())], &[("city-transit", "hd")]).await;
    let devices = ["rec-001", "rec-002", "led-001", "swh-001", "lit-001", "led-002"];
    for dev in devices {
        raise(&store, dev, "city-transit", "fault", FaultChange::Raised, t0()).await;
        raise(&store, dev, "city-transit", "fault", FaultChange::Cleared, t0()).await;
    }
    // An outage long enough that the rows back off (up to a minute, max_backoff, between tries)
    // past the next probe: nothing but the probe's success could wake them in time. However
    // busy the machine, the clock moves on only while the lane gets its turns.
    let started = tokio::time::Instant::now();
    let waiting = loop {
        clock.advance(TimeDelta::seconds(10));
        tokio::time::sleep(StdDuration::from_millis(20)).await;
        let waiting = store.outbox(crate::domain::OutboxState::Pending, 100, None).await.unwrap();
        if waiting.iter().any(|o| o.next_attempt_at > clock.now() + TimeDelta::seconds(10)) {
            break waiting;
        }
        assert!(
            started.elapsed() < StdDuration::from_secs(30),
            "rows never backed off: {:?}",
            waiting.iter().map(|o| (o.attempts, o.next_attempt_at)).collect::<Vec<_>>()
        );
    };
    assert_eq!(waiting.len(), 12);
    // It answers again. Within one probe (5 s of the clock) the whole backlog goes, in order per ticket.
    hd.down.store(false, std::sync::atomic::Ordering::SeqCst);
    clock.advance(TimeDelta::seconds(6));
    let started = tokio::time::Instant::now();
    while hd.got().len() < 12 {
        assert!(started.elapsed() < StdDuration::from_secs(3), "the backlog waited for its backoff: {:?}", hd.got());
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let got = hd.got();
    for t in 1..=6 {
        let opened = got.iter().position(|g| *g == format!("{t}#opened")).unwrap();
        let recovered = got.iter().position(|g| *g == format!("{t}#recovered")).unwrap();
        assert!(opened < recovered, "{got:?}");
    }
    stop.cancel();
    let _ = task.await;
}

#[tokio::test]
async fn credentials_never_follow_a_redirect_to_another_host() {
    // B records whatever reaches it; A sends everyone to B.
    let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_port = b.local_addr().unwrap().port();
    let reached_b = Arc::new(Mutex::new(String::new()));
    let seen = reached_b.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = b.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        }
    });
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_port = a.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = a.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let moved = format!(
                "HTTP/1.1 302 Found\r\nlocation: http://localhost:{b_port}/stolen\r\ncontent-length: 0\r\n\r\n"
            );
            let _ = s.write_all(moved.as_bytes()).await;
        }
    });
    let cfg = redmine::RedmineConfig {
        url: format!("http://127.0.0.1:{a_port}"),
        api_key: "s3cret-key".to_string().into(),
        project: "p".into(),
        tracker: None,
        statuses: redmine::RedmineConfig::default_statuses(),
        timeout: StdDuration::from_secs(2),
        poll_every: StdDuration::from_secs(60),
        intake: false,
    };
    let p = ["P1".to_string(), "P2".to_string(), "P3".to_string()];
    let rm = redmine::Redmine::new("north", &cfg, p).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    store.set_routes(&[("city-transit".into(), "north".into())]).await.unwrap();
    raise(&store, "rec-001", "city-transit", "leak", FaultChange::Raised, t0()).await;
    let row = store.outbox(crate::domain::OutboxState::Pending, 1, None).await.unwrap().remove(0);
    let t = store.ticket(TicketId(1)).await.unwrap().unwrap();
    let d = Delivery { row, subject: Subject::Ticket(Box::new(t)), remote: None };
    let e = rm.deliver(&d, t0()).await.unwrap_err();
    assert!(format!("{e:?}").contains("another origin"), "{e:?}");
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    let got = reached_b.lock().unwrap().clone();
    assert!(!got.contains("s3cret-key"), "the API key reached another host:\n{got}");
}

#[tokio::test]
async fn one_slow_answer_holds_up_only_its_own_ticket() {
    let hd = Scripted::new(&[]);
    hd.slow.lock().unwrap().push("1#opened".into());
    let (store, _clock, stop, task, _dir) = lanes(vec![("hd", hd.clone())], &[("city-transit", "hd")]).await;
    for dev in ["rec-001", "rec-002", "led-001"] {
        raise(&store, dev, "city-transit", "fault", FaultChange::Raised, t0()).await;
        raise(&store, dev, "city-transit", "fault", FaultChange::Cleared, t0()).await;
    }
    // Tickets 2 and 3 are told all they have while ticket 1's first answer is still on its way.
    let started = tokio::time::Instant::now();
    while hd.got().len() < 4 {
        assert!(started.elapsed() < StdDuration::from_millis(1500), "held up: {:?}", hd.got());
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(!hd.got().iter().any(|g| g.starts_with("1#")), "{:?}", hd.got());
    // Then ticket 1's, in order.
    while hd.got().len() < 6 {
        assert!(started.elapsed() < StdDuration::from_secs(5), "{:?}", hd.got());
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(&hd.got()[4..], ["1#opened", "1#recovered"]);
    stop.cancel();
    let _ = task.await;
}
