//! aftercare: watches field equipment over MQTT, classifies faults into the
//! service contracts' three tiers, and keeps one ticket per fault.
//!
//! Modules in the order data flows; see ARCHITECTURE.md.

pub mod api;
pub mod app;
pub mod broker;
pub mod calendar;
pub mod clock;
pub mod config;
pub mod contracts;
pub mod demo;
pub mod desk;
pub mod domain;
pub mod fleet;
pub mod history;
pub mod ingest;
pub mod malloc;
pub mod metrics;
pub mod modbus;
pub mod outbox;
pub mod report;
pub mod rollup;
pub mod rules;
pub mod schedule;
pub mod store;
pub mod tickets;
