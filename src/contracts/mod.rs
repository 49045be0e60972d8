//! Service contracts as configured: which devices each covers, when it is
//! in force, and the clocks it promises per tier. Pure.

mod clock;
mod plan;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::calendar::Calendar;
use crate::domain::{CustomerId, DeviceId, SiteId, Tier};
pub(crate) use clock::ClockSpec;
pub(crate) use plan::{After, Anchor, Cadence, Measure, Plan, Step, due_dates};

/// The clocks of one tier; a missing clock is not promised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierClocks {
    pub acknowledge: Option<ClockSpec>,
    pub on_site: Option<ClockSpec>,
    pub resolve: Option<ClockSpec>,
    /// From the opening: fixed by then, or handed on to the field (a phone fix, 004).
    pub remote_fix: Option<ClockSpec>,
    /// From the first arrival on site: fixed by then (an on-site replacement, 004).
    pub on_site_fix: Option<ClockSpec>,
    /// From the unit's arrival at the factory: back by then (002).
    pub factory: Option<ClockSpec>,
    /// In order of level.
    pub escalation: Vec<Escalation>,
}

crate::domain::named! {
    /// The milestone that stops an escalation step.
    pub enum Milestone {
        Acknowledged = "acknowledged",
        OnSite = "on_site",
        Resolved = "resolved",
    }
}

/// One step of a tier's escalation chain.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Escalation {
    pub level: u8,
    /// After the ticket opened, 7x24.
    #[serde(serialize_with = "ser_duration")]
    #[schema(value_type = String, example = "2h")]
    pub after: std::time::Duration,
    pub unless: Milestone,
    pub to: String,
    pub channel: String,
}

fn ser_duration<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// Which of the customer's devices a contract covers; empty lists cover all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Covers {
    pub sites: Vec<String>,
    pub kinds: Vec<String>,
    pub devices: Vec<String>,
}

crate::domain::named! {
    /// A part of the repair record a contract can require on resolve.
    pub enum RepairField {
        Cause = "cause",
        WorkDone = "work_done",
        Parts = "parts",
        Labour = "labour",
        Travel = "travel",
        Cost = "cost",
        Confirmation = "confirmation",
        Signature = "signature",
        Photos = "photos",
        /// The customer's consent to the quote before the work, for a charged repair.
        Consent = "consent",
        /// The receipt's number, for a charged repair.
        Receipt = "receipt",
    }
}

/// Kept reports mailed to the customer, as PDFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMail {
    pub to: Vec<String>,
    /// Language tags: `zh-CN`, `en`.
    pub langs: Vec<String>,
    /// The email channel that carries them.
    pub channel: String,
}

#[derive(Debug, Clone)]
pub struct Contract {
    pub id: String,
    pub title: String,
    /// The title in Chinese (the English one when the config gives no other).
    pub title_zh: String,
    /// Who gives the service: (English, Chinese).
    pub supplier: Option<(String, String)>,
    /// The share of tickets expected within each clock, 0–1.
    pub sla_target: f64,
    /// The share of its delivered units' parts to keep in stock (004: at least 3 %).
    pub spares_share: Option<f64>,
    /// Who each kept report is mailed to.
    pub report_mail: Option<ReportMail>,
    pub customer: CustomerId,
    pub starts: NaiveDate,
    pub ends: Option<NaiveDate>,
    pub calendar: Option<Arc<Calendar>>,
    pub covers: Covers,
    /// Tier 1, 2, 3.
    pub tiers: [TierClocks; 3],
    pub loaner_on_resolve_breach: bool,
    /// A unit at the factory owes the customer a loaner while it is away.
    pub loaner_at_factory: bool,
    /// A dispatched ticket without progress this long goes to `inaction_to`.
    pub inaction: Option<std::time::Duration>,
    pub inaction_to: String,
    pub warranty: Warranty,
    /// Causes a person may name to make a repair billable.
    pub billable: Vec<String>,
    /// Of those, the causes charged at cost only.
    pub at_cost: Vec<String>,
    /// What the repair record of an on-site repair must hold on resolve.
    pub repair_requires: Vec<RepairField>,
    /// The fee scale shown to the customer before a charged repair: (English, Chinese).
    pub fee_scale: Option<(String, String)>,
    /// Out of warranty, wear parts at half their cost (004).
    pub wear_parts_half_price: bool,
    /// After its end, its devices are still repaired at cost, with no clock.
    pub lifetime_repair_at_cost: bool,
    /// A fault back on a device within this long after its repair means the repair failed.
    pub repeat_window: std::time::Duration,
    /// This many failed repairs within `repeat_window`, in warranty, and the unit is replaced
    /// (004: "维修2次以上仍不能修复的…更换": two or more).
    pub replace_at_failed_repairs: u32,
    /// The visits it promises.
    pub plans: Vec<Plan>,
    /// The reports made for its customer after each whole week, month, quarter or year.
    pub reports: Vec<Cadence>,
}

/// A warranty period from the acceptance date, in calendar days or months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Days(u32),
    Months(u32),
}

impl Period {
    /// Parses "90 days", "1 week", "24 months", "3 years", "1 year".
    pub fn parse(s: &str) -> Option<Period> {
        let (n, unit) = s.trim().split_once(' ')?;
        let n: u32 = n.trim().parse().ok()?;
        match unit.trim() {
            "day" | "days" => Some(Period::Days(n)),
            "week" | "weeks" => Some(Period::Days(n.checked_mul(7)?)),
            "month" | "months" => Some(Period::Months(n)),
            "year" | "years" => Some(Period::Months(n.checked_mul(12)?)),
            _ => None,
        }
    }
    /// `k` times this period.
    pub fn times(self, k: u32) -> Option<Period> {
        Some(match self {
            Period::Days(n) => Period::Days(n.checked_mul(k)?),
            Period::Months(n) => Period::Months(n.checked_mul(k)?),
        })
    }

    /// The first day out of warranty for a period starting on `from`; in general `from` plus the
    /// period, a month on from the 31st landing on the month's last day.
    pub fn end(self, from: NaiveDate) -> Option<NaiveDate> {
        match self {
            Period::Days(n) => from.checked_add_days(chrono::Days::new(n as u64)),
            Period::Months(n) => from.checked_add_months(chrono::Months::new(n)),
        }
    }
}

/// Warranty terms: periods per component class, and which faults concern which class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Warranty {
    pub periods: Vec<(String, Period)>,
    /// The class of faults not listed in `faults`.
    pub default: Option<String>,
    pub faults: Vec<(String, String)>,
    /// Class → normal life from acceptance (001 ¶18).
    pub normal_life: Vec<(String, Period)>,
}

/// A device's warranty on the day of a fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WarrantyStatus {
    /// The component class the fault concerns.
    pub component: Option<String>,
    pub in_warranty: bool,
    pub components: Vec<ComponentWarranty>,
    /// Out of warranty but within the component's normal life, which runs to this day: the
    /// failure may be an abnormally short life, replaced free once appraised (001 ¶18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_life_until: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ComponentWarranty {
    pub class: String,
    /// Last day covered.
    pub until: NaiveDate,
    pub in_warranty: bool,
}

/// The repeat-repair rule of a contract, as the store applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatRule {
    pub window: std::time::Duration,
    pub replace_at_failed_repairs: u32,
}

/// A ticket's deadlines, computed when it opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Deadlines {
    pub contract: Option<String>,
    /// Why the ticket has no clock, when it has none.
    pub no_clock: Option<String>,
    pub acknowledge_by: Option<DateTime<Utc>>,
    pub on_site_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    /// A clock that ran past the years its calendar knows, and what that means.
    pub calendar_gap: Option<String>,
}

/// What a contract needs to know of a device to say whether it covers it.
#[derive(Debug, Clone, Copy)]
pub struct Covered<'a> {
    pub id: &'a DeviceId,
    pub site: &'a SiteId,
    pub customer: &'a CustomerId,
    /// The name of the device's kind.
    pub kind: &'a str,
    pub accepted_on: NaiveDate,
}

impl Contract {
    /// How specifically the contract covers a device: 3 by id, 2 by site or kind, 1 customer-wide, 0 not.
    pub fn coverage(&self, device: Covered<'_>) -> u8 {
        let kind = device.kind;
        if *device.customer != self.customer {
            return 0;
        }
        let c = &self.covers;
        if c.devices.contains(&device.id.0) {
            return 3;
        }
        if !c.devices.is_empty() && c.sites.is_empty() && c.kinds.is_empty() {
            return 0;
        }
        let site_ok = c.sites.is_empty() || c.sites.contains(&device.site.0);
        let kind_ok = c.kinds.is_empty() || c.kinds.iter().any(|k| k == kind);
        match (site_ok && kind_ok, c.sites.is_empty() && c.kinds.is_empty()) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        }
    }

    /// The device's warranty per component class on `day`, and the class a fault `code` concerns.
    pub fn warranty_status(&self, device: Covered<'_>, code: &str, day: NaiveDate) -> WarrantyStatus {
        let components: Vec<ComponentWarranty> = self
            .warranty
            .periods
            .iter()
            .filter_map(|(class, p)| {
                let end = p.end(device.accepted_on)?;
                Some(ComponentWarranty { class: class.clone(), until: end.pred_opt()?, in_warranty: day < end })
            })
            .collect();
        let component = self
            .warranty
            .faults
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, class)| class.clone())
            .or_else(|| self.warranty.default.clone());
        let in_warranty = component.as_ref().is_some_and(|c| components.iter().any(|w| &w.class == c && w.in_warranty));
        let short_life_until = component
            .as_ref()
            .filter(|_| !in_warranty)
            .and_then(|c| self.warranty.normal_life.iter().find(|(k, _)| k == c))
            .and_then(|(_, life)| life.end(device.accepted_on))
            .filter(|end| day < *end)
            .and_then(|end| end.pred_opt());
        WarrantyStatus { component, in_warranty, components, short_life_until }
    }

    pub fn in_force(&self, day: NaiveDate) -> bool {
        day >= self.starts && self.ends.is_none_or(|e| day <= e)
    }

    pub fn clocks(&self, tier: Tier) -> &TierClocks {
        &self.tiers[tier.number() as usize - 1]
    }

    /// The deadlines of a ticket of `tier` opened at `at`.
    pub fn deadlines(&self, tier: Tier, at: DateTime<Utc>) -> Deadlines {
        let c = self.clocks(tier);
        let cal = self.calendar.as_deref();
        let by = |clock: Option<ClockSpec>| clock.and_then(|k| k.deadline(at, cal));
        let none =
            [c.acknowledge, c.on_site, c.resolve, c.remote_fix, c.on_site_fix, c.factory].iter().all(Option::is_none);
        let (acknowledge_by, on_site_by, resolve_by) = (by(c.acknowledge), by(c.on_site), by(c.resolve));
        // Only clocks counted on the calendar can run into a year it does not know.
        let gap = [(c.acknowledge, acknowledge_by), (c.on_site, on_site_by), (c.resolve, resolve_by)]
            .into_iter()
            .filter(|(spec, _)| spec.is_some_and(ClockSpec::needs_calendar))
            .find_map(|(_, due)| cal.zip(due).and_then(|(k, due)| k.gap(at, due)));
        Deadlines {
            contract: Some(self.id.clone()),
            no_clock: none.then(|| format!("contract {} promises no clock for tier {tier}; none runs", self.id)),
            acknowledge_by,
            on_site_by,
            resolve_by,
            calendar_gap: gap.zip(cal).map(|(day, k)| {
                format!(
                    "calendar {} knows no official schedule for {} (it ends on {}): the clock counts that year's \
                     weekdays only, its holidays and make-up days ignored; add next year's calendar file",
                    k.name,
                    chrono::Datelike::year(&day),
                    k.last_covered_day().map_or_else(String::new, |d| d.to_string())
                )
            }),
        }
    }
}

/// The contract that governs a device's tickets on `day`, or why there is none.
pub(crate) fn governing<'a>(
    contracts: &'a [Contract],
    device: Covered<'_>,
    day: NaiveDate,
) -> Result<&'a Contract, String> {
    let mut best: Option<(&Contract, u8)> = None;
    let mut expired: Option<&Contract> = None;
    for c in contracts {
        let cov = c.coverage(device);
        if cov == 0 {
            continue;
        }
        if !c.in_force(day) {
            expired.get_or_insert(c);
            continue;
        }
        if best.is_none_or(|(_, b)| cov > b) {
            best = Some((c, cov));
        }
    }
    match (best, expired) {
        (Some((c, _)), _) => Ok(c),
        (None, Some(c)) => Err(match c.ends {
            Some(e) if day > e && c.lifetime_repair_at_cost => {
                format!("contract {} ended on {e}; repairs go on at cost, with no clock", c.id)
            }
            Some(e) if day > e => format!("contract {} ended on {e}; no clock runs", c.id),
            _ => format!("contract {} starts on {}; no clock runs yet", c.id, c.starts),
        }),
        (None, None) => Err("no contract covers this device; no clock runs".to_string()),
    }
}

/// Deadlines for a ticket opened at `at`, on `day` at the device's site:
/// from the governing contract, or none with the reason.
pub(crate) fn deadlines_for(
    contracts: &[Contract],
    device: Covered<'_>,
    tier: Tier,
    at: DateTime<Utc>,
    day: NaiveDate,
) -> Deadlines {
    match governing(contracts, device, day) {
        Ok(c) => c.deadlines(tier, at),
        Err(why) => Deadlines { no_clock: Some(why), ..Deadlines::default() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;

    /// Local time (+08:00) to UTC.
    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{s}+08:00")).unwrap().to_utc()
    }

    fn fleet() -> Arc<Fleet> {
        crate::demo::config().unwrap().fleet
    }

    fn deadlines(f: &Fleet, device: &str, tier: Tier, at: DateTime<Utc>) -> Deadlines {
        f.deadlines(f.lookup(device).unwrap(), tier, at)
    }

    /// The deadline is exactly the one the contract promises.
    fn due(by: Option<DateTime<Utc>>, want: DateTime<Utc>) {
        assert_eq!(by, Some(want));
    }

    #[test]
    fn recorders_tender_answers_in_10_minutes_on_site_in_24_hours_fixed_in_36() {
        let f = fleet();
        let at = t("2026-06-01T10:00:00");
        let d = deadlines(&f, "rec-001", Tier::Major, at);
        assert_eq!(d.contract.as_deref(), Some("recorders-tender"));
        due(d.acknowledge_by, t("2026-06-01T10:10:00"));
        due(d.on_site_by, t("2026-06-02T10:00:00"));
        due(d.resolve_by, t("2026-06-02T22:00:00"));
        // 004's 15 minutes (L65, L68, L87, L115) over its table's 20, and 24 h on site for
        // every level (L65, L87).
        let minor = deadlines(&f, "rec-002", Tier::Minor, at);
        due(minor.acknowledge_by, t("2026-06-01T10:15:00"));
        due(minor.on_site_by, t("2026-06-02T10:00:00"));
        due(minor.resolve_by, t("2026-06-02T22:00:00"));
        let tender = f.contracts.iter().find(|c| c.id == "recorders-tender").unwrap();
        assert!(tender.wear_parts_half_price, "004 L5-L6: wear parts at half price");
        assert_eq!(tender.at_cost, ["user_damage"], "004 L5: man-made damage at cost only");
    }

    #[test]
    fn the_tender_and_the_heaters_repair_at_cost_for_life_after_their_end() {
        // 004 L6 "设备终身维修，只收取维修的成本费"; 002 L386 "终身提供维修服务".
        let f = fleet();
        for (device, after_end) in [("rec-001", "2029-01-10T10:00:00"), ("swh-001", "2027-07-01T10:00:00")] {
            let at = t(after_end);
            let d = deadlines(&f, device, Tier::Major, at);
            assert_eq!(d.acknowledge_by, None, "{device}: no clock after the contract");
            assert!(d.no_clock.as_deref().is_some_and(|m| m.contains("repairs go on at cost")), "{d:?}");
            let (status, rule) = f.warranty(f.lookup(device).unwrap(), "", at);
            let status = status.expect("still repaired");
            assert!(!status.in_warranty && rule.is_some(), "{device}: {status:?}");
            assert_eq!(crate::tickets::model::BillingClass::of_warranty(status.in_warranty).as_str(), "at_cost");
        }
        // Lighting promises nothing after its year.
        let (status, _) = f.warranty(f.lookup("lit-001").unwrap(), "", t("2026-06-01T20:00:00"));
        assert!(status.is_none());
    }

    #[test]
    fn what_the_shipped_contracts_bill_and_at_what() {
        let f = fleet();
        let c = |id: &str| f.contracts.iter().find(|c| c.id == id).unwrap();
        // 000 L164-165: lighting is free whatever people did not cause, force majeure too.
        assert_eq!(c("lighting").billable, ["user_damage", "misuse"]);
        // 002 L102: the LED displays' excluded causes are charged at cost only ("只收取工本费").
        assert_eq!(c("led-displays").at_cost, c("led-displays").billable);
    }

    #[test]
    fn detailed_plan_levels_a_b_c() {
        let f = fleet();
        // Saturday night: the plan runs 7x24.
        let at = t("2026-06-06T23:50:00");
        let a = deadlines(&f, "led-002", Tier::Major, at);
        assert_eq!(a.contract.as_deref(), Some("detailed-plan"));
        due(a.acknowledge_by, t("2026-06-07T00:00:00"));
        due(a.on_site_by, t("2026-06-07T01:50:00"));
        due(a.resolve_by, t("2026-06-07T03:50:00"));
        let c = deadlines(&f, "lit-002", Tier::Minor, at);
        due(c.acknowledge_by, t("2026-06-07T00:20:00"));
    }

    #[test]
    fn lighting_promises_run_one_year_from_acceptance() {
        let f = fleet();
        let d = deadlines(&f, "lit-001", Tier::Main, t("2025-06-01T20:00:00"));
        due(d.acknowledge_by, t("2025-06-01T21:00:00"));
        due(d.on_site_by, t("2025-06-03T20:00:00"));
        due(d.resolve_by, t("2025-06-03T20:00:00"));
        // After the year: no clock, and the ticket says why.
        let late = deadlines(&f, "lit-001", Tier::Main, t("2026-06-01T20:00:00"));
        assert_eq!(late.acknowledge_by, None);
        assert_eq!(late.no_clock.as_deref(), Some("contract lighting ended on 2026-01-09; no clock runs"));
    }

    #[test]
    fn solar_heaters_arrange_in_2_hours_come_in_4_and_clear_in_12() {
        // 000 L188 (三包): arranged within 2 h; 002 L382 "4小时提供上门服务" (at the door
        // within 4 h), "12小时内派人到现场排除故障" (cleared within 12 h); every tier.
        let f = fleet();
        for tier in [Tier::Major, Tier::Main, Tier::Minor] {
            let d = deadlines(&f, "swh-001", tier, t("2026-07-15T13:00:00"));
            assert_eq!(d.contract.as_deref(), Some("solar-heaters"));
            due(d.acknowledge_by, t("2026-07-15T15:00:00"));
            due(d.on_site_by, t("2026-07-15T17:00:00"));
            due(d.resolve_by, t("2026-07-16T01:00:00"));
        }
    }

    #[test]
    fn plant_room_patrols_the_warranty_card_and_training_are_visits_the_contracts_make() {
        let f = fleet();
        let plan = |contract: &str, name: &str| {
            let c = f.contracts.iter().find(|c| c.id == contract).unwrap();
            c.plans.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{contract}: no plan {name}")).clone()
        };
        // 001 ¶13: periodic patrols of the plant rooms.
        let patrol = plan("detailed-plan", "plant room patrol");
        assert_eq!(patrol.kind, crate::domain::VisitKind::Patrol);
        assert_eq!(patrol.steps, [Step::Every { every: Period::Months(3), until: None }]);
        // 001 ¶14: the warranty card within a month of completion.
        let card = plan("detailed-plan", "warranty card");
        assert_eq!((card.anchor, card.steps.clone()), (Anchor::Acceptance, vec![Step::At(Period::Months(1))]));
        // 001 ¶11: training on site during the visits.
        let visit = plan("detailed-plan", "return visit");
        assert!(visit.checklist_for("lighting").contains(&"on-site training".to_string()));
        // 002 L426: the customer's staff trained within 2 days of acceptance.
        let training = plan("solar-heaters", "operator training");
        assert_eq!((training.anchor, training.steps.clone()), (Anchor::Acceptance, vec![Step::At(Period::Days(2))]));
        assert_eq!(training.checklist_for("solar_heater"), ["equipment managers", "electricians", "users"]);
    }

    #[test]
    fn the_solar_heaters_repair_for_a_charge_only_with_consent_before_the_work_and_a_receipt() {
        let f = fleet();
        let sh = f.contracts.iter().find(|c| c.id == "solar-heaters").unwrap();
        // 002 L400: consent to the fee scale before the work, an invoice or receipt after.
        assert_eq!(sh.repair_requires, [RepairField::Consent, RepairField::Receipt]);
        let (en, zh) = sh.fee_scale.clone().expect("002 L420's fee scale");
        assert!(en.contains("labour") && zh.contains("人工费"), "{en} / {zh}");
    }

    #[test]
    fn a_component_failing_out_of_warranty_within_its_normal_life_may_be_claimed_short_lived() {
        let f = fleet();
        let status = |device: &str, day: &str| {
            let dev = f.covered(f.lookup(device).unwrap());
            let dp = f.contracts.iter().find(|c| c.id == "detailed-plan").unwrap();
            dp.warranty_status(dev, "screen_dark", day.parse().unwrap())
        };
        // led-002, accepted 2023-11-20: out of the 2-year warranty in 2026, within 8 years of life.
        let s = status("led-002", "2026-06-01");
        assert_eq!((s.in_warranty, s.short_life_until), (false, Some("2031-11-19".parse().unwrap())));
        // Past its normal life, no claim; in warranty, none needed.
        assert_eq!(status("led-002", "2031-11-20").short_life_until, None);
        assert_eq!(status("lit-002", "2026-06-01").short_life_until, None, "in warranty until 2027-01-10");
    }

    #[test]
    fn the_led_contract_times_factory_repairs_alone_5_working_days_across_national_day() {
        let f = fleet();
        let d = deadlines(&f, "led-001", Tier::Major, t("2026-09-30T10:00:00"));
        assert_eq!(d.contract.as_deref(), Some("led-displays"));
        // 002 内容2 names no response, on-site or resolve time (L106): none runs, and the ticket
        // is not said to have no clock, for the factory's runs once the unit is there.
        assert_eq!((d.acknowledge_by, d.on_site_by, d.resolve_by, d.no_clock), (None, None, None, None));
        let led = f.contracts.iter().find(|c| c.id == "led-displays").unwrap();
        // 002 L100 "终身跟踪服务": no end.
        assert_eq!(led.ends, None);
        for tier in &led.tiers {
            assert_eq!(tier.factory, Some(ClockSpec::WorkingDays(5)), "002 L108");
            let all = [tier.acknowledge, tier.on_site, tier.resolve, tier.remote_fix, tier.on_site_fix];
            assert_eq!(all, [None; 5]);
        }
        // At the factory on 30 September: 1–7 October off, Saturday 10 October worked.
        let factory = led.tiers[0].factory.unwrap();
        due(factory.deadline(t("2026-09-30T10:00:00"), led.calendar.as_deref()), t("2026-10-13T17:30:00"));
        // 002 L110: patrols in the free period (3 years from acceptance); L112: a call or a visit
        // after every service, on attitude, quality and the fix.
        let names: Vec<&str> = led.plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["screen patrol", "service follow-up"]);
        // The free period runs per display, from its acceptance.
        assert_eq!(led.plans[0].anchor, Anchor::Acceptance);
        assert_eq!(led.plans[1].after.map(|(a, _)| a), Some(After::Service));
    }

    #[test]
    fn the_recorders_tender_fixes_by_phone_in_30_minutes_and_on_site_in_3_hours_with_a_standby_unit() {
        let f = fleet();
        let rt = f.contracts.iter().find(|c| c.id == "recorders-tender").unwrap();
        for tier in &rt.tiers {
            // 004 L65 "30分钟内解决问题", L61-62 "现场更换维修 3小时".
            assert_eq!(tier.remote_fix, Some(ClockSpec::Elapsed(std::time::Duration::from_secs(1800))));
            assert_eq!(tier.on_site_fix, Some(ClockSpec::Elapsed(std::time::Duration::from_secs(3 * 3600))));
            assert_eq!(tier.factory, None);
        }
        // 004 L65 "提供全新的备用机，直至修复完好": also while the unit is at the factory.
        assert!(rt.loaner_at_factory && rt.loaner_on_resolve_breach);
    }

    #[test]
    fn a_working_day_clock_past_the_calendar_says_so() {
        // The LED displays' contract with a resolve clock of 5 working days from the opening.
        let mut f = (*fleet()).clone();
        let led = f.contracts.iter_mut().find(|c| c.id == "led-displays").unwrap();
        led.tiers[0].resolve = Some(ClockSpec::WorkingDays(5));
        // 5 working days from 29 December 2026 run into 2027, which the shipped calendar does not know.
        let d = deadlines(&f, "led-001", Tier::Major, t("2026-12-29T10:00:00"));
        assert!(d.resolve_by.is_some(), "counted anyway, by weekdays");
        let gap = d.calendar_gap.expect("the gap said");
        assert!(gap.contains("2027") && gap.contains("ends on 2026-12-31"), "{gap}");
        // An elapsed-time clock needs no calendar: no gap for the recorders' tender.
        assert_eq!(deadlines(&f, "rec-001", Tier::Major, t("2026-12-31T10:00:00")).calendar_gap, None);
    }

    #[test]
    fn a_device_no_contract_covers_has_no_clock() {
        let f = fleet();
        let someone_else = CustomerId("someone-else".into());
        let stranger = Covered { customer: &someone_else, ..f.covered(f.lookup("rec-001").unwrap()) };
        let d = deadlines_for(
            &f.contracts,
            stranger,
            Tier::Major,
            t("2026-06-01T10:00:00"),
            t("2026-06-01T10:00:00").date_naive(),
        );
        assert_eq!(d.no_clock.as_deref(), Some("no contract covers this device; no clock runs"));
        assert_eq!((d.contract, d.acknowledge_by), (None, None));
    }

    #[test]
    fn the_most_specific_contract_governs() {
        let f = fleet();
        let dev = f.covered(f.lookup("rec-001").unwrap());
        let mut named = f.contracts[0].clone();
        named.id = "by-id".into();
        named.customer = dev.customer.clone();
        named.covers = Covers { devices: vec!["rec-001".into()], ..Covers::default() };
        let mut all = f.contracts.clone();
        all.push(named);
        let day = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        assert_eq!(governing(&all, dev, day).unwrap().id, "by-id");
        assert_eq!(governing(&f.contracts, dev, day).unwrap().id, "recorders-tender");
    }
}

#[cfg(test)]
mod warranty_tests {
    use super::*;

    #[test]
    fn periods_parse_and_end_on_the_calendar() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(Period::parse("24 months"), Some(Period::Months(24)));
        assert_eq!(Period::parse("3 years"), Some(Period::Months(36)));
        assert_eq!(Period::parse("1 year"), Some(Period::Months(12)));
        assert_eq!(Period::parse("90 days"), Some(Period::Days(90)));
        assert_eq!(Period::parse("two years"), None);
        assert_eq!(Period::parse("3 fortnights"), None);
        assert_eq!(Period::Months(24).end(d("2025-09-01")), Some(d("2027-09-01")));
        // The end of February.
        assert_eq!(Period::Months(12).end(d("2024-02-29")), Some(d("2025-02-28")));
    }

    #[test]
    fn a_solar_heater_s_parts_have_their_own_warranties() {
        let f = crate::demo::config().unwrap().fleet;
        let idx = f.lookup("swh-001").unwrap(); // accepted 2024-06-15
        let c = f.contracts.iter().find(|c| c.id == "solar-heaters").unwrap();
        let day = NaiveDate::from_ymd_opt(2025, 7, 1).unwrap();
        let pump = c.warranty_status(f.covered(idx), "pump_failure", day);
        assert_eq!((pump.component.as_deref(), pump.in_warranty), (Some("pipes_electrical"), false));
        let leak = c.warranty_status(f.covered(idx), "tank_leak", day);
        assert_eq!((leak.component.as_deref(), leak.in_warranty), (Some("main"), true));
        let until: Vec<(String, NaiveDate, bool)> =
            leak.components.iter().map(|w| (w.class.clone(), w.until, w.in_warranty)).collect();
        assert_eq!(
            until,
            [
                ("main".to_string(), NaiveDate::from_ymd_opt(2027, 6, 14).unwrap(), true),
                ("pipes_electrical".to_string(), NaiveDate::from_ymd_opt(2025, 6, 14).unwrap(), false),
            ]
        );
        // The last day covered, and the day after.
        let last = c.warranty_status(f.covered(idx), "tank_leak", NaiveDate::from_ymd_opt(2027, 6, 14).unwrap());
        let after = c.warranty_status(f.covered(idx), "tank_leak", NaiveDate::from_ymd_opt(2027, 6, 15).unwrap());
        assert_eq!((last.in_warranty, after.in_warranty), (true, false));
    }
}
