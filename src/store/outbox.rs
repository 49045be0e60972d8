//! The outbox's rows: claiming what is due, in order per ticket, and
//! recording each delivery's outcome; the map of remote ticket ids.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, from_ms, in_customers, ms, named};
use crate::domain::{HelpdeskAction, OutboxState, TicketId, VisitEvent};
use crate::tickets::Event;

/// What an outbox row is about: a ticket, or a work order (a planned visit).
/// Serialized as `"ticket_id": N` or `"work_order_id": N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub enum SubjectId {
    #[serde(rename = "ticket_id")]
    Ticket(TicketId),
    #[serde(rename = "work_order_id")]
    WorkOrder(i64),
}

/// What happened to an outbox row's subject: a line of a ticket's timeline, or a work
/// order's event. Serialized as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxEvent {
    Ticket(Event),
    Visit(VisitEvent),
}

impl OutboxEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxEvent::Ticket(e) => e.as_str(),
            OutboxEvent::Visit(e) => e.as_str(),
        }
    }

    /// The event named `s` of a subject like `subject`.
    fn parse(subject: SubjectId, s: &str) -> Option<OutboxEvent> {
        match subject {
            SubjectId::Ticket(_) => Event::parse(s).map(OutboxEvent::Ticket),
            SubjectId::WorkOrder(_) => VisitEvent::parse(s).map(OutboxEvent::Visit),
        }
    }
}

impl std::fmt::Display for OutboxEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OutboxEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// In the API: the name of a ticket's or a work order's event.
impl utoipa::PartialSchema for OutboxEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names = Event::ALL.iter().map(|e| e.as_str()).chain(VisitEvent::ALL.iter().map(|e| e.as_str()));
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(names))
            .into()
    }
}

impl utoipa::ToSchema for OutboxEvent {}

/// One event for the helpdesk.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OutboxRow {
    pub id: i64,
    #[serde(flatten)]
    pub subject: SubjectId,
    /// 1, 2, 3… per ticket or work order, in the order the changes happened.
    pub seq: i64,
    /// Stable across retries: receivers deduplicate on it.
    pub event_id: String,
    pub event: OutboxEvent,
    pub action: HelpdeskAction,
    pub note: String,
    pub customer: String,
    pub created_at: DateTime<Utc>,
    pub state: OutboxState,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Who made the change: `aftercare`, a person, or `helpdesk:NAME …` for a change a helpdesk sent.
    pub origin: String,
    /// An internal comment: for the service team alone (a helpdesk takes it as a private note).
    pub internal: bool,
}

/// The remote ticket an aftercare ticket maps to in one helpdesk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTicket {
    pub id: String,
    /// The remote status last seen by a poll or set by a delivery.
    pub status: Option<String>,
}

const COLUMNS: &str = "id, ticket_id, work_order_id, seq, event_id, event, action, note, customer, created_at, state, attempts, \
                       next_attempt_at, last_error, delivered_at, origin, internal";

fn row(r: &sqlx::sqlite::SqliteRow) -> Result<OutboxRow, StoreError> {
    let id: i64 = r.try_get("id")?;
    let subject = match (r.try_get::<Option<i64>, _>("ticket_id")?, r.try_get::<Option<i64>, _>("work_order_id")?) {
        (Some(t), None) => SubjectId::Ticket(TicketId(t)),
        (None, Some(w)) => SubjectId::WorkOrder(w),
        _ => {
            return Err(StoreError::Corrupt(format!("outbox row {id} is about neither one ticket nor one work order")));
        }
    };
    Ok(OutboxRow {
        id,
        subject,
        seq: r.try_get("seq")?,
        event_id: r.try_get("event_id")?,
        event: named(r, "event", |s| OutboxEvent::parse(subject, s))?,
        action: named(r, "action", HelpdeskAction::parse)?,
        note: r.try_get("note")?,
        customer: r.try_get("customer")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        state: named(r, "state", OutboxState::parse)?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: from_ms(r.try_get("next_attempt_at")?)?,
        last_error: r.try_get("last_error")?,
        delivered_at: r.try_get::<Option<i64>, _>("delivered_at")?.map(from_ms).transpose()?,
        origin: r.try_get("origin")?,
        internal: super::flag_of(r, "internal")?,
    })
}

impl Store {
    /// Due rows, at most one per ticket or work order (the earliest pending), oldest first.
    /// A later row of a ticket waits until the rows before it are delivered or dead.
    pub async fn due_outbox(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        self.due_outbox_where("1 = 1 AND $3 = $3", now, limit, "").await
    }

    /// The due rows of one helpdesk's customers, as [`Store::due_outbox`].
    pub async fn due_outbox_for(
        &self,
        helpdesk: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.due_outbox_where(
            "o.customer IN (SELECT customer FROM helpdesk_routes WHERE helpdesk = $3)",
            now,
            limit,
            helpdesk,
        )
        .await
    }

    async fn due_outbox_where(
        &self,
        filter: &str,
        now: DateTime<Utc>,
        limit: i64,
        helpdesk: &str,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // One NOT EXISTS per kind of subject, so that each uses its index.
        let pending = OutboxState::Pending;
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox o WHERE o.state = '{pending}' AND o.next_attempt_at <= $1 AND {filter} \
             AND (o.ticket_id IS NULL OR NOT EXISTS (SELECT 1 FROM outbox p WHERE p.ticket_id = o.ticket_id \
                 AND p.seq < o.seq AND p.state = '{pending}')) \
             AND (o.work_order_id IS NULL OR NOT EXISTS (SELECT 1 FROM outbox p WHERE p.work_order_id = o.work_order_id \
                 AND p.seq < o.seq AND p.state = '{pending}')) \
             ORDER BY o.id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ms(now))
            .bind(limit)
            .bind(helpdesk)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row).collect()
    }

    /// Where each customer's changes go, `(customer, helpdesk)`, as the config says at start.
    /// Pending rows of a customer that no longer has a helpdesk are skipped.
    pub async fn set_routes(&self, routes: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM helpdesk_routes").execute(&mut *tx).await?;
        for (customer, helpdesk) in routes {
            sqlx::query("INSERT INTO helpdesk_routes (customer, helpdesk) VALUES ($1, $2)")
                .bind(customer)
                .bind(helpdesk)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE outbox SET state = $1 WHERE state = $2 AND customer NOT IN (SELECT customer FROM helpdesk_routes)",
        )
        .bind(OutboxState::Skipped.as_str())
        .bind(OutboxState::Pending.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A helpdesk is back: its customers' pending rows are due now, not each after its own backoff.
    pub async fn outbox_wake(&self, helpdesk: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $2 WHERE state = $3 AND next_attempt_at > $2 \
             AND customer IN (SELECT customer FROM helpdesk_routes WHERE helpdesk = $1)",
        )
        .bind(helpdesk)
        .bind(ms(now))
        .bind(OutboxState::Pending.as_str())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    pub async fn outbox_delivered(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET state = $3, delivered_at = $2, attempts = attempts + 1 WHERE id = $1")
            .bind(id)
            .bind(ms(now))
            .bind(OutboxState::Delivered.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a failed attempt: retried at `next`, or dead when `next` is `None`.
    pub async fn outbox_failed(&self, id: i64, error: &str, next: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        let q = match next {
            Some(at) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(error)
            .bind(ms(at)),
            None => sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $2, state = $3 WHERE id = $1")
                .bind(id)
                .bind(error)
                .bind(OutboxState::Dead.as_str()),
        };
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Marks one row skipped (a change that came from the helpdesk it would go to).
    pub async fn outbox_skip(&self, id: i64) -> Result<(), StoreError> {
        let q = sqlx::query("UPDATE outbox SET state = $2 WHERE id = $1").bind(id).bind(OutboxState::Skipped.as_str());
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Rows in a state (pending, delivered, dead, skipped), newest first.
    /// Rows in `state`, newest first; only `customers`' rows when given (a user's scope).
    pub async fn outbox(
        &self,
        state: OutboxState,
        limit: i64,
        customers: Option<&[String]>,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE state = $1{} ORDER BY id DESC LIMIT $2",
            in_customers("customer", customers, 3)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(state.as_str()).bind(limit);
        for c in customers.unwrap_or_default() {
            q = q.bind(c);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(row).collect()
    }

    /// Puts a dead row back in the queue, due now; false if there is no dead row with that id
    /// (of `customers`, when given).
    pub async fn outbox_retry(
        &self,
        id: i64,
        now: DateTime<Utc>,
        customers: Option<&[String]>,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE outbox SET state = $3, next_attempt_at = $2, attempts = 0, created_at = $2 \
             WHERE id = $1 AND state = $4{}",
            in_customers("customer", customers, 5)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(ms(now))
            .bind(OutboxState::Pending.as_str())
            .bind(OutboxState::Dead.as_str());
        for c in customers.unwrap_or_default() {
            q = q.bind(c);
        }
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// The remote ticket a ticket or work order maps to in a helpdesk, with the remote status
    /// last seen or set.
    pub async fn remote(&self, subject: SubjectId, helpdesk: &str) -> Result<Option<RemoteTicket>, StoreError> {
        let (sql, id) = match subject {
            SubjectId::Ticket(t) => {
                ("SELECT remote_id, remote_status FROM remote_tickets WHERE ticket_id = $1 AND helpdesk = $2", t.0)
            }
            SubjectId::WorkOrder(w) => (
                "SELECT remote_id, remote_status FROM remote_work_orders WHERE work_order_id = $1 AND helpdesk = $2",
                w,
            ),
        };
        let r = sqlx::query(sql).bind(id).bind(helpdesk).fetch_optional(&self.pool).await?;
        r.map(|r| Ok(RemoteTicket { id: r.try_get("remote_id")?, status: r.try_get("remote_status")? })).transpose()
    }

    /// Records the remote ticket of a ticket or work order; a `None` status keeps the one recorded.
    pub async fn set_remote(
        &self,
        subject: SubjectId,
        helpdesk: &str,
        remote: &str,
        status: Option<&str>,
    ) -> Result<(), StoreError> {
        let (sql, id) = match subject {
            SubjectId::Ticket(t) => (
                "INSERT INTO remote_tickets (ticket_id, helpdesk, remote_id, remote_status) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (ticket_id, helpdesk) DO UPDATE SET remote_id = excluded.remote_id, \
                 remote_status = COALESCE(excluded.remote_status, remote_tickets.remote_status)",
                t.0,
            ),
            SubjectId::WorkOrder(w) => (
                "INSERT INTO remote_work_orders (work_order_id, helpdesk, remote_id, remote_status) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (work_order_id, helpdesk) DO UPDATE SET \
                 remote_id = excluded.remote_id, \
                 remote_status = COALESCE(excluded.remote_status, remote_work_orders.remote_status)",
                w,
            ),
        };
        sqlx::query(sql).bind(id).bind(helpdesk).bind(remote).bind(status).execute(&self.pool).await?;
        Ok(())
    }

    /// The ticket a remote ticket belongs to, with the remote status last seen or set.
    pub async fn ticket_of_remote(
        &self,
        helpdesk: &str,
        remote: &str,
    ) -> Result<Option<(TicketId, Option<String>)>, StoreError> {
        let r =
            sqlx::query("SELECT ticket_id, remote_status FROM remote_tickets WHERE helpdesk = $1 AND remote_id = $2")
                .bind(helpdesk)
                .bind(remote)
                .fetch_optional(&self.pool)
                .await?;
        r.map(|r| Ok((TicketId(r.try_get("ticket_id")?), r.try_get("remote_status")?))).transpose()
    }

    /// Where a helpdesk's last status poll stopped.
    pub async fn poll_cursor(&self, helpdesk: &str) -> Result<Option<String>, StoreError> {
        let r = sqlx::query("SELECT cursor FROM helpdesk_cursors WHERE helpdesk = $1")
            .bind(helpdesk)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map(|r| r.try_get("cursor")).transpose()?)
    }

    pub async fn set_poll_cursor(&self, helpdesk: &str, cursor: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO helpdesk_cursors (helpdesk, cursor) VALUES ($1, $2) \
             ON CONFLICT (helpdesk) DO UPDATE SET cursor = excluded.cursor",
        )
        .bind(helpdesk)
        .bind(cursor)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
