//! The signed webhook connector: a JSON POST per event, signed with
//! HMAC-SHA256 in the headers of the Standard Webhooks convention
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over
//! `{id}.{timestamp}.{body}`). The event id is the same on every retry, so a
//! receiver deduplicates on it. See docs/WEBHOOK.md for the contract.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::tickets::State;

use super::{BoxFuture, Connector, Delivered, Delivery, DeliveryError, Subject, http_outcome};

pub(crate) struct Webhook {
    name: String,
    url: String,
    secret: Option<Vec<u8>>,
    priorities: [String; 3],
    client: reqwest::Client,
    timeout: Duration,
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub(crate) fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length (long ones are hashed), so this never fails;
    // an empty key (refused by config) signs nothing a receiver would accept.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return String::new() };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// How far a signed request's timestamp may be from our clock, seconds.
pub(crate) const TOLERANCE_S: i64 = 300;

/// Checks a request a helpdesk sends in, signed as ours are: `id`, a `timestamp` within
/// [`TOLERANCE_S`] of `now` (seconds), and one of the space-separated `signatures` made with
/// `key` over them and `body`. `Err` says what is wrong, for a 401.
pub(crate) fn verify(
    key: &[u8],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    let ts: i64 = timestamp.parse().map_err(|_| "missing or bad webhook-timestamp")?;
    if (now - ts).abs() > TOLERANCE_S {
        return Err("webhook-timestamp is more than 5 minutes from our clock");
    }
    let want = sign(key, id, ts, body);
    // Compared in constant time, so that timing tells nothing of the signature we expect.
    let matches =
        signatures.split_whitespace().fold(false, |ok, s| ok | bool::from(s.as_bytes().ct_eq(want.as_bytes())));
    if id.is_empty() || !matches {
        return Err("bad webhook-signature");
    }
    Ok(())
}

/// The ticket state a helpdesk's `status` asks for: a state's name, or `reopened`.
pub(crate) fn state_of(status: &str) -> Result<State, String> {
    match status {
        "reopened" => Ok(State::Open),
        other => other.parse(),
    }
}

/// The JSON body of an event, in the spirit of PagerDuty Events v2.
pub(crate) fn body(d: &Delivery, priorities: &[String; 3]) -> serde_json::Value {
    let r = &d.row;
    let mut v = json!({
        "priority": d.subject.priority(priorities),
        "id": r.event_id,
        "type": format!("{}.{}", d.subject.noun(), r.event),
        "timestamp": r.created_at,
        "sequence": r.seq,
        "dedup_key": d.subject.reference(),
        "action": r.action,
        "event": { "name": r.event, "note": r.note, "at": r.created_at, "internal": r.internal },
    });
    v[d.subject.noun()] = match &d.subject {
        Subject::Ticket(t) => json!(t),
        Subject::WorkOrder(w) => json!(w),
    };
    v
}

impl Webhook {
    pub(crate) fn new(
        name: &str,
        url: &str,
        secret: Option<Vec<u8>>,
        timeout: Duration,
        priorities: [String; 3],
    ) -> anyhow::Result<Webhook> {
        // The daemon installs ring as rustls' provider at start; a library user may not have.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = super::http_client(timeout)?;
        Ok(Webhook { name: name.to_string(), url: url.to_string(), secret, priorities, client, timeout })
    }
}

impl Connector for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    /// One request: its timeout.
    fn budget(&self) -> Duration {
        self.timeout
    }

    fn deliver<'a>(&'a self, d: &'a Delivery, now: DateTime<Utc>) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            let body =
                serde_json::to_vec(&body(d, &self.priorities)).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
            let ts = now.timestamp();
            let mut req = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("webhook-id", &d.row.event_id)
                .header("webhook-timestamp", ts.to_string());
            if let Some(key) = &self.secret {
                req = req.header("webhook-signature", sign(key, &d.row.event_id, ts, &body));
            }
            // The URL is shown without its query, which may hold a token.
            let resp = req.body(body).send().await.map_err(|e| super::unreachable("the webhook", e))?;
            http_outcome(resp).await.map(|_| Delivered::default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_is_verified_within_its_window_only() {
        let (key, body) = (b"secret".as_slice(), br#"{"ticket":1,"status":"resolved"}"#.as_slice());
        let sig = sign(key, "msg_1", 1_000, body);
        assert_eq!(verify(key, "msg_1", "1000", &format!("v1,other {sig}"), body, 1_100), Ok(()));
        assert_eq!(
            verify(key, "msg_1", "1000", &sig, body, 1_000 + TOLERANCE_S + 1),
            Err("webhook-timestamp is more than 5 minutes from our clock")
        );
        assert_eq!(verify(key, "msg_1", "soon", &sig, body, 1_000), Err("missing or bad webhook-timestamp"));
        assert_eq!(verify(key, "msg_2", "1000", &sig, body, 1_000), Err("bad webhook-signature"));
        assert_eq!(verify(key, "msg_1", "1000", &sig, b"{}", 1_000), Err("bad webhook-signature"));
        assert_eq!(verify(b"other", "msg_1", "1000", &sig, body, 1_000), Err("bad webhook-signature"));
    }

    #[test]
    fn a_helpdesk_status_is_a_state_or_reopened() {
        assert_eq!(state_of("reopened"), Ok(State::Open));
        assert_eq!(state_of("resolved"), Ok(State::Resolved));
        assert!(state_of("done").is_err());
    }

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        let key = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
