//! What a ticket's contract clocks make due, pure: breaches, escalation steps, loaners and
//! the inaction rule, decided from the deadlines persisted on the ticket alone, one ticket
//! at a time. The clock watcher (`desk::watch`) reads open tickets and fires what is due.

use chrono::{DateTime, TimeDelta, Utc};

use super::State;
use crate::contracts::{Contract, Milestone};
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
}

impl OpenClock {
    /// Resolved for the resolve clock: by a person, and with the fault gone.
    fn resolved(&self) -> bool {
        self.state == State::Resolved && !self.awaiting_recovery
    }
}

crate::domain::named! {
    /// One of a ticket's three contract clocks.
    pub enum ClockName {
        Acknowledge = "acknowledge",
        OnSite = "on_site",
        Resolve = "resolve",
    }
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
