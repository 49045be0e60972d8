//! Wiring: starts the broker, store, shards, ticket writer, MQTT client and
//! HTTP server from a [`Config`], and stops them in order on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::clock::Clock;
use crate::config::Config;
use crate::desk::writer::{Notice, Writer};
use crate::ingest::mqtt::BrokerMode;
use crate::ingest::mqtt::{self, Router};
use crate::ingest::shard::{Live, Shard, ShardCtx};
use crate::metrics::Metrics;
use crate::store::Store;

/// A running daemon.
pub struct App {
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// Where the embedded broker listens, if it runs one.
    pub broker: Option<SocketAddr>,
    pub notices: broadcast::Sender<Notice>,
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    ingest: Vec<JoinHandle<()>>,
    writer: JoinHandle<()>,
    http_task: JoinHandle<()>,
}

/// Starts everything; returns once the API listens and the store is open.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
    let metrics = Arc::new(Metrics::new());
    let fleet = Arc::clone(&config.fleet);
    let store = Store::open(&config.store_path)
        .await
        .with_context(|| format!("opening the store at {}", config.store_path.display()))?;
    for w in fleet.calendars_ending(clock.now().date_naive(), 60) {
        warn!("{w}");
    }
    for w in config.warnings() {
        warn!("{w}");
    }
    let spares =
        crate::store::spare_lines(&store, &fleet, clock.now(), &|_| true).await.context("reading the spare parts")?;
    crate::store::warn_short(&spares);
    let restored = store.active_faults().await.context("reading the faults active before the last stop")?;
    let alarms = store.active_alarms().await.context("reading the devices' alarms active before the last stop")?;
    let client_id = match &config.broker.client_id {
        Some(id) => id.clone(),
        None => format!("aftercare-{}", store.installation_id().await.context("reading the installation's id")?),
    };
    let opts = mqtt::options(&config.broker, &client_id)?;

    // Before any change is written: which customers' changes go to which helpdesk.
    let relay = crate::outbox::Relay::new(
        store.clone(),
        Arc::clone(&fleet),
        crate::outbox::connectors(&config.helpdesks)?,
        Arc::clone(&clock),
        Arc::clone(&metrics),
        config.outbox.clone(),
    );
    store.set_routes(&relay.routes()).await.context("recording where customers' changes go")?;

    let shutdown = CancellationToken::new();
    let live = Arc::new(Live::new(fleet.devices.len()));
    let (notices, _) = broadcast::channel(1024);
    let (fault_tx, fault_rx) = mpsc::channel(4096);
    let writer = Writer {
        store: store.clone(),
        fleet: Arc::clone(&fleet),
        clock: Arc::clone(&clock),
        metrics: Arc::clone(&metrics),
        notices: notices.clone(),
        reopen_window: config.tickets.reopen_window,
    };
    // On a thread and a runtime of its own: a fault's way to its ticket does not queue behind
    // the ingest tasks, which are busy exactly when faults come in numbers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the ticket writer's runtime")?;
    let writer = tokio::task::spawn_blocking(move || rt.block_on(writer.run(fault_rx)));

    // Hourly rollups from the shards, merged into the embedded store; ends after the shards.
    let (history_tx, history_rx) = mpsc::channel(256);
    let history = tokio::spawn(crate::history::run(
        store.clone(),
        Arc::clone(&fleet),
        Arc::clone(&clock),
        crate::history::Retention { history: config.history_retention, audit: config.audit_retention },
        history_rx,
    ));
    // Telemetry to InfluxDB through the on-disk spool: a batcher (ends after the shards) and a sender.
    let mut influx_tasks = Vec::new();
    let influx_tx = match &config.influx {
        None => None,
        Some(cfg) => {
            let spool = crate::history::spool::Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)
                .with_context(|| format!("opening the InfluxDB spool at {}", cfg.spool_dir.display()))?;
            let spool = Arc::new(std::sync::Mutex::new(spool));
            let wake = Arc::new(tokio::sync::Notify::new());
            let (tx, rx) = mpsc::channel(64);
            influx_tasks.push(tokio::spawn(crate::history::influx::batcher(
                cfg.clone(),
                Arc::clone(&spool),
                Arc::clone(&wake),
                Arc::clone(&metrics),
                rx,
            )));
            influx_tasks.push(tokio::spawn(crate::history::influx::sender(
                cfg.clone(),
                spool,
                wake,
                Arc::clone(&metrics),
                shutdown.clone(),
            )));
            info!(url = %cfg.url, bucket = %cfg.bucket, spool = %cfg.spool_dir.display(), "writing telemetry to InfluxDB");
            Some(tx)
        }
    };
    let ctx = ShardCtx {
        fleet: Arc::clone(&fleet),
        live: Arc::clone(&live),
        clock: Arc::clone(&clock),
        metrics: Arc::clone(&metrics),
        max_clock_skew_ms: i64::try_from(config.ingest.max_clock_skew.as_millis()).unwrap_or(i64::MAX),
        history: Some(history_tx),
        influx: influx_tx,
    };
    let n = config.ingest.shards;
    let mut senders = Vec::with_capacity(n);
    let mut ingest = Vec::with_capacity(n + 1);
    for i in 0..n {
        let (tx, rx) = mpsc::channel(config.ingest.queue_capacity);
        senders.push(tx);
        let shard = Shard::new(i, n, ctx.clone(), &restored, &alarms);
        ingest.push(tokio::spawn(shard.run(rx, fault_tx.clone(), shutdown.clone())));
    }
    // Only the shards hold the history sender now; the writer is awaited after them.
    drop(ctx);
    ingest.push(history);
    ingest.extend(influx_tasks);
    let outlet = crate::ingest::modbus::Outlet {
        shards: senders.clone(),
        faults: fault_tx.clone(),
        clock: Arc::clone(&clock),
        metrics: Arc::clone(&metrics),
        fleet: Arc::clone(&fleet),
    };
    let pollers = crate::ingest::modbus::spawn(outlet, config.ingest.modbus_concurrency, shutdown.clone());
    if !pollers.is_empty() {
        info!(tasks = pollers.len(), "polling Modbus devices");
    }
    ingest.extend(pollers);
    drop(fault_tx);
    let router = Router {
        prefix: config.ingest.topic_prefix.clone(),
        fleet: Arc::clone(&fleet),
        shards: senders,
        clock: Arc::clone(&clock),
        metrics: Arc::clone(&metrics),
        max_payload: config.ingest.max_payload_bytes,
    };
    let (broker, link) = match (&config.broker.mode, opts) {
        (BrokerMode::Embedded { listen }, _) => {
            let limits = crate::broker::Limits {
                max_connections: config.broker.max_connections,
                max_payload: config.ingest.max_payload_bytes,
                auth: config.broker.auth.clone(),
                tls: config.broker.tls.clone(),
                ..Default::default()
            };
            let (b, task) = crate::broker::start(
                *listen,
                config.ingest.topic_prefix.clone(),
                limits,
                Arc::new(router),
                Arc::clone(&metrics),
                shutdown.clone(),
            )
            .await?;
            info!(addr = %b.addr, "embedded MQTT broker listening");
            metrics.mqtt_connected.set(1);
            ingest.push(task);
            (Some(b.addr), Arc::new(mqtt::Link::in_process(clock.now())))
        }
        (BrokerMode::External { host, port, tls, .. }, Some(opts)) => {
            info!(%host, port, tls, client_id = %client_id, "using an external MQTT broker");
            let link = Arc::new(mqtt::Link::new(clock.now()));
            ingest.push(tokio::spawn(mqtt::run(opts, router, Arc::clone(&link), shutdown.clone())));
            (None, link)
        }
        (BrokerMode::External { .. }, None) => anyhow::bail!("no client options for the external broker"),
    };

    let listener = tokio::net::TcpListener::bind(config.http_listen).await.with_context(|| {
        format!("the HTTP API cannot listen on {}; set http.listen to a free address", config.http_listen)
    })?;
    let http = listener.local_addr()?;
    let clocks = tokio::spawn(crate::desk::watch::watch(
        store.clone(),
        Arc::clone(&fleet),
        Arc::clone(&config.routing),
        Arc::clone(&clock),
        shutdown.clone(),
    ));
    ingest.push(clocks);
    ingest.push(tokio::spawn(crate::schedule::run(
        store.clone(),
        Arc::clone(&fleet),
        Arc::clone(&clock),
        shutdown.clone(),
    )));
    ingest.push(tokio::spawn(relay.run(shutdown.clone())));
    let notifier = crate::notify::Notifier::new(
        store.clone(),
        Arc::clone(&config.routing),
        Arc::clone(&clock),
        config.outbox.clone(),
    )
    .context("setting up the notification channels")?;
    ingest.push(tokio::spawn(notifier.run(shutdown.clone())));
    ingest.push(tokio::spawn(store.clone().checkpoints(shutdown.clone())));
    ingest.push(tokio::spawn(crate::malloc::give_back_until(shutdown.clone())));
    let helpdesk_keys = config.helpdesks.iter().map(|h| (h.name.clone(), h.secret.clone())).collect();
    let state = AppState {
        store,
        fleet,
        live,
        metrics: Arc::clone(&metrics),
        clock,
        helpdesk_keys: Arc::new(helpdesk_keys),
        mqtt: link,
        unhealthy_after: config.broker.unhealthy_after,
        access: config.access.clone(),
        logins: Arc::default(),
        writes: Arc::new(api::WriteLimiter::new(config.access.writes_per_minute)),
        tls: config.serve.tls.is_some(),
        route_table: Arc::default(),
        openapi: Arc::default(),
        live_streams: Arc::default(),
    };
    let stop = shutdown.clone();
    let serve_cfg = config.serve.clone();
    let http_task = tokio::spawn(api::serve(listener, api::router(state), serve_cfg, stop));
    info!(%http, devices = config.fleet.devices.len(), shards = n, restored = restored.len(), "aftercare started");
    Ok(App { http, broker, notices, metrics, shutdown, ingest, writer, http_task })
}

impl App {
    /// Stops ingest, lets the ticket writer drain what the rules raised, and stops the API.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let grace = Duration::from_secs(10);
        for t in self.ingest {
            let _ = tokio::time::timeout(grace, t).await;
        }
        if tokio::time::timeout(grace, self.writer).await.is_err() {
            warn!("the ticket writer did not drain within {grace:?}");
        }
        let _ = tokio::time::timeout(grace, self.http_task).await;
        info!("aftercare stopped");
    }
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
