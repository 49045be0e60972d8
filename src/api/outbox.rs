//! The outbox (what helpdesks were sent), and events helpdesks send in.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::domain::TicketId;
use crate::store::TransitionOptions;

use super::tickets::transitioned;
use super::{ApiError, AppState, one_of};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/outbox", get(list_outbox))
        .route("/api/v1/outbox/{id}/retry", post(retry_outbox))
        .route("/api/v1/helpdesks/{name}/events", post(helpdesk_event))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    /// pending, delivered, dead or skipped (default dead).
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_outbox(
    State(s): State<AppState>,
    q: Result<Query<OutboxQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    use crate::domain::OutboxState;
    let state = one_of(q.state.as_deref(), "state", OutboxState::parse, "pending, delivered, dead or skipped")?
        .unwrap_or(OutboxState::Dead);
    Ok(Json(s.store.outbox(state, q.limit.unwrap_or(500).clamp(1, 10_000)).await?).into_response())
}

async fn retry_outbox(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id: i64 =
        id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not an outbox row id")))?;
    if s.store.outbox_retry(id, s.clock.now()).await? {
        Ok(Json(json!({ "id": id, "state": crate::domain::OutboxState::Pending })).into_response())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no dead outbox row {id}")))
    }
}

#[derive(Debug, Deserialize)]
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
    let opts = TransitionOptions { force: true, ..Default::default() };
    transitioned(s.store.transition_with(ticket, to, &actor, &note, s.clock.now(), opts).await)
}
