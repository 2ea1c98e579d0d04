//! The route on warp 0.4, wrapped by `sqreen_warp::SqreenWrapper` (with
//! the `sqreen()` filter handing the handle over) in the middleware modes,
//! served on a tokio current-thread runtime.

use std::net::SocketAddr;

use sqreen_core::Agent;
use sqreen_warp::{Sqreen, SqreenWrapper, sqreen};
use warp::{Filter, Rejection, Reply};

use crate::{HELLO, Mode};

/// `GET /`, the route of every mode before its handler.
fn root() -> impl Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static {
    warp::path::end().and(warp::get())
}

/// Serves `filter` on `listener` until SIGTERM/SIGINT.
async fn run<F>(listener: tokio::net::TcpListener, filter: F)
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    warp::serve(filter)
        .incoming(listener)
        .graceful(crate::shutdown_signal())
        .run()
        .await;
}

/// Serves until SIGTERM/SIGINT, on the current thread only.
pub fn serve(addr: SocketAddr, mode: Mode, agent: Agent) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        crate::report(&format!("warp ({}) listening on {addr}", mode.name()));
        // The wrapper goes around the whole app, once, as the adapter's docs say.
        let wrapper = SqreenWrapper::with_agent(agent);
        match mode {
            Mode::Bare => run(listener, root().map(|| HELLO)).await,
            Mode::Installed => run(listener, wrapper.wrap(root().map(|| HELLO))).await,
            Mode::Middleware => {
                let route = root().and(sqreen()).map(|_sq: Sqreen| HELLO);
                run(listener, wrapper.wrap(route)).await;
            }
            Mode::Track => {
                let route = root().and(sqreen()).map(|sq: Sqreen| {
                    crate::track(&sq);
                    HELLO
                });
                run(listener, wrapper.wrap(route)).await;
            }
        }
        Ok(())
    })
}
