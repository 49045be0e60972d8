//! Spare parts in stock in the embedded store: counts, receipts and the parts repairs took,
//! each a line of `spare_moves` beside the stock it changed, in one transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use super::{Store, StoreError, ms};
use crate::spares::SpareLine;

crate::domain::named! {
    /// Why stock moved.
    pub enum MoveKind {
        /// A stocktake set the quantity.
        Count = "count",
        /// Parts came in.
        Receipt = "receipt",
        /// A repair took them.
        Used = "used",
    }
}

/// Moves stock of (`model`, `part`) by `delta`, with its line.
#[allow(clippy::too_many_arguments)]
async fn shift(
    conn: &mut SqliteConnection,
    key: (&str, &str),
    kind: MoveKind,
    delta: i64,
    ticket: Option<i64>,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO spare_stock (model, part, quantity, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (model, part) DO UPDATE SET quantity = spare_stock.quantity + excluded.quantity, \
         updated_at = excluded.updated_at",
    )
    .bind(key.0)
    .bind(key.1)
    .bind(delta)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO spare_moves (model, part, kind, delta, ticket_id, by_user, note, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(key.0)
    .bind(key.1)
    .bind(kind.as_str())
    .bind(delta)
    .bind(ticket)
    .bind(by)
    .bind(note)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The spare parts a repair record names, and the parts the catalogue keeps for the device's model.
#[derive(Debug, Clone, Copy)]
pub struct Taken<'a> {
    /// (model, part, quantity).
    pub parts: &'a [(String, String, u32)],
    /// (model, part).
    pub catalogued: &'a [(String, String)],
}

/// Takes the parts of ticket `ticket`'s repair record from stock: `taken` is what the record
/// holds now of the parts `catalogued` (model, part) lists; what an earlier version took is
/// counted, so only the difference moves (a part taken off the record goes back). A part no
/// longer in the catalogue is left as it was.
pub(super) async fn take(
    conn: &mut SqliteConnection,
    ticket: i64,
    taken: &[(String, String, u32)],
    catalogued: &[(String, String)],
    by: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT model, part, -CAST(SUM(delta) AS BIGINT) AS n FROM spare_moves WHERE ticket_id = $1 AND kind = $2 \
         GROUP BY model, part",
    )
    .bind(ticket)
    .bind(MoveKind::Used.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut want: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in &rows {
        let key: (String, String) = (r.try_get("model")?, r.try_get("part")?);
        if catalogued.contains(&key) {
            want.insert(key, 0);
        }
    }
    for (model, part, n) in taken {
        *want.entry((model.clone(), part.clone())).or_default() += i64::from(*n);
    }
    for r in &rows {
        let key: (String, String) = (r.try_get("model")?, r.try_get("part")?);
        let before: i64 = r.try_get("n")?;
        if let Some(w) = want.get_mut(&key) {
            *w -= before;
        }
    }
    for ((model, part), more) in want.into_iter().filter(|(_, d)| *d != 0) {
        let note = format!("ticket {ticket}");
        shift(conn, (&model, &part), MoveKind::Used, -more, Some(ticket), by, &note, now).await?;
    }
    Ok(())
}

impl Store {
    /// Every part's quantity in stock, by (model, part).
    pub async fn spare_stock(&self) -> Result<BTreeMap<(String, String), i64>, StoreError> {
        let rows = sqlx::query("SELECT model, part, quantity FROM spare_stock").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(((r.try_get("model")?, r.try_get("part")?), r.try_get("quantity")?))).collect()
    }

    /// Parts repairs took since `since`, by (model, part).
    pub async fn spares_used_since(&self, since: DateTime<Utc>) -> Result<BTreeMap<(String, String), u32>, StoreError> {
        let rows = sqlx::query(
            "SELECT model, part, -CAST(SUM(delta) AS BIGINT) AS n FROM spare_moves WHERE kind = $1 AND at >= $2 \
             GROUP BY model, part",
        )
        .bind(MoveKind::Used.as_str())
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("n")?;
                Ok(((r.try_get("model")?, r.try_get("part")?), u32::try_from(n.max(0)).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    /// A stocktake (`kind` count: the quantity becomes `n`) or a receipt (`n` more) of a part;
    /// returns its quantity after.
    #[allow(clippy::too_many_arguments)]
    pub async fn move_spares(
        &self,
        model: &str,
        part: &str,
        kind: MoveKind,
        n: i64,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let before: i64 = sqlx::query_scalar("SELECT quantity FROM spare_stock WHERE model = $1 AND part = $2")
            .bind(model)
            .bind(part)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
        let delta = match kind {
            MoveKind::Count => n - before,
            MoveKind::Receipt | MoveKind::Used => n,
        };
        shift(&mut tx, (model, part), kind, delta, None, by, note, now).await?;
        tx.commit().await?;
        Ok(before + delta)
    }
}

/// How far back the parts repairs took count for the forecast.
const WINDOW_DAYS: i64 = 365;

/// The lines of the store's stock and usage for the devices `sees` lets through, at `now`:
/// usage over the last year, or the time the store has watched if shorter.
pub(crate) async fn spare_lines(
    store: &Store,
    fleet: &crate::fleet::Fleet,
    now: chrono::DateTime<chrono::Utc>,
    sees: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<SpareLine>, StoreError> {
    let since = now - chrono::TimeDelta::days(WINDOW_DAYS);
    let watched = store.created_at().await?.max(since);
    let window = u32::try_from((now - watched).num_days().max(0)).unwrap_or(0);
    let stock = store.spare_stock().await?;
    let used = store.spares_used_since(watched).await?;
    Ok(crate::spares::lines(fleet, &fleet.spares, &stock, &used, window, now.date_naive(), sees))
}

/// Logs each part below what the reserve rules ask.
pub(crate) fn warn_short<'a>(lines: impl IntoIterator<Item = &'a SpareLine>) {
    for l in lines.into_iter().filter(|l| l.short) {
        tracing::warn!(
            model = %l.model, part = %l.part, stock = l.stock, required = l.required,
            "spare part below the contracts' reserve: {} of {} in stock, {} required", l.stock, l.part, l.required
        );
    }
}
