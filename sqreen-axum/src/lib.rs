//! axum adapter for [`sqreen_core`]: a middleware that opens and closes a
//! request record, an extractor that hands handlers their `Sqreen` handle,
//! and the conversion of security responses into framework responses.
//!
//! The adapter itself lands with the adapters issue; until then this crate
//! only re-exports the core so the workspace layout is stable.

pub use sqreen_core;
