//! The API's OpenAPI 3.1 description, made from the code: each handler's `#[utoipa::path]`
//! gives its parameters, body and answers, the types give their schemas, and the route table
//! gives each operation the permission it needs, so the description cannot drift from the
//! guard. Served at `/api/v1/openapi.json`.

use axum::extract::State;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

use super::guard::RouteEntry;
use super::{
    AppState, account, contacts, contracts, devices, outbox, repairs, reports, spares, surveys, tickets, work_orders,
};
use crate::access::{Perm, Role, allows};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "aftercare",
        description = "Watches field equipment and keeps the after-sales service promises made about it: \
                       tickets and their contract clocks, devices, contracts, reports, visits and the helpdesk outbox. \
                       Sign in with `Authorization: Bearer TOKEN` (`aftercare token create`), or log in at \
                       `POST /api/v1/login` for a session cookie. Each operation says the permission it needs \
                       and the roles that hold it; ids outside a user's customers answer 404. In every answer, \
                       an object at a site (one with `site`), and what it holds, has beside each UTC time `NAME` \
                       a `NAME_local`: the same instant in the site's UTC offset.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    paths(
        super::healthz,
        super::metrics,
        super::list_routes,
        serve,
        account::login,
        account::logout,
        account::me,
        account::list_users,
        account::add_user,
        account::disable_user,
        account::enable_user,
        account::set_password,
        account::list_tokens,
        account::create_token,
        account::revoke_token,
        account::audit_log,
        tickets::list_tickets,
        contacts::register,
        outbox::list_notifications,
        outbox::retry_notification,
        repairs::put_repair,
        repairs::add_attachment,
        repairs::get_attachment,
        surveys::make_link,
        surveys::by_phone,
        surveys::open_link,
        surveys::answer_link,
        surveys::scores,
        contacts::list,
        contacts::answer,
        tickets::open_ticket,
        tickets::get_ticket,
        tickets::transition,
        devices::list_devices,
        devices::get_device,
        devices::device_history,
        devices::device_events,
        contracts::list_contracts,
        contracts::sla,
        spares::list,
        spares::count,
        spares::receive,
        reports::report,
        reports::list_kept_reports,
        reports::kept_report,
        work_orders::list_work_orders,
        work_orders::get_work_order,
        work_orders::start_work_order,
        work_orders::complete_work_order,
        work_orders::add_visit_attachment,
        work_orders::get_visit_attachment,
        work_orders::assign_work_order,
        work_orders::my_work,
        tickets::assign,
        tickets::complaints,
        tickets::comment,
        tickets::factory_arrival,
        outbox::list_outbox,
        outbox::retry_outbox,
        outbox::helpdesk_event,
    ),
    components(schemas(super::ErrorBody))
)]
struct Doc;

/// The names of the security schemes.
const BEARER: &str = "bearer";
const SESSION: &str = "session";
const SIGNED: &str = "helpdesk_signature";

/// The description, each operation with its permission from `table`; `/metrics` as
/// `metrics_public` makes it.
pub(super) fn document(table: &[RouteEntry], metrics_public: bool) -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API token: `aftercare token create`, or POST /api/v1/tokens."))
                .build(),
        ),
    );
    components.add_security_scheme(
        SESSION,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            super::guard::COOKIE,
            "A login's session (POST /api/v1/login); a change by session must come from the same origin.",
        ))),
    );
    components.add_security_scheme(
        SIGNED,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "webhook-signature",
            "Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature` (HMAC-SHA256 with the \
             helpdesk's secret); a webhook-id is taken once.",
        ))),
    );
    for r in table.iter().filter(|r| !r.page) {
        let Some(item) = doc.paths.paths.get_mut(r.path) else { continue };
        let Some(op) = operation(item, &r.method) else { continue };
        describe(op, r, metrics_public);
    }
    doc
}

fn operation<'a>(item: &'a mut PathItem, method: &axum::http::Method) -> Option<&'a mut Operation> {
    use axum::http::Method;
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        _ => None,
    }
}

/// Adds what the guard does in front of the route: who may call it, and the answers it gives
/// of its own.
fn describe(op: &mut Operation, r: &RouteEntry, metrics_public: bool) {
    let public = r.perm.is_public() || (r.perm == Perm::Metrics && metrics_public);
    let roles: Vec<&str> = Role::ALL.iter().filter(|role| allows(**role, r.perm)).map(|role| role.as_str()).collect();
    let who = match r.perm {
        _ if public && r.perm != Perm::Helpdesk => "Open: no sign-in.".to_string(),
        Perm::Helpdesk => "Signed by the helpdesk named in the path (Standard Webhooks).".to_string(),
        p => format!("Permission `{p}`: held by {}.", roles.join(", ")),
    };
    let text = match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{who}"),
        _ => who,
    };
    op.description = Some(text);
    let changes = r.method != axum::http::Method::GET;
    let has_input = op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some();
    if has_input {
        error(op, "400", "A parameter or the body is not understood");
    }
    match r.perm {
        Perm::Helpdesk => {
            op.security = Some(vec![SecurityRequirement::new(SIGNED, Vec::<String>::new())]);
            error(op, "401", "The signature is missing, wrong or out of time");
        }
        _ if public => op.security = Some(vec![SecurityRequirement::default()]),
        _ => {
            op.security = Some(vec![
                SecurityRequirement::new(BEARER, Vec::<String>::new()),
                SecurityRequirement::new(SESSION, Vec::<String>::new()),
            ]);
            error(op, "401", "Not signed in, or the token or session is unknown, expired or revoked");
            error(op, "403", "The user's role does not hold this permission");
            if changes {
                error(op, "429", "Too many changes by this user at once; see Retry-After");
            }
            error(op, "503", "The store failed");
        }
    }
}

/// Adds an error answer unless the operation documents that status itself.
fn error(op: &mut Operation, status: &str, description: &str) {
    let responses = &mut op.responses.responses;
    if responses.contains_key(status) {
        return;
    }
    let body = Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))));
    let response = ResponseBuilder::new().description(description).content("application/json", body).build();
    responses.insert(status.to_string(), RefOr::T(response));
}

/// This description.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses(
    (status = 200, description = "The OpenAPI 3.1 description of this API", content_type = "application/json"),
))]
pub(super) async fn serve(State(s): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    // Made once: the routes and the config do not change while the daemon runs.
    let body = s.openapi.get_or_init(|| {
        let table = s.route_table.get().map(Vec::as_slice).unwrap_or_default();
        serde_json::to_vec(&document(table, s.access.metrics_public)).unwrap_or_default().into()
    });
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}
