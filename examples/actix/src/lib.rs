//! A demo actix-web application instrumented with sqreen: the routes every
//! example app serves (identical behaviour in the four frameworks), and a
//! framework-neutral [`start`] used by the conformance suite.
//!
//! | route | does |
//! |---|---|
//! | `GET /` | `200 ok`, tracks nothing |
//! | `POST /track` | tracks the event described by the JSON body; `200 {"tracked": true}`, `400 {"error": ..}` |
//! | `POST /login` | form `username`, `password`; `open-sesame` logs in (`200 welcome`), else `401`; missing fields `400` |
//! | `POST /signup` | form `username`, `password`; tracks a signup, `201 created` |

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::SystemTime;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, Error, HttpResponse, HttpServer, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};
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

/// The body of `POST /track`.
#[derive(Deserialize)]
struct TrackRequest {
    event: String,
    properties: Option<Map<String, Value>>,
    user_identifiers: Option<Map<String, Value>>,
    timestamp: Option<String>,
    for_user: Option<Map<String, Value>>,
}

/// A `400` with a short JSON error.
fn bad_request(error: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": error }))
}

/// User identifiers are strings; other JSON values are sent as their JSON text.
fn identifiers(map: Map<String, Value>) -> Vec<(String, String)> {
    map.into_iter()
        .map(|(key, value)| match value {
            Value::String(s) => (key, s),
            other => (key, other.to_string()),
        })
        .collect()
}

// The body is parsed by hand (not with `web::Json<T>`) so that every
// malformed body gets the same `400 {"error": ..}`, whatever the content type.
async fn track(sq: Sqreen, body: web::Bytes) -> HttpResponse {
    let request: TrackRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return bad_request(&format!("invalid body: {e}")),
    };
    if request.event.is_empty() {
        return bad_request("`event` must not be empty");
    }
    let timestamp: Option<SystemTime> =
        match request.timestamp.as_deref().map(humantime::parse_rfc3339) {
            None => None,
            Some(Ok(timestamp)) => Some(timestamp),
            Some(Err(_)) => return bad_request("`timestamp` must be an RFC 3339 date"),
        };

    let user = request.for_user.map(|ids| sq.for_user(identifiers(ids)));
    let mut event = match &user {
        Some(user) => user.track_event(&request.event),
        None => sq.track_event(&request.event),
    };
    // JSON scalars become property values; `From<serde_json::Value>` does it.
    event = event.with_properties(request.properties.unwrap_or_default());
    if let Some(ids) = request.user_identifiers {
        event = event.with_user_identifiers(identifiers(ids));
    }
    if let Some(timestamp) = timestamp {
        event = event.with_timestamp(timestamp);
    }
    drop(event); // the event is recorded when its builder is dropped
    HttpResponse::Ok().json(json!({ "tracked": true }))
}

/// The form of `/login` and `/signup`.
#[derive(Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

/// Both fields, or `None` for a missing field or a body that is not a form
/// (`Option<web::Form<_>>` turns a form error into `None`).
fn credentials(form: Option<web::Form<Credentials>>) -> Option<(String, String)> {
    let Credentials { username, password } = form?.into_inner();
    Some((username?, password?))
}

// `Result<_, Blocked>`: `identify()?` turns a blocked user into the same
// response as a blocked IP.
async fn login(sq: Sqreen, form: Option<web::Form<Credentials>>) -> Result<HttpResponse, Blocked> {
    let Some((username, password)) = credentials(form) else {
        return Ok(HttpResponse::BadRequest().body("missing username or password"));
    };
    let user = sq.for_user([("username", username.as_str())]);
    if password != "open-sesame" {
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

/// A running server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("addr", &self.addr).finish()
    }
}

impl Running {
    /// Graceful shutdown: stop accepting, finish in-flight requests, wait for
    /// the server thread to end. Does NOT shut the agent down (the caller owns it).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // The command is sent when `stop` is called; the server thread ends
        // once it completes, so awaiting the returned future is not needed.
        drop(self.handle.stop(true));
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server ended with an error"),
            Err(_) => tracing::error!("server thread panicked"),
        }
    }
}

impl Drop for Running {
    /// A server dropped without [`stop`](Running::stop) is stopped the same way.
    fn drop(&mut self) {
        self.stop_and_join();
    }
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
    Ok(Running {
        addr,
        handle,
        thread: Some(thread),
    })
}
