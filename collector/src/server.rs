//! HTTPS: a TLS accept loop handing each connection to the router, with every connection
//! bounded in time and in number.
//!
//! - A TLS handshake has [`HANDSHAKE_TIMEOUT`]; a request's headers, and the wait for the
//!   next request on a kept-alive connection, have [`Limits::header_timeout`] (hyper's
//!   header read timer covers both; 75 s by default). Agents send a heartbeat every 60 s,
//!   so their connections are reused; a client that sends half a request is dropped.
//! - At most [`Limits::max_connections`] are open, below the file limit. At the cap, the
//!   oldest connection not serving a request is closed for the new one: a flood of idle or
//!   half-sent connections cannot keep a real client out, it only pushes older idle ones
//!   out (an agent whose idle connection was closed opens another at its next heartbeat).
//! - Out of file descriptors (`EMFILE`), the accept loop closes an idle connection and
//!   backs off instead of spinning, and says so once per episode.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::metrics::Metrics;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors kept for the store, logs, the inventory and outgoing notifications.
const RESERVED_FDS: u64 = 32;
/// The default cap on open connections when the file limit is higher.
const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// What the TLS layer learnt about the client, put on each of its requests.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// It presented a certificate and the client CA verified it.
    pub client_cert: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Limits {
    /// `wanted` (or the default), held below this process's file limit.
    pub fn new(wanted: Option<usize>, header_timeout: Duration) -> Limits {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let room = nofile.saturating_sub(RESERVED_FDS).max(16);
        let max = wanted
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .min(usize::try_from(room).unwrap_or(usize::MAX))
            .max(1);
        Limits {
            max_connections: max,
            header_timeout,
        }
    }
}

/// The open connections, so that one can be closed to make room.
#[derive(Default)]
pub struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
    evicted: AtomicU64,
}

struct Open {
    since: Instant,
    /// Requests being served on it.
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

impl Connections {
    pub fn count(&self) -> usize {
        crate::lock(&self.open).len()
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Closes the oldest connection serving no request; false if every one is busy. It is
    /// forgotten at once; its task drops it at its next turn.
    fn evict_one(&self) -> bool {
        let mut open = crate::lock(&self.open);
        let oldest = open
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|(_, c)| c.since)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn add(&self, limit: usize) -> (u64, Arc<AtomicUsize>, Arc<Notify>) {
        if self.count() >= limit {
            self.evict_one();
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let busy = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        crate::lock(&self.open).insert(
            id,
            Open {
                since: Instant::now(),
                busy: busy.clone(),
                close: close.clone(),
            },
        );
        (id, busy, close)
    }

    fn remove(&self, id: u64) {
        crate::lock(&self.open).remove(&id);
    }
}

/// Serves until `shutdown` resolves. Failed handshakes are counted, not logged: scanners
/// and clients with the wrong CA should not fill the log.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    metrics: Arc<Metrics>,
    limits: Limits,
    conns: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    use rustix::io::Errno;
                    let out_of_fds = e.raw_os_error().is_some_and(|n| {
                        n == Errno::MFILE.raw_os_error() || n == Errno::NFILE.raw_os_error()
                    });
                    if backoff.is_zero() {
                        log::warn!("accept failed: {e}{}; backing off", if out_of_fds {
                            " (out of file descriptors: raise LimitNOFILE or lower max_connections)"
                        } else { "" });
                    }
                    if out_of_fds {
                        conns.evict_one();
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        if !backoff.is_zero() {
            log::info!("accepting connections again");
            backoff = Duration::ZERO;
        }
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let metrics = metrics.clone();
        let (id, busy, close) = conns.add(limits.max_connections);
        let conns = conns.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(tcp, acceptor, app, metrics, busy, limits.header_timeout) => {}
                _ = close.notified() => {}
            }
            conns.remove(id);
        });
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    app: Router,
    metrics: Arc<Metrics>,
    busy: Arc<AtomicUsize>,
    header_timeout: Duration,
) {
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
        metrics.tls_failed();
        return;
    };
    // rustls has verified any certificate presented against the client CA.
    let peer = Peer {
        client_cert: tls.get_ref().1.peer_certificates().is_some(),
    };
    let service = hyper::service::service_fn(move |mut req| {
        req.extensions_mut().insert(peer);
        let busy = busy.clone();
        busy.fetch_add(1, Ordering::Relaxed);
        let call = app.clone().call(req);
        async move {
            let r = call.await;
            busy.fetch_sub(1, Ordering::Relaxed);
            r
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service)
        .await;
}
