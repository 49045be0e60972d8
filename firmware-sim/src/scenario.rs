//! Scenario files: faults to inject and clear at given times after start.
//!
//! ```toml
//! [[step]]
//! at = "10s"              # real time after the simulator starts
//! device = "rec-001"
//! inject = "storage_failure"
//!
//! [[step]]
//! at = "50s"
//! device = "rec-001"
//! clear = "storage_failure"   # or "all"
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::fleet::{Command, DeviceSpec};
use crate::models::Kind;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub step: Vec<RawStep>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub at: String,
    pub device: String,
    pub inject: Option<String>,
    pub clear: Option<String>,
}

/// A command due at a time after start.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub command: Command,
}

/// Parses and checks a scenario against the fleet.
pub fn parse(text: &str, devices: &[DeviceSpec]) -> Result<Vec<Step>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut steps = Vec::new();
    for (i, s) in file.step.into_iter().enumerate() {
        let n = i + 1;
        let at = humantime::parse_duration(&s.at).map_err(|e| format!("step {n}: at = {:?}: {e}", s.at))?;
        let dev = devices
            .iter()
            .find(|d| d.id == s.device)
            .ok_or_else(|| format!("step {n}: no simulated device `{}`", s.device))?;
        let command = match (s.inject, s.clear) {
            (Some(f), None) => {
                check_fault(dev.kind, &f).map_err(|e| format!("step {n}: {e}"))?;
                Command::Inject { device: s.device, fault: f }
            }
            (None, Some(f)) if f == "all" => Command::Clear { device: s.device, fault: None },
            (None, Some(f)) => {
                check_fault(dev.kind, &f).map_err(|e| format!("step {n}: {e}"))?;
                Command::Clear { device: s.device, fault: Some(f) }
            }
            _ => return Err(format!("step {n}: give exactly one of inject or clear")),
        };
        steps.push(Step { at, command });
    }
    steps.sort_by_key(|s| s.at);
    Ok(steps)
}

pub fn check_fault(kind: Kind, fault: &str) -> Result<(), String> {
    if kind.faults().contains(&fault) {
        Ok(())
    } else {
        Err(format!("a {} cannot show `{fault}`; it can show: {}", kind.name(), kind.faults().join(", ")))
    }
}

/// The demo's story: within two minutes, faults of every kind and all three
/// tiers, one recovery and one re-occurrence.
pub fn demo(devices: &[DeviceSpec]) -> Vec<Step> {
    let first = |k: Kind, n: usize| devices.iter().filter(|d| d.kind == k).nth(n).map(|d| d.id.clone());
    let mut steps = Vec::new();
    let mut add = |secs: u64, dev: Option<String>, fault: &str, inject: bool| {
        if let Some(device) = dev {
            let fault = fault.to_string();
            let command =
                if inject { Command::Inject { device, fault } } else { Command::Clear { device, fault: Some(fault) } };
            steps.push(Step { at: Duration::from_secs(secs), command });
        }
    };
    // Tier 1: key data lost; a safety hazard.
    add(10, first(Kind::Recorder, 0), "storage_failure", true);
    add(15, first(Kind::Lighting, 0), "leakage", true);
    // Tier 3: a tank sensor reads nonsense.
    add(20, first(Kind::SolarHeater, 0), "sensor_fault", true);
    // Tier 2: part of a screen goes wrong.
    add(25, first(Kind::LedDisplay, 0), "psu_out_of_range", true);
    add(30, first(Kind::LedDisplay, 1).or(first(Kind::LedDisplay, 0)), "cabinet_offline", true);
    add(12, first(Kind::Recorder, 1).or(first(Kind::Recorder, 0)), "battery_low", true);
    // Tier 2 at once (its last will), tier 1 once the outage passes 10 minutes.
    add(40, first(Kind::Lighting, 1).or(first(Kind::Lighting, 0)), "offline", true);
    // The leak clears (recovered), comes back (the same ticket counts it), and clears again.
    add(45, first(Kind::Lighting, 0), "leakage", false);
    add(90, first(Kind::Lighting, 0), "leakage", true);
    add(110, first(Kind::Lighting, 0), "leakage", false);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Vec<DeviceSpec> {
        vec![
            DeviceSpec { id: "rec-001".into(), kind: Kind::Recorder, site: "s".into() },
            DeviceSpec { id: "lit-001".into(), kind: Kind::Lighting, site: "s".into() },
        ]
    }

    #[test]
    fn steps_parse_in_time_order() {
        let s = parse(
            "[[step]]\nat = \"20s\"\ndevice = \"rec-001\"\nclear = \"all\"\n[[step]]\nat = \"5s\"\ndevice = \"lit-001\"\ninject = \"leakage\"\n",
            &fleet(),
        )
        .unwrap();
        assert_eq!(s[0].at, Duration::from_secs(5));
        assert_eq!(s[0].command, Command::Inject { device: "lit-001".into(), fault: "leakage".into() });
        assert_eq!(s[1].command, Command::Clear { device: "rec-001".into(), fault: None });
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse("[[step]]\nat = \"5s\"\ndevice = \"rec-001\"\ninject = \"leakage\"\n", &fleet()).unwrap_err();
        assert!(e.contains("a recorder cannot show `leakage`"), "{e}");
        let e = parse("[[step]]\nat = \"5s\"\ndevice = \"x\"\ninject = \"leakage\"\n", &fleet()).unwrap_err();
        assert!(e.contains("no simulated device `x`"), "{e}");
        let e = parse("[[step]]\nat = \"soon\"\ndevice = \"rec-001\"\ninject = \"offline\"\n", &fleet()).unwrap_err();
        assert!(e.contains("at = \"soon\""), "{e}");
    }

    #[test]
    fn the_demo_covers_every_kind_and_recovers_and_recurs() {
        let devs: Vec<DeviceSpec> = Kind::ALL
            .iter()
            .map(|k| DeviceSpec { id: format!("{}-001", k.id_prefix()), kind: *k, site: "s".into() })
            .collect();
        let steps = demo(&devs);
        assert!(steps.iter().all(|s| s.at <= Duration::from_secs(120)));
        for k in Kind::ALL {
            let id = format!("{}-001", k.id_prefix());
            assert!(
                steps.iter().any(|s| matches!(&s.command, Command::Inject { device, .. } if *device == id)),
                "{id}"
            );
        }
        let leak = |inject: bool| {
            steps
                .iter()
                .filter(|s| match &s.command {
                    Command::Inject { fault, .. } => inject && fault == "leakage",
                    Command::Clear { fault, .. } => !inject && fault.as_deref() == Some("leakage"),
                })
                .count()
        };
        assert_eq!((leak(true), leak(false)), (2, 2));
    }
}
