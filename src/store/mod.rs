//! Persistence: SQLite in WAL mode through sqlx. Only this module holds SQL; the rest of
//! aftercare speaks the domain verbs of [`Store`]. The store finds and writes; what a change
//! means is decided by the pure rules it is given (`tickets::policy`, `tickets::clocks`).
//!
//! SQL here is written to port to PostgreSQL (`$n` parameters, `ON CONFLICT`, `RETURNING`,
//! `COALESCE`, standard `CASE`). What is SQLite's own is listed in ARCHITECTURE.md
//! ("Portable SQL") and kept to this module's file `mod.rs` and the statements named there.

mod clocks;
mod contacts;
mod history;
mod intake;
mod notifications;
mod outbox;
mod repairs;
mod spares;
mod surveys;
mod tickets;
mod users;
mod work_orders;

pub use crate::tickets::repair::Attachment;
pub use clocks::{Clocks, Plan};
pub use contacts::{Contact, ContactFilter, NewContact};
pub use history::DeviceEvent;
pub use intake::Link;
pub use notifications::{Brief, Notice, Notification, NotificationState};
pub use outbox::{OutboxEvent, OutboxRow, RemoteTicket, SubjectId};
pub use repairs::{NewAttachment, Owner};
pub use spares::{MoveKind, Taken};
pub(crate) use spares::{spare_lines, warn_short};
pub use surveys::Survey;
pub use tickets::{ActiveFault, AlarmRecord, ClockOutcome, FaultRecord, TransitionFailure, TransitionOptions};
pub use users::{API_TOKEN, AuditEntry, AuditFilter, NewAudit, SESSION, Token, User};
pub use work_orders::{
    Completion, Defect, NewReportMail, NewWorkOrder, ReportMailDue, Served, Signed, StoredReport, WorkOrder,
    WorkOrderFilter,
};

use std::borrow::Cow;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlSafeStr, SqlitePool};

use crate::tickets::State;

/// The actor name of changes aftercare makes by itself.
pub const SYSTEM: &str = "aftercare";

#[derive(Debug, Clone)]
pub struct Store {
    pub(super) pool: SqlitePool,
    /// Woken when a ticket is resolved: the scheduler makes what follows a service at once.
    resolved: std::sync::Arc<tokio::sync::Notify>,
    /// Where attachments' bytes are kept: a folder beside the database.
    files: std::sync::Arc<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("creating the data folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("attachment file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("the database holds a value aftercare cannot read: {0}")]
    Corrupt(String),
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| StoreError::Corrupt(format!("timestamp {v}")))
}

fn opt_ms(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_ms).transpose()
}

/// A row's text column read as one of a set of names (`parse`); another text is a corrupt row.
fn named<T>(r: &SqliteRow, column: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    let text: String = r.try_get(column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{column} `{text}`")))
}

/// A row's 0/1 column.
fn flag_of(r: &SqliteRow, column: &str) -> Result<bool, StoreError> {
    Ok(r.try_get::<i64, _>(column)? != 0)
}

/// ` AND COLUMN IN ($first, ...)` for `customers` (none of them: a condition no row meets),
/// or nothing when every customer's rows are wanted.
fn in_customers(column: &str, customers: Option<&[String]>, first: usize) -> String {
    match customers {
        None => String::new(),
        Some([]) => " AND 1 = 0".into(),
        Some(cs) => {
            let marks: Vec<String> = (first..first + cs.len()).map(|n| format!("${n}")).collect();
            format!(" AND {column} IN ({})", marks.join(", "))
        }
    }
}

/// `('a', 'b')`: names for an SQL `IN`, each from its one mapping (`as_str`).
fn sql_list<const N: usize>(names: [&str; N]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("({})", quoted.join(", "))
}

/// The states a ticket ends in, for an SQL `IN`: the same text as the condition of the
/// partial index `tickets_one_open`, so that SQLite may use it.
static TERMINAL: LazyLock<String> = LazyLock::new(|| sql_list([State::Closed, State::Cancelled].map(State::as_str)));

/// The schema's migrations, built into the binary (without sqlx's macros, which cost a second build of sqlx).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
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
    (18, "tickets_updated_at", include_str!("../../migrations/sqlite/0018_tickets_updated_at.sql")),
    (19, "users", include_str!("../../migrations/sqlite/0019_users.sql")),
    (20, "audit_retention", include_str!("../../migrations/sqlite/0020_audit_retention.sql")),
    (21, "reported_tickets", include_str!("../../migrations/sqlite/0021_reported_tickets.sql")),
    (22, "assignment_and_comments", include_str!("../../migrations/sqlite/0022_assignment_and_comments.sql")),
    (23, "contacts", include_str!("../../migrations/sqlite/0023_contacts.sql")),
    (24, "complaints", include_str!("../../migrations/sqlite/0024_complaints.sql")),
    (25, "satisfaction", include_str!("../../migrations/sqlite/0025_satisfaction.sql")),
    (26, "repairs", include_str!("../../migrations/sqlite/0026_repairs.sql")),
    (27, "notifications", include_str!("../../migrations/sqlite/0027_notifications.sql")),
    (28, "helpdesk_intake", include_str!("../../migrations/sqlite/0028_helpdesk_intake.sql")),
    (29, "visit_signatures", include_str!("../../migrations/sqlite/0029_visit_signatures.sql")),
    (30, "report_mail", include_str!("../../migrations/sqlite/0030_report_mail.sql")),
    (31, "billable_at_cost", include_str!("../../migrations/sqlite/0031_billable_at_cost.sql")),
    (32, "visit_defects", include_str!("../../migrations/sqlite/0032_visit_defects.sql")),
    (33, "factory_and_stage_clocks", include_str!("../../migrations/sqlite/0033_factory_and_stage_clocks.sql")),
    (34, "spares", include_str!("../../migrations/sqlite/0034_spares.sql")),
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
        let stem = path.file_stem().map_or_else(|| "aftercare".into(), |s| s.to_string_lossy().into_owned());
        let files = path.with_file_name(format!("{stem}-attachments"));
        Ok(Store { pool, resolved: Default::default(), files: std::sync::Arc::new(files) })
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

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[cfg(test)]
mod tests;
