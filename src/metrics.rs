//! The daemon's own metrics, served as Prometheus text on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceReasonLabel {
    pub device: String,
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub received: Counter,
    pub accepted: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub tickets_opened: Family<TierLabel, Counter>,
    pub ticket_events: Family<EventLabel, Counter>,
    pub rule_eval_seconds: Histogram,
    pub fault_to_ticket_seconds: Histogram,
    pub ticket_batch_seconds: Histogram,
    pub mqtt_connected: Gauge,
    pub mqtt_connections: Counter,
    pub ingest_waits: Counter,
    pub ingest_wait_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    pub broker_connections: Gauge,
    pub broker_connections_total: Counter,
    pub broker_refused: Family<ReasonLabel, Counter>,
    pub broker_dropped: Counter,
    pub broker_skipped: Counter,
    pub broker_retained_refused: Counter,
    pub store_errors: Counter,
    pub calendar_gaps: Counter,
    pub outbox_delivered: Counter,
    pub outbox_failures: Family<ReasonLabel, Counter>,
    pub outbox_dead: Counter,
    pub modbus_polls: Family<ResultLabel, Counter>,
    pub modbus_requests: Counter,
    pub modbus_failures: Family<DeviceReasonLabel, Counter>,
    pub modbus_poll_seconds: Histogram,
    pub history_dropped: Counter,
    pub influx_lines_spooled: Counter,
    pub influx_lines_written: Counter,
    pub influx_lines_dropped: Counter,
    pub influx_refused_batches: Counter,
    pub influx_failed_attempts: Counter,
    pub influx_spool_dropped_bytes: Counter,
    pub influx_spool_torn_frames: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Fine enough to read a p99 from: 1 ms steps to 10 ms, then about 1.25x each, to 10 s.
const FAULT_TO_TICKET_BUCKETS: [f64; 30] = [
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010, 0.0125, 0.015, 0.0175, 0.020, 0.025,
    0.030, 0.040, 0.050, 0.065, 0.080, 0.100, 0.150, 0.200, 0.300, 0.500, 1.0, 2.0, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aftercare");
        let m = Metrics {
            received: Counter::default(),
            accepted: Counter::default(),
            rejected: Family::default(),
            tickets_opened: Family::default(),
            ticket_events: Family::default(),
            rule_eval_seconds: Histogram::new(exponential_buckets(1e-7, 4.0, 10)),
            fault_to_ticket_seconds: Histogram::new(FAULT_TO_TICKET_BUCKETS.iter().copied()),
            ticket_batch_seconds: Histogram::new(FAULT_TO_TICKET_BUCKETS.iter().copied()),
            mqtt_connected: Gauge::default(),
            mqtt_connections: Counter::default(),
            ingest_waits: Counter::default(),
            ingest_wait_seconds: Counter::default(),
            broker_connections: Gauge::default(),
            broker_connections_total: Counter::default(),
            broker_refused: Family::default(),
            broker_dropped: Counter::default(),
            broker_skipped: Counter::default(),
            broker_retained_refused: Counter::default(),
            store_errors: Counter::default(),
            calendar_gaps: Counter::default(),
            outbox_delivered: Counter::default(),
            outbox_failures: Family::default(),
            outbox_dead: Counter::default(),
            modbus_polls: Family::default(),
            modbus_requests: Counter::default(),
            modbus_failures: Family::default(),
            modbus_poll_seconds: Histogram::new(exponential_buckets(1e-4, 2.5, 14)),
            history_dropped: Counter::default(),
            influx_lines_spooled: Counter::default(),
            influx_lines_written: Counter::default(),
            influx_lines_dropped: Counter::default(),
            influx_refused_batches: Counter::default(),
            influx_failed_attempts: Counter::default(),
            influx_spool_dropped_bytes: Counter::default(),
            influx_spool_torn_frames: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("messages_received", "MQTT messages received from the broker", m.received.clone());
        registry.register("messages_accepted", "Messages parsed and applied to device state", m.accepted.clone());
        registry.register("messages_rejected", "Messages dropped, by reason", m.rejected.clone());
        registry.register("tickets_opened", "Tickets opened, by tier", m.tickets_opened.clone());
        registry.register(
            "ticket_events",
            "Fault events applied to tickets: opened, recurred, reopened, recovered, promoted",
            m.ticket_events.clone(),
        );
        registry.register(
            "rule_eval_seconds",
            "Time to parse one message and evaluate its device's rules (per-batch mean)",
            m.rule_eval_seconds.clone(),
        );
        registry.register(
            "fault_to_ticket_seconds",
            "Time from the message that raised a fault to its ticket (opened, recurred or reopened) being committed",
            m.fault_to_ticket_seconds.clone(),
        );
        registry.register(
            "ticket_batch_seconds",
            "Time the ticket writer took to commit one batch of fault events (retries included)",
            m.ticket_batch_seconds.clone(),
        );
        registry.register("mqtt_connected", "1 while the MQTT client is connected", m.mqtt_connected.clone());
        registry.register(
            "mqtt_connections",
            "MQTT connections made (reconnects included)",
            m.mqtt_connections.clone(),
        );
        registry.register(
            "ingest_waits",
            "Times ingest waited for room in a full shard queue (the broker held the messages meanwhile)",
            m.ingest_waits.clone(),
        );
        registry.register(
            "ingest_wait_seconds",
            "Time ingest spent waiting for room in full shard queues",
            m.ingest_wait_seconds.clone(),
        );
        registry.register(
            "broker_connections",
            "Clients connected to the embedded MQTT broker",
            m.broker_connections.clone(),
        );
        registry.register(
            "broker_accepted_connections",
            "Client connections the embedded MQTT broker accepted",
            m.broker_connections_total.clone(),
        );
        registry.register(
            "broker_refused",
            "Client connections the embedded MQTT broker refused or closed, by reason",
            m.broker_refused.clone(),
        );
        registry.register(
            "broker_dropped",
            "Messages the embedded MQTT broker dropped for a subscriber whose queue was full",
            m.broker_dropped.clone(),
        );
        registry.register(
            "broker_skipped",
            "Oversized messages the embedded MQTT broker skipped on topics outside the prefix",
            m.broker_skipped.clone(),
        );
        registry.register(
            "broker_retained_refused",
            "Retained messages the embedded MQTT broker did not keep (over its retained bytes)",
            m.broker_retained_refused.clone(),
        );
        registry.register("store_errors", "Failed store transactions (retried)", m.store_errors.clone());
        registry.register(
            "calendar_gaps",
            "Tickets whose working-day or business-hour clock ran past the years its calendar knows",
            m.calendar_gaps.clone(),
        );
        registry.register("outbox_delivered", "Helpdesk events delivered", m.outbox_delivered.clone());
        registry.register(
            "outbox_failures",
            "Failed helpdesk deliveries, by kind: retryable, permanent, gone",
            m.outbox_failures.clone(),
        );
        registry.register("outbox_dead", "Helpdesk events dead-lettered", m.outbox_dead.clone());
        registry.register(
            "modbus_polls",
            "Modbus polls, by result: ok (some answer) or failed",
            m.modbus_polls.clone(),
        );
        registry.register("modbus_requests", "Modbus read requests sent", m.modbus_requests.clone());
        registry.register(
            "modbus_failures",
            "Failed Modbus requests, by device and reason (timeout, connect, exception_NN, garbage, short_response, backoff)",
            m.modbus_failures.clone(),
        );
        registry.register("modbus_poll_seconds", "Time to poll one Modbus device", m.modbus_poll_seconds.clone());
        registry.register(
            "history_dropped",
            "Partial-hour rollups dropped because the history writer fell behind",
            m.history_dropped.clone(),
        );
        registry.register(
            "influx_lines_spooled",
            "Telemetry lines written to the InfluxDB spool",
            m.influx_lines_spooled.clone(),
        );
        registry.register(
            "influx_lines_written",
            "Telemetry lines the InfluxDB server accepted",
            m.influx_lines_written.clone(),
        );
        registry.register(
            "influx_lines_dropped",
            "Telemetry lines lost before the spool (its queue full, or the disk failing)",
            m.influx_lines_dropped.clone(),
        );
        registry.register(
            "influx_refused_batches",
            "Batches the InfluxDB server refused for good (4xx), skipped",
            m.influx_refused_batches.clone(),
        );
        registry.register(
            "influx_failed_attempts",
            "Failed attempts to write a batch to InfluxDB (retried)",
            m.influx_failed_attempts.clone(),
        );
        registry.register(
            "influx_spool_dropped_bytes",
            "Unsent spool bytes deleted because the spool was over its quota",
            m.influx_spool_dropped_bytes.clone(),
        );
        registry.register(
            "influx_spool_torn_frames",
            "Torn or corrupt spool frames skipped",
            m.influx_spool_torn_frames.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn modbus_failure(&self, device: &str, reason: &str) {
        self.modbus_failures.get_or_create(&DeviceReasonLabel { device: device.into(), reason: reason.into() }).inc();
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The registry as OpenMetrics text (`application/openmetrics-text; version=1.0.0`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The registry as Prometheus text (`text/plain; version=0.0.4`), for scrapers that do
    /// not ask for OpenMetrics.
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode())
    }
}

/// OpenMetrics text → Prometheus text format 0.0.4. The two differ, for what this registry
/// holds, in three ways: a counter family is named without `_total` in OpenMetrics' HELP and
/// TYPE lines but with it in 0.0.4's (where the samples' name must match); `# UNIT` lines do
/// not exist in 0.0.4; and 0.0.4 has no `# EOF`.
pub fn to_prometheus_text(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    // HELP comes before TYPE: hold it until TYPE says whether the family is a counter.
    let mut help: Option<(&str, &str)> = None;
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let suffix = if kind == "counter" && !name.ends_with("_total") { "_total" } else { "" };
            if let Some((h, text)) = help.take() {
                let s = if h == name { suffix } else { "" };
                out.push_str(&format!("# HELP {h}{s} {text}\n"));
            }
            let kind = match kind {
                "counter" | "gauge" | "histogram" | "summary" => kind,
                _ => "untyped",
            };
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if let Some((h, text)) = help.take() {
            out.push_str(&format!("# HELP {h} {text}\n"));
        }
        if line.starts_with("# UNIT ") || line == "# EOF" || line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
