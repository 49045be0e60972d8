//! The nouns of aftercare: ids, readings, fault tiers and events. No I/O here.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A device's id as the fleet knows it: the `{device}` of its topics.
    DeviceId
);
string_id!(
    /// A site (an installation address) devices belong to.
    SiteId
);
string_id!(
    /// The customer a device was sold to and whose contract covers it.
    CustomerId
);
string_id!(
    /// A fault code from a device kind's profile, such as `tank_leak`.
    FaultCode
);

/// A ticket's number in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct TicketId(pub i64);

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Index of a device in the fleet loaded from config; stable for the process's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceIdx(pub u32);

/// The fault code every device kind has: the device stopped reporting.
pub const OFFLINE: &str = "offline";

/// The fault code of a serial line on which no Modbus unit answers.
pub const BUS_DOWN: &str = "bus_down";

/// The contracts' severity scale (DOMAIN.md, "Fault severity tiers").
/// Tier 1 is the most severe; `Ord` follows severity, so `max` is the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Tier {
    /// Major: basic function lost, an outage past 10 minutes, key data lost.
    Major = 1,
    /// Main: service directly affected, or a risk of outage.
    Main = 2,
    /// Minor: function or performance affected, key business not.
    Minor = 3,
}

impl Tier {
    pub fn number(self) -> u8 {
        self as u8
    }
    pub fn from_number(n: i64) -> Option<Tier> {
        match n {
            1 => Some(Tier::Major),
            2 => Some(Tier::Main),
            3 => Some(Tier::Minor),
            _ => None,
        }
    }
    /// True when `self` is more severe than `other`.
    pub fn outranks(self, other: Tier) -> bool {
        (self as u8) < (other as u8)
    }
}

/// In the API: the number, 1 (most severe) to 3.
impl utoipa::PartialSchema for Tier {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .enum_values(Some([1, 2, 3]))
            .description(Some("The contracts' severity tier: 1 major, 2 main, 3 minor."))
            .into()
    }
}

impl utoipa::ToSchema for Tier {}

impl From<Tier> for u8 {
    fn from(t: Tier) -> u8 {
        t as u8
    }
}

impl TryFrom<u8> for Tier {
    type Error = String;
    fn try_from(n: u8) -> Result<Tier, String> {
        Tier::from_number(n as i64).ok_or_else(|| format!("tier must be 1, 2 or 3, not {n}"))
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", *self as u8)
    }
}

/// A reading's value as the rules see it. Text is accepted and ignored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Num(f64),
    Bool(bool),
    Text,
}

/// What the rules tell the ticket writer. Far rarer than readings.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultEvent {
    /// A rule's raise condition held for its hold time.
    Raised { device: DeviceIdx, code: FaultCode, tier: Tier, at: DateTime<Utc>, detail: String },
    /// The fault's clear condition held for its clear hold time.
    Cleared { device: DeviceIdx, code: FaultCode, at: DateTime<Utc>, detail: String },
    /// An active fault became more severe (an outage passing 10 minutes).
    Promoted { device: DeviceIdx, code: FaultCode, tier: Tier, at: DateTime<Utc>, detail: String },
    /// A device-reported alarm code turned on or off: kept, so that an alarm a device sends
    /// once is not forgotten by a restart during its rule's hold.
    Alarm { device: DeviceIdx, code: String, active: bool, at: DateTime<Utc> },
}

impl FaultEvent {
    pub fn device(&self) -> DeviceIdx {
        match self {
            FaultEvent::Raised { device, .. }
            | FaultEvent::Cleared { device, .. }
            | FaultEvent::Promoted { device, .. }
            | FaultEvent::Alarm { device, .. } => *device,
        }
    }
    /// The fault code of a fault's event; `None` for a device's alarm.
    pub fn code(&self) -> Option<&FaultCode> {
        match self {
            FaultEvent::Raised { code, .. } | FaultEvent::Cleared { code, .. } | FaultEvent::Promoted { code, .. } => {
                Some(code)
            }
            FaultEvent::Alarm { .. } => None,
        }
    }
}

/// An enum whose every value has one name, the same in the store, the API and the
/// helpdesks: `ALL`, `parse`, `as_str` and `Display` from one list, so that no name of a
/// state or an event is written anywhere else.
macro_rules! named {
    ($(#[$doc:meta])* $vis:vis enum $name:ident { $($(#[$vdoc:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $($(#[$vdoc])* #[serde(rename = $s)] $v,)+
        }

        impl $name {
            #[allow(dead_code, reason = "every named enum has them; not each uses each")]
            $vis const ALL: &'static [$name] = &[$($name::$v,)+];

            #[allow(dead_code, reason = "every named enum has them; not each uses each")]
            $vis fn parse(s: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            $vis fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        /// In the API: one of the names.
        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some($name::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {
            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
    };
}
pub(crate) use named;

named! {
    /// What a visit is for.
    pub enum VisitKind {
        Patrol = "patrol",
        Inspection = "inspection",
        Maintenance = "maintenance",
        FollowUp = "follow_up",
    }
}

named! {
    /// Where a work order (a visit) stands: made, started, done, or past its due date undone.
    pub enum VisitState {
        Open = "open",
        InProgress = "in_progress",
        Done = "done",
        Missed = "missed",
    }
}

named! {
    /// What happened to a work order, as its helpdesk hears it.
    pub enum VisitEvent {
        Scheduled = "scheduled",
        Missed = "missed",
        Started = "started",
        Completed = "completed",
        /// The visit's report was made and kept.
        ReportKept = "report_kept",
        /// The visit was given to someone to make.
        Assigned = "assigned",
    }
}

impl VisitEvent {
    /// What the work order's helpdesk is asked to do: open its ticket when the visit is
    /// scheduled, close it when the visit is done, else add to it.
    pub fn helpdesk_action(self) -> HelpdeskAction {
        match self {
            VisitEvent::Scheduled => HelpdeskAction::Trigger,
            VisitEvent::Completed => HelpdeskAction::Resolve,
            VisitEvent::Missed | VisitEvent::Started | VisitEvent::ReportKept | VisitEvent::Assigned => {
                HelpdeskAction::Update
            }
        }
    }
}

named! {
    /// What happened to a device's fault: the device's state history keeps one row each.
    pub enum FaultChange {
        Raised = "raised",
        Cleared = "cleared",
        /// Became more severe while active.
        Promoted = "promoted",
    }
}

named! {
    /// What a helpdesk is asked to do with an event: open its ticket, add to it, or close it.
    pub enum HelpdeskAction {
        Trigger = "trigger",
        Update = "update",
        Resolve = "resolve",
    }
}

named! {
    /// Where an event for a helpdesk stands: waiting (or retrying), delivered, given up on
    /// after its attempts, or not for any helpdesk.
    pub enum OutboxState {
        Pending = "pending",
        Delivered = "delivered",
        Dead = "dead",
        Skipped = "skipped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_back<T: Copy + PartialEq + std::fmt::Debug + Serialize>(
        all: &[T],
        name: fn(T) -> &'static str,
        parse: fn(&str) -> Option<T>,
    ) {
        for &v in all {
            assert_eq!(parse(name(v)), Some(v));
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::json!(name(v)),
                "the API says what the store keeps"
            );
        }
        let names: std::collections::HashSet<_> = all.iter().map(|&v| name(v)).collect();
        assert_eq!(names.len(), all.len(), "one name a value");
    }

    #[test]
    fn states_kinds_and_events_read_back_what_they_write() {
        reads_back(VisitKind::ALL, VisitKind::as_str, VisitKind::parse);
        reads_back(VisitState::ALL, VisitState::as_str, VisitState::parse);
        reads_back(VisitEvent::ALL, VisitEvent::as_str, VisitEvent::parse);
        reads_back(FaultChange::ALL, FaultChange::as_str, FaultChange::parse);
        reads_back(HelpdeskAction::ALL, HelpdeskAction::as_str, HelpdeskAction::parse);
        reads_back(OutboxState::ALL, OutboxState::as_str, OutboxState::parse);
        assert_eq!((VisitKind::parse("Patrol"), VisitState::parse("closed")), (None, None));
        // A name takes a table's width like any string.
        assert_eq!(format!("[{:<8}]", VisitKind::Patrol), "[patrol  ]");
    }
}
