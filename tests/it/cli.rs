//! The `aftercare` command as a person at a terminal meets it.

use std::process::Command;

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
