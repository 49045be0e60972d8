//! The one permission check. Every route is registered through [`Routes`] with the
//! [`Perm`] it needs; the guard in front of each one finds who is asking (a bearer token or a
//! login's session cookie), answers 401 or 403 for the ones it may not serve, hands the
//! handler the [`Principal`], and writes every change to the audit log.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use super::{ApiError, AppState};
use crate::access::{Perm, Principal};
use crate::store::NewAudit;

/// The session cookie's name.
pub(super) const COOKIE: &str = "aftercare_session";

/// A route as registered: what the route-walking and permission-matrix tests go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteEntry {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) perm: Perm,
    /// A page of the console: HTML for people, not a route of the JSON API.
    pub(crate) page: bool,
}

/// The API's routes, each with its permission: the only way a route is added.
pub(super) struct Routes {
    state: AppState,
    router: Router<AppState>,
    table: Vec<RouteEntry>,
    /// The route being added is a console page.
    page: bool,
}

impl Routes {
    pub(super) fn new(state: &AppState) -> Routes {
        Routes { state: state.clone(), router: Router::new(), table: Vec::new(), page: false }
    }

    pub(super) fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, perm: Perm, h: H) -> Routes {
        self.add(Method::GET, path, perm, axum::routing::get(h))
    }

    /// A console page: the same check, but a person who is not signed in is sent to the login
    /// page, and a refusal is a page too.
    pub(super) fn page<H: Handler<T, AppState>, T: 'static>(mut self, path: &'static str, perm: Perm, h: H) -> Routes {
        self.page = true;
        let r = self.add(Method::GET, path, perm, axum::routing::get(h));
        Routes { page: false, ..r }
    }

    /// A console form's target, checked as [`Routes::page`].
    pub(super) fn form<H: Handler<T, AppState>, T: 'static>(mut self, path: &'static str, perm: Perm, h: H) -> Routes {
        self.page = true;
        let r = self.add(Method::POST, path, perm, axum::routing::post(h));
        Routes { page: false, ..r }
    }

    pub(super) fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, perm: Perm, h: H) -> Routes {
        self.add(Method::POST, path, perm, axum::routing::post(h))
    }

    pub(super) fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, perm: Perm, h: H) -> Routes {
        self.add(Method::PUT, path, perm, axum::routing::put(h))
    }

    pub(super) fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, perm: Perm, h: H) -> Routes {
        self.add(Method::DELETE, path, perm, axum::routing::delete(h))
    }

    fn add(mut self, method: Method, path: &'static str, perm: Perm, mr: MethodRouter<AppState>) -> Routes {
        let page = self.page;
        let guarded = mr.route_layer(axum::middleware::from_fn_with_state((self.state.clone(), perm, page), guard));
        self.router = self.router.route(path, guarded);
        self.table.push(RouteEntry { method, path, perm, page });
        self
    }

    pub(super) fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    pub(super) fn into_parts(self) -> (Router<AppState>, Vec<RouteEntry>) {
        (self.router, self.table)
    }
}

/// What a handler adds to its change's audit line: who, when the request named nobody (a
/// login, a helpdesk), and what it did.
#[derive(Debug, Clone, Default)]
pub(super) struct AuditNote {
    pub(super) actor: Option<String>,
    pub(super) detail: String,
}

/// A secret the request carries: a bearer token, or else the session cookie.
pub(super) fn secret(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?.trim();
        return Some((token.to_string(), false));
    }
    cookie(headers, COOKIE).map(|c| (c, true))
}

/// The value of cookie `name`.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The address of the client a request came from: the peer's, or behind a proxy the last
/// address of `X-Forwarded-For` (the one our proxy added).
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientIp(pub(super) std::net::IpAddr);

fn client_ip(headers: &HeaderMap, peer: SocketAddr, behind_proxy: bool) -> std::net::IpAddr {
    let forwarded = || {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|a| a.trim().parse().ok())
    };
    if behind_proxy { forwarded().unwrap_or(peer.ip()) } else { peer.ip() }
}

/// Whether the client reached us over TLS: ours, or behind a proxy its `X-Forwarded-Proto`.
pub(super) fn over_tls(s: &AppState, headers: &HeaderMap) -> bool {
    s.tls
        || (s.access.behind_proxy
            && headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p == "https"))
}

/// The host (and port) a request was sent to: `X-Forwarded-Host` behind a proxy, else `Host`.
fn request_host(headers: &HeaderMap, behind_proxy: bool) -> &str {
    let forwarded = behind_proxy.then(|| headers.get("x-forwarded-host")).flatten();
    forwarded.or_else(|| headers.get(header::HOST)).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// [`request_host`]'s name, without its port, in lower case.
fn host_name(headers: &HeaderMap, behind_proxy: bool) -> String {
    let host = request_host(headers, behind_proxy);
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.to_ascii_lowercase()
}

/// Whether a request that a browser may have sent from another site is our own page's: its
/// `Origin` (or, lacking one, `Referer`) names the host it was sent to (behind a proxy, the
/// one in `X-Forwarded-Host`).
pub(super) fn same_origin(headers: &HeaderMap, behind_proxy: bool) -> bool {
    let host = request_host(headers, behind_proxy);
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let authority = from.split_once("://").map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
    !host.is_empty() && authority == host
}

fn is_change(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn guard(
    State((s, perm, page)): State<(AppState, Perm, bool)>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let now = s.clock.now();
    if !s.access.hosts.is_empty() && !s.access.hosts.contains(&host_name(req.headers(), s.access.behind_proxy)) {
        return ApiError(StatusCode::MISDIRECTED_REQUEST, "this server does not answer to that host name".into())
            .into_response();
    }
    let client = client_ip(req.headers(), addr, s.access.behind_proxy);
    req.extensions_mut().insert(ClientIp(client));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let public = perm.is_public() || (perm == Perm::Metrics && s.access.metrics_public);
    let mut principal: Option<Principal> = None;
    if !public {
        let Some((secret, by_cookie)) = secret(req.headers()) else {
            if page {
                return super::console::to_login(if method == Method::GET { &path } else { "/" });
            }
            return unauthorized("sign in: send `Authorization: Bearer TOKEN`, or log in at POST /api/v1/login");
        };
        let hash = crate::identity::secret_hash(&secret);
        match s.store.principal(&hash, now).await {
            Ok(Some(p)) => principal = Some(p),
            Ok(None) if page => return super::console::to_login(if method == Method::GET { &path } else { "/" }),
            Ok(None) => return unauthorized("the token or session is unknown, expired or revoked"),
            Err(e) => return ApiError::from(e).into_response(),
        }
        // A browser sends the cookie along with another site's form too: a change made by
        // cookie must come from our own origin.
        if by_cookie && is_change(&method) && !same_origin(req.headers(), s.access.behind_proxy) {
            return ApiError(StatusCode::FORBIDDEN, "a change by session must come from this site's own pages".into())
                .into_response();
        }
    }
    if let Some(p) = &principal {
        if !p.may(perm) {
            let message = format!("a {} may not do this", p.role);
            let resp = if page {
                super::console::refused(req.headers(), StatusCode::FORBIDDEN, &message)
            } else {
                ApiError(StatusCode::FORBIDDEN, message).into_response()
            };
            if is_change(&method) {
                audit(&s, Some(p), client, &method, &path, resp.status(), None).await;
            }
            return resp;
        }
        if is_change(&method) && !s.writes.take(p.user_id, now) {
            let mut r =
                ApiError(StatusCode::TOO_MANY_REQUESTS, "too many changes at once; slow down".into()).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return r;
        }
        req.extensions_mut().insert(p.clone());
    }
    let resp = next.run(req).await;
    let note = resp.extensions().get::<AuditNote>().cloned();
    // Every change is audited, and every try at one by a signed-in user; of the public routes,
    // what the handler names (logins, helpdesk events taken). A request turned away for load
    // changed nothing and is not written, so that a flood of them cannot fill the log.
    let load = matches!(resp.status(), StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE);
    if is_change(&method) && !load && (principal.is_some() || note.is_some()) {
        audit(&s, principal.as_ref(), client, &method, &path, resp.status(), note).await;
    }
    resp
}

/// Changes per user: a bucket of a fifth of a minute's changes (at least 60) refilled at
/// `http.writes_per_minute` (default 300), so that one user's script cannot flood the store,
/// the helpdesks or the audit log.
#[derive(Debug)]
pub(crate) struct WriteLimiter {
    buckets: std::sync::Mutex<std::collections::HashMap<i64, (f64, chrono::DateTime<chrono::Utc>)>>,
    /// Changes a second.
    rate: f64,
    burst: f64,
}

impl Default for WriteLimiter {
    fn default() -> WriteLimiter {
        WriteLimiter::new(crate::access::AccessConfig::default().writes_per_minute)
    }
}

impl WriteLimiter {
    pub(crate) fn new(per_minute: u32) -> WriteLimiter {
        let per_minute = f64::from(per_minute.max(1));
        WriteLimiter { buckets: Default::default(), rate: per_minute / 60.0, burst: (per_minute / 5.0).max(60.0) }
    }

    /// Whether `user` may make one more change at `now`.
    pub(crate) fn take(&self, user: i64, now: chrono::DateTime<chrono::Utc>) -> bool {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = b.entry(user).or_insert((self.burst, now));
        let secs = (now - *last).num_milliseconds().max(0) as f64 / 1000.0;
        *tokens = (*tokens + secs * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError(StatusCode::UNAUTHORIZED, message.to_string()).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    r
}

async fn audit(
    s: &AppState,
    p: Option<&Principal>,
    client: std::net::IpAddr,
    method: &Method,
    path: &str,
    status: StatusCode,
    note: Option<AuditNote>,
) {
    let note = note.unwrap_or_default();
    let actor = note.actor.as_deref().or(p.map(|p| p.name.as_str())).unwrap_or("-");
    let e = NewAudit {
        at: s.clock.now(),
        actor,
        token_id: p.map(|p| p.token_id),
        address: &client.to_string(),
        method: method.as_str(),
        path,
        status: status.as_u16(),
        detail: &note.detail,
    };
    if let Err(err) = s.store.audit(&e).await {
        tracing::error!(error = %err, %path, "could not write the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_makes_sixty_changes_at_once_then_five_a_second() {
        let l = WriteLimiter::default();
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        assert!((0..60).all(|_| l.take(1, t0)));
        assert!(!l.take(1, t0), "the 61st at once");
        assert!(l.take(2, t0), "another user has a bucket of its own");
        let later = t0 + chrono::TimeDelta::milliseconds(1000);
        assert_eq!((0..10).filter(|_| l.take(1, later)).count(), 5);
        // A higher rate: a fifth of a minute's worth at once.
        let fast = WriteLimiter::new(6000);
        assert_eq!((0..2000).filter(|_| fast.take(1, t0)).count(), 1200);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap_or_else(|_| header::HeaderValue::from_static("")));
        }
        h
    }

    #[test]
    fn behind_a_proxy_the_client_and_the_origin_are_the_forwarded_ones() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7"), ("host", "127.0.0.1:8080")]);
        assert_eq!(client_ip(&h, peer, true).to_string(), "198.51.100.7", "the hop our proxy added");
        assert_eq!(client_ip(&h, peer, false), peer.ip(), "not behind a proxy: headers are not believed");
        let page = headers(&[
            ("origin", "https://service.example.com"),
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "service.example.com"),
        ]);
        assert!(same_origin(&page, true));
        assert!(!same_origin(&page, false));
        let other = headers(&[("origin", "https://evil.example"), ("x-forwarded-host", "service.example.com")]);
        assert!(!same_origin(&other, true));
        assert!(!same_origin(&headers(&[("host", "a:1")]), false), "no Origin nor Referer: refused");
        assert_eq!(host_name(&headers(&[("host", "Service.Example.com:8443")]), false), "service.example.com");
        assert_eq!(host_name(&headers(&[("host", "[::1]:8080")]), false), "::1");
        assert_eq!(host_name(&page, true), "service.example.com");
    }
}
