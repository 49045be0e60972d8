//! Users, their tokens and sessions, the audit log, and the helpdesk events already seen.
//! Secrets are never stored: a password as its argon2id hash, a token as its SHA-256.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, from_ms, ms, named, opt_ms};
use crate::access::{Principal, Role, Scope};

/// A user as listed (no secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The customers it sees; empty: all.
    pub customers: Vec<String>,
    pub disabled: bool,
    /// Whether it can log in with a password (else tokens only).
    pub password: bool,
    pub created_at: DateTime<Utc>,
}

/// An API token or a login session, as listed (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Token {
    pub id: i64,
    pub user: String,
    pub kind: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What kind of secret a token row holds.
pub const API_TOKEN: &str = "api";
pub const SESSION: &str = "session";

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The user's name, `helpdesk:NAME`, or `-` when nobody signed in.
    pub actor: String,
    pub token_id: Option<i64>,
    pub address: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub detail: String,
}

/// What a new audit line says; the store adds its id.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub token_id: Option<i64>,
    pub address: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub detail: &'a str,
}

/// The audit log's filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

impl Store {
    /// Adds a user; `None` if the name is taken.
    pub async fn add_user(
        &self,
        name: &str,
        role: Role,
        customers: &[String],
        password_hash: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(ms(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else { return Ok(None) };
        for c in customers {
            sqlx::query("INSERT INTO user_customers (user_id, customer) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(c)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(id))
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.users_named(None).await
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self.users_named(Some(name)).await?.pop())
    }

    /// Every user, or the one named, with its customers.
    async fn users_named(&self, name: Option<&str>) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.id, u.name, u.role, u.disabled, u.password_hash IS NOT NULL AS password, u.created_at, \
             c.customer FROM users u LEFT JOIN user_customers c ON c.user_id = u.id \
             WHERE ($1 IS NULL OR u.name = $1) ORDER BY u.name, c.customer",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<User> = Vec::new();
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let customer: Option<String> = r.try_get("customer")?;
            if out.last().is_none_or(|u| u.id != id) {
                out.push(User {
                    id,
                    name: r.try_get("name")?,
                    role: named(r, "role", Role::parse)?,
                    customers: Vec::new(),
                    disabled: r.try_get::<i64, _>("disabled")? != 0,
                    password: r.try_get::<i64, _>("password")? != 0,
                    created_at: from_ms(r.try_get("created_at")?)?,
                });
            }
            if let (Some(c), Some(u)) = (customer, out.last_mut()) {
                u.customers.push(c);
            }
        }
        Ok(out)
    }

    /// The user's id and password hash, for a login; `None` if unknown, disabled or without one.
    pub async fn password_of(&self, name: &str) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, password_hash FROM users WHERE name = $1 AND disabled = 0 AND password_hash IS NOT NULL",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("password_hash")?))).transpose()
    }

    /// Disables (or enables) a user. Disabling revokes its tokens and sessions for good, so
    /// that enabling it again brings none of them back.
    pub async fn set_disabled(&self, name: &str, disabled: bool, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: Option<i64> = sqlx::query_scalar("UPDATE users SET disabled = $2 WHERE name = $1 RETURNING id")
            .bind(name)
            .bind(i64::from(disabled))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else { return Ok(false) };
        if disabled {
            sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Sets a user's password hash and ends its sessions.
    pub async fn set_password(&self, name: &str, hash: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: Option<i64> = sqlx::query_scalar("UPDATE users SET password_hash = $2 WHERE name = $1 RETURNING id")
            .bind(name)
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else { return Ok(false) };
        sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE user_id = $1 AND kind = $3 AND revoked_at IS NULL")
            .bind(id)
            .bind(ms(now))
            .bind(SESSION)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Keeps a token's or session's hash for `user_id`; returns its id.
    pub async fn add_token(
        &self,
        user_id: i64,
        kind: &str,
        name: &str,
        hash: &str,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO tokens (user_id, kind, name, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id",
        )
        .bind(user_id)
        .bind(kind)
        .bind(name)
        .bind(hash)
        .bind(ms(now))
        .bind(expires_at.map(ms))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Revokes token `id`; false if there is none still valid.
    pub async fn revoke_token(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The tokens and sessions of `user` (all users: `None`), newest first.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<Token>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, u.name AS user_name, t.kind, t.name, t.created_at, t.expires_at, t.revoked_at, t.last_used_at \
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE ($1 IS NULL OR u.name = $1) ORDER BY t.id DESC",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Token {
                    id: r.try_get("id")?,
                    user: r.try_get("user_name")?,
                    kind: r.try_get("kind")?,
                    name: r.try_get("name")?,
                    created_at: from_ms(r.try_get("created_at")?)?,
                    expires_at: opt_ms(r.try_get("expires_at")?)?,
                    revoked_at: opt_ms(r.try_get("revoked_at")?)?,
                    last_used_at: opt_ms(r.try_get("last_used_at")?)?,
                })
            })
            .collect()
    }

    /// Who holds the token or session whose SHA-256 is `hash`, if it is valid at `now`: not
    /// revoked, not expired, its user not disabled. Notes its use (at most once a minute).
    pub async fn principal(&self, hash: &str, now: DateTime<Utc>) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "SELECT t.id AS token_id, t.last_used_at, u.id AS user_id, u.name, u.role FROM tokens t \
             JOIN users u ON u.id = t.user_id \
             WHERE t.hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) \
             AND u.disabled = 0",
        )
        .bind(hash)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let (token_id, user_id): (i64, i64) = (r.try_get("token_id")?, r.try_get("user_id")?);
        let customers: Vec<String> =
            sqlx::query_scalar("SELECT customer FROM user_customers WHERE user_id = $1 ORDER BY customer")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        let role = named(&r, "role", Role::parse)?;
        if role == Role::Customer && customers.is_empty() {
            // A customer's user sees its customers; with none it sees nothing, never all.
            return Ok(None);
        }
        let last: Option<i64> = r.try_get("last_used_at")?;
        if last.is_none_or(|l| ms(now) - l > 60_000) {
            sqlx::query("UPDATE tokens SET last_used_at = $2 WHERE id = $1")
                .bind(token_id)
                .bind(ms(now))
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Principal { user_id, name: r.try_get("name")?, role, scope: Scope::of(customers), token_id }))
    }

    /// Ends the session whose SHA-256 is `hash`.
    pub async fn end_session(&self, hash: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE hash = $1 AND kind = $3 AND revoked_at IS NULL")
            .bind(hash)
            .bind(ms(now))
            .bind(SESSION)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn audit(&self, e: &NewAudit<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (at, actor, token_id, address, method, path, status, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(ms(e.at))
        .bind(e.actor)
        .bind(e.token_id)
        .bind(e.address)
        .bind(e.method)
        .bind(e.path)
        .bind(i64::from(e.status))
        .bind(e.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes audit lines from before `audit_before` (the store refuses any of the last 90
    /// days), and login sessions that ended before `sessions_before`; returns how many rows went.
    pub async fn prune_access(
        &self,
        audit_before: DateTime<Utc>,
        sessions_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let a = sqlx::query("DELETE FROM audit WHERE at < $1").bind(ms(audit_before)).execute(&self.pool).await?;
        let b = sqlx::query(
            "DELETE FROM tokens WHERE kind = $1 AND (revoked_at < $2 OR (revoked_at IS NULL AND expires_at < $2))",
        )
        .bind(SESSION)
        .bind(ms(sessions_before))
        .execute(&self.pool)
        .await?;
        Ok(a.rows_affected() + b.rows_affected())
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, token_id, address, method, path, status, detail FROM audit \
             WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR at >= $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(f.actor.as_deref())
        .bind(f.since.map(ms))
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: from_ms(r.try_get("at")?)?,
                    actor: r.try_get("actor")?,
                    token_id: r.try_get("token_id")?,
                    address: r.try_get("address")?,
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(0),
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Notes that helpdesk `name` sent event `id` at `now`; false if it was already seen since
    /// `since` (a replay). Older ids are forgotten: their signatures are too old to pass.
    pub async fn first_sight(
        &self,
        name: &str,
        id: &str,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM webhook_seen WHERE at < $1").bind(ms(since)).execute(&self.pool).await?;
        let r = sqlx::query(
            "INSERT INTO webhook_seen (helpdesk, webhook_id, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(id)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
