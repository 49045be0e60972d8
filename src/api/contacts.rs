//! The contact register (003): every call, letter or visit is registered with who made it,
//! where, their phone, the purchase date and the problem, whether or not it becomes a ticket,
//! and must be answered within 24 hours.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::guard::{AuditNote, Routes};
use super::tickets::{note, seen_ticket};
use super::{ApiError, AppState};
use crate::access::{Perm, Principal};
use crate::store::{Contact, ContactFilter, NewContact};
use crate::tickets::intake::Channel;

/// How long a contact may wait for its answer (003: 24 hours, round the clock).
pub(crate) const ANSWER_WITHIN: chrono::TimeDelta = chrono::TimeDelta::hours(24);

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .post("/api/v1/contacts", Perm::Contacts, register)
        .get("/api/v1/contacts", Perm::Contacts, list)
        .post("/api/v1/contacts/{id}/answer", Perm::Contacts, answer)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewContactBody {
    #[schema(value_type = Channel)]
    channel: String,
    /// The customer, when the caller is one's.
    customer: Option<String>,
    #[serde(default)]
    #[schema(max_length = 200)]
    name: String,
    #[serde(default)]
    #[schema(max_length = 400)]
    address: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    phone: String,
    /// When the equipment was bought.
    purchase_date: Option<chrono::NaiveDate>,
    /// What they said (at most 4,000 characters).
    #[schema(min_length = 1, max_length = 4000)]
    problem: String,
    /// The ticket it became, if it did.
    ticket: Option<i64>,
}

/// Registers a contact; its answer is due within 24 hours.
#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", request_body = NewContactBody, responses(
    (status = 201, body = Contact),
    (status = 404, description = "The customer or ticket is not one of the user's", body = super::ErrorBody),
    (status = 413, description = "The problem is too long", body = super::ErrorBody),
))]
async fn register(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<NewContactBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let channel = Channel::parse(&b.channel)
        .filter(|c| *c != Channel::Sensor)
        .ok_or_else(|| bad(format!("channel `{}`: write phone, web, email, visit or helpdesk", b.channel)))?;
    let problem = note(&b.problem)?.trim();
    if problem.is_empty() {
        return Err(bad("say what the contact was about: `problem`".into()));
    }
    for (field, text, max) in [("name", &b.name, 200), ("address", &b.address, 400), ("phone", &b.phone, 200)] {
        crate::tickets::intake::short_text(field, text, max).map_err(bad)?;
    }
    // A user of some customers registers theirs; a customer unknown or outside them is 404.
    let customer = match (&b.customer, p.scope.customers()) {
        (None, Some(_)) => super::scoped_customer(&p, None)?,
        (c, _) => c.clone(),
    };
    if let Some(c) = &customer
        && (!p.scope.sees(c) || !s.fleet.customers.iter().any(|k| k.id.as_str() == c))
    {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no customer `{c}`")));
    }
    if let Some(t) = b.ticket {
        seen_ticket(&s, &p, crate::domain::TicketId(t)).await?;
    }
    let now = s.clock.now();
    let id = s
        .store
        .add_contact(&NewContact {
            at: now,
            channel,
            customer: customer.as_deref(),
            name: b.name.trim(),
            address: b.address.trim(),
            phone: b.phone.trim(),
            purchase_date: b.purchase_date,
            problem,
            taken_by: &p.name,
            answer_by: now + ANSWER_WITHIN,
            ticket_id: b.ticket,
        })
        .await?;
    let c =
        s.store.contact(id, now).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no contact {id}")))?;
    let mut r = (StatusCode::CREATED, Json(c)).into_response();
    r.extensions_mut().insert(AuditNote { actor: None, detail: format!("contact {id} by {channel}") });
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ContactQuery {
    /// Only those not answered yet (nearest deadline first), or only the answered ones.
    unanswered: Option<bool>,
    /// Only those answered late or overdue (true), or the others.
    breached: Option<bool>,
    customer: Option<String>,
    /// At most this many (default 500).
    limit: Option<i64>,
}

/// The register: newest first, or with `unanswered=true` the ones waiting, nearest deadline first.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", params(ContactQuery), responses(
    (status = 200, body = Vec<Contact>),
    (status = 404, description = "Not one of the user's customers", body = super::ErrorBody),
))]
async fn list(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<ContactQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    if let Some(c) = &q.customer
        && !p.scope.sees(c)
    {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no customer `{c}`")));
    }
    let f = ContactFilter {
        unanswered: q.unanswered,
        breached: q.breached,
        customer: q.customer,
        customers: p.scope.list(),
        limit: q.limit.unwrap_or(500),
        ..ContactFilter::default()
    };
    Ok(Json(s.store.contacts(&f, s.clock.now()).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    /// What they were told.
    #[schema(min_length = 1, max_length = 4000)]
    answer: String,
    /// The ticket it became, if it did.
    ticket: Option<i64>,
}

/// Answers a contact: who answered, when, and what; late if past its 24 hours.
#[utoipa::path(post, path = "/api/v1/contacts/{id}/answer", tag = "contacts", params(("id" = i64, Path)),
    request_body = AnswerBody, responses(
    (status = 200, body = Contact),
    (status = 404, description = "No such contact (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "It was answered already", body = super::ErrorBody),
    (status = 413, description = "The answer is too long", body = super::ErrorBody),
))]
async fn answer(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<AnswerBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not a contact id")))?;
    let Json(b) = body?;
    let now = s.clock.now();
    let missing = || ApiError(StatusCode::NOT_FOUND, format!("no contact {id}"));
    let c = s.store.contact(id, now).await?.ok_or_else(missing)?;
    // A contact of no customer is for users of every customer alone.
    if !c.customer.as_deref().map_or(p.scope.customers().is_none(), |k| p.scope.sees(k)) {
        return Err(missing());
    }
    let text = note(&b.answer)?.trim();
    if text.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "say what they were told: `answer`".into()));
    }
    if let Some(t) = b.ticket {
        seen_ticket(&s, &p, crate::domain::TicketId(t)).await?;
    }
    if !s.store.answer_contact(id, &p.name, text, b.ticket, now).await? {
        return Err(ApiError(StatusCode::CONFLICT, format!("contact {id} was answered already")));
    }
    let c = s.store.contact(id, now).await?.ok_or_else(missing)?;
    let mut r = Json(c).into_response();
    r.extensions_mut().insert(AuditNote { actor: None, detail: format!("contact {id} answered") });
    Ok(r)
}
