//! Telemetry history in the embedded store: hourly rollups per device and
//! metric, accumulated in the shards (`crate::rollup`) and merged into SQLite by one
//! writer task, which also enforces, hourly, what the store keeps: rollups and the devices'
//! state changes (written with the tickets, see store::history), the audit log, and ended
//! login sessions.

pub mod influx;
pub mod spool;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info};

use crate::clock::Clock;
use crate::fleet::Fleet;
use crate::rollup::RollupRow;
use crate::store::Store;

/// How the shards hand rollups on; bounded, and a full queue drops (and counts) rather than stalls ingest.
pub type RollupSender = mpsc::Sender<Vec<RollupRow>>;

/// How long the store keeps what grows without end.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Rollups and device state changes.
    pub history: Duration,
    /// The audit log.
    pub audit: Duration,
}

/// A login session is listed this long after it ended, then removed.
const ENDED_SESSIONS: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Writes rollups as they come and prunes what is older than its `retention`, hourly.
/// Ends when every shard has hung up (after handing on its last partial hours).
pub async fn run(
    store: Store,
    fleet: Arc<Fleet>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    mut rx: mpsc::Receiver<Vec<RollupRow>>,
) {
    let mut prune = tokio::time::interval(Duration::from_secs(3600));
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Vec<RollupRow>> = Vec::new();
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 64) => {
                if n == 0 {
                    return;
                }
                let rows: Vec<RollupRow> = batch.drain(..).flatten().collect();
                // A failed write is retried: rollups are what reports are made of.
                let mut wait = Duration::from_millis(100);
                while let Err(e) = store.merge_rollups(&fleet, &rows).await {
                    error!(error = %e, rows = rows.len(), "writing rollups failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
            _ = prune.tick() => {
                let now = clock.now();
                let ago = |d: Duration| now - chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
                let before = ago(retention.history);
                match store.prune_history(before).await {
                    Ok(0) => {}
                    Ok(n) => info!(rows = n, %before, "history older than its retention removed"),
                    Err(e) => error!(error = %e, "pruning history failed; will retry in an hour"),
                }
                let before = ago(retention.audit);
                match store.prune_access(before, now - ENDED_SESSIONS).await {
                    Ok(0) => {}
                    Ok(n) => info!(rows = n, %before, "audit lines past their retention and ended sessions removed"),
                    Err(e) => error!(error = %e, "pruning the audit log failed; will retry in an hour"),
                }
            }
        }
    }
}
