//! Satisfaction surveys in the embedded store: one per ticket, answered once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, from_ms, ms, opt_ms};

/// A ticket's survey.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Survey {
    pub ticket_id: i64,
    pub customer: String,
    /// Who was assigned the ticket when the survey was made.
    pub engineer: Option<String>,
    pub created_at: DateTime<Utc>,
    /// A link's last moment.
    pub expires_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    /// `link` (the customer answered) or `phone` (the desk recorded the answer).
    pub channel: Option<String>,
    pub recorded_by: Option<String>,
    /// 1 (very unhappy) to 5 (very happy).
    pub score: Option<i64>,
    pub comment: Option<String>,
}

fn survey(r: &sqlx::sqlite::SqliteRow) -> Result<Survey, StoreError> {
    Ok(Survey {
        ticket_id: r.try_get("ticket_id")?,
        customer: r.try_get("customer")?,
        engineer: r.try_get("engineer")?,
        created_at: from_ms(r.try_get("created_at")?)?,
        expires_at: opt_ms(r.try_get("expires_at")?)?,
        answered_at: opt_ms(r.try_get("answered_at")?)?,
        channel: r.try_get("channel")?,
        recorded_by: r.try_get("recorded_by")?,
        score: r.try_get("score")?,
        comment: r.try_get("comment")?,
    })
}

impl Store {
    /// Makes (or renews, while unanswered) ticket `ticket`'s survey link, kept as the hash of
    /// its secret; false when the ticket's survey is answered already.
    pub async fn survey_link(
        &self,
        ticket: i64,
        customer: &str,
        engineer: Option<&str>,
        token_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO surveys (ticket_id, customer, engineer, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ticket_id) DO UPDATE SET token_hash = excluded.token_hash, \
             expires_at = excluded.expires_at, engineer = excluded.engineer WHERE surveys.answered_at IS NULL",
        )
        .bind(ticket)
        .bind(customer)
        .bind(engineer)
        .bind(token_hash)
        .bind(ms(now))
        .bind(ms(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Ticket `ticket`'s survey, if it has one.
    pub async fn survey_of(&self, ticket: i64) -> Result<Option<Survey>, StoreError> {
        let r =
            sqlx::query("SELECT * FROM surveys WHERE ticket_id = $1").bind(ticket).fetch_optional(&self.pool).await?;
        r.as_ref().map(survey).transpose()
    }

    /// The unanswered, unexpired survey a link's secret opens, if any.
    pub async fn survey_by_link(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<Survey>, StoreError> {
        let r = sqlx::query("SELECT * FROM surveys WHERE token_hash = $1 AND answered_at IS NULL AND expires_at > $2")
            .bind(token_hash)
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(survey).transpose()
    }

    /// Answers through a link, once: the link is spent. False if it opens no survey.
    pub async fn answer_survey_link(
        &self,
        token_hash: &str,
        score: i64,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE surveys SET answered_at = $2, channel = 'link', score = $3, comment = $4, token_hash = NULL \
             WHERE token_hash = $1 AND answered_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(ms(now))
        .bind(score)
        .bind(comment)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records an answer the desk took on the phone (a link made before is spent); false if
    /// the survey is answered already.
    #[allow(clippy::too_many_arguments)]
    pub async fn answer_survey_by_phone(
        &self,
        ticket: i64,
        customer: &str,
        engineer: Option<&str>,
        by: &str,
        score: i64,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO surveys (ticket_id, customer, engineer, created_at, answered_at, channel, recorded_by, score, comment) \
             VALUES ($1, $2, $3, $4, $4, 'phone', $5, $6, $7) ON CONFLICT (ticket_id) DO UPDATE SET \
             answered_at = excluded.answered_at, channel = 'phone', recorded_by = excluded.recorded_by, \
             score = excluded.score, comment = excluded.comment, token_hash = NULL WHERE surveys.answered_at IS NULL",
        )
        .bind(ticket)
        .bind(customer)
        .bind(engineer)
        .bind(ms(now))
        .bind(by)
        .bind(score)
        .bind(comment)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The answered surveys of a period (by when they were answered), oldest first.
    pub async fn surveys(
        &self,
        customers: Option<&[String]>,
        customer: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Survey>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM surveys WHERE answered_at >= $1 AND answered_at < $2 AND ($3 IS NULL OR customer = $3) \
             ORDER BY answered_at, id",
        )
        .bind(ms(from))
        .bind(ms(to))
        .bind(customer)
        .fetch_all(&self.pool)
        .await?;
        let all: Vec<Survey> = rows.iter().map(survey).collect::<Result<_, _>>()?;
        Ok(all.into_iter().filter(|s| customers.is_none_or(|c| c.contains(&s.customer))).collect())
    }
}
