//! The SDK handle of the request being served, for the code the layer wraps.
//!
//! While the [`SqreenLayer`](crate::SqreenLayer)'s service calls and polls
//! the inner service for a recorded request, that request's handle is the
//! thread's *current* handle, as `tracing` enters a span or sentry binds a
//! hub for the duration of each poll. The [`Sqreen`](crate::Sqreen)
//! extractor, [`from_request`] and [`current`] read it, through
//! [`sqreen_core::current`]: one thread-local swap per poll, no allocation.
//!
//! The request's slot opens its record the first time a handler asks for
//! the handle, so a request whose handlers never ask costs no record at all
//! when nothing loaded in the agent needs to see it.

use sqreen_core::RequestSlot;
use sqreen_core::current::with_slot;

/// The SDK handle of `request`, in a plain hyper or tonic service wrapped by
/// [`SqreenLayer`](crate::SqreenLayer): what such a service calls where an
/// axum handler takes the [`Sqreen`](crate::Sqreen) extractor.
///
/// Like the extractor, it copies the request's details into the record the
/// first time it is called for a request: the layer copies nothing until a
/// handler asks (so that requests whose handlers never track anything cost
/// next to nothing). Pass the request the service received. Outside a
/// recorded request the handle is [disabled](sqreen_core::Sqreen::disabled):
/// every call is a no-op.
///
/// ```
/// use sqreen_axum::SqreenLayer;
/// use tower::Layer;
///
/// // A plain tower service (hyper / tonic style) behind the layer.
/// let service = tower::service_fn(|req: http::Request<String>| async move {
///     let sq = sqreen_axum::from_request(&req);
///     sq.track_event("raw.request");
///     // a task spawned from here gets the handle moved in:
///     tokio::spawn(async move {
///         sq.track_event("raw.background");
///     });
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// });
/// let service = SqreenLayer::new().layer(service);
/// ```
pub fn from_request<B>(request: &http::Request<B>) -> sqreen_core::Sqreen {
    let headers = crate::request::HeaderMapPairs(request.headers());
    let handle =
        with_slot(|slot| slot.handle_with(|| crate::request::request_info(request, &headers)));
    match request.extensions().get::<sqreen_core::Sqreen>() {
        // A handle another layer put in the extensions (`Extension` style).
        Some(found) if !handle.is_enabled() => found.clone(),
        _ => handle,
    }
}

/// The SDK handle of the request the calling code serves, inside a service
/// wrapped by [`SqreenLayer`](crate::SqreenLayer), for code that has neither
/// the request nor the handle at hand.
///
/// It is set while the layer calls and polls the inner service for a
/// recorded request, so it is found anywhere in the handler's own task, but
/// not in a task the handler spawns: read it first and move the handle in.
/// Outside a recorded request it is
/// [disabled](sqreen_core::Sqreen::disabled): every call is a no-op.
///
/// It does not copy the request: what it records carries the request's
/// details once the [`Sqreen`](crate::Sqreen) extractor or [`from_request`]
/// ran for the request (an event tracked on a request neither ran for is
/// sent without them, and the agent warns).
///
/// ```
/// use axum::{routing::get, Router};
/// use sqreen_axum::{Sqreen, SqreenLayer};
///
/// fn audit(what: &str) {
///     // Deep in the call stack, without the handle in scope.
///     sqreen_axum::current().track_event(what);
/// }
///
/// async fn export(_sq: Sqreen) -> &'static str {
///     audit("report.exported");
///     "exported"
/// }
/// let app: Router = Router::new().route("/export", get(export)).layer(SqreenLayer::new());
/// ```
pub fn current() -> sqreen_core::Sqreen {
    with_slot(RequestSlot::handle)
}
