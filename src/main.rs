//! The `aftercare` command: run the daemon, check a config, or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aftercare::clock::SystemClock;
use aftercare::config::Config;
use aftercare::{app, demo};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "aftercare",
    version,
    about = "Watches field equipment and keeps the after-sales service promises made about it"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon with a config file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file and exit: 0 if it is valid, 1 with every problem listed if not.
    CheckConfig { file: PathBuf },
    /// Run an embedded broker, the daemon and a simulated fleet with faults, on this machine.
    Demo {
        /// Where the demo keeps its database.
        #[arg(long, default_value = "aftercare-demo-data")]
        data: PathBuf,
        /// Real time between two messages of a simulated device.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: Duration,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write a service report for a customer (or site) and a period, from the daemon's store.
    Report {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        site: Option<String>,
        /// First day (or RFC 3339 time) of the period.
        #[arg(long)]
        from: String,
        /// Day (or time) after the period.
        #[arg(long)]
        to: String,
        /// json, csv, html or pdf.
        #[arg(long, default_value = "html")]
        format: String,
        /// en or zh-CN.
        #[arg(long, default_value = "en")]
        lang: String,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn init_logs(default: &str) {
    let filter = EnvFilter::try_from_env("AFTERCARE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    aftercare::malloc::one_arena();
    // One TLS provider for everything that builds a rustls config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                use aftercare::clock::Clock as _;
                for w in c.fleet.calendars_ending(SystemClock.now().date_naive(), 60) {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: valid ({} devices, {} kinds, {} sites, {} customers)",
                    file.display(),
                    c.fleet.devices.len(),
                    c.fleet.kinds.len(),
                    c.fleet.sites.len(),
                    c.fleet.customers.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run { config } => {
            init_logs("info,sqlx=warn");
            let Some(cfg) = load(&config) else { return ExitCode::FAILURE };
            // Reading a large config peaks far above what the daemon keeps (a fleet of 100,000
            // devices: 350 MB of parsed TOML for 70 MB of fleet).
            aftercare::malloc::give_back();
            runtime(async move {
                let app = app::start(cfg, Arc::new(SystemClock)).await?;
                // One line on stdout for scripts and tests to wait on.
                let mqtt = app.broker.map(|b| b.to_string()).unwrap_or_else(|| "external".into());
                println!("aftercare ready http={} mqtt={mqtt}", app.http);
                app::stop_signal().await;
                app.stop().await;
                Ok(())
            })
        }
        Cmd::Report { config, customer, site, from, to, format, lang, out } => {
            init_logs("warn");
            let Some(cfg) = load(&config) else { return ExitCode::FAILURE };
            runtime(async move {
                let offset = aftercare::report::offset_of(&cfg.fleet, customer.as_deref(), site.as_deref());
                let time = |s: &str| aftercare::report::parse_time(s, offset).map_err(|e| anyhow::anyhow!("{e}"));
                let scope = aftercare::report::Scope { customer, site, from: time(&from)?, to: time(&to)? };
                let text = aftercare::report::write(&cfg.fleet, &cfg.store_path, &scope, &format, &lang).await?;
                match out {
                    Some(p) => std::fs::write(&p, text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
                    None => {
                        use std::io::Write as _;
                        std::io::stdout().write_all(&text)?;
                    }
                }
                Ok(())
            })
        }
        Cmd::Demo { data, interval, seed } => {
            // The embedded broker logs every client it drops at the demo's end as an error.
            init_logs("warn,aftercare=warn");
            runtime(demo::run(demo::DemoOptions { data, interval, seed }))
        }
    }
}

/// The config at `path`, or `None` after printing every problem in it.
fn load(path: &std::path::Path) -> Option<Config> {
    Config::load(path).map_err(|e| eprint!("{e}")).ok()
}

fn runtime(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aftercare: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aftercare: {e:#}");
            ExitCode::FAILURE
        }
    }
}
