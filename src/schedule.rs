//! The visits the contracts promise (patrols, inspections, maintenance, follow-up calls) made
//! into work orders, and the verbs of a visit: starting it, completing it with its checklist.
//! The plans and their due dates are `contracts::plan` (pure); this is their runtime.
//!
//! The scheduler makes each visit a work order `lead` days before it is due,
//! once: the store's unique key makes a second pass, a restart or a clock
//! jumping back a no-op.
//!
//! A plan may instead follow the services themselves (`after`): a written
//! fault analysis after every on-site repair, a satisfaction call after every
//! service. Its work order is made when the ticket is resolved, due `within`
//! days, once per ticket.

use std::sync::Arc;

use chrono::{DateTime, Days, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::clock::Clock;
use crate::contracts::{After, Anchor, Measure, due_dates};
use crate::fleet::Fleet;
use crate::store::{NewWorkOrder, Served, Store, StoreError};

pub(crate) use crate::domain::{VisitKind, VisitState};

/// Whether a plan that follows services follows this one.
fn follows(after: After, s: &Served) -> bool {
    match after {
        After::Service => true,
        After::OnSiteRepair => s.on_site,
    }
}

/// A visit past its due date by more than this is not made late: it shows as missed only
/// if it was made in time.
const LATE_DAYS: u64 = 31;

/// The work orders whose time to be made has come at `now` (each device's local day): due
/// within its plan's lead time, or due lately (a daemon that was down makes them when back).
/// Nothing due before `watched_from` (when the store was made) is made: a visit due before
/// anyone watched was not missed by anyone here.
pub(crate) fn due_work(fleet: &Fleet, now: DateTime<Utc>, watched_from: DateTime<Utc>) -> Vec<NewWorkOrder> {
    let mut out = Vec::new();
    for c in &fleet.contracts {
        for p in c.plans.iter().filter(|p| p.after.is_none()) {
            for d in &fleet.devices {
                let kind = fleet.kinds[d.kind].name.as_str();
                if !p.covers(c, fleet.covered(d.idx)) {
                    continue;
                }
                let today = fleet.local_day(d.idx, now);
                let first_day = fleet.local_day(d.idx, watched_from);
                let anchor = match p.anchor {
                    Anchor::Date(a) => a,
                    Anchor::Acceptance => d.accepted_on,
                    Anchor::Delivery => d.delivered_on,
                };
                let horizon = today.checked_add_days(Days::new(p.lead_days as u64 + 1)).unwrap_or(today);
                // A plan that outlives the contract runs to its own last step.
                let last = match c.ends {
                    Some(e) if !p.past_contract_end => e.min(horizon),
                    _ => horizon,
                };
                for due in due_dates(&p.steps, anchor, last) {
                    let make_on = due.checked_sub_days(Days::new(p.lead_days as u64)).unwrap_or(due);
                    let late = due.checked_add_days(Days::new(LATE_DAYS)).unwrap_or(due);
                    if make_on > today || late < today || due < c.starts || due < first_day {
                        continue;
                    }
                    out.push(NewWorkOrder {
                        contract: c.id.clone(),
                        plan: p.name.clone(),
                        kind: p.kind,
                        device: d.id.0.clone(),
                        site: d.site.0.clone(),
                        customer: d.customer.0.clone(),
                        due_on: due,
                        checklist: p.checklist_for(kind),
                        to_helpdesk: p.helpdesk,
                        ticket_id: None,
                    });
                }
            }
        }
    }
    out
}

/// The work orders owed for the services in `served` (tickets resolved lately), by the plans
/// that follow services: due `within` days after the ticket's resolution, the device's local day.
pub(crate) fn after_service_work(fleet: &Fleet, served: &[Served], now: DateTime<Utc>) -> Vec<NewWorkOrder> {
    let mut out = Vec::new();
    for s in served {
        let Some(idx) = fleet.lookup(&s.device) else { continue };
        let d = fleet.device(idx);
        let kind = fleet.kinds[d.kind].name.as_str();
        let today = fleet.local_day(idx, now);
        for c in &fleet.contracts {
            for p in &c.plans {
                let Some((after, within)) = p.after else { continue };
                if !follows(after, s) || !p.covers(c, fleet.covered(idx)) {
                    continue;
                }
                let served_on = fleet.local_day(idx, s.resolved_at);
                let due = served_on.checked_add_days(Days::new(within as u64)).unwrap_or(served_on);
                let late = due.checked_add_days(Days::new(LATE_DAYS)).unwrap_or(due);
                if late < today || served_on < c.starts || c.ends.is_some_and(|e| served_on > e) {
                    continue;
                }
                out.push(NewWorkOrder {
                    contract: c.id.clone(),
                    plan: p.name.clone(),
                    kind: p.kind,
                    device: d.id.0.clone(),
                    site: d.site.0.clone(),
                    customer: d.customer.0.clone(),
                    due_on: due,
                    checklist: p.checklist_for(kind),
                    to_helpdesk: p.helpdesk,
                    ticket_id: Some(s.ticket),
                });
            }
        }
    }
    out
}

/// One pass: makes what is due (once: the store ignores a work order it has) and marks what was missed.
#[cfg(test)]
pub(crate) async fn run_once(store: &Store, fleet: &Fleet, now: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
    let added = services_once(store, fleet, now, None).await?;
    let (more, missed) = calendar_once(store, fleet, now).await?;
    Ok((added + more, missed))
}

/// The work orders owed for services resolved after `served_after` (the previous pass, less a
/// slack) or, without it, over the whole time a visit may still be made late; how many are new.
async fn services_once(
    store: &Store,
    fleet: &Fleet,
    now: DateTime<Utc>,
    served_after: Option<DateTime<Utc>>,
) -> Result<u64, StoreError> {
    if !fleet.contracts.iter().any(|c| c.plans.iter().any(|p| p.after.is_some())) {
        return Ok(0);
    }
    let oldest = now - chrono::TimeDelta::days(LATE_DAYS as i64 + 1);
    let since = served_after.map_or(oldest, |a| a.max(oldest));
    let served = store.served_since(since).await?;
    store.add_work_orders(&after_service_work(fleet, &served, now), now).await
}

/// The calendar plans' work orders due now, and the missed ones marked: (made, missed).
async fn calendar_once(store: &Store, fleet: &Fleet, now: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
    let watched_from = store.created_at().await?;
    let added = store.add_work_orders(&due_work(fleet, now, watched_from), now).await?;
    // The earliest local day of any site is at most a day behind UTC's.
    let missed = match now.date_naive().checked_sub_days(Days::new(1)) {
        Some(day) => store.mark_missed(day, now).await?,
        None => 0,
    };
    Ok((added, missed))
}

/// Runs a pass a minute, and the plans that follow services at once when a ticket is
/// resolved, until shutdown.
pub(crate) async fn run(store: Store, fleet: Arc<Fleet>, clock: Arc<dyn Clock>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass looks back over the whole late window; later ones from the previous pass.
    let mut last_pass: Option<DateTime<Utc>> = None;
    loop {
        // Reports of past periods wait for the minute: a burst of resolutions changes none.
        let minute = tokio::select! {
            _ = tick.tick() => true,
            _ = store.resolved() => false,
            _ = shutdown.cancelled() => return,
        };
        let now = clock.now();
        // A resolution is stamped by its own clock reading, a little before it commits; and a
        // clock set back stamps earlier ones: both stay inside the slack.
        let after = last_pass.map(|l: DateTime<Utc>| l.min(now) - chrono::TimeDelta::minutes(5));
        // A resolution only calls for what follows services; the calendar waits for the minute.
        let services = services_once(&store, &fleet, now, after).await;
        if services.is_ok() {
            last_pass = Some(now);
        }
        let calendar = if minute { calendar_once(&store, &fleet, now).await } else { Ok((0, 0)) };
        let pass = services.and_then(|a| calendar.map(|(b, missed)| (a + b, missed)));
        match pass {
            Ok((0, 0)) => {}
            Ok((added, missed)) => info!(added, missed, "work orders made from the contracts' plans"),
            Err(e) => error!(error = %e, "making work orders failed; retrying in a minute"),
        }
        if !minute {
            continue;
        }
        match crate::report::on_cadence(&store, &fleet, clock.now()).await {
            Ok(made) if made.is_empty() => {}
            Ok(made) => info!(reports = ?made, "reports of the past period made"),
            Err(e) => error!(error = %e, "making the periodic reports failed; retrying in a minute"),
        }
    }
}

/// Why a visit could not be started or completed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VisitRefused {
    #[error("no work order {0}")]
    NotFound(i64),
    #[error("work order {0} is {1}; only an open or missed one starts")]
    NotStartable(i64, VisitState),
    #[error("work order {0} is already done")]
    AlreadyDone(i64),
    #[error("answer every checklist item; missing: {}", .0.join(", "))]
    Unanswered(Vec<String>),
    #[error("work order {0} holds no signature image {1}; upload it first")]
    NoSuchSignature(i64, i64),
    #[error("a signature needs the name of who signed")]
    Unnamed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts visit `id` with `by` on site: new tickets of the device are silenced until it is done.
pub(crate) async fn start(store: &Store, id: i64, by: &str, now: DateTime<Utc>) -> Result<(), VisitRefused> {
    let w = store.work_order(id).await?.ok_or(VisitRefused::NotFound(id))?;
    if !store.start_work_order(id, by, now).await? {
        return Err(VisitRefused::NotStartable(id, w.state));
    }
    Ok(())
}

/// Completes visit `id` by `by` with its checklist `answers`. What the telemetry measures
/// answers an item unless `by` answered it otherwise; every item must then be answered. The
/// report it owes is made by [`report_visit`], once what the visit found is recorded. `signed`: the customer's
/// signature for the visit, an image uploaded to the visit first.
pub(crate) async fn complete(
    store: &Store,
    fleet: &Fleet,
    id: i64,
    by: &str,
    mut answers: serde_json::Map<String, serde_json::Value>,
    signed: Option<&crate::store::Signed>,
    now: DateTime<Utc>,
) -> Result<(), VisitRefused> {
    if signed.is_some_and(|s| s.name.trim().is_empty()) {
        return Err(VisitRefused::Unnamed);
    }
    let w = store.work_order(id).await?.ok_or(VisitRefused::NotFound(id))?;
    for (item, m) in measure(store, fleet, &w, now).await? {
        answers.entry(item).or_insert(m);
    }
    let missing: Vec<String> = w.checklist.iter().filter(|i| !answers.contains_key(*i)).cloned().collect();
    if !missing.is_empty() {
        return Err(VisitRefused::Unanswered(missing));
    }
    match store.complete_work_order(id, by, &serde_json::Value::Object(answers), signed, now).await? {
        crate::store::Completion::Done => {}
        crate::store::Completion::AlreadyDone => return Err(VisitRefused::AlreadyDone(id)),
        crate::store::Completion::NoSuchSignature => {
            return Err(VisitRefused::NoSuchSignature(id, signed.map_or(0, |s| s.signature)));
        }
    }
    Ok(())
}

/// After visit `id` is done (and its defects recorded): an inspection's written report (001,
/// 002), and a patrol's result reported to the customer (004 L5 "将结果汇报给甲方").
pub(crate) async fn report_visit(store: &Store, fleet: &Fleet, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
    if let Some(done) = store.work_order(id).await?
        && matches!(done.kind, VisitKind::Inspection | VisitKind::Patrol)
        && done.state == VisitState::Done
    {
        let made = crate::report::after_inspection(store, fleet, &done, now).await?;
        tracing::info!(work_order = id, kind = %done.kind, reports = ?made, "visit report made");
    }
    Ok(())
}

/// The checklist items of a work order that the telemetry answers, measured over the time
/// since the plan's previous visit to the device (or the last 30 days), up to `now`:
/// item → `{ "value", "measured": true, "how", "since" }`.
pub(crate) async fn measure(
    store: &Store,
    fleet: &Fleet,
    w: &crate::store::WorkOrder,
    now: DateTime<Utc>,
) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    let mut out = serde_json::Map::new();
    let Some(plan) =
        fleet.contracts.iter().find(|c| c.id == w.contract).and_then(|c| c.plans.iter().find(|p| p.name == w.plan))
    else {
        return Ok(out);
    };
    let Some(idx) = fleet.lookup(&w.device) else { return Ok(out) };
    let profile = fleet.profile_of(idx);
    let to = w.completed_at.unwrap_or(now);
    let from = store
        .last_visit(&w.contract, &w.plan, &w.device, to.timestamp_millis())
        .await?
        .unwrap_or(to - chrono::TimeDelta::days(30));
    for (item, m) in plan.measured.iter().filter(|(i, _)| w.checklist.contains(i)) {
        let value = match m {
            Measure::Metric { metric, stat } => {
                if profile.metric(metric).is_none() {
                    continue;
                }
                let rows = store.rollups(&w.device, metric, from, to).await?;
                let Some(acc) = rows.iter().map(|(_, a)| *a).reduce(|a, b| a.merge(&b)) else { continue };
                match stat.as_str() {
                    "min" => acc.min,
                    "max" => acc.max,
                    "mean" => acc.mean(),
                    _ => acc.last,
                }
            }
            Measure::Online => {
                let outages: Vec<(i64, Option<i64>)> =
                    store.outages(Some(&w.device), from, to).await?.into_iter().map(|(_, s, e)| (s, e)).collect();
                let (f, t) = (from.timestamp_millis(), to.timestamp_millis());
                1.0 - crate::report::downtime(&outages, f, t).0 as f64 / (t - f).max(1) as f64
            }
            Measure::Faults { code } => {
                let events = store.device_events(&w.device, from, to, 100_000).await?;
                let counts = |c: &str| code.as_deref().map_or(c != crate::domain::OFFLINE, |want| c == want);
                events.iter().filter(|e| e.event == crate::domain::FaultChange::Raised && counts(&e.code)).count()
                    as f64
            }
        };
        let how = match m {
            Measure::Metric { metric, stat } => format!("{stat} of {metric}"),
            Measure::Online => "share of the time online".into(),
            Measure::Faults { code: None } => "faults raised".into(),
            Measure::Faults { code: Some(c) } => format!("{c} faults raised"),
        };
        out.insert(item.clone(), serde_json::json!({ "value": value, "measured": true, "how": how, "since": from }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    use crate::contracts::{Period, Step};
    use crate::domain::TicketId;
    use crate::tickets::State;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    fn dates(v: &[NaiveDate]) -> Vec<String> {
        v.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn monthly_from_a_month_end_stays_on_month_ends_through_a_leap_february() {
        let steps = [Step::Every { every: p("1 month"), until: None }];
        let got = due_dates(&steps, d("2027-12-31"), d("2028-06-30"));
        // Worked out by hand: 2028 is a leap year.
        assert_eq!(dates(&got), ["2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30", "2028-05-31", "2028-06-30"]);
        let got = due_dates(&steps, d("2026-01-31"), d("2026-04-30"));
        assert_eq!(dates(&got), ["2026-02-28", "2026-03-31", "2026-04-30"]);
    }

    #[test]
    fn quarterly_inspections_until_the_contract_ends() {
        let steps = [Step::Every { every: p("3 months"), until: None }];
        let got = due_dates(&steps, d("2026-01-15"), d("2026-12-31"));
        assert_eq!(dates(&got), ["2026-04-15", "2026-07-15", "2026-10-15"]);
        let steps = [Step::Every { every: p("6 months"), until: None }];
        let got = due_dates(&steps, d("2025-08-31"), d("2027-03-01"));
        assert_eq!(dates(&got), ["2026-02-28", "2026-08-31", "2027-02-28"]);
    }

    #[test]
    fn the_tenders_follow_up_calls_run_from_delivery_to_year_5_past_the_contracts_end() {
        // 004 L75: "两年到五年内，每六个月回访一次"; the contract (RT) ends after 3 years.
        let config = crate::demo::config().unwrap();
        let fleet = &config.fleet;
        let tender = fleet.contracts.iter().find(|c| c.id == "recorders-tender").unwrap();
        assert_eq!(tender.ends, Some(d("2028-08-31")));
        let calls = tender.plans.iter().find(|p| p.name == "follow-up calls").unwrap();
        assert!(calls.past_contract_end && calls.anchor == Anchor::Delivery);
        let noon = |day: &str| d(day).and_hms_opt(4, 0, 0).unwrap().and_utc();
        let watched = noon("2025-01-01");
        let due = |day: &str| -> Vec<(String, String, NaiveDate)> {
            due_work(fleet, noon(day), watched)
                .into_iter()
                .filter(|w| w.contract == "recorders-tender" && w.device == "rec-001")
                .map(|w| (w.plan, w.device, w.due_on))
                .collect()
        };
        // rec-001 was delivered (accepted) on 2025-09-01: a call due on 2029-03-01, six months
        // after the contract ended, and none of its monthly patrols any more.
        assert_eq!(due("2029-02-27"), [("follow-up calls".to_string(), "rec-001".to_string(), d("2029-03-01"))]);
        // The last, at year 5; nothing after it.
        assert_eq!(due("2030-08-30").len(), 1);
        assert!(due("2031-03-01").is_empty());
    }

    #[test]
    fn the_follow_up_plan_after_delivery() {
        // Once within a week; every 3 months for 2 years; then every 6 months until year 5 (DOMAIN.md, 004).
        let steps = [
            Step::At(p("1 week")),
            Step::Every { every: p("3 months"), until: Some(p("2 years")) },
            Step::Every { every: p("6 months"), until: Some(p("5 years")) },
        ];
        let got = due_dates(&steps, d("2024-02-29"), d("2030-12-31"));
        assert_eq!(
            dates(&got),
            [
                "2024-03-07",
                // Every 3 months from delivery for 2 years, the second anniversary included.
                "2024-05-29",
                "2024-08-29",
                "2024-11-29",
                "2025-02-28",
                "2025-05-29",
                "2025-08-29",
                "2025-11-29",
                "2026-02-28",
                // Then every 6 months from the second anniversary until the fifth.
                "2026-08-29",
                "2027-02-28",
                "2027-08-29",
                "2028-02-29",
                "2028-08-29",
                "2029-02-28",
            ]
        );
        // The contract ending early cuts the plan short.
        assert_eq!(due_dates(&steps, d("2024-02-29"), d("2024-06-01")).len(), 2);
    }

    /// A config of a recorder and a lighting installation at +08:00 under contract `k` (31
    /// January to 31 December 2026), with `plans` appended.
    fn config_with(plans: &str) -> crate::config::Config {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kinds");
        let main = r#"
include = ["kinds/recorder.toml", "kinds/lighting.toml"]
[[sites]]
id = "s"
utc_offset = "+08:00"
[[customers]]
id = "c"
[[devices]]
id = "rec-1"
kind = "recorder"
site = "s"
customer = "c"
accepted_on = "2025-12-31"
[[devices]]
id = "lit-1"
kind = "lighting"
site = "s"
customer = "c"
accepted_on = "2026-01-15"
[contracts.k]
customer = "c"
title = "k"
starts = "2026-01-31"
ends = "2026-12-31"
tier1 = { acknowledge = "1h" }
tier2 = { acknowledge = "1h" }
tier3 = { acknowledge = "1h" }
"#
        .to_string()
            + plans;
        let read = |p: &std::path::Path| match p.file_name().and_then(|f| f.to_str()) {
            Some("main.toml") => Ok(main.clone()),
            Some(f) => std::fs::read_to_string(dir.join(f)),
            None => Err(std::io::Error::other("no name")),
        };
        crate::config::Config::load_with(std::path::Path::new("cfg/main.toml"), &read).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One contract of three plans, for a year of scheduling.
    fn year_config() -> crate::config::Config {
        config_with(
            r#"[[contracts.k.plans]]
name = "patrol"
kind = "patrol"
every = "1 month"
lead = "5 days"
checklist = { lighting = ["circuits", "lamps"] }
[[contracts.k.plans]]
name = "follow-up"
kind = "follow_up"
anchor = "acceptance"
steps = [{ at = "1 week" }, { every = "3 months", until = "2 years" }]
lead = "3 days"
kinds = ["recorder"]
[[contracts.k.plans]]
name = "inspection"
kind = "inspection"
anchor = "2025-11-30"
every = "3 months"
lead = "2 weeks"
kinds = ["lighting"]
"#,
        )
    }

    #[tokio::test]
    async fn a_year_of_plans_makes_exactly_the_visits_worked_out_by_hand_once() {
        let config = year_config();
        let fleet = &config.fleet;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.db");
        let mut store = Store::open(&path).await.unwrap();
        // Watching since before the year began: every visit of it is aftercare's to make.
        store.set_created_at(d("2025-12-01").and_hms_opt(0, 0, 0).unwrap().and_utc()).await;
        let noon = |day: NaiveDate| day.and_hms_opt(4, 0, 0).unwrap().and_utc(); // 12:00 at +08:00
        let mut day = d("2026-01-01");
        while day <= d("2027-01-31") {
            run_once(&store, fleet, noon(day)).await.unwrap();
            if day == d("2026-07-01") {
                // A restart, and the clock jumping back three months for a day.
                drop(store);
                store = Store::open(&path).await.unwrap();
                run_once(&store, fleet, noon(d("2026-04-01"))).await.unwrap();
            }
            day = day.succ_opt().unwrap();
        }
        let all = store.work_orders(&Default::default(), 1000).await.unwrap();
        let mut got: Vec<String> = all.iter().map(|w| format!("{} {} {}", w.plan, w.device, w.due_on)).collect();
        got.sort();
        let mut want: Vec<String> = Vec::new();
        // Monthly from the contract's start on 31 January: month ends, the last on its end day.
        for due in [
            "2026-02-28",
            "2026-03-31",
            "2026-04-30",
            "2026-05-31",
            "2026-06-30",
            "2026-07-31",
            "2026-08-31",
            "2026-09-30",
            "2026-10-31",
            "2026-11-30",
            "2026-12-31",
        ] {
            want.push(format!("patrol lit-1 {due}"));
            want.push(format!("patrol rec-1 {due}"));
        }
        // From the recorder's acceptance on 31 December 2025: the call after a week (7 January)
        // falls before the contract starts; then quarterly, on month ends.
        for due in ["2026-03-31", "2026-06-30", "2026-09-30", "2026-12-31"] {
            want.push(format!("follow-up rec-1 {due}"));
        }
        // Quarterly from 30 November 2025, the lighting only.
        for due in ["2026-02-28", "2026-05-30", "2026-08-30", "2026-11-30"] {
            want.push(format!("inspection lit-1 {due}"));
        }
        want.sort();
        assert_eq!(got, want);
        // Each made `lead` days ahead (local time), with its kind's checklist.
        let first =
            all.iter().find(|w| w.plan == "patrol" && w.device == "lit-1" && w.due_on == d("2026-02-28")).unwrap();
        assert_eq!(first.created_at, noon(d("2026-02-23")));
        assert_eq!(first.checklist, ["circuits", "lamps"]);
        let insp = all.iter().find(|w| w.plan == "inspection" && w.due_on == d("2026-05-30")).unwrap();
        assert_eq!(insp.created_at, noon(d("2026-05-16")));
        // None was done: all missed, once past due.
        assert!(
            all.iter().all(|w| w.state == VisitState::Missed),
            "{:?}",
            all.iter().map(|w| &w.state).collect::<Vec<_>>()
        );
    }

    /// Two plans that follow services.
    fn after_config() -> crate::config::Config {
        config_with(
            r#"[[contracts.k.plans]]
name = "fault analysis"
kind = "follow_up"
after = "on_site_repair"
within = "3 days"
checklist = { "*" = ["cause", "prevention"], lighting = ["cause", "prevention", "circuits"] }
[[contracts.k.plans]]
name = "satisfaction survey"
kind = "follow_up"
after = "service"
within = "1 week"
checklist = { "*" = ["satisfaction"] }
"#,
        )
    }

    /// Opens a ticket on `device` at `at` and takes it through `path` an hour apart; returns it.
    async fn serve(store: &Store, device: &str, kind: &str, at: DateTime<Utc>, path: &[State]) -> TicketId {
        let code = format!("fault-{}", at.timestamp());
        let rec = crate::store::FaultRecord {
            device: device.into(),
            site: "s".into(),
            customer: "c".into(),
            kind: kind.into(),
            code: code.clone(),
            title: code,
            tier: crate::domain::Tier::Main,
            at,
            detail: String::new(),
            change: crate::domain::FaultChange::Raised,
            deadlines: Default::default(),
            warranty: None,
            repeat: None,
        };
        let id = store.apply_faults(std::slice::from_ref(&rec), at, std::time::Duration::from_secs(60)).await.unwrap()
            [0]
        .1
        .unwrap();
        for (i, to) in path.iter().enumerate() {
            let when = at + chrono::TimeDelta::hours(i as i64 + 1);
            if *to == State::Resolved {
                // Repaired: the fault clears before the ticket is resolved.
                let clear =
                    crate::store::FaultRecord { change: crate::domain::FaultChange::Cleared, at: when, ..rec.clone() };
                store.apply_faults(&[clear], when, std::time::Duration::from_secs(60)).await.unwrap();
            }
            store.transition(id, *to, "eng", "", when).await.unwrap();
        }
        id
    }

    #[tokio::test]
    async fn a_fault_analysis_follows_each_on_site_repair_and_a_survey_each_service_once() {
        use crate::tickets::State::*;
        let config = after_config();
        let fleet = &config.fleet;
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("a.db")).await.unwrap();
        store.set_routes(&[("c".into(), "hd".into())]).await.unwrap();
        // 20:00 UTC on 10 March is 04:00 on 11 March at the site: the local day counts.
        let at = d("2026-03-10").and_hms_opt(15, 0, 0).unwrap().and_utc();
        let repaired = serve(&store, "rec-1", "recorder", at, &[Acknowledged, Dispatched, OnSite, Resolved]).await;
        let remote = serve(&store, "lit-1", "lighting", at, &[Acknowledged, Resolved]).await;
        let cancelled = serve(&store, "lit-1", "lighting", at - chrono::TimeDelta::days(1), &[Cancelled]).await;
        let now = at + chrono::TimeDelta::hours(6);
        // A pass that looks only after its previous one does not see services before it.
        assert_eq!(services_once(&store, fleet, now, Some(now - chrono::TimeDelta::hours(1))).await.unwrap(), 0);
        assert_eq!(run_once(&store, fleet, now).await.unwrap().0, 3);
        assert_eq!(run_once(&store, fleet, now + chrono::TimeDelta::minutes(1)).await.unwrap().0, 0, "once");
        let all = store.work_orders(&Default::default(), 100).await.unwrap();
        let mut got: Vec<String> =
            all.iter().map(|w| format!("{} {} {} {:?}", w.plan, w.device, w.due_on, w.ticket_id)).collect();
        got.sort();
        assert_eq!(
            got,
            [
                format!("fault analysis rec-1 2026-03-14 Some({})", repaired.0),
                format!("satisfaction survey lit-1 2026-03-18 Some({})", remote.0),
                format!("satisfaction survey rec-1 2026-03-18 Some({})", repaired.0),
            ]
        );
        assert!(all.iter().all(|w| w.ticket_id != Some(cancelled.0)), "a cancelled ticket was no service");
        let analysis = all.iter().find(|w| w.plan == "fault analysis").unwrap();
        assert_eq!(
            (analysis.kind.as_str(), analysis.checklist.clone()),
            ("follow_up", vec!["cause".into(), "prevention".into()])
        );
        // Reopened and resolved again, a week later: no second analysis or survey for the ticket.
        let later = at + chrono::TimeDelta::days(7);
        store.transition(repaired, Open, "eng", "", later).await.unwrap();
        store.transition(repaired, Resolved, "eng", "", later + chrono::TimeDelta::hours(1)).await.unwrap();
        assert_eq!(run_once(&store, fleet, later + chrono::TimeDelta::hours(2)).await.unwrap().0, 0);
        // A service more than a month past its visit's due date is not made late.
        let long_ago = at - chrono::TimeDelta::days(40);
        serve(&store, "rec-1", "recorder", long_ago, &[Acknowledged, Resolved]).await;
        assert_eq!(run_once(&store, fleet, later + chrono::TimeDelta::hours(3)).await.unwrap().0, 0);
        // The helpdesk hears which ticket called for the visit.
        let rows = store.outbox(crate::domain::OutboxState::Pending, 100, None).await.unwrap();
        let of_analysis = |o: &&crate::store::OutboxRow| o.subject == crate::store::SubjectId::WorkOrder(analysis.id);
        let scheduled = rows
            .iter()
            .filter(of_analysis)
            .find(|o| o.event == crate::store::OutboxEvent::Visit(crate::domain::VisitEvent::Scheduled))
            .unwrap();
        assert_eq!(scheduled.note, format!("due on 2026-03-14 after the service of ticket {}", repaired.0));
    }
}
