//! Contracts and compliance with them (`/sla`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::domain::CustomerId;

use super::guard::Routes;
use super::{ApiError, AppState, customer_period};
use crate::access::{Perm, Principal};

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s).get("/api/v1/contracts", Perm::ReadContracts, list_contracts).get("/api/v1/sla", Perm::ReadSla, sla)
}

/// A tier's promises: the clocks (such as `15m`, `1day`) and the escalation chain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TierView {
    tier: u8,
    acknowledge: Option<String>,
    on_site: Option<String>,
    resolve: Option<String>,
    /// From the opening: fixed by phone by then, or handed on to the field.
    remote_fix: Option<String>,
    /// From the first arrival on site: fixed by then.
    on_site_fix: Option<String>,
    /// From the unit's arrival at the factory: back by then.
    factory: Option<String>,
    escalation: Vec<crate::contracts::Escalation>,
}

/// Which of the customer's devices a contract covers; empty lists cover all.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CoversView {
    sites: Vec<String>,
    kinds: Vec<String>,
    devices: Vec<String>,
}

/// A contract's warranty: each component class's period, the class of a fault by default,
/// and the class of each fault named.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct WarrantyView {
    /// Component class → period, such as `24 months`.
    periods: std::collections::BTreeMap<String, String>,
    default: Option<String>,
    /// Fault code → component class.
    faults: std::collections::BTreeMap<String, String>,
}

/// A contract as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ContractView {
    id: String,
    title: String,
    customer: CustomerId,
    starts: chrono::NaiveDate,
    ends: Option<chrono::NaiveDate>,
    in_force: bool,
    calendar: Option<String>,
    covers: CoversView,
    tiers: Vec<TierView>,
    loaner_on_resolve_breach: bool,
    loaner_at_factory: bool,
    inaction: Option<String>,
    inaction_to: String,
    warranty: WarrantyView,
    billable: Vec<String>,
    repeat_window: String,
    replace_at_failed_repairs: u32,
}

/// The contracts of the customers the user sees.
#[utoipa::path(get, path = "/api/v1/contracts", tag = "contracts", responses((status = 200, body = Vec<ContractView>)))]
async fn list_contracts(State(s): State<AppState>, Extension(p): Extension<Principal>) -> Json<Vec<ContractView>> {
    let today = s.clock.now().date_naive();
    let fmt = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let out = s
        .fleet
        .contracts
        .iter()
        .filter(|c| p.scope.sees(c.customer.as_str()))
        .map(|c| ContractView {
            id: c.id.clone(),
            title: c.title.clone(),
            customer: c.customer.clone(),
            starts: c.starts,
            ends: c.ends,
            in_force: c.in_force(today),
            calendar: c.calendar.as_ref().map(|k| k.name.clone()),
            covers: CoversView {
                sites: c.covers.sites.clone(),
                kinds: c.covers.kinds.clone(),
                devices: c.covers.devices.clone(),
            },
            tiers: c
                .tiers
                .iter()
                .enumerate()
                .map(|(i, t)| TierView {
                    tier: i as u8 + 1,
                    acknowledge: t.acknowledge.map(|k| k.to_string()),
                    on_site: t.on_site.map(|k| k.to_string()),
                    resolve: t.resolve.map(|k| k.to_string()),
                    remote_fix: t.remote_fix.map(|k| k.to_string()),
                    on_site_fix: t.on_site_fix.map(|k| k.to_string()),
                    factory: t.factory.map(|k| k.to_string()),
                    escalation: t.escalation.clone(),
                })
                .collect(),
            loaner_on_resolve_breach: c.loaner_on_resolve_breach,
            loaner_at_factory: c.loaner_at_factory,
            inaction: c.inaction.map(fmt),
            inaction_to: c.inaction_to.clone(),
            warranty: WarrantyView {
                periods: c
                    .warranty
                    .periods
                    .iter()
                    .map(|(k, p)| {
                        let text = match p {
                            crate::contracts::Period::Days(n) => format!("{n} days"),
                            crate::contracts::Period::Months(n) => format!("{n} months"),
                        };
                        (k.clone(), text)
                    })
                    .collect(),
                default: c.warranty.default.clone(),
                faults: c.warranty.faults.iter().cloned().collect(),
            },
            billable: c.billable.clone(),
            repeat_window: fmt(c.repeat_window),
            replace_at_failed_repairs: c.replace_at_failed_repairs,
        })
        .collect();
    Json(out)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SlaQuery {
    /// Default: every customer the user sees (a user of several customers names one).
    customer: Option<String>,
    /// RFC 3339 time or a date; default: 30 days before `to`.
    from: Option<String>,
    /// RFC 3339 time or a date (exclusive); default: now.
    to: Option<String>,
}

/// Compliance with the contracts' clocks over a period, per tier.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Sla {
    customer: Option<String>,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    tiers: Vec<crate::tickets::sla::TierCompliance>,
}

/// How many of a period's tickets met their acknowledge, on-site and resolve clocks, per tier.
#[utoipa::path(get, path = "/api/v1/sla", tag = "contracts", params(SlaQuery), responses(
    (status = 200, body = Sla),
    (status = 404, description = "Not one of the user's customers", body = super::ErrorBody),
))]
async fn sla(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<SlaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut q) = q?;
    // Dates are the customer's own days, as in its reports.
    let (customer, from, to) = customer_period(&s, &p, q.customer.take(), q.from.as_deref(), q.to.as_deref())?;
    q.customer = customer;
    let rows = s.store.clock_outcomes(q.customer.as_deref(), from, to).await?;
    let now = s.clock.now();
    let tiers =
        crate::tickets::sla::compliance(rows.iter().map(|r| (r.tier.number(), r.outcomes(&s.fleet.contracts, now))));
    Ok(Json(Sla { customer: q.customer, from, to, tiers }).into_response())
}
