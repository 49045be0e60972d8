//! Work orders: the visits the scheduler makes from the contracts' plans.
//! Each change a helpdesk must see (scheduled, missed, started, completed,
//! report kept) writes an outbox row in the change's transaction, as ticket
//! changes do.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{Row, SqliteConnection};

use super::{SYSTEM, Store, StoreError, from_ms, ms, named, sql_list};
use crate::domain::{OutboxState, VisitEvent, VisitKind, VisitState};
use crate::tickets::State;

/// A visit to make, from a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorkOrder {
    pub contract: String,
    pub plan: String,
    pub kind: VisitKind,
    pub device: String,
    pub site: String,
    pub customer: String,
    pub due_on: NaiveDate,
    pub checklist: Vec<String>,
    /// Whether the visit goes to the customer's helpdesk (a plan can keep its visits out).
    pub to_helpdesk: bool,
    /// The ticket whose service called for the visit, for plans made after a service.
    pub ticket_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WorkOrder {
    pub id: i64,
    pub contract: String,
    pub plan: String,
    pub kind: VisitKind,
    pub device: String,
    pub site: String,
    pub customer: String,
    pub due_on: NaiveDate,
    pub created_at: DateTime<Utc>,
    pub state: VisitState,
    pub checklist: Vec<String>,
    pub answers: Option<serde_json::Value>,
    pub completed_at: Option<DateTime<Utc>>,
    pub completed_by: Option<String>,
    /// The ticket whose service called for the visit (a fault analysis, a satisfaction call).
    pub ticket_id: Option<i64>,
    /// The user who is to make the visit.
    pub assignee: Option<String>,
    /// Who signed for the visit done, on the customer's side.
    pub signed_by: Option<String>,
    /// The signature image (an attachment of the visit).
    pub signature: Option<i64>,
    /// The defects the visit found, each a repair task (a ticket).
    pub defects: Vec<Defect>,
}

/// A defect a visit found, and the ticket that repairs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Defect {
    pub text: String,
    pub ticket: Option<i64>,
}

/// What completing a visit came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Done,
    AlreadyDone,
    /// The signature named is not a signature image of the visit.
    NoSuchSignature,
}

/// The customer's signature for a visit: who signed, and the image (an attachment of the visit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub name: String,
    pub signature: i64,
}

/// A ticket that was served: resolved by people, perhaps on site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub ticket: i64,
    pub device: String,
    pub resolved_at: DateTime<Utc>,
    /// Whether somebody was on site for it.
    pub on_site: bool,
}

fn row(r: &sqlx::sqlite::SqliteRow) -> Result<WorkOrder, StoreError> {
    let due: String = r.try_get("due_on")?;
    let checklist: String = r.try_get("checklist")?;
    let answers: Option<String> = r.try_get("answers")?;
    Ok(WorkOrder {
        id: r.try_get("id")?,
        contract: r.try_get("contract")?,
        plan: r.try_get("plan")?,
        kind: named(r, "kind", VisitKind::parse)?,
        device: r.try_get("device")?,
        site: r.try_get("site")?,
        customer: r.try_get("customer")?,
        due_on: NaiveDate::parse_from_str(&due, "%Y-%m-%d")
            .map_err(|e| StoreError::Corrupt(format!("due_on {due}: {e}")))?,
        created_at: from_ms(r.try_get("created_at")?)?,
        state: named(r, "state", VisitState::parse)?,
        checklist: serde_json::from_str(&checklist).unwrap_or_default(),
        answers: answers.and_then(|a| serde_json::from_str(&a).ok()),
        completed_at: r.try_get::<Option<i64>, _>("completed_at")?.map(from_ms).transpose()?,
        completed_by: r.try_get("completed_by")?,
        ticket_id: r.try_get("ticket_id")?,
        assignee: r.try_get("assignee")?,
        signed_by: r.try_get("signed_by")?,
        signature: r.try_get("signature_id")?,
        defects: r
            .try_get::<Option<String>, _>("defects")?
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or_default(),
    })
}

/// Filters for listing work orders.
#[derive(Debug, Clone, Default)]
pub struct WorkOrderFilter {
    pub state: Option<VisitState>,
    pub kind: Option<VisitKind>,
    pub device: Option<String>,
    pub customer: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub assignee: Option<String>,
}

/// Writes the outbox row of a change to work order `id`: the next in its sequence, `skipped`
/// for a work order whose plan keeps its visits out of the helpdesk.
pub(super) async fn event(
    conn: &mut SqliteConnection,
    id: i64,
    event: VisitEvent,
    note: &str,
    origin: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (work_order_id, seq, event_id, event, action, note, customer, created_at, next_attempt_at, \
         origin, state) \
         SELECT $1, n.seq, 'aftercare-wo-' || $1 || '-' || n.seq, $2, $3, $4, w.customer, $5, $5, $6, \
         CASE WHEN w.helpdesk = 1 THEN $7 ELSE $8 END \
         FROM work_orders w, (SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM outbox WHERE work_order_id = $1) n \
         WHERE w.id = $1 AND EXISTS (SELECT 1 FROM helpdesk_routes r WHERE r.customer = w.customer)",
    )
    .bind(id)
    .bind(event.as_str())
    .bind(event.helpdesk_action().as_str())
    .bind(note)
    .bind(ms(at))
    .bind(origin)
    .bind(OutboxState::Pending.as_str())
    .bind(OutboxState::Skipped.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Makes the work orders not made yet, each with its `scheduled` event; returns how many were new.
    pub async fn add_work_orders(&self, orders: &[NewWorkOrder], now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut added = 0;
        for o in orders {
            let id: Option<i64> = sqlx::query_scalar(
                // The NOT EXISTS spares an id: a conflicting insert would use one up, and work
                // order numbers are what people quote.
                "INSERT INTO work_orders (contract, plan, kind, device, site, customer, due_on, created_at, checklist, \
                 ticket_id, helpdesk) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 WHERE NOT EXISTS (SELECT 1 FROM work_orders \
                 WHERE contract = $1 AND plan = $2 AND (device = $4 AND due_on = $7 OR ticket_id = $10)) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(&o.contract)
            .bind(&o.plan)
            .bind(o.kind.as_str())
            .bind(&o.device)
            .bind(&o.site)
            .bind(&o.customer)
            .bind(o.due_on.to_string())
            .bind(ms(now))
            .bind(serde_json::to_string(&o.checklist).unwrap_or_else(|_| "[]".into()))
            .bind(o.ticket_id)
            .bind(o.to_helpdesk)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = id {
                let after = o.ticket_id.map(|t| format!(" after the service of ticket {t}")).unwrap_or_default();
                let note = format!("due on {}{after}", o.due_on);
                event(&mut tx, id, VisitEvent::Scheduled, &note, SYSTEM, now).await?;
                added += 1;
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Open work orders due before `today` are missed; returns how many.
    pub async fn mark_missed(&self, today: NaiveDate, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let missed: Vec<(i64, String)> =
            sqlx::query_as("UPDATE work_orders SET state = $2 WHERE state = $3 AND due_on < $1 RETURNING id, due_on")
                .bind(today.to_string())
                .bind(VisitState::Missed.as_str())
                .bind(VisitState::Open.as_str())
                .fetch_all(&mut *tx)
                .await?;
        for (id, due) in &missed {
            let note = format!("not done by its due date, {due}");
            event(&mut tx, *id, VisitEvent::Missed, &note, SYSTEM, now).await?;
        }
        tx.commit().await?;
        Ok(missed.len() as u64)
    }

    /// Tickets resolved by people at or after `since` (not cancelled), oldest first. (The `+`
    /// keeps SQLite on the resolution-time index rather than the state one, which holds every
    /// closed ticket ever.)
    pub async fn served_since(&self, since: DateTime<Utc>) -> Result<Vec<Served>, StoreError> {
        let sql = format!(
            "SELECT id, device, resolved_at, on_site_at IS NOT NULL FROM tickets \
             WHERE resolved_at >= $1 AND +state IN {} ORDER BY resolved_at",
            sql_list([State::Resolved, State::Closed].map(State::as_str))
        );
        let rows: Vec<(i64, String, i64, bool)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(ms(since)).fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(ticket, device, at, on_site)| Ok(Served { ticket, device, resolved_at: from_ms(at)?, on_site }))
            .collect()
    }

    pub async fn work_orders(&self, f: &WorkOrderFilter, limit: i64) -> Result<Vec<WorkOrder>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM work_orders WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR kind = $2) \
             AND ($3 IS NULL OR device = $3) AND ($4 IS NULL OR customer = $4) \
             AND ($5 IS NULL OR due_on >= $5) AND ($6 IS NULL OR due_on < $6) AND ($8 IS NULL OR assignee = $8) \
             ORDER BY due_on, id LIMIT $7",
        )
        .bind(f.state.map(VisitState::as_str))
        .bind(f.kind.map(VisitKind::as_str))
        .bind(&f.device)
        .bind(&f.customer)
        .bind(f.from.map(|d| d.to_string()))
        .bind(f.to.map(|d| d.to_string()))
        .bind(limit)
        .bind(&f.assignee)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }

    pub async fn work_order(&self, id: i64) -> Result<Option<WorkOrder>, StoreError> {
        let r = sqlx::query("SELECT * FROM work_orders WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        r.as_ref().map(row).transpose()
    }

    /// Gives a visit not yet done to `assignee`; false if it is done or does not exist.
    pub async fn assign_work_order(
        &self,
        id: i64,
        assignee: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("UPDATE work_orders SET assignee = $2 WHERE id = $1 AND state <> $3")
            .bind(id)
            .bind(assignee)
            .bind(VisitState::Done.as_str())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        event(&mut tx, id, VisitEvent::Assigned, &format!("assigned to {assignee}"), by, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Starts a visit (open or missed → in progress); false if it cannot be started.
    pub async fn start_work_order(&self, id: i64, by: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("UPDATE work_orders SET state = $2 WHERE id = $1 AND state IN ($3, $4)")
            .bind(id)
            .bind(VisitState::InProgress.as_str())
            .bind(VisitState::Open.as_str())
            .bind(VisitState::Missed.as_str())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        event(&mut tx, id, VisitEvent::Started, &format!("visit started by {by}"), by, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Completes a visit with its checklist answers and, when the customer signed, who signed
    /// and the signature.
    pub async fn complete_work_order(
        &self,
        id: i64,
        by: &str,
        answers: &serde_json::Value,
        signed: Option<&Signed>,
        now: DateTime<Utc>,
    ) -> Result<Completion, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(s) = signed {
            let kind: Option<String> =
                sqlx::query_scalar("SELECT kind FROM visit_attachments WHERE work_order_id = $1 AND id = $2")
                    .bind(id)
                    .bind(s.signature)
                    .fetch_optional(&mut *tx)
                    .await?;
            if kind.as_deref() != Some("signature") {
                return Ok(Completion::NoSuchSignature);
            }
        }
        let r = sqlx::query(
            "UPDATE work_orders SET state = $5, answers = $2, completed_by = $3, completed_at = $4, signed_by = $6, \
             signature_id = $7 WHERE id = $1 AND state != $5",
        )
        .bind(id)
        .bind(answers.to_string())
        .bind(by)
        .bind(ms(now))
        .bind(VisitState::Done.as_str())
        .bind(signed.map(|s| s.name.as_str()))
        .bind(signed.map(|s| s.signature))
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(Completion::AlreadyDone);
        }
        let note = match signed {
            Some(s) => format!("visit done by {by}, signed by {}", s.name),
            None => format!("visit done by {by}"),
        };
        event(&mut tx, id, VisitEvent::Completed, &note, by, now).await?;
        tx.commit().await?;
        Ok(Completion::Done)
    }
}

/// A report kept in the store.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredReport {
    pub id: i64,
    pub work_order_id: Option<i64>,
    pub customer: String,
    pub site: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub made_at: DateTime<Utc>,
    /// When the contract wants it by (3 working days after the inspection).
    pub due_by: Option<DateTime<Utc>>,
    pub lang: String,
    /// weekly, monthly, quarterly or yearly for a report made on a cadence; `None` for an
    /// inspection's.
    pub cadence: Option<String>,
    #[serde(skip)]
    pub json: String,
    #[serde(skip)]
    pub html: String,
    /// The Typst markup its PDF is set from (empty for a report kept before PDFs were).
    #[serde(skip)]
    pub typst: String,
}

/// A kept report to mail to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReportMail {
    pub channel: String,
    pub address: String,
}

/// A report's mail that is due, with what it sends.
#[derive(Debug, Clone)]
pub struct ReportMailDue {
    pub id: i64,
    pub report: StoredReport,
    pub channel: String,
    pub address: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
}

fn report_row(r: &sqlx::sqlite::SqliteRow) -> Result<StoredReport, StoreError> {
    Ok(StoredReport {
        id: r.try_get("id")?,
        work_order_id: r.try_get("work_order_id")?,
        customer: r.try_get("customer")?,
        site: r.try_get("site")?,
        from: from_ms(r.try_get("period_from")?)?,
        to: from_ms(r.try_get("period_to")?)?,
        made_at: from_ms(r.try_get("made_at")?)?,
        due_by: r.try_get::<Option<i64>, _>("due_by")?.map(from_ms).transpose()?,
        lang: r.try_get("lang")?,
        cadence: r.try_get("cadence")?,
        json: r.try_get("json")?,
        html: r.try_get("html")?,
        typst: r.try_get::<Option<String>, _>("typst")?.unwrap_or_default(),
    })
}

impl Store {
    /// Keeps a report; one per work order and language (a second is ignored). Returns its id.
    /// The work order's helpdesk ticket hears of it, and each of `mail` is owed the report, in
    /// the same transaction.
    pub async fn add_report(&self, r: &StoredReport, mail: &[NewReportMail]) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO reports (work_order_id, customer, site, period_from, period_to, made_at, due_by, lang, json, html, \
             cadence, typst) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(r.work_order_id)
        .bind(&r.customer)
        .bind(&r.site)
        .bind(ms(r.from))
        .bind(ms(r.to))
        .bind(ms(r.made_at))
        .bind(r.due_by.map(ms))
        .bind(&r.lang)
        .bind(&r.json)
        .bind(&r.html)
        .bind(&r.cadence)
        .bind(&r.typst)
        .fetch_optional(&mut *tx)
        .await?;
        let id: Option<i64> = row.map(|r| r.try_get("id")).transpose()?;
        if let Some(id) = id {
            for m in mail {
                sqlx::query(
                    "INSERT INTO report_mail (report_id, channel, address, created_at, state, next_attempt_at) \
                     VALUES ($1, $2, $3, $4, 'pending', $4) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(&m.channel)
                .bind(&m.address)
                .bind(ms(r.made_at))
                .execute(&mut *tx)
                .await?;
            }
        }
        if let (Some(id), Some(wo)) = (id, r.work_order_id) {
            let due = r.due_by.map(|d| format!(", due to the customer by {d}")).unwrap_or_default();
            let note = format!("report {id} ({}) kept{due}", r.lang);
            event(&mut tx, wo, VisitEvent::ReportKept, &note, SYSTEM, r.made_at).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Keeps the defects a visit found, with their tickets.
    pub async fn set_defects(&self, id: i64, defects: &[Defect]) -> Result<(), StoreError> {
        let json = serde_json::to_string(defects).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query("UPDATE work_orders SET defects = $2 WHERE id = $1")
            .bind(id)
            .bind(json)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Report mails due by `now`, oldest first, with their reports.
    pub async fn due_report_mail(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<ReportMailDue>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, report_id, channel, address, attempts, created_at FROM report_mail \
             WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let report_id: i64 = row.try_get("report_id")?;
            let Some(report) = self.report(report_id).await? else { continue };
            out.push(ReportMailDue {
                id: row.try_get("id")?,
                report,
                channel: row.try_get("channel")?,
                address: row.try_get("address")?,
                attempts: row.try_get("attempts")?,
                created_at: from_ms(row.try_get("created_at")?)?,
            });
        }
        Ok(out)
    }

    /// Records a report mail's attempt: sent, or failed with its error and when to try again
    /// (`None`: dead), as a notification's is.
    pub async fn report_mail_attempt(
        &self,
        id: i64,
        now: DateTime<Utc>,
        outcome: Result<(), (&str, Option<DateTime<Utc>>)>,
    ) -> Result<(), StoreError> {
        super::notifications::attempt(&self.pool, "report_mail", id, now, outcome).await
    }

    /// Kept reports, newest first (without their bodies' use in listings).
    pub async fn reports(&self, customer: Option<&str>, limit: i64) -> Result<Vec<StoredReport>, StoreError> {
        let rows = sqlx::query("SELECT * FROM reports WHERE ($1 IS NULL OR customer = $1) ORDER BY id DESC LIMIT $2")
            .bind(customer)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(report_row).collect()
    }

    /// Whether the report of a cadence for a customer's period starting at `from` was made in `lang`.
    pub async fn has_cadence_report(
        &self,
        customer: &str,
        cadence: &str,
        from: DateTime<Utc>,
        lang: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "SELECT 1 FROM reports WHERE customer = $1 AND cadence = $2 AND period_from = $3 AND lang = $4 LIMIT 1",
        )
        .bind(customer)
        .bind(cadence)
        .bind(ms(from))
        .bind(lang)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.is_some())
    }

    pub async fn report(&self, id: i64) -> Result<Option<StoredReport>, StoreError> {
        let r = sqlx::query("SELECT * FROM reports WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        r.as_ref().map(report_row).transpose()
    }

    /// The last inspection of a device done before `before`, if any: when the next report's period starts.
    pub async fn last_inspection(&self, device: &str, before: i64) -> Result<Option<DateTime<Utc>>, StoreError> {
        let r: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT MAX(completed_at) FROM work_orders WHERE device = $1 AND kind = $3 AND state = $4 \
             AND completed_at < $2",
        )
        .bind(device)
        .bind(before)
        .bind(VisitKind::Inspection.as_str())
        .bind(VisitState::Done.as_str())
        .fetch_optional(&self.pool)
        .await?;
        r.flatten().map(from_ms).transpose()
    }
}

impl Store {
    /// When the previous visit of a plan to a device was done, before `before` (ms).
    pub async fn last_visit(
        &self,
        contract: &str,
        plan: &str,
        device: &str,
        before: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let r: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT MAX(completed_at) FROM work_orders WHERE contract = $1 AND plan = $2 AND device = $3 \
             AND state = $5 AND completed_at < $4",
        )
        .bind(contract)
        .bind(plan)
        .bind(device)
        .bind(before)
        .bind(VisitState::Done.as_str())
        .fetch_optional(&self.pool)
        .await?;
        r.flatten().map(from_ms).transpose()
    }
}
