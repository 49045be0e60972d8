//! The web console: pages for people, served by the daemon, rendered on the server (maud)
//! with one small script of our own for countdowns and live updates (Server-Sent Events).
//! Every page and form is a route of [`Routes`] with its [`Perm`], so the guard that checks
//! the API checks the console too; a form calls the same functions as the API's handler.
//! Forms carry a token derived from the session (and the guard checks their origin); every
//! page is sent with a strict Content-Security-Policy, and maud escapes every string.

mod pages;
mod words;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, Utc};
use maud::{DOCTYPE, Markup, html};
use sha2::{Digest, Sha256};

use super::guard::{COOKIE, Routes, cookie};
use super::{ApiError, AppState};
use crate::access::{Perm, Principal, Role};
use crate::report::Lang;

/// The language cookie.
const LANG_COOKIE: &str = "aftercare_lang";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s)
        .page("/", Perm::SignedIn, pages::home)
        .page("/login", Perm::Open, pages::login_page)
        .form("/login", Perm::Open, pages::login_form)
        .form("/logout", Perm::SignedIn, pages::logout_form)
        .page("/lang", Perm::Open, pages::set_lang)
        .page("/tickets", Perm::ReadTickets, pages::queue)
        .page("/tickets/new", Perm::OpenTickets, pages::new_ticket)
        .form("/tickets/new", Perm::OpenTickets, pages::open_ticket)
        .page("/tickets/{id}", Perm::ReadTickets, pages::ticket)
        .form("/tickets/{id}/act", Perm::ActOnTickets, pages::act)
        .form("/tickets/{id}/comment", Perm::Comment, pages::comment)
        .form("/tickets/{id}/factory-arrival", Perm::ActOnTickets, pages::factory_arrival)
        .form("/tickets/{id}/repair", Perm::Repair, pages::repair)
        .page("/live", Perm::ReadTickets, pages::live)
        .page("/work", Perm::SignedIn, pages::my_work)
        .page("/fleet", Perm::ReadDevices, pages::fleet)
        .page("/outbox", Perm::ReadOutbox, pages::outbox)
        .page("/sla", Perm::ReadSla, pages::sla)
        .page("/reports", Perm::ReadReports, pages::reports)
        .page("/visits", Perm::ReadWorkOrders, pages::calendar)
        .page("/spares", Perm::ReadSpares, pages::spares)
        .form("/spares/{model}/{part}", Perm::CountSpares, pages::count_spares)
        .form("/outbox/{id}/retry", Perm::RetryOutbox, pages::retry_outbox)
        .form("/notifications/{id}/retry", Perm::RetryOutbox, pages::retry_notification)
        .page("/devices/{id}", Perm::ReadDevices, pages::device)
        .page("/visits/{id}", Perm::ReadWorkOrders, pages::visit)
        .form("/visits/{id}/start", Perm::DoVisits, pages::start_visit)
        .form("/visits/{id}/complete", Perm::DoVisits, pages::complete_visit)
        .page("/static/app.js", Perm::Open, pages::script)
        .page("/static/app.css", Perm::Open, pages::style)
}

/// Where a person who is not signed in goes: the login page, then back here.
pub(super) fn to_login(path: &str) -> Response {
    let next = if path.starts_with('/') && !path.starts_with("//") { path } else { "/" };
    let to = format!("/login?next={}", encode(next));
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A refusal (or anything else gone wrong) as a page.
pub(super) fn refused(headers: &HeaderMap, status: StatusCode, message: &str) -> Response {
    let lang = lang_of(headers);
    let w = words::words(lang);
    let heading = if status == StatusCode::NOT_FOUND { w.not_found } else { w.refused };
    let body = html! {
        h1 { (heading) }
        p.error role="alert" { (message) }
        p { a href="/tickets" { (w.back) } }
    };
    page(status, lang, heading, None, body)
}

/// The page's language: the cookie's, else the browser's first choice of ours.
fn lang_of(headers: &HeaderMap) -> Lang {
    if let Some(l) = cookie(headers, LANG_COOKIE).and_then(|c| Lang::parse(&c)) {
        return l;
    }
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.trim_start().to_ascii_lowercase().starts_with("zh") { Lang::Zh } else { Lang::En }
}

/// The token a form of this session carries: the session's secret cannot be read by another
/// site's page, nor can this, derived from it.
fn csrf_token(headers: &HeaderMap) -> String {
    let secret = cookie(headers, COOKIE).unwrap_or_default();
    Sha256::digest(format!("aftercare-form:{secret}").as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a form's token is this session's.
fn csrf_ok(headers: &HeaderMap, given: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let want = csrf_token(headers);
    cookie(headers, COOKIE).is_some() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
}

/// Percent-encodes a path for a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A time as people at the site read it.
fn local(t: DateTime<Utc>, offset: FixedOffset) -> String {
    t.with_timezone(&offset).format("%Y-%m-%d %H:%M").to_string()
}

/// A whole page: the head, the navigation for who is signed in, and `body`.
fn page(
    status: StatusCode,
    lang: Lang,
    heading: &str,
    who: Option<(&Principal, &HeaderMap)>,
    body: Markup,
) -> Response {
    let w = words::words(lang);
    let markup = html! {
        (DOCTYPE)
        html lang=(w.lang_tag) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (heading) " · " (w.title) }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header {
                    nav aria-label=(w.title) {
                        a.brand href="/" { (w.title) }
                        @if let Some((p, _)) = who {
                            @if p.may(Perm::ReadTickets) {
                                a href="/tickets" { (w.tickets) }
                            }
                            @if p.may(Perm::ReadDevices) {
                                a href="/fleet" { (w.fleet) }
                            }
                            @if p.may(Perm::ReadSla) {
                                a href="/sla" { (w.sla) }
                            }
                            @if p.may(Perm::ReadWorkOrders) {
                                a href="/visits" { (w.calendar) }
                            }
                            @if p.may(Perm::ReadReports) {
                                a href="/reports" { (w.reports) }
                            }
                            @if p.may(Perm::ReadSpares) {
                                a href="/spares" { (w.spares) }
                            }
                            @if p.may(Perm::ReadOutbox) {
                                a href="/outbox" { (w.undelivered) }
                            }
                            @if p.may(Perm::DoVisits) {
                                a href="/work" { (w.my_work) }
                            }
                            @if p.may(Perm::OpenTickets) {
                                a href="/tickets/new" {
                                    (if p.role == Role::Customer { w.report_problem } else { w.new_call })
                                }
                            }
                        }
                        span.spacer {}
                        a href="/lang?to=zh-CN" lang="zh-CN" { "中文" }
                        a href="/lang?to=en" lang="en" { "English" }
                        @if let Some((p, headers)) = who {
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf_token(headers));
                                span.who { (p.name) }
                                button type="submit" { (w.log_out) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    let mut r = (status, axum::response::Html(markup.into_string())).into_response();
    secure(r.headers_mut());
    r
}

/// The headers every console answer carries.
fn secure(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A redirect after a form (303, so that a reload does not send it again).
fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// An API refusal met by a form or a page: shown as a page.
fn shown(headers: &HeaderMap, e: ApiError) -> Response {
    let (status, message) = e.parts();
    refused(headers, status, message)
}
