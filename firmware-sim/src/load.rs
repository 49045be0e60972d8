//! Load generation: many devices' telemetry over a few connections, as fast
//! as the broker takes it, for benchmarks. One device's message can carry a
//! fault (a storage failure flag) so that the fault-to-ticket time is measured under load.

use std::time::Duration;

use chrono::{SecondsFormat, TimeDelta, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub host: String,
    pub port: u16,
    pub prefix: String,
    pub site: String,
    /// Device ids are `{id_prefix}{n:05}` for n in 0..devices.
    pub id_prefix: String,
    pub devices: usize,
    pub messages: u64,
    pub connections: usize,
    /// Messages per second over all connections; 0 for as fast as the broker takes them.
    pub rate: u64,
    /// The message number (0-based) from which one device's messages carry a storage failure.
    pub fault_at: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub messages: u64,
    pub seconds: f64,
    pub payload_bytes: usize,
    /// When the faulty message was handed to the client, as wall-clock time.
    pub fault_sent: Option<chrono::DateTime<Utc>>,
    pub fault_device: Option<String>,
}

/// A recorder's telemetry, about 190 bytes like the fleet's.
fn payload(ts: &str, n: u64, fault: bool) -> String {
    let storage = 40.0 + (n % 400) as f64 / 10.0;
    let flags = u8::from(fault);
    format!(
        r#"{{"ts":"{ts}","metrics":{{"storage_used_pct":{storage:.1},"recording":{},"status_flags":{flags},"battery_pct":97.5,"charging":true,"clock_offset_s":0.12,"temp_c":31.4}}}}"#,
        !fault
    )
}

/// Publishes `messages` messages round-robin over the devices and returns how long it took.
pub async fn run(o: LoadOptions) -> anyhow::Result<LoadReport> {
    let conns = o.connections.max(1);
    let per_conn = o.messages / conns as u64;
    let mut handles = Vec::new();
    #[allow(clippy::disallowed_methods)]
    let base = Utc::now();
    let started = Instant::now();
    let mut sizes = 0;
    for c in 0..conns {
        let mut mo = MqttOptions::new(format!("load-{c}-{}", std::process::id()), &o.host, o.port);
        mo.set_keep_alive(Duration::from_secs(30));
        mo.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(mo, 10_000);
        let mut net = el.network_options();
        net.set_tcp_nodelay(true);
        el.set_network_options(net);
        let poller = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(Event::Incoming(Packet::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("load: connection error: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let o2 = o.clone();
        sizes = payload("2026-01-01T00:00:00.000Z", 0, false).len();
        handles.push(tokio::spawn(async move {
            let mut fault_sent = None;
            let pace = (o2.rate > 0).then(|| o2.rate as f64 / conns as f64);
            let t0 = Instant::now();
            for i in 0..per_conn {
                if let Some(per_sec) = pace
                    && i % 64 == 0
                {
                    let due = t0 + Duration::from_secs_f64(i as f64 / per_sec);
                    tokio::time::sleep_until(due).await;
                }
                let n = i * conns as u64 + c as u64;
                let dev = (n % o2.devices as u64) as usize;
                // From its onset the fault stays: every later message of that device carries it.
                let fault = o2.fault_at.is_some_and(|f| n >= f && dev as u64 == f % o2.devices as u64);
                let ts = (base + TimeDelta::milliseconds((n / o2.devices as u64) as i64 * 1000))
                    .to_rfc3339_opts(SecondsFormat::Millis, true);
                let topic = format!("{}/{}/{}{:05}/telemetry", o2.prefix, o2.site, o2.id_prefix, dev);
                if fault && fault_sent.is_none() {
                    #[allow(clippy::disallowed_methods)]
                    let sent = Utc::now();
                    fault_sent = Some((sent, format!("{}{dev:05}", o2.id_prefix)));
                }
                if client.publish(topic, QoS::AtMostOnce, false, payload(&ts, n, fault)).await.is_err() {
                    break;
                }
            }
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(30), poller).await;
            fault_sent
        }));
    }
    let mut fault = None;
    for h in handles {
        if let Some(f) = h.await? {
            fault = Some(f);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(LoadReport {
        messages: per_conn * conns as u64,
        seconds,
        payload_bytes: sizes,
        fault_sent: fault.as_ref().map(|f| f.0),
        fault_device: fault.map(|f| f.1),
    })
}
