//! The outbox (what helpdesks were sent), and events helpdesks send in.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

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
        .post("/api/v1/helpdesks/{name}/events", Perm::Helpdesk, helpdesk_event)
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
    Extension(p): Extension<Principal>,
    q: Result<Query<OutboxQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let mine: Option<Vec<String>> = p.scope.customers().map(|c| c.iter().cloned().collect());
    use crate::domain::OutboxState;
    let state = one_of(q.state.as_deref(), "state", OutboxState::parse, "pending, delivered, dead or skipped")?
        .unwrap_or(OutboxState::Dead);
    Ok(Json(s.store.outbox(state, q.limit.unwrap_or(500).clamp(1, 10_000), mine.as_deref()).await?).into_response())
}

async fn retry_outbox(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mine: Option<Vec<String>> = p.scope.customers().map(|c| c.iter().cloned().collect());
    let id: i64 =
        id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not an outbox row id")))?;
    if s.store.outbox_retry(id, s.clock.now(), mine.as_deref()).await? {
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
