//! The `aftercare` command as a person at a terminal meets it.

use std::process::Command;

use serde_json::json;

use crate::harness::*;

fn aftercare(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aftercare")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn a_report_of_a_store_that_is_not_there_is_refused_and_says_where_it_looked() {
    let (dir, _) = Daemon::setup(&["lit-301:lighting"], "30s", "10m", &Broker::Embedded);
    let config = dir.path().join("aftercare.toml");
    let db = dir.path().join("data/aftercare.db");
    let (ok, stdout, stderr) = aftercare(&[
        "report",
        "--config",
        config.to_str().unwrap(),
        "--customer",
        "cust-1",
        "--from",
        "2026-11-01",
        "--to",
        "2026-12-01",
    ]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("no database at") && stderr.contains(db.to_str().unwrap()), "{stderr}");
    assert!(stdout.is_empty(), "no report written: {stdout}");
    assert!(!db.exists(), "no empty store made on the spot");
}

#[test]
fn check_config_lists_every_mistake_and_warns_of_a_calendar_about_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[broker]\nembeded = true\n[http]\nlistn = \"x\"\n[tickets]\nreopen_windw = \"1h\"\n")
        .unwrap();
    let (ok, _, stderr) = aftercare(&["check-config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("3 problems"), "{stderr}");
    for key in ["embeded", "listn", "reopen_windw"] {
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    // The demo config is valid; its calendar ends with 2026, which check-config says while it is near.
    let shipped = repo().join("config/demo.toml");
    let (ok, stdout, stderr) = aftercare(&["check-config", shipped.to_str().unwrap()]);
    assert!(ok, "{stdout}{stderr}");
    #[allow(clippy::disallowed_methods)]
    let near = chrono::Utc::now().date_naive() >= "2026-11-01".parse().unwrap();
    if near {
        assert!(stderr.contains("warning: calendar cn-2026") && stderr.contains("next year's"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_tokens_are_managed_from_the_command_line() {
    let (dir, prefix) = Daemon::setup(&["lit-302:lighting"], "30s", "10m", &Broker::Embedded);
    let config = dir.path().join("aftercare.toml");
    // Mistakes are refused with a reason, and nothing is made.
    let (ok, _, err) = cli(&config, &["user", "add", "zed", "--role", "boss"], "");
    assert!(!ok && err.contains("role `boss`") && err.contains("engineer"), "{err}");
    let (ok, _, err) = cli(&config, &["user", "add", "cat", "--role", "customer"], "");
    assert!(!ok && err.contains("customer user needs"), "{err}");
    let (ok, _, err) = cli(&config, &["user", "add", "cat", "--role", "customer", "--customer", "nobody"], "");
    assert!(!ok && err.contains("no customer `nobody`"), "{err}");
    let (ok, _, err) = cli(&config, &["user", "add", "zoe", "--role", "desk", "--password-stdin"], "short\n");
    assert!(!ok && err.contains("at least 10"), "{err}");
    // A person with a password, a script with a token.
    let (ok, _, err) =
        cli(&config, &["user", "add", "zoe", "--role", "desk", "--password-stdin"], "a long enough secret\n");
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&config, &["user", "add", "cat", "--role", "customer", "--customer", "cust-1"], "");
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&config, &["user", "add", "zoe", "--role", "admin"], "");
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, token, err) = cli(&config, &["token", "create", "cat", "--name", "portal", "--expires", "30d"], "");
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(token.starts_with("act_") && err.contains("shown this once"), "{token} {err}");
    let (ok, list, _) = cli(&config, &["user", "list"], "");
    assert!(ok && list.contains("zoe") && list.contains("desk") && list.contains("cust-1"), "{list}");
    let (_, tokens, _) = cli(&config, &["token", "list"], "");
    assert!(tokens.contains("portal") && !tokens.contains(&token[4..]), "{tokens}");

    let d = Daemon::start(dir, &prefix, &Broker::Embedded);
    let me = |t: String| {
        let url = d.url("/api/v1/me");
        async move { as_user(&t).get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(me(token.clone()).await, 200);
    let login = |password: &str| {
        let (url, body) = (d.url("/api/v1/login"), json!({"user": "zoe", "password": password}));
        async move { http().post(url).json(&body).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(login("a long enough secret").await, 200);
    let (ok, _, err) = cli(&config_of(&d), &["user", "passwd", "zoe"], "another long secret\n");
    assert!(ok, "{err}");
    assert_eq!(login("a long enough secret").await, 401);
    assert_eq!(login("another long secret").await, 200);
    // Revoking the token, or disabling its user, shuts it out at once.
    let id = tokens.lines().find(|l| l.contains("portal")).and_then(|l| l.split_whitespace().next()).unwrap();
    let (ok, _, err) = cli(&config_of(&d), &["token", "revoke", id], "");
    assert!(ok, "{err}");
    assert_eq!(me(token).await, 401);
    let (ok, second, _) = cli(&config_of(&d), &["token", "create", "cat"], "");
    assert!(ok);
    assert_eq!(me(second.trim().to_string()).await, 200);
    let (ok, _, _) = cli(&config_of(&d), &["user", "disable", "cat"], "");
    assert!(ok);
    assert_eq!(me(second.trim().to_string()).await, 401);
}

fn config_of(d: &Daemon) -> std::path::PathBuf {
    d.dir.path().join("aftercare.toml")
}
