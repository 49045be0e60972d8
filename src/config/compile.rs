//! Validation: raw config → typed [`Config`], collecting every problem.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate};
use toml::Spanned;

use super::raw::{RawBroker, RawCond, RawConfig, RawContract, RawIncluded, RawKind, RawMetricType, RawRule};
use super::{
    BrokerConfig, BrokerMode, Config, ConfigError, HelpdeskConfig, HelpdeskKind, IngestConfig, OutboxConfig, Problem,
    ReadFile, Source, TicketConfig,
};
use crate::calendar::Calendar;
use crate::contracts::{Contract, Covers, Escalation, Milestone, Period, TierClocks, Warranty};
use crate::domain::{CustomerId, DeviceId, DeviceIdx, FaultCode, OFFLINE, SiteId, Tier};
use crate::fleet::{Customer, Device, Fleet, Site};
use crate::rules::{Cond, MetricDef, MetricType, Profile, Rule};
use crate::tickets::sla::ClockSpec;

/// Collects problems against the source they are in.
struct Report<'a> {
    src: &'a Source,
    problems: &'a mut Vec<Problem>,
}

impl Report<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = self.src.line_col(span.start);
        self.problems.push(Problem { file: self.src.path.clone(), line, col, message: message.into() });
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Names that end up in MQTT topics and URLs: letters, digits, `-`, `_`, `.`.
fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

pub(super) fn compile(main: Source, raw: RawConfig, read: ReadFile<'_>) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let base = main.path.parent().map(Path::to_path_buf).unwrap_or_default();

    // Kind profiles: from the main file and from every included file.
    let mut kind_sources: Vec<(Source, BTreeMap<String, RawKind>)> = Vec::new();
    let mut contract_sources: Vec<(Source, BTreeMap<String, RawContract>)> = Vec::new();
    for inc in &raw.include {
        let path = base.join(inc.get_ref());
        match read(&path) {
            Ok(text) => {
                let src = Source { path: path.clone(), text };
                match super::parse::<RawIncluded>(&src) {
                    Ok(f) => {
                        contract_sources.push((src.clone(), f.contracts));
                        kind_sources.push((src, f.kinds));
                    }
                    Err(p) => problems.push(p),
                }
            }
            Err(e) => Report { src: &main, problems: &mut problems }.at(
                inc.span(),
                format!("cannot read included file {}: {e}; include paths are relative to this file", path.display()),
            ),
        }
    }
    let RawConfig {
        broker,
        http,
        store,
        ingest,
        tickets,
        sites,
        customers,
        devices,
        kinds,
        contracts,
        calendars,
        helpdesks,
        outbox,
        ..
    } = raw;
    kind_sources.push((main.clone(), kinds));
    contract_sources.push((main.clone(), contracts));

    // Business calendars.
    let mut calendar_map: HashMap<String, Arc<Calendar>> = HashMap::new();
    for (name, path) in &calendars {
        let file = base.join(path.get_ref());
        match read(&file) {
            Ok(text) => match Calendar::parse(&text) {
                Ok(c) => {
                    calendar_map.insert(name.clone(), Arc::new(c));
                }
                Err(e) => {
                    let src = Source { path: file.clone(), text };
                    let mut r = Report { src: &src, problems: &mut problems };
                    r.at(e.span.unwrap_or(0..0), e.message);
                }
            },
            Err(e) => Report { src: &main, problems: &mut problems }.at(
                path.span(),
                format!("cannot read calendar {}: {e}; calendar paths are relative to this file", file.display()),
            ),
        }
    }

    let mut profiles: Vec<Profile> = Vec::new();
    for (src, kinds) in &kind_sources {
        for (name, kind) in kinds {
            let mut r = Report { src, problems: &mut problems };
            if profiles.iter().any(|p| &p.name == name) {
                let span = kind.rules.first().map_or(0..0, |r| r.code.span());
                r.at(span, format!("device kind `{name}` is defined twice; keep one [kinds.{name}] table"));
                continue;
            }
            if !valid_id(name) {
                r.at(0..0, format!("device kind name `{name}` may hold only letters, digits, `-`, `_` and `.`"));
            }
            if let Some(p) = compile_kind(name, kind, &mut r) {
                profiles.push(p);
            }
        }
    }

    let mut r = Report { src: &main, problems: &mut problems };
    let broker = compile_broker(broker, &base, &mut r);
    let http_listen = match &http.listen {
        Some(s) => parse_addr(s, &mut r),
        None => Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
    };
    let store_path = base.join(store.path.as_deref().unwrap_or("aftercare.db"));
    let topic_prefix = match &ingest.topic_prefix {
        Some(p) if p.get_ref().is_empty() || p.get_ref().contains(['+', '#']) || p.get_ref().ends_with('/') => {
            r.at(
                p.span(),
                "topic_prefix must be a plain topic level such as \"aftercare\" (no wildcards, no trailing /)",
            );
            String::new()
        }
        Some(p) => p.get_ref().clone(),
        None => "aftercare".to_string(),
    };
    let shards = match &ingest.shards {
        Some(s) if *s.get_ref() == 0 || *s.get_ref() > 64 => {
            r.at(s.span(), "shards must be between 1 and 64");
            1
        }
        Some(s) => *s.get_ref(),
        None => std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8),
    };
    let ingest = IngestConfig {
        topic_prefix,
        max_payload_bytes: ingest.max_payload_bytes.unwrap_or(64 * 1024).clamp(256, 1 << 20),
        shards,
        queue_capacity: ingest.queue_capacity.unwrap_or(16 * 1024).max(64),
    };
    let tickets = TicketConfig { reopen_window: tickets.reopen_window.map_or(Duration::from_secs(24 * 3600), |d| d.0) };

    // Helpdesks.
    let mut helpdesk_list = Vec::new();
    for (name, h) in &helpdesks {
        let priorities: [String; 3] = match &h.priorities {
            Some(p) => match <[String; 3]>::try_from(p.get_ref().clone()) {
                Ok(a) => a,
                Err(_) => {
                    r.at(p.span(), "priorities lists the helpdesk's priority for tiers 1, 2 and 3: three names");
                    continue;
                }
            },
            None => ["urgent".to_string(), "high".to_string(), "normal".to_string()],
        };
        if let Some(e) = &h.email {
            if h.webhook.is_some() {
                r.at(
                    e.server.span(),
                    format!("helpdesk `{name}` has both webhook and email; give it one, or make two helpdesks"),
                );
                continue;
            }
            let srv = e.server.get_ref();
            let (security, rest, default_port) = if let Some(r) = srv.strip_prefix("smtps://") {
                (crate::outbox::email::Security::Tls, r, 465)
            } else if let Some(r) = srv.strip_prefix("smtp+starttls://") {
                (crate::outbox::email::Security::StartTls, r, 587)
            } else if let Some(r) = srv.strip_prefix("smtp://") {
                (crate::outbox::email::Security::None, r, 25)
            } else {
                r.at(
                    e.server.span(),
                    format!("server `{srv}`: write smtp://host:25, smtp+starttls://host:587 or smtps://host:465"),
                );
                continue;
            };
            let rest = rest.trim_end_matches('/');
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => match p.parse::<u16>() {
                    Ok(p) => (h.to_string(), p),
                    Err(_) => {
                        r.at(e.server.span(), format!("`{p}` is not a port in `{srv}`"));
                        continue;
                    }
                },
                None => (rest.to_string(), default_port),
            };
            let mut ok = true;
            for a in [&e.from, &e.to] {
                if a.get_ref().parse::<lettre::message::Mailbox>().is_err() {
                    r.at(
                        a.span(),
                        format!(
                            "`{}` is not a mail address; write one such as \"Service desk <desk@example.net>\"",
                            a.get_ref()
                        ),
                    );
                    ok = false;
                }
            }
            if !ok {
                continue;
            }
            let cfg = crate::outbox::email::EmailConfig {
                host,
                port,
                security,
                username: e.username.clone(),
                password: e.password.clone(),
                from: e.from.get_ref().clone(),
                to: e.to.get_ref().clone(),
                timeout: e.timeout.map_or(Duration::from_secs(30), |d| d.0),
            };
            helpdesk_list.push(HelpdeskConfig { name: name.clone(), kind: HelpdeskKind::Email(cfg), priorities });
            continue;
        }
        let Some(w) = &h.webhook else {
            r.at(
                0..0,
                format!(
                    "helpdesk `{name}` names no connector; add webhook = {{ url = \"https://…\" }} or email = {{ … }}"
                ),
            );
            continue;
        };
        let url = w.url.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            r.at(w.url.span(), format!("webhook url `{url}` must start with http:// or https://"));
            continue;
        }
        let secret = match &w.secret {
            Some(s) => {
                use base64::Engine as _;
                match s.get_ref().strip_prefix("whsec_").map(|k| base64::engine::general_purpose::STANDARD.decode(k)) {
                    Some(Ok(key)) if !key.is_empty() => Some(key),
                    _ => {
                        r.at(s.span(), "a webhook secret is `whsec_` followed by the base64 of the key, as Standard Webhooks write it");
                        continue;
                    }
                }
            }
            None => None,
        };
        let timeout = w.timeout.map_or(Duration::from_secs(10), |d| d.0);
        helpdesk_list.push(HelpdeskConfig {
            name: name.clone(),
            kind: HelpdeskKind::Webhook { url: url.clone(), secret, timeout },
            priorities,
        });
    }
    let outbox = OutboxConfig {
        dead_after: outbox.dead_after.map_or(Duration::from_secs(24 * 3600), |d| d.0),
        max_backoff: outbox.max_backoff.map_or(Duration::from_secs(600), |d| d.0),
        concurrency: outbox.concurrency.unwrap_or(8).clamp(1, 64),
    };

    // Sites, customers, devices.
    let mut site_list = Vec::new();
    let mut seen = HashSet::new();
    for s in sites {
        let id = s.id.get_ref();
        if !valid_id(id) {
            r.at(s.id.span(), format!("site id `{id}` may hold only letters, digits, `-`, `_` and `.`"));
        } else if !seen.insert(id.clone()) {
            r.at(s.id.span(), format!("site `{id}` is defined twice"));
        }
        let utc_offset = match &s.utc_offset {
            Some(o) => o.get_ref().parse::<FixedOffset>().unwrap_or_else(|_| {
                r.at(o.span(), format!("utc_offset `{}` is not an offset; write one such as \"+08:00\"", o.get_ref()));
                UTC
            }),
            None => CHINA_STANDARD_TIME,
        };
        site_list.push(Site {
            id: SiteId(id.clone()),
            name: s.name.unwrap_or_else(|| id.clone()),
            address: s.address.unwrap_or_default(),
            utc_offset,
        });
    }
    let mut customer_list = Vec::new();
    let mut seen = HashSet::new();
    for c in customers {
        let id = c.id.get_ref();
        if !valid_id(id) {
            r.at(c.id.span(), format!("customer id `{id}` may hold only letters, digits, `-`, `_` and `.`"));
        } else if !seen.insert(id.clone()) {
            r.at(c.id.span(), format!("customer `{id}` is defined twice"));
        }
        let helpdesk = c.helpdesk.as_ref().and_then(|h| {
            if helpdesks.contains_key(h.get_ref()) {
                Some(h.get_ref().clone())
            } else {
                let names: Vec<&str> = helpdesks.keys().map(String::as_str).collect();
                r.at(
                    h.span(),
                    format!(
                        "customer `{id}` names helpdesk `{}`, which [helpdesks] does not define; known: {}",
                        h.get_ref(),
                        list(&names)
                    ),
                );
                None
            }
        });
        customer_list.push(Customer {
            helpdesk,
            id: CustomerId(id.clone()),
            name: c.name.unwrap_or_else(|| id.clone()),
            contact: c.contact.unwrap_or_default(),
            phone: c.phone.unwrap_or_default(),
        });
    }
    let kind_names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    let site_ids: HashSet<&str> = site_list.iter().map(|s| s.id.as_str()).collect();
    let customer_ids: HashSet<&str> = customer_list.iter().map(|c| c.id.as_str()).collect();
    let mut device_list = Vec::new();
    let mut seen = HashSet::new();
    for d in devices {
        let id = d.id.get_ref();
        if !valid_id(id) {
            r.at(
                d.id.span(),
                format!("device id `{id}` may hold only letters, digits, `-`, `_` and `.` (it is a topic level)"),
            );
        } else if !seen.insert(id.clone()) {
            r.at(d.id.span(), format!("device `{id}` is defined twice"));
        }
        let kind = kind_names.iter().position(|k| k == d.kind.get_ref());
        if kind.is_none() {
            r.at(
                d.kind.span(),
                format!(
                    "device `{id}` names kind `{}`, which no profile defines; write one of: {}",
                    d.kind.get_ref(),
                    list(&kind_names)
                ),
            );
        }
        if !site_ids.contains(d.site.get_ref().as_str()) {
            r.at(
                d.site.span(),
                format!("device `{id}` names site `{}`, which no [[sites]] entry defines", d.site.get_ref()),
            );
        }
        if !customer_ids.contains(d.customer.get_ref().as_str()) {
            r.at(
                d.customer.span(),
                format!(
                    "device `{id}` names customer `{}`, which no [[customers]] entry defines",
                    d.customer.get_ref()
                ),
            );
        }
        let accepted_on = NaiveDate::parse_from_str(d.accepted_on.get_ref(), "%Y-%m-%d").unwrap_or_else(|_| {
            r.at(
                d.accepted_on.span(),
                format!(
                    "accepted_on `{}` is not a date; write the acceptance date as \"2025-03-01\"",
                    d.accepted_on.get_ref()
                ),
            );
            NaiveDate::default()
        });
        device_list.push(Device {
            idx: DeviceIdx(device_list.len() as u32),
            id: DeviceId(id.clone()),
            name: d.name.unwrap_or_default(),
            kind: kind.unwrap_or(0),
            site: SiteId(d.site.into_inner()),
            customer: CustomerId(d.customer.into_inner()),
            model: d.model,
            serial: d.serial,
            accepted_on,
        });
    }

    let mut contract_list = Vec::new();
    let device_ids: HashSet<&str> = device_list.iter().map(|d| d.id.as_str()).collect();
    let mut codes: HashSet<&str> = profiles.iter().flat_map(|p| p.rules.iter().map(|r| r.code.as_str())).collect();
    codes.insert(OFFLINE);
    let known = Known {
        customers: &customer_ids,
        sites: &site_ids,
        kinds: &kind_names,
        devices: &device_ids,
        calendars: &calendar_map,
        codes: &codes,
    };
    for (src, contracts) in &contract_sources {
        for (id, c) in contracts {
            let mut r = Report { src, problems: &mut problems };
            if contract_list.iter().any(|k: &Contract| &k.id == id) {
                r.at(c.customer.span(), format!("contract `{id}` is defined twice"));
                continue;
            }
            if let Some(c) = compile_contract(id, c, &known, &mut r) {
                contract_list.push(c);
            }
        }
    }

    // A missing broker or address always comes with a problem reported above.
    let (true, Some(broker), Some(http_listen)) = (problems.is_empty(), broker, http_listen) else {
        problems.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        return Err(ConfigError(problems));
    };
    Ok(Config {
        path: main.path,
        broker,
        http_listen,
        store_path,
        ingest,
        tickets,
        helpdesks: helpdesk_list,
        outbox,
        fleet: Arc::new(Fleet::new(site_list, customer_list, device_list, profiles, contract_list)),
    })
}

const UTC: FixedOffset = match FixedOffset::east_opt(0) {
    Some(o) => o,
    None => panic!("zero is a valid offset"),
};

/// The default site offset: the contracts' sites are in mainland China.
const CHINA_STANDARD_TIME: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(o) => o,
    None => panic!("+08:00 is a valid offset"),
};

fn list(names: &[&str]) -> String {
    if names.is_empty() { "(none defined)".to_string() } else { names.join(", ") }
}

fn parse_addr(s: &Spanned<String>, r: &mut Report<'_>) -> Option<SocketAddr> {
    match s.get_ref().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            r.at(s.span(), format!("`{}` is not a socket address; write one such as \"127.0.0.1:8080\"", s.get_ref()));
            None
        }
    }
}

fn compile_broker(b: RawBroker, base: &Path, r: &mut Report<'_>) -> Option<BrokerConfig> {
    let embedded = b.embedded.as_ref().map(|e| *e.get_ref());
    let mode = match (embedded, &b.url) {
        (Some(true), Some(url)) => {
            r.at(url.span(), "broker.embedded = true and broker.url are both set; remove url, or set embedded = false");
            None
        }
        (Some(false), None) => {
            let span = b.embedded.as_ref().map_or(0..0, |e| e.span());
            r.at(span, "broker.embedded = false needs broker.url, such as url = \"mqtt://127.0.0.1:1883\"");
            None
        }
        (_, Some(url)) => parse_broker_url(url, r).map(|(tls, host, port)| BrokerMode::External {
            tls,
            host,
            port,
            username: b.username.clone(),
            password: b.password.clone(),
            ca_file: b.ca_file.as_ref().map(|f| base.join(f)),
        }),
        (_, None) => {
            let listen = match &b.listen {
                Some(l) => parse_addr(l, r),
                None => Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            };
            listen.map(|listen| BrokerMode::Embedded { listen })
        }
    };
    if let (Some(BrokerMode::External { .. }), Some(l)) = (&mode, &b.listen) {
        r.at(l.span(), "broker.listen is for the embedded broker; with broker.url, remove it");
    }
    let client_id = b.client_id.unwrap_or_else(|| "aftercare".to_string());
    Some(BrokerConfig { mode: mode?, client_id, keep_alive: b.keep_alive.map_or(Duration::from_secs(30), |d| d.0) })
}

fn parse_broker_url(url: &Spanned<String>, r: &mut Report<'_>) -> Option<(bool, String, u16)> {
    let s = url.get_ref();
    let (tls, rest) = if let Some(rest) = s.strip_prefix("mqtt://") {
        (false, rest)
    } else if let Some(rest) = s.strip_prefix("mqtts://") {
        (true, rest)
    } else {
        r.at(
            url.span(),
            format!("broker url `{s}` must start with mqtt:// or mqtts://, as in \"mqtt://127.0.0.1:1883\""),
        );
        return None;
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') {
        r.at(url.span(), "put credentials in broker.username and broker.password, not in the url");
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => {
                r.at(url.span(), format!("`{p}` is not a port number in broker url `{s}`"));
                return None;
            }
        },
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        r.at(url.span(), format!("broker url `{s}` has no host"));
        return None;
    }
    Some((tls, host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

/// Compiles one device kind; `None` when it has problems (already reported).
fn compile_kind(name: &str, k: &RawKind, r: &mut Report<'_>) -> Option<Profile> {
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
    if r.problems.len() > before {
        return None;
    }
    Some(Profile {
        name: name.to_string(),
        title: k.title.clone(),
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
        offline_title: format!("{} offline", k.title),
    })
}

fn collect_stuck(c: &RawCond, idx: &HashMap<String, u16>, tol: &mut [f64]) {
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

struct KindCx<'a> {
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

fn compile_rule(rule: &RawRule, cx: &mut KindCx<'_>, seen: &mut HashSet<String>, r: &mut Report<'_>) -> Option<Rule> {
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
        title: rule.title.clone(),
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

fn compile_cond(c: &RawCond, cx: &mut KindCx<'_>, r: &mut Report<'_>) -> Option<Cond> {
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

/// What contracts may refer to.
struct Known<'a> {
    customers: &'a HashSet<&'a str>,
    sites: &'a HashSet<&'a str>,
    kinds: &'a [&'a str],
    devices: &'a HashSet<&'a str>,
    calendars: &'a HashMap<String, Arc<Calendar>>,
    /// Every fault code the kinds can raise, `offline` included.
    codes: &'a HashSet<&'a str>,
}

fn parse_day(s: &Spanned<String>, what: &str, r: &mut Report<'_>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.get_ref(), "%Y-%m-%d").ok().or_else(|| {
        r.at(s.span(), format!("{what} `{}` is not a date; write it as \"2026-01-01\"", s.get_ref()));
        None
    })
}

fn hours_basis(h: &Spanned<String>, r: &mut Report<'_>) -> Option<bool> {
    match h.get_ref().as_str() {
        "7x24" => Some(false),
        "business" => Some(true),
        other => {
            r.at(h.span(), format!("hours = `{other}`: write \"7x24\" or \"business\""));
            None
        }
    }
}

fn compile_contract(id: &str, c: &RawContract, k: &Known<'_>, r: &mut Report<'_>) -> Option<Contract> {
    let before = r.problems.len();
    if !valid_id(id) {
        r.at(c.customer.span(), format!("contract id `{id}` may hold only letters, digits, `-`, `_` and `.`"));
    }
    if !k.customers.contains(c.customer.get_ref().as_str()) {
        r.at(
            c.customer.span(),
            format!("contract `{id}` names customer `{}`, which no [[customers]] entry defines", c.customer.get_ref()),
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
    let mut check = |list: &[Spanned<String>], ok: &dyn Fn(&str) -> bool, what: &str| -> Vec<String> {
        for s in list {
            if !ok(s.get_ref()) {
                r.at(s.span(), format!("contract `{id}` covers {what} `{}`, which is not configured", s.get_ref()));
            }
        }
        list.iter().map(|s| s.get_ref().clone()).collect()
    };
    let covers = Covers {
        sites: check(&c.covers.sites, &|s| k.sites.contains(s), "site"),
        kinds: check(&c.covers.kinds, &|s| k.kinds.contains(&s), "kind"),
        devices: check(&c.covers.devices, &|s| k.devices.contains(s), "device"),
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
    let repeat_window = match &c.repeat_window {
        Some(d) => humantime::parse_duration(d.get_ref()).unwrap_or_else(|_| {
            r.at(d.span(), format!("repeat_window = `{}` is not a duration; write one such as \"30d\"", d.get_ref()));
            std::time::Duration::ZERO
        }),
        None => std::time::Duration::from_secs(30 * 86_400),
    };
    let mut tiers: [TierClocks; 3] = Default::default();
    for (i, t) in [&c.tier1, &c.tier2, &c.tier3].into_iter().enumerate() {
        let Some(t) = t else { continue };
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
        tiers[i] = TierClocks { acknowledge, on_site, resolve, escalation };
    }
    if r.problems.len() > before {
        return None;
    }
    Some(Contract {
        id: id.to_string(),
        title: c.title.clone(),
        customer: CustomerId(c.customer.get_ref().clone()),
        starts: starts?,
        ends,
        calendar,
        covers,
        tiers,
        loaner_on_resolve_breach: c.loaner_on_resolve_breach,
        warranty,
        billable,
        repeat_window,
        replace_after: c.replace_after.unwrap_or(2),
        inaction,
        inaction_to: c.inaction_to.clone().unwrap_or_else(|| "management".to_string()),
    })
}

/// Compiles the `[kinds.*]` tables of one profile file.
pub(super) fn compile_kind_file(src: &Source) -> Result<Vec<Profile>, ConfigError> {
    let file: RawIncluded = super::parse(src).map_err(|p| ConfigError(vec![p]))?;
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (name, kind) in &file.kinds {
        let mut r = Report { src, problems: &mut problems };
        if let Some(p) = compile_kind(name, kind, &mut r) {
            out.push(p);
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(ConfigError(problems)) }
}
