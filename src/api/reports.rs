//! Service reports: made on request, and the ones kept.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::guard::Routes;
use super::{ApiError, AppState, range, scoped_customer};
use crate::access::{Perm, Principal};

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .get("/api/v1/reports", Perm::ReadReports, report)
        .get("/api/v1/reports/kept", Perm::ReadReports, list_kept_reports)
        .get("/api/v1/reports/kept/{id}", Perm::ReadReports, kept_report)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// Default: the user's one customer (a user of several names one; an unscoped user may give `site` instead).
    customer: Option<String>,
    site: Option<String>,
    /// Default: the last 30 days.
    from: Option<String>,
    to: Option<String>,
    /// json (default), csv, html or pdf.
    #[param(value_type = Option<ReportFormat>, inline)]
    format: Option<String>,
    /// en (default) or zh-CN.
    #[param(value_type = Option<ReportLang>, inline)]
    lang: Option<String>,
}

crate::domain::named! {
    /// How a report is rendered.
    enum ReportFormat {
        Json = "json",
        Csv = "csv",
        Html = "html",
        Pdf = "pdf",
    }
}

crate::domain::named! {
    /// A report's language.
    enum ReportLang {
        En = "en",
        ZhCn = "zh-CN",
    }
}

/// A service report for a customer (or site) and a period.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ReportQuery), responses(
    (status = 200, description = "The report, in the format asked for", content(
        (crate::report::Report = "application/json"),
        (String = "text/csv"),
        (String = "text/html"),
        (Vec<u8> = "application/pdf"),
    )),
    (status = 404, description = "Not one of the user's customers", body = super::ErrorBody),
))]
async fn report(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut q) = q?;
    if q.site.is_none() || p.scope.customers().is_some() {
        q.customer = scoped_customer(&p, q.customer)?;
    }
    // Dates are the customer's (or site's) own days.
    let offset = crate::report::offset_of(&s.fleet, q.customer.as_deref(), q.site.as_deref());
    let (from, to) = range(&s, q.from.as_deref(), q.to.as_deref(), chrono::TimeDelta::days(30), offset)?;
    let scope = crate::report::Scope { customer: q.customer, site: q.site, from, to };
    let format = q.format.unwrap_or_else(|| "json".into());
    let lang = crate::report::check(&s.fleet, &scope, &format, q.lang.as_deref().unwrap_or("en"))
        .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let r = crate::report::compute(&s.store, &s.fleet, &scope, lang, s.clock.now()).await?;
    // A PDF or a CSV is a file to keep, named for whom and when: `report-cust-1-2026-11-01.pdf`.
    let who = scope.customer.as_deref().or(scope.site.as_deref()).unwrap_or("all");
    let who: String =
        who.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let file = |ext: &str| {
        let day = scope.from.with_timezone(&offset).format("%Y-%m-%d");
        format!("attachment; filename=\"report-{who}-{day}.{ext}\"")
    };
    Ok(match format.as_str() {
        "csv" => (
            [
                (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (axum::http::header::CONTENT_DISPOSITION, file("csv")),
            ],
            crate::report::render::csv(&r),
        )
            .into_response(),
        "html" => {
            ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::report::render::html(&r, lang))
                .into_response()
        }
        "pdf" => {
            let fonts = crate::report::render::fonts().map_err(|m| ApiError(StatusCode::SERVICE_UNAVAILABLE, m))?;
            // Set in a process of its own, off the daemon's workers and memory.
            let pdf = crate::report::render::pdf(&r, lang, &fonts)
                .await
                .map_err(|m| ApiError(StatusCode::SERVICE_UNAVAILABLE, m))?;
            (
                [
                    (axum::http::header::CONTENT_TYPE, "application/pdf".to_string()),
                    (axum::http::header::CONTENT_DISPOSITION, file("pdf")),
                ],
                pdf,
            )
                .into_response()
        }
        _ => Json(r).into_response(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct KeptQuery {
    customer: Option<String>,
    limit: Option<i64>,
}

/// Reports kept in the store (inspection reports), newest first.
#[utoipa::path(get, path = "/api/v1/reports/kept", tag = "reports", params(KeptQuery), responses(
    (status = 200, body = Vec<crate::store::StoredReport>),
    (status = 404, description = "Not one of the user's customers", body = super::ErrorBody),
))]
async fn list_kept_reports(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<KeptQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut q) = q?;
    q.customer = scoped_customer(&p, q.customer)?;
    Ok(Json(s.store.reports(q.customer.as_deref(), q.limit.unwrap_or(100).clamp(1, 10_000)).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct KeptOne {
    /// html (default), pdf or json.
    #[param(value_type = Option<KeptFormat>, inline)]
    format: Option<String>,
}

crate::domain::named! {
    /// How a kept report is shown.
    enum KeptFormat {
        Html = "html",
        Pdf = "pdf",
        Json = "json",
    }
}

/// A kept report, as it was made.
#[utoipa::path(get, path = "/api/v1/reports/kept/{id}", tag = "reports", params(("id" = i64, Path), KeptOne), responses(
    (status = 200, description = "The report as kept", content(
        (String = "text/html"),
        (Vec<u8> = "application/pdf"),
        (crate::report::Report = "application/json"),
    )),
    (status = 404, description = "No such report (or not one of the user's customers'), or no PDF of one kept before PDFs were", body = super::ErrorBody),
    (status = 503, description = "The PDF cannot be set here (no typesetter or fonts)", body = super::ErrorBody),
))]
async fn kept_report(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    q: Result<Query<KeptOne>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let id: i64 = id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not a report id")))?;
    let r = s
        .store
        .report(id)
        .await?
        .filter(|r| p.scope.sees(r.customer.as_str()))
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no report {id}")))?;
    Ok(match q.format.as_deref() {
        None | Some("html") => {
            ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], r.html).into_response()
        }
        Some("json") => ([(axum::http::header::CONTENT_TYPE, "application/json")], r.json).into_response(),
        Some("pdf") if r.typst.is_empty() => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("report {id} was kept before reports kept their PDF; make it again with GET /api/v1/reports"),
            ));
        }
        Some("pdf") => {
            let fonts = crate::report::render::fonts().map_err(|m| ApiError(StatusCode::SERVICE_UNAVAILABLE, m))?;
            let pdf = crate::report::render::typeset(r.typst, &fonts)
                .await
                .map_err(|m| ApiError(StatusCode::SERVICE_UNAVAILABLE, m))?;
            let file = format!("attachment; filename=\"report-{id}-{}.pdf\"", r.lang);
            (
                [
                    (axum::http::header::CONTENT_TYPE, "application/pdf".to_string()),
                    (axum::http::header::CONTENT_DISPOSITION, file),
                ],
                pdf,
            )
                .into_response()
        }
        Some(f) => return Err(ApiError(StatusCode::BAD_REQUEST, format!("format `{f}`: write html, pdf or json"))),
    })
}
