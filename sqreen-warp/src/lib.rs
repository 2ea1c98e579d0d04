//! # sqreen-warp
//!
//! The [warp](https://docs.rs/warp/0.4) 0.4 adapter of sqreen-rs, a security
//! event tracking agent: track business events from your handlers; the
//! agent attaches the HTTP request they happened in, scrubs personal data,
//! sends them to a backend, and enforces the security responses (block or
//! redirect an IP or a user) the backend's playbooks decide.
//!
//! - [`SqreenWrapper`] wraps your routes: it records each request, answers
//!   blocked and redirected IPs before any route runs, and closes the
//!   record with the response.
//! - [`sqreen()`] is the filter that hands a route the request's
//!   [`Sqreen`] handle (`track_event`, `for_user`, `identify`, …).
//! - [`Blocked`] is the error `identify()?` produces for a blocked user: a
//!   [`Reply`](warp::Reply) and a [`Reject`](warp::reject::Reject), turned
//!   into the block page or redirect; [`recover_blocked`] does it in a
//!   `recover`.
//! - [`SqreenWrapper::service`] serves the wrapped app as a tower service
//!   ([`SqreenService::serve`] replaces `warp::serve`) that copies request
//!   bodies while warp's own body filters read them: body capture with
//!   routes unchanged.
//! - [`body`] holds drop-in replacements for `warp::body::{bytes, json,
//!   form}`, for body capture under `warp::serve`.
//! - [`param()`] is `warp::path::param()` that also records the segment as
//!   a named route parameter.
//!
//! ## Installation
//!
//! ```toml
//! [dependencies]
//! sqreen = { version = "0.1", features = ["warp"] } # this crate is `sqreen::warp`
//! # or directly: sqreen-warp = "0.1" (plus sqreen-core for `init`)
//! ```
//!
//! ## Quickstart
//!
//! ```no_run
//! use std::collections::HashMap;
//! use warp::Filter;
//! use sqreen_warp::{Blocked, Sqreen, SqreenWrapper, sqreen};
//!
//! #[tokio::main]
//! async fn main() {
//!     // 1. Start the agent (`sqreen::init_from_env()` with the facade), before
//!     //    or after building the filters. Keep the guard alive.
//!     let _guard = sqreen_core::init_from_env();
//!
//!     // 2. Routes that track ask for the handle with `sqreen()`.
//!     let home = warp::path::end()
//!         .and(sqreen())
//!         .map(|sq: Sqreen| {
//!             sq.track_event("home.viewed").with_properties([("plan", "pro")]);
//!             "hello"
//!         });
//!     let login = warp::path("login")
//!         .and(warp::post())
//!         .and(sqreen())
//!         .and(sqreen_warp::body::form())
//!         .then(login);
//!
//!     // 3. Wrap the whole app, once.
//!     let app = SqreenWrapper::new().capture_bodies(true).wrap(home.or(login));
//!     warp::serve(app).run(([127, 0, 0, 1], 8000)).await;
//! }
//!
//! // With `then`, return `Result<_, Blocked>` and `identify()?` just works.
//! async fn login(sq: Sqreen, form: HashMap<String, String>) -> Result<impl warp::Reply, Blocked> {
//!     let user = sq.for_user([("username", form["username"].as_str())]);
//!     user.track_auth_success();
//!     user.identify()?; // a blocked user gets the block page / redirect
//!     Ok("welcome")
//! }
//! ```
//!
//! With `and_then` (rejections), write
//! `user.identify().map_err(Blocked::from)?`: the wrapper answers the
//! [`Blocked`] rejection. Outside the wrapper, add
//! `.recover(sqreen_warp::recover_blocked)`.
//!
//! ## Ordering pitfalls
//!
//! - **Start the agent before building the wrapper.** [`SqreenWrapper::new`]
//!   takes the global agent of `sqreen::init*` at construction; built
//!   earlier, it records nothing (and logs a warning). Or pass the agent
//!   with [`SqreenWrapper::with_agent`].
//! - **Wrap the whole app once, after the `or` of all routes.** IP actions
//!   then apply to every request, including unknown paths, and each request
//!   gets one record. Wrapping routes one by one inside an `or` opens (and
//!   drops) a record for every branch warp tries.
//! - **Put your `recover` inside the wrapper** (`wrapper.wrap(routes.recover(f))`)
//!   if error responses should be recorded with their status: rejections
//!   pass through the wrapper unchanged (so an outer `or` still works), and
//!   the record of a rejected request is closed without a response. Your
//!   `recover` should pass [`Blocked`] on (`Err(rejection)`), or call
//!   [`recover_blocked`] first, so the block page is still sent.
//! - **Body capture is opt-in** ([`SqreenWrapper::capture_bodies`]). A
//!   warp filter can read the request body only once and never put it
//!   back, so there are two ways:
//!   - serve with [`SqreenWrapper::service`] and [`SqreenService::serve`]
//!     (or your own hyper loop): the body is copied as the route reads it,
//!     and routes keep `warp::body::json()` and friends. A body is captured
//!     once the route has read it whole.
//!   - under `warp::serve`, the wrapper buffers the body before the routes
//!     run, and routes must read it through [`body::bytes`],
//!     [`body::json`] or [`body::form`], which hand the buffered bytes over.
//!     A route reading a buffered body with `warp::body::*` would fail with
//!     a 500.
//! - **One request per task.** warp gives filters no per-request storage, so
//!   the wrapper hands the handle to [`sqreen()`] through a side channel
//!   keyed by the tokio task running the request (or the thread, outside
//!   any task). `warp::serve`, hyper and `warp::test` run each request in
//!   its own task (or the test's future), so this always holds in practice.
//!   Two requests driven concurrently by *one* task (e.g. `join!` over
//!   `warp::test` calls), or two nested wrappers, cannot be told apart:
//!   their routes get a disabled handle and the real body (never each
//!   other's), and a warning is logged.
//!
//! ## Blocked responses
//!
//! By default a blocked IP or user gets [`default_blocked_response`]: the
//! configured status (403) with the core's block page, or `303 See Other`
//! with `Location` for a redirect. Render your own with
//! [`SqreenWrapper::blocked_response`]; it is used for IP actions and for
//! every [`Blocked`] of a handler inside the wrapper (returned as a reply
//! or as a rejection). A handler can also answer something else entirely
//! by handling the error itself:
//!
//! ```
//! # use sqreen_warp::Sqreen;
//! # use warp::Reply;
//! fn login(sq: Sqreen) -> warp::reply::Response {
//!     match sq.for_user([("username", "alice")]).identify() {
//!         Ok(()) => "welcome".into_response(),
//!         Err(blocked) => warp::reply::with_status(
//!             "your account is locked",
//!             warp::http::StatusCode::from_u16(blocked.response().status())
//!                 .unwrap_or(warp::http::StatusCode::FORBIDDEN),
//!         )
//!         .into_response(),
//!     }
//! }
//! ```
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
//! Nothing of the request is extracted until a route's [`sqreen()`] filter
//! runs: the wrapper itself only extracts it when the path passlist or IP
//! actions need to see it, or when body capture is on
//! ([`SqreenWrapper::capture_bodies`]), for every request then. Without
//! those, the wrapper does not even open the request's record until a
//! route asks for the handle.
//!
//! Per recorded request, sent only when a handler tracked something:
//! method, path, raw query, the peer address, the client-IP and
//! other tracked headers (`X-Forwarded-For`, `Forwarded`, `Host`,
//! `Content-Type`, `X-Request-Id`, …), user agent and referer; with body
//! capture on, urlencoded-form and JSON bodies up to `body_capture_limit`
//! (with a declared `Content-Length`); and the response's status, length
//! and content type; route parameters a route names with [`param()`] (warp
//! itself exposes neither their names nor the route that matched). The
//! scheme is `http` (filters cannot see TLS) unless a trusted proxy
//! (`trusted_proxies`) says otherwise with `X-Forwarded-Proto` or
//! `Forwarded: proto=`. Not captured: an HTTP/2 `:authority` without `Host`
//! header.
//! Everything is scrubbed on the agent's thread before it is sent.
//!
//! When the agent is off (no token, `disable`, not logged in yet) the
//! wrapper passes requests through without copying or buffering anything.

mod blocked;
pub mod body;
mod context;
mod extract;
mod param;
mod serve;
mod wrapper;

pub use blocked::{Blocked, default_blocked_response, recover_blocked};
pub use extract::{Sqreen, sqreen};
pub use param::param;
pub use serve::{BoxError, SqreenService, TappedBody};
pub use sqreen_core;
pub use wrapper::SqreenWrapper;
