//! Tickets people report, pure: a request checked against the fleet and the contracts, and
//! made into what the store opens (or adds to the ticket already open for the same fault).
//!
//! How a person's ticket and a sensor's fault meet: a report that names a device and one of
//! its kind's fault codes is that fault's ticket. If the fault's ticket is open already (a
//! sensor raised it, or another person reported it), the report is added to it and no second
//! ticket is made; if not, a new ticket holds the report, and when the sensor later raises that
//! fault it counts on this ticket (the one-open-ticket-per-fault rule). A report without a
//! fault code (or without a device) is a ticket of its own, which no sensor fault joins.

use chrono::{DateTime, NaiveDate, Utc};

use crate::contracts::{Contract, Deadlines, WarrantyStatus};
use crate::domain::Tier;
use crate::fleet::Fleet;

crate::domain::named! {
    /// What a ticket is about.
    pub enum Category {
        /// Something does not work.
        Fault = "fault",
        /// A service asked for: a move, a setting, a training.
        Request = "request",
        Question = "question",
        Complaint = "complaint",
    }
}

impl Category {
    /// A category by its name, or what to write instead.
    pub fn read(s: &str) -> Result<Category, String> {
        Category::parse(s).ok_or_else(|| format!("category `{s}`: write fault, request, question or complaint"))
    }
}

crate::domain::named! {
    /// How a ticket came in.
    pub enum Channel {
        /// A device's telemetry raised it.
        Sensor = "sensor",
        Phone = "phone",
        Web = "web",
        Email = "email",
        /// Told to someone in person, on a visit.
        Visit = "visit",
        /// Opened by people in the customer's helpdesk.
        Helpdesk = "helpdesk",
    }
}

impl Channel {
    /// A person's channel by its name, or what to write instead.
    pub fn read(s: &str) -> Result<Channel, String> {
        Channel::parse(s).ok_or_else(|| format!("channel `{s}`: write phone, web, email, visit or helpdesk"))
    }
}

crate::domain::named! {
    /// How grave a complaint is (003): a major one runs as tier 1.
    pub enum Grade {
        General = "general",
        Major = "major",
    }
}

/// Days after a complaint by which somebody goes to see the customer in person (004: every
/// complaint, "都须亲自前往").
pub const COMPLAINT_VISIT_DAYS: u64 = 1;

impl Category {
    /// The tier a report of this category takes when the desk gives none and it names no
    /// fault code: a fault or a complaint is main (2), anything else minor (3).
    pub fn default_tier(self) -> Tier {
        match self {
            Category::Fault | Category::Complaint => Tier::Main,
            Category::Request | Category::Question => Tier::Minor,
        }
    }
}

/// The longest problem text taken, in characters.
pub const MAX_PROBLEM: usize = 4_000;

/// A person's report, as given.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub channel: Channel,
    pub category: Category,
    pub customer: Option<String>,
    pub site: Option<String>,
    pub device: Option<String>,
    /// One of the device kind's fault codes: the report is that fault's ticket.
    pub code: Option<String>,
    /// Set by the desk; else from the fault code or the category.
    pub tier: Option<Tier>,
    /// The contract to run, for a report that names no device and a customer with several.
    pub contract: Option<String>,
    /// A complaint's grade (default general); nothing else has one.
    pub grade: Option<Grade>,
    pub reporter_name: String,
    pub reporter_phone: String,
    /// The problem in the reporter's own words.
    pub problem: String,
}

/// A report made ready for the store: whose it is, what it is about, and its clocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Intake {
    pub channel: Channel,
    pub category: Category,
    pub customer: String,
    pub site: String,
    /// Empty when the report names no device.
    pub device: String,
    pub kind: String,
    /// Empty when the report names no fault code.
    pub code: String,
    pub title: String,
    pub tier: Tier,
    pub deadlines: Deadlines,
    pub warranty: Option<WarrantyStatus>,
    pub grade: Option<Grade>,
    /// A complaint's follow-up visit: its due date (the site's day).
    pub visit_on: Option<NaiveDate>,
    pub reporter_name: String,
    pub reporter_phone: String,
    pub problem: String,
}

impl Intake {
    /// The report as one line of the timeline: how it came, from whom, and what they said.
    pub fn note(&self) -> String {
        let who = match (self.reporter_name.trim(), self.reporter_phone.trim()) {
            ("", "") => String::new(),
            (n, "") => format!(" by {n}"),
            ("", p) => format!(" by {p}"),
            (n, p) => format!(" by {n} ({p})"),
        };
        format!("{} reported{who} ({}): {}", self.category, self.channel, self.problem.trim())
    }
}

/// Checks `r` against the fleet and makes it ready to open at `now`; the error says what is
/// wrong, for a 400.
pub fn intake(fleet: &Fleet, r: &Report, now: DateTime<Utc>) -> Result<Intake, String> {
    let problem = r.problem.trim();
    if problem.is_empty() {
        return Err("say what the problem is: `problem`, in the reporter's own words".into());
    }
    if problem.chars().count() > MAX_PROBLEM {
        return Err(format!("a problem has at most {MAX_PROBLEM} characters"));
    }
    short_text("reporter.name", &r.reporter_name, 200)?;
    short_text("reporter.phone", &r.reporter_phone, 200)?;
    let grade = match (r.category, r.grade) {
        (Category::Complaint, g) => Some(g.unwrap_or(Grade::General)),
        (_, None) => None,
        (_, Some(_)) => return Err("only a complaint has a grade".into()),
    };
    if r.channel == Channel::Sensor {
        return Err("a person's report comes by phone, web, email, visit or helpdesk, not sensor".into());
    }
    let (customer, site, device, kind, code, title, rule_tier, idx) = match &r.device {
        Some(id) => {
            let idx = fleet.lookup(id).ok_or_else(|| format!("no device `{id}`"))?;
            let d = fleet.device(idx);
            if r.customer.as_deref().is_some_and(|c| c != d.customer.as_str()) {
                return Err(format!("device `{id}` is customer {}'s", d.customer));
            }
            if r.site.as_deref().is_some_and(|s| s != d.site.as_str()) {
                return Err(format!("device `{id}` is at site {}", d.site));
            }
            let profile = fleet.profile_of(idx);
            let (code, title, tier) = match &r.code {
                Some(c) => {
                    let tier = match profile.rule(c) {
                        Some(rule) => rule.tier,
                        None if c == crate::domain::OFFLINE => profile.offline_tier,
                        None => {
                            let codes: Vec<&str> = profile.rules.iter().map(|k| k.code.as_str()).collect();
                            return Err(format!(
                                "a {} has no fault `{c}`; its faults: {}, offline",
                                profile.name,
                                codes.join(", ")
                            ));
                        }
                    };
                    (c.clone(), profile.fault_title(c), Some(tier))
                }
                None => (String::new(), title_of(r.category, problem), None),
            };
            let d = fleet.device(idx);
            (d.customer.0.clone(), d.site.0.clone(), d.id.0.clone(), profile.name.clone(), code, title, tier, Some(idx))
        }
        None => {
            if r.code.is_some() {
                return Err("a fault code belongs to a device: name the `device` too".into());
            }
            let customer = r.customer.clone().ok_or("name the `customer` (or the `device`)")?;
            if !fleet.customers.iter().any(|c| c.id.as_str() == customer) {
                return Err(format!("no customer `{customer}`"));
            }
            let site = match &r.site {
                Some(s) => s.clone(),
                None => only_site(fleet, &customer)?,
            };
            if !fleet.sites.iter().any(|s| s.id.as_str() == site) {
                return Err(format!("no site `{site}`"));
            }
            let title = title_of(r.category, problem);
            (customer, site, String::new(), String::new(), String::new(), title, None, None)
        }
    };
    let graded = (grade == Some(Grade::Major)).then_some(Tier::Major);
    let tier = r.tier.or(graded).or(rule_tier).unwrap_or_else(|| r.category.default_tier());
    let day = local_day(fleet, &site, now);
    let contract = match (&r.contract, idx) {
        (Some(id), _) => {
            let c = fleet.contracts.iter().find(|c| &c.id == id).ok_or_else(|| format!("no contract `{id}`"))?;
            if c.customer.as_str() != customer {
                return Err(format!("contract {id} is customer {}'s", c.customer));
            }
            Ok(c)
        }
        (None, Some(idx)) => crate::contracts::governing(&fleet.contracts, fleet.covered(idx), day),
        // Several contracts as likely is the desk's to settle: a 400 that names them.
        (None, None) => governing_site(&fleet.contracts, &customer, &site, day)?,
    };
    let (deadlines, warranty) = match contract {
        Ok(c) if c.in_force(day) => {
            let warranty = idx.map(|i| c.warranty_status(fleet.covered(i), &code, day));
            (c.deadlines(tier, now), warranty)
        }
        Ok(c) => {
            (Deadlines { no_clock: Some(format!("contract {} is not in force", c.id)), ..Default::default() }, None)
        }
        // A contract that ended may still repair its devices at cost, with no clock.
        Err(why) => {
            (Deadlines { no_clock: Some(why), ..Default::default() }, idx.and_then(|i| fleet.warranty(i, &code, now).0))
        }
    };
    Ok(Intake {
        channel: r.channel,
        category: r.category,
        customer,
        site,
        device,
        kind,
        code,
        title,
        tier,
        deadlines,
        warranty,
        grade,
        visit_on: grade.and_then(|_| day.checked_add_days(chrono::Days::new(COMPLAINT_VISIT_DAYS))),
        reporter_name: r.reporter_name.trim().to_string(),
        reporter_phone: r.reporter_phone.trim().to_string(),
        problem: problem.to_string(),
    })
}

/// A name, an address or a phone number as people give them: at most `max` characters, none
/// of them control characters (a line break in a name breaks the helpdesk's subject).
pub fn short_text(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(format!("{field} has at most {max} characters and no control characters"));
    }
    Ok(())
}

/// A title from the category and the first words of the problem.
fn title_of(category: Category, problem: &str) -> String {
    let first: String = problem.lines().next().unwrap_or_default().chars().take(80).collect();
    let head = match category {
        Category::Fault => "Reported fault",
        Category::Request => "Request",
        Category::Question => "Question",
        Category::Complaint => "Complaint",
    };
    format!("{head}: {first}")
}

/// A ticket people opened in helpdesk `helpdesk` as a report: whose it is comes from the
/// device or site its subject or text names (among the customers whose tickets go to that
/// helpdesk), else from the one customer that helpdesk serves. A device named makes it a
/// fault report on that device; otherwise it is a request at the site. `Err` says why it
/// cannot be placed.
pub fn from_helpdesk(
    fleet: &Fleet,
    helpdesk: &str,
    subject: &str,
    text: &str,
    requestor: &str,
) -> Result<Report, String> {
    let served: Vec<&str> =
        fleet.customers.iter().filter(|c| c.helpdesk.as_deref() == Some(helpdesk)).map(|c| c.id.as_str()).collect();
    if served.is_empty() {
        return Err(format!("no customer's tickets go to helpdesk {helpdesk}"));
    }
    let words: Vec<&str> = subject
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .chain(text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))))
        .map(|w| w.trim_matches('.'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut devices: Vec<&crate::fleet::Device> = words
        .iter()
        .filter_map(|w| fleet.lookup(w).map(|i| fleet.device(i)))
        .filter(|d| served.contains(&d.customer.as_str()))
        .collect();
    devices.dedup_by(|a, b| a.id == b.id);
    let one_customer = || match served.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(format!(
            "helpdesk {helpdesk} serves customers {}: name a device or a site in the ticket",
            served.join(", ")
        )),
    };
    let (customer, site, device) = match devices.as_slice() {
        [d] => (d.customer.0.clone(), None, Some(d.id.0.clone())),
        [_, _, ..] => {
            let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
            return Err(format!("the ticket names several devices ({}); one ticket is about one", ids.join(", ")));
        }
        [] => {
            let site = fleet.sites.iter().find(|s| {
                words.contains(&s.id.as_str())
                    && fleet.devices.iter().any(|d| d.site == s.id && served.contains(&d.customer.as_str()))
            });
            match site {
                Some(s) => {
                    let mut owners: Vec<&str> = fleet
                        .devices
                        .iter()
                        .filter(|d| d.site == s.id && served.contains(&d.customer.as_str()))
                        .map(|d| d.customer.as_str())
                        .collect();
                    owners.sort_unstable();
                    owners.dedup();
                    match owners.as_slice() {
                        [one] => (one.to_string(), Some(s.id.0.clone()), None),
                        _ => {
                            return Err(format!(
                                "site {} serves customers {}: name a device in the ticket",
                                s.id,
                                owners.join(", ")
                            ));
                        }
                    }
                }
                None => (one_customer()?, None, None),
            }
        }
    };
    let subject = subject.trim();
    let text = text.trim();
    let mut problem =
        if text.is_empty() || text == subject { subject.to_string() } else { format!("{subject}\n{text}") };
    if problem.chars().count() > MAX_PROBLEM {
        problem = problem.chars().take(MAX_PROBLEM).collect();
    }
    let reporter: String = requestor.chars().filter(|c| !c.is_control()).take(200).collect();
    Ok(Report {
        channel: Channel::Helpdesk,
        category: if device.is_some() { Category::Fault } else { Category::Request },
        customer: Some(customer),
        site,
        device,
        code: None,
        tier: None,
        contract: None,
        grade: None,
        reporter_name: reporter,
        reporter_phone: String::new(),
        problem,
    })
}

/// The site of a customer that has one device site, for a report that names neither.
fn only_site(fleet: &Fleet, customer: &str) -> Result<String, String> {
    let mut sites: Vec<&str> =
        fleet.devices.iter().filter(|d| d.customer.as_str() == customer).map(|d| d.site.as_str()).collect();
    sites.sort_unstable();
    sites.dedup();
    match sites.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(format!("name the `site` of customer {customer}'s request")),
    }
}

fn local_day(fleet: &Fleet, site: &str, at: DateTime<Utc>) -> NaiveDate {
    match fleet.sites.iter().find(|s| s.id.as_str() == site) {
        Some(s) => at.with_timezone(&s.utc_offset).date_naive(),
        None => at.date_naive(),
    }
}

/// The contract that governs a request about a customer's site rather than one device: the
/// customer's contract in force that names the site, else one that covers all its sites; a
/// contract of named devices only governs none. `Ok(Err(why))` when none does (no clock runs);
/// `Err` when several do as specifically, and the request must name one.
pub(crate) fn governing_site<'a>(
    contracts: &'a [Contract],
    customer: &str,
    site: &str,
    day: NaiveDate,
) -> Result<Result<&'a Contract, String>, String> {
    let specificity = |c: &Contract| -> u8 {
        let v = &c.covers;
        if c.customer.as_str() != customer || (!v.devices.is_empty() && v.sites.is_empty() && v.kinds.is_empty()) {
            return 0;
        }
        match (v.sites.is_empty(), v.sites.iter().any(|s| s == site)) {
            (_, true) => 2,
            (true, _) => 1,
            (false, false) => 0,
        }
    };
    let mine: Vec<(&Contract, u8)> =
        contracts.iter().map(|c| (c, specificity(c))).filter(|(c, s)| *s > 0 && c.in_force(day)).collect();
    let best = mine.iter().map(|(_, s)| *s).max().unwrap_or(0);
    let top: Vec<&Contract> = mine.iter().filter(|(_, s)| *s == best).map(|(c, _)| *c).collect();
    match top.as_slice() {
        [] => Ok(Err(format!("no contract of customer {customer} covers site {site}; no clock runs"))),
        [one] => Ok(Ok(one)),
        many => Err(format!(
            "contracts {} all cover site {site}: name the `device` or the `contract`",
            many.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> std::sync::Arc<Fleet> {
        crate::demo::config().unwrap().fleet
    }

    fn report(device: Option<&str>, code: Option<&str>) -> Report {
        Report {
            channel: Channel::Phone,
            category: Category::Fault,
            customer: None,
            site: None,
            device: device.map(str::to_string),
            code: code.map(str::to_string),
            tier: None,
            contract: None,
            grade: None,
            reporter_name: "Wang Li".into(),
            reporter_phone: "138 0000 0000".into(),
            problem: "The lamps on the east side stay dark".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-10T10:00:00+08:00").unwrap().to_utc()
    }

    #[test]
    fn a_report_naming_a_fault_code_takes_the_faults_tier_and_the_devices_contract() {
        let f = fleet();
        // A device under a contract in force that day.
        let d = f
            .devices
            .iter()
            .find(|d| crate::contracts::governing(&f.contracts, f.covered(d.idx), now().date_naive()).is_ok())
            .unwrap();
        let rule = &f.kinds[d.kind].rules[0];
        let r = report(Some(d.id.as_str()), Some(rule.code.as_str()));
        let i = intake(&f, &r, now()).unwrap();
        assert_eq!((i.code.as_str(), i.tier), (rule.code.as_str(), rule.tier));
        assert_eq!(i.customer, d.customer.0);
        assert!(i.deadlines.contract.is_some(), "{:?}", i.deadlines);
        assert!(i.deadlines.acknowledge_by.is_some_and(|t| t > now()));
        assert!(i.warranty.is_some());
        assert!(i.note().starts_with("fault reported by Wang Li (138 0000 0000) (phone): The lamps"), "{}", i.note());
    }

    #[test]
    fn a_call_after_the_tender_ended_is_still_repaired_at_cost() {
        // 004 L6 "设备终身维修，只收取维修的成本费": the desk's ticket too, not only a sensor's.
        let f = fleet();
        let after = DateTime::parse_from_rfc3339("2029-01-10T10:00:00+08:00").unwrap().to_utc();
        let i = intake(&f, &report(Some("rec-001"), None), after).unwrap();
        assert_eq!(i.deadlines.acknowledge_by, None);
        assert!(
            i.deadlines.no_clock.as_deref().is_some_and(|m| m.contains("repairs go on at cost")),
            "{:?}",
            i.deadlines
        );
        assert!(i.warranty.as_ref().is_some_and(|w| !w.in_warranty), "{:?}", i.warranty);
    }

    #[test]
    fn a_report_without_a_code_takes_the_tier_of_its_category_or_the_desks() {
        let f = fleet();
        let d = &f.devices[0];
        let mut r = report(Some(d.id.as_str()), None);
        r.category = Category::Question;
        let i = intake(&f, &r, now()).unwrap();
        assert_eq!((i.code.as_str(), i.tier), ("", Tier::Minor));
        assert!(i.title.starts_with("Question: The lamps"), "{}", i.title);
        r.tier = Some(Tier::Major);
        assert_eq!(intake(&f, &r, now()).unwrap().tier, Tier::Major);
    }

    #[test]
    fn mistakes_are_named() {
        let f = fleet();
        let d = &f.devices[0];
        let e = |r: Report| intake(&f, &r, now()).unwrap_err();
        assert!(e(report(Some("nope"), None)).contains("no device `nope`"));
        assert!(e(report(Some(d.id.as_str()), Some("no_such_fault"))).contains("has no fault `no_such_fault`"));
        assert!(e(report(None, Some("leakage"))).contains("name the `device` too"));
        assert!(e(report(None, None)).contains("name the `customer`"));
        let mut r = report(Some(d.id.as_str()), None);
        r.problem = "  ".into();
        assert!(e(r.clone()).contains("say what the problem is"));
        r.problem = "x".repeat(MAX_PROBLEM + 1);
        assert!(e(r.clone()).contains("at most"));
        r.problem = "ok".into();
        r.customer = Some("someone-else".into());
        assert!(e(r).contains("is customer"));
    }

    #[test]
    fn a_request_about_a_site_runs_the_contract_that_covers_the_site() {
        let f = fleet();
        let site_request = |customer: &str, site: &str| {
            let mut r = report(None, None);
            r.customer = Some(customer.into());
            r.site = Some(site.into());
            r.category = Category::Request;
            r
        };
        // north-square has one contract in force, customer-wide: it runs.
        let i = intake(&f, &site_request("north-square", "site-b"), now()).unwrap();
        assert_eq!((i.device.as_str(), i.site.as_str()), ("", "site-b"));
        assert_eq!(i.deadlines.contract.as_deref(), Some("detailed-plan"));
        assert!(i.deadlines.acknowledge_by.is_some_and(|t| t > now()));
        assert_eq!(i.tier, Tier::Minor);
        // city-transit has one per device kind at site-a: the request names which.
        let mut r = site_request("city-transit", "site-a");
        let m = intake(&f, &r, now()).unwrap_err();
        assert!(m.contains("name the `device` or the `contract`") && m.contains("recorders-tender"), "{m}");
        r.contract = Some("recorders-tender".into());
        let i = intake(&f, &r, now()).unwrap();
        assert_eq!(i.deadlines.contract.as_deref(), Some("recorders-tender"));
        // Another customer's contract is refused.
        r.contract = Some("detailed-plan".into());
        assert!(intake(&f, &r, now()).unwrap_err().contains("is customer north-square's"));
    }

    #[test]
    fn a_helpdesk_ticket_is_placed_by_the_device_or_site_it_names_or_its_only_customer() {
        let text = "[kinds.lighting]\ntitle = \"Pole\"\nheartbeat = \"1m\"\n[kinds.lighting.metrics]\nlux = { unit = \"lx\" }\n\
                    [helpdesks.desk]\nwebhook = { url = \"http://127.0.0.1:9/h\" }\n\
                    [[sites]]\nid = \"north\"\n[[sites]]\nid = \"south\"\n\
                    [[customers]]\nid = \"a\"\nhelpdesk = \"desk\"\n[[customers]]\nid = \"b\"\nhelpdesk = \"desk\"\n\
                    [[customers]]\nid = \"c\"\n\
                    [[devices]]\nid = \"pole-1\"\nkind = \"lighting\"\nsite = \"north\"\ncustomer = \"a\"\naccepted_on = \"2025-01-01\"\n\
                    [[devices]]\nid = \"pole-2\"\nkind = \"lighting\"\nsite = \"south\"\ncustomer = \"b\"\naccepted_on = \"2025-01-01\"\n\
                    [[devices]]\nid = \"pole-4\"\nkind = \"lighting\"\nsite = \"north\"\ncustomer = \"b\"\naccepted_on = \"2025-01-01\"\n\
                    [[devices]]\nid = \"pole-3\"\nkind = \"lighting\"\nsite = \"south\"\ncustomer = \"c\"\naccepted_on = \"2025-01-01\"\n";
        let read = |_: &std::path::Path| Ok(text.to_string());
        let f = crate::config::Config::load_with(std::path::Path::new("x/main.toml"), &read).unwrap().fleet;
        let r = from_helpdesk(&f, "desk", "Pole pole-2 is dark", "", "wang@x.cn").unwrap();
        assert_eq!(
            (r.device.as_deref(), r.customer.as_deref(), r.category),
            (Some("pole-2"), Some("b"), Category::Fault)
        );
        assert_eq!((r.problem.as_str(), r.reporter_name.as_str()), ("Pole pole-2 is dark", "wang@x.cn"));
        // A site of one of its customers places a request there.
        let r = from_helpdesk(&f, "desk", "Inspection", "at south, please", "").unwrap();
        assert_eq!(
            (r.site.as_deref(), r.customer.as_deref(), r.category),
            (Some("south"), Some("b"), Category::Request)
        );
        assert_eq!(r.problem, "Inspection\nat south, please");
        // Another customer's device is not this helpdesk's to place; nothing named, two customers.
        let e = from_helpdesk(&f, "desk", "pole-3 flickers", "", "").unwrap_err();
        assert!(e.contains("serves customers a, b"), "{e}");
        let e = from_helpdesk(&f, "desk", "at north", "", "").unwrap_err();
        assert!(e.contains("site north serves customers a, b"), "{e}");
        let e = from_helpdesk(&f, "desk", "pole-1 and pole-2", "", "").unwrap_err();
        assert!(e.contains("several devices"), "{e}");
        assert!(from_helpdesk(&f, "other", "pole-1", "", "").is_err());
    }
}
