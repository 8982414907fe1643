//! HTTPS: a TLS accept loop handing each connection to the router.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::metrics::Metrics;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the TLS layer learnt about the client, put on each of its requests.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// It presented a certificate and the client CA verified it.
    pub client_cert: bool,
}

/// Serves until `shutdown` resolves. Failed handshakes are counted, not logged: scanners
/// and clients with the wrong CA should not fill the log.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                metrics.tls_failed();
                return;
            };
            // rustls has verified any certificate presented against the client CA.
            let peer = Peer {
                client_cert: tls.get_ref().1.peer_certificates().is_some(),
            };
            let service = hyper::service::service_fn(move |mut req| {
                req.extensions_mut().insert(peer);
                app.clone().call(req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
