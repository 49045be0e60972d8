//! Identity and access against the real daemon: every route tried by every role and scope,
//! a customer's user never seeing another customer's data, logins, tokens and the audit log.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::*;

/// Each route the daemon has, with the permission this test expects it to need. A route the
/// daemon adds, or a permission it changes, fails the test until it is written here too.
const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/healthz", "open"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/api/v1/routes", "signed_in"),
    ("GET", "/api/v1/openapi.json", "open"),
    ("POST", "/api/v1/login", "open"),
    ("POST", "/api/v1/logout", "signed_in"),
    ("GET", "/api/v1/me", "signed_in"),
    ("GET", "/api/v1/users", "manage_users"),
    ("POST", "/api/v1/users", "manage_users"),
    ("POST", "/api/v1/users/{name}/disable", "manage_users"),
    ("POST", "/api/v1/users/{name}/enable", "manage_users"),
    ("POST", "/api/v1/users/{name}/password", "manage_users"),
    ("GET", "/api/v1/tokens", "signed_in"),
    ("POST", "/api/v1/tokens", "signed_in"),
    ("DELETE", "/api/v1/tokens/{id}", "signed_in"),
    ("GET", "/api/v1/audit", "read_audit"),
    ("GET", "/api/v1/tickets", "read_tickets"),
    ("POST", "/api/v1/tickets", "open_tickets"),
    ("GET", "/api/v1/tickets/{id}", "read_tickets"),
    ("POST", "/api/v1/tickets/{id}/transition", "act_on_tickets"),
    ("POST", "/api/v1/tickets/{id}/assign", "assign"),
    ("POST", "/api/v1/tickets/{id}/comments", "comment"),
    ("POST", "/api/v1/tickets/{id}/factory-arrival", "act_on_tickets"),
    ("PUT", "/api/v1/tickets/{id}/repair", "repair"),
    ("POST", "/api/v1/tickets/{id}/attachments", "repair"),
    ("GET", "/api/v1/tickets/{id}/attachments/{attachment}", "read_tickets"),
    ("POST", "/api/v1/work-orders/{id}/assign", "assign"),
    ("GET", "/api/v1/me/work", "signed_in"),
    ("GET", "/api/v1/complaints", "read_tickets"),
    ("POST", "/api/v1/tickets/{id}/survey", "contacts"),
    ("POST", "/api/v1/tickets/{id}/satisfaction", "contacts"),
    ("GET", "/api/v1/surveys/{token}", "open"),
    ("POST", "/api/v1/surveys", "open"),
    ("GET", "/api/v1/satisfaction", "read_sla"),
    ("POST", "/api/v1/contacts", "contacts"),
    ("GET", "/api/v1/contacts", "contacts"),
    ("POST", "/api/v1/contacts/{id}/answer", "contacts"),
    ("GET", "/api/v1/devices", "read_devices"),
    ("GET", "/api/v1/devices/{id}", "read_devices"),
    ("GET", "/api/v1/devices/{id}/history", "read_devices"),
    ("GET", "/api/v1/devices/{id}/events", "read_devices"),
    ("GET", "/api/v1/contracts", "read_contracts"),
    ("GET", "/api/v1/sla", "read_sla"),
    ("GET", "/api/v1/spares", "read_spares"),
    ("PUT", "/api/v1/spares/{model}/{part}", "count_spares"),
    ("POST", "/api/v1/spares/{model}/{part}/receipts", "count_spares"),
    ("GET", "/api/v1/reports", "read_reports"),
    ("GET", "/api/v1/reports/kept", "read_reports"),
    ("GET", "/api/v1/reports/kept/{id}", "read_reports"),
    ("GET", "/api/v1/work-orders", "read_work_orders"),
    ("GET", "/api/v1/work-orders/{id}", "read_work_orders"),
    ("POST", "/api/v1/work-orders/{id}/start", "do_visits"),
    ("POST", "/api/v1/work-orders/{id}/complete", "do_visits"),
    ("POST", "/api/v1/work-orders/{id}/attachments", "do_visits"),
    ("GET", "/api/v1/work-orders/{id}/attachments/{attachment}", "read_work_orders"),
    ("GET", "/api/v1/outbox", "read_outbox"),
    ("POST", "/api/v1/outbox/{id}/retry", "retry_outbox"),
    ("GET", "/api/v1/notifications", "read_outbox"),
    ("POST", "/api/v1/notifications/{id}/retry", "retry_outbox"),
    ("POST", "/api/v1/helpdesks/{name}/events", "helpdesk"),
    // The console's pages and forms, through the same guard.
    ("GET", "/", "signed_in"),
    ("GET", "/login", "open"),
    ("POST", "/login", "open"),
    ("POST", "/logout", "signed_in"),
    ("GET", "/lang", "open"),
    ("GET", "/tickets", "read_tickets"),
    ("GET", "/tickets/new", "open_tickets"),
    ("POST", "/tickets/new", "open_tickets"),
    ("GET", "/tickets/{id}", "read_tickets"),
    ("POST", "/tickets/{id}/act", "act_on_tickets"),
    ("POST", "/tickets/{id}/comment", "comment"),
    ("POST", "/tickets/{id}/factory-arrival", "act_on_tickets"),
    ("GET", "/spares", "read_spares"),
    ("POST", "/spares/{model}/{part}", "count_spares"),
    ("POST", "/tickets/{id}/repair", "repair"),
    ("GET", "/reports", "read_reports"),
    ("GET", "/visits", "read_work_orders"),
    ("GET", "/live", "read_tickets"),
    ("GET", "/work", "signed_in"),
    ("GET", "/fleet", "read_devices"),
    ("GET", "/outbox", "read_outbox"),
    ("GET", "/sla", "read_sla"),
    ("POST", "/outbox/{id}/retry", "retry_outbox"),
    ("POST", "/notifications/{id}/retry", "retry_outbox"),
    ("GET", "/devices/{id}", "read_devices"),
    ("GET", "/visits/{id}", "read_work_orders"),
    ("POST", "/visits/{id}/start", "do_visits"),
    ("POST", "/visits/{id}/complete", "do_visits"),
    ("GET", "/static/app.js", "open"),
    ("GET", "/static/app.css", "open"),
];

/// A console page (HTML for people) rather than a route of the JSON API.
fn is_page(path: &str) -> bool {
    !path.starts_with("/api/") && !matches!(path, "/healthz" | "/metrics")
}

/// Who holds each permission: README.md's table of roles, written out independently of the code.
fn holders(perm: &str) -> &'static [&'static str] {
    const ALL: &[&str] = &["admin", "manager", "desk", "engineer", "customer", "integration"];
    match perm {
        "open" | "signed_in" | "helpdesk" | "open_tickets" | "comment" => ALL,
        "assign" | "contacts" => &["admin", "manager", "desk", "integration"],
        "manage_users" | "read_audit" => &["admin"],
        "metrics" => &["admin", "manager", "integration"],
        "read_tickets" | "read_devices" | "read_contracts" | "read_work_orders" => ALL,
        "act_on_tickets" => &["admin", "manager", "desk", "engineer", "integration"],
        "read_sla" => &["admin", "manager", "desk", "customer", "integration"],
        "read_reports" => &["admin", "manager", "customer", "integration"],
        "do_visits" => &["admin", "manager", "engineer"],
        "repair" => &["admin", "manager", "engineer", "integration"],
        "read_outbox" => &["admin", "manager", "integration"],
        "retry_outbox" => &["admin", "manager"],
        "read_spares" => &["admin", "manager", "desk", "engineer", "integration"],
        "count_spares" => &["admin", "manager", "integration"],
        other => panic!("no row for permission `{other}`"),
    }
}

/// A user of each role: (name, role, customers).
const USERS: &[(&str, &str, &[&str])] = &[
    ("ann", "admin", &[]),
    ("max", "manager", &[]),
    ("mia", "manager", &["cust-1"]),
    ("dee", "desk", &[]),
    ("eve", "engineer", &["cust-1"]),
    ("cat", "customer", &["cust-1"]),
    ("bot", "integration", &[]),
];

pub(crate) fn token_of(name: &str) -> String {
    format!("{}-{name}", *TOKEN)
}

/// A daemon with customers cust-1 (lit-a, site-a) and cust-2 (lit-b, site-b), each with a
/// contract and a monthly inspection, a ticket each, and a user of every role.
async fn two_customers() -> (Daemon, Sim, Value) {
    two_customers_with("").await
}

/// [`two_customers`], with more `[http]` keys.
pub(crate) async fn two_customers_with(http: &str) -> (Daemon, Sim, Value) {
    let (d, mut sim) = two_customers_quiet(http);
    sim.send("inject lit-a leakage");
    sim.send("inject lit-b leakage");
    let tickets = wait_for("a ticket of each customer", 40, || async {
        let t = get(&d.url("/api/v1/tickets?code=leakage")).await;
        let mine = |c: &str| t.as_array()?.iter().find(|x| x["customer"] == json!(c)).cloned();
        Some((mine("cust-1")?, mine("cust-2")?))
    })
    .await;
    let orders = wait_for("a work order of each customer", 30, || async {
        let w = get(&d.url("/api/v1/work-orders")).await;
        let mine = |c: &str| w.as_array()?.iter().find(|x| x["customer"] == json!(c)).cloned();
        Some((mine("cust-1")?, mine("cust-2")?))
    })
    .await;
    let ids = json!({
        "ticket": [tickets.0["id"], tickets.1["id"]],
        "work_order": [orders.0["id"], orders.1["id"]],
    });
    (d, sim, ids)
}

/// The daemon and devices of [`two_customers`] (with more `[http]` keys), no fault yet.
pub(crate) fn two_customers_quiet(http: &str) -> (Daemon, Sim) {
    two_customers_keyed(http, "")
}

/// [`two_customers_quiet`], with more keys in cust-1's contract `k`.
pub(crate) fn two_customers_keyed(http: &str, keys: &str) -> (Daemon, Sim) {
    two_customers_edited(http, &|k| k.replace("title = \"k\"\n", &format!("title = \"k\"\n{keys}\n")))
}

/// [`two_customers_quiet`], with cust-1's contract `k` as `edit` makes it.
pub(crate) fn two_customers_edited(http: &str, edit: &dyn Fn(&str) -> String) -> (Daemon, Sim) {
    let broker = Broker::Embedded;
    let fleet = ["lit-a:lighting"];
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let (k, _) = monthly_inspection("");
    let k2 = k.replace("contracts.k", "contracts.k2").replace("cust-1", "cust-2");
    let k1 = edit(&k);
    let cfg = std::fs::read_to_string(&path).unwrap().replace("[http]\n", &format!("[http]\n{http}\n"))
        + "[[sites]]\nid = \"site-b\"\nutc_offset = \"+08:00\"\n[[customers]]\nid = \"cust-2\"\n\
           [[devices]]\nid = \"lit-b\"\nkind = \"lighting\"\nsite = \"site-b\"\ncustomer = \"cust-2\"\n\
           model = \"M\"\nserial = \"S-b\"\naccepted_on = \"2025-06-01\"\n"
        + &k1
        + &k2;
    std::fs::write(&path, cfg).unwrap();
    for (name, role, customers) in USERS {
        provision(&path, name, role, customers, &token_of(name));
    }
    let d = Daemon::start(dir, &prefix, &broker);
    let sim = Sim::start(&d, &["lit-a:lighting", "lit-b:lighting:site-b"]);
    (d, sim)
}

/// `path` with its `{…}` filled for cust-1's objects.
fn fill(path: &str, ids: &Value) -> String {
    let id = if path.contains("tickets") {
        ids["ticket"][0].to_string()
    } else if path.contains("work-orders") || path.contains("visits") {
        ids["work_order"][0].to_string()
    } else if path.contains("devices") {
        "lit-a".into()
    } else if path.contains("users") {
        "nobody".into()
    } else {
        "999999".into()
    };
    path.replace("{id}", &id).replace("{name}", &id)
}

async fn call(client: &reqwest::Client, method: &str, url: &str) -> u16 {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(m, url);
    if method == "POST" {
        req = req.json(&json!({}));
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_its_permission_says() {
    let (d, _sim, ids) = two_customers().await;
    // The daemon's own table of routes: each one has a permission, the one expected here.
    let table = get(&d.url("/api/v1/routes")).await;
    let mut served: Vec<(String, String, String)> = table
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().into(),
                r["path"].as_str().unwrap().into(),
                r["perm"].as_str().unwrap().into(),
            )
        })
        .collect();
    served.sort();
    let mut expected: Vec<(String, String, String)> =
        ROUTES.iter().map(|(m, p, q)| (m.to_string(), p.to_string(), q.to_string())).collect();
    expected.sort();
    assert_eq!(served, expected, "the daemon's routes and their permissions");

    let mut seen: BTreeMap<String, u16> = BTreeMap::new();
    for (method, path, perm) in ROUTES {
        let url = d.url(&fill(path, &ids));
        // Nobody signed in: only what is public answers; a page sends people to log in.
        let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let status = call(&no_redirect, method, &url).await;
        let public = matches!(*perm, "open" | "helpdesk");
        if public {
            assert_ne!(status, 403, "{method} {path} without a token");
        } else if is_page(path) {
            assert_eq!(status, 303, "{method} {path} without a session");
        } else {
            assert_eq!(status, 401, "{method} {path} without a token");
        }
        for (name, role, _) in USERS {
            // Logging out ends the session; the live stream never ends on its own.
            if (*method == "POST" && path.ends_with("/logout")) || *path == "/live" {
                continue;
            }
            let status = call(&as_user(&token_of(name)), method, &url).await;
            seen.insert(format!("{role}/{name} {method} {path}"), status);
            if holders(perm).contains(role) {
                assert!(!matches!(status, 401 | 403), "{name} ({role}) {method} {path}: {status}");
            } else {
                assert_eq!(status, 403, "{name} ({role}) {method} {path}");
            }
        }
    }
    assert!(seen.len() > 150, "{}", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_user_never_sees_another_customers_data() {
    let (d, _sim, ids) = two_customers().await;
    let (t2, w2) = (&ids["ticket"][1], &ids["work_order"][1]);
    for name in ["cat", "mia", "eve"] {
        let c = as_user(&token_of(name));
        let status = |path: String| {
            let (c, url) = (c.clone(), d.url(&path));
            async move { c.get(url).send().await.unwrap().status().as_u16() }
        };
        // Another customer's objects do not exist for it: 404, not 403.
        for path in [
            format!("/api/v1/tickets/{t2}"),
            format!("/api/v1/work-orders/{w2}"),
            "/api/v1/devices/lit-b".into(),
            "/api/v1/devices/lit-b/history".into(),
            "/api/v1/devices/lit-b/events".into(),
            "/api/v1/work-orders?customer=cust-2".into(),
        ] {
            assert_eq!(status(path.clone()).await, 404, "{name} GET {path}");
        }
        for path in
            ["/api/v1/sla?customer=cust-2", "/api/v1/reports?customer=cust-2", "/api/v1/reports/kept?customer=cust-2"]
        {
            // Another customer's SLA and reports do not exist for one who reads reports or SLA;
            // the engineer reads neither.
            let perm = if path.contains("/sla") { "read_sla" } else { "read_reports" };
            let role = USERS.iter().find(|(n, _, _)| *n == name).map(|(_, r, _)| *r).unwrap();
            let want = if holders(perm).contains(&role) { 404 } else { 403 };
            assert_eq!(status(path.into()).await, want, "{name} GET {path}");
        }
        let r = c.post(d.url(&format!("/api/v1/tickets/{t2}/transition"))).json(&json!({"to": "acknowledged"})).send();
        let s = r.await.unwrap().status().as_u16();
        assert!(s == 404 || (name == "cat" && s == 403), "{name} moves cust-2's ticket: {s}");
        // Lists hold its own customer's only.
        for path in ["/api/v1/tickets", "/api/v1/devices", "/api/v1/contracts", "/api/v1/work-orders"] {
            let v: Value = c.get(d.url(path)).send().await.unwrap().json().await.unwrap();
            let items = v.as_array().unwrap_or_else(|| panic!("{name} {path}: {v}"));
            assert!(!items.is_empty(), "{name} {path} is empty");
            assert!(items.iter().all(|x| x["customer"] == json!("cust-1")), "{name} {path}: {v:#}");
        }
        // The outbox: the manager reads its customer's rows only; the others may not read it.
        let s = status("/api/v1/outbox?state=pending".into()).await;
        assert_eq!(s, if name == "mia" { 200 } else { 403 }, "{name} reads the outbox");
    }
    // An unscoped manager sees both.
    let all: Value =
        as_user(&token_of("max")).get(d.url("/api/v1/tickets")).send().await.unwrap().json().await.unwrap();
    assert!(all.as_array().unwrap().iter().any(|t| t["customer"] == json!("cust-2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_log_in_tokens_expire_and_every_change_is_audited() {
    let (d, _sim, ids) = two_customers().await;
    let admin = as_user(&token_of("ann"));
    // An admin adds a person with a password; she logs in and gets a session cookie.
    let r = admin
        .post(d.url("/api/v1/users"))
        .json(&json!({"name": "zoe", "role": "desk", "password": "a long enough secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    let login = |password: &str| {
        let body = json!({"user": "zoe", "password": password});
        let url = d.url("/api/v1/login");
        async move { http().post(url).json(&body).send().await.unwrap() }
    };
    let r = login("a long enough secret").await;
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "aftercare_session=acs_"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();
    let me: Value =
        http().get(d.url("/api/v1/me")).header("cookie", &session).send().await.unwrap().json().await.unwrap();
    assert_eq!((me["user"].as_str(), me["role"].as_str()), (Some("zoe"), Some("desk")));
    // A change by cookie from another site's page is refused; from our own origin it is made.
    let url = d.url(&format!("/api/v1/tickets/{}/transition", ids["ticket"][0]));
    let r = http()
        .post(&url)
        .header("cookie", &session)
        .header("origin", "https://evil.example")
        .json(&json!({"to": "acknowledged"}));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 403);
    let host = d.http.trim_start_matches("http://").to_string();
    let r = http()
        .post(&url)
        .header("cookie", &session)
        .header("origin", format!("http://{host}"))
        .json(&json!({"to": "acknowledged"}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    // Logging out ends the session.
    let r = http().post(d.url("/api/v1/logout")).header("cookie", &session).header("origin", format!("http://{host}"));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 200);
    let r = http().get(d.url("/api/v1/me")).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Wrong passwords: refused, then rate-limited.
    let mut last = 0;
    for _ in 0..7 {
        last = login("not her password").await.status().as_u16();
    }
    assert_eq!(last, 429);
    // A token made through the API works until it is revoked; its secret is shown once.
    let r = admin.post(d.url("/api/v1/tokens")).json(&json!({"user": "zoe", "name": "script", "expires": "30d"}));
    let made: Value = r.send().await.unwrap().json().await.unwrap();
    let secret = made["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("act_"), "{made}");
    assert_eq!(as_user(&secret).get(d.url("/api/v1/me")).send().await.unwrap().status().as_u16(), 200);
    let listed = admin.get(d.url("/api/v1/tokens?user=zoe")).send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains(&secret[4..]), "a listing never shows a secret");
    let r = admin.delete(d.url(&format!("/api/v1/tokens/{}", made["id"]))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(as_user(&secret).get(d.url("/api/v1/me")).send().await.unwrap().status().as_u16(), 401);
    // Nobody disables themselves (so an admin always remains).
    let r = admin.post(d.url("/api/v1/users/ann/disable")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    // A token has a name.
    let r = admin.post(d.url("/api/v1/tokens")).json(&json!({"name": " "})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Disabling a user stops its tokens at once.
    let r = admin.post(d.url("/api/v1/users/bot/disable")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(as_user(&token_of("bot")).get(d.url("/api/v1/me")).send().await.unwrap().status().as_u16(), 401);
    // Enabling it again brings none of its old tokens back.
    let r = admin.post(d.url("/api/v1/users/bot/enable")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(as_user(&token_of("bot")).get(d.url("/api/v1/me")).send().await.unwrap().status().as_u16(), 401);
    // The audit log names who did each change, from where, with which token.
    let log: Value = admin.get(d.url("/api/v1/audit?limit=100")).send().await.unwrap().json().await.unwrap();
    let lines = log.as_array().unwrap();
    let has = |actor: &str, path: &str, status: u64| {
        lines.iter().any(|l| {
            l["actor"] == json!(actor)
                && l["path"].as_str().unwrap_or("").ends_with(path)
                && l["status"] == json!(status)
        })
    };
    assert!(has("zoe", "/transition", 200), "{log:#}");
    assert!(has("zoe", "/login", 401), "a failed login is audited");
    assert!(has("ann", "/api/v1/users", 201));
    assert!(has("ann", "/disable", 200));
    assert!(lines.iter().all(|l| l["address"] == json!("127.0.0.1")));
    assert!(lines.iter().filter(|l| l["actor"] == json!("ann")).all(|l| l["token_id"].is_i64()));
    // Nobody but an admin reads it.
    let r = as_user(&token_of("max")).get(d.url("/api/v1/audit")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // The daemon's log holds no secret.
    let text = d.log();
    for s in [secret.as_str(), &token_of("ann"), "a long enough secret", session.as_str()] {
        assert!(!text.contains(s), "a secret in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_and_lets_go_of_idle_connections() {
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&["lit-c:lighting"], "30s", "10m", &broker);
    let (cert, key) = certificate(dir.path());
    let path = dir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path).unwrap().replace(
        "[http]\nlisten = \"127.0.0.1:0\"\n",
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nmax_connections = 16\nheader_timeout = \"2s\"\nhosts = [\"localhost\"]\n\
             tls = {{ cert = {:?}, key = {:?} }}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    std::fs::write(&path, cfg).unwrap();
    provision(&path, "zoe", "desk", &[], &token_of("zoe"));
    let (ok, _, err) = cli(&path, &["user", "passwd", "zoe"], "a long enough secret\n");
    assert!(ok, "{err}");
    let d = Daemon::start(dir, &prefix, &broker);
    let port = d.http.rsplit(':').next().unwrap().to_string();
    let https = |p: &str| format!("https://localhost:{port}{p}");
    let pem = std::fs::read(&cert).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let r = client.get(https("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A name that is not ours (a DNS record an attacker points at us) gets nothing.
    let r = client.get(https("/healthz")).header("host", "evil.example").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 421);
    // Over TLS the session cookie is Secure.
    let r = client.post(https("/api/v1/login")).json(&json!({"user": "zoe", "password": "a long enough secret"}));
    let r = r.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
    // Plain HTTP gets no answer from a TLS port.
    let plain = http().get(d.url("/healthz")).send().await;
    assert!(!plain.map(|r| r.status().is_success()).unwrap_or(false));

    // Clients that open connections and say nothing hold at most the cap, and only until
    // their header deadline: the daemon's file descriptors stay bounded, and it answers again.
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", d.pid())).unwrap().count();
    let before = fds();
    let addr: std::net::SocketAddr = d.http.trim_start_matches("http://").parse().unwrap();
    let idle: Vec<std::net::TcpStream> = (0..60).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let during = fds();
    assert!(during <= before + 16 + 4, "{before} file descriptors before, {during} with 60 idle clients");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let r = client.get(https("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "answers again once the idle ones are let go");
    assert!(fds() <= before + 4, "the idle connections were closed");
    drop(idle);
}

/// A secret no output may show: `CANARY` and where it was planted.
fn canary(field: &str) -> String {
    format!("CANARY-{field}-7f3a9c")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_an_answer_or_check_config() {
    use base64::Engine as _;
    let broker = Broker::Embedded;
    let fleet = ["lit-s:lighting", "lit-r:lighting", "lit-m:lighting", "lit-e:lighting"];
    let (dir, prefix) = Daemon::setup(&fleet, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    std::fs::write(dir.path().join("redmine.key"), format!("{}\n", canary("redmine-file"))).unwrap();
    let hook_key = base64::engine::general_purpose::STANDARD.encode(canary("webhook-key"));
    // Every secret field holds a canary, inline, in the environment or in a file; the
    // helpdesks are unreachable, so their errors are logged and kept in the outbox.
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[[customers]]\nid = \"cust-1\"\n", "[[customers]]\nid = \"cust-1\"\nhelpdesk = \"hook\"\n")
        .replace(
            "id = \"lit-r\"\nkind = \"lighting\"\nsite = \"site-a\"\ncustomer = \"cust-1\"",
            "id = \"lit-r\"\nkind = \"lighting\"\nsite = \"site-a\"\ncustomer = \"c-rt\"",
        )
        .replace(
            "id = \"lit-m\"\nkind = \"lighting\"\nsite = \"site-a\"\ncustomer = \"cust-1\"",
            "id = \"lit-m\"\nkind = \"lighting\"\nsite = \"site-a\"\ncustomer = \"c-rm\"",
        )
        .replace(
            "id = \"lit-e\"\nkind = \"lighting\"\nsite = \"site-a\"\ncustomer = \"cust-1\"",
            "id = \"lit-e\"\nkind = \"lighting\"\nsite = \"site-a\"\ncustomer = \"c-mail\"",
        )
        + &format!(
            "[[customers]]\nid = \"c-rt\"\nhelpdesk = \"rt\"\n[[customers]]\nid = \"c-rm\"\nhelpdesk = \"rm\"\n\
             [[customers]]\nid = \"c-mail\"\nhelpdesk = \"mail\"\n\
             [helpdesks.hook]\nwebhook = {{ url = \"http://user:{}@127.0.0.1:9/hook\", secret = \"whsec_{hook_key}\", timeout = \"1s\" }}\n\
             [helpdesks.rt]\nrequest_tracker = {{ url = \"http://rt.invalid/rt\", token = {{ env = \"IT_RT_TOKEN\" }}, timeout = \"1s\" }}\n\
             [helpdesks.rm]\nredmine = {{ url = \"http://127.0.0.1:9\", api_key = {{ file = \"redmine.key\" }}, project = \"p\", timeout = \"1s\" }}\n\
             [helpdesks.mail]\nemail = {{ server = \"smtp://127.0.0.1:9\", username = \"u\", password = \"{}\", from = \"a@b.c\", to = \"d@e.f\", timeout = \"1s\", secret = \"whsec_{hook_key}\" }}\n\
             [history.influxdb]\nurl = \"http://127.0.0.1:9\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"{}\"\ntimeout = \"1s\"\n",
            canary("webhook-url"),
            canary("smtp-password"),
            canary("influx-token"),
        );
    std::fs::write(&path, &cfg).unwrap();
    let env = [("IT_RT_TOKEN", canary("rt-env"))];
    let secrets: Vec<String> =
        ["webhook-url", "rt-env", "redmine-file", "smtp-password", "influx-token", "webhook-key"]
            .iter()
            .map(|f| canary(f))
            .chain([hook_key.clone()])
            .collect();
    let clean = |what: &str, text: &str| {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{what} shows a secret ({s}):\n{text}");
        }
    };

    // check-config: valid, warns of the secrets that would cross the network in clear.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aftercare"))
        .args(["check-config"])
        .arg(&path)
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("helpdesk mail") && stderr.contains("helpdesk rt"), "{stderr}");
    clean("check-config", &format!("{stdout}{stderr}"));
    // A secret whose variable is unset is a problem that names the variable, not a value.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aftercare")).args(["check-config"]).arg(&path).output();
    let text = String::from_utf8_lossy(&out.unwrap().stderr).to_string();
    assert!(text.contains("`IT_RT_TOKEN` is not set"), "{text}");

    // The daemon at trace level, a ticket for every helpdesk, deliveries failing.
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::start_logging(dir, &prefix, &broker, "trace", &envs);
    let mut sim = Sim::start(&d, &fleet);
    for dev in ["lit-s", "lit-r", "lit-m", "lit-e"] {
        sim.send(&format!("inject {dev} leakage"));
    }
    let failed = wait_for("a failed delivery to each helpdesk", 40, || async {
        let rows = get(&d.url("/api/v1/outbox?state=pending")).await;
        let failed: Vec<Value> = rows.as_array()?.iter().filter(|r| r["last_error"].is_string()).cloned().collect();
        (failed.len() >= 4).then_some(failed)
    })
    .await;
    assert!(failed.iter().any(|r| r["last_error"].as_str().unwrap().contains("127.0.0.1:9")), "{failed:?}");
    for path in ["/api/v1/outbox?state=pending", "/api/v1/contracts", "/api/v1/tickets", "/healthz", "/api/v1/users"] {
        let text = api().get(d.url(path)).send().await.unwrap().text().await.unwrap();
        clean(path, &text);
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let log = d.log();
    assert!(log.contains("TRACE") || log.contains("trace"), "the log is at trace level");
    clean("the daemon's log", &log);
}

/// Now, as the test's devices tell it.
#[allow(clippy::disallowed_methods)]
fn ts_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Runs `mosquitto_pub` or `mosquitto_sub` (the spoofing client) against `d`'s broker.
fn mosquitto(tool: &str, d: &Daemon, args: &[&str]) -> (bool, String) {
    let (host, port) = d.mqtt.rsplit_once(':').unwrap();
    let out = std::process::Command::new(tool)
        .args(["-h", host, "-p", port, "-V", "mqttv311"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (Debian's mosquitto-clients): {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_lets_a_device_publish_under_its_own_topics_only() {
    let broker = Broker::Embedded;
    let fleet = ["rec-x:recorder", "rec-y:recorder"];
    let (dir, prefix) = Daemon::setup(&fleet, "1h", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("allow_anonymous = true\n", "monitors = [{ name = \"dash\", password = \"dash-secret\" }]\n")
        .replace("serial = \"S-rec-x\"\n", "serial = \"S-rec-x\"\nmqtt_password = \"x-device-secret\"\n")
        .replace("serial = \"S-rec-y\"\n", "serial = \"S-rec-y\"\nmqtt_password = { env = \"IT_REC_Y\" }\n");
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::start_logging(dir, &prefix, &broker, "info,rumqttd=warn", &[("IT_REC_Y", "y-device-secret")]);
    let topic = |dev: &str| format!("{prefix}/site-a/{dev}/event");
    let raise = r#"{"code": "SD_ERR", "active": true}"#;
    // Anonymous, or with a wrong password: refused at CONNECT.
    let (ok, out) = mosquitto("mosquitto_pub", &d, &["-t", &topic("rec-x"), "-m", raise]);
    assert!(!ok && out.to_lowercase().contains("not authori"), "{out}");
    let (ok, out) = mosquitto("mosquitto_pub", &d, &["-u", "rec-x", "-P", "guess", "-t", &topic("rec-x"), "-m", raise]);
    assert!(!ok, "{out}");
    // rec-y may not raise rec-x's fault, nor read anyone's telemetry.
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        &d,
        &["-u", "rec-y", "-P", "y-device-secret", "-q", "1", "-t", &topic("rec-x"), "-m", raise],
    );
    assert!(ok, "the publish is taken and dropped, as Mosquitto does: {out}");
    let (_, out) =
        mosquitto("mosquitto_sub", &d, &["-u", "rec-y", "-P", "y-device-secret", "-t", "#", "-C", "1", "-W", "3"]);
    assert!(out.contains("denied"), "the subscription to # is refused: {out}");
    // rec-x raises its own.
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        &d,
        &["-u", "rec-x", "-P", "x-device-secret", "-q", "1", "-t", &topic("rec-x"), "-m", raise],
    );
    assert!(ok, "{out}");
    // The rule holds for 30 s of device time: a second message, 40 s later by its clock.
    let later = r#"{"code": "SD_ERR", "active": true, "ts": "2099-01-01T00:00:00Z"}"#;
    let later = later.replace("2099-01-01T00:00:00Z", &(ts_now() + chrono::TimeDelta::seconds(40)).to_rfc3339());
    let earlier = format!(r#"{{"code": "SD_ERR", "active": true, "ts": "{}"}}"#, ts_now().to_rfc3339());
    for m in [&earlier, &later] {
        let (ok, out) = mosquitto(
            "mosquitto_pub",
            &d,
            &["-u", "rec-x", "-P", "x-device-secret", "-q", "1", "-t", &topic("rec-x"), "-m", m],
        );
        assert!(ok, "{out}");
    }
    let t = wait_for("rec-x's own fault", 20, || async {
        let t = get(&d.url("/api/v1/tickets?device=rec-x")).await;
        t.as_array()?.first().cloned()
    })
    .await;
    assert_eq!(t["code"], json!("storage_failure"));
    assert_eq!(t["occurrences"], json!(1), "rec-y's spoofed raise made nothing: {t:#}");
    assert!(get(&d.url("/api/v1/tickets?device=rec-y")).await.as_array().unwrap().is_empty());
    // A monitor reads every device's topics, and publishes nothing.
    let (host, port) = d.mqtt.rsplit_once(':').unwrap();
    let watch = std::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-V",
            "mqttv311",
            "-u",
            "dash",
            "-P",
            "dash-secret",
            "-C",
            "1",
            "-W",
            "10",
            "-v",
        ])
        .args(["-t", &format!("{prefix}/#")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let m = r#"{"metrics": {"battery_pct": 80}}"#;
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        &d,
        &["-u", "rec-x", "-P", "x-device-secret", "-t", &format!("{prefix}/site-a/rec-x/telemetry"), "-m", m],
    );
    assert!(ok, "{out}");
    let seen = watch.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&seen.stdout).contains("rec-x/telemetry"), "the monitor sees rec-x's telemetry");
    let before = metric(&d, "aftercare_messages_received_total").await;
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        &d,
        &["-u", "dash", "-P", "dash-secret", "-q", "1", "-t", &topic("rec-y"), "-m", raise],
    );
    assert!(ok, "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(metric(&d, "aftercare_messages_received_total").await, before, "a monitor's publish is dropped");
    let refused = |reason: &str| format!("aftercare_broker_refused_total{{reason=\"{reason}\"}}");
    assert!(metric(&d, &refused("acl")).await >= 1.0);
    assert!(metric(&d, &refused("anonymous")).await >= 1.0);
    assert!(metric(&d, &refused("password")).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_auth_writes_a_password_file_and_acl_that_mosquitto_enforces() {
    // Mosquitto with the files `aftercare mosquitto-auth` writes, and the daemon as its client.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let broker = Broker::External(url.clone());
    let fleet = ["rec-x:recorder", "rec-y:recorder"];
    let (adir, prefix) = Daemon::setup(&fleet, "1h", "10m", &broker);
    let path = adir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[broker]\n", "[broker]\nusername = \"aftercare-gw\"\npassword = \"gw-secret-123\"\n")
        .replace("serial = \"S-rec-x\"\n", "serial = \"S-rec-x\"\nmqtt_password = \"x-device-secret\"\n")
        .replace("serial = \"S-rec-y\"\n", "serial = \"S-rec-y\"\nmqtt_password = \"y-device-secret\"\n");
    std::fs::write(&path, cfg).unwrap();
    let out = dir.path().join("auth");
    let (ok, said, err) = cli(&path, &["mosquitto-auth", "--out", out.to_str().unwrap()], "");
    assert!(ok && said.contains("mosquitto_passwd -U"), "{said}{err}");
    let acl = std::fs::read_to_string(out.join("acl")).unwrap();
    assert!(acl.contains(&format!("user rec-x\ntopic write {prefix}/site-a/rec-x/#")), "{acl}");
    assert!(acl.contains(&format!("user aftercare-gw\ntopic read {prefix}/#")), "{acl}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(out.join("passwords")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the password file is its owner's alone");
    }
    let hashed = std::process::Command::new("mosquitto_passwd").arg("-U").arg(out.join("passwords")).status();
    assert!(hashed.unwrap().success());
    assert!(!std::fs::read_to_string(out.join("passwords")).unwrap().contains("x-device-secret"));
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            // `user root`: the test's files are in a folder of root's alone; a real Mosquitto
            // reads them as its own user (chown mosquitto: passwords acl).
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\npersistence false\n\
             log_dest none\nuser root\n",
            out.join("passwords").display(),
            out.join("acl").display()
        ),
    )
    .unwrap();
    let _mosquitto = mosquitto_on(&conf, port);
    let d = Daemon::start(adir, &prefix, &broker);
    wait_for("the daemon's link to Mosquitto", 20, || async {
        (get(&d.url("/healthz")).await["mqtt"]["connected"] == json!(true)).then_some(())
    })
    .await;
    let topic = |dev: &str| format!("{prefix}/site-a/{dev}/event");
    let pubs = |user: &str, password: &str, dev: &str, m: &str| {
        let t = topic(dev);
        let mut args = vec!["-q", "1", "-t", t.as_str(), "-m", m];
        if !user.is_empty() {
            args.extend(["-u", user, "-P", password]);
        }
        mosquitto("mosquitto_pub", &d, &args)
    };
    let (ok, out) = pubs("", "", "rec-x", r#"{"code": "SD_ERR", "active": true}"#);
    assert!(!ok, "anonymous: {out}");
    // rec-y raises rec-x's fault: Mosquitto drops it; rec-x's own raise makes the ticket.
    let (ok, out) = pubs("rec-y", "y-device-secret", "rec-x", r#"{"code": "SD_ERR", "active": true}"#);
    assert!(ok, "{out}");
    let now = ts_now();
    for at in [now, now + chrono::TimeDelta::seconds(40)] {
        let m = format!(r#"{{"code": "SD_ERR", "active": true, "ts": "{}"}}"#, at.to_rfc3339());
        let (ok, out) = pubs("rec-x", "x-device-secret", "rec-x", &m);
        assert!(ok, "{out}");
    }
    let t = wait_for("rec-x's own fault", 20, || async {
        get(&d.url("/api/v1/tickets?device=rec-x")).await.as_array()?.first().cloned()
    })
    .await;
    assert_eq!(t["code"], json!("storage_failure"));
    let received = metric(&d, "aftercare_messages_received_total").await;
    assert_eq!(received, 2.0, "only rec-x's own two messages reached aftercare");
}

/// A CA, a server certificate for localhost and a client certificate it signed, in `dir`.
fn pki(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(ok.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=it-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n")
        .unwrap();
    std::fs::write(dir.join("client.ext"), "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")
        .unwrap();
    for (name, cn) in [("server", "localhost"), ("client", "aftercare-gw")] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_presents_a_client_certificate_to_a_broker_that_asks_for_one() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki(pki_dir.path());
    let p = |f: &str| pki_dir.path().join(f).display().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = pki_dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             use_identity_as_username true\nallow_anonymous false\npersistence false\nlog_dest none\nuser root\n",
            p("ca.pem"),
            p("server.pem"),
            p("server.key")
        ),
    )
    .unwrap();
    let _mosquitto = mosquitto_on(&conf, port);
    let url = format!("mqtts://localhost:{port}");
    for with_cert in [false, true] {
        let broker = Broker::External(url.clone());
        let (dir, prefix) = Daemon::setup(&["rec-z:recorder"], "1h", "10m", &broker);
        let path = dir.path().join("aftercare.toml");
        let client = if with_cert {
            format!("cert_file = {:?}\nkey_file = {:?}\n", p("client.pem"), p("client.key"))
        } else {
            String::new()
        };
        let cfg = std::fs::read_to_string(&path)
            .unwrap()
            .replace("[broker]\n", &format!("[broker]\nca_file = {:?}\n{client}", p("ca.pem")));
        std::fs::write(&path, cfg).unwrap();
        let d = Daemon::start(dir, &prefix, &broker);
        if with_cert {
            wait_for("the link over mutual TLS", 20, || async {
                (get(&d.url("/healthz")).await["mqtt"]["connected"] == json!(true)).then_some(())
            })
            .await;
        } else {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            let h = get(&d.url("/healthz")).await;
            assert_eq!(h["mqtt"]["connected"], json!(false), "no certificate, no link: {h:#}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_speaks_mqtt_over_tls() {
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(&["rec-t:recorder"], "1h", "10m", &broker);
    let (cert, key) = certificate(dir.path());
    let path = dir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "allow_anonymous = true\n",
            &format!("tls = {{ cert = {:?}, key = {:?} }}\n", cert.display().to_string(), key.display().to_string()),
        )
        .replace("serial = \"S-rec-t\"\n", "serial = \"S-rec-t\"\nmqtt_password = \"t-device-secret\"\n");
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::start(dir, &prefix, &broker);
    let port = d.mqtt.rsplit_once(':').unwrap().1.to_string();
    let publish = |tls: bool| {
        let mut c = std::process::Command::new("mosquitto_pub");
        c.args(["-h", "localhost", "-p", &port, "-V", "mqttv311", "-u", "rec-t", "-P", "t-device-secret", "-q", "1"]);
        c.args(["-t", &format!("{prefix}/site-a/rec-t/telemetry"), "-m", r#"{"metrics": {"battery_pct": 80}}"#]);
        if tls {
            c.arg("--cafile").arg(&cert);
        }
        let out = c.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, _) = publish(false);
    assert!(!ok, "plain MQTT to a TLS listener gets nowhere");
    let (ok, err) = publish(true);
    assert!(ok, "{err}");
    wait_for("the message over TLS", 10, || async {
        (metric(&d, "aftercare_messages_accepted_total").await >= 1.0).then_some(())
    })
    .await;
    assert!(metric(&d, "aftercare_broker_refused_total{reason=\"tls\"}").await >= 1.0);
}
