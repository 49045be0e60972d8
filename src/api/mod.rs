//! The HTTP API (axum): tickets, devices, health and metrics. Errors are JSON
//! `{"error": "..."}` with a status that says what went wrong.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::Clock;
use crate::domain::{CustomerId, DeviceId, FaultCode, SiteId, TicketId, Tier};
use crate::fleet::Fleet;
use crate::ingest::shard::{Live, Presence};
use crate::metrics::Metrics;
use crate::store::{Store, TransitionFailure, TransitionOptions};
use crate::tickets::State as TicketState;
use crate::tickets::model::TicketFilter;

#[derive(Clone)]
pub struct AppState {
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
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/tickets", get(list_tickets))
        .route("/api/v1/tickets/{id}", get(get_ticket))
        .route("/api/v1/tickets/{id}/transition", post(transition))
        .route("/api/v1/contracts", get(list_contracts))
        .route("/api/v1/outbox", get(list_outbox))
        .route("/api/v1/helpdesks/{name}/events", post(helpdesk_event))
        .route("/api/v1/outbox/{id}/retry", post(retry_outbox))
        .route("/api/v1/sla", get(sla))
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/devices/{id}", get(get_device))
        .route("/api/v1/devices/{id}/history", get(device_history))
        .route("/api/v1/devices/{id}/events", get(device_events))
        .route("/api/v1/reports", get(report))
        .route("/api/v1/reports/kept", get(list_kept_reports))
        .route("/api/v1/reports/kept/{id}", get(kept_report))
        .route("/api/v1/work-orders", get(list_work_orders))
        .route("/api/v1/work-orders/{id}", get(get_work_order))
        .route("/api/v1/work-orders/{id}/start", post(start_work_order))
        .route("/api/v1/work-orders/{id}/complete", post(complete_work_order))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint; see README.md, \"HTTP API\"".into()) })
        .with_state(state)
}

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "store error while answering the API");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("the store failed: {e}"))
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

/// `ok`; `degraded` while the broker link is down (503 once it has been down for
/// `broker.unhealthy_after`); 503 `store_failed` if the store does not answer.
async fn healthz(State(s): State<AppState>) -> Response {
    let store = s.store.ping().await;
    let mqtt = s.mqtt.status();
    let now = s.clock.now();
    let down_for = (!mqtt.connected).then(|| (now - mqtt.since).to_std().unwrap_or_default());
    let (code, status) = match (&store, down_for) {
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "store_failed"),
        (Ok(()), Some(d)) if d >= s.unhealthy_after => (StatusCode::SERVICE_UNAVAILABLE, "mqtt_disconnected"),
        (Ok(()), Some(_)) => (StatusCode::OK, "degraded"),
        (Ok(()), None) => (StatusCode::OK, "ok"),
    };
    let body = json!({
        "status": status,
        "store": store.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
        "mqtt_connected": mqtt.connected,
        "mqtt": {
            "connected": mqtt.connected,
            "since": mqtt.since,
            "down_for_seconds": down_for.map(|d| d.as_secs()),
            "last_error": mqtt.error,
        },
        "devices": s.fleet.devices.len(),
        "time": now,
    });
    (code, Json(body)).into_response()
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), Prometheus text 0.0.4 otherwise.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketQuery {
    state: Option<String>,
    open: Option<bool>,
    tier: Option<u8>,
    device: Option<String>,
    code: Option<String>,
    customer: Option<String>,
    site: Option<String>,
    kind: Option<String>,
    recovered: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list_tickets(
    State(s): State<AppState>,
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
        site: q.site,
        kind: q.kind,
        recovered: q.recovered,
        limit: q.limit.unwrap_or(500).clamp(1, 10_000),
        offset: q.offset.unwrap_or(0),
    };
    Ok(Json(s.store.tickets(&filter).await?).into_response())
}

fn ticket_id(raw: &str) -> Result<TicketId, ApiError> {
    raw.parse::<i64>()
        .map(TicketId)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{raw}` is not a ticket id; ids are numbers")))
}

async fn get_ticket(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    match s.store.ticket(id).await? {
        Some(t) => Ok(Json(t).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no ticket {id}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    to: String,
    by: String,
    #[serde(default)]
    note: String,
    /// Makes the repair billable for this cause; it must be one the ticket's contract names.
    billable: Option<String>,
    /// Resolves a ticket whose fault is still active (with a note saying why).
    #[serde(default)]
    force: bool,
    /// The resolution replaced the unit: failed repairs count afresh.
    #[serde(default)]
    unit_replaced: bool,
}

async fn transition(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<TransitionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = ticket_id(&id)?;
    let Json(b) = body?;
    let to: TicketState = b.to.parse().map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let by = b.by.trim();
    if by.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "`by` must name who makes the change".into()));
    }
    if let Some(cause) = &b.billable {
        let ticket =
            s.store.ticket(id).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no ticket {id}")))?;
        let contract = ticket.clock.contract.as_deref().and_then(|c| s.fleet.contracts.iter().find(|k| k.id == c));
        match contract {
            Some(c) if c.billable.iter().any(|b| b == cause) => {}
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
    let opts = TransitionOptions { billable: b.billable.as_deref(), force: b.force, unit_replaced: b.unit_replaced };
    transitioned(s.store.transition_with(id, to, by, &b.note, s.clock.now(), opts).await)
}

/// The answer to a transition: the ticket, 404, 409 with the reason, or 503.
fn transitioned(r: Result<crate::tickets::Ticket, TransitionFailure>) -> Result<Response, ApiError> {
    match r {
        Ok(t) => Ok(Json(t).into_response()),
        Err(TransitionFailure::NotFound(id)) => Err(ApiError(StatusCode::NOT_FOUND, format!("no ticket {id}"))),
        Err(e @ (TransitionFailure::Refused(_) | TransitionFailure::Conflict(_))) => {
            Err(ApiError(StatusCode::CONFLICT, e.to_string()))
        }
        Err(TransitionFailure::Store(e)) => Err(e.into()),
    }
}

#[derive(Debug, Serialize)]
struct DeviceView {
    id: DeviceId,
    name: String,
    kind: String,
    site: SiteId,
    customer: CustomerId,
    model: String,
    serial: String,
    accepted_on: chrono::NaiveDate,
    /// `null` until the device has been heard from (or found silent) since start.
    online: Option<bool>,
    last_seen: Option<DateTime<Utc>>,
    active_faults: Vec<FaultCode>,
}

fn device_view(s: &AppState, d: &crate::fleet::Device) -> DeviceView {
    let live = &s.live.devices[d.idx.0 as usize];
    let seen = live.last_seen.load(Ordering::Relaxed);
    let mut active = s.live.active(d.idx);
    active.sort();
    DeviceView {
        id: d.id.clone(),
        name: d.name.clone(),
        kind: s.fleet.kinds[d.kind].name.clone(),
        site: d.site.clone(),
        customer: d.customer.clone(),
        model: d.model.clone(),
        serial: d.serial.clone(),
        accepted_on: d.accepted_on,
        online: match live.presence() {
            Presence::Online => Some(true),
            Presence::Offline => Some(false),
            Presence::Unknown => None,
        },
        last_seen: (seen > 0).then(|| DateTime::from_timestamp_millis(seen)).flatten(),
        active_faults: active,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    kind: Option<String>,
    site: Option<String>,
    customer: Option<String>,
    online: Option<bool>,
}

async fn list_devices(
    State(s): State<AppState>,
    q: Result<Query<DeviceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let out: Vec<DeviceView> = s
        .fleet
        .devices
        .iter()
        .filter(|d| q.kind.as_deref().is_none_or(|k| s.fleet.kinds[d.kind].name == k))
        .filter(|d| q.site.as_deref().is_none_or(|x| d.site.as_str() == x))
        .filter(|d| q.customer.as_deref().is_none_or(|x| d.customer.as_str() == x))
        .map(|d| device_view(&s, d))
        .filter(|v| q.online.is_none_or(|o| v.online == Some(o)))
        .collect();
    Ok(Json(out).into_response())
}

async fn get_device(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let idx = s.fleet.lookup(&id).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no device `{id}`")))?;
    Ok(Json(device_view(&s, s.fleet.device(idx))).into_response())
}

#[derive(Debug, Serialize)]
struct TierView {
    tier: u8,
    acknowledge: Option<String>,
    on_site: Option<String>,
    resolve: Option<String>,
    escalation: Vec<crate::contracts::Escalation>,
}

#[derive(Debug, Serialize)]
struct ContractView {
    id: String,
    title: String,
    customer: CustomerId,
    starts: chrono::NaiveDate,
    ends: Option<chrono::NaiveDate>,
    in_force: bool,
    calendar: Option<String>,
    covers: serde_json::Value,
    tiers: Vec<TierView>,
    loaner_on_resolve_breach: bool,
    inaction: Option<String>,
    inaction_to: String,
    warranty: serde_json::Value,
    billable: Vec<String>,
    repeat_window: String,
    replace_at_failed_repairs: u32,
}

async fn list_contracts(State(s): State<AppState>) -> Json<Vec<ContractView>> {
    let today = s.clock.now().date_naive();
    let fmt = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let out = s
        .fleet
        .contracts
        .iter()
        .map(|c| ContractView {
            id: c.id.clone(),
            title: c.title.clone(),
            customer: c.customer.clone(),
            starts: c.starts,
            ends: c.ends,
            in_force: c.in_force(today),
            calendar: c.calendar.as_ref().map(|k| k.name.clone()),
            covers: json!({ "sites": c.covers.sites, "kinds": c.covers.kinds, "devices": c.covers.devices }),
            tiers: c
                .tiers
                .iter()
                .enumerate()
                .map(|(i, t)| TierView {
                    tier: i as u8 + 1,
                    acknowledge: t.acknowledge.map(|k| k.to_string()),
                    on_site: t.on_site.map(|k| k.to_string()),
                    resolve: t.resolve.map(|k| k.to_string()),
                    escalation: t.escalation.clone(),
                })
                .collect(),
            loaner_on_resolve_breach: c.loaner_on_resolve_breach,
            inaction: c.inaction.map(fmt),
            inaction_to: c.inaction_to.clone(),
            warranty: json!({
                "periods": c.warranty.periods.iter().map(|(k, p)| (k.clone(), match p {
                    crate::contracts::Period::Days(n) => format!("{n} days"),
                    crate::contracts::Period::Months(n) => format!("{n} months"),
                })).collect::<std::collections::BTreeMap<_, _>>(),
                "default": c.warranty.default,
                "faults": c.warranty.faults.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            }),
            billable: c.billable.clone(),
            repeat_window: fmt(c.repeat_window),
            replace_at_failed_repairs: c.replace_at_failed_repairs,
        })
        .collect();
    Json(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaQuery {
    customer: Option<String>,
    /// RFC 3339 time or a date; default: 30 days before `to`.
    from: Option<String>,
    /// RFC 3339 time or a date (exclusive); default: now.
    to: Option<String>,
}

async fn sla(State(s): State<AppState>, q: Result<Query<SlaQuery>, QueryRejection>) -> Result<Response, ApiError> {
    let Query(q) = q?;
    // Dates are the customer's own days, as in its reports.
    let offset = crate::report::offset_of(&s.fleet, q.customer.as_deref(), None);
    let (from, to) = range(&s, q.from.as_deref(), q.to.as_deref(), chrono::TimeDelta::days(30), offset)?;
    let rows = s.store.clock_outcomes(q.customer.as_deref(), from, to).await?;
    let tiers = crate::tickets::sla::compliance(rows);
    Ok(Json(json!({ "customer": q.customer, "from": from, "to": to, "tiers": tiers })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    metric: Option<String>,
    /// RFC 3339 time or a date; default: `to` minus 24 hours.
    from: Option<String>,
    /// RFC 3339 time or a date (exclusive); default: now.
    to: Option<String>,
    /// A whole number of hours, such as 1h, 6h, 1d (default 1h).
    step: Option<String>,
}

/// One step of a metric's history.
#[derive(Debug, Serialize)]
struct HistoryPoint {
    t: DateTime<Utc>,
    min: f64,
    max: f64,
    mean: f64,
    last: f64,
    count: u32,
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

fn known_device<'a>(s: &'a AppState, id: &str) -> Result<&'a crate::fleet::Device, ApiError> {
    s.fleet
        .lookup(id)
        .map(|i| s.fleet.device(i))
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no device `{id}`")))
}

/// A metric's hourly rollups, combined into steps: min, max, mean, last and count.
async fn device_history(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let dev = known_device(&s, &id)?;
    let profile = &s.fleet.kinds[dev.kind];
    let names: Vec<&str> = profile.metric_names().collect();
    let metric = q
        .metric
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("give metric=, one of: {}", names.join(", "))))?;
    if profile.metric(&metric).is_none() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("device `{id}` ({}) has no metric `{metric}`; it has: {}", profile.name, names.join(", ")),
        ));
    }
    let step = match q.step.as_deref() {
        None => std::time::Duration::from_secs(3600),
        Some(st) => {
            humantime::parse_duration(st).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("step `{st}`: {e}")))?
        }
    };
    let hours = step.as_secs() / 3600;
    if hours == 0 || step.as_secs() % 3600 != 0 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "step is a whole number of hours: 1h, 6h, 1d…; history is kept by the hour".into(),
        ));
    }
    let offset = crate::report::offset_of(&s.fleet, None, Some(dev.site.as_str()));
    let (from, to) = range(&s, q.from.as_deref(), q.to.as_deref(), chrono::TimeDelta::hours(24), offset)?;
    let step_ms = hours as i64 * crate::rollup::HOUR_MS;
    if (to - from).num_milliseconds() / step_ms > 10_000 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "more than 10,000 steps; take a longer step or a shorter range".into(),
        ));
    }
    let rows = s.store.rollups(&id, &metric, from, to).await?;
    let mut out: Vec<HistoryPoint> = Vec::new();
    let mut cur: Option<(i64, crate::rollup::Acc)> = None;
    for (hour, acc) in rows {
        let t = hour.div_euclid(step_ms) * step_ms;
        cur = match cur {
            Some((ct, a)) if ct == t => Some((ct, a.merge(&acc))),
            Some((ct, a)) => {
                out.push(point(ct, &a));
                Some((t, acc))
            }
            None => Some((t, acc)),
        };
    }
    if let Some((ct, a)) = cur {
        out.push(point(ct, &a));
    }
    Ok(Json(
        json!({ "device": id, "metric": metric, "from": from, "to": to, "step": format!("{hours}h"), "points": out }),
    )
    .into_response())
}

fn point(t: i64, a: &crate::rollup::Acc) -> HistoryPoint {
    HistoryPoint {
        t: DateTime::from_timestamp_millis(t).unwrap_or_default(),
        min: a.min,
        max: a.max,
        mean: a.mean(),
        last: a.last,
        count: a.count,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

/// A device's state changes: faults raised, promoted and cleared; `offline` is the device going offline.
async fn device_events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let dev = known_device(&s, &id)?;
    let offset = crate::report::offset_of(&s.fleet, None, Some(dev.site.as_str()));
    let (from, to) = range(&s, q.from.as_deref(), q.to.as_deref(), chrono::TimeDelta::days(30), offset)?;
    let events = s.store.device_events(&id, from, to, q.limit.unwrap_or(1000).clamp(1, 100_000)).await?;
    Ok(Json(json!({ "device": id, "from": from, "to": to, "events": events })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    customer: Option<String>,
    site: Option<String>,
    /// Default: the last 30 days.
    from: Option<String>,
    to: Option<String>,
    /// json (default), csv or html.
    format: Option<String>,
    /// en (default) or zh-CN.
    lang: Option<String>,
}

/// A service report for a customer (or site) and a period.
async fn report(
    State(s): State<AppState>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    // Dates are the customer's (or site's) own days.
    let offset = crate::report::offset_of(&s.fleet, q.customer.as_deref(), q.site.as_deref());
    let (from, to) = range(&s, q.from.as_deref(), q.to.as_deref(), chrono::TimeDelta::days(30), offset)?;
    let scope = crate::report::Scope { customer: q.customer, site: q.site, from, to };
    let format = q.format.unwrap_or_else(|| "json".into());
    let lang = crate::report::check(&s.fleet, &scope, &format, q.lang.as_deref().unwrap_or("en"))
        .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let r = crate::report::compute(&s.store, &s.fleet, &scope, lang, s.clock.now()).await?;
    Ok(match format.as_str() {
        "csv" => ([(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")], crate::report::render::csv(&r))
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
            ([(axum::http::header::CONTENT_TYPE, "application/pdf")], pdf).into_response()
        }
        _ => Json(r).into_response(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeptQuery {
    customer: Option<String>,
    limit: Option<i64>,
}

/// Reports kept in the store (inspection reports), newest first.
async fn list_kept_reports(
    State(s): State<AppState>,
    q: Result<Query<KeptQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    Ok(Json(s.store.reports(q.customer.as_deref(), q.limit.unwrap_or(100).clamp(1, 10_000)).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeptOne {
    /// html (default) or json.
    format: Option<String>,
}

async fn kept_report(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<KeptOne>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let id: i64 = id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not a report id")))?;
    let r = s.store.report(id).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no report {id}")))?;
    Ok(match q.format.as_deref() {
        None | Some("html") => {
            ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], r.html).into_response()
        }
        Some("json") => ([(axum::http::header::CONTENT_TYPE, "application/json")], r.json).into_response(),
        Some(f) => return Err(ApiError(StatusCode::BAD_REQUEST, format!("format `{f}`: write html or json"))),
    })
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
    let w =
        s.store.work_order(id).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no work order {id}")))?;
    if !s.store.start_work_order(id, by, s.clock.now()).await? {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("work order {id} is {}; only an open or missed one starts", w.state),
        ));
    }
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
    let w =
        s.store.work_order(id).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no work order {id}")))?;
    // What the telemetry answers stands unless the engineer answers it otherwise.
    let mut b = b;
    for (item, m) in crate::schedule::measure(&s.store, &s.fleet, &w, s.clock.now()).await? {
        b.answers.entry(item).or_insert(m);
    }
    let missing: Vec<&str> = w.checklist.iter().filter(|i| !b.answers.contains_key(*i)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("answer every checklist item; missing: {}", missing.join(", ")),
        ));
    }
    if !s.store.complete_work_order(id, b.by.trim(), &serde_json::Value::Object(b.answers), s.clock.now()).await? {
        return Err(ApiError(StatusCode::CONFLICT, format!("work order {id} is already done")));
    }
    if w.kind == crate::domain::VisitKind::Inspection {
        // The written report an inspection owes the customer, made now.
        if let Some(done) = s.store.work_order(id).await? {
            let made = crate::report::after_inspection(&s.store, &s.fleet, &done, s.clock.now()).await?;
            tracing::info!(work_order = id, reports = ?made, "inspection report made");
        }
    }
    get_work_order(State(s), Path(id.to_string())).await
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
    q: Result<Query<OutboxQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    use crate::domain::OutboxState;
    let state = one_of(q.state.as_deref(), "state", OutboxState::parse, "pending, delivered, dead or skipped")?
        .unwrap_or(OutboxState::Dead);
    Ok(Json(s.store.outbox(state, q.limit.unwrap_or(500).clamp(1, 10_000)).await?).into_response())
}

async fn retry_outbox(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id: i64 =
        id.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{id}` is not an outbox row id")))?;
    if s.store.outbox_retry(id, s.clock.now()).await? {
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
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
    let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, m.to_string());
    let ts: i64 = ts.parse().map_err(|_| unauthorized("missing or bad webhook-timestamp"))?;
    if (s.clock.now().timestamp() - ts).abs() > 300 {
        return Err(unauthorized("webhook-timestamp is more than 5 minutes from our clock"));
    }
    let want = crate::outbox::webhook::sign(key, &id, ts, &body);
    if id.is_empty() || !sig.split_whitespace().any(|s| s == want) {
        return Err(unauthorized("bad webhook-signature"));
    }
    let ev: HelpdeskEvent =
        serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    let ticket = match (ev.ticket, ev.dedup_key.as_deref().and_then(|k| k.strip_prefix("aftercare-ticket-"))) {
        (Some(t), _) => TicketId(t),
        (None, Some(k)) => TicketId(k.parse().map_err(|_| ApiError(StatusCode::BAD_REQUEST, "bad dedup_key".into()))?),
        (None, None) => return Err(ApiError(StatusCode::BAD_REQUEST, "give `ticket` or `dedup_key`".into())),
    };
    let to: TicketState = match ev.status.as_str() {
        "reopened" => TicketState::Open,
        other => other.parse().map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?,
    };
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
    let opts = TransitionOptions { force: true, ..Default::default() };
    transitioned(s.store.transition_with(ticket, to, &actor, &note, s.clock.now(), opts).await)
}
