//! The relay: due rows claimed in order per ticket or work order, a lane per helpdesk,
//! backoff with jitter, dead letters, and polls between deliveries.

use super::*;

/// The wait before attempt `attempts + 1`: 1 s doubling, capped, with up to 20 % jitter.
pub(crate) fn backoff(attempts: i64, max: Duration, jitter_seed: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << attempts.clamp(0, 20) as u32).min(max);
    let jitter = base.mul_f64((jitter_seed % 1000) as f64 / 5000.0);
    (base + jitter).min(max)
}

/// What happens to a row after a failed attempt at `now`: retry at a time, or dead.
pub(crate) fn after_failure(
    row: &OutboxRow,
    err: &DeliveryError,
    now: DateTime<Utc>,
    cfg: &OutboxConfig,
) -> Option<DateTime<Utc>> {
    retry_at(row.attempts, row.created_at, err, now, cfg)
}

/// When something that failed its `attempts`-th try at `now`, and has been due since `since`,
/// is tried again; `None`: it is dead (a permanent refusal, or past `outbox.dead_after`). The
/// helpdesk outbox and the notifications to people share this rule.
pub(crate) fn retry_at(
    attempts: i64,
    since: DateTime<Utc>,
    err: &DeliveryError,
    now: DateTime<Utc>,
    cfg: &OutboxConfig,
) -> Option<DateTime<Utc>> {
    let wait = match err {
        DeliveryError::Permanent(_) | DeliveryError::Gone(_) => return None,
        DeliveryError::Retryable { after: Some(a), .. } => (*a).min(Duration::from_secs(3600)),
        DeliveryError::Retryable { after: None, .. } => {
            backoff(attempts, cfg.max_backoff, now.timestamp_subsec_micros())
        }
    };
    let next = now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
    let deadline = since + TimeDelta::from_std(cfg.dead_after).unwrap_or(TimeDelta::MAX);
    (next <= deadline).then_some(next)
}

pub(crate) struct Relay {
    pub store: Store,
    pub fleet: Arc<Fleet>,
    pub connectors: HashMap<String, Arc<dyn Connector>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub cfg: OutboxConfig,
    /// Connectors whose endpoint answered 410 Gone; their rows wait until restart.
    disabled: HashMap<String, Arc<AtomicBool>>,
    /// When each polled helpdesk was last asked for status changes.
    polled: std::sync::Mutex<HashMap<String, DateTime<Utc>>>,
}

/// How a delivery went, for the pace of its helpdesk's lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Try again later, after the receiver's `Retry-After` if it gave one: the helpdesk may be down.
    Retry(Option<Duration>),
    /// Dead-lettered, or its outcome could not be recorded.
    Other,
}

/// What a delivery needs besides its row, cloned into its task.
#[derive(Clone)]
struct Ctx {
    store: Store,
    metrics: Arc<Metrics>,
    cfg: OutboxConfig,
    clock: Arc<dyn Clock>,
}

/// While a helpdesk fails, its lane sends one event at a time, and at least this often.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Failures in a row, with no delivery between, that make a helpdesk "failing": one ticket's
/// refusal does not slow the others down.
const FAILING_AFTER: u32 = 3;

impl Relay {
    pub(crate) fn new(
        store: Store,
        fleet: Arc<Fleet>,
        connectors: HashMap<String, Arc<dyn Connector>>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        cfg: OutboxConfig,
    ) -> Relay {
        let disabled = connectors.keys().map(|k| (k.clone(), Arc::new(AtomicBool::new(false)))).collect();
        Relay { store, fleet, connectors, clock, metrics, cfg, disabled, polled: Default::default() }
    }

    /// Where each customer's changes go: `(customer, helpdesk)`, for the customers whose
    /// helpdesk is configured. The store writes outbox rows for these customers only.
    pub(crate) fn routes(&self) -> Vec<(String, String)> {
        (self.fleet.customers.iter())
            .filter_map(|c| {
                c.helpdesk.as_ref().filter(|h| self.connectors.contains_key(*h)).map(|h| (c.id.0.clone(), h.clone()))
            })
            .collect()
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            store: self.store.clone(),
            metrics: Arc::clone(&self.metrics),
            cfg: self.cfg.clone(),
            clock: Arc::clone(&self.clock),
        }
    }

    /// Up to `limit` rows of helpdesk `name` that are due by `by`, with their subjects, but
    /// none of a subject in `busy` (its earlier event is on its way); rows that came from this
    /// helpdesk itself are skipped here (sending them back would loop).
    async fn claim(
        &self,
        name: &str,
        by: DateTime<Utc>,
        limit: usize,
        busy: &std::collections::HashSet<SubjectId>,
    ) -> Result<Vec<Delivery>, crate::store::StoreError> {
        let rows = self.store.due_outbox_for(name, by, (limit + busy.len()) as i64).await?;
        let mut out = Vec::new();
        for row in rows {
            if out.len() >= limit || busy.contains(&row.subject) {
                continue;
            }
            if is_echo(&row.origin, name) {
                self.store.outbox_skip(row.id).await?;
                continue;
            }
            let subject = match row.subject {
                SubjectId::Ticket(id) => self.store.ticket(id).await?.map(|t| Subject::Ticket(Box::new(t))),
                SubjectId::WorkOrder(id) => self.store.work_order(id).await?.map(|w| Subject::WorkOrder(Box::new(w))),
            };
            let Some(subject) = subject else { continue };
            let remote = self.store.remote(row.subject, name).await?;
            out.push(Delivery { row, subject, remote });
        }
        Ok(out)
    }

    /// One pass: delivers what is due now to every helpdesk and waits for the answers;
    /// returns how many rows were attempted.
    #[cfg(test)]
    pub(crate) async fn run_once(&self) -> Result<usize, crate::store::StoreError> {
        let now = self.clock.now();
        let mut set = JoinSet::new();
        let mut attempted = 0;
        for (name, conn) in &self.connectors {
            let Some(off) = self.disabled.get(name).filter(|o| !o.load(Ordering::Relaxed)) else { continue };
            for d in self.claim(name, now, self.cfg.concurrency, &Default::default()).await? {
                attempted += 1;
                set.spawn(deliver(self.ctx(), Arc::clone(conn), Arc::clone(off), d));
            }
        }
        while set.join_next().await.is_some() {}
        Ok(attempted)
    }

    /// Asks helpdesk `name` for status changes if its poll is due, and applies them.
    async fn poll(&self, name: &str, conn: &dyn Connector) {
        let Some(src) = conn.status_source() else { return };
        let now = self.clock.now();
        {
            let Ok(mut last) = self.polled.lock() else { return };
            let every = TimeDelta::from_std(src.every()).unwrap_or(TimeDelta::MAX);
            if last.get(name).is_some_and(|t| now - *t < every) {
                return;
            }
            last.insert(name.to_string(), now);
        }
        let budget = conn.budget();
        match tokio::time::timeout(budget, status::poll(&self.store, name, src, self.clock.as_ref())).await {
            Ok(Ok(n)) if n > 0 => info!(helpdesk = %name, applied = n, "status changes from the helpdesk applied"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(helpdesk = %name, error = %e, "polling the helpdesk for status changes failed; will retry")
            }
            Err(_) => {
                warn!(helpdesk = %name, ?budget, "polling the helpdesk for status changes took too long; will retry")
            }
        }
        let intake = status::intake(&self.store, &self.fleet, name, src, self.clock.as_ref());
        match tokio::time::timeout(budget, intake).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(helpdesk = %name, error = %e, "looking for tickets people opened in the helpdesk failed; will retry")
            }
            Err(_) => warn!(helpdesk = %name, ?budget, "looking for tickets people opened took too long; will retry"),
        }
    }

    /// Runs until shutdown: a lane per helpdesk, each at its own pace, so that one slow or
    /// dead helpdesk never holds up another's deliveries.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let relay = Arc::new(self);
        let mut lanes = JoinSet::new();
        for (name, conn) in &relay.connectors {
            lanes.spawn(lane(Arc::clone(&relay), name.clone(), Arc::clone(conn), shutdown.clone()));
        }
        while lanes.join_next().await.is_some() {}
    }
}

/// One helpdesk's deliveries. Rows are claimed as room frees up, not pass by pass, at most
/// `outbox.concurrency` at once and one per ticket or work order, so a slow answer holds up
/// only its own ticket's next event. Once the helpdesk fails three times in a row, one event at
/// a time probes it (at least every 5 s, never before a `Retry-After`); the first that goes
/// through makes its whole backlog due at once.
/// Status polls run when nothing is in flight to this helpdesk, never beside a delivery.
async fn lane(relay: Arc<Relay>, name: String, conn: Arc<dyn Connector>, shutdown: CancellationToken) {
    let Some(off) = relay.disabled.get(&name).cloned() else { return };
    let mut set: JoinSet<(SubjectId, Outcome)> = JoinSet::new();
    let mut busy = std::collections::HashSet::new();
    let mut probing = false;
    let mut failures = 0u32;
    let mut last_probe: Option<DateTime<Utc>> = None;
    // A helpdesk that asked to be left alone (Retry-After) is not probed before then.
    let mut quiet_until: Option<DateTime<Utc>> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if set.is_empty() {
            relay.poll(&name, conn.as_ref()).await;
        }
        let room = if probing { 1 } else { relay.cfg.concurrency }.saturating_sub(set.len());
        if room > 0 && !off.load(Ordering::Relaxed) {
            let now = relay.clock.now();
            // A helpdesk that fails is asked again every few seconds, whatever its rows' backoff says.
            let probe = probing
                && quiet_until.is_none_or(|q| now >= q)
                && last_probe.is_none_or(|p| now - p >= TimeDelta::from_std(PROBE_EVERY).unwrap_or_default());
            let by = if probe { now + TimeDelta::days(36_500) } else { now };
            match relay.claim(&name, by, room, &busy).await {
                Ok(ds) => {
                    for d in ds {
                        if probing {
                            last_probe = Some(now);
                        }
                        busy.insert(d.row.subject);
                        set.spawn(deliver(relay.ctx(), Arc::clone(&conn), Arc::clone(&off), d));
                    }
                }
                Err(e) => error!(helpdesk = %name, error = %e, "reading the outbox failed; retrying"),
            }
        }
        tokio::select! {
            Some(done) = set.join_next(), if !set.is_empty() => {
                let Ok((subject, outcome)) = done else { continue };
                busy.remove(&subject);
                match outcome {
                    Outcome::Delivered => failures = 0,
                    Outcome::Retry(after) => {
                        failures += 1;
                        let now = relay.clock.now();
                        quiet_until = after.and_then(|a| TimeDelta::from_std(a).ok()).map(|a| now + a);
                    }
                    Outcome::Other => {}
                }
                match outcome {
                    Outcome::Delivered if probing => {
                        probing = false;
                        quiet_until = None;
                        let now = relay.clock.now();
                        match relay.store.outbox_wake(&name, now).await {
                            Ok(n) => info!(helpdesk = %name, backlog = n, "the helpdesk answers again; its backlog goes now"),
                            Err(e) => error!(helpdesk = %name, error = %e, "making the backlog due failed"),
                        }
                    }
                    Outcome::Retry(_) if !probing && failures >= FAILING_AFTER => {
                        probing = true;
                        last_probe = Some(relay.clock.now());
                        warn!(helpdesk = %name, "the helpdesk does not take events; probing it with one at a time");
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // Deliveries on their way finish within their budget; one cut off is sent again after a restart.
    let _ = tokio::time::timeout(conn.budget(), async { while set.join_next().await.is_some() {} }).await;
}

/// Delivers one event within its connector's budget and records the outcome.
async fn deliver(ctx: Ctx, conn: Arc<dyn Connector>, off: Arc<AtomicBool>, d: Delivery) -> (SubjectId, Outcome) {
    let Ctx { store, metrics, cfg, clock } = ctx;
    let budget = conn.budget();
    // The whole exchange, however many requests it takes, or a server that never answers.
    let res = match tokio::time::timeout(budget, conn.deliver(&d, clock.now())).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Retryable {
            after: None,
            message: format!("no answer within {}", humantime::format_duration(budget)),
        }),
    };
    let now = clock.now();
    let row = &d.row;
    let mut outcome = match &res {
        Ok(_) => Outcome::Delivered,
        Err(DeliveryError::Retryable { after, .. }) => Outcome::Retry(*after),
        Err(_) => Outcome::Other,
    };
    let recorded = match &res {
        Ok(done) => {
            async {
                // The remote id first: a crash between the two repeats the
                // event, which finds its remote ticket instead of making another.
                if let Some(r) = done.remote.as_ref().filter(|r| d.remote.as_ref() != Some(*r)) {
                    store.set_remote(row.subject, conn.name(), &r.id, r.status.as_deref()).await?;
                }
                store.outbox_delivered(row.id, now).await
            }
            .await
        }
        Err(e) => {
            let (reason, msg) = match e {
                DeliveryError::Retryable { message, .. } => ("retryable", message.as_str()),
                DeliveryError::Permanent(m) => ("permanent", m.as_str()),
                DeliveryError::Gone(m) => ("gone", m.as_str()),
            };
            metrics.outbox_failures.get_or_create(&ReasonLabel { reason }).inc();
            if matches!(e, DeliveryError::Gone(_)) {
                off.store(true, Ordering::Relaxed);
                error!(
                    helpdesk = conn.name(),
                    error = msg,
                    "the endpoint is gone (410); no more deliveries to it until restart"
                );
            }
            let next = after_failure(row, e, now, &cfg);
            if next.is_none() {
                metrics.outbox_dead.inc();
                warn!(helpdesk = conn.name(), event = %row.event_id, error = msg, "event dead-lettered");
            }
            store.outbox_failed(row.id, msg, next).await
        }
    };
    if res.is_ok() {
        metrics.outbox_delivered.inc();
        info!(helpdesk = conn.name(), event = %row.event_id, "delivered");
    }
    if let Err(e) = recorded {
        outcome = Outcome::Other;
        error!(error = %e, event = %row.event_id, "recording a delivery failed; it will be tried again");
    }
    (row.subject, outcome)
}
