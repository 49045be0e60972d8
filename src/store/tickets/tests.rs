use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::contracts::Deadlines;
use crate::domain::FaultChange;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::store::{FaultRecord, SubjectId, migrator_to};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z").unwrap().to_utc()
}

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("sub/aftercare.db")).await.unwrap();
    (s, dir)
}

fn rec(device: &str, code: &str, tier: Tier, change: FaultChange, at: DateTime<Utc>) -> FaultRecord {
    FaultRecord {
        device: device.into(),
        site: "s1".into(),
        customer: "c1".into(),
        kind: "recorder".into(),
        code: code.into(),
        title: format!("{code} title"),
        tier,
        at,
        detail: format!("{code} detail"),
        change,
        deadlines: Deadlines::default(),
        warranty: None,
        repeat: None,
    }
}

const DAY: Duration = Duration::from_secs(86_400);

async fn apply(s: &Store, r: FaultRecord, now: DateTime<Utc>) -> (Outcome, Option<TicketId>) {
    s.apply_faults(&[r], now, DAY).await.unwrap()[0]
}

/// The fault cleared at `at`: the repair the next resolution reports.
async fn recover(s: &Store, device: &str, code: &str, at: DateTime<Utc>) {
    apply(s, rec(device, code, Tier::Main, FaultChange::Cleared, at), at).await;
}

fn events(t: &Ticket) -> Vec<String> {
    t.timeline.as_ref().unwrap().iter().map(|e| e.event.to_string()).collect()
}

#[tokio::test]
async fn one_fault_one_ticket_counting_occurrences() {
    let (s, _d) = store().await;
    let raise = || rec("d1", "leak", Tier::Main, FaultChange::Raised, t0());
    let (o, id) = apply(&s, raise(), t0()).await;
    assert_eq!(o, Outcome::Opened);
    let id = id.unwrap();
    assert_eq!(
        apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Cleared, t0()), t0()).await,
        (Outcome::Recovered, Some(id))
    );
    assert_eq!(
        apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Cleared, t0()), t0()).await,
        (Outcome::Nothing, None)
    );
    assert_eq!(apply(&s, raise(), t0() + TimeDelta::minutes(5)).await, (Outcome::Recurred, Some(id)));
    let t = s.ticket(id).await.unwrap().unwrap();
    assert_eq!((t.occurrences, t.recovered, t.state), (2, false, State::Open));
    assert_eq!(events(&t), ["opened", "recovered", "recurred"]);
    assert_eq!(t.updated_at, t0() + TimeDelta::minutes(5));
    // Another device's or another code's fault is another ticket.
    assert_eq!(apply(&s, rec("d2", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await.0, Outcome::Opened);
    assert_eq!(apply(&s, rec("d1", "tilt", Tier::Main, FaultChange::Raised, t0()), t0()).await.0, Outcome::Opened);
    assert_eq!(s.tickets(&TicketFilter { limit: 100, ..Default::default() }).await.unwrap().len(), 3);
}

#[tokio::test]
async fn concurrent_raises_of_one_fault_make_one_ticket() {
    let (s, _d) = store().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let now = t0() + TimeDelta::seconds(i);
            s.apply_faults(&[rec("d1", "leak", Tier::Main, FaultChange::Raised, now)], now, DAY).await.unwrap()[0].0
        }));
    }
    let mut opened = 0;
    for t in tasks {
        if t.await.unwrap() == Outcome::Opened {
            opened += 1;
        }
    }
    assert_eq!(opened, 1);
    let all = s.tickets(&TicketFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].occurrences, 40);
}

#[tokio::test]
async fn the_database_itself_refuses_a_second_open_ticket() {
    let (s, _d) = store().await;
    // Bypass the store's logic: many connections insert the same open ticket at once.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let pool = s.pool().clone();
        tasks.push(tokio::spawn(async move {
            sqlx::query(
                "INSERT INTO tickets (device, site, customer, kind, code, title, tier, state, fault_at, opened_at, \
                 updated_at, last_raised_at) VALUES ('d1', 's', 'c', 'k', 'leak', 't', 2, 'open', 0, 0, 0, 0)",
            )
            .execute(&pool)
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(sqlx::Error::Database(e)) => assert!(e.is_unique_violation(), "{e}"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 1);
    // A closed one does not count.
    sqlx::query("UPDATE tickets SET state = 'closed', closed_at = 0").execute(s.pool()).await.unwrap();
    assert_eq!(
        apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0() + TimeDelta::days(30)).await.0,
        Outcome::Opened
    );
}

#[tokio::test]
async fn a_fault_back_soon_after_close_reopens_later_opens_anew() {
    let (s, _d) = store().await;
    let (_, id) = apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await;
    let id = id.unwrap();
    recover(&s, "d1", "leak", t0() + TimeDelta::hours(1)).await;
    s.transition(id, State::Resolved, "eng", "replaced seal", t0() + TimeDelta::hours(1)).await.unwrap();
    // Back while resolved: the repair did not hold.
    let (o, again) =
        apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0() + TimeDelta::hours(2)).await;
    assert_eq!((o, again), (Outcome::Reopened, Some(id)));
    recover(&s, "d1", "leak", t0() + TimeDelta::hours(3)).await;
    s.transition(id, State::Resolved, "eng", "", t0() + TimeDelta::hours(3)).await.unwrap();
    s.transition(id, State::Closed, "desk", "", t0() + TimeDelta::hours(4)).await.unwrap();
    // Back within the window after close: reopened.
    let (o, again) =
        apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0() + TimeDelta::hours(20)).await;
    assert_eq!((o, again), (Outcome::Reopened, Some(id)));
    let t = s.ticket(id).await.unwrap().unwrap();
    assert_eq!((t.state, t.occurrences, t.closed_at), (State::Open, 3, None));
    recover(&s, "d1", "leak", t0() + TimeDelta::hours(21)).await;
    s.transition(id, State::Resolved, "eng", "", t0() + TimeDelta::hours(21)).await.unwrap();
    s.transition(id, State::Closed, "desk", "", t0() + TimeDelta::hours(22)).await.unwrap();
    // Back after the window: a new ticket.
    let (o, other) =
        apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0() + TimeDelta::hours(22 + 25)).await;
    assert_eq!(o, Outcome::Opened);
    assert_ne!(other, Some(id));
    let t = s.ticket(id).await.unwrap().unwrap();
    assert_eq!(
        events(&t),
        [
            "opened",
            "recovered",
            "transition",
            "reopened",
            "recovered",
            "transition",
            "transition",
            "reopened",
            "recovered",
            "transition",
            "transition"
        ]
    );
}

#[tokio::test]
async fn promotion_raises_the_tier_once_and_says_so() {
    let (s, _d) = store().await;
    let (_, id) = apply(&s, rec("d1", "offline", Tier::Main, FaultChange::Raised, t0()), t0()).await;
    let id = id.unwrap();
    let p = rec("d1", "offline", Tier::Major, FaultChange::Promoted, t0());
    assert_eq!(apply(&s, p.clone(), t0() + TimeDelta::minutes(11)).await, (Outcome::Promoted, Some(id)));
    assert_eq!(apply(&s, p, t0() + TimeDelta::minutes(12)).await.0, Outcome::Nothing);
    let t = s.ticket(id).await.unwrap().unwrap();
    assert_eq!(t.tier, Tier::Major);
    let last = t.timeline.unwrap().pop().unwrap();
    assert_eq!((last.event.as_str(), last.tier), ("promoted", Some(Tier::Major)));
    assert!(last.note.starts_with("tier 2 → 1"), "{}", last.note);
    // A recurrence at a lower tier does not lower it.
    apply(&s, rec("d1", "offline", Tier::Main, FaultChange::Raised, t0()), t0() + TimeDelta::minutes(13)).await;
    assert_eq!(s.ticket(id).await.unwrap().unwrap().tier, Tier::Major);
}

#[tokio::test]
async fn transitions_follow_the_state_machine_and_stamp_times() {
    let (s, _d) = store().await;
    let (_, id) = apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await;
    let id = id.unwrap();
    let t = s.transition(id, State::Acknowledged, "alice", "on it", t0() + TimeDelta::minutes(3)).await.unwrap();
    assert_eq!((t.state, t.acknowledged_at), (State::Acknowledged, Some(t0() + TimeDelta::minutes(3))));
    let e = s.transition(id, State::Closed, "alice", "", t0()).await.unwrap_err();
    assert!(matches!(e, TransitionFailure::Refused(_)), "{e}");
    assert!(matches!(
        s.transition(TicketId(999), State::Closed, "a", "", t0()).await,
        Err(TransitionFailure::NotFound(999))
    ));
    s.transition(id, State::Cancelled, "alice", "false alarm", t0()).await.unwrap();
    // A new ticket for the same fault, then reopening the cancelled one is refused by the machine.
    apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0() + TimeDelta::days(2)).await;
    assert!(matches!(s.transition(id, State::Open, "a", "", t0()).await, Err(TransitionFailure::Refused(_))));
    let last = s.ticket(id).await.unwrap().unwrap().timeline.unwrap().pop().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.from_state, last.to_state),
        ("alice", Some(State::Acknowledged), Some(State::Cancelled))
    );
    assert_eq!(last.note, "false alarm");
}

#[tokio::test]
async fn reopening_by_hand_is_refused_while_another_ticket_holds_the_fault() {
    let (s, _d) = store().await;
    let (_, first) = apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await;
    let first = first.unwrap();
    recover(&s, "d1", "leak", t0()).await;
    s.transition(first, State::Resolved, "eng", "", t0()).await.unwrap();
    s.transition(first, State::Closed, "eng", "", t0()).await.unwrap();
    apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0() + TimeDelta::days(3)).await;
    let e = s.transition(first, State::Open, "eng", "", t0() + TimeDelta::days(3)).await.unwrap_err();
    assert!(matches!(e, TransitionFailure::Conflict(_)), "{e}");
}

#[tokio::test]
async fn the_timeline_is_append_only() {
    let (s, _d) = store().await;
    apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await;
    assert!(sqlx::query("UPDATE timeline SET note = 'x'").execute(s.pool()).await.is_err());
    assert!(sqlx::query("DELETE FROM timeline").execute(s.pool()).await.is_err());
}

#[tokio::test]
async fn filters_and_active_faults() {
    let (s, _d) = store().await;
    apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await;
    apply(&s, rec("d2", "offline", Tier::Major, FaultChange::Raised, t0()), t0()).await;
    apply(&s, rec("d3", "tilt", Tier::Minor, FaultChange::Raised, t0()), t0()).await;
    apply(&s, rec("d3", "tilt", Tier::Minor, FaultChange::Cleared, t0()), t0()).await;
    let f = |f: TicketFilter| {
        let s = s.clone();
        async move {
            let mut v: Vec<String> =
                s.tickets(&TicketFilter { limit: 100, ..f }).await.unwrap().into_iter().map(|t| t.device.0).collect();
            v.sort();
            v
        }
    };
    assert_eq!(f(TicketFilter { tier: Some(Tier::Major), ..Default::default() }).await, ["d2"]);
    assert_eq!(f(TicketFilter { recovered: Some(true), ..Default::default() }).await, ["d3"]);
    assert_eq!(f(TicketFilter { code: Some("leak".into()), ..Default::default() }).await, ["d1"]);
    assert_eq!(f(TicketFilter { state: Some(State::Open), ..Default::default() }).await, ["d1", "d2", "d3"]);
    assert_eq!(f(TicketFilter { open: Some(false), ..Default::default() }).await, Vec::<String>::new());
    assert_eq!(
        f(TicketFilter { device: Some("d1' OR 1=1 --".into()), ..Default::default() }).await,
        Vec::<String>::new()
    );
    let mut active: Vec<(String, String)> =
        s.active_faults().await.unwrap().into_iter().map(|a| (a.device, a.code)).collect();
    active.sort();
    assert_eq!(active, [("d1".to_string(), "leak".to_string()), ("d2".into(), "offline".into())]);
}

#[tokio::test]
async fn a_reopened_store_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let id = {
        let s = Store::open(&path).await.unwrap();
        apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await.1.unwrap()
    };
    let s = Store::open(&path).await.unwrap();
    assert_eq!(s.ticket(id).await.unwrap().unwrap().code.0, "leak");
}

#[tokio::test]
async fn deadlines_are_stored_and_met_or_missed_when_the_moment_comes() {
    let (s, _d) = store().await;
    let m = |min: i64| t0() + TimeDelta::minutes(min);
    let mut r = rec("d1", "leak", Tier::Main, FaultChange::Raised, t0());
    r.deadlines = Deadlines {
        contract: Some("c".into()),
        no_clock: None,
        acknowledge_by: Some(m(15)),
        on_site_by: Some(m(120)),
        resolve_by: Some(m(240)),
        calendar_gap: None,
    };
    let id = apply(&s, r, t0()).await.1.unwrap();
    // Dispatched at 10 min: the first response, within 15 min.
    let t = s.transition(id, State::Dispatched, "desk", "", m(10)).await.unwrap();
    assert_eq!((t.clock.acknowledge_met, t.acknowledged_at), (Some(true), Some(m(10))));
    assert_eq!(t.clock.on_site_met, None, "not yet due");
    // On site at 3 h: missed; resolved at 4 h exactly: met.
    let t = s.transition(id, State::OnSite, "eng", "", m(180)).await.unwrap();
    assert_eq!((t.clock.on_site_met, t.clock.on_site_at), (Some(false), Some(m(180))));
    recover(&s, "d1", "leak", m(230)).await;
    let t = s.transition(id, State::Resolved, "eng", "", m(240)).await.unwrap();
    assert_eq!(t.clock.resolve_met, Some(true));
    assert_eq!(t.clock.contract.as_deref(), Some("c"));
    // A ticket without a contract says why and records nothing met or missed.
    let mut r = rec("d2", "leak", Tier::Main, FaultChange::Raised, t0());
    r.deadlines.no_clock = Some("no contract covers this device; no clock runs".into());
    let id = apply(&s, r, t0()).await.1.unwrap();
    let t = s.transition(id, State::Acknowledged, "desk", "", m(500)).await.unwrap();
    assert_eq!((t.clock.acknowledge_met, t.clock.no_clock.is_some()), (None, true));
}

#[tokio::test]
async fn a_promotion_pulls_deadlines_earlier_never_later() {
    let (s, _d) = store().await;
    let m = |min: i64| t0() + TimeDelta::minutes(min);
    let mut r = rec("d1", "offline", Tier::Main, FaultChange::Raised, t0());
    r.deadlines.acknowledge_by = Some(m(60));
    r.deadlines.resolve_by = Some(m(600));
    let id = apply(&s, r, t0()).await.1.unwrap();
    let mut p = rec("d1", "offline", Tier::Major, FaultChange::Promoted, m(10));
    p.deadlines.acknowledge_by = Some(m(25)); // earlier: taken
    p.deadlines.resolve_by = Some(m(900)); // later: ignored
    p.deadlines.on_site_by = Some(m(130)); // none before: taken
    apply(&s, p, m(10)).await;
    let c = s.ticket(id).await.unwrap().unwrap().clock;
    assert_eq!((c.acknowledge_by, c.on_site_by, c.resolve_by), (Some(m(25)), Some(m(130)), Some(m(600))));
}

#[tokio::test]
async fn partial_hours_merge_and_old_history_is_pruned() {
    use crate::rollup::{Acc, RollupRow};
    let (s, _dir) = store().await;
    let config = crate::demo::config().unwrap();
    let fleet = &config.fleet;
    let dev = fleet.lookup("rec-001").unwrap();
    let metric = fleet.profile_of(dev).metric("temp_c").unwrap();
    let hour = t0().timestamp_millis();
    let part = |xs: &[(f64, i64)]| {
        let mut a = Acc::EMPTY;
        for (x, at) in xs {
            a.push(*x, hour + at);
        }
        RollupRow { device: dev, metric, hour, acc: a }
    };
    s.merge_rollups(fleet, &[part(&[(20.0, 1), (30.0, 5)])]).await.unwrap();
    s.merge_rollups(fleet, &[part(&[(10.0, 3), (25.0, 2)])]).await.unwrap();
    let rows = s.rollups("rec-001", "temp_c", t0(), t0() + TimeDelta::hours(1)).await.unwrap();
    assert_eq!(rows.len(), 1);
    let a = rows[0].1;
    assert_eq!((a.min, a.max, a.count, a.sum), (10.0, 30.0, 4, 85.0));
    assert_eq!((a.last, a.last_at), (30.0, hour + 5), "the latest reading wins, whichever part came last");
    // State changes are kept with the faults, and both are pruned past the retention.
    apply(&s, rec("rec-001", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await;
    assert_eq!(s.device_events("rec-001", t0(), t0() + TimeDelta::hours(1), 10).await.unwrap().len(), 1);
    assert_eq!(s.prune_history(t0()).await.unwrap(), 0, "nothing before the hour");
    assert_eq!(s.prune_history(t0() + TimeDelta::hours(1)).await.unwrap(), 2);
    assert!(s.rollups("rec-001", "temp_c", t0(), t0() + TimeDelta::hours(1)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_fault_during_a_visit_is_recorded_but_silenced() {
    let (s, _dir) = store().await;
    s.set_routes(&[("c1".into(), "hd".into())]).await.unwrap();
    let visit = crate::store::NewWorkOrder {
        contract: "k".into(),
        plan: "patrol".into(),
        kind: crate::domain::VisitKind::Patrol,
        device: "rec-001".into(),
        site: "s1".into(),
        customer: "c1".into(),
        due_on: t0().date_naive(),
        checklist: vec![],
        to_helpdesk: false,
        ticket_id: None,
    };
    assert_eq!(s.add_work_orders(&[visit], t0()).await.unwrap(), 1);
    let wo = s.work_orders(&Default::default(), 10).await.unwrap()[0].id;
    // Before the visit starts, a fault is a ticket like any other.
    let mut r = rec("rec-001", "leak", Tier::Major, FaultChange::Raised, t0());
    r.deadlines.acknowledge_by = Some(t0() + TimeDelta::minutes(15));
    let (_, before) = apply(&s, r.clone(), t0()).await;
    let before = s.ticket(before.unwrap()).await.unwrap().unwrap();
    assert_eq!((before.silenced_by, before.clock.acknowledge_by.is_some()), (None, true));
    assert!(s.start_work_order(wo, "eng", t0()).await.unwrap());
    let mut r2 = r.clone();
    r2.code = "tilt".into();
    let (_, during) = apply(&s, r2, t0()).await;
    let during = s.ticket(during.unwrap()).await.unwrap().unwrap();
    assert_eq!(during.silenced_by, Some(wo));
    assert_eq!(during.clock.acknowledge_by, None, "no clock runs");
    assert!(during.clock.no_clock.as_deref().unwrap().contains("silenced"));
    // Nothing of it goes to the helpdesk; the first ticket's events still do.
    let pending = s.outbox(crate::domain::OutboxState::Pending, 100, None).await.unwrap();
    assert!(pending.iter().all(|o| o.subject == SubjectId::Ticket(before.id)), "{pending:?}");
    assert!(
        s.outbox(crate::domain::OutboxState::Skipped, 100, None)
            .await
            .unwrap()
            .iter()
            .any(|o| o.subject == SubjectId::Ticket(during.id))
    );
    // Another device is not silenced by this visit.
    let (_, other) = apply(&s, rec("rec-002", "tilt", Tier::Major, FaultChange::Raised, t0()), t0()).await;
    assert_eq!(s.ticket(other.unwrap()).await.unwrap().unwrap().silenced_by, None);
    // Done, the visit silences nothing more.
    assert_eq!(
        s.complete_work_order(wo, "eng", &serde_json::json!({}), None, t0()).await.unwrap(),
        crate::store::Completion::Done
    );
    let (_, after) = apply(&s, rec("rec-001", "smoke", Tier::Major, FaultChange::Raised, t0()), t0()).await;
    assert_eq!(s.ticket(after.unwrap()).await.unwrap().unwrap().silenced_by, None);
}

#[tokio::test]
async fn the_outbox_keeps_its_rows_when_work_orders_join_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // A database of the schema before work orders went to helpdesks, with a ticket's events.
        let opts = SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
        migrator_to(11).run(&pool).await.unwrap();
        // Written as that schema's code wrote them: a ticket opened and recovered, two events.
        let at = ms(t0());
        sqlx::query(
            "INSERT INTO tickets (device, site, customer, kind, code, title, tier, state, recovered, fault_at, \
             opened_at, updated_at, last_raised_at, recovered_at) \
             VALUES ('rec-001', 's1', 'c1', 'recorder', 'leak', 'leak title', 1, 'open', 1, $1, $1, $1, $1, $1)",
        )
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
        for (seq, event, action) in [(1, "opened", "trigger"), (2, "recovered", "update")] {
            sqlx::query(
                "INSERT INTO outbox (ticket_id, seq, event_id, event, action, customer, created_at, next_attempt_at) \
                 VALUES (1, $1, 'aftercare-1-' || $1, $2, $3, 'c1', $4, $4)",
            )
            .bind(seq)
            .bind(event)
            .bind(action)
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let s = Store::open(&path).await.unwrap();
    s.set_routes(&[("c1".into(), "hd".into())]).await.unwrap();
    let rows = s.outbox(crate::domain::OutboxState::Pending, 10, None).await.unwrap();
    let events: Vec<_> = rows.iter().map(|o| (o.subject, o.seq, o.event.as_str())).collect();
    let t = SubjectId::Ticket(TicketId(1));
    assert_eq!(events, [(t, 2, "recovered"), (t, 1, "opened")]);
    // The ticket's next event continues its sequence; a work order starts its own.
    apply(&s, rec("rec-001", "leak", Tier::Major, FaultChange::Raised, t0()), t0()).await;
    let visit = crate::store::NewWorkOrder {
        contract: "k".into(),
        plan: "inspection".into(),
        kind: crate::domain::VisitKind::Inspection,
        device: "rec-001".into(),
        site: "s1".into(),
        customer: "c1".into(),
        due_on: t0().date_naive(),
        checklist: vec![],
        to_helpdesk: true,
        ticket_id: None,
    };
    s.add_work_orders(&[visit], t0()).await.unwrap();
    let rows = s.outbox(crate::domain::OutboxState::Pending, 10, None).await.unwrap();
    assert_eq!(
        (rows[0].subject, rows[0].seq, rows[0].event_id.as_str()),
        (SubjectId::WorkOrder(1), 1, "aftercare-wo-1-1")
    );
    assert_eq!((rows[1].subject, rows[1].seq), (t, 3));
    let due = s.due_outbox(t0(), 10).await.unwrap();
    assert_eq!(due.iter().map(|o| (o.subject, o.seq)).collect::<Vec<_>>(), [(t, 1), (SubjectId::WorkOrder(1), 1)]);
}

#[tokio::test]
async fn an_active_fault_is_resolved_only_by_force_and_its_clock_waits_for_the_recovery() {
    let (s, _d) = store().await;
    let m = |n: i64| t0() + TimeDelta::minutes(n);
    let mut r = rec("d1", "leak", Tier::Main, FaultChange::Raised, t0());
    r.deadlines = Deadlines { contract: Some("c".into()), resolve_by: Some(m(240)), ..Default::default() };
    let id = apply(&s, r.clone(), t0()).await.1.unwrap();
    // Still leaking: a plain resolution is refused, and so is a forced one without a word why.
    let e = s.transition(id, State::Resolved, "eng", "", m(60)).await.unwrap_err();
    assert!(matches!(&e, TransitionFailure::Conflict(m) if m.contains("still active") && m.contains("force")), "{e}");
    let force = TransitionOptions { force: true, ..Default::default() };
    let e = s.transition_with(id, State::Resolved, "eng", " ", m(60), force).await.unwrap_err();
    assert!(matches!(&e, TransitionFailure::Conflict(m) if m.contains("note")), "{e}");
    let t = s.transition_with(id, State::Resolved, "eng", "part on order", m(60), force).await.unwrap();
    assert_eq!((t.state, t.clock.resolve_met, t.clock.resolve_forced), (State::Resolved, None, true));
    let last = t.timeline.unwrap().pop().unwrap();
    assert_eq!(last.note, "forced while the fault is still active: part on order");
    // The fault clears within the clock: met, at the recovery.
    recover(&s, "d1", "leak", m(200)).await;
    assert_eq!(s.ticket(id).await.unwrap().unwrap().clock.resolve_met, Some(true));

    // Another forced resolution whose fault clears after its deadline: missed.
    let mut r2 = r.clone();
    r2.device = "d2".into();
    let other = apply(&s, r2, t0()).await.1.unwrap();
    s.transition_with(other, State::Resolved, "eng", "will come back", m(30), force).await.unwrap();
    recover(&s, "d2", "leak", m(300)).await;
    assert_eq!(s.ticket(other).await.unwrap().unwrap().clock.resolve_met, Some(false));

    // A recovered fault resolves without force.
    let mut r3 = r;
    r3.device = "d3".into();
    let third = apply(&s, r3, t0()).await.1.unwrap();
    recover(&s, "d3", "leak", m(10)).await;
    let t = s.transition(third, State::Resolved, "eng", "", m(20)).await.unwrap();
    assert_eq!((t.clock.resolve_met, t.clock.resolve_forced), (Some(true), false));
}

#[tokio::test]
async fn a_fault_still_active_when_its_ticket_is_cancelled_or_closed_stays_active_across_a_restart() {
    let (s, _d) = store().await;
    let cancelled = apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await.1.unwrap();
    s.transition(cancelled, State::Cancelled, "desk", "a known leak, not a service case", t0()).await.unwrap();
    let closed = apply(&s, rec("d2", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await.1.unwrap();
    let force = TransitionOptions { force: true, ..Default::default() };
    s.transition_with(closed, State::Resolved, "eng", "customer declines", t0(), force).await.unwrap();
    s.transition(closed, State::Closed, "desk", "", t0()).await.unwrap();
    apply(&s, rec("d3", "leak", Tier::Main, FaultChange::Raised, t0()), t0()).await;
    let mut active: Vec<String> = s.active_faults().await.unwrap().into_iter().map(|f| f.device).collect();
    active.sort();
    assert_eq!(active, ["d1", "d2", "d3"], "what a restart restores: every fault not yet cleared");
    // The cancelled ticket's fault clears: it is recorded there, and nothing is restored for it any more.
    assert_eq!(
        apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Cleared, t0()), t0()).await,
        (Outcome::Recovered, Some(cancelled))
    );
    let active: Vec<String> = s.active_faults().await.unwrap().into_iter().map(|f| f.device).collect();
    assert!(!active.contains(&"d1".to_string()), "{active:?}");
    // Raised again after that: a new ticket.
    let (o, again) =
        apply(&s, rec("d1", "leak", Tier::Main, FaultChange::Raised, t0()), t0() + TimeDelta::hours(1)).await;
    assert_eq!(o, Outcome::Opened);
    assert_ne!(again, Some(cancelled));
}

#[tokio::test]
async fn the_factory_migration_keeps_tickets_and_fills_their_first_hand_on_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let (t1, t2, t3) = (t0() + TimeDelta::minutes(10), t0() + TimeDelta::hours(2), t0() + TimeDelta::hours(3));
    {
        // A database of the schema before the factory state: a ticket dispatched twice, on site, resolved.
        let opts = SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.unwrap();
        migrator_to(32).run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO tickets (device, site, customer, kind, code, title, tier, state, recovered, fault_at, \
             opened_at, updated_at, last_raised_at, dispatched_at, on_site_at, resolved_at, assignee) \
             VALUES ('rec-001', 's1', 'c1', 'recorder', 'leak', 'leak title', 1, 'resolved', 1, $1, $1, $4, $1, $3, $2, $4, 'eve')",
        )
        .bind(ms(t0()))
        .bind(ms(t2))
        .bind(ms(t2 + TimeDelta::minutes(30)))
        .bind(ms(t3))
        .execute(&pool)
        .await
        .unwrap();
        for (at, to) in
            [(t1, "dispatched"), (t2, "on_site"), (t2 + TimeDelta::minutes(30), "dispatched"), (t3, "resolved")]
        {
            sqlx::query(
                "INSERT INTO timeline (ticket_id, at, event, actor, to_state) VALUES (1, $1, 'transition', 'eve', $2)",
            )
            .bind(ms(at))
            .bind(to)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let s = Store::open(&path).await.unwrap();
    let t = s.ticket(TicketId(1)).await.unwrap().unwrap();
    // The first hand-on and fix, from the timeline, not the latest dispatch.
    assert_eq!((t.state, t.assignee.as_deref()), (State::Resolved, Some("eve")));
    assert_eq!((t.clock.handed_on_at, t.clock.fixed_at), (Some(t1), Some(t3)));
    // The state's wider check takes the new state; the one open ticket per fault still holds.
    s.transition(TicketId(1), State::Open, "eve", "back", t3 + TimeDelta::hours(1)).await.unwrap();
    s.transition(TicketId(1), State::Acknowledged, "eve", "", t3 + TimeDelta::hours(1)).await.unwrap();
    s.transition(TicketId(1), State::AtFactory, "eve", "to the factory", t3 + TimeDelta::hours(2)).await.unwrap();
    let (_, again) =
        apply(&s, rec("rec-001", "leak", Tier::Major, FaultChange::Raised, t3 + TimeDelta::hours(3)), t3).await;
    assert_eq!(again, Some(TicketId(1)), "counted on the ticket at the factory, not a second one");
    // An older ticket's stage clocks fire nothing; its trip after the upgrade is timed afresh.
    let clocks = s.clocks(crate::store::Clocks::Of(TicketId(1))).await.unwrap();
    use crate::tickets::clocks::ClockName;
    assert_eq!(clocks[0].0.stage_breached, [ClockName::RemoteFix, ClockName::OnSiteFix]);
}
