//! The demo app as a server: `ADDR` (default `127.0.0.1:8000`), agent
//! configuration from `SQREEN_*` variables (and `sqreen.toml`), rocket's
//! own settings from `ROCKET_*` / `Rocket.toml`. SIGINT or SIGTERM stops it
//! gracefully; the fairing then flushes the agent and logs it out, and the
//! process exits with status 0.
//!
//! Rocket's usual `#[launch]`: `main` has no place to keep an agent guard,
//! so the fairing owns the agent ([`SqreenFairing::from_env`]): it starts
//! it when rocket ignites and shuts it down when rocket shuts down.

use std::net::SocketAddr;

use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};
use sqreen::rocket::SqreenFairing;
use tracing_subscriber::EnvFilter;

#[rocket::launch]
fn rocket() -> Rocket<Build> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let addr: SocketAddr = match std::env::var("ADDR")
        .as_deref()
        .unwrap_or("127.0.0.1:8000")
        .parse()
    {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(event = "config.addr", error = %e, "ADDR is not an IP:port address");
            std::process::exit(1);
        }
    };
    let config = rocket::Config::figment()
        .merge(("address", addr.ip()))
        .merge(("port", addr.port()))
        // Rocket's graceful shutdown: SIGINT and SIGTERM end `launch()`.
        .merge(("shutdown", example_rocket::shutdown_on_signals()));

    example_rocket::app(SqreenFairing::from_env(), config).attach(AdHoc::on_liftoff(
        "log address",
        |rocket| {
            Box::pin(async move {
                let config = rocket.config();
                let addr = SocketAddr::new(config.address, config.port);
                tracing::info!(event = "server.listening", %addr, "listening on http://{addr}");
            })
        },
    ))
}
