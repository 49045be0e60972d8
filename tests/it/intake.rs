//! Tickets people report, against the real daemon: a call opens a ticket with the contract's
//! clocks, the sensor's fault joins it rather than opening a second, a second report joins the
//! open one, a request names no device, a customer's user reports only for itself, and the
//! CLI opens one for a script.

use serde_json::{Value, json};

use crate::access::{token_of, two_customers_quiet};
use crate::harness::*;

async fn report(token: &str, d: &Daemon, body: Value) -> (u16, Value) {
    let r = as_user(token).post(d.url("/api/v1/tickets")).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn events(t: &Value) -> Vec<String> {
    t["timeline"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_opens_a_ticket_that_the_sensors_fault_joins_and_a_customer_reports_for_itself() {
    let (d, mut sim) = two_customers_quiet("");
    let desk = token_of("dee");

    // A call about lit-a's leakage before the sensor sees it: a ticket with the fault's tier and
    // the contract's clock, reported by the caller, entered by the desk, not yet sensed.
    let call = json!({
        "channel": "phone", "category": "fault", "device": "lit-a", "code": "leakage",
        "reporter": {"name": "Wang Li", "phone": "138 0000 0000"},
        "problem": "The pole by the gate gives a shock",
    });
    let (status, t) = report(&desk, &d, call.clone()).await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_i64().unwrap();
    assert_eq!(
        (&t["channel"], &t["category"], &t["tier"], &t["sensed"]),
        (&json!("phone"), &json!("fault"), &json!(1), &json!(false))
    );
    assert_eq!((&t["customer"], &t["site"], &t["reported_by"]), (&json!("cust-1"), &json!("site-a"), &json!("dee")));
    assert_eq!(t["reporter"], json!({"name": "Wang Li", "phone": "138 0000 0000"}));
    assert_eq!(t["clock"]["contract"], json!("k"));
    let opened = chrono::DateTime::parse_from_rfc3339(t["opened_at"].as_str().unwrap()).unwrap();
    let ack = chrono::DateTime::parse_from_rfc3339(t["clock"]["acknowledge_by"].as_str().unwrap()).unwrap();
    assert_eq!((ack - opened).num_minutes(), 60, "the contract's hour to acknowledge runs from the call");
    // Every time comes with the site's local time (+08:00) beside it, the clock's included.
    let local = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a local time")).unwrap();
    assert_eq!(local(&t["opened_at_local"]), opened);
    assert_eq!(local(&t["opened_at_local"]).offset().local_minus_utc(), 8 * 3600, "{t}");
    assert_eq!(local(&t["clock"]["acknowledge_by_local"]), ack);
    let full = get(&d.url(&format!("/api/v1/tickets/{id}"))).await;
    assert_eq!(full["timeline"][0]["actor"], json!("dee"));
    assert!(full["timeline"][0]["note"].as_str().unwrap().contains("Wang Li"), "{full}");

    // The sensor raises the same fault: it counts on the caller's ticket, no second one.
    sim.send("inject lit-a leakage");
    let joined = wait_for("the sensor's raise on the reported ticket", 30, || async {
        let t = get(&d.url(&format!("/api/v1/tickets/{id}"))).await;
        (t["sensed"] == json!(true)).then_some(t)
    })
    .await;
    assert_eq!(joined["occurrences"], json!(2));
    let all = get(&d.url("/api/v1/tickets?device=lit-a&code=leakage")).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "one ticket for the fault: {all}");

    // A second call about it joins the open ticket too (200, not 201), as a timeline line.
    let mut again = call.clone();
    again["channel"] = json!("email");
    again["reporter"] = json!({"name": "Zhao Min"});
    let (status, t) = report(&desk, &d, again).await;
    assert_eq!((status, t["id"].as_i64()), (200, Some(id)), "{t}");
    assert_eq!(t["reporter"]["name"], json!("Wang Li"), "the first caller stays the reporter");
    let full = get(&d.url(&format!("/api/v1/tickets/{id}"))).await;
    assert!(events(&full).contains(&"reported".to_string()), "{:?}", events(&full));

    // A question about the device names no fault: a ticket of its own, minor, which can be
    // resolved without force since no sensor holds it.
    let (status, q) = report(
        &desk,
        &d,
        json!({"channel": "phone", "category": "question", "device": "lit-a", "problem": "When is the next inspection?"}),
    )
    .await;
    assert_eq!(status, 201, "{q}");
    assert_eq!((&q["code"], &q["tier"], &q["sensed"]), (&Value::Null, &json!(3), &json!(false)));
    assert_eq!(q["reporter"], Value::Null, "nobody named: no reporter");
    assert!(q["title"].as_str().unwrap().starts_with("Question: When is"), "{q}");
    let qid = q["id"].as_i64().unwrap();
    let r = api()
        .post(d.url(&format!("/api/v1/tickets/{qid}/transition")))
        .json(&json!({"to": "resolved", "note": "told by phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());

    // A customer's user reports through the web for its own customer, naming no device.
    let cat = token_of("cat");
    let (status, w) =
        report(&cat, &d, json!({"channel": "web", "category": "complaint", "problem": "Nobody came yesterday"})).await;
    assert_eq!(status, 201, "{w}");
    assert_eq!(
        (&w["device"], &w["customer"], &w["site"], &w["tier"]),
        (&Value::Null, &json!("cust-1"), &json!("site-a"), &json!(2))
    );
    assert!(w["clock"]["acknowledge_by"].is_string(), "the contract covering the site runs: {w}");
    // ...but not by phone, not with a tier of its own choosing, and not about another's device.
    let (status, _) = report(&cat, &d, json!({"channel": "phone", "category": "fault", "problem": "x"})).await;
    assert_eq!(status, 403);
    let (status, _) = report(&cat, &d, json!({"channel": "web", "category": "fault", "tier": 1, "problem": "x"})).await;
    assert_eq!(status, 403);
    let (status, _) =
        report(&cat, &d, json!({"channel": "web", "category": "fault", "device": "lit-b", "problem": "x"})).await;
    assert_eq!(status, 404, "another customer's device does not exist for it");
    // Mistakes are named.
    let (status, e) =
        report(&desk, &d, json!({"channel": "fax", "category": "fault", "device": "lit-a", "problem": "x"})).await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("channel `fax`"), "{e}");
    let (status, e) = report(
        &desk,
        &d,
        json!({"channel": "phone", "category": "fault", "device": "lit-a", "code": "smoke", "problem": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("no fault `smoke`"), "{e}");

    // The desk's queue: by channel, by category, by what is due soon, nearest deadline first.
    let ids = |v: Value| -> Vec<i64> { v.as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect() };
    assert_eq!(ids(get(&d.url("/api/v1/tickets?channel=phone&category=fault")).await), vec![id]);
    assert_eq!(ids(get(&d.url("/api/v1/tickets?category=question")).await), vec![qid]);
    let wid = w["id"].as_i64().unwrap();
    let soon = ids(get(&d.url("/api/v1/tickets?due_within=2h&sort=due")).await);
    assert_eq!(soon, vec![id, wid], "the call's hour runs out first; the resolved question is due no more");
    assert!(get(&d.url("/api/v1/tickets?due_within=30m")).await.as_array().unwrap().is_empty());
    assert!(get(&d.url("/api/v1/tickets?breached=true")).await.as_array().unwrap().is_empty());
    let queue = get(&d.url("/api/v1/tickets?sort=due")).await;
    let due: Vec<&Value> = queue.as_array().unwrap().iter().map(|t| &t["clock"]["next_due"]).collect();
    assert!(due[0].is_string() && due.last().unwrap().is_null(), "nearest first, none last: {due:?}");
    let r = api().get(d.url("/api/v1/tickets?due_within=soon")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // The customer's service report counts the reports: the fault the sensor joined recurs,
    // and a complaint without a code shows as what it is, never as an empty fault.
    let rep = get(&d.url("/api/v1/reports?customer=cust-1")).await;
    let recurring: Vec<&Value> = rep["recurring"].as_array().unwrap().iter().collect();
    assert!(recurring.iter().all(|r| r["code"].as_str().is_some_and(|c| !c.is_empty())), "{recurring:?}");
    let open_codes: Vec<&str> =
        rep["open_tickets"].as_array().unwrap().iter().map(|t| t["code"].as_str().unwrap()).collect();
    assert!(open_codes.contains(&"complaint") && !open_codes.contains(&""), "{open_codes:?}");

    // A script opens one through the CLI, as the user it names.
    let config = d.dir.path().join("aftercare.toml");
    let (ok, out, err) = cli(
        &config,
        &[
            "ticket",
            "open",
            "--as",
            "dee",
            "--channel",
            "email",
            "--category",
            "request",
            "--customer",
            "cust-2",
            "--reporter-name",
            "Li Na",
        ],
        "Please move the display by the entrance\n",
    );
    assert!(ok, "{out}{err}");
    let cid: i64 = out
        .trim()
        .trim_start_matches("ticket ")
        .trim_end_matches(" opened")
        .parse()
        .unwrap_or_else(|_| panic!("{out}"));
    let c = get(&d.url(&format!("/api/v1/tickets/{cid}"))).await;
    assert_eq!(
        (&c["customer"], &c["site"], &c["channel"], &c["category"]),
        (&json!("cust-2"), &json!("site-b"), &json!("email"), &json!("request"))
    );
    assert_eq!(c["problem"], json!("Please move the display by the entrance"));
    // Every report is in the audit log, by its user.
    let log = get(&d.url("/api/v1/audit?actor=cat")).await;
    assert!(log.as_array().unwrap().iter().any(|l| l["status"] == json!(201)), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_ticket_reaches_the_customers_helpdesk_like_a_sensors() {
    let (addr, rx) = crate::webhook::start().await;
    let fleet = ["lit-r:lighting"];
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[[customers]]\nid = \"cust-1\"\n", "[[customers]]\nid = \"cust-1\"\nhelpdesk = \"hd\"\n")
        + &format!(
            "[helpdesks.hd]\nwebhook = {{ url = \"http://{addr}/hook\", secret = \"{}\", timeout = \"5s\" }}\n",
            crate::webhook::secret()
        )
        + &contract("", "");
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::start(dir, &prefix, &broker);
    // A visit report about the site, naming no device.
    let body = json!({
        "channel": "visit", "category": "request", "customer": "cust-1", "site": "site-a",
        "reporter": {"name": "Chen Jie"}, "problem": "Add a circuit for the new car park",
    });
    let r = api().post(d.url("/api/v1/tickets")).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let t: Value = r.json().await.unwrap();
    wait_for("the opened event at the helpdesk", 30, || async { (!rx.ids().is_empty()).then_some(()) }).await;
    let e = rx.events()[0].clone();
    assert_eq!((&e["type"], &e["action"]), (&json!("ticket.opened"), &json!("trigger")), "{e:#}");
    assert_eq!(e["ticket"]["id"], t["id"]);
    assert_eq!((&e["ticket"]["device"], &e["ticket"]["channel"]), (&Value::Null, &json!("visit")));
    assert_eq!(e["ticket"]["reporter"]["name"], json!("Chen Jie"));
    assert!(e["ticket"]["clock"]["acknowledge_by"].is_string(), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_assigns_engineers_comment_and_an_engineer_sees_its_days_work() {
    let (d, _sim) = two_customers_quiet("");
    let desk = token_of("dee");
    let open = |body: Value| {
        let desk = desk.clone();
        let d = &d;
        async move {
            let (status, t) = report(&desk, d, body).await;
            assert_eq!(status, 201, "{t}");
            t["id"].as_i64().unwrap()
        }
    };
    let a =
        open(json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": "Dark since Monday"})).await;
    let b = open(json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": "Flickers"})).await;
    let c = open(json!({"channel": "phone", "category": "fault", "device": "lit-b", "problem": "Pole leans"})).await;

    // The desk gives one ticket to eve; dispatching another names her too.
    let post = |token: &str, path: String, body: Value| {
        let client = as_user(token);
        let url = d.url(&path);
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, t) =
        post(&desk, format!("/api/v1/tickets/{a}/assign"), json!({"assignee": "eve", "note": "nearest"})).await;
    assert_eq!((status, &t["assignee"]), (200, &json!("eve")), "{t}");
    let (status, t) =
        post(&desk, format!("/api/v1/tickets/{b}/transition"), json!({"to": "dispatched", "assignee": "eve"})).await;
    assert_eq!((status, &t["assignee"], &t["state"]), (200, &json!("eve"), &json!("dispatched")), "{t}");
    let full = get(&d.url(&format!("/api/v1/tickets/{b}"))).await;
    assert!(events(&full).contains(&"assigned".to_string()), "{full}");
    // Only someone who can go, and who serves the customer: eve serves cust-1 only.
    let (status, e) = post(&desk, format!("/api/v1/tickets/{c}/assign"), json!({"assignee": "eve"})).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("does not serve customer cust-2"), "{e}");
    let (status, _) = post(&desk, format!("/api/v1/tickets/{a}/assign"), json!({"assignee": "cat"})).await;
    assert_eq!(status, 400, "a customer's user goes nowhere");
    // An engineer does not assign, nor work on another engineer's ticket.
    let eve = token_of("eve");
    let (status, _) = post(&eve, format!("/api/v1/tickets/{c}/assign"), json!({"assignee": "eve"})).await;
    assert_eq!(status, 403);
    let admin = api();
    let r = admin
        .post(d.url("/api/v1/users"))
        .json(&json!({"name": "ed", "role": "engineer", "customers": ["cust-1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let made: Value = admin
        .post(d.url("/api/v1/tokens"))
        .json(&json!({"user": "ed", "name": "t"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ed = made["token"].as_str().unwrap().to_string();
    let (status, e) = post(&ed, format!("/api/v1/tickets/{b}/transition"), json!({"to": "on_site"})).await;
    assert_eq!(status, 403, "{e}");
    let (status, _) = post(&eve, format!("/api/v1/tickets/{b}/transition"), json!({"to": "on_site"})).await;
    assert_eq!(status, 200);

    // Comments: internal ones are the team's; the customer reads the rest, and writes its own.
    let (status, _) = post(
        &desk,
        format!("/api/v1/tickets/{a}/comments"),
        json!({"text": "Spare lamps are in van 2", "internal": true}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) =
        post(&desk, format!("/api/v1/tickets/{a}/comments"), json!({"text": "An engineer comes today"})).await;
    assert_eq!(status, 201);
    let cat = token_of("cat");
    let (status, _) =
        post(&cat, format!("/api/v1/tickets/{a}/comments"), json!({"text": "Thanks", "internal": true})).await;
    assert_eq!(status, 403);
    let (status, _) = post(&cat, format!("/api/v1/tickets/{a}/comments"), json!({"text": "Thanks"})).await;
    assert_eq!(status, 201);
    let seen: Value =
        as_user(&cat).get(d.url(&format!("/api/v1/tickets/{a}"))).send().await.unwrap().json().await.unwrap();
    let notes: Vec<&str> = seen["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["event"] == json!("comment"))
        .map(|l| l["note"].as_str().unwrap())
        .collect();
    assert_eq!(notes, ["An engineer comes today", "Thanks"], "the customer does not see the internal one");
    let team = get(&d.url(&format!("/api/v1/tickets/{a}"))).await;
    let internal: Vec<&Value> =
        team["timeline"].as_array().unwrap().iter().filter(|l| l["internal"] == json!(true)).collect();
    assert_eq!(internal.len(), 1, "{team}");

    // Eve's day: her tickets by site, and a visit given to her once it is due.
    let mine: Value =
        as_user(&eve).get(d.url("/api/v1/tickets?assignee=me")).send().await.unwrap().json().await.unwrap();
    let mut ids: Vec<i64> = mine.as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![a, b]);
    let orders = get(&d.url("/api/v1/work-orders?customer=cust-1")).await;
    let wo = &orders.as_array().unwrap()[0];
    let (status, w) = post(&desk, format!("/api/v1/work-orders/{}/assign", wo["id"]), json!({"assignee": "eve"})).await;
    assert_eq!((status, &w["assignee"]), (200, &json!("eve")), "{w}");
    let (status, _) = post(&ed, format!("/api/v1/work-orders/{}/start", wo["id"]), json!({})).await;
    assert_eq!(status, 403, "another engineer's visit");
    let work: Value = as_user(&eve).get(d.url("/api/v1/me/work")).send().await.unwrap().json().await.unwrap();
    assert_eq!(work["user"], json!("eve"));
    let sites = work["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 1, "{work}");
    assert_eq!(sites[0]["site"], json!("site-a"));
    assert_eq!(sites[0]["tickets"].as_array().unwrap().len(), 2);
    // The inspection is due in three days: hers, but not today's work yet.
    #[allow(clippy::disallowed_methods)]
    let today = (chrono::Utc::now() + chrono::TimeDelta::hours(8)).date_naive().to_string();
    assert!(wo["due_on"].as_str().unwrap() > today.as_str(), "{wo}");
    assert_eq!(sites[0]["visits"], json!([]), "{work}");
    let hers: Value =
        as_user(&eve).get(d.url("/api/v1/work-orders?assignee=me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(hers.as_array().unwrap().len(), 1, "{hers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contact_is_registered_and_answered_within_a_day() {
    let (d, _sim) = two_customers_quiet("");
    let desk = as_user(&token_of("dee"));
    let call = json!({
        "channel": "phone", "customer": "cust-1", "name": "Wang Li", "address": "1 Gate Road",
        "phone": "138 0000 0000", "purchase_date": "2025-03-01", "problem": "How do I reset the timer?",
    });
    let r = desk.post(d.url("/api/v1/contacts")).json(&call).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let c: Value = r.json().await.unwrap();
    let id = c["id"].as_i64().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(c["at"].as_str().unwrap()).unwrap();
    let by = chrono::DateTime::parse_from_rfc3339(c["answer_by"].as_str().unwrap()).unwrap();
    assert_eq!((by - at).num_hours(), 24);
    assert_eq!(
        (&c["taken_by"], &c["purchase_date"], &c["breached_at"]),
        (&json!("dee"), &json!("2025-03-01"), &Value::Null)
    );
    // A letter from someone of no known customer is registered too.
    let letter = json!({"channel": "email", "name": "A passer-by", "problem": "A lamp is out on Elm Street"});
    let r = desk.post(d.url("/api/v1/contacts")).json(&letter).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let waiting = get(&d.url("/api/v1/contacts?unanswered=true")).await;
    assert_eq!(waiting.as_array().unwrap().len(), 2, "{waiting}");
    assert_eq!(waiting[0]["id"], json!(id), "the nearest deadline first");
    // Answered, with the ticket it became; once.
    let (status, t) = report(
        &token_of("dee"),
        &d,
        json!({"channel": "phone", "category": "question", "device": "lit-a", "problem": "How do I reset the timer?"}),
    )
    .await;
    assert_eq!(status, 201);
    let body = json!({"answer": "Walked through the reset; ticket opened", "ticket": t["id"]});
    let r = desk.post(d.url(&format!("/api/v1/contacts/{id}/answer"))).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let a: Value = r.json().await.unwrap();
    assert_eq!((&a["answered_by"], &a["ticket_id"], &a["breached_at"]), (&json!("dee"), &t["id"], &Value::Null));
    let r = desk.post(d.url(&format!("/api/v1/contacts/{id}/answer"))).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let waiting = get(&d.url("/api/v1/contacts?unanswered=true")).await;
    assert_eq!(waiting.as_array().unwrap().len(), 1);
    // A manager of cust-1 sees its customer's contacts only; a customer's user none at all.
    let mia: Value =
        as_user(&token_of("mia")).get(d.url("/api/v1/contacts")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<i64> = mia.as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![id]);
    let r = as_user(&token_of("cat")).get(d.url("/api/v1/contacts")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = as_user(&token_of("mia"))
        .post(d.url("/api/v1/contacts"))
        .json(&json!({"channel": "phone", "customer": "cust-2", "problem": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "another customer is none of hers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_is_graded_visited_in_person_answered_and_in_the_ledger() {
    let (d, _sim) = two_customers_quiet("");
    let desk = token_of("dee");
    // A major complaint runs as tier 1; each complaint gets a visit in person the next day.
    let (status, major) = report(
        &desk,
        &d,
        json!({"channel": "phone", "category": "complaint", "grade": "major", "device": "lit-a",
               "reporter": {"name": "Director Liu"}, "problem": "Third outage this month"}),
    )
    .await;
    assert_eq!(status, 201, "{major}");
    assert_eq!((&major["complaint_grade"], &major["tier"]), (&json!("major"), &json!(1)));
    let (status, general) =
        report(&token_of("cat"), &d, json!({"channel": "web", "category": "complaint", "problem": "Rude engineer"}))
            .await;
    assert_eq!(status, 201);
    assert_eq!((&general["complaint_grade"], &general["tier"]), (&json!("general"), &json!(2)));
    let (status, e) = report(
        &desk,
        &d,
        json!({"channel": "phone", "category": "question", "grade": "major", "device": "lit-a", "problem": "x"}),
    )
    .await;
    assert_eq!(status, 400, "only a complaint has a grade: {e}");
    let visits = get(&d.url("/api/v1/work-orders?kind=follow_up")).await;
    let visit = |t: &Value| visits.as_array().unwrap().iter().find(|w| w["ticket_id"] == t["id"]).cloned();
    let v = visit(&major).unwrap_or_else(|| panic!("a visit for the major complaint: {visits}"));
    assert_eq!(v["plan"], json!(format!("complaint {} follow-up", major["id"])));
    assert!(visit(&general).is_some(), "and for the general one: {visits}");

    // The visit is made and the complaint answered with its outcome.
    let admin = api();
    let wid = v["id"].as_i64().unwrap();
    let r = admin.post(d.url(&format!("/api/v1/work-orders/{wid}/start"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answers = json!({"answers": {"met the complainant": "yes, on site", "outcome": "RCD replaced; apology made"}});
    let r = admin.post(d.url(&format!("/api/v1/work-orders/{wid}/complete"))).json(&answers).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let r = admin
        .post(d.url(&format!("/api/v1/tickets/{}/transition", major["id"])))
        .json(&json!({"to": "resolved", "note": "Visited; RCD replaced; the director accepted the apology"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let ledger = get(&d.url("/api/v1/complaints?customer=cust-1")).await;
    assert_eq!(
        ledger["summary"],
        json!({"total": 2, "general": 1, "major": 1, "answered": 1, "open": 1, "visited": 1,
               "mean_hours_to_answer": ledger["summary"]["mean_hours_to_answer"]}),
        "{ledger:#}"
    );
    let line = &ledger["complaints"][0];
    assert_eq!((&line["ticket"], &line["grade"]), (&major["id"], &json!("major")));
    assert_eq!(line["outcome"], json!("Visited; RCD replaced; the director accepted the apology"));
    assert_eq!(line["follow_up"]["state"], json!("done"));
    // A customer's user reads its own ledger.
    let own: Value =
        as_user(&token_of("cat")).get(d.url("/api/v1/complaints")).send().await.unwrap().json().await.unwrap();
    assert_eq!(own["summary"]["total"], json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_customer_answers_a_one_time_link_or_the_desk_records_a_call() {
    let (d, _sim) = two_customers_quiet("");
    let desk = as_user(&token_of("dee"));
    let mut served = Vec::new();
    for problem in ["Dark since Monday", "Flickers"] {
        let (status, t) = report(
            &token_of("dee"),
            &d,
            json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": problem}),
        )
        .await;
        assert_eq!(status, 201);
        let id = t["id"].as_i64().unwrap();
        let r = desk
            .post(d.url(&format!("/api/v1/tickets/{id}/assign")))
            .json(&json!({"assignee": "eve"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        served.push(id);
    }
    let (a, b) = (served[0], served[1]);
    // No survey before the service.
    let r = desk.post(d.url(&format!("/api/v1/tickets/{a}/survey"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    for id in [a, b] {
        let r = as_user(&token_of("eve"))
            .post(d.url(&format!("/api/v1/tickets/{id}/transition")))
            .json(&json!({"to": "resolved", "note": "fixed"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    // A link, answered once by someone with no account.
    let link: Value =
        desk.post(d.url(&format!("/api/v1/tickets/{a}/survey"))).send().await.unwrap().json().await.unwrap();
    let token = link["token"].as_str().unwrap().to_string();
    let page: Value =
        http().get(d.url(&format!("/api/v1/surveys/{token}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["ticket"], json!(a));
    assert!(page["question"].as_str().unwrap().contains("1 (very unhappy)"), "{page}");
    let answer = json!({"token": token, "score": 4, "comment": "Quick, but call first next time"});
    let r = http().post(d.url("/api/v1/surveys")).json(&answer).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http().post(d.url("/api/v1/surveys")).json(&answer).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "a link is answered once");
    assert_eq!(http().get(d.url(&format!("/api/v1/surveys/{token}"))).send().await.unwrap().status().as_u16(), 404);
    let r =
        http().post(d.url("/api/v1/surveys")).json(&json!({"token": "svy_guess", "score": 5})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // The desk records the other on the phone; a score is 1 to 5.
    let r =
        desk.post(d.url(&format!("/api/v1/tickets/{b}/satisfaction"))).json(&json!({"score": 9})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r =
        desk.post(d.url(&format!("/api/v1/tickets/{b}/satisfaction"))).json(&json!({"score": 2})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let rec: Value = r.json().await.unwrap();
    assert_eq!(
        (&rec["channel"], &rec["recorded_by"], &rec["engineer"]),
        (&json!("phone"), &json!("dee"), &json!("eve"))
    );
    let r = desk.post(d.url(&format!("/api/v1/tickets/{b}/survey"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409, "answered already");
    // Scores for the period, per engineer; the link's secret is nowhere in the audit log.
    let s = get(&d.url("/api/v1/satisfaction?customer=cust-1")).await;
    assert_eq!((&s["answers"], &s["mean"]), (&json!(2), &json!(3.0)), "{s:#}");
    assert_eq!(s["by_engineer"], json!([{"engineer": "eve", "answers": 2, "mean": 3.0}]));
    let log = api().get(d.url("/api/v1/audit?limit=1000")).send().await.unwrap().text().await.unwrap();
    assert!(!log.contains(&token[4..]), "no survey secret in the audit log");
    assert!(log.contains("customer:cust-1"), "the answer is audited as the customer's");
}
