//! Getting readings in: the MQTT client, payload parsing, and the shard
//! workers that own device state and run the rules.

pub mod modbus;
pub(crate) mod mqtt;
pub mod payload;
pub(crate) mod shard;

/// How telemetry comes in: topics, limits and the shards.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub topic_prefix: String,
    pub max_payload_bytes: usize,
    /// A device time further ahead of the gateway's clock than this is refused.
    pub max_clock_skew: std::time::Duration,
    pub shards: usize,
    pub queue_capacity: usize,
    pub modbus_concurrency: usize,
}

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
    /// `ts` unreadable, or before 2000-01-01 (a clock never set, or epoch seconds for milliseconds).
    BadTimestamp,
    /// `ts` more than `ingest.max_clock_skew` ahead of the gateway's clock.
    FutureTimestamp,
    /// A device event with a code its kind does not declare.
    UnknownCode,
    /// A status payload other than `online` / `offline`.
    BadStatus,
    /// Older than the newest reading already applied.
    OutOfOrder,
}

/// One log limiter per reason: a flood of one kind of bad input hides none of another.
static REJECT_LOG: [crate::clock::LogLimiter; 12] = [const { crate::clock::LogLimiter::new(10.0) }; 12];

impl Reject {
    /// `Some(held back)` when a line about this reason may be logged now (see [`crate::clock::LogLimiter`]).
    pub fn may_log(self) -> Option<u64> {
        REJECT_LOG[self as usize].allow()
    }

    pub fn label(self) -> &'static str {
        match self {
            Reject::BadTopic => "bad_topic",
            Reject::UnknownDevice => "unknown_device",
            Reject::WrongSite => "wrong_site",
            Reject::Oversized => "oversized",
            Reject::Malformed => "malformed",
            Reject::WrongType => "wrong_type",
            Reject::BadTimestamp => "bad_timestamp",
            Reject::FutureTimestamp => "future_timestamp",
            Reject::UnknownCode => "unknown_code",
            Reject::BadStatus => "bad_status",
            Reject::OutOfOrder => "out_of_order",
        }
    }

    /// What the sender should do differently, for the log line of a rejected message.
    pub fn hint(self) -> &'static str {
        match self {
            Reject::BadTimestamp => {
                "ts must be an RFC 3339 time or epoch milliseconds (13 digits today) after 2000-01-01; \
                 epoch seconds are refused"
            }
            Reject::FutureTimestamp => {
                "ts is further ahead of the gateway's clock than ingest.max_clock_skew: set the device's clock \
                 (and send milliseconds, not microseconds)"
            }
            Reject::OutOfOrder => "ts is older than the device's newest reading",
            Reject::Oversized => "the message is larger than ingest.max_payload_bytes",
            _ => "",
        }
    }
}
