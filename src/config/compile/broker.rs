//! The `[broker]` table: the embedded broker or the client of an external one.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::{Report, parse_addr, secret};
use crate::config::raw::RawBroker;
use crate::ingest::mqtt::{BrokerConfig, BrokerMode};

pub(super) fn compile_broker(b: RawBroker, base: &Path, r: &mut Report<'_>) -> Option<BrokerConfig> {
    let embedded = b.embedded.as_ref().map(|e| *e.get_ref());
    let password = match &b.password {
        Some(p) => Some(secret(p, base, r)?),
        None => None,
    };
    let client_cert = match (&b.cert_file, &b.key_file) {
        (Some(c), Some(k)) => Some((base.join(c.get_ref()), base.join(k))),
        (None, None) => None,
        (Some(c), None) => {
            r.at(c.span(), "broker.cert_file needs broker.key_file, the certificate's private key");
            None
        }
        (None, Some(_)) => {
            r.at(0..0, "broker.key_file needs broker.cert_file");
            None
        }
    };
    let mode = match (embedded, &b.url) {
        (Some(true), Some(url)) => {
            r.at(url.span(), "broker.embedded = true and broker.url are both set; remove url, or set embedded = false");
            None
        }
        (Some(false), None) => {
            let span = b.embedded.as_ref().map_or(0..0, |e| e.span());
            r.at(span, "broker.embedded = false needs broker.url, such as url = \"mqtt://127.0.0.1:1883\"");
            None
        }
        (_, Some(url)) => parse_broker_url(url, r).map(|(tls, host, port)| BrokerMode::External {
            tls,
            host,
            port,
            username: b.username.clone(),
            password: password.clone(),
            ca_file: b.ca_file.as_ref().map(|f| base.join(f)),
            client_cert: client_cert.clone(),
        }),
        (_, None) => {
            let listen = match &b.listen {
                Some(l) => parse_addr(l, r),
                None => Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            };
            listen.map(|listen| BrokerMode::Embedded { listen })
        }
    };
    if let (Some(BrokerMode::External { tls: false, client_cert: Some(_), .. }), Some(c)) = (&mode, &b.cert_file) {
        r.at(c.span(), "a client certificate is sent over TLS only: write the url as mqtts://");
    }
    if let (Some(BrokerMode::External { .. }), Some(l)) = (&mode, &b.listen) {
        r.at(l.span(), "broker.listen is for the embedded broker; with broker.url, remove it");
    }
    let tls = match (&b.tls, &mode) {
        (Some(t), Some(BrokerMode::External { .. })) => {
            r.at(t.span(), "broker.tls is for the embedded broker; an external one is reached by an mqtts:// url");
            None
        }
        (Some(t), _) => {
            let (cert, key) = (base.join(&t.get_ref().cert), base.join(&t.get_ref().key));
            crate::tls::server_config(&cert, &key, &[]).map_err(|e| r.at(t.span(), format!("broker.tls: {e}"))).ok()
        }
        (None, _) => None,
    };
    let client_id = b.client_id.filter(|c| !c.is_empty());
    let max_connections = match &b.max_connections {
        Some(n) if *n.get_ref() == 0 => {
            r.at(n.span(), "max_connections must be 1 or more");
            1
        }
        Some(n) => *n.get_ref(),
        None => 20_000,
    };
    Some(BrokerConfig {
        mode: mode?,
        client_id,
        keep_alive: b.keep_alive.map_or(Duration::from_secs(30), |d| d.0),
        unhealthy_after: b.unhealthy_after.map_or(Duration::from_secs(60), |d| d.0),
        max_connections,
        tls,
        auth: crate::ingest::mqtt::MqttAuth { allow_anonymous: b.allow_anonymous.unwrap_or(false), users: Vec::new() },
    })
}

pub(super) fn parse_broker_url(url: &Spanned<String>, r: &mut Report<'_>) -> Option<(bool, String, u16)> {
    let s = url.get_ref();
    let (tls, rest) = if let Some(rest) = s.strip_prefix("mqtt://") {
        (false, rest)
    } else if let Some(rest) = s.strip_prefix("mqtts://") {
        (true, rest)
    } else {
        r.at(
            url.span(),
            format!("broker url `{s}` must start with mqtt:// or mqtts://, as in \"mqtt://127.0.0.1:1883\""),
        );
        return None;
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') {
        r.at(url.span(), "put credentials in broker.username and broker.password, not in the url");
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => {
                r.at(url.span(), format!("`{p}` is not a port number in broker url `{s}`"));
                return None;
            }
        },
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        r.at(url.span(), format!("broker url `{s}` has no host"));
        return None;
    }
    Some((tls, host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}
