//! The fairing: opens a request record in `on_request`, closes it in
//! `on_response`, enforces IP actions by routing blocked requests to an
//! internal route, and flushes the agent when rocket shuts down.
//!
//! ```text
//! on_request ── Agent::open ─┬─ Pass    → nothing stored; guards yield a disabled handle
//!  (a small form/JSON body   ├─ Request → RequestState { slot } in the local cache
//!   is peeked and copied)    │            (the `Sqreen` guard opens the record and copies
//!                            │             the request, route params included)
//!                            └─ Respond → RequestState { blocked }, URI ← /__sqreen/blocked
//! routing ── /__sqreen/blocked (rank isize::MIN, every method) answers the security response:
//!            the application's routes, and so its handlers, never see the request
//! on_response ── take the slot, set route params, close with status/length/type
//! on_shutdown ── agent.flush_async(shutdown_timeout), or, for an agent the
//!                fairing started (`from_env`), its whole shutdown and logout
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::Method;
use rocket::http::uri::Origin;
use rocket::route::{Handler, Outcome, Route};
use rocket::{Build, Data, Orbit, Request, Response, Rocket};
use sqreen_core::{
    Agent, AgentGuard, Config, HeaderPairs, LazyAgent, Open, RequestInfo, RequestSlot,
    ResponseInfo, SecurityResponse,
};

use crate::blocked::{BlockedPage, RenderFn, render};

/// The framework and version reported at the agent's login.
const FRAMEWORK: &str = "rocket";
const VERSION: &str = "0.5";

/// Locks `m`, through a poisoning (what it guards stays consistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where blocked requests are routed; the route is mounted by the fairing.
pub const BLOCKED_PATH: &str = "/__sqreen/blocked";

/// The rank of the internal route: lower than any rank rocket assigns or an
/// application would pick, so it wins over every application route.
const BLOCKED_RANK: isize = isize::MIN;

/// The most of a request body the fairing captures: the size of rocket's
/// peek buffer ([`Data::peek`]), the only way a fairing can see a body
/// without consuming it.
pub const MAX_CAPTURED_BODY: usize = 512;

/// Every method rocket routes, so a blocked request keeps its own method
/// (a `HEAD` stays a `HEAD`, and its body is stripped as usual).
const METHODS: [Method; 9] = [
    Method::Get,
    Method::Put,
    Method::Post,
    Method::Delete,
    Method::Options,
    Method::Head,
    Method::Trace,
    Method::Connect,
    Method::Patch,
];

/// What the fairing keeps about one request, in rocket's request-local
/// cache: the request's slot, whose handle the [`Sqreen`](crate::Sqreen)
/// guard hands out and `on_response` closes, or the security response the
/// internal route answers.
///
/// The slot lives in the request's cache, so it is owned by rocket's
/// request future: if that future is dropped (client gone), the slot's
/// record closes on drop and nothing tracked is lost.
#[derive(Debug, Default)]
pub(crate) struct RequestState {
    slot: Mutex<RequestSlot>,
    blocked: Option<SecurityResponse>,
}

impl RequestState {
    /// The state of a request the fairing did not record (or never saw).
    pub fn passed() -> Self {
        Self::default()
    }

    fn recording(slot: RequestSlot) -> Self {
        Self {
            slot: Mutex::new(slot),
            blocked: None,
        }
    }

    fn blocked(response: SecurityResponse) -> Self {
        Self {
            blocked: Some(response),
            ..Self::default()
        }
    }

    /// The handle handlers get, the record opened and the request (with its
    /// route parameters) copied into it if not yet: what the
    /// [`Sqreen`](crate::Sqreen) guard does. Disabled when the request is
    /// not recorded.
    pub fn handle(&self, request: &Request<'_>) -> sqreen_core::Sqreen {
        let mut slot = lock(&self.slot);
        let params = if slot.needs_request() {
            route_params(request)
        } else {
            Vec::new()
        };
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let headers = RocketHeaders(request.headers());
        slot.handle_with(|| request_info(request, &headers).route_params(&pairs))
    }

    /// Keeps `body` as the request's body; see [`RequestSlot::attach_body`].
    pub fn attach_body(&self, body: &[u8]) -> bool {
        lock(&self.slot).attach_body(body)
    }

    /// The slot to close.
    fn take_slot(&self) -> RequestSlot {
        std::mem::take(&mut *lock(&self.slot))
    }
}

/// rocket's header map seen through the core's [`HeaderPairs`], without copying.
struct RocketHeaders<'a>(&'a rocket::http::HeaderMap<'a>);

impl HeaderPairs for RocketHeaders<'_> {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for header in self.0.iter() {
            f(header.name().as_str(), header.value().as_bytes());
        }
    }
}

/// The rocket fairing that instruments every request with the sqreen agent.
///
/// Attach it once (`.attach(SqreenFairing::new())`); it is a singleton
/// fairing, so attaching it again replaces the first one. It:
///
/// - opens a request record for each request (`on_request`) and hands its
///   handle to the [`Sqreen`](crate::Sqreen) request guard;
/// - answers IP block/redirect actions before any application route runs —
///   also for routes that never ask for the guard — by routing the request
///   to an internal route it mounts at [`BLOCKED_PATH`];
/// - closes the record with the response's status, length and content type
///   (`on_response`), and the route parameters of the matched route;
/// - flushes the agent when rocket shuts down (`on_shutdown`).
///
/// With `#[launch]`, let the fairing own the agent: [`from_env`](Self::from_env)
/// starts it when rocket ignites and shuts it down (final batch, heartbeat,
/// logout) when rocket shuts down.
///
/// ```no_run
/// use sqreen_rocket::{Sqreen, SqreenFairing};
///
/// #[rocket::get("/")]
/// fn index(sq: Sqreen) -> &'static str {
///     sq.track_event("home.viewed");
///     "ok"
/// }
///
/// #[rocket::launch]
/// fn rocket() -> _ {
///     rocket::build()
///         .attach(SqreenFairing::from_env())
///         .mount("/", rocket::routes![index])
/// }
/// ```
///
/// An application that starts the agent itself (`sqreen::init*`, keeping
/// the guard in `main`) attaches [`SqreenFairing::new`] instead.
#[derive(Clone)]
pub struct SqreenFairing {
    agent: LazyAgent,
    page: Option<RenderFn>,
    /// The agent this fairing starts and stops ([`Self::from_env`]).
    owned: Option<Arc<Owned>>,
}

/// The agent a fairing owns: how to start it, then its guard, and the
/// requests being served (its shutdown waits for them).
#[derive(Debug)]
struct Owned {
    start: Mutex<Option<Option<Config>>>,
    guard: Mutex<Option<AgentGuard>>,
    in_flight: AtomicUsize,
}

impl std::fmt::Debug for SqreenFairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqreenFairing")
            .field("agent", &self.agent)
            .field("owns_agent", &self.owned.is_some())
            .field("custom_blocked_response", &self.page.is_some())
            .finish()
    }
}

impl Default for SqreenFairing {
    /// Same as [`SqreenFairing::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl SqreenFairing {
    /// A fairing for the global agent, the one `sqreen::init` /
    /// `sqreen::init_from_env` starts; the application keeps the guard.
    ///
    /// Build it before or after `init`: the agent is looked up on the first
    /// requests (one atomic load per request once found). Requests that
    /// arrive before `init` pass through untouched. At shutdown the fairing
    /// flushes the agent; the guard's drop logs it out.
    pub fn new() -> Self {
        Self::on(LazyAgent::global(FRAMEWORK, VERSION), None)
    }

    /// A fairing that owns the agent: it starts it with the configuration
    /// from `sqreen.toml` and `SQREEN_*` variables
    /// ([`init_from_env`](sqreen_core::init_from_env)) when rocket ignites,
    /// and shuts it down (final batch, heartbeat, logout, within
    /// `shutdown_timeout`) when rocket shuts down. For `#[launch]`, where
    /// `main` has no place to keep a guard.
    pub fn from_env() -> Self {
        Self::owning(None)
    }

    /// [`from_env`](Self::from_env) with this configuration
    /// ([`init`](sqreen_core::init)).
    pub fn from_config(config: Config) -> Self {
        Self::owning(Some(config))
    }

    fn owning(config: Option<Config>) -> Self {
        let owned = Owned {
            start: Mutex::new(Some(config)),
            guard: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
        };
        Self::on(LazyAgent::global(FRAMEWORK, VERSION), Some(Arc::new(owned)))
    }

    /// A fairing for this agent (tests, or applications running several agents).
    pub fn with_agent(agent: Agent) -> Self {
        Self::on(LazyAgent::fixed(agent, FRAMEWORK, VERSION), None)
    }

    fn on(agent: LazyAgent, owned: Option<Arc<Owned>>) -> Self {
        Self {
            agent,
            page: None,
            owned,
        }
    }

    /// Renders IP block/redirect responses, and [`Blocked`](crate::Blocked)
    /// errors returned by handlers, with your own function instead of the
    /// default page ([`default_blocked_response`](crate::default_blocked_response)).
    ///
    /// ```
    /// use rocket::http::Status;
    /// use rocket::Response;
    /// use sqreen_rocket::SqreenFairing;
    ///
    /// let fairing = SqreenFairing::new().blocked_response(|resp| {
    ///     let body = "Nope.";
    ///     Response::build()
    ///         .status(Status::new(resp.status()))
    ///         .sized_body(body.len(), std::io::Cursor::new(body))
    ///         .finalize()
    /// });
    /// ```
    #[must_use]
    pub fn blocked_response<F>(mut self, f: F) -> Self
    where
        F: Fn(&SecurityResponse) -> Response<'static> + Send + Sync + 'static,
    {
        self.page = Some(Arc::new(f));
        self
    }

    /// The agent this fairing reports to, if there is one yet.
    pub fn agent(&self) -> Option<&Agent> {
        self.agent.get()
    }
}

/// The matched route's parameters (`/users/<id>` → `id`), from its
/// `<name>` segments; a trailing `<path..>` takes the rest. Empty (and
/// allocation-free) for routes without any.
fn route_params(request: &Request<'_>) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let Some(route) = request.route() else {
        return params;
    };
    let pattern = route.uri.path();
    if !pattern.contains('<') {
        return params;
    }
    let pattern = pattern.split('/').filter(|s| !s.is_empty());
    let mut actual = request.uri().path().segments();
    for segment in pattern {
        let Some(name) = segment.strip_prefix('<').and_then(|s| s.strip_suffix('>')) else {
            actual.next();
            continue;
        };
        if let Some(name) = name.strip_suffix("..") {
            let rest: Vec<&str> = actual.by_ref().collect();
            params.push((name.to_owned(), rest.join("/")));
            break;
        }
        match actual.next() {
            Some(value) => params.push((name.to_owned(), value.to_owned())),
            None => break,
        }
    }
    params
}

/// The core's view of `request`.
fn request_info<'a>(request: &'a Request<'_>, pairs: &'a RocketHeaders<'a>) -> RequestInfo<'a> {
    let uri = request.uri();
    let scheme = if request.rocket().config().tls_enabled() {
        "https"
    } else {
        "http"
    };
    RequestInfo::new(request.method().as_str(), uri.path().as_str(), pairs)
        .query(uri.query().map(|q| q.as_str()))
        .peer(request.remote())
        .scheme(scheme)
}

/// The internal route's handler: answers the security response stashed by
/// `on_request`; a request that was not blocked (someone asking for
/// [`BLOCKED_PATH`] directly) is forwarded, so it 404s as usual.
#[derive(Clone)]
struct BlockedRoute;

#[rocket::async_trait]
impl Handler for BlockedRoute {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        match &request.local_cache(RequestState::passed).blocked {
            Some(response) => Outcome::Success(render(request, response)),
            None => Outcome::Forward((data, rocket::http::Status::NotFound)),
        }
    }
}

/// The parsed [`BLOCKED_PATH`].
fn blocked_uri() -> Origin<'static> {
    rocket::uri!("/__sqreen/blocked")
}

/// Reads the declared body from rocket's peek buffer, when all of it fits;
/// `None` otherwise (the body is then not captured, and never consumed).
async fn peek_body<'d>(data: &'d mut Data<'_>, declared: Option<u64>) -> Option<&'d [u8]> {
    let len = usize::try_from(declared?).ok()?;
    if len > MAX_CAPTURED_BODY {
        return None;
    }
    let body = data.peek(len).await;
    (body.len() == len).then_some(body)
}

#[rocket::async_trait]
impl Fairing for SqreenFairing {
    fn info(&self) -> Info {
        Info {
            name: "sqreen",
            kind: Kind::Ignite | Kind::Request | Kind::Response | Kind::Shutdown | Kind::Singleton,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        if let Some(owned) = &self.owned {
            let start = lock(&owned.start).take();
            if let Some(config) = start {
                let guard = match config {
                    Some(config) => sqreen_core::init(config),
                    None => sqreen_core::init_from_env(),
                };
                self.agent.set(guard.agent().clone());
                *lock(&owned.guard) = Some(guard);
            }
        }
        let routes: Vec<Route> = METHODS
            .into_iter()
            .map(|method| {
                let mut route = Route::ranked(BLOCKED_RANK, method, BLOCKED_PATH, BlockedRoute);
                route.name = Some("sqreen security response".into());
                route
            })
            .collect();
        let rocket = rocket.mount("/", routes);
        Ok(match &self.page {
            Some(page) => rocket.manage(BlockedPage(Arc::clone(page))),
            None => rocket,
        })
    }

    async fn on_request(&self, request: &mut Request<'_>, data: &mut Data<'_>) {
        if let Some(owned) = &self.owned {
            owned.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        let Some(agent) = self.agent.get() else {
            return;
        };
        if !agent.is_enabled() {
            return;
        }
        // GET, HEAD, OPTIONS…: no body to capture, and no header lookups.
        let body = if request.method().supports_payload() {
            let headers = request.headers();
            let content_type = headers.get_one("Content-Type");
            let content_length = headers
                .get_one("Content-Length")
                .and_then(|v| v.trim().parse::<u64>().ok());
            if agent.wants_body(content_type, content_length) {
                peek_body(data, content_length).await
            } else {
                None
            }
        } else {
            None
        };
        // Without a body to copy, the request is copied only if a handler
        // takes the `Sqreen` guard.
        let open = {
            let pairs = RocketHeaders(request.headers());
            agent.open(|| request_info(request, &pairs), body)
        };
        match open {
            Open::Pass => {}
            Open::Request(slot) => {
                request.local_cache(move || RequestState::recording(slot));
            }
            Open::Respond(response) => {
                request.local_cache(move || RequestState::blocked(response));
                request.set_uri(blocked_uri());
            }
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        if let Some(owned) = &self.owned {
            owned.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        let slot = request.local_cache(RequestState::passed).take_slot();
        // The route that answered is known now (the guard may have run on
        // a route that forwarded): its parameters replace those copied by
        // the guard.
        slot.set_route_params(|| route_params(request));
        // Only a record holding entries reads the response headers.
        slot.close_with(|| {
            ResponseInfo::new(response.status().code)
                .content_length(response.body().preset_size().map(|n| n as u64))
                .content_type(response.headers().get_one("Content-Type"))
        });
    }

    async fn on_shutdown(&self, rocket: &Rocket<Orbit>) {
        let owned_guard = self
            .owned
            .as_ref()
            .and_then(|owned| Some((owned, lock(&owned.guard).take()?)));
        if let Some((owned, guard)) = owned_guard {
            // Rocket calls this as its graceful shutdown begins: the requests
            // still being served get rocket's grace period to finish (and
            // their records to be queued) before the agent stops.
            let grace = Duration::from_secs(rocket.config().shutdown.grace.into());
            let deadline = Instant::now() + grace;
            while owned.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
                rocket::tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let timeout = guard.config().shutdown_timeout;
            if !guard.shutdown_async(timeout).await {
                tracing::warn!(
                    target: "sqreen::rocket",
                    event = "shutdown.incomplete",
                    ?timeout,
                    "rocket shutdown: the agent could not deliver everything and log out in time"
                );
            }
            // Unregisters the global agent; the shutdown is done already.
            drop(guard);
            return;
        }
        let Some(agent) = self.agent.get() else {
            return;
        };
        let timeout = agent.config().shutdown_timeout;
        if !agent.flush_async(timeout).await {
            tracing::warn!(
                target: "sqreen::rocket",
                event = "shutdown.flush_incomplete",
                ?timeout,
                "rocket shutdown: not every queued event reached the backend in time"
            );
        }
    }
}
