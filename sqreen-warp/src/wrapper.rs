//! [`SqreenWrapper`]: opens the request record before the wrapped filter
//! runs, enforces IP actions, and closes the record with the response.
//!
//! ```text
//!  enabled? ─no──────────────────────────────────────────▶ pass (disabled handle)
//!     │yes
//!  capture body? (capture_bodies + agent.wants_body) ─▶ copied as it streams (SqreenService), or buffered
//!  nothing loaded to check the request against? ─▶ agent.open, unseen
//!  else snapshot: method, path, query, headers, peer ─▶ agent.open
//!     ├ Pass ──────────────▶ inner filter ──────────────▶ response
//!     ├ Respond ─────────── (inner never runs) ─────────▶ block page / redirect
//!     └ Request ─register─▶ inner filter ─▶ Blocked? ───▶ slot.close(status, length, type)
//! ```
//!
//! Cost. warp offers no borrowed view of the request and a sealed
//! `Filter`, so the wrapper is built from public combinators, and each
//! costs on every request: its future is built and moved, its closure
//! cloned (hyper-util also clones the whole filter per request). Hence the
//! shape: as few layers as the behaviour allows (`or_else` rather than
//! `recover` and `unify`; no capture filter unless capture is on), small values
//! carried through them (the header map last, the route's reply not yet a
//! `Response`), and closures holding only what they use (a `None` agent in
//! the arm that cannot run). `benches/instructions.rs` counts instructions
//! per request under callgrind; compare with its `bare` and `core` apps.

use std::convert::Infallible;
use std::future::ready;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use warp::Filter;
use warp::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use warp::http::{HeaderMap, Method};
use warp::path::FullPath;
use warp::reject::{self, Rejection};
use warp::reply::{Reply, Response};

use sqreen_core::SecurityResponse;
use sqreen_core::{Agent, HeaderPairs, LazyAgent, Open, RequestInfo, RequestSlot, ResponseInfo};

use crate::Blocked;
use crate::blocked::{BlockedMarker, Renderer, default_blocked_response};
use crate::body::InvalidBody;
use crate::context::{self, Registration, StashedBody};
use crate::serve::{BodyTap, PeerAddr, SqreenService, TappedBody};

/// The version reported to the backend with the framework name.
const WARP_VERSION: &str = "0.4";

/// Instruments warp filters: records each request they serve and enforces
/// the backend's security responses.
///
/// Build it once, before or after the agent starts (`sqreen::init*`), and
/// [`wrap`](Self::wrap) your whole app with it. Cheap to clone.
///
/// ```
/// use warp::Filter;
/// use sqreen_warp::SqreenWrapper;
///
/// let routes = warp::path::end().map(|| "ok");
/// let sqreen = SqreenWrapper::new(); // the agent of the last `sqreen::init*`
/// let app = sqreen.wrap(routes.clone());
/// // or, in a chain:
/// let app = routes.with(warp::wrap_fn(|routes| sqreen.wrap(routes)));
/// # let _ = warp::serve(app);
/// ```
#[derive(Clone)]
pub struct SqreenWrapper {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    agent: Arc<LazyAgent>,
    renderer: Option<Renderer>,
    capture_bodies: bool,
}

impl std::fmt::Debug for SqreenWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqreenWrapper")
            .field("agent", &self.shared.agent)
            .field("custom_blocked_response", &self.shared.renderer.is_some())
            .field("capture_bodies", &self.shared.capture_bodies)
            .finish()
    }
}

impl Default for SqreenWrapper {
    fn default() -> Self {
        Self::new()
    }
}

impl SqreenWrapper {
    /// A wrapper using the global agent, the one `sqreen::init` /
    /// `sqreen::init_from_env` starts.
    ///
    /// Build it before or after `init`: the agent is looked up on the first
    /// requests (one atomic load per request once found). Requests that
    /// arrive before `init` pass through untouched.
    pub fn new() -> Self {
        Self::on(LazyAgent::global("warp", WARP_VERSION))
    }

    /// A wrapper using this agent (tests, or several agents in one process).
    pub fn with_agent(agent: Agent) -> Self {
        Self::on(LazyAgent::fixed(agent, "warp", WARP_VERSION))
    }

    fn on(agent: LazyAgent) -> Self {
        Self {
            shared: Arc::new(Shared {
                agent: Arc::new(agent),
                renderer: None,
                capture_bodies: false,
            }),
        }
    }

    /// Renders security responses with `f` instead of
    /// [`default_blocked_response`]: IP blocks and redirects, and the
    /// [`Blocked`] errors of handlers inside the wrapper.
    ///
    /// ```
    /// use sqreen_core::SecurityResponse;
    /// use warp::Reply;
    ///
    /// let sqreen = sqreen_warp::SqreenWrapper::new().blocked_response(|response: &SecurityResponse| {
    ///     let status = warp::http::StatusCode::from_u16(response.status()).unwrap_or(warp::http::StatusCode::FORBIDDEN);
    ///     match response.location() {
    ///         Some(url) => warp::reply::with_header(status, "location", url).into_response(),
    ///         None => warp::reply::with_status(warp::reply::html("<h1>Nope</h1>"), status).into_response(),
    ///     }
    /// });
    /// ```
    #[must_use]
    pub fn blocked_response<F>(mut self, f: F) -> Self
    where
        F: Fn(&SecurityResponse) -> Response + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.shared).renderer = Some(Arc::new(f));
        self
    }

    /// Captures urlencoded-form and JSON request bodies (default: off).
    ///
    /// Served through [`service`](Self::service), bodies are copied while
    /// the routes read them with warp's own filters. Under `warp::serve`,
    /// where a body can be read only once, the wrapper buffers a capturable
    /// body (declared length within `body_capture_limit`, form or JSON) and
    /// routes **must** then read bodies with
    /// [`sqreen_warp::body::{bytes, json, form}`](crate::body), which hand
    /// the buffered bytes over; a route reading it with `warp::body::*`
    /// would find it gone (500).
    #[must_use]
    pub fn capture_bodies(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.shared).capture_bodies = on;
        self
    }

    /// The agent this wrapper records with, if there is one yet.
    pub fn agent(&self) -> Option<&Agent> {
        self.shared.agent.get()
    }

    /// Wraps `filter`: each request it serves is recorded, IP actions answer
    /// before it runs, and [`Blocked`] rejections become their response.
    ///
    /// The filter's rejections pass on unchanged (an outer `or` or `recover`
    /// still sees them); the record of a rejected request is closed without
    /// a response, so put your `recover` inside the wrapper when the status
    /// of error responses matters.
    ///
    /// The filter must extract one reply and reject with `Rejection`, as any
    /// route with a path or method filter does. A filter that cannot reject
    /// (`Error = Infallible`) gets that error type from an `and_then`:
    ///
    /// ```
    /// use warp::Filter;
    /// let always = warp::any().map(|| "ok"); // Error = Infallible
    /// let app = sqreen_warp::SqreenWrapper::new()
    ///     .wrap(always.and_then(|reply| async move { Ok::<_, warp::Rejection>(reply) }));
    /// # let _ = warp::serve(app);
    /// ```
    pub fn wrap<F, R>(
        &self,
        filter: F,
    ) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static
    where
        F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
        R: Reply + 'static,
    {
        // hyper-util clones the whole filter for every request it serves,
        // so each closure holds only what it needs: the renderer is `None`
        // (nothing to count) unless the application set one.
        let (inner_renderer, close_renderer, ip_renderer) = (
            self.shared.renderer.clone(),
            self.shared.renderer.clone(),
            self.shared.renderer.clone(),
        );
        // `or_else` rather than `recover` + `unify`: one layer less per
        // request. The route's reply stays small (not yet a `Response`)
        // while warp moves it through the layers.
        let inner = filter.map(Outcome::Route).or_else(move |rejection| {
            ready(
                recover_own(inner_renderer.as_ref(), rejection)
                    .map(|response| (Outcome::Recovered(Box::new(response)),)),
            )
        });
        begin(&self.shared)
            .and(inner)
            .map(move |ctx: Ctx, outcome: Outcome<R>| {
                let response = match outcome {
                    Outcome::Route(reply) => reply.into_response(),
                    Outcome::Recovered(response) => *response,
                };
                close(close_renderer.as_ref(), ctx, response)
            })
            .or_else(move |rejection| {
                ready(recover_ip(ip_renderer.as_ref(), rejection).map(|r| (r,)))
            })
    }
}

impl SqreenWrapper {
    /// [`wrap`](Self::wrap)s `filter` and returns it as a tower `Service`
    /// that, with [body capture](Self::capture_bodies) on, copies the
    /// bodies the agent wants while the routes read them: routes can then
    /// use warp's own `warp::body::{bytes, json, form, …}` unchanged, and
    /// nothing is buffered ahead of them. Serve it with
    /// [`SqreenService::serve`] instead of `warp::serve`.
    ///
    /// A body is captured once the route has read all of it; a route that
    /// never reads the body records none.
    ///
    /// ```
    /// use warp::Filter;
    ///
    /// let track = warp::path("track")
    ///     .and(sqreen_warp::sqreen())
    ///     .and(warp::body::json())
    ///     .map(|sq: sqreen_warp::Sqreen, body: serde_json::Value| {
    ///         sq.track_event("tracked");
    ///         "ok"
    ///     });
    /// let app = sqreen_warp::SqreenWrapper::new().capture_bodies(true).service(track);
    /// # let _ = app;
    /// ```
    pub fn service<F, R>(
        &self,
        filter: F,
    ) -> SqreenService<
        impl tower_service::Service<
            warp::http::Request<TappedBody>,
            Response = Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
    >
    where
        F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
        R: Reply + 'static,
    {
        let agent = self
            .shared
            .capture_bodies
            .then(|| self.shared.agent.clone());
        SqreenService::new(warp::service(self.wrap(filter)), agent)
    }
}

/// What the wrapped filter produced: its reply, or the response to one of
/// the wrapper's own rejections (boxed: rare, and kept off the moves).
enum Outcome<R> {
    Route(R),
    Recovered(Box<Response>),
}

/// What the wrapper keeps while the inner filter runs: the side-channel
/// entry holding the record, removed when the request ends or is cancelled
/// (`None` when the request is not recorded and no body was buffered).
struct Ctx(Option<Registration>);

impl Ctx {
    fn pass() -> Self {
        Self(None)
    }
}

/// Carries an IP action's response past the inner filter to the wrapper's
/// own `recover`; never seen outside the wrapper.
#[derive(Debug)]
struct IpResponse(SecurityResponse);

impl reject::Reject for IpResponse {}

/// The request's headers (warp hands filters only a clone of the map),
/// visited by the core without further copies.
struct Headers<'a>(&'a HeaderMap);

impl HeaderPairs for Headers<'_> {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self.0 {
            f(name.as_str(), value.as_bytes());
        }
    }
}

/// Proof that the agent was recording when the request arrived; passed
/// along (a zero-sized value) instead of `untuple_one`, one layer less.
struct Enabled;

/// The request view of a request that is not looked at.
const NO_HEADERS: [(&str, &str); 0] = [];

/// Opens the request: a `Ctx` for every request, or the IP action's
/// response as an `IpResponse` rejection.
///
/// Two arms, so that the common case (no body to capture) pays for no
/// capture filter at all: `plain` runs when body capture is off, `captured`
/// when it is on. Only one of them ever calls `agent.open`. When the agent
/// is off both reject at once (no allocation) and `or_else` passes the
/// request through: nothing is copied.
fn begin(shared: &Shared) -> impl Filter<Extract = (Ctx,), Error = Rejection> + Clone + use<> {
    // Each arm holds the agent only if it can run: warp clones a filter's
    // closures for every request (and `or` its whole second arm, even when
    // the first succeeds), and cloning a `None` touches no reference count.
    let (plain_agent, captured_agent) = if shared.capture_bodies {
        (None, Some(shared.agent.clone()))
    } else {
        (Some(shared.agent.clone()), None)
    };
    let plain = {
        let (unseen, gate, open) = (plain_agent.clone(), plain_agent.clone(), plain_agent);
        // Most requests: nothing loaded needs to look at the request (no
        // passlist, no IP action), so none of it is extracted (warp clones
        // the header map it hands a filter); the `sqreen()` filter copies
        // the request if a handler asks for the handle.
        // Its record is not even opened until a handler asks.
        let without_request = warp::any().and_then(move || {
            ready(match unseen.as_ref().and_then(|a| a.get()) {
                Some(agent) if agent.is_enabled() && !agent.checks_requests() => {
                    // `open` does not look at the request then (should
                    // something load meanwhile, it sees an empty one and
                    // records it, as a request opened a moment earlier).
                    match agent.open(|| RequestInfo::new("GET", "/", &NO_HEADERS), None) {
                        Open::Request(slot) => Ok(Ctx(Some(context::register(slot, None)))),
                        Open::Pass | Open::Respond(_) => Err(reject::not_found()),
                    }
                }
                _ => Err(reject::not_found()),
            })
        });
        let with_request = warp::any()
            .and_then(move || ready(enabled(gate.as_ref())))
            .and(snapshot())
            .and_then(move |_: Enabled, peer, method, query, path, headers| {
                ready(match open.as_ref().and_then(|a| a.get()) {
                    Some(agent) => begin_request(
                        agent,
                        Body::Buffered(None),
                        peer,
                        method,
                        query,
                        path,
                        headers,
                    ),
                    None => Err(reject::not_found()),
                })
            });
        without_request.or(with_request).unify()
    };
    let captured = {
        let (gate, open) = (captured_agent.clone(), captured_agent.clone());
        warp::any()
            .and_then(move || ready(enabled(gate.as_ref())))
            .and(body_source(captured_agent))
            .and(snapshot())
            .and_then(
                move |_: Enabled, body, peer, method, query, path, headers| {
                    ready(match open.as_ref().and_then(|a| a.get()) {
                        Some(agent) => {
                            begin_request(agent, body, peer, method, query, path, headers)
                        }
                        None => Err(reject::not_found()),
                    })
                },
            )
    };
    plain.or(captured).unify().or_else(|rejection: Rejection| {
        ready(if rejection.find::<IpResponse>().is_some() {
            Err(rejection)
        } else {
            Ok((Ctx::pass(),))
        })
    })
}

/// The gate of an arm: its agent, when it has one and it is recording.
fn enabled(agent: Option<&Arc<LazyAgent>>) -> Result<Enabled, Rejection> {
    match agent.and_then(|a| a.get()) {
        Some(agent) if agent.is_enabled() => Ok(Enabled),
        _ => Err(reject::not_found()),
    }
}

/// What `agent.open` reads of the request. Warp moves the values of a
/// filter chain at every step: the large header map comes last.
pub(crate) fn snapshot() -> impl Filter<
    Extract = (
        Option<SocketAddr>,
        Method,
        Option<String>,
        FullPath,
        HeaderMap,
    ),
    Error = Infallible,
> + Copy {
    // Only `query::raw` gives the query as sent, and it rejects when there is none.
    let query = warp::query::raw()
        .map(Some)
        .or_else(|_| ready(Ok::<_, Infallible>((None,))));
    // `warp::addr::remote()` is empty outside `warp::serve`: then the peer
    // `SqreenService` recorded.
    let peer = warp::addr::remote()
        .and(warp::ext::optional::<PeerAddr>())
        .map(|remote: Option<SocketAddr>, served: Option<PeerAddr>| {
            remote.or(served.map(|PeerAddr(peer)| peer))
        });
    peer.and(warp::method())
        .and(query)
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
}

fn begin_request(
    agent: &Agent,
    body: Body,
    peer: Option<SocketAddr>,
    method: Method,
    query: Option<String>,
    path: FullPath,
    headers: HeaderMap,
) -> Result<Ctx, Rejection> {
    let headers = Headers(&headers);
    let info = request_info(peer, &method, query.as_deref(), &path, &headers);
    let open = match &body {
        // The handler reads the buffered body: copied now.
        Body::Buffered(Some(body)) => agent.open(|| info, Some(&body.bytes[..])),
        Body::Buffered(None) | Body::Tapped(_) => agent.open(|| info, None),
    };
    match (open, body) {
        // A buffered body is still handed back on passlisted requests.
        (Open::Pass, Body::Buffered(body)) => {
            Ok(Ctx(body.map(|b| {
                context::register(RequestSlot::default(), Some(b))
            })))
        }
        (Open::Pass, Body::Tapped(_)) => Ok(Ctx::pass()),
        (Open::Respond(response), _) => Err(reject::custom(IpResponse(response))),
        (Open::Request(slot), Body::Buffered(body)) => Ok(Ctx(Some(context::register(slot, body)))),
        // Copied as it streams: the request is copied now, so that the
        // record can take the body when the route has read it.
        (Open::Request(mut slot), Body::Tapped(tap)) => {
            slot.handle_with(|| info);
            Ok(Ctx(Some(context::register_tapped(slot, tap))))
        }
    }
}

/// The core's view of the request, from what [`snapshot`] extracted.
fn request_info<'a>(
    peer: Option<SocketAddr>,
    method: &'a Method,
    query: Option<&'a str>,
    path: &'a FullPath,
    headers: &'a Headers<'a>,
) -> RequestInfo<'a> {
    RequestInfo::new(method.as_str(), path.as_str(), headers)
        .query(query)
        .peer(peer)
}

/// The current request's handle, with the request copied into its record
/// if not yet: what the [`sqreen()`](crate::sqreen()) filter does with its
/// [`snapshot`].
pub(crate) fn handle_with(
    peer: Option<SocketAddr>,
    method: &Method,
    query: Option<&str>,
    path: &FullPath,
    headers: &HeaderMap,
) -> sqreen_core::Sqreen {
    let headers = Headers(headers);
    context::handle_with(|| request_info(peer, method, query, path, &headers))
}

/// Where a captured body comes from.
enum Body {
    /// `SqreenService` copies it as the route reads it.
    Tapped(BodyTap),
    /// The wrapper buffered it (`None`: nothing to capture), for the
    /// routes to read through `sqreen_warp::body`.
    Buffered(Option<StashedBody>),
}

/// The body's copy made by `SqreenService`, or else the body buffered.
fn body_source(
    agent: Option<Arc<LazyAgent>>,
) -> impl Filter<Extract = (Body,), Error = Infallible> + Clone {
    warp::ext::get::<BodyTap>()
        .map(Body::Tapped)
        .or(capture_body(agent).map(Body::Buffered))
        .unify()
}

/// Buffers the body when the agent wants it; otherwise leaves it untouched.
fn capture_body(
    agent: Option<Arc<LazyAgent>>,
) -> impl Filter<Extract = (Option<StashedBody>,), Error = Infallible> + Clone {
    let sized = agent.clone();
    // Cheapest test first: most requests stop at the missing length.
    let candidate = warp::header::optional::<u64>("content-length")
        .and_then(move |len: Option<u64>| {
            let limit = sized
                .as_ref()
                .and_then(|a| a.get())
                .map_or(0, |agent| agent.config().body_capture_limit as u64);
            ready(match len {
                Some(len) if len > 0 && len <= limit => Ok(len),
                _ => Err(reject::not_found()),
            })
        })
        .and(warp::header::optional::<String>("content-type"))
        .and_then(move |len: u64, content_type: Option<String>| {
            ready(match content_type {
                Some(ct)
                    if agent
                        .as_ref()
                        .and_then(|a| a.get())
                        .is_some_and(|agent| agent.wants_body(Some(&ct), Some(len))) =>
                {
                    Ok(mime_essence(&ct))
                }
                _ => Err(reject::not_found()),
            })
        });
    candidate
        .and(warp::body::bytes())
        .map(|mime: Box<str>, bytes: Bytes| Some(StashedBody { bytes, mime }))
        .or(warp::any().map(|| None))
        .unify()
}

/// `Application/JSON; charset=utf-8` → `application/json`.
fn mime_essence(content_type: &str) -> Box<str> {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .into_boxed_str()
}

fn render(renderer: Option<&Renderer>, response: &SecurityResponse) -> Response {
    match renderer {
        Some(render) => render(response),
        None => default_blocked_response(response),
    }
}

/// The wrapper's own rejections from inside: `Blocked` and `InvalidBody`.
fn recover_own(renderer: Option<&Renderer>, rejection: Rejection) -> Result<Response, Rejection> {
    if let Some(blocked) = rejection.find::<Blocked>() {
        return Ok(render(renderer, blocked.response()));
    }
    if let Some(invalid) = rejection.find::<InvalidBody>() {
        return Ok(warp::reply::with_status(invalid.to_string(), invalid.status()).into_response());
    }
    Err(rejection)
}

fn recover_ip(renderer: Option<&Renderer>, rejection: Rejection) -> Result<Response, Rejection> {
    match rejection.find::<IpResponse>() {
        Some(IpResponse(response)) => Ok(render(renderer, response)),
        None => Err(rejection),
    }
}

fn close(renderer: Option<&Renderer>, ctx: Ctx, mut response: Response) -> Response {
    if let Some(renderer) = renderer
        && let Some(BlockedMarker(security)) = response.extensions().get::<BlockedMarker>()
    {
        let security = security.clone();
        response = renderer(&security);
    }
    if let Some(slot) = ctx.0.and_then(Registration::finish) {
        // Read only when the record is kept (it tracked something).
        slot.close_with(|| {
            let content_length = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .or_else(|| http_body::Body::size_hint(response.body()).exact());
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            ResponseInfo::new(response.status().as_u16())
                .content_length(content_length)
                .content_type(content_type)
        });
    }
    response
}
