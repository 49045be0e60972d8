//! Tickets as the API and the store see them.

use chrono::{DateTime, Utc};

use serde::Serialize;

use super::State;
pub(crate) use super::intake::{Category, Channel};
use crate::domain::{CustomerId, DeviceId, FaultCode, SiteId, TicketId, Tier};

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Ticket {
    pub id: TicketId,
    /// `null` for a person's report that names no device (kept as an empty id).
    #[serde(serialize_with = "empty_as_null")]
    #[schema(value_type = Option<String>)]
    pub device: DeviceId,
    pub site: SiteId,
    pub customer: CustomerId,
    /// The device's kind; `null` with no device.
    #[serde(serialize_with = "empty_as_null")]
    #[schema(value_type = Option<String>)]
    pub kind: String,
    /// The fault code; `null` for a person's report that names none.
    #[serde(serialize_with = "empty_as_null")]
    #[schema(value_type = Option<String>)]
    pub code: FaultCode,
    pub category: Category,
    /// `sensor` for a ticket a device's telemetry raised.
    pub channel: Channel,
    /// Who reported it, for a person's ticket.
    pub reporter: Option<Reporter>,
    /// The problem in the reporter's own words.
    pub problem: Option<String>,
    /// The user who entered the report.
    pub reported_by: Option<String>,
    /// A device's rule raised this ticket's fault (a person's report not yet confirmed by one: false).
    pub sensed: bool,
    /// The user working on it.
    pub assignee: Option<String>,
    /// A complaint's grade.
    pub complaint_grade: Option<super::intake::Grade>,
    pub title: String,
    pub tier: Tier,
    pub state: State,
    /// The fault has cleared: the device is fine again, though the ticket may still be open.
    pub recovered: bool,
    /// How many times the fault was raised on this ticket (first raise included).
    pub occurrences: i64,
    /// When the fault was first seen (device time).
    pub fault_at: DateTime<Utc>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_raised_at: DateTime<Utc>,
    pub recovered_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub detail: String,
    /// The contract's clocks on this ticket.
    pub clock: Clock,
    /// The device's warranty on the day of the fault; `null` when no contract governs it.
    pub warranty: Option<crate::contracts::WarrantyStatus>,
    /// free (in warranty), at_cost (out of warranty), or billable with a reason a person set.
    pub billing: Option<Billing>,
    /// The unit's latest trip to the factory, if it made one.
    pub factory: Option<FactoryTrip>,
    /// Repairs of this device and fault that did not hold (the fault came back within the contract's window).
    pub failed_repairs: i64,
    /// As many failed repairs as the contract allows (within its window, in warranty): replace the unit.
    pub replace_unit: bool,
    /// The work order in progress when the ticket opened: recorded, but no clocks and no helpdesk.
    pub silenced_by: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
    /// The repair record, once one is made (one ticket's answer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<super::repair::Repair>,
    /// Photos and signature images (one ticket's answer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<super::repair::Attachment>>,
}

impl Ticket {
    /// What the ticket is about, for a title: `leakage on lit-7`, `question on lit-7`, or
    /// `complaint at site-a` for a report that names no device.
    pub fn about(&self) -> String {
        let what = if self.code.0.is_empty() { self.category.as_str() } else { self.code.as_str() };
        if self.device.0.is_empty() { format!("{what} at {}", self.site) } else { format!("{what} on {}", self.device) }
    }
}

/// Who reported a ticket.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Reporter {
    pub name: String,
    pub phone: String,
}

/// An empty id or name as `null`.
fn empty_as_null<T: AsRef<str>, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    match v.as_ref() {
        "" => s.serialize_none(),
        text => s.serialize_str(text),
    }
}

/// A ticket's contract clocks: deadlines, and whether each was met once its moment came.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Clock {
    /// The governing contract's id; `null` with `no_clock` saying why when none governs.
    pub contract: Option<String>,
    pub no_clock: Option<String>,
    pub acknowledge_by: Option<DateTime<Utc>>,
    pub on_site_by: Option<DateTime<Utc>>,
    pub resolve_by: Option<DateTime<Utc>>,
    pub on_site_at: Option<DateTime<Utc>>,
    /// `null` until the moment comes (or when the contract promises no such clock).
    pub acknowledge_met: Option<bool>,
    pub on_site_met: Option<bool>,
    pub resolve_met: Option<bool>,
    /// When each clock ran out unmet, if it did.
    pub acknowledge_breached_at: Option<DateTime<Utc>>,
    pub on_site_breached_at: Option<DateTime<Utc>>,
    pub resolve_breached_at: Option<DateTime<Utc>>,
    /// The highest escalation step fired (0: none).
    pub escalation_level: u8,
    /// A loaner unit is owed (the resolve clock was missed under a contract that promises one).
    pub loaner: bool,
    pub dispatched_at: Option<DateTime<Utc>>,
    /// Resolved while the fault was still active: `resolve_met` waits for the fault to recover.
    pub resolve_forced: bool,
    /// A clock ran past the years its business calendar knows: counted by weekdays alone.
    pub calendar_gap: Option<String>,
    /// The deadline of the first clock still running (acknowledge, on site, resolve); `null`
    /// once the ticket is resolved, or when none runs.
    pub next_due: Option<DateTime<Utc>>,
    /// The first move to dispatched, on site or the factory (the phone did not fix it).
    pub handed_on_at: Option<DateTime<Utc>>,
    /// The first fix: resolved (by force, once the fault recovered). The stage clocks judge it;
    /// a reopening does not undo it.
    pub fixed_at: Option<DateTime<Utc>>,
    /// The clocks that start on a moment of the ticket: the remote fix, the on-site fix, the
    /// factory's repair (one ticket's answer only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<super::clocks::Stage>,
}

/// A unit's latest trip to the factory for repair (RMA).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FactoryTrip {
    pub sent_at: DateTime<Utc>,
    /// When it reached the factory; the factory's clock runs from here.
    pub arrived_at: Option<DateTime<Utc>>,
    /// When it left the factory's hands (the ticket left `at_factory`).
    pub back_at: Option<DateTime<Utc>>,
    /// The factory's return number or the carrier's waybill.
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Billing {
    pub class: BillingClass,
    pub reason: Option<String>,
}

crate::domain::named! {
    /// Who pays for a repair.
    pub enum BillingClass {
        /// In warranty.
        Free = "free",
        /// Out of warranty: parts and labour at cost.
        AtCost = "at_cost",
        /// A cause the contract excludes, set by a person with the reason.
        Billable = "billable",
        /// A cause the contract excludes, charged at cost (a repair record's class).
        BillableAtCost = "billable_at_cost",
    }
}

impl BillingClass {
    pub fn of_warranty(in_warranty: bool) -> BillingClass {
        if in_warranty { BillingClass::Free } else { BillingClass::AtCost }
    }
}

/// One append-only line of a ticket's history.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub event: Event,
    /// Who did it: `aftercare` for the rules, else the person or system named.
    pub actor: String,
    pub from_state: Option<State>,
    pub to_state: Option<State>,
    pub tier: Option<Tier>,
    pub note: String,
    /// For the service team alone: a customer's user does not see the line.
    pub internal: bool,
}

crate::domain::named! {
    /// What a line of a ticket's timeline records.
    pub enum Event {
        /// A fault opened the ticket.
        Opened = "opened",
        /// The fault was raised again while the ticket was open.
        Recurred = "recurred",
        /// The fault came back on a resolved ticket, or soon after it was closed.
        Reopened = "reopened",
        /// The fault cleared.
        Recovered = "recovered",
        /// The fault became more severe: a higher tier, stricter clocks.
        Promoted = "promoted",
        /// A person or a helpdesk moved the ticket to another state.
        Transition = "transition",
        /// A contract clock ran out unmet.
        Breach = "breach",
        /// An escalation step fired.
        Escalated = "escalated",
        /// Dispatched, and no progress for the contract's inaction time.
        Inaction = "inaction",
        /// A person made the repair billable.
        Billing = "billing",
        /// The fault came back within the contract's window after a repair.
        RepairFailed = "repair_failed",
        /// Failed repairs reached the contract's count in warranty: replace the unit.
        ReplaceUnit = "replace_unit",
        /// The resolution replaced the unit: failed repairs count afresh.
        UnitReplaced = "unit_replaced",
        /// A person reported the fault of this open ticket (again): the report is added here.
        Reported = "reported",
        /// The ticket was given to someone to work on.
        Assigned = "assigned",
        /// A person's comment, for the customer to read or internal to the service team.
        Comment = "comment",
        /// The repair record of an on-site repair was written.
        Repair = "repair",
        /// The unit reached the factory (RMA): the factory's clock starts.
        Factory = "factory",
        /// A loaner unit is owed while the unit is at the factory.
        Loaner = "loaner",
    }
}

crate::domain::named! {
    /// What a fault event did to the tickets; its name labels the metric and the log.
    pub enum Outcome {
        Opened = "opened",
        /// Raised again while its ticket was still open.
        Recurred = "recurred",
        /// Raised again on a resolved ticket, or soon after it was closed.
        Reopened = "reopened",
        Recovered = "recovered",
        Promoted = "promoted",
        /// Nothing to do (a clear with no open ticket, a promotion that changes nothing).
        Nothing = "nothing",
    }
}

/// A ticket filter for listing.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub state: Option<State>,
    pub open: Option<bool>,
    pub tier: Option<Tier>,
    pub device: Option<String>,
    pub code: Option<String>,
    pub customer: Option<String>,
    /// Only these customers' tickets (a user's scope); `None`: every customer's.
    pub customers: Option<Vec<String>>,
    pub site: Option<String>,
    pub kind: Option<String>,
    pub recovered: Option<bool>,
    pub assignee: Option<String>,
    pub category: Option<Category>,
    pub channel: Option<Channel>,
    /// With a contract clock that ran out (true), or none (false).
    pub breached: Option<bool>,
    /// Whose next deadline is at or before this time (overdue included).
    pub due_before: Option<DateTime<Utc>>,
    /// Nearest deadline first (those with none last), instead of newest first.
    pub by_deadline: bool,
    /// Opened in `[from, to)`.
    pub opened: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub limit: i64,
    pub offset: i64,
}
