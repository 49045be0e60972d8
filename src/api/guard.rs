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
}

/// The API's routes, each with its permission: the only way a route is added.
pub(super) struct Routes {
    state: AppState,
    router: Router<AppState>,
    table: Vec<RouteEntry>,
}

impl Routes {
    pub(super) fn new(state: &AppState) -> Routes {
        Routes { state: state.clone(), router: Router::new(), table: Vec::new() }
    }

    pub(super) fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, perm: Perm, h: H) -> Routes {
        self.add(Method::GET, path, perm, axum::routing::get(h))
    }

    pub(super) fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, perm: Perm, h: H) -> Routes {
        self.add(Method::POST, path, perm, axum::routing::post(h))
    }

    pub(super) fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, perm: Perm, h: H) -> Routes {
        self.add(Method::DELETE, path, perm, axum::routing::delete(h))
    }

    fn add(mut self, method: Method, path: &'static str, perm: Perm, mr: MethodRouter<AppState>) -> Routes {
        let guarded = mr.route_layer(axum::middleware::from_fn_with_state((self.state.clone(), perm), guard));
        self.router = self.router.route(path, guarded);
        self.table.push(RouteEntry { method, path, perm });
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
fn secret(headers: &HeaderMap) -> Option<(String, bool)> {
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

/// Whether a request that a browser may have sent from another site is our own page's: its
/// `Origin` (or, lacking one, `Referer`) names the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
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
    State((s, perm)): State<(AppState, Perm)>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let now = s.clock.now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let public = perm.is_public() || (perm == Perm::Metrics && s.access.metrics_public);
    let mut principal: Option<Principal> = None;
    if !public {
        let Some((secret, by_cookie)) = secret(req.headers()) else {
            return unauthorized("sign in: send `Authorization: Bearer TOKEN`, or log in at POST /api/v1/login");
        };
        let hash = crate::identity::secret_hash(&secret);
        match s.store.principal(&hash, now).await {
            Ok(Some(p)) => principal = Some(p),
            Ok(None) => return unauthorized("the token or session is unknown, expired or revoked"),
            Err(e) => return ApiError::from(e).into_response(),
        }
        // A browser sends the cookie along with another site's form too: a change made by
        // cookie must come from our own origin.
        if by_cookie && is_change(&method) && !same_origin(req.headers()) {
            return ApiError(StatusCode::FORBIDDEN, "a change by session must come from this site's own pages".into())
                .into_response();
        }
    }
    if let Some(p) = &principal {
        if !p.may(perm) {
            let resp = ApiError(StatusCode::FORBIDDEN, format!("a {} may not do this", p.role)).into_response();
            if is_change(&method) {
                audit(&s, Some(p), &addr, &method, &path, resp.status(), None).await;
            }
            return resp;
        }
        req.extensions_mut().insert(p.clone());
    }
    let resp = next.run(req).await;
    if is_change(&method) {
        let note = resp.extensions().get::<AuditNote>().cloned();
        audit(&s, principal.as_ref(), &addr, &method, &path, resp.status(), note).await;
    }
    resp
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError(StatusCode::UNAUTHORIZED, message.to_string()).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    r
}

async fn audit(
    s: &AppState,
    p: Option<&Principal>,
    addr: &SocketAddr,
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
        address: &addr.ip().to_string(),
        method: method.as_str(),
        path,
        status: status.as_u16(),
        detail: &note.detail,
    };
    if let Err(err) = s.store.audit(&e).await {
        tracing::error!(error = %err, %path, "could not write the audit log");
    }
}
