//! [`SqreenService`]: the wrapped app as a tower `Service` whose request
//! bodies are copied while they stream to the routes, so that routes
//! reading bodies with warp's own filters (`warp::body::json()`, …) work
//! unchanged with body capture on; and [`SqreenService::serve`], which runs
//! it the way `warp::serve` runs a filter.
//!
//! Why a service: a warp filter can take the request body but never put it
//! back, and `warp::serve` accepts only filters. So the copy happens below
//! warp, on the body itself: when the agent wants the body (a form or JSON
//! body with a declared length within `body_capture_limit`), the service
//! wraps it in a [`TappedBody`] that keeps a copy of the bytes the route
//! reads, and the wrapper attaches the copy to the request's record when
//! the route has read the whole body. Nothing is buffered ahead of the
//! route, and the route gets every byte as sent.
//!
//! warp's `warp::addr::remote()` only works under `warp::serve`; this
//! service hands the wrapper the peer address itself
//! ([`SqreenService::peer`]), so the client IP is right either way.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use warp::http::Request;
use warp::http::header::{CONTENT_LENGTH, CONTENT_TYPE};

use sqreen_core::LazyAgent;

/// The error type of a [`TappedBody`]: the wrapped body's, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body warp's filters read under a [`SqreenService`]: the request's
/// own body, and, when the agent wants it, a copy of what is read.
#[derive(Debug)]
pub struct TappedBody {
    inner: BoxBody<Bytes, BoxError>,
    copy: Option<Copying>,
}

/// The copy being made: bytes so far, the declared length, and where the
/// whole body goes once it has streamed.
#[derive(Debug)]
struct Copying {
    bytes: Vec<u8>,
    expected: usize,
    done: BodyTap,
}

/// Where a [`TappedBody`] leaves the whole body it copied; the wrapper
/// finds it in the request's extensions.
#[derive(Clone, Debug, Default)]
pub(crate) struct BodyTap(Arc<OnceLock<Bytes>>);

impl BodyTap {
    /// The copied body, once the route has read all of it.
    pub(crate) fn body(&self) -> Option<&Bytes> {
        self.0.get()
    }
}

/// The TCP peer of a request served by [`SqreenService`], for the wrapper
/// (warp's own `RemoteAddr` extension is private to `warp::serve`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub SocketAddr);

impl Body for TappedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Some(copy) = &mut this.copy
        {
            if copy.bytes.len() + data.len() > copy.expected {
                // More than declared: hyper would have refused it; the copy
                // is abandoned rather than grown.
                this.copy = None;
            } else {
                copy.bytes.extend_from_slice(data);
                if copy.bytes.len() == copy.expected {
                    let bytes = Bytes::from(std::mem::take(&mut copy.bytes));
                    // Set once: the copy is dropped right after.
                    let _ = copy.done.0.set(bytes);
                    this.copy = None;
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A wrapped warp app as a tower [`Service`](tower_service::Service):
/// built by [`SqreenWrapper::service`](crate::SqreenWrapper::service).
///
/// With body capture on, it copies the request bodies the agent wants
/// while the routes read them, so routes may use warp's own body filters.
/// Serve it with [`serve`](Self::serve), or from your own hyper accept
/// loop (then set each connection's [`peer`](Self::peer)).
#[derive(Clone)]
pub struct SqreenService<S> {
    inner: S,
    agent: Option<Arc<LazyAgent>>,
    peer: Option<SocketAddr>,
}

impl<S> std::fmt::Debug for SqreenService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqreenService")
            .field("captures_bodies", &self.agent.is_some())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S> SqreenService<S> {
    /// `agent` is `None` when body capture is off: bodies are then passed
    /// on untouched.
    pub(crate) fn new(inner: S, agent: Option<Arc<LazyAgent>>) -> Self {
        Self {
            inner,
            agent,
            peer: None,
        }
    }

    /// This service for one connection from `peer`: its requests are
    /// recorded with that address (what `warp::addr::remote()` gives under
    /// `warp::serve`). [`serve`](Self::serve) does it for you.
    #[must_use]
    pub fn peer(mut self, peer: Option<SocketAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// The length of the body to copy, when the agent wants this request's
    /// body.
    fn wanted<B>(&self, request: &Request<B>) -> Option<usize> {
        let agent = self.agent.as_ref()?.get()?;
        let headers = request.headers();
        let length = headers
            .get(CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()?;
        let content_type = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        if agent.wants_body(Some(content_type), Some(length)) {
            usize::try_from(length).ok()
        } else {
            None
        }
    }
}

impl<S, B> tower_service::Service<Request<B>> for SqreenService<S>
where
    S: tower_service::Service<Request<TappedBody>>,
    B: Body + Send + Sync + 'static,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let expected = self.wanted(&request);
        let (mut parts, body) = request.into_parts();
        if let Some(peer) = self.peer {
            parts.extensions.insert(PeerAddr(peer));
        }
        let copy = expected.map(|expected| {
            let done = BodyTap::default();
            parts.extensions.insert(done.clone());
            Copying {
                bytes: Vec::with_capacity(expected),
                expected,
                done,
            }
        });
        let inner = body
            .map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
            .map_err(Into::into)
            .boxed();
        self.inner
            .call(Request::from_parts(parts, TappedBody { inner, copy }))
    }
}

impl<S> SqreenService<S>
where
    S: tower_service::Service<
            Request<TappedBody>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    /// Serves HTTP/1 and HTTP/2 connections from `listener` until
    /// `shutdown` completes, then waits for the requests in flight: what
    /// `warp::serve(app).incoming(listener).graceful(shutdown).run()` does.
    ///
    /// ```no_run
    /// use warp::Filter;
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let routes = warp::path("orders")
    ///     .and(sqreen_warp::sqreen())
    ///     .and(warp::body::json()) // warp's own body filter
    ///     .map(|sq: sqreen_warp::Sqreen, order: std::collections::HashMap<String, u32>| {
    ///         sq.track_event("order.placed");
    ///         "ok"
    ///     });
    /// let app = sqreen_warp::SqreenWrapper::new().capture_bodies(true).service(routes);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    /// // Stops when `shutdown` completes: in an app, say, `tokio::signal::ctrl_c()`.
    /// let (_stop, shutdown) = tokio::sync::oneshot::channel::<()>();
    /// app.serve(listener, async { let _ = shutdown.await; }).await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto;
        use hyper_util::server::graceful::GracefulShutdown;
        use hyper_util::service::TowerToHyperService;

        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait, as warp does.
                        tracing::error!(target: "sqreen::warp", %error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let service = TowerToHyperService::new(self.clone().peer(Some(peer)));
            let connection = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(target: "sqreen::warp", %error, "connection ended with an error");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    }
}
