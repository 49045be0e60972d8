//! Service-level results, pure: how a promotion moves a ticket's deadlines, and how
//! many of a period's clocks were met.

use chrono::{DateTime, Utc};

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

/// Compliance of one tier's tickets with their three clocks.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct TierCompliance {
    pub tier: u8,
    pub tickets: u32,
    pub acknowledge: ClockCompliance,
    pub on_site: ClockCompliance,
    pub resolve: ClockCompliance,
}

/// Aggregates (tier, acknowledge, on-site, resolve) outcomes into compliance per tier, tiers 1 to 3.
pub(crate) fn compliance(rows: impl IntoIterator<Item = (u8, Met, Met, Met)>) -> Vec<TierCompliance> {
    let mut out: Vec<TierCompliance> = (1..=3).map(|tier| TierCompliance { tier, ..Default::default() }).collect();
    let add = |c: &mut ClockCompliance, m: Met| match m {
        Some(true) => c.met += 1,
        Some(false) => c.missed += 1,
        None => {}
    };
    for (tier, a, o, r) in rows {
        let Some(t) = out.get_mut(tier.saturating_sub(1) as usize) else { continue };
        t.tickets += 1;
        add(&mut t.acknowledge, a);
        add(&mut t.on_site, o);
        add(&mut t.resolve, r);
    }
    for t in &mut out {
        for c in [&mut t.acknowledge, &mut t.on_site, &mut t.resolve] {
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
            (1, Some(true), Some(true), Some(false)),
            (1, Some(false), None, None),
            (3, Some(true), None, Some(true)),
            (2, None, None, None),
        ];
        let c = compliance(rows);
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
