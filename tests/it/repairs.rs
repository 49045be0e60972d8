//! The repair record of an on-site repair, against the real daemon: the contract's required
//! fields refuse a resolve that lacks them (naming each), photos and a signature are kept as
//! files and served back to the customer, and the charge follows the billing class with wear
//! parts at half price.

use base64::Engine;
use serde_json::{Value, json};

use crate::access::{token_of, two_customers_keyed};
use crate::harness::*;

/// A 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_site_repair_is_resolved_only_with_the_record_its_contract_requires() {
    let keys = "repair_requires = [\"cause\", \"work_done\", \"parts\", \"confirmation\", \"signature\", \"photos\"]\n\
                wear_parts_half_price = true";
    let (d, _sim) = two_customers_keyed("", keys);
    let (desk, eve, cat) = (as_user(&token_of("dee")), as_user(&token_of("eve")), as_user(&token_of("cat")));

    let call = json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": "Lamp 3 is dark"});
    let (status, t) = send(desk.post(d.url("/api/v1/tickets")).json(&call)).await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_i64().unwrap();
    let ticket = |p: &str| d.url(&format!("/api/v1/tickets/{id}{p}"));
    let (status, t) =
        send(desk.post(ticket("/transition")).json(&json!({"to": "dispatched", "assignee": "eve"}))).await;
    assert_eq!(status, 200, "{t}");
    let (status, t) = send(eve.post(ticket("/transition")).json(&json!({"to": "on_site"}))).await;
    assert_eq!(status, 200, "{t}");

    // Resolving with nothing recorded: 400 naming every field the contract requires.
    let (status, e) = send(eve.post(ticket("/transition")).json(&json!({"to": "resolved"}))).await;
    assert_eq!(status, 400, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(msg.ends_with("missing: cause, work_done, parts, confirmation, signature, photos"), "{msg}");
    // A move the state machine refuses keeps no record either.
    let early = json!({"to": "acknowledged", "repair": {"cause": "not yet known"}});
    let (status, e) = send(eve.post(ticket("/transition")).json(&early)).await;
    assert_eq!(status, 409, "{e}");
    let (_, now) = send(eve.get(ticket(""))).await;
    assert!(now.get("repair").is_none(), "{now}");

    // Photos and a signature: images only, known by their bytes, at most 5 MiB.
    let png = base64::engine::general_purpose::STANDARD.decode(PNG).unwrap();
    let (status, photo) = send(eve.post(ticket("/attachments")).body(png.clone())).await;
    assert_eq!(
        (status, &photo["kind"], &photo["content_type"]),
        (201, &json!("photo"), &json!("image/png")),
        "{photo}"
    );
    let (status, sig) = send(eve.post(ticket("/attachments?kind=signature")).body(png.clone())).await;
    assert_eq!(status, 201, "{sig}");
    let (status, e) = send(eve.post(ticket("/attachments")).body("<svg onload=alert(1)>")).await;
    assert_eq!(status, 400, "{e}");
    let mut big = png.clone();
    big.resize(5 * 1024 * 1024 + 1, 0);
    let (status, _) = send(eve.post(ticket("/attachments")).body(big)).await;
    assert_eq!(status, 413);
    let (status, e) = send(cat.post(ticket("/attachments")).body(png.clone())).await;
    assert_eq!(status, 403, "a customer does not add to the record: {e}");

    // A record naming the photo as the signature is refused; one lacking a required field too.
    let (photo, sig) = (photo["id"].as_i64().unwrap(), sig["id"].as_i64().unwrap());
    let mut record = json!({
        "cause": "water in the lamp's driver", "work_done": "replaced the driver and the seal",
        "parts": [
            {"number": "SEAL-10", "quantity": 2, "stock": "van 3", "wear": true, "unit_cost": 1000},
            {"number": "DRV-40", "name": "LED driver", "quantity": 1, "stock": "central", "unit_cost": 5000}
        ],
        "labour_minutes": 45, "travel_minutes": 30, "travel_km": 12, "labour_cost": 3000, "travel_cost": 500,
        "billing": "at_cost",
        "confirmation": {"name": "Wang Li", "signature": photo, "at": "2026-12-07T10:00:00Z"},
        "photos": [photo]
    });
    let (status, e) = send(eve.post(ticket("/transition")).json(&json!({"to": "resolved", "repair": record}))).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains(&format!("no signature attachment {photo}")), "{e}");
    record["confirmation"]["signature"] = json!(sig);
    let mut unsigned = record.clone();
    unsigned["photos"] = json!([]);
    let (status, e) = send(eve.post(ticket("/transition")).json(&json!({"to": "resolved", "repair": unsigned}))).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().ends_with("missing: photos"), "{e}");

    let (status, t) = send(eve.post(ticket("/transition")).json(&json!({"to": "resolved", "repair": record}))).await;
    assert_eq!((status, &t["state"]), (200, &json!("resolved")), "{t}");
    let r = &t["repair"];
    // The signing time in the site's time too, as the description says an answer may hold.
    assert_eq!(r["record"]["confirmation"]["at_local"], json!("2026-12-07T18:00:00+08:00"), "{r}");
    let doc = get(&d.url("/api/v1/openapi.json")).await;
    let props = &doc["components"]["schemas"]["Confirmation"]["properties"];
    assert_eq!(props["at_local"]["readOnly"], json!(true), "{props}");
    assert_eq!(
        (&r["class"], &r["recorded_by"], &r["record"]["cause"]),
        (&json!("at_cost"), &json!("eve"), &record["cause"])
    );
    // Parts 2 x 10.00 (wear) + 50.00, labour 30.00, travel 5.00: 105.00 in cost; the wear parts
    // at half price make 95.00 charged.
    assert_eq!(r["charge"], json!({"parts": 7000, "labour": 3000, "travel": 500, "cost": 10500, "charged": 9500}));
    assert_eq!(t["attachments"].as_array().unwrap().len(), 2, "{t}");
    let line = t["timeline"].as_array().unwrap().iter().find(|l| l["event"] == "repair").expect("a repair line");
    assert!(line["note"].as_str().unwrap().contains("SEAL-10 x2"), "{line}");

    // The customer sees what it is charged, not what the repair cost the supplier.
    let (status, seen) = send(cat.get(ticket(""))).await;
    assert_eq!(status, 200);
    assert_eq!(seen["repair"]["charge"], json!({"charged": 9500}), "{seen}");
    assert!(seen["repair"]["record"]["parts"][0].get("unit_cost").is_none(), "{seen}");
    assert!(seen["repair"]["record"].get("labour_cost").is_none(), "{seen}");
    // The desk does not write repair records, not even with a move it may make.
    let (status, e) = send(desk.post(ticket("/transition")).json(&json!({"to": "dispatched", "repair": record}))).await;
    assert_eq!(status, 403, "{e}");

    // The customer sees the photo served back as the image it is, and nothing can run from it.
    let r = cat.get(ticket(&format!("/attachments/{photo}"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);
    let (status, _) = send(cat.get(ticket("/attachments/999"))).await;
    assert_eq!(status, 404);
    // Another customer's photo does not exist for cust-1's user, by its real ticket and id.
    let admin = as_user(&token_of("ann"));
    let call = json!({"channel": "phone", "category": "fault", "device": "lit-b", "problem": "Dark"});
    let (status, other) = send(desk.post(d.url("/api/v1/tickets")).json(&call)).await;
    assert_eq!(status, 201, "{other}");
    let other_url = |p: &str| d.url(&format!("/api/v1/tickets/{}{p}", other["id"]));
    let (status, theirs) = send(admin.post(other_url("/attachments")).body(png.clone())).await;
    assert_eq!(status, 201, "{theirs}");
    let (status, _) = send(cat.get(other_url(&format!("/attachments/{}", theirs["id"])))).await;
    assert_eq!(status, 404, "cust-2's photo by its own ticket");
    let (status, _) = send(cat.get(ticket(&format!("/attachments/{}", theirs["id"])))).await;
    assert_eq!(status, 404, "cust-2's photo under cust-1's ticket");
    let (status, _) = send(admin.get(other_url(&format!("/attachments/{}", theirs["id"])))).await;
    assert_eq!(status, 200, "the admin sees it");

    // The files live beside the database.
    let kept = d.dir.path().join(format!("data/aftercare-attachments/{id}/{photo}"));
    assert_eq!(std::fs::read(&kept).unwrap(), png, "{}", kept.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cause_the_contract_charges_at_cost_only_bills_the_repair_at_cost() {
    // 004 L5 "若人为损坏，只收取成本费，不收取维护费": man-made damage at cost, misuse billed.
    let keys = "billable = [\"user_damage\", \"misuse\"]\nat_cost = [\"user_damage\"]";
    let (d, _sim) = two_customers_keyed("", keys);
    let desk = as_user(&token_of("dee"));
    let mut classes = Vec::new();
    let mut ids = Vec::new();
    for cause in ["user_damage", "misuse"] {
        let call = json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": format!("{cause}?")});
        let (status, t) = send(desk.post(d.url("/api/v1/tickets")).json(&call)).await;
        assert_eq!(status, 201, "{t}");
        ids.push(t["id"].clone());
        let url = d.url(&format!("/api/v1/tickets/{}/transition", t["id"]));
        let (status, t) = send(desk.post(url.clone()).json(&json!({"to": "acknowledged", "billable": cause}))).await;
        assert_eq!(status, 200, "{t}");
        classes.push((t["billing"]["class"].clone(), t["billing"]["reason"].clone()));
    }
    assert_ne!(ids[0], ids[1], "each call is a ticket of its own");
    assert_eq!(
        classes,
        [(json!("billable_at_cost"), json!("user_damage")), (json!("billable"), json!("misuse"))],
        "{classes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_sent_to_the_factory_is_timed_from_its_arrival_with_a_loaner_while_away() {
    // A contract whose phone fix takes 2 s and whose factory repairs take 3 s, with a loaner
    // while the unit is away (as 004 and 002 L108, quicker).
    let tiers = "{ acknowledge = \"1h\", remote_fix = \"2s\", factory = \"3s\" }";
    let (d, _sim) = crate::access::two_customers_edited("", &|k| {
        k.replace("title = \"k\"\n", "title = \"k\"\nloaner_at_factory = true\n")
            .replace("{ acknowledge = \"1h\" }", tiers)
    });
    let (desk, eng, customer) = (as_user(&token_of("dee")), as_user(&token_of("eve")), as_user(&token_of("cat")));
    let call = json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": "the cabinet is dark"});
    let (status, t) = send(desk.post(d.url("/api/v1/tickets")).json(&call)).await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].clone();
    let url = |tail: &str| d.url(&format!("/api/v1/tickets/{id}{tail}"));
    let stage = |t: &Value, clock: &str| -> Value {
        t["clock"]["stages"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["clock"] == json!(clock)).cloned())
            .unwrap_or(Value::Null)
    };
    let (_, t) = send(desk.get(url(""))).await;
    let remote = stage(&t, "remote_fix");
    assert_eq!(remote["started_at"], t["opened_at"], "{t}");
    // Nobody fixed it by phone or sent anyone: the 2 s run out, once.
    let timeline = || async {
        let (_, t) = send(desk.get(url(""))).await;
        t["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{}: {}", e["event"].as_str().unwrap(), e["note"].as_str().unwrap()))
            .collect::<Vec<String>>()
    };
    wait_for("the remote fix missed", 20, || async {
        timeline().await.iter().any(|e| e.starts_with("breach: remote-fix clock missed")).then_some(())
    })
    .await;
    // Sent to the factory with its return number; a reference needs that move, one line.
    let (status, e) =
        send(desk.post(url("/transition")).json(&json!({"to": "acknowledged", "factory_ref": "x"}))).await;
    assert_eq!(status, 400, "{e}");
    let (status, _) = send(desk.post(url("/transition")).json(&json!({"to": "acknowledged"}))).await;
    assert_eq!(status, 200);
    let bad = json!({"to": "at_factory", "factory_ref": "RMA\n7"});
    assert_eq!(send(desk.post(url("/transition")).json(&bad)).await.0, 400);
    let (status, e) = send(desk.post(url("/factory-arrival")).json(&json!({}))).await;
    assert_eq!(status, 409, "not at the factory yet: {e}");
    let (status, t) = send(
        desk.post(url("/transition"))
            .json(&json!({"to": "at_factory", "factory_ref": "RMA-2026-7", "note": "to the factory"})),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!((t["state"].clone(), t["factory"]["reference"].clone()), (json!("at_factory"), json!("RMA-2026-7")));
    assert_eq!(t["factory"]["arrived_at"], Value::Null);
    assert_eq!(stage(&t, "factory"), Value::Null, "no factory clock before the unit is there");
    // The loaner is owed while it is away, once.
    wait_for("the loaner owed", 20, || async {
        let (_, t) = send(desk.get(url(""))).await;
        (t["clock"]["loaner"] == json!(true)).then_some(())
    })
    .await;
    let owed: Vec<String> = timeline().await.into_iter().filter(|e| e.starts_with("loaner:")).collect();
    assert_eq!(owed.len(), 1, "{owed:?}");
    // Who records the arrival: not the customer, and not in the future.
    assert_eq!(send(customer.post(url("/factory-arrival")).json(&json!({}))).await.0, 403);
    let future = json!({"at": "2999-01-01T00:00:00+08:00"});
    assert_eq!(send(eng.post(url("/factory-arrival")).json(&future)).await.0, 400);
    let (status, t) = send(eng.post(url("/factory-arrival")).json(&json!({"note": "<b>receipt 88</b>"}))).await;
    assert_eq!(status, 200, "{t}");
    let factory = stage(&t, "factory");
    assert_eq!(factory["started_at"], t["factory"]["arrived_at"], "{t}");
    let (start, due) = (factory["started_at"].as_str().unwrap(), factory["due_by"].as_str().unwrap());
    let span =
        chrono::DateTime::parse_from_rfc3339(due).unwrap() - chrono::DateTime::parse_from_rfc3339(start).unwrap();
    assert_eq!(span, chrono::TimeDelta::seconds(3));
    assert_eq!(send(eng.post(url("/factory-arrival")).json(&json!({}))).await.0, 409, "once a trip");
    wait_for("the factory's clock missed", 20, || async {
        timeline().await.iter().any(|e| e.starts_with("breach: factory clock missed")).then_some(())
    })
    .await;
    // Back: the trip ends, the clock judged missed; the customer sees the trip and its clock.
    let (status, t) = send(desk.post(url("/transition")).json(&json!({"to": "dispatched"}))).await;
    assert_eq!(status, 200, "{t}");
    assert!(t["factory"]["back_at"].is_string(), "{t}");
    let (status, t) = send(customer.get(url(""))).await;
    assert_eq!(status, 200);
    assert_eq!(stage(&t, "factory")["met"], json!(false), "{t}");
    // The service levels count the stage clocks: the phone fix and the factory's repair missed.
    let tier = t["tier"].as_u64().unwrap() as usize;
    let (status, sla) = send(desk.get(d.url("/api/v1/sla?customer=cust-1"))).await;
    assert_eq!(status, 200, "{sla}");
    let row = &sla["tiers"][tier - 1];
    assert_eq!((&row["remote_fix"]["missed"], &row["factory"]["missed"]), (&json!(1), &json!(1)), "{sla}");
    assert_eq!(row["on_site_fix"]["missed"], json!(0), "{sla}");
    let arrived = timeline().await;
    assert!(
        arrived
            .iter()
            .any(|e| e.starts_with("factory: the unit reached the factory at ") && e.ends_with(": <b>receipt 88</b>")),
        "{arrived:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_parts_are_counted_taken_by_repairs_and_checked_against_the_reserve() {
    // Relays of model M (each unit holds 2); cust-1's contract keeps half its units' parts in
    // stock (004 L77 keeps 3 %), cust-2's keeps none: lit-a's 2 relays ask for 1.
    let spares = "\n[[spares]]\nmodel = \"M\"\npart = \"RELAY\"\nname = \"channel relay\"\nper_unit = 2\n";
    let (d, _sim) = crate::access::two_customers_edited("", &|k| {
        k.replace("title = \"k\"\n", "title = \"k\"\nspares_share = 0.5\n") + spares
    });
    let (max, mia, dee, eve, cat) = (
        as_user(&token_of("max")),
        as_user(&token_of("mia")),
        as_user(&token_of("dee")),
        as_user(&token_of("eve")),
        as_user(&token_of("cat")),
    );
    // None in stock at the start: the daemon says so.
    let log = d.log();
    assert!(log.contains("spare part below the contracts' reserve: 0 of RELAY in stock, 1 required"), "{log}");
    let line = |v: &Value| v.as_array().and_then(|a| a.iter().find(|l| l["part"] == json!("RELAY")).cloned()).unwrap();
    let (status, all) = send(max.get(d.url("/api/v1/spares"))).await;
    assert_eq!(status, 200, "{all}");
    let l = line(&all);
    assert_eq!(
        (&l["units"], &l["required"], &l["stock"], &l["short"], &l["to_order"]),
        (&json!(2), &json!(1), &json!(0), &json!(true), &json!(1)),
        "{l}"
    );
    assert_eq!(l["forecast_12m"], Value::Null, "a day's watch makes no forecast: {l}");
    // A manager of cust-1 counts cust-1's unit alone; a customer's user sees no stock.
    let (_, mine) = send(mia.get(d.url("/api/v1/spares"))).await;
    assert_eq!((&line(&mine)["units"], &line(&mine)["required"]), (&json!(1), &json!(1)));
    assert_eq!(send(cat.get(d.url("/api/v1/spares"))).await.0, 403);
    // A stocktake: by a manager, of a part in the catalogue, a quantity from 0.
    let count = |n: i64| json!({"quantity": n, "note": "shelf B2"});
    assert_eq!(send(dee.put(d.url("/api/v1/spares/M/RELAY")).json(&count(5))).await.0, 403);
    assert_eq!(send(max.put(d.url("/api/v1/spares/M/FUSE")).json(&count(5))).await.0, 404);
    assert_eq!(send(max.put(d.url("/api/v1/spares/M/RELAY")).json(&count(-1))).await.0, 400);
    let (status, l) = send(max.put(d.url("/api/v1/spares/M/RELAY")).json(&count(5))).await;
    assert_eq!(status, 200, "{l}");
    assert_eq!((&l["stock"], &l["short"]), (&json!(5), &json!(false)), "{l}");
    // A repair of lit-a takes 2 relays; written again with 1, one goes back; other parts are no spares.
    let call = json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": "channel 2 stays off"});
    let (_, t) = send(dee.post(d.url("/api/v1/tickets")).json(&call)).await;
    let url = d.url(&format!("/api/v1/tickets/{}/repair", t["id"]));
    let record = |n: u32| {
        json!({"cause": "relay welded", "parts": [
            {"number": "RELAY", "quantity": n, "stock": "central"},
            {"number": "FUSE", "quantity": 1, "stock": "van 3"}
        ]})
    };
    let (status, r) = send(eve.put(url.clone()).json(&record(2))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(line(&send(max.get(d.url("/api/v1/spares"))).await.1)["stock"], json!(3));
    assert_eq!(send(eve.put(url.clone()).json(&record(1))).await.0, 200);
    let l = line(&send(max.get(d.url("/api/v1/spares"))).await.1);
    assert_eq!((&l["stock"], &l["used"]), (&json!(4), &json!(1)), "{l}");
    // Received: 10 more.
    let (status, l) = send(max.post(d.url("/api/v1/spares/M/RELAY/receipts")).json(&json!({"quantity": 10}))).await;
    assert_eq!((status, &l["stock"]), (200, &json!(14)), "{l}");
    assert_eq!(send(max.post(d.url("/api/v1/spares/M/RELAY/receipts")).json(&json!({"quantity": 0}))).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_makes_the_repair_of_an_abnormally_short_lived_component_free() {
    // 001 ¶18: out of warranty (a day from 2025-06-01), within a 10-year normal life.
    let warranty =
        "warranty = { periods = { unit = \"1 day\" }, default = \"unit\", normal_life = { unit = \"10 years\" } }\n";
    let (d, _sim) = crate::access::two_customers_edited("", &|k| {
        k.replace("title = \"k\"\n", &format!("title = \"k\"\n{warranty}"))
    });
    let (dee, eve, max) = (as_user(&token_of("dee")), as_user(&token_of("eve")), as_user(&token_of("max")));
    let open = |device: &str| json!({"channel": "phone", "category": "fault", "device": device, "problem": "the driver burnt out again"});
    let (status, t) = send(dee.post(d.url("/api/v1/tickets")).json(&open("lit-a"))).await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(
        (&t["warranty"]["in_warranty"], &t["warranty"]["short_life_until"]),
        (&json!(false), &json!("2035-05-31")),
        "{t}"
    );
    assert_eq!(t["billing"]["class"], json!("at_cost"), "{t}");
    let url = d.url(&format!("/api/v1/tickets/{}/transition", t["id"]));
    let claim = |note: &str| json!({"to": "acknowledged", "short_life": true, "note": note});
    assert_eq!(send(eve.post(url.clone()).json(&claim("appraised"))).await.0, 403, "an engineer makes nothing free");
    assert_eq!(send(max.post(url.clone()).json(&claim(" "))).await.0, 400, "the appraisal is named");
    let both = json!({"to": "acknowledged", "short_life": true, "billable": "misuse", "note": "x"});
    assert_eq!(send(max.post(url.clone()).json(&both)).await.0, 400);
    let (status, t) = send(max.post(url).json(&claim("appraisal QT-2026-031: life 18 months against 10 years"))).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!((&t["billing"]["class"], &t["billing"]["reason"]), (&json!("free"), &json!("short_life")), "{t}");
    // cust-2's contract names no normal life: no claim.
    let (_, other) = send(dee.post(d.url("/api/v1/tickets")).json(
        &json!({"channel": "phone", "category": "fault", "customer": "cust-2", "device": "lit-b", "problem": "dark"}),
    ))
    .await;
    let url = d.url(&format!("/api/v1/tickets/{}/transition", other["id"]));
    let (status, e) = send(max.post(url).json(&claim("appraised"))).await;
    assert_eq!(status, 409, "{e} / {other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charged_repair_is_resolved_only_with_consent_before_the_work_and_a_receipt() {
    // 002 L400: the fee scale shown and agreed before the work, an invoice or receipt after.
    let keys = "repair_requires = [\"consent\", \"receipt\"]\nfee_scale = \"Parts at cost plus 80.00 an hour\"";
    let (d, _sim) = two_customers_keyed("", keys);
    let (desk, eve) = (as_user(&token_of("dee")), as_user(&token_of("eve")));
    let call = json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": "Lamp 5 flickers"});
    let (_, t) = send(desk.post(d.url("/api/v1/tickets")).json(&call)).await;
    assert_eq!(t["billing"]["class"], json!("at_cost"), "no warranty: charged at cost: {t}");
    let id = t["id"].as_i64().unwrap();
    let ticket = |p: &str| d.url(&format!("/api/v1/tickets/{id}{p}"));
    send(desk.post(ticket("/transition")).json(&json!({"to": "dispatched", "assignee": "eve"}))).await;
    let (status, _) = send(eve.post(ticket("/transition")).json(&json!({"to": "on_site"}))).await;
    assert_eq!(status, 200);
    let (status, e) = send(eve.post(ticket("/transition")).json(&json!({"to": "resolved"}))).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().ends_with("missing: consent, receipt"), "{e}");
    // A consent given after the customer signed the work off is no consent before the work.
    let record = |consent_at: &str| {
        json!({
            "cause": "loose driver", "labour_minutes": 30, "labour_cost": 4000,
            "consent": {"name": "Zhao Min", "quote": 4000, "at": consent_at},
            "confirmation": {"name": "Zhao Min", "at": "2026-12-08T10:00:00Z"},
            "receipt": "FP-2026-00417"
        })
    };
    let (status, e) = send(eve.put(ticket("/repair")).json(&record("2026-12-08T11:00:00Z"))).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("before the confirmation"), "{e}");
    let (status, r) = send(eve.put(ticket("/repair")).json(&record("2026-12-08T09:00:00Z"))).await;
    assert_eq!(status, 200, "{r}");
    let (status, t) = send(eve.post(ticket("/transition")).json(&json!({"to": "resolved"}))).await;
    assert_eq!(status, 200, "{t}");
    let kept = &t["repair"]["record"];
    assert_eq!((&kept["consent"]["quote"], &kept["receipt"]), (&json!(4000), &json!("FP-2026-00417")), "{t}");
    let lines: Vec<&str> = t["timeline"].as_array().unwrap().iter().filter_map(|e| e["note"].as_str()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Zhao Min agreed to 40.00 before the work") && l.contains("receipt FP-2026-00417")),
        "{lines:?}"
    );
    // A free repair needs neither.
    let free = json!({"channel": "phone", "category": "fault", "device": "lit-a", "problem": "Lamp 6 dark"});
    let (_, t) = send(desk.post(d.url("/api/v1/tickets")).json(&free)).await;
    let id = t["id"].as_i64().unwrap();
    let ticket = |p: &str| d.url(&format!("/api/v1/tickets/{id}{p}"));
    send(desk.post(ticket("/transition")).json(&json!({"to": "dispatched", "assignee": "eve"}))).await;
    send(eve.post(ticket("/transition")).json(&json!({"to": "on_site"}))).await;
    let (status, t) = send(
        eve.post(ticket("/transition"))
            .json(&json!({"to": "resolved", "repair": {"billing": "free", "cause": "reseated"}})),
    )
    .await;
    assert_eq!(status, 200, "{t}");
}
