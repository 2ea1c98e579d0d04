//! The demo warp app as a server: `ADDR` (default `127.0.0.1:8000`), agent
//! configuration from `sqreen.toml` / `SQREEN_*`, logs filtered by
//! `RUST_LOG` (default `info`). SIGTERM or Ctrl-C stops it gracefully and
//! flushes the agent; the exit status is then 0.

use std::process::ExitCode;

use sqreen::warp::SqreenWrapper;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    // Start the agent before building the wrapper: `SqreenWrapper::new()`
    // takes the global agent. The guard flushes and logs out when dropped.
    let guard = sqreen::init_from_env();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8000".to_owned());

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        // Bodies are copied while warp's own body filters read them.
        let sqreen = SqreenWrapper::new().capture_bodies(true);
        example_warp::serve(listener, sqreen, example_common::shutdown_signal()).await;
        std::io::Result::Ok(())
    });
    // The runtime goes first, then the guard: the agent flushes on its own
    // thread with every request already answered.
    drop(runtime);
    drop(guard);

    match served {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, addr, "server failed");
            ExitCode::FAILURE
        }
    }
}
