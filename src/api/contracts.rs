//! Contracts and compliance with them (`/sla`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::CustomerId;

use super::guard::Routes;
use super::{ApiError, AppState, range, scoped_customer};
use crate::access::{Perm, Principal};

pub(super) fn routes(s: &AppState) -> Routes {
    Routes::new(s).get("/api/v1/contracts", Perm::ReadContracts, list_contracts).get("/api/v1/sla", Perm::ReadSla, sla)
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

async fn sla(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    q: Result<Query<SlaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut q) = q?;
    q.customer = scoped_customer(&p, q.customer)?;
    // Dates are the customer's own days, as in its reports.
    let offset = crate::report::offset_of(&s.fleet, q.customer.as_deref(), None);
    let (from, to) = range(&s, q.from.as_deref(), q.to.as_deref(), chrono::TimeDelta::days(30), offset)?;
    let rows = s.store.clock_outcomes(q.customer.as_deref(), from, to).await?;
    let tiers = crate::tickets::sla::compliance(rows);
    Ok(Json(json!({ "customer": q.customer, "from": from, "to": to, "tiers": tiers })).into_response())
}
