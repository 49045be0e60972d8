//! aftercare: watches field equipment over MQTT, classifies faults into the
//! service contracts' three tiers, and keeps one ticket per fault.
//!
//! Modules in the order data flows; see ARCHITECTURE.md.

mod access;
mod api;
pub mod app;
mod broker;
mod calendar;
pub mod clock;
pub mod config;
mod contracts;
pub mod demo;
mod desk;
pub mod domain;
mod fleet;
pub mod history;
pub mod identity;
pub mod ingest;
pub mod malloc;
pub mod metrics;
pub mod modbus;
pub mod notify;
mod outbox;
pub mod report;
mod rollup;
pub mod rules;
mod schedule;
mod spares;
pub mod store;
pub mod tickets;
mod tls;
