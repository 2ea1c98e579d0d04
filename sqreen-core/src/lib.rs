//! # sqreen-core
//!
//! The framework-agnostic core of sqreen-rs, a security event tracking agent
//! for Rust web applications, after the Sqreen agent. Applications track
//! business events (`user.invited`, `payment.failed`); the agent attaches
//! the HTTP request they happened in, scrubs personal data, queues the
//! records locally and sends them to a backend in batches on a heartbeat.
//! The backend's playbooks answer with security responses (block or
//! redirect an IP or a user) that the middleware enforces.
//!
//! Applications use it through the `sqreen` facade and a framework adapter
//! (`sqreen-axum`, `sqreen-actix`, `sqreen-rocket`, `sqreen-warp`); adapter
//! authors use this crate directly.
//!
//! ## Quickstart
//!
//! ```no_run
//! use sqreen_core::Config;
//!
//! // Token, URL and the other settings come from sqreen.toml and SQREEN_* variables.
//! let _guard = sqreen_core::init_from_env(); // keep it alive: dropping it flushes
//! // … add the adapter's middleware to your app; in a handler:
//! # let sq = sqreen_core::Sqreen::disabled();
//! sq.track_event("my.event").with_properties([("key", "value")]);
//! let user = sq.for_user([("uid", "my-uid")]);
//! user.track_auth_success();
//! user.identify().expect("a blocked user gets the security response");
//! ```
//!
//! ## What an adapter does
//!
//! ```
//! use sqreen_core::{Agent, Begin, RequestInfo, ResponseInfo, Sqreen};
//!
//! fn handle(agent: &Agent, headers: &[(&str, &str)], path: &str) -> u16 {
//!     let info = RequestInfo::new("GET", path, &headers);
//!     match agent.begin(&info) {
//!         Begin::Pass => handler(Sqreen::disabled()),
//!         Begin::Respond(response) => response.status(),
//!         Begin::Record(record) => {
//!             let status = handler(record.handle());
//!             record.close(ResponseInfo::new(status));
//!             status
//!         }
//!     }
//! }
//! fn handler(sq: Sqreen) -> u16 {
//!     sq.track_event("page.viewed");
//!     200
//! }
//! # let agent = Agent::off(sqreen_core::Config::default());
//! # assert_eq!(handle(&agent, &[], "/"), 200);
//! ```
//!
//! The adapters of this workspace use
//! [`begin_on_demand`](Agent::begin_on_demand) instead: the record is
//! opened empty, and the framework's extractor copies the request into it
//! ([`Sqreen::capture_request`]) when a handler takes the handle, so that a
//! request whose handler never asks is never copied.
//!
//! ## Guarantees
//!
//! - The request path never waits: no network, no lock shared between
//!   requests; a full queue drops the record and counts it.
//! - Nothing personal leaves the process unscrubbed ([`scrub`]).
//! - Bad input (malformed headers, absurd sizes, hostile backend answers)
//!   is skipped, logged (rate-limited) and counted in [`Agent::stats`];
//!   it never panics.
//! - A backend that is down, slow or rude never slows the application:
//!   events wait in a bounded buffer and are retried with backoff.
//! - Dropping the [`AgentGuard`] flushes within `shutdown_timeout`.
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `test` | [`test::CaptureBackend`], an in-memory backend, and [`test::with_captured_events`] |
//!
//! ## Logs
//!
//! Every log line goes through `tracing` under the `sqreen::*` targets with a
//! stable `event` field (`login.ok`, `batch.failed`, `queue.full`, …).

pub mod actions;
mod agent;
pub mod client_ip;
pub mod config;
mod event;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod lazy;
mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
pub mod protocol;
mod record;
mod request;
pub mod scrub;
mod sdk;
pub mod stats;
#[cfg(feature = "test")]
pub mod test;
pub mod transport;
mod worker;

pub use actions::SecurityResponse;
pub use agent::{
    Agent, AgentGuard, Begin, DeferredRecord, for_user, init, init_from_env, track_event,
};
pub use config::{Config, ConfigBuilder, ConfigError};
pub use lazy::LazyAgent;
pub use record::RequestRecord;
pub use request::{HeaderPairs, RequestInfo, ResponseInfo};
pub use sdk::{Blocked, PropertyValue, Sqreen, SqreenUser, TrackEvent};
pub use stats::{LoginState, Stats};
