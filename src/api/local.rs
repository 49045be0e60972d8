//! The site's local time beside UTC: in every JSON answer, an object that names a `site` (a
//! ticket, a work order, a device, a contact), and everything inside it (a ticket's clock and
//! timeline), has for each UTC time `NAME` a `NAME_local`: the same instant in the site's
//! offset, as people there read their clocks. One layer over every route, so no answer forgets.

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde_json::Value;

use super::AppState;

/// Larger answers go out as they are: buffering them would cost more than the local times give.
const MAX_BUFFERED: u64 = 16 * 1024 * 1024;

pub(super) async fn times(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let small = resp.body().size_hint().upper().is_some_and(|n| n <= MAX_BUFFERED);
    if !json || !small {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BUFFERED as usize).await else {
        // Cannot happen for a body whose size was known; answer as an empty body rather than panic.
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let offset_of = |site: &str| s.fleet.sites.iter().find(|x| x.id.as_str() == site).map(|x| x.utc_offset);
    if !add_local(&mut v, None, &offset_of) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    match serde_json::to_vec(&v) {
        Ok(out) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(out))
        }
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Adds `NAME_local` beside each UTC time of every object at a site (its own `site`, or its
/// enclosing object's); whether it added any.
fn add_local(v: &mut Value, inherited: Option<FixedOffset>, offset_of: &dyn Fn(&str) -> Option<FixedOffset>) -> bool {
    match v {
        Value::Array(items) => items.iter_mut().fold(false, |any, i| add_local(i, inherited, offset_of) | any),
        Value::Object(map) => {
            let own = map.get("site").and_then(Value::as_str).and_then(offset_of).or(inherited);
            let mut any = false;
            for (_, child) in map.iter_mut() {
                any |= add_local(child, own, offset_of);
            }
            let Some(offset) = own else { return any };
            let local: Vec<(String, Value)> = map
                .iter()
                .filter(|(k, _)| !k.ends_with("_local"))
                .filter_map(|(k, v)| {
                    let text = v.as_str().filter(|t| t.ends_with('Z') && t.len() >= 20)?;
                    let t = DateTime::parse_from_rfc3339(text).ok()?;
                    let shown = t.with_timezone(&offset).to_rfc3339_opts(SecondsFormat::AutoSi, true);
                    Some((format!("{k}_local"), Value::String(shown)))
                })
                .collect();
            any |= !local.is_empty();
            map.extend(local);
            any
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_of_things_at_a_site_get_that_sites_time_beside_them() {
        let beijing = FixedOffset::east_opt(8 * 3600).unwrap();
        let offset_of = |s: &str| (s == "site-b").then_some(beijing);
        let mut v = json!([
            {"site": "site-b", "opened_at": "2026-12-07T16:30:00Z", "title": "x",
             "clock": {"acknowledge_by": "2026-12-07T17:30:00.250Z", "due_on": "2026-12-08"},
             "timeline": [{"at": "2026-12-07T16:30:00Z"}]},
            {"site": "nowhere", "opened_at": "2026-12-07T16:30:00Z"},
            {"opened_at": "2026-12-07T16:30:00Z"}
        ]);
        assert!(add_local(&mut v, None, &offset_of));
        assert_eq!(v[0]["opened_at_local"], json!("2026-12-08T00:30:00+08:00"));
        assert_eq!(v[0]["clock"]["acknowledge_by_local"], json!("2026-12-08T01:30:00.250+08:00"));
        assert_eq!(v[0]["timeline"][0]["at_local"], json!("2026-12-08T00:30:00+08:00"));
        assert!(v[0]["clock"].get("due_on_local").is_none(), "a date is no time");
        assert!(v[0].get("title_local").is_none());
        assert!(v[1].get("opened_at_local").is_none() && v[2].get("opened_at_local").is_none());
    }
}
