//! Security event tracking for Rust web applications.
//!
//! This facade re-exports [`sqreen_core`]; the framework adapters are added
//! behind the `actix`, `axum`, `rocket` and `warp` features by the adapters
//! issue.

pub use sqreen_core::*;
