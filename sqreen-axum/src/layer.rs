//! The tower [`SqreenLayer`] and the [`SqreenService`] it wraps services in:
//! one request record per request, security responses enforced before the
//! inner service runs.
//!
//! ```text
//! call ─ agent absent/off ──────────────────────────────▶ inner.call (untouched)
//!      ─ form/JSON body, declared length ≤ limit ─ buffer ─┐
//!      ─ otherwise ────────────────────────────────────────┴▶ Agent::begin
//!           Pass    ─▶ inner.call
//!           Respond ─▶ security response (inner never called)
//!           Record  ─▶ route params ─▶ inner.call + polls with the handle current ─▶ close
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use sqreen_core::{Agent, Begin, LazyAgent, SecurityResponse};
use tower_layer::Layer;
use tower_service::Service;

use crate::blocked::default_blocked_response;
use crate::current::Slot;
use crate::future::{Buffering, Pending, ResponseFuture, State};
use crate::request::{HeaderMapPairs, body_headers, can_rebuild, request_info, set_route_params};

/// The framework version reported to the backend at login.
const AXUM_VERSION: &str = "0.8";

/// A custom renderer of security responses.
pub(crate) type Renderer = Arc<dyn Fn(&SecurityResponse) -> Response + Send + Sync>;

/// What every clone of the layer and its services shares: one reference
/// count to bump when axum clones the service for a request.
#[derive(Clone)]
pub(crate) struct Settings {
    pub agent: LazyAgent,
    pub renderer: Option<Renderer>,
    /// Also put the handle in the request extensions
    /// ([`SqreenLayer::handle_in_extensions`]).
    pub in_extensions: bool,
}

impl Settings {
    /// The response for a security response: the custom renderer's, or the default.
    pub fn render(&self, response: &SecurityResponse) -> Response {
        match &self.renderer {
            Some(render) => render(response),
            None => default_blocked_response(response),
        }
    }
}

/// A tower [`Layer`] that instruments every request with sqreen.
///
/// Works on any tower service over `http::Request<B>`: axum routers,
/// plain hyper services, tonic servers. See the [crate docs](crate) for
/// where to put it, and what it captures.
///
/// ```
/// use axum::{routing::get, Router};
/// use sqreen_axum::SqreenLayer;
///
/// // After `sqreen::init(..)` / `init_from_env()`, which starts the global agent.
/// let app: Router = Router::new()
///     .route("/", get(|| async { "ok" }))
///     .layer(SqreenLayer::new()); // after the routes: it covers those added before it
/// ```
///
/// Cheap to clone (one reference count), `Send + Sync`.
#[derive(Clone)]
pub struct SqreenLayer {
    settings: Arc<Settings>,
}

impl std::fmt::Debug for SqreenLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqreenLayer")
            .field("agent", &self.settings.agent)
            .field("custom_blocked_response", &self.settings.renderer.is_some())
            .finish()
    }
}

impl Default for SqreenLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SqreenLayer {
    /// A layer on the global agent, the one `sqreen::init` / `init_from_env`
    /// starts.
    ///
    /// Build it before or after `init`: the agent is looked up on the first
    /// requests (one atomic load per request once found). Requests that
    /// arrive before `init` pass through untouched.
    pub fn new() -> Self {
        Self::on(LazyAgent::global("axum", AXUM_VERSION))
    }

    /// A layer on this agent (tests, and applications running several agents).
    pub fn with_agent(agent: Agent) -> Self {
        Self::on(LazyAgent::fixed(agent, "axum", AXUM_VERSION))
    }

    fn on(agent: LazyAgent) -> Self {
        Self {
            settings: Arc::new(Settings {
                agent,
                renderer: None,
                in_extensions: false,
            }),
        }
    }

    /// Renders security responses with `render` instead of
    /// [`default_blocked_response`]: IP blocks and redirects, and the
    /// [`Blocked`](crate::Blocked) errors handlers return, as they pass back
    /// through the layer.
    ///
    /// ```
    /// use axum::response::{Html, IntoResponse, Redirect};
    /// use sqreen_axum::SqreenLayer;
    /// use sqreen_core::SecurityResponse;
    ///
    /// let layer = SqreenLayer::new().blocked_response(|response: &SecurityResponse| {
    ///     match response.location() {
    ///         Some(url) => Redirect::to(url).into_response(),
    ///         None => (
    ///             axum::http::StatusCode::FORBIDDEN,
    ///             Html("<h1>Nope.</h1><p>Contact support@example.com</p>"),
    ///         )
    ///             .into_response(),
    ///     }
    /// });
    /// ```
    #[must_use]
    pub fn blocked_response<F>(self, render: F) -> Self
    where
        F: Fn(&SecurityResponse) -> Response + Send + Sync + 'static,
    {
        Self {
            settings: Arc::new(Settings {
                renderer: Some(Arc::new(render)),
                ..Settings::clone(&self.settings)
            }),
        }
    }

    /// Also puts each recorded request's handle (a `sqreen_core::Sqreen`) in
    /// the request extensions (default: off).
    ///
    /// The [`Sqreen`](crate::Sqreen) extractor and [`current()`](crate::current())
    /// find the handle while the layer polls the service it wraps, which
    /// covers every handler running in the request's task. Turn this on when
    /// something between the layer and the handler moves the request to
    /// another task (a middleware that runs `tokio::spawn(next.run(req))`,
    /// a `tower::buffer::Buffer`): the handle then travels with the request,
    /// and the extractor falls back on it. It costs an allocation and a
    /// hash-map insert per recorded request.
    ///
    /// ```
    /// let layer = sqreen_axum::SqreenLayer::new().handle_in_extensions(true);
    /// ```
    #[must_use]
    pub fn handle_in_extensions(self, on: bool) -> Self {
        Self {
            settings: Arc::new(Settings {
                in_extensions: on,
                ..Settings::clone(&self.settings)
            }),
        }
    }

    /// The agent this layer reports to, if there is one yet.
    pub fn agent(&self) -> Option<&Agent> {
        self.settings.agent.get()
    }
}

impl<S> Layer<S> for SqreenLayer {
    type Service = SqreenService<S>;

    fn layer(&self, inner: S) -> SqreenService<S> {
        SqreenService {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// The service [`SqreenLayer`] wraps an inner service in.
///
/// Its responses are `axum::response::Response` (`http::Response<axum::body::Body>`):
/// an inner response whose body is already axum's `Body` (anything from an
/// axum router or handler) is passed on without re-boxing.
#[derive(Clone)]
pub struct SqreenService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SqreenService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqreenService")
            .field("inner", &self.inner)
            .field("agent", &self.settings.agent)
            .finish()
    }
}

impl<S> SqreenService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for SqreenService<S>
where
    S: Service<Request<B>, Response = http::Response<ResBody>> + Clone,
    B: http_body::Body + 'static,
    B::Error: Into<axum::BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let agent = match self.settings.agent.get() {
            Some(agent) if agent.is_enabled() => agent,
            // Off, not logged in yet, or no agent: hands off the request.
            _ => return ResponseFuture::new(State::pass(self.inner.call(req))),
        };
        // Most requests (GET, HEAD…) have an empty body: no header lookups then.
        let (content_type, content_length) = match http_body::Body::size_hint(req.body()).exact() {
            Some(0) => (None, None),
            _ => body_headers(req.headers()),
        };
        if let Some(limit) = content_length
            && agent.wants_body(content_type, content_length)
            && can_rebuild::<B>()
        {
            // The body is read inside the future, and the inner service is
            // called there: take the service `poll_ready` readied, leave a
            // clone behind (tower's documented pattern).
            let clone = self.inner.clone();
            let service = std::mem::replace(&mut self.inner, clone);
            let (parts, body) = req.into_parts();
            // `wants_body` bounds the declared length by `body_capture_limit`;
            // `Limited` makes sure a body longer than declared is not read on.
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            return ResponseFuture::new(State::Buffer {
                buffering: Box::pin(Buffering {
                    collect: Limited::new(body, limit).collect(),
                    pending: Some(Pending {
                        service,
                        parts,
                        settings: Arc::clone(&self.settings),
                    }),
                }),
            });
        }
        ResponseFuture::new(dispatch(&self.settings, agent, &mut self.inner, req, None))
    }
}

/// Asks the agent about the request and starts the inner service, or not.
pub(crate) fn dispatch<S, B>(
    settings: &Settings,
    agent: &Agent,
    service: &mut S,
    mut req: Request<B>,
    body: Option<&[u8]>,
) -> State<S, B>
where
    S: Service<Request<B>>,
    B: http_body::Body,
    B::Error: Into<axum::BoxError>,
{
    // Nothing loaded needs to see the request: its record is opened only
    // if a handler asks for the handle. With the handle in the extensions
    // (it must exist before the call), or a body copied, it is opened now.
    if body.is_none()
        && !settings.in_extensions
        && let Some(deferred) = agent.defer()
    {
        let mut slot = Some(Slot::Deferred(deferred));
        let future = {
            let _entered = crate::current::enter(&mut slot);
            service.call(req)
        };
        return State::Inner {
            future,
            slot,
            renderer: settings.renderer.clone(),
        };
    }
    let begin = {
        let headers = HeaderMapPairs(req.headers());
        match body {
            // The handler consumes the body: it is copied now.
            Some(_) => agent.begin(&request_info(&req, &headers, body)),
            None => agent.begin_on_demand(|| request_info(&req, &headers, None)),
        }
    };
    match begin {
        // A disabled handle is current: a request passlisted inside another
        // recorded one (an in-process sub-request) must not see the outer
        // request's handle.
        Begin::Pass => {
            let mut slot = Some(Slot::Pass);
            let future = {
                let _entered = crate::current::enter(&mut slot);
                service.call(req)
            };
            State::Inner {
                future,
                slot,
                renderer: None,
            }
        }
        Begin::Respond(response) => State::Ready {
            response: Some(settings.render(&response)),
        },
        Begin::Record(record) => {
            // A record opened on demand gets its route parameters with the
            // request, from the extractor; one copied now (a captured body,
            // an IP action) gets them here.
            if !record.needs_request() {
                set_route_params(&record, &mut req);
            }
            if settings.in_extensions {
                req.extensions_mut().insert(record.handle());
            }
            let mut slot = Some(Slot::Record(record));
            let future = {
                let _entered = crate::current::enter(&mut slot);
                service.call(req)
            };
            State::Inner {
                future,
                slot,
                renderer: settings.renderer.clone(),
            }
        }
    }
}

/// The answer when a request body to capture cannot be read: the client
/// sent less or more than it declared, or went away.
pub(crate) fn unreadable_body() -> Response {
    let mut response = Response::new(Body::from("invalid request body"));
    *response.status_mut() = http::StatusCode::BAD_REQUEST;
    response
}

// The layer and its service must stay `Clone + Send + Sync`: axum 0.8's
// `Router::layer` requires it, and sentry-tower once shipped a layer that
// was not `Sync`. This fails to compile if a change breaks it.
const _: fn() = || {
    fn assert<T: Send + Sync + Clone>() {}
    fn assert_send<T: Send>() {}
    assert::<SqreenLayer>();
    assert::<SqreenService<axum::routing::Route>>();
    assert::<crate::Sqreen>();
    assert_send::<ResponseFuture<axum::routing::Route, Body>>();
    assert_send::<ResponseFuture<axum::routing::Route, http_body_util::Full<Bytes>>>();
};
