//! The HTTP API (axum): tickets, devices, health and metrics. Errors are JSON
//! `{"error": "..."}` with a status that says what went wrong.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};

use crate::access::{AccessConfig, Perm};
use crate::clock::Clock;
use crate::fleet::Fleet;
use crate::ingest::shard::Live;
use crate::metrics::Metrics;
use crate::store::Store;
pub(crate) use guard::WriteLimiter;
pub(crate) use serve::ServeConfig;
pub(crate) use serve::serve;

mod account;
mod console;
mod contacts;
mod contracts;
mod devices;
mod guard;
mod local;
mod openapi;
mod outbox;
mod repairs;
mod reports;
mod serve;
mod spares;
mod surveys;
mod tickets;
mod work_orders;

#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Store,
    pub fleet: Arc<Fleet>,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Helpdesks' signing keys by name, to check the events they send in.
    pub helpdesk_keys: Arc<std::collections::HashMap<String, Option<Vec<u8>>>>,
    /// The link to the MQTT broker.
    pub mqtt: Arc<crate::ingest::mqtt::Link>,
    /// Cut off from the broker this long, `/healthz` answers 503.
    pub unhealthy_after: std::time::Duration,
    /// Who the API lets in.
    pub access: AccessConfig,
    /// Failed logins, to slow down guessing.
    pub logins: Arc<account::LoginLimiter>,
    /// Changes per user, to slow down a runaway script.
    pub writes: Arc<guard::WriteLimiter>,
    /// Served over TLS: session cookies are `Secure`.
    pub tls: bool,
    /// Every route with its permission, set once the router is built.
    pub route_table: Arc<std::sync::OnceLock<Vec<guard::RouteEntry>>>,
    /// The OpenAPI description as served, made on its first request.
    pub openapi: Arc<std::sync::OnceLock<bytes::Bytes>>,
    /// The console's live streams open, per user.
    pub live_streams: Arc<std::sync::Mutex<std::collections::HashMap<i64, usize>>>,
}

/// Every route of the API with its permission.
fn routes(state: &AppState) -> guard::Routes {
    guard::Routes::new(state)
        .get("/healthz", Perm::Open, healthz)
        .get("/metrics", Perm::Metrics, metrics)
        .get("/api/v1/routes", Perm::SignedIn, list_routes)
        .get("/api/v1/openapi.json", Perm::Open, openapi::serve)
        .merge(account::routes(state))
        .merge(contacts::routes(state))
        .merge(surveys::routes(state))
        .merge(repairs::routes(state))
        .merge(console::routes(state))
        .merge(tickets::routes(state))
        .merge(devices::routes(state))
        .merge(contracts::routes(state))
        .merge(spares::routes(state))
        .merge(reports::routes(state))
        .merge(work_orders::routes(state))
        .merge(outbox::routes(state))
}

pub(crate) fn router(state: AppState) -> Router {
    let (routes, table) = routes(&state).into_parts();
    let _ = state.route_table.set(table);
    routes
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint; see README.md, \"HTTP API\"".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), local::times))
        .with_state(state)
}

/// The customer a request of `p` is about: the one it names (404 outside `p`'s scope), or,
/// when it names none, every customer for an unscoped user and the only one of a user scoped
/// to one; a user scoped to several names one.
pub(super) fn scoped_customer(p: &crate::access::Principal, named: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(mine) = p.scope.customers() else { return Ok(named) };
    match named {
        Some(c) if mine.contains(&c) => Ok(Some(c)),
        Some(c) => Err(ApiError(StatusCode::NOT_FOUND, format!("no customer `{c}`"))),
        None if mine.len() == 1 => Ok(mine.iter().next().cloned()),
        None => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("name one customer: customer={}", mine.iter().cloned().collect::<Vec<_>>().join(" or customer=")),
        )),
    }
}

/// A route of the API, the permission it needs, and whether the caller has it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct RouteView {
    method: String,
    path: &'static str,
    perm: Perm,
    allowed: bool,
    /// A page of the web console, not an operation of this API.
    page: bool,
}

/// A customer (or every one) and a period: `[from, to)`.
type CustomerPeriod = (Option<String>, DateTime<Utc>, DateTime<Utc>);

/// The customer a per-customer figure is about ([`scoped_customer`]) and its period, read in
/// that customer's own days; 30 days up to `to` by default.
fn customer_period(
    s: &AppState,
    p: &crate::access::Principal,
    customer: Option<String>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<CustomerPeriod, ApiError> {
    let customer = scoped_customer(p, customer)?;
    let offset = crate::report::offset_of(&s.fleet, customer.as_deref(), None);
    let (from, to) = range(s, from, to, chrono::TimeDelta::days(30), offset)?;
    Ok((customer, from, to))
}

/// Every route, the permission it needs, and whether the caller has it.
#[utoipa::path(get, path = "/api/v1/routes", tag = "account", responses((status = 200, body = Vec<RouteView>)))]
async fn list_routes(
    State(s): State<AppState>,
    axum::extract::Extension(p): axum::extract::Extension<crate::access::Principal>,
) -> Json<Vec<RouteView>> {
    let table = s.route_table.get().map(Vec::as_slice).unwrap_or_default();
    Json(
        table
            .iter()
            .map(|r| RouteView {
                method: r.method.to_string(),
                path: r.path,
                perm: r.perm,
                allowed: p.may(r.perm),
                page: r.page,
            })
            .collect(),
    )
}

/// An error answered as JSON.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

/// What every error answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct ErrorBody {
    /// What went wrong, for a person to read.
    error: String,
}

impl ApiError {
    /// Its status and message, for a page that shows it.
    pub(crate) fn parts(&self) -> (StatusCode, &str) {
        (self.0, &self.1)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "store error while answering the API");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("the store failed: {e}"))
    }
}

impl From<crate::schedule::VisitRefused> for ApiError {
    fn from(e: crate::schedule::VisitRefused) -> ApiError {
        use crate::schedule::VisitRefused as R;
        match e {
            R::Store(s) => ApiError::from(s),
            R::NotFound(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            R::NotStartable(..) | R::AlreadyDone(_) => ApiError(StatusCode::CONFLICT, e.to_string()),
            R::Unanswered(_) | R::NoSuchSignature(..) | R::Unnamed => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.body_text())
    }
}

crate::domain::named! {
    /// How the daemon is.
    enum HealthStatus {
        Ok = "ok",
        /// The broker link is down, not yet for `broker.unhealthy_after`.
        Degraded = "degraded",
        StoreFailed = "store_failed",
        MqttDisconnected = "mqtt_disconnected",
    }
}

/// What `/healthz` answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Health {
    status: HealthStatus,
    /// `ok`, or the store's error.
    store: String,
    mqtt_connected: bool,
    mqtt: MqttHealth,
    /// Devices in the fleet.
    devices: usize,
    time: DateTime<Utc>,
}

/// The broker link.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct MqttHealth {
    connected: bool,
    /// Since when it is connected, or down.
    since: DateTime<Utc>,
    down_for_seconds: Option<u64>,
    last_error: Option<String>,
}

/// `ok`; `degraded` while the broker link is down (503 once it has been down for
/// `broker.unhealthy_after`); 503 `store_failed` if the store does not answer.
#[utoipa::path(get, path = "/healthz", tag = "health", responses(
    (status = 200, description = "Up, perhaps degraded", body = Health),
    (status = 503, description = "The store fails, or the broker link is down too long", body = Health),
))]
async fn healthz(State(s): State<AppState>) -> Response {
    let store = s.store.ping().await;
    let mqtt = s.mqtt.status();
    let now = s.clock.now();
    let down_for = (!mqtt.connected).then(|| (now - mqtt.since).to_std().unwrap_or_default());
    let (code, status) = match (&store, down_for) {
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::StoreFailed),
        (Ok(()), Some(d)) if d >= s.unhealthy_after => {
            (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::MqttDisconnected)
        }
        (Ok(()), Some(_)) => (StatusCode::OK, HealthStatus::Degraded),
        (Ok(()), None) => (StatusCode::OK, HealthStatus::Ok),
    };
    let body = Health {
        status,
        store: store.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
        mqtt_connected: mqtt.connected,
        mqtt: MqttHealth {
            connected: mqtt.connected,
            since: mqtt.since,
            down_for_seconds: down_for.map(|d| d.as_secs()),
            last_error: mqtt.error,
        },
        devices: s.fleet.devices.len(),
        time: now,
    };
    (code, Json(body)).into_response()
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), Prometheus text 0.0.4 otherwise.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "The daemon's metrics", content(
        (String = "text/plain"),
        (String = "application/openmetrics-text"),
    )),
))]
async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let open_metrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if open_metrics {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.encode_prometheus())
            .into_response()
    }
}

/// A query parameter that names one of a set (`parse`), if given; another name is a 400 that
/// lists the `choices`.
fn one_of<T>(
    value: Option<&str>,
    name: &str,
    parse: fn(&str) -> Option<T>,
    choices: &str,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| parse(v).ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("{name} `{v}`: write {choices}"))))
        .transpose()
}

/// A request's period, the API's one reading of `from` and `to`: RFC 3339 times, or dates
/// that start at midnight in `offset` (the customer's or the device's site's own days).
/// Without `to`, now; without `from`, `default` before `to`.
fn range(
    s: &AppState,
    from: Option<&str>,
    to: Option<&str>,
    default: chrono::TimeDelta,
    offset: chrono::FixedOffset,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let parse = |t: &str| crate::report::parse_time(t, offset).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m));
    let to = to.map(parse).transpose()?.unwrap_or_else(|| s.clock.now());
    let from = from.map(parse).transpose()?.unwrap_or(to - default);
    if from >= to {
        return Err(ApiError(StatusCode::BAD_REQUEST, "`from` must be before `to`".into()));
    }
    Ok((from, to))
}
