//! Physical models of the four device kinds: plausible signals over a day,
//! and the faults that bend them.

use std::collections::BTreeSet;
use std::f64::consts::PI;

use chrono::{DateTime, FixedOffset, Timelike};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Recorder,
    SolarHeater,
    LedDisplay,
    Lighting,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Recorder, Kind::SolarHeater, Kind::LedDisplay, Kind::Lighting];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Recorder => "recorder",
            Kind::SolarHeater => "solar_heater",
            Kind::LedDisplay => "led_display",
            Kind::Lighting => "lighting",
        }
    }
    /// The prefix of device ids the simulator gives this kind.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Kind::Recorder => "rec",
            Kind::SolarHeater => "swh",
            Kind::LedDisplay => "led",
            Kind::Lighting => "lit",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s || k.id_prefix() == s)
    }
    /// The faults this kind can be made to show.
    pub fn faults(self) -> &'static [&'static str] {
        match self {
            Kind::Recorder => &[
                "storage_failure",
                "recording_stopped",
                "storage_nearly_full",
                "battery_low",
                "clock_drift",
                "over_temperature",
                "offline",
            ],
            Kind::SolarHeater => &[
                "tank_leak",
                "tube_broken",
                "insulation_failure",
                "bracket_deformed",
                "over_temperature",
                "pump_failure",
                "sensor_fault",
                "offline",
            ],
            Kind::LedDisplay => {
                &["screen_dark", "cabinet_offline", "dead_pixels", "over_temperature", "psu_out_of_range", "offline"]
            }
            Kind::Lighting => {
                &["all_dark", "circuit_failed", "lamps_failed", "leakage", "lit_outside_schedule", "offline"]
            }
        }
    }
    /// The device-reported alarm code a fault also raises, if the device has one.
    pub fn event_code(self, fault: &str) -> Option<&'static str> {
        match (self, fault) {
            (Kind::Recorder, "storage_failure") => Some("SD_ERR"),
            (Kind::SolarHeater, "sensor_fault") => Some("E1"),
            _ => None,
        }
    }
}

/// Hours since local midnight, fractional.
fn hour(t: DateTime<FixedOffset>) -> f64 {
    t.hour() as f64 + t.minute() as f64 / 60.0 + t.second() as f64 / 3600.0
}

/// Clear-sky irradiance (W/m²) by local hour: a half sine from 06:00 to 18:00.
pub fn clear_sky(h: f64) -> f64 {
    if (6.0..18.0).contains(&h) { 1000.0 * (PI * (h - 6.0) / 12.0).sin() } else { 0.0 }
}

/// Air temperature (°C): coolest at dawn, warmest mid-afternoon.
pub fn ambient(h: f64) -> f64 {
    18.0 + 7.0 * (PI * (h - 9.0) / 12.0).sin()
}

fn r(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// One device's physical state.
#[derive(Debug, Clone)]
pub enum Model {
    Recorder { storage: f64, battery: f64, drift: f64 },
    SolarHeater { tank: f64, collector: f64, level: f64, cloud: f64, pump: bool, filling: bool },
    LedDisplay { dead_ppm: f64, temp: f64 },
    Lighting { leakage: f64 },
}

impl Model {
    pub fn new(kind: Kind, rng: &mut StdRng) -> Model {
        match kind {
            Kind::Recorder => Model::Recorder {
                storage: rng.random_range(35.0..70.0),
                battery: rng.random_range(90.0..100.0),
                drift: rng.random_range(-0.5..0.5),
            },
            Kind::SolarHeater => Model::SolarHeater {
                tank: rng.random_range(40.0..55.0),
                collector: 20.0,
                level: rng.random_range(85.0..100.0),
                cloud: 0.9,
                pump: false,
                filling: false,
            },
            Kind::LedDisplay => Model::LedDisplay { dead_ppm: rng.random_range(2.0..20.0), temp: 30.0 },
            Kind::Lighting => Model::Lighting { leakage: rng.random_range(2.0..8.0) },
        }
    }

    /// Advances the model by `dt` seconds to local time `t` and returns its metrics.
    pub fn step(
        &mut self,
        t: DateTime<FixedOffset>,
        dt: f64,
        rng: &mut StdRng,
        faults: &BTreeSet<String>,
    ) -> Map<String, Value> {
        let f = |name: &str| faults.contains(name);
        let h = hour(t);
        let hours = dt / 3600.0;
        let amb = ambient(h) + rng.random_range(-0.3..0.3);
        let mut m = Map::new();
        match self {
            Model::Recorder { storage, battery, drift } => {
                // Evidence is kept, not overwritten: storage fills ~2 %/day until offloaded.
                *storage = (*storage + 2.0 * hours / 24.0).min(99.0);
                *battery = (*battery + rng.random_range(-0.05..0.05)).clamp(80.0, 100.0);
                *drift = (*drift + rng.random_range(-0.01..0.01)).clamp(-1.0, 1.0);
                let storage_v = if f("storage_nearly_full") { 95.5 } else { *storage };
                let failed = f("storage_failure");
                m.insert("storage_used_pct".into(), json!(r(storage_v, 2)));
                m.insert("recording".into(), json!(!(failed || f("recording_stopped"))));
                m.insert("status_flags".into(), json!(if failed { 1 } else { 0 }));
                let (bat, charging) = if f("battery_low") { (12.0, false) } else { (*battery, true) };
                m.insert("battery_pct".into(), json!(r(bat, 1)));
                m.insert("charging".into(), json!(charging));
                m.insert("clock_offset_s".into(), json!(r(if f("clock_drift") { 42.0 } else { *drift }, 2)));
                let temp = if f("over_temperature") { 78.0 } else { amb + 12.0 };
                m.insert("temp_c".into(), json!(r(temp + rng.random_range(-0.2..0.2), 1)));
            }
            Model::SolarHeater { tank, collector, level, cloud, pump, filling } => {
                *cloud = (*cloud + rng.random_range(-0.02..0.02)).clamp(0.55, 1.0);
                let irr = clear_sky(h) * *cloud;
                let tube_ok = !f("tube_broken");
                // The collector heads for ambient plus what the sun gives it; broken tubes lose their vacuum.
                let gain = if tube_ok { 0.085 } else { 0.004 };
                let target = if *pump { (*tank + irr * 0.02).max(amb) } else { amb + irr * gain };
                *collector += (target - *collector) * (1.0 - (-dt / 600.0).exp());
                // Differential controller: pump on at +8 K, off at +3 K.
                if *collector - *tank > 8.0 && tube_ok {
                    *pump = true;
                } else if *collector - *tank < 3.0 {
                    *pump = false;
                }
                // Water draws: morning showers and evening use.
                let drawing = (7.0..7.25).contains(&h) || (20.0..20.5).contains(&h);
                let draw = if drawing { 8.0 } else { 0.0 };
                let mut dtank = 0.0;
                if *pump && !f("pump_failure") {
                    dtank += irr / 1000.0 * 10.0 * hours;
                }
                let loss_k = if f("insulation_failure") { 0.15 } else { 0.02 };
                dtank -= (*tank - amb) * loss_k * hours;
                if draw > 0.0 {
                    dtank -= draw * dt / 60.0 / 200.0 * (*tank - 15.0);
                }
                *tank += dtank;
                if f("over_temperature") {
                    *tank = 98.0;
                }
                *tank = tank.clamp(-10.0, 99.0);
                // Level: draws and leaks lower it; the float valve refills below 60 % up to 100 %.
                *level -= draw * dt / 60.0 / 200.0 * 100.0;
                if f("tank_leak") {
                    *level -= 20.0 * hours;
                }
                if *level < 60.0 {
                    *filling = true;
                }
                if *filling {
                    *level += 5.0 * dt / 60.0;
                    if *level >= 100.0 {
                        *filling = false;
                    }
                }
                *level = level.clamp(0.0, 100.0);
                let sensor = f("sensor_fault");
                m.insert("irradiance_wm2".into(), json!(r(irr, 0)));
                m.insert("ambient_temp_c".into(), json!(r(amb, 1)));
                m.insert("collector_temp_c".into(), json!(r(*collector, 1)));
                m.insert("tank_temp_c".into(), json!(r(if sensor { -52.0 } else { *tank }, 2)));
                m.insert("tank_level_pct".into(), json!(r(*level, 1)));
                m.insert("draw_flow_lpm".into(), json!(draw));
                m.insert("fill_valve_open".into(), json!(*filling));
                m.insert("pump_on".into(), json!(*pump));
                let flow = if *pump && !f("pump_failure") { 6.0 + rng.random_range(-0.2..0.2) } else { 0.0 };
                m.insert("pump_flow_lpm".into(), json!(r(flow, 2)));
                m.insert("heater_on".into(), json!(false));
                let tilt = if f("bracket_deformed") { 36.5 } else { 45.0 };
                m.insert("tilt_deg".into(), json!(r(tilt + rng.random_range(-0.1..0.1), 2)));
                m.insert("sensor_flags".into(), json!(if sensor { 1 } else { 0 }));
            }
            Model::LedDisplay { dead_ppm, temp } => {
                let on = (7.0..23.0).contains(&h);
                *dead_ppm = (*dead_ppm + 0.5 * hours / 24.0).min(1e6);
                let dark = f("screen_dark");
                let brightness = if !on || dark {
                    0.0
                } else if (8.0..18.0).contains(&h) {
                    85.0
                } else {
                    45.0
                };
                let target = amb + 8.0 + brightness * 0.15;
                *temp += (target - *temp) * (1.0 - (-dt / 900.0).exp());
                m.insert("scheduled_on".into(), json!(on));
                m.insert("signal".into(), json!(on && !dark));
                m.insert("brightness_pct".into(), json!(brightness));
                m.insert("cabinets_total".into(), json!(24));
                m.insert("cabinets_online".into(), json!(if f("cabinet_offline") { 23 } else { 24 }));
                let ppm = if f("dead_pixels") { 260.0 } else { *dead_ppm };
                m.insert("dead_pixel_ppm".into(), json!(r(ppm, 1)));
                m.insert("cabinet_temp_c".into(), json!(r(if f("over_temperature") { 68.0 } else { *temp }, 1)));
                let v = if f("psu_out_of_range") { 4.2 } else { 5.05 + rng.random_range(-0.04..0.04) };
                m.insert("psu_voltage_v".into(), json!(r(v, 3)));
            }
            Model::Lighting { leakage } => {
                // Dusk to dawn.
                let scheduled = !(5.5..18.5).contains(&h);
                let lit_forced = f("lit_outside_schedule");
                let on = (scheduled || lit_forced) && !f("all_dark");
                let total = 4u32;
                let lit = if !on {
                    0
                } else if f("circuit_failed") {
                    total - 1
                } else {
                    total
                };
                let rated = 40.0;
                let mut current = lit as f64 * 10.0 * 0.98 + rng.random_range(-0.2..0.2);
                if f("lamps_failed") && on {
                    current *= 0.72;
                }
                if !on {
                    current = 0.15;
                }
                *leakage = (*leakage + rng.random_range(-0.1..0.1)).clamp(1.0, 10.0);
                m.insert("scheduled_on".into(), json!(scheduled));
                m.insert("circuits_total".into(), json!(total));
                m.insert("circuits_lit".into(), json!(lit));
                m.insert("total_current_a".into(), json!(r(current.max(0.0), 2)));
                m.insert("rated_current_a".into(), json!(rated));
                m.insert("leakage_ma".into(), json!(r(if f("leakage") { 45.0 } else { *leakage }, 1)));
                m.insert("voltage_v".into(), json!(r(220.0 + rng.random_range(-3.0..3.0), 1)));
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn at(h: u32) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(&format!("2026-06-21T{h:02}:00:00+08:00")).unwrap()
    }

    /// Steps a model through a day in one-minute steps and returns the metrics at each hour.
    fn day(kind: Kind, faults: &[&str]) -> Vec<Map<String, Value>> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut m = Model::new(kind, &mut rng);
        let faults: BTreeSet<String> = faults.iter().map(|s| s.to_string()).collect();
        let start = at(0);
        let mut out = Vec::new();
        for minute in 0..24 * 60 {
            let t = start + chrono::TimeDelta::minutes(minute);
            let v = m.step(t, 60.0, &mut rng, &faults);
            if minute % 60 == 0 {
                out.push(v);
            }
        }
        out
    }

    fn num(m: &Map<String, Value>, k: &str) -> f64 {
        m[k].as_f64().unwrap()
    }

    #[test]
    fn the_sun_heats_the_tank_by_day_and_it_cools_by_night() {
        let d = day(Kind::SolarHeater, &[]);
        assert!(num(&d[12], "irradiance_wm2") > 500.0);
        assert_eq!(num(&d[2], "irradiance_wm2"), 0.0);
        assert!(num(&d[16], "tank_temp_c") > num(&d[9], "tank_temp_c") + 5.0, "tank should warm through the day");
        assert!(num(&d[5], "tank_temp_c") < num(&d[1], "tank_temp_c"), "tank should cool overnight");
        assert!(num(&d[12], "collector_temp_c") - num(&d[12], "ambient_temp_c") > 10.0);
    }

    #[test]
    fn broken_tubes_leave_the_collector_near_ambient() {
        let d = day(Kind::SolarHeater, &["tube_broken"]);
        assert!(num(&d[12], "collector_temp_c") - num(&d[12], "ambient_temp_c") < 8.0);
    }

    #[test]
    fn bad_insulation_loses_heat_faster_at_night() {
        let good = day(Kind::SolarHeater, &[]);
        let bad = day(Kind::SolarHeater, &["insulation_failure"]);
        let drop = |d: &[Map<String, Value>]| num(&d[2], "tank_temp_c") - num(&d[4], "tank_temp_c");
        assert!(drop(&bad) > 5.0, "bad insulation: {} K in 2 h", drop(&bad));
        assert!(drop(&good) < 2.5, "good insulation: {} K in 2 h", drop(&good));
    }

    #[test]
    fn lights_follow_the_schedule_and_screens_their_hours() {
        let lit = day(Kind::Lighting, &[]);
        assert_eq!(num(&lit[22], "circuits_lit"), 4.0);
        assert_eq!(num(&lit[12], "circuits_lit"), 0.0);
        assert!(num(&lit[22], "total_current_a") > 35.0);
        let led = day(Kind::LedDisplay, &[]);
        assert_eq!(led[12]["signal"], json!(true));
        assert_eq!(led[3]["scheduled_on"], json!(false));
    }

    #[test]
    fn recorder_storage_fills_and_faults_show() {
        let d = day(Kind::Recorder, &[]);
        assert!(num(&d[23], "storage_used_pct") > num(&d[0], "storage_used_pct"));
        let f = day(Kind::Recorder, &["storage_failure"]);
        assert_eq!(f[3]["recording"], json!(false));
        assert_eq!(num(&f[3], "status_flags"), 1.0);
    }
}
