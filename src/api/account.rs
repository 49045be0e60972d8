//! Signing in and the users' own account: login (a session cookie), logout, `me`; and the
//! admin's users, tokens and audit log.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::guard::{AuditNote, COOKIE, ClientIp, Routes, cookie};
use super::{ApiError, AppState};
use crate::access::{Perm, Principal, Role};
use crate::identity::IdentityError;
use crate::store::{AuditEntry, AuditFilter, SESSION, Token, User};

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .post("/api/v1/login", Perm::Open, login)
        .post("/api/v1/logout", Perm::SignedIn, logout)
        .get("/api/v1/me", Perm::SignedIn, me)
        .get("/api/v1/users", Perm::ManageUsers, list_users)
        .post("/api/v1/users", Perm::ManageUsers, add_user)
        .post("/api/v1/users/{name}/disable", Perm::ManageUsers, disable_user)
        .post("/api/v1/users/{name}/enable", Perm::ManageUsers, enable_user)
        .post("/api/v1/users/{name}/password", Perm::ManageUsers, set_password)
        .get("/api/v1/tokens", Perm::SignedIn, list_tokens)
        .post("/api/v1/tokens", Perm::SignedIn, create_token)
        .delete("/api/v1/tokens/{id}", Perm::SignedIn, revoke_token)
        .get("/api/v1/audit", Perm::ReadAudit, audit_log)
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> ApiError {
        match e {
            IdentityError::Store(s) => ApiError::from(s),
            IdentityError::NoUser(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            IdentityError::Taken(_) => ApiError(StatusCode::CONFLICT, e.to_string()),
            IdentityError::Invalid(_) => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

/// Failed logins per address and per user name: after [`LoginLimiter::MAX`] in
/// [`LoginLimiter::WINDOW`], further tries are refused until the window ends.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, DateTime<Utc>)>>,
    /// Password checks at once: argon2 takes 19 MiB and a core's worth of time each.
    checks: tokio::sync::Semaphore,
}

impl Default for LoginLimiter {
    fn default() -> LoginLimiter {
        LoginLimiter { failures: Mutex::default(), checks: tokio::sync::Semaphore::new(Self::CHECKS) }
    }
}

impl LoginLimiter {
    const MAX: u32 = 5;
    const WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(15);
    /// Keys kept at most; when full, the oldest is forgotten.
    const KEYS: usize = 10_000;
    /// Password checks at once.
    const CHECKS: usize = 2;

    /// How long `keys` must wait, if any has failed too often.
    fn blocked(&self, keys: &[String], now: DateTime<Utc>) -> Option<chrono::TimeDelta> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| map.get(k))
            .filter(|(n, since)| *n >= Self::MAX && now - *since < Self::WINDOW)
            .map(|(_, since)| Self::WINDOW - (now - *since))
            .max()
    }

    fn failed(&self, keys: &[String], now: DateTime<Utc>) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::KEYS {
            map.retain(|_, (_, since)| now - *since < Self::WINDOW);
        }
        for k in keys {
            // Full of live keys: the oldest goes, so that a flood of names cannot hold every
            // login (it may free a key early, which only lets a guesser start afresh).
            if map.len() >= Self::KEYS
                && !map.contains_key(k)
                && let Some(oldest) = map.iter().min_by_key(|(_, (_, since))| *since).map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
            let e = map.entry(k.clone()).or_insert((0, now));
            if now - e.1 >= Self::WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    /// A login that was counted as a failure before its check turned out right: the user's
    /// count is cleared, the address's given back.
    fn succeeded(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(user) = keys.get(1) {
            map.remove(user);
        }
        if let Some(e) = keys.first().and_then(|ip| map.get_mut(ip)) {
            e.0 = e.0.saturating_sub(1);
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
}

/// A login's answer; the session is in the `Set-Cookie` header.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LoggedIn {
    user: Option<User>,
    expires_at: DateTime<Utc>,
}

/// Logs a person in with a password: a session cookie (HttpOnly, SameSite=Strict, Secure over
/// TLS) that lasts `http.session_ttl`.
#[utoipa::path(post, path = "/api/v1/login", tag = "account", request_body = LoginBody, responses(
    (status = 200, description = "Logged in; the session cookie is set", body = LoggedIn,
        headers(("set-cookie" = String, description = "aftercare_session=...; HttpOnly; SameSite=Strict"))),
    (status = 401, description = "Wrong user or password", body = super::ErrorBody),
    (status = 429, description = "Too many failed logins from this address or for this user; see Retry-After", body = super::ErrorBody),
    (status = 503, description = "Logins are busy, or the store failed", body = super::ErrorBody),
))]
async fn login(
    State(s): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let (cookie, expires_at) = match sign_in(&s, ip, &headers, &b.user, &b.password).await? {
        Ok(signed) => signed,
        Err(refused) => return Ok(refused),
    };
    let user = s.store.user(&b.user).await?;
    let mut r = Json(LoggedIn { user, expires_at }).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.extensions_mut().insert(AuditNote { actor: Some(b.user.clone()), detail: "login".into() });
    Ok(r)
}

/// Checks a password login (held after five failures, against a decoy for an unknown user)
/// and starts a session: its `Set-Cookie` and end; or the refusal to answer (401, 429 or 503,
/// a failure with its audit note). The API's login and the console's share it.
pub(super) async fn sign_in(
    s: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    user: &str,
    password: &str,
) -> Result<Result<(String, chrono::DateTime<chrono::Utc>), Response>, ApiError> {
    if !crate::identity::valid_name(user) || password.len() > crate::identity::MAX_PASSWORD {
        return Ok(Err(ApiError(StatusCode::UNAUTHORIZED, "wrong user or password".into()).into_response()));
    }
    let keys = [format!("ip:{ip}"), format!("user:{user}")];
    if let Some(wait) = s.logins.blocked(&keys, s.clock.now()) {
        let mut r =
            ApiError(StatusCode::TOO_MANY_REQUESTS, "too many failed logins; try again later".into()).into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.num_seconds().max(1)));
        return Ok(Err(r));
    }
    // A login turned away as busy is not a failure: the permit comes before the count.
    let Ok(_permit) = s.logins.checks.try_acquire() else {
        let mut r = ApiError(StatusCode::SERVICE_UNAVAILABLE, "logins are busy; try again".into()).into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(Err(r));
    };
    // Counted before the check, so that tries made at once are held like tries in a row.
    s.logins.failed(&keys, s.clock.now());
    let found = s.store.password_of(user).await?;
    // Verify against a decoy when the user is unknown, so that the answer takes as long.
    let hash = found.as_ref().map_or(crate::identity::decoy_hash(), |(_, h)| h.as_str()).to_string();
    let password = password.to_string();
    let ok =
        tokio::task::spawn_blocking(move || crate::identity::verify_password(&password, &hash)).await.unwrap_or(false);
    let Some((user_id, _)) = found.filter(|_| ok) else {
        let mut r = ApiError(StatusCode::UNAUTHORIZED, "wrong user or password".into()).into_response();
        r.extensions_mut().insert(AuditNote { actor: Some(user.to_string()), detail: "login failed".into() });
        return Ok(Err(r));
    };
    s.logins.succeeded(&keys);
    let (secret, hash) = crate::identity::new_secret("acs_")?;
    let now = s.clock.now();
    let ttl = chrono::TimeDelta::from_std(s.access.session_ttl).unwrap_or(chrono::TimeDelta::hours(12));
    s.store.add_token(user_id, SESSION, "login", &hash, now, Some(now + ttl)).await?;
    let cookie = format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ttl.num_seconds(),
        if super::guard::over_tls(s, headers) { "; Secure" } else { "" }
    );
    Ok(Ok((cookie, now + ttl)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Done {
    ok: bool,
}

/// Ends this session (the cookie's), or does nothing for a bearer token.
#[utoipa::path(post, path = "/api/v1/logout", tag = "account", responses((status = 200, body = Done)))]
async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(c) = cookie(&headers, COOKIE) {
        s.store.end_session(&crate::identity::secret_hash(&c), s.clock.now()).await?;
    }
    let mut r = Json(Done { ok: true }).into_response();
    let gone = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// Who is signed in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Me {
    user: String,
    role: Role,
    /// The customers the user sees; `null`: all.
    customers: Option<Vec<String>>,
}

/// Who is signed in: name, role and customers.
#[utoipa::path(get, path = "/api/v1/me", tag = "account", responses((status = 200, body = Me)))]
async fn me(Extension(p): Extension<Principal>) -> Json<Me> {
    Json(Me { user: p.name, role: p.role, customers: p.scope.list() })
}

/// Every user.
#[utoipa::path(get, path = "/api/v1/users", tag = "account", responses((status = 200, body = Vec<User>)))]
async fn list_users(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(s.store.users().await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    /// Letters, digits, `.`, `_`, `-` and `@`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    name: String,
    #[schema(value_type = Role)]
    role: String,
    /// The customers it sees (a customer user names at least one); empty: all.
    #[serde(default)]
    customers: Vec<String>,
    /// At least 10 characters; none: the user signs in by token only.
    #[schema(min_length = 10, max_length = 1024)]
    password: Option<String>,
}

/// Adds a user; with no password it signs in by token only.
#[utoipa::path(post, path = "/api/v1/users", tag = "account", request_body = NewUser, responses(
    (status = 201, body = Option<User>),
    (status = 409, description = "The name is taken", body = super::ErrorBody),
))]
async fn add_user(State(s): State<AppState>, body: Result<Json<NewUser>, JsonRejection>) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let role = crate::identity::role(&b.role)?;
    let known: Vec<&str> = s.fleet.customers.iter().map(|c| c.id.as_str()).collect();
    crate::identity::add_user(&s.store, &b.name, role, &b.customers, b.password.as_deref(), &known, s.clock.now())
        .await?;
    let mut r = (StatusCode::CREATED, Json(s.store.user(&b.name).await?)).into_response();
    r.extensions_mut().insert(AuditNote { actor: None, detail: format!("user {} added as {role}", b.name) });
    Ok(r)
}

async fn switch(s: &AppState, p: &Principal, name: &str, disabled: bool) -> Result<Response, ApiError> {
    // Only an admin disables a user, so another admin stays: nobody locks the door behind
    // the last one who holds its key.
    if disabled && name == p.name {
        return Err(ApiError(StatusCode::CONFLICT, "you cannot disable yourself; another admin can".into()));
    }
    if !s.store.set_disabled(name, disabled, s.clock.now()).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no user `{name}`")));
    }
    let mut r = Json(s.store.user(name).await?).into_response();
    let what = if disabled { "disabled" } else { "enabled" };
    r.extensions_mut().insert(AuditNote { actor: None, detail: format!("user {name} {what}") });
    Ok(r)
}

/// Disables a user: its tokens and sessions are revoked. Nobody disables themselves, so an
/// admin always remains.
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", tag = "account", params(("name" = String, Path)), responses(
    (status = 200, body = Option<User>),
    (status = 404, description = "No such user", body = super::ErrorBody),
    (status = 409, description = "The user is the caller", body = super::ErrorBody),
))]
async fn disable_user(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    switch(&s, &p, &name, true).await
}

/// Enables a disabled user (its old tokens stay revoked).
#[utoipa::path(post, path = "/api/v1/users/{name}/enable", tag = "account", params(("name" = String, Path)), responses(
    (status = 200, body = Option<User>),
    (status = 404, description = "No such user", body = super::ErrorBody),
))]
async fn enable_user(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    switch(&s, &p, &name, false).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    /// At least 10 characters.
    #[schema(min_length = 10, max_length = 1024)]
    password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PasswordSet {
    user: String,
    password: &'static str,
}

/// Sets a user's password; its sessions end.
#[utoipa::path(post, path = "/api/v1/users/{name}/password", tag = "account", params(("name" = String, Path)),
    request_body = PasswordBody, responses(
    (status = 200, body = PasswordSet),
    (status = 404, description = "No such user", body = super::ErrorBody),
))]
async fn set_password(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<PasswordBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let hash = crate::identity::hash_password(&b.password)?;
    if !s.store.set_password(&name, &hash, s.clock.now()).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no user `{name}`")));
    }
    let mut r = Json(PasswordSet { user: name.clone(), password: "set; its sessions ended" }).into_response();
    r.extensions_mut().insert(AuditNote { actor: None, detail: format!("password of {name} set") });
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// Whose (admins only; default: everyone's for an admin).
    user: Option<String>,
}

/// One's own tokens and sessions; an admin's, anyone's (`?user=`, or all).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "account", params(TokenQuery), responses((status = 200, body = Vec<Token>)))]
async fn list_tokens(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let user = if p.role == Role::Admin { q.user } else { Some(p.name.clone()) };
    Ok(Json(s.store.tokens(user.as_deref()).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// Whose token (admins only; default: one's own).
    user: Option<String>,
    /// What it is for, such as `nightly export`.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// Such as `90d`, at most 10 years; default: never.
    expires: Option<String>,
}

/// A new token, its secret shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct NewTokenMade {
    id: i64,
    user: String,
    /// The secret: send it as `Authorization: Bearer ...`. It is not kept and not shown again.
    token: String,
    expires_at: Option<DateTime<Utc>>,
}

/// A new API token: its secret is in this answer and nowhere else.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "account", request_body = NewToken, responses(
    (status = 201, body = NewTokenMade),
    (status = 404, description = "No such user", body = super::ErrorBody),
))]
async fn create_token(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let user = match b.user {
        Some(u) if u != p.name && p.role != Role::Admin => {
            return Err(ApiError(StatusCode::FORBIDDEN, "only an admin makes tokens for others".into()));
        }
        Some(u) => u,
        None => p.name.clone(),
    };
    let now = s.clock.now();
    let expires_at = expiry(b.expires.as_deref(), now)?;
    let (secret, id) = crate::identity::create_token(&s.store, &user, &b.name, None, expires_at, now).await?;
    let mut r =
        (StatusCode::CREATED, Json(NewTokenMade { id, user: user.clone(), token: secret, expires_at })).into_response();
    r.extensions_mut().insert(AuditNote { actor: None, detail: format!("token {id} for {user}") });
    Ok(r)
}

/// `90d`, `12h`...: when a token made now expires.
pub(crate) fn expiry(s: Option<&str>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
    s.map(|e| {
        humantime::parse_duration(e)
            .ok()
            .and_then(|d| chrono::TimeDelta::from_std(d).ok())
            .filter(|d| *d <= chrono::TimeDelta::days(3660))
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("expires `{e}`: write a duration such as 90d, at most 10 years"),
                )
            })
    })
    .transpose()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Revoked {
    id: i64,
    revoked: bool,
}

/// Revokes a token: one's own, or any for an admin.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "account", params(("id" = i64, Path)), responses(
    (status = 200, body = Revoked),
    (status = 404, description = "No such valid token (of yours)", body = super::ErrorBody),
))]
async fn revoke_token(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not a token id")))?;
    let mine = s.store.tokens(Some(&p.name)).await?.iter().any(|t| t.id == id);
    if !mine && p.role != Role::Admin {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no token {id} of yours")));
    }
    if !s.store.revoke_token(id, s.clock.now()).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no valid token {id}")));
    }
    let mut r = Json(Revoked { id, revoked: true }).into_response();
    r.extensions_mut().insert(AuditNote { actor: None, detail: format!("token {id} revoked") });
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    actor: Option<String>,
    since: Option<String>,
    limit: Option<i64>,
}

/// The audit log, newest first: every change, who made it, from where, with which token.
#[utoipa::path(get, path = "/api/v1/audit", tag = "account", params(AuditQuery), responses((status = 200, body = Vec<AuditEntry>)))]
async fn audit_log(
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let since = q
        .since
        .as_deref()
        .map(|t| crate::report::parse_time(t, chrono::Offset::fix(&Utc)))
        .transpose()
        .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let f = AuditFilter { actor: q.actor, since, limit: q.limit.unwrap_or(500).clamp(1, 10_000) };
    Ok(Json(s.store.audit_log(&f).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failed_logins_hold_the_rest_of_the_window() {
        let l = LoginLimiter::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let keys = ["ip:10.0.0.1".to_string(), "user:zoe".to_string()];
        for i in 0..5 {
            assert_eq!(l.blocked(&keys, t0), None, "after {i} failures");
            l.failed(&keys, t0);
        }
        let later = t0 + chrono::TimeDelta::minutes(5);
        assert_eq!(l.blocked(&keys, later), Some(chrono::TimeDelta::minutes(10)));
        // Another address for the same user is held too; another user from elsewhere is not.
        assert!(l.blocked(&["ip:10.0.0.2".into(), "user:zoe".into()], later).is_some());
        assert_eq!(l.blocked(&["ip:10.0.0.2".into(), "user:ann".into()], later), None);
        assert_eq!(l.blocked(&keys, t0 + LoginLimiter::WINDOW), None, "the window ends");
        l.succeeded(&["ip:10.0.0.2".into(), "user:zoe".into()]);
        assert_eq!(l.blocked(&["ip:10.0.0.2".into(), "user:zoe".into()], later), None);
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    #[test]
    fn a_token_expires_within_ten_years_and_never_overflows() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        assert_eq!(expiry(Some("90d"), now).ok().flatten(), Some(now + chrono::TimeDelta::days(90)));
        assert!(expiry(Some("200000000y"), now).is_err(), "no panic, a 400");
        assert!(expiry(Some("11y"), now).is_err());
        assert!(expiry(Some("soon"), now).is_err());
        assert_eq!(expiry(None, now).ok().flatten(), None);
    }
}
