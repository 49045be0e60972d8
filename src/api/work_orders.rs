//! Work orders: visits listed, started and completed.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::guard::Routes;
use super::{ApiError, AppState, one_of};
use crate::access::{Perm, Principal};

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .get("/api/v1/work-orders", Perm::ReadWorkOrders, list_work_orders)
        .get("/api/v1/work-orders/{id}", Perm::ReadWorkOrders, get_work_order)
        .post("/api/v1/work-orders/{id}/start", Perm::DoVisits, start_work_order)
        .post("/api/v1/work-orders/{id}/complete", Perm::DoVisits, complete_work_order)
        .post("/api/v1/work-orders/{id}/assign", Perm::Assign, assign_work_order)
        .get("/api/v1/me/work", Perm::SignedIn, my_work)
        .post("/api/v1/work-orders/{id}/attachments", Perm::DoVisits, add_visit_attachment)
        .get("/api/v1/work-orders/{id}/attachments/{attachment}", Perm::ReadWorkOrders, get_visit_attachment)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WorkOrderQuery {
    /// open, in_progress, done or missed.
    #[param(value_type = Option<crate::domain::VisitState>, inline)]
    state: Option<String>,
    /// patrol, inspection, maintenance or follow_up.
    #[param(value_type = Option<crate::domain::VisitKind>, inline)]
    kind: Option<String>,
    device: Option<String>,
    customer: Option<String>,
    /// Due on or after this date.
    from: Option<chrono::NaiveDate>,
    /// Due before this date.
    to: Option<chrono::NaiveDate>,
    /// Only the visits of this user (`me`: the caller's).
    assignee: Option<String>,
    limit: Option<i64>,
}

/// Work orders (visits), by due date, of the customers the user sees.
#[utoipa::path(get, path = "/api/v1/work-orders", tag = "work orders", params(WorkOrderQuery), responses(
    (status = 200, body = Vec<crate::store::WorkOrder>),
    (status = 404, description = "Not one of the user's customers", body = super::ErrorBody),
))]
async fn list_work_orders(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<WorkOrderQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    use crate::domain::{VisitKind, VisitState};
    let state = one_of(q.state.as_deref(), "state", VisitState::parse, "open, in_progress, done or missed")?;
    let kind = one_of(q.kind.as_deref(), "kind", VisitKind::parse, "patrol, inspection, maintenance or follow_up")?;
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000);
    let assignee = q.assignee.map(|a| if a == "me" { p.name.clone() } else { a });
    let f = crate::store::WorkOrderFilter {
        state,
        kind,
        device: q.device,
        customer: q.customer,
        from: q.from,
        to: q.to,
        assignee,
    };
    Ok(Json(seen_work_orders(&s, &p, f, limit).await?).into_response())
}

/// The work orders of filter `f` that `p` sees, by due date, at most `limit`: of the customer
/// `f` names (404 if not one of `p`'s), else of all, or of each of `p`'s own.
pub(super) async fn seen_work_orders(
    s: &AppState,
    p: &Principal,
    f: crate::store::WorkOrderFilter,
    limit: i64,
) -> Result<Vec<crate::store::WorkOrder>, ApiError> {
    let customers: Vec<Option<String>> = match (f.customer.clone(), p.scope.customers()) {
        (Some(c), Some(mine)) if !mine.contains(&c) => {
            return Err(ApiError(StatusCode::NOT_FOUND, format!("no customer `{c}`")));
        }
        (Some(c), _) => vec![Some(c)],
        (None, None) => vec![None],
        (None, Some(mine)) => mine.iter().cloned().map(Some).collect(),
    };
    let mut out = Vec::new();
    for customer in customers {
        let f = crate::store::WorkOrderFilter { customer, ..f.clone() };
        out.extend(s.store.work_orders(&f, limit).await?);
    }
    out.sort_by_key(|a| (a.due_on, a.id));
    out.truncate(limit as usize);
    Ok(out)
}

/// Work order `id` if `p` may see it; else 404, as for one that does not exist.
async fn seen_work_order(s: &AppState, p: &Principal, id: i64) -> Result<crate::store::WorkOrder, ApiError> {
    match s.store.work_order(id).await? {
        Some(w) if p.scope.sees(&w.customer) => Ok(w),
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no work order {id}"))),
    }
}

fn work_order_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not a work order id")))
}

/// A work order with what the telemetry answers of its checklist.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct WorkOrderView {
    #[serde(flatten)]
    pub(super) work_order: crate::store::WorkOrder,
    /// Checklist item → the value measured, for the items the telemetry answers.
    #[schema(value_type = Object)]
    pub(super) measured: serde_json::Map<String, serde_json::Value>,
    /// Its photos and signature images.
    pub(super) attachments: Vec<crate::store::Attachment>,
}

/// Work order `id` as `p` sees it, with what the telemetry measured.
pub(super) async fn view(s: &AppState, p: &Principal, id: i64) -> Result<WorkOrderView, ApiError> {
    let w = seen_work_order(s, p, id).await?;
    let measured = crate::schedule::measure(&s.store, &s.fleet, &w, s.clock.now()).await?;
    let attachments = s.store.attachments_of(crate::store::Owner::Visit(w.id)).await?;
    Ok(WorkOrderView { work_order: w, measured, attachments })
}

/// Starts visit `id` as `p`, by the API's rules (the console's forms too).
pub(super) async fn start(s: &AppState, p: &Principal, id: i64) -> Result<(), ApiError> {
    let w = seen_work_order(s, p, id).await?;
    super::tickets::not_anothers(p, w.assignee.as_deref())?;
    crate::schedule::start(&s.store, id, &p.name, s.clock.now()).await?;
    Ok(())
}

/// The most defects one visit records.
const MAX_DEFECTS: usize = 20;

/// Completes visit `id` as `p` with its answers, the customer's signature, and the defects it
/// found, by the API's rules. Each defect becomes a repair task: a request ticket of the visit's
/// device (or site) under the visit's contract, whose clock gives its completion date (001
/// ¶14-15), opened once the visit is done.
pub(super) async fn complete(
    s: &AppState,
    p: &Principal,
    id: i64,
    answers: serde_json::Map<String, serde_json::Value>,
    signed: Option<crate::store::Signed>,
    defects: Vec<String>,
) -> Result<(), ApiError> {
    let w = seen_work_order(s, p, id).await?;
    super::tickets::not_anothers(p, w.assignee.as_deref())?;
    let defects: Vec<String> = defects.into_iter().map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
    if defects.len() > MAX_DEFECTS {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("a visit records at most {MAX_DEFECTS} defects")));
    }
    if defects.iter().any(|d| d.chars().count() > 2_000) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a defect is said in at most 2,000 characters".into()));
    }
    if serde_json::to_string(&answers).map_or(0, |t| t.len()) > 64 * 1024 {
        return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, "a visit's answers take at most 64 KiB".into()));
    }
    if signed.as_ref().is_some_and(|x| x.name.chars().count() > 200) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a signer's name has at most 200 characters".into()));
    }
    crate::schedule::complete(&s.store, &s.fleet, id, &p.name, answers, signed.as_ref(), s.clock.now()).await?;
    let made = record_defects(s, p, &w, defects).await;
    // The report owes the customer what the visit found, its repair tasks too.
    crate::schedule::report_visit(&s.store, &s.fleet, id, s.clock.now()).await?;
    made
}

/// Opens a repair task for each defect visit `w` found, and keeps them on the visit.
async fn record_defects(
    s: &AppState,
    p: &Principal,
    w: &crate::store::WorkOrder,
    defects: Vec<String>,
) -> Result<(), ApiError> {
    let id = w.id;
    if defects.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::new();
    for text in defects {
        let b = super::tickets::NewTicket {
            channel: "visit".into(),
            category: "request".into(),
            customer: Some(w.customer.clone()),
            site: Some(w.site.clone()),
            device: Some(w.device.clone()).filter(|d| !d.is_empty()),
            contract: Some(w.contract.clone()),
            problem: format!("defect found on visit #{id} ({}): {text}", w.plan),
            ..super::tickets::NewTicket::default()
        };
        // The visit is done; a task that cannot be opened is kept without its ticket and logged.
        let ticket = match super::tickets::report(s, p, b).await {
            Ok((t, _, _)) => Some(t.id.0),
            Err(e) => {
                tracing::warn!(work_order = id, error = %e.parts().1, "a defect's repair task could not be opened");
                None
            }
        };
        kept.push(crate::store::Defect { text, ticket });
    }
    s.store.set_defects(id, &kept).await?;
    Ok(())
}

/// One work order, with the checklist items the telemetry answers pre-filled (`measured`).
#[utoipa::path(get, path = "/api/v1/work-orders/{id}", tag = "work orders", params(("id" = i64, Path)), responses(
    (status = 200, body = WorkOrderView),
    (status = 404, description = "No such work order (or not one of the user's customers')", body = super::ErrorBody),
))]
async fn get_work_order(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = work_order_id(&id)?;
    Ok(Json(view(&s, &p, id).await?).into_response())
}

/// Starts a visit, the signed-in user on site: new tickets of the device are silenced until
/// it is done.
#[utoipa::path(post, path = "/api/v1/work-orders/{id}/start", tag = "work orders", params(("id" = i64, Path)), responses(
    (status = 200, description = "The work order as started", body = WorkOrderView),
    (status = 404, description = "No such work order (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "It cannot be started from its state", body = super::ErrorBody),
))]
async fn start_work_order(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = work_order_id(&id)?;
    start(&s, &p, id).await?;
    Ok(Json(view(&s, &p, id).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    /// Checklist item → answer (any JSON); at most 64 KiB.
    #[serde(default)]
    #[schema(value_type = Object)]
    answers: serde_json::Map<String, serde_json::Value>,
    /// Who signed for the visit on the customer's side; with `signature`.
    signed_by: Option<String>,
    /// The signature image, uploaded first to `POST /api/v1/work-orders/{id}/attachments?kind=signature`.
    signature: Option<i64>,
    /// Defects found (at most 20): each becomes a repair task, a ticket whose contract clock
    /// gives its completion date.
    #[serde(default)]
    defects: Vec<String>,
}

impl CompleteBody {
    fn signed(&self) -> Result<Option<crate::store::Signed>, ApiError> {
        match (&self.signed_by, self.signature) {
            (None, None) => Ok(None),
            (Some(name), Some(signature)) => {
                Ok(Some(crate::store::Signed { name: name.trim().to_string(), signature }))
            }
            _ => Err(ApiError(StatusCode::BAD_REQUEST, "`signed_by` and `signature` go together".into())),
        }
    }
}

/// Completes a visit with its checklist answers (every checklist item must be answered) and,
/// when the customer signed, who signed and the signature image.
#[utoipa::path(post, path = "/api/v1/work-orders/{id}/complete", tag = "work orders", params(("id" = i64, Path)),
    request_body = CompleteBody, responses(
    (status = 200, description = "The work order as done", body = WorkOrderView),
    (status = 400, description = "An item unanswered, or a signature that is not one of the visit's", body = super::ErrorBody),
    (status = 404, description = "No such work order (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "It is done already, or cannot be completed from its state", body = super::ErrorBody),
    (status = 413, description = "The answers are too long", body = super::ErrorBody),
))]
async fn complete_work_order(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<CompleteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = work_order_id(&id)?;
    let Json(b) = body?;
    let signed = b.signed()?;
    complete(&s, &p, id, b.answers, signed, b.defects).await?;
    Ok(Json(view(&s, &p, id).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AssignVisit {
    /// The engineer (or manager) to make the visit.
    assignee: String,
}

/// Gives a visit not yet done to an engineer; the helpdesk hears of it.
#[utoipa::path(post, path = "/api/v1/work-orders/{id}/assign", tag = "work orders", params(("id" = i64, Path)),
    request_body = AssignVisit, responses(
    (status = 200, description = "The work order as assigned", body = WorkOrderView),
    (status = 404, description = "No such work order (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "The visit is done", body = super::ErrorBody),
))]
async fn assign_work_order(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<AssignVisit>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = work_order_id(&id)?;
    let Json(b) = body?;
    let w = seen_work_order(&s, &p, id).await?;
    super::tickets::assignable(&s, &b.assignee, &w.customer).await?;
    if !s.store.assign_work_order(id, &b.assignee, &p.name, s.clock.now()).await? {
        return Err(ApiError(StatusCode::CONFLICT, format!("work order {id} is done")));
    }
    let mut r = get_work_order(State(s), Extension(p), Path(id.to_string())).await?;
    r.extensions_mut()
        .insert(super::guard::AuditNote { actor: None, detail: format!("work order {id} to {}", b.assignee) });
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct KindQuery {
    /// `photo` (the default) or `signature`.
    #[param(value_type = Option<String>)]
    kind: Option<String>,
}

/// Keeps a photo or the customer's signature (PNG, JPEG or WebP, at most 5 MiB; 50 a visit)
/// of a visit not yet done, sent as the request's body.
#[utoipa::path(post, path = "/api/v1/work-orders/{id}/attachments", tag = "work orders",
    params(("id" = i64, Path), KindQuery), request_body(content = Vec<u8>, content_type = "image/png"), responses(
    (status = 201, description = "The attachment as kept", body = crate::store::Attachment),
    (status = 400, description = "Not a PNG, JPEG or WebP image, or an unknown kind", body = super::ErrorBody),
    (status = 403, description = "Another engineer's visit", body = super::ErrorBody),
    (status = 404, description = "No such work order (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "The visit is done, or holds as many attachments as it may", body = super::ErrorBody),
    (status = 413, description = "Larger than 5 MiB", body = super::ErrorBody),
))]
async fn add_visit_attachment(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    q: Result<Query<KindQuery>, QueryRejection>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let id = work_order_id(&id)?;
    let Query(q) = q?;
    let kind = super::repairs::kind_of(q.kind.as_deref())?;
    let w = seen_work_order(&s, &p, id).await?;
    super::tickets::not_anothers(&p, w.assignee.as_deref())?;
    if w.state == crate::domain::VisitState::Done {
        return Err(ApiError(StatusCode::CONFLICT, format!("work order {id} is done")));
    }
    super::repairs::keep_image(&s, &p, crate::store::Owner::Visit(id), kind, body).await
}

/// A visit's photo or signature, as the image it is.
#[utoipa::path(get, path = "/api/v1/work-orders/{id}/attachments/{attachment}", tag = "work orders",
    params(("id" = i64, Path), ("attachment" = i64, Path)), responses(
    (status = 200, description = "The image", content_type = "image/png", body = Vec<u8>),
    (status = 404, description = "No such attachment on a visit the user sees", body = super::ErrorBody),
))]
async fn get_visit_attachment(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, attachment)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = work_order_id(&id)?;
    let w = seen_work_order(&s, &p, id).await?;
    super::repairs::image(&s, crate::store::Owner::Visit(w.id), &attachment).await
}

/// One site's share of a user's work.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct SiteWork {
    pub(super) site: String,
    /// Its open tickets, nearest deadline first.
    pub(super) tickets: Vec<crate::tickets::Ticket>,
    /// Its visits due today (the site's day) or overdue, not done.
    pub(super) visits: Vec<crate::store::WorkOrder>,
}

/// What a user has to do: its tickets still open and its visits due today or overdue, by site.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct MyWork {
    user: String,
    sites: Vec<SiteWork>,
}

/// The caller's work for today: the tickets assigned to it that are not resolved, and the
/// visits assigned to it that are due today or overdue, by site.
#[utoipa::path(get, path = "/api/v1/me/work", tag = "work orders", responses((status = 200, body = MyWork)))]
async fn my_work(State(s): State<AppState>, Extension(p): Extension<Principal>) -> Result<Response, ApiError> {
    let sites = work_of(&s, &p).await?;
    Ok(Json(MyWork { user: p.name, sites }).into_response())
}

/// `p`'s work for today, by site: its open tickets and its visits due today or overdue.
pub(super) async fn work_of(s: &AppState, p: &Principal) -> Result<Vec<SiteWork>, ApiError> {
    use crate::tickets::State as T;
    let now = s.clock.now();
    let f = crate::tickets::TicketFilter {
        assignee: Some(p.name.clone()),
        open: Some(true),
        by_deadline: true,
        limit: 1_000,
        ..Default::default()
    };
    let tickets: Vec<_> = s.store.tickets(&f).await?.into_iter().filter(|t| t.state != T::Resolved).collect();
    let f = crate::store::WorkOrderFilter { assignee: Some(p.name.clone()), ..Default::default() };
    let today = |site: &str| {
        s.fleet
            .sites
            .iter()
            .find(|x| x.id.as_str() == site)
            .map_or(now.date_naive(), |x| now.with_timezone(&x.utc_offset).date_naive())
    };
    let visits: Vec<_> = s
        .store
        .work_orders(&f, 1_000)
        .await?
        .into_iter()
        .filter(|w| w.state != crate::domain::VisitState::Done && w.due_on <= today(&w.site))
        .collect();
    let mut sites: Vec<SiteWork> = Vec::new();
    fn at<'a>(sites: &'a mut Vec<SiteWork>, site: &str) -> &'a mut SiteWork {
        let i = sites.iter().position(|x| x.site == site).unwrap_or_else(|| {
            sites.push(SiteWork { site: site.to_string(), tickets: Vec::new(), visits: Vec::new() });
            sites.len() - 1
        });
        &mut sites[i]
    }
    for t in tickets {
        at(&mut sites, t.site.as_str()).tickets.push(t);
    }
    for w in visits {
        at(&mut sites, &w.site).visits.push(w);
    }
    Ok(sites)
}
