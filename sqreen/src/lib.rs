//! # sqreen
//!
//! Security event tracking for Rust web applications, after the Sqreen
//! agent. Track business events from your handlers; the agent attaches the
//! HTTP request they happened in, scrubs personal data, and sends them in
//! batches to a backend whose playbooks can block or redirect attackers —
//! responses the middleware then enforces.
//!
//! This crate re-exports [`sqreen_core`] and, behind a feature, the adapter
//! for your framework. Add one dependency:
//!
//! ```toml
//! [dependencies]
//! sqreen = { version = "0.1", features = ["axum"] }
//! ```
//!
//! ## Features
//!
//! | feature | module | framework |
//! |---|---|---|
//! | `axum` | `sqreen::axum` | axum 0.8 and any tower service |
//! | `actix` | `sqreen::actix` | actix-web 4 |
//! | `rocket` | `sqreen::rocket` | rocket 0.5 |
//! | `warp` | `sqreen::warp` | warp 0.4 |
//! | `test` | [`test`](mod@test) | an in-memory backend for your tests |
//! | `otel` | `sqreen::otel` | tracked events also exported as OpenTelemetry log records |
//!
//! ## The SDK
//!
//! ```
//! use sqreen::Sqreen;
//! fn checkout(sq: &Sqreen) -> Result<(), sqreen::Blocked> {
//!     sq.track_event("checkout.completed").with_properties([("amount", 42)]);
//!     let user = sq.for_user([("uid", "u-1")]);
//!     user.track_auth_success();
//!     user.identify()?; // Err when a playbook blocks this user
//!     Ok(())
//! }
//! # checkout(&Sqreen::disabled()).unwrap();
//! ```
//!
//! Configuration comes from `sqreen.toml` / `sqreen.yml` and `SQREEN_*`
//! variables ([`Config`]); start the agent once in `main` with
//! [`init_from_env`] and keep the guard alive. Each framework's quickstart
//! is in its module's documentation.

pub use sqreen_core::*;

#[cfg(feature = "actix")]
#[doc(inline)]
pub use sqreen_actix as actix;
#[cfg(feature = "axum")]
#[doc(inline)]
pub use sqreen_axum as axum;
#[cfg(feature = "rocket")]
#[doc(inline)]
pub use sqreen_rocket as rocket;
#[cfg(feature = "warp")]
#[doc(inline)]
pub use sqreen_warp as warp;
