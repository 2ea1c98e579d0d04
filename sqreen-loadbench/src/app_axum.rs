//! The route on axum 0.8, with `sqreen_axum::SqreenLayer` in the
//! middleware modes, served on a tokio current-thread runtime.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use sqreen_axum::{Sqreen, SqreenLayer};
use sqreen_core::Agent;

use crate::{HELLO, Mode};

/// `bare` and `installed`: no extractor, nothing tracked.
async fn hello() -> &'static str {
    HELLO
}

/// `middleware`: takes the handle, tracks nothing.
async fn hello_untracked(_sq: Sqreen) -> &'static str {
    HELLO
}

/// `track`: one 3-property event.
async fn hello_tracked(sq: Sqreen) -> &'static str {
    crate::track(&sq);
    HELLO
}

/// The app of `mode`: the layer goes last, after the route, as the
/// adapter's docs say.
fn app(mode: Mode, agent: Agent) -> Router {
    match mode {
        Mode::Bare => Router::new().route("/", get(hello)),
        Mode::Installed => Router::new()
            .route("/", get(hello))
            .layer(SqreenLayer::with_agent(agent)),
        Mode::Middleware => Router::new()
            .route("/", get(hello_untracked))
            .layer(SqreenLayer::with_agent(agent)),
        Mode::Track => Router::new()
            .route("/", get(hello_tracked))
            .layer(SqreenLayer::with_agent(agent)),
    }
}

/// Serves until SIGTERM/SIGINT, on the current thread only.
pub fn serve(addr: SocketAddr, mode: Mode, agent: Agent) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        crate::report(&format!("axum ({}) listening on {addr}", mode.name()));
        // With the connect info in every mode, as production serves it: the
        // layer reads the peer address from it.
        let service = app(mode, agent).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(crate::shutdown_signal())
            .await
    })
}
