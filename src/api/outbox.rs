//! The outbox (what helpdesks were sent), and events helpdesks send in.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::domain::TicketId;
use crate::store::TransitionOptions;

use super::guard::{AuditNote, Routes};
use super::tickets::transitioned;
use super::{ApiError, AppState, one_of};
use crate::access::{Perm, Principal};

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .get("/api/v1/outbox", Perm::ReadOutbox, list_outbox)
        .post("/api/v1/outbox/{id}/retry", Perm::RetryOutbox, retry_outbox)
        .get("/api/v1/notifications", Perm::ReadOutbox, list_notifications)
        .post("/api/v1/notifications/{id}/retry", Perm::RetryOutbox, retry_notification)
        .post("/api/v1/helpdesks/{name}/events", Perm::Helpdesk, helpdesk_event)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct OutboxQuery {
    /// pending, delivered, dead or skipped (default dead).
    #[param(value_type = Option<crate::domain::OutboxState>, inline)]
    state: Option<String>,
    limit: Option<i64>,
}

/// What was sent (or is to be sent) to the helpdesks, for the customers the user sees.
#[utoipa::path(get, path = "/api/v1/outbox", tag = "outbox", params(OutboxQuery),
    responses((status = 200, body = Vec<crate::store::OutboxRow>)))]
async fn list_outbox(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<OutboxQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let mine: Option<Vec<String>> = p.scope.list();
    use crate::domain::OutboxState;
    let state = one_of(q.state.as_deref(), "state", OutboxState::parse, "pending, delivered, dead or skipped")?
        .unwrap_or(OutboxState::Dead);
    Ok(Json(s.store.outbox(state, q.limit.unwrap_or(500).clamp(1, 10_000), mine.as_deref()).await?).into_response())
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Retried {
    id: i64,
    state: crate::domain::OutboxState,
}

/// Sends a dead outbox row again.
#[utoipa::path(post, path = "/api/v1/outbox/{id}/retry", tag = "outbox", params(("id" = i64, Path)), responses(
    (status = 200, body = Retried),
    (status = 404, description = "No such dead row (or not one of the user's customers')", body = super::ErrorBody),
))]
async fn retry_outbox(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 =
        id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not an outbox row id")))?;
    retry_row(&s, &p, id).await?;
    Ok(Json(Retried { id, state: crate::domain::OutboxState::Pending }).into_response())
}

/// Sends dead outbox row `id` again, as `p` may (the console's button too).
pub(super) async fn retry_row(s: &AppState, p: &Principal, id: i64) -> Result<(), ApiError> {
    let mine: Option<Vec<String>> = p.scope.list();
    if s.store.outbox_retry(id, s.clock.now(), mine.as_deref()).await? {
        Ok(())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no dead outbox row {id}")))
    }
}

/// Sends dead notification `id` again, as `p` may (the console's button too).
pub(super) async fn retry_notice(s: &AppState, p: &Principal, id: i64) -> Result<(), ApiError> {
    let seen = s.store.notification_customer(id).await?.is_some_and(|c| p.scope.sees(&c));
    if seen && s.store.retry_notification(id, s.clock.now()).await? {
        Ok(())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no dead notification {id}")))
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct NotificationQuery {
    /// pending, delivered or dead (default: all).
    #[param(value_type = Option<crate::store::NotificationState>, inline)]
    state: Option<String>,
    limit: Option<i64>,
}

/// Notifications to people (escalations, breaches, loaners, inaction), newest first, about
/// the tickets of the customers the user sees.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "outbox", params(NotificationQuery),
    responses((status = 200, body = Vec<crate::store::Notification>)))]
async fn list_notifications(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<NotificationQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let mine: Option<Vec<String>> = p.scope.list();
    use crate::store::NotificationState;
    let state = one_of(q.state.as_deref(), "state", NotificationState::parse, "pending, delivered or dead")?;
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000) as u32;
    Ok(Json(s.store.notifications(state, mine.as_deref(), limit).await?).into_response())
}

/// Sends a dead notification again.
#[utoipa::path(post, path = "/api/v1/notifications/{id}/retry", tag = "outbox", params(("id" = i64, Path)), responses(
    (status = 200, body = Retried),
    (status = 404, description = "No such dead notification (or not one of the user's customers')", body = super::ErrorBody),
))]
async fn retry_notification(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let n: i64 = id.parse().map_err(|_| ApiError(StatusCode::NOT_FOUND, format!("no dead notification {id}")))?;
    retry_notice(&s, &p, n).await?;
    Ok(Json(Retried { id: n, state: crate::domain::OutboxState::Pending }).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct HelpdeskEvent {
    /// aftercare's ticket id, or the `dedup_key` of its events.
    ticket: Option<i64>,
    dedup_key: Option<String>,
    /// A ticket state, or `reopened`.
    status: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    note: String,
}

/// A helpdesk tells aftercare what people did there, signed like our webhooks.
#[utoipa::path(post, path = "/api/v1/helpdesks/{name}/events", tag = "outbox", params(("name" = String, Path),
    ("webhook-id" = String, Header), ("webhook-timestamp" = i64, Header, description = "Unix seconds"),
    ("webhook-signature" = String, Header, description = "`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`")),
    request_body = HelpdeskEvent, responses(
    (status = 200, description = "The ticket as moved", body = crate::tickets::Ticket),
    (status = 403, description = "The helpdesk has no secret, or the ticket does not go to it", body = super::ErrorBody),
    (status = 404, description = "No such helpdesk or ticket", body = super::ErrorBody),
    (status = 409, description = "A replay, or the move is refused", body = super::ErrorBody),
    (status = 413, description = "The note is too long", body = super::ErrorBody),
    (status = 503, description = "The store failed", body = super::ErrorBody),
))]
async fn helpdesk_event(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let key = match s.helpdesk_keys.get(&name) {
        None => return Err(ApiError(StatusCode::NOT_FOUND, format!("no helpdesk `{name}`"))),
        Some(None) => {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("helpdesk `{name}` has no secret; set one to accept its events"),
            ));
        }
        Some(Some(k)) => k,
    };
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default();
    crate::outbox::webhook::verify(
        key,
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
        &body,
        s.clock.now().timestamp(),
    )
    .map_err(|m| ApiError(StatusCode::UNAUTHORIZED, m.to_string()))?;
    // Each event once: a replay of a signed request within its window is refused.
    let now = s.clock.now();
    let window = chrono::TimeDelta::seconds(2 * crate::outbox::webhook::TOLERANCE_S);
    if !s.store.first_sight(&name, h("webhook-id"), now, now - window).await? {
        return Err(ApiError(StatusCode::CONFLICT, "this webhook-id was taken already (a replay)".into()));
    }
    let ev: HelpdeskEvent =
        serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    let ticket = match (ev.ticket, ev.dedup_key.as_deref().and_then(|k| k.strip_prefix("aftercare-ticket-"))) {
        (Some(t), _) => TicketId(t),
        (None, Some(k)) => TicketId(k.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, "bad dedup_key".into()))?),
        (None, None) => return Err(ApiError(StatusCode::BAD_REQUEST, "give `ticket` or `dedup_key`".into())),
    };
    let to = crate::outbox::webhook::state_of(&ev.status).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let t =
        s.store.ticket(ticket).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no ticket {ticket}")))?;
    let routed = s.fleet.customers.iter().find(|c| c.id == t.customer).and_then(|c| c.helpdesk.as_deref());
    if routed != Some(name.as_str()) {
        return Err(ApiError(StatusCode::FORBIDDEN, format!("ticket {ticket} does not go to helpdesk `{name}`")));
    }
    let actor = crate::outbox::origin_of(&name, ev.by.trim());
    // People at the helpdesk decide for themselves: a resolution there stands even while the
    // fault is active, as a forced one whose resolve clock waits for the recovery.
    let note = if ev.note.trim().is_empty() { format!("status `{}` in helpdesk {name}", ev.status) } else { ev.note };
    let note = super::tickets::note(&note)?;
    let opts = TransitionOptions { force: true, ..Default::default() };
    let mut r = transitioned(s.store.transition_with(ticket, to, &actor, note, s.clock.now(), opts).await)?;
    r.extensions_mut().insert(AuditNote { actor: Some(actor), detail: format!("ticket {ticket} to {to}") });
    Ok(r)
}
