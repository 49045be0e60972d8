use std::path::{Path, PathBuf};

use super::*;
use crate::ingest::mqtt::BrokerMode;

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[test]
fn every_file_in_config_loads() {
    let mut seen = 0;
    let mut stack = vec![config_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            if path.parent().is_some_and(|p| p.ends_with("contracts")) {
                // Contracts name customers: they are loaded through the demo config (next test).
                let included = std::fs::read_to_string(config_dir().join("demo.toml")).unwrap();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                assert!(included.contains(&format!("contracts/{name}")), "demo.toml does not include {name}");
            } else if path.parent().is_some_and(|p| p.ends_with("calendars")) {
                crate::calendar::Calendar::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            } else if text.contains("[kinds.") && !text.contains("include") {
                let p = profiles_from_str(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
                assert!(!p.is_empty(), "{}", path.display());
            } else {
                Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            }
            seen += 1;
        }
    }
    assert!(seen >= 7, "found only {seen} config files");
}

#[test]
fn the_demo_config_built_into_the_binary_loads() {
    let c = crate::demo::config().unwrap();
    assert_eq!(c.fleet.devices.len(), 8);
    let kinds: Vec<&str> = c.fleet.kinds.iter().map(|k| k.name.as_str()).collect();
    for k in ["recorder", "solar_heater", "led_display", "lighting"] {
        assert!(kinds.contains(&k), "{k}");
    }
    assert!(matches!(c.broker.mode, BrokerMode::Embedded { .. }));
}

#[test]
fn every_shipped_contract_loads_with_clocks_for_every_tier() {
    let c = crate::demo::config().unwrap();
    let mut ids: Vec<&str> = c.fleet.contracts.iter().map(|k| k.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["detailed-plan", "led-displays", "lighting", "recorders-tender", "solar-heaters"]);
    for k in &c.fleet.contracts {
        for (i, t) in k.tiers.iter().enumerate() {
            // The LED displays' source (002 内容2) times factory repairs alone.
            let timed =
                (t.acknowledge.is_some() && t.resolve.is_some()) || (k.id == "led-displays" && t.factory.is_some());
            assert!(timed, "{} tier {}", k.id, i + 1);
        }
        assert!(k.calendar.is_some(), "{}", k.id);
    }
}

#[test]
fn titles_come_in_both_languages_as_a_table_or_a_pair_of_keys() {
    let c = crate::demo::config().unwrap();
    for k in &c.fleet.contracts {
        assert!(!k.title_zh.is_ascii() && k.title_zh != k.title, "{}: {}", k.id, k.title_zh);
    }
    let tender = c.fleet.contracts.iter().find(|k| k.id == "recorders-tender").unwrap();
    assert_eq!(tender.title_zh, "现场记录仪：供货与售后服务（004）");
    for k in &c.fleet.kinds {
        assert!(!k.title_zh.is_ascii(), "{}: {}", k.name, k.title_zh);
        for r in &k.rules {
            assert!(!r.title_zh.is_ascii(), "{} {}: {}", k.name, r.code.as_str(), r.title_zh);
        }
    }
}

#[test]
fn shipped_plans_give_their_name_and_every_checklist_item_in_chinese() {
    let c = crate::demo::config().unwrap();
    for k in &c.fleet.contracts {
        for p in &k.plans {
            let zh = p.zh_of(&p.name).unwrap_or_else(|| panic!("{}: plan `{}` has no Chinese name", k.id, p.name));
            assert!(!zh.is_ascii(), "{zh}");
            for (_, items) in &p.checklist {
                for item in items {
                    assert!(p.zh_of(item).is_some_and(|z| !z.is_ascii()), "{}: `{item}` of `{}`", k.id, p.name);
                }
            }
        }
    }
    let lighting = c.fleet.contracts.iter().find(|k| k.id == "lighting").unwrap();
    let plan = lighting.plans.iter().find(|p| p.name == "quarterly inspection").unwrap();
    assert_eq!((plan.zh_of("quarterly inspection"), plan.zh_of("leakage")), (Some("季度检测"), Some("漏电")));
}

#[test]
fn shipped_profiles_have_the_faults_and_tiers_the_contracts_name() {
    let c = crate::demo::config().unwrap();
    let tier = |kind: &str, code: &str| {
        let p = c.fleet.kinds.iter().find(|k| k.name == kind).unwrap();
        p.rule(code).unwrap_or_else(|| panic!("{kind} has no rule {code}")).tier.number()
    };
    let want = [
        ("recorder", "storage_failure", 1),
        ("recorder", "storage_nearly_full", 2),
        ("recorder", "battery_low", 3),
        ("recorder", "clock_drift", 3),
        ("recorder", "over_temperature", 2),
        ("solar_heater", "tank_leak", 2),
        ("solar_heater", "tube_broken", 2),
        ("solar_heater", "insulation_failure", 3),
        ("solar_heater", "bracket_deformed", 2),
        ("solar_heater", "over_temperature", 2),
        ("solar_heater", "pump_failure", 2),
        ("solar_heater", "sensor_fault", 3),
        ("led_display", "screen_dark", 1),
        ("led_display", "cabinet_offline", 2),
        ("led_display", "dead_pixels", 3),
        ("led_display", "over_temperature", 2),
        ("led_display", "psu_out_of_range", 2),
        ("lighting", "all_dark", 1),
        ("lighting", "circuit_failed", 2),
        ("lighting", "lamps_failed", 3),
        ("lighting", "leakage", 1),
        ("lighting", "lit_outside_schedule", 3),
    ];
    for (kind, code, t) in want {
        assert_eq!(tier(kind, code), t, "{kind}/{code}");
    }
    for k in &c.fleet.kinds {
        assert_eq!(k.offline_tier.number(), 2, "{}", k.name);
        assert_eq!(k.offline_major_after_ms, 600_000, "{}", k.name);
    }
}

/// Loads `main` (with the given extra files beside it) and returns the problems as `file:line: message` lines.
fn problems(main: &str, extra: &[(&str, &str)]) -> Vec<String> {
    let files: Vec<(String, String)> = std::iter::once(("cfg/main.toml".to_string(), main.to_string()))
        .chain(extra.iter().map(|(n, t)| (format!("cfg/{n}"), t.to_string())))
        .collect();
    let read = |p: &Path| {
        let key = p.to_string_lossy().to_string();
        files
            .iter()
            .find(|(n, _)| *n == key)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    };
    match Config::load_with(Path::new("cfg/main.toml"), &read) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|p| format!("{}:{}: {}", p.file.display(), p.line, p.message)).collect(),
    }
}

const KIND: &str = r#"
[kinds.pump]
title = "Pump"
heartbeat = "1m"
[kinds.pump.metrics]
flow = { unit = "L/min" }
label = { type = "text" }
"#;

#[test]
fn a_minimal_config_is_valid_and_gets_defaults() {
    let read = |_: &Path| Ok(String::new());
    let c = Config::load_with(Path::new("x/empty.toml"), &read).unwrap();
    assert!(matches!(c.broker.mode, BrokerMode::Embedded { listen } if listen.port() == 1883));
    assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.store_path, Path::new("x/aftercare.db"));
    assert_eq!(c.ingest.topic_prefix, "aftercare");
    assert_eq!(c.tickets.reopen_window.as_secs(), 86_400);
    assert_eq!(c.audit_retention.as_secs(), 400 * 86_400);
    assert_eq!(c.access.writes_per_minute, 300);
}

#[test]
fn the_audit_log_is_kept_ninety_days_at_least() {
    assert_eq!(problems("[store]\naudit_retention = \"90d\"\n", &[]), Vec::<String>::new());
    assert_eq!(
        problems("[store]\naudit_retention = \"30d\"\n", &[]),
        ["cfg/main.toml:2: store.audit_retention is 90 days or more; the store keeps them in any case"]
    );
}

#[test]
fn syntax_and_unknown_keys_are_reported_with_their_line() {
    assert_eq!(
        problems("[broker]\nembedded = true\nport = 1883\n", &[]),
        vec![
            "cfg/main.toml:3: unknown field `port`, expected one of `embedded`, `listen`, `url`, `username`, `password`, `ca_file`, `cert_file`, `key_file`, `client_id`, `keep_alive`, `unhealthy_after`, `max_connections`, `allow_anonymous`, `monitors`, `tls`"
        ]
    );
    let p = problems("[http]\nlisten = \n", &[]);
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("cfg/main.toml:2: "), "{p:?}");
    let p = problems("[tickets]\nreopen_window = \"soon\"\n", &[]);
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("cfg/main.toml:2: ") && p[0].contains(r#"write one such as "30s""#), "{p:?}");
}

#[test]
fn every_problem_of_the_fleet_is_reported_at_once() {
    let main = r#"include = ["pump.toml", "missing.toml"]

[[sites]]
id = "s1"
utc_offset = "China"

[[customers]]
id = "c1"

[[devices]]
id = "d1"
kind = "pumpp"
site = "s2"
customer = "c1"
accepted_on = "2025-02-30"

[[devices]]
id = "d1"
kind = "pump"
site = "s1"
customer = "c9"
accepted_on = "2025-02-01"
"#;
    let p = problems(main, &[("pump.toml", KIND)]);
    assert_eq!(
        p,
        vec![
            "cfg/main.toml:1: cannot read included file cfg/missing.toml: no such file; include paths are relative to this file",
            "cfg/main.toml:5: utc_offset `China` is not an offset; write one such as \"+08:00\"",
            "cfg/main.toml:12: device `d1` names kind `pumpp`, which no profile defines; write one of: pump",
            "cfg/main.toml:13: device `d1` names site `s2`, which no [[sites]] entry defines; write one of: s1",
            "cfg/main.toml:15: accepted_on `2025-02-30` is not a date; write the acceptance date as \"2025-03-01\"",
            "cfg/main.toml:18: device `d1` is defined twice",
            "cfg/main.toml:21: device `d1` names customer `c9`, which no [[customers]] entry defines; write one of: c1",
        ]
    );
}

#[test]
fn rule_mistakes_point_into_the_profile_file() {
    let kind = format!(
        r#"{KIND}
[[kinds.pump.rules]]
code = "dry"
tier = 4
title = "Dry"
raise = {{ threshold = {{ metric = "flw", op = "<", value = 1 }} }}

[[kinds.pump.rules]]
code = "dry"
tier = 2
title = "Label"
raise = {{ threshold = {{ metric = "label", op = "==", value = 1 }} }}

[[kinds.pump.rules]]
code = "offline"
tier = 2
title = "Off"
raise = {{ code = {{ code = "E9" }} }}
"#
    );
    let p = problems("include = [\"pump.toml\"]\n", &[("pump.toml", &kind)]);
    assert_eq!(
        p,
        vec![
            "cfg/pump.toml:11: tier must be 1 (major), 2 (main) or 3 (minor)",
            "cfg/pump.toml:13: kind `pump` has no metric `flw`; declare it under [kinds.pump.metrics] or use one of: flow, label",
            "cfg/pump.toml:16: fault code `dry` is used by two rules of kind `pump`",
            "cfg/pump.toml:19: metric `label` is text; rules compare numbers and booleans only",
            "cfg/pump.toml:22: `offline` is built in (set heartbeat and offline_major_after on the kind); use another code",
            "cfg/pump.toml:25: device code `E9` is not declared; add it to `codes = [...]` of kind `pump`",
        ]
    );
    let bad_op = format!(
        "{KIND}\n[[kinds.pump.rules]]\ncode = \"x\"\ntier = 2\ntitle = \"X\"\nraise = {{ threshold = {{ metric = \"flow\", op = \"=>\", value = 1 }} }}\n"
    );
    let p = problems("include = [\"pump.toml\"]\n", &[("pump.toml", &bad_op)]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("cfg/pump.toml:13: unknown variant `=>`, expected one of `<`, `<=`, `>`, `>=`, `==`, `!=`"),
        "{p:?}"
    );
}

#[test]
fn broker_settings_are_checked() {
    let check = |text: &str, want: &str| {
        let p = problems(text, &[]);
        assert!(p.len() == 1 && p[0].contains(want), "{text}: {p:?}");
    };
    check("[broker]\nembedded = true\nurl = \"mqtt://h:1883\"\n", "remove url, or set embedded = false");
    check("[broker]\nembedded = false\n", "needs broker.url");
    check("[broker]\nurl = \"tcp://h:1883\"\n", "must start with mqtt:// or mqtts://");
    check("[broker]\nurl = \"mqtt://u:p@h:1883\"\n", "put credentials in broker.username");
    check("[broker]\nurl = \"mqtt://h:99999\"\n", "is not a port number");
    check("[broker]\nurl = \"mqtt://h\"\nlisten = \"127.0.0.1:1883\"\n", "broker.listen is for the embedded broker");
    check("[broker]\nlisten = \"localhost\"\n", "is not a socket address");
}

#[test]
fn broker_urls_parse() {
    let read = |_: &Path| {
        Ok("[broker]\nurl = \"mqtts://broker.example.net\"\nusername = \"u\"\npassword = \"p\"\n".to_string())
    };
    let c = Config::load_with(Path::new("a.toml"), &read).unwrap();
    match c.broker.mode {
        BrokerMode::External { tls, host, port, username, .. } => {
            assert!(tls);
            assert_eq!((host.as_str(), port, username.as_deref()), ("broker.example.net", 8883, Some("u")));
        }
        m => panic!("{m:?}"),
    }
    let read = |_: &Path| Ok("[broker]\nurl = \"mqtt://[::1]:1884\"\n".to_string());
    let c = Config::load_with(Path::new("a.toml"), &read).unwrap();
    assert!(matches!(c.broker.mode, BrokerMode::External { tls: false, ref host, port: 1884, .. } if host == "::1"));
}

#[test]
fn secrets_are_not_printed() {
    let read = |_: &Path| Ok("[broker]\nurl = \"mqtt://h\"\npassword = \"hunter2\"\n".to_string());
    let c = Config::load_with(Path::new("a.toml"), &read).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn contract_mistakes_are_reported_with_their_line() {
    let main = r#"include = ["c.toml"]
[calendars]
cn = "cal.toml"
[[sites]]
id = "s1"
[[customers]]
id = "c1"
"#;
    let cal = "name = \"cn\"\nyear = 2026\nworkdays = [\"mon\"]\n[hours]\nmon = [\"09:00-17:00\"]\n";
    let contract = r#"[contracts.k]
customer = "c2"
title = "K"
starts = "2026-01-01"
ends = "2025-01-01"
calendar = "cn-2099"
covers = { sites = ["s9"] }
[contracts.k.tier1]
acknowledge = "soon"
resolve = "3 working days"
[contracts.j]
customer = "c1"
title = "J"
starts = "2026-01-01"
[contracts.j.tier2]
acknowledge = "2h business"
"#;
    let p = problems(main, &[("c.toml", contract), ("cal.toml", cal)]);
    assert_eq!(
        p,
        vec![
            "cfg/c.toml:2: contract `k` names customer `c2`, which no [[customers]] entry defines; write one of: c1",
            "cfg/c.toml:2: contract `k` has no tier2: give its clocks ([contracts.k.tier2]), or write tier2 = {} to promise nothing for tier 2",
            "cfg/c.toml:2: contract `k` has no tier3: give its clocks ([contracts.k.tier3]), or write tier3 = {} to promise nothing for tier 3",
            "cfg/c.toml:5: contract `k` ends (2025-01-01) before it starts (2026-01-01)",
            "cfg/c.toml:6: calendar `cn-2099` is not listed under [calendars]; known: cn",
            "cfg/c.toml:7: contract `k` covers site `s9`, which is not configured; write one of: s1",
            "cfg/c.toml:9: `soon` is not a clock; write a clock such as \"15m\", \"24h\", \"4h business\" or \"3 working days\"",
            "cfg/c.toml:10: `3 working days` counts business time; name a calendar with calendar = \"…\"",
            "cfg/c.toml:12: contract `j` has no tier1: give its clocks ([contracts.j.tier1]), or write tier1 = {} to promise nothing for tier 1",
            "cfg/c.toml:12: contract `j` has no tier3: give its clocks ([contracts.j.tier3]), or write tier3 = {} to promise nothing for tier 3",
            "cfg/c.toml:16: `2h business` counts business time; name a calendar with calendar = \"…\"",
        ]
    );
}

#[test]
fn helpdesk_mistakes_are_named() {
    let check = |text: &str, want: &str| {
        let p = problems(text, &[]);
        assert!(p.len() == 1 && p[0].contains(want), "{text}: {p:?}");
    };
    check("[helpdesks.hd]\npriorities = [\"P1\", \"P2\"]\nwebhook = { url = \"http://x/\" }\n", "three names");
    check("[helpdesks.hd]\nwebhook = { url = \"ftp://x/\" }\n", "must start with http:// or https://");
    check("[helpdesks.hd]\nwebhook = { url = \"http://x/\", secret = \"hunter2\" }\n", "whsec_");
    check("[helpdesks.hd]\nemail = { server = \"imap://x\", from = \"a@b.c\", to = \"d@e.f\" }\n", "smtp+starttls://");
    check(
        "[helpdesks.hd]\nemail = { server = \"smtp://x\", from = \"nobody\", to = \"d@e.f\" }\n",
        "is not a mail address",
    );
    check("[[customers]]\nid = \"c\"\nhelpdesk = \"zendesk\"\n", "which [helpdesks] does not define");
    check("[helpdesks.hd]\npriorities = [\"a\", \"b\", \"c\"]\n", "names no connector");
    check(
        "[history.influxdb]\nurl = \"influx:8086\"\norg = \"o\"\nbucket = \"b\"\n",
        "influxdb url `influx:8086` must start with http://",
    );
    check("[history.influxdb]\nurl = \"http://x\"\norg = \"\"\nbucket = \"b\"\n", "needs org and bucket");
    check("[history.influxdb]\nurl = \"http://x\"\nbucket = \"b\"\n", "missing field `org`");
    let plan = |extra: &str| {
        format!(
            "[[customers]]\nid = \"c\"\n[contracts.k]\ncustomer = \"c\"\ntitle = \"k\"\nstarts = \"2026-01-01\"\n\
             tier1 = {{ acknowledge = \"1h\" }}\ntier2 = {{ acknowledge = \"1h\" }}\ntier3 = {{ acknowledge = \"1h\" }}\n\
             [[contracts.k.plans]]\nname = \"p\"\n{extra}"
        )
    };
    check(&plan("kind = \"visit\"\nevery = \"1 month\"\n"), "write patrol, inspection, maintenance or follow_up");
    check(
        "[[customers]]\nid = \"c\"\n[contracts.k]\ncustomer = \"c\"\ntitle = \"k\"\nstarts = \"2026-01-01\"\nsla_target = 95\n\
         tier1 = {}\ntier2 = {}\ntier3 = {}\n",
        "sla_target 95 is a share from 0 to 1",
    );
    check(
        "[[customers]]\nid = \"c\"\n[contracts.k]\ncustomer = \"c\"\ntitle = \"k\"\nstarts = \"2026-01-01\"\nspares_share = 3\n\
         tier1 = {}\ntier2 = {}\ntier3 = {}\n",
        "spares_share 3 is a share above 0 and at most 1, such as 0.03",
    );
    check(
        "[[spares]]\nmodel = \"M\"\npart = \"P\"\n[[spares]]\nmodel = \"M\"\npart = \"P\"\n",
        "spare part P of model M is listed twice",
    );
    check("[[spares]]\nmodel = \"M\"\npart = \"P\"\nper_unit = 0\n", "per_unit is how many of the part one unit holds");
    check("[[spares]]\nmodel = \"M\"\npart = \" \"\n", "a spare part names its model and its part number");
    check(
        "[[customers]]\nid = \"c\"\n[contracts.k]\ncustomer = \"c\"\ntitle = \"k\"\nstarts = \"2026-01-01\"\n\
         billable = [\"misuse\"]\nat_cost = [\"user_damage\"]\ntier1 = {}\ntier2 = {}\ntier3 = {}\n",
        "at_cost cause `user_damage` is not one of the contract's billable causes",
    );
    let mailed = |mail: &str| {
        format!(
            "[[customers]]\nid = \"c\"\n[contracts.k]\ncustomer = \"c\"\ntitle = \"k\"\nstarts = \"2026-01-01\"\n\
             tier1 = {{}}\ntier2 = {{}}\ntier3 = {{}}\n[notify.channels.mail]\ncarries = [\"email\"]\n\
             email = {{ server = \"smtp://127.0.0.1:25\", from = \"a@example.net\" }}\n[contracts.k.report_mail]\n{mail}"
        )
    };
    check(
        &mailed("to = [\"a@example.net\"]\nchannel = \"pager\"\n"),
        "`pager` is no email channel of [notify.channels]; write one of mail",
    );
    check(&mailed("to = [\"not an address\"]\nchannel = \"mail\"\n"), "`not an address` is not a mail address");
    check(&mailed("to = [\"a@example.net\"]\nlangs = [\"fr\"]\nchannel = \"mail\"\n"), "language `fr`");
    check(&plan("kind = \"patrol\"\n"), "needs every = \"3 months\" or steps");
    check(
        &plan("kind = \"follow_up\"\nevery = \"6 months\"\npast_contract_end = true\n"),
        "past_contract_end needs every step to end",
    );
    check(&plan("kind = \"patrol\"\nevery = \"monthly\"\n"), "write a period such as");
    check(&plan("kind = \"patrol\"\nevery = \"1 month\"\nlead = \"1 month\"\n"), "counted in days or weeks");
    check(&plan("kind = \"patrol\"\nsteps = [{ at = \"1 week\", every = \"1 month\" }]\n"), "a step is");
    check(
        &plan(
            "kind = \"patrol\"\nevery = \"1 month\"\nchecklist = { lighting = [\"lamps\"] }\nmeasured = { lamps = \"leakage_ma median\" }\n",
        ),
        "METRIC min|max|mean|last",
    );
    check(&plan("kind = \"patrol\"\nevery = \"1 month\"\nmeasured = { lamps = \"online\" }\n"), "on no checklist");
    check(
        &plan(
            "kind = \"patrol\"\nevery = \"1 month\"\nchecklist = { lighting = [\"lamps\"] }\nzh-CN = { lamp = \"灯\" }\n",
        ),
        "translates `lamp`, which is neither the plan's name nor on its checklists",
    );
    check(
        "[helpdesks.hd]\nwebhook = { url = \"http://x/\" }\nredmine = { url = \"http://r\", api_key = \"k\", project = \"p\" }\n",
        "has webhook and redmine; give it one",
    );
    check("[helpdesks.hd]\nrequest_tracker = { url = \"rt.example.net\", token = \"t\" }\n", "must start with http://");
    check(
        "[helpdesks.hd]\nredmine = { url = \"http://r\", api_key = \"k\", project = \" \" }\n",
        "identifier of a Redmine",
    );
    check(
        "[helpdesks.hd]\nrequest_tracker = { url = \"http://r\", token = \"t\", statuses = { done = \"x\" } }\n",
        "unknown field `done`",
    );
}

#[test]
fn helpdesk_connectors_take_their_defaults() {
    let text = "[helpdesks.rt]\nrequest_tracker = { url = \"http://r/rt/\", token = \"t\", reference_field = \"aftercare\" }\n\
                [helpdesks.rm]\nredmine = { url = \"http://m\", api_key = \"k\", project = \"p\", statuses = { active = \"New\" } }\n";
    let read = |_: &Path| Ok(text.to_string());
    let c = Config::load_with(Path::new("x/h.toml"), &read).unwrap();
    let rt = c.helpdesks.iter().find(|h| h.name == "rt").unwrap();
    assert_eq!(rt.priorities, ["High", "Medium", "Low"]);
    let crate::outbox::HelpdeskKind::RequestTracker(r) = &rt.kind else { panic!("{:?}", rt.kind) };
    assert_eq!(
        (r.url.as_str(), r.queue.as_str(), r.reference_field.as_deref()),
        ("http://r/rt", "General", Some("aftercare"))
    );
    assert_eq!(r.statuses.resolved, "resolved");
    let rm = c.helpdesks.iter().find(|h| h.name == "rm").unwrap();
    assert_eq!(rm.priorities, ["Urgent", "High", "Normal"]);
    let crate::outbox::HelpdeskKind::Redmine(m) = &rm.kind else { panic!("{:?}", rm.kind) };
    assert_eq!((m.statuses.active.as_str(), m.statuses.closed.as_str()), ("New", "Closed"));
    assert_eq!(m.poll_every, std::time::Duration::from_secs(30));
}

/// The shipped register maps are the ones firmware-sim serves, point for point.
#[test]
fn shipped_register_maps_match_the_simulator() {
    use crate::modbus::{DataType, Function, Order};
    use firmware_sim::modbus as sim;
    let c = Config::load(&config_dir().join("demo.toml")).unwrap();
    for kind in [firmware_sim::Kind::SolarHeater, firmware_sim::Kind::Lighting] {
        let profile = c.fleet.kinds.iter().find(|k| k.name == kind.name()).unwrap();
        let map = profile.modbus.as_ref().unwrap_or_else(|| panic!("{} has no register map", kind.name()));
        let regs = sim::map(kind).unwrap();
        assert_eq!(map.points.len(), regs.len(), "{}", kind.name());
        for r in regs {
            let metric = profile.metric(r.metric).unwrap();
            let p = map.points.iter().find(|p| p.metric == metric).unwrap_or_else(|| panic!("{}", r.metric));
            let function = match r.function {
                sim::Function::Coil => Function::Coil,
                sim::Function::Discrete => Function::Discrete,
                sim::Function::Input => Function::Input,
                sim::Function::Holding => Function::Holding,
            };
            let ty = match r.ty {
                sim::Type::Bool => DataType::Bool,
                sim::Type::U16 => DataType::U16,
                sim::Type::I16 => DataType::I16,
                sim::Type::U32 => DataType::U32,
                sim::Type::F32 => DataType::F32,
            };
            let order = if r.order == sim::Order::Cdab { Order::Cdab } else { Order::Abcd };
            assert_eq!((p.function, p.address, p.ty, p.order), (function, r.address, ty, order), "{}", r.metric);
            assert!((p.scale - r.scale).abs() < 1e-12 && p.offset == 0.0, "{}", r.metric);
        }
        // Planned once: the heater's 12 points in two reads, the lighting's 7 in two.
        assert_eq!(map.requests.len(), 2, "{}: {:?}", kind.name(), map.requests);
    }
}

#[test]
fn register_map_mistakes_are_named_with_their_line() {
    let kind = |points: &str| {
        format!(
            "[kinds.pump]\ntitle = \"Pump\"\nheartbeat = \"1m\"\n[kinds.pump.metrics]\nflow = {{}}\nrunning = {{ type = \"bool\" }}\n\
             [kinds.pump.modbus]\npoints = [\n{points}]\n"
        )
    };
    let check = |points: &str, want: &str| {
        let p = problems(&kind(points), &[]);
        assert!(p.len() == 1 && p[0].contains(want), "{points}: {p:?}");
    };
    check(
        "{ metric = \"flow\", ref = 40001, type = \"u32\" },\n{ metric = \"running\", ref = 40002, bit = 0 },\n",
        "main.toml:10: this point overlaps the one on line 9",
    );
    check("{ metric = \"flow\", address = 3 },\n", "name the function");
    check("{ metric = \"flow\", address = 3, ref = 40004, function = \"holding\" },\n", "not both");
    check("{ metric = \"flow\", ref = 20001 },\n", "not a Modicon reference");
    check("{ metric = \"flow\", ref = 40001, type = \"f16\" },\n", "write bool, bit, u16");
    check("{ metric = \"flow\", ref = 40001, order = \"ACBD\" },\n", "write ABCD, DCBA, BADC or CDAB");
    check("{ metric = \"flow\", ref = 465536, type = \"f32\" },\n", "runs past 65535");
    check("{ metric = \"flow\", ref = 1 },\n", "metric `flow` is Number, but this point reads a bit");
    check("{ metric = \"running\", ref = 30001, type = \"bool\" },\n", "read one bit of it with type = \"bit\"");
    check("{ metric = \"speed\", ref = 30001 },\n", "has no metric `speed`");
    check("{ metric = \"running\", ref = 30001, bit = 16 },\n", "past 15");
    // Two different bits of one register may share it.
    check(
        "{ metric = \"running\", ref = 30001, bit = 0 },\n{ metric = \"flow\", ref = 30002 },\n{ metric = \"running\", ref = 30001, bit = 0 },\n",
        "overlaps",
    );
}

#[test]
fn plan_and_report_mistakes_are_reported_with_their_line() {
    let main = r#"include = ["c.toml"]
[[sites]]
id = "s1"
[[customers]]
id = "c1"
"#;
    let contract = r#"[contracts.k]
customer = "c1"
title = "K"
starts = "2026-01-01"
reports = ["monthly", "fortnightly", "monthly"]
[[contracts.k.plans]]
name = "survey"
kind = "follow_up"
after = "service"
every = "1 month"
[[contracts.k.plans]]
name = "analysis"
kind = "follow_up"
after = "repairs"
within = "1 month"
[[contracts.k.plans]]
name = "patrol"
kind = "patrol"
every = "1 month"
within = "3 days"
checklist = { "*" = ["tubes", "tank"] }
measured = { tubes = "faults tube_brokn", tank = "faults offline" }
[contracts.k.tier1]
[contracts.k.tier2]
[contracts.k.tier3]
"#;
    let p = problems(main, &[("c.toml", contract)]);
    assert_eq!(
        p,
        vec![
            "cfg/c.toml:5: report `fortnightly`: write \"weekly\", \"monthly\", \"quarterly\" or \"yearly\"",
            "cfg/c.toml:5: report `monthly` is listed twice",
            "cfg/c.toml:10: plan `survey` follows services (after = \"service\"): it has no every; its visits are due `within` a period of each service",
            "cfg/c.toml:14: after `repairs`: write \"service\" or \"on_site_repair\"",
            "cfg/c.toml:15: within is counted in days or weeks, such as \"3 days\"",
            "cfg/c.toml:20: plan `patrol`: within goes with after = \"service\" or \"on_site_repair\"",
            "cfg/c.toml:22: measured `faults tube_brokn`: no kind raises fault `tube_brokn`; known: offline",
        ]
    );
}

#[test]
fn the_shipped_contracts_follow_services_and_make_reports() {
    let c = crate::demo::config().unwrap();
    let dp = c.fleet.contracts.iter().find(|c| c.id == "detailed-plan").unwrap();
    use crate::contracts::Cadence::*;
    assert_eq!(dp.reports, [Weekly, Monthly, Quarterly, Yearly]);
    let after: Vec<_> = dp.plans.iter().filter_map(|p| Some((p.name.as_str(), p.after?))).collect();
    use crate::contracts::After;
    assert_eq!(after, [("fault analysis", (After::OnSiteRepair, 3)), ("satisfaction survey", (After::Service, 3))]);
}

#[test]
fn every_mistake_of_a_file_is_reported_in_one_run() {
    let text = r#"[broker]
embeded = true
[http]
listn = "127.0.0.1:8080"
[ingest]
shards = "two"
max_payload_bytes = 10485760000
[tickets]
reopen_windw = "1h"
[[sites]]
id = "s1"
utc_ofset = "+08:00"
"#;
    let p = problems(text, &[]);
    // Keys that cannot be read, and what the rest then says (a value out of range), in one run.
    assert_eq!(p.len(), 6, "{p:#?}");
    for (line, what) in [
        (2, "embeded"),
        (4, "listn"),
        (6, "invalid type"),
        (7, "between 64 and 16777216"),
        (9, "reopen_windw"),
        (12, "utc_ofset"),
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(&format!("cfg/main.toml:{line}: ")) && x.contains(what)),
            "{what}: {p:#?}"
        );
    }
}

#[test]
fn an_email_helpdesk_may_sign_what_it_sends_back() {
    let text = "[helpdesks.mail]\nemail = { server = \"smtp://x\", from = \"a@b.c\", to = \"d@e.f\", secret = \"whsec_c2VjcmV0\" }\n\
                [helpdesks.hook]\nwebhook = { url = \"http://x/\", secret = \"whsec_a2V5\" }\n\
                [helpdesks.plain]\nemail = { server = \"smtp://x\", from = \"a@b.c\", to = \"d@e.f\" }\n";
    let read = |_: &Path| Ok(text.to_string());
    let c = Config::load_with(Path::new("a.toml"), &read).unwrap();
    let secret = |n: &str| c.helpdesks.iter().find(|h| h.name == n).unwrap().secret.clone();
    assert_eq!(secret("mail").as_deref(), Some(&b"secret"[..]));
    assert_eq!(secret("hook").as_deref(), Some(&b"key"[..]));
    assert_eq!(secret("plain"), None);
    let p = problems(
        "[helpdesks.mail]\nemail = { server = \"smtp://x\", from = \"a@b.c\", to = \"d@e.f\", secret = \"x\" }\n",
        &[],
    );
    assert!(p.len() == 1 && p[0].contains("whsec_"), "{p:?}");
}

#[test]
fn a_calendar_ending_soon_is_told_by_check_config() {
    let c = crate::demo::config().unwrap();
    let day = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
    let soon = c.fleet.calendars_ending(day("2026-12-02"), 60);
    assert_eq!(soon.len(), 1, "{soon:?}");
    assert!(soon[0].contains("ends on 2026-12-31, in 29 days") && soon[0].contains("next year's"), "{soon:?}");
    assert!(c.fleet.calendars_ending(day("2026-06-01"), 60).is_empty());
}

#[test]
fn a_secret_is_inline_from_the_environment_or_from_a_file_and_never_in_a_problem() {
    let broker =
        |password: &str| format!("[broker]\nembedded = false\nurl = \"mqtts://b:8883\"\npassword = {password}\n");
    assert_eq!(problems(&broker("\"s3cret-inline\""), &[]), Vec::<String>::new());
    let p = problems(&broker("{ vault = \"x\" }"), &[]);
    assert!(p.len() == 1 && p[0].contains("`vault`") && p[0].contains("{ env = \"NAME\" }"), "{p:?}");
    let p = problems(&broker("{ env = \"AFTERCARE_TEST_NO_SUCH_VARIABLE\" }"), &[]);
    assert!(p.len() == 1 && p[0].contains("`AFTERCARE_TEST_NO_SUCH_VARIABLE` is not set"), "{p:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let text = broker(&format!("{{ file = {:?} }}", file.display().to_string()));
    let read = |_: &Path| Ok(text.clone());
    let c = Config::load_with(Path::new("cfg/main.toml"), &read).unwrap();
    let BrokerMode::External { password: Some(p), .. } = &c.broker.mode else { panic!("an external broker") };
    assert_eq!(secrecy::ExposeSecret::expose_secret(p), "from-a-file");
    let p = problems(&broker("{ file = \"/no/such/secret\" }"), &[]);
    assert!(p.len() == 1 && p[0].contains("/no/such/secret"), "{p:?}");
    // A password in clear over mqtt:// is a warning.
    let text = "[broker]\nembedded = false\nurl = \"mqtt://b:1883\"\npassword = \"x\"\n".to_string();
    let read = |_: &Path| Ok(text.clone());
    let c = Config::load_with(Path::new("cfg/main.toml"), &read).unwrap();
    assert!(c.warnings().iter().any(|w| w.contains("mqtts://")), "{:?}", c.warnings());
}

#[test]
fn a_device_and_a_site_may_not_share_an_mqtt_user_name() {
    let text = "[[sites]]\nid = \"x\"\nmqtt_password = \"site-secret\"\n[[customers]]\nid = \"c\"\n\
                [[devices]]\nid = \"x\"\nkind = \"pump\"\nsite = \"x\"\ncustomer = \"c\"\naccepted_on = \"2025-01-01\"\n\
                mqtt_password = \"device-secret\"\n";
    let main = format!("include = [\"kinds.toml\"]\n{text}");
    let p = problems(&main, &[("kinds.toml", KIND)]);
    assert!(p.len() == 1 && p[0].contains("`x` is a site's MQTT user already"), "{p:?}");
    assert!(p.iter().all(|m| !m.contains("secret")), "{p:?}");
}

#[test]
fn a_tls_certificate_that_cannot_be_read_is_a_problem_before_start() {
    let p = problems("[http]\ntls = { cert = \"/no/such/cert.pem\", key = \"/no/such/key.pem\" }\n", &[]);
    assert!(p.len() == 1 && p[0].contains("http.tls") && p[0].contains("/no/such/cert.pem"), "{p:?}");
}

#[test]
fn notification_channels_people_and_rules_are_checked_and_what_reaches_nobody_is_a_warning() {
    let ok = "[[people]]\nname = \"Li\"\nroles = [\"duty\"]\nphone = \"138\"\nemail = \"li@x.cn\"\n\
              [notify]\nbreach = { to = [\"duty\"], by = [\"robot\"] }\nloaner = { to = [\"nobody\"], by = [\"fax\"] }\n\
              [notify.channels.ding]\ncarries = [\"robot\"]\n\
              dingtalk = { url = \"https://oapi.dingtalk.com/robot/send?access_token=t\", secret = \"SECx\" }\n\
              [notify.channels.mail]\ncarries = [\"email\"]\n\
              email = { server = \"smtp://127.0.0.1:25\", from = \"a <a@x.cn>\" }\n";
    let read = |_: &Path| Ok(ok.to_string());
    let c = Config::load_with(Path::new("cfg/main.toml"), &read).unwrap();
    assert_eq!(c.routing.channels.len(), 2);
    assert_eq!(c.routing.people[0].phone.as_deref(), Some("138"));
    // The robot's URL holds its token: never in a Debug.
    assert!(!format!("{:?}", c.routing).contains("access_token"), "{:?}", c.routing);
    let w = c.warnings();
    assert!(w.iter().any(|w| w == "notify.loaner: no [notify.channels] carries `fax`"), "{w:?}");
    assert!(w.iter().any(|w| w == "notify.loaner: no [[people]] is or holds `nobody`"), "{w:?}");
    assert!(!w.iter().any(|w| w.contains("notify.breach")), "{w:?}");

    let two = "[notify.channels.x]\ncarries = [\"sms\"]\nwecom = { url = \"https://q/send?key=k\" }\n\
               webhook = { url = \"https://gw/sms\" }\n";
    let p = problems(two, &[]);
    assert!(p.len() == 1 && p[0].contains("exactly one of email, webhook, wecom, dingtalk"), "{p:?}");
    let bad = "[[people]]\nname = \"Li\"\nemail = \"not an address\"\n\
               [notify.channels.x]\ncarries = []\nwecom = { url = \"https://q/send?key=k\" }\n";
    let p = problems(bad, &[]);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("not a mail address") && p[1].contains("say what it carries"), "{p:?}");
}
