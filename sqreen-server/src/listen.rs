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
//! | reading what a refused request still sends, after its answer | 4 MiB or 2 s | — |
//!
//! The two request timeouts are tower-http layers applied in
//! [`crate::Server::router`]; the rest is hyper's connection builder, which
//! `axum::serve` does not expose. Each connection's peer address is put in
//! the request's extensions as axum's [`ConnectInfo`], as
//! `into_make_service_with_connect_info` would.
//!
//! A request refused before its body was read (401, 413) closes its
//! connection. Closing a socket that still has unread bytes makes the
//! kernel reset it, and a reset can destroy the answer before the client
//! reads it: an agent would then see a network error instead of the 413
//! that tells it to split its batch. So a connection closes lingering, as
//! nginx does: it stops sending, then reads and discards what the client
//! still sends, up to [`LINGER_BYTES`] or [`LINGER_TIME`]; and such an
//! answer says `Connection: close`, so that the client does not send its
//! next request on a connection about to close.

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
/// Most bytes a closing connection reads and discards (see the module
/// docs): the largest batch an agent sends, so that an agent whose batch
/// the server refuses unread always gets the answer.
pub const LINGER_BYTES: usize = sqreen_protocol::limits::AGENT_BATCH_BYTES;
/// Longest a closing connection waits for the client to stop sending.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

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
            .serve_connection(
                TokioIo::new(Lingering::new(stream)),
                TowerToHyperService::new(service),
            );
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

/// Marks the refusal of a request that carried a body (a 4xx or 5xx answer
/// to a request with `Content-Length` > 0 or a chunked body) with
/// `Connection: close`: its body may be unread, so hyper closes the
/// connection after the answer, and the header tells the client not to send
/// another request on it (reused, it would find the connection closed
/// instead of an answer).
pub(crate) async fn close_after_refused_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header;
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let mut response = next.run(request).await;
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A TCP stream whose shutdown lingers (see the module docs): the write
/// side is shut, then what the peer still sends is read and discarded until
/// it closes, [`LINGER_BYTES`] have been read, or [`LINGER_TIME`] has passed.
struct Lingering {
    stream: tokio::net::TcpStream,
    /// Set once the write side is shut: the read side's remaining budget
    /// and deadline.
    linger: Option<(usize, std::pin::Pin<Box<tokio::time::Sleep>>)>,
}

impl Lingering {
    fn new(stream: tokio::net::TcpStream) -> Self {
        Self {
            stream,
            linger: None,
        }
    }
}

impl tokio::io::AsyncRead for Lingering {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Lingering {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        use tokio::io::AsyncRead;
        let this = self.get_mut();
        if this.linger.is_none() {
            match std::pin::Pin::new(&mut this.stream).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            this.linger = Some((LINGER_BYTES, Box::pin(tokio::time::sleep(LINGER_TIME))));
        }
        let Some((budget, deadline)) = &mut this.linger else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 8192];
        loop {
            if *budget == 0 || deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = tokio::io::ReadBuf::new(&mut scratch);
            match std::pin::Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                // The peer closed (or reset): nothing left to discard.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => *budget = budget.saturating_sub(buf.filled().len()),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
