//! Repair records and the photos and signatures of a ticket (003, 004).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::guard::Routes;
use super::tickets::{not_anothers, seen_ticket, ticket_id};
use super::{ApiError, AppState};
use crate::access::{Perm, Principal};
use crate::contracts::Contract;
use crate::store::{Attachment, NewAttachment, Owner};
use crate::tickets::State as TicketState;
use crate::tickets::Ticket;
use crate::tickets::model::BillingClass;
use crate::tickets::repair::{AttachmentKind, RepairRecord, image_type};

/// The largest attachment taken, in bytes.
pub(crate) const MAX_ATTACHMENT: usize = 5 * 1024 * 1024;
/// The most attachments a ticket holds.
pub(crate) const MAX_ATTACHMENTS: i64 = 50;

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .put("/api/v1/tickets/{id}/repair", Perm::Repair, put_repair)
        .post("/api/v1/tickets/{id}/attachments", Perm::Repair, add_attachment)
        .get("/api/v1/tickets/{id}/attachments/{attachment}", Perm::ReadTickets, get_attachment)
}

/// The contract governing a ticket, if one does.
pub(super) fn contract_of<'a>(s: &'a AppState, t: &Ticket) -> Option<&'a Contract> {
    t.clock.contract.as_deref().and_then(|c| s.fleet.contracts.iter().find(|k| k.id == c))
}

/// The billing class a record applies: its own, else the ticket's (`billable_now`: a cause is
/// named in the same request, with the class it makes). A billable class needs a cause the
/// contract names.
fn class_of(record: &RepairRecord, t: &Ticket, billable_now: Option<BillingClass>) -> Result<BillingClass, ApiError> {
    let ticket_class = t.billing.as_ref().map(|b| b.class);
    let has_cause = billable_now.is_some() || t.billing.as_ref().is_some_and(|b| b.reason.is_some());
    match record.billing {
        Some(c @ (BillingClass::Billable | BillingClass::BillableAtCost)) if !has_cause => Err(ApiError(
            StatusCode::CONFLICT,
            format!("a {c} repair needs its cause first: resolve with `billable` naming one the contract lists"),
        )),
        Some(c) => Ok(c),
        None => Ok(billable_now.or(ticket_class).unwrap_or(BillingClass::Free)),
    }
}

/// A record checked and costed, ready to keep.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prepared {
    class: BillingClass,
    charge: crate::tickets::repair::Charge,
}

/// Checks a record for ticket `t` (`billable_now`: a cause is named in the same request) and
/// works out its charge; the answer's error when it cannot be kept.
pub(super) async fn prepare(
    s: &AppState,
    t: &Ticket,
    record: &RepairRecord,
    billable_now: Option<BillingClass>,
) -> Result<Prepared, ApiError> {
    record.check().map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let class = class_of(record, t, billable_now)?;
    if record.price.is_some() && class != BillingClass::Billable {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("a `price` is agreed for a billable repair; this one is {class}"),
        ));
    }
    let held = s.store.attachments(t.id.0).await?;
    let signature = record.confirmation.as_ref().and_then(|c| c.signature).map(|id| (id, AttachmentKind::Signature));
    for (id, kind) in record.photos.iter().map(|p| (*p, AttachmentKind::Photo)).chain(signature) {
        if !held.iter().any(|a| a.id == id && a.kind == kind) {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("ticket {} holds no {kind} attachment {id}", t.id)));
        }
    }
    let half = contract_of(s, t).is_some_and(|c| c.wear_parts_half_price);
    Ok(Prepared { class, charge: record.charge(class, half) })
}

/// Keeps a prepared record of ticket `t`.
pub(super) async fn keep(
    s: &AppState,
    p: &Principal,
    t: &Ticket,
    record: &RepairRecord,
    prepared: Prepared,
) -> Result<(), ApiError> {
    let id = t.id;
    // The parts of the device's model kept as spares come out of stock.
    let model = s.fleet.lookup(t.device.as_str()).map(|i| s.fleet.device(i).model.clone());
    let catalogued: Vec<(String, String)> = match &model {
        Some(m) => s.fleet.spares.iter().filter(|x| &x.model == m).map(|x| (x.model.clone(), x.part.clone())).collect(),
        None => Vec::new(),
    };
    let taken: Vec<(String, String, u32)> = match &model {
        Some(m) => record
            .parts
            .iter()
            .filter(|part| catalogued.iter().any(|(_, x)| *x == part.number))
            .map(|part| (m.clone(), part.number.clone(), part.quantity))
            .collect(),
        None => Vec::new(),
    };
    let spares = model.as_ref().map(|_| crate::store::Taken { parts: &taken, catalogued: &catalogued });
    s.store
        .record_repair(id.0, record, prepared.class, &prepared.charge, spares, &p.name, s.clock.now())
        .await?
        .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    if !taken.is_empty() {
        let lines = super::spares::every_line(s).await?;
        let touched = |l: &&crate::spares::SpareLine| taken.iter().any(|(m, part, _)| *m == l.model && *part == l.part);
        crate::store::warn_short(lines.iter().filter(touched));
    }
    Ok(())
}

/// What the contract requires of an on-site repair's record on resolve that `record` lacks:
/// 400 naming each.
/// `class_now`: who pays once the same request's move stands, when it decides it.
pub(super) fn required(
    s: &AppState,
    t: &Ticket,
    record: Option<&RepairRecord>,
    class_now: Option<BillingClass>,
) -> Result<(), ApiError> {
    let Some(c) = contract_of(s, t) else { return Ok(()) };
    if c.repair_requires.is_empty() || t.clock.on_site_at.is_none() {
        return Ok(());
    }
    let empty = RepairRecord::default();
    let record = record.unwrap_or(&empty);
    let class = record.billing.or(class_now).or(t.billing.as_ref().map(|b| b.class)).unwrap_or(BillingClass::Free);
    let charged = class != BillingClass::Free;
    let missing = record.missing(&c.repair_requires, charged);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|f| f.as_str()).collect();
    Err(ApiError(
        StatusCode::BAD_REQUEST,
        format!(
            "contract {} requires a repair record with {} to resolve an on-site repair; missing: {}",
            c.id,
            c.repair_requires.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
            names.join(", ")
        ),
    ))
}

/// Records (or replaces) `p`'s repair record `r` of ticket `id`, by the API's rules (the
/// console's form too).
pub(super) async fn record(
    s: &AppState,
    p: &Principal,
    id: crate::domain::TicketId,
    r: &RepairRecord,
) -> Result<(), ApiError> {
    let t = seen_ticket(s, p, id).await?;
    not_anothers(p, t.assignee.as_deref())?;
    if matches!(t.state, TicketState::Closed | TicketState::Cancelled) {
        return Err(ApiError(StatusCode::CONFLICT, format!("ticket {id} is {}", t.state)));
    }
    let prepared = prepare(s, &t, r, None).await?;
    keep(s, p, &t, r, prepared).await
}

/// Records (or replaces) the repair record of a ticket not yet closed.
#[utoipa::path(put, path = "/api/v1/tickets/{id}/repair", tag = "tickets", params(("id" = i64, Path)),
    request_body = RepairRecord, responses(
    (status = 200, description = "The ticket with its record", body = Ticket),
    (status = 400, description = "The record makes no sense, or names an attachment the ticket lacks", body = super::ErrorBody),
    (status = 403, description = "Another engineer's ticket", body = super::ErrorBody),
    (status = 404, description = "No such ticket (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "The ticket is closed, or a billable class has no cause", body = super::ErrorBody),
))]
async fn put_repair(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<RepairRecord>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    let Json(r) = body?;
    record(&s, &p, id, &r).await?;
    let t = seen_ticket(&s, &p, id).await?;
    let mut resp = Json(t).into_response();
    resp.extensions_mut()
        .insert(super::guard::AuditNote { actor: None, detail: format!("repair record of ticket {id}") });
    Ok(resp)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct KindQuery {
    /// `photo` (the default) or `signature`.
    #[param(value_type = Option<String>)]
    kind: Option<String>,
}

/// Keeps a photo or a signature image (PNG, JPEG or WebP, at most 5 MiB; 50 a ticket) sent as
/// the request's body.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/attachments", tag = "tickets", params(("id" = i64, Path), KindQuery),
    request_body(content = Vec<u8>, content_type = "image/png"), responses(
    (status = 201, description = "The attachment as kept", body = Attachment),
    (status = 400, description = "Not a PNG, JPEG or WebP image, or an unknown kind", body = super::ErrorBody),
    (status = 403, description = "Another engineer's ticket", body = super::ErrorBody),
    (status = 404, description = "No such ticket (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "The ticket holds as many attachments as it may", body = super::ErrorBody),
    (status = 413, description = "Larger than 5 MiB", body = super::ErrorBody),
))]
async fn add_attachment(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    q: Result<Query<KindQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    let Query(q) = q?;
    let kind = kind_of(q.kind.as_deref())?;
    let t = seen_ticket(&s, &p, id).await?;
    not_anothers(&p, t.assignee.as_deref())?;
    keep_image(&s, &p, Owner::Ticket(id.0), kind, body).await
}

/// The kind an upload names: a photo unless it says `signature`.
pub(super) fn kind_of(kind: Option<&str>) -> Result<AttachmentKind, ApiError> {
    match kind {
        None => Ok(AttachmentKind::Photo),
        Some(k) => AttachmentKind::parse(k)
            .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("kind `{k}`: write photo or signature"))),
    }
}

/// Keeps an uploaded image of a ticket or a visit the caller may change: 201 with it as kept.
pub(super) async fn keep_image(
    s: &AppState,
    p: &Principal,
    owner: Owner,
    kind: AttachmentKind,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_ATTACHMENT).await.map_err(|_| {
        ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("an attachment has at most {} MiB", MAX_ATTACHMENT >> 20))
    })?;
    let content_type = image_type(&bytes)
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "an attachment is a PNG, JPEG or WebP image".into()))?;
    let new = NewAttachment { owner, kind, content_type, bytes: &bytes, by: &p.name, max_per_ticket: MAX_ATTACHMENTS };
    let whose = match owner {
        Owner::Ticket(id) => format!("ticket {id}"),
        Owner::Visit(id) => format!("work order {id}"),
    };
    let Some(a) = s.store.add_attachment(new, s.clock.now()).await? else {
        return Err(ApiError(StatusCode::CONFLICT, format!("{whose} holds {MAX_ATTACHMENTS} attachments already")));
    };
    let mut resp = (StatusCode::CREATED, Json(&a)).into_response();
    resp.extensions_mut()
        .insert(super::guard::AuditNote { actor: None, detail: format!("{kind} {} on {whose}", a.id) });
    Ok(resp)
}

/// An attachment's bytes as the image it is, or 404.
pub(super) async fn image(s: &AppState, owner: Owner, attachment: &str) -> Result<Response, ApiError> {
    let missing = || ApiError(StatusCode::NOT_FOUND, format!("no attachment {attachment} there"));
    let n: i64 = attachment.parse().map_err(|_| missing())?;
    let (a, bytes) = s.store.attachment_of(owner, n).await?.ok_or_else(missing)?;
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox".into()),
            (header::CACHE_CONTROL, "private, max-age=3600".into()),
        ],
        bytes,
    )
        .into_response())
}

/// An attachment's bytes, as the image it is.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/attachments/{attachment}", tag = "tickets",
    params(("id" = i64, Path), ("attachment" = i64, Path)), responses(
    (status = 200, description = "The image", content_type = "image/png", body = Vec<u8>),
    (status = 404, description = "No such attachment on a ticket the user sees", body = super::ErrorBody),
))]
async fn get_attachment(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, attachment)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    let t = seen_ticket(&s, &p, id).await?;
    image(&s, Owner::Ticket(t.id.0), &attachment).await
}
