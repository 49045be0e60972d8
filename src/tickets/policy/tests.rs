use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{s}+08:00")).unwrap().to_utc()
}

const DAY: Duration = Duration::from_secs(86_400);

fn rule(days: u64, replace_at: u32) -> RepeatRule {
    RepeatRule { window: DAY * days as u32, replace_at_failed_repairs: replace_at }
}

#[test]
fn a_raise_counts_on_the_open_ticket_and_reopens_a_resolved_one() {
    let now = t("2026-10-01T10:00:00");
    let open = Current { id: TicketId(7), state: State::Dispatched, tier: Tier::Main };
    let c = raise(Some(open), None, Tier::Minor, "tank 80 °C", DAY, now).unwrap();
    assert_eq!((c.id, c.reopen_from, c.tier, c.note.as_str()), (TicketId(7), None, Tier::Main, "tank 80 °C"));
    assert_eq!((c.outcome(), c.event()), (Outcome::Recurred, Event::Recurred));
    // A more severe raise makes the ticket more severe.
    assert_eq!(raise(Some(open), None, Tier::Major, "", DAY, now).unwrap().tier, Tier::Major);

    let resolved = Current { state: State::Resolved, ..open };
    let c = raise(Some(resolved), None, Tier::Main, "tank 80 °C", DAY, now).unwrap();
    assert_eq!(c.reopen_from, Some(State::Resolved));
    assert_eq!((c.outcome(), c.event()), (Outcome::Reopened, Event::Reopened));
    assert_eq!(c.note, "the fault returned after the ticket was resolved: tank 80 °C");
}

#[test]
fn a_raise_reopens_a_closed_ticket_only_within_the_window() {
    let now = t("2026-10-01T10:00:00");
    let closed = |at| Closed { id: TicketId(3), tier: Tier::Minor, closed_at: at };
    let c = raise(None, Some(closed(t("2026-09-30T10:00:00"))), Tier::Main, "leak", DAY, now).unwrap();
    assert_eq!((c.id, c.reopen_from, c.tier), (TicketId(3), Some(State::Closed), Tier::Main));
    assert_eq!(c.note, "the fault returned within 1day of closing: leak");
    // A second past the window: a new ticket.
    assert_eq!(raise(None, Some(closed(t("2026-09-30T09:59:59"))), Tier::Main, "", DAY, now), None);
    assert_eq!(raise(None, None, Tier::Main, "", DAY, now), None);
    // A window too long for the calendar reaches any closed ticket, and does not panic.
    assert!(raise(None, Some(closed(t("2000-01-01T00:00:00"))), Tier::Main, "", Duration::MAX, now).is_some());
}

#[test]
fn a_ticket_opened_during_a_visit_is_silenced_and_runs_no_clock() {
    let deadlines =
        Deadlines { contract: Some("c1".into()), acknowledge_by: Some(t("2026-10-01T10:15:00")), ..Default::default() };
    let o = opening(None, &deadlines, "leak");
    assert_eq!((o.deadlines, o.silenced_by, o.note.as_str()), (deadlines.clone(), None, "leak"));
    let o = opening(Some(12), &deadlines, "leak");
    assert_eq!(o.silenced_by, Some(12));
    assert_eq!((o.deadlines.contract.as_deref(), o.deadlines.acknowledge_by), (Some("c1"), None));
    assert_eq!(o.deadlines.no_clock.as_deref(), Some("silenced: opened during the visit of work order 12"));
    assert_eq!(o.note, "opened during the visit of work order 12, silenced: leak");
}

#[test]
fn failed_repairs_count_within_the_window_and_since_the_unit_was_replaced() {
    let r = rule(30, 2);
    let now = t("2026-10-31T10:00:00");
    assert!(!repair_failed(&r, t("2026-10-01T09:59:59"), now), "past the window");
    assert!(repair_failed(&r, t("2026-10-01T10:00:00"), now), "its last day included");
    assert!(repair_failed(&RepeatRule { window: Duration::MAX, ..r }, t("2000-01-01T00:00:00"), now));
    assert_eq!(failed_repairs_count_from(&r, None, now), t("2026-10-01T10:00:00"));
    let replaced = t("2026-10-20T08:00:00");
    assert_eq!(failed_repairs_count_from(&r, Some(replaced), now), replaced + TimeDelta::milliseconds(1));
    // A replacement before the window changes nothing.
    assert_eq!(failed_repairs_count_from(&r, Some(t("2026-09-01T00:00:00")), now), t("2026-10-01T10:00:00"));
    let forever = RepeatRule { window: Duration::MAX, ..r };
    assert_eq!(failed_repairs_count_from(&forever, None, now), DateTime::<Utc>::MIN_UTC, "no panic");
}

#[test]
fn the_unit_is_replaced_at_the_contracts_count_in_warranty_only() {
    let r = rule(30, 2);
    let (resolved, now) = (t("2026-10-30T10:00:00"), t("2026-10-31T12:00:00"));
    let first = failed_repair(&r, 0, resolved, true, now);
    assert_eq!((first.count, first.replace.as_deref()), (1, None));
    assert_eq!(
        first.note,
        "the fault returned 1day 2h after the repair of 2026-10-30T02:00:00+00:00: 1 failed repair within 30days"
    );
    let second = failed_repair(&r, 1, resolved, true, now);
    assert_eq!(second.count, 2);
    assert!(second.note.contains("2 failed repairs within 30days"), "{}", second.note);
    assert_eq!(
        second.replace.as_deref(),
        Some(
            "2 failed repairs within 30days in warranty (the contract replaces at 2): replace the unit; to service manager"
        )
    );
    assert_eq!(failed_repair(&r, 1, resolved, false, now).replace, None, "out of warranty");
    assert!(failed_repair(&r, 5, resolved, true, now).replace.is_some(), "以上: at the count or more");
}

#[test]
fn a_promotion_takes_the_tier_and_never_moves_a_deadline_later() {
    let old = Clocks {
        acknowledge_by: Some(t("2026-10-01T11:00:00")),
        on_site_by: Some(t("2026-10-02T10:00:00")),
        resolve_by: None,
        calendar_gap: Some("gap".into()),
    };
    let new = Deadlines {
        acknowledge_by: Some(t("2026-10-01T12:00:00")),
        on_site_by: Some(t("2026-10-01T14:00:00")),
        resolve_by: Some(t("2026-10-02T10:00:00")),
        ..Default::default()
    };
    let (c, note) = promotion(Tier::Main, &old, Tier::Major, &new, "offline 10 min").unwrap();
    assert_eq!(c.acknowledge_by, old.acknowledge_by, "the earlier deadline stays");
    assert_eq!((c.on_site_by, c.resolve_by), (new.on_site_by, new.resolve_by));
    assert_eq!((c.calendar_gap.as_deref(), note.as_str()), (Some("gap"), "tier 2 → 1: offline 10 min"));
    assert_eq!(promotion(Tier::Major, &old, Tier::Major, &new, ""), None, "no more severe");
    assert_eq!(promotion(Tier::Major, &old, Tier::Minor, &new, ""), None, "less severe");
    // No new clock: the old deadline stays.
    let (c, _) = promotion(Tier::Minor, &old, Tier::Main, &Deadlines::default(), "").unwrap();
    assert_eq!((c.acknowledge_by, c.resolve_by), (old.acknowledge_by, None));
}

#[test]
fn a_resolution_of_an_active_fault_takes_force_and_a_reason() {
    let id = TicketId(4);
    let ask = |note, force, unit_replaced| Ask { note, force, unit_replaced };
    let plain = transition(id, "leak", true, State::OnSite, State::Resolved, ask("fixed", false, false)).unwrap();
    assert_eq!((plain.forced, plain.note.as_str()), (false, "fixed"));
    let e = transition(id, "leak", false, State::OnSite, State::Resolved, ask("fixed", false, false)).unwrap_err();
    assert!(e.to_string().contains("ticket 4's fault `leak` is still active"), "{e}");
    let e = transition(id, "leak", false, State::OnSite, State::Resolved, ask(" ", true, false)).unwrap_err();
    assert!(e.to_string().starts_with("a forced resolution needs a note"), "{e}");
    let f = transition(id, "leak", false, State::OnSite, State::Resolved, ask("parts due", true, false)).unwrap();
    assert_eq!((f.forced, f.note.as_str()), (true, "forced while the fault is still active: parts due"));
    let e = transition(id, "leak", true, State::Open, State::Dispatched, ask("", false, true)).unwrap_err();
    assert!(matches!(e, Refusal::Conflict(ref m) if m.starts_with("`unit_replaced`")), "{e}");
    let e = transition(id, "leak", true, State::Closed, State::Resolved, Ask::default()).unwrap_err();
    assert_eq!(e, Refusal::Illegal(TransitionError::Illegal { from: State::Closed, to: State::Resolved }));
}

#[test]
fn the_helpdesk_opens_on_an_opening_and_closes_on_a_resolution() {
    use HelpdeskAction::*;
    let cases = [
        (Event::Opened, Some(State::Open), Trigger),
        (Event::Reopened, Some(State::Open), Trigger),
        (Event::Transition, Some(State::Open), Trigger),
        (Event::Transition, Some(State::Resolved), Resolve),
        (Event::Transition, Some(State::Closed), Resolve),
        (Event::Transition, Some(State::Cancelled), Resolve),
        (Event::Transition, Some(State::Dispatched), Update),
        (Event::Breach, None, Update),
        (Event::Recurred, None, Update),
        (Event::ReplaceUnit, None, Update),
    ];
    for (event, to, want) in cases {
        assert_eq!(helpdesk_action(event, to), want, "{event} to {to:?}");
    }
}
