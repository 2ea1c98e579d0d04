//! The route on actix-web 4, wrapped by `sqreen_actix::SqreenMiddleware` in
//! the middleware modes, served by one worker (`HttpServer::workers(1)`).

use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpServer, web};
use sqreen_actix::{Sqreen, SqreenMiddleware};
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

/// Serves the apps `factory` builds (one, for the one worker) on
/// `listener` until SIGTERM/SIGINT.
async fn run<F, T, B>(listener: std::net::TcpListener, factory: F) -> std::io::Result<()>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    HttpServer::new(factory)
        .workers(1)
        // Both signals graceful (actix's own handling makes SIGINT a forced stop).
        .shutdown_signal(crate::shutdown_signal())
        .shutdown_timeout(5)
        .listen(listener)?
        .run()
        .await
}

/// Serves until SIGTERM/SIGINT on an actix system with one worker thread.
pub fn serve(addr: SocketAddr, mode: Mode, agent: Agent) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    crate::report(&format!("actix ({}) listening on {addr}", mode.name()));
    actix_web::rt::System::new().block_on(async move {
        match mode {
            Mode::Bare => run(listener, || App::new().route("/", web::get().to(hello))).await,
            Mode::Installed => {
                run(listener, move || {
                    App::new()
                        .route("/", web::get().to(hello))
                        .wrap(SqreenMiddleware::with_agent(agent.clone()))
                })
                .await
            }
            // The middleware wraps the `App`, last, as the adapter's docs say.
            Mode::Middleware => {
                run(listener, move || {
                    App::new()
                        .route("/", web::get().to(hello_untracked))
                        .wrap(SqreenMiddleware::with_agent(agent.clone()))
                })
                .await
            }
            Mode::Track => {
                run(listener, move || {
                    App::new()
                        .route("/", web::get().to(hello_tracked))
                        .wrap(SqreenMiddleware::with_agent(agent.clone()))
                })
                .await
            }
        }
    })
}
