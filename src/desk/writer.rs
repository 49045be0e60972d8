//! The ticket writer: the one task that turns fault events into ticket rows.
//! It batches whatever is queued into one transaction (SQLite has one writer)
//! and retries a failed batch until it lands, so no fault is lost to a busy
//! or briefly broken database.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tracing::{error, info, warn};

use crate::clock::{Clock, Stopwatch};
use crate::domain::{FaultChange, FaultEvent, TicketId, Tier};
use crate::fleet::Fleet;
use crate::metrics::{EventLabel, Metrics, TierLabel};
use crate::store::{AlarmRecord, FaultRecord, Store};
use crate::tickets::Outcome;

/// A ticket change, for whoever watches (the demo prints them).
#[derive(Debug, Clone)]
pub struct Notice {
    pub ticket: TicketId,
    pub outcome: Outcome,
    pub device: String,
    pub code: String,
    pub tier: Tier,
    pub title: String,
    pub detail: String,
}

pub(crate) struct Writer {
    pub store: Store,
    pub fleet: Arc<Fleet>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub notices: broadcast::Sender<Notice>,
    pub reopen_window: Duration,
}

/// The record of a fault's event; `None` for a device's alarm, which is kept apart.
fn record(fleet: &Fleet, e: &FaultEvent, now: chrono::DateTime<chrono::Utc>) -> Option<FaultRecord> {
    let code = e.code()?;
    let d = fleet.device(e.device());
    let profile = fleet.profile_of(e.device());
    let (tier, at, detail, change) = match e {
        FaultEvent::Raised { tier, at, detail, .. } => (*tier, *at, detail, FaultChange::Raised),
        FaultEvent::Promoted { tier, at, detail, .. } => (*tier, *at, detail, FaultChange::Promoted),
        FaultEvent::Cleared { at, detail, .. } => {
            let tier = profile.rule(code.as_str()).map_or(profile.offline_tier, |r| r.tier);
            (tier, *at, detail, FaultChange::Cleared)
        }
        FaultEvent::Alarm { .. } => return None,
    };
    let (warranty, repeat) = match change {
        FaultChange::Raised => fleet.warranty(e.device(), code.as_str(), now),
        _ => (None, None),
    };
    Some(FaultRecord {
        warranty,
        repeat,
        device: d.id.0.clone(),
        site: d.site.0.clone(),
        customer: d.customer.0.clone(),
        kind: profile.name.clone(),
        code: code.0.clone(),
        title: profile.fault_title(code.as_str()),
        tier,
        at,
        detail: detail.clone(),
        change,
        deadlines: match change {
            // Clocks start when the ticket opens (or the fault becomes more severe), on the gateway's clock.
            FaultChange::Raised | FaultChange::Promoted => fleet.deadlines(e.device(), tier, now),
            FaultChange::Cleared => Default::default(),
        },
    })
}

/// A device's alarm as the store keeps it.
fn alarm(fleet: &Fleet, e: &FaultEvent) -> Option<AlarmRecord> {
    match e {
        FaultEvent::Alarm { device, code, active, at } => Some(AlarmRecord {
            device: fleet.device(*device).id.0.clone(),
            code: code.clone(),
            active: *active,
            at: *at,
        }),
        _ => None,
    }
}

/// Fault events written in one transaction, at most.
const BATCH: usize = 256;

impl Writer {
    /// Runs until every sender (the shards) has hung up, then returns with the queue drained.
    pub(crate) async fn run(self, mut rx: mpsc::Receiver<(FaultEvent, Stopwatch)>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut records = Vec::with_capacity(BATCH);
        let mut alarms = Vec::new();
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let now = self.clock.now();
            records.clear();
            alarms.clear();
            // Alarms are kept beside the faults, in the same transaction; they change no ticket.
            batch.retain(|(e, _)| match alarm(&self.fleet, e) {
                Some(a) => {
                    alarms.push(a);
                    false
                }
                None => true,
            });
            records.extend(batch.iter().filter_map(|(e, _)| record(&self.fleet, e, now)));
            let mut backoff = Duration::from_millis(50);
            let took = Stopwatch::start();
            let outcomes = loop {
                match self.store.apply_batch(&records, &alarms, now, self.reopen_window).await {
                    Ok(o) => break o,
                    Err(e) => {
                        self.metrics.store_errors.inc();
                        error!(error = %e, retry_in = ?backoff, events = records.len(), "writing tickets failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            };
            self.metrics.ticket_batch_seconds.observe(took.elapsed_secs());
            for (((_, sw), rec), (outcome, ticket)) in batch.drain(..).zip(&records).zip(outcomes) {
                // An event that changed no ticket (a clear of a fault already recovered, say) is not one.
                let Some(ticket) = ticket else { continue };
                if outcome == Outcome::Nothing {
                    continue;
                }
                self.metrics.ticket_events.get_or_create(&EventLabel { event: outcome.as_str() }).inc();
                if let (Outcome::Opened | Outcome::Promoted, Some(gap)) = (outcome, &rec.deadlines.calendar_gap) {
                    self.metrics.calendar_gaps.inc();
                    warn!(ticket = ticket.0, device = %rec.device, "{gap}");
                }
                if outcome == Outcome::Opened {
                    let tier = match rec.tier {
                        Tier::Major => "1",
                        Tier::Main => "2",
                        Tier::Minor => "3",
                    };
                    self.metrics.tickets_opened.get_or_create(&TierLabel { tier }).inc();
                }
                if matches!(outcome, Outcome::Opened | Outcome::Recurred | Outcome::Reopened) {
                    self.metrics.fault_to_ticket_seconds.observe(sw.elapsed_secs());
                }
                info!(
                    ticket = ticket.0,
                    event = outcome.as_str(),
                    device = %rec.device,
                    code = %rec.code,
                    tier = rec.tier.number(),
                    detail = %rec.detail,
                    "ticket"
                );
                let _ = self.notices.send(Notice {
                    ticket,
                    outcome,
                    device: rec.device.clone(),
                    code: rec.code.clone(),
                    tier: rec.tier,
                    title: rec.title.clone(),
                    detail: rec.detail.clone(),
                });
            }
        }
    }
}
