//! The demo app as a server: `ADDR` (default `127.0.0.1:8000`), agent
//! configuration from `SQREEN_*` variables (and `sqreen.toml`), rocket's
//! own settings from `ROCKET_*` / `Rocket.toml`. SIGINT or SIGTERM stops it
//! gracefully, flushes the agent and exits with status 0.

use std::net::SocketAddr;
use std::process::ExitCode;

use rocket::fairing::AdHoc;
use sqreen::rocket::SqreenFairing;
use tracing_subscriber::EnvFilter;

#[rocket::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    // Start the agent before building the fairing: SqreenFairing::new() takes it.
    let guard = sqreen::init_from_env();

    let addr: SocketAddr = match std::env::var("ADDR")
        .as_deref()
        .unwrap_or("127.0.0.1:8000")
        .parse()
    {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(event = "config.addr", error = %e, "ADDR is not an IP:port address");
            return ExitCode::FAILURE;
        }
    };
    let config = rocket::Config::figment()
        .merge(("address", addr.ip()))
        .merge(("port", addr.port()))
        // Rocket's graceful shutdown: SIGINT and SIGTERM end `launch()`.
        .merge(("shutdown", example_rocket::shutdown_on_signals()));

    let app = example_rocket::app(SqreenFairing::new(), config).attach(AdHoc::on_liftoff(
        "log address",
        |rocket| {
            Box::pin(async move {
                let config = rocket.config();
                let addr = SocketAddr::new(config.address, config.port);
                tracing::info!(event = "server.listening", %addr, "listening on http://{addr}");
            })
        },
    ));

    let status = match app.launch().await {
        Ok(_) => ExitCode::SUCCESS,
        // A shutdown that had to cut lingering connections is still the stop we asked for.
        Err(e) if matches!(e.kind(), rocket::error::ErrorKind::Shutdown(..)) => {
            tracing::warn!(event = "server.shutdown", error = %e, "rocket stopped, cutting connections");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(event = "server.error", error = %e, "rocket failed");
            ExitCode::FAILURE
        }
    };
    // The final flush, heartbeat and logout, once nothing is in flight any more.
    drop(guard);
    tracing::info!(event = "server.stopped", "stopped");
    status
}
