//! # sqreen-rocket
//!
//! The [rocket] 0.5 adapter of sqreen-rs: a fairing ([`SqreenFairing`]) that
//! records every request and enforces the backend's security responses, a
//! request guard ([`Sqreen`]) that hands handlers the request's SDK handle,
//! and [`Blocked`], the responder `identify()?` turns into.
//!
//! ## Installation
//!
//! Through the facade (the adapter is then `sqreen::rocket`):
//!
//! ```toml
//! [dependencies]
//! sqreen = { version = "0.1", features = ["rocket"] }
//! ```
//!
//! or directly, with the core: `sqreen-rocket = "0.1"` and `sqreen-core = "0.1"`.
//!
//! ## Quickstart
//!
//! ```no_run
//! use sqreen_rocket::{Blocked, Sqreen, SqreenFairing};
//!
//! #[rocket::post("/login")]
//! fn login(sq: Sqreen) -> Result<&'static str, Blocked> {
//!     let user = sq.for_user([("username", "bob")]);
//!     user.track_auth_success();
//!     user.identify()?; // a blocked user gets the block page (403) or a redirect
//!     Ok("welcome")
//! }
//!
//! #[rocket::get("/")]
//! fn index(sq: Sqreen) -> &'static str {
//!     sq.track_event("home.viewed").with_properties([("campaign", "spring")]);
//!     "ok"
//! }
//!
//! #[rocket::launch]
//! fn rocket() -> _ {
//!     // The fairing starts the agent when rocket ignites (token, URL … from
//!     // sqreen.toml / SQREEN_*), instruments every route, and flushes and
//!     // logs the agent out when rocket shuts down.
//!     rocket::build()
//!         .attach(SqreenFairing::from_env())
//!         .mount("/", rocket::routes![index, login])
//! }
//! ```
//!
//! An application that starts the agent itself keeps the guard in `main`
//! and attaches [`SqreenFairing::new`]:
//!
//! ```no_run
//! # use sqreen_rocket::SqreenFairing;
//! #[rocket::main]
//! async fn main() -> Result<(), rocket::Error> {
//!     let _guard = sqreen_core::init_from_env(); // dropped last: flushes and logs out
//!     rocket::build().attach(SqreenFairing::new()).launch().await?;
//!     Ok(())
//! }
//! ```
//!
//! ## Pitfalls
//!
//! - **Init order does not matter.** [`SqreenFairing::new`] finds the
//!   global agent on the first requests, so it may be built before or after
//!   `sqreen::init*`; requests that arrive before pass through unrecorded
//!   (the first one logs a warning). Pass an agent explicitly with
//!   [`SqreenFairing::with_agent`].
//! - **Attach it once.** It is a singleton fairing: a second `attach`
//!   replaces the first.
//! - **Fairing order.** Rocket runs request fairings in the order they were
//!   attached. A fairing attached *after* this one that rewrites the request
//!   URI would undo the rewrite that enforces IP blocks (see below): attach
//!   URI-rewriting fairings first. Response fairings also run in attach
//!   order: the record is closed with the response as it is when this
//!   fairing's `on_response` runs.
//! - **With your own guard, keep it until rocket has stopped.**
//!   `launch().await` returns after rocket's graceful shutdown (SIGINT, and
//!   SIGTERM by default); drop the guard after it. The fairing also flushes
//!   when rocket starts shutting down, but requests still in flight then are
//!   sent by the guard's drop. A fairing from [`SqreenFairing::from_env`]
//!   shuts its agent down in rocket's shutdown fairings, once the requests in
//!   flight have had rocket's grace period to finish.
//!
//! ## How IP actions are enforced
//!
//! A rocket fairing cannot answer a request from `on_request`. When the
//! agent says an IP is blocked or redirected, the fairing stores the
//! security response in the request-local cache and rewrites the request's
//! URI to [`BLOCKED_PATH`] (`/__sqreen/blocked`), where it mounted, at
//! ignition, a route for every method with the lowest rank possible. That
//! route answers the response; no application route — so no handler, data
//! guard or request guard of the application — runs, whether or not it asks
//! for the [`Sqreen`] guard. A client requesting `/__sqreen/blocked` itself
//! gets the usual 404.
//!
//! ## Customising the blocked response
//!
//! [`SqreenFairing::blocked_response`] replaces the default page (see
//! [`default_blocked_response`]) for IP actions *and* for [`Blocked`] errors
//! returned by handlers:
//!
//! ```
//! use rocket::http::{ContentType, Status};
//! use rocket::Response;
//! use sqreen_rocket::SqreenFairing;
//!
//! let fairing = SqreenFairing::new().blocked_response(|resp| {
//!     if resp.location().is_some() {
//!         return sqreen_rocket::default_blocked_response(resp); // keep redirects as they are
//!     }
//!     let page = "<h1>Sorry!</h1>";
//!     Response::build()
//!         .status(Status::new(resp.status()))
//!         .header(ContentType::HTML)
//!         .sized_body(page.len(), std::io::Cursor::new(page))
//!         .finalize()
//! });
//! ```
//!
//! A single handler can answer differently by mapping the error itself:
//! `user.identify().map_err(|_| (Status::Forbidden, "not you"))`.
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
//! Nothing is copied until a handler takes the [`Sqreen`] guard: the
//! fairing itself only checks the path passlist and, when the backend
//! pushed IP actions, the client IP (a request with a body to capture is
//! copied at once, its body being the handler's afterwards). With neither
//! loaded and no body to capture, it does not even open the record until
//! the guard runs.
//!
//! For each recorded request (sent only if the handler tracked something):
//! method, path, raw query, the TCP peer address (rocket's
//! [`Request::remote`](rocket::Request::remote)) and the tracked headers the
//! agent resolves the client IP from (`X-Forwarded-For`, …, its configured
//! `ip_header`), `Host`, user agent, referer; the route parameters of the
//! matched route (`/users/<id>` → `id`, `<path..>` → the rest of the path);
//! the response's status, preset body length and `Content-Type`.
//!
//! Urlencoded-form and JSON bodies are captured **up to 512 bytes**: a
//! fairing can only see a body through rocket's 512-byte peek buffer
//! ([`Data::peek`](rocket::Data::peek), [`MAX_CAPTURED_BODY`]) without
//! consuming it. A body is captured when its declared `Content-Length` is within both
//! that limit and `body_capture_limit`; larger or chunked bodies are not
//! captured by the fairing. Captured or not, the handler reads the body
//! intact. A route that reads its form with [`Form`] (this crate's, in
//! place of `rocket::form::Form`) has the whole form captured, up to
//! `body_capture_limit` (16 KiB by default).
//!
//! When the agent is off, not yet logged in, or the path/IP is passlisted,
//! the fairing does nothing: the body is not peeked and handlers get a
//! disabled handle.

mod blocked;
mod fairing;
mod form;
mod guard;

pub use blocked::{Blocked, default_blocked_response};
pub use fairing::{BLOCKED_PATH, MAX_CAPTURED_BODY, SqreenFairing};
pub use form::Form;
pub use guard::Sqreen;
pub use sqreen_core;
