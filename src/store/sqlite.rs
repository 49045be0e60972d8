//! The embedded store: SQLite in WAL mode through sqlx.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlSafeStr, SqliteConnection, SqlitePool};

use super::{ActiveFault, AlarmRecord, Change, Clocks, FaultRecord, StoreError, TransitionFailure, TransitionOptions};
use crate::domain::{CustomerId, DeviceId, FaultCode, HelpdeskAction, SiteId, TicketId, Tier};
use crate::tickets::clocks::{ClockName, Firing, OpenClock};
use crate::tickets::lifecycle::{self, State};
use crate::tickets::model::{Billing, Clock, Outcome, Ticket, TicketFilter, TimelineEntry};

/// The actor name of changes aftercare makes by itself.
pub const SYSTEM: &str = "aftercare";

#[derive(Debug, Clone)]
pub struct Store {
    pub(super) pool: SqlitePool,
    /// Woken when a ticket is resolved: the scheduler makes what follows a service at once.
    resolved: std::sync::Arc<tokio::sync::Notify>,
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| StoreError::Corrupt(format!("timestamp {v}")))
}

fn opt_ms(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_ms).transpose()
}

const TICKET_COLUMNS: &str = "id, device, site, customer, kind, code, title, tier, state, recovered, occurrences, \
     fault_at, opened_at, updated_at, last_raised_at, recovered_at, acknowledged_at, resolved_at, closed_at, detail, \
     contract, no_clock, acknowledge_by, on_site_by, resolve_by, on_site_at, acknowledge_met, on_site_met, resolve_met, \
     acknowledge_breached_at, on_site_breached_at, resolve_breached_at, escalation_level, loaner, dispatched_at, \
     inaction_escalated_at, warranty, billing, billing_reason, failed_repairs, replace_unit, silenced_by, resolve_forced, calendar_gap";

/// A row's `tier` column.
fn tier_of(r: &SqliteRow) -> Result<Tier, StoreError> {
    let tier: i64 = r.try_get("tier")?;
    Tier::from_number(tier).ok_or_else(|| StoreError::Corrupt(format!("tier {tier}")))
}

/// A row's `state` column.
fn state_of(r: &SqliteRow) -> Result<State, StoreError> {
    let state: String = r.try_get("state")?;
    State::from_str(&state).map_err(StoreError::Corrupt)
}

/// A row's text column read as one of a set of names (`parse`); another text is a corrupt row.
pub(super) fn named<T>(r: &SqliteRow, column: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    let text: String = r.try_get(column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{column} `{text}`")))
}

/// A row's 0/1 column.
fn flag_of(r: &SqliteRow, column: &str) -> Result<bool, StoreError> {
    Ok(r.try_get::<i64, _>(column)? != 0)
}

fn ticket_from_row(r: &SqliteRow) -> Result<Ticket, StoreError> {
    Ok(Ticket {
        id: TicketId(r.try_get("id")?),
        device: DeviceId(r.try_get("device")?),
        site: SiteId(r.try_get("site")?),
        customer: CustomerId(r.try_get("customer")?),
        kind: r.try_get("kind")?,
        code: FaultCode(r.try_get("code")?),
        title: r.try_get("title")?,
        tier: tier_of(r)?,
        state: state_of(r)?,
        recovered: flag_of(r, "recovered")?,
        occurrences: r.try_get("occurrences")?,
        fault_at: from_ms(r.try_get("fault_at")?)?,
        opened_at: from_ms(r.try_get("opened_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
        last_raised_at: from_ms(r.try_get("last_raised_at")?)?,
        recovered_at: opt_ms(r.try_get("recovered_at")?)?,
        acknowledged_at: opt_ms(r.try_get("acknowledged_at")?)?,
        resolved_at: opt_ms(r.try_get("resolved_at")?)?,
        closed_at: opt_ms(r.try_get("closed_at")?)?,
        detail: r.try_get("detail")?,
        clock: Clock {
            contract: r.try_get("contract")?,
            no_clock: r.try_get("no_clock")?,
            acknowledge_by: opt_ms(r.try_get("acknowledge_by")?)?,
            on_site_by: opt_ms(r.try_get("on_site_by")?)?,
            resolve_by: opt_ms(r.try_get("resolve_by")?)?,
            on_site_at: opt_ms(r.try_get("on_site_at")?)?,
            acknowledge_met: r.try_get::<Option<i64>, _>("acknowledge_met")?.map(|v| v != 0),
            on_site_met: r.try_get::<Option<i64>, _>("on_site_met")?.map(|v| v != 0),
            resolve_met: r.try_get::<Option<i64>, _>("resolve_met")?.map(|v| v != 0),
            acknowledge_breached_at: opt_ms(r.try_get("acknowledge_breached_at")?)?,
            on_site_breached_at: opt_ms(r.try_get("on_site_breached_at")?)?,
            resolve_breached_at: opt_ms(r.try_get("resolve_breached_at")?)?,
            escalation_level: r.try_get("escalation_level")?,
            loaner: flag_of(r, "loaner")?,
            dispatched_at: opt_ms(r.try_get("dispatched_at")?)?,
            resolve_forced: flag_of(r, "resolve_forced")?,
            calendar_gap: r.try_get("calendar_gap")?,
        },
        warranty: match r.try_get::<Option<String>, _>("warranty")? {
            Some(w) => Some(serde_json::from_str(&w).map_err(|e| StoreError::Corrupt(format!("warranty: {e}")))?),
            None => None,
        },
        billing: r
            .try_get::<Option<String>, _>("billing")?
            .map(|class| Billing { class, reason: r.try_get("billing_reason").ok().flatten() }),
        failed_repairs: r.try_get("failed_repairs")?,
        replace_unit: flag_of(r, "replace_unit")?,
        silenced_by: r.try_get("silenced_by")?,
        timeline: None,
    })
}

/// One timeline line to append.
struct Entry<'a> {
    event: &'a str,
    actor: &'a str,
    from: Option<State>,
    to: Option<State>,
    tier: Option<Tier>,
    note: &'a str,
}

async fn append(conn: &mut SqliteConnection, ticket: i64, at: DateTime<Utc>, e: Entry<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO timeline (ticket_id, at, event, actor, from_state, to_state, tier, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(ticket)
    .bind(ms(at))
    .bind(e.event)
    .bind(e.actor)
    .bind(e.from.map(State::as_str))
    .bind(e.to.map(State::as_str))
    .bind(e.tier.map(|t| t.number() as i64))
    .bind(e.note)
    .execute(&mut *conn)
    .await?;
    // Every change is one the helpdesk must see: an outbox row in the same transaction, for a
    // customer that has a helpdesk (one without gets none, and costs the relay nothing).
    let action = match (e.event, e.to) {
        ("opened" | "reopened", _) | (_, Some(State::Open)) => HelpdeskAction::Trigger,
        (_, Some(State::Resolved | State::Closed | State::Cancelled)) => HelpdeskAction::Resolve,
        _ => HelpdeskAction::Update,
    };
    sqlx::query(
        "INSERT INTO outbox (ticket_id, seq, event_id, event, action, note, customer, created_at, next_attempt_at, origin, state) \
         SELECT $1, n.seq, 'aftercare-' || $1 || '-' || n.seq, $2, $3, $4, t.customer, $5, $5, $6, \
         CASE WHEN t.silenced_by IS NULL THEN 'pending' ELSE 'skipped' END \
         FROM tickets t, (SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM outbox WHERE ticket_id = $1) n WHERE t.id = $1 \
         AND EXISTS (SELECT 1 FROM helpdesk_routes r WHERE r.customer = t.customer)",
    )
    .bind(ticket)
    .bind(e.event)
    .bind(action.as_str())
    .bind(e.note)
    .bind(ms(at))
    .bind(e.actor)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The schema's migrations, built into the binary (without sqlx's macros, which cost a second build of sqlx).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "tickets", include_str!("../../migrations/sqlite/0001_tickets.sql")),
    (2, "deadlines", include_str!("../../migrations/sqlite/0002_deadlines.sql")),
    (3, "escalation", include_str!("../../migrations/sqlite/0003_escalation.sql")),
    (4, "warranty", include_str!("../../migrations/sqlite/0004_warranty.sql")),
    (5, "outbox", include_str!("../../migrations/sqlite/0005_outbox.sql")),
    (6, "outbox_origin", include_str!("../../migrations/sqlite/0006_outbox_origin.sql")),
    (7, "remote_status", include_str!("../../migrations/sqlite/0007_remote_status.sql")),
    (8, "history", include_str!("../../migrations/sqlite/0008_history.sql")),
    (9, "work_orders", include_str!("../../migrations/sqlite/0009_work_orders.sql")),
    (10, "silenced", include_str!("../../migrations/sqlite/0010_silenced.sql")),
    (11, "reports", include_str!("../../migrations/sqlite/0011_reports.sql")),
    (12, "work_order_outbox", include_str!("../../migrations/sqlite/0012_work_order_outbox.sql")),
    (13, "after_service", include_str!("../../migrations/sqlite/0013_after_service.sql")),
    (14, "forced_resolution", include_str!("../../migrations/sqlite/0014_forced_resolution.sql")),
    (15, "alarms_and_installation", include_str!("../../migrations/sqlite/0015_alarms_and_installation.sql")),
    (16, "calendar_gap", include_str!("../../migrations/sqlite/0016_calendar_gap.sql")),
    (17, "helpdesk_routes", include_str!("../../migrations/sqlite/0017_helpdesk_routes.sql")),
];

fn migrator() -> Migrator {
    migrator_to(i64::MAX)
}

/// The migrations up to `version`, for testing an upgrade from an older schema.
fn migrator_to(version: i64) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .filter(|(v, _, _)| *v <= version)
            .map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, sql.into_sql_str(), false))
            .collect(),
    )
}

/// Each connection's page cache, KiB. SQLite's default (2,000 KiB) filled as the database grew
/// and was most of the daemon's growth in memory under a long flood (docs/PERF.md); the
/// operating system caches the file anyway, and the writer's batches touch few pages.
pub const PAGE_CACHE_KIB: u32 = 512;

/// A statement slower than this is logged as a warning.
pub const SLOW_STATEMENT: Duration = Duration::from_millis(100);

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::Folder { path: dir.display().to_string(), source })?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", format!("-{PAGE_CACHE_KIB}"))
            // One statement holding the database this long holds up the ticket writer: say so.
            .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        migrator().run(&pool).await?;
        Ok(Store { pool, resolved: Default::default() })
    }

    /// Moves the write-ahead log into the database every second until shutdown, without
    /// waiting for readers or writers (a passive checkpoint), so that the log seldom grows to
    /// the 1,000 pages at which SQLite checkpoints inside a commit, the ticket writer's.
    pub async fn checkpoints(self, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await {
                tracing::warn!(error = %e, "checkpointing the database failed; retrying");
            }
        }
    }

    /// When the store was made: since then aftercare has watched the fleet. Read from the
    /// migrations' own record of the first one.
    pub async fn created_at(&self) -> Result<DateTime<Utc>, StoreError> {
        let at: String = sqlx::query_scalar("SELECT installed_on FROM _sqlx_migrations WHERE version = 1")
            .fetch_one(&self.pool)
            .await?;
        chrono::NaiveDateTime::parse_from_str(&at, "%Y-%m-%d %H:%M:%S")
            .map(|t| t.and_utc())
            .map_err(|e| StoreError::Corrupt(format!("the store's creation time `{at}`: {e}")))
    }

    /// Makes the store look made at `at`, for tests of what depends on how long it has watched.
    #[cfg(test)]
    pub(crate) async fn set_created_at(&self, at: DateTime<Utc>) {
        let at = at.format("%Y-%m-%d %H:%M:%S").to_string();
        let q = sqlx::query("UPDATE _sqlx_migrations SET installed_on = $1 WHERE version = 1").bind(at);
        q.execute(&self.pool).await.map(drop).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Applies a batch of fault events in one transaction, in order.
    /// Returns, per event, what it did and to which ticket.
    pub async fn apply_faults(
        &self,
        records: &[FaultRecord],
        now: DateTime<Utc>,
        reopen_window: Duration,
    ) -> Result<Vec<(Outcome, Option<TicketId>)>, StoreError> {
        self.apply_batch(records, &[], now, reopen_window).await
    }

    /// Applies fault events and keeps devices' alarms, in one transaction.
    pub async fn apply_batch(
        &self,
        records: &[FaultRecord],
        alarms: &[AlarmRecord],
        now: DateTime<Utc>,
        reopen_window: Duration,
    ) -> Result<Vec<(Outcome, Option<TicketId>)>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for a in alarms {
            let q = if a.active {
                sqlx::query(
                    "INSERT INTO device_alarms (device, code, since) VALUES ($1, $2, $3) \
                     ON CONFLICT (device, code) DO NOTHING",
                )
            } else {
                // Cleared, whatever time the device gives: a stale row would raise it after a restart.
                sqlx::query("DELETE FROM device_alarms WHERE device = $1 AND code = $2 AND $3 = $3")
            };
            q.bind(&a.device).bind(&a.code).bind(ms(a.at)).execute(&mut *tx).await?;
        }
        let mut out = Vec::with_capacity(records.len());
        for rec in records {
            let r = match rec.change {
                Change::Raised => raise(&mut tx, rec, now, reopen_window).await?,
                Change::Cleared => clear(&mut tx, rec, now).await?,
                Change::Promoted => promote(&mut tx, rec, now).await?,
            };
            // The device's state history, kept apart from tickets (which merge recurrences);
            // a clear that found nothing open changed nothing.
            if matches!(r.0, Outcome::Nothing) {
                out.push(r);
                continue;
            }
            sqlx::query(
                "INSERT INTO device_events (device, at, event, code, tier, detail) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&rec.device)
            .bind(ms(rec.at))
            .bind(match rec.change {
                Change::Raised => "raised",
                Change::Cleared => "cleared",
                Change::Promoted => "promoted",
            })
            .bind(&rec.code)
            .bind(rec.tier.number() as i64)
            .bind(&rec.detail)
            .execute(&mut *tx)
            .await?;
            out.push(r);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Moves a ticket to another state on a person's (or helpdesk's) word.
    pub async fn transition(
        &self,
        id: TicketId,
        to: State,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Ticket, TransitionFailure> {
        self.transition_with(id, to, by, note, now, TransitionOptions::default()).await
    }

    /// A transition with its options: a billable cause, a forced resolution, a replaced unit.
    pub async fn transition_with(
        &self,
        id: TicketId,
        to: State,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
        opts: TransitionOptions<'_>,
    ) -> Result<Ticket, TransitionFailure> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::from)?;
        let row = sqlx::query("SELECT state, recovered, code FROM tickets WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .ok_or(TransitionFailure::NotFound(id.0))?;
        let from: String = row.try_get("state").map_err(StoreError::from)?;
        let from = State::from_str(&from).map_err(StoreError::Corrupt)?;
        let recovered = row.try_get::<i64, _>("recovered").map_err(StoreError::from)? != 0;
        lifecycle::check(from, to)?;
        if opts.unit_replaced && to != State::Resolved {
            return Err(TransitionFailure::Conflict(
                "`unit_replaced` says how a ticket was resolved: send it with \"to\": \"resolved\"".into(),
            ));
        }
        // A fault still active is not fixed: resolving it anyway takes a word that says so, and why.
        let forced = to == State::Resolved && !recovered;
        if forced && !opts.force {
            let code: String = row.try_get("code").map_err(StoreError::from)?;
            return Err(TransitionFailure::Conflict(format!(
                "ticket {id}'s fault `{code}` is still active (not recovered): it cannot be resolved until it clears; \
                 to resolve it anyway send \"force\": true with a note saying why"
            )));
        }
        if forced && note.trim().is_empty() {
            return Err(TransitionFailure::Conflict(
                "a forced resolution needs a note saying why the ticket is resolved while its fault is active".into(),
            ));
        }
        // The first move out of `open` is the response that the acknowledge clock measures.
        let respond = if from == State::Open {
            ", acknowledged_at = COALESCE(acknowledged_at, $3), acknowledge_met = COALESCE(acknowledge_met, \
             CASE WHEN acknowledge_by IS NULL THEN NULL WHEN $3 <= acknowledge_by THEN 1 ELSE 0 END)"
        } else {
            ""
        };
        let set = match to {
            State::OnSite => {
                ", on_site_at = COALESCE(on_site_at, $3), on_site_met = COALESCE(on_site_met, \
                 CASE WHEN on_site_by IS NULL THEN NULL WHEN $3 <= on_site_by THEN 1 ELSE 0 END)"
            }
            // The resolve clock of a forced resolution is judged when the fault recovers (see `clear`);
            // one already breached stays missed.
            State::Resolved if forced => {
                ", resolved_at = $3, resolve_forced = 1, resolve_met = \
                 CASE WHEN resolve_breached_at IS NULL THEN NULL ELSE 0 END"
            }
            State::Resolved => {
                ", resolved_at = $3, resolve_forced = 0, resolve_met = \
                 CASE WHEN resolve_by IS NULL THEN NULL WHEN $3 <= resolve_by THEN 1 ELSE 0 END"
            }
            State::Dispatched => ", dispatched_at = $3",
            State::Closed | State::Cancelled => ", closed_at = $3",
            State::Open => ", closed_at = NULL, resolved_at = NULL, resolve_forced = 0",
            _ => "",
        };
        let set = format!("{respond}{set}");
        let sql = format!("UPDATE tickets SET state = $1, updated_at = $3{set} WHERE id = $2");
        let res =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to.as_str()).bind(id.0).bind(ms(now)).execute(&mut *tx).await;
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(TransitionFailure::Conflict(format!(
                    "cannot reopen ticket {id}: another ticket for the same device and fault is open"
                )));
            }
            r => {
                r.map_err(StoreError::from)?;
            }
        }
        let forced_note;
        let note = if forced {
            forced_note = format!("forced while the fault is still active: {note}");
            forced_note.as_str()
        } else {
            note
        };
        let entry = Entry { event: "transition", actor: by, from: Some(from), to: Some(to), tier: None, note };
        append(&mut tx, id.0, now, entry).await?;
        if let Some(cause) = opts.billable {
            sqlx::query("UPDATE tickets SET billing = 'billable', billing_reason = $2 WHERE id = $1")
                .bind(id.0)
                .bind(cause)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            let note = format!("billable: {cause}");
            let entry = Entry { event: "billing", actor: by, from: None, to: None, tier: None, note: &note };
            append(&mut tx, id.0, now, entry).await?;
        }
        if opts.unit_replaced {
            // The repeat-repair rule counts the new unit's failed repairs from here.
            let note = "the unit was replaced: failed repairs count afresh";
            let entry = Entry { event: "unit_replaced", actor: by, from: None, to: None, tier: None, note };
            append(&mut tx, id.0, now, entry).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        if to == State::Resolved {
            self.resolved.notify_one();
        }
        self.ticket(id).await?.ok_or(TransitionFailure::NotFound(id.0))
    }

    /// Returns when a ticket was resolved since the last call returned (at once if one was).
    pub async fn resolved(&self) {
        self.resolved.notified().await
    }

    /// One ticket with its timeline.
    pub async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>, StoreError> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let mut t = ticket_from_row(&row)?;
        let rows = sqlx::query(
            "SELECT at, event, actor, from_state, to_state, tier, note FROM timeline WHERE ticket_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        let mut timeline = Vec::with_capacity(rows.len());
        for r in rows {
            let state = |c: &str| -> Result<Option<State>, StoreError> {
                let s: Option<String> = r.try_get(c)?;
                s.map(|s| State::from_str(&s).map_err(StoreError::Corrupt)).transpose()
            };
            timeline.push(TimelineEntry {
                at: from_ms(r.try_get("at")?)?,
                event: r.try_get("event")?,
                actor: r.try_get("actor")?,
                from_state: state("from_state")?,
                to_state: state("to_state")?,
                tier: r.try_get::<Option<i64>, _>("tier")?.and_then(Tier::from_number),
                note: r.try_get("note")?,
            });
        }
        t.timeline = Some(timeline);
        Ok(Some(t))
    }

    /// Tickets matching a filter, newest first.
    pub async fn tickets(&self, f: &TicketFilter) -> Result<Vec<Ticket>, StoreError> {
        let mut sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        let mut text = |col: &str, v: &Option<String>, sql: &mut String| {
            if let Some(v) = v {
                args.push(v.clone());
                sql.push_str(&format!(" AND {col} = ${}", args.len()));
            }
        };
        text("state", &f.state.map(|s| s.as_str().to_string()), &mut sql);
        text("device", &f.device, &mut sql);
        text("code", &f.code, &mut sql);
        text("customer", &f.customer, &mut sql);
        text("site", &f.site, &mut sql);
        text("kind", &f.kind, &mut sql);
        if let Some(t) = f.tier {
            sql.push_str(&format!(" AND tier = {}", t.number()));
        }
        if let Some(r) = f.recovered {
            sql.push_str(if r { " AND recovered = 1" } else { " AND recovered = 0" });
        }
        if let Some(open) = f.open {
            sql.push_str(if open {
                " AND state NOT IN ('closed', 'cancelled')"
            } else {
                " AND state IN ('closed', 'cancelled')"
            });
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {} OFFSET {}", f.limit.clamp(1, 10_000), f.offset.max(0)));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(ticket_from_row).collect()
    }

    /// Tickets matching a condition over ($1 customer or NULL, $2 from, $3 to), oldest first.
    pub(super) async fn tickets_where(
        &self,
        cond: &'static str,
        customer: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Ticket>, StoreError> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE {cond} ORDER BY opened_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customer)
            .bind(ms(from))
            .bind(ms(to))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(ticket_from_row).collect()
    }

    /// Faults whose latest ticket has not recovered, whatever its state: the rule state to
    /// restore after a restart. A fault whose ticket was closed or cancelled while it was still
    /// active opens no new ticket until it clears, before a restart as after one.
    pub async fn active_faults(&self) -> Result<Vec<ActiveFault>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, code, tier, last_raised_at FROM tickets t WHERE recovered = 0 \
             AND id = (SELECT MAX(id) FROM tickets l WHERE l.device = t.device AND l.code = t.code)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ActiveFault {
                    device: r.try_get("device")?,
                    code: r.try_get("code")?,
                    tier: tier_of(r)?,
                    since: from_ms(r.try_get("last_raised_at")?)?,
                })
            })
            .collect()
    }

    /// Devices' alarm codes that are active, as (device, code).
    pub async fn active_alarms(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT device, code FROM device_alarms ORDER BY device, code").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("device")?, r.try_get("code")?))).collect()
    }

    /// This installation's id: made at random the first time, the same ever after.
    pub async fn installation_id(&self) -> Result<String, StoreError> {
        use std::hash::{BuildHasher, Hasher};
        // The standard library seeds each RandomState from the operating system's randomness.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id() as u64);
        let fresh = format!("{:016x}", h.finish());
        sqlx::query("INSERT INTO installation (key, value) VALUES ('id', $1) ON CONFLICT (key) DO NOTHING")
            .bind(&fresh)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM installation WHERE key = 'id'").fetch_one(&self.pool).await?)
    }

    /// Clock outcomes (tier, acknowledge, on-site, resolve) of a customer's tickets opened in `[from, to)`.
    pub async fn clock_outcomes(
        &self,
        customer: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(u8, Option<bool>, Option<bool>, Option<bool>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT tier, acknowledge_met, on_site_met, resolve_met FROM tickets \
             WHERE ($1 IS NULL OR customer = $1) AND opened_at >= $2 AND opened_at < $3 AND state != 'cancelled'",
        )
        .bind(customer)
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?;
        let b = |v: Option<i64>| v.map(|v| v != 0);
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("tier")? as u8,
                    b(r.try_get("acknowledge_met")?),
                    b(r.try_get("on_site_met")?),
                    b(r.try_get("resolve_met")?),
                ))
            })
            .collect()
    }

    /// Tickets' clocks, each with the time it last changed: a page of the open tickets, a
    /// page of the tickets (open or not) changed since a point, or one ticket whatever its state.
    pub async fn clocks(&self, which: Clocks) -> Result<Vec<(OpenClock, DateTime<Utc>)>, StoreError> {
        const COLUMNS: &str = "id, tier, state, contract, opened_at, updated_at, acknowledged_at, on_site_at, \
             acknowledge_by, on_site_by, resolve_by, acknowledge_breached_at, on_site_breached_at, resolve_breached_at, \
             escalation_level, dispatched_at, inaction_escalated_at, resolve_forced, recovered";
        let q = match which {
            Clocks::Open { after, limit } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM tickets WHERE state NOT IN ('closed', 'cancelled') AND id > $1 \
                 ORDER BY id LIMIT $2"
            )))
            .bind(after.0)
            .bind(i64::from(limit)),
            Clocks::Changed { at, after, limit } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM tickets WHERE updated_at > $1 OR (updated_at = $1 AND id > $2) \
                 ORDER BY updated_at, id LIMIT $3"
            )))
            .bind(ms(at))
            .bind(after.0)
            .bind(i64::from(limit)),
            Clocks::Of(id) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tickets WHERE id = $1"))).bind(id.0)
            }
        };
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let clock = OpenClock {
                id: TicketId(r.try_get("id")?),
                tier: tier_of(r)?,
                state: state_of(r)?,
                contract: r.try_get("contract")?,
                opened_at: from_ms(r.try_get("opened_at")?)?,
                acknowledged_at: opt_ms(r.try_get("acknowledged_at")?)?,
                on_site_at: opt_ms(r.try_get("on_site_at")?)?,
                acknowledge_by: opt_ms(r.try_get("acknowledge_by")?)?,
                on_site_by: opt_ms(r.try_get("on_site_by")?)?,
                resolve_by: opt_ms(r.try_get("resolve_by")?)?,
                acknowledge_breached: r.try_get::<Option<i64>, _>("acknowledge_breached_at")?.is_some(),
                on_site_breached: r.try_get::<Option<i64>, _>("on_site_breached_at")?.is_some(),
                resolve_breached: r.try_get::<Option<i64>, _>("resolve_breached_at")?.is_some(),
                escalation_level: r.try_get("escalation_level")?,
                dispatched_at: opt_ms(r.try_get("dispatched_at")?)?,
                inaction_escalated_at: opt_ms(r.try_get("inaction_escalated_at")?)?,
                awaiting_recovery: flag_of(r, "resolve_forced")? && !flag_of(r, "recovered")?,
            };
            out.push((clock, from_ms(r.try_get("updated_at")?)?));
        }
        Ok(out)
    }

    /// Applies what a ticket's clocks made due, each at most once; returns the firings that took effect.
    pub async fn fire(&self, id: TicketId, firings: &[Firing], now: DateTime<Utc>) -> Result<Vec<Firing>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut done = Vec::new();
        for f in firings {
            let (sql, note): (&str, String) = match f {
                Firing::Breach { clock: ClockName::Acknowledge, due, .. } => (
                    "UPDATE tickets SET acknowledge_breached_at = $2, acknowledge_met = COALESCE(acknowledge_met, 0), \
                     updated_at = $2 WHERE id = $1 AND acknowledge_breached_at IS NULL AND acknowledged_at IS NULL",
                    format!("acknowledge clock missed: due {}", due.to_rfc3339()),
                ),
                Firing::Breach { clock: ClockName::OnSite, due, .. } => (
                    "UPDATE tickets SET on_site_breached_at = $2, on_site_met = COALESCE(on_site_met, 0), \
                     updated_at = $2 WHERE id = $1 AND on_site_breached_at IS NULL AND on_site_at IS NULL",
                    format!("on-site clock missed: due {}", due.to_rfc3339()),
                ),
                Firing::Breach { clock: ClockName::Resolve, due, loaner } => (
                    if *loaner {
                        "UPDATE tickets SET resolve_breached_at = $2, resolve_met = 0, loaner = 1, updated_at = $2 \
                         WHERE id = $1 AND resolve_breached_at IS NULL AND (state NOT IN ('resolved', 'closed', 'cancelled') \
                         OR (state = 'resolved' AND resolve_forced = 1 AND recovered = 0))"
                    } else {
                        "UPDATE tickets SET resolve_breached_at = $2, resolve_met = 0, updated_at = $2 \
                         WHERE id = $1 AND resolve_breached_at IS NULL AND (state NOT IN ('resolved', 'closed', 'cancelled') \
                         OR (state = 'resolved' AND resolve_forced = 1 AND recovered = 0))"
                    },
                    if *loaner {
                        format!(
                            "resolve clock missed: due {}; a loaner unit is owed until it is fixed",
                            due.to_rfc3339()
                        )
                    } else {
                        format!("resolve clock missed: due {}", due.to_rfc3339())
                    },
                ),
                Firing::Escalate { level, to, channel, due, unless } => {
                    let sql = "UPDATE tickets SET escalation_level = $3, updated_at = $2 WHERE id = $1 AND escalation_level < $3";
                    let res = sqlx::query(sql).bind(id.0).bind(ms(now)).bind(*level as i64).execute(&mut *tx).await?;
                    if res.rows_affected() == 1 {
                        let note = format!(
                            "level {level}: to {to} by {channel}; not {} by {}",
                            serde_json::to_value(unless)
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default(),
                            due.to_rfc3339()
                        );
                        let e =
                            Entry { event: "escalated", actor: SYSTEM, from: None, to: None, tier: None, note: &note };
                        append(&mut tx, id.0, now, e).await?;
                        done.push(f.clone());
                    }
                    continue;
                }
                Firing::Inaction { since, to } => {
                    let sql = "UPDATE tickets SET inaction_escalated_at = $2, updated_at = $2 WHERE id = $1 \
                               AND state = 'dispatched' AND dispatched_at = $3 \
                               AND (inaction_escalated_at IS NULL OR inaction_escalated_at < dispatched_at)";
                    let res = sqlx::query(sql).bind(id.0).bind(ms(now)).bind(ms(*since)).execute(&mut *tx).await?;
                    if res.rows_affected() == 1 {
                        let note = format!("dispatched at {} with no progress since: to {to}", since.to_rfc3339());
                        let e =
                            Entry { event: "inaction", actor: SYSTEM, from: None, to: None, tier: None, note: &note };
                        append(&mut tx, id.0, now, e).await?;
                        done.push(f.clone());
                    }
                    continue;
                }
            };
            let res = sqlx::query(sql).bind(id.0).bind(ms(now)).execute(&mut *tx).await?;
            if res.rows_affected() == 1 {
                let e = Entry { event: "breach", actor: SYSTEM, from: None, to: None, tier: None, note: &note };
                append(&mut tx, id.0, now, e).await?;
                done.push(f.clone());
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The more severe of two tiers.
fn worse(a: Tier, b: Tier) -> Tier {
    if a.outranks(b) { a } else { b }
}

/// Counts another occurrence of a fault on ticket `id`, reopening it when it was `reopen_from`.
async fn count_again(
    conn: &mut SqliteConnection,
    id: i64,
    reopen_from: Option<State>,
    tier: Tier,
    rec: &FaultRecord,
    now: DateTime<Utc>,
    note: &str,
) -> Result<(Outcome, Option<TicketId>), StoreError> {
    let reopen = if reopen_from.is_some() { "state = 'open', closed_at = NULL, resolved_at = NULL, " } else { "" };
    let sql = format!(
        "UPDATE tickets SET {reopen}recovered = 0, recovered_at = NULL, occurrences = occurrences + 1, \
         tier = $2, last_raised_at = $3, updated_at = $4, detail = $5 WHERE id = $1"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tier.number() as i64)
        .bind(ms(rec.at))
        .bind(ms(now))
        .bind(&rec.detail)
        .execute(&mut *conn)
        .await?;
    let (event, outcome, to) = match reopen_from {
        Some(_) => ("reopened", Outcome::Reopened, Some(State::Open)),
        None => ("recurred", Outcome::Recurred, None),
    };
    let e = Entry { event, actor: SYSTEM, from: reopen_from, to, tier: Some(tier), note };
    append(conn, id, now, e).await?;
    Ok((outcome, Some(TicketId(id))))
}

/// Raises a fault, then applies the repeat-repair rule: a fault back within the
/// contract's window after the device+fault was last repaired is a failed repair.
async fn raise(
    conn: &mut SqliteConnection,
    rec: &FaultRecord,
    now: DateTime<Utc>,
    reopen_window: Duration,
) -> Result<(Outcome, Option<TicketId>), StoreError> {
    let last_resolved: Option<i64> =
        sqlx::query_scalar("SELECT MAX(resolved_at) FROM tickets WHERE device = $1 AND code = $2")
            .bind(&rec.device)
            .bind(&rec.code)
            .fetch_one(&mut *conn)
            .await?;
    let (outcome, id) = open_or_count(conn, rec, now, reopen_window).await?;
    if let (Outcome::Opened | Outcome::Reopened, Some(id), Some(rule), Some(resolved)) =
        (outcome, id, rec.repeat, last_resolved)
    {
        let window = chrono::TimeDelta::from_std(rule.window).unwrap_or(chrono::TimeDelta::MAX);
        let resolved = from_ms(resolved)?;
        if now - resolved <= window {
            // Earlier failed repairs count while they are within the window and of this unit.
            let replaced: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(e.at) FROM timeline e JOIN tickets t ON t.id = e.ticket_id \
                 WHERE t.device = $1 AND e.event = 'unit_replaced'",
            )
            .bind(&rec.device)
            .fetch_one(&mut *conn)
            .await?;
            let since = ms(now.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC));
            let since = replaced.map_or(since, |r| since.max(r + 1));
            let earlier: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM timeline e JOIN tickets t ON t.id = e.ticket_id \
                 WHERE t.device = $1 AND t.code = $2 AND e.event = 'repair_failed' AND e.at >= $3",
            )
            .bind(&rec.device)
            .bind(&rec.code)
            .bind(since)
            .fetch_one(&mut *conn)
            .await?;
            let in_warranty = rec.warranty.as_ref().is_some_and(|w| w.in_warranty);
            failed_repair(conn, id, earlier + 1, resolved, rule, in_warranty, now).await?;
        }
    }
    Ok((outcome, id))
}

async fn failed_repair(
    conn: &mut SqliteConnection,
    id: TicketId,
    n: i64,
    resolved: DateTime<Utc>,
    rule: crate::contracts::RepeatRule,
    in_warranty: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE tickets SET failed_repairs = $2 WHERE id = $1").bind(id.0).bind(n).execute(&mut *conn).await?;
    let window = humantime::format_duration(rule.window);
    let note = format!(
        "the fault returned {} after the repair of {}: {n} failed repair{} within {window}",
        humantime::format_duration(std::time::Duration::from_secs((now - resolved).num_seconds().max(0) as u64)),
        resolved.to_rfc3339(),
        if n == 1 { "" } else { "s" }
    );
    append(
        conn,
        id.0,
        now,
        Entry { event: "repair_failed", actor: SYSTEM, from: None, to: None, tier: None, note: &note },
    )
    .await?;
    // 以上 includes the number itself: "2次以上" is two failed repairs or more.
    if n >= rule.replace_at_failed_repairs as i64 && in_warranty {
        let res = sqlx::query("UPDATE tickets SET replace_unit = 1 WHERE id = $1 AND replace_unit = 0")
            .bind(id.0)
            .execute(&mut *conn)
            .await?;
        if res.rows_affected() == 1 {
            let note = format!(
                "{n} failed repairs within {window} in warranty (the contract replaces at {}): replace the unit; \
                 to service manager",
                rule.replace_at_failed_repairs
            );
            let e = Entry { event: "replace_unit", actor: SYSTEM, from: None, to: None, tier: None, note: &note };
            append(conn, id.0, now, e).await?;
        }
    }
    Ok(())
}

async fn open_or_count(
    conn: &mut SqliteConnection,
    rec: &FaultRecord,
    now: DateTime<Utc>,
    reopen_window: Duration,
) -> Result<(Outcome, Option<TicketId>), StoreError> {
    let open = sqlx::query(
        "SELECT id, state, tier FROM tickets WHERE device = $1 AND code = $2 AND state NOT IN ('closed', 'cancelled')",
    )
    .bind(&rec.device)
    .bind(&rec.code)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = open {
        let id: i64 = row.try_get("id")?;
        let state = State::from_str(&row.try_get::<String, _>("state")?).map_err(StoreError::Corrupt)?;
        let tier = worse(rec.tier, Tier::from_number(row.try_get("tier")?).unwrap_or(rec.tier));
        if state == State::Resolved {
            // The repair did not hold.
            let note = format!("the fault returned after the ticket was resolved: {}", rec.detail);
            return count_again(conn, id, Some(State::Resolved), tier, rec, now, &note).await;
        }
        return count_again(conn, id, None, tier, rec, now, &rec.detail).await;
    }
    let since = now - chrono::TimeDelta::from_std(reopen_window).unwrap_or(chrono::TimeDelta::MAX);
    let closed = sqlx::query(
        "SELECT id, tier FROM tickets WHERE device = $1 AND code = $2 AND state = 'closed' AND closed_at >= $3 \
         ORDER BY closed_at DESC LIMIT 1",
    )
    .bind(&rec.device)
    .bind(&rec.code)
    .bind(ms(since))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = closed {
        let id: i64 = row.try_get("id")?;
        let tier = worse(rec.tier, Tier::from_number(row.try_get("tier")?).unwrap_or(rec.tier));
        let window = humantime::format_duration(reopen_window);
        let note = format!("the fault returned within {window} of closing: {}", rec.detail);
        return count_again(conn, id, Some(State::Closed), tier, rec, now, &note).await;
    }
    // An engineer on a visit to the device: the fault is recorded, but nobody is paged for it.
    let visit: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM work_orders WHERE device = $1 AND state = 'in_progress' ORDER BY id LIMIT 1",
    )
    .bind(&rec.device)
    .fetch_optional(&mut *conn)
    .await?;
    let silenced_note;
    let (deadlines, detail) = match visit {
        Some(w) => {
            silenced_note = format!("opened during the visit of work order {w}, silenced: {}", rec.detail);
            let d = crate::contracts::Deadlines {
                contract: rec.deadlines.contract.clone(),
                no_clock: Some(format!("silenced: opened during the visit of work order {w}")),
                ..Default::default()
            };
            (d, silenced_note.as_str())
        }
        None => (rec.deadlines.clone(), rec.detail.as_str()),
    };
    let row = sqlx::query(
        "INSERT INTO tickets (device, site, customer, kind, code, title, tier, state, fault_at, opened_at, updated_at, \
         last_raised_at, detail, contract, no_clock, acknowledge_by, on_site_by, resolve_by, warranty, billing, silenced_by, \
         calendar_gap) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $9, $8, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
         RETURNING id",
    )
    .bind(&rec.device)
    .bind(&rec.site)
    .bind(&rec.customer)
    .bind(&rec.kind)
    .bind(&rec.code)
    .bind(&rec.title)
    .bind(rec.tier.number() as i64)
    .bind(ms(rec.at))
    .bind(ms(now))
    .bind(&rec.detail)
    .bind(&deadlines.contract)
    .bind(&deadlines.no_clock)
    .bind(deadlines.acknowledge_by.map(ms))
    .bind(deadlines.on_site_by.map(ms))
    .bind(deadlines.resolve_by.map(ms))
    .bind(rec.warranty.as_ref().and_then(|w| serde_json::to_string(w).ok()))
    .bind(rec.warranty.as_ref().map(|w| if w.in_warranty { "free" } else { "at_cost" }))
    .bind(visit)
    .bind(&deadlines.calendar_gap)
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = row.try_get("id")?;
    let e =
        Entry { event: "opened", actor: SYSTEM, from: None, to: Some(State::Open), tier: Some(rec.tier), note: detail };
    append(conn, id, now, e).await?;
    Ok((Outcome::Opened, Some(TicketId(id))))
}

/// A fault cleared: its latest ticket, whatever its state, is marked recovered. A forced
/// resolution's resolve clock is judged now, by the time of the recovery.
async fn clear(
    conn: &mut SqliteConnection,
    rec: &FaultRecord,
    now: DateTime<Utc>,
) -> Result<(Outcome, Option<TicketId>), StoreError> {
    let row = sqlx::query(
        "UPDATE tickets SET recovered = 1, recovered_at = $3, updated_at = $4, resolve_met = \
         CASE WHEN resolve_forced = 1 AND resolve_met IS NULL AND resolve_by IS NOT NULL \
         THEN CASE WHEN $3 <= resolve_by THEN 1 ELSE 0 END ELSE resolve_met END \
         WHERE id = (SELECT MAX(id) FROM tickets WHERE device = $1 AND code = $2) AND recovered = 0 RETURNING id",
    )
    .bind(&rec.device)
    .bind(&rec.code)
    .bind(ms(rec.at))
    .bind(ms(now))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok((Outcome::Nothing, None));
    };
    let id: i64 = row.try_get("id")?;
    let e = Entry { event: "recovered", actor: SYSTEM, from: None, to: None, tier: None, note: &rec.detail };
    append(conn, id, now, e).await?;
    Ok((Outcome::Recovered, Some(TicketId(id))))
}

async fn promote(
    conn: &mut SqliteConnection,
    rec: &FaultRecord,
    now: DateTime<Utc>,
) -> Result<(Outcome, Option<TicketId>), StoreError> {
    let row = sqlx::query(
        "SELECT id, tier FROM tickets WHERE device = $1 AND code = $2 AND state NOT IN ('closed', 'cancelled')",
    )
    .bind(&rec.device)
    .bind(&rec.code)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok((Outcome::Nothing, None));
    };
    let id: i64 = row.try_get("id")?;
    let tier = Tier::from_number(row.try_get("tier")?).unwrap_or(rec.tier);
    if worse(rec.tier, tier) == tier {
        return Ok((Outcome::Nothing, Some(TicketId(id))));
    }
    // The stricter clocks start now; a deadline never moves later (tickets::sla::promoted_deadline).
    sqlx::query(
        "UPDATE tickets SET tier = $2, updated_at = $3, \
         acknowledge_by = CASE WHEN $4 IS NULL THEN acknowledge_by ELSE MIN(COALESCE(acknowledge_by, $4), $4) END, \
         on_site_by = CASE WHEN $5 IS NULL THEN on_site_by ELSE MIN(COALESCE(on_site_by, $5), $5) END, \
         resolve_by = CASE WHEN $6 IS NULL THEN resolve_by ELSE MIN(COALESCE(resolve_by, $6), $6) END, \
         calendar_gap = COALESCE($7, calendar_gap) \
         WHERE id = $1",
    )
    .bind(id)
    .bind(rec.tier.number() as i64)
    .bind(ms(now))
    .bind(rec.deadlines.acknowledge_by.map(ms))
    .bind(rec.deadlines.on_site_by.map(ms))
    .bind(rec.deadlines.resolve_by.map(ms))
    .bind(&rec.deadlines.calendar_gap)
    .execute(&mut *conn)
    .await?;
    let note = format!("tier {tier} → {}: {}", rec.tier, rec.detail);
    let e = Entry { event: "promoted", actor: SYSTEM, from: None, to: None, tier: Some(rec.tier), note: &note };
    append(conn, id, now, e).await?;
    Ok((Outcome::Promoted, Some(TicketId(id))))
}

#[cfg(test)]
mod tests;
