//! Validation: raw config → typed [`Config`], collecting every problem.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate};
use toml::Spanned;

use super::raw::{
    RawBroker, RawCond, RawConfig, RawContract, RawEmail, RawHelpdesk, RawIncluded, RawKind, RawMetricType,
    RawModbusDevice, RawModbusMap, RawRule, RawStatuses,
};
use super::{Config, ConfigError, Problem, ReadFile, Source};
use crate::calendar::Calendar;
use crate::contracts::{ClockSpec, Contract, Covers, Escalation, Milestone, Period, TierClocks, Warranty};
use crate::desk::TicketConfig;
use crate::domain::{CustomerId, DeviceId, DeviceIdx, FaultCode, OFFLINE, SiteId, Tier};
use crate::fleet::{Customer, Device, Fleet, Site};
use crate::ingest::IngestConfig;
use crate::ingest::mqtt::{BrokerConfig, BrokerMode};
use crate::modbus::RegisterMap;
use crate::outbox::{HelpdeskConfig, HelpdeskKind, OutboxConfig, StatusMap};
use crate::rules::{Cond, MetricDef, MetricType, Profile, Rule};

/// The bounds of `ingest.max_payload_bytes`.
const MIN_PAYLOAD: usize = 64;
const MAX_PAYLOAD: usize = 16 << 20;

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
                let (file, ps) = super::parse::<RawIncluded>(&src);
                problems.extend(ps);
                if let Some(f) = file {
                    contract_sources.push((src.clone(), f.contracts));
                    kind_sources.push((src, f.kinds));
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
        history,
        ..
    } = raw;
    kind_sources.push((main.clone(), kinds));
    contract_sources.push((main.clone(), contracts));

    // Business calendars.
    let mut calendar_map: HashMap<String, Arc<Calendar>> = HashMap::new();
    for (name, files) in &calendars {
        let mut merged: Option<Calendar> = None;
        for path in &files.get_ref().0 {
            let file = base.join(path);
            let cal = match read(&file) {
                Ok(text) => match Calendar::parse(&text) {
                    Ok(c) => c,
                    Err(e) => {
                        let src = Source { path: file.clone(), text };
                        Report { src: &src, problems: &mut problems }.at(e.span.unwrap_or(0..0), e.message);
                        continue;
                    }
                },
                Err(e) => {
                    Report { src: &main, problems: &mut problems }.at(
                        files.span(),
                        format!(
                            "cannot read calendar {}: {e}; calendar paths are relative to this file",
                            file.display()
                        ),
                    );
                    continue;
                }
            };
            merged = match merged {
                None => Some(cal),
                Some(m) => match m.merge(cal) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        Report { src: &main, problems: &mut problems }
                            .at(files.span(), format!("calendar `{name}`: {e}"));
                        None
                    }
                },
            };
        }
        if let Some(c) = merged {
            calendar_map.insert(name.clone(), Arc::new(c));
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
    let max_payload_bytes = match &ingest.max_payload_bytes {
        Some(b) if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(b.get_ref()) => {
            r.at(
                b.span(),
                format!(
                    "max_payload_bytes must be between {MIN_PAYLOAD} and {MAX_PAYLOAD} (16 MiB); it is {}",
                    b.get_ref()
                ),
            );
            MAX_PAYLOAD
        }
        Some(b) => *b.get_ref(),
        None => 64 * 1024,
    };
    let ingest = IngestConfig {
        topic_prefix,
        max_payload_bytes,
        max_clock_skew: ingest.max_clock_skew.map_or(Duration::from_secs(300), |d| d.0),
        shards,
        queue_capacity: ingest.queue_capacity.unwrap_or(16 * 1024).max(64),
        modbus_concurrency: ingest.modbus_concurrency.unwrap_or(64).clamp(1, 4096),
    };
    let tickets = TicketConfig { reopen_window: tickets.reopen_window.map_or(Duration::from_secs(24 * 3600), |d| d.0) };

    // Helpdesks.
    let helpdesk_list: Vec<HelpdeskConfig> =
        helpdesks.iter().filter_map(|(name, h)| helpdesk(name, h, &base, &mut r)).collect();
    let influx = history.influxdb.as_ref().and_then(|i| {
        let span = i.span();
        let i = i.get_ref();
        let url = http_url(&mut r, &i.url, "influxdb")?;
        if i.org.trim().is_empty() || i.bucket.trim().is_empty() {
            r.at(span, "influxdb needs org and bucket (VictoriaMetrics takes any)");
            return None;
        }
        let spool_dir = match &i.spool {
            Some(p) => base.join(p),
            None => store_path.parent().map_or_else(|| PathBuf::from("influx-spool"), |d| d.join("influx-spool")),
        };
        Some(crate::history::influx::InfluxConfig {
            url,
            org: i.org.clone(),
            bucket: i.bucket.clone(),
            token: i.token.clone(),
            batch_lines: i.batch_lines.unwrap_or(5000).clamp(1, 1_000_000),
            batch_age: i.batch_age.map_or(Duration::from_secs(1), |d| d.0).max(Duration::from_millis(10)),
            gzip: i.gzip.unwrap_or(true),
            timeout: i.timeout.map_or(Duration::from_secs(10), |d| d.0),
            spool_dir,
            spool_max_bytes: i.spool_max_mb.unwrap_or(1024).max(16) << 20,
        })
    });
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
                format!(
                    "device `{id}` names site `{}`, which no [[sites]] entry defines; write one of: {}",
                    d.site.get_ref(),
                    known(&site_ids)
                ),
            );
        }
        if !customer_ids.contains(d.customer.get_ref().as_str()) {
            r.at(
                d.customer.span(),
                format!(
                    "device `{id}` names customer `{}`, which no [[customers]] entry defines; write one of: {}",
                    d.customer.get_ref(),
                    known(&customer_ids)
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
        let modbus = d.modbus.as_ref().and_then(|m| {
            let ep = modbus_endpoint(m.get_ref(), &mut r)?;
            match kind.map(|k| &profiles[k]) {
                Some(p) if p.modbus.is_none() => {
                    r.at(
                        m.span(),
                        format!(
                            "device `{id}` is polled over Modbus, but kind `{}` has no register map; add [kinds.{}.modbus]",
                            p.name, p.name
                        ),
                    );
                    None
                }
                _ => Some(Box::new(ep)),
            }
        });
        device_list.push(Device {
            modbus,
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
        history_retention: history.retention.map_or(Duration::from_secs(5 * 365 * 24 * 3600 + 24 * 3600), |d| d.0),
        influx,
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

/// The names of a set, sorted, for a message that says what may be written; long sets are cut.
fn known(set: &HashSet<&str>) -> String {
    let mut names: Vec<&str> = set.iter().copied().collect();
    names.sort_unstable();
    if names.len() > 20 {
        let more = names.len() - 20;
        names.truncate(20);
        return format!("{} and {more} more", names.join(", "));
    }
    list(&names)
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
    let client_id = b.client_id.filter(|c| !c.is_empty());
    let max_connections = match &b.max_connections {
        Some(n) if *n.get_ref() == 0 => {
            r.at(n.span(), "max_connections must be 1 or more");
            1
        }
        Some(n) => *n.get_ref(),
        None => 20_000,
    };
    Some(BrokerConfig {
        mode: mode?,
        client_id,
        keep_alive: b.keep_alive.map_or(Duration::from_secs(30), |d| d.0),
        unhealthy_after: b.unhealthy_after.map_or(Duration::from_secs(60), |d| d.0),
        max_connections,
    })
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
    let modbus = k.modbus.as_ref().and_then(|m| register_map(name, m, &metric_index, &metrics, r)).map(Arc::new);
    if r.problems.len() > before {
        return None;
    }
    Some(Profile {
        modbus,
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
    Some(Contract {
        plans,
        reports,
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
        replace_at_failed_repairs,
        inaction,
        inaction_to: c.inaction_to.clone().unwrap_or_else(|| "management".to_string()),
    })
}

/// Compiles the `[kinds.*]` tables of one profile file.
pub(super) fn compile_kind_file(src: &Source) -> Result<Vec<Profile>, ConfigError> {
    // What could not be read, and what the rest of the file then says.
    let (file, mut problems) = super::parse::<RawIncluded>(src);
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

fn http_url(r: &mut Report<'_>, url: &Spanned<String>, what: &str) -> Option<String> {
    let u = url.get_ref().trim_end_matches('/');
    if u.starts_with("http://") || u.starts_with("https://") {
        Some(u.to_string())
    } else {
        r.at(url.span(), format!("{what} url `{u}` must start with http:// or https://"));
        None
    }
}

fn statuses(raw: Option<&RawStatuses>, default: StatusMap) -> StatusMap {
    let Some(s) = raw else { return default };
    StatusMap {
        active: s.active.clone().unwrap_or(default.active),
        resolved: s.resolved.clone().unwrap_or(default.resolved),
        closed: s.closed.clone().unwrap_or(default.closed),
        cancelled: s.cancelled.clone().unwrap_or(default.cancelled),
    }
}

/// One helpdesk: exactly one connector, checked.
fn helpdesk(name: &str, h: &Spanned<RawHelpdesk>, base: &Path, r: &mut Report<'_>) -> Option<HelpdeskConfig> {
    let span = h.span();
    let h = h.get_ref();
    let given: Vec<(&str, Range<usize>)> = [
        h.webhook.as_ref().map(|w| ("webhook", w.span())),
        h.email.as_ref().map(|w| ("email", w.span())),
        h.request_tracker.as_ref().map(|w| ("request_tracker", w.span())),
        h.redmine.as_ref().map(|w| ("redmine", w.span())),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.as_slice() {
        [] => {
            r.at(
                span,
                format!(
                    "helpdesk `{name}` names no connector; add one of webhook = {{ url = \"https://…\" }}, \
                     email = {{ … }}, request_tracker = {{ … }} or redmine = {{ … }}"
                ),
            );
            return None;
        }
        [_] => {}
        [_, (second, at), ..] => {
            let names: Vec<&str> = given.iter().map(|g| g.0).collect();
            r.at(
                at.clone(),
                format!(
                    "helpdesk `{name}` has {}; give it one, or make one helpdesk each (`{second}` is the second)",
                    names.join(" and ")
                ),
            );
            return None;
        }
    }
    let default_priorities: [&str; 3] = if h.request_tracker.is_some() {
        ["High", "Medium", "Low"]
    } else if h.redmine.is_some() {
        ["Urgent", "High", "Normal"]
    } else {
        ["urgent", "high", "normal"]
    };
    let priorities: [String; 3] = match &h.priorities {
        Some(p) => match <[String; 3]>::try_from(p.get_ref().clone()) {
            Ok(a) => a,
            Err(_) => {
                r.at(p.span(), "priorities lists the helpdesk's priority for tiers 1, 2 and 3: three names");
                return None;
            }
        },
        None => default_priorities.map(String::from),
    };
    let mut secret = None;
    let kind = if let Some(e) = &h.email {
        secret = signing_key(e.get_ref().secret.as_ref(), r).ok()?;
        HelpdeskKind::Email(email(e.get_ref(), base, r)?)
    } else if let Some(rt) = &h.request_tracker {
        let rt = rt.get_ref();
        HelpdeskKind::RequestTracker(crate::outbox::rt::RtConfig {
            url: http_url(r, &rt.url, "request_tracker")?,
            token: rt.token.clone(),
            queue: rt.queue.clone().unwrap_or_else(|| "General".into()),
            reference_field: rt.reference_field.clone(),
            statuses: statuses(rt.statuses.as_ref(), crate::outbox::rt::RtConfig::default_statuses()),
            timeout: rt.timeout.map_or(Duration::from_secs(10), |d| d.0),
            poll_every: rt.poll_every.map_or(Duration::from_secs(30), |d| d.0.max(Duration::from_millis(200))),
        })
    } else if let Some(rm) = &h.redmine {
        let rm = rm.get_ref();
        if rm.project.get_ref().trim().is_empty() {
            r.at(rm.project.span(), "project is the identifier of a Redmine project, as in its URL /projects/ID");
            return None;
        }
        HelpdeskKind::Redmine(crate::outbox::redmine::RedmineConfig {
            url: http_url(r, &rm.url, "redmine")?,
            api_key: rm.api_key.clone(),
            project: rm.project.get_ref().clone(),
            tracker: rm.tracker.clone(),
            statuses: statuses(rm.statuses.as_ref(), crate::outbox::redmine::RedmineConfig::default_statuses()),
            timeout: rm.timeout.map_or(Duration::from_secs(10), |d| d.0),
            poll_every: rm.poll_every.map_or(Duration::from_secs(30), |d| d.0.max(Duration::from_millis(200))),
        })
    } else if let Some(w) = &h.webhook {
        let w = w.get_ref();
        let url = http_url(r, &w.url, "webhook")?;
        secret = signing_key(w.secret.as_ref(), r).ok()?;
        HelpdeskKind::Webhook {
            url,
            secret: secret.clone(),
            timeout: w.timeout.map_or(Duration::from_secs(10), |d| d.0),
        }
    } else {
        return None;
    };
    Some(HelpdeskConfig { name: name.to_string(), kind, priorities, secret })
}

/// A Standard Webhooks secret, `whsec_` and the base64 of the key; `Err` once reported.
fn signing_key(s: Option<&Spanned<String>>, r: &mut Report<'_>) -> Result<Option<Vec<u8>>, ()> {
    use base64::Engine as _;
    let Some(s) = s else { return Ok(None) };
    match s.get_ref().strip_prefix("whsec_").map(|k| base64::engine::general_purpose::STANDARD.decode(k)) {
        Some(Ok(key)) if !key.is_empty() => Ok(Some(key)),
        _ => {
            r.at(s.span(), "a secret is `whsec_` followed by the base64 of the key, as Standard Webhooks write it");
            Err(())
        }
    }
}

fn email(e: &RawEmail, base: &Path, r: &mut Report<'_>) -> Option<crate::outbox::email::EmailConfig> {
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
        return None;
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h.to_string(), p),
            Err(_) => {
                r.at(e.server.span(), format!("`{p}` is not a port in `{srv}`"));
                return None;
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
    ok.then(|| crate::outbox::email::EmailConfig {
        host,
        port,
        security,
        username: e.username.clone(),
        password: e.password.clone(),
        from: e.from.get_ref().clone(),
        to: e.to.get_ref().clone(),
        timeout: e.timeout.map_or(Duration::from_secs(30), |d| d.0),
        ca_file: e.ca_file.as_ref().map(|f| base.join(f)),
    })
}

/// A kind's register map: every point checked, overlaps refused, requests planned.
fn register_map(
    kind: &str,
    m: &RawModbusMap,
    metric_index: &HashMap<String, u16>,
    metrics: &[MetricDef],
    r: &mut Report<'_>,
) -> Option<RegisterMap> {
    use crate::modbus::{DataType, Function, Order, Point};
    let before = r.problems.len();
    let mut points = Vec::new();
    let mut spans = Vec::new();
    for sp in &m.points {
        let p = sp.get_ref();
        let at = sp.span();
        let Some(&metric) = metric_index.get(p.metric.get_ref()) else {
            let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
            r.at(
                p.metric.span(),
                format!("kind `{kind}` has no metric `{}`; it has: {}", p.metric.get_ref(), list(&names)),
            );
            continue;
        };
        let named = match &p.function {
            None => None,
            Some(f) => match f.get_ref().as_str() {
                "coil" | "coils" => Some(Function::Coil),
                "discrete" | "discrete_input" | "discrete_inputs" => Some(Function::Discrete),
                "input" | "input_register" | "input_registers" => Some(Function::Input),
                "holding" | "holding_register" | "holding_registers" => Some(Function::Holding),
                other => {
                    r.at(f.span(), format!("function `{other}`: write coil, discrete, input or holding"));
                    continue;
                }
            },
        };
        let (function, address) = match (&p.address, &p.reference) {
            (Some(_), Some(rf)) => {
                r.at(
                    rf.span(),
                    "give either address (0-based, as on the wire) or ref (1-based Modicon reference such as 40001), not both",
                );
                continue;
            }
            (None, None) => {
                r.at(
                    at,
                    "a point needs address = N (0-based protocol address) or ref = 40001 (1-based Modicon reference)",
                );
                continue;
            }
            (Some(a), None) => {
                let Some(f) = named else {
                    r.at(a.span(), "with address, name the function: coil, discrete, input or holding");
                    continue;
                };
                match u16::try_from(*a.get_ref()) {
                    Ok(a) => (f, a),
                    Err(_) => {
                        r.at(a.span(), format!("address {} is past 65535, the last Modbus address", a.get_ref()));
                        continue;
                    }
                }
            }
            (None, Some(rf)) => match Function::from_reference(*rf.get_ref()) {
                Some((f, a)) if named.is_none_or(|n| n == f) => (f, a),
                Some((f, _)) => {
                    r.at(
                        rf.span(),
                        format!(
                            "ref {} is a {} address, but function says otherwise; drop one",
                            rf.get_ref(),
                            f.name()
                        ),
                    );
                    continue;
                }
                None => {
                    r.at(
                        rf.span(),
                        format!(
                            "ref {} is not a Modicon reference: 1–9999 coils, 10001– discrete inputs, 30001– input \
                             registers, 40001– holding registers (or six digits: 400001–465536)",
                            rf.get_ref()
                        ),
                    );
                    continue;
                }
            },
        };
        let ty_name = p.ty.as_ref().map(|t| t.get_ref().to_ascii_lowercase());
        let ty = match (ty_name.as_deref(), &p.bit) {
            (None, None) if function.is_bits() => DataType::Bool,
            (None, None) => DataType::U16,
            (Some("bit") | None, Some(b)) if *b.get_ref() < 16 => DataType::Bit(*b.get_ref()),
            (Some("bit") | None, Some(b)) => {
                r.at(b.span(), format!("bit {} is past 15, the last bit of a register", b.get_ref()));
                continue;
            }
            (Some("bit"), None) => {
                r.at(at, "type = \"bit\" needs bit = N, 0 the least significant bit");
                continue;
            }
            (Some(t), None) => match t {
                "bool" => DataType::Bool,
                "u16" | "uint16" => DataType::U16,
                "i16" | "int16" => DataType::I16,
                "u32" | "uint32" => DataType::U32,
                "i32" | "int32" => DataType::I32,
                "u64" | "uint64" => DataType::U64,
                "i64" | "int64" => DataType::I64,
                "f32" | "float32" => DataType::F32,
                "f64" | "float64" => DataType::F64,
                other => {
                    let span = p.ty.as_ref().map_or(at.clone(), |t| t.span());
                    r.at(span, format!("type `{other}`: write bool, bit, u16, i16, u32, i32, u64, i64, f32 or f64"));
                    continue;
                }
            },
            (Some(_), Some(b)) => {
                r.at(b.span(), "bit = N goes with type = \"bit\"");
                continue;
            }
        };
        if function.is_bits() != (ty == DataType::Bool) {
            let msg = if function.is_bits() {
                format!("a {} is one bit: its type is bool", function.name())
            } else {
                format!("a {} register holds numbers; read one bit of it with type = \"bit\", bit = N", function.name())
            };
            r.at(p.ty.as_ref().map_or(at.clone(), |t| t.span()), msg);
            continue;
        }
        let metric_is_bool = metrics[metric as usize].ty == MetricType::Bool;
        if metrics[metric as usize].ty == MetricType::Text || metric_is_bool != ty.is_bool() {
            r.at(
                p.metric.span(),
                format!(
                    "metric `{}` is {:?}, but this point reads a {}",
                    p.metric.get_ref(),
                    metrics[metric as usize].ty,
                    if ty.is_bool() { "bit" } else { "number" }
                ),
            );
            continue;
        }
        let point = Point {
            metric,
            function,
            address,
            ty,
            order: match &p.order {
                None => Order::Abcd,
                Some(o) => match Order::parse(o.get_ref()) {
                    Some(o) => o,
                    None => {
                        r.at(o.span(), format!("order `{}`: write ABCD, DCBA, BADC or CDAB", o.get_ref()));
                        continue;
                    }
                },
            },
            scale: p.scale.unwrap_or(1.0),
            offset: p.offset.unwrap_or(0.0),
        };
        if point.end() > 65536 {
            r.at(at, format!("a {:?} at address {address} runs past 65535, the last Modbus address", ty));
            continue;
        }
        points.push(point);
        spans.push(at);
    }
    for (i, j) in crate::modbus::plan::overlaps(&points) {
        r.at(
            spans[j].clone(),
            format!(
                "this point overlaps the one on line {} ({} address {}); each register feeds one point, or distinct bits",
                r.src.line_col(spans[i].start).0,
                points[i].function.name(),
                points[i].address
            ),
        );
    }
    (r.problems.len() == before).then(|| RegisterMap::new(points, m.gap.unwrap_or(8)))
}

/// How a device is polled: the transport, the unit and the timing.
fn modbus_endpoint(m: &RawModbusDevice, r: &mut Report<'_>) -> Option<crate::modbus::Endpoint> {
    use crate::modbus::{Endpoint, Line, Parity, Transport};
    let before = r.problems.len();
    let transport = match (&m.tcp, &m.rtu) {
        (Some(t), None) => {
            let a = t.get_ref();
            if a.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                r.at(t.span(), format!("tcp = `{a}`: write host:port, such as \"10.0.0.5:502\""));
            }
            Transport::Tcp(a.clone())
        }
        (None, Some(path)) => {
            let parity = match m.parity.as_ref().map(|p| p.get_ref().to_ascii_lowercase()) {
                None => Parity::None,
                Some(p) => match p.as_str() {
                    "none" | "n" => Parity::None,
                    "even" | "e" => Parity::Even,
                    "odd" | "o" => Parity::Odd,
                    _ => {
                        r.at(m.parity.as_ref().map_or(0..0, |p| p.span()), "parity: write none, even or odd");
                        Parity::None
                    }
                },
            };
            let data_bits = m.data_bits.as_ref().map_or(8, |d| *d.get_ref());
            if !(5..=8).contains(&data_bits) {
                r.at(m.data_bits.as_ref().map_or(0..0, |d| d.span()), "data_bits is 5, 6, 7 or 8 (Modbus RTU uses 8)");
            }
            let stop_bits = m.stop_bits.as_ref().map_or(1, |d| *d.get_ref());
            if !(1..=2).contains(&stop_bits) {
                r.at(m.stop_bits.as_ref().map_or(0..0, |d| d.span()), "stop_bits is 1 or 2");
            }
            Transport::Rtu(Line {
                path: path.get_ref().clone(),
                baud: m.baud.unwrap_or(9600),
                parity,
                data_bits,
                stop_bits,
            })
        }
        (Some(t), Some(_)) => {
            r.at(t.span(), "a device is on tcp = \"host:port\" or on rtu = \"/dev/ttyUSB0\", not both");
            return None;
        }
        (None, None) => {
            r.at(0..0, "modbus needs tcp = \"host:port\" or rtu = \"/dev/ttyUSB0\"");
            return None;
        }
    };
    let rtu = matches!(transport, Transport::Rtu(_));
    let unit = m.unit.as_ref().map_or(1, |u| *u.get_ref());
    let max_unit = if rtu { 247 } else { 255 };
    if unit > max_unit || (rtu && unit == 0) {
        r.at(
            m.unit.as_ref().map_or(0..0, |u| u.span()),
            format!("unit {unit}: an RTU unit is 1–247, a TCP unit 0–255"),
        );
    }
    let timeout = m.timeout.map_or(Duration::from_secs(1), |d| d.0);
    let ep = Endpoint {
        transport,
        unit: unit.min(255) as u8,
        poll: m.poll.map_or(Duration::from_secs(5), |d| d.0).max(Duration::from_millis(10)),
        timeout: timeout.max(Duration::from_millis(10)),
        retries: m.retries.unwrap_or(1).min(10),
        pause: m.pause.map_or(if rtu { Duration::from_millis(5) } else { Duration::ZERO }, |d| d.0),
        offline_after: m.offline_after.unwrap_or(3).max(1),
    };
    (r.problems.len() == before).then_some(ep)
}

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
fn compile_plan(
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
    })
}
