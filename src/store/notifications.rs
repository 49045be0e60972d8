//! Notifications to people in the embedded store: made with the firing that calls for them,
//! claimed when due, and marked delivered, due again later, or dead.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Row, SqliteConnection};

use super::{Store, StoreError, from_ms, ms, named, opt_ms};

crate::domain::named! {
    /// Where a notification stands.
    pub enum NotificationState {
        Pending = "pending",
        Delivered = "delivered",
        /// Failed for good, or for longer than `outbox.dead_after`: retried only by a person.
        Dead = "dead",
    }
}

/// What the notifications about a ticket say of it.
#[derive(Debug, Clone)]
pub struct Brief {
    pub id: i64,
    pub title: String,
    pub device: String,
    pub site: String,
    pub customer: String,
    pub tier: u8,
    /// The site's UTC offset, for times shown to people there.
    pub offset: chrono::FixedOffset,
}

/// One notification to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Unique: ticket, firing, channel and recipient.
    pub key: String,
    pub channel: String,
    /// A person's name, or `group:ROLE,…` for a robot's message.
    pub recipient: String,
    /// The person's address on the channel (an email, a phone); empty for a robot.
    pub address: String,
    /// Phones a robot's message @-mentions.
    pub mentions: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// A notification as kept.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Notification {
    pub id: i64,
    pub ticket_id: i64,
    /// The same on every attempt: receivers deduplicate on it.
    pub key: String,
    pub channel: String,
    /// A person, or `group:ROLE,…` for a robot's message.
    pub recipient: String,
    /// The person's address on the channel; empty for a robot.
    pub address: String,
    /// Phones a robot's message @-mentions.
    pub mentions: Vec<String>,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub state: NotificationState,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a person last sent it again after it died.
    pub retried_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, ticket_id, key, channel, recipient, address, mentions, subject, body, created_at, state, \
                       attempts, next_attempt_at, last_error, delivered_at, retried_at";

fn notification(r: &sqlx::sqlite::SqliteRow) -> Result<Notification, StoreError> {
    let mentions: String = r.try_get("mentions")?;
    Ok(Notification {
        id: r.try_get("id")?,
        ticket_id: r.try_get("ticket_id")?,
        key: r.try_get("key")?,
        channel: r.try_get("channel")?,
        recipient: r.try_get("recipient")?,
        address: r.try_get("address")?,
        mentions: mentions.split(',').filter(|m| !m.is_empty()).map(String::from).collect(),
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        state: named(r, "state", NotificationState::parse)?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: from_ms(r.try_get("next_attempt_at")?)?,
        last_error: r.try_get("last_error")?,
        delivered_at: opt_ms(r.try_get("delivered_at")?)?,
        retried_at: opt_ms(r.try_get("retried_at")?)?,
    })
}

/// Writes the notifications of a firing, in its transaction; a key made before makes nothing.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    ticket: i64,
    notices: &[Notice],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for n in notices {
        sqlx::query(
            "INSERT INTO notifications (ticket_id, key, channel, recipient, address, mentions, subject, body, created_at, \
             state, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9) ON CONFLICT (key) DO NOTHING",
        )
        .bind(ticket)
        .bind(&n.key)
        .bind(&n.channel)
        .bind(&n.recipient)
        .bind(&n.address)
        .bind(n.mentions.join(","))
        .bind(&n.subject)
        .bind(&n.body)
        .bind(ms(now))
        .bind(NotificationState::Pending.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Pending notifications due at `now`, oldest first.
    pub async fn due_notifications(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Notification>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notifications WHERE state = $1 AND next_attempt_at <= $2 ORDER BY next_attempt_at, id \
             LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(NotificationState::Pending.as_str())
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(notification).collect()
    }

    /// Records an attempt: delivered, due again at `retry_at`, or dead (neither).
    pub async fn notification_attempt(
        &self,
        id: i64,
        now: DateTime<Utc>,
        outcome: Result<(), (&str, Option<DateTime<Utc>>)>,
    ) -> Result<(), StoreError> {
        attempt(&self.pool, "notifications", id, now, outcome).await
    }

    /// Notifications, newest first: in a state, about tickets of some customers (`None`: all).
    pub async fn notifications(
        &self,
        state: Option<NotificationState>,
        customers: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let cols: Vec<String> = COLUMNS.split(", ").map(|c| format!("n.{c}")).collect();
        let mut sql = format!(
            "SELECT {} FROM notifications n JOIN tickets t ON t.id = n.ticket_id WHERE {}",
            cols.join(", "),
            if state.is_some() { "n.state = $2" } else { "$2 = $2" }
        );
        sql.push_str(&super::in_customers("t.customer", customers, 3));
        sql.push_str(" ORDER BY n.id DESC LIMIT $1");
        let state = state.map_or(NotificationState::Pending.as_str(), |s| s.as_str());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i64::from(limit)).bind(state);
        for c in customers.unwrap_or_default() {
            q = q.bind(c);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(notification).collect()
    }

    /// Makes a dead notification due again at once; false if it is not dead.
    pub async fn retry_notification(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE notifications SET state = 'pending', next_attempt_at = $2, retried_at = $2 WHERE id = $1 AND state = 'dead'",
        )
        .bind(id)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A notification's ticket's customer, for the scope check.
    pub async fn notification_customer(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT t.customer FROM notifications n JOIN tickets t ON t.id = n.ticket_id WHERE n.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// Records an attempt on a pending row of `table` (`notifications` or `report_mail`, which
/// share these columns): delivered, due again at `retry_at`, or dead (neither).
pub(super) async fn attempt(
    pool: &sqlx::SqlitePool,
    table: &'static str,
    id: i64,
    now: DateTime<Utc>,
    outcome: Result<(), (&str, Option<DateTime<Utc>>)>,
) -> Result<(), StoreError> {
    let set = match outcome {
        Ok(()) => "state = $2, attempts = attempts + 1, delivered_at = $3, last_error = NULL",
        Err((_, Some(_))) => "attempts = attempts + 1, next_attempt_at = $3, last_error = $2",
        Err((_, None)) => "state = $3, attempts = attempts + 1, last_error = $2",
    };
    let sql = format!("UPDATE {table} SET {set} WHERE id = $1 AND state = 'pending'");
    let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id);
    let q = match outcome {
        Ok(()) => q.bind(NotificationState::Delivered.as_str()).bind(ms(now)),
        Err((error, Some(at))) => q.bind(error.to_string()).bind(ms(at)),
        Err((error, None)) => q.bind(error.to_string()).bind(NotificationState::Dead.as_str()),
    };
    q.execute(pool).await?;
    Ok(())
}
