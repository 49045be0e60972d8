use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::domain::{FaultChange, Tier};
use crate::store::FaultRecord;
use crate::tickets::State;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// A moment long after the periods the tests report on.
fn later() -> DateTime<Utc> {
    t("2027-06-01T00:00:00Z")
}

fn rec(device: &str, code: &str, tier: Tier, change: FaultChange, at: DateTime<Utc>) -> FaultRecord {
    let mut deadlines = crate::contracts::Deadlines::default();
    if change == FaultChange::Raised {
        deadlines.acknowledge_by = Some(at + TimeDelta::minutes(15));
    }
    FaultRecord {
        device: device.into(),
        site: "site-a".into(),
        customer: "city-transit".into(),
        kind: "recorder".into(),
        code: code.into(),
        title: code.into(),
        tier,
        at,
        detail: String::new(),
        change,
        deadlines,
        warranty: None,
        repeat: None,
    }
}

#[test]
fn downtime_is_clipped_to_the_period() {
    let h = 3_600_000;
    // An outage from before the period, one inside, one still going at its end.
    let o = [(-2 * h, Some(3 * h)), (10 * h, Some(12 * h)), (20 * h, None)];
    assert_eq!(downtime(&o, 0, 24 * h), (3 * h + 2 * h + 4 * h, 3));
    assert_eq!(downtime(&[(30 * h, None)], 0, 24 * h), (0, 0));
}

/// Figures worked out by hand over 1–11 November 2026 (240 hours).
#[tokio::test]
async fn a_report_s_figures_match_the_ones_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    let config = crate::demo::config().unwrap();
    let fleet = &config.fleet;
    let apply = |r: FaultRecord| {
        let store = store.clone();
        async move {
            store.apply_faults(std::slice::from_ref(&r), r.at, std::time::Duration::from_secs(86_400)).await.unwrap()[0]
                .1
        }
    };
    // swh-001 offline from 31 Oct to 1 Nov 12:00: 12 h inside the period.
    apply(rec("swh-001", "offline", Tier::Main, FaultChange::Raised, t("2026-10-31T00:00:00Z"))).await;
    apply(rec("swh-001", "offline", Tier::Main, FaultChange::Cleared, t("2026-11-01T12:00:00Z"))).await;
    // rec-001 offline 2 Nov 00:00–06:00 (6 h), acknowledged after 30 min (late), resolved after 4 h…
    let a = apply(rec("rec-001", "offline", Tier::Main, FaultChange::Raised, t("2026-11-02T00:00:00Z"))).await.unwrap();
    store.transition(a, State::Acknowledged, "eng", "", t("2026-11-02T00:30:00Z")).await.unwrap();
    // Resolved while still offline (the engineer left when the cable was mended; power came later).
    let force = crate::store::TransitionOptions { force: true, ..Default::default() };
    store.transition_with(a, State::Resolved, "eng", "cable mended", t("2026-11-02T04:00:00Z"), force).await.unwrap();
    apply(rec("rec-001", "offline", Tier::Main, FaultChange::Cleared, t("2026-11-02T06:00:00Z"))).await;
    // …and offline again from 10 Nov 12:00 to the end (12 h): the repair did not hold.
    apply(rec("rec-001", "offline", Tier::Main, FaultChange::Raised, t("2026-11-10T12:00:00Z"))).await;
    // A tier-1 fault on led-001, acknowledged after 10 min (in time), resolved after 8 h.
    let b = apply(rec("led-001", "cabinet_offline", Tier::Major, FaultChange::Raised, t("2026-11-03T00:00:00Z")))
        .await
        .unwrap();
    store.transition(b, State::Acknowledged, "eng", "", t("2026-11-03T00:10:00Z")).await.unwrap();
    apply(rec("led-001", "cabinet_offline", Tier::Major, FaultChange::Cleared, t("2026-11-03T07:00:00Z"))).await;
    store.transition(b, State::Resolved, "eng", "", t("2026-11-03T08:00:00Z")).await.unwrap();

    let scope = Scope {
        customer: Some("city-transit".into()),
        site: None,
        from: t("2026-11-01T00:00:00Z"),
        to: t("2026-11-11T00:00:00Z"),
    };
    let r = compute(&store, fleet, &scope, Lang::En, later()).await.unwrap();
    // The period in the customer's calendar (+08:00): 08:00 on 1 November to 07:59:59 on the 11th.
    assert_eq!((r.first_day.to_string(), r.last_day.to_string()), ("2026-11-01".into(), "2026-11-11".into()));
    assert_eq!(r.customer_name.as_deref(), Some("City Transit Authority"));
    assert!(render::html(&r, Lang::En).contains("City Transit Authority (city-transit)"));
    // The store was made after the period began: the report says what it does not know.
    store.set_created_at(t("2026-11-05T02:00:00Z")).await;
    let r = compute(&store, fleet, &scope, Lang::En, later()).await.unwrap();
    assert_eq!(r.watched_since.map(|d| d.to_string()).as_deref(), Some("2026-11-05"));
    assert!(render::html(&r, Lang::En).contains("watched these devices since 2026-11-05"));
    store.set_created_at(t("2026-10-01T00:00:00Z")).await;
    let r = compute(&store, fleet, &scope, Lang::En, later()).await.unwrap();
    assert_eq!(r.watched_since, None);
    assert_eq!(parse_time("2026-11-01", offset_of(fleet, Some("city-transit"), None)), Ok(t("2026-10-31T16:00:00Z")));
    assert_eq!(parse_time("2026-11-01T00:00:00Z", offset_of(fleet, None, None)), Ok(t("2026-11-01T00:00:00Z")));
    let dev = |id: &str| r.devices.iter().find(|d| d.device == id).unwrap();
    assert_eq!((dev("rec-001").downtime_hours, dev("rec-001").outages), (18.0, 2));
    assert!((dev("rec-001").availability - (1.0 - 18.0 / 240.0)).abs() < 1e-12);
    assert!((dev("swh-001").availability - 0.95).abs() < 1e-12);
    assert_eq!(dev("lit-001").availability, 1.0);
    // Tickets opened in the period: rec-001 offline (raised twice) and led-001's fault.
    let faults: Vec<(u8, &str, u32, u32)> =
        r.faults.iter().map(|f| (f.tier, f.code.as_str(), f.tickets, f.occurrences)).collect();
    assert_eq!(faults, [(1, "cabinet_offline", 1, 1), (2, "offline", 1, 2)]);
    assert_eq!(r.mtta_minutes, Some(20.0), "(30 + 10) / 2");
    // rec-001's repair did not hold: its ticket is open again and has no resolution; led-001's took 8 h.
    assert_eq!(r.mttr_hours, Some(8.0));
    let ack: Vec<(u8, u32, u32)> = r.sla.iter().map(|t| (t.tier, t.acknowledge.met, t.acknowledge.missed)).collect();
    assert_eq!(ack, [(1, 1, 0), (2, 0, 1), (3, 0, 0)]);
    assert_eq!(r.recurring.len(), 1);
    assert_eq!(
        (r.recurring[0].subject.as_str(), r.recurring[0].code.as_str(), r.recurring[0].times),
        ("rec-001", "offline", 2)
    );
    // The early-warning windows up to the report's end hold the same tickets here.
    let windows: Vec<(&str, usize)> =
        r.recurring_windows.iter().map(|w| (w.window.as_str(), w.recurring.len())).collect();
    assert_eq!(windows, [("month", 1), ("quarter", 1), ("year", 1)]);
    // rec-001's ticket is open again at the end of the period, and swh-001's was never resolved;
    // led-001's is resolved, so not open.
    let mut open: Vec<&str> = r.open_tickets.iter().map(|t| t.device.as_str()).collect();
    open.sort();
    assert_eq!(open, ["rec-001", "swh-001"]);
    assert!(r.recommendations.iter().any(|x| x.contains("rec-001 was available 92.5 %")), "{:?}", r.recommendations);
    assert!(r.recommendations.iter().any(|x| x.contains("1 contract clocks were missed")));

    // The renderings carry the same figures.
    let csv = render::csv(&r);
    assert!(csv.lines().any(|l| l.starts_with("rec-001,") && l.contains(",0.925000,18.000,2,")), "{csv}");
    let zh = render::html(&compute(&store, fleet, &scope, Lang::Zh, later()).await.unwrap(), Lang::Zh);
    // Times at the site (+08:00), and said to be: rec-001's ticket opened at 00:00 UTC on 2 November.
    assert!(zh.contains("UTC+08:00") && zh.contains("2026-11-02 08:00"), "{zh}");
    for want in ["售后服务报告", "设备可用率", "重复故障", "92.50%", "<svg", "平均修复时间（小时）: 8.0"]
    {
        assert!(zh.contains(want), "{want} missing");
    }
    let en = render::html(&r, Lang::En);
    assert!(en.contains("Mean time to resolve (h): 8.0") && en.contains("Recurring problems"));
}

/// pdftotext and pdftoppm (poppler-utils) and the fonts, or `None` (then the test says so and
/// passes, unless AFTERCARE_TEST_REQUIRE_PEERS is set, as in CI, where scripts/peers.sh installs them).
fn pdf_tools() -> Option<Vec<std::path::PathBuf>> {
    let tools = ["pdftotext", "pdftoppm"].iter().all(|t| std::process::Command::new(t).arg("-v").output().is_ok());
    match (tools, render::fonts()) {
        (true, Ok(f)) => Some(f),
        (tools, f) => {
            let why = format!("pdftotext/pdftoppm present: {tools}; fonts: {:?}", f.err());
            assert!(std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_none(), "{why}");
            eprintln!("skipping the PDF test: {why}");
            None
        }
    }
}

#[tokio::test]
async fn the_pdf_carries_the_chinese_text_and_its_page_is_drawn() {
    let Some(fonts) = pdf_tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    let config = crate::demo::config().unwrap();
    let at = t("2026-11-03T00:00:00Z");
    store
        .apply_faults(
            &[rec("led-001", "cabinet_offline", Tier::Major, FaultChange::Raised, at)],
            at,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    // A visit done, one answer measured.
    let visit = crate::store::NewWorkOrder {
        contract: "led-displays".into(),
        plan: "patrol".into(),
        kind: crate::domain::VisitKind::Patrol,
        device: "led-001".into(),
        site: "site-a".into(),
        customer: "city-transit".into(),
        due_on: "2026-11-05".parse().unwrap(),
        checklist: vec!["pixels".into(), "power".into()],
        to_helpdesk: false,
        ticket_id: None,
    };
    store.add_work_orders(&[visit], at).await.unwrap();
    let answers = serde_json::json!({"pixels": {"value": 12.0, "measured": true}, "power": "ok"});
    store.complete_work_order(1, "Li Wei", &answers, None, t("2026-11-05T03:00:00Z")).await.unwrap();
    let scope = Scope {
        customer: Some("city-transit".into()),
        site: None,
        from: t("2026-11-01T00:00:00Z"),
        to: t("2026-11-11T00:00:00Z"),
    };
    let r = compute(&store, &config.fleet, &scope, Lang::Zh, later()).await.unwrap();
    let pdf = render::pdf(&r, Lang::Zh, &fonts).await.unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    let path = dir.path().join("r.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let text = std::process::Command::new("pdftotext").arg(&path).arg("-").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for want in [
        "售后服务报告",
        "设备可用率 100.0%",
        "故障统计",
        "cabinet_offline",
        "led-001",
        "100.00%",
        "未结工单 (1)",
        "Li Wei",
        "实测",
        "power: ok",
        "签字确认",
        "审核（服务经理）",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    // Times are the site's, and say so: led-001's ticket opened at 00:00 UTC, 08:00 in Beijing.
    assert!(text.contains("UTC+08:00") && text.contains("2026-11-03 08:00"), "{text}");
    // Every page carries ink: no heading alone on a page, no chart blown up to a page of its own.
    let ink = ink_per_page(&path, dir.path());
    assert!(ink.iter().all(|i| *i > 0.01), "a page nearly blank: {ink:?}");
}

/// The share of dark pixels on each page of a PDF, drawn at 30 dpi in grey by pdftoppm.
fn ink_per_page(pdf: &std::path::Path, dir: &std::path::Path) -> Vec<f64> {
    let out = dir.join("page");
    let ok = std::process::Command::new("pdftoppm").args(["-gray", "-r", "30"]).arg(pdf).arg(&out).status().unwrap();
    assert!(ok.success());
    let mut pages: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pgm"))
        .map(|e| e.path())
        .collect();
    pages.sort();
    assert!(!pages.is_empty());
    pages
        .iter()
        .map(|p| {
            let pgm = std::fs::read(p).unwrap();
            // P5 header: magic, width, height, max; then one byte a pixel.
            let mut fields = 0;
            let mut start = 0;
            for (i, b) in pgm.iter().enumerate() {
                if b.is_ascii_whitespace() && i > 0 && !pgm[i - 1].is_ascii_whitespace() {
                    fields += 1;
                    if fields == 4 {
                        start = i + 1;
                        break;
                    }
                }
            }
            let pixels = &pgm[start..];
            pixels.iter().filter(|p| **p < 200).count() as f64 / pixels.len().max(1) as f64
        })
        .collect()
}

#[tokio::test]
async fn an_outage_still_going_counts_to_now_not_to_the_end_of_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    let config = crate::demo::config().unwrap();
    // rec-001 went offline 11 minutes ago, in a month that has 20 days to run.
    let now = t("2026-11-10T12:11:00Z");
    let down = t("2026-11-10T12:00:00Z");
    store
        .apply_faults(&[rec("rec-001", "offline", Tier::Main, FaultChange::Raised, down)], down, Default::default())
        .await
        .unwrap();
    let scope = Scope {
        customer: Some("city-transit".into()),
        site: None,
        from: t("2026-11-01T00:00:00Z"),
        to: t("2026-12-01T00:00:00Z"),
    };
    let r = compute(&store, &config.fleet, &scope, Lang::En, now).await.unwrap();
    let dev = r.devices.iter().find(|d| d.device == "rec-001").unwrap();
    assert!((dev.downtime_hours - 11.0 / 60.0).abs() < 1e-9, "{}", dev.downtime_hours);
    // Of the 9 days, 12 hours and 11 minutes that have passed.
    let passed = (now - scope.from).num_minutes() as f64;
    assert!((dev.availability - (1.0 - 11.0 / passed)).abs() < 1e-9, "{}", dev.availability);
}

#[test]
fn the_last_whole_period_is_worked_out_on_the_local_calendar() {
    let d = |s: &str| s.parse::<NaiveDate>().unwrap();
    let cases = [
        // Weeks start on Monday: on a Monday the week before is whole; on a Sunday the one before that.
        (Cadence::Weekly, "2026-11-23", "2026-11-16", "2026-11-23"),
        (Cadence::Weekly, "2026-11-22", "2026-11-09", "2026-11-16"),
        (Cadence::Monthly, "2026-03-01", "2026-02-01", "2026-03-01"),
        (Cadence::Monthly, "2024-03-31", "2024-02-01", "2024-03-01"),
        (Cadence::Monthly, "2027-01-15", "2026-12-01", "2027-01-01"),
        (Cadence::Quarterly, "2026-05-20", "2026-01-01", "2026-04-01"),
        (Cadence::Quarterly, "2026-01-01", "2025-10-01", "2026-01-01"),
        (Cadence::Quarterly, "2026-12-31", "2026-07-01", "2026-10-01"),
        (Cadence::Yearly, "2026-06-30", "2025-01-01", "2026-01-01"),
    ];
    for (c, today, from, to) in cases {
        assert_eq!(c.last_whole(d(today)), Some((d(from), d(to))), "{c:?} on {today}");
    }
}

#[tokio::test]
async fn reports_are_made_once_after_each_whole_period_the_contract_ran_in() {
    let config = crate::demo::config().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    // 08:00 on Friday 1 January 2027 at +08:00. The detailed plan (north-square) ran to the end
    // of 2026; the lighting contract (city-transit) ended on 9 January 2026.
    let now = t("2027-01-01T00:00:00Z");
    let listed = |kept: &[crate::store::StoredReport], cadence: &str| {
        let mut v: Vec<String> = kept
            .iter()
            .filter(|r| r.lang == "en" && r.cadence.as_deref() == Some(cadence))
            .map(|r| {
                format!(
                    "{} {}",
                    r.customer,
                    r.from.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).date_naive()
                )
            })
            .collect();
        v.sort();
        v
    };
    // A store made on 5 December watched three weeks whole: those of 7, 14 and 21 December
    // (the down time of the first two is caught up). No month yet.
    store.set_created_at(t("2026-12-05T00:00:00Z")).await;
    let made = on_cadence(&store, &config.fleet, now).await.unwrap();
    assert_eq!(made.len(), 6, "three weeks in two languages: {made:?}");
    let kept = store.reports(None, 1000).await.unwrap();
    assert_eq!(
        listed(&kept, "weekly"),
        ["north-square 2026-12-07", "north-square 2026-12-14", "north-square 2026-12-21"]
    );
    // One made on 1 June: what ended in the last 93 days (since 30 September) is caught up,
    // the weeks from 28 September on, September to December, the third and fourth quarters;
    // not the year, which began before the store.
    store.set_created_at(t("2026-06-01T00:00:00Z")).await;
    let made = on_cadence(&store, &config.fleet, now).await.unwrap();
    assert_eq!(made.len(), 2 * (10 + 4 + 2), "{made:?}");
    let kept = store.reports(None, 1000).await.unwrap();
    assert_eq!(listed(&kept, "weekly").len(), 13);
    assert_eq!(listed(&kept, "weekly")[0], "north-square 2026-09-28");
    assert_eq!(
        listed(&kept, "monthly"),
        ["north-square 2026-09-01", "north-square 2026-10-01", "north-square 2026-11-01", "north-square 2026-12-01"]
    );
    assert_eq!(listed(&kept, "quarterly"), ["north-square 2026-07-01", "north-square 2026-10-01"]);
    // One made early in 2025 watched the whole of 2026: the yearly reports, city-transit's
    // too (its contract ran into 2026), and nothing twice.
    store.set_created_at(t("2025-01-01T00:00:00Z")).await;
    let made = on_cadence(&store, &config.fleet, now).await.unwrap();
    assert_eq!(made.len(), 4, "{made:?}");
    let kept = store.reports(None, 1000).await.unwrap();
    assert_eq!(listed(&kept, "yearly"), ["city-transit 2026-01-01", "north-square 2026-01-01"]);
    assert!(on_cadence(&store, &config.fleet, now + TimeDelta::minutes(1)).await.unwrap().is_empty(), "once");
    let year = kept.iter().find(|r| r.cadence.as_deref() == Some("yearly") && r.customer == "north-square").unwrap();
    assert_eq!((year.from, year.to), (t("2025-12-31T16:00:00Z"), t("2026-12-31T16:00:00Z")));
    let weekly = kept.iter().find(|r| r.cadence.as_deref() == Some("weekly") && r.lang == "zh-CN").unwrap();
    assert!(weekly.html.contains("售后服务报告"), "a whole report, in Chinese");
    assert_eq!((weekly.work_order_id, weekly.due_by), (None, None));
}

#[test]
fn survey_scores_are_averaged_and_the_low_ones_called_back() {
    let wo = |device: &str, state: &str, answer: serde_json::Value| WorkOrder {
        id: 1,
        contract: "k".into(),
        plan: "satisfaction survey".into(),
        kind: crate::domain::VisitKind::FollowUp,
        device: device.into(),
        site: "s".into(),
        customer: "c".into(),
        due_on: "2026-11-20".parse().unwrap(),
        created_at: t("2026-11-17T00:00:00Z"),
        state: crate::domain::VisitState::parse(state).unwrap(),
        checklist: vec!["Satisfaction (1-5)".into(), "comments".into()],
        answers: Some(serde_json::json!({ "Satisfaction (1-5)": answer, "comments": "" })),
        completed_at: None,
        completed_by: None,
        ticket_id: Some(1),
        assignee: None,
        signed_by: None,
        signature: None,
        defects: Vec::new(),
    };
    use serde_json::json;
    let orders = [
        wo("a", "done", json!("4")),
        wo("b", "done", json!(5)),
        wo("c", "done", json!("2 - the engineer came late")),
        wo("d", "done", json!({"value": 3, "measured": false})),
        wo("e", "done", json!("n/a")),
        wo("f", "done", json!(7)),
        wo("g", "open", json!(1)),
    ];
    let s = satisfaction_of(&orders).unwrap();
    assert_eq!((s.mean, s.surveys, s.low.clone()), (3.5, 4, vec!["c".to_string()]));
    assert_eq!(satisfaction_of(&orders[4..6]), None, "no score, no figure");
}

#[tokio::test]
async fn a_patrol_done_reports_its_result_to_the_customer() {
    // 004 L5: "定期到甲方免费对记录仪性能进行检测，将结果汇报给甲方".
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).await.unwrap();
    let config = crate::demo::config().unwrap();
    let at = t("2026-11-03T00:00:00Z");
    let visit = crate::store::NewWorkOrder {
        contract: "recorders-tender".into(),
        plan: "monthly patrol".into(),
        kind: crate::domain::VisitKind::Patrol,
        device: "rec-001".into(),
        site: "site-a".into(),
        customer: "city-transit".into(),
        due_on: "2026-11-05".parse().unwrap(),
        checklist: vec!["recording test".into()],
        to_helpdesk: false,
        ticket_id: None,
    };
    store.add_work_orders(&[visit], at).await.unwrap();
    let mut answers = serde_json::Map::new();
    answers.insert("recording test".into(), serde_json::json!("passed"));
    crate::schedule::complete(&store, &config.fleet, 1, "Li Wei", answers, None, t("2026-11-05T03:00:00Z"))
        .await
        .unwrap();
    crate::schedule::report_visit(&store, &config.fleet, 1, t("2026-11-05T03:00:00Z")).await.unwrap();
    let kept = store.reports(Some("city-transit"), 10).await.unwrap();
    let mut langs: Vec<(&str, Option<i64>)> = kept.iter().map(|r| (r.lang.as_str(), r.work_order_id)).collect();
    langs.sort_unstable();
    assert_eq!(langs, [("en", Some(1)), ("zh-CN", Some(1))]);
    let zh = kept.iter().find(|r| r.lang == "zh-CN").unwrap();
    // The patrol's answers, in the plan's Chinese words.
    assert!(zh.html.contains("录制测试: passed") && zh.html.contains("月度巡检"), "{}", zh.html);
    assert!(!zh.typst.is_empty(), "the markup of its PDF is kept");
}
