//! Satisfaction after a service (000 篇六, 003): a one-time link the customer answers without
//! an account, or the desk's record of a phone answer; scores per ticket, engineer and period.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::guard::{AuditNote, Routes};
use super::tickets::{note, seen_ticket};
use super::{ApiError, AppState, customer_period};
use crate::access::{Perm, Principal};
use crate::domain::TicketId;
use crate::store::Survey;
use crate::tickets::State as TicketState;

/// How long a survey link may be answered.
const LINK_DAYS: i64 = 14;

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .post("/api/v1/tickets/{id}/survey", Perm::Contacts, make_link)
        .post("/api/v1/tickets/{id}/satisfaction", Perm::Contacts, by_phone)
        .get("/api/v1/surveys/{token}", Perm::Open, open_link)
        .post("/api/v1/surveys", Perm::Open, answer_link)
        .get("/api/v1/satisfaction", Perm::ReadSla, scores)
}

/// A served ticket the user sees: resolved or closed; else 409.
async fn served(s: &AppState, p: &Principal, id: &str) -> Result<crate::tickets::Ticket, ApiError> {
    let id = super::tickets::ticket_id(id)?;
    let t = seen_ticket(s, p, id).await?;
    if !matches!(t.state, TicketState::Resolved | TicketState::Closed) {
        return Err(ApiError(StatusCode::CONFLICT, format!("ticket {id} is {}; a survey follows a service", t.state)));
    }
    Ok(t)
}

/// A survey link, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SurveyLink {
    ticket: i64,
    /// The secret of the link: send the customer `/api/v1/surveys/{token}` (or the console's page).
    token: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// Makes a one-time survey link for a served ticket (a new one replaces an unanswered one).
#[utoipa::path(post, path = "/api/v1/tickets/{id}/survey", tag = "satisfaction", params(("id" = i64, Path)), responses(
    (status = 201, body = SurveyLink),
    (status = 404, description = "No such ticket (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "The ticket is not served yet, or its survey is answered", body = super::ErrorBody),
))]
async fn make_link(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = served(&s, &p, &id).await?;
    let (token, hash) = crate::identity::new_secret("svy_")?;
    let now = s.clock.now();
    let expires_at = now + chrono::TimeDelta::days(LINK_DAYS);
    if !s.store.survey_link(t.id.0, t.customer.as_str(), t.assignee.as_deref(), &hash, now, expires_at).await? {
        return Err(ApiError(StatusCode::CONFLICT, format!("ticket {}'s survey is answered", t.id)));
    }
    let mut r = (StatusCode::CREATED, Json(SurveyLink { ticket: t.id.0, token, expires_at })).into_response();
    r.extensions_mut().insert(AuditNote { actor: None, detail: format!("survey link for ticket {}", t.id) });
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PhoneAnswer {
    /// 1 (very unhappy) to 5 (very happy).
    #[schema(minimum = 1, maximum = 5)]
    score: i64,
    #[serde(default)]
    #[schema(max_length = 4000)]
    comment: String,
}

/// Records the answer a customer gave the desk on the phone.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/satisfaction", tag = "satisfaction", params(("id" = i64, Path)),
    request_body = PhoneAnswer, responses(
    (status = 201, description = "Recorded", body = Survey),
    (status = 404, description = "No such ticket (or not one of the user's customers')", body = super::ErrorBody),
    (status = 409, description = "The ticket is not served yet, or its survey is answered", body = super::ErrorBody),
    (status = 413, description = "The comment is too long", body = super::ErrorBody),
))]
async fn by_phone(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Json<PhoneAnswer>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    score_ok(b.score)?;
    let t = served(&s, &p, &id).await?;
    let now = s.clock.now();
    let comment = note(&b.comment)?.trim();
    let engineer = t.assignee.as_deref();
    if !s.store.answer_survey_by_phone(t.id.0, t.customer.as_str(), engineer, &p.name, b.score, comment, now).await? {
        return Err(ApiError(StatusCode::CONFLICT, format!("ticket {}'s survey is answered", t.id)));
    }
    let mut r = (StatusCode::CREATED, Json(s.store.survey_of(t.id.0).await?)).into_response();
    r.extensions_mut().insert(AuditNote { actor: None, detail: format!("satisfaction of ticket {} by phone", t.id) });
    Ok(r)
}

fn score_ok(score: i64) -> Result<(), ApiError> {
    if !(1..=5).contains(&score) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "score is 1 (very unhappy) to 5 (very happy)".into()));
    }
    Ok(())
}

/// What a survey link shows: the service it asks about, and nothing else of the customer's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SurveyPage {
    ticket: i64,
    title: String,
    site: String,
    resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    question: &'static str,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

const QUESTION: &str = "How satisfied are you with this service, from 1 (very unhappy) to 5 (very happy)?";

/// Opens a survey link: no account needed; unknown, answered or expired links are 404.
#[utoipa::path(get, path = "/api/v1/surveys/{token}", tag = "satisfaction", params(("token" = String, Path)), responses(
    (status = 200, body = SurveyPage),
    (status = 404, description = "No such link, or it is answered or expired", body = super::ErrorBody),
))]
async fn open_link(State(s): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let gone = || ApiError(StatusCode::NOT_FOUND, "this survey link is unknown, answered or expired".into());
    let survey =
        s.store.survey_by_link(&crate::identity::secret_hash(&token), s.clock.now()).await?.ok_or_else(gone)?;
    let t = s.store.ticket(TicketId(survey.ticket_id)).await?.ok_or_else(gone)?;
    let page = SurveyPage {
        ticket: t.id.0,
        title: t.title,
        site: t.site.0,
        resolved_at: t.resolved_at,
        question: QUESTION,
        expires_at: survey.expires_at,
    };
    Ok(Json(page).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LinkAnswer {
    /// The link's secret (kept out of the path, so that no log holds it).
    token: String,
    #[schema(minimum = 1, maximum = 5)]
    score: i64,
    #[serde(default)]
    #[schema(max_length = 4000)]
    comment: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Thanks {
    ticket: i64,
    thanks: &'static str,
}

/// Answers a survey through its link, once; the link is spent.
#[utoipa::path(post, path = "/api/v1/surveys", tag = "satisfaction", request_body = LinkAnswer, responses(
    (status = 200, body = Thanks),
    (status = 404, description = "No such link, or it is answered or expired", body = super::ErrorBody),
    (status = 413, description = "The comment is too long", body = super::ErrorBody),
))]
async fn answer_link(
    State(s): State<AppState>,
    body: Result<Json<LinkAnswer>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    score_ok(b.score)?;
    let comment = note(&b.comment)?.trim();
    let hash = crate::identity::secret_hash(&b.token);
    let now = s.clock.now();
    let gone = || ApiError(StatusCode::NOT_FOUND, "this survey link is unknown, answered or expired".into());
    let survey = s.store.survey_by_link(&hash, now).await?.ok_or_else(gone)?;
    if !s.store.answer_survey_link(&hash, b.score, comment, now).await? {
        return Err(gone());
    }
    let mut r = Json(Thanks { ticket: survey.ticket_id, thanks: "Thank you for your answer." }).into_response();
    let actor = format!("customer:{}", survey.customer);
    r.extensions_mut()
        .insert(AuditNote { actor: Some(actor), detail: format!("satisfaction of ticket {}", survey.ticket_id) });
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ScoreQuery {
    customer: Option<String>,
    /// RFC 3339 time or a date; default: 30 days before `to`.
    from: Option<String>,
    /// RFC 3339 time or a date (exclusive); default: now.
    to: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct EngineerScore {
    /// `null`: tickets nobody was assigned.
    engineer: Option<String>,
    answers: usize,
    mean: f64,
}

/// Satisfaction over a period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Scores {
    customer: Option<String>,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    answers: usize,
    /// Mean score, 1 to 5; `null` with no answer.
    mean: Option<f64>,
    by_engineer: Vec<EngineerScore>,
    /// Each answer, per ticket.
    surveys: Vec<Survey>,
}

/// Satisfaction scores per ticket, per engineer and for the period (by when they were answered).
#[utoipa::path(get, path = "/api/v1/satisfaction", tag = "satisfaction", params(ScoreQuery), responses(
    (status = 200, body = Scores),
    (status = 404, description = "Not one of the user's customers", body = super::ErrorBody),
))]
async fn scores(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<ScoreQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let (customer, from, to) = customer_period(&s, &p, q.customer, q.from.as_deref(), q.to.as_deref())?;
    let mine: Option<Vec<String>> = p.scope.list();
    let surveys = s.store.surveys(mine.as_deref(), customer.as_deref(), from, to).await?;
    let mean = |xs: &[&Survey]| xs.iter().filter_map(|x| x.score).sum::<i64>() as f64 / xs.len().max(1) as f64;
    let all: Vec<&Survey> = surveys.iter().collect();
    let mut engineers: Vec<Option<String>> = surveys.iter().map(|x| x.engineer.clone()).collect();
    engineers.sort();
    engineers.dedup();
    let by_engineer = engineers
        .into_iter()
        .map(|e| {
            let theirs: Vec<&Survey> = surveys.iter().filter(|x| x.engineer == e).collect();
            EngineerScore { engineer: e, answers: theirs.len(), mean: mean(&theirs) }
        })
        .collect();
    let body = Scores {
        customer,
        from,
        to,
        answers: all.len(),
        mean: (!all.is_empty()).then(|| mean(&all)),
        by_engineer,
        surveys,
    };
    Ok(Json(body).into_response())
}
