//! Data-driven tests of every rule kind: raise, hold, clear, hysteresis, flapping.

use super::*;
use crate::domain::Value;

const METRICS: &str = r#"
[kinds.t]
title = "Test device"
heartbeat = "60s"
offline_major_after = "10m"
codes = ["E1"]
[kinds.t.metrics]
temp = { unit = "°C" }
level = { unit = "%" }
a = {}
b = {}
flags = {}
door = { type = "bool" }
firmware = { type = "text" }
"#;

/// A profile with the test metrics and the given rules (TOML `[[kinds.t.rules]]` tables).
pub(crate) fn profile_with(rules: &str) -> Profile {
    let text = format!("{METRICS}\n{rules}");
    match crate::config::profiles_from_str("test.toml", &text) {
        Ok(mut p) => p.remove(0),
        Err(e) => panic!("{e}"),
    }
}

pub(crate) fn profile() -> Profile {
    profile_with("")
}

/// One step of a script: a reading at second `t` (`"temp=91 door=true"`), a code, or a tick.
enum Step {
    R(i64, &'static str),
    Code(i64, &'static str, bool),
    Tick(i64),
}
use Step::*;

/// Runs a script through one rule and writes its changes as `raise@T clear@T`.
fn trace(rule: &str, steps: &[Step]) -> String {
    let p = profile_with(&format!("[[kinds.t.rules]]\ncode = \"f\"\ntier = 2\ntitle = \"F\"\n{rule}"));
    let mut st = DeviceState::new(&p, 0);
    let mut out = Vec::new();
    let mut log = Vec::new();
    for s in steps {
        match s {
            R(t, readings) => {
                let rs: Vec<(u16, Value)> = readings
                    .split_whitespace()
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("k=v");
                        let m = p.metric(k).expect("metric");
                        let v = match v {
                            "true" => Value::Bool(true),
                            "false" => Value::Bool(false),
                            x => Value::Num(x.parse().expect("number")),
                        };
                        (m, v)
                    })
                    .collect();
                st.apply(&p, t * 1000, &rs, &mut out);
            }
            Code(t, c, on) => {
                st.set_code(&p, p.codes[*c], *on, t * 1000, &mut out);
            }
            Tick(t) => st.tick(&p, t * 1000, &mut out),
        }
        for ch in out.drain(..) {
            log.push(format!("{}@{}", if ch.raised { "raise" } else { "clear" }, ch.at / 1000));
        }
    }
    log.join(" ")
}

fn check(rule: &str, steps: &[Step], want: &str) {
    assert_eq!(trace(rule, steps), want, "rule:\n{rule}");
}

const HOT: &str = r#"raise = { threshold = { metric = "temp", op = ">", value = 90 } }
hold = "60s"
clear = { threshold = { metric = "temp", op = "<", value = 85 } }
clear_hold = "30s""#;

#[test]
fn threshold_raises_after_its_hold() {
    check(HOT, &[R(0, "temp=95"), R(30, "temp=95"), R(59, "temp=95"), R(60, "temp=96")], "raise@60");
}

#[test]
fn a_broken_hold_starts_over() {
    check(
        HOT,
        &[R(0, "temp=95"), R(30, "temp=80"), R(60, "temp=95"), R(90, "temp=95"), R(120, "temp=95")],
        "raise@120",
    );
}

#[test]
fn hysteresis_needs_the_clear_condition_not_just_the_raise_ending() {
    let s =
        [R(0, "temp=95"), R(60, "temp=95"), R(70, "temp=88"), R(200, "temp=88"), R(210, "temp=84"), R(240, "temp=84")];
    check(HOT, &s, "raise@60 clear@240");
}

#[test]
fn flapping_around_the_threshold_never_raises() {
    let s: Vec<Step> = (0..20).map(|i| R(i * 30, if i % 2 == 0 { "temp=95" } else { "temp=89" })).collect();
    check(HOT, &s, "");
}

#[test]
fn flapping_below_the_clear_level_never_clears() {
    let mut s = vec![R(0, "temp=95"), R(60, "temp=95")];
    s.extend((3..20).map(|i| R(i * 20, if i % 2 == 0 { "temp=80" } else { "temp=86" })));
    check(HOT, &s, "raise@60");
}

#[test]
fn without_a_clear_condition_the_fault_clears_when_the_raise_ends() {
    let rule = r#"raise = { threshold = { metric = "temp", op = ">", value = 90 } }
clear_hold = "10s""#;
    check(rule, &[R(0, "temp=91"), R(5, "temp=90"), R(14, "temp=50"), R(15, "temp=50")], "raise@0 clear@15");
}

#[test]
fn range_outside_and_inside() {
    let rule = r#"raise = { range = { metric = "temp", min = 10, max = 20 } }
clear = { range = { metric = "temp", min = 12, max = 18, outside = false } }"#;
    check(
        rule,
        &[R(0, "temp=15"), R(1, "temp=21"), R(2, "temp=19"), R(3, "temp=17"), R(4, "temp=9")],
        "raise@1 clear@3 raise@4",
    );
}

#[test]
fn rate_is_measured_over_its_window() {
    let rule = r#"raise = { rate = { metric = "level", op = "<", value = -8, per = "1h", window = "30m" } }
clear = { rate = { metric = "level", op = ">", value = -2, per = "1h", window = "30m" } }"#;
    // Falling 20 %/h: the first window completes at 30 min.
    let falling = [R(0, "level=100"), R(600, "level=96.7"), R(1200, "level=93.3"), R(1800, "level=90")];
    check(rule, &falling, "raise@1800");
    // Falling 4 %/h: under the threshold.
    check(rule, &[R(0, "level=100"), R(1800, "level=98"), R(3600, "level=96")], "");
    // Leak then steady: the next full window clears it.
    check(rule, &[R(0, "level=100"), R(1800, "level=90"), R(3600, "level=90")], "raise@1800 clear@3600");
}

#[test]
fn a_guard_that_drops_restarts_the_rate_window() {
    let rule = r#"when = { threshold = { metric = "a", op = "<", value = 0.1 } }
raise = { rate = { metric = "level", op = "<", value = -8, per = "1h", window = "30m" } }"#;
    // A draw (a = 8) in the middle of the window: the drop it causes is not a leak.
    let s = [
        R(0, "a=0 level=100"),
        R(600, "a=8 level=80"),
        R(900, "a=0 level=80"),
        R(1800, "a=0 level=80"),
        R(2700, "a=0 level=79.9"),
    ];
    check(rule, &s, "");
}

#[test]
fn a_false_guard_freezes_the_fault_instead_of_clearing_it() {
    let rule = r#"when = { threshold = { metric = "door", op = "==", value = true } }
raise = { threshold = { metric = "temp", op = "<", value = 5 } }"#;
    // Raised while the guard holds; the guard drops (no verdict); the guard returns and the value is fine.
    let s =
        [R(0, "door=true temp=1"), R(10, "door=false temp=1"), R(20, "door=false temp=50"), R(30, "door=true temp=50")];
    check(rule, &s, "raise@0 clear@30");
}

#[test]
fn stuck_values_raise_on_the_tick_and_clear_when_they_move() {
    let rule = r#"raise = { stuck = { metric = "temp", for = "1h", tolerance = 0.05 } }"#;
    let s = [R(0, "temp=40"), R(1800, "temp=40.01"), Tick(3599), Tick(3600), R(3700, "temp=41")];
    check(rule, &s, "raise@3600 clear@3700");
}

#[test]
fn difference_and_ratio() {
    let diff = r#"raise = { difference = { a = "a", b = "b", op = "<", value = 10 } }"#;
    check(diff, &[R(0, "a=50 b=20"), R(1, "a=25 b=20"), R(2, "a=40 b=20")], "raise@1 clear@2");
    let ratio = r#"raise = { ratio = { a = "a", b = "b", op = "<", value = 0.85 } }"#;
    // b = 0 cannot tell: neither raise nor clear.
    check(ratio, &[R(0, "a=40 b=40"), R(1, "a=30 b=40"), R(2, "a=30 b=0"), R(3, "a=40 b=40")], "raise@1 clear@3");
}

#[test]
fn flag_bits() {
    let rule = r#"raise = { flag = { metric = "flags", bit = 2 } }"#;
    check(rule, &[R(0, "flags=3"), R(1, "flags=4"), R(2, "flags=7"), R(3, "flags=8")], "raise@1 clear@3");
    let clear_bit = r#"raise = { flag = { metric = "flags", bit = 0, set = false } }"#;
    check(clear_bit, &[R(0, "flags=1"), R(1, "flags=2")], "raise@1");
}

#[test]
fn device_reported_codes() {
    let rule = r#"raise = { code = { code = "E1" } }
clear_hold = "5s""#;
    check(rule, &[Code(0, "E1", true), Code(3, "E1", false), R(6, "temp=1"), R(8, "temp=1")], "raise@0 clear@8");
}

#[test]
fn no_data_raises_while_the_device_reports_other_metrics() {
    let rule = r#"raise = { no_data = { metric = "temp", for = "15m" } }"#;
    let s = [R(0, "temp=20"), R(600, "level=50"), Tick(899), Tick(900), R(960, "temp=21")];
    check(rule, &s, "raise@900 clear@960");
}

#[test]
fn unknown_values_neither_raise_nor_clear() {
    check(HOT, &[R(0, "level=1"), R(100, "level=2")], "");
    let all = r#"raise = { all = [
  { threshold = { metric = "temp", op = ">", value = 90 } },
  { threshold = { metric = "a", op = ">", value = 1 } },
] }"#;
    check(all, &[R(0, "temp=95"), R(10, "temp=95"), R(20, "a=2")], "raise@20");
    let any = r#"raise = { any = [
  { threshold = { metric = "temp", op = ">", value = 90 } },
  { threshold = { metric = "a", op = ">", value = 1 } },
] }"#;
    check(any, &[R(0, "temp=95"), R(10, "temp=50"), R(20, "a=0")], "raise@0 clear@20");
    let not = r#"raise = { not = { threshold = { metric = "temp", op = ">", value = 0 } } }"#;
    check(not, &[R(0, "a=1"), R(1, "temp=-1"), R(2, "temp=1")], "raise@1 clear@2");
}

#[test]
fn booleans_compare_as_one_and_zero() {
    let rule = r#"raise = { threshold = { metric = "door", op = "==", value = true } }"#;
    check(rule, &[R(0, "door=false"), R(1, "door=true"), R(2, "door=false")], "raise@1 clear@2");
}

#[test]
fn readings_older_than_the_newest_are_ignored() {
    let p = profile_with(&format!("[[kinds.t.rules]]\ncode = \"f\"\ntier = 2\ntitle = \"F\"\n{HOT}"));
    let mut st = DeviceState::new(&p, 0);
    let mut out = Vec::new();
    let t = p.metric("temp").unwrap();
    assert!(st.apply(&p, 10_000, &[(t, Value::Num(20.0))], &mut out));
    assert!(!st.apply(&p, 5_000, &[(t, Value::Num(99.0))], &mut out));
    assert_eq!(st.value(t), Some(20.0));
}

#[test]
fn presence_goes_offline_after_the_heartbeat_and_major_after_ten_minutes() {
    let p = profile();
    let mut st = DeviceState::new(&p, 0);
    assert_eq!(st.check_presence(&p, 60_000), None, "exactly the window is still online");
    assert_eq!(st.check_presence(&p, 60_001), Some(PresenceChange::Offline { since: 0 }));
    assert_eq!(st.check_presence(&p, 120_000), None, "offline is raised once");
    assert_eq!(st.check_presence(&p, 600_000), None, "10 minutes exactly is not past 10 minutes");
    assert_eq!(st.check_presence(&p, 600_001), Some(PresenceChange::Promoted { since: 0 }));
    assert_eq!(st.check_presence(&p, 700_000), None, "promoted once");
    assert_eq!(st.seen(700_500), Some(PresenceChange::Online));
    assert_eq!(st.seen(701_000), None);
    assert_eq!(st.check_presence(&p, 750_000), None);
}

#[test]
fn a_last_will_takes_the_device_offline_at_once() {
    let p = profile();
    let mut st = DeviceState::new(&p, 0);
    st.seen(5_000);
    assert_eq!(st.said_offline(&p, 6_000), Some(PresenceChange::Offline { since: 5_000 }));
    assert_eq!(st.said_offline(&p, 7_000), None);
    assert_eq!(st.check_presence(&p, 605_001), Some(PresenceChange::Promoted { since: 5_000 }));
}

#[test]
fn restored_faults_clear_but_do_not_raise_again() {
    let p = profile_with(&format!("[[kinds.t.rules]]\ncode = \"f\"\ntier = 2\ntitle = \"F\"\n{HOT}"));
    let mut st = DeviceState::new(&p, 0);
    st.restore_active(0);
    let t = p.metric("temp").unwrap();
    let mut out = Vec::new();
    st.apply(&p, 0, &[(t, Value::Num(99.0))], &mut out);
    st.apply(&p, 120_000, &[(t, Value::Num(99.0))], &mut out);
    assert!(out.is_empty(), "still active, not raised twice: {out:?}");
    st.apply(&p, 130_000, &[(t, Value::Num(50.0))], &mut out);
    st.apply(&p, 160_000, &[(t, Value::Num(50.0))], &mut out);
    assert_eq!(out, vec![RuleChange { rule: 0, raised: false, at: 160_000 }]);
}

#[test]
fn every_shipped_profile_keeps_device_state_under_one_kilobyte() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kinds");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for p in crate::config::profiles_from_str(&path.display().to_string(), &text).unwrap() {
            let st = DeviceState::new(&p, 0);
            assert!(st.footprint() < 1024, "{}: {} bytes", p.name, st.footprint());
            n += 1;
        }
    }
    assert_eq!(n, 4);
}

#[test]
fn descriptions_name_the_values_that_hold() {
    let p = profile_with(
        r#"[[kinds.t.rules]]
code = "f"
tier = 1
title = "F"
raise = { any = [
  { flag = { metric = "flags", bit = 0 } },
  { threshold = { metric = "door", op = "==", value = true } },
] }"#,
    );
    let mut st = DeviceState::new(&p, 0);
    let mut out = Vec::new();
    st.apply(
        &p,
        0,
        &[(p.metric("flags").unwrap(), Value::Num(0.0)), (p.metric("door").unwrap(), Value::Bool(true))],
        &mut out,
    );
    let mut d = String::new();
    p.rules[0].raise.describe(&st, &p, &mut d);
    assert_eq!(d, "door = true (== true)");
}
