//! The embedded MQTT broker (rumqttd), for a daemon that needs no other server.
//!
//! rumqttd's `start()` blocks forever on its own threads and only logs a
//! port that is taken, so the port is checked here first and the broker
//! lives until the process exits.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "the embedded MQTT broker cannot listen on {addr}: {source}; set broker.listen to a free address, or port 0 for any"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the embedded MQTT broker thread could not start: {0}")]
    Thread(std::io::Error),
}

/// Finds the address to listen on: `addr` itself, or a free port when its port is 0.
pub fn reserve(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    let l = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    l.local_addr().map_err(|source| BrokerError::Bind { addr, source })
}

/// Starts rumqttd on `addr` (port 0: any free port) and returns the address it listens on.
pub fn start(addr: SocketAddr, max_payload: usize) -> Result<SocketAddr, BrokerError> {
    let addr = reserve(addr)?;
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: max_payload,
        max_inflight_count: 200,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server =
        ServerSettings { name: "v4".to_string(), listen: addr, tls: None, next_connection_delay_ms: 0, connections };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 20_010,
            max_outgoing_packet_count: 1000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "the embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    Ok(addr)
}
