//! Demo rocket application instrumented with sqreen: the routes every
//! example app serves (`/`, `/track`, `/login`, `/signup`), and [`start`], a
//! framework-neutral starter the conformance suite drives.
//!
//! What a rocket application adds for sqreen is one line where it builds
//! rocket — `.attach(SqreenFairing::new())` — and a [`Sqreen`] guard in the
//! handlers that track something. See [`app`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::SystemTime;

use rocket::config::{LogLevel, Shutdown};
use rocket::fairing::AdHoc;
use rocket::figment::Provider;
use rocket::form::Form;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Build, Rocket};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqreen::rocket::{Blocked, Sqreen, SqreenFairing};

/// The demo app: its routes, instrumented by `fairing`, configured by
/// `config` (a [`rocket::Config`] or a figment).
pub fn app(fairing: SqreenFairing, config: impl Provider) -> Rocket<Build> {
    rocket::custom(config)
        // One line instruments every route, including IP blocks before any handler.
        .attach(fairing)
        .mount("/", rocket::routes![index, track, login, signup])
}

/// A page that tracks nothing: the record is dropped on the spot.
#[rocket::get("/")]
fn index() -> &'static str {
    "ok"
}

/// The body of `POST /track`. Unknown fields are ignored; a field of the
/// wrong type is a 400.
#[derive(Debug, Deserialize)]
struct TrackRequest {
    event: String,
    properties: Option<Map<String, Value>>,
    user_identifiers: Option<Map<String, Value>>,
    timestamp: Option<String>,
    for_user: Option<Map<String, Value>>,
}

/// A JSON answer with its status.
type JsonReply = (Status, Json<Value>);

fn bad_request(error: impl std::fmt::Display) -> JsonReply {
    (
        Status::BadRequest,
        Json(json!({"error": error.to_string()})),
    )
}

/// Identifier maps take string values; any other JSON value is kept as its
/// JSON text.
fn identifiers(map: Map<String, Value>) -> Vec<(String, String)> {
    map.into_iter()
        .map(|(key, value)| match value {
            Value::String(s) => (key, s),
            other => (key, other.to_string()),
        })
        .collect()
}

/// Tracks the event described by the JSON body.
///
/// The body is read as bytes and parsed here, rather than with rocket's
/// `Json` data guard, so a malformed body gets this API's JSON 400 instead
/// of rocket's HTML error page.
#[rocket::post("/track", data = "<body>")]
fn track(sq: Sqreen, body: Vec<u8>) -> JsonReply {
    let request: TrackRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return bad_request(e),
    };
    if request.event.is_empty() {
        return bad_request("`event` must not be empty");
    }
    // Validate everything before tracking anything.
    let timestamp: Option<SystemTime> = match request.timestamp.as_deref() {
        Some(t) => match humantime::parse_rfc3339(t) {
            Ok(t) => Some(t),
            Err(e) => return bad_request(format!("`timestamp`: {e}")),
        },
        None => None,
    };

    // The user handle must outlive the event builder that borrows it; the
    // event is recorded when the builder is dropped, at the end of this function.
    let user;
    let mut event = match request.for_user {
        Some(ids) => {
            user = sq.for_user(identifiers(ids));
            user.track_event(&request.event)
        }
        None => sq.track_event(&request.event),
    };
    if let Some(properties) = request.properties {
        event = event.with_properties(properties);
    }
    if let Some(ids) = request.user_identifiers {
        event = event.with_user_identifiers(identifiers(ids));
    }
    if let Some(timestamp) = timestamp {
        event = event.with_timestamp(timestamp);
    }
    drop(event);
    (Status::Ok, Json(json!({"tracked": true})))
}

/// The urlencoded body of `/login` and `/signup`.
#[derive(Debug, rocket::FromForm)]
struct Credentials {
    username: String,
    password: String,
}

const MISSING_FIELDS: (Status, &str) = (Status::BadRequest, "username and password are required");

/// Logs a user in. `Option<Form<_>>` turns a missing field (or a body that
/// is not a form) into `None`, answered with 400 rather than rocket's 422.
#[rocket::post("/login", data = "<form>")]
fn login(sq: Sqreen, form: Option<Form<Credentials>>) -> Result<(Status, &'static str), Blocked> {
    let Some(credentials) = form else {
        return Ok(MISSING_FIELDS);
    };
    let user = sq.for_user([("username", credentials.username.as_str())]);
    if credentials.password != "open-sesame" {
        user.track_auth_failure();
        return Ok((Status::Unauthorized, "invalid credentials"));
    }
    user.track_auth_success();
    // A user a playbook blocks gets the block page (or a redirect) instead.
    user.identify()?;
    Ok((Status::Ok, "welcome"))
}

/// Signs a user up: a signup metric plus a custom event.
#[rocket::post("/signup", data = "<form>")]
fn signup(sq: Sqreen, form: Option<Form<Credentials>>) -> (Status, &'static str) {
    let Some(credentials) = form else {
        return MISSING_FIELDS;
    };
    let username = credentials.username.as_str();
    sq.for_user([("username", username)]).track_signup();
    sq.track_event("user.signup")
        .with_properties([("username", username)]);
    (Status::Created, "created")
}

/// Rocket's graceful shutdown on SIGINT and SIGTERM, for the binary.
pub fn shutdown_on_signals() -> Shutdown {
    #[allow(unused_mut)] // `signals` exists on unix only
    let mut shutdown = Shutdown {
        ctrlc: true,
        ..Shutdown::default()
    };
    #[cfg(unix)]
    {
        use rocket::config::Sig;
        shutdown.signals = HashSet::from([Sig::Term, Sig::Int]);
    }
    shutdown
}

/// The configuration [`start`] serves with: `addr`, rocket's logs off, and
/// no signal handling (the caller stops the server with [`Running::stop`]).
fn embedded_config(addr: SocketAddr) -> rocket::Config {
    #[allow(unused_mut)] // `signals` exists on unix only
    let mut shutdown = Shutdown {
        ctrlc: false,
        ..Shutdown::default()
    };
    #[cfg(unix)]
    {
        shutdown.signals = HashSet::new();
    }
    rocket::Config {
        address: addr.ip(),
        port: addr.port(),
        log_level: LogLevel::Off,
        shutdown,
        ..rocket::Config::release_default()
    }
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The address the server listens on (the real port when started on port 0).
    pub addr: SocketAddr,
    shutdown: rocket::Shutdown,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Graceful shutdown: stop accepting, finish in-flight requests, wait for the server
    /// thread to end. Does NOT shut the agent down (the caller owns it).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shutdown.clone().notify();
        if thread.join().is_err() {
            tracing::error!(
                event = "server.panicked",
                "the rocket server thread panicked"
            );
        }
    }
}

impl Drop for Running {
    /// A server dropped without [`Running::stop`] is stopped the same way.
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Serves the demo routes on `addr` (port 0 = any free port) in a dedicated thread with its
/// own runtime, instrumented with `agent`. Returns once the socket is listening.
pub fn start(agent: sqreen::Agent, addr: SocketAddr) -> std::io::Result<Running> {
    type Ready = std::io::Result<(SocketAddr, rocket::Shutdown)>;
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Ready>(2);
    let thread = std::thread::Builder::new()
        .name("example-rocket".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("rocket-worker-thread")
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(serve(agent, addr, ready_tx));
        })?;
    match ready_rx.recv() {
        Ok(Ok((addr, shutdown))) => Ok(Running {
            addr,
            shutdown,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(std::io::Error::other(
                "the rocket thread ended before listening",
            ))
        }
    }
}

/// Runs rocket until it is shut down, reporting the bound address (or the
/// launch error) on `ready`.
async fn serve(
    agent: sqreen::Agent,
    addr: SocketAddr,
    ready: std::sync::mpsc::SyncSender<std::io::Result<(SocketAddr, rocket::Shutdown)>>,
) {
    let on_liftoff = ready.clone();
    let server = app(SqreenFairing::with_agent(agent), embedded_config(addr)).attach(
        // Liftoff runs once the socket is bound; rocket's config then holds the real port.
        AdHoc::on_liftoff("report address", move |rocket| {
            Box::pin(async move {
                let config = rocket.config();
                let bound = SocketAddr::new(config.address, config.port);
                let _ = on_liftoff.send(Ok((bound, rocket.shutdown())));
            })
        }),
    );
    if let Err(e) = server.launch().await {
        let error = match e.kind() {
            rocket::error::ErrorKind::Bind(io) => std::io::Error::new(io.kind(), io.to_string()),
            _ => std::io::Error::other(e.to_string()),
        };
        tracing::warn!(event = "server.error", error = %error, "rocket ended with an error");
        // Only heard if the server never lifted off; ignored otherwise.
        let _ = ready.send(Err(error));
    }
}
