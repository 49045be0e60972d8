//! Service reports for a customer (or a site) and a period: availability,
//! faults, the contract's clocks, open tickets, recurring problems, visits,
//! warranties running out, and recommendations drawn from them. `compute`
//! reads the store; `render` writes JSON, CSV or HTML (with SVG charts), in
//! English or Chinese.

pub mod render;
pub mod words;

use crate::domain::{VisitKind, VisitState};
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, Offset as _, Utc};
use serde::Serialize;

use crate::contracts::Cadence;
use crate::fleet::Fleet;
use crate::store::{Store, StoreError, WorkOrder, WorkOrderFilter};
use crate::tickets::sla::TierCompliance;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Lang {
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    Zh,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh-CN" | "zh" => Some(Lang::Zh),
            _ => None,
        }
    }
}

/// What a report covers.
#[derive(Debug, Clone)]
pub struct Scope {
    pub customer: Option<String>,
    pub site: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceAvailability {
    pub device: String,
    pub name: String,
    pub kind: String,
    pub site: String,
    pub model: String,
    /// Share of the period the device was not offline, 0–1.
    pub availability: f64,
    pub downtime_hours: f64,
    pub outages: u32,
    pub faults: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FaultCount {
    pub tier: u8,
    pub kind: String,
    pub code: String,
    pub title: String,
    pub tickets: u32,
    /// Raised again while open, counted too.
    pub occurrences: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OpenTicket {
    pub id: i64,
    pub device: String,
    pub code: String,
    pub tier: u8,
    pub state: String,
    pub opened_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Recurring {
    /// The device, or (`by_model`) the model shared by several devices.
    pub subject: String,
    pub by_model: bool,
    pub code: String,
    pub times: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Expiring {
    pub device: String,
    pub class: String,
    pub until: NaiveDate,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Visits {
    pub due: u32,
    pub done: u32,
    pub missed: u32,
    pub open: u32,
}

/// What the satisfaction surveys done in the period scored: the answers to checklist items
/// named `satisfaction…`, read as numbers from 1 to 5.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Satisfaction {
    pub mean: f64,
    pub surveys: u32,
    /// Devices whose survey scored 2 or less, to call back.
    pub low: Vec<String>,
}

/// A survey's score: a number from 1 to 5, or text that starts with one ("4", "4/5", "5 - happy").
fn score(v: &serde_json::Value) -> Option<f64> {
    let x = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => {
            let head: String = s.trim().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            head.parse().ok()?
        }
        serde_json::Value::Object(o) => return o.get("value").and_then(score),
        _ => return None,
    };
    (1.0..=5.0).contains(&x).then_some(x)
}

fn satisfaction_of(work_orders: &[WorkOrder]) -> Option<Satisfaction> {
    let mut scores = Vec::new();
    let mut low = Vec::new();
    for w in work_orders.iter().filter(|w| w.state == VisitState::Done) {
        let Some(answers) = w.answers.as_ref().and_then(|a| a.as_object()) else { continue };
        let item = w.checklist.iter().find(|i| i.to_lowercase().starts_with("satisfaction"));
        if let Some(x) = item.and_then(|i| answers.get(i)).and_then(score) {
            scores.push(x);
            if x <= 2.0 && !low.contains(&w.device) {
                low.push(w.device.clone());
            }
        }
    }
    let n = scores.len() as u32;
    mean(scores.into_iter()).map(|mean| Satisfaction { mean, surveys: n, low })
}

/// Recurring problems over a window ending with the report's period.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecurringWindow {
    /// month, quarter or year.
    pub window: String,
    pub from: DateTime<Utc>,
    pub recurring: Vec<Recurring>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub customer: Option<String>,
    /// The customer's name, as the fleet config gives it.
    pub customer_name: Option<String>,
    pub site: Option<String>,
    /// The sites the report covers, as the cover lists them: `name (id)`.
    pub sites: Vec<String>,
    /// Who gives the service, in the report's language (a contract's `supplier`).
    pub supplier: Option<String>,
    /// The share of tickets the customer's contracts expect within each clock (the strictest).
    pub sla_target: f64,
    pub made_at: DateTime<Utc>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The period as the customer reads it: its first and last day, in the local calendar.
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// The site's offset from UTC: every time the renderings show is in it, and labelled.
    #[serde(serialize_with = "offset_text")]
    #[schema(value_type = String)]
    pub utc_offset: FixedOffset,
    /// Set when the period began before the store was made: the local day aftercare began
    /// watching. Nothing before it is known: no faults are counted there and the time counts
    /// as available, which the renderings say.
    pub watched_since: Option<NaiveDate>,
    pub devices: Vec<DeviceAvailability>,
    /// Mean availability over the devices.
    pub availability: Option<f64>,
    pub faults: Vec<FaultCount>,
    /// Tickets opened per week (Monday) and tier.
    pub faults_by_week: Vec<(NaiveDate, [u32; 3])>,
    pub sla: Vec<TierCompliance>,
    /// Mean time from a ticket's opening to its acknowledgement, minutes.
    pub mtta_minutes: Option<f64>,
    /// Mean time from a ticket's opening to its resolution, hours.
    pub mttr_hours: Option<f64>,
    pub open_tickets: Vec<OpenTicket>,
    pub recurring: Vec<Recurring>,
    /// The same over the last month, quarter and year to the report's end.
    pub recurring_windows: Vec<RecurringWindow>,
    pub visits: Visits,
    pub satisfaction: Option<Satisfaction>,
    /// What the service desk recorded in the period.
    pub desk: Desk,
    pub work_orders: Vec<WorkOrder>,
    pub warranties_expiring: Vec<Expiring>,
    pub recommendations: Vec<String>,
    /// What the renderings say for a word of the config or the data in the report's
    /// language: `kind:NAME`, `code:CODE` (a fault's title), `state:STATE`, `visit:STATE`,
    /// `plan:CONTRACT:PLAN:WORD` (a plan's name or checklist item). Empty in English.
    #[serde(skip)]
    pub glossary: BTreeMap<String, String>,
}

impl Report {
    /// The report's word for `key` (see `glossary`), else `default`.
    pub fn say<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.glossary.get(key).map_or(default, String::as_str)
    }
}

/// Tickets people reported in a period, of one category through one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Reported {
    pub category: String,
    pub channel: String,
    pub tickets: u32,
}

/// An engineer's satisfaction surveys answered in the period.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EngineerScore {
    pub engineer: String,
    /// 1 to 5.
    pub mean: f64,
    pub surveys: u32,
}

/// What the service desk recorded (003, 004): the requests and complaints people made by
/// channel, the complaints by grade, the contacts registered and how many were answered within
/// their 24 hours, and the satisfaction surveys by engineer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Desk {
    pub reported: Vec<Reported>,
    /// (grade, complaints): `general`, `major`.
    pub complaints: Vec<(String, u32)>,
    /// Whether the contacts are counted: the register knows customers, not sites, so a site's
    /// report leaves them out.
    pub contacts_counted: bool,
    pub contacts: u32,
    pub contacts_answered_in_time: u32,
    /// Registered in the period and not answered by its end.
    pub contacts_open: u32,
    pub satisfaction_by_engineer: Vec<EngineerScore>,
}

async fn desk_of(
    store: &Store,
    scope: &Scope,
    tickets: &[crate::tickets::Ticket],
    now: DateTime<Utc>,
) -> Result<Desk, StoreError> {
    use crate::tickets::intake::Channel;
    let mut reported: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut grades: BTreeMap<String, u32> = BTreeMap::new();
    for t in tickets.iter().filter(|t| t.channel != Channel::Sensor) {
        *reported.entry((t.category.to_string(), t.channel.to_string())).or_default() += 1;
        if let Some(g) = t.complaint_grade {
            *grades.entry(g.to_string()).or_default() += 1;
        }
    }
    // The register knows customers, not sites: a site's report leaves it out; a report of every
    // customer counts what came from none too.
    let counted = scope.site.is_none();
    let f = crate::store::ContactFilter {
        customer: scope.customer.clone(),
        from: Some(scope.from),
        to: Some(scope.to),
        limit: 10_000,
        ..Default::default()
    };
    let contacts = if counted { store.contacts(&f, now).await? } else { Vec::new() };
    let in_time = contacts.iter().filter(|c| c.answered_at.is_some_and(|a| a <= c.answer_by)).count() as u32;
    let open = contacts.iter().filter(|c| c.answered_at.is_none_or(|a| a >= scope.to)).count() as u32;
    let mut by_engineer: BTreeMap<String, (f64, u32)> = BTreeMap::new();
    for s in store.surveys(None, scope.customer.as_deref(), scope.from, scope.to).await? {
        let (Some(score), Some(engineer)) = (s.score, s.engineer) else { continue };
        // A site's report: the surveys of its own tickets.
        if let Some(site) = &scope.site {
            let here =
                store.ticket(crate::domain::TicketId(s.ticket_id)).await?.is_some_and(|t| t.site.as_str() == site);
            if !here {
                continue;
            }
        }
        let e = by_engineer.entry(engineer).or_default();
        e.0 += score as f64;
        e.1 += 1;
    }
    Ok(Desk {
        reported: reported
            .into_iter()
            .map(|((category, channel), tickets)| Reported { category, channel, tickets })
            .collect(),
        complaints: grades.into_iter().collect(),
        contacts_counted: counted,
        contacts: contacts.len() as u32,
        contacts_answered_in_time: in_time,
        contacts_open: open,
        satisfaction_by_engineer: by_engineer
            .into_iter()
            .map(|(engineer, (sum, n))| EngineerScore { engineer, mean: sum / f64::from(n), surveys: n })
            .collect(),
    })
}

/// The words of the config and the data a Chinese report shows in Chinese.
fn glossary(fleet: &Fleet, lang: Lang) -> BTreeMap<String, String> {
    let mut g = BTreeMap::new();
    if lang != Lang::Zh {
        return g;
    }
    for k in &fleet.kinds {
        g.insert(format!("kind:{}", k.name), k.title_zh.clone());
        for r in &k.rules {
            g.entry(format!("code:{}", r.code.as_str())).or_insert_with(|| r.title_zh.clone());
        }
        g.entry(format!("code:{}", crate::domain::OFFLINE)).or_insert_with(|| k.offline_title_zh.clone());
    }
    for c in &fleet.contracts {
        for p in &c.plans {
            for (en, zh) in &p.zh {
                g.insert(format!("plan:{}:{}:{en}", c.id, p.name), zh.clone());
            }
        }
    }
    use crate::tickets::intake::{Category, Channel, Grade};
    for s in crate::tickets::lifecycle::ALL {
        g.insert(format!("state:{s}"), words::state(lang, s).to_string());
    }
    for s in [VisitState::Open, VisitState::InProgress, VisitState::Done, VisitState::Missed] {
        g.insert(format!("visit:{}", s.as_str()), words::visit_state(lang, s).to_string());
    }
    for c in Category::ALL {
        // A person's report without a fault code shows its category where a code would be.
        g.insert(format!("code:{}", c.as_str()), words::category(lang, *c).to_string());
        g.insert(format!("category:{}", c.as_str()), words::category(lang, *c).to_string());
    }
    for c in [Channel::Sensor, Channel::Phone, Channel::Web, Channel::Email, Channel::Visit, Channel::Helpdesk] {
        g.insert(format!("channel:{}", c.as_str()), words::channel(lang, c).to_string());
    }
    for c in [Grade::General, Grade::Major] {
        g.insert(format!("grade:{}", c.as_str()), words::grade(lang, c).to_string());
    }
    g
}

/// Milliseconds of `[from, to)` covered by the outages (each `start`, `end` or still open).
pub fn downtime(outages: &[(i64, Option<i64>)], from: i64, to: i64) -> (i64, u32) {
    let mut total = 0;
    let mut n = 0;
    for (start, end) in outages {
        let (s, e) = ((*start).max(from), end.unwrap_or(to).min(to));
        if e > s {
            total += e - s;
            n += 1;
        }
    }
    (total, n)
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = xs.fold((0.0, 0u32), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn offset_text<S: serde::Serializer>(o: &FixedOffset, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(o)
}

/// Builds the report of `scope` from the store, as it stands at `now`.
pub async fn compute(
    store: &Store,
    fleet: &Fleet,
    scope: &Scope,
    lang: Lang,
    now: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let in_scope = |customer: &str, site: &str| {
        scope.customer.as_deref().is_none_or(|c| c == customer) && scope.site.as_deref().is_none_or(|s| s == site)
    };
    let offset = offset_of(fleet, scope.customer.as_deref(), scope.site.as_deref());
    // Availability is of the time that has passed: an outage still going on counts up to now,
    // and a period that ends in the future is judged on its part so far.
    let from = scope.from.timestamp_millis();
    let to = scope.to.timestamp_millis().min(now.timestamp_millis()).max(from);
    let period = (to - from).max(1) as f64;
    let tickets: Vec<_> = store
        .tickets_opened(scope.customer.as_deref(), scope.from, scope.to)
        .await?
        .into_iter()
        .filter(|t| in_scope(t.customer.as_str(), t.site.as_str()))
        .collect();
    let mut outages: BTreeMap<String, Vec<(i64, Option<i64>)>> = BTreeMap::new();
    for (d, s, e) in store.outages(None, scope.from, scope.to).await? {
        outages.entry(d).or_default().push((s, e));
    }
    let mut faults_of: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    for t in &tickets {
        *faults_of.entry(t.device.as_str()).or_default() += 1;
    }
    let mut devices = Vec::new();
    for d in fleet.devices.iter().filter(|d| in_scope(d.customer.as_str(), d.site.as_str())) {
        let (down, n) = outages.get(d.id.as_str()).map_or((0, 0), |o| downtime(o, from, to));
        devices.push(DeviceAvailability {
            device: d.id.0.clone(),
            name: d.name.clone(),
            kind: fleet.kinds[d.kind].name.clone(),
            site: d.site.0.clone(),
            model: d.model.clone(),
            availability: 1.0 - down as f64 / period,
            downtime_hours: down as f64 / 3_600_000.0,
            outages: n,
            faults: faults_of.get(d.id.as_str()).copied().unwrap_or(0),
        });
    }
    let availability = mean(devices.iter().map(|d| d.availability));

    let mut faults: BTreeMap<(u8, String, String), FaultCount> = BTreeMap::new();
    let mut weeks: BTreeMap<NaiveDate, [u32; 3]> = BTreeMap::new();
    for t in &tickets {
        let tier = t.tier.number();
        let f = faults.entry((tier, t.kind.clone(), t.code.0.clone())).or_insert_with(|| FaultCount {
            tier,
            kind: t.kind.clone(),
            code: t.code.0.clone(),
            title: match (lang, fleet.kinds.iter().find(|k| k.name == t.kind)) {
                (Lang::Zh, Some(k)) => k.fault_title_zh(t.code.as_str()),
                _ => t.title.clone(),
            },
            tickets: 0,
            occurrences: 0,
        });
        f.tickets += 1;
        f.occurrences += t.occurrences.max(1) as u32;
        let day = t.opened_at.with_timezone(&offset).date_naive();
        let monday = day - Days::new(day.weekday().num_days_from_monday() as u64);
        weeks.entry(monday).or_default()[(tier as usize).clamp(1, 3) - 1] += 1;
    }
    let sla = crate::tickets::sla::compliance(tickets.iter().map(|t| {
        // A cancelled ticket's stage clocks stopped unjudged, as the service levels count them.
        let contract = t
            .clock
            .contract
            .as_deref()
            .filter(|_| t.state != crate::tickets::State::Cancelled)
            .and_then(|id| fleet.contracts.iter().find(|c| c.id == id));
        let stored = [t.clock.acknowledge_met, t.clock.on_site_met, t.clock.resolve_met];
        let moments = crate::tickets::clocks::Moments::of(t);
        (t.tier.number(), crate::tickets::sla::outcomes(stored, contract, t.tier, &moments, now))
    }));
    let mtta_minutes =
        mean(tickets.iter().filter_map(|t| Some((t.acknowledged_at? - t.opened_at).num_seconds() as f64 / 60.0)));
    let mttr_hours =
        mean(tickets.iter().filter_map(|t| Some((t.resolved_at? - t.opened_at).num_seconds() as f64 / 3600.0)));
    let open_tickets = store
        .tickets_open_at(scope.customer.as_deref(), scope.to)
        .await?
        .into_iter()
        .filter(|t| in_scope(t.customer.as_str(), t.site.as_str()))
        .map(|t| OpenTicket {
            id: t.id.0,
            device: t.device.0.clone(),
            // A person's report without a fault code shows what it is: its category.
            code: if t.code.0.is_empty() { t.category.to_string() } else { t.code.0.clone() },
            tier: t.tier.number(),
            state: t.state.to_string(),
            opened_at: t.opened_at,
        })
        .collect();

    let recurring = recurring_of(fleet, &tickets);
    // The early-warning view: the same over the month, quarter and year up to the report's end.
    let mut recurring_windows = Vec::new();
    for (name, months) in [("month", 1), ("quarter", 3), ("year", 12)] {
        let Some(start) = scope.to.checked_sub_months(chrono::Months::new(months)) else { continue };
        let window: Vec<_> = store
            .tickets_opened(scope.customer.as_deref(), start, scope.to)
            .await?
            .into_iter()
            .filter(|t| in_scope(t.customer.as_str(), t.site.as_str()))
            .collect();
        recurring_windows.push(RecurringWindow {
            window: name.into(),
            from: start,
            recurring: recurring_of(fleet, &window),
        });
    }

    let work_orders: Vec<WorkOrder> = store
        .work_orders(
            &WorkOrderFilter {
                customer: scope.customer.clone(),
                from: Some(scope.from.date_naive()),
                ..Default::default()
            },
            100_000,
        )
        .await?
        .into_iter()
        .filter(|w| scope.site.as_deref().is_none_or(|s| s == w.site))
        // Due in the period, or done in it (a visit made ahead of its due date counts where it was made).
        .filter(|w| w.due_on < scope.to.date_naive() || w.completed_at.is_some_and(|c| c >= scope.from && c < scope.to))
        .collect();
    let mut visits = Visits { due: work_orders.len() as u32, ..Default::default() };
    for w in &work_orders {
        match w.state {
            VisitState::Done => visits.done += 1,
            VisitState::Missed => visits.missed += 1,
            VisitState::Open | VisitState::InProgress => visits.open += 1,
        }
    }

    let end = scope.to.date_naive();
    let horizon = end + Days::new(90);
    let mut warranties_expiring = Vec::new();
    for d in fleet.devices.iter().filter(|d| in_scope(d.customer.as_str(), d.site.as_str())) {
        let Ok(c) = crate::contracts::governing(&fleet.contracts, fleet.covered(d.idx), end) else { continue };
        for w in c.warranty_status(fleet.covered(d.idx), "", end).components {
            if w.until >= end && w.until < horizon {
                warranties_expiring.push(Expiring { device: d.id.0.clone(), class: w.class, until: w.until });
            }
        }
    }
    warranties_expiring.sort_by(|a, b| a.until.cmp(&b.until).then(a.device.cmp(&b.device)));

    let desk = desk_of(store, scope, &tickets, now).await?;
    let created = store.created_at().await?;
    let contracts: Vec<&crate::contracts::Contract> =
        fleet.contracts.iter().filter(|c| scope.customer.as_deref().is_none_or(|x| x == c.customer.as_str())).collect();
    let mut sites: Vec<String> = devices.iter().map(|d| d.site.clone()).collect();
    sites.sort_unstable();
    sites.dedup();
    let sites = sites
        .into_iter()
        .map(|id| match fleet.sites.iter().find(|s| s.id.as_str() == id).filter(|s| !s.name.is_empty()) {
            Some(s) => format!("{} ({id})", s.name),
            None => id,
        })
        .collect();
    let mut report = Report {
        sites,
        supplier: contracts
            .iter()
            .find_map(|c| c.supplier.as_ref())
            .map(|(en, zh)| if lang == Lang::Zh { zh.clone() } else { en.clone() }),
        sla_target: contracts
            .iter()
            .map(|c| c.sla_target)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
            .unwrap_or(1.0),
        made_at: now,
        customer: scope.customer.clone(),
        customer_name: scope
            .customer
            .as_deref()
            .and_then(|c| fleet.customers.iter().find(|x| x.id.as_str() == c))
            .filter(|c| !c.name.is_empty() && c.name != c.id.as_str())
            .map(|c| c.name.clone()),
        site: scope.site.clone(),
        from: scope.from,
        to: scope.to,
        first_day: scope.from.with_timezone(&offset).date_naive(),
        last_day: (scope.to - chrono::TimeDelta::milliseconds(1)).with_timezone(&offset).date_naive(),
        utc_offset: offset,
        watched_since: (scope.from < created).then(|| created.with_timezone(&offset).date_naive()),
        devices,
        availability,
        faults: faults.into_values().collect(),
        faults_by_week: weeks.into_iter().collect(),
        sla,
        mtta_minutes,
        mttr_hours,
        open_tickets,
        recurring,
        recurring_windows,
        visits,
        satisfaction: satisfaction_of(&work_orders),
        desk,
        work_orders,
        warranties_expiring,
        recommendations: Vec::new(),
        glossary: glossary(fleet, lang),
    };
    report.recommendations = render::recommendations(&report, lang);
    Ok(report)
}

/// After an inspection (or a patrol) work order is done: the report of its customer's site for
/// the period since the device's previous inspection (a patrol: the plan's previous visit), or
/// the last 3 months, in English and Chinese, kept in the store; the contracts want it within
/// 3 working days of the inspection.
pub async fn after_inspection(
    store: &Store,
    fleet: &Fleet,
    w: &WorkOrder,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let done = w.completed_at.unwrap_or(now);
    let before = done.timestamp_millis();
    let previous = match w.kind {
        VisitKind::Patrol => store.last_visit(&w.contract, &w.plan, &w.device, before).await?,
        _ => store.last_inspection(&w.device, before).await?,
    };
    let from = previous.unwrap_or(done - chrono::TimeDelta::days(91));
    // Up to and with the inspection itself.
    let to = done + chrono::TimeDelta::seconds(1);
    let scope = Scope { customer: Some(w.customer.clone()), site: Some(w.site.clone()), from, to };
    let calendar = fleet.contracts.iter().find(|c| c.id == w.contract).and_then(|c| c.calendar.clone());
    let due_by = match calendar {
        Some(c) => c.add_working_days(done, 3),
        None => done.checked_add_signed(chrono::TimeDelta::days(3)),
    };
    let mut ids = Vec::new();
    for (lang, tag) in [(Lang::Zh, "zh-CN"), (Lang::En, "en")] {
        let r = compute(store, fleet, &scope, lang, now).await?;
        let stored = crate::store::StoredReport {
            id: 0,
            work_order_id: Some(w.id),
            customer: w.customer.clone(),
            site: Some(w.site.clone()),
            from,
            to,
            made_at: now,
            due_by,
            lang: tag.into(),
            cadence: None,
            json: serde_json::to_string(&r).unwrap_or_default(),
            html: render::html(&r, lang),
            typst: render::markup(&r, lang),
        };
        ids.extend(store.add_report(&stored, &mail_for(fleet, &stored.customer, tag)).await?);
    }
    Ok(ids)
}

/// Who a kept report of `customer` in language `tag` is mailed to: the `report_mail` of each
/// of the customer's contracts that wants that language.
fn mail_for(fleet: &Fleet, customer: &str, tag: &str) -> Vec<crate::store::NewReportMail> {
    let mut out: Vec<crate::store::NewReportMail> = Vec::new();
    for m in fleet.contracts.iter().filter(|c| c.customer.as_str() == customer).filter_map(|c| c.report_mail.as_ref()) {
        if !m.langs.iter().any(|l| l == tag) {
            continue;
        }
        for to in &m.to {
            if !out.iter().any(|x| &x.address == to) {
                out.push(crate::store::NewReportMail { channel: m.channel.clone(), address: to.clone() });
            }
        }
    }
    out
}

/// The reports the contracts want after each whole week, month, quarter or year, for their
/// customers, made once each (in English and Chinese) when their period has ended, in the
/// customer's local calendar (its first site's offset). Only a period aftercare watched whole
/// (since the store was made) is reported: a report of a time it did not watch would show
/// figures it never saw. Periods that ended within the last `CATCH_UP_DAYS` and were not
/// reported (the daemon was down) are made too. Returns the ids of those made now.
pub async fn on_cadence(store: &Store, fleet: &Fleet, now: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::new();
    if fleet.contracts.iter().all(|c| c.reports.is_empty()) {
        return Ok(ids);
    }
    let watched_from = store.created_at().await?;
    for c in fleet.contracts.iter().filter(|c| !c.reports.is_empty()) {
        let customer = c.customer.0.as_str();
        let offset = offset_of(fleet, Some(customer), None);
        let today = now.with_timezone(&offset).date_naive();
        let oldest_end = today.checked_sub_days(Days::new(CATCH_UP_DAYS)).unwrap_or(today);
        let instant = |d: NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_local_timezone(offset).single();
        for cadence in &c.reports {
            // The whole periods that ended lately, newest first.
            let mut periods = Vec::new();
            let mut last = cadence.last_whole(today);
            while let Some((first, next)) = last.filter(|(_, next)| *next >= oldest_end && *next > c.starts) {
                // Only a period the contract ran in, and aftercare watched whole.
                let watched = instant(first).is_some_and(|f| f.to_utc() >= watched_from);
                if !watched {
                    break;
                }
                if c.ends.is_none_or(|e| first <= e) {
                    periods.push((first, next));
                }
                last = cadence.last_whole(first);
            }
            for (first, next) in periods {
                let (Some(from), Some(to)) = (instant(first), instant(next)) else { continue };
                let (from, to) = (from.to_utc(), to.to_utc());
                ids.extend(keep_cadence_report(store, fleet, customer, *cadence, from, to, now).await?);
            }
        }
    }
    Ok(ids)
}

/// How far back a cadence report not made in time (the daemon was down) is still made.
const CATCH_UP_DAYS: u64 = 93;

/// Makes and keeps a customer's report of one period in the languages it lacks.
async fn keep_cadence_report(
    store: &Store,
    fleet: &Fleet,
    customer: &str,
    cadence: Cadence,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::new();
    let scope = Scope { customer: Some(customer.to_string()), site: None, from, to };
    for (lang, tag) in [(Lang::Zh, "zh-CN"), (Lang::En, "en")] {
        if store.has_cadence_report(customer, cadence.as_str(), from, tag).await? {
            continue;
        }
        let r = compute(store, fleet, &scope, lang, now).await?;
        let stored = crate::store::StoredReport {
            id: 0,
            work_order_id: None,
            customer: customer.to_string(),
            site: None,
            from,
            to,
            made_at: now,
            due_by: None,
            lang: tag.into(),
            cadence: Some(cadence.as_str().into()),
            json: serde_json::to_string(&r).unwrap_or_default(),
            html: render::html(&r, lang),
            typst: render::markup(&r, lang),
        };
        ids.extend(store.add_report(&stored, &mail_for(fleet, &stored.customer, tag)).await?);
    }
    Ok(ids)
}

/// The same fault on the same device (twice or more), or on several devices of one model
/// (three times or more), most frequent first.
fn recurring_of(fleet: &Fleet, tickets: &[crate::tickets::Ticket]) -> Vec<Recurring> {
    let mut per_device: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut per_model: BTreeMap<(String, String), (u32, std::collections::BTreeSet<String>)> = BTreeMap::new();
    // Only faults recur: a person's question or a report that names no fault code does not.
    for t in tickets.iter().filter(|t| !t.code.0.is_empty() && !t.device.0.is_empty()) {
        let times = t.occurrences.max(1) as u32;
        *per_device.entry((t.device.0.clone(), t.code.0.clone())).or_default() += times;
        if let Some(d) = fleet.lookup(t.device.as_str()).map(|i| fleet.device(i)).filter(|d| !d.model.is_empty()) {
            let e = per_model.entry((d.model.clone(), t.code.0.clone())).or_default();
            e.0 += times;
            e.1.insert(d.id.0.clone());
        }
    }
    let mut recurring: Vec<Recurring> = per_device
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|((d, c), n)| Recurring { subject: d, by_model: false, code: c, times: n })
        .chain(
            per_model
                .into_iter()
                .filter(|(_, (n, devs))| devs.len() >= 2 && *n >= 3)
                .map(|((m, c), (n, _))| Recurring { subject: m, by_model: true, code: c, times: n }),
        )
        .collect();
    recurring.sort_by(|a, b| b.times.cmp(&a.times).then(a.subject.cmp(&b.subject)));
    recurring
}

/// A day ("2026-11-01", midnight UTC) or an RFC 3339 time.
/// A report's bound: an RFC 3339 time, or a date, which starts at local midnight at `offset`
/// (a customer's `--from 2026-10-01` is its own 1 October).
pub fn parse_time(s: &str, offset: FixedOffset) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_time(chrono::NaiveTime::MIN).and_local_timezone(offset).single())
        .map(|t| t.to_utc())
        .ok_or_else(|| format!("`{s}` is not a time; write 2026-11-01 or 2026-11-01T00:00:00Z"))
}

/// The offset of a report's local calendar: the site's, else that of the customer's first
/// device's site, else UTC.
pub fn offset_of(fleet: &Fleet, customer: Option<&str>, site: Option<&str>) -> FixedOffset {
    let site = site.map(str::to_string).or_else(|| {
        let c = customer?;
        fleet.devices.iter().find(|d| d.customer.as_str() == c).map(|d| d.site.0.clone())
    });
    site.and_then(|s| fleet.sites.iter().find(|x| x.id.as_str() == s)).map_or_else(|| Utc.fix(), |s| s.utc_offset)
}

/// Checks a report request: the period, the format and the language, and who it is for.
pub fn check(fleet: &Fleet, scope: &Scope, format: &str, lang: &str) -> Result<Lang, String> {
    if scope.from >= scope.to {
        return Err("`from` must be before `to`".into());
    }
    if !["json", "csv", "html", "pdf"].contains(&format) {
        return Err(format!("format `{format}`: write json, csv, html or pdf"));
    }
    if let Some(c) = scope.customer.as_deref().filter(|c| !fleet.customers.iter().any(|x| x.id.as_str() == *c)) {
        return Err(format!("no customer `{c}`"));
    }
    if let Some(s) = scope.site.as_deref().filter(|s| !fleet.sites.iter().any(|x| x.id.as_str() == *s)) {
        return Err(format!("no site `{s}`"));
    }
    Lang::parse(lang).ok_or_else(|| format!("lang `{lang}`: write en or zh-CN"))
}

/// The report of `scope` in a format, from the store the config names (for the CLI).
pub async fn write(
    fleet: &Fleet,
    store_path: &std::path::Path,
    scope: &Scope,
    format: &str,
    lang: &str,
) -> anyhow::Result<Vec<u8>> {
    let lang = check(fleet, scope, format, lang).map_err(|e| anyhow::anyhow!(e))?;
    // A report of an empty store made on the spot would read as a clean record.
    if !store_path.exists() {
        anyhow::bail!(
            "no database at {}: a report reads the store the daemon keeps; run the daemon with this config \
             first, or point [store] path at its database",
            store_path.display()
        );
    }
    let store = Store::open(store_path).await?;
    let r = compute(&store, fleet, scope, lang, crate::clock::Clock::now(&crate::clock::SystemClock)).await?;
    Ok(match format {
        "json" => serde_json::to_vec_pretty(&r)?,
        "csv" => render::csv(&r).into_bytes(),
        "pdf" => {
            let fonts = render::fonts().map_err(|e| anyhow::anyhow!(e))?;
            render::pdf(&r, lang, &fonts).await.map_err(|e| anyhow::anyhow!(e))?
        }
        _ => render::html(&r, lang).into_bytes(),
    })
}

#[cfg(test)]
mod tests;
