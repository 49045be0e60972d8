//! Configuration: one TOML file (plus the profile files it includes), parsed
//! into raw serde types, then validated into a typed [`Config`]. Validation
//! reports every problem at once, each with file, line and what to write instead.

mod compile;
pub(crate) mod raw;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::fleet::Fleet;
use raw::RawConfig;

/// A config file's text, kept to turn byte spans into line numbers.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// One problem in the config, where it is, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.col, self.message)
    }
}

/// Every problem found in a config.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} problem{} in the configuration:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub broker: crate::ingest::mqtt::BrokerConfig,
    pub http_listen: SocketAddr,
    /// How the API serves: connections, deadlines, TLS.
    pub serve: crate::api::ServeConfig,
    /// Who the API lets in, and for how long.
    pub access: crate::access::AccessConfig,
    pub store_path: PathBuf,
    pub ingest: crate::ingest::IngestConfig,
    pub tickets: crate::desk::TicketConfig,
    pub helpdesks: Vec<crate::outbox::HelpdeskConfig>,
    pub outbox: crate::outbox::OutboxConfig,
    /// How long history is kept.
    pub history_retention: Duration,
    /// How long the audit log is kept.
    pub audit_retention: Duration,
    /// Telemetry to InfluxDB, when configured.
    pub influx: Option<crate::history::influx::InfluxConfig>,
    /// Who hears of what, through which channels.
    pub routing: Arc<crate::notify::route::Routing>,
    pub fleet: Arc<Fleet>,
}

/// Reads a file's text; the demo supplies one that reads its embedded copies.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

impl Config {
    /// Loads and validates the config at `path` from disk.
    /// What in this config sends a secret over the network in clear: a password to a broker
    /// by `mqtt://` or to a mail server by `smtp://`, a helpdesk's key or token over `http://`
    /// to another host. Logged at start and printed by `check-config`.
    pub fn warnings(&self) -> Vec<String> {
        use crate::ingest::mqtt::BrokerMode;
        use crate::outbox::HelpdeskKind;
        let remote_http = |url: &str| {
            url.strip_prefix("http://").is_some_and(|rest| {
                let host = rest.split(['/', ':']).next().unwrap_or_default();
                !matches!(host, "localhost" | "127.0.0.1" | "[::1]")
            })
        };
        let mut out = Vec::new();
        if let BrokerMode::External { tls: false, password: Some(_), host, .. } = &self.broker.mode {
            out.push(format!("broker.password goes to {host} in clear over mqtt://; use mqtts://"));
        }
        for h in &self.helpdesks {
            let clear = match &h.kind {
                HelpdeskKind::Email(e) => e.password.is_some() && e.security == crate::outbox::email::Security::None,
                HelpdeskKind::RequestTracker(rt) => remote_http(&rt.url),
                HelpdeskKind::Redmine(rm) => remote_http(&rm.url),
                HelpdeskKind::Webhook { .. } => false,
            };
            if clear {
                out.push(format!(
                    "helpdesk {}: its password, token or key crosses the network in clear; use TLS",
                    h.name
                ));
            }
        }
        for s in self.fleet.spares.iter().filter(|s| !self.fleet.devices.iter().any(|d| d.model == s.model)) {
            out.push(format!("spares: part {} is kept for model {}, which no device is", s.part, s.model));
        }
        out.extend(self.unheard());
        out
    }

    /// Escalation steps and notification rules that reach nobody: no channel carries their
    /// word, or nobody holds their role.
    fn unheard(&self) -> Vec<String> {
        let r = &self.routing;
        let carried = |w: &str| r.channels.iter().any(|c| c.carries.iter().any(|x| x == w));
        let held = |to: &str| r.people.iter().any(|p| p.name == to || p.roles.iter().any(|x| x == to));
        let mut out = Vec::new();
        for c in &self.fleet.contracts {
            for (i, t) in c.tiers.iter().enumerate() {
                for e in t.escalation.iter().filter(|e| e.channel != "helpdesk") {
                    let step = format!("contract {} tier{} escalation level {}", c.id, i + 1, e.level);
                    if !carried(&e.channel) {
                        out.push(format!("{step}: no [notify.channels] carries `{}`; it reaches nobody", e.channel));
                    } else if !held(&e.to) {
                        out.push(format!("{step}: no [[people]] is or holds `{}`; it reaches nobody", e.to));
                    }
                }
            }
        }
        for c in self.fleet.contracts.iter().filter(|c| c.inaction.is_some()) {
            if !r.inaction_by.is_empty() && !held(&c.inaction_to) {
                out.push(format!("contract {}: no [[people]] is or holds inaction_to `{}`", c.id, c.inaction_to));
            }
        }
        for w in r.inaction_by.iter().filter(|w| !carried(w)) {
            out.push(format!("notify.inaction_by: no [notify.channels] carries `{w}`"));
        }
        for (what, rule) in [("breach", &r.breach), ("loaner", &r.loaner)] {
            for w in rule.by.iter().filter(|w| !carried(w)) {
                out.push(format!("notify.{what}: no [notify.channels] carries `{w}`"));
            }
            for to in rule.to.iter().filter(|t| !held(t)) {
                out.push(format!("notify.{what}: no [[people]] is or holds `{to}`"));
            }
        }
        out
    }

    /// Mosquitto's password file (`user:password` lines in clear, for `mosquitto_passwd -U` to
    /// hash) and ACL file for this config: each device (user name: its id) and each site's
    /// gateway may write under its own topics only, and the daemon's own user (the external
    /// broker's `username`) reads them all.
    pub fn mosquitto_files(&self) -> (String, String) {
        use secrecy::ExposeSecret as _;
        let prefix = &self.ingest.topic_prefix;
        let mut passwords = String::new();
        let mut acl = format!(
            "# Written by `aftercare mosquitto-auth` from {}: each device and site gateway\n\
             # writes under its own topics only; anonymous clients get nothing.\n",
            self.path.display()
        );
        if let crate::ingest::mqtt::BrokerMode::External { username: Some(u), password, .. } = &self.broker.mode {
            if let Some(p) = password {
                passwords.push_str(&format!("{u}:{}\n", p.expose_secret()));
            }
            acl.push_str(&format!("\n# aftercare itself\nuser {u}\ntopic read {prefix}/#\n"));
        }
        for u in &self.broker.auth.users {
            passwords.push_str(&format!("{}:{}\n", u.name, u.password.expose_secret()));
            let access = if u.read_only { "read" } else { "write" };
            acl.push_str(&format!("\nuser {}\ntopic {access} {}#\n", u.name, u.topics));
        }
        (passwords, acl)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &|p| std::fs::read_to_string(p))
    }

    /// Loads and validates the config at `path`, reading files through `read`.
    pub fn load_with(path: &Path, read: ReadFile<'_>) -> Result<Config, ConfigError> {
        let text = read(path).map_err(|e| {
            ConfigError(vec![Problem {
                file: path.to_path_buf(),
                line: 0,
                col: 0,
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        let main = Source { path: path.to_path_buf(), text };
        // What could not be read is reported with what the rest of the file then says.
        let (raw, mut problems) = parse::<RawConfig>(&main);
        let Some(raw) = raw else { return Err(ConfigError(problems)) };
        match compile::compile(main, raw, read) {
            Ok(c) if problems.is_empty() => Ok(c),
            Ok(_) => Err(ConfigError(problems)),
            Err(ConfigError(more)) => {
                problems.extend(more);
                Err(ConfigError(problems))
            }
        }
    }
}

/// Compiles a file of device kind profiles (`[kinds.NAME]` tables) given as text.
pub fn profiles_from_str(name: &str, text: &str) -> Result<Vec<crate::rules::Profile>, ConfigError> {
    compile::compile_kind_file(&Source { path: PathBuf::from(name), text: text.to_string() })
}

/// Most rounds of "deserialize, cut out what failed, try again" for one file.
const MAX_ROUNDS: usize = 500;

/// Parses a source as TOML into `T`, reporting every problem with its line: every syntax
/// error if there are any, else every serde error (an unknown key, a wrong type, a missing
/// key). serde stops at its first error, so after each one the entry it points at (a key, a
/// table or an array element) is cut out of the parsed document and the document is
/// deserialized again. The value comes back with the problems: from the untouched document
/// when there are none, else from what was left once the bad entries were cut (so that the
/// rest of the file is checked in the same run), or none when nothing could be read.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(src: &Source) -> (Option<T>, Vec<Problem>) {
    use std::ops::Range;
    use toml::de::{DeTable, Deserializer};
    let problem = |span: Option<Range<usize>>, message: &str| {
        let (line, col) = span.map_or((0, 0), |s| src.line_col(s.start));
        Problem { file: src.path.clone(), line, col, message: message.trim().to_string() }
    };
    let (doc, syntax) = DeTable::parse_recoverable(&src.text);
    if !syntax.is_empty() {
        // One per line: the parser's recovery can stumble more than once on a line.
        let mut ps: Vec<Problem> = syntax.iter().map(|e| problem(e.span(), e.message())).collect();
        ps.sort_by_key(|p| (p.line, p.col));
        ps.dedup_by_key(|p| p.line);
        return (None, ps);
    }
    let root = doc.span();
    let mut doc = doc.into_inner();
    let mut problems: Vec<Problem> = Vec::new();
    // (span of the table, key) of every entry cut out: cutting a required entry makes its
    // table fail with "missing field", which is no news.
    let mut cut: Vec<(Range<usize>, String)> = Vec::new();
    let mut value = None;
    for _ in 0..MAX_ROUNDS {
        let de = Deserializer::from(toml::Spanned::new(root.clone(), doc.clone()));
        let e = match <T as serde::Deserialize>::deserialize(de) {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(e) => e,
        };
        let Some(at) = e.span() else {
            problems.push(problem(None, e.message()));
            break;
        };
        // A table something was cut from may now lack it: no news. (An enum's table, such as a
        // rule's condition, then has no variant left.)
        let knock_on = (e.message().strip_prefix("missing field `"))
            .and_then(|r| r.strip_suffix('`'))
            .is_some_and(|f| cut.iter().any(|(s, k)| *s == at && k == f))
            || (e.message().starts_with("wanted exactly 1 element") && cut.iter().any(|(s, _)| *s == at));
        if !knock_on {
            problems.push(problem(Some(at.clone()), e.message()));
        }
        match prune::table(&mut doc, &root, &at, true).or_else(|| prune::table(&mut doc, &root, &at, false)) {
            Some((table, Some(key))) => cut.push((table, key)),
            Some((_, None)) => {}
            // Nothing left to cut: a key missing at the top.
            None => break,
        }
    }
    if value.is_none() && problems.is_empty() {
        problems.push(problem(None, "the file does not fit the expected layout"));
    }
    // One per place: an array of tables of the wrong shape fails once per element and once whole.
    problems.sort_by_key(|p| (p.line, p.col));
    problems.dedup_by_key(|p| (p.line, p.col));
    (value, problems)
}

/// Cutting out of a parsed TOML document the entry an error points at.
mod prune {
    use std::ops::Range;
    use toml::de::{DeArray, DeTable, DeValue};

    /// Cuts out of `table` (whose own span is `span`) the innermost entry `at` points at: a key
    /// or value spanning exactly `at`, or (not `exact`) the smallest value holding it. Returns
    /// the span of the table it was in and its key (`None`: an array element).
    pub(super) fn table(
        table: &mut DeTable<'_>,
        span: &Range<usize>,
        at: &Range<usize>,
        exact: bool,
    ) -> Option<(Range<usize>, Option<String>)> {
        // Children first: a `[table]`'s span is its header, which need not hold its keys.
        for (_, v) in table.iter_mut() {
            let vs = v.span();
            if let Some(hit) = value(v.get_mut(), &vs, at, exact) {
                return Some(hit);
            }
        }
        let key = (table.iter())
            .filter(|(k, v)| hits(&k.span(), at, exact) || hits(&v.span(), at, exact))
            .min_by_key(|(_, v)| v.span().len())
            .map(|(k, _)| k.get_ref().to_string())?;
        table.remove(key.as_str());
        Some((span.clone(), Some(key)))
    }

    fn value(
        v: &mut DeValue<'_>,
        span: &Range<usize>,
        at: &Range<usize>,
        exact: bool,
    ) -> Option<(Range<usize>, Option<String>)> {
        match v {
            DeValue::Table(t) => table(t, span, at, exact),
            DeValue::Array(items) => {
                for item in items.iter_mut() {
                    let s = item.span();
                    if let Some(hit) = value(item.get_mut(), &s, at, exact) {
                        return Some(hit);
                    }
                }
                let i = items.iter().position(|item| hits(&item.span(), at, exact))?;
                let kept: DeArray<'_> = std::mem::replace(items, DeArray::new())
                    .into_iter()
                    .enumerate()
                    .filter_map(|(j, item)| (j != i).then_some(item))
                    .collect();
                *items = kept;
                Some((span.clone(), None))
            }
            _ => None,
        }
    }

    fn hits(s: &Range<usize>, at: &Range<usize>, exact: bool) -> bool {
        if exact { s == at } else { !at.is_empty() && s.start <= at.start && at.end <= s.end }
    }
}

#[cfg(test)]
mod tests;
