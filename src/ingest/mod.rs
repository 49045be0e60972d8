//! Getting readings in: the MQTT client, payload parsing, and the shard
//! workers that own device state and run the rules.

pub mod modbus;
pub mod mqtt;
pub mod payload;
pub mod shard;

/// Why a message was dropped; the label of `aftercare_messages_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The topic is not `{prefix}/{site}/{device}/{telemetry|event|status}`.
    BadTopic,
    UnknownDevice,
    /// The topic's site is not the device's configured site.
    WrongSite,
    Oversized,
    /// Not JSON, or not the expected JSON shape.
    Malformed,
    /// A metric's value has the wrong type for its declaration.
    WrongType,
    BadTimestamp,
    /// A device event with a code its kind does not declare.
    UnknownCode,
    /// A status payload other than `online` / `offline`.
    BadStatus,
    /// Older than the newest reading already applied.
    OutOfOrder,
    /// The shard's queue was full: ingest outran the rules.
    QueueFull,
}

impl Reject {
    pub fn label(self) -> &'static str {
        match self {
            Reject::BadTopic => "bad_topic",
            Reject::UnknownDevice => "unknown_device",
            Reject::WrongSite => "wrong_site",
            Reject::Oversized => "oversized",
            Reject::Malformed => "malformed",
            Reject::WrongType => "wrong_type",
            Reject::BadTimestamp => "bad_timestamp",
            Reject::UnknownCode => "unknown_code",
            Reject::BadStatus => "bad_status",
            Reject::OutOfOrder => "out_of_order",
            Reject::QueueFull => "queue_full",
        }
    }
}
