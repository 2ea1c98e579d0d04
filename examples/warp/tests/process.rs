//! The warp example as a real process against a real protocol backend.

/// The binary serves its routes, enforces the backend's actions, delivers
/// events and metrics, and exits 0 after a graceful SIGTERM shutdown.
#[test]
fn example_process_against_backend() {
    sqreen_conformance::run_example_process(env!("CARGO_BIN_EXE_example-warp"));
}
