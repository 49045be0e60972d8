//! Delivering ticket changes to the customers' helpdesks. The store writes an
//! outbox row in the same transaction as each change; the relay here claims
//! due rows (the earliest pending one per ticket, so a ticket's events arrive
//! in order), hands each to its customer's connector, and records the
//! outcome: delivered, retried later with backoff and jitter (honouring
//! `Retry-After`), or dead after `outbox.dead_after`. A dead (poison) row
//! blocks nothing: the ticket's next row goes on. Rows wait in the database,
//! never in memory, however long a helpdesk is down.
//!
//! Only this module talks to helpdesks.

pub mod email;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::{HelpdeskConfig, HelpdeskKind, OutboxConfig};
use crate::fleet::Fleet;
use crate::metrics::{Metrics, ReasonLabel};
use crate::store::{OutboxRow, Store};
use crate::tickets::Ticket;

/// Why a delivery did not take; tells the relay what to do without reading strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// Try again later; `after` is the receiver's `Retry-After`, if it gave one.
    Retryable { after: Option<Duration>, message: String },
    /// The receiver refused this event for good: dead-letter it.
    Permanent(String),
    /// The endpoint is gone (HTTP 410): dead-letter the event and stop using the endpoint.
    Gone(String),
}

/// One event to deliver, with the ticket as it is now.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub row: OutboxRow,
    pub ticket: Ticket,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A helpdesk connector. One file each.
pub trait Connector: Send + Sync {
    fn name(&self) -> &str;
    fn deliver<'a>(&'a self, d: &'a Delivery, now: DateTime<Utc>) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// Builds the configured connectors.
pub fn connectors(cfg: &[HelpdeskConfig]) -> anyhow::Result<HashMap<String, Arc<dyn Connector>>> {
    let mut out: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    for h in cfg {
        let c: Arc<dyn Connector> = match &h.kind {
            HelpdeskKind::Webhook { url, secret, timeout } => {
                Arc::new(webhook::Webhook::new(&h.name, url, secret.clone(), *timeout, h.priorities.clone())?)
            }
            HelpdeskKind::Email(c) => Arc::new(email::Email::new(&h.name, c, h.priorities.clone())?),
        };
        out.insert(h.name.clone(), c);
    }
    Ok(out)
}

/// The actor name of a change that helpdesk `name` sent in.
pub fn origin_of(name: &str, person: &str) -> String {
    if person.is_empty() { format!("helpdesk:{name}") } else { format!("helpdesk:{name} ({person})") }
}

/// Whether a change made by `origin` came from helpdesk `name`.
pub fn is_echo(origin: &str, name: &str) -> bool {
    origin
        .strip_prefix("helpdesk:")
        .and_then(|r| r.strip_prefix(name))
        .is_some_and(|r| r.is_empty() || r.starts_with(' '))
}

/// The wait before attempt `attempts + 1`: 1 s doubling, capped, with up to 20 % jitter.
pub fn backoff(attempts: i64, max: Duration, jitter_seed: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << attempts.clamp(0, 20) as u32).min(max);
    let jitter = base.mul_f64((jitter_seed % 1000) as f64 / 5000.0);
    (base + jitter).min(max)
}

/// What happens to a row after a failed attempt at `now`: retry at a time, or dead.
pub fn after_failure(
    row: &OutboxRow,
    err: &DeliveryError,
    now: DateTime<Utc>,
    cfg: &OutboxConfig,
) -> Option<DateTime<Utc>> {
    let wait = match err {
        DeliveryError::Permanent(_) | DeliveryError::Gone(_) => return None,
        DeliveryError::Retryable { after: Some(a), .. } => (*a).min(Duration::from_secs(3600)),
        DeliveryError::Retryable { after: None, .. } => {
            backoff(row.attempts, cfg.max_backoff, now.timestamp_subsec_micros())
        }
    };
    let next = now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
    let deadline = row.created_at + TimeDelta::from_std(cfg.dead_after).unwrap_or(TimeDelta::MAX);
    (next <= deadline).then_some(next)
}

pub struct Relay {
    pub store: Store,
    pub fleet: Arc<Fleet>,
    pub connectors: HashMap<String, Arc<dyn Connector>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub cfg: OutboxConfig,
    /// Connectors whose endpoint answered 410 Gone; their rows wait until restart.
    disabled: HashMap<String, Arc<AtomicBool>>,
    /// Customers that have a helpdesk; fixed by the config.
    routed: Vec<String>,
}

impl Relay {
    pub fn new(
        store: Store,
        fleet: Arc<Fleet>,
        connectors: HashMap<String, Arc<dyn Connector>>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        cfg: OutboxConfig,
    ) -> Relay {
        let disabled = connectors.keys().map(|k| (k.clone(), Arc::new(AtomicBool::new(false)))).collect();
        let routed = fleet.customers.iter().filter(|c| c.helpdesk.is_some()).map(|c| c.id.0.clone()).collect();
        Relay { store, fleet, connectors, clock, metrics, cfg, disabled, routed }
    }

    /// The connector of a customer, unless it was disabled.
    fn route(&self, customer: &str) -> Option<(Arc<dyn Connector>, Arc<AtomicBool>)> {
        let name = self.fleet.customers.iter().find(|c| c.id.as_str() == customer)?.helpdesk.as_ref()?;
        let off = self.disabled.get(name)?;
        if off.load(Ordering::Relaxed) {
            return None;
        }
        Some((Arc::clone(self.connectors.get(name)?), Arc::clone(off)))
    }

    /// One pass: delivers what is due now; returns how many rows were attempted.
    pub async fn run_once(&self) -> Result<usize, crate::store::StoreError> {
        self.store.outbox_skip_unrouted(&self.routed).await?;
        let now = self.clock.now();
        let rows = self.store.due_outbox(now, 256).await?;
        let mut set = JoinSet::new();
        let sem = Arc::new(tokio::sync::Semaphore::new(self.cfg.concurrency));
        let mut attempted = 0;
        for row in rows {
            let Some((conn, off)) = self.route(&row.customer) else { continue };
            if is_echo(&row.origin, conn.name()) {
                // The helpdesk made this change itself: sending it back would loop.
                self.store.outbox_skip(row.id).await?;
                continue;
            }
            let Some(ticket) = self.store.ticket(row.ticket_id).await? else { continue };
            attempted += 1;
            let permit = Arc::clone(&sem).acquire_owned().await;
            let (store, metrics, cfg, clock) =
                (self.store.clone(), Arc::clone(&self.metrics), self.cfg.clone(), Arc::clone(&self.clock));
            set.spawn(async move {
                let _permit = permit;
                let d = Delivery { row, ticket };
                let res = conn.deliver(&d, clock.now()).await;
                let now = clock.now();
                let row = &d.row;
                let outcome = match &res {
                    Ok(()) => store.outbox_delivered(row.id, now).await,
                    Err(e) => {
                        let (reason, msg) = match e {
                            DeliveryError::Retryable { message, .. } => ("retryable", message.as_str()),
                            DeliveryError::Permanent(m) => ("permanent", m.as_str()),
                            DeliveryError::Gone(m) => ("gone", m.as_str()),
                        };
                        metrics.outbox_failures.get_or_create(&ReasonLabel { reason }).inc();
                        if matches!(e, DeliveryError::Gone(_)) {
                            off.store(true, Ordering::Relaxed);
                            error!(
                                helpdesk = conn.name(),
                                error = msg,
                                "the endpoint is gone (410); no more deliveries to it until restart"
                            );
                        }
                        let next = after_failure(row, e, now, &cfg);
                        if next.is_none() {
                            metrics.outbox_dead.inc();
                            warn!(helpdesk = conn.name(), event = %row.event_id, error = msg, "event dead-lettered");
                        }
                        store.outbox_failed(row.id, msg, next).await
                    }
                };
                if res.is_ok() {
                    metrics.outbox_delivered.inc();
                    info!(helpdesk = conn.name(), event = %row.event_id, ticket = row.ticket_id.0, "delivered");
                }
                if let Err(e) = outcome {
                    error!(error = %e, event = %row.event_id, "recording a delivery failed; it will be tried again");
                }
            });
        }
        while set.join_next().await.is_some() {}
        Ok(attempted)
    }

    /// Runs until shutdown, a pass every 500 ms.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = self.run_once().await {
                error!(error = %e, "the outbox relay failed a pass; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests;
