//! Delivering ticket and work order changes to the customers' helpdesks. The
//! store writes an outbox row in the same transaction as each change; the relay
//! here claims due rows (the earliest pending one per ticket or work order, so
//! their events arrive in order), hands each to its customer's connector, and records the
//! outcome: delivered, retried later with backoff and jitter (honouring
//! `Retry-After`), or dead after `outbox.dead_after`. A dead (poison) row
//! blocks nothing: the ticket's next row goes on. Rows wait in the database,
//! never in memory, however long a helpdesk is down.
//!
//! Request Tracker and Redmine are also polled for what people did there
//! (status.rs), applied as transitions that name the helpdesk; a change a
//! helpdesk made is never sent back to it. A work order is completed with its
//! checklist answers through the API, so its remote status is not read back.
//!
//! Only this module talks to helpdesks.

pub(crate) mod email;
pub(crate) mod redmine;
pub(crate) mod rt;
pub(crate) mod status;
pub(crate) mod webhook;

mod http;
mod relay;
mod subject;

pub(crate) use http::*;
pub(crate) use relay::*;
pub(crate) use subject::*;

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
use crate::fleet::Fleet;
use crate::metrics::{Metrics, ReasonLabel};
use crate::store::{OutboxRow, RemoteTicket, Store, SubjectId, WorkOrder};
use crate::tickets::{State, Ticket};

/// A helpdesk that receives tickets. Its Debug shows no key and no password in a URL.
#[derive(Clone)]
pub enum HelpdeskKind {
    Webhook { url: String, secret: Option<Vec<u8>>, timeout: Duration },
    Email(crate::outbox::email::EmailConfig),
    RequestTracker(crate::outbox::rt::RtConfig),
    Redmine(crate::outbox::redmine::RedmineConfig),
}

impl std::fmt::Debug for HelpdeskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelpdeskKind::Webhook { url, secret, timeout } => f
                .debug_struct("Webhook")
                .field("url", &redact(url))
                .field("secret", &secret.as_ref().map(|_| "[redacted]"))
                .field("timeout", timeout)
                .finish(),
            HelpdeskKind::Email(e) => f.debug_tuple("Email").field(e).finish(),
            HelpdeskKind::RequestTracker(rt) => f.debug_tuple("RequestTracker").field(rt).finish(),
            HelpdeskKind::Redmine(rm) => f.debug_tuple("Redmine").field(rm).finish(),
        }
    }
}

/// A helpdesk's config; its Debug shows no key.
#[derive(Clone)]
pub struct HelpdeskConfig {
    pub name: String,
    pub kind: HelpdeskKind,
    /// The helpdesk's priority names for tiers 1, 2 and 3.
    pub priorities: [String; 3],
    /// The key that signs the status events the helpdesk sends in (`POST /api/v1/helpdesks/NAME/events`):
    /// the webhook's secret, or the email connector's own.
    pub secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for HelpdeskConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelpdeskConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("priorities", &self.priorities)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    pub dead_after: Duration,
    pub max_backoff: Duration,
    pub concurrency: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeliveryError {
    /// Try again later; `after` is the receiver's `Retry-After`, if it gave one.
    Retryable { after: Option<Duration>, message: String },
    /// The receiver refused this event for good: dead-letter it.
    Permanent(String),
    /// The endpoint is gone (HTTP 410): dead-letter the event and stop using the endpoint.
    Gone(String),
}

/// What an event is about, as it is now: a ticket, or a work order (a planned visit).
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    Ticket(Box<Ticket>),
    WorkOrder(Box<WorkOrder>),
}

/// One event to deliver, with its ticket or work order as it is now.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub row: OutboxRow,
    pub subject: Subject,
    /// The remote ticket this ticket or work order maps to in the connector's helpdesk, once known.
    pub remote: Option<RemoteTicket>,
}

/// What a delivery learned: the remote ticket and its status, for helpdesks that have them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub remote: Option<RemoteTicket>,
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A helpdesk connector. One file each.
pub(crate) trait Connector: Send + Sync {
    fn name(&self) -> &str;
    fn deliver<'a>(&'a self, d: &'a Delivery, now: DateTime<Utc>) -> BoxFuture<'a, Result<Delivered, DeliveryError>>;
    /// Where status changes made in the helpdesk come from, for helpdesks aftercare polls.
    fn status_source(&self) -> Option<&dyn status::StatusSource> {
        None
    }
    /// How long one delivery (or one status poll) may take in all, every request of it,
    /// from connecting to the last byte of the answer.
    fn budget(&self) -> Duration;
}

/// Statuses of a helpdesk that aftercare sets, and how it reads the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMap {
    /// Set on a ticket that is open again (acknowledged, dispatched and on site included).
    pub active: String,
    pub resolved: String,
    pub closed: String,
    pub cancelled: String,
}

/// What a remote status means for an aftercare ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    Active,
    Resolved,
    Closed,
    Cancelled,
    /// Nothing aftercare acts on (RT's `deleted`, say).
    Ignore,
}

impl StatusMap {
    /// The remote status that has a meaning (`Ignore` reads as active).
    pub fn status_for(&self, m: Meaning) -> &str {
        match m {
            Meaning::Active | Meaning::Ignore => &self.active,
            Meaning::Resolved => &self.resolved,
            Meaning::Closed => &self.closed,
            Meaning::Cancelled => &self.cancelled,
        }
    }

    /// What a remote status means; `is_closed` is the helpdesk's own verdict where it has one.
    pub fn meaning(&self, remote: &str, is_closed: bool) -> Meaning {
        let is = |s: &str| s.eq_ignore_ascii_case(remote);
        if is(&self.closed) && !is(&self.resolved) {
            Meaning::Closed
        } else if is(&self.resolved) {
            Meaning::Resolved
        } else if is(&self.cancelled) {
            Meaning::Cancelled
        } else if is_closed {
            Meaning::Closed
        } else if remote.eq_ignore_ascii_case("deleted") {
            Meaning::Ignore
        } else {
            Meaning::Active
        }
    }
}

/// Requests one event to Request Tracker or Redmine takes at most, each within the timeout.
const REQUESTS_PER_EVENT: u32 = 8;

/// Builds the configured connectors.
pub(crate) fn connectors(cfg: &[HelpdeskConfig]) -> anyhow::Result<HashMap<String, Arc<dyn Connector>>> {
    let mut out: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    for h in cfg {
        let c: Arc<dyn Connector> = match &h.kind {
            HelpdeskKind::Webhook { url, secret, timeout } => {
                Arc::new(webhook::Webhook::new(&h.name, url, secret.clone(), *timeout, h.priorities.clone())?)
            }
            HelpdeskKind::Email(c) => Arc::new(email::Email::new(&h.name, c, h.priorities.clone())?),
            HelpdeskKind::RequestTracker(c) => Arc::new(rt::RequestTracker::new(&h.name, c, h.priorities.clone())?),
            HelpdeskKind::Redmine(c) => Arc::new(redmine::Redmine::new(&h.name, c, h.priorities.clone())?),
        };
        out.insert(h.name.clone(), c);
    }
    Ok(out)
}

/// The actor name of a change that helpdesk `name` sent in.
pub(crate) fn origin_of(name: &str, person: &str) -> String {
    if person.is_empty() { format!("helpdesk:{name}") } else { format!("helpdesk:{name} ({person})") }
}

/// Whether a change made by `origin` came from helpdesk `name`.
pub(crate) fn is_echo(origin: &str, name: &str) -> bool {
    origin
        .strip_prefix("helpdesk:")
        .and_then(|r| r.strip_prefix(name))
        .is_some_and(|r| r.is_empty() || r.starts_with(' '))
}

#[cfg(test)]
mod tests;
