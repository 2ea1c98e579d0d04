//! The demo actix-web application: serves [`example_actix::app`] on `ADDR`
//! (default `127.0.0.1:8000`) with the sqreen agent configured from
//! `sqreen.toml` / `SQREEN_*`. SIGTERM or Ctrl-C stops it gracefully, then
//! the agent flushes and the process exits with status 0.

use actix_web::HttpServer;
use sqreen::actix::SqreenMiddleware;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    // First the agent: `SqreenMiddleware::new()` takes the agent started here.
    // Keep the guard: dropping it flushes the queue and logs out.
    let guard = sqreen::init_from_env();

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8000".to_owned());
    let server = HttpServer::new(|| example_actix::app(SqreenMiddleware::new()))
        // actix's own handlers make SIGINT a forced shutdown; this one makes
        // both SIGINT and SIGTERM graceful (in-flight requests finish).
        .shutdown_signal(example_common::shutdown_signal())
        .bind(&addr)?;
    for addr in server.addrs() {
        tracing::info!(%addr, "listening");
    }
    server.run().await?;

    // The server has stopped: no request can track anything any more, so
    // flushing now sends everything.
    drop(guard);
    tracing::info!("stopped");
    Ok(())
}
