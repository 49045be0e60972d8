//! A TCP proxy of the test's own in front of a real helpdesk, to take it
//! down, or to let requests through while swallowing the answers (a create
//! that takes effect but whose answer is lost).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Up,
    /// Every connection is closed at once, as if the helpdesk were down.
    Down,
    /// Requests reach the helpdesk, but the answers to POSTs never come back:
    /// a create takes effect and its answer is lost.
    SwallowPosts,
    /// The same for the answers to POSTs and PUTs: an update takes effect and its answer is lost.
    SwallowWrites,
}

pub(crate) struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, _) = watch::channel(Mode::Up);
        let mode = Arc::new(tx);
        let m = Arc::clone(&mode);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = m.subscribe();
                tokio::spawn(serve(client, upstream, rx));
            }
        });
        Proxy { addr, mode }
    }

    /// Switches mode; connections open under the old mode are cut.
    pub(crate) fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<Mode>) {
    let mode = *rx.borrow_and_update();
    if mode == Mode::Down {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let swallowing = AtomicBool::new(false);
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let write = buf[..n].starts_with(b"POST ") || buf[..n].starts_with(b"PUT ");
            if (mode == Mode::SwallowPosts && buf[..n].starts_with(b"POST ")) || (mode == Mode::SwallowWrites && write)
            {
                swallowing.store(true, Ordering::SeqCst);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !swallowing.load(Ordering::SeqCst) && cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = rx.changed() => {}
    }
}
