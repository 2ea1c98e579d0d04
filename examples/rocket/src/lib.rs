//! Demo rocket application instrumented with sqreen: the routes every
//! example app serves (identical behaviour in the four frameworks, listed in
//! [`example_common`]), and [`start`], a framework-neutral starter the
//! conformance suite drives.
//!
//! What a rocket application adds for sqreen is one line where it builds
//! rocket — `.attach(SqreenFairing::new())` — and a [`Sqreen`] guard in the
//! handlers that track something. See [`app`].

use std::collections::HashSet;
use std::net::SocketAddr;

use example_common::{PASSWORD, Running, TRACKED, TrackRequest, error_json};
use rocket::config::{LogLevel, Shutdown};
use rocket::fairing::AdHoc;
use rocket::figment::Provider;
use rocket::http::Status;
use rocket::response::content::RawJson;
use rocket::{Build, Rocket};
use sqreen::rocket::{Blocked, Form, Sqreen, SqreenFairing};

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

/// A JSON answer with its status.
type JsonReply = (Status, RawJson<String>);

/// Tracks the event described by the JSON body.
///
/// The body is read as bytes and parsed by [`TrackRequest::parse`], rather
/// than with rocket's `Json` data guard, so a malformed body gets this API's
/// JSON 400 instead of rocket's HTML error page.
#[rocket::post("/track", data = "<body>")]
fn track(sq: Sqreen, body: Vec<u8>) -> JsonReply {
    match TrackRequest::parse(&body) {
        Ok(request) => {
            request.record(&sq);
            (Status::Ok, RawJson(TRACKED.to_owned()))
        }
        Err(error) => (Status::BadRequest, RawJson(error_json(&error))),
    }
}

/// The urlencoded body of `/login` and `/signup`, read with sqreen's `Form`
/// (rocket's own, with the whole form also captured into the record).
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
    if credentials.password != PASSWORD {
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
        Ok(Ok((addr, shutdown))) => Ok(Running::new(addr, move || {
            shutdown.notify();
            if thread.join().is_err() {
                tracing::error!("the rocket server thread panicked");
            }
        })),
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
