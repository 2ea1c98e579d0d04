//! # sqreen-axum
//!
//! The axum 0.8 (and any tower service) adapter of sqreen-rs, a security
//! event tracking agent: a tower layer that records each request, a
//! [`Sqreen`] extractor that hands handlers the request's SDK handle, and
//! the conversion of security responses (IP and user blocks and redirects
//! pushed by the backend's playbooks) into responses.
//!
//! ## Installation
//!
//! Through the facade (recommended, the adapter is then `sqreen::axum`):
//!
//! ```toml
//! [dependencies]
//! sqreen = { version = "0.1", features = ["axum"] }
//! ```
//!
//! or the crate directly, next to the core: `sqreen-axum = "0.1"`,
//! `sqreen-core = "0.1"`.
//!
//! ## Quickstart
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{routing::post, Router};
//! use sqreen_axum::{Blocked, Sqreen, SqreenLayer};
//!
//! async fn login(sq: Sqreen) -> Result<&'static str, Blocked> {
//!     let user = sq.for_user([("username", "alice")]);
//!     user.track_auth_success();
//!     user.identify()?; // a user blocked by a playbook gets the security response
//!     sq.track_event("account.viewed").with_properties([("plan", "pro")]);
//!     Ok("welcome")
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     // 1. Start the agent first (token etc. from sqreen.toml / SQREEN_*);
//!     //    keep the guard alive: dropping it flushes what is queued.
//!     let _guard = sqreen_core::init_from_env();
//!     // 2. Add the layer after the routes.
//!     let app = Router::new()
//!         .route("/login", post(login))
//!         .layer(SqreenLayer::new());
//!     // 3. Serve with the peer address, so the client IP is known.
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
//! }
//! ```
//!
//! ## Where to put the layer (pitfalls)
//!
//! - **Init order does not matter.** [`SqreenLayer::new`] finds the global
//!   agent on the first requests, so the router may be built before or after
//!   `sqreen::init*`; requests that arrive before `init` pass through
//!   unrecorded (the first one logs a warning). With several agents, or in
//!   tests, use [`SqreenLayer::with_agent`].
//! - **`Router::layer`, after the routes.** axum applies a layer to the
//!   routes added *before* the `.layer(..)` call, so add it last. It then
//!   also covers the fallback (404s), and runs after routing, which gives
//!   it the route parameters (`/users/{id}` → `id`). `route_layer` works
//!   too but skips unmatched requests.
//! - **Or around the whole `Router`**, as a tower service. Every request
//!   then goes through it before routing; it skips the plumbing axum adds
//!   to every `Router::layer` layer (`wrapped` in `BENCHMARKS.md`). Route parameters are still captured by the [`Sqreen`]
//!   extractor, except for requests whose body is captured or whose IP is
//!   under an action (those are copied before routing):
//!
//!   ```no_run
//!   use std::net::SocketAddr;
//!   use axum::{extract::Request, routing::get, Router, ServiceExt};
//!   use sqreen_axum::SqreenLayer;
//!   use tower::Layer as _;
//!
//!   # async fn run() -> std::io::Result<()> {
//!   let router: Router = Router::new().route("/", get(|| async { "ok" }));
//!   let app = SqreenLayer::new().layer(router);
//!   // The service accepts any body type: name the one axum serves.
//!   let app = ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app);
//!   let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//!   axum::serve(listener, app).await
//!   # }
//!   ```
//! - **Put it on the outermost router.** Paths are read from axum's
//!   `OriginalUri`, so nested routers report the full path wherever the
//!   layer is, but only the routers under the layer are covered.
//! - **Relative to other layers**: layers added after it (outer) run
//!   first and see every request, blocked IPs included; layers added
//!   before it (inner) only see what it lets through, and their responses
//!   (a 401 from an auth layer, a 429 from a rate limiter) are the ones
//!   recorded. Put authentication, rate limiting and the like inside it.
//! - **Peer address**: serve with
//!   `into_make_service_with_connect_info::<SocketAddr>()`; the layer reads
//!   `ConnectInfo<SocketAddr>` from the request extensions. Without it the
//!   client IP comes from the proxy headers only. Behind a proxy, configure
//!   `ip_header` / `trusted_proxies` in the agent's configuration. In
//!   tests, axum's `MockConnectInfo` works too, added after (outside) the
//!   layer.
//! - **Handlers in another task**: the extractor, [`from_request`] and [`current()`] find the
//!   handle while the layer polls the service it wraps, i.e. in the
//!   request's own task. If something between the layer and your handlers
//!   moves the request to another task (a middleware running
//!   `tokio::spawn(next.run(req))`, a `tower::buffer::Buffer`), turn on
//!   [`SqreenLayer::handle_in_extensions`] so the handle travels with the
//!   request. A task your handler spawns gets the handle moved in:
//!   `let sq2 = sq.clone(); tokio::spawn(async move { sq2.track_event(..); })`.
//! - **Plain hyper / tonic**: the layer works on any
//!   `Service<http::Request<B>>` whose responses are `http::Response<_>`;
//!   it answers `axum::response::Response`. There, handlers get the
//!   request's handle with [`from_request`]`(&request)` (which, like the
//!   extractor, copies the request's details into the record): it works
//!   while the layer calls and polls the inner service, so call it before
//!   spawning a task and move the handle in. Bodies are captured when `B`
//!   is `axum::body::Body` or `http_body_util::Full<Bytes>`; for another
//!   body type (hyper's `Incoming`) map it first, e.g. with tower's
//!   `ServiceBuilder::new().map_request_body(axum::body::Body::new).layer(SqreenLayer::new())`.
//!
//! ## Blocked responses
//!
//! An IP under a block action gets its status (the configured
//! `blocking_status`, 403 by default) and the core's block page; an IP
//! under a redirect action gets `303 See Other` with `Location`; the
//! handler never runs. A handler returning `Result<_, `[`Blocked`]`>` gets
//! the same answers from `user.identify()?`. To render your own page, give
//! the layer a renderer; it is used for both:
//!
//! ```
//! use axum::response::{Html, IntoResponse};
//! use sqreen_axum::{default_blocked_response, SqreenLayer};
//!
//! let layer = SqreenLayer::new().blocked_response(|response| match response.location() {
//!     Some(_) => default_blocked_response(response), // keep the redirects as they are
//!     None => (axum::http::StatusCode::FORBIDDEN, Html("<h1>Blocked</h1>")).into_response(),
//! });
//! ```
//!
//! A single handler can also map the error itself instead of using `?`:
//! `user.identify().map_err(|blocked| my_page(blocked.response()))?`.
//!
//! ## Client IP behind proxies
//!
//! Set `trusted_proxies` to the proxies in front of the application (for
//! one reverse proxy on the same host: `SQREEN_TRUSTED_PROXIES=127.0.0.1`);
//! otherwise any client can choose the IP it is recorded and blocked under
//! by sending `X-Forwarded-For`. Recipes for the common deployments:
//! [`sqreen_core::client_ip`](sqreen_core::client_ip#recipes).
//!
//! ## What is captured
//!
//! Nothing, until a handler takes the [`Sqreen`] extractor (or calls
//! [`from_request`]): the layer only checks the path passlist and, when the
//! backend pushed IP actions, the client IP. The extractor then copies what
//! the record needs from the request. Code that reaches the handle through
//! [`current()`] alone, in a request where neither ran, records events
//! without the request's details (the agent warns, and counts it in
//! `invalid_sdk_input`).
//!
//! For a request the agent records, and only if the handler tracked
//! something (a request tracking nothing is never sent): method, path,
//! query, scheme and host, the peer address, the user agent and referer,
//! the client-IP headers (`X-Forwarded-For`, `Forwarded`, `X-Real-Ip`, …,
//! and the configured `ip_header`), `Content-Type`/`Length`, `Host`,
//! `X-Request-Id`; urlencoded-form and JSON bodies with a declared
//! `Content-Length` within `body_capture_limit` (the handler gets the
//! same bytes, intact); axum's route parameters; and the response status,
//! length and content type. Scrubbing of personal data happens on the
//! agent's thread. Other bodies (chunked, multipart, binary, over the
//! limit) are never touched. A body being captured that cannot be read
//! (the client sends more than it declared, or goes away) is answered
//! `400` without running the handler.
//!
//! ## Cost
//!
//! In-process, per request (`benches/middleware.rs`, and
//! `benches/instructions.rs` for instruction counts): a request whose
//! handler does not take the handle costs the passlist and action checks
//! (two flags when nothing is loaded) and the clock: no record is opened
//! and nothing is copied. Taking the [`Sqreen`] extractor opens a pooled
//! record and copies the request into it. Once the agent's record pool has
//! filled, nothing is allocated: the request's slot is made current for
//! the inner service's polls (one value swapped in a thread-local, not an
//! entry in the request extensions) and the response future is not boxed.
//! Tracking adds the events themselves; everything else happens on the
//! agent's thread. `BENCHMARKS.md` has today's figures.
//!
//! When the agent is off or not logged in yet, the layer hands every
//! request to the inner service untouched and [`Sqreen`] yields a disabled
//! handle: every call is a no-op.

mod blocked;
mod current;
mod extract;
mod future;
mod layer;
mod request;

pub use blocked::{Blocked, default_blocked_response};
pub use current::{current, from_request};
pub use extract::Sqreen;
pub use future::ResponseFuture;
pub use layer::{SqreenLayer, SqreenService};
pub use sqreen_core;
