//! Tickets: lists, one ticket with its timeline, transitions by people.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::domain::{TicketId, Tier};
use crate::store::{TransitionFailure, TransitionOptions};
use crate::tickets::State as TicketState;
use crate::tickets::model::TicketFilter;

use super::guard::Routes;
use super::{ApiError, AppState};
use crate::access::{Perm, Principal, Role};

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .get("/api/v1/tickets", Perm::ReadTickets, list_tickets)
        .post("/api/v1/tickets", Perm::OpenTickets, open_ticket)
        .get("/api/v1/tickets/{id}", Perm::ReadTickets, get_ticket)
        .post("/api/v1/tickets/{id}/transition", Perm::ActOnTickets, transition)
        .post("/api/v1/tickets/{id}/assign", Perm::Assign, assign)
        .post("/api/v1/tickets/{id}/comments", Perm::Comment, comment)
        .post("/api/v1/tickets/{id}/factory-arrival", Perm::ActOnTickets, factory_arrival)
        .get("/api/v1/complaints", Perm::ReadTickets, complaints)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TicketQuery {
    #[param(value_type = Option<TicketState>, inline)]
    state: Option<String>,
    /// Only open tickets (not resolved or closed), or only the others.
    open: Option<bool>,
    #[param(minimum = 1, maximum = 3)]
    tier: Option<u8>,
    device: Option<String>,
    /// A fault code.
    code: Option<String>,
    customer: Option<String>,
    site: Option<String>,
    /// A device kind.
    kind: Option<String>,
    /// Only tickets whose fault has cleared, or only the others.
    recovered: Option<bool>,
    /// Only the tickets of this user (`me`: the caller's).
    assignee: Option<String>,
    #[param(value_type = Option<crate::tickets::intake::Category>, inline)]
    category: Option<String>,
    #[param(value_type = Option<crate::tickets::intake::Channel>, inline)]
    channel: Option<String>,
    /// Only tickets with a contract clock that ran out (true), or with none (false).
    breached: Option<bool>,
    /// Only tickets whose next deadline falls within this long from now, overdue ones
    /// included: `1h`, `30m`, `2d`.
    due_within: Option<String>,
    /// `newest` (default) or `due`: the nearest deadline first, those with none last.
    #[param(value_type = Option<TicketSort>, inline)]
    sort: Option<String>,
    /// At most this many (default 500, at most 10,000).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Tickets, newest first, of the customers the user sees.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", params(TicketQuery),
    responses((status = 200, body = Vec<crate::tickets::Ticket>)))]
async fn list_tickets(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<TicketQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let filter = TicketFilter {
        state: q.state.as_deref().map(str::parse::<TicketState>).transpose().map_err(bad)?,
        open: q.open,
        tier: match q.tier {
            Some(t) => Some(Tier::from_number(t as i64).ok_or_else(|| bad("tier must be 1, 2 or 3".into()))?),
            None => None,
        },
        device: q.device,
        code: q.code,
        customer: q.customer,
        customers: p.scope.list(),
        site: q.site,
        kind: q.kind,
        recovered: q.recovered,
        assignee: q.assignee.map(|a| if a == "me" { p.name.clone() } else { a }),
        category: super::one_of(
            q.category.as_deref(),
            "category",
            crate::tickets::intake::Category::parse,
            "fault, request, question or complaint",
        )?,
        channel: super::one_of(
            q.channel.as_deref(),
            "channel",
            crate::tickets::intake::Channel::parse,
            "sensor, phone, web, email, visit or helpdesk",
        )?,
        breached: q.breached,
        due_before: match q.due_within.as_deref() {
            Some(w) => {
                let d = humantime::parse_duration(w)
                    .ok()
                    .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                    .filter(|d| *d <= chrono::TimeDelta::days(3660))
                    .ok_or_else(|| bad(format!("due_within `{w}`: write a duration such as 1h or 2d")))?;
                Some(s.clock.now() + d)
            }
            None => None,
        },
        by_deadline: super::one_of(q.sort.as_deref(), "sort", TicketSort::parse, "newest or due")?
            == Some(TicketSort::Due),
        opened: None,
        limit: q.limit.unwrap_or(500).clamp(1, 10_000),
        offset: q.offset.unwrap_or(0),
    };
    Ok(Json(s.store.tickets(&filter).await?).into_response())
}

/// Who reported a ticket.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReporterBody {
    #[serde(default)]
    #[schema(max_length = 200)]
    pub(super) name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub(super) phone: String,
}

/// A person's report.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTicket {
    /// How it came in (a customer's own request is `web`).
    #[schema(value_type = crate::tickets::intake::Channel)]
    pub(super) channel: String,
    #[schema(value_type = crate::tickets::intake::Category)]
    pub(super) category: String,
    /// Default: the device's customer, or the user's only one.
    pub(super) customer: Option<String>,
    /// Default: the device's site, or the customer's only one.
    pub(super) site: Option<String>,
    /// The device the report is about, if it names one.
    pub(super) device: Option<String>,
    /// One of the device kind's fault codes: the report is that fault's ticket, and joins it if it is open.
    pub(super) code: Option<String>,
    /// Set by the desk (not by a customer); default: the fault's tier, else 2 for a fault or a complaint, 3 otherwise.
    #[schema(minimum = 1, maximum = 3)]
    pub(super) tier: Option<u8>,
    /// The contract to run, for a report about a site whose customer has several.
    pub(super) contract: Option<String>,
    /// A complaint's grade: general (default) or major (tier 1, escalated as such).
    #[schema(value_type = Option<crate::tickets::intake::Grade>)]
    pub(super) grade: Option<String>,
    #[serde(default)]
    pub(super) reporter: ReporterBody,
    /// The problem in the reporter's own words (at most 4,000 characters).
    #[schema(min_length = 1, max_length = 4000)]
    pub(super) problem: String,
}

/// Opens a ticket a person reports (a call, a letter, a visit, a customer's own request): it
/// runs the governing contract's clocks, escalations and helpdesk delivery as a sensor's does.
/// A report that names a device's fault whose ticket is open is added to that ticket instead.
#[utoipa::path(post, path = "/api/v1/tickets", tag = "tickets", request_body = NewTicket, responses(
    (status = 201, description = "A new ticket", body = crate::tickets::Ticket),
    (status = 200, description = "The report was added to the ticket open for the same fault", body = crate::tickets::Ticket),
    (status = 403, description = "A customer's user set the tier or a channel other than web", body = super::ErrorBody),
    (status = 404, description = "The device or customer is not one of the user's", body = super::ErrorBody),
))]
async fn open_ticket(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<NewTicket>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let (ticket, new, what) = report(&s, &p, b).await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    let mut resp = (status, Json(ticket)).into_response();
    resp.extensions_mut().insert(super::guard::AuditNote { actor: None, detail: what });
    Ok(resp)
}

/// Takes a person's report as `p`, by the API's rules (the console's form too): the ticket,
/// whether it is new, and what happened, for the audit line.
pub(super) async fn report(
    s: &AppState,
    p: &Principal,
    b: NewTicket,
) -> Result<(crate::tickets::Ticket, bool, String), ApiError> {
    use crate::tickets::intake::{Category, Channel, Report};
    let (s, p) = (s.clone(), p.clone());
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let channel = Channel::read(&b.channel).map_err(bad)?;
    let category = Category::read(&b.category).map_err(bad)?;
    let tier = match b.tier {
        Some(t) => Some(Tier::from_number(i64::from(t)).ok_or_else(|| bad("tier must be 1, 2 or 3".into()))?),
        None => None,
    };
    if p.role == crate::access::Role::Customer && (tier.is_some() || channel != Channel::Web) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "a customer's request comes by web, and the desk sets its tier".into(),
        ));
    }
    // Outside the user's customers, a device or customer is one that does not exist.
    let mut customer = b.customer;
    if let Some(d) = b.device.as_deref().and_then(|d| s.fleet.lookup(d)).map(|i| s.fleet.device(i)) {
        if !p.scope.sees(d.customer.as_str()) {
            return Err(ApiError(StatusCode::NOT_FOUND, format!("no device `{}`", d.id)));
        }
    } else if b.device.is_none() {
        customer = super::scoped_customer(&p, customer)?;
    }
    let r = Report {
        channel,
        category,
        customer,
        site: b.site,
        device: b.device,
        code: b.code,
        tier,
        contract: b.contract,
        grade: super::one_of(b.grade.as_deref(), "grade", crate::tickets::intake::Grade::parse, "general or major")?,
        reporter_name: b.reporter.name,
        reporter_phone: b.reporter.phone,
        problem: b.problem,
    };
    let now = s.clock.now();
    let i = crate::tickets::intake::intake(&s.fleet, &r, now).map_err(bad)?;
    let (id, new) = s.store.take_report(&i, &p.name, now).await?;
    let ticket = seen_ticket(&s, &p, id).await?;
    let what = if new { "opened" } else { "added to" };
    Ok((ticket, new, format!("{category} by {channel} {what} ticket {id}")))
}

crate::domain::named! {
    /// The order of a ticket list.
    enum TicketSort {
        Newest = "newest",
        /// The nearest deadline first.
        Due = "due",
    }
}

pub(super) fn ticket_id(raw: &str) -> Result<TicketId, ApiError> {
    raw.parse::<i64>()
        .map(TicketId)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{raw}` is not a ticket id; ids are numbers")))
}

/// Ticket `id` if `p` may see it; else 404, as for a ticket that does not exist.
pub(super) async fn seen_ticket(s: &AppState, p: &Principal, id: TicketId) -> Result<crate::tickets::Ticket, ApiError> {
    match s.store.ticket(id).await? {
        Some(t) if p.scope.sees(t.customer.as_str()) => with_record(s, t).await,
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no ticket {id}"))),
    }
}

/// A ticket as people are answered with it: with its repair record and attachments, which
/// the store's own readers (the relay, the helpdesk polls) do without.
async fn with_record(s: &AppState, mut t: crate::tickets::Ticket) -> Result<crate::tickets::Ticket, ApiError> {
    t.repair = s.store.repair(t.id.0).await?;
    t.attachments = Some(s.store.attachments(t.id.0).await?);
    crate::tickets::clocks::fill_stages(&mut t, &s.fleet.contracts, s.clock.now());
    Ok(t)
}

/// One ticket, with its timeline.
#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "tickets", params(("id" = i64, Path)), responses(
    (status = 200, body = crate::tickets::Ticket),
    (status = 404, description = "No such ticket (or not one of the user's customers')", body = super::ErrorBody),
))]
async fn get_ticket(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    let mut t = seen_ticket(&s, &p, id).await?;
    // Internal comments are the service team's.
    if p.role == Role::Customer
        && let Some(lines) = &mut t.timeline
    {
        lines.retain(|l| !l.internal);
    }
    if p.role != Role::Customer || t.repair.is_none() {
        return Ok(Json(t).into_response());
    }
    // What a repair cost the supplier is the supplier's: the customer sees what it is charged.
    let mut v = serde_json::to_value(&t).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let Some(r) = v.get_mut("repair") {
        if let Some(c) = r.get_mut("charge").and_then(|c| c.as_object_mut()) {
            c.retain(|k, _| k == "charged");
        }
        if let Some(rec) = r.get_mut("record").and_then(|x| x.as_object_mut()) {
            rec.remove("labour_cost");
            rec.remove("travel_cost");
            for part in rec.get_mut("parts").and_then(|x| x.as_array_mut()).into_iter().flatten() {
                if let Some(part) = part.as_object_mut() {
                    part.remove("unit_cost");
                }
            }
        }
    }
    Ok(Json(v).into_response())
}

/// An engineer works on its own tickets and visits, and on those nobody has: another's is 403.
pub(super) fn not_anothers(p: &Principal, assignee: Option<&str>) -> Result<(), ApiError> {
    match assignee {
        Some(a) if p.role == Role::Engineer && a != p.name => {
            Err(ApiError(StatusCode::FORBIDDEN, format!("this is {a}'s; the desk reassigns it")))
        }
        _ => Ok(()),
    }
}

/// `name` if it may be given a ticket or a visit of `customer`: an enabled engineer, manager or
/// admin who sees that customer; else 400 saying why.
pub(super) async fn assignable(s: &AppState, name: &str, customer: &str) -> Result<(), ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let u = s.store.user(name).await?.ok_or_else(|| bad(format!("no user `{name}`")))?;
    if u.disabled {
        return Err(bad(format!("user `{name}` is disabled")));
    }
    if !matches!(u.role, Role::Engineer | Role::Manager | Role::Admin) {
        return Err(bad(format!("`{name}` is a {}; tickets and visits go to engineers and managers", u.role)));
    }
    if !u.customers.is_empty() && !u.customers.iter().any(|c| c == customer) {
        return Err(bad(format!("`{name}` does not serve customer {customer}")));
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    /// The engineer (or manager) to work on it; `null`: nobody.
    assignee: Option<String>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    note: String,
}

/// Gives a ticket to an engineer (or takes it back), with a timeline line that goes to the helpdesk.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/assign", tag = "tickets", params(("id" = i64, Path)),
    request_body = AssignBody, responses(
    (status = 200, description = "The ticket as assigned", body = crate::tickets::Ticket),
    (status = 404, description = "No such ticket (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "The ticket is closed or cancelled", body = super::ErrorBody),
    (status = 413, description = "The note is too long", body = super::ErrorBody),
))]
async fn assign(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    let Json(b) = body?;
    let t = seen_ticket(&s, &p, id).await?;
    if let Some(a) = &b.assignee {
        assignable(&s, a, t.customer.as_str()).await?;
    }
    if !s.store.assign(id, b.assignee.as_deref(), &p.name, note(&b.note)?, s.clock.now()).await? {
        return Err(ApiError(StatusCode::CONFLICT, format!("ticket {id} is {}; it goes to nobody", t.state)));
    }
    let mut r = Json(seen_ticket(&s, &p, id).await?).into_response();
    let to = b.assignee.as_deref().unwrap_or("nobody");
    r.extensions_mut().insert(super::guard::AuditNote { actor: None, detail: format!("ticket {id} to {to}") });
    Ok(r)
}

/// Comments on ticket `id` as `p`, by the API's rules (the console's forms too).
pub(super) async fn comment_on(
    s: &AppState,
    p: &Principal,
    id: TicketId,
    text: &str,
    internal: bool,
) -> Result<(), ApiError> {
    seen_ticket(s, p, id).await?;
    if internal && p.role == Role::Customer {
        return Err(ApiError(StatusCode::FORBIDDEN, "a customer's comments are for the service team to read".into()));
    }
    let text = note(text)?.trim();
    if text.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "a comment has some text".into()));
    }
    if !s.store.comment(id, &p.name, text, internal, s.clock.now()).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no ticket {id}")));
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    #[schema(min_length = 1, max_length = 4000)]
    text: String,
    /// For the service team alone (not for a customer's user, whose comments the customer sees).
    #[serde(default)]
    internal: bool,
}

/// Comments on a ticket: a timeline line that goes to the helpdesk (an internal one as a
/// private note) and that a customer's user sees unless it is internal.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/comments", tag = "tickets", params(("id" = i64, Path)),
    request_body = CommentBody, responses(
    (status = 201, description = "The ticket with the comment", body = crate::tickets::Ticket),
    (status = 403, description = "A customer's user made an internal comment", body = super::ErrorBody),
    (status = 404, description = "No such ticket (or not one of the user's customers')", body = super::ErrorBody),
    (status = 413, description = "The comment is too long", body = super::ErrorBody),
))]
async fn comment(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<CommentBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    let Json(b) = body?;
    comment_on(&s, &p, id, &b.text, b.internal).await?;
    let mut r = (StatusCode::CREATED, Json(seen_ticket(&s, &p, id).await?)).into_response();
    let kind = if b.internal { "internal comment" } else { "comment" };
    r.extensions_mut().insert(super::guard::AuditNote { actor: None, detail: format!("{kind} on ticket {id}") });
    Ok(r)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TransitionBody {
    /// The state to move to; the role decides which it may.
    #[schema(value_type = TicketState)]
    pub(super) to: String,
    /// Why, for the timeline and the helpdesk (at most 4,000 characters).
    #[serde(default)]
    pub(super) note: String,
    /// Makes the repair billable for this cause; it must be one the ticket's contract names.
    pub(super) billable: Option<String>,
    /// Resolves a ticket whose fault is still active (with a note saying why).
    #[serde(default)]
    pub(super) force: bool,
    /// The resolution replaced the unit: failed repairs count afresh.
    #[serde(default)]
    pub(super) unit_replaced: bool,
    /// Gives the ticket to this engineer first (a dispatch names who goes).
    pub(super) assignee: Option<String>,
    /// The repair record, kept with the move (see `PUT /api/v1/tickets/{id}/repair`). Resolving an
    /// on-site repair needs what its contract's `repair_requires` names, here or recorded before.
    pub(super) repair: Option<crate::tickets::repair::RepairRecord>,
    /// With `to = at_factory`: the factory's return number or the carrier's waybill (at most 100 characters).
    pub(super) factory_ref: Option<String>,
    /// An appraisal found the component's life abnormally short (001 ¶18): the repair is free.
    /// Only for a ticket whose warranty names a normal life not yet reached (`short_life_until`),
    /// by a manager (or an admin, or a script), with a note naming the appraisal.
    #[serde(default)]
    pub(super) short_life: bool,
}

/// The longest factory return number taken, in characters.
const MAX_FACTORY_REF: usize = 100;

/// The unit of a ticket sent to the factory reached it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ArrivalBody {
    /// When it arrived (the factory's receipt); now when left out. Not in the future, nor
    /// before the unit was sent.
    at: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// What the factory said (at most 4,000 characters).
    #[serde(default)]
    note: String,
}

/// Records the arrival at the factory of a ticket's unit (`at_factory`): the contract's
/// `factory` clock runs from here (002 L108 "设备到工厂后,返修期不超过5个工作日"). Once a trip.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/factory-arrival", tag = "tickets", params(("id" = i64, Path)),
    request_body = ArrivalBody, responses(
    (status = 200, description = "The ticket with its factory trip and clocks", body = crate::tickets::Ticket),
    (status = 400, description = "An arrival in the future", body = super::ErrorBody),
    (status = 403, description = "The role does not send units to the factory", body = super::ErrorBody),
    (status = 404, description = "No such ticket (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "The ticket is not at the factory, its arrival is recorded, or it is before the unit was sent", body = super::ErrorBody),
    (status = 413, description = "The note is too long", body = super::ErrorBody),
))]
async fn factory_arrival(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<ArrivalBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    let Json(b) = body?;
    let t = arrived_at_factory(&s, &p, id, b.at.map(|t| t.to_utc()), &b.note).await?;
    Ok(Json(t).into_response())
}

/// Records as `p` that ticket `id`'s unit reached the factory at `at` (now when `None`), by the
/// API's rules (the console's form too); the ticket as answered.
pub(super) async fn arrived_at_factory(
    s: &AppState,
    p: &Principal,
    id: TicketId,
    at: Option<chrono::DateTime<chrono::Utc>>,
    text: &str,
) -> Result<crate::tickets::Ticket, ApiError> {
    let ticket = seen_ticket(s, p, id).await?;
    if !crate::access::may_move_to(p.role, TicketState::AtFactory) {
        return Err(ApiError(StatusCode::FORBIDDEN, format!("a {} does not send units to the factory", p.role)));
    }
    not_anothers(p, ticket.assignee.as_deref())?;
    let now = s.clock.now();
    let at = at.unwrap_or(now);
    if at > now {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("the arrival {} is in the future", at.to_rfc3339())));
    }
    let t = s.store.factory_arrived(id, at, &p.name, note(text)?, now).await.map_err(failure)?;
    with_record(s, t).await
}

/// The longest note or comment taken, in characters.
pub(super) const MAX_NOTE: usize = 4_000;

/// A note as given, or 413 if it is too long.
pub(super) fn note(text: &str) -> Result<&str, ApiError> {
    if text.chars().count() > MAX_NOTE {
        return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("a note has at most {MAX_NOTE} characters")));
    }
    Ok(text)
}

/// Moves a ticket, as the signed-in user: the role decides which states it may move it to.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/transition", tag = "tickets", params(("id" = i64, Path)),
    request_body = TransitionBody, responses(
    (status = 200, description = "The ticket as moved", body = crate::tickets::Ticket),
    (status = 403, description = "The role may not move a ticket to that state", body = super::ErrorBody),
    (status = 404, description = "No such ticket (or not one of the user's customers')", body = super::ErrorBody),
    (status = 400, description = "The repair record makes no sense, or lacks what the contract requires on resolve", body = super::ErrorBody),
    (status = 409, description = "The move is refused from the ticket's state, or billing does not apply", body = super::ErrorBody),
    (status = 413, description = "The note is too long", body = super::ErrorBody),
))]
async fn transition(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<TransitionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    let Json(b) = body?;
    Ok(Json(act(&s, &p, id, b).await?).into_response())
}

/// Moves ticket `id` as `p`, by the API's rules (the console's forms too); the ticket as moved.
pub(super) async fn act(
    s: &AppState,
    p: &Principal,
    id: TicketId,
    b: TransitionBody,
) -> Result<crate::tickets::Ticket, ApiError> {
    let (s, p) = (s.clone(), p.clone());
    let to: TicketState = b.to.parse().map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let ticket = seen_ticket(&s, &p, id).await?;
    if !crate::access::may_move_to(p.role, to) {
        return Err(ApiError(StatusCode::FORBIDDEN, format!("a {} may not move a ticket to {to}", p.role)));
    }
    not_anothers(&p, ticket.assignee.as_deref())?;
    if let Some(a) = &b.assignee {
        if !p.may(Perm::Assign) {
            return Err(ApiError(StatusCode::FORBIDDEN, format!("a {} does not assign tickets", p.role)));
        }
        assignable(&s, a, ticket.customer.as_str()).await?;
        if !s.store.assign(id, Some(a), &p.name, "", s.clock.now()).await? {
            return Err(ApiError(StatusCode::CONFLICT, format!("ticket {id} is {}", ticket.state)));
        }
    }
    let text = note(&b.note)?;
    match &b.factory_ref {
        Some(_) if to != TicketState::AtFactory => {
            return Err(ApiError(StatusCode::BAD_REQUEST, "factory_ref goes with to = at_factory".into()));
        }
        Some(r) if r.chars().count() > MAX_FACTORY_REF || r.chars().any(char::is_control) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("factory_ref: one line of at most {MAX_FACTORY_REF} characters"),
            ));
        }
        _ => {}
    }
    if b.short_life {
        if !matches!(p.role, Role::Admin | Role::Manager | Role::Integration) {
            return Err(ApiError(StatusCode::FORBIDDEN, format!("a {} does not make repairs free", p.role)));
        }
        let free = crate::tickets::model::BillingClass::Free;
        if b.billable.is_some() || b.repair.as_ref().and_then(|r| r.billing).is_some_and(|c| c != free) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "short_life makes a repair free; it goes without billable or a charged record".into(),
            ));
        }
        if ticket.warranty.as_ref().and_then(|w| w.short_life_until).is_none() {
            return Err(ApiError(
                StatusCode::CONFLICT,
                "no short-life claim: the component is in warranty, past its normal life, or its contract names none"
                    .into(),
            ));
        }
        if text.trim().is_empty() {
            return Err(ApiError(StatusCode::BAD_REQUEST, "short_life needs a note naming the appraisal".into()));
        }
    }
    let mut at_cost = false;
    if let Some(cause) = &b.billable {
        let contract = ticket.clock.contract.as_deref().and_then(|c| s.fleet.contracts.iter().find(|k| k.id == c));
        match contract {
            Some(c) if c.billable.iter().any(|b| b == cause) => at_cost = c.at_cost.iter().any(|x| x == cause),
            Some(c) => {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    format!("contract {} does not make `{cause}` billable; it names: {}", c.id, c.billable.join(", ")),
                ));
            }
            None => {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    "no contract governs this ticket, so nothing makes it billable".into(),
                ));
            }
        }
    }
    // Who pays once this move stands, when the move itself decides it.
    let class_now = {
        use crate::tickets::model::BillingClass as B;
        match (b.short_life, &b.billable) {
            (true, _) => Some(B::Free),
            (false, Some(_)) => Some(if at_cost { B::BillableAtCost } else { B::Billable }),
            (false, None) => None,
        }
    };
    if to == TicketState::Resolved {
        let kept = ticket.repair.as_ref().map(|r| &r.record);
        super::repairs::required(&s, &ticket, b.repair.as_ref().or(kept), class_now)?;
    }
    let prepared = match &b.repair {
        Some(_) if !p.may(Perm::Repair) => {
            return Err(ApiError(StatusCode::FORBIDDEN, format!("a {} does not write repair records", p.role)));
        }
        Some(r) => Some(super::repairs::prepare(&s, &ticket, r, class_now).await?),
        None => None,
    };
    let opts = TransitionOptions {
        billable: b.billable.as_deref(),
        at_cost,
        force: b.force,
        unit_replaced: b.unit_replaced,
        factory_ref: b.factory_ref.as_deref().map(str::trim).filter(|r| !r.is_empty()),
        short_life: b.short_life,
    };
    let moved = s.store.transition_with(id, to, &p.name, text, s.clock.now(), opts).await;
    // The record is kept once the move stands: a refused move keeps nothing.
    if moved.is_ok()
        && let (Some(r), Some(prepared)) = (&b.repair, prepared)
    {
        super::repairs::keep(&s, &p, &ticket, r, prepared).await?;
        return seen_ticket(&s, &p, id).await;
    }
    with_record(&s, moved.map_err(failure)?).await
}

/// The answer to a transition: the ticket, 404, 409 with the reason, or 503.
pub(super) fn transitioned(r: Result<crate::tickets::Ticket, TransitionFailure>) -> Result<Response, ApiError> {
    r.map(|t| Json(t).into_response()).map_err(failure)
}

/// A refused transition as an answer: 404, 409 with the reason, or 503.
fn failure(e: TransitionFailure) -> ApiError {
    match e {
        TransitionFailure::NotFound(id) => ApiError(StatusCode::NOT_FOUND, format!("no ticket {id}")),
        e @ (TransitionFailure::Refused(_) | TransitionFailure::Conflict(_)) => {
            ApiError(StatusCode::CONFLICT, e.to_string())
        }
        TransitionFailure::Store(e) => e.into(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ComplaintQuery {
    /// Default: every customer the user sees (a user of several names one).
    customer: Option<String>,
    /// RFC 3339 time or a date; default: 30 days before `to`.
    from: Option<String>,
    /// RFC 3339 time or a date (exclusive); default: now.
    to: Option<String>,
}

/// One line of the complaint ledger.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct ComplaintLine {
    ticket: i64,
    opened_at: chrono::DateTime<chrono::Utc>,
    customer: String,
    site: String,
    grade: Option<crate::tickets::intake::Grade>,
    tier: Tier,
    state: TicketState,
    reporter: Option<crate::tickets::model::Reporter>,
    problem: Option<String>,
    assignee: Option<String>,
    /// The visit in person that follows it.
    follow_up: Option<FollowUp>,
    /// What the customer was answered: the note of its resolution.
    outcome: Option<String>,
    resolved_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct FollowUp {
    work_order: i64,
    state: crate::domain::VisitState,
    due_on: chrono::NaiveDate,
}

/// A period's complaints in figures.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
struct ComplaintSummary {
    total: usize,
    general: usize,
    major: usize,
    /// Resolved or closed, with their outcome.
    answered: usize,
    open: usize,
    /// Follow-up visits made.
    visited: usize,
    /// Mean hours from the complaint to its resolution, over the answered ones.
    mean_hours_to_answer: Option<f64>,
}

/// The complaint ledger of a period.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct ComplaintLedger {
    customer: Option<String>,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    summary: ComplaintSummary,
    complaints: Vec<ComplaintLine>,
}

/// The complaint ledger (003): every complaint of a period with its grade, follow-up visit
/// and outcome, oldest first, and a summary.
#[utoipa::path(get, path = "/api/v1/complaints", tag = "tickets", params(ComplaintQuery), responses(
    (status = 200, body = ComplaintLedger),
    (status = 404, description = "Not one of the user's customers", body = super::ErrorBody),
))]
async fn complaints(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<ComplaintQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let (customer, from, to) = super::customer_period(&s, &p, q.customer, q.from.as_deref(), q.to.as_deref())?;
    let f = TicketFilter {
        customer: customer.clone(),
        customers: p.scope.list(),
        category: Some(crate::tickets::intake::Category::Complaint),
        opened: Some((from, to)),
        limit: 10_000,
        ..Default::default()
    };
    let mut found = s.store.tickets(&f).await?;
    found.reverse();
    let outcomes = s.store.resolution_notes(&found.iter().map(|t| t.id).collect::<Vec<_>>()).await?;
    let visits = s
        .store
        .work_orders(
            &crate::store::WorkOrderFilter {
                kind: Some(crate::domain::VisitKind::FollowUp),
                customer: customer.clone(),
                ..Default::default()
            },
            10_000,
        )
        .await?;
    let mut summary = ComplaintSummary::default();
    let mut hours = Vec::new();
    let mut lines = Vec::with_capacity(found.len());
    for full in found {
        let outcome = outcomes.get(&full.id.0).cloned();
        let follow_up = visits
            .iter()
            .find(|w| w.ticket_id == Some(full.id.0) && w.plan.starts_with("complaint"))
            .map(|w| FollowUp { work_order: w.id, state: w.state, due_on: w.due_on });
        summary.total += 1;
        match full.complaint_grade {
            Some(crate::tickets::intake::Grade::Major) => summary.major += 1,
            _ => summary.general += 1,
        }
        if matches!(full.state, TicketState::Resolved | TicketState::Closed) {
            summary.answered += 1;
            if let Some(r) = full.resolved_at {
                hours.push((r - full.opened_at).num_seconds() as f64 / 3600.0);
            }
        } else if !full.state.is_terminal() {
            summary.open += 1;
        }
        if follow_up.as_ref().is_some_and(|v| v.state == crate::domain::VisitState::Done) {
            summary.visited += 1;
        }
        lines.push(ComplaintLine {
            ticket: full.id.0,
            opened_at: full.opened_at,
            customer: full.customer.0.clone(),
            site: full.site.0.clone(),
            grade: full.complaint_grade,
            tier: full.tier,
            state: full.state,
            reporter: full.reporter.clone(),
            problem: full.problem.clone(),
            assignee: full.assignee.clone(),
            follow_up,
            outcome,
            resolved_at: full.resolved_at,
        });
    }
    summary.mean_hours_to_answer = (!hours.is_empty()).then(|| hours.iter().sum::<f64>() / hours.len() as f64);
    Ok(Json(ComplaintLedger { customer, from, to, summary, complaints: lines }).into_response())
}
