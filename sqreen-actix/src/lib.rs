//! # sqreen-actix
//!
//! The [actix-web] 4 adapter of sqreen-rs, a security event tracking agent:
//! track business events from your handlers, the agent attaches the HTTP
//! request they happened in, scrubs personal data and sends them to a
//! backend whose playbooks can block or redirect attackers — responses this
//! middleware enforces.
//!
//! - [`SqreenMiddleware`]: wrap your `App` with it; it records each request
//!   and enforces IP block/redirect actions before your handlers run.
//! - [`Sqreen`]: the extractor handing a handler its request's SDK handle.
//! - [`Blocked`]: the error `identify()?` returns for a blocked user; actix
//!   answers it with the block page or the redirect.
//!
//! [actix-web]: https://docs.rs/actix-web/4
//!
//! ## Installation
//!
//! Through the facade (re-exported as `sqreen::actix`):
//!
//! ```toml
//! [dependencies]
//! sqreen = { version = "0.1", features = ["actix"] }
//! ```
//!
//! or this crate directly, with the core: `sqreen-actix = "0.1"`,
//! `sqreen-core = "0.1"`.
//!
//! ## Quickstart
//!
//! ```no_run
//! use actix_web::{App, HttpResponse, HttpServer, post, web};
//! use sqreen_actix::{Blocked, Sqreen, SqreenMiddleware};
//!
//! #[post("/login")]
//! async fn login(sq: Sqreen, form: web::Form<Vec<(String, String)>>) -> Result<HttpResponse, Blocked> {
//!     let user = sq.for_user([("username", "bob")]);
//!     user.track_auth_success();
//!     user.identify()?; // a user blocked by a playbook gets the security response
//!     sq.track_event("login.form").with_properties([("fields", form.len())]);
//!     Ok(HttpResponse::Ok().body("welcome"))
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     // 1. Start the agent first (token, URL… from sqreen.toml and SQREEN_*);
//!     //    keep the guard alive: dropping it flushes what is queued.
//!     let _guard = sqreen_core::init_from_env();
//!     // 2. Wrap the app: the middleware picks up the agent started above.
//!     HttpServer::new(|| App::new().wrap(SqreenMiddleware::new()).service(login))
//!         .bind(("127.0.0.1", 8000))?
//!         .run()
//!         .await?;
//!     Ok(()) // `_guard` drops here, after the server stopped: the agent flushes
//! }
//! ```
//!
//! ## Pitfalls
//!
//! - **Keep the guard alive.** [`SqreenMiddleware::new`] finds the global
//!   agent on the first requests, so it may be built before or after
//!   `sqreen::init` / `init_from_env`; requests that arrive before `init`
//!   pass through unrecorded (the first one logs a warning). The agent stops
//!   when the guard `init` returned is dropped. With several agents, or in
//!   tests, use [`SqreenMiddleware::with_agent`].
//! - **Wrap it last, on the `App`.** In actix the *last* `.wrap()` runs
//!   *first*. Register `SqreenMiddleware` after your other middleware so it
//!   is the outermost: IP blocks then apply before authentication, rate
//!   limiting or logging, and requests those middleware answer themselves
//!   are recorded too. On a `web::scope(..).wrap(..)` it only covers that
//!   scope.
//! - **Compression.** A `Compress` middleware wrapped *after* sqreen (so
//!   outside it) means the recorded response length is the uncompressed one.
//! - **Route parameters.** App-level middleware runs before routing; the
//!   adapter reads `match_info()` once the handler answered, so route
//!   parameters (`/users/{id}`) are recorded for every matched route.
//! - **Keep the guard.** `let _guard = ..` (not `let _ = ..`, which drops it
//!   at once), and let it drop after `server.await` returns so the queue is
//!   flushed after the last request.
//!
//! ## Blocked responses
//!
//! By default an IP action, and a [`Blocked`] error from `identify()?`, are
//! answered by [`default_blocked_response`]: the configured `blocking_status` (403 by
//! default) with sqreen's block page, or `303 See Other` with a `Location`
//! for redirects. Render your own with
//! [`SqreenMiddleware::blocked_response`]; it covers both IP actions and the
//! `Blocked` errors of handlers behind the middleware:
//!
//! ```
//! use actix_web::{App, HttpResponse};
//! use sqreen_actix::SqreenMiddleware;
//! use sqreen_core::SecurityResponse;
//!
//! # let agent = sqreen_core::Agent::off(sqreen_core::Config::default());
//! let app = App::new().wrap(SqreenMiddleware::with_agent(agent).blocked_response(|r| match r {
//!     SecurityResponse::Block { status } => HttpResponse::build(
//!         actix_web::http::StatusCode::from_u16(*status).unwrap_or(actix_web::http::StatusCode::FORBIDDEN),
//!     )
//!     .json(serde_json::json!({"error": "blocked"})),
//!     redirect => sqreen_actix::default_blocked_response(redirect),
//! }));
//! ```
//!
//! A handler that wants a different answer for one route maps the error
//! itself instead of using `?` on it directly:
//! `user.identify().map_err(|b| MyError::from(b.response().clone()))?`.
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
//! Nothing is copied until a handler takes the [`Sqreen`] extractor (or
//! code calls [`Sqreen::of`]); the middleware itself only checks the path
//! passlist and, when the backend pushed IP actions, the client IP. With
//! neither loaded (and no body to capture) it does not even open the
//! record until then: the request's slot, current while the middleware
//! polls the handler, opens it when asked. [`Sqreen::of`] reads that slot,
//! so a task a handler spawns must take the handle first and move it in. For
//! each request the agent records (only requests whose handler tracked
//! something are sent; the others go back to the agent's record pool at
//! once):
//!
//! - method, path, raw query, the TCP peer address; the scheme (`https` when
//!   the server is bound with TLS) and the host (the URI's authority, else
//!   the `Host` header). `Forwarded` / `X-Forwarded-*` are not interpreted
//!   here (unlike actix's `connection_info()`, which trusts any client): they
//!   are sent as they are among the tracked headers;
//! - user agent, referer, and the tracked headers of the protocol (client IP
//!   headers, `Content-Type`, `Content-Length`, `Host`, `X-Request-Id`, …;
//!   never `Authorization` or `Cookie`); the client IP is resolved by the
//!   core from these and the peer;
//! - urlencoded-form and JSON bodies with a declared `Content-Length` within
//!   `body_capture_limit`: the body is read once, handed to the core, and
//!   put back as the request payload, so `web::Form`, `web::Json`,
//!   `web::Bytes` and `web::Payload` read it intact. Other bodies (chunked,
//!   multipart, large) are never touched;
//! - route parameters (`match_info()`);
//! - the response status, length (when known) and `Content-Type`.
//!
//! Everything is scrubbed by the core before it leaves the process. When the
//! agent is off (no token, not logged in yet, instrumentation removed) the
//! middleware is a pass-through: it does not even read the headers.

mod blocked;
mod extract;
mod middleware;
mod request;

pub use blocked::{Blocked, default_blocked_response};
pub use extract::Sqreen;
pub use middleware::{SqreenFuture, SqreenMiddleware, SqreenService};
