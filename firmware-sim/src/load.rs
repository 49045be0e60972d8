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
    /// 0 or 1: the QoS of every publish.
    pub qos: u8,
    /// The share of messages, in percent, whose `temp_c` is over 70 (75.0; 31.4 otherwise),
    /// chosen by a hash of the message number so that every run sends the same ones.
    pub spike_pct: f64,
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub messages: u64,
    pub seconds: f64,
    pub payload_bytes: usize,
    /// When the faulty message was handed to the client, as wall-clock time.
    pub fault_sent: Option<chrono::DateTime<Utc>>,
    pub fault_device: Option<String>,
    /// How many times a device's `temp_c` went over 70 from at or under it (or from its first
    /// message): the raises of a rule `temp_c > 70` with any lower clear bound and no hold.
    pub raises: u64,
}

/// A recorder's telemetry, about 190 bytes like the fleet's.
fn payload(ts: &str, n: u64, fault: bool, hot: bool) -> String {
    let storage = 40.0 + (n % 400) as f64 / 10.0;
    let flags = u8::from(fault);
    let temp = if hot { 75.0 } else { 31.4 };
    format!(
        r#"{{"ts":"{ts}","metrics":{{"storage_used_pct":{storage:.1},"recording":{},"status_flags":{flags},"battery_pct":97.5,"charging":true,"clock_offset_s":0.12,"temp_c":{temp:.1}}}}}"#,
        !fault
    )
}

/// Whether message `n` is one of the `pct` percent that run hot (splitmix64 of `n`).
pub fn hot(n: u64, pct: f64) -> bool {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z % 1_000_000) as f64) < pct * 10_000.0
}

/// Publishes `messages` messages round-robin over the devices and returns how long it took.
/// Message `n` is device `n % devices`'s; a device's messages all go over one connection
/// (device `d` over connection `d % connections`), so that they arrive in order, with
/// timestamps a second apart that end at the start of the run (never in the future).
pub async fn run(o: LoadOptions) -> anyhow::Result<LoadReport> {
    let conns = o.connections.max(1).min(o.devices.max(1));
    let mut handles = Vec::new();
    let span = o.messages.div_ceil(o.devices.max(1) as u64) as i64;
    #[allow(clippy::disallowed_methods)]
    let base = Utc::now() - TimeDelta::seconds(span);
    let qos = if o.qos >= 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
    let started = Instant::now();
    let mut sizes = 0;
    for c in 0..conns {
        let mut mo = MqttOptions::new(format!("load-{c}-{}", std::process::id()), &o.host, o.port);
        mo.set_keep_alive(Duration::from_secs(30));
        mo.set_max_packet_size(1 << 20, 1 << 20);
        mo.set_inflight(1000);
        let (client, mut el) = AsyncClient::new(mo, 10_000);
        let mut net = el.network_options();
        net.set_tcp_nodelay(true);
        el.set_network_options(net);
        let poller = tokio::spawn(async move {
            let mut leaving = false;
            loop {
                match el.poll().await {
                    // Read on until the broker closes: a socket closed with acknowledgements
                    // unread is reset, and the broker may drop the publishes it had not read yet.
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => leaving = true,
                    Ok(Event::Incoming(Packet::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) if leaving => break,
                    Err(e) => {
                        eprintln!("load: connection error: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let o2 = o.clone();
        sizes = payload("2026-01-01T00:00:00.000Z", 0, false, false).len();
        handles.push(tokio::spawn(async move {
            let mut fault_sent = None;
            let pace = (o2.rate > 0).then(|| o2.rate as f64 / conns as f64);
            let t0 = Instant::now();
            let devices = o2.devices.max(1) as u64;
            // Whether each of this connection's devices is over the threshold now.
            let mut over = vec![false; o2.devices.max(1).div_ceil(conns)];
            let (mut raises, mut sent) = (0u64, 0u64);
            for n in 0..o2.messages {
                let dev = (n % devices) as usize;
                if dev % conns != c {
                    continue;
                }
                if let Some(per_sec) = pace
                    && sent % 64 == 0
                {
                    let due = t0 + Duration::from_secs_f64(sent as f64 / per_sec);
                    tokio::time::sleep_until(due).await;
                }
                sent += 1;
                // From its onset the fault stays: every later message of that device carries it.
                let fault = o2.fault_at.is_some_and(|f| n >= f && dev as u64 == f % devices);
                let is_hot = o2.spike_pct > 0.0 && hot(n, o2.spike_pct);
                let slot = &mut over[dev / conns];
                if is_hot && !*slot {
                    raises += 1;
                }
                *slot = is_hot;
                let ts = (base + TimeDelta::milliseconds((n / devices) as i64 * 1000))
                    .to_rfc3339_opts(SecondsFormat::Millis, true);
                let topic = format!("{}/{}/{}{:05}/telemetry", o2.prefix, o2.site, o2.id_prefix, dev);
                if fault && fault_sent.is_none() {
                    #[allow(clippy::disallowed_methods)]
                    let sent = Utc::now();
                    fault_sent = Some((sent, format!("{}{dev:05}", o2.id_prefix)));
                }
                if client.publish(topic, qos, false, payload(&ts, n, fault, is_hot)).await.is_err() {
                    break;
                }
            }
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(30), poller).await;
            (fault_sent, raises, sent)
        }));
    }
    let (mut fault, mut raises, mut sent) = (None, 0, 0);
    for h in handles {
        let (f, r, s) = h.await?;
        if f.is_some() {
            fault = f;
        }
        raises += r;
        sent += s;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(LoadReport {
        messages: sent,
        seconds,
        payload_bytes: sizes,
        fault_sent: fault.as_ref().map(|f| f.0),
        fault_device: fault.map(|f| f.1),
        raises,
    })
}
