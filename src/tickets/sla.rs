//! Service-level results, pure: how a promotion moves a ticket's deadlines, and how
//! many of a period's clocks were met.

use chrono::{DateTime, Utc};

use super::clocks::{ClockName, Moments};
use crate::contracts::Contract;
use crate::domain::Tier;

/// The rule for a tier promotion: the stricter clock runs from the moment the fault became
/// that severe (ending by `new`), and a deadline never moves later than it was.
pub(crate) fn promoted_deadline(old: Option<DateTime<Utc>>, new: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (old, new) {
        (Some(o), Some(n)) => Some(o.min(n)),
        (o, n) => o.or(n),
    }
}

/// Whether one clock of one ticket was met: `None` while its moment has not come (or no clock runs).
pub(crate) type Met = Option<bool>;

/// Compliance with one clock over a set of tickets.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ClockCompliance {
    pub met: u32,
    pub missed: u32,
    /// Met / (met + missed); `null` when no ticket's moment has come.
    pub share: Option<f64>,
}

/// Compliance of one tier's tickets with their clocks.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct TierCompliance {
    pub tier: u8,
    pub tickets: u32,
    pub acknowledge: ClockCompliance,
    pub on_site: ClockCompliance,
    pub resolve: ClockCompliance,
    /// Fixed by phone in time, from the opening (004's 30 minutes).
    pub remote_fix: ClockCompliance,
    /// Fixed in time from the first arrival on site (004's 3 hours).
    pub on_site_fix: ClockCompliance,
    /// Back from the factory in time from the unit's arrival there (002's 5 working days).
    pub factory: ClockCompliance,
}

/// The clocks in the order of [`Outcomes`].
pub(crate) const CLOCKS: [ClockName; 6] = [
    ClockName::Acknowledge,
    ClockName::OnSite,
    ClockName::Resolve,
    ClockName::RemoteFix,
    ClockName::OnSiteFix,
    ClockName::Factory,
];

/// One ticket's outcome on each clock of [`CLOCKS`].
pub(crate) type Outcomes = [Met; 6];

impl TierCompliance {
    /// Each clock with its compliance, in the order of [`CLOCKS`].
    pub(crate) fn clocks(&self) -> [(ClockName, &ClockCompliance); 6] {
        let c = [&self.acknowledge, &self.on_site, &self.resolve, &self.remote_fix, &self.on_site_fix, &self.factory];
        std::array::from_fn(|i| (CLOCKS[i], c[i]))
    }

    /// Each clock's compliance, to count into, in the order of [`CLOCKS`].
    fn clocks_mut(&mut self) -> [&mut ClockCompliance; 6] {
        [
            &mut self.acknowledge,
            &mut self.on_site,
            &mut self.resolve,
            &mut self.remote_fix,
            &mut self.on_site_fix,
            &mut self.factory,
        ]
    }
}

/// The clocks worth a column, as indexes into [`CLOCKS`]: the three every contract may
/// promise, and a stage clock once a ticket's moment on it came.
pub(crate) fn shown(sla: &[TierCompliance]) -> Vec<usize> {
    (0..CLOCKS.len())
        .filter(|i| *i < 3 || sla.iter().any(|t| t.clocks()[*i].1.met + t.clocks()[*i].1.missed > 0))
        .collect()
}

/// A ticket's outcomes: the three clocks judged in the store, and the stage clocks its
/// contract runs on its moments, judged at `now`.
pub(crate) fn outcomes(
    stored: [Met; 3],
    contract: Option<&Contract>,
    tier: Tier,
    m: &Moments,
    now: DateTime<Utc>,
) -> Outcomes {
    let mut out = [stored[0], stored[1], stored[2], None, None, None];
    if let Some(c) = contract {
        for s in super::clocks::stages(c.clocks(tier), c.calendar.as_deref(), m, now) {
            if let Some(i) = CLOCKS.iter().position(|k| *k == s.clock) {
                out[i] = s.met;
            }
        }
    }
    out
}

/// Aggregates (tier, outcomes) into compliance per tier, tiers 1 to 3.
pub(crate) fn compliance(rows: impl IntoIterator<Item = (u8, Outcomes)>) -> Vec<TierCompliance> {
    let mut out: Vec<TierCompliance> = (1..=3).map(|tier| TierCompliance { tier, ..Default::default() }).collect();
    let add = |c: &mut ClockCompliance, m: Met| match m {
        Some(true) => c.met += 1,
        Some(false) => c.missed += 1,
        None => {}
    };
    for (tier, m) in rows {
        let Some(t) = out.get_mut(tier.saturating_sub(1) as usize) else { continue };
        t.tickets += 1;
        for (c, m) in t.clocks_mut().into_iter().zip(m) {
            add(c, m);
        }
    }
    for t in &mut out {
        for c in t.clocks_mut() {
            let n = c.met + c.missed;
            c.share = (n > 0).then(|| c.met as f64 / n as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{s}+08:00")).unwrap().to_utc()
    }

    #[test]
    fn compliance_counts_met_and_missed_per_tier_and_clock() {
        let rows = [
            (1, [Some(true), Some(true), Some(false), None, None, Some(false)]),
            (1, [Some(false), None, None, None, None, Some(true)]),
            (3, [Some(true), None, Some(true), Some(true), None, None]),
            (2, [None; 6]),
        ];
        let c = compliance(rows);
        assert_eq!((c[0].factory.met, c[0].factory.missed, c[0].factory.share), (1, 1, Some(0.5)));
        assert_eq!((c[2].remote_fix.share, c[2].on_site_fix.share), (Some(1.0), None));
        // Every clock but the on-site fix, which no ticket's moment reached.
        assert_eq!(shown(&c), [0, 1, 2, 3, 5]);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].tickets, c[0].acknowledge.met, c[0].acknowledge.missed), (2, 1, 1));
        assert_eq!(c[0].acknowledge.share, Some(0.5));
        assert_eq!(c[0].on_site.share, Some(1.0));
        assert_eq!(c[0].resolve.share, Some(0.0));
        assert_eq!((c[1].tickets, c[1].acknowledge.share), (1, None));
        assert_eq!(c[2].resolve.share, Some(1.0));
    }

    #[test]
    fn promotion_never_moves_a_deadline_later() {
        let opened = t("2026-09-22T10:00:00");
        let old = Some(opened + chrono::TimeDelta::hours(24));
        let earlier = Some(opened + chrono::TimeDelta::hours(2));
        let later = Some(opened + chrono::TimeDelta::hours(48));
        assert_eq!(promoted_deadline(old, earlier), earlier);
        assert_eq!(promoted_deadline(old, later), old, "a clock that would end later keeps the old deadline");
        assert_eq!(promoted_deadline(None, earlier), earlier, "no clock before: the new one applies");
        assert_eq!(promoted_deadline(old, None), old, "no new clock: the old one runs on");
    }
}
