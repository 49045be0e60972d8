//! The HTTP server: a bounded number of connections, a deadline for each request's headers
//! (so an idle or slow client lets go of its connection), optional TLS, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use crate::clock::LogLimiter;

/// How the API serves (`[http]`).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Connections open at once; more are closed as they come.
    pub max_connections: usize,
    /// How long a client has to send a request's headers, the first or the next on a kept-alive
    /// connection; then its connection is closed.
    pub header_timeout: Duration,
    /// Serve HTTPS with this (read from `http.tls`'s PEM files when the config was).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig { max_connections: 1024, header_timeout: Duration::from_secs(10), tls: None }
    }
}

static REFUSED: LogLimiter = LogLimiter::new(10.0);

/// The longest a request may take, its body and its answer (a PDF report) included.
const REQUEST_DEADLINE: Duration = Duration::from_secs(120);

/// Serves `router` on `listener` until `stop`, then lets the requests in flight finish.
pub(crate) async fn serve(listener: TcpListener, router: Router, cfg: ServeConfig, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let acceptor = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, addr) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to be given back.
                    warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // At the cap, the newcomer is closed at once: the kernel's backlog and our file
        // descriptors stay bounded, and the idle ones go at their header deadline.
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if let Some(held) = REFUSED.allow() {
                warn!(%addr, max = cfg.max_connections, held_back = held, "HTTP connections at the cap; closing a new one");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let svc = tower::service_fn(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            let answer = router.clone().oneshot(req.map(axum::body::Body::new));
            // The whole request, its body and its answer, within a deadline: a client that
            // trickles a body does not hold its connection for ever.
            async move {
                match tokio::time::timeout(REQUEST_DEADLINE, answer).await {
                    Ok(r) => r,
                    Err(_) => Ok(axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        axum::Json(serde_json::json!({ "error": "the request took too long" })),
                    ))),
                }
            }
        });
        let svc = TowerToHyperService::new(svc);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(cfg.header_timeout).keep_alive(true);
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let header_timeout = cfg.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let result = match acceptor {
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), svc)).await,
                Some(a) => match tokio::time::timeout(header_timeout, a.accept(stream)).await {
                    Ok(Ok(tls)) => watcher.watch(builder.serve_connection(TokioIo::new(tls), svc)).await,
                    Ok(Err(e)) => {
                        debug!(%addr, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%addr, "TLS handshake timed out");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                debug!(%addr, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    // Requests in flight get a few seconds to finish.
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        warn!("HTTP requests still in flight at shutdown were cut off");
    }
}
