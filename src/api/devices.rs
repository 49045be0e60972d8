//! Devices: what each is and how it is now, its metrics' history and its fault events.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{CustomerId, DeviceId, FaultCode, SiteId};
use crate::ingest::shard::Presence;

use super::guard::Routes;
use super::{ApiError, AppState, range};
use crate::access::{Perm, Principal};

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .get("/api/v1/devices", Perm::ReadDevices, list_devices)
        .get("/api/v1/devices/{id}", Perm::ReadDevices, get_device)
        .get("/api/v1/devices/{id}/history", Perm::ReadDevices, device_history)
        .get("/api/v1/devices/{id}/events", Perm::ReadDevices, device_events)
}

/// A device: what it is and how it is now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct DeviceView {
    pub(super) id: DeviceId,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) site: SiteId,
    pub(super) customer: CustomerId,
    pub(super) model: String,
    pub(super) serial: String,
    pub(super) accepted_on: chrono::NaiveDate,
    /// `null` until the device has been heard from (or found silent) since start.
    pub(super) online: Option<bool>,
    pub(super) last_seen: Option<DateTime<Utc>>,
    pub(super) active_faults: Vec<FaultCode>,
}

pub(super) fn device_view(s: &AppState, d: &crate::fleet::Device) -> DeviceView {
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeviceQuery {
    /// A device kind, such as `recorder`.
    kind: Option<String>,
    site: Option<String>,
    customer: Option<String>,
    online: Option<bool>,
}

/// The devices of the customers the user sees.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceQuery),
    responses((status = 200, body = Vec<DeviceView>)))]
async fn list_devices(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
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
        .filter(|d| p.scope.sees(d.customer.as_str()))
        .map(|d| device_view(&s, d))
        .filter(|v| q.online.is_none_or(|o| v.online == Some(o)))
        .collect();
    Ok(Json(out).into_response())
}

/// One device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)), responses(
    (status = 200, body = DeviceView),
    (status = 404, description = "No such device (or not one of the user's customers')", body = super::ErrorBody),
))]
async fn get_device(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(device_view(&s, known_device(&s, &p, &id)?)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// One of the device kind's metrics.
    #[param(required = true)]
    metric: Option<String>,
    /// RFC 3339 time or a date; default: `to` minus 24 hours.
    from: Option<String>,
    /// RFC 3339 time or a date (exclusive); default: now.
    to: Option<String>,
    /// A whole number of hours, such as 1h, 6h, 1d (default 1h).
    step: Option<String>,
}

/// A metric's history, step by step.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct History {
    device: String,
    metric: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Such as `1h`.
    step: String,
    pub(super) points: Vec<HistoryPoint>,
}

/// One step of a metric's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct HistoryPoint {
    pub(super) t: DateTime<Utc>,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) mean: f64,
    last: f64,
    count: u32,
}

/// Device `id` if `p` may see it; else 404, as for a device that does not exist.
pub(super) fn known_device<'a>(s: &'a AppState, p: &Principal, id: &str) -> Result<&'a crate::fleet::Device, ApiError> {
    s.fleet
        .lookup(id)
        .map(|i| s.fleet.device(i))
        .filter(|d| p.scope.sees(d.customer.as_str()))
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no device `{id}`")))
}

/// A metric's hourly rollups, combined into steps: min, max, mean, last and count.
#[utoipa::path(get, path = "/api/v1/devices/{id}/history", tag = "devices", params(("id" = String, Path), HistoryQuery),
    responses(
    (status = 200, body = History),
    (status = 404, description = "No such device (or not one of the user's customers')", body = super::ErrorBody),
))]
async fn device_history(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    Ok(Json(history(&s, &p, &id, q.metric, q.from.as_deref(), q.to.as_deref(), q.step.as_deref()).await?)
        .into_response())
}

/// A metric's history of device `id` as `p` may see it, by the API's rules (the console's
/// chart too).
pub(super) async fn history(
    s: &AppState,
    p: &Principal,
    id: &str,
    metric: Option<String>,
    from: Option<&str>,
    to: Option<&str>,
    step: Option<&str>,
) -> Result<History, ApiError> {
    let (s, id) = (s.clone(), id.to_string());
    let dev = known_device(&s, p, &id)?;
    let profile = &s.fleet.kinds[dev.kind];
    let names: Vec<&str> = profile.metric_names().collect();
    let metric = metric
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("give metric=, one of: {}", names.join(", "))))?;
    if profile.metric(&metric).is_none() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("device `{id}` ({}) has no metric `{metric}`; it has: {}", profile.name, names.join(", ")),
        ));
    }
    let step = match step {
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
    let (from, to) = range(&s, from, to, chrono::TimeDelta::hours(24), offset)?;
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
    Ok(History { device: id, metric, from, to, step: format!("{hours}h"), points: out })
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// RFC 3339 time or a date; default: 30 days before `to`.
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

/// A device's state changes over a period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeviceEvents {
    device: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    events: Vec<crate::store::DeviceEvent>,
}

/// A device's state changes: faults raised, promoted and cleared; `offline` is the device going offline.
#[utoipa::path(get, path = "/api/v1/devices/{id}/events", tag = "devices", params(("id" = String, Path), EventsQuery),
    responses(
    (status = 200, body = DeviceEvents),
    (status = 404, description = "No such device (or not one of the user's customers')", body = super::ErrorBody),
))]
async fn device_events(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let dev = known_device(&s, &p, &id)?;
    let offset = crate::report::offset_of(&s.fleet, None, Some(dev.site.as_str()));
    let (from, to) = range(&s, q.from.as_deref(), q.to.as_deref(), chrono::TimeDelta::days(30), offset)?;
    let events = s.store.device_events(&id, from, to, q.limit.unwrap_or(1000).clamp(1, 100_000)).await?;
    Ok(Json(DeviceEvents { device: id, from, to, events }).into_response())
}
