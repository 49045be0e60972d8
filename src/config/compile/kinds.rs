//! Device kinds: their metrics, rules and conditions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::modbus::register_map;
use super::{Report, list, ms, valid_id};
use crate::config::raw::{RawCond, RawIncluded, RawKind, RawMetricType, RawRule};
use crate::config::{ConfigError, Source};
use crate::domain::{FaultCode, OFFLINE, Tier};
use crate::rules::{Cond, MetricDef, MetricType, Profile, Rule};

/// Compiles one device kind; `None` when it has problems (already reported).
pub(super) fn compile_kind(name: &str, k: &RawKind, r: &mut Report<'_>) -> Option<Profile> {
    let before = r.problems.len();
    let mut metrics = Vec::new();
    let mut metric_index = HashMap::new();
    for (m, def) in &k.metrics {
        metric_index.insert(m.clone(), metrics.len() as u16);
        metrics.push(MetricDef {
            name: m.clone(),
            unit: def.unit.clone(),
            ty: match def.ty {
                RawMetricType::Number => MetricType::Number,
                RawMetricType::Bool => MetricType::Bool,
                RawMetricType::Text => MetricType::Text,
            },
        });
    }
    let mut codes = HashMap::new();
    let mut code_names = Vec::new();
    for c in &k.codes {
        if codes.len() >= 64 {
            r.at(c.span(), "a device kind can declare at most 64 device codes");
            break;
        }
        if codes.insert(c.get_ref().clone(), code_names.len() as u8).is_some() {
            r.at(c.span(), format!("device code `{}` is listed twice", c.get_ref()));
        }
        code_names.push(c.get_ref().clone());
    }
    let mut cx = KindCx { kind: name, metric_index: &metric_index, metrics: &metrics, codes: &codes, rate_slots: 0 };
    let mut rules = Vec::new();
    let mut seen = HashSet::new();
    for rule in &k.rules {
        if let Some(rule) = compile_rule(rule, &mut cx, &mut seen, r) {
            rules.push(rule);
        }
    }
    let mut stuck_tolerance = vec![0.0; metrics.len()];
    for rule in &k.rules {
        for c in [Some(&rule.raise), rule.clear.as_ref(), rule.when.as_ref()].into_iter().flatten() {
            collect_stuck(c, &metric_index, &mut stuck_tolerance);
        }
    }
    let rate_slots = cx.rate_slots;
    let modbus = k.modbus.as_ref().and_then(|m| register_map(name, m, &metric_index, &metrics, r)).map(Arc::new);
    if r.problems.len() > before {
        return None;
    }
    let (title, title_zh) = k.title.with_zh(k.title_zh.as_ref());
    Some(Profile {
        modbus,
        name: name.to_string(),
        offline_title: format!("{title} offline"),
        offline_title_zh: format!("{title_zh}离线"),
        title,
        title_zh,
        metrics,
        metric_index,
        codes,
        code_names,
        stuck_tolerance,
        rules,
        rate_slots,
        heartbeat_ms: ms(k.heartbeat.0),
        offline_tier: Tier::Main,
        offline_major_after_ms: ms(k.offline_major_after.map_or(Duration::from_secs(600), |d| d.0)),
    })
}

pub(super) fn collect_stuck(c: &RawCond, idx: &HashMap<String, u16>, tol: &mut [f64]) {
    match c {
        RawCond::Stuck(s) => {
            if let Some(&m) = idx.get(s.metric.get_ref()) {
                let t = s.tolerance.map_or(0.0, |t| t.0);
                let cur = &mut tol[m as usize];
                *cur = if *cur == 0.0 { t } else { cur.min(t) };
            }
        }
        RawCond::All(cs) | RawCond::Any(cs) => cs.iter().for_each(|c| collect_stuck(c, idx, tol)),
        RawCond::Not(c) => collect_stuck(c, idx, tol),
        _ => {}
    }
}

pub(super) struct KindCx<'a> {
    kind: &'a str,
    metric_index: &'a HashMap<String, u16>,
    metrics: &'a [MetricDef],
    codes: &'a HashMap<String, u8>,
    rate_slots: u16,
}

impl KindCx<'_> {
    /// Resolves a metric name that must carry a number or a boolean.
    fn metric(&self, m: &Spanned<String>, r: &mut Report<'_>) -> Option<u16> {
        match self.metric_index.get(m.get_ref()) {
            Some(&i) if self.metrics[i as usize].ty == MetricType::Text => {
                r.at(m.span(), format!("metric `{}` is text; rules compare numbers and booleans only", m.get_ref()));
                None
            }
            Some(&i) => Some(i),
            None => {
                let names: Vec<&str> = self.metrics.iter().map(|d| d.name.as_str()).collect();
                r.at(
                    m.span(),
                    format!(
                        "kind `{}` has no metric `{}`; declare it under [kinds.{}.metrics] or use one of: {}",
                        self.kind,
                        m.get_ref(),
                        self.kind,
                        list(&names)
                    ),
                );
                None
            }
        }
    }
}

pub(super) fn compile_rule(
    rule: &RawRule,
    cx: &mut KindCx<'_>,
    seen: &mut HashSet<String>,
    r: &mut Report<'_>,
) -> Option<Rule> {
    let code = rule.code.get_ref();
    if !valid_id(code) {
        r.at(rule.code.span(), format!("fault code `{code}` may hold only letters, digits, `-`, `_` and `.`"));
    }
    if code == OFFLINE {
        r.at(
            rule.code.span(),
            "`offline` is built in (set heartbeat and offline_major_after on the kind); use another code",
        );
    }
    if !seen.insert(code.clone()) {
        r.at(rule.code.span(), format!("fault code `{code}` is used by two rules of kind `{}`", cx.kind));
    }
    let tier = Tier::from_number(*rule.tier.get_ref() as i64);
    if tier.is_none() {
        r.at(rule.tier.span(), "tier must be 1 (major), 2 (main) or 3 (minor)");
    }
    let when = rule.when.as_ref().map(|c| compile_cond(c, cx, r));
    let raise = compile_cond(&rule.raise, cx, r);
    let clear = rule.clear.as_ref().map(|c| compile_cond(c, cx, r));
    Some(Rule {
        code: FaultCode(code.clone()),
        tier: tier?,
        title: rule.title.with_zh(rule.title_zh.as_ref()).0,
        title_zh: rule.title.with_zh(rule.title_zh.as_ref()).1,
        when: match when {
            Some(w) => Some(w?),
            None => None,
        },
        raise: raise?,
        hold_ms: rule.hold.map_or(0, |d| ms(d.0)),
        clear: match clear {
            Some(c) => Some(c?),
            None => None,
        },
        clear_hold_ms: rule.clear_hold.map_or(0, |d| ms(d.0)),
    })
}

pub(super) fn compile_cond(c: &RawCond, cx: &mut KindCx<'_>, r: &mut Report<'_>) -> Option<Cond> {
    Some(match c {
        RawCond::Threshold(t) => Cond::Threshold { metric: cx.metric(&t.metric, r)?, op: t.op, value: t.value.0 },
        RawCond::Range(t) => {
            let metric = cx.metric(&t.metric, r)?;
            if t.min.0 > t.max.0 {
                r.at(
                    t.metric.span(),
                    format!("range on `{}` has min {} above max {}", t.metric.get_ref(), t.min.0, t.max.0),
                );
                return None;
            }
            Cond::Range { metric, min: t.min.0, max: t.max.0, outside: t.outside }
        }
        RawCond::Rate(t) => {
            let metric = cx.metric(&t.metric, r)?;
            if t.per.0.is_zero() || t.window.0.is_zero() {
                r.at(
                    t.metric.span(),
                    "a rate needs a non-zero `per` and `window`, such as per = \"1h\", window = \"30m\"",
                );
                return None;
            }
            let slot = cx.rate_slots;
            cx.rate_slots += 1;
            Cond::Rate { metric, op: t.op, value: t.value.0, per_ms: ms(t.per.0), window_ms: ms(t.window.0), slot }
        }
        RawCond::Stuck(t) => Cond::Stuck {
            metric: cx.metric(&t.metric, r)?,
            for_ms: ms(t.for_.0),
            tolerance: t.tolerance.map_or(0.0, |t| t.0),
        },
        RawCond::Difference(p) => {
            let (a, b) = (cx.metric(&p.a, r), cx.metric(&p.b, r));
            Cond::Difference { a: a?, b: b?, op: p.op, value: p.value.0 }
        }
        RawCond::Ratio(p) => {
            let (a, b) = (cx.metric(&p.a, r), cx.metric(&p.b, r));
            Cond::Ratio { a: a?, b: b?, op: p.op, value: p.value.0 }
        }
        RawCond::Flag(f) => {
            let metric = cx.metric(&f.metric, r)?;
            if *f.bit.get_ref() > 31 {
                r.at(f.bit.span(), "bit must be 0..=31");
                return None;
            }
            Cond::Flag { metric, bit: *f.bit.get_ref(), set: f.set }
        }
        RawCond::Code(c) => match cx.codes.get(c.code.get_ref()) {
            Some(&code) => Cond::Code { code },
            None => {
                r.at(
                    c.code.span(),
                    format!(
                        "device code `{}` is not declared; add it to `codes = [...]` of kind `{}`",
                        c.code.get_ref(),
                        cx.kind
                    ),
                );
                return None;
            }
        },
        RawCond::NoData(n) => Cond::NoData { metric: cx.metric(&n.metric, r)?, for_ms: ms(n.for_.0) },
        RawCond::All(cs) | RawCond::Any(cs) => {
            let parts: Vec<Option<Cond>> = cs.iter().map(|c| compile_cond(c, cx, r)).collect();
            let parts: Option<Vec<Cond>> = parts.into_iter().collect();
            if matches!(c, RawCond::All(_)) { Cond::All(parts?) } else { Cond::Any(parts?) }
        }
        RawCond::Not(inner) => Cond::Not(Box::new(compile_cond(inner, cx, r)?)),
    })
}

/// Compiles the `[kinds.*]` tables of one profile file.
pub(in crate::config) fn compile_kind_file(src: &Source) -> Result<Vec<Profile>, ConfigError> {
    // What could not be read, and what the rest of the file then says.
    let (file, mut problems) = crate::config::parse::<RawIncluded>(src);
    let Some(file) = file else { return Err(ConfigError(problems)) };
    let mut out = Vec::new();
    for (name, kind) in &file.kinds {
        let mut r = Report { src, problems: &mut problems };
        if let Some(p) = compile_kind(name, kind, &mut r) {
            out.push(p);
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(ConfigError(problems)) }
}
