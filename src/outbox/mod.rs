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

pub mod email;
pub mod redmine;
pub mod rt;
pub mod status;
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
use crate::store::{OutboxRow, RemoteTicket, Store, SubjectId, WorkOrder};
use crate::tickets::{State, Ticket};

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

/// What an event is about, as it is now: a ticket, or a work order (a planned visit).
#[derive(Debug, Clone)]
pub enum Subject {
    Ticket(Box<Ticket>),
    WorkOrder(Box<WorkOrder>),
}

/// One event to deliver, with its ticket or work order as it is now.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub row: OutboxRow,
    pub subject: Subject,
    /// The remote ticket this ticket or work order maps to in the connector's helpdesk, once known.
    pub remote: Option<RemoteTicket>,
}

/// What a delivery learned: the remote ticket and its status, for helpdesks that have them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub remote: Option<RemoteTicket>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A helpdesk connector. One file each.
pub trait Connector: Send + Sync {
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

/// A visit kind as people write it: `Inspection`, `Follow-up`.
fn visit_name(kind: &str) -> String {
    let mut name = kind.replace('_', "-");
    if let Some(first) = name.get(0..1) {
        name.replace_range(0..1, &first.to_uppercase());
    }
    name
}

/// What a visit is: `Inspection of lit-001`, or for a plan that follows services, known by
/// its name, `Fault analysis after ticket #12 on lit-001`.
fn visit(w: &WorkOrder) -> String {
    match w.ticket_id {
        Some(t) => format!("{} after ticket #{t} on {}", visit_name(&w.plan), w.device),
        None => format!("{} of {}", visit_name(w.kind.as_str()), w.device),
    }
}

impl Subject {
    /// The tag in every subject, which email-to-ticket helpdesks thread on and lookups search
    /// for: `[aftercare #12]` for a ticket, `[aftercare WO-7]` for a work order.
    pub fn tag(&self) -> String {
        match self {
            Subject::Ticket(t) => format!("[aftercare #{}]", t.id.0),
            Subject::WorkOrder(w) => format!("[aftercare WO-{}]", w.id),
        }
    }

    /// aftercare's reference in other systems: the webhook dedup key, RT's custom field.
    pub fn reference(&self) -> String {
        match self {
            Subject::Ticket(t) => format!("aftercare-ticket-{}", t.id.0),
            Subject::WorkOrder(w) => format!("aftercare-work-order-{}", w.id),
        }
    }

    /// The event id of the first event, which every later mail refers to.
    pub fn first_event_id(&self) -> String {
        match self {
            Subject::Ticket(t) => format!("aftercare-{}-1", t.id.0),
            Subject::WorkOrder(w) => format!("aftercare-wo-{}-1", w.id),
        }
    }

    /// The helpdesk's priority: the ticket's tier; a planned visit is never urgent (tier 3's).
    pub fn priority<'a>(&self, priorities: &'a [String; 3]) -> &'a str {
        let tier = match self {
            Subject::Ticket(t) => (t.tier.number() as usize).clamp(1, 3),
            Subject::WorkOrder(_) => 3,
        };
        &priorities[tier - 1]
    }

    /// The title of the remote ticket.
    pub fn title(&self) -> String {
        match self {
            Subject::Ticket(t) => {
                format!("{} Tier {} {} on {}: {}", self.tag(), t.tier.number(), t.code.0, t.device.0, t.title)
            }
            Subject::WorkOrder(w) => format!("{} {} at {}, due {}", self.tag(), visit(w), w.site, w.due_on),
        }
    }

    /// The title of a mail about `event`: the tag helpdesks match on, then what happened.
    pub fn headline(&self, event: &str) -> String {
        match self {
            Subject::Ticket(t) => format!(
                "{} Tier {} {} on {}: {}",
                self.tag(),
                t.tier.number(),
                t.code.0,
                t.device.0,
                match event {
                    "transition" => format!("now {}", t.state),
                    other => other.replace('_', " "),
                }
            ),
            Subject::WorkOrder(w) => {
                format!("{} {} due {}: {}", self.tag(), visit(w), w.due_on, event.replace('_', " "))
            }
        }
    }

    /// What the remote ticket's status should mean now.
    pub fn meaning(&self) -> Meaning {
        match self {
            Subject::Ticket(t) => match t.state {
                State::Open | State::Acknowledged | State::Dispatched | State::OnSite => Meaning::Active,
                State::Resolved => Meaning::Resolved,
                State::Closed => Meaning::Closed,
                State::Cancelled => Meaning::Cancelled,
            },
            // A missed visit is still owed: it stays open until it is done.
            Subject::WorkOrder(w) if w.state == crate::domain::VisitState::Done => Meaning::Resolved,
            Subject::WorkOrder(_) => Meaning::Active,
        }
    }

    /// `ticket` or `work_order`: the prefix of webhook event types.
    pub fn noun(&self) -> &'static str {
        match self {
            Subject::Ticket(_) => "ticket",
            Subject::WorkOrder(_) => "work_order",
        }
    }
}

/// An event as text, for a mail, a ticket's first description or a comment.
pub fn describe(d: &Delivery, priority: &str) -> String {
    let mut s = match &d.subject {
        Subject::Ticket(t) => {
            let mut s = format!(
                "{}\n\nTicket {}: {}, tier {}, {}\nDevice {} ({}) at site {}, customer {}\nEvent: {} at {}\n",
                t.title,
                t.id.0,
                t.code.0,
                t.tier.number(),
                t.state,
                t.device.0,
                t.kind,
                t.site.0,
                t.customer.0,
                d.row.event,
                d.row.created_at
            );
            s.push_str(&format!("Priority: {priority}\n"));
            if !d.row.note.is_empty() {
                s.push_str(&format!("Note: {}\n", d.row.note));
            }
            if let Some(by) = t.clock.resolve_by {
                s.push_str(&format!("Resolve by: {by}\n"));
            }
            s
        }
        Subject::WorkOrder(w) => {
            let mut s = format!(
                "{} of device {} at site {}, customer {}, due on {}\n\nWork order {}: {} (contract {}, plan {})\n\
                 Event: {} at {}\nPriority: {priority}\n",
                visit_name(w.kind.as_str()),
                w.device,
                w.site,
                w.customer,
                w.due_on,
                w.id,
                w.state,
                w.contract,
                w.plan,
                d.row.event,
                d.row.created_at
            );
            if let Some(t) = w.ticket_id {
                s.push_str(&format!("After the service of ticket {t}\n"));
            }
            if !d.row.note.is_empty() {
                s.push_str(&format!("Note: {}\n", d.row.note));
            }
            let answers = w.answers.as_ref().and_then(|a| a.as_object());
            if !w.checklist.is_empty() {
                s.push_str(if answers.is_some() { "\nChecklist, as answered:\n" } else { "\nChecklist:\n" });
                for item in &w.checklist {
                    match answers.and_then(|a| a.get(item)) {
                        Some(v) => {
                            s.push_str(&format!("- {item}: {}\n", crate::report::render::answer_text(v, "measured")))
                        }
                        None => s.push_str(&format!("- {item}\n")),
                    }
                }
            }
            if let (Some(by), Some(at)) = (&w.completed_by, w.completed_at) {
                s.push_str(&format!("Done by {by} at {at}\n"));
            }
            s
        }
    };
    s.push_str(&format!("\n{}\n", marker(&d.row)));
    s
}

/// The line every text of an event ends with. A retry looks for it on the remote ticket: a
/// comment whose answer was lost (a timeout, a kill) is not written twice.
pub fn marker(row: &OutboxRow) -> String {
    format!("Event id: {}, sequence {}", row.event_id, row.seq)
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads an HTTP answer: its body on 2xx; otherwise retryable (408, 425, 429, 5xx,
/// with `Retry-After`), gone (410) or permanent (other 4xx).
pub async fn http_outcome(resp: reqwest::Response) -> Result<String, DeliveryError> {
    let status = resp.status().as_u16();
    let after = retry_after(resp.headers());
    let text = resp.text().await;
    if (200..300).contains(&status) {
        return text.map_err(|e| DeliveryError::Retryable { after: None, message: format!("reading the answer: {e}") });
    }
    let text: String = text.unwrap_or_default().chars().take(300).collect();
    Err(match status {
        408 | 425 | 429 | 500..=599 => DeliveryError::Retryable { after, message: format!("HTTP {status}: {text}") },
        410 => DeliveryError::Gone(format!("HTTP 410: {text}")),
        _ => DeliveryError::Permanent(format!("HTTP {status}: {text}")),
    })
}

/// Sends a request to helpdesk `system` (RT, Redmine…) and reads its answer, naming the
/// system and what was asked in a permanent error.
pub async fn send_to(system: &str, what: &str, req: reqwest::RequestBuilder) -> Result<String, DeliveryError> {
    let resp = req.send().await.map_err(|e| unreachable(&format!("{system} {what}"), e))?;
    http_outcome(resp).await.map_err(|e| match e {
        DeliveryError::Permanent(m) => DeliveryError::Permanent(format!("{system} {what}: {m}")),
        other => other,
    })
}

/// An answer that does not parse: the server may be mid-upgrade or behind a proxy page; try again.
pub fn bad_answer(system: &str, what: &str, e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Retryable {
        after: None,
        message: format!("{system} answered {what} with something unexpected: {e}"),
    }
}

/// The remote ticket a delivery goes to, and whether its event still has to be told there:
/// the one recorded; else the one `find` finds by reference (made by an earlier attempt whose
/// answer was lost, which holds the first event already); else a new one from `create`,
/// which holds this event.
pub async fn remote_for<FF, CF>(
    d: &Delivery,
    find: impl FnOnce() -> FF,
    create: impl FnOnce() -> CF,
) -> Result<(RemoteTicket, bool), DeliveryError>
where
    FF: Future<Output = Result<Option<RemoteTicket>, DeliveryError>>,
    CF: Future<Output = Result<RemoteTicket, DeliveryError>>,
{
    if let Some(r) = &d.remote {
        return Ok((r.clone(), true));
    }
    match find().await? {
        // The first event (a ticket's `opened`, a work order's `scheduled`) is what made it.
        Some(r) => Ok((r, d.row.seq > 1)),
        None => Ok((create().await?, false)),
    }
}

/// A network failure (refused, reset, timed out) is worth another try; a redirect that
/// would take the credentials to another host is the helpdesk's configuration, and is not.
pub fn unreachable(what: &str, e: reqwest::Error) -> DeliveryError {
    let mut message = format!("{what}: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if e.is_redirect() { DeliveryError::Permanent(message) } else { DeliveryError::Retryable { after: None, message } }
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

/// Builds the configured connectors.
pub fn connectors(cfg: &[HelpdeskConfig]) -> anyhow::Result<HashMap<String, Arc<dyn Connector>>> {
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
    /// When each polled helpdesk was last asked for status changes.
    polled: std::sync::Mutex<HashMap<String, DateTime<Utc>>>,
}

/// How a delivery went, for the pace of its helpdesk's lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Try again later, after the receiver's `Retry-After` if it gave one: the helpdesk may be down.
    Retry(Option<Duration>),
    /// Dead-lettered, or its outcome could not be recorded.
    Other,
}

/// What a delivery needs besides its row, cloned into its task.
#[derive(Clone)]
struct Ctx {
    store: Store,
    metrics: Arc<Metrics>,
    cfg: OutboxConfig,
    clock: Arc<dyn Clock>,
}

/// Requests one event to Request Tracker or Redmine takes at most, each within the timeout.
const REQUESTS_PER_EVENT: u32 = 8;

/// While a helpdesk fails, its lane sends one event at a time, and at least this often.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Failures in a row, with no delivery between, that make a helpdesk "failing": one ticket's
/// refusal does not slow the others down.
const FAILING_AFTER: u32 = 3;

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
        Relay { store, fleet, connectors, clock, metrics, cfg, disabled, polled: Default::default() }
    }

    /// Where each customer's changes go: `(customer, helpdesk)`, for the customers whose
    /// helpdesk is configured. The store writes outbox rows for these customers only.
    pub fn routes(&self) -> Vec<(String, String)> {
        (self.fleet.customers.iter())
            .filter_map(|c| {
                c.helpdesk.as_ref().filter(|h| self.connectors.contains_key(*h)).map(|h| (c.id.0.clone(), h.clone()))
            })
            .collect()
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            store: self.store.clone(),
            metrics: Arc::clone(&self.metrics),
            cfg: self.cfg.clone(),
            clock: Arc::clone(&self.clock),
        }
    }

    /// Up to `limit` rows of helpdesk `name` that are due by `by`, with their subjects, but
    /// none of a subject in `busy` (its earlier event is on its way); rows that came from this
    /// helpdesk itself are skipped here (sending them back would loop).
    async fn claim(
        &self,
        name: &str,
        by: DateTime<Utc>,
        limit: usize,
        busy: &std::collections::HashSet<SubjectId>,
    ) -> Result<Vec<Delivery>, crate::store::StoreError> {
        let rows = self.store.due_outbox_for(name, by, (limit + busy.len()) as i64).await?;
        let mut out = Vec::new();
        for row in rows {
            if out.len() >= limit || busy.contains(&row.subject) {
                continue;
            }
            if is_echo(&row.origin, name) {
                self.store.outbox_skip(row.id).await?;
                continue;
            }
            let subject = match row.subject {
                SubjectId::Ticket(id) => self.store.ticket(id).await?.map(|t| Subject::Ticket(Box::new(t))),
                SubjectId::WorkOrder(id) => self.store.work_order(id).await?.map(|w| Subject::WorkOrder(Box::new(w))),
            };
            let Some(subject) = subject else { continue };
            let remote = self.store.remote(row.subject, name).await?;
            out.push(Delivery { row, subject, remote });
        }
        Ok(out)
    }

    /// One pass: delivers what is due now to every helpdesk and waits for the answers;
    /// returns how many rows were attempted.
    pub async fn run_once(&self) -> Result<usize, crate::store::StoreError> {
        let now = self.clock.now();
        let mut set = JoinSet::new();
        let mut attempted = 0;
        for (name, conn) in &self.connectors {
            let Some(off) = self.disabled.get(name).filter(|o| !o.load(Ordering::Relaxed)) else { continue };
            for d in self.claim(name, now, self.cfg.concurrency, &Default::default()).await? {
                attempted += 1;
                set.spawn(deliver(self.ctx(), Arc::clone(conn), Arc::clone(off), d));
            }
        }
        while set.join_next().await.is_some() {}
        Ok(attempted)
    }

    /// Asks helpdesk `name` for status changes if its poll is due, and applies them.
    async fn poll(&self, name: &str, conn: &dyn Connector) {
        let Some(src) = conn.status_source() else { return };
        let now = self.clock.now();
        {
            let Ok(mut last) = self.polled.lock() else { return };
            let every = TimeDelta::from_std(src.every()).unwrap_or(TimeDelta::MAX);
            if last.get(name).is_some_and(|t| now - *t < every) {
                return;
            }
            last.insert(name.to_string(), now);
        }
        let budget = conn.budget();
        match tokio::time::timeout(budget, status::poll(&self.store, name, src, self.clock.as_ref())).await {
            Ok(Ok(n)) if n > 0 => info!(helpdesk = %name, applied = n, "status changes from the helpdesk applied"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(helpdesk = %name, error = %e, "polling the helpdesk for status changes failed; will retry")
            }
            Err(_) => {
                warn!(helpdesk = %name, ?budget, "polling the helpdesk for status changes took too long; will retry")
            }
        }
    }

    /// Runs until shutdown: a lane per helpdesk, each at its own pace, so that one slow or
    /// dead helpdesk never holds up another's deliveries.
    pub async fn run(self, shutdown: CancellationToken) {
        let relay = Arc::new(self);
        let mut lanes = JoinSet::new();
        for (name, conn) in &relay.connectors {
            lanes.spawn(lane(Arc::clone(&relay), name.clone(), Arc::clone(conn), shutdown.clone()));
        }
        while lanes.join_next().await.is_some() {}
    }
}

/// One helpdesk's deliveries. Rows are claimed as room frees up, not pass by pass, at most
/// `outbox.concurrency` at once and one per ticket or work order, so a slow answer holds up
/// only its own ticket's next event. Once the helpdesk fails three times in a row, one event at
/// a time probes it (at least every 5 s, never before a `Retry-After`); the first that goes
/// through makes its whole backlog due at once.
/// Status polls run when nothing is in flight to this helpdesk, never beside a delivery.
async fn lane(relay: Arc<Relay>, name: String, conn: Arc<dyn Connector>, shutdown: CancellationToken) {
    let Some(off) = relay.disabled.get(&name).cloned() else { return };
    let mut set: JoinSet<(SubjectId, Outcome)> = JoinSet::new();
    let mut busy = std::collections::HashSet::new();
    let mut probing = false;
    let mut failures = 0u32;
    let mut last_probe: Option<DateTime<Utc>> = None;
    // A helpdesk that asked to be left alone (Retry-After) is not probed before then.
    let mut quiet_until: Option<DateTime<Utc>> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if set.is_empty() {
            relay.poll(&name, conn.as_ref()).await;
        }
        let room = if probing { 1 } else { relay.cfg.concurrency }.saturating_sub(set.len());
        if room > 0 && !off.load(Ordering::Relaxed) {
            let now = relay.clock.now();
            // A helpdesk that fails is asked again every few seconds, whatever its rows' backoff says.
            let probe = probing
                && quiet_until.is_none_or(|q| now >= q)
                && last_probe.is_none_or(|p| now - p >= TimeDelta::from_std(PROBE_EVERY).unwrap_or_default());
            let by = if probe { now + TimeDelta::days(36_500) } else { now };
            match relay.claim(&name, by, room, &busy).await {
                Ok(ds) => {
                    for d in ds {
                        if probing {
                            last_probe = Some(now);
                        }
                        busy.insert(d.row.subject);
                        set.spawn(deliver(relay.ctx(), Arc::clone(&conn), Arc::clone(&off), d));
                    }
                }
                Err(e) => error!(helpdesk = %name, error = %e, "reading the outbox failed; retrying"),
            }
        }
        tokio::select! {
            Some(done) = set.join_next(), if !set.is_empty() => {
                let Ok((subject, outcome)) = done else { continue };
                busy.remove(&subject);
                match outcome {
                    Outcome::Delivered => failures = 0,
                    Outcome::Retry(after) => {
                        failures += 1;
                        let now = relay.clock.now();
                        quiet_until = after.and_then(|a| TimeDelta::from_std(a).ok()).map(|a| now + a);
                    }
                    Outcome::Other => {}
                }
                match outcome {
                    Outcome::Delivered if probing => {
                        probing = false;
                        quiet_until = None;
                        let now = relay.clock.now();
                        match relay.store.outbox_wake(&name, now).await {
                            Ok(n) => info!(helpdesk = %name, backlog = n, "the helpdesk answers again; its backlog goes now"),
                            Err(e) => error!(helpdesk = %name, error = %e, "making the backlog due failed"),
                        }
                    }
                    Outcome::Retry(_) if !probing && failures >= FAILING_AFTER => {
                        probing = true;
                        last_probe = Some(relay.clock.now());
                        warn!(helpdesk = %name, "the helpdesk does not take events; probing it with one at a time");
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // Deliveries on their way finish within their budget; one cut off is sent again after a restart.
    let _ = tokio::time::timeout(conn.budget(), async { while set.join_next().await.is_some() {} }).await;
}

/// Delivers one event within its connector's budget and records the outcome.
async fn deliver(ctx: Ctx, conn: Arc<dyn Connector>, off: Arc<AtomicBool>, d: Delivery) -> (SubjectId, Outcome) {
    let Ctx { store, metrics, cfg, clock } = ctx;
    let budget = conn.budget();
    // The whole exchange, however many requests it takes, or a server that never answers.
    let res = match tokio::time::timeout(budget, conn.deliver(&d, clock.now())).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Retryable {
            after: None,
            message: format!("no answer within {}", humantime::format_duration(budget)),
        }),
    };
    let now = clock.now();
    let row = &d.row;
    let mut outcome = match &res {
        Ok(_) => Outcome::Delivered,
        Err(DeliveryError::Retryable { after, .. }) => Outcome::Retry(*after),
        Err(_) => Outcome::Other,
    };
    let recorded = match &res {
        Ok(done) => {
            async {
                // The remote id first: a crash between the two repeats the
                // event, which finds its remote ticket instead of making another.
                if let Some(r) = done.remote.as_ref().filter(|r| d.remote.as_ref() != Some(*r)) {
                    store.set_remote(row.subject, conn.name(), &r.id, r.status.as_deref()).await?;
                }
                store.outbox_delivered(row.id, now).await
            }
            .await
        }
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
        info!(helpdesk = conn.name(), event = %row.event_id, "delivered");
    }
    if let Err(e) = recorded {
        outcome = Outcome::Other;
        error!(error = %e, event = %row.event_id, "recording a delivery failed; it will be tried again");
    }
    (row.subject, outcome)
}

/// An HTTP client for a helpdesk or a telemetry server: `timeout` on every request, and
/// redirects followed only within the same origin, so that credentials in headers (Redmine's
/// `X-Redmine-API-Key`, an InfluxDB token) never reach another host.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let same_origin = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(|u| u.origin());
        if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else if first.is_some_and(|o| o != attempt.url().origin()) {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(format!("a redirect to another origin ({to}); credentials are not sent there"))
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).redirect(same_origin).build()
}

#[cfg(test)]
mod tests;
