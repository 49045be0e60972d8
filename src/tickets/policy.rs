//! The ticket rules, pure: what a fault's raise does to the tickets of its device and code,
//! when a raise is a failed repair and when the unit is to be replaced, how a promotion moves
//! the clocks, what a person must say to make a transition, and what a helpdesk is asked to
//! do. The store finds the facts and writes the result in one transaction. What it still
//! decides in SQL is bookkeeping of the clocks: whether each was met when its milestone is
//! written, and the conditional updates that make a breach or an escalation fire once.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Event, Outcome, State, TransitionError};
use crate::contracts::{Deadlines, RepeatRule};
use crate::domain::{HelpdeskAction, TicketId, Tier};

/// The ticket of a device and fault that is neither closed nor cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Current {
    pub id: TicketId,
    pub state: State,
    pub tier: Tier,
}

/// The latest closed ticket of a device and fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed {
    pub id: TicketId,
    pub tier: Tier,
    pub closed_at: DateTime<Utc>,
}

/// Another occurrence of a fault counted on an existing ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Count {
    pub id: TicketId,
    /// The state the ticket is reopened from, when it was resolved or closed.
    pub reopen_from: Option<State>,
    /// The more severe of the ticket's tier and the raise's.
    pub tier: Tier,
    pub note: String,
}

impl Count {
    pub(crate) fn outcome(&self) -> Outcome {
        if self.reopen_from.is_some() { Outcome::Reopened } else { Outcome::Recurred }
    }
    pub(crate) fn event(&self) -> Event {
        if self.reopen_from.is_some() { Event::Reopened } else { Event::Recurred }
    }
}

/// A raise of a fault: counted on the ticket still open for it (reopening a resolved one), on
/// the one closed within `reopen_window`, or `None`: a new ticket opens.
pub(crate) fn raise(
    current: Option<Current>,
    closed: Option<Closed>,
    tier: Tier,
    detail: &str,
    reopen_window: Duration,
    now: DateTime<Utc>,
) -> Option<Count> {
    if let Some(c) = current {
        let tier = worse(tier, c.tier);
        return Some(if c.state == State::Resolved {
            // The repair did not hold.
            let note = format!("the fault returned after the ticket was resolved: {detail}");
            Count { id: c.id, reopen_from: Some(State::Resolved), tier, note }
        } else {
            Count { id: c.id, reopen_from: None, tier, note: detail.to_string() }
        });
    }
    let window = TimeDelta::from_std(reopen_window).unwrap_or(TimeDelta::MAX);
    let c = closed.filter(|c| now.signed_duration_since(c.closed_at) <= window)?;
    let note = format!("the fault returned within {} of closing: {detail}", humantime::format_duration(reopen_window));
    Some(Count { id: c.id, reopen_from: Some(State::Closed), tier: worse(tier, c.tier), note })
}

/// A new ticket's clocks and note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opening {
    pub deadlines: Deadlines,
    /// The work order in progress on the device: the fault is recorded, but nobody is paged
    /// for it (no clocks, no helpdesk).
    pub silenced_by: Option<i64>,
    pub note: String,
}

/// Opens a ticket for a fault, silenced when an engineer is on a `visit` to the device.
pub(crate) fn opening(visit: Option<i64>, deadlines: &Deadlines, detail: &str) -> Opening {
    match visit {
        Some(w) => Opening {
            deadlines: Deadlines {
                contract: deadlines.contract.clone(),
                no_clock: Some(format!("silenced: opened during the visit of work order {w}")),
                ..Default::default()
            },
            silenced_by: Some(w),
            note: format!("opened during the visit of work order {w}, silenced: {detail}"),
        },
        None => Opening { deadlines: deadlines.clone(), silenced_by: None, note: detail.to_string() },
    }
}

/// The repeat-repair rule: a fault that opens or reopens a ticket within the rule's window
/// after its device and fault were last resolved is a failed repair.
pub(crate) fn repair_failed(rule: &RepeatRule, last_resolved: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now.signed_duration_since(last_resolved) <= TimeDelta::from_std(rule.window).unwrap_or(TimeDelta::MAX)
}

/// Since when earlier failed repairs count with a new one: within the rule's window, and
/// since the unit was last replaced (a failed repair of the unit replaced counts no more).
pub(crate) fn failed_repairs_count_from(
    rule: &RepeatRule,
    unit_replaced: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let window = TimeDelta::from_std(rule.window).unwrap_or(TimeDelta::MAX);
    let since = now.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
    unit_replaced.map_or(since, |r| since.max(r + TimeDelta::milliseconds(1)))
}

/// A failed repair counted: the ticket's count, its timeline note, and the note that the unit
/// is to be replaced when the count reached the rule's in warranty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedRepair {
    pub count: i64,
    pub note: String,
    pub replace: Option<String>,
}

/// The `earlier` failed repairs still counting, and this one: the repair of `resolved` failed.
pub(crate) fn failed_repair(
    rule: &RepeatRule,
    earlier: i64,
    resolved: DateTime<Utc>,
    in_warranty: bool,
    now: DateTime<Utc>,
) -> FailedRepair {
    let n = earlier + 1;
    let window = humantime::format_duration(rule.window);
    let after = Duration::from_secs(now.signed_duration_since(resolved).num_seconds().max(0) as u64);
    let note = format!(
        "the fault returned {} after the repair of {}: {n} failed repair{} within {window}",
        humantime::format_duration(after),
        resolved.to_rfc3339(),
        if n == 1 { "" } else { "s" }
    );
    // 以上 includes the number itself: "2次以上" is two failed repairs or more.
    let replace = (n >= i64::from(rule.replace_at_failed_repairs) && in_warranty).then(|| {
        format!(
            "{n} failed repairs within {window} in warranty (the contract replaces at {}): replace the unit; \
             to service manager",
            rule.replace_at_failed_repairs
        )
    });
    FailedRepair { count: n, note, replace }
}

/// A ticket's clocks as a promotion finds and leaves them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Clocks {
    pub acknowledge_by: Option<DateTime<Utc>>,
    pub on_site_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    pub calendar_gap: Option<String>,
}

/// A fault on ticket `current` became as severe as `tier`, whose clocks started now would end
/// by `new`: the ticket takes the tier and, per clock, the earlier deadline
/// ([`super::sla::promoted_deadline`]). `None` when the ticket is already that severe.
pub(crate) fn promotion(
    current: Tier,
    clocks: &Clocks,
    tier: Tier,
    new: &Deadlines,
    detail: &str,
) -> Option<(Clocks, String)> {
    if !tier.outranks(current) {
        return None;
    }
    let by = super::sla::promoted_deadline;
    let promoted = Clocks {
        acknowledge_by: by(clocks.acknowledge_by, new.acknowledge_by),
        on_site_by: by(clocks.on_site_by, new.on_site_by),
        resolve_by: by(clocks.resolve_by, new.resolve_by),
        calendar_gap: new.calendar_gap.clone().or_else(|| clocks.calendar_gap.clone()),
    };
    Some((promoted, format!("tier {current} → {tier}: {detail}")))
}

/// What a person (or a helpdesk) asks of a transition besides its target state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ask<'a> {
    pub note: &'a str,
    /// Resolve although the fault is still active.
    pub force: bool,
    /// The resolution replaced the unit.
    pub unit_replaced: bool,
}

/// A transition allowed: whether it resolves a ticket whose fault is still active, and the
/// note its timeline keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transition {
    pub forced: bool,
    pub note: String,
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Illegal(#[from] TransitionError),
    #[error("{0}")]
    Conflict(String),
}

/// Checks a transition of ticket `id` (fault `code`, `recovered` or not) from `from` to `to`.
pub(crate) fn transition(
    id: TicketId,
    code: &str,
    recovered: bool,
    from: State,
    to: State,
    ask: Ask<'_>,
) -> Result<Transition, Refusal> {
    super::lifecycle::check(from, to)?;
    if ask.unit_replaced && to != State::Resolved {
        return Err(Refusal::Conflict(
            "`unit_replaced` says how a ticket was resolved: send it with \"to\": \"resolved\"".into(),
        ));
    }
    // A fault still active is not fixed: resolving it anyway takes a word that says so, and why.
    let forced = to == State::Resolved && !recovered;
    if forced && !ask.force {
        return Err(Refusal::Conflict(format!(
            "ticket {id}'s fault `{code}` is still active (not recovered): it cannot be resolved until it clears; \
             to resolve it anyway send \"force\": true with a note saying why"
        )));
    }
    if forced && ask.note.trim().is_empty() {
        return Err(Refusal::Conflict(
            "a forced resolution needs a note saying why the ticket is resolved while its fault is active".into(),
        ));
    }
    let note =
        if forced { format!("forced while the fault is still active: {}", ask.note) } else { ask.note.to_string() };
    Ok(Transition { forced, note })
}

/// What a ticket's helpdesk is asked to do with a line of its timeline: open its ticket for
/// an opening or a reopening, close it for a resolution, else add to it.
pub(crate) fn helpdesk_action(event: Event, to: Option<State>) -> HelpdeskAction {
    match (event, to) {
        (Event::Opened | Event::Reopened, _) | (_, Some(State::Open)) => HelpdeskAction::Trigger,
        (_, Some(State::Resolved | State::Closed | State::Cancelled)) => HelpdeskAction::Resolve,
        _ => HelpdeskAction::Update,
    }
}

/// The more severe of two tiers.
pub(crate) fn worse(a: Tier, b: Tier) -> Tier {
    if a.outranks(b) { a } else { b }
}

#[cfg(test)]
mod tests;
