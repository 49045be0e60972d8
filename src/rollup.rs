//! Hourly rollups, accumulated where the readings are (in the shards) and
//! handed on as partial hours that the store merges. Pure.

use crate::domain::{DeviceIdx, Value};

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Min, max, sum, count and last of one metric over part of an hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acc {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u32,
    pub last: f64,
    pub last_at: i64,
}

impl Acc {
    pub const EMPTY: Acc =
        Acc { min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0, count: 0, last: 0.0, last_at: i64::MIN };

    pub fn push(&mut self, x: f64, at: i64) {
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.sum += x;
        self.count += 1;
        if at >= self.last_at {
            self.last = x;
            self.last_at = at;
        }
    }

    /// Both parts of one hour together (what the store's upsert does).
    pub fn merge(&self, o: &Acc) -> Acc {
        let (last, last_at) = if o.last_at >= self.last_at { (o.last, o.last_at) } else { (self.last, self.last_at) };
        Acc {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
            sum: self.sum + o.sum,
            count: self.count + o.count,
            last,
            last_at,
        }
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.sum / self.count as f64 }
    }
}

/// A partial hour of one device's metric, for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub device: DeviceIdx,
    pub metric: u16,
    pub hour: i64,
    pub acc: Acc,
}

/// One metric's accumulator in a shard: an [`Acc`] whose time is an offset into its hour,
/// 40 bytes where an `Acc` takes 48 (a fleet keeps one per metric of every device).
#[derive(Debug, Clone, Copy)]
struct Part {
    min: f64,
    max: f64,
    sum: f64,
    last: f64,
    count: u32,
    /// ms into the hour of the latest reading.
    last_off: u32,
}

impl Part {
    const EMPTY: Part = Part { min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0, last: 0.0, count: 0, last_off: 0 };

    fn push(&mut self, x: f64, off: u32) {
        if self.count == 0 || off >= self.last_off {
            self.last = x;
            self.last_off = off;
        }
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.sum += x;
        self.count += 1;
    }

    fn acc(&self, hour: i64) -> Acc {
        Acc {
            min: self.min,
            max: self.max,
            sum: self.sum,
            count: self.count,
            last: self.last,
            last_at: hour + i64::from(self.last_off),
        }
    }
}

/// One device's accumulators for the hour its readings are in.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceRollup {
    hour: i64,
    parts: Box<[Part]>,
}

impl DeviceRollup {
    /// Adds readings taken at `at` (ms); a reading in another hour first hands on the hour so far.
    pub(crate) fn add(
        &mut self,
        device: DeviceIdx,
        metrics: usize,
        at: i64,
        readings: &[(u16, Value)],
        out: &mut Vec<RollupRow>,
    ) {
        let hour = at.div_euclid(HOUR_MS) * HOUR_MS;
        if self.parts.len() != metrics {
            self.parts = vec![Part::EMPTY; metrics].into_boxed_slice();
            self.hour = hour;
        }
        if hour != self.hour {
            self.drain(device, out);
            self.hour = hour;
        }
        // Below HOUR_MS, so it fits.
        let off = (at - hour) as u32;
        for (m, v) in readings {
            let x = match v {
                Value::Num(x) if x.is_finite() => *x,
                Value::Bool(b) => *b as u8 as f64,
                _ => continue,
            };
            if let Some(p) = self.parts.get_mut(*m as usize) {
                p.push(x, off);
            }
        }
    }

    /// Hands on what was accumulated and starts afresh (same hour).
    pub(crate) fn drain(&mut self, device: DeviceIdx, out: &mut Vec<RollupRow>) {
        for (m, p) in self.parts.iter_mut().enumerate() {
            if p.count > 0 {
                out.push(RollupRow { device, metric: m as u16, hour: self.hour, acc: p.acc(self.hour) });
                *p = Part::EMPTY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_accumulates_and_a_new_hour_hands_it_on() {
        let d = DeviceIdx(3);
        let mut r = DeviceRollup::default();
        let mut out = Vec::new();
        let t = 10 * HOUR_MS;
        r.add(d, 2, t + 1000, &[(0, Value::Num(5.0)), (1, Value::Bool(true))], &mut out);
        r.add(d, 2, t + 2000, &[(0, Value::Num(1.0)), (1, Value::Text)], &mut out);
        r.add(d, 2, t + 1500, &[(0, Value::Num(9.0))], &mut out);
        assert!(out.is_empty());
        r.add(d, 2, t + HOUR_MS, &[(0, Value::Num(2.0))], &mut out);
        assert_eq!(out.len(), 2);
        let a = out[0].acc;
        assert_eq!((out[0].metric, out[0].hour), (0, t));
        assert_eq!(
            (a.min, a.max, a.count, a.last),
            (1.0, 9.0, 3, 1.0),
            "last is the latest reading, not the last to arrive"
        );
        assert_eq!(a.last_at, t + 2000);
        assert_eq!(a.mean(), 5.0);
        assert_eq!((out[1].metric, out[1].acc.count, out[1].acc.max), (1, 1, 1.0));
        out.clear();
        r.drain(d, &mut out);
        assert_eq!((out.len(), out[0].hour, out[0].acc.sum), (1, t + HOUR_MS, 2.0));
    }

    #[test]
    fn partial_hours_merge_to_the_whole() {
        let mut a = Acc::EMPTY;
        let mut b = Acc::EMPTY;
        let mut whole = Acc::EMPTY;
        for (i, x) in [3.0, -1.0, 7.5, 2.0, 4.0].iter().enumerate() {
            if i < 2 { &mut a } else { &mut b }.push(*x, i as i64);
            whole.push(*x, i as i64);
        }
        assert_eq!(a.merge(&b), whole);
        assert_eq!(b.merge(&a), whole);
    }

    #[test]
    fn a_device_s_hour_takes_40_bytes_a_metric() {
        // A fleet holds one of these per metric of every device it hears: keep it small.
        assert_eq!(std::mem::size_of::<Part>(), 40);
        let mut r = DeviceRollup::default();
        r.add(DeviceIdx(0), 7, 0, &[(0, Value::Num(1.0))], &mut Vec::new());
        assert_eq!(std::mem::size_of_val(&*r.parts), 280);
    }
}
