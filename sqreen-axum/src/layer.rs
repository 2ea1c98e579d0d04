//! The tower [`SqreenLayer`] and the [`SqreenService`] it wraps services in:
//! one request record per request, security responses enforced before the
//! inner service runs.
//!
//! ```text
//! call ─ agent absent/off ──────────────────────────────▶ inner.call (untouched)
//!      ─ form/JSON body, declared length ≤ limit ─ buffer ─┐
//!      ─ otherwise ────────────────────────────────────────┴▶ Agent::open
//!           Pass    ─▶ inner.call + polls with an empty slot current
//!           Respond ─▶ security response (inner never called)
//!           Request ─▶ inner.call + polls with the request's slot current ─▶ close
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use sqreen_core::{Agent, LazyAgent, SecurityResponse};
use tower_layer::Layer;
use tower_service::Service;

use crate::future::{Buffering, Pending, ResponseFuture, Settings, State, dispatch};
use crate::request::{body_headers, can_rebuild};

/// The framework version reported to the backend at login.
const AXUM_VERSION: &str = "0.8";

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
    /// [`default_blocked_response`](crate::default_blocked_response): IP blocks and redirects, and the
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
    /// and the extractor falls back on it. The request is then copied when
    /// the layer runs, as the layer sees it (route parameters included when
    /// the layer runs after routing, as `Router::layer` does), and each
    /// recorded request costs that copy, an allocation and a hash-map insert.
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
