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
        .shutdown_signal(shutdown_signal())
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

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received; shutting down gracefully"),
        () = terminate => tracing::info!("SIGTERM received; shutting down gracefully"),
    }
}
