use std::time::Duration;

use chrono::TimeDelta;

use super::*;
use crate::domain::{FaultChange, Tier};
use crate::store::{FaultRecord, TransitionOptions};
use crate::tickets::clocks::{ClockName, Firing, Moments};
use crate::tickets::model::Ticket;

/// Local time (+08:00) to UTC.
fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{s}+08:00")).unwrap().to_utc()
}

fn fleet() -> Arc<Fleet> {
    crate::demo::config().unwrap().fleet
}

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Store::open(&dir.path().join("a.db")).await.unwrap(), dir)
}

/// A fault event of `device` as the writer makes it, with the deadlines, warranty and repeat
/// rule its contract gives.
fn record(f: &Fleet, device: &str, code: &str, tier: Tier, at: DateTime<Utc>, change: FaultChange) -> FaultRecord {
    let idx = f.lookup(device).unwrap();
    let d = f.device(idx);
    let (warranty, repeat) = f.warranty(idx, code, at);
    FaultRecord {
        device: device.into(),
        site: d.site.0.clone(),
        customer: d.customer.0.clone(),
        kind: f.kind_name(idx).into(),
        code: code.into(),
        title: code.into(),
        tier,
        at,
        detail: String::new(),
        change,
        deadlines: f.deadlines(idx, tier, at),
        warranty,
        repeat,
    }
}

/// Opens a ticket for `device` at `at`, as the writer does.
async fn open(s: &Store, f: &Fleet, device: &str, code: &str, tier: Tier, at: DateTime<Utc>) -> TicketId {
    let rec = record(f, device, code, tier, at, FaultChange::Raised);
    s.apply_faults(&[rec], at, Duration::from_secs(3600)).await.unwrap()[0].1.unwrap()
}

/// The fault cleared at `at`, as the rules report it: the repair a resolution reports.
async fn recover(s: &Store, f: &Fleet, device: &str, code: &str, at: DateTime<Utc>) {
    let rec = record(f, device, code, Tier::Major, at, FaultChange::Cleared);
    s.apply_faults(&[rec], at, Duration::from_secs(3600)).await.unwrap();
}

/// Repaired (the fault clears) and resolved at `at`.
async fn repair(s: &Store, f: &Fleet, id: TicketId, at: DateTime<Utc>) {
    let t = ticket(s, id).await;
    recover(s, f, &t.device.0, &t.code.0, at).await;
    s.transition(id, State::Resolved, "eng", "reseated the card", at).await.unwrap();
}

async fn ticket(s: &Store, id: TicketId) -> Ticket {
    s.ticket(id).await.unwrap().unwrap()
}

fn events(t: &Ticket) -> Vec<String> {
    t.timeline.as_ref().unwrap().iter().map(|e| format!("{}: {}", e.event, e.note)).collect()
}

#[tokio::test]
async fn the_recorders_tender_escalates_breaches_and_owes_a_loaner_once_each() {
    let f = fleet();
    let (s, dir) = store().await;
    let t0 = t("2026-06-01T10:00:00");
    let id = open(&s, &f, "rec-001", "storage_failure", Tier::Major, t0).await;
    let at = |m: i64| t0 + TimeDelta::minutes(m);

    assert_eq!(run_once(&s, &f, at(9)).await.unwrap(), 0, "nothing is due at 9 minutes");
    // 10 minutes without an answer: the acknowledge clock is breached and level 1 fires.
    assert_eq!(run_once(&s, &f, at(10)).await.unwrap(), 2);
    assert_eq!(run_once(&s, &f, at(11)).await.unwrap(), 0, "nothing fires twice");
    let c = ticket(&s, id).await.clock;
    assert_eq!((c.acknowledge_met, c.escalation_level, c.loaner), (Some(false), 1, false));
    s.transition(id, State::Dispatched, "desk", "", at(30)).await.unwrap();

    // The daemon is down from here to 37 h later; a new store on the same file fires what passed, at once.
    drop(s);
    let s = Store::open(&dir.path().join("a.db")).await.unwrap();
    assert_eq!(run_once(&s, &f, at(37 * 60)).await.unwrap(), 4, "on-site + resolve breaches, levels 2 and 3");
    assert_eq!(run_once(&s, &f, at(38 * 60)).await.unwrap(), 0);
    let tk = ticket(&s, id).await;
    assert_eq!((tk.clock.escalation_level, tk.clock.loaner), (3, true));
    assert_eq!(tk.clock.resolve_met, Some(false));
    let ev = events(&tk);
    let breaches: Vec<&String> = ev.iter().filter(|e| e.starts_with("breach")).collect();
    assert_eq!(breaches.len(), 3, "{ev:#?}");
    assert!(breaches[2].contains("a loaner unit is owed"), "{ev:#?}");
    let escalated: Vec<&String> = ev.iter().filter(|e| e.starts_with("escalated")).collect();
    assert_eq!(escalated.len(), 3);
    assert!(escalated[0].contains("level 1: to service desk lead by phone; not acknowledged"), "{escalated:#?}");
    assert!(escalated[2].contains("level 3: to technical director"), "{escalated:#?}");
}

/// One ticket per contract: handled in time, nothing fires; left alone, its clocks are breached.
#[tokio::test]
async fn every_shipped_contract_holds_when_kept_and_is_breached_when_not() {
    let f = fleet();
    let cases = [
        ("recorders-tender", "rec-001", t("2026-06-01T10:00:00")),
        ("detailed-plan", "led-002", t("2026-06-06T23:50:00")),
        ("lighting", "lit-001", t("2025-06-01T20:00:00")),
        ("solar-heaters", "swh-001", t("2026-07-15T13:00:00")),
    ];
    for (contract, device, t0) in cases {
        let (s, _d) = store().await;
        let kept = open(&s, &f, device, "kept", Tier::Major, t0).await;
        let broken = open(&s, &f, device, "broken", Tier::Major, t0).await;
        let clock = ticket(&s, kept).await.clock;
        assert_eq!(clock.contract.as_deref(), Some(contract), "{device}");
        // The kept promise: each moment comes a minute before its deadline.
        let before = |by: Option<DateTime<Utc>>| by.map(|b| b - TimeDelta::minutes(1));
        let ack = before(clock.acknowledge_by).unwrap();
        s.transition(kept, State::Acknowledged, "desk", "", ack).await.unwrap();
        // Handed on to the field at once: the phone's 30 minutes (004) end there.
        s.transition(kept, State::Dispatched, "desk", "", ack).await.unwrap();
        run_once(&s, &f, ack).await.unwrap();
        let tier = f.contracts.iter().find(|c| c.id == contract).unwrap().clocks(Tier::Major).clone();
        let mut fixed = before(clock.resolve_by).unwrap();
        if let Some(on_site) = before(clock.on_site_by) {
            let on_site = on_site.max(ack);
            s.transition(kept, State::OnSite, "eng", "", on_site).await.unwrap();
            run_once(&s, &f, on_site).await.unwrap();
            // Replaced on site within the contract's time from the arrival (004: 3 h).
            if let Some(due) = tier.on_site_fix.and_then(|k| k.deadline(on_site, None)) {
                fixed = fixed.min(due - TimeDelta::minutes(1));
            }
        }
        recover(&s, &f, device, "kept", fixed).await;
        s.transition(kept, State::Resolved, "eng", "", fixed).await.unwrap();
        // Long after every deadline.
        let later = clock.resolve_by.unwrap() + TimeDelta::days(30);
        run_once(&s, &f, later).await.unwrap();
        let k = ticket(&s, kept).await;
        assert_eq!(k.clock.acknowledge_met, Some(true), "{contract}");
        assert_eq!(k.clock.resolve_met, Some(true), "{contract}");
        assert_eq!(k.clock.on_site_met, clock.on_site_by.map(|_| true), "{contract}");
        assert!(!events(&k).iter().any(|e| e.starts_with("breach")), "{contract}: {:#?}", events(&k));
        // The broken promise: nobody moved.
        let b = ticket(&s, broken).await;
        if tier.remote_fix.is_some() {
            assert!(events(&b).iter().any(|e| e.starts_with("breach: remote-fix clock missed")), "{:#?}", events(&b));
        }
        assert_eq!(b.clock.acknowledge_met, Some(false), "{contract}");
        assert_eq!(b.clock.resolve_met, Some(false), "{contract}");
        let loaner = f.contracts.iter().find(|c| c.id == contract).unwrap().loaner_on_resolve_breach;
        assert_eq!(b.clock.loaner, loaner, "{contract}");
        assert!(
            b.clock.escalation_level >= 1,
            "{contract}: every shipped contract escalates an unanswered major fault"
        );
    }
}

#[tokio::test]
async fn a_dispatched_ticket_left_alone_goes_to_management_once_per_dispatch() {
    let f = fleet();
    let (s, _d) = store().await;
    let t0 = t("2026-06-01T10:00:00");
    let id = open(&s, &f, "lit-002", "circuit_failed", Tier::Main, t0).await;
    let at = |m: i64| t0 + TimeDelta::minutes(m);
    s.transition(id, State::Dispatched, "desk", "", at(5)).await.unwrap();
    run_once(&s, &f, at(5 + 239)).await.unwrap();
    assert!(!events(&ticket(&s, id).await).iter().any(|e| e.starts_with("inaction")));
    run_once(&s, &f, at(5 + 240)).await.unwrap();
    run_once(&s, &f, at(5 + 300)).await.unwrap();
    let ev = events(&ticket(&s, id).await);
    let inaction: Vec<&String> = ev.iter().filter(|e| e.starts_with("inaction")).collect();
    assert_eq!(inaction.len(), 1, "{ev:#?}");
    assert!(inaction[0].ends_with("to management"), "{inaction:?}");
    // Progress, then dispatched again: the rule may fire again for the new dispatch.
    s.transition(id, State::OnSite, "eng", "", at(310)).await.unwrap();
    s.transition(id, State::Dispatched, "eng", "parts needed", at(320)).await.unwrap();
    run_once(&s, &f, at(320 + 241)).await.unwrap();
    let n = events(&ticket(&s, id).await).iter().filter(|e| e.starts_with("inaction")).count();
    assert_eq!(n, 2);
}

#[test]
fn due_is_decided_from_the_persisted_clock_alone() {
    let base = OpenClock {
        id: TicketId(1),
        tier: Tier::Main,
        state: State::Open,
        contract: None,
        opened_at: t("2026-06-01T10:00:00"),
        acknowledged_at: None,
        on_site_at: None,
        acknowledge_by: Some(t("2026-06-01T10:15:00")),
        on_site_by: Some(t("2026-06-02T10:00:00")),
        resolve_by: Some(t("2026-06-03T10:00:00")),
        acknowledge_breached: false,
        on_site_breached: false,
        resolve_breached: false,
        escalation_level: 0,
        dispatched_at: None,
        inaction_escalated_at: None,
        awaiting_recovery: false,
        moments: Moments { opened_at: t("2026-06-01T10:00:00"), ..Moments::default() },
        stage_breached: Vec::new(),
        loaner: false,
    };
    let clocks = |t: &OpenClock, now: &str| -> Vec<ClockName> {
        due(t, None, super::tests::t(now))
            .into_iter()
            .filter_map(|f| match f {
                Firing::Breach { clock, .. } => Some(clock),
                _ => None,
            })
            .collect()
    };
    assert_eq!(clocks(&base, "2026-06-01T10:14:59"), vec![]);
    assert_eq!(clocks(&base, "2026-06-01T10:15:00"), vec![ClockName::Acknowledge]);
    let acked = OpenClock { acknowledged_at: Some(t("2026-06-01T10:05:00")), ..base.clone() };
    assert_eq!(clocks(&acked, "2026-06-02T11:00:00"), vec![ClockName::OnSite]);
    let breached = OpenClock { acknowledge_breached: true, on_site_breached: true, ..base.clone() };
    assert_eq!(clocks(&breached, "2026-06-03T10:00:00"), vec![ClockName::Resolve]);
    let resolved = OpenClock { state: State::Resolved, on_site_at: Some(t("2026-06-01T12:00:00")), ..acked };
    assert_eq!(clocks(&resolved, "2026-06-09T00:00:00"), vec![], "a resolved ticket owes nothing");
    let forced = OpenClock { awaiting_recovery: true, ..resolved.clone() };
    assert_eq!(
        clocks(&forced, "2026-06-09T00:00:00"),
        vec![ClockName::Resolve],
        "resolved by force with the fault still active is not fixed"
    );
    let no_clock = OpenClock { acknowledge_by: None, on_site_by: None, resolve_by: None, ..base };
    assert_eq!(clocks(&no_clock, "2030-01-01T00:00:00"), vec![]);
}

#[tokio::test]
async fn billing_follows_the_warranty_and_a_person_can_make_it_billable() {
    let f = fleet();
    let (s, _d) = store().await;
    // swh-001 was accepted 2024-06-15: the main unit is in warranty in 2025, the pump is not.
    let at = t("2025-07-01T09:00:00");
    let leak = open(&s, &f, "swh-001", "tank_leak", Tier::Main, at).await;
    let pump = open(&s, &f, "swh-001", "pump_failure", Tier::Main, at).await;
    let l = ticket(&s, leak).await;
    assert_eq!(l.billing.as_ref().map(|b| b.class.as_str()), Some("free"));
    assert_eq!(l.warranty.as_ref().and_then(|w| w.component.as_deref()), Some("main"));
    let p = ticket(&s, pump).await;
    assert_eq!(p.billing.as_ref().map(|b| b.class.as_str()), Some("at_cost"));
    // The engineer finds the tank was damaged by the user.
    let l = s
        .transition_with(
            leak,
            State::Acknowledged,
            "eng",
            "tank hit by a ladder",
            at,
            TransitionOptions { billable: Some("user_damage"), ..Default::default() },
        )
        .await
        .unwrap();
    let b = l.billing.unwrap();
    assert_eq!((b.class.as_str(), b.reason.as_deref()), ("billable", Some("user_damage")));
    assert!(events(&s.ticket(leak).await.unwrap().unwrap()).iter().any(|e| e == "billing: billable: user_damage"));
    // A cause the contract charges at cost only ("只收取成本费").
    let p = s
        .transition_with(
            pump,
            State::Acknowledged,
            "eng",
            "pump flooded by the user",
            at,
            TransitionOptions { billable: Some("user_damage"), at_cost: true, ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(p.billing.map(|b| b.class.as_str().to_string()), Some("billable_at_cost".into()));
}

#[tokio::test]
async fn two_failed_repairs_in_warranty_replace_the_unit() {
    let f = fleet();
    let (s, _d) = store().await;
    let t0 = t("2026-03-02T09:00:00");
    let day = |n: i64| t0 + TimeDelta::days(n);
    let id = open(&s, &f, "rec-001", "storage_failure", Tier::Major, t0).await;
    // 004: "乙方维修2次以上仍不能修复的，乙方必须无条件更换": 以上 includes 2, so the second failure replaces.
    // Repaired, back a day later, three times over; the same ticket reopens each time.
    for (n, d) in [(1, 1), (2, 3), (3, 5)] {
        repair(&s, &f, id, day(d)).await;
        let again = open(&s, &f, "rec-001", "storage_failure", Tier::Major, day(d + 1)).await;
        assert_eq!(again, id);
        let tk = ticket(&s, id).await;
        assert_eq!(tk.failed_repairs, n);
        assert_eq!(tk.replace_unit, n >= 2, "after {n} failed repairs");
    }
    let ev = events(&ticket(&s, id).await);
    assert_eq!(ev.iter().filter(|e| e.starts_with("repair_failed")).count(), 3);
    let replace: Vec<&String> = ev.iter().filter(|e| e.starts_with("replace_unit")).collect();
    assert_eq!(replace.len(), 1, "{ev:#?}");
    assert!(replace[0].contains("2 failed repairs within 30days in warranty"), "{replace:?}");
}

#[tokio::test]
async fn failed_repairs_count_within_the_window_and_afresh_after_a_replacement() {
    let f = fleet();
    let (s, _d) = store().await;
    let t0 = t("2026-03-02T09:00:00");
    let day = |n: i64| t0 + TimeDelta::days(n);
    // Two failed repairs: the unit is to be replaced.
    let first = open(&s, &f, "rec-001", "storage_failure", Tier::Major, t0).await;
    for d in [1, 3] {
        repair(&s, &f, first, day(d)).await;
        open(&s, &f, "rec-001", "storage_failure", Tier::Major, day(d + 1)).await;
    }
    assert_eq!((ticket(&s, first).await.failed_repairs, ticket(&s, first).await.replace_unit), (2, true));
    repair(&s, &f, first, day(5)).await;
    s.transition(first, State::Closed, "desk", "", day(5)).await.unwrap();
    // 41 days on, past the 30-day window: a new ticket, repaired; back a day later is one failed repair.
    let later = open(&s, &f, "rec-001", "storage_failure", Tier::Major, day(46)).await;
    assert_ne!(later, first);
    repair(&s, &f, later, day(47)).await;
    open(&s, &f, "rec-001", "storage_failure", Tier::Major, day(48)).await;
    let tk = ticket(&s, later).await;
    assert_eq!((tk.failed_repairs, tk.replace_unit), (1, false), "the old failures are out of the window");
    // Another failure within the window: two, replace. The engineer replaces the unit.
    repair(&s, &f, later, day(49)).await;
    open(&s, &f, "rec-001", "storage_failure", Tier::Major, day(50)).await;
    assert_eq!((ticket(&s, later).await.failed_repairs, ticket(&s, later).await.replace_unit), (2, true));
    recover(&s, &f, "rec-001", "storage_failure", day(51)).await;
    let replaced = TransitionOptions { unit_replaced: true, ..Default::default() };
    let tk = s.transition_with(later, State::Resolved, "eng", "new recorder", day(51), replaced).await.unwrap();
    assert!(events(&tk).iter().any(|e| e.starts_with("unit_replaced")), "{:#?}", events(&tk));
    // The new unit fails the next day: its first failed repair, not the third.
    open(&s, &f, "rec-001", "storage_failure", Tier::Major, day(52)).await;
    assert_eq!(ticket(&s, later).await.failed_repairs, 1);
    // A replacement is told with a resolution, never with another move.
    let e = s.transition_with(later, State::Acknowledged, "eng", "", day(52), replaced).await.unwrap_err();
    assert!(e.to_string().contains("unit_replaced"), "{e}");
}

#[tokio::test]
async fn a_fault_back_after_the_repeat_window_is_not_a_failed_repair() {
    let f = fleet();
    let (s, _d) = store().await;
    let t0 = t("2026-03-02T09:00:00");
    let id = open(&s, &f, "rec-001", "storage_failure", Tier::Major, t0).await;
    repair(&s, &f, id, t0 + TimeDelta::days(1)).await;
    s.transition(id, State::Closed, "desk", "", t0 + TimeDelta::days(1)).await.unwrap();
    // 40 days later (window 30 days; reopen window 1 h): a new ticket, no failed repair.
    let other = open(&s, &f, "rec-001", "storage_failure", Tier::Major, t0 + TimeDelta::days(41)).await;
    assert_ne!(other, id);
    assert_eq!(ticket(&s, other).await.failed_repairs, 0);
    // Closed, then back within 30 days but after the reopen window: a new ticket that counts a failed repair.
    repair(&s, &f, other, t0 + TimeDelta::days(42)).await;
    s.transition(other, State::Closed, "desk", "", t0 + TimeDelta::days(42)).await.unwrap();
    let third = open(&s, &f, "rec-001", "storage_failure", Tier::Major, t0 + TimeDelta::days(50)).await;
    assert_ne!(third, other);
    assert_eq!(ticket(&s, third).await.failed_repairs, 1);
}

#[tokio::test]
async fn out_of_warranty_failed_repairs_do_not_replace_the_unit() {
    let f = fleet();
    let (s, _d) = store().await;
    // rec-001 was accepted 2025-09-01 with 24 months: out of warranty from 2027-09-01 (contract still in force).
    let t0 = t("2027-10-01T09:00:00");
    let id = open(&s, &f, "rec-001", "storage_failure", Tier::Major, t0).await;
    assert_eq!(ticket(&s, id).await.billing.map(|b| b.class), Some(crate::tickets::model::BillingClass::AtCost));
    for d in [1, 3, 5] {
        repair(&s, &f, id, t0 + TimeDelta::days(d)).await;
        open(&s, &f, "rec-001", "storage_failure", Tier::Major, t0 + TimeDelta::days(d + 1)).await;
    }
    let tk = ticket(&s, id).await;
    assert_eq!((tk.failed_repairs, tk.replace_unit), (3, false));
}

#[tokio::test]
async fn a_ticket_whose_clock_runs_past_its_calendar_says_so() {
    // The LED displays' contract with a resolve clock of 5 working days from the opening.
    let mut f = (*fleet()).clone();
    let led = f.contracts.iter_mut().find(|c| c.id == "led-displays").unwrap();
    led.tiers[0].resolve = Some(crate::contracts::ClockSpec::WorkingDays(5));
    let (s, _d) = store().await;
    let id = open(&s, &f, "led-001", "screen_dark", Tier::Major, t("2026-12-29T10:00:00")).await;
    let gap = ticket(&s, id).await.clock.calendar_gap.expect("the ticket says its clock ran past the calendar");
    assert!(gap.contains("2027"), "{gap}");
}

/// `m` minutes after 2026-06-01 10:00 local time, when the watch tests' first ticket opens.
fn at(m: i64) -> DateTime<Utc> {
    t("2026-06-01T10:00:00") + TimeDelta::minutes(m)
}

/// The watcher keeps open tickets between passes and reads only what changed: a ticket opened
/// after its first pass is watched, one acknowledged meanwhile does not escalate from its old
/// copy, a closed one is let go, and nothing fires twice.
#[tokio::test]
async fn a_kept_watch_sees_what_changed_between_its_passes_and_acts_on_fresh_state() {
    let (f, (s, _dir), mut w) = (fleet(), store().await, Watch::default());
    let a = open(&s, &f, "rec-001", "storage_failure", Tier::Major, at(0)).await;
    assert_eq!(w.pass(&s, &f, at(1)).await.unwrap(), 0);
    assert_eq!(w.open.len(), 1);
    // Opened after the first pass, at a later time: the next pass watches it.
    let b = open(&s, &f, "rec-002", "storage_failure", Tier::Major, at(1)).await;
    assert_eq!(w.pass(&s, &f, at(2)).await.unwrap(), 0);
    assert_eq!(w.open.len(), 2);
    // `a` is acknowledged in time; `b` is not.
    s.transition(a, State::Acknowledged, "desk", "", at(3)).await.unwrap();
    assert_eq!(w.pass(&s, &f, at(11)).await.unwrap(), 2, "b's acknowledge breach and level 1, nothing on a");
    assert_eq!(w.pass(&s, &f, at(12)).await.unwrap(), 0, "nothing fires twice");
    let (ta, tb) = (ticket(&s, a).await, ticket(&s, b).await);
    assert_eq!((ta.clock.escalation_level, ta.clock.acknowledge_met), (0, Some(true)));
    assert_eq!((tb.clock.escalation_level, tb.clock.acknowledge_met), (1, Some(false)));
    // Cancelled: no longer watched, and its later clocks never fire.
    s.transition(b, State::Cancelled, "desk", "a duplicate", at(13)).await.unwrap();
    w.pass(&s, &f, at(14)).await.unwrap();
    assert_eq!(w.open.len(), 1);
    // A kept watch and a fresh one agree on what fires 37 hours on.
    let kept = w.pass(&s, &f, at(37 * 60)).await.unwrap();
    assert!(kept > 0);
    assert_eq!(run_once(&s, &f, at(37 * 60 + 1)).await.unwrap(), 0);
    assert_eq!(ticket(&s, b).await.clock.escalation_level, 1, "the cancelled ticket stayed as it was");
}

/// A stale copy never makes a wrong firing: acknowledged behind the watch's back (the look at
/// changes cannot see it, the change being stamped before the watch's newest), it is read
/// afresh before anything fires.
#[tokio::test]
async fn a_stale_copy_is_read_afresh_before_it_fires() {
    let (f, (s, _dir), mut w) = (fleet(), store().await, Watch::default());
    let a = open(&s, &f, "rec-001", "storage_failure", Tier::Major, at(0)).await;
    open(&s, &f, "rec-002", "storage_failure", Tier::Major, at(8)).await;
    w.pass(&s, &f, at(9)).await.unwrap();
    // Stamped at 1 minute: long before the newest change the watch saw (8 minutes).
    s.transition(a, State::Acknowledged, "desk", "", at(1)).await.unwrap();
    w.pass(&s, &f, at(10)).await.unwrap();
    let ta = ticket(&s, a).await;
    assert_eq!((ta.clock.escalation_level, ta.clock.acknowledge_met), (0, Some(true)), "{:#?}", events(&ta));
}

/// The stage clocks of one ticket of contract `id`, tier 1, with moments `m`, at `now`.
fn stage_clocks(f: &Fleet, id: &str, m: &Moments, now: DateTime<Utc>) -> Vec<crate::tickets::clocks::Stage> {
    let c = f.contracts.iter().find(|c| c.id == id).unwrap();
    crate::tickets::clocks::stages(c.clocks(Tier::Major), c.calendar.as_deref(), m, now)
}

#[test]
fn the_recorders_tender_fixes_by_phone_in_30_minutes_or_on_site_in_3_hours_of_arriving() {
    let f = fleet();
    let t0 = t("2026-06-01T10:00:00");
    let opened = Moments { opened_at: t0, ..Moments::default() };
    // 004 L65: fixed by phone at 10:20, no one sent.
    let phone = Moments { fixed_at: Some(t("2026-06-01T10:20:00")), ..opened.clone() };
    let s = stage_clocks(&f, "recorders-tender", &phone, t("2026-06-02T00:00:00"));
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!((s[0].clock, s[0].due_by, s[0].met), (ClockName::RemoteFix, Some(t("2026-06-01T10:30:00")), Some(true)));
    // Fixed by phone, but at 10:31.
    let late = Moments { fixed_at: Some(t("2026-06-01T10:31:00")), ..opened.clone() };
    assert_eq!(stage_clocks(&f, "recorders-tender", &late, t("2026-06-02T00:00:00"))[0].met, Some(false));
    // Handed on at 10:10: the phone could not fix it, nothing to judge; on site at 20:00,
    // replaced by 22:59 (004 L61-62: 3 h).
    let field = Moments {
        handed_on_at: Some(t("2026-06-01T10:10:00")),
        on_site_at: Some(t("2026-06-01T20:00:00")),
        fixed_at: Some(t("2026-06-01T22:59:00")),
        ..opened.clone()
    };
    let s = stage_clocks(&f, "recorders-tender", &field, t("2026-06-02T00:00:00"));
    assert_eq!((s[0].ended_at, s[0].met), (Some(t("2026-06-01T10:10:00")), None));
    assert_eq!((s[1].clock, s[1].due_by, s[1].met), (ClockName::OnSiteFix, Some(t("2026-06-01T23:00:00")), Some(true)));
    // Handed on at 10:45: the 30 minutes ran out first.
    let slow = Moments { handed_on_at: Some(t("2026-06-01T10:45:00")), ..opened.clone() };
    assert_eq!(stage_clocks(&f, "recorders-tender", &slow, t("2026-06-02T00:00:00"))[0].met, Some(false));
    // The watch: at 10:30 the remote fix is missed; on site at 20:00 and unfixed at 23:00,
    // the on-site fix too; each once.
    let clock = OpenClock {
        id: TicketId(1),
        tier: Tier::Major,
        state: State::OnSite,
        contract: Some("recorders-tender".into()),
        opened_at: t0,
        acknowledged_at: Some(t("2026-06-01T10:05:00")),
        on_site_at: Some(t("2026-06-01T20:00:00")),
        acknowledge_by: None,
        on_site_by: None,
        resolve_by: None,
        acknowledge_breached: false,
        on_site_breached: false,
        resolve_breached: false,
        escalation_level: 9,
        dispatched_at: None,
        inaction_escalated_at: None,
        awaiting_recovery: false,
        moments: Moments { on_site_at: Some(t("2026-06-01T20:00:00")), ..opened.clone() },
        stage_breached: Vec::new(),
        loaner: false,
    };
    let c = f.contracts.iter().find(|c| c.id == "recorders-tender");
    let breaches = |k: &OpenClock, now: &str| -> Vec<(ClockName, DateTime<Utc>)> {
        due(k, c, t(now))
            .into_iter()
            .filter_map(|f| match f {
                Firing::Breach { clock, due, .. } => Some((clock, due)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(breaches(&clock, "2026-06-01T22:59:59"), vec![(ClockName::RemoteFix, t("2026-06-01T10:30:00"))]);
    assert_eq!(
        breaches(&clock, "2026-06-01T23:00:00"),
        vec![(ClockName::RemoteFix, t("2026-06-01T10:30:00")), (ClockName::OnSiteFix, t("2026-06-01T23:00:00"))]
    );
    let missed = OpenClock { stage_breached: vec![ClockName::RemoteFix, ClockName::OnSiteFix], ..clock };
    assert_eq!(breaches(&missed, "2026-06-02T23:00:00"), vec![]);
}

#[test]
fn the_led_factory_clock_runs_5_working_days_from_the_units_arrival() {
    let f = fleet();
    // Sent on 28 September, at the factory on Wednesday 30 September at 10:00: 1–7 October
    // are off and Saturday 10 October is worked, so 5 working days end on 13 October.
    let m = Moments {
        opened_at: t("2026-09-25T09:00:00"),
        handed_on_at: Some(t("2026-09-28T09:00:00")),
        factory_sent_at: Some(t("2026-09-28T09:00:00")),
        factory_arrived_at: Some(t("2026-09-30T10:00:00")),
        ..Moments::default()
    };
    let s = stage_clocks(&f, "led-displays", &m, t("2026-10-13T17:29:00"));
    assert_eq!(s.len(), 1, "002 内容2 times the factory alone: {s:#?}");
    assert_eq!((s[0].clock, s[0].started_at), (ClockName::Factory, t("2026-09-30T10:00:00")));
    assert_eq!((s[0].due_by, s[0].met), (Some(t("2026-10-13T17:30:00")), None));
    assert_eq!(stage_clocks(&f, "led-displays", &m, t("2026-10-13T17:30:00"))[0].met, Some(false));
    let back = Moments { factory_back_at: Some(t("2026-10-12T15:00:00")), ..m.clone() };
    assert_eq!(stage_clocks(&f, "led-displays", &back, t("2026-11-01T00:00:00"))[0].met, Some(true));
    // Not arrived yet: no factory clock runs.
    let away = Moments { factory_arrived_at: None, ..m };
    assert!(stage_clocks(&f, "led-displays", &away, t("2026-11-01T00:00:00")).is_empty());
}

#[tokio::test]
async fn a_unit_at_the_factory_is_timed_from_its_arrival_and_owes_a_loaner_while_away() {
    let f = fleet();
    let (s, _d) = store().await;
    // The LED display: sent, arrived, missed, back.
    let led = open(&s, &f, "led-001", "cabinet", Tier::Major, t("2026-09-25T09:00:00")).await;
    s.transition(led, State::Acknowledged, "desk", "", t("2026-09-25T09:10:00")).await.unwrap();
    let opts = TransitionOptions { factory_ref: Some("RMA-2026-0917"), ..Default::default() };
    s.transition_with(led, State::AtFactory, "desk", "cabinet to the factory", t("2026-09-28T09:00:00"), opts)
        .await
        .unwrap();
    run_once(&s, &f, t("2026-10-20T00:00:00")).await.unwrap();
    assert!(!events(&ticket(&s, led).await).iter().any(|e| e.starts_with("breach")), "not arrived: no clock");
    let early = s.factory_arrived(led, t("2026-09-27T09:00:00"), "desk", "", t("2026-09-30T12:00:00")).await;
    assert!(early.unwrap_err().to_string().contains("cannot arrive before"));
    s.factory_arrived(led, t("2026-09-30T10:00:00"), "desk", "receipt 88", t("2026-09-30T12:00:00")).await.unwrap();
    let again = s.factory_arrived(led, t("2026-09-30T11:00:00"), "desk", "", t("2026-09-30T12:00:00")).await;
    assert!(again.unwrap_err().to_string().contains("reached the factory"));
    run_once(&s, &f, t("2026-10-13T17:29:00")).await.unwrap();
    assert!(!events(&ticket(&s, led).await).iter().any(|e| e.starts_with("breach")));
    run_once(&s, &f, t("2026-10-13T17:30:00")).await.unwrap();
    run_once(&s, &f, t("2026-10-14T17:30:00")).await.unwrap();
    let k = ticket(&s, led).await;
    let breaches: Vec<String> = events(&k).into_iter().filter(|e| e.starts_with("breach")).collect();
    assert_eq!(breaches, vec!["breach: factory clock missed: due 2026-10-13T09:30:00+00:00"], "once");
    assert!(!k.clock.loaner, "002 内容2 promises no loaner");
    s.transition(led, State::Dispatched, "desk", "back from the factory", t("2026-10-15T09:00:00")).await.unwrap();
    let k = ticket(&s, led).await;
    let trip = k.factory.clone().unwrap();
    assert_eq!(trip.reference.as_deref(), Some("RMA-2026-0917"));
    assert_eq!((trip.arrived_at, trip.back_at), (Some(t("2026-09-30T10:00:00")), Some(t("2026-10-15T09:00:00"))));
    assert!(events(&k).iter().any(|e| e.contains("reached the factory at 2026-09-30T02:00:00+00:00: receipt 88")));
    // The recorder: 004's standby unit while it is away, owed once.
    let rec = open(&s, &f, "rec-001", "storage", Tier::Major, t("2026-06-01T10:00:00")).await;
    s.transition(rec, State::Acknowledged, "desk", "", t("2026-06-01T10:05:00")).await.unwrap();
    s.transition(rec, State::OnSite, "eng", "", t("2026-06-01T12:00:00")).await.unwrap();
    s.transition(rec, State::AtFactory, "eng", "", t("2026-06-01T13:00:00")).await.unwrap();
    run_once(&s, &f, t("2026-06-01T13:00:01")).await.unwrap();
    run_once(&s, &f, t("2026-06-01T13:00:02")).await.unwrap();
    let r = ticket(&s, rec).await;
    assert!(r.clock.loaner);
    let owed: Vec<String> = events(&r).into_iter().filter(|e| e.starts_with("loaner")).collect();
    assert_eq!(owed.len(), 1, "{owed:#?}");
    assert!(owed[0].contains("a loaner unit is owed while it is away"), "{owed:#?}");
    // Going to the factory stopped the on-site fix unjudged, so no on-site-fix breach.
    run_once(&s, &f, t("2026-06-01T17:00:00")).await.unwrap();
    assert!(!events(&ticket(&s, rec).await).iter().any(|e| e.contains("on-site-fix")));
}

#[tokio::test]
async fn a_stage_clock_met_stays_met_when_the_ticket_reopens_and_a_stale_breach_is_not_written() {
    let f = fleet();
    let (s, _d) = store().await;
    let t0 = t("2026-06-01T10:00:00");
    // 004 L65: fixed by phone at 10:20, reopened at 10:25; the 30 minutes were met.
    let id = open(&s, &f, "rec-001", "storage_failure", Tier::Major, t0).await;
    repair(&s, &f, id, t("2026-06-01T10:20:00")).await;
    s.transition(id, State::Open, "desk", "the customer says it is back", t("2026-06-01T10:25:00")).await.unwrap();
    run_once(&s, &f, t("2026-06-01T10:40:00")).await.unwrap();
    let k = ticket(&s, id).await;
    assert!(!events(&k).iter().any(|e| e.contains("remote-fix")), "{:#?}", events(&k));
    let rows = s.clock_outcomes(None, t0, t("2026-06-02T00:00:00")).await.unwrap();
    assert_eq!(rows[0].outcomes(&f.contracts, t("2026-06-01T10:40:00"))[3], Some(true), "the phone fix met");
    // A breach the watch decided on before a hand-on committed is not written after it.
    let other = open(&s, &f, "rec-002", "storage_failure", Tier::Major, t0).await;
    s.transition(other, State::Dispatched, "desk", "", t("2026-06-01T10:29:00")).await.unwrap();
    let stale = Firing::Breach { clock: ClockName::RemoteFix, due: t("2026-06-01T10:30:00"), loaner: false };
    let fired = s.fire(other, &[stale], t("2026-06-01T10:30:00"), &|_, _| Vec::new()).await.unwrap();
    assert!(fired.is_empty(), "{fired:?}");
    assert!(!events(&ticket(&s, other).await).iter().any(|e| e.contains("remote-fix")));
}
