//! Spare parts: the stock per model and part against the contracts' reserve rules (004 L77)
//! and the year's forecast, stocktakes and receipts (`/api/v1/spares`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::guard::Routes;
use super::{ApiError, AppState};
use crate::access::{Perm, Principal};
use crate::spares::SpareLine;
use crate::store::MoveKind;

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .get("/api/v1/spares", Perm::ReadSpares, list)
        .put("/api/v1/spares/{model}/{part}", Perm::CountSpares, count)
        .post("/api/v1/spares/{model}/{part}/receipts", Perm::CountSpares, receive)
}

/// The spare parts as `p` sees them: units and reserve counted over its customers' devices.
pub(super) async fn lines(s: &AppState, p: &Principal) -> Result<Vec<SpareLine>, ApiError> {
    let sees = |c: &str| p.scope.sees(c);
    Ok(crate::store::spare_lines(&s.store, &s.fleet, s.clock.now(), &sees).await?)
}

/// The spare parts over every customer's devices: what the reserve rules are checked on.
pub(super) async fn every_line(s: &AppState) -> Result<Vec<SpareLine>, ApiError> {
    Ok(crate::store::spare_lines(&s.store, &s.fleet, s.clock.now(), &|_| true).await?)
}

/// The spare parts kept per model, with their stock, what the contracts' reserve rules ask
/// (004 L77: at least 3 % of the delivered units' parts), what repairs took over the last year
/// and the next year's forecast at that rate. A user of some customers sees the units and
/// reserve of their devices; the stock is the supplier's.
#[utoipa::path(get, path = "/api/v1/spares", tag = "spares", responses(
    (status = 200, body = [SpareLine]),
))]
async fn list(State(s): State<AppState>, Extension(p): Extension<Principal>) -> Result<Response, ApiError> {
    Ok(Json(lines(&s, &p).await?).into_response())
}

/// A stocktake (the quantity counted, 0 to 1,000,000) or a receipt (how many came in, 1 to
/// 1,000,000).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StockBody {
    quantity: i64,
    /// What was counted where, or the delivery note (at most 4,000 characters).
    #[serde(default)]
    note: String,
}

const MAX_QUANTITY: i64 = 1_000_000;

/// The part of the catalogue named by the path, or 404.
fn catalogued<'a>(s: &'a AppState, model: &str, part: &str) -> Result<&'a crate::spares::Spare, ApiError> {
    s.fleet.spares.iter().find(|x| x.model == model && x.part == part).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no spare part {part} of model {model} is kept; config [[spares]] lists them"),
        )
    })
}

async fn moved(
    s: &AppState,
    p: &Principal,
    key: (String, String),
    kind: MoveKind,
    quantity: i64,
    note: &str,
) -> Result<Response, ApiError> {
    let line = move_stock(s, p, &key, kind, quantity, note).await?;
    let mut r = Json(line).into_response();
    r.extensions_mut().insert(super::guard::AuditNote {
        actor: None,
        detail: format!("spare {} {}: {} {quantity}", key.0, key.1, kind.as_str()),
    });
    Ok(r)
}

/// A stocktake or a receipt of part `key` as `p`, by the API's rules (the console's form
/// too); the part's line as `p` sees it.
pub(super) async fn move_stock(
    s: &AppState,
    p: &Principal,
    key: &(String, String),
    kind: MoveKind,
    quantity: i64,
    note: &str,
) -> Result<Option<SpareLine>, ApiError> {
    let spare = catalogued(s, &key.0, &key.1)?;
    let lowest = if kind == MoveKind::Count { 0 } else { 1 };
    if !(lowest..=MAX_QUANTITY).contains(&quantity) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("quantity: from {lowest} to {MAX_QUANTITY}")));
    }
    let note = super::tickets::note(note)?;
    s.store.move_spares(&spare.model, &spare.part, kind, quantity, &p.name, note, s.clock.now()).await?;
    let all = every_line(s).await?;
    crate::store::warn_short(all.iter().filter(|l| l.model == spare.model && l.part == spare.part));
    let mine = lines(s, p).await?;
    Ok(mine.into_iter().find(|l| l.model == spare.model && l.part == spare.part))
}

/// Sets a part's stock to what a stocktake counted.
#[utoipa::path(put, path = "/api/v1/spares/{model}/{part}", tag = "spares",
    params(("model" = String, Path), ("part" = String, Path)), request_body = StockBody, responses(
    (status = 200, description = "The part as it stands", body = SpareLine),
    (status = 400, description = "A quantity out of range", body = super::ErrorBody),
    (status = 404, description = "No such part in the catalogue", body = super::ErrorBody),
))]
async fn count(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(key): Path<(String, String)>,
    body: Result<Json<StockBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    moved(&s, &p, key, MoveKind::Count, b.quantity, &b.note).await
}

/// Adds parts received to a part's stock.
#[utoipa::path(post, path = "/api/v1/spares/{model}/{part}/receipts", tag = "spares",
    params(("model" = String, Path), ("part" = String, Path)), request_body = StockBody, responses(
    (status = 200, description = "The part as it stands", body = SpareLine),
    (status = 400, description = "A quantity out of range", body = super::ErrorBody),
    (status = 404, description = "No such part in the catalogue", body = super::ErrorBody),
))]
async fn receive(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(key): Path<(String, String)>,
    body: Result<Json<StockBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    moved(&s, &p, key, MoveKind::Receipt, b.quantity, &b.note).await
}
