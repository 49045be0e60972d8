//! Escalations that reach people, against the real daemon: a contract with clocks of seconds
//! escalates, breaches and owes a loaner while nobody answers, and each of those reaches the
//! people of its role once, through mail (the aiosmtpd sink), a signed webhook (an SMS
//! gateway), and WeCom and DingTalk group robots played by a receiver of this test's own that
//! checks DingTalk's signed URL and both robots' message formats as their documentation gives
//! them. A channel that cannot deliver leaves its notifications dead, listed, and retryable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::email::{Sink, header, python};
use super::{FAST_CONTRACT, all_online, one_ticket};
use crate::harness::*;

const DING_SECRET: &str = "SEC0123456789abcdef";
const WECOM_KEY: &str = "wecom-key-1";
const DING_TOKEN: &str = "ding-token-1";

#[derive(Default)]
struct Robots {
    /// Messages each robot took: (robot, body).
    got: Mutex<Vec<(String, Value)>>,
    /// Requests refused for a bad signature, key or format, with why.
    refused: Mutex<Vec<String>>,
    /// Answer 503 to this many DingTalk requests first.
    ding_down: AtomicUsize,
}

fn refuse(r: &Robots, why: String, code: i64) -> axum::response::Response {
    r.refused.lock().unwrap().push(why.clone());
    (StatusCode::OK, axum::Json(json!({"errcode": code, "errmsg": why}))).into_response()
}

/// DingTalk: `timestamp` (ms) within an hour of now and `sign` = base64(HMAC-SHA256(secret,
/// "timestamp\nsecret")), then `{"msgtype": "text", "text": {"content"}, "at": {"atMobiles"}}`.
async fn dingtalk(
    State(r): State<Arc<Robots>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    if r.ding_down.load(Ordering::SeqCst) > 0 {
        r.ding_down.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    }
    if q.get("access_token").map(String::as_str) != Some(DING_TOKEN) {
        return refuse(&r, "token missing or wrong".into(), 300001);
    }
    let (Some(ts), Some(sign)) = (q.get("timestamp"), q.get("sign")) else {
        return refuse(&r, "unsigned".into(), 310000);
    };
    #[allow(clippy::disallowed_methods)]
    let now = chrono::Utc::now().timestamp_millis();
    let Ok(t) = ts.parse::<i64>() else { return refuse(&r, "timestamp".into(), 310000) };
    if (now - t).abs() > 3_600_000 {
        return refuse(&r, "timestamp too far".into(), 310000);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(DING_SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}\n{DING_SECRET}").as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if *sign != want {
        return refuse(&r, format!("sign not match: {sign}"), 310000);
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return refuse(&r, "not JSON".into(), 40035) };
    let ok = v["msgtype"] == "text"
        && v["text"]["content"].as_str().is_some_and(|c| !c.is_empty() && c.len() <= 20_000)
        && v["at"]["atMobiles"].as_array().is_some_and(|a| a.iter().all(Value::is_string))
        && v["at"]["isAtAll"].is_boolean();
    if !ok {
        return refuse(&r, format!("bad message: {v}"), 40035);
    }
    r.got.lock().unwrap().push(("dingtalk".into(), v));
    axum::Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
}

/// WeCom: `key` in the query, `{"msgtype": "text", "text": {"content" (at most 2,048 bytes),
/// "mentioned_mobile_list"}}`.
async fn wecom(
    State(r): State<Arc<Robots>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    if q.get("key").map(String::as_str) != Some(WECOM_KEY) {
        return refuse(&r, "invalid webhook url".into(), 93000);
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return refuse(&r, "not JSON".into(), 40035) };
    let ok = v["msgtype"] == "text"
        && v["text"]["content"].as_str().is_some_and(|c| !c.is_empty() && c.len() <= 2048)
        && v["text"]["mentioned_mobile_list"].as_array().is_some_and(|a| a.iter().all(Value::is_string));
    if !ok {
        return refuse(&r, format!("bad message: {v}"), 40035);
    }
    r.got.lock().unwrap().push(("wecom".into(), v));
    axum::Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
}

async fn robots() -> (u16, Arc<Robots>) {
    let r = Arc::new(Robots::default());
    let app = axum::Router::new()
        .route("/robot/send", axum::routing::post(dingtalk))
        .route("/cgi-bin/webhook/send", axum::routing::post(wecom))
        .with_state(Arc::clone(&r));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_breaches_and_loaners_reach_the_people_of_their_roles_once_by_every_channel() {
    let Some(python) = python() else { return };
    let sink = Sink::start(&python, "plain", None);
    let (hook, gateway) = crate::webhook::start().await;
    let (robot_port, robots) = robots().await;
    robots.ding_down.store(1, Ordering::SeqCst);
    // A closed port: the pager never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    let fleet = ["lit-007:lighting"];
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let notify = format!(
        r#"
[outbox]
dead_after = "6s"

[[people]]
name = "Zhou Jie"
roles = ["duty engineer"]
phone = "13800000001"
email = "zhou@example.net"

[[people]]
name = "Qian Hui"
roles = ["service manager"]
email = "qian@example.net"
phone = "13800000002"

[notify]
breach = {{ to = ["service manager"], by = ["email", "page"] }}
loaner = {{ to = ["service manager", "duty engineer"], by = ["robot"] }}

[notify.channels.mail]
carries = ["email"]
email = {{ server = "smtp://127.0.0.1:{smtp}", from = "aftercare <aftercare@example.net>", timeout = "5s" }}

[notify.channels.sms]
carries = ["sms", "phone"]
webhook = {{ url = "http://{hook}/hook", secret = "{secret}", timeout = "5s" }}

[notify.channels.pager]
carries = ["page"]
webhook = {{ url = "http://127.0.0.1:{closed}/page", timeout = "2s" }}

[notify.channels.duty-group]
carries = ["sms", "robot"]
dingtalk = {{ url = "http://127.0.0.1:{robot_port}/robot/send?access_token={DING_TOKEN}", secret = "{DING_SECRET}" }}

[notify.channels.managers-group]
carries = ["robot"]
roles = ["service manager"]
wecom = {{ url = "http://127.0.0.1:{robot_port}/cgi-bin/webhook/send?key={WECOM_KEY}" }}
"#,
        smtp = sink.port,
        secret = crate::webhook::secret(),
    );
    let cfg = std::fs::read_to_string(&path).unwrap() + FAST_CONTRACT + &notify;
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::start(dir, &prefix, &broker);
    let mut sim = Sim::start(&d, &fleet);
    all_online(&d, 1).await;

    // Nobody answers: level 1 to the duty engineer by sms at 1 s, the acknowledge, on-site and
    // resolve clocks missed at 2, 3 and 4 s (to the service manager by email and pager), a loaner
    // owed (to both roles by the robots).
    sim.send("inject lit-007 leakage");
    let t = one_ticket(&d, "lit-007", "leakage", "a loaner owed", |t| t["clock"]["loaner"] == json!(true)).await;
    let id = t["id"].as_i64().unwrap();
    let delivered = wait_for("every notification but the pager's delivered", 40, || async {
        let all = get(&d.url("/api/v1/notifications?state=delivered")).await;
        (all.as_array()?.len() == 7).then_some(all)
    })
    .await;

    // The SMS gateway: the duty engineer's phone, signed (the receiver checks), once.
    let sms = gateway.events();
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(sms[0]["to"], json!({"name": "Zhou Jie", "address": "13800000001"}));
    assert_eq!(sms[0]["ticket"], json!(id));
    assert!(sms[0]["subject"].as_str().unwrap().contains("escalation level 1"), "{}", sms[0]);
    assert_eq!(gateway.bad_signatures.load(Ordering::SeqCst), 0);

    // Mail: three breaches to the service manager, each once.
    let mails = sink.mails.lock().unwrap().clone();
    let subjects: Vec<String> = mails.iter().map(|(_, m)| header(m, "Subject")).collect();
    assert_eq!(mails.len(), 3, "{subjects:?}");
    for what in ["acknowledge", "on-site", "resolve"] {
        let want = format!("[aftercare #{id}] {what} clock missed");
        assert_eq!(subjects.iter().filter(|s| s.starts_with(&want)).count(), 1, "{subjects:?}");
    }
    assert!(mails.iter().all(|(_, m)| header(m, "To").contains("qian@example.net")), "{mails:?}");

    // The robots: DingTalk took the escalation and the loaner (after one 503), signed; WeCom the
    // loaner, mentioning only its role's people. No robot refused anything.
    assert_eq!(*robots.refused.lock().unwrap(), Vec::<String>::new());
    let got = robots.got.lock().unwrap().clone();
    let ding: Vec<&Value> = got.iter().filter(|(r, _)| r == "dingtalk").map(|(_, v)| v).collect();
    let wecom: Vec<&Value> = got.iter().filter(|(r, _)| r == "wecom").map(|(_, v)| v).collect();
    assert_eq!((ding.len(), wecom.len()), (2, 1), "{got:?}");
    let loaner = ding.iter().find(|v| v["text"]["content"].as_str().unwrap().contains("loaner")).expect("the loaner");
    assert_eq!(loaner["at"]["atMobiles"], json!(["13800000001", "13800000002"]));
    assert!(loaner["text"]["content"].as_str().unwrap().contains("@13800000002"));
    assert_eq!(wecom[0]["text"]["mentioned_mobile_list"], json!(["13800000002"]));
    let retried =
        delivered.as_array().unwrap().iter().find(|n| n["channel"] == "duty-group" && n["attempts"] == json!(2));
    assert!(retried.is_some(), "the first DingTalk message was tried twice: {delivered:#}");

    // The pager never answers: its three notifications die, are listed, and can be sent again.
    let dead = wait_for("the pager's notifications dead", 40, || async {
        let all = get(&d.url("/api/v1/notifications?state=dead")).await;
        (all.as_array()?.len() == 3).then_some(all)
    })
    .await;
    let first = &dead[0];
    assert_eq!((&first["channel"], &first["recipient"]), (&json!("pager"), &json!("Qian Hui")));
    assert!(first["last_error"].as_str().unwrap().contains("notification webhook"), "{first}");
    let r = api().post(d.url(&format!("/api/v1/notifications/{}/retry", first["id"]))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let pending = get(&d.url("/api/v1/notifications?state=pending")).await;
    assert!(
        pending.as_array().unwrap().iter().any(|n| n["id"] == first["id"]) || {
            // It may have been tried (and died) again already.
            let n = get(&d.url("/api/v1/notifications?state=dead")).await;
            n.as_array().unwrap().iter().any(|n| {
                n["id"] == first["id"] && n["attempts"].as_i64().unwrap() > first["attempts"].as_i64().unwrap()
            })
        }
    );
    let r = api().post(d.url(&format!("/api/v1/notifications/{}/retry", delivered[0]["id"]))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "a delivered notification is not sent again");

    // Exactly once: a while later nobody heard anything twice.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(sink.mails.lock().unwrap().len(), 3);
    assert_eq!(gateway.ids().len(), 1);
    assert_eq!(robots.got.lock().unwrap().len(), 3);
}
