//! Configuration: one TOML file (plus the profile files it includes), parsed
//! into raw serde types, then validated into a typed [`Config`]. Validation
//! reports every problem at once, each with file, line and what to write instead.

mod compile;
pub mod raw;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

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

/// How the daemon reaches its MQTT broker.
#[derive(Debug, Clone)]
pub enum BrokerMode {
    /// rumqttd inside the daemon, listening here (port 0: any free port).
    Embedded { listen: SocketAddr },
    External {
        tls: bool,
        host: String,
        port: u16,
        username: Option<String>,
        password: Option<SecretString>,
        ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub mode: BrokerMode,
    pub client_id: String,
    pub keep_alive: Duration,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub topic_prefix: String,
    pub max_payload_bytes: usize,
    pub shards: usize,
    pub queue_capacity: usize,
    pub modbus_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct TicketConfig {
    /// A fault that returns within this long after its ticket closed reopens it.
    pub reopen_window: Duration,
}

/// A helpdesk that receives tickets.
#[derive(Debug, Clone)]
pub enum HelpdeskKind {
    Webhook { url: String, secret: Option<Vec<u8>>, timeout: Duration },
    Email(crate::outbox::email::EmailConfig),
    RequestTracker(crate::outbox::rt::RtConfig),
    Redmine(crate::outbox::redmine::RedmineConfig),
}

#[derive(Debug, Clone)]
pub struct HelpdeskConfig {
    pub name: String,
    pub kind: HelpdeskKind,
    /// The helpdesk's priority names for tiers 1, 2 and 3.
    pub priorities: [String; 3],
}

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    pub dead_after: Duration,
    pub max_backoff: Duration,
    pub concurrency: usize,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub broker: BrokerConfig,
    pub http_listen: SocketAddr,
    pub store_path: PathBuf,
    pub ingest: IngestConfig,
    pub tickets: TicketConfig,
    pub helpdesks: Vec<HelpdeskConfig>,
    pub outbox: OutboxConfig,
    /// How long history is kept.
    pub history_retention: Duration,
    /// Telemetry to InfluxDB, when configured.
    pub influx: Option<crate::history::influx::InfluxConfig>,
    pub fleet: Arc<Fleet>,
}

/// Reads a file's text; the demo supplies one that reads its embedded copies.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

impl Config {
    /// Loads and validates the config at `path` from disk.
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
        let raw: RawConfig = parse(&main).map_err(|p| ConfigError(vec![p]))?;
        compile::compile(main, raw, read)
    }
}

/// Compiles a file of device kind profiles (`[kinds.NAME]` tables) given as text.
pub fn profiles_from_str(name: &str, text: &str) -> Result<Vec<crate::rules::Profile>, ConfigError> {
    compile::compile_kind_file(&Source { path: PathBuf::from(name), text: text.to_string() })
}

/// Parses a source as TOML into `T`, turning serde's error into a [`Problem`] with a line.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(src: &Source) -> Result<T, Problem> {
    toml::from_str(&src.text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| src.line_col(s.start));
        Problem { file: src.path.clone(), line, col, message: e.message().trim().to_string() }
    })
}

#[cfg(test)]
mod tests;
