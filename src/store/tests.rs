//! The store as a whole: its schema.

#[test]
fn every_migration_file_is_registered_in_order() {
    // A file left out of `MIGRATIONS` never runs: 0018 once was, and its index was never made.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    let registered: Vec<String> = super::MIGRATIONS.iter().map(|(v, d, _)| format!("{v:04}_{d}.sql")).collect();
    assert_eq!(registered, files);
}

#[tokio::test]
async fn a_customer_user_with_no_customers_sees_nothing_rather_than_all() {
    use crate::access::Role;
    let dir = tempfile::tempdir().unwrap();
    let s = super::Store::open(&dir.path().join("a.db")).await.unwrap();
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    // Made past the checks, as a hand edit of the database would.
    let id = s.add_user("cat", Role::Customer, &[], None, now).await.unwrap().unwrap();
    s.add_token(id, super::API_TOKEN, "t", "hash-of-cat", now, None).await.unwrap();
    assert!(s.principal("hash-of-cat", now).await.unwrap().is_none());
    let id = s.add_user("dee", Role::Desk, &[], None, now).await.unwrap().unwrap();
    s.add_token(id, super::API_TOKEN, "t", "hash-of-dee", now, None).await.unwrap();
    assert!(s.principal("hash-of-dee", now).await.unwrap().is_some());
    // Disabling revokes for good: enabling again brings no token back.
    assert!(s.set_disabled("dee", true, now).await.unwrap());
    assert!(s.set_disabled("dee", false, now).await.unwrap());
    assert!(s.principal("hash-of-dee", now).await.unwrap().is_none());
}

#[tokio::test]
async fn the_audit_log_keeps_its_last_ninety_days_whatever_asks_and_sessions_go_a_month_after_they_end() {
    use crate::clock::{Clock, SystemClock};
    let dir = tempfile::tempdir().unwrap();
    let s = super::Store::open(&dir.path().join("a.db")).await.unwrap();
    // The store's guard reads the wall clock, so the lines are dated from it.
    let now = SystemClock.now();
    let line = |days: i64| super::NewAudit {
        at: now - chrono::TimeDelta::days(days),
        actor: "ann",
        token_id: None,
        address: "127.0.0.1",
        method: "POST",
        path: "/api/v1/users",
        status: 201,
        detail: "",
    };
    for days in [400, 200, 30, 0] {
        s.audit(&line(days)).await.unwrap();
    }
    let all = super::AuditFilter { actor: None, since: None, limit: 100 };
    assert_eq!(s.prune_access(now - chrono::TimeDelta::days(365), now).await.unwrap(), 1);
    assert_eq!(s.audit_log(&all).await.unwrap().len(), 3);
    // A retention shorter than 90 days, or a hand-made DELETE, is refused by the store itself.
    assert!(s.prune_access(now - chrono::TimeDelta::days(10), now).await.is_err());
    assert_eq!(s.audit_log(&all).await.unwrap().len(), 3, "nothing went");
    let deleted = sqlx::query("DELETE FROM audit").execute(&s.pool).await;
    assert!(deleted.is_err(), "the last 90 days stay");
    assert!(sqlx::query("UPDATE audit SET actor = 'eve'").execute(&s.pool).await.is_err(), "no line changes");
    assert_eq!(s.prune_access(now - chrono::TimeDelta::days(100), now).await.unwrap(), 1, "the line of 200 days");

    // Sessions: one ended 40 days ago, one expired 40 days ago, one live; and an API token
    // revoked long ago, which stays listed.
    let id = s.add_user("zoe", crate::access::Role::Desk, &[], None, now).await.unwrap().unwrap();
    let old = now - chrono::TimeDelta::days(41);
    let ended = s.add_token(id, super::SESSION, "login", "h1", old, None).await.unwrap();
    assert!(s.revoke_token(ended, now - chrono::TimeDelta::days(40)).await.unwrap());
    s.add_token(id, super::SESSION, "login", "h2", old, Some(now - chrono::TimeDelta::days(40))).await.unwrap();
    s.add_token(id, super::SESSION, "login", "h3", now, Some(now + chrono::TimeDelta::hours(12))).await.unwrap();
    let api = s.add_token(id, super::API_TOKEN, "script", "h4", old, None).await.unwrap();
    assert!(s.revoke_token(api, old).await.unwrap());
    let cut = now - chrono::TimeDelta::days(30);
    assert_eq!(s.prune_access(now - chrono::TimeDelta::days(365), cut).await.unwrap(), 2);
    let left: Vec<String> = s.tokens(Some("zoe")).await.unwrap().into_iter().map(|t| t.kind).collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[tokio::test]
async fn a_contact_unanswered_for_24_hours_is_breached_and_one_answered_late_stays_so() {
    use crate::tickets::intake::Channel;
    let dir = tempfile::tempdir().unwrap();
    let s = super::Store::open(&dir.path().join("a.db")).await.unwrap();
    let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let day = chrono::TimeDelta::hours(24);
    let new = |problem: &'static str| super::NewContact {
        at: t0,
        channel: Channel::Phone,
        customer: Some("cust-1"),
        name: "Wang Li",
        address: "1 Gate Road",
        phone: "138",
        purchase_date: chrono::NaiveDate::from_ymd_opt(2025, 3, 1),
        problem,
        taken_by: "dee",
        answer_by: t0 + day,
        ticket_id: None,
    };
    let on_time = s.add_contact(&new("answered in time")).await.unwrap();
    let late = s.add_contact(&new("answered late")).await.unwrap();
    let waiting = s.add_contact(&new("still waiting")).await.unwrap();
    assert!(s.answer_contact(on_time, "dee", "told", None, t0 + chrono::TimeDelta::hours(2)).await.unwrap());
    assert!(!s.answer_contact(on_time, "dee", "again", None, t0 + day).await.unwrap(), "answered once");
    let later = t0 + chrono::TimeDelta::hours(30);
    assert!(s.answer_contact(late, "dee", "sorry", None, later).await.unwrap());
    let f = |unanswered, breached| super::ContactFilter { unanswered, breached, limit: 100, ..Default::default() };
    let ids = |v: Vec<super::Contact>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    // Before the day is out nothing waiting is breached; after it, the waiting one is.
    assert_eq!(ids(s.contacts(&f(Some(true), None), t0 + chrono::TimeDelta::hours(3)).await.unwrap()), vec![waiting]);
    assert!(s.contacts(&f(Some(true), Some(true)), t0 + chrono::TimeDelta::hours(3)).await.unwrap().is_empty());
    let breached = s.contacts(&f(None, Some(true)), later).await.unwrap();
    assert_eq!(ids(breached.clone()), vec![waiting, late]);
    assert!(breached.iter().all(|c| c.breached_at == Some(t0 + day)));
    assert_eq!(ids(s.contacts(&f(None, Some(false)), later).await.unwrap()), vec![on_time]);
    let c = s.contact(on_time, later).await.unwrap().unwrap();
    assert_eq!((c.answered_by.as_deref(), c.answer.as_deref(), c.breached_at), (Some("dee"), Some("told"), None));
}
