//! Watching the contract clocks of open tickets: breaches, escalation steps, loaners and the
//! inaction rule fire from the deadlines persisted on each ticket (`tickets::clocks::due`),
//! so a deadline that passed while the daemon was down fires at once after a restart, and
//! the store's conditional updates make none fire twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::clock::Clock;
use crate::domain::TicketId;
use crate::fleet::Fleet;
use crate::notify::route::{Brief, Routing};
use crate::store::{Clocks, Store, StoreError};
use crate::tickets::State;
use crate::tickets::clocks::{Firing, OpenClock, due};

/// Fires what is due on every open ticket at `now`; returns how many firings took effect.
#[cfg(test)]
pub(crate) async fn run_once(
    store: &Store,
    fleet: &Fleet,
    now: DateTime<Utc>,
) -> Result<usize, crate::store::StoreError> {
    Watch::default().pass(store, fleet, now).await
}

/// How far back a look at changed tickets reaches before the newest change it saw last, for
/// a transaction that stamped its change a little before another one committed.
const OVERLAP: TimeDelta = TimeDelta::milliseconds(500);
/// How often every open ticket is read afresh, whatever the looks at changes saw.
const FULL_EVERY: TimeDelta = TimeDelta::minutes(5);
/// Tickets read by one statement.
const PAGE: u32 = 256;

/// The open tickets' clocks, kept in memory: a pass reads only the tickets changed since the
/// last one (and every open ticket every few minutes), and reads a ticket afresh before it
/// fires anything on it, so a stale copy can delay a firing but never make a wrong one.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// Who hears of what fires.
    routing: Arc<Routing>,
    open: HashMap<TicketId, OpenClock>,
    /// The newest change seen, and when every open ticket was last read.
    seen: Option<DateTime<Utc>>,
    full_at: Option<DateTime<Utc>>,
}

impl Watch {
    /// Brings the open tickets up to date and fires what is due on them at `now`; returns how
    /// many firings took effect.
    pub(crate) async fn pass(&mut self, store: &Store, fleet: &Fleet, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.refresh(store, now).await?;
        let contract = |t: &OpenClock| t.contract.as_deref().and_then(|id| fleet.contracts.iter().find(|c| c.id == id));
        let suspects: Vec<TicketId> =
            self.open.values().filter(|t| !due(t, contract(t), now).is_empty()).map(|t| t.id).collect();
        let mut fired = 0;
        for id in suspects {
            let Some((t, _)) = store.clocks(Clocks::Of(id)).await?.pop() else {
                self.open.remove(&id);
                continue;
            };
            let firings = if is_open(t.state) { due(&t, contract(&t), now) } else { Vec::new() };
            if !firings.is_empty() {
                let plan = |f: &Firing, b: &Brief| {
                    let b = Brief { offset: crate::report::offset_of(fleet, None, Some(&b.site)), ..b.clone() };
                    self.routing.plan(f, &b)
                };
                for f in store.fire(t.id, &firings, now, &plan).await? {
                    fired += 1;
                    info!(ticket = t.id.0, firing = ?f, "contract clock fired");
                }
            }
            // Kept as read, before what it fired: the next pass finds it due again and reads
            // it afresh, or the look at changes brings the fired state first.
            self.keep(t);
        }
        Ok(fired)
    }

    async fn refresh(&mut self, store: &Store, now: DateTime<Utc>) -> Result<(), StoreError> {
        let full = match (self.seen, self.full_at) {
            (Some(_), Some(at)) => now < at || now - at >= FULL_EVERY,
            _ => true,
        };
        if full {
            self.open.clear();
            self.full_at = Some(now);
            let mut after = TicketId(0);
            loop {
                let page = store.clocks(Clocks::Open { after, limit: PAGE }).await?;
                let last = page.len() < PAGE as usize;
                for (t, updated) in page {
                    after = t.id;
                    self.saw(updated);
                    self.keep(t);
                }
                if last {
                    break;
                }
            }
            self.seen = Some(self.seen.unwrap_or(now));
            return Ok(());
        }
        let (mut at, mut after) = (self.seen.unwrap_or(now) - OVERLAP, TicketId(0));
        loop {
            let page = store.clocks(Clocks::Changed { at, after, limit: PAGE }).await?;
            let last = page.len() < PAGE as usize;
            for (t, updated) in page {
                (at, after) = (updated, t.id);
                self.saw(updated);
                self.keep(t);
            }
            if last {
                return Ok(());
            }
        }
    }

    fn saw(&mut self, updated: DateTime<Utc>) {
        self.seen = Some(self.seen.map_or(updated, |s| s.max(updated)));
    }

    fn keep(&mut self, t: OpenClock) {
        if is_open(t.state) {
            self.open.insert(t.id, t);
        } else {
            self.open.remove(&t.id);
        }
    }
}

fn is_open(s: State) -> bool {
    !matches!(s, State::Closed | State::Cancelled)
}

/// Watches the clocks until shutdown: at once on start, then every second.
pub(crate) async fn watch(
    store: Store,
    fleet: Arc<Fleet>,
    routing: Arc<Routing>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let fresh = || Watch { routing: routing.clone(), ..Watch::default() };
    let mut w = fresh();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = w.pass(&store, &fleet, clock.now()).await {
            error!(error = %e, "checking the contract clocks failed; retrying");
            // Start afresh: what the failed pass read is not to be trusted.
            w = fresh();
        }
    }
}

#[cfg(test)]
mod tests;
