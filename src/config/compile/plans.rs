//! Visit plans of a contract.

use chrono::NaiveDate;
use toml::Spanned;

use super::contracts::{Known, parse_day};
use super::{Report, list};
use crate::contracts::Period;

fn period(s: &Spanned<String>, what: &str, r: &mut Report<'_>) -> Option<Period> {
    Period::parse(s.get_ref()).or_else(|| {
        r.at(
            s.span(),
            format!("{what} `{}`: write a period such as \"1 week\", \"3 months\" or \"2 years\"", s.get_ref()),
        );
        None
    })
}

/// A visit plan of contract `id`.
pub(super) fn compile_plan(
    id: &str,
    sp: &Spanned<crate::config::raw::RawPlan>,
    starts: Option<NaiveDate>,
    k: &Known<'_>,
    r: &mut Report<'_>,
) -> Option<crate::contracts::Plan> {
    use crate::contracts::{Anchor, Plan, Step};
    use crate::domain::VisitKind;
    let before = r.problems.len();
    let p = sp.get_ref();
    let kind = VisitKind::parse(p.kind.get_ref()).or_else(|| {
        r.at(p.kind.span(), format!("kind `{}`: write patrol, inspection, maintenance or follow_up", p.kind.get_ref()));
        None
    });
    let anchor = match p.anchor.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None | Some((_, "contract")) => None,
        Some((_, "acceptance")) => Some(Anchor::Acceptance),
        Some((_, "delivery")) => Some(Anchor::Delivery),
        Some((a, _)) => parse_day(a, "anchor", r).map(Anchor::Date),
    };
    let after = p.after.as_ref().and_then(|a| {
        crate::contracts::After::parse(a.get_ref()).or_else(|| {
            r.at(a.span(), format!("after `{}`: write \"service\" or \"on_site_repair\"", a.get_ref()));
            None
        })
    });
    if let Some(a) = &p.after {
        let calendar = [("every", p.every.as_ref().map(|e| e.span())), ("anchor", p.anchor.as_ref().map(|e| e.span()))];
        for (key, span) in calendar
            .into_iter()
            .chain([("steps", p.steps.as_ref().and_then(|s| s.first()).map(|s| s.span()))])
            .chain([("lead", p.lead.as_ref().map(|l| l.span()))])
        {
            if let Some(span) = span {
                r.at(span, format!("plan `{}` follows services (after = \"{}\"): it has no {key}; its visits are due `within` a period of each service", p.name.get_ref(), a.get_ref()));
            }
        }
    } else if let Some(w) = &p.within {
        r.at(
            w.span(),
            format!("plan `{}`: within goes with after = \"service\" or \"on_site_repair\"", p.name.get_ref()),
        );
    }
    let within_days = match &p.within {
        None => 3,
        Some(w) => match period(w, "within", r) {
            Some(Period::Days(n)) => n,
            Some(Period::Months(_)) => {
                r.at(w.span(), "within is counted in days or weeks, such as \"3 days\"");
                0
            }
            None => 0,
        },
    };
    let steps: Vec<Step> = match (&p.every, &p.steps) {
        _ if p.after.is_some() => Vec::new(),
        (Some(e), None) => {
            period(e, "every", r).map(|every| vec![Step::Every { every, until: None }]).unwrap_or_default()
        }
        (None, Some(steps)) if !steps.is_empty() => steps
            .iter()
            .filter_map(|s| {
                let st = s.get_ref();
                match (&st.at, &st.every) {
                    (Some(a), None) if st.until.is_none() => period(a, "at", r).map(Step::At),
                    (None, Some(e)) => {
                        let every = period(e, "every", r)?;
                        let until = match &st.until {
                            Some(u) => Some(period(u, "until", r)?),
                            None => None,
                        };
                        Some(Step::Every { every, until })
                    }
                    _ => {
                        r.at(
                            s.span(),
                            "a step is { at = \"1 week\" } or { every = \"3 months\", until = \"2 years\" }",
                        );
                        None
                    }
                }
            })
            .collect(),
        _ => {
            r.at(
                sp.span(),
                format!(
                    "plan `{}` of contract `{id}` needs every = \"3 months\" or steps = [...], one of them",
                    p.name.get_ref()
                ),
            );
            Vec::new()
        }
    };
    let lead_days = match &p.lead {
        None => 7,
        Some(l) => match period(l, "lead", r) {
            Some(Period::Days(n)) => n,
            Some(Period::Months(_)) => {
                r.at(l.span(), "lead is counted in days or weeks, such as \"7 days\"");
                0
            }
            None => 0,
        },
    };
    let mut measured = Vec::new();
    for (item, spec) in &p.measured {
        match crate::contracts::Measure::parse(spec.get_ref()) {
            Some(crate::contracts::Measure::Faults { code: Some(c) }) if !k.codes.contains(c.as_str()) => {
                let mut codes: Vec<&str> = k.codes.iter().copied().collect();
                codes.sort_unstable();
                r.at(
                    spec.span(),
                    format!("measured `{}`: no kind raises fault `{c}`; known: {}", spec.get_ref(), codes.join(", ")),
                );
            }
            Some(m) => {
                if !p.checklist.values().any(|items| items.contains(item)) {
                    r.at(
                        spec.span(),
                        format!("`{item}` is measured but on no checklist of plan `{}`", p.name.get_ref()),
                    );
                }
                measured.push((item.clone(), m));
            }
            None => r.at(
                spec.span(),
                format!(
                    "measured `{}`: write \"METRIC min|max|mean|last\", \"online\", \"faults\" or \"faults CODE\"",
                    spec.get_ref()
                ),
            ),
        }
    }
    for kd in &p.kinds {
        if !k.kinds.contains(&kd.get_ref().as_str()) {
            r.at(
                kd.span(),
                format!(
                    "plan `{}` names kind `{}`, which no profile defines; write one of: {}",
                    p.name.get_ref(),
                    kd.get_ref(),
                    list(k.kinds)
                ),
            );
        }
    }
    // A plan that outlives its contract needs an end of its own.
    if p.past_contract_end && (p.after.is_some() || steps.iter().any(|s| matches!(s, Step::Every { until: None, .. })))
    {
        r.at(
            sp.span(),
            format!(
                "plan `{}`: past_contract_end needs every step to end (`at`, or `every` with `until`)",
                p.name.get_ref()
            ),
        );
    }
    if let Some(zh) = &p.zh {
        let unknown: Vec<&str> = zh
            .get_ref()
            .keys()
            .filter(|w| *w != p.name.get_ref() && !p.checklist.values().any(|items| items.contains(w)))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            r.at(
                zh.span(),
                format!(
                    "plan `{}`: `zh-CN` translates {}, which is neither the plan's name nor on its checklists",
                    p.name.get_ref(),
                    unknown.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    if r.problems.len() > before {
        return None;
    }
    Some(Plan {
        name: p.name.get_ref().clone(),
        kind: kind?,
        anchor: match anchor {
            Some(a) => a,
            None => Anchor::Date(starts?),
        },
        steps,
        lead_days,
        kinds: p.kinds.iter().map(|k| k.get_ref().clone()).collect(),
        checklist: p.checklist.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        measured,
        helpdesk: p.helpdesk.unwrap_or(true),
        after: after.map(|a| (a, within_days)),
        past_contract_end: p.past_contract_end,
        zh: p
            .zh
            .as_ref()
            .map(|z| z.get_ref().iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}
