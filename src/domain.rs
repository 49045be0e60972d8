//! The nouns of aftercare: ids, readings, fault tiers and events. No I/O here.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// What a visit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitKind {
    Patrol,
    Inspection,
    Maintenance,
    FollowUp,
}

impl VisitKind {
    pub const ALL: [VisitKind; 4] =
        [VisitKind::Patrol, VisitKind::Inspection, VisitKind::Maintenance, VisitKind::FollowUp];

    pub fn parse(s: &str) -> Option<VisitKind> {
        VisitKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            VisitKind::Patrol => "patrol",
            VisitKind::Inspection => "inspection",
            VisitKind::Maintenance => "maintenance",
            VisitKind::FollowUp => "follow_up",
        }
    }
}

/// Where a work order (a visit) stands: made, started, done, or past its due date undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitState {
    Open,
    InProgress,
    Done,
    Missed,
}

impl VisitState {
    pub const ALL: [VisitState; 4] = [VisitState::Open, VisitState::InProgress, VisitState::Done, VisitState::Missed];

    pub fn parse(s: &str) -> Option<VisitState> {
        VisitState::ALL.into_iter().find(|v| v.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            VisitState::Open => "open",
            VisitState::InProgress => "in_progress",
            VisitState::Done => "done",
            VisitState::Missed => "missed",
        }
    }
}

impl fmt::Display for VisitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for VisitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a helpdesk is asked to do with an event: open its ticket, add to it, or close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HelpdeskAction {
    Trigger,
    Update,
    Resolve,
}

impl HelpdeskAction {
    pub const ALL: [HelpdeskAction; 3] = [HelpdeskAction::Trigger, HelpdeskAction::Update, HelpdeskAction::Resolve];

    pub fn parse(s: &str) -> Option<HelpdeskAction> {
        HelpdeskAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            HelpdeskAction::Trigger => "trigger",
            HelpdeskAction::Update => "update",
            HelpdeskAction::Resolve => "resolve",
        }
    }
}

/// Where an event for a helpdesk stands: waiting (or retrying), delivered, given up on after
/// its attempts, or not for any helpdesk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    Pending,
    Delivered,
    Dead,
    Skipped,
}

impl OutboxState {
    pub const ALL: [OutboxState; 4] =
        [OutboxState::Pending, OutboxState::Delivered, OutboxState::Dead, OutboxState::Skipped];

    pub fn parse(s: &str) -> Option<OutboxState> {
        OutboxState::ALL.into_iter().find(|a| a.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
            OutboxState::Skipped => "skipped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_kinds_read_back_what_they_write() {
        for k in VisitKind::ALL {
            assert_eq!(VisitKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.as_str()),
                "the API says what the store keeps"
            );
        }
        for st in VisitState::ALL {
            assert_eq!(VisitState::parse(st.as_str()), Some(st));
            assert_eq!(serde_json::to_value(st).unwrap(), serde_json::json!(st.as_str()));
        }
        assert_eq!((VisitKind::parse("Patrol"), VisitState::parse("closed")), (None, None));
        for a in HelpdeskAction::ALL {
            assert_eq!(HelpdeskAction::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), serde_json::json!(a.as_str()));
        }
        for st in OutboxState::ALL {
            assert_eq!(OutboxState::parse(st.as_str()), Some(st));
            assert_eq!(serde_json::to_value(st).unwrap(), serde_json::json!(st.as_str()));
        }
    }
}
