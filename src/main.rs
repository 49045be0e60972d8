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
}

fn init_logs(default: &str) {
    let filter = EnvFilter::try_from_env("AFTERCARE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    // One TLS provider for everything that builds a rustls config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
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
            init_logs("info,rumqttd=warn,rumqttd::router::routing=off,sqlx=warn");
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::FAILURE;
                }
            };
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
        Cmd::Demo { data, interval, seed } => {
            init_logs("warn,aftercare=warn");
            runtime(demo::run(demo::DemoOptions { data, interval, seed }))
        }
    }
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
