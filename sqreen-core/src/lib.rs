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
//! One call per request, [`Agent::open`], and the slot it hands back:
//!
//! ```
//! use sqreen_core::{Agent, Open, RequestInfo, ResponseInfo, Sqreen};
//!
//! fn handle(agent: &Agent, headers: &[(&str, &str)], path: &str) -> u16 {
//!     // Built only if the agent must see the request now (a passlist or
//!     // an IP action is loaded) or when a handler asks for the handle.
//!     let request = || RequestInfo::new("GET", path, &headers);
//!     match agent.open(request, None) {
//!         Open::Pass => handler(Sqreen::disabled()),
//!         Open::Respond(response) => response.status(),
//!         Open::Request(mut slot) => {
//!             // What the framework's extractor does when a handler asks:
//!             let status = handler(slot.handle_with(request));
//!             slot.close(ResponseInfo::new(status));
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
//! The adapters of this workspace keep the [`RequestSlot`] where their
//! extractor finds it ([`current`], a thread-local entered while the
//! handler's future is polled, or the request's local storage), so that a request whose
//! handler never asks for the handle is never copied, and, when nothing
//! loaded needs to see it, costs no record at all.
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
//! ## Modules
//!
//! The modules form layers, bottom to top: a module uses only modules of
//! lower layers (`tests/layers.rs` holds the same table and fails on any
//! import of a module of the same or a higher layer).
//!
//! ```text
//! 9  lazy        LazyAgent: the global agent, looked up on first use
//!    test        (feature `test`) an in-memory backend, captured events
//!    fuzzing     (feature `fuzzing`) entry points of the fuzz targets
//! 8  agent       Agent, AgentGuard, init, track_event, for_user: the public handle
//!    current     the RequestSlot current while a middleware polls the handler
//! 7  open        Agent::open's decision (Open) and the RequestSlot adapters hold
//!    worker/     the agent thread: mod (loop, calls), intake (record → event),
//!                batch (batches, retries, flushes), login, beat (heartbeat, commands)
//! 6  shared      Shared: one agent's state (config, its Home, enabled flag,
//!                control channel to the thread, the thread); Control messages
//!    encode      a closed record → its JSON event, scrubbed
//! 5  sdk         Sqreen, TrackEvent, SqreenUser, Blocked: what handlers call
//! 4  record/     RecordInner, RequestRecord: one request's copy and entries;
//!                record::Home, the one interface between records and the agent:
//!                pool, queue, counters, warning limits, capture settings, actions
//! 3  transport   the backend connection (HTTP, or the test backend)
//! 2  config      Config: settings from code, sqreen.toml and SQREEN_* variables
//! 1  client_ip   the client IP from proxy headers and the peer
//!    metrics     the heartbeat's metric stores
//!    model       plain data of records: PropertyValue, Entry, user ids, limits,
//!                RuntimeState (actions and passlists in force)
//! 0  request     RequestInfo, ResponseInfo, HeaderPairs: the adapter's view
//!    protocol    the backend protocol's messages
//!    scrub       the scrubber of personal data
//!    stats       counters and their Stats snapshot
//!    actions     security responses and the action store
//!    otel        (feature `otel`) OpenTelemetry export of events
//! ```
//!
//! ## Logs
//!
//! Every log line goes through `tracing` under the `sqreen::*` targets with a
//! stable `event` field (`login.ok`, `batch.failed`, `queue.full`, …).

pub mod actions;
mod agent;
pub mod client_ip;
pub mod config;
pub mod current;
mod encode;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod lazy;
mod metrics;
mod model;
mod open;
#[cfg(feature = "otel")]
pub mod otel;
pub mod protocol;
mod record;
mod request;
pub mod scrub;
mod sdk;
mod shared;
pub mod stats;
#[cfg(feature = "test")]
pub mod test;
pub mod transport;
mod worker;

pub use actions::SecurityResponse;
pub use agent::{Agent, AgentGuard, for_user, init, init_from_env, track_event};
pub use config::{Config, ConfigBuilder, ConfigError};
pub use lazy::LazyAgent;
pub use model::PropertyValue;
pub use open::{Open, RequestSlot};
pub use request::{HeaderPairs, RequestInfo, ResponseInfo};
pub use sdk::{Blocked, Sqreen, SqreenUser, TrackEvent};
pub use stats::{LoginState, Stats};
