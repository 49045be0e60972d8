//! What a ticket's contract clocks make due, pure: breaches, escalation steps, loaners and
//! the inaction rule, decided from the deadlines persisted on the ticket alone, one ticket
//! at a time. The clock watcher (`desk::watch`) reads open tickets and fires what is due.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::State;
use crate::calendar::Calendar;
use crate::contracts::{Contract, Milestone, TierClocks};
use crate::domain::{TicketId, Tier};

/// What the store knows of an open ticket's clocks.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenClock {
    pub id: TicketId,
    pub tier: Tier,
    pub state: State,
    pub contract: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub on_site_at: Option<DateTime<Utc>>,
    pub acknowledge_by: Option<DateTime<Utc>>,
    pub on_site_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    pub acknowledge_breached: bool,
    pub on_site_breached: bool,
    pub resolve_breached: bool,
    pub escalation_level: u8,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub inaction_escalated_at: Option<DateTime<Utc>>,
    /// Resolved by force while its fault is still active: not fixed until the fault recovers.
    pub awaiting_recovery: bool,
    /// The moments the stage clocks start and end on.
    pub moments: Moments,
    /// The stage clocks already missed.
    pub stage_breached: Vec<ClockName>,
    /// A loaner unit is owed (a resolve clock missed, or the unit at the factory).
    pub loaner: bool,
}

impl OpenClock {
    /// Resolved for the resolve clock: by a person, and with the fault gone.
    fn resolved(&self) -> bool {
        self.state == State::Resolved && !self.awaiting_recovery
    }
}

crate::domain::named! {
    /// One of a ticket's contract clocks: the three from its opening, then the stage clocks.
    pub enum ClockName {
        Acknowledge = "acknowledge",
        OnSite = "on_site",
        Resolve = "resolve",
        RemoteFix = "remote_fix",
        OnSiteFix = "on_site_fix",
        Factory = "factory",
    }
}

/// The spec of clock `k` in a tier's clocks, if the tier promises it.
pub(crate) fn spec(c: &TierClocks, k: ClockName) -> Option<crate::contracts::ClockSpec> {
    match k {
        ClockName::Acknowledge => c.acknowledge,
        ClockName::OnSite => c.on_site,
        ClockName::Resolve => c.resolve,
        ClockName::RemoteFix => c.remote_fix,
        ClockName::OnSiteFix => c.on_site_fix,
        ClockName::Factory => c.factory,
    }
}

/// A ticket's moments that start and end its stage clocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Moments {
    pub opened_at: DateTime<Utc>,
    /// The first move to dispatched, on site or the factory: the phone did not fix it.
    pub handed_on_at: Option<DateTime<Utc>>,
    /// The first arrival on site.
    pub on_site_at: Option<DateTime<Utc>>,
    /// The first fix: resolved, and not by force with the fault still active; a reopening
    /// does not undo it.
    pub fixed_at: Option<DateTime<Utc>>,
    pub factory_sent_at: Option<DateTime<Utc>>,
    pub factory_arrived_at: Option<DateTime<Utc>>,
    pub factory_back_at: Option<DateTime<Utc>>,
}

impl Moments {
    /// A ticket's moments as its answer gives them.
    pub fn of(t: &super::Ticket) -> Moments {
        Moments {
            opened_at: t.opened_at,
            handed_on_at: t.clock.handed_on_at,
            on_site_at: t.clock.on_site_at,
            fixed_at: t.clock.fixed_at,
            factory_sent_at: t.factory.as_ref().map(|f| f.sent_at),
            factory_arrived_at: t.factory.as_ref().and_then(|f| f.arrived_at),
            factory_back_at: t.factory.as_ref().and_then(|f| f.back_at),
        }
    }
}

/// Fills ticket `t`'s stage clocks from its governing contract, judged at `now`.
pub(crate) fn fill_stages(t: &mut super::Ticket, contracts: &[Contract], now: DateTime<Utc>) {
    let Some(c) = t.clock.contract.as_deref().and_then(|id| contracts.iter().find(|c| c.id == id)) else { return };
    t.clock.stages = stages(c.clocks(t.tier), c.calendar.as_deref(), &Moments::of(t), now);
}

/// A clock that starts on a moment of the ticket rather than its opening.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stage {
    pub clock: ClockName,
    pub started_at: DateTime<Utc>,
    /// `null` when it needs a calendar the contract lacks.
    pub due_by: Option<DateTime<Utc>>,
    /// When it stopped: fixed, handed on, back from the factory.
    pub ended_at: Option<DateTime<Utc>>,
    /// `null` while it runs in time, or when it stopped with nothing to judge (a remote fix
    /// handed on to the field in time).
    pub met: Option<bool>,
}

/// The stage clocks a ticket's tier clocks `c` run on its moments `m`, judged at `now`:
/// - `remote_fix` from the opening, met by a fix before the ticket is handed on to the
///   field; handed on in time, it stops unjudged (004: the phone could not fix it);
/// - `on_site_fix` from the first arrival on site, met by a fix; stopped unjudged when the
///   unit goes to the factory, whose clock takes over;
/// - `factory` from the unit's arrival at the factory, met when it is back (or fixed).
pub(crate) fn stages(c: &TierClocks, cal: Option<&Calendar>, m: &Moments, now: DateTime<Utc>) -> Vec<Stage> {
    let mut out = Vec::new();
    let mut stage = |clock: ClockName,
                     spec: Option<crate::contracts::ClockSpec>,
                     start: Option<DateTime<Utc>>,
                     fixed: Option<DateTime<Utc>>,
                     stop: Option<DateTime<Utc>>| {
        let (Some(spec), Some(start)) = (spec, start) else { return };
        let due_by = spec.deadline(start, cal);
        let (fixed, stop) = (fixed.filter(|t| *t >= start), stop.filter(|t| *t >= start));
        // With no deadline (a calendar the contract lacks) nothing is judged.
        let late = |t: DateTime<Utc>| due_by.map(|d| t > d);
        let (ended_at, met) = match (fixed, stop) {
            (Some(f), s) if s.is_none_or(|s| f <= s) => (Some(f), late(f).map(|l| !l)),
            (_, Some(s)) => (Some(s), late(s).filter(|l| *l).map(|_| false)),
            _ => (None, due_by.filter(|d| *d <= now).map(|_| false)),
        };
        out.push(Stage { clock, started_at: start, due_by, ended_at, met });
    };
    stage(ClockName::RemoteFix, c.remote_fix, Some(m.opened_at), m.fixed_at, m.handed_on_at);
    stage(ClockName::OnSiteFix, c.on_site_fix, m.on_site_at, m.fixed_at, m.factory_sent_at);
    // Back from the factory is the end the factory's clock measures; a fix counts as back.
    let back = match (m.factory_back_at, m.fixed_at) {
        (Some(b), Some(f)) => Some(b.min(f)),
        (b, f) => b.or(f),
    };
    stage(ClockName::Factory, c.factory, m.factory_arrived_at, back, None);
    out
}

/// Something a clock makes happen to a ticket.
#[derive(Debug, Clone, PartialEq)]
pub enum Firing {
    /// A clock ran out before its moment came; a missed resolve clock may owe a loaner.
    Breach { clock: ClockName, due: DateTime<Utc>, loaner: bool },
    /// An escalation step's time came and the ticket had not reached its milestone.
    Escalate { level: u8, to: String, channel: String, due: DateTime<Utc>, unless: Milestone },
    /// Dispatched at `since` and no progress since for the contract's inaction time.
    Inaction { since: DateTime<Utc>, to: String },
    /// The unit went to the factory at `since`: the contract owes a loaner while it is away.
    Loaner { since: DateTime<Utc> },
}

fn reached(t: &OpenClock, m: Milestone) -> bool {
    match m {
        Milestone::Acknowledged => t.acknowledged_at.is_some(),
        Milestone::OnSite => t.on_site_at.is_some(),
        Milestone::Resolved => t.resolved(),
    }
}

/// What is due on ticket `t` at `now`, given its contract.
pub(crate) fn due(t: &OpenClock, contract: Option<&Contract>, now: DateTime<Utc>) -> Vec<Firing> {
    let mut out = Vec::new();
    let passed = |by: Option<DateTime<Utc>>| by.filter(|b| *b <= now);
    if let Some(due) = passed(t.acknowledge_by).filter(|_| !t.acknowledge_breached && t.acknowledged_at.is_none()) {
        out.push(Firing::Breach { clock: ClockName::Acknowledge, due, loaner: false });
    }
    if let Some(due) = passed(t.on_site_by).filter(|_| !t.on_site_breached && t.on_site_at.is_none()) {
        out.push(Firing::Breach { clock: ClockName::OnSite, due, loaner: false });
    }
    if let Some(due) = passed(t.resolve_by).filter(|_| !t.resolve_breached && !t.resolved()) {
        let loaner = contract.is_some_and(|c| c.loaner_on_resolve_breach);
        out.push(Firing::Breach { clock: ClockName::Resolve, due, loaner });
    }
    let Some(c) = contract else { return out };
    for s in stages(c.clocks(t.tier), c.calendar.as_deref(), &t.moments, now) {
        if let (None, Some(due)) = (s.ended_at, s.due_by.filter(|d| *d <= now))
            && !t.stage_breached.contains(&s.clock)
        {
            out.push(Firing::Breach { clock: s.clock, due, loaner: false });
        }
    }
    if let (State::AtFactory, true, false, Some(since)) =
        (t.state, c.loaner_at_factory, t.loaner, t.moments.factory_sent_at)
    {
        out.push(Firing::Loaner { since });
    }
    for step in &c.clocks(t.tier).escalation {
        let due = t.opened_at + TimeDelta::from_std(step.after).unwrap_or(TimeDelta::MAX);
        if step.level > t.escalation_level && due <= now && !reached(t, step.unless) {
            out.push(Firing::Escalate {
                level: step.level,
                to: step.to.clone(),
                channel: step.channel.clone(),
                due,
                unless: step.unless,
            });
        }
    }
    if let (Some(limit), Some(since), State::Dispatched) = (c.inaction, t.dispatched_at, t.state) {
        let already = t.inaction_escalated_at.is_some_and(|at| at >= since);
        if !already && since + TimeDelta::from_std(limit).unwrap_or(TimeDelta::MAX) <= now {
            out.push(Firing::Inaction { since, to: c.inaction_to.clone() });
        }
    }
    out
}
