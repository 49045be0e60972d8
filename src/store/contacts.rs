//! The contact register in the embedded store: every call, letter or visit, and its answer.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, from_ms, ms, named, opt_ms};
use crate::tickets::intake::Channel;

/// A contact as registered.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Contact {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub channel: Channel,
    pub customer: Option<String>,
    pub name: String,
    pub address: String,
    pub phone: String,
    pub purchase_date: Option<NaiveDate>,
    pub problem: String,
    /// The user who registered it.
    pub taken_by: String,
    /// When it must be answered by (24 hours after it came).
    pub answer_by: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub answered_by: Option<String>,
    pub answer: Option<String>,
    /// The ticket it became, if it did.
    pub ticket_id: Option<i64>,
    /// When its answer clock ran out unanswered, if it did (answered late, or not yet).
    pub breached_at: Option<DateTime<Utc>>,
}

/// A contact to register.
#[derive(Debug, Clone)]
pub struct NewContact<'a> {
    pub at: DateTime<Utc>,
    pub channel: Channel,
    pub customer: Option<&'a str>,
    pub name: &'a str,
    pub address: &'a str,
    pub phone: &'a str,
    pub purchase_date: Option<NaiveDate>,
    pub problem: &'a str,
    pub taken_by: &'a str,
    pub answer_by: DateTime<Utc>,
    pub ticket_id: Option<i64>,
}

/// The register's filter.
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    /// Only those not answered yet (true), or only the answered ones (false).
    pub unanswered: Option<bool>,
    /// Only those whose clock ran out (answered late or not at all), as of `now`.
    pub breached: Option<bool>,
    pub customer: Option<String>,
    /// Only these customers' (a user's scope); `None`: all, those of no customer too.
    pub customers: Option<Vec<String>>,
    /// Only those that came at or after this, and before `to`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
}

fn contact(r: &sqlx::sqlite::SqliteRow, now: DateTime<Utc>) -> Result<Contact, StoreError> {
    let answer_by = from_ms(r.try_get("answer_by")?)?;
    let answered_at = opt_ms(r.try_get("answered_at")?)?;
    let late = match answered_at {
        Some(a) => a > answer_by,
        None => now > answer_by,
    };
    let purchase: Option<String> = r.try_get("purchase_date")?;
    Ok(Contact {
        id: r.try_get("id")?,
        at: from_ms(r.try_get("at")?)?,
        channel: named(r, "channel", Channel::parse)?,
        customer: r.try_get("customer")?,
        name: r.try_get("name")?,
        address: r.try_get("address")?,
        phone: r.try_get("phone")?,
        purchase_date: purchase.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
        problem: r.try_get("problem")?,
        taken_by: r.try_get("taken_by")?,
        answer_by,
        answered_at,
        answered_by: r.try_get("answered_by")?,
        answer: r.try_get("answer")?,
        ticket_id: r.try_get("ticket_id")?,
        breached_at: late.then_some(answer_by),
    })
}

impl Store {
    /// Registers a contact; returns its id.
    pub async fn add_contact(&self, c: &NewContact<'_>) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO contacts (at, channel, customer, name, address, phone, purchase_date, problem, taken_by, \
             answer_by, ticket_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(ms(c.at))
        .bind(c.channel.as_str())
        .bind(c.customer)
        .bind(c.name)
        .bind(c.address)
        .bind(c.phone)
        .bind(c.purchase_date.map(|d| d.to_string()))
        .bind(c.problem)
        .bind(c.taken_by)
        .bind(ms(c.answer_by))
        .bind(c.ticket_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// One contact, as of `now`.
    pub async fn contact(&self, id: i64, now: DateTime<Utc>) -> Result<Option<Contact>, StoreError> {
        let r = sqlx::query("SELECT * FROM contacts WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        r.map(|r| contact(&r, now)).transpose()
    }

    /// Answers a contact not answered yet, linking it to a ticket if given; false if there is
    /// no such contact or it was answered already.
    pub async fn answer_contact(
        &self,
        id: i64,
        by: &str,
        answer: &str,
        ticket: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE contacts SET answered_at = $2, answered_by = $3, answer = $4, ticket_id = COALESCE($5, ticket_id) \
             WHERE id = $1 AND answered_at IS NULL",
        )
        .bind(id)
        .bind(ms(now))
        .bind(by)
        .bind(answer)
        .bind(ticket)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The register, newest first (with `unanswered`, the nearest deadline first), as of `now`.
    pub async fn contacts(&self, f: &ContactFilter, now: DateTime<Utc>) -> Result<Vec<Contact>, StoreError> {
        let mut sql = String::from("SELECT * FROM contacts WHERE ($1 IS NULL OR customer = $1)");
        let mut args: Vec<String> = Vec::new();
        if let Some(cs) = &f.customers {
            let marks: Vec<String> = cs
                .iter()
                .map(|c| {
                    args.push(c.clone());
                    format!("${}", args.len() + 1)
                })
                .collect();
            sql.push_str(&if marks.is_empty() {
                " AND 1 = 0".to_string()
            } else {
                format!(" AND customer IN ({})", marks.join(", "))
            });
        }
        match f.unanswered {
            Some(true) => sql.push_str(" AND answered_at IS NULL"),
            Some(false) => sql.push_str(" AND answered_at IS NOT NULL"),
            None => {}
        }
        if let Some(from) = f.from {
            sql.push_str(&format!(" AND at >= {}", ms(from)));
        }
        if let Some(to) = f.to {
            sql.push_str(&format!(" AND at < {}", ms(to)));
        }
        let late = format!("(answered_at > answer_by OR (answered_at IS NULL AND answer_by < {}))", ms(now));
        match f.breached {
            Some(true) => sql.push_str(&format!(" AND {late}")),
            Some(false) => sql.push_str(&format!(" AND NOT {late}")),
            None => {}
        }
        let order = if f.unanswered == Some(true) { "answer_by, id" } else { "id DESC" };
        sql.push_str(&format!(" ORDER BY {order} LIMIT {}", f.limit.clamp(1, 10_000)));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&f.customer);
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(|r| contact(r, now)).collect()
    }
}
