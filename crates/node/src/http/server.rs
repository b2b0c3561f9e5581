//! Accepting connections within bounds. `axum::serve` gives hyper no timer, which silently turns
//! off its header-read timeout, and it accepts every connection: one client holding thousands
//! of half-sent requests would exhaust the node's file descriptors (slowloris). Here every
//! connection must send its request head within `header_timeout` (idle keep-alive connections
//! included), and the node holds at most `max_connections` of them, `client_connections` per
//! client address. A connection beyond a limit is closed at once.

use crate::scheduler::PerClient;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How many connections, and how long a request head may take.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub client_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until the listener fails for good.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_client = Arc::new(PerClient::new(limits.client_connections));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: back off and go on.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!("refused a connection from {remote}: the node is at its limit");
            continue;
        };
        let Some(client) = per_client.enter(remote.ip()) else {
            tracing::debug!("refused a connection from {remote}: that client is at its limit");
            continue;
        };
        let service = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                req
            });
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _held = (permit, client);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
            if let Err(e) = served {
                tracing::debug!("connection from {remote} ended: {e}");
            }
        });
    }
}
