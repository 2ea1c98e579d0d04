//! The middlewares sqreen's layer is compared with, each around the same
//! hello-world route: what a Rust team may already run on every request.
//!
//! - `trace`: tower-http's `TraceLayer::new_for_http()`, with no `tracing`
//!   subscriber installed (its spans and events are then disabled, as in an
//!   app that logs at `info` and above through a filter that rejects them).
//! - `sentry`: sentry-tower's `NewSentryLayer` (a hub per request) and
//!   `SentryHttpLayer` (the request's method, URL and headers attached to
//!   the hub's scope for any event), with an enabled client whose transport
//!   drops every envelope (no network).
//! - `from_fn`: a naive hand-written `axum::middleware::from_fn` that copies
//!   what a tracker needs (method, path, headers, peer address) into a
//!   struct before calling the handler, as a first attempt at sqreen would.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, Method};
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::get;
use sentry_core::{ClientOptions, Envelope, Hub, Transport};
use sentry_tower::{NewSentryLayer, SentryHttpLayer};
use tower_http::trace::TraceLayer;

use super::hello;

/// A transport that drops every envelope: the client is enabled, nothing
/// leaves the process.
struct Discard;

impl Transport for Discard {
    fn send_envelope(&self, envelope: Envelope) {
        std::hint::black_box(envelope);
    }
}

/// Binds an enabled sentry client to the main hub (once per process).
pub fn init_sentry() {
    let mut options = ClientOptions::default();
    // Never contacted: the transport drops everything.
    options.dsn = "http://public@127.0.0.1:9/1".parse().ok();
    options.transport = Some(Arc::new(|_: &ClientOptions| {
        Arc::new(Discard) as Arc<dyn Transport>
    }));
    Hub::main().bind_client(Some(Arc::new(options.into())));
    assert!(Hub::main().client().is_some_and(|c| c.is_enabled()));
}

/// `GET /` behind tower-http's `TraceLayer`.
pub fn trace() -> Router {
    Router::new()
        .route("/", get(hello))
        .layer(TraceLayer::new_for_http())
        .with_state(())
}

/// `GET /` behind sentry-tower's two layers, as its docs compose them.
pub fn sentry() -> Router {
    Router::new()
        .route("/", get(hello))
        .layer(SentryHttpLayer::new())
        .layer(NewSentryLayer::<Request<Body>>::new_from_top())
        .with_state(())
}

/// What the naive middleware keeps of a request.
struct Copied {
    method: Method,
    path: String,
    headers: HeaderMap,
    peer: Option<SocketAddr>,
}

async fn copy_then_call(request: Request, next: Next) -> Response {
    let copied = Copied {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        headers: request.headers().clone(),
        peer: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr),
    };
    let response = next.run(request).await;
    std::hint::black_box((&copied.method, &copied.path, &copied.headers, &copied.peer));
    response
}

/// `GET /` behind a naive `from_fn` middleware that copies the request.
pub fn naive_from_fn() -> Router {
    Router::new()
        .route("/", get(hello))
        .layer(from_fn(copy_then_call))
        .with_state(())
}
