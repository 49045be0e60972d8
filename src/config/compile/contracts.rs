//! Contracts: coverage, tier clocks, escalations, warranty.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use toml::Spanned;

use super::plans::compile_plan;
use super::{Report, known, list, valid_id};
use crate::calendar::Calendar;
use crate::config::raw::RawContract;
use crate::contracts::{ClockSpec, Contract, Covers, Escalation, Milestone, Period, TierClocks, Warranty};
use crate::domain::CustomerId;

/// What contracts may refer to.
pub(super) struct Known<'a> {
    pub(super) customers: &'a HashSet<&'a str>,
    pub(super) sites: &'a HashSet<&'a str>,
    pub(super) kinds: &'a [&'a str],
    pub(super) devices: &'a HashSet<&'a str>,
    pub(super) calendars: &'a HashMap<String, Arc<Calendar>>,
    /// Every fault code the kinds can raise, `offline` included.
    pub(super) codes: &'a HashSet<&'a str>,
    /// The email channels of [notify.channels].
    pub(super) mail_channels: &'a [String],
}

pub(super) fn parse_day(s: &Spanned<String>, what: &str, r: &mut Report<'_>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.get_ref(), "%Y-%m-%d").ok().or_else(|| {
        r.at(s.span(), format!("{what} `{}` is not a date; write it as \"2026-01-01\"", s.get_ref()));
        None
    })
}

pub(super) fn hours_basis(h: &Spanned<String>, r: &mut Report<'_>) -> Option<bool> {
    match h.get_ref().as_str() {
        "7x24" => Some(false),
        "business" => Some(true),
        other => {
            r.at(h.span(), format!("hours = `{other}`: write \"7x24\" or \"business\""));
            None
        }
    }
}

pub(super) fn compile_contract(id: &str, c: &RawContract, k: &Known<'_>, r: &mut Report<'_>) -> Option<Contract> {
    let before = r.problems.len();
    if !valid_id(id) {
        r.at(c.customer.span(), format!("contract id `{id}` may hold only letters, digits, `-`, `_` and `.`"));
    }
    if !k.customers.contains(c.customer.get_ref().as_str()) {
        r.at(
            c.customer.span(),
            format!(
                "contract `{id}` names customer `{}`, which no [[customers]] entry defines; write one of: {}",
                c.customer.get_ref(),
                known(k.customers)
            ),
        );
    }
    let starts = parse_day(&c.starts, "starts", r);
    let ends = c.ends.as_ref().and_then(|e| parse_day(e, "ends", r));
    if let (Some(s), Some(e), Some(span)) = (starts, ends, c.ends.as_ref().map(|e| e.span()))
        && e < s
    {
        r.at(span, format!("contract `{id}` ends ({e}) before it starts ({s})"));
    }
    let calendar = match &c.calendar {
        Some(name) => match k.calendars.get(name.get_ref()) {
            Some(cal) => Some(Arc::clone(cal)),
            None => {
                let names: Vec<&str> = k.calendars.keys().map(String::as_str).collect();
                r.at(
                    name.span(),
                    format!("calendar `{}` is not listed under [calendars]; known: {}", name.get_ref(), list(&names)),
                );
                None
            }
        },
        None => None,
    };
    let business = c.hours.as_ref().map_or(Some(false), |h| hours_basis(h, r)).unwrap_or(false);
    let kinds: HashSet<&str> = k.kinds.iter().copied().collect();
    let mut check = |names: &[Spanned<String>], valid: &HashSet<&str>, what: &str| -> Vec<String> {
        for s in names {
            if !valid.contains(s.get_ref().as_str()) {
                r.at(
                    s.span(),
                    format!(
                        "contract `{id}` covers {what} `{}`, which is not configured; write one of: {}",
                        s.get_ref(),
                        known(valid)
                    ),
                );
            }
        }
        names.iter().map(|s| s.get_ref().clone()).collect()
    };
    let covers = Covers {
        sites: check(&c.covers.sites, k.sites, "site"),
        kinds: check(&c.covers.kinds, &kinds, "kind"),
        devices: check(&c.covers.devices, k.devices, "device"),
    };
    let inaction = c.inaction.as_ref().and_then(|d| match humantime::parse_duration(d.get_ref()) {
        Ok(d) => Some(d),
        Err(_) => {
            r.at(d.span(), format!("inaction = `{}` is not a duration; write one such as \"4h\"", d.get_ref()));
            None
        }
    });
    let mut warranty = Warranty::default();
    if let Some(w) = &c.warranty {
        for (class, p) in &w.periods {
            match Period::parse(p.get_ref()) {
                Some(period) => warranty.periods.push((class.clone(), period)),
                None => r.at(
                    p.span(),
                    format!(
                        "`{}` is not a warranty period; write one such as \"24 months\", \"3 years\" or \"90 days\"",
                        p.get_ref()
                    ),
                ),
            }
        }
        let known = |class: &Spanned<String>, r: &mut Report<'_>| {
            let ok = w.periods.contains_key(class.get_ref());
            if !ok {
                let names: Vec<&str> = w.periods.keys().map(String::as_str).collect();
                r.at(
                    class.span(),
                    format!("component class `{}` has no period; classes: {}", class.get_ref(), list(&names)),
                );
            }
            ok
        };
        if let Some(d) = &w.default
            && known(d, r)
        {
            warranty.default = Some(d.get_ref().clone());
        }
        for (class, p) in &w.normal_life {
            let Some(period) = Period::parse(p.get_ref()) else {
                r.at(p.span(), format!("`{}` is not a life; write one such as \"8 years\"", p.get_ref()));
                continue;
            };
            if !w.periods.contains_key(class) {
                r.at(p.span(), format!("normal_life: component class `{class}` has no warranty period"));
                continue;
            }
            warranty.normal_life.push((class.clone(), period));
        }
        for (code, class) in &w.faults {
            if !k.codes.contains(code.as_str()) {
                r.at(
                    class.span(),
                    format!("fault code `{code}` is not raised by any kind's rules (nor is it `offline`)"),
                );
            } else if known(class, r) {
                warranty.faults.push((code.clone(), class.get_ref().clone()));
            }
        }
    }
    const CAUSES: [&str; 5] = ["user_damage", "unauthorised_repair", "improper_transport", "misuse", "force_majeure"];
    let mut billable = Vec::new();
    for b in &c.billable {
        if CAUSES.contains(&b.get_ref().as_str()) {
            billable.push(b.get_ref().clone());
        } else {
            r.at(b.span(), format!("billable cause `{}`: write one of {}", b.get_ref(), CAUSES.join(", ")));
        }
    }
    let mut repair_requires = Vec::new();
    for f in &c.repair_requires {
        match crate::contracts::RepairField::parse(f.get_ref()) {
            Some(field) if !repair_requires.contains(&field) => repair_requires.push(field),
            Some(_) => r.at(f.span(), format!("repair_requires names `{}` twice", f.get_ref())),
            None => r.at(
                f.span(),
                format!(
                    "repair_requires: `{}` is no part of a repair record; write some of {}",
                    f.get_ref(),
                    crate::contracts::RepairField::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ),
        }
    }
    let repeat_window = match &c.repeat_window {
        Some(d) => humantime::parse_duration(d.get_ref()).unwrap_or_else(|_| {
            r.at(d.span(), format!("repeat_window = `{}` is not a duration; write one such as \"30d\"", d.get_ref()));
            std::time::Duration::ZERO
        }),
        None => std::time::Duration::from_secs(30 * 86_400),
    };
    if let Some(old) = &c.replace_after {
        r.at(
            old.span(),
            format!(
                "replace_after was renamed replace_at_failed_repairs and now counts the number itself \
                 (004: \"维修2次以上\" is two failed repairs or more); write replace_at_failed_repairs = {}",
                old.get_ref() + 1
            ),
        );
    }
    let replace_at_failed_repairs = match &c.replace_at_failed_repairs {
        Some(n) if *n.get_ref() == 0 => {
            r.at(n.span(), "replace_at_failed_repairs must be 1 or more (the failed repairs that call for a new unit)");
            2
        }
        Some(n) => *n.get_ref(),
        None => 2,
    };
    let mut tiers: [TierClocks; 3] = Default::default();
    for (i, t) in [&c.tier1, &c.tier2, &c.tier3].into_iter().enumerate() {
        let Some(t) = t else {
            // A forgotten tier would give its tickets a contract and no deadline, with no reason said.
            let n = i + 1;
            r.at(
                c.customer.span(),
                format!(
                    "contract `{id}` has no tier{n}: give its clocks ([contracts.{id}.tier{n}]), or write \
                     tier{n} = {{}} to promise nothing for tier {n}"
                ),
            );
            continue;
        };
        let business = t.hours.as_ref().map_or(Some(business), |h| hours_basis(h, r)).unwrap_or(business);
        let mut clock = |s: &Option<Spanned<String>>| -> Option<ClockSpec> {
            let s = s.as_ref()?;
            match ClockSpec::parse(s.get_ref(), business) {
                Ok(spec) if spec.needs_calendar() && calendar.is_none() => {
                    r.at(
                        s.span(),
                        format!("`{}` counts business time; name a calendar with calendar = \"…\"", s.get_ref()),
                    );
                    None
                }
                Ok(spec) => Some(spec),
                Err(e) => {
                    r.at(s.span(), e);
                    None
                }
            }
        };
        let (acknowledge, on_site, resolve) = (clock(&t.acknowledge), clock(&t.on_site), clock(&t.resolve));
        let (remote_fix, on_site_fix, factory) = (clock(&t.remote_fix), clock(&t.on_site_fix), clock(&t.factory));
        let mut escalation = Vec::new();
        for e in &t.escalation {
            let after = match humantime::parse_duration(e.after.get_ref()) {
                Ok(d) => d,
                Err(_) => {
                    r.at(
                        e.after.span(),
                        format!("after = `{}` is not a duration; write one such as \"30m\"", e.after.get_ref()),
                    );
                    continue;
                }
            };
            let unless = match &e.unless {
                Some(u) => match Milestone::parse(u.get_ref()) {
                    Some(m) => m,
                    None => {
                        r.at(u.span(), format!("unless = `{}`: write acknowledged, on_site or resolved", u.get_ref()));
                        continue;
                    }
                },
                None => Milestone::Resolved,
            };
            let channel = match &e.channel {
                Some(c) if !["phone", "sms", "email", "helpdesk"].contains(&c.get_ref().as_str()) => {
                    r.at(c.span(), format!("channel = `{}`: write phone, sms, email or helpdesk", c.get_ref()));
                    continue;
                }
                Some(c) => c.get_ref().clone(),
                None => "helpdesk".to_string(),
            };
            if escalation.last().is_some_and(|p: &Escalation| p.level >= *e.level.get_ref()) {
                r.at(e.level.span(), "escalation levels must rise: list steps in order, 1, 2, 3…");
                continue;
            }
            escalation.push(Escalation { level: *e.level.get_ref(), after, unless, to: e.to.clone(), channel });
        }
        tiers[i] = TierClocks { acknowledge, on_site, resolve, remote_fix, on_site_fix, factory, escalation };
    }
    if r.problems.len() > before {
        return None;
    }
    let plans: Vec<crate::contracts::Plan> = c.plans.iter().filter_map(|p| compile_plan(id, p, starts, k, r)).collect();
    let mut reports = Vec::new();
    for s in &c.reports {
        match crate::contracts::Cadence::parse(s.get_ref()) {
            Some(cad) if !reports.contains(&cad) => reports.push(cad),
            Some(_) => r.at(s.span(), format!("report `{}` is listed twice", s.get_ref())),
            None => r.at(
                s.span(),
                format!("report `{}`: write \"weekly\", \"monthly\", \"quarterly\" or \"yearly\"", s.get_ref()),
            ),
        }
    }
    let sla_target = match &c.sla_target {
        Some(t) if !(0.0..=1.0).contains(t.get_ref()) => {
            r.at(t.span(), format!("sla_target {} is a share from 0 to 1, such as 0.95", t.get_ref()));
            return None;
        }
        Some(t) => *t.get_ref(),
        None => 1.0,
    };
    let spares_share = match &c.spares_share {
        Some(t) if !(*t.get_ref() > 0.0 && *t.get_ref() <= 1.0) => {
            r.at(t.span(), format!("spares_share {} is a share above 0 and at most 1, such as 0.03", t.get_ref()));
            return None;
        }
        t => t.as_ref().map(|t| *t.get_ref()),
    };
    let mut at_cost = Vec::new();
    for a in &c.at_cost {
        if billable.contains(a.get_ref()) {
            at_cost.push(a.get_ref().clone());
        } else {
            r.at(a.span(), format!("at_cost cause `{}` is not one of the contract's billable causes", a.get_ref()));
        }
    }
    let report_mail = match &c.report_mail {
        None => None,
        Some(m) => {
            let span = m.span();
            let m = m.get_ref();
            let langs = m.langs.clone().unwrap_or_else(|| vec!["zh-CN".into(), "en".into()]);
            if let Some(bad) = langs.iter().find(|l| !matches!(l.as_str(), "zh-CN" | "en")) {
                r.at(span.clone(), format!("report_mail: language `{bad}`; write \"zh-CN\" or \"en\""));
            }
            if let Some(bad) = m.to.iter().find(|a| a.parse::<lettre::message::Mailbox>().is_err()) {
                r.at(span.clone(), format!("report_mail: `{bad}` is not a mail address"));
            }
            if m.to.is_empty() {
                r.at(span.clone(), "report_mail: name who it goes `to`");
            }
            if !k.mail_channels.contains(&m.channel) {
                r.at(
                    span,
                    format!(
                        "report_mail: `{}` is no email channel of [notify.channels]; {}",
                        m.channel,
                        if k.mail_channels.is_empty() {
                            "add one with email = { server = …, from = … }".to_string()
                        } else {
                            format!("write one of {}", k.mail_channels.join(", "))
                        }
                    ),
                );
            }
            Some(crate::contracts::ReportMail { to: m.to.clone(), langs, channel: m.channel.clone() })
        }
    };
    Some(Contract {
        report_mail,
        plans,
        reports,
        id: id.to_string(),
        title: c.title.both().0,
        title_zh: c.title.both().1,
        supplier: c.supplier.as_ref().map(|s| s.both()),
        sla_target,
        spares_share,
        fee_scale: c.fee_scale.as_ref().map(|s| s.both()),
        customer: CustomerId(c.customer.get_ref().clone()),
        starts: starts?,
        ends,
        calendar,
        covers,
        tiers,
        loaner_on_resolve_breach: c.loaner_on_resolve_breach,
        loaner_at_factory: c.loaner_at_factory,
        warranty,
        billable,
        at_cost,
        repair_requires,
        wear_parts_half_price: c.wear_parts_half_price,
        lifetime_repair_at_cost: c.lifetime_repair_at_cost,
        repeat_window,
        replace_at_failed_repairs,
        inaction,
        inaction_to: c.inaction_to.clone().unwrap_or_else(|| "management".to_string()),
    })
}
