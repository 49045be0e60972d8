//! Tickets people report, in the embedded store: a new ticket, or a line on the one already
//! open for the same device and fault (`tickets::intake` says how the two meet).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::tickets::{Entry, append, append_line};
use super::{Store, StoreError, TERMINAL, ms};
use crate::domain::{TicketId, VisitEvent, VisitKind};
use crate::tickets::intake::Intake;
use crate::tickets::model::BillingClass;
use crate::tickets::{Event, State};

/// A reporter's detail, or NULL when none was given.
fn given(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// The helpdesk ticket a report came from.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub helpdesk: &'a str,
    pub remote_id: &'a str,
    pub status: Option<&'a str>,
}

impl Store {
    /// Opens a ticket for a person's report entered by user `by`, or, when the report names a
    /// device's fault whose ticket is open, adds the report to that ticket. Returns the ticket
    /// and whether it is new.
    pub async fn take_report(&self, i: &Intake, by: &str, now: DateTime<Utc>) -> Result<(TicketId, bool), StoreError> {
        self.take_report_with(i, by, now, None).await
    }

    /// [`Store::take_report`], for a ticket people opened in a helpdesk: the new ticket is linked
    /// to it in the same transaction, so that it is never taken twice.
    pub async fn take_report_with(
        &self,
        i: &Intake,
        by: &str,
        now: DateTime<Utc>,
        link: Option<Link<'_>>,
    ) -> Result<(TicketId, bool), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let note = i.note();
        if !i.code.is_empty() {
            let sql = format!("SELECT id FROM tickets WHERE device = $1 AND code = $2 AND state NOT IN {}", *TERMINAL);
            let open: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(&i.device)
                .bind(&i.code)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(id) = open {
                // The first person to report a sensor's fault is its reporter.
                sqlx::query(
                    "UPDATE tickets SET updated_at = $2, reporter_name = COALESCE(reporter_name, $3), \
                     reporter_phone = COALESCE(reporter_phone, $4), problem = COALESCE(problem, $5), \
                     reported_by = COALESCE(reported_by, $6) WHERE id = $1",
                )
                .bind(id)
                .bind(ms(now))
                .bind(given(&i.reporter_name))
                .bind(given(&i.reporter_phone))
                .bind(&i.problem)
                .bind(by)
                .execute(&mut *tx)
                .await?;
                append(&mut tx, id, now, Entry::note(Event::Reported, by, &note)).await?;
                tx.commit().await?;
                return Ok((TicketId(id), false));
            }
        }
        let d = &i.deadlines;
        let row = sqlx::query(
            "INSERT INTO tickets (device, site, customer, kind, code, title, tier, state, fault_at, opened_at, updated_at, \
             last_raised_at, detail, contract, no_clock, acknowledge_by, on_site_by, resolve_by, warranty, billing, \
             calendar_gap, category, channel, reporter_name, reporter_phone, problem, reported_by, sensed, complaint_grade) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21, $22, $23, $24, 0, $25) RETURNING id",
        )
        .bind(&i.device)
        .bind(&i.site)
        .bind(&i.customer)
        .bind(&i.kind)
        .bind(&i.code)
        .bind(&i.title)
        .bind(i64::from(i.tier.number()))
        .bind(State::Open.as_str())
        .bind(ms(now))
        .bind(&i.problem)
        .bind(&d.contract)
        .bind(&d.no_clock)
        .bind(d.acknowledge_by.map(ms))
        .bind(d.on_site_by.map(ms))
        .bind(d.resolve_by.map(ms))
        .bind(i.warranty.as_ref().and_then(|w| serde_json::to_string(w).ok()))
        .bind(i.warranty.as_ref().map(|w| BillingClass::of_warranty(w.in_warranty).as_str()))
        .bind(&d.calendar_gap)
        .bind(i.category.as_str())
        .bind(i.channel.as_str())
        .bind(given(&i.reporter_name))
        .bind(given(&i.reporter_phone))
        .bind(&i.problem)
        .bind(by)
        .bind(i.grade.map(|g| g.as_str()))
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        let note = match &d.no_clock {
            Some(why) => format!("{note}\n{why}"),
            None => note,
        };
        let e = Entry {
            event: Event::Opened,
            actor: by,
            from: None,
            to: Some(State::Open),
            tier: Some(i.tier),
            note: &note,
        };
        append(&mut tx, id, now, e).await?;
        // Every complaint is followed by somebody going in person: a visit of its own.
        if let Some(due) = i.visit_on {
            let wo: i64 = sqlx::query_scalar(
                "INSERT INTO work_orders (contract, plan, kind, device, site, customer, due_on, created_at, checklist, \
                 ticket_id, helpdesk) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1) RETURNING id",
            )
            .bind(i.deadlines.contract.as_deref().unwrap_or_default())
            .bind(format!("complaint {id} follow-up"))
            .bind(VisitKind::FollowUp.as_str())
            .bind(&i.device)
            .bind(&i.site)
            .bind(&i.customer)
            .bind(due.to_string())
            .bind(ms(now))
            .bind(r#"["met the complainant", "outcome"]"#)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let note = format!("in person about complaint {id}, by {due}");
            super::work_orders::event(&mut tx, wo, VisitEvent::Scheduled, &note, by, now).await?;
        }
        if let Some(l) = link {
            sqlx::query(
                "INSERT INTO remote_tickets (ticket_id, helpdesk, remote_id, remote_status) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(l.helpdesk)
            .bind(l.remote_id)
            .bind(l.status)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO helpdesk_intake (helpdesk, remote_id, ticket_id, seen_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(l.helpdesk)
            .bind(l.remote_id)
            .bind(id)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((TicketId(id), true))
    }

    /// Whether a remote ticket is known already: taken in, refused, or one aftercare made.
    pub async fn intake_seen(&self, helpdesk: &str, remote_id: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM helpdesk_intake WHERE helpdesk = $1 AND remote_id = $2) + \
             (SELECT COUNT(*) FROM remote_tickets WHERE helpdesk = $1 AND remote_id = $2)",
        )
        .bind(helpdesk)
        .bind(remote_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Records a remote ticket that could not be placed, and why, so that it is not tried again.
    pub async fn intake_refused(
        &self,
        helpdesk: &str,
        remote_id: &str,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO helpdesk_intake (helpdesk, remote_id, reason, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (helpdesk, remote_id) DO NOTHING",
        )
        .bind(helpdesk)
        .bind(remote_id)
        .bind(why)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Remote tickets taken in that do not carry aftercare's reference yet: (remote id, ticket).
    pub async fn unadopted(&self, helpdesk: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT remote_id, ticket_id FROM helpdesk_intake WHERE helpdesk = $1 AND ticket_id IS NOT NULL \
             AND adopted = 0 ORDER BY seen_at LIMIT 100",
        )
        .bind(helpdesk)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("remote_id")?, r.try_get("ticket_id")?))).collect()
    }

    pub async fn set_adopted(&self, helpdesk: &str, remote_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE helpdesk_intake SET adopted = 1 WHERE helpdesk = $1 AND remote_id = $2")
            .bind(helpdesk)
            .bind(remote_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Gives ticket `id` to `assignee` (`None`: to nobody), with a timeline line by `by`.
    /// `Ok(false)` when the ticket is closed or cancelled; `NotFound` when there is none.
    pub async fn assign(
        &self,
        id: TicketId,
        assignee: Option<&str>,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let sql =
            format!("UPDATE tickets SET assignee = $2, updated_at = $3 WHERE id = $1 AND state NOT IN {}", *TERMINAL);
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).bind(assignee).bind(ms(now)).execute(&mut *tx).await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        let line = match (assignee, note.trim()) {
            (Some(a), "") => format!("assigned to {a}"),
            (Some(a), n) => format!("assigned to {a}: {n}"),
            (None, "") => "unassigned".to_string(),
            (None, n) => format!("unassigned: {n}"),
        };
        append(&mut tx, id.0, now, Entry::note(Event::Assigned, by, &line)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The note of each ticket's last move to resolved (a complaint's outcome), by ticket, in one
    /// query for all of `ids`.
    pub async fn resolution_notes(
        &self,
        ids: &[TicketId],
    ) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT ticket_id, note FROM timeline WHERE to_state = $1 AND ticket_id IN ({}) ORDER BY id",
                marks.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(State::Resolved.as_str());
            for id in chunk {
                q = q.bind(id.0);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.try_get("ticket_id")?, r.try_get("note")?);
            }
        }
        Ok(out)
    }

    /// Adds a comment to ticket `id`, for the service team alone when `internal`; it goes to
    /// the helpdesk like every line. False if there is no such ticket.
    pub async fn comment(
        &self,
        id: TicketId,
        by: &str,
        text: &str,
        internal: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let r = sqlx::query("UPDATE tickets SET updated_at = $2 WHERE id = $1")
            .bind(id.0)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        append_line(&mut tx, id.0, now, Entry::note(Event::Comment, by, text), internal).await?;
        tx.commit().await?;
        Ok(true)
    }
}
