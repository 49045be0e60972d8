//! Work orders: visits listed, started and completed.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState, one_of};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/work-orders", get(list_work_orders))
        .route("/api/v1/work-orders/{id}", get(get_work_order))
        .route("/api/v1/work-orders/{id}/start", post(start_work_order))
        .route("/api/v1/work-orders/{id}/complete", post(complete_work_order))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkOrderQuery {
    /// open, in_progress, done or missed.
    state: Option<String>,
    /// patrol, inspection, maintenance or follow_up.
    kind: Option<String>,
    device: Option<String>,
    customer: Option<String>,
    /// Due on or after this date.
    from: Option<chrono::NaiveDate>,
    /// Due before this date.
    to: Option<chrono::NaiveDate>,
    limit: Option<i64>,
}

async fn list_work_orders(
    State(s): State<AppState>,
    q: Result<Query<WorkOrderQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    use crate::domain::{VisitKind, VisitState};
    let state = one_of(q.state.as_deref(), "state", VisitState::parse, "open, in_progress, done or missed")?;
    let kind = one_of(q.kind.as_deref(), "kind", VisitKind::parse, "patrol, inspection, maintenance or follow_up")?;
    let f =
        crate::store::WorkOrderFilter { state, kind, device: q.device, customer: q.customer, from: q.from, to: q.to };
    Ok(Json(s.store.work_orders(&f, q.limit.unwrap_or(500).clamp(1, 10_000)).await?).into_response())
}

fn work_order_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not a work order id")))
}

/// One work order, with the checklist items the telemetry answers pre-filled (`measured`).
async fn get_work_order(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = work_order_id(&id)?;
    let w =
        s.store.work_order(id).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no work order {id}")))?;
    let measured = crate::schedule::measure(&s.store, &s.fleet, &w, s.clock.now()).await?;
    let mut v = serde_json::to_value(&w).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    v["measured"] = serde_json::Value::Object(measured);
    Ok(Json(v).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartQuery {
    /// Who is on site (default `api`).
    by: Option<String>,
}

/// Starts a visit: new tickets of the device are silenced until it is done.
async fn start_work_order(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<StartQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let id = work_order_id(&id)?;
    let by = q.by.as_deref().map(str::trim).filter(|b| !b.is_empty()).unwrap_or("api");
    crate::schedule::start(&s.store, id, by, s.clock.now()).await?;
    get_work_order(State(s), Path(id.to_string())).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    by: String,
    /// Checklist item → answer (any JSON).
    #[serde(default)]
    answers: serde_json::Map<String, serde_json::Value>,
}

/// Completes a visit with its checklist answers; every checklist item must be answered.
async fn complete_work_order(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<CompleteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = work_order_id(&id)?;
    let Json(b) = body?;
    if b.by.trim().is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "`by` must name who made the visit".into()));
    }
    crate::schedule::complete(&s.store, &s.fleet, id, b.by.trim(), b.answers, s.clock.now()).await?;
    get_work_order(State(s), Path(id.to_string())).await
}
