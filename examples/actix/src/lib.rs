//! A demo actix-web application instrumented with sqreen: the routes every
//! example app serves (identical behaviour in the four frameworks, listed in
//! [`example_common`]), and a framework-neutral [`start`] used by the
//! conformance suite.

use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, Error, HttpResponse, HttpServer, web};
use example_common::{Credentials, PASSWORD, Running, TRACKED, TrackRequest, error_json};
use sqreen::actix::{Blocked, Sqreen, SqreenMiddleware};

/// The demo app: its routes, instrumented by `sqreen`.
pub fn app(
    sqreen: SqreenMiddleware,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .route("/", web::get().to(index))
        .route("/track", web::post().to(track))
        .route("/login", web::post().to(login))
        .route("/signup", web::post().to(signup))
        // Wrapped last, so it is the outermost middleware: it sees (and can
        // block) every request before anything else runs.
        .wrap(sqreen)
}

async fn index() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn track(sq: Sqreen, body: web::Bytes) -> HttpResponse {
    match TrackRequest::parse(&body) {
        Ok(request) => {
            request.record(&sq);
            HttpResponse::Ok()
                .content_type("application/json")
                .body(TRACKED)
        }
        Err(error) => HttpResponse::BadRequest()
            .content_type("application/json")
            .body(error_json(&error)),
    }
}

/// Both fields, or `None` for a missing field or a body that is not a form
/// (`Option<web::Form<_>>` turns a form error into `None`).
fn credentials(form: Option<web::Form<Credentials>>) -> Option<(String, String)> {
    form?.into_inner().both()
}

// `Result<_, Blocked>`: `identify()?` turns a blocked user into the same
// response as a blocked IP.
async fn login(sq: Sqreen, form: Option<web::Form<Credentials>>) -> Result<HttpResponse, Blocked> {
    let Some((username, password)) = credentials(form) else {
        return Ok(HttpResponse::BadRequest().body("missing username or password"));
    };
    let user = sq.for_user([("username", username.as_str())]);
    if password != PASSWORD {
        user.track_auth_failure();
        return Ok(HttpResponse::Unauthorized().body("invalid credentials"));
    }
    user.track_auth_success();
    user.identify()?;
    Ok(HttpResponse::Ok().body("welcome"))
}

async fn signup(sq: Sqreen, form: Option<web::Form<Credentials>>) -> HttpResponse {
    let Some((username, _password)) = credentials(form) else {
        return HttpResponse::BadRequest().body("missing username or password");
    };
    sq.for_user([("username", username.as_str())])
        .track_signup();
    sq.track_event("user.signup")
        .with_properties([("username", username.as_str())]);
    HttpResponse::Created().body("created")
}

/// Serves the demo routes on `addr` (port 0 = any free port) in a dedicated
/// thread with its own runtime, instrumented with `agent`. Returns once the
/// socket is listening.
pub fn start(agent: sqreen::Agent, addr: SocketAddr) -> std::io::Result<Running> {
    // Bound here, so that the port is known and listening before returning.
    let listener = std::net::TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("example-actix".into())
        .spawn(move || {
            // actix runs each server on an actix `System`; this thread hosts it.
            actix_web::rt::System::new().block_on(async move {
                let server =
                    HttpServer::new(move || app(SqreenMiddleware::with_agent(agent.clone())))
                        .workers(2)
                        // The owner of `Running` stops the server, not OS signals.
                        .disable_signals()
                        .shutdown_timeout(10)
                        .listen(listener);
                let server = match server {
                    Ok(server) => server.run(),
                    Err(e) => {
                        let error = std::io::Error::new(e.kind(), e.to_string());
                        let _ = handle_tx.send(Err(error));
                        return Err(e);
                    }
                };
                let _ = handle_tx.send(Ok(server.handle()));
                server.await
            })
        })?;
    let handle = match handle_rx.recv() {
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(std::io::Error::other(
                "the server thread ended before serving",
            ));
        }
    };
    Ok(Running::new(addr, move || {
        // The command is sent when `stop` is called; the server thread ends
        // once it completes, so awaiting the returned future is not needed.
        drop(handle.stop(true));
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server ended with an error"),
            Err(_) => tracing::error!("server thread panicked"),
        }
    }))
}
