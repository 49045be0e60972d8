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
    /// Manage the people and scripts that use the API (in the store the config names).
    User {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: UserCmd,
    },
    /// Write Mosquitto's password file and ACL for the devices and site gateways of a config.
    MosquittoAuth {
        #[arg(long, short)]
        config: PathBuf,
        /// The folder to write `passwords` and `acl` into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make and revoke API tokens.
    Token {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: TokenCmd,
    },
    /// Tickets people report, for scripts (a phone system, a mail gateway).
    Ticket {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: TicketCmd,
    },
}

#[derive(Subcommand)]
enum TicketCmd {
    /// Open a ticket a person reports; it runs the contract's clocks as a sensor's does. A
    /// report naming a device's fault whose ticket is open is added to that ticket instead.
    Open {
        /// The user who enters it (its name goes on the timeline).
        #[arg(long = "as")]
        user: String,
        /// phone, web, email, visit or helpdesk.
        #[arg(long)]
        channel: String,
        /// fault, request, question or complaint.
        #[arg(long, default_value = "fault")]
        category: String,
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        device: Option<String>,
        /// One of the device kind's fault codes.
        #[arg(long)]
        code: Option<String>,
        /// 1, 2 or 3 (default: the fault's, else from the category).
        #[arg(long)]
        tier: Option<u8>,
        /// The contract to run, for a report about a site whose customer has several.
        #[arg(long)]
        contract: Option<String>,
        /// A complaint's grade: general (default) or major.
        #[arg(long)]
        grade: Option<String>,
        #[arg(long, default_value = "")]
        reporter_name: String,
        #[arg(long, default_value = "")]
        reporter_phone: String,
        /// The problem in the reporter's words (default: read from standard input).
        #[arg(long)]
        problem: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user: admin, manager, desk, engineer, customer or integration.
    Add {
        name: String,
        #[arg(long)]
        role: String,
        /// A customer it sees (repeat for several; none: all). A customer user needs one.
        #[arg(long = "customer")]
        customers: Vec<String>,
        /// Read its password from the first line of standard input (else: tokens only).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users, their roles and customers.
    List,
    /// Disable a user: its tokens and sessions stop working at once.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Set a user's password from the first line of standard input; its sessions end.
    Passwd { name: String },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make an API token for a user and print it (once: it is kept only as a hash).
    Create {
        user: String,
        /// What it is for, such as the script's name.
        #[arg(long, default_value = "cli")]
        name: String,
        /// How long it lasts, such as 90d (default: until revoked).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// Take the secret from the first line of standard input (at least 32 characters, as
        /// a secret manager makes) instead of making one.
        #[arg(long)]
        secret_stdin: bool,
    },
    /// Revoke a token by its id.
    Revoke { id: i64 },
    /// List tokens and sessions (never their secrets).
    List {
        #[arg(long)]
        user: Option<String>,
    },
}

/// Writes `text` to `path`, readable by its owner alone.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The first line of standard input, for a password.
fn read_secret() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn user_cmd(cfg: Config, action: UserCmd) -> anyhow::Result<()> {
    use aftercare::clock::Clock as _;
    let store = aftercare::store::Store::open(&cfg.store_path).await?;
    let now = SystemClock.now();
    match action {
        UserCmd::Add { name, role, customers, password_stdin } => {
            let role = aftercare::identity::role(&role)?;
            let password = if password_stdin { Some(read_secret()?) } else { None };
            let known: Vec<&str> = cfg.fleet.customers.iter().map(|c| c.id.as_str()).collect();
            aftercare::identity::add_user(&store, &name, role, &customers, password.as_deref(), &known, now).await?;
            println!("user {name} added as {role}");
        }
        UserCmd::List => {
            for u in store.users().await? {
                let customers =
                    if u.customers.is_empty() { "all customers".to_string() } else { u.customers.join(",") };
                let state = if u.disabled { "  (disabled)" } else { "" };
                println!("{:<24} {:<12} {customers}{state}", u.name, u.role);
            }
        }
        UserCmd::Disable { name } => switch(&store, &name, true).await?,
        UserCmd::Enable { name } => switch(&store, &name, false).await?,
        UserCmd::Passwd { name } => {
            let hash = aftercare::identity::hash_password(&read_secret()?)?;
            anyhow::ensure!(store.set_password(&name, &hash, now).await?, "no user `{name}`");
            println!("password of {name} set; its sessions ended");
        }
    }
    Ok(())
}

async fn switch(store: &aftercare::store::Store, name: &str, disabled: bool) -> anyhow::Result<()> {
    use aftercare::clock::Clock as _;
    anyhow::ensure!(store.set_disabled(name, disabled, SystemClock.now()).await?, "no user `{name}`");
    println!("user {name} {}", if disabled { "disabled" } else { "enabled" });
    Ok(())
}

async fn token_cmd(cfg: Config, action: TokenCmd) -> anyhow::Result<()> {
    use aftercare::clock::Clock as _;
    let store = aftercare::store::Store::open(&cfg.store_path).await?;
    let now = SystemClock.now();
    match action {
        TokenCmd::Create { user, name, expires, secret_stdin } => {
            let expires_at = expires.map(|d| chrono::TimeDelta::from_std(d).map(|d| now + d)).transpose()?;
            let given = if secret_stdin { Some(read_secret()?) } else { None };
            let (secret, id) = aftercare::identity::create_token(&store, &user, &name, given, expires_at, now).await?;
            if secret_stdin {
                println!("token {id} for {user}");
            } else {
                eprintln!("token {id} for {user}; it is shown this once:");
                println!("{secret}");
            }
        }
        TokenCmd::Revoke { id } => {
            anyhow::ensure!(store.revoke_token(id, now).await?, "no valid token {id}");
            println!("token {id} revoked");
        }
        TokenCmd::List { user } => {
            for t in store.tokens(user.as_deref()).await? {
                let state = match (t.revoked_at, t.expires_at) {
                    (Some(_), _) => "revoked".to_string(),
                    (None, Some(e)) if e <= now => "expired".to_string(),
                    (None, Some(e)) => format!("until {e}"),
                    (None, None) => "valid".to_string(),
                };
                println!("{:<6} {:<20} {:<8} {:<20} {state}", t.id, t.user, t.kind, t.name);
            }
        }
    }
    Ok(())
}

async fn ticket_cmd(cfg: Config, action: TicketCmd) -> anyhow::Result<()> {
    use aftercare::clock::Clock as _;
    use aftercare::tickets::intake::{Category, Channel, Report, intake};
    let store = aftercare::store::Store::open(&cfg.store_path).await?;
    let now = SystemClock.now();
    let TicketCmd::Open {
        user,
        channel,
        category,
        customer,
        site,
        device,
        code,
        tier,
        contract,
        grade,
        reporter_name,
        reporter_phone,
        problem,
    } = action;
    let grade = grade
        .map(|g| {
            aftercare::tickets::intake::Grade::parse(&g)
                .ok_or_else(|| anyhow::anyhow!("grade `{g}`: write general or major"))
        })
        .transpose()?;
    let u = store.user(&user).await?.ok_or_else(|| anyhow::anyhow!("no user `{user}`"))?;
    anyhow::ensure!(!u.disabled, "user `{user}` is disabled");
    let channel = Channel::read(&channel).map_err(anyhow::Error::msg)?;
    let category = Category::read(&category).map_err(anyhow::Error::msg)?;
    let tier = tier
        .map(|t| aftercare::domain::Tier::from_number(i64::from(t)).ok_or_else(|| anyhow::anyhow!("tier is 1, 2 or 3")))
        .transpose()?;
    let problem = match problem {
        Some(p) => p,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    let r = Report {
        channel,
        category,
        customer,
        site,
        device,
        code,
        tier,
        contract,
        grade,
        reporter_name,
        reporter_phone,
        problem,
    };
    let i = intake(&cfg.fleet, &r, now).map_err(|m| anyhow::anyhow!("{m}"))?;
    let (id, new) = store.take_report(&i, &user, now).await?;
    if new {
        println!("ticket {id} opened");
    } else {
        println!("added to ticket {id}, open for the same fault");
    }
    Ok(())
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
                for w in c.warnings() {
                    eprintln!("warning: {w}");
                }
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
        Cmd::User { config, action } => {
            init_logs("warn");
            let Some(cfg) = load(&config) else { return ExitCode::FAILURE };
            runtime(user_cmd(cfg, action))
        }
        Cmd::MosquittoAuth { config, out } => {
            init_logs("warn");
            let Some(cfg) = load(&config) else { return ExitCode::FAILURE };
            runtime(async move {
                let (passwords, acl) = cfg.mosquitto_files();
                std::fs::create_dir_all(&out)?;
                let pw = out.join("passwords");
                write_private(&pw, &passwords)?;
                std::fs::write(out.join("acl"), acl)?;
                println!("wrote {} and {}", pw.display(), out.join("acl").display());
                println!("hash the passwords before Mosquitto reads them: mosquitto_passwd -U {}", pw.display());
                Ok(())
            })
        }
        Cmd::Token { config, action } => {
            init_logs("warn");
            let Some(cfg) = load(&config) else { return ExitCode::FAILURE };
            runtime(token_cmd(cfg, action))
        }
        Cmd::Ticket { config, action } => {
            init_logs("warn");
            let Some(cfg) = load(&config) else { return ExitCode::FAILURE };
            runtime(ticket_cmd(cfg, action))
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
