//! The accept loop: HTTP/1.1 connections with bounded numbers, buffers and
//! waits, so that a client that connects and says nothing, or says a little
//! very slowly, costs a bounded share of the server.
//!
//! | bound | default | flag |
//! | --- | --- | --- |
//! | open connections | 1 024 (more wait in the kernel's backlog) | `--max-connections` |
//! | headers read, and idle keep-alive wait | 10 s, then the connection is closed | `--header-read-timeout` |
//! | header buffer | 64 KiB (larger heads: 431) | — |
//! | one request, from its head to its answer | 60 s (then 408) | `--request-timeout` |
//! | gap between two pieces of a request body | 10 s (then the request fails) | — |
//!
//! The two request timeouts are tower-http layers applied in
//! [`crate::Server::router`]; the rest is hyper's connection builder, which
//! `axum::serve` does not expose. Each connection's peer address is put in
//! the request's extensions as axum's [`ConnectInfo`], as
//! `into_make_service_with_connect_info` would.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Default most open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default time to read a request's head (and most idle time between two
/// requests of a keep-alive connection).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head hyper buffers.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection-level bounds (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Time allowed to read a request's head, and to wait idle for the next.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits up
/// to 10 s for the requests in flight.
///
/// # Errors
/// None today: accept errors (too many open files…) are logged and retried.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut full_logged = false;
    loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => {
                full_logged = false;
                p
            }
            Err(_) => {
                if !full_logged {
                    tracing::warn!(
                        event = "server.connections_full",
                        max = limits.max_connections,
                        "connection limit reached: new connections wait in the backlog"
                    );
                    full_logged = true;
                }
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and the like: wait rather than spin.
                    tracing::warn!(event = "server.accept_failed", error = %e,
                        "accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::http::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(remote));
                    request.map(Body::new)
                });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection.await {
                tracing::debug!(event = "server.connection_error", peer = %remote, error = %e,
                    "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!(event = "server.drain_timeout",
                "requests still in flight after 10 s: stopping anyway");
        }
    }
    Ok(())
}
