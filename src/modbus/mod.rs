//! Modbus, pure: a kind's register map (`map`: points and their decoding), the requests
//! that read it (`plan`), and how a device is reached. `ingest::modbus` polls with them.

pub mod map;
pub mod plan;

use std::time::Duration;

pub use map::{DataType, Function, Order, Point};
pub use plan::Request;

/// A kind's register map and the requests that read it, planned once.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMap {
    pub points: Vec<Point>,
    /// Unused addresses a request may bridge to take in the next point.
    pub gap: u16,
    pub requests: Vec<Request>,
}

impl RegisterMap {
    pub fn new(points: Vec<Point>, gap: u16) -> RegisterMap {
        let requests = plan::plan(&points, gap);
        RegisterMap { points, gap, requests }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// A serial line and its settings; devices on one path share them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub path: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// host:port
    Tcp(String),
    Rtu(Line),
}

/// How one device is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub transport: Transport,
    pub unit: u8,
    pub poll: Duration,
    /// For each request; a silent device never holds a poll longer.
    pub timeout: Duration,
    /// Further attempts of a failed request within one poll.
    pub retries: u32,
    /// Wait between two requests (slow devices, RTU turnaround).
    pub pause: Duration,
    /// Consecutive failed polls after which the device is offline.
    pub offline_after: u32,
}
