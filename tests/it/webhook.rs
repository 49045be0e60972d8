//! A webhook receiver of the test's own: it checks every signature with its
//! own HMAC, records what it got, and fails or stalls on command.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

pub(crate) const KEY: &[u8] = b"aftercare-test-signing-key-32byt";

pub(crate) fn secret() -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(KEY))
}

#[derive(Default)]
pub(crate) struct Receiver {
    /// Every request that carried a valid signature: (webhook-id, body).
    pub got: Mutex<Vec<(String, Value)>>,
    pub bad_signatures: AtomicUsize,
    /// Answer 503 with Retry-After: 1 to this many requests.
    pub fail_next: AtomicUsize,
    /// Hold the next request this many milliseconds before answering.
    pub stall_ms: AtomicU64,
}

impl Receiver {
    /// Distinct event ids received, in order of first receipt.
    pub(crate) fn ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (id, _) in self.got.lock().unwrap().iter() {
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
        out
    }
    /// The first body received for each distinct event.
    pub(crate) fn events(&self) -> Vec<Value> {
        let ids = self.ids();
        let got = self.got.lock().unwrap();
        ids.iter().filter_map(|id| got.iter().find(|(i, _)| i == id).map(|(_, b)| b.clone())).collect()
    }
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&body);
    let want = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    if sig != want {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, [("retry-after", "0")], "bad signature");
    }
    let stall = r.stall_ms.swap(0, Ordering::SeqCst);
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        r.got.lock().unwrap().push((id, v));
    }
    if stall > 0 {
        tokio::time::sleep(Duration::from_millis(stall)).await;
    }
    if r.fail_next.load(Ordering::SeqCst) > 0 {
        r.fail_next.fetch_sub(1, Ordering::SeqCst);
        // Not counted as received: take it back out.
        r.got.lock().unwrap().pop();
        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], "down for maintenance");
    }
    (StatusCode::OK, [("retry-after", "0")], "ok")
}

/// Starts a receiver on an ephemeral port.
pub(crate) async fn start() -> (SocketAddr, Arc<Receiver>) {
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(Arc::clone(&r));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, r)
}
