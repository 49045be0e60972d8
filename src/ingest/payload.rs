//! The wire convention (DESIGN.md): topics and JSON payloads, parsed
//! without allocating on the hot path. Pure: no I/O, no clock.
//!
//! - `{prefix}/{site}/{device}/telemetry`: `{"ts": "2026-11-22T08:00:00Z", "metrics": {"tank_temp_c": 61.5}}`
//!   (`ts` optional: RFC 3339 or epoch milliseconds; numbers, booleans and strings allowed).
//! - `{prefix}/{site}/{device}/event`: `{"code": "E07", "active": true}` (`ts` optional).
//! - `{prefix}/{site}/{device}/status`: `online` or `offline`, retained; `offline` is the last will.

use std::borrow::Cow;
use std::fmt;

use chrono::DateTime;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::Reject;
use crate::domain::Value;
use crate::rules::{MetricType, Profile};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Telemetry,
    Event,
    Status,
    /// Readings a Modbus poll decoded (in `Msg::readings`), at the poll's time.
    Polled,
    /// A Modbus device failed its last `offline_after` polls.
    Unreachable,
    /// A Modbus unit on a bus that is down: the bus fault stands for it, not one fault per unit.
    Covered,
}

/// Splits a topic into site, device and channel.
pub fn parse_topic<'t>(prefix: &str, topic: &'t str) -> Result<(&'t str, &'t str, Channel), Reject> {
    let rest = topic.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')).ok_or(Reject::BadTopic)?;
    let mut parts = rest.split('/');
    let (Some(site), Some(device), Some(ch), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Reject::BadTopic);
    };
    let ch = match ch {
        "telemetry" => Channel::Telemetry,
        "event" => Channel::Event,
        "status" => Channel::Status,
        _ => return Err(Reject::BadTopic),
    };
    Ok((site, device, ch))
}

/// What a telemetry message held besides its readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TelemetryMeta {
    /// Device time in ms since the epoch, if the message gave one.
    pub ts: Option<i64>,
    /// Metrics the profile does not declare (ignored).
    pub unknown_metrics: u32,
    /// `ts` was there but no time: judged once the whole message has parsed.
    bad_ts: bool,
}

/// Parses a telemetry payload, appending the declared metrics' readings to `out`.
/// On error `out` may hold a partial result; the caller discards it.
pub fn parse_telemetry(
    payload: &[u8],
    profile: &Profile,
    out: &mut Vec<(u16, Value)>,
) -> Result<TelemetryMeta, Reject> {
    let mut failure = None;
    let mut meta = TelemetryMeta::default();
    let mut de = serde_json::Deserializer::from_slice(payload);
    let seed = Envelope { profile, out, meta: &mut meta, failure: &mut failure };
    let res = seed.deserialize(&mut de).and_then(|()| de.end());
    match (res, failure) {
        (_, Some(r)) => Err(r),
        (Err(_), None) => Err(Reject::Malformed),
        (Ok(()), None) if meta.bad_ts => Err(Reject::BadTimestamp),
        (Ok(()), None) => Ok(meta),
    }
}

struct Envelope<'a> {
    profile: &'a Profile,
    out: &'a mut Vec<(u16, Value)>,
    meta: &'a mut TelemetryMeta,
    failure: &'a mut Option<Reject>,
}

impl<'de> DeserializeSeed<'de> for Envelope<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Envelope<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an object {"ts": ..., "metrics": {...}}"#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut saw_metrics = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                // A bad time is a verdict on a message that parses; a cut-off one is malformed.
                "ts" => match map.next_value::<Ts>()? {
                    Ts::At(ms) => self.meta.ts = Some(ms),
                    Ts::Absent => self.meta.ts = None,
                    Ts::Bad => self.meta.bad_ts = true,
                },
                "metrics" => {
                    saw_metrics = true;
                    map.next_value_seed(Metrics {
                        profile: self.profile,
                        out: self.out,
                        unknown: &mut self.meta.unknown_metrics,
                        failure: self.failure,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !saw_metrics {
            return Err(de::Error::missing_field("metrics"));
        }
        Ok(())
    }
}

struct Metrics<'a> {
    profile: &'a Profile,
    out: &'a mut Vec<(u16, Value)>,
    unknown: &'a mut u32,
    failure: &'a mut Option<Reject>,
}

impl<'de> DeserializeSeed<'de> for Metrics<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Metrics<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of metric names to values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let Some(m) = self.profile.metric(&key) else {
                *self.unknown += 1;
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let v = map.next_value::<Raw>()?;
            let ty = self.profile.metrics[m as usize].ty;
            let value = match (ty, v) {
                (_, Raw::Null) => continue,
                (MetricType::Number | MetricType::Bool, Raw::Num(x)) if x.is_finite() => Value::Num(x),
                (MetricType::Number | MetricType::Bool, Raw::Bool(b)) => Value::Bool(b),
                (MetricType::Text, Raw::Str) => Value::Text,
                _ => {
                    *self.failure = Some(Reject::WrongType);
                    return Err(de::Error::custom("wrong type"));
                }
            };
            self.out.push((m, value));
        }
        Ok(())
    }
}

/// A metric value as it came, before its declaration is checked.
enum Raw {
    Num(f64),
    Bool(bool),
    Str,
    Null,
    Other,
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, boolean or string")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Num(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Num(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw::Num(v as f64))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_str<E>(self, _: &str) -> Result<Raw, E> {
                Ok(Raw::Str)
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Raw, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Raw::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Raw, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Raw::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The earliest device time accepted, 2000-01-01T00:00:00Z in ms: anything before it is a
/// clock that was never set, or epoch seconds sent where milliseconds are expected.
pub const EARLIEST_TS_MS: i64 = 946_684_800_000;
/// The latest device time that can be represented, 9999-12-31T23:59:59.999Z in ms.
const LATEST_TS_MS: i64 = 253_402_300_799_999;

/// A timestamp as it came: an RFC 3339 string or epoch milliseconds, `null` or none at all,
/// or something else. Never an error, so that a bad time is told apart from a cut-off message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ts {
    At(i64),
    Absent,
    Bad,
}

impl Ts {
    fn ms(ms: i64) -> Ts {
        if (EARLIEST_TS_MS..=LATEST_TS_MS).contains(&ms) { Ts::At(ms) } else { Ts::Bad }
    }
}

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ts, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time or epoch milliseconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ts, E> {
                Ok(DateTime::parse_from_rfc3339(s).map_or(Ts::Bad, |t| Ts::ms(t.timestamp_millis())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ts, E> {
                Ok(i64::try_from(v).map_or(Ts::Bad, Ts::ms))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ts, E> {
                Ok(Ts::ms(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ts, E> {
                // In range, the cast is exact to the millisecond; out of range it saturates and is refused.
                Ok(if v.is_finite() { Ts::ms(v as i64) } else { Ts::Bad })
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Ts, E> {
                Ok(Ts::Bad)
            }
            fn visit_unit<E>(self) -> Result<Ts, E> {
                Ok(Ts::Absent)
            }
            fn visit_none<E>(self) -> Result<Ts, E> {
                Ok(Ts::Absent)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Ts, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Ts::Bad)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ts, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Ts::Bad)
            }
        }
        d.deserialize_any(V)
    }
}

/// A device-reported alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub code: Cow<'a, str>,
    pub active: bool,
    pub ts: Option<i64>,
}

pub fn parse_event(payload: &[u8]) -> Result<Event<'_>, Reject> {
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(borrow)]
        code: Cow<'a, str>,
        active: bool,
        #[serde(default)]
        ts: Option<Ts>,
    }
    let w: Wire<'_> = serde_json::from_slice(payload).map_err(|_| Reject::Malformed)?;
    let ts = match w.ts {
        Some(Ts::Bad) => return Err(Reject::BadTimestamp),
        Some(Ts::At(ms)) => Some(ms),
        Some(Ts::Absent) | None => None,
    };
    Ok(Event { code: w.code, active: w.active, ts })
}

/// Parses a status payload: `online` or `offline`, plain or as a JSON string.
pub fn parse_status(payload: &[u8]) -> Result<bool, Reject> {
    let s = std::str::from_utf8(payload).map_err(|_| Reject::BadStatus)?.trim().trim_matches('"');
    if s.eq_ignore_ascii_case("online") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("offline") {
        Ok(false)
    } else {
        Err(Reject::BadStatus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::profile;

    #[test]
    fn topics_split_into_site_device_channel() {
        let check =
            |t: &str, want: Result<(&str, &str, Channel), Reject>| assert_eq!(parse_topic("aftercare", t), want, "{t}");
        check("aftercare/s1/d1/telemetry", Ok(("s1", "d1", Channel::Telemetry)));
        check("aftercare/s1/d1/event", Ok(("s1", "d1", Channel::Event)));
        check("aftercare/s1/d1/status", Ok(("s1", "d1", Channel::Status)));
        check("aftercare/s1/d1/other", Err(Reject::BadTopic));
        check("aftercare/s1/telemetry", Err(Reject::BadTopic));
        check("aftercare/s1/d1/telemetry/x", Err(Reject::BadTopic));
        check("aftercarex/s1/d1/telemetry", Err(Reject::BadTopic));
        check("other/s1/d1/telemetry", Err(Reject::BadTopic));
    }

    #[test]
    fn telemetry_parses_declared_metrics_and_counts_the_rest() {
        let p = profile();
        let mut out = Vec::new();
        let meta = parse_telemetry(
            br#"{"metrics": {"temp": 61.5, "door": true, "firmware": "1.2", "extra": [1,2], "level": null}, "ts": "2026-11-22T08:00:00Z", "v": 2}"#,
            &p,
            &mut out,
        )
        .unwrap();
        assert_eq!(meta.ts, Some(1_795_334_400_000));
        assert_eq!(meta.unknown_metrics, 1);
        let temp = p.metric("temp").unwrap();
        let door = p.metric("door").unwrap();
        assert!(out.contains(&(temp, Value::Num(61.5))));
        assert!(out.contains(&(door, Value::Bool(true))));
        assert!(out.iter().any(|(m, v)| *m == p.metric("firmware").unwrap() && *v == Value::Text));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn bad_telemetry_is_rejected_by_reason() {
        let p = profile();
        let check = |payload: &str, want: Reject| {
            let mut out = Vec::new();
            assert_eq!(parse_telemetry(payload.as_bytes(), &p, &mut out), Err(want), "{payload}");
        };
        check("not json", Reject::Malformed);
        check("", Reject::Malformed);
        check("[1,2]", Reject::Malformed);
        check(r#"{"ts": "2026-11-22T08:00:00Z"}"#, Reject::Malformed);
        check(r#"{"metrics": {"temp": 1}} trailing"#, Reject::Malformed);
        check(r#"{"metrics": {"temp": "hot"}}"#, Reject::WrongType);
        check(r#"{"metrics": {"temp": {"v": 1}}}"#, Reject::WrongType);
        check(r#"{"metrics": {"firmware": 3}}"#, Reject::WrongType);
        check(r#"{"ts": "yesterday", "metrics": {"temp": 1}}"#, Reject::BadTimestamp);
        check(r#"{"ts": true, "metrics": {"temp": 1}}"#, Reject::BadTimestamp);
        check(r#"{"metrics": {"temp": 1e999}}"#, Reject::Malformed);
        // Cut off after the time's key: malformed, whatever the key was.
        check(r#"{"ts""#, Reject::Malformed);
        check(r#"{"ts": 1795334400000, "metr"#, Reject::Malformed);
        // Epoch seconds where milliseconds are expected would be January 1970.
        check(r#"{"ts": 1732000000, "metrics": {"temp": 1}}"#, Reject::BadTimestamp);
        check(r#"{"ts": 1732000000.5, "metrics": {"temp": 1}}"#, Reject::BadTimestamp);
        check(r#"{"ts": "1999-12-31T23:59:59Z", "metrics": {"temp": 1}}"#, Reject::BadTimestamp);
        check(r#"{"ts": -1, "metrics": {"temp": 1}}"#, Reject::BadTimestamp);
        check(r#"{"ts": 9000000000000000000, "metrics": {"temp": 1}}"#, Reject::BadTimestamp);
        check(r#"{"ts": 18446744073709551615, "metrics": {"temp": 1}}"#, Reject::BadTimestamp);
        check(r#"{"ts": {"s": 1}, "metrics": {"temp": 1}}"#, Reject::BadTimestamp);
        // A bad time in a message that is also cut off is malformed: the message never arrived whole.
        check(r#"{"ts": "noon", "metrics": {"temp": 1"#, Reject::Malformed);
    }

    #[test]
    fn epoch_millisecond_timestamps_are_accepted() {
        let p = profile();
        let mut out = Vec::new();
        let meta = parse_telemetry(br#"{"ts": 1795334400000, "metrics": {"temp": 1}}"#, &p, &mut out).unwrap();
        assert_eq!(meta.ts, Some(1_795_334_400_000));
        let meta = parse_telemetry(br#"{"ts": "2000-01-01T00:00:00Z", "metrics": {}}"#, &p, &mut out).unwrap();
        assert_eq!(meta.ts, Some(EARLIEST_TS_MS));
        let meta = parse_telemetry(br#"{"ts": null, "metrics": {}}"#, &p, &mut out).unwrap();
        assert_eq!(meta.ts, None);
    }

    #[test]
    fn events_and_statuses() {
        let e = parse_event(br#"{"code": "E07", "active": true}"#).unwrap();
        assert_eq!((e.code.as_ref(), e.active, e.ts), ("E07", true, None));
        assert_eq!(parse_event(br#"{"code": "E07"}"#), Err(Reject::Malformed));
        assert_eq!(parse_event(br#"{"code": "E07", "active": false, "ts": "x"}"#), Err(Reject::BadTimestamp));
        assert_eq!(parse_event(br#"{"code": "E07", "active": false, "ts": 1732000000}"#), Err(Reject::BadTimestamp));
        assert_eq!(parse_event(br#"{"code": "E07", "active": false, "ts""#), Err(Reject::Malformed));
        assert_eq!(
            parse_event(br#"{"code": "E07", "active": true, "ts": 1795334400000}"#).unwrap().ts,
            Some(1_795_334_400_000)
        );
        assert_eq!(parse_status(b"online"), Ok(true));
        assert_eq!(parse_status(b"\"offline\"\n"), Ok(false));
        assert_eq!(parse_status(b"maybe"), Err(Reject::BadStatus));
        assert_eq!(parse_status(&[0xff, 0xfe]), Err(Reject::BadStatus));
    }
}
