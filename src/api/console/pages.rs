//! The console's pages and forms.

use std::convert::Infallible;
use std::time::Duration;

use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike as _, FixedOffset};
use maud::{Markup, html};
use serde::Deserialize;

use super::words::{self, Words};
use super::{csrf_ok, csrf_token, lang_of, local, page, secure, see_other, shown};
use crate::access::{Perm, Principal, Role, may_move_to};
use crate::api::guard::{AuditNote, ClientIp, same_origin};
use crate::api::tickets::{
    NewTicket, ReporterBody, TransitionBody, act as move_ticket, arrived_at_factory, comment_on, report, seen_ticket,
    ticket_id,
};
use crate::api::{ApiError, AppState};
use crate::report::Lang;
use crate::tickets::model::TicketFilter;
use crate::tickets::repair::RepairRecord;
use crate::tickets::{State as TicketState, Ticket};

/// Where a signed-in person starts: an engineer at its own work, everyone else at the tickets.
pub(super) async fn home(Extension(p): Extension<Principal>) -> Response {
    if p.role == Role::Engineer { see_other("/work") } else { see_other("/tickets") }
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// A path of ours to go back to after logging in; anything else goes home.
fn next_path(next: Option<&str>) -> String {
    // A browser drops tabs and line breaks from a URL, and reads `/\` as `//`: a path of ours
    // is a `/` and then anything but another slash, with no such byte anywhere.
    match next {
        Some(n)
            if n.starts_with('/')
                && !n[1..].starts_with(['/', '\\'])
                && n.bytes().all(|b| b > 0x20 && b != 0x7f && b != b'\\') =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

pub(super) async fn login_page(headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let next = next_path(q.next.as_deref());
    let body = html! {
        h1 { (w.log_in) }
        @if q.failed.is_some() {
            p.error role="alert" { (w.wrong_login) }
        }
        form.login method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            label for="user" { (w.user) }
            input #user name="user" autocomplete="username" required autofocus;
            label for="password" { (w.password) }
            input #password name="password" type="password" autocomplete="current-password" required;
            button type="submit" { (w.log_in) }
        }
    };
    page(StatusCode::OK, lang, w.log_in, None, body)
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
}

pub(super) async fn login_form(
    State(s): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, ApiError> {
    // Logging someone in from another site's page is refused, as every change by cookie is.
    if !same_origin(&headers, s.access.behind_proxy) {
        return Ok(super::refused(&headers, StatusCode::FORBIDDEN, "a login must come from this site's own page"));
    }
    let next = next_path(f.next.as_deref());
    match crate::api::account::sign_in(&s, ip, &headers, &f.user, &f.password).await? {
        Ok((cookie, _)) => {
            let mut r = see_other(&next);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r.extensions_mut().insert(AuditNote { actor: Some(f.user.clone()), detail: "login (console)".into() });
            Ok(r)
        }
        // Held for too many failures, or busy: said as it is, with when to try again.
        Err(refusal) if refusal.status() != StatusCode::UNAUTHORIZED => Ok(refusal),
        Err(refusal) => {
            let mut r = see_other(&format!("/login?failed=1&next={}", super::encode(&next)));
            if let Some(note) = refusal.extensions().get::<AuditNote>() {
                r.extensions_mut().insert(note.clone());
            }
            Ok(r)
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn logout_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    if !csrf_ok(&headers, &f.csrf) {
        return Ok(stale(&headers));
    }
    if let Some(c) = super::cookie(&headers, super::COOKIE) {
        s.store.end_session(&crate::identity::secret_hash(&c), s.clock.now()).await?;
    }
    let mut r = see_other("/login");
    let gone = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", super::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&gone) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub(super) struct LangQuery {
    to: Option<String>,
}

pub(super) async fn set_lang(headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let lang = q.to.as_deref().and_then(Lang::parse).unwrap_or(Lang::En);
    let tag = words::words(lang).lang_tag;
    // Back to the page the switch was on, when it is one of ours.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.split_once("://").map(|(_, rest)| rest))
        .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
        .filter(|p| !p.starts_with("/lang"));
    let mut r = see_other(&next_path(back.as_deref()));
    if let Ok(v) =
        HeaderValue::from_str(&format!("{}={tag}; Path=/; SameSite=Lax; Max-Age=31536000", super::LANG_COOKIE))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct QueueQuery {
    /// `all`: every ticket, not only open ones.
    show: Option<String>,
    /// `newest`: newest first instead of the nearest deadline first.
    sort: Option<String>,
    /// The caller's own tickets.
    mine: Option<String>,
    /// `rows`: the table's rows alone, for the live refresh.
    fragment: Option<String>,
}

use chrono::Offset as _;

/// The site's offset (UTC when the site is unknown).
fn site_offset(s: &AppState, site: &str) -> FixedOffset {
    crate::report::offset_of(&s.fleet, None, Some(site))
}

/// The most tickets the queue shows at once.
const QUEUE_MAX: i64 = 2_000;

/// The ticket queue: the nearest deadline first, with a countdown to it and a mark on a
/// missed clock; kept live by the script.
pub(super) async fn queue(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> Result<Response, ApiError> {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let all = q.show.as_deref() == Some("all");
    let newest = q.sort.as_deref() == Some("newest");
    let mine = q.mine.is_some();
    let filter = TicketFilter {
        open: (!all).then_some(true),
        customers: p.scope.customers().map(|c| c.iter().cloned().collect()),
        assignee: mine.then(|| p.name.clone()),
        by_deadline: !newest,
        limit: QUEUE_MAX,
        ..TicketFilter::default()
    };
    let tickets = s.store.tickets(&filter).await?;
    let rows = rows(&s, lang, w, &tickets);
    if q.fragment.as_deref() == Some("rows") {
        let mut r = axum::response::Html(rows.into_string()).into_response();
        secure(r.headers_mut());
        return Ok(r);
    }
    let heading = if mine { w.my_work } else { w.tickets };
    let body = html! {
        h1 { (heading) }
        form.filters method="get" action="/tickets" {
            @if mine { input type="hidden" name="mine" value="1"; }
            label for="show" { (w.show) }
            select #show name="show" {
                option value="open" selected[!all] { (w.open_only) }
                option value="all" selected[all] { (w.all) }
            }
            label for="sort" { (w.sort) }
            select #sort name="sort" {
                option value="due" selected[!newest] { (w.by_deadline) }
                option value="newest" selected[newest] { (w.newest) }
            }
            button type="submit" { (w.show) }
            span.live aria-live="polite" data-live="/live" { (w.live) }
        }
        p.hint { (w.times_local) }
        div.scroll tabindex="0" {
            table.queue data-late=(w.late) data-left=(w.left) data-breached=(w.breached) {
                thead {
                    tr {
                        th scope="col" { "#" }
                        th scope="col" { (w.tier) }
                        th scope="col" { (w.about) }
                        th scope="col" { (w.site) }
                        th scope="col" { (w.state) }
                        th scope="col" { (w.assignee) }
                        th scope="col" { (w.next_deadline) }
                    }
                }
                tbody #rows { (rows) }
            }
        }
    };
    Ok(page(StatusCode::OK, lang, heading, Some((&p, &headers)), body))
}

/// A ticket's title in the page's language: its fault's title, or for a person's report that
/// names no fault, the category and the reporter's own first words.
fn title_in(s: &AppState, lang: Lang, t: &Ticket) -> String {
    if lang == Lang::En {
        return t.title.clone();
    }
    if !t.code.0.is_empty()
        && let Some(p) = s.fleet.kinds.iter().find(|k| k.name == t.kind)
    {
        return p.fault_title_zh(t.code.as_str());
    }
    let first: String =
        t.problem.as_deref().unwrap_or_default().lines().next().unwrap_or_default().chars().take(80).collect();
    format!("{}：{first}", words::category(lang, t.category))
}

/// What a ticket is about, in the page's language.
fn about_in(lang: Lang, t: &Ticket) -> String {
    match lang {
        Lang::En => t.about(),
        Lang::Zh => {
            let place = if t.device.0.is_empty() { t.site.as_str() } else { t.device.as_str() };
            place.to_string()
        }
    }
}

fn rows(s: &AppState, lang: Lang, w: &Words, tickets: &[Ticket]) -> Markup {
    html! {
        @if tickets.is_empty() {
            tr { td colspan="7" { (w.no_tickets) } }
        }
        @for t in tickets {
            @let breached = t.clock.acknowledge_breached_at.is_some() || t.clock.on_site_breached_at.is_some()
                || t.clock.resolve_breached_at.is_some();
            tr data-ticket=(t.id.0) class=(format!("tier{}", t.tier.number())) {
                td { a href=(format!("/tickets/{}", t.id.0)) { (t.id.0) } }
                td { (words::tier(lang, t.tier.number())) }
                td {
                    a href=(format!("/tickets/{}", t.id.0)) { (title_in(s, lang, t)) }
                    br;
                    small { (about_in(lang, t)) " · " (words::category(lang, t.category)) }
                }
                td { (t.site.as_str()) }
                td { (words::state(lang, t.state)) }
                td { (t.assignee.as_deref().unwrap_or(w.nobody)) }
                td.deadline {
                    @if breached {
                        span.breach { (w.breached) " " }
                    }
                    @match t.clock.next_due {
                        Some(due) => {
                            time datetime=(due.to_rfc3339()) data-due=(due.to_rfc3339()) {
                                (local(due, site_offset(s, t.site.as_str())))
                            }
                        }
                        None => { (w.none) }
                    }
                }
            }
        }
    }
}

/// One ticket: what it is about, its clocks, its timeline, and what the user may do with it.
pub(super) async fn ticket(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let t = match ticket_id(&id) {
        Ok(id) => seen_ticket(&s, &p, id).await,
        Err(e) => Err(e),
    };
    let t = match t {
        Ok(t) => t,
        Err(e) => return shown(&headers, e),
    };
    let offset = site_offset(&s, t.site.as_str());
    let at = |d: Option<chrono::DateTime<chrono::Utc>>| d.map_or_else(|| w.none.to_string(), |d| local(d, offset));
    let targets: Vec<TicketState> = if p.may(Perm::ActOnTickets) {
        t.state.next().iter().copied().filter(|to| may_move_to(p.role, *to)).collect()
    } else {
        Vec::new()
    };
    let engineers: Vec<String> = if p.may(Perm::Assign) {
        match s.store.users().await {
            Ok(us) => us
                .into_iter()
                .filter(|u| !u.disabled && matches!(u.role, Role::Engineer | Role::Manager))
                .filter(|u| u.customers.is_empty() || u.customers.iter().any(|c| c == t.customer.as_str()))
                .map(|u| u.name)
                .collect(),
            Err(e) => return shown(&headers, e.into()),
        }
    } else {
        Vec::new()
    };
    let csrf = csrf_token(&headers);
    // The fee scale, shown before a charged repair (002 L400).
    let fee_scale = t
        .clock
        .contract
        .as_deref()
        .and_then(|id| s.fleet.contracts.iter().find(|c| c.id == id))
        .and_then(|c| c.fee_scale.clone())
        .filter(|_| t.billing.as_ref().is_some_and(|b| b.class != crate::tickets::model::BillingClass::Free))
        .map(|(en, zh)| if lang == Lang::Zh { zh } else { en });
    let heading = format!("{} #{}", w.ticket, t.id.0);
    let body = html! {
        p { a href="/tickets" { "← " (w.back) } }
        h1 { (heading) ": " (title_in(&s, lang, &t)) }
        dl.facts {
            dt { (w.state) } dd { (words::state(lang, t.state)) }
            dt { (w.tier) } dd { (words::tier(lang, t.tier.number())) }
            dt { (w.category) " · " (w.channel) } dd { (words::category(lang, t.category)) " · " (words::channel(lang, t.channel)) }
            dt { (w.customer) } dd { (t.customer.as_str()) }
            dt { (w.site) } dd { (t.site.as_str()) }
            dt { (w.device) } dd { (if t.device.0.is_empty() { w.none } else { t.device.as_str() }) }
            dt { (w.assignee) } dd { (t.assignee.as_deref().unwrap_or(w.nobody)) }
            dt { (w.opened) } dd { (local(t.opened_at, offset)) }
            @if let Some(r) = &t.reporter {
                dt { (w.reporter) } dd { (r.name) " " (r.phone) }
            }
            @if let Some(problem) = &t.problem {
                dt { (w.problem) } dd { (problem) }
            }
            dt { (w.acknowledge_by) } dd { (at(t.clock.acknowledge_by)) }
            dt { (w.on_site_by) } dd { (at(t.clock.on_site_by)) }
            dt { (w.resolve_by) } dd { (at(t.clock.resolve_by)) }
            @for st in &t.clock.stages {
                dt { (words::stage(lang, st.clock)) }
                dd {
                    (at(st.due_by))
                    @match st.met {
                        Some(true) => { " · " span.met { (w.met) } }
                        Some(false) => { " · " span.missed { (w.missed) } }
                        None => {}
                    }
                }
            }
            @if let Some(f) = &t.factory {
                dt { (w.factory_trip) }
                dd {
                    (w.factory_sent) " " (local(f.sent_at, offset))
                    @if let Some(r) = &f.reference { " · " (r) }
                    @if let Some(a) = f.arrived_at { br; (w.factory_arrived) " " (local(a, offset)) }
                    @if let Some(b) = f.back_at { br; (w.factory_back) " " (local(b, offset)) }
                }
            }
        }
        @if t.state == TicketState::AtFactory && t.factory.as_ref().is_some_and(|f| f.arrived_at.is_none())
            && p.may(Perm::ActOnTickets) && may_move_to(p.role, TicketState::AtFactory)
        {
            form.act method="post" action=(format!("/tickets/{}/factory-arrival", t.id.0)) {
                input type="hidden" name="csrf" value=(csrf);
                label for="arrival_note" { (w.note) }
                input #arrival_note name="note" maxlength="4000";
                button type="submit" { (w.factory_arrived_now) }
            }
        }
        @if !targets.is_empty() {
            form.act method="post" action=(format!("/tickets/{}/act", t.id.0)) {
                input type="hidden" name="csrf" value=(csrf);
                label for="to" { (w.move_to) }
                select #to name="to" {
                    @for to in &targets {
                        option value=(to.as_str()) { (words::state(lang, *to)) }
                    }
                }
                @if !engineers.is_empty() {
                    label for="assignee" { (w.engineer) }
                    select #assignee name="assignee" {
                        option value="" { "—" }
                        @for e in &engineers {
                            option value=(e) { (e) }
                        }
                    }
                }
                label for="note" { (w.note) }
                input #note name="note" maxlength="4000";
                @if targets.contains(&TicketState::AtFactory) {
                    label for="factory_ref" { (w.factory_ref) }
                    input #factory_ref name="factory_ref" maxlength="100";
                }
                button type="submit" { (w.move_to) }
            }
        }
        @if p.may(Perm::Comment) {
            form.comment method="post" action=(format!("/tickets/{}/comment", t.id.0)) {
                input type="hidden" name="csrf" value=(csrf);
                label for="text" { (w.comment) }
                textarea #text name="text" maxlength="4000" required {}
                @if p.role != Role::Customer {
                    label.check { input type="checkbox" name="internal" value="1"; " " (w.internal) }
                }
                button type="submit" { (w.add_comment) }
            }
        }
        (repair_section(&p, lang, w, &t, &csrf, offset, fee_scale.as_deref()))
        h2 { (w.timeline) }
        ol.timeline {
            @for l in t.timeline.iter().flatten().filter(|l| p.role != Role::Customer || !l.internal) {
                li {
                    time datetime=(l.at.to_rfc3339()) { (local(l.at, offset)) }
                    " " strong { (l.actor) } " "
                    @if let Some(to) = l.to_state { (words::state(lang, to)) " " }
                    span { (l.note) }
                }
            }
        }
    };
    page(StatusCode::OK, lang, &heading, Some((&p, &headers)), body)
}

/// Money in cents as people write it: `12.50`.
fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Money as written (`12`, `12.5`, `12.50`) in cents; `None` for anything else.
fn cents(text: &str) -> Option<u64> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse().ok()? };
    whole.checked_mul(100)?.checked_add(frac)
}

/// How many part rows the repair form offers.
const PART_ROWS: usize = 4;

/// A ticket's repair record: as kept (a customer's user sees what it is charged, not the
/// supplier's costs), and for who may write it, the form with the customer's signature drawn on
/// the screen and photos from the camera.
fn repair_section(
    p: &Principal,
    lang: Lang,
    w: &Words,
    t: &Ticket,
    csrf: &str,
    offset: FixedOffset,
    fee_scale: Option<&str>,
) -> Markup {
    use crate::tickets::model::BillingClass;
    let kept = t.repair.as_ref();
    let record = kept.map(|r| r.record.clone()).unwrap_or_default();
    let customer = p.role == Role::Customer;
    let may_write = p.may(Perm::Repair)
        && !matches!(t.state, TicketState::Closed | TicketState::Cancelled)
        && !(p.role == Role::Engineer && t.assignee.as_deref().is_some_and(|a| a != p.name));
    if kept.is_none() && !may_write {
        return html! {};
    }
    let base = format!("/api/v1/tickets/{}/attachments", t.id.0);
    let photos: Vec<i64> = record.photos.clone();
    let signature = record.confirmation.as_ref().and_then(|c| c.signature);
    let num = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_default();
    let opt_money = |c: u64| if c == 0 { String::new() } else { money(c) };
    html! {
        h2 { (w.repair_record) }
        @if let Some(r) = kept {
            dl.facts.repair {
                @if !r.record.cause.is_empty() { dt { (w.cause) } dd { (r.record.cause) } }
                @if !r.record.work_done.is_empty() { dt { (w.work_done) } dd { (r.record.work_done) } }
                @if !r.record.parts.is_empty() {
                    dt { (w.parts) } dd {
                        ul {
                            @for part in &r.record.parts {
                                li {
                                    (part.number) @if !part.name.is_empty() { " " (part.name) }
                                    " × " (part.quantity)
                                    @if part.wear { " · " (w.wear) }
                                    @if !customer { " · " (part.stock) }
                                }
                            }
                        }
                    }
                }
                dt { (w.billing) } dd { (words::billing(lang, r.class)) }
                @if let Some(c) = &r.record.consent {
                    dt { (w.consent) } dd { (c.name) " · " (money(c.quote)) " · " (local(c.at, offset)) }
                }
                @if let Some(n) = &r.record.receipt {
                    dt { (w.receipt_number) } dd { (n) }
                }
                @if !customer { dt { (w.cost) } dd { (money(r.charge.cost)) } }
                dt { (w.charged) } dd { (money(r.charge.charged)) }
                @if let Some(c) = &r.record.confirmation {
                    dt { (w.signature) } dd {
                        (c.name) " · " (local(c.at, offset))
                        @if let Some(sig) = c.signature {
                            br;
                            img.signature src=(format!("{base}/{sig}")) alt=(format!("{}: {}", w.signature, c.name));
                        }
                    }
                }
                dt { (w.recorded) } dd { (r.recorded_by) " · " (local(r.recorded_at, offset)) }
            }
            @if !r.record.photos.is_empty() {
                div.thumbs {
                    @for id in &r.record.photos {
                        a href=(format!("{base}/{id}")) { img src=(format!("{base}/{id}")) alt=(format!("{} {id}", w.photos)); }
                    }
                }
            }
        }
        @if may_write {
            form.call.repair method="post" action=(format!("/tickets/{}/repair", t.id.0)) {
                input type="hidden" name="csrf" value=(csrf);
                label for="cause" { (w.cause) }
                textarea #cause name="cause" maxlength="4000" { (record.cause) }
                label for="work_done" { (w.work_done) }
                textarea #work_done name="work_done" maxlength="4000" { (record.work_done) }
                fieldset.parts {
                    legend { (w.parts) }
                    @for i in 0..PART_ROWS.max(record.parts.len() + 1).min(crate::tickets::repair::MAX_PARTS) {
                        @let part = record.parts.get(i);
                        div.part {
                            label for=(format!("part{i}_number")) { (w.part_number) }
                            input id=(format!("part{i}_number")) name=(format!("part{i}_number")) maxlength="200"
                                value=(part.map(|x| x.number.as_str()).unwrap_or_default());
                            label for=(format!("part{i}_name")) { (w.part_name) }
                            input id=(format!("part{i}_name")) name=(format!("part{i}_name")) maxlength="200"
                                value=(part.map(|x| x.name.as_str()).unwrap_or_default());
                            label for=(format!("part{i}_quantity")) { (w.quantity) }
                            input id=(format!("part{i}_quantity")) name=(format!("part{i}_quantity")) type="number"
                                min="1" max="10000" inputmode="numeric"
                                value=(part.map(|x| x.quantity.to_string()).unwrap_or_default());
                            label for=(format!("part{i}_stock")) { (w.stock) }
                            input id=(format!("part{i}_stock")) name=(format!("part{i}_stock")) maxlength="200"
                                value=(part.map(|x| x.stock.as_str()).unwrap_or_default());
                            label for=(format!("part{i}_cost")) { (w.unit_cost) }
                            input id=(format!("part{i}_cost")) name=(format!("part{i}_cost")) inputmode="decimal"
                                pattern="[0-9]+([.][0-9]{1,2})?"
                                value=(part.map(|x| opt_money(x.unit_cost)).unwrap_or_default());
                            label.check {
                                input type="checkbox" name=(format!("part{i}_wear")) value="1" checked[part.is_some_and(|x| x.wear)];
                                " " (w.wear)
                            }
                        }
                    }
                }
                label for="labour_minutes" { (w.labour_minutes) }
                input #labour_minutes name="labour_minutes" type="number" min="0" inputmode="numeric" value=(num(record.labour_minutes));
                label for="travel_minutes" { (w.travel_minutes) }
                input #travel_minutes name="travel_minutes" type="number" min="0" inputmode="numeric" value=(num(record.travel_minutes));
                label for="travel_km" { (w.travel_km) }
                input #travel_km name="travel_km" type="number" min="0" inputmode="numeric" value=(num(record.travel_km));
                label for="labour_cost" { (w.labour_cost) }
                input #labour_cost name="labour_cost" inputmode="decimal" pattern="[0-9]+([.][0-9]{1,2})?" value=(opt_money(record.labour_cost));
                label for="travel_cost" { (w.travel_cost) }
                input #travel_cost name="travel_cost" inputmode="decimal" pattern="[0-9]+([.][0-9]{1,2})?" value=(opt_money(record.travel_cost));
                label for="billing" { (w.billing) }
                select #billing name="billing" {
                    option value="" { (w.as_ticket) }
                    @for c in [BillingClass::Free, BillingClass::AtCost, BillingClass::Billable, BillingClass::BillableAtCost] {
                        option value=(c.as_str()) selected[record.billing == Some(c)] { (words::billing(lang, c)) }
                    }
                }
                label for="price" { (w.price) }
                input #price name="price" inputmode="decimal" pattern="[0-9]+([.][0-9]{1,2})?"
                    value=(record.price.map(money).unwrap_or_default());
                @if let Some(scale) = fee_scale {
                    p.hint.fee-scale { strong { (w.fee_scale) ": " } (scale) }
                }
                fieldset.consent {
                    legend { (w.consent) }
                    label for="consent_name" { (w.consent_name) }
                    input #consent_name name="consent_name" maxlength="200"
                        value=(record.consent.as_ref().map(|c| c.name.as_str()).unwrap_or_default());
                    label for="consent_quote" { (w.consent_quote) }
                    input #consent_quote name="consent_quote" inputmode="decimal" pattern="[0-9]+([.][0-9]{1,2})?"
                        value=(record.consent.as_ref().map(|c| money(c.quote)).unwrap_or_default());
                }
                label for="receipt" { (w.receipt_number) }
                input #receipt name="receipt" maxlength="100" value=(record.receipt.as_deref().unwrap_or_default());
                @for id in &photos { input type="hidden" name="photo" value=(id); }
                (photo_picker(w, &base))
                @if let (Some(sig), Some(c)) = (signature, record.confirmation.as_ref()) {
                    p.hint { (w.signature) ": " (c.name) }
                    img.signature src=(format!("{base}/{sig}")) alt=(format!("{}: {}", w.signature, c.name));
                }
                (signature_pad_with(w, &format!("{base}?kind=signature"), "confirm_name", "signature",
                    record.confirmation.as_ref().map(|c| c.name.as_str()).unwrap_or_default(), signature))
                button type="submit" { (w.save_record) }
            }
        }
    }
}

/// The repair form's record, read from its fields; what is wrong with it, to show.
fn repair_of(fields: &[(String, String)], now: chrono::DateTime<chrono::Utc>) -> Result<RepairRecord, String> {
    use crate::tickets::repair::{Confirmation, Part};
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).unwrap_or_default();
    let count = |name: &str| -> Result<Option<u32>, String> {
        match field(name) {
            "" => Ok(None),
            v => v.parse().map(Some).map_err(|_| format!("`{name}`: a whole number, such as 45")),
        }
    };
    let amount = |name: &str| -> Result<Option<u64>, String> {
        match field(name) {
            "" => Ok(None),
            v => cents(v).map(Some).ok_or_else(|| format!("`{name}`: an amount such as 12.50")),
        }
    };
    let mut parts = Vec::new();
    for i in 0..crate::tickets::repair::MAX_PARTS {
        let number = field(&format!("part{i}_number"));
        if number.is_empty() {
            let other = ["name", "quantity", "stock", "cost", "wear"];
            if other.iter().any(|f| !field(&format!("part{i}_{f}")).is_empty()) {
                return Err(format!("part {}: a part number is needed", i + 1));
            }
            continue;
        }
        parts.push(Part {
            number: number.to_string(),
            name: field(&format!("part{i}_name")).to_string(),
            quantity: count(&format!("part{i}_quantity"))?.unwrap_or(1),
            stock: field(&format!("part{i}_stock")).to_string(),
            wear: !field(&format!("part{i}_wear")).is_empty(),
            unit_cost: amount(&format!("part{i}_cost"))?.unwrap_or(0),
        });
    }
    let billing = match field("billing") {
        "" => None,
        b => Some(crate::tickets::model::BillingClass::parse(b).ok_or_else(|| format!("no billing class `{b}`"))?),
    };
    let signature = match field("signature") {
        "" => None,
        v => Some(v.parse::<i64>().map_err(|_| "the signature was not uploaded".to_string())?),
    };
    let consent = match (field("consent_name"), amount("consent_quote")?) {
        ("", None) => None,
        ("", Some(_)) => return Err("write the name of who agreed to the quote".into()),
        (name, quote) => Some(crate::tickets::repair::Consent {
            name: name.to_string(),
            quote: quote.unwrap_or(0),
            at: now,
            at_local: None,
        }),
    };
    let receipt = Some(field("receipt").to_string()).filter(|r| !r.is_empty());
    let confirmation = match (field("confirm_name"), signature) {
        ("", None) => None,
        ("", Some(_)) => return Err("write the name of who signed".into()),
        (name, signature) => Some(Confirmation { name: name.to_string(), signature, at: now, at_local: None }),
    };
    let mut photos = Vec::new();
    for (_, v) in fields.iter().filter(|(k, _)| k == "photo") {
        let id = v.trim().parse::<i64>().map_err(|_| "a photo was not uploaded".to_string())?;
        if !photos.contains(&id) {
            photos.push(id);
        }
    }
    Ok(RepairRecord {
        cause: field("cause").to_string(),
        work_done: field("work_done").to_string(),
        parts,
        labour_minutes: count("labour_minutes")?,
        travel_minutes: count("travel_minutes")?,
        travel_km: count("travel_km")?,
        labour_cost: amount("labour_cost")?.unwrap_or(0),
        travel_cost: amount("travel_cost")?.unwrap_or(0),
        billing,
        price: amount("price")?,
        confirmation,
        consent,
        receipt,
        photos,
    })
}

/// The repair form, kept by the API's own function.
pub(super) async fn repair(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let csrf = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or_default();
    if !csrf_ok(&headers, csrf) {
        return stale(&headers);
    }
    let id = match ticket_id(&id) {
        Ok(id) => id,
        Err(e) => return shown(&headers, e),
    };
    // A signature kept already keeps the time it was given.
    let mut record = match repair_of(&fields, s.clock.now()) {
        Ok(r) => r,
        Err(m) => return super::refused(&headers, StatusCode::BAD_REQUEST, &m),
    };
    if let Ok(Some(kept)) = s.store.repair(id.0).await {
        if let (Some(new), Some(old)) = (record.confirmation.as_mut(), &kept.record.confirmation)
            && new.name == old.name
            && new.signature == old.signature
        {
            new.at = old.at;
        }
        // So does a consent: it was given before the work, when first recorded.
        if let (Some(new), Some(old)) = (record.consent.as_mut(), &kept.record.consent)
            && new.name == old.name
            && new.quote == old.quote
        {
            new.at = old.at;
        }
    }
    let mut r = after(&headers, crate::api::repairs::record(&s, &p, id, &record).await, &format!("/tickets/{}", id.0));
    if r.status() == StatusCode::SEE_OTHER {
        r.extensions_mut().insert(AuditNote { actor: None, detail: format!("repair record of ticket {id}") });
    }
    r
}

#[derive(Debug, Deserialize)]
pub(super) struct ActForm {
    csrf: String,
    to: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    assignee: String,
    /// With a move to the factory: its return number.
    #[serde(default)]
    factory_ref: String,
}

/// A move from the ticket page, by the API's own function.
pub(super) async fn act(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ActForm>,
) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        return stale(&headers);
    }
    let id = match ticket_id(&id) {
        Ok(id) => id,
        Err(e) => return shown(&headers, e),
    };
    let current = match seen_ticket(&s, &p, id).await {
        Ok(t) => t.assignee,
        Err(e) => return shown(&headers, e),
    };
    let factory_ref = Some(f.factory_ref.trim().to_string()).filter(|r| !r.is_empty() && f.to == "at_factory");
    let b = TransitionBody {
        to: f.to,
        note: f.note,
        // "—" keeps whoever has it; naming the one who has it changes nothing either.
        assignee: Some(f.assignee).filter(|a| !a.is_empty()).filter(|a| current.as_deref() != Some(a.as_str())),
        factory_ref,
        ..TransitionBody::default()
    };
    after(&headers, move_ticket(&s, &p, id, b).await.map(|_| ()), &format!("/tickets/{}", id.0))
}

#[derive(Debug, Deserialize)]
pub(super) struct ArrivalForm {
    csrf: String,
    #[serde(default)]
    note: String,
}

/// The unit reached the factory, now: by the API's own function.
pub(super) async fn factory_arrival(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ArrivalForm>,
) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        return stale(&headers);
    }
    let id = match ticket_id(&id) {
        Ok(id) => id,
        Err(e) => return shown(&headers, e),
    };
    let done = arrived_at_factory(&s, &p, id, None, &f.note).await.map(|_| ());
    after(&headers, done, &format!("/tickets/{}", id.0))
}

#[derive(Debug, Deserialize)]
pub(super) struct CommentForm {
    csrf: String,
    text: String,
    internal: Option<String>,
}

pub(super) async fn comment(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CommentForm>,
) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        return stale(&headers);
    }
    let id = match ticket_id(&id) {
        Ok(id) => id,
        Err(e) => return shown(&headers, e),
    };
    after(
        &headers,
        comment_on(&s, &p, id, &f.text, f.internal.is_some()).await.map(|_| ()),
        &format!("/tickets/{}", id.0),
    )
}

/// The desk's form for a call (a customer's user's, for its own request): customer, site and
/// device pickers, narrowed by the script as the earlier ones are chosen.
pub(super) async fn new_ticket(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    use crate::tickets::intake::{Category, Channel};
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let customer_user = p.role == Role::Customer;
    let customers = customers_seen(&s, &p);
    let devices: Vec<&crate::fleet::Device> =
        s.fleet.devices.iter().filter(|d| p.scope.sees(d.customer.as_str())).collect();
    let mut sites: Vec<(&str, &str)> = devices.iter().map(|d| (d.site.as_str(), d.customer.as_str())).collect();
    sites.sort_unstable();
    sites.dedup();
    let heading = if customer_user { w.report_problem } else { w.new_call };
    let channels: &[Channel] =
        if customer_user { &[Channel::Web] } else { &[Channel::Phone, Channel::Email, Channel::Visit, Channel::Web] };
    let body = html! {
        h1 { (heading) }
        form.call method="post" action="/tickets/new" {
            input type="hidden" name="csrf" value=(csrf_token(&headers));
            label for="channel" { (w.channel) }
            select #channel name="channel" {
                @for c in channels { option value=(c.as_str()) { (words::channel(lang, *c)) } }
            }
            label for="category" { (w.category) }
            select #category name="category" {
                @for c in Category::ALL { option value=(c.as_str()) { (words::category(lang, *c)) } }
            }
            label for="customer" { (w.customer) }
            select #customer name="customer" required {
                @for c in &customers {
                    option value=(c.id.as_str()) { (c.id.as_str()) @if !c.name.is_empty() { " · " (c.name) } }
                }
            }
            label for="site" { (w.site) }
            select #site name="site" {
                option value="" { (w.any) }
                @for (site, customer) in &sites {
                    option value=(site) data-customer=(customer) { (site) }
                }
            }
            label for="device" { (w.device) }
            select #device name="device" {
                option value="" { (w.any) }
                @for d in &devices {
                    option value=(d.id.as_str()) data-customer=(d.customer.as_str()) data-site=(d.site.as_str()) {
                        (d.id.as_str()) " · " (d.kind)
                    }
                }
            }
            @if !customer_user {
                label for="tier" { (w.tier) }
                select #tier name="tier" {
                    option value="" { (w.auto) }
                    @for n in 1..=3u8 { option value=(n) { (words::tier(lang, n)) } }
                }
            }
            label for="reporter_name" { (w.reporter) " · " (w.name) }
            input #reporter_name name="reporter_name" maxlength="200" autocomplete="off";
            label for="reporter_phone" { (w.reporter) " · " (w.phone) }
            input #reporter_phone name="reporter_phone" type="tel" maxlength="200" autocomplete="off";
            label for="problem" { (w.problem) }
            textarea #problem name="problem" maxlength="4000" required {}
            button type="submit" { (w.open_ticket) }
        }
    };
    page(StatusCode::OK, lang, heading, Some((&p, &headers)), body)
}

#[derive(Debug, Deserialize)]
pub(super) struct CallForm {
    csrf: String,
    channel: String,
    category: String,
    customer: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    reporter_name: String,
    #[serde(default)]
    reporter_phone: String,
    problem: String,
}

/// The call form's ticket, by the API's own function.
pub(super) async fn open_ticket(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Form(f): Form<CallForm>,
) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        return stale(&headers);
    }
    let given = |v: String| Some(v).filter(|v| !v.trim().is_empty());
    let tier = match given(f.tier) {
        Some(t) => match t.parse::<u8>() {
            Ok(n) => Some(n),
            Err(_) => return super::refused(&headers, StatusCode::BAD_REQUEST, "a tier is 1, 2 or 3"),
        },
        None => None,
    };
    let b = NewTicket {
        channel: f.channel,
        category: f.category,
        customer: given(f.customer),
        site: given(f.site),
        device: given(f.device),
        tier,
        reporter: ReporterBody { name: f.reporter_name, phone: f.reporter_phone },
        problem: f.problem,
        ..NewTicket::default()
    };
    match report(&s, &p, b).await {
        Ok((t, _, what)) => {
            let mut r = see_other(&format!("/tickets/{}", t.id.0));
            r.extensions_mut().insert(AuditNote { actor: None, detail: what });
            r
        }
        Err(e) => shown(&headers, e),
    }
}

/// An engineer's day: by site, its open tickets and its visits due today or overdue.
pub(super) async fn my_work(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let sites = match crate::api::work_orders::work_of(&s, &p).await {
        Ok(sites) => sites,
        Err(e) => return shown(&headers, e),
    };
    let body = html! {
        h1 { (w.my_work) }
        @if sites.is_empty() { p { (w.nothing_today) } }
        @for site in &sites {
            section.site {
                h2 { (w.site) " " (site.site) }
                @if !site.tickets.is_empty() {
                    h3 { (w.tickets) }
                    ul.work {
                        @for t in &site.tickets {
                            li {
                                a href=(format!("/tickets/{}", t.id.0)) { "#" (t.id.0) " " (title_in(&s, lang, t)) }
                                " · " (words::state(lang, t.state))
                                @if let Some(due) = t.clock.next_due {
                                    " · " (w.next_deadline) " " (local(due, site_offset(&s, t.site.as_str())))
                                }
                            }
                        }
                    }
                }
                @if !site.visits.is_empty() {
                    h3 { (w.visits) }
                    ul.work {
                        @for v in &site.visits {
                            li {
                                a href=(format!("/visits/{}", v.id)) { (v.plan) }
                                " · " (v.device) " · " (w.due) " " (v.due_on)
                            }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, lang, w.my_work, Some((&p, &headers)), body)
}

/// A visit: its checklist as a form, the items the telemetry answers filled in.
pub(super) async fn visit(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let Ok(id) = id.parse::<i64>() else {
        return super::refused(&headers, StatusCode::NOT_FOUND, "no such visit");
    };
    let v = match crate::api::work_orders::view(&s, &p, id).await {
        Ok(v) => v,
        Err(e) => return shown(&headers, e),
    };
    let wo = &v.work_order;
    let done = wo.state == crate::domain::VisitState::Done;
    let started = wo.state == crate::domain::VisitState::InProgress;
    let csrf = csrf_token(&headers);
    // A person's answer as given; the telemetry's as its value and how it was measured.
    let text = |a: &serde_json::Value| -> String {
        match a {
            serde_json::Value::String(t) => t.clone(),
            serde_json::Value::Object(m) if m.contains_key("value") => {
                let value = match &m["value"] {
                    serde_json::Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |f| format!("{f:.3}")),
                    other => other.to_string(),
                };
                // How it was measured names a reading and a statistic, in English: said in
                // Chinese only as measured.
                match m.get("how").and_then(|h| h.as_str()) {
                    Some(how) if lang == Lang::En => format!("{value} ({how})"),
                    Some(_) => format!("{value}（{}）", w.measured),
                    None => value,
                }
            }
            other => other.to_string(),
        }
    };
    let answered = |item: &str| wo.answers.as_ref().and_then(|a| a.get(item)).map(text).unwrap_or_default();
    let measured = |item: &str| v.measured.get(item).map(text);
    let attachments = &v.attachments;
    let base = format!("/api/v1/work-orders/{}/attachments", wo.id);
    let offset = site_offset(&s, &wo.site);
    let plan = plan_word(&s, lang, &wo.contract, &wo.plan, &wo.plan);
    let heading = format!("{} #{}: {}", w.visit, wo.id, plan);
    let doing = !done && p.may(Perm::DoVisits);
    let body = html! {
        p { a href="/work" { "← " (w.my_work) } }
        h1 { (heading) }
        dl.facts {
            dt { (w.state) } dd { (words::visit_state(lang, wo.state)) " · " (words::visit_kind(lang, wo.kind)) }
            dt { (w.site) } dd { (wo.site) }
            dt { (w.device) } dd { (if wo.device.is_empty() { w.none } else { wo.device.as_str() }) }
            dt { (w.due) } dd { (wo.due_on) }
            dt { (w.assignee) } dd { (wo.assignee.as_deref().unwrap_or(w.nobody)) }
            @if let (Some(by), Some(at)) = (&wo.completed_by, wo.completed_at) {
                dt { (w.done) } dd { (by) " · " (local(at, offset)) }
            }
            @if let Some(signer) = &wo.signed_by {
                dt { (w.signature) } dd {
                    (signer)
                    @if let Some(sig) = wo.signature {
                        br;
                        img.signature src=(format!("{base}/{sig}")) alt=(format!("{}: {signer}", w.signature));
                    }
                }
            }
        }
        @if !wo.defects.is_empty() {
            h2 { (w.repair_tasks) }
            ul.work {
                @for d in &wo.defects {
                    li {
                        @if let Some(t) = d.ticket { a href=(format!("/tickets/{t}")) { "#" (t) } " " }
                        (d.text)
                    }
                }
            }
        }
        @let photos: Vec<_> = attachments.iter().filter(|a| a.kind == crate::tickets::repair::AttachmentKind::Photo).collect();
        @if !photos.is_empty() {
            h2 { (w.photos) }
            div.thumbs {
                @for a in &photos {
                    a href=(format!("{base}/{}", a.id)) { img src=(format!("{base}/{}", a.id)) alt=(format!("{} {}", w.photos, a.id)); }
                }
            }
        }
        @if !done && !started && p.may(Perm::DoVisits) {
            form.act method="post" action=(format!("/visits/{}/start", wo.id)) {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { (w.start) }
            }
        }
        h2 { (w.checklist) }
        form.call.checklist method="post" action=(format!("/visits/{}/complete", wo.id)) {
            input type="hidden" name="csrf" value=(csrf);
            @for (i, item) in wo.checklist.iter().enumerate() {
                label for=(format!("item{i}")) {
                    (plan_word(&s, lang, &wo.contract, &wo.plan, item))
                    @if v.measured.contains_key(item) { " (" (w.measured) ")" }
                }
                @match measured(item) {
                    // The telemetry answers it: kept unless the engineer writes another answer.
                    Some(m) => input id=(format!("item{i}")) name=(format!("answer:{item}")) value=(answered(item))
                        placeholder=(m) disabled[done];,
                    None => input id=(format!("item{i}")) name=(format!("answer:{item}")) value=(answered(item))
                        required disabled[done];,
                }
            }
            @if doing {
                label for="defects" { (w.defects) }
                textarea #defects name="defects" maxlength="20000" {}
                (signature_pad(w, &format!("{base}?kind=signature"), "signed_by", "signature"))
                (photo_picker(w, &base))
                button type="submit" { (w.complete) }
            }
        }
    };
    page(StatusCode::OK, lang, &heading, Some((&p, &headers)), body)
}

pub(super) async fn start_visit(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        return stale(&headers);
    }
    let Ok(id) = id.parse::<i64>() else {
        return super::refused(&headers, StatusCode::NOT_FOUND, "no such visit");
    };
    after(&headers, crate::api::work_orders::start(&s, &p, id).await.map(|_| ()), &format!("/visits/{id}"))
}

/// Completes a visit with the checklist's answers (fields `answer:ITEM`).
pub(super) async fn complete_visit(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let csrf = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or_default();
    if !csrf_ok(&headers, csrf) {
        return stale(&headers);
    }
    let Ok(id) = id.parse::<i64>() else {
        return super::refused(&headers, StatusCode::NOT_FOUND, "no such visit");
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string());
    let signed = match (field("signed_by").filter(|n| !n.is_empty()), field("signature").filter(|n| !n.is_empty())) {
        (None, None) => None,
        (Some(name), Some(sig)) => match sig.parse::<i64>() {
            Ok(signature) => Some(crate::store::Signed { name, signature }),
            Err(_) => return super::refused(&headers, StatusCode::BAD_REQUEST, "the signature was not uploaded"),
        },
        (None, Some(_)) => {
            return super::refused(&headers, StatusCode::BAD_REQUEST, "write the name of who signed");
        }
        (Some(_), None) => {
            return super::refused(&headers, StatusCode::BAD_REQUEST, "the signature is missing: draw it");
        }
    };
    let defects: Vec<String> = field("defects").map(|d| d.lines().map(str::to_string).collect()).unwrap_or_default();
    let answers: serde_json::Map<String, serde_json::Value> = fields
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("answer:").map(|item| (item.to_string(), v)))
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    after(
        &headers,
        crate::api::work_orders::complete(&s, &p, id, answers, signed, defects).await.map(|_| ()),
        &format!("/visits/{id}"),
    )
}

/// A word of a contract's plan (its name, a checklist item) in the page's language.
fn plan_word(s: &AppState, lang: Lang, contract: &str, plan: &str, word: &str) -> String {
    if lang == Lang::Zh
        && let Some(zh) = s
            .fleet
            .contracts
            .iter()
            .find(|c| c.id == contract)
            .and_then(|c| c.plans.iter().find(|p| p.name == plan))
            .and_then(|p| p.zh_of(word))
    {
        return zh.to_string();
    }
    word.to_string()
}

/// The customer's signature drawn on the screen: who signs, and the pad. The script uploads
/// the drawing to `upload` when the form is sent and puts the image's id in field `id_field`.
fn signature_pad(w: &Words, upload: &str, name_field: &str, id_field: &str) -> Markup {
    signature_pad_with(w, upload, name_field, id_field, "", None)
}

/// A signature pad holding a signature already kept (`name`, image `kept`) until another is drawn.
fn signature_pad_with(
    w: &Words,
    upload: &str,
    name_field: &str,
    id_field: &str,
    name: &str,
    kept: Option<i64>,
) -> Markup {
    html! {
        fieldset.sign data-upload=(upload) data-failed=(w.upload_failed) data-busy=(w.uploading) {
            legend { (w.signature) }
            label for=(name_field) { (w.signed_by) }
            input id=(name_field) name=(name_field) maxlength="200" autocomplete="off" value=(name);
            p.hint id=(format!("{id_field}-hint")) { (w.sign_here) }
            canvas width="600" height="200" role="img" aria-label=(w.sign_here)
                aria-describedby=(format!("{id_field}-hint")) {}
            button.secondary type="button" data-clear { (w.clear) }
            input type="hidden" name=(id_field) data-signature value=(kept.map(|k| k.to_string()).unwrap_or_default());
            p.error role="alert" data-message {}
        }
    }
}

/// Photos from the camera (or the phone's pictures): each uploaded to `base` as it is chosen,
/// made smaller first, and named in hidden `photo` fields of the form.
fn photo_picker(w: &Words, base: &str) -> Markup {
    html! {
        fieldset.photos data-upload=(format!("{base}?kind=photo")) data-view=(base) data-failed=(w.upload_failed)
            data-busy=(w.uploading) {
            legend { (w.photos) }
            label for="photo-input" { (w.take_photos) }
            input #photo-input type="file" accept="image/jpeg,image/png,image/webp" capture="environment" multiple;
            div.thumbs {}
            p role="status" data-message {}
        }
    }
}

/// The customers `p` sees, in the config's order.
fn customers_seen<'a>(s: &'a AppState, p: &Principal) -> Vec<&'a crate::fleet::Customer> {
    s.fleet.customers.iter().filter(|c| p.scope.sees(c.id.as_str())).collect()
}

/// The customer a page is about: the one named (404 outside `p`'s scope); else every customer
/// for an unscoped user, and the first of a scoped user's.
fn chosen_customer(p: &Principal, named: Option<String>) -> Result<Option<String>, ApiError> {
    let named = named.filter(|c| !c.is_empty()).or_else(|| p.scope.customers().and_then(|m| m.iter().next().cloned()));
    crate::api::scoped_customer(p, named)
}

/// A customer picker (field `customer`): "every customer" for an unscoped user, then each it sees.
fn customer_select(
    id: &str,
    p: &Principal,
    customers: &[&crate::fleet::Customer],
    chosen: Option<&str>,
    w: &Words,
) -> Markup {
    html! {
        select id=(id) name="customer" {
            @if p.scope.customers().is_none() { option value="" { (w.every_customer) } }
            @for c in customers {
                option value=(c.id.as_str()) selected[chosen == Some(c.id.as_str())] { (c.id.as_str()) }
            }
        }
    }
}

/// The answer to a form whose token is not this session's (an old page, or another site's).
fn stale(headers: &HeaderMap) -> Response {
    super::refused(headers, StatusCode::FORBIDDEN, "this form is out of date; reload the page")
}

/// A form's outcome: on to `to`, or the refusal shown as a page.
fn after(headers: &HeaderMap, outcome: Result<(), ApiError>, to: &str) -> Response {
    match outcome {
        Ok(()) => see_other(to),
        Err(e) => shown(headers, e),
    }
}

/// A kind's title in the page's language.
fn kind_title(s: &AppState, lang: Lang, kind: &str) -> String {
    match s.fleet.kinds.iter().find(|k| k.name == kind) {
        Some(k) if lang == Lang::Zh => k.title_zh.clone(),
        Some(k) => k.title.clone(),
        None => kind.to_string(),
    }
}

/// A fault's title in the page's language.
fn fault_title(s: &AppState, lang: Lang, kind: &str, code: &str) -> String {
    match s.fleet.kinds.iter().find(|k| k.name == kind) {
        Some(k) if lang == Lang::Zh => k.fault_title_zh(code),
        Some(k) => k.fault_title(code),
        None => code.to_string(),
    }
}

/// The fleet by customer and site: each device, whether it is online, and its active faults.
pub(super) async fn fleet(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let mut devices: Vec<crate::api::devices::DeviceView> = s
        .fleet
        .devices
        .iter()
        .filter(|d| p.scope.sees(d.customer.as_str()))
        .map(|d| crate::api::devices::device_view(&s, d))
        .collect();
    devices.sort_by(|a, b| {
        (a.customer.as_str(), a.site.as_str(), a.id.as_str()).cmp(&(
            b.customer.as_str(),
            b.site.as_str(),
            b.id.as_str(),
        ))
    });
    let mut groups: Vec<(String, String, Vec<&crate::api::devices::DeviceView>)> = Vec::new();
    for d in &devices {
        match groups.last_mut() {
            Some((c, site, list)) if c == d.customer.as_str() && site == d.site.as_str() => list.push(d),
            _ => groups.push((d.customer.0.clone(), d.site.0.clone(), vec![d])),
        }
    }
    let body = html! {
        h1 { (w.fleet) }
        @for (customer, site, list) in &groups {
            @let faulty = list.iter().filter(|d| !d.active_faults.is_empty()).count();
            @let online = list.iter().filter(|d| d.online == Some(true)).count();
            section.site {
                h2 { (w.customer) " " (customer) " · " (w.site) " " (site) }
                p.hint { (online) " / " (list.len()) " " (w.online) " · " (faulty) " " (w.faults) }
                div.scroll tabindex="0" {
                    table {
                        thead { tr {
                            th scope="col" { (w.device) } th scope="col" { (w.kind) } th scope="col" { (w.state) }
                            th scope="col" { (w.faults) }
                        } }
                        tbody {
                            @for d in list {
                                tr {
                                    td { a href=(format!("/devices/{}", d.id)) { (d.id.as_str()) } }
                                    td { (kind_title(&s, lang, &d.kind)) }
                                    td {
                                        @match d.online {
                                            Some(true) => span.ok { (w.online) },
                                            Some(false) => span.breach { (w.offline) },
                                            None => span.hint { (w.unheard) },
                                        }
                                    }
                                    td {
                                        @for f in &d.active_faults {
                                            span.fault { (fault_title(&s, lang, &d.kind, f.as_str())) } " "
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, lang, w.fleet, Some((&p, &headers)), body)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct DeviceQuery {
    metric: Option<String>,
    /// `24h` (default), `7d` or `30d`.
    period: Option<String>,
}

/// A device: what it is, how it is, a reading's history as a chart, and its open tickets.
pub(super) async fn device(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DeviceQuery>,
) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let dev = match crate::api::devices::known_device(&s, &p, &id) {
        Ok(d) => d,
        Err(e) => return shown(&headers, e),
    };
    let view = crate::api::devices::device_view(&s, dev);
    let profile = &s.fleet.kinds[dev.kind];
    let metrics: Vec<&str> = profile.metric_names().collect();
    let metric = q.metric.filter(|m| metrics.contains(&m.as_str())).or_else(|| metrics.first().map(|m| m.to_string()));
    let period = match q.period.as_deref() {
        Some("7d") => ("7d", chrono::TimeDelta::days(7), "1h"),
        Some("30d") => ("30d", chrono::TimeDelta::days(30), "6h"),
        _ => ("24h", chrono::TimeDelta::hours(24), "1h"),
    };
    let offset = site_offset(&s, dev.site.as_str());
    let now = s.clock.now();
    let from = (now - period.1).to_rfc3339();
    let points = match &metric {
        Some(m) => {
            match crate::api::devices::history(&s, &p, &id, Some(m.clone()), Some(&from), None, Some(period.2)).await {
                Ok(h) => h.points,
                Err(e) => return shown(&headers, e),
            }
        }
        None => Vec::new(),
    };
    let filter = TicketFilter {
        device: Some(id.clone()),
        open: Some(true),
        customers: p.scope.customers().map(|c| c.iter().cloned().collect()),
        by_deadline: true,
        limit: 100,
        ..TicketFilter::default()
    };
    let tickets = match s.store.tickets(&filter).await {
        Ok(t) => t,
        Err(e) => return shown(&headers, e.into()),
    };
    let heading = format!("{} {}", w.device, view.id.as_str());
    let body = html! {
        p { a href="/fleet" { "← " (w.fleet) } }
        h1 { (heading) }
        dl.facts {
            dt { (w.kind) } dd { (kind_title(&s, lang, &view.kind)) }
            dt { (w.customer) } dd { (view.customer.as_str()) }
            dt { (w.site) } dd { (view.site.as_str()) }
            dt { (w.model) } dd { (view.model) " · " (view.serial) }
            dt { (w.state) } dd {
                @match view.online { Some(true) => (w.online), Some(false) => (w.offline), None => (w.unheard) }
            }
            dt { (w.last_seen) } dd { (view.last_seen.map_or_else(|| w.none.to_string(), |t| local(t, offset))) }
            dt { (w.faults) } dd {
                @if view.active_faults.is_empty() { (w.none) }
                @for f in &view.active_faults { span.fault { (fault_title(&s, lang, &view.kind, f.as_str())) } " " }
            }
        }
        form.filters method="get" action=(format!("/devices/{}", view.id.as_str())) {
            label for="metric" { (w.metric) }
            select #metric name="metric" {
                @for m in &metrics { option value=(m) selected[metric.as_deref() == Some(*m)] { (m) } }
            }
            label for="period" { (w.period) }
            select #period name="period" {
                @for (v, label) in ["24h", "7d", "30d"].iter().zip(w.periods) {
                    option value=(v) selected[period.0 == *v] { (label) }
                }
            }
            button type="submit" { (w.show) }
        }
        @if let Some(m) = &metric {
            (chart(m, &points, offset, w))
        }
        h2 { (w.tickets) }
        table.queue data-late=(w.late) data-left=(w.left) data-breached=(w.breached) {
            tbody #rows { (rows(&s, lang, w, &tickets)) }
        }
    };
    page(StatusCode::OK, lang, &heading, Some((&p, &headers)), body)
}

/// A reading's history as an SVG chart: the mean as a line, each step's lowest to highest as
/// a band, the scale and the period's ends written beside it.
fn chart(metric: &str, points: &[crate::api::devices::HistoryPoint], offset: FixedOffset, w: &Words) -> Markup {
    const W: f64 = 640.0;
    const H: f64 = 200.0;
    const PAD: f64 = 8.0;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return html! { p.hint { (w.no_data) } };
    };
    let lo = points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let t0 = first.t.timestamp() as f64;
    let dt = ((last.t.timestamp() as f64) - t0).max(1.0);
    let x = |t: chrono::DateTime<chrono::Utc>| PAD + (t.timestamp() as f64 - t0) / dt * (W - 2.0 * PAD);
    let y = |v: f64| PAD + (hi - v) / span * (H - 2.0 * PAD);
    let line: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", x(p.t), y(p.mean))).collect();
    let mut band: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", x(p.t), y(p.max))).collect();
    band.extend(points.iter().rev().map(|p| format!("{:.1},{:.1}", x(p.t), y(p.min))));
    let label = format!("{metric}: {} – {}", local(first.t, offset), local(last.t, offset));
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(label) preserveAspectRatio="none" {
                title { (label) }
                polygon.band points=(band.join(" ")) {}
                polyline.mean points=(line.join(" ")) {}
            }
            figcaption {
                (metric) " · " (w.mean_range) " · "
                (format!("{lo:.2}")) " – " (format!("{hi:.2}")) " · "
                (local(first.t, offset)) " → " (local(last.t, offset))
            }
        }
    }
}

/// What could not be delivered: dead helpdesk events and notifications, each with a button
/// to send it again.
pub(super) async fn outbox(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let mine: Option<Vec<String>> = p.scope.customers().map(|c| c.iter().cloned().collect());
    let rows = match s.store.outbox(crate::domain::OutboxState::Dead, 500, mine.as_deref()).await {
        Ok(r) => r,
        Err(e) => return shown(&headers, e.into()),
    };
    let notes = match s.store.notifications(Some(crate::store::NotificationState::Dead), mine.as_deref(), 500).await {
        Ok(n) => n,
        Err(e) => return shown(&headers, e.into()),
    };
    let csrf = csrf_token(&headers);
    let retry = p.may(Perm::RetryOutbox);
    let offset = chrono::Utc.fix();
    let body = html! {
        h1 { (w.undelivered) }
        h2 { (w.helpdesk_events) }
        @if rows.is_empty() { p.hint { (w.nothing_dead) } }
        @else {
            div.scroll tabindex="0" { table {
                thead { tr {
                    th scope="col" { (w.ticket) } th scope="col" { (w.event) } th scope="col" { (w.customer) }
                    th scope="col" { (w.attempts) } th scope="col" { (w.last_error) } th scope="col" {}
                } }
                tbody {
                    @for r in &rows {
                        tr {
                            td {
                                @match r.subject {
                                    crate::store::SubjectId::Ticket(t) => a href=(format!("/tickets/{}", t.0)) { "#" (t.0) },
                                    crate::store::SubjectId::WorkOrder(v) => a href=(format!("/visits/{v}")) { (w.visit) " #" (v) },
                                }
                            }
                            td { (r.event.as_str()) " · " (local(r.created_at, offset)) " UTC" }
                            td { (r.customer) }
                            td { (r.attempts) }
                            td { (r.last_error.as_deref().unwrap_or_default()) }
                            td {
                                @if retry {
                                    form.inline method="post" action=(format!("/outbox/{}/retry", r.id)) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" { (w.retry) }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
        h2 { (w.notifications) }
        @if notes.is_empty() { p.hint { (w.nothing_dead) } }
        @else {
            div.scroll tabindex="0" { table {
                thead { tr {
                    th scope="col" { (w.ticket) } th scope="col" { (w.event) } th scope="col" { (w.assignee) }
                    th scope="col" { (w.attempts) } th scope="col" { (w.last_error) } th scope="col" {}
                } }
                tbody {
                    @for n in &notes {
                        tr {
                            td { a href=(format!("/tickets/{}", n.ticket_id)) { "#" (n.ticket_id) } }
                            td { (n.subject) }
                            td { (n.recipient) " · " (n.channel) }
                            td { (n.attempts) }
                            td { (n.last_error.as_deref().unwrap_or_default()) }
                            td {
                                @if retry {
                                    form.inline method="post" action=(format!("/notifications/{}/retry", n.id)) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" { (w.retry) }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    page(StatusCode::OK, lang, w.undelivered, Some((&p, &headers)), body)
}

pub(super) async fn retry_outbox(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        return stale(&headers);
    }
    let Ok(id) = id.parse::<i64>() else { return super::refused(&headers, StatusCode::NOT_FOUND, "no such event") };
    after(&headers, crate::api::outbox::retry_row(&s, &p, id).await.map(|_| ()), "/outbox")
}

pub(super) async fn retry_notification(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        return stale(&headers);
    }
    let Ok(id) = id.parse::<i64>() else {
        return super::refused(&headers, StatusCode::NOT_FOUND, "no such notification");
    };
    after(&headers, crate::api::outbox::retry_notice(&s, &p, id).await.map(|_| ()), "/outbox")
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SlaQuery {
    customer: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Service levels for a period: per tier, how many tickets met each clock, by the same
/// reading of the period and the same figures as `GET /api/v1/sla`.
pub(super) async fn sla(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Query<SlaQuery>,
) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let given = |v: Option<String>| v.filter(|x| !x.trim().is_empty());
    let (from_text, to_text) = (given(q.from), given(q.to));
    let (customer, from, to) =
        match crate::api::customer_period(&s, &p, given(q.customer), from_text.as_deref(), to_text.as_deref()) {
            Ok(x) => x,
            Err(e) => return shown(&headers, e),
        };
    let now = s.clock.now();
    let rows: Vec<(Option<String>, u8, crate::tickets::sla::Outcomes)> =
        match s.store.clock_outcomes(customer.as_deref(), from, to).await {
            Ok(rows) => rows
                .into_iter()
                .map(|r| {
                    let outcomes = r.outcomes(&s.fleet.contracts, now);
                    (r.contract, r.tier.number(), outcomes)
                })
                .collect(),
            Err(e) => return shown(&headers, e.into()),
        };
    let tiers = crate::tickets::sla::compliance(rows.iter().map(|(_, t, m)| (*t, *m)));
    // The stage clocks once a ticket's moment on one came, for the overall table and each contract's.
    let shown = crate::tickets::sla::shown(&tiers);
    // Per contract, in the order of the config, then the tickets no contract governed.
    let mut named: Vec<Option<&str>> = s
        .fleet
        .contracts
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| rows.iter().any(|(c, ..)| c.as_deref() == Some(*id)))
        .map(Some)
        .collect();
    for (c, ..) in &rows {
        if !named.contains(&c.as_deref()) && c.is_some() {
            named.push(c.as_deref());
        }
    }
    if rows.iter().any(|(c, ..)| c.is_none()) {
        named.push(None);
    }
    let by_contract: Vec<(
        Option<&crate::contracts::Contract>,
        Option<&str>,
        Vec<crate::tickets::sla::TierCompliance>,
    )> = named
        .iter()
        .map(|name| {
            let contract = name.and_then(|n| s.fleet.contracts.iter().find(|c| c.id == n));
            let own = rows.iter().filter(|(c, ..)| c.as_deref() == *name).map(|(_, t, m)| (*t, *m));
            (contract, *name, crate::tickets::sla::compliance(own))
        })
        .collect();
    let customers = customers_seen(&s, &p);
    let offset = crate::report::offset_of(&s.fleet, customer.as_deref(), None);
    let day = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&offset).format("%Y-%m-%d").to_string();
    let pct = |c: &crate::tickets::sla::ClockCompliance| {
        c.share.map_or_else(|| "—".to_string(), |x| format!("{:.1} %", x * 100.0))
    };
    let body = html! {
        h1 { (w.sla) }
        form.filters method="get" action="/sla" {
            label for="customer" { (w.customer) }
            (customer_select("customer", &p, &customers, customer.as_deref(), w))
            label for="from" { (w.from) }
            input #from name="from" type="date" value=(day(from));
            label for="to" { (w.to) }
            input #to name="to" type="date" value=(day(to));
            button type="submit" { (w.show) }
        }
        div.scroll tabindex="0" { table.sla {
            thead {
                tr {
                    th scope="col" rowspan="2" { (w.tier) }
                    th scope="col" rowspan="2" { (w.tickets) }
                    @for i in &shown { th scope="colgroup" colspan="3" { (w.clocks[*i]) } }
                }
                tr { @for _ in &shown { th scope="col" { (w.met) } th scope="col" { (w.missed) } th scope="col" { (w.share) } } }
            }
            tbody {
                @for t in &tiers {
                    tr {
                        th scope="row" { (words::tier(lang, t.tier)) }
                        td { (t.tickets) }
                        @for i in &shown {
                            @let c = t.clocks()[*i].1;
                            td { (c.met) } td { (c.missed) } td { (pct(c)) }
                        }
                    }
                }
            }
        } }
        h2 { (w.by_contract) }
        @for (contract, name, tiers) in &by_contract {
            section.contract {
                h3 {
                    (w.contract) " "
                    @match (contract, name) {
                        (Some(c), _) => {
                            (c.id)
                            @let title = if lang == Lang::Zh { &c.title_zh } else { &c.title };
                            @if !title.is_empty() { " · " (title) }
                        },
                        (None, Some(n)) => (n),
                        (None, None) => (w.none),
                    }
                }
                div.scroll tabindex="0" { table.sla {
                    thead {
                        tr {
                            th scope="col" rowspan="2" { (w.tier) }
                            th scope="col" rowspan="2" { (w.tickets) }
                            @for i in &shown { th scope="colgroup" colspan="4" { (w.clocks[*i]) } }
                        }
                        tr { @for _ in &shown {
                            th scope="col" { (w.target) } th scope="col" { (w.met) } th scope="col" { (w.missed) }
                            th scope="col" { (w.share) }
                        } }
                    }
                    tbody {
                        @for t in tiers.iter().filter(|t| t.tickets > 0) {
                            @let clocks = contract.and_then(|c| c.tiers.get(usize::from(t.tier.saturating_sub(1))));
                            tr {
                                th scope="row" { (words::tier(lang, t.tier)) }
                                td { (t.tickets) }
                                @for i in &shown {
                                    @let c = t.clocks()[*i].1;
                                    @let spec = clocks.and_then(|k| crate::tickets::clocks::spec(k, crate::tickets::sla::CLOCKS[*i]));
                                    td { (spec.map_or_else(|| "—".to_string(), |x| words::clock(lang, x))) }
                                    td { (c.met) } td { (c.missed) }
                                    td class=(if c.missed > 0 { "breach-text" } else { "" }) { (pct(c)) }
                                }
                            }
                        }
                    }
                } }
            }
        }
    };
    page(StatusCode::OK, lang, w.sla, Some((&p, &headers)), body)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ReportsQuery {
    customer: Option<String>,
}

/// Reports: one made for a customer and a period, as PDF, HTML, CSV or JSON, by the API's own
/// address (the form goes there), and the reports kept, newest first.
pub(super) async fn reports(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Query<ReportsQuery>,
) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let customer = match chosen_customer(&p, q.customer) {
        Ok(c) => c,
        Err(e) => return shown(&headers, e),
    };
    let kept = match s.store.reports(customer.as_deref(), 200).await {
        Ok(r) => r,
        Err(e) => return shown(&headers, e.into()),
    };
    let customers = customers_seen(&s, &p);
    let offset = crate::report::offset_of(&s.fleet, customer.as_deref(), None);
    let now = s.clock.now().with_timezone(&offset).date_naive();
    let first = now.with_day(1).unwrap_or(now);
    let last_month = (first - chrono::TimeDelta::days(1)).with_day(1).unwrap_or(first);
    let day = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&offset).format("%Y-%m-%d").to_string();
    let body = html! {
        h1 { (w.reports) }
        h2 { (w.make_report) }
        form.call method="get" action="/api/v1/reports" {
            label for="customer" { (w.customer) }
            select #customer name="customer" required {
                @for c in &customers {
                    option value=(c.id.as_str()) selected[customer.as_deref() == Some(c.id.as_str())] {
                        (c.id.as_str()) @if !c.name.is_empty() { " · " (c.name) }
                    }
                }
            }
            label for="from" { (w.from) }
            input #from name="from" type="date" required value=(last_month.to_string());
            label for="to" { (w.to) }
            input #to name="to" type="date" required value=(first.to_string());
            label for="format" { (w.format) }
            select #format name="format" {
                option value="pdf" { "PDF" }
                option value="html" { "HTML" }
                option value="csv" { "CSV" }
                option value="json" { "JSON" }
            }
            label for="report-lang" { (w.language) }
            select #report-lang name="lang" {
                option value="zh-CN" selected[lang == Lang::Zh] { "中文" }
                option value="en" selected[lang == Lang::En] { "English" }
            }
            button type="submit" { (w.make_report) }
        }
        h2 { (w.kept_reports) }
        @if p.scope.customers().is_none() || customers.len() > 1 {
            form.filters method="get" action="/reports" {
                label for="kept-customer" { (w.customer) }
                (customer_select("kept-customer", &p, &customers, customer.as_deref(), w))
                button type="submit" { (w.show) }
            }
        }
        @if kept.is_empty() { p.hint { (w.no_reports) } }
        @else {
            div.scroll tabindex="0" { table.kept {
                thead { tr {
                    th scope="col" { "#" } th scope="col" { (w.made_at) } th scope="col" { (w.customer) }
                    th scope="col" { (w.period_col) } th scope="col" { (w.cadence) } th scope="col" { (w.language) }
                    th scope="col" { (w.due_by) } th scope="col" {}
                } }
                tbody {
                    @for r in &kept {
                        tr {
                            td { (r.id) }
                            td { (local(r.made_at, offset)) }
                            td { (r.customer) @if let Some(site) = &r.site { " · " (site) } }
                            td { (day(r.from)) " – " (day(r.to)) }
                            td {
                                @match (&r.cadence, r.work_order_id) {
                                    (Some(c), _) => (c),
                                    (None, Some(v)) => a href=(format!("/visits/{v}")) { (w.inspection_of) " #" (v) },
                                    (None, None) => "—",
                                }
                            }
                            td { (if r.lang.starts_with("zh") { "中文" } else { "English" }) }
                            td { (r.due_by.map_or_else(|| "—".to_string(), |d| local(d, offset))) }
                            td {
                                a href=(format!("/api/v1/reports/kept/{}?format=pdf", r.id)) { "PDF" }
                                " · "
                                a href=(format!("/api/v1/reports/kept/{}", r.id)) { "HTML" }
                                " · "
                                a href=(format!("/api/v1/reports/kept/{}?format=json", r.id)) { "JSON" }
                            }
                        }
                    }
                }
            } }
        }
    };
    page(StatusCode::OK, lang, w.reports, Some((&p, &headers)), body)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CalendarQuery {
    /// `month` (the default) or `week`.
    view: Option<String>,
    /// A day in the month or week shown (default today).
    at: Option<String>,
    customer: Option<String>,
}

/// Visits on a calendar, a month or a week at a time, each linked to its visit page.
pub(super) async fn calendar(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Query<CalendarQuery>,
) -> Response {
    use chrono::{Datelike as _, NaiveDate};
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let customer = match chosen_customer(&p, q.customer) {
        Ok(c) => c,
        Err(e) => return shown(&headers, e),
    };
    let offset = crate::report::offset_of(&s.fleet, customer.as_deref(), None);
    let today = s.clock.now().with_timezone(&offset).date_naive();
    // A day of our era (no date arithmetic near the calendar's ends); else today.
    let at =
        q.at.as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .filter(|d| (2000..=9000).contains(&d.year()))
            .unwrap_or(today);
    let week = q.view.as_deref() == Some("week");
    let monday = |d: NaiveDate| d - chrono::TimeDelta::days(i64::from(d.weekday().num_days_from_monday()));
    // The days shown: whole weeks, Monday first.
    let (from, to, first, next_first) = if week {
        let m = monday(at);
        (m, m + chrono::TimeDelta::days(7), m, m + chrono::TimeDelta::days(7))
    } else {
        let first = at.with_day(1).unwrap_or(at);
        let next = (first + chrono::TimeDelta::days(32)).with_day(1).unwrap_or(first);
        let end = monday(next - chrono::TimeDelta::days(1)) + chrono::TimeDelta::days(7);
        (monday(first), end, first, next)
    };
    let previous = if week {
        from - chrono::TimeDelta::days(7)
    } else {
        (first - chrono::TimeDelta::days(1)).with_day(1).unwrap_or(first)
    };
    let f = crate::store::WorkOrderFilter {
        customer: customer.clone(),
        from: Some(from),
        to: Some(to),
        ..crate::store::WorkOrderFilter::default()
    };
    let visits = match crate::api::work_orders::seen_work_orders(&s, &p, f, 5_000).await {
        Ok(v) => v,
        Err(e) => return shown(&headers, e),
    };
    let customers = customers_seen(&s, &p);
    let view = if week { "week" } else { "month" };
    let link = |view: &str, at: NaiveDate| {
        let mut l = format!("/visits?view={view}&at={at}");
        if let Some(c) = &customer {
            l.push_str(&format!("&customer={}", super::encode(c)));
        }
        l
    };
    let title = if week {
        format!("{} {} – {}", w.calendar, from, to - chrono::TimeDelta::days(1))
    } else {
        format!("{} {}", w.calendar, first.format("%Y-%m"))
    };
    let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d < to).collect();
    let body = html! {
        h1 { (title) }
        nav.pager aria-label=(w.calendar) {
            a href=(link(view, previous)) { "← " (w.previous) }
            a href=(link(view, today)) { (w.today) }
            a href=(link(view, next_first)) { (w.next) " →" }
            a href=(link("month", at)) aria-current=[(!week).then_some("page")] { (w.month) }
            a href=(link("week", at)) aria-current=[week.then_some("page")] { (w.week) }
        }
        @if p.scope.customers().is_none() || customers.len() > 1 {
            form.filters method="get" action="/visits" {
                input type="hidden" name="view" value=(view);
                input type="hidden" name="at" value=(at.to_string());
                label for="customer" { (w.customer) }
                (customer_select("customer", &p, &customers, customer.as_deref(), w))
                button type="submit" { (w.show) }
            }
        }
        @if visits.is_empty() { p.hint { (w.no_visits) } }
        table.calendar {
            thead { tr { @for d in w.weekdays_short.split(' ') { th scope="col" { (d) } } } }
            tbody {
                @for row in days.chunks(7) {
                    tr {
                        @for d in row {
                            @let on: Vec<&crate::store::WorkOrder> = visits.iter().filter(|v| v.due_on == *d).collect();
                            @let outside = !week && (*d < first || *d >= next_first);
                            td class=(format!("{}{}{}", if *d == today { "today " } else { "" },
                                if outside { "outside " } else { "" }, if on.is_empty() { "empty" } else { "has" })) {
                                time.day datetime=(d.to_string()) { (d.format("%m-%d")) }
                                @for v in &on {
                                    a class=(format!("visit {}", v.state.as_str())) href=(format!("/visits/{}", v.id)) {
                                        (words::visit_kind(lang, v.kind)) " · "
                                        (if v.device.is_empty() { v.site.as_str() } else { v.device.as_str() })
                                        " · " (words::visit_state(lang, v.state))
                                        @if let Some(a) = &v.assignee { " · " (a) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, lang, w.calendar, Some((&p, &headers)), body)
}

/// How long one stream of live events lasts before the browser opens another.
const LIVE_FOR: Duration = Duration::from_secs(300);

/// Live streams one user may have open at once (a browser opens one a tab), and in all.
const LIVE_PER_USER: usize = 8;
const LIVE_IN_ALL: usize = 512;

/// One open live stream, counted while it lives.
struct LiveSlot {
    streams: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i64, usize>>>,
    user: i64,
}

impl LiveSlot {
    fn take(s: &AppState, user: i64) -> Option<LiveSlot> {
        let mut m = s.live_streams.lock().ok()?;
        let all: usize = m.values().sum();
        let mine = m.entry(user).or_default();
        if *mine >= LIVE_PER_USER || all >= LIVE_IN_ALL {
            return None;
        }
        *mine += 1;
        Some(LiveSlot { streams: s.live_streams.clone(), user })
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.streams.lock()
            && let Some(n) = m.get_mut(&self.user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// Live events: `tickets` whenever a ticket the user sees changed. The event carries no data
/// of the ticket; the page asks for its rows again, through the same checks. A stream ends
/// after five minutes (the browser opens another), or at once when its session has ended.
pub(super) async fn live(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    let Some(slot) = LiveSlot::take(&s, p.user_id) else {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, "too many live streams open").into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return r;
    };
    let hash = crate::api::guard::secret(&headers).map(|(secret, _)| crate::identity::secret_hash(&secret));
    let customers: Option<Vec<String>> = p.scope.customers().map(|c| c.iter().cloned().collect());
    let start = tokio::time::Instant::now();
    let first = s.store.latest_change(customers.as_deref()).await.ok().flatten();
    let state = (s, customers, first, start, hash, slot);
    let stream = futures_util::stream::unfold(state, |(s, customers, mut seen, start, hash, slot)| async move {
        let mut ticks = 0u32;
        loop {
            if start.elapsed() >= LIVE_FOR {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            ticks += 1;
            // The session may have ended (logged out, the user disabled): look every 30 s.
            if ticks.is_multiple_of(30) {
                let still = match &hash {
                    Some(h) => s.store.principal(h, s.clock.now()).await.ok().flatten().is_some(),
                    None => false,
                };
                if !still {
                    return None;
                }
            }
            let now = s.store.latest_change(customers.as_deref()).await.ok().flatten();
            if now != seen {
                seen = now;
                let e = Event::default().event("tickets").data(now.unwrap_or_default().to_string());
                return Some((Ok::<_, Infallible>(e), (s, customers, seen, start, hash, slot)));
            }
        }
    });
    let mut r = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    secure(r.headers_mut());
    r
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("app.js"))
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("app.css"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(r.headers_mut());
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

#[cfg(test)]
mod tests {
    use super::{cents, next_path, repair_of};

    #[test]
    fn money_is_read_as_people_write_it() {
        assert_eq!(
            [cents("12"), cents("12.5"), cents("12.50"), cents(" 0.05 ")],
            [Some(1200), Some(1250), Some(1250), Some(5)]
        );
        for bad in ["", "-1", "1.234", "1,50", "abc", "1.x", ".5", "99999999999999999999"] {
            assert_eq!(cents(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_repair_form_is_read_row_by_row_and_a_part_without_a_number_is_refused() {
        let now = chrono::DateTime::UNIX_EPOCH;
        let f = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let r = repair_of(
            &f(&[
                ("cause", "surge"),
                ("part0_number", "A-1"),
                ("part0_quantity", "2"),
                ("part0_stock", "van"),
                ("part0_cost", "52.5"),
                ("part0_wear", "1"),
                ("part6_number", "B-2"),
                ("part6_stock", "site"),
                ("labour_minutes", "45"),
                ("photo", "7"),
                ("photo", "7"),
                ("confirm_name", "Zhang Wei"),
                ("signature", "9"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(r.parts.len(), 2);
        assert_eq!((r.parts[0].quantity, r.parts[0].unit_cost, r.parts[0].wear), (2, 5250, true));
        assert_eq!((r.parts[1].number.as_str(), r.parts[1].quantity), ("B-2", 1));
        assert_eq!((r.labour_minutes, r.photos.as_slice()), (Some(45), &[7][..]));
        assert_eq!(r.confirmation.as_ref().map(|c| (c.name.as_str(), c.signature)), Some(("Zhang Wei", Some(9))));
        let e = repair_of(&f(&[("part1_name", "driver")]), now).unwrap_err();
        assert!(e.contains("part 2: a part number is needed"), "{e}");
        assert!(repair_of(&f(&[("signature", "9")]), now).unwrap_err().contains("name of who signed"));
        assert!(repair_of(&f(&[("labour_minutes", "forty")]), now).is_err());
    }

    #[test]
    fn only_a_path_of_ours_is_gone_back_to_after_login() {
        assert_eq!(next_path(Some("/tickets/7")), "/tickets/7");
        assert_eq!(next_path(Some("/tickets?show=all")), "/tickets?show=all");
        for bad in
            ["//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/evil", "https://evil.example", "evil", ""]
        {
            assert_eq!(next_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(next_path(None), "/");
    }
}

/// The spare parts: stock against the contracts' reserve and the year's forecast; who may
/// count them records a stocktake or a receipt on each line.
pub(super) async fn spares(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&headers);
    let w = words::words(lang);
    let lines = match crate::api::spares::lines(&s, &p).await {
        Ok(l) => l,
        Err(e) => return shown(&headers, e),
    };
    let counts = p.may(Perm::CountSpares);
    let csrf = csrf_token(&headers);
    let opt = |v: Option<u32>| v.map_or_else(|| "—".to_string(), |n| n.to_string());
    let body = html! {
        h1 { (w.spares) }
        p.hint { (w.spares_hint) }
        div.scroll tabindex="0" { table.spares {
            thead { tr { @for h in w.spare_heads { th scope="col" { (h) } } @if counts { th scope="col" { (w.record_stock) } } } }
            tbody {
                @for l in &lines {
                    tr class=(if l.short { "short" } else { "" }) data-part=(l.part) {
                        td { (l.model) } th scope="row" { (l.part) } td { (l.name) }
                        td { (l.units) } td { (l.required) }
                        td {
                            (l.stock)
                            @if l.short { " · " span.breach-text { (w.below_reserve) } }
                        }
                        td { (l.used) } td { (opt(l.forecast_12m)) } td { (l.to_order) }
                        @if counts {
                            td {
                                @let id = format!("q-{}-{}", l.model, l.part);
                                form.inline method="post" action=(format!("/spares/{}/{}", segment(&l.model), segment(&l.part))) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    label.sr-only for=(id) { (w.quantity_of) " " (l.part) }
                                    input id=(id) name="quantity" type="number" min="0" max="1000000" inputmode="numeric" required;
                                    select name="kind" aria-label=(w.record_stock) {
                                        option value="count" { (w.stocktake) }
                                        option value="receipt" { (w.receipt) }
                                    }
                                    button type="submit" { (w.record_stock) }
                                }
                            }
                        }
                    }
                }
            }
        } }
    };
    page(StatusCode::OK, lang, w.spares, Some((&p, &headers)), body)
}

#[derive(Debug, Deserialize)]
pub(super) struct StockForm {
    csrf: String,
    quantity: String,
    kind: String,
}

/// A stocktake or a receipt from the spare parts page, by the API's own function.
pub(super) async fn count_spares(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(key): Path<(String, String)>,
    Form(f): Form<StockForm>,
) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        return stale(&headers);
    }
    let kind = match f.kind.as_str() {
        "count" => crate::store::MoveKind::Count,
        "receipt" => crate::store::MoveKind::Receipt,
        _ => return super::refused(&headers, StatusCode::BAD_REQUEST, "a stocktake or a receipt"),
    };
    let Ok(quantity) = f.quantity.trim().parse::<i64>() else {
        return super::refused(&headers, StatusCode::BAD_REQUEST, "quantity: a whole number");
    };
    let done = crate::api::spares::move_stock(&s, &p, &key, kind, quantity, "").await.map(|_| ());
    after(&headers, done, "/spares")
}

/// A path segment, percent-encoded (a `/` too).
fn segment(s: &str) -> String {
    super::encode(s).replace('/', "%2F")
}
