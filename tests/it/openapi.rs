//! The API's OpenAPI description against the real daemon: it lists every route the daemon
//! serves with the permission the guard applies, and schemathesis, fuzzing every operation
//! with an admin's token, finds no server error and no answer the description does not allow.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::access::two_customers_with;
use crate::harness::*;

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.insert(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_description_has_every_route_with_the_permission_the_guard_applies() {
    let (d, _sim, _ids) = two_customers_with("").await;
    // Open: a client reads it before it has a token.
    let r = http().get(d.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(
        (&schemes["session"]["in"], &schemes["session"]["name"]),
        (&"cookie".into(), &"aftercare_session".into())
    );

    let routes = get(&d.url("/api/v1/routes")).await;
    // The console's pages are people's, not operations of the API.
    let routes: Vec<&Value> = routes.as_array().unwrap().iter().filter(|r| r["page"] != json!(true)).collect();
    let mut described = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        described += item.as_object().unwrap().len();
        for method in item.as_object().unwrap().keys() {
            assert!(
                routes.iter().any(|r| r["path"] == path.as_str() && r["method"] == method.to_uppercase()),
                "{method} {path} is described but not served"
            );
        }
    }
    assert_eq!(described, routes.len(), "one operation per route");
    for r in routes {
        let (method, path, perm) =
            (r["method"].as_str().unwrap(), r["path"].as_str().unwrap(), r["perm"].as_str().unwrap());
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} is served but not described");
        let security: Vec<String> = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has no security"))
            .iter()
            .flat_map(|req| req.as_object().unwrap().keys().cloned().collect::<Vec<_>>())
            .collect();
        let statuses: BTreeSet<&str> = op["responses"].as_object().unwrap().keys().map(String::as_str).collect();
        match perm {
            "open" => assert!(security.is_empty(), "{method} {path}: {security:?}"),
            "helpdesk" => assert_eq!(security, ["helpdesk_signature"], "{method} {path}"),
            _ => {
                assert_eq!(security, ["bearer", "session"], "{method} {path}");
                assert!(statuses.contains("401") && statuses.contains("403"), "{method} {path}: {statuses:?}");
                let text = op["description"].as_str().unwrap_or_default();
                assert!(text.contains(&format!("`{perm}`")), "{method} {path} names its permission: {text}");
            }
        }
        if method != "GET" && !matches!(perm, "open" | "helpdesk") {
            assert!(statuses.contains("429"), "{method} {path} answers 429 past the write limit");
        }
    }
    // Every schema an operation refers to is in the document.
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "{all:?}");
    for r in &all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
    }
    // A named state is described by its names, as the API writes them.
    let states = &doc["components"]["schemas"]["VisitState"]["enum"];
    assert_eq!(states, &serde_json::json!(["open", "in_progress", "done", "missed"]));
}

/// The schemathesis command, or `None` (then the test says so and passes, unless
/// AFTERCARE_TEST_REQUIRE_PEERS is set, as in CI).
fn schemathesis() -> Option<String> {
    match std::env::var("AFTERCARE_TEST_SCHEMATHESIS") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() => {
            panic!("AFTERCARE_TEST_SCHEMATHESIS is not set; run `eval \"$(scripts/peers.sh)\"` first")
        }
        _ => {
            eprintln!("AFTERCARE_TEST_SCHEMATHESIS is not set: skipping; `eval \"$(scripts/peers.sh)\"` sets it");
            None
        }
    }
}

/// Runs schemathesis on the daemon's description with `extra` arguments: whether it passed,
/// and what it said.
fn fuzz(bin: &str, d: &Daemon, extra: &[&str]) -> (bool, String) {
    let seed = std::env::var("AFTERCARE_TEST_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261207".into());
    let out = std::process::Command::new("timeout")
        .args(["600", bin, "run"])
        .arg(d.url("/api/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {}", *TOKEN)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing", "--max-examples", "40", "--workers", "2"])
        .args(["--seed", &seed, "--request-timeout", "30", "--suppress-health-check", "all"])
        .args(extra)
        .env("NO_COLOR", "1")
        .current_dir(d.dir.path())
        .output()
        .expect("run schemathesis");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The number after `label` in schemathesis's summary (on its line, or the next).
fn figure(text: &str, label: &str) -> usize {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let Some(i) = lines.iter().position(|l| l.starts_with(label)) else { return 0 };
    let rest = lines[i].trim_start_matches(label).trim();
    let rest = if rest.is_empty() { lines.get(i + 1).copied().unwrap_or_default() } else { rest };
    rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_description() {
    let Some(bin) = schemathesis() else { return };
    // Writes are limited per user; the fuzzer makes many more than a person would.
    let (d, _sim, _ids) = two_customers_with("writes_per_minute = 100000").await;
    // Every operation but the one that could revoke the fuzzer's own token...
    let (ok, text) = fuzz(&bin, &d, &["--exclude-path", "/api/v1/tokens/{id}"]);
    assert!(ok, "schemathesis found failures:\n{text}");
    let all = get(&d.url("/api/v1/routes")).await;
    let described = all.as_array().unwrap().iter().filter(|r| r["page"] != json!(true)).count();
    // Every operation but that one and the description itself, which schemathesis leaves out.
    assert_eq!(figure(&text, "Tested:"), described - 2, "every operation was tried:\n{text}");
    assert!(figure(&text, "Test cases:") >= 500, "{text}");
    // ...and then that one.
    let (ok, text) = fuzz(&bin, &d, &["--include-path", "/api/v1/tokens/{id}"]);
    assert!(ok, "schemathesis found failures:\n{text}");
    assert_eq!(figure(&text, "Tested:"), 1, "{text}");
    // The daemon is still up and answering.
    let h = http().get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status().as_u16(), 200);
}
