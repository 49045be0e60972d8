//! Validation: raw config → typed [`Config`], collecting every problem.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate};
use toml::Spanned;

use crate::calendar::Calendar;
use crate::config::raw::{RawConfig, RawContract, RawIncluded, RawKind, RawSecret};
use crate::config::{Config, ConfigError, Problem, ReadFile, Source};
use crate::contracts::Contract;
use crate::desk::TicketConfig;
use crate::domain::{CustomerId, DeviceId, DeviceIdx, OFFLINE, SiteId};
use crate::fleet::{Customer, Device, Fleet, Site};
use crate::ingest::IngestConfig;
use crate::outbox::{HelpdeskConfig, OutboxConfig};
use crate::rules::Profile;

mod broker;
mod contracts;
mod helpdesks;
mod kinds;
mod modbus;
mod notify;
mod plans;

use self::broker::compile_broker;
use self::contracts::{Known, compile_contract};
use self::helpdesks::{helpdesk, http_url};
use self::kinds::compile_kind;
pub(super) use self::kinds::compile_kind_file;
use self::modbus::modbus_endpoint;

/// The bounds of `ingest.max_payload_bytes`.
const MIN_PAYLOAD: usize = 64;
const MAX_PAYLOAD: usize = 16 << 20;
/// The shortest `store.audit_retention`: the store itself refuses to remove a younger line.
const AUDIT_MIN: Duration = Duration::from_secs(90 * 24 * 3600);

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

/// The secret `s` says: inline, from an environment variable, or from a file (relative to the
/// config's folder, trimmed); a problem, without the secret, when it cannot be had.
fn secret(s: &Spanned<RawSecret>, base: &Path, r: &mut Report<'_>) -> Option<secrecy::SecretString> {
    let found = match s.get_ref() {
        RawSecret::Inline(v) => Ok(v.clone()),
        RawSecret::Env(name) => std::env::var(name)
            .map(secrecy::SecretString::from)
            .map_err(|_| format!("the environment variable `{name}` is not set (or not UTF-8)")),
        RawSecret::File(p) => {
            let path = base.join(p);
            std::fs::read_to_string(&path)
                .map(|t| secrecy::SecretString::from(t.trim().to_string()))
                .map_err(|e| format!("the secret file {}: {e}", path.display()))
        }
    };
    match found {
        Ok(v) if !secrecy::ExposeSecret::expose_secret(&v).is_empty() => Some(v),
        Ok(_) => {
            r.at(s.span(), "the secret is empty");
            None
        }
        Err(m) => {
            r.at(s.span(), m);
            None
        }
    }
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
        mut broker,
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
        people,
        notify,
        spares,
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
    let monitors = std::mem::take(&mut broker.monitors);
    let broker = compile_broker(broker, &base, &mut r);
    let http_listen = match &http.listen {
        Some(s) => parse_addr(s, &mut r),
        None => Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
    };
    // The API's certificate and key are read now, so that check-config finds what would stop
    // the daemon at start.
    let http_tls = http.tls.as_ref().and_then(|t| {
        let (cert, key) = (base.join(&t.get_ref().cert), base.join(&t.get_ref().key));
        crate::tls::server_config(&cert, &key, &[b"http/1.1"])
            .map_err(|e| r.at(t.span(), format!("http.tls: {e}")))
            .ok()
    });
    let store_path = base.join(store.path.as_deref().unwrap_or("aftercare.db"));
    let audit_retention = match &store.audit_retention {
        Some(d) if d.get_ref().0 < AUDIT_MIN => {
            r.at(d.span(), "store.audit_retention is 90 days or more; the store keeps them in any case");
            AUDIT_MIN
        }
        Some(d) => d.get_ref().0,
        None => Duration::from_secs(400 * 24 * 3600),
    };
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
        topic_prefix: topic_prefix.clone(),
        max_payload_bytes,
        max_clock_skew: ingest.max_clock_skew.map_or(Duration::from_secs(300), |d| d.0),
        shards,
        queue_capacity: ingest.queue_capacity.unwrap_or(16 * 1024).max(64),
        modbus_concurrency: ingest.modbus_concurrency.unwrap_or(64).clamp(1, 4096),
    };
    let tickets = TicketConfig { reopen_window: tickets.reopen_window.map_or(Duration::from_secs(24 * 3600), |d| d.0) };

    let routing = notify::routing(&people, &notify, &base, &mut r);
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
            token: match &i.token {
                Some(t) => Some(secret(t, &base, &mut r)?),
                None => None,
            },
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

    // Sites, customers, devices, and their passwords on the embedded broker.
    let mut mqtt_users: Vec<crate::ingest::mqtt::MqttUser> = Vec::new();
    let mut site_list = Vec::new();
    let mut seen = HashSet::new();
    for s in sites {
        let id = s.id.get_ref();
        if let Some(p) = &s.mqtt_password
            && let Some(password) = secret(p, &base, &mut r)
        {
            let topics = format!("{topic_prefix}/{id}/");
            mqtt_users.push(crate::ingest::mqtt::MqttUser { name: id.clone(), password, topics, read_only: false });
        }
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
        if let Some(p) = &d.mqtt_password
            && mqtt_users.iter().any(|u| u.name == *id)
        {
            r.at(
                p.span(),
                format!("`{id}` is a site's MQTT user already; a device and a site need names of their own"),
            );
        } else if let Some(p) = &d.mqtt_password
            && let Some(password) = secret(p, &base, &mut r)
        {
            let topics = format!("{topic_prefix}/{}/{id}/", d.site.get_ref());
            mqtt_users.push(crate::ingest::mqtt::MqttUser { name: id.clone(), password, topics, read_only: false });
        }
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
        let delivered_on = match &d.delivered_on {
            None => accepted_on,
            Some(v) => NaiveDate::parse_from_str(v.get_ref(), "%Y-%m-%d").unwrap_or_else(|_| {
                r.at(v.span(), format!("delivered_on `{}` is not a date; write it as \"2025-03-01\"", v.get_ref()));
                accepted_on
            }),
        };
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
            delivered_on,
        });
    }

    for m in &monitors {
        let name = m.name.get_ref();
        if !valid_id(name) || mqtt_users.iter().any(|u| u.name == *name) {
            r.at(m.name.span(), format!("monitor `{name}`: a name of letters, digits, `-_.`, no device's or site's"));
        } else if let Some(password) = secret(&m.password, &base, &mut r) {
            let topics = format!("{topic_prefix}/");
            mqtt_users.push(crate::ingest::mqtt::MqttUser { name: name.clone(), password, topics, read_only: true });
        }
    }
    let mut contract_list = Vec::new();
    let device_ids: HashSet<&str> = device_list.iter().map(|d| d.id.as_str()).collect();
    let mut codes: HashSet<&str> = profiles.iter().flat_map(|p| p.rules.iter().map(|r| r.code.as_str())).collect();
    codes.insert(OFFLINE);
    let mail_channels: Vec<String> = routing
        .channels
        .iter()
        .filter(|c| matches!(c.kind, crate::notify::route::ChannelKind::Email(_)))
        .map(|c| c.name.clone())
        .collect();
    let known = Known {
        mail_channels: &mail_channels,
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

    let mut spare_list: Vec<crate::spares::Spare> = Vec::new();
    {
        let mut r = Report { src: &main, problems: &mut problems };
        for s in &spares {
            let (model, part) = (s.model.get_ref().trim(), s.part.get_ref().trim());
            if model.is_empty() || part.is_empty() {
                r.at(s.model.span(), "a spare part names its model and its part number");
                continue;
            }
            if spare_list.iter().any(|x| x.model == model && x.part == part) {
                r.at(s.part.span(), format!("spare part {part} of model {model} is listed twice"));
                continue;
            }
            let per_unit = s.per_unit.as_ref().map_or(1, |n| *n.get_ref());
            if per_unit == 0 {
                if let Some(n) = &s.per_unit {
                    r.at(n.span(), "per_unit is how many of the part one unit holds: at least 1");
                }
                continue;
            }
            spare_list.push(crate::spares::Spare {
                model: model.to_string(),
                part: part.to_string(),
                name: s.name.trim().to_string(),
                per_unit,
            });
        }
    }

    // A missing broker or address always comes with a problem reported above.
    let mut broker = broker;
    if let Some(b) = &mut broker {
        b.auth.users = mqtt_users;
    }
    let (true, Some(broker), Some(http_listen)) = (problems.is_empty(), broker, http_listen) else {
        problems.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        return Err(ConfigError(problems));
    };
    Ok(Config {
        path: main.path,
        broker,
        http_listen,
        serve: crate::api::ServeConfig {
            max_connections: http.max_connections.as_ref().map_or(1024, |m| *m.get_ref()).max(1),
            header_timeout: http.header_timeout.map_or(Duration::from_secs(10), |d| d.0.max(Duration::from_secs(1))),
            tls: http_tls,
        },
        access: crate::access::AccessConfig {
            metrics_public: http.metrics_public.unwrap_or(false),
            behind_proxy: http.behind_proxy.unwrap_or(false),
            hosts: http.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            session_ttl: http.session_ttl.map_or(Duration::from_secs(12 * 3600), |d| d.0.max(Duration::from_secs(60))),
            writes_per_minute: http.writes_per_minute.as_ref().map_or(300, |w| *w.get_ref()).max(1),
        },
        store_path,
        ingest,
        tickets,
        helpdesks: helpdesk_list,
        outbox,
        audit_retention,
        history_retention: history.retention.map_or(Duration::from_secs(5 * 365 * 24 * 3600 + 24 * 3600), |d| d.0),
        influx,
        routing: Arc::new(routing),
        fleet: Arc::new({
            let mut f = Fleet::new(site_list, customer_list, device_list, profiles, contract_list);
            f.spares = spare_list;
            f
        }),
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
