//! History in the embedded store: hourly rollups and device state changes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, from_ms, ms, named};
use crate::domain::{FaultChange, OFFLINE};
use crate::fleet::Fleet;
use crate::rollup::{Acc, RollupRow};
use crate::tickets::State;

/// A device's state change: a fault raised, promoted or cleared (`offline` is the device going offline).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceEvent {
    pub at: DateTime<Utc>,
    pub event: FaultChange,
    pub code: String,
    pub tier: i64,
    pub detail: String,
}

impl Store {
    /// Merges partial hours into the rollups, in one transaction.
    pub async fn merge_rollups(&self, fleet: &Fleet, rows: &[RollupRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            let dev = fleet.device(r.device);
            let Some(metric) = fleet.kinds[dev.kind].metrics.get(r.metric as usize) else { continue };
            sqlx::query(
                "INSERT INTO rollups (device, metric, hour, min, max, sum, count, last, last_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (device, metric, hour) DO UPDATE SET \
                 min = MIN(rollups.min, excluded.min), max = MAX(rollups.max, excluded.max), \
                 sum = rollups.sum + excluded.sum, count = rollups.count + excluded.count, \
                 last = CASE WHEN excluded.last_at >= rollups.last_at THEN excluded.last ELSE rollups.last END, \
                 last_at = MAX(rollups.last_at, excluded.last_at)",
            )
            .bind(&dev.id.0)
            .bind(&metric.name)
            .bind(r.hour)
            .bind(r.acc.min)
            .bind(r.acc.max)
            .bind(r.acc.sum)
            .bind(r.acc.count as i64)
            .bind(r.acc.last)
            .bind(r.acc.last_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The hourly rollups of one device's metric with `from <= hour < to`, oldest first.
    pub async fn rollups(
        &self,
        device: &str,
        metric: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, Acc)>, StoreError> {
        let rows = sqlx::query(
            "SELECT hour, min, max, sum, count, last, last_at FROM rollups \
             WHERE device = $1 AND metric = $2 AND hour >= $3 AND hour < $4 ORDER BY hour",
        )
        .bind(device)
        .bind(metric)
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("hour")?,
                    Acc {
                        min: r.try_get("min")?,
                        max: r.try_get("max")?,
                        sum: r.try_get("sum")?,
                        count: r.try_get::<i64, _>("count")?.clamp(0, u32::MAX as i64) as u32,
                        last: r.try_get("last")?,
                        last_at: r.try_get("last_at")?,
                    },
                ))
            })
            .collect()
    }

    /// A device's state changes with `from <= at < to`, oldest first, at most `limit`.
    pub async fn device_events(
        &self,
        device: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DeviceEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, event, code, tier, detail FROM device_events \
             WHERE device = $1 AND at >= $2 AND at < $3 ORDER BY at, id LIMIT $4",
        )
        .bind(device)
        .bind(ms(from))
        .bind(ms(to))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceEvent {
                    at: from_ms(r.try_get("at")?)?,
                    event: named(r, "event", FaultChange::parse)?,
                    code: r.try_get("code")?,
                    tier: r.try_get("tier")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Removes rollups and state changes from before `before`; returns how many rows went.
    pub async fn prune_history(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let a = sqlx::query("DELETE FROM rollups WHERE hour < $1").bind(ms(before)).execute(&self.pool).await?;
        let b = sqlx::query("DELETE FROM device_events WHERE at < $1").bind(ms(before)).execute(&self.pool).await?;
        Ok(a.rows_affected() + b.rows_affected())
    }
}

impl Store {
    /// Offline periods of one device (or all) that overlap `[from, to)`, as (device, start ms, end ms or `None` while
    /// still offline at `to`), from the state history.
    pub async fn outages(
        &self,
        device: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, i64, Option<i64>)>, StoreError> {
        // The state at `from`: each device's last offline change before it; then the changes within.
        let rows = sqlx::query(
            "SELECT e.device, e.at, e.event FROM device_events e \
             WHERE e.code = $4 AND e.event IN ($5, $6) AND e.at < $2 \
             AND ($3 IS NULL OR e.device = $3) \
             AND (e.at >= $1 OR e.id IN (SELECT MAX(id) FROM device_events WHERE code = $4 \
                  AND event IN ($5, $6) AND at < $1 AND ($3 IS NULL OR device = $3) GROUP BY device)) \
             ORDER BY e.device, e.at, e.id",
        )
        .bind(ms(from))
        .bind(ms(to))
        .bind(device)
        .bind(OFFLINE)
        .bind(FaultChange::Raised.as_str())
        .bind(FaultChange::Cleared.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, i64, Option<i64>)> = Vec::new();
        for r in rows {
            let (device, at, event): (String, i64, FaultChange) =
                (r.try_get("device")?, r.try_get("at")?, named(&r, "event", FaultChange::parse)?);
            let open = out.last_mut().filter(|(d, _, end)| *d == device && end.is_none());
            match (event, open) {
                (FaultChange::Raised, None) => out.push((device, at, None)),
                (FaultChange::Cleared, Some(o)) => o.2 = Some(at),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Tickets of a customer (or all) opened in `[from, to)`, oldest first.
    pub async fn tickets_opened(
        &self,
        customer: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::tickets::Ticket>, StoreError> {
        let cond = "($1 IS NULL OR customer = $1) AND opened_at >= $2 AND opened_at < $3";
        self.tickets_where(cond, customer, from, to).await
    }

    /// Tickets of a customer (or all) still open at `to`.
    pub async fn tickets_open_at(
        &self,
        customer: Option<&str>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::tickets::Ticket>, StoreError> {
        let cond = format!(
            "($1 IS NULL OR customer = $1) AND opened_at < $3 AND $2 = $2 \
             AND (resolved_at IS NULL OR resolved_at >= $3) AND (closed_at IS NULL OR closed_at >= $3) \
             AND state != '{}'",
            State::Cancelled
        );
        self.tickets_where(&cond, customer, to, to).await
    }
}
