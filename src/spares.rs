//! Spare parts, pure: the parts kept for each device model, how many a contract's reserve
//! rule asks for (004 L77 "按不低于3％的零部件直接储备": at least 3 % of the delivered
//! quantity), and how many the failure rate says the next year will use.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fleet::Fleet;

pub(crate) use crate::fleet::Spare;

/// One part of one model: what is in stock, what the reserve rules ask, what was used and what
/// the next year will likely use.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct SpareLine {
    pub model: String,
    pub part: String,
    pub name: String,
    /// Units of the model the user's customers have, delivered.
    pub units: u32,
    pub per_unit: u32,
    /// The least the governing contracts' reserve rules ask for (`spares_share` of the units'
    /// parts, rounded up); 0 when none asks.
    pub required: u32,
    /// In stock now (negative when repairs took more than was counted).
    pub stock: i64,
    /// Taken by repairs over the window.
    pub used: u32,
    /// Days the usage was counted over: a year, or the time the store has watched, if shorter.
    pub window_days: u32,
    /// Parts the next 12 months will likely use at the rate seen over the window; `null`
    /// with less than 30 days watched.
    pub forecast_12m: Option<u32>,
    /// Below what the reserve rule asks.
    pub short: bool,
    /// To order to hold both the reserve and the year's forecast.
    pub to_order: u32,
}

/// The lines of every part in `spares` for the devices `sees` lets through: `stock` and `used`
/// keyed by (model, part), usage counted over `window_days`.
pub(crate) fn lines(
    fleet: &Fleet,
    spares: &[Spare],
    stock: &BTreeMap<(String, String), i64>,
    used: &BTreeMap<(String, String), u32>,
    window_days: u32,
    today: chrono::NaiveDate,
    sees: &dyn Fn(&str) -> bool,
) -> Vec<SpareLine> {
    // Per model: units, and the reserve share they call for (each unit by its governing contract).
    let mut units: BTreeMap<&str, (u32, f64)> = BTreeMap::new();
    for d in fleet.devices.iter().filter(|d| sees(d.customer.as_str()) && d.delivered_on <= today) {
        let share = crate::contracts::governing(&fleet.contracts, fleet.covered(d.idx), today)
            .ok()
            .and_then(|c| c.spares_share)
            .unwrap_or(0.0);
        let e = units.entry(d.model.as_str()).or_default();
        e.0 += 1;
        e.1 += share;
    }
    spares
        .iter()
        .map(|s| {
            let key = (s.model.clone(), s.part.clone());
            let (n, share) = units.get(s.model.as_str()).copied().unwrap_or_default();
            // A share of the parts the units hold, never rounded down to none.
            let required = (share * f64::from(s.per_unit) - 1e-9).ceil().max(0.0) as u32;
            let stock = stock.get(&key).copied().unwrap_or(0);
            let used = used.get(&key).copied().unwrap_or(0);
            let forecast_12m = (window_days >= 30)
                .then(|| (f64::from(used) * 365.0 / f64::from(window_days) - 1e-9).ceil().max(0.0) as u32);
            let want = i64::from(required.max(forecast_12m.unwrap_or(0)));
            SpareLine {
                model: s.model.clone(),
                part: s.part.clone(),
                name: s.name.clone(),
                units: n,
                per_unit: s.per_unit,
                required,
                stock,
                used,
                window_days,
                forecast_12m,
                short: stock < i64::from(required),
                to_order: u32::try_from((want - stock).max(0)).unwrap_or(u32::MAX),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> chrono::NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn the_recorders_reserve_is_3_percent_of_the_delivered_units_rounded_up() {
        let f = crate::demo::config().unwrap().fleet;
        let spares = vec![
            Spare { model: "DR-820".into(), part: "DR-SD-256".into(), name: "card".into(), per_unit: 1 },
            Spare { model: "DR-820".into(), part: "DR-LENS".into(), name: "lens".into(), per_unit: 40 },
            Spare { model: "LC-4CH".into(), part: "LC-RELAY".into(), name: "relay".into(), per_unit: 4 },
        ];
        let mut stock = BTreeMap::new();
        stock.insert(("DR-820".to_string(), "DR-SD-256".to_string()), 1);
        stock.insert(("DR-820".to_string(), "DR-LENS".to_string()), 2);
        let mut used = BTreeMap::new();
        used.insert(("DR-820".to_string(), "DR-SD-256".to_string()), 3);
        let all = |_: &str| true;
        let l = lines(&f, &spares, &stock, &used, 73, day("2026-06-01"), &all);
        // Two recorders under the tender (004 L77: 3 %): 0.06 cards, so 1; 2.4 lenses, so 3.
        assert_eq!((l[0].units, l[0].required, l[0].stock, l[0].short), (2, 1, 1, false));
        assert_eq!((l[1].required, l[1].stock, l[1].short, l[1].to_order), (3, 2, true, 1));
        // 3 cards in 73 days: 15 a year, 14 to order beside the one in stock.
        assert_eq!((l[0].forecast_12m, l[0].to_order), (Some(15), 14));
        // The lighting contract asks for no reserve.
        assert_eq!((l[2].units, l[2].required, l[2].short), (2, 0, false));
        // Too short a watch for a forecast; another customer's units are not counted.
        let none = |_: &str| false;
        let l = lines(&f, &spares, &stock, &used, 20, day("2026-06-01"), &none);
        assert_eq!((l[0].units, l[0].required, l[0].forecast_12m), (0, 0, None));
    }
}
