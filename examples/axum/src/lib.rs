//! A demo axum application instrumented with sqreen: the routes every
//! example app serves (identical behaviour in the four frameworks), and a
//! framework-neutral [`start`] used by the conformance suite.
//!
//! | route | does |
//! |---|---|
//! | `GET /` | `200 ok`, tracks nothing |
//! | `POST /track` | tracks the event described by the JSON body; `200 {"tracked": true}`, `400 {"error": ..}` |
//! | `POST /login` | form `username`, `password`; `open-sesame` logs in (`200 welcome`), else `401`; missing fields `400` |
//! | `POST /signup` | form `username`, `password`; tracks a signup, `201 created` |

use std::future::Future;
use std::net::SocketAddr;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::Form;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqreen::axum::{Blocked, Sqreen, SqreenLayer};

/// The demo app: its routes, instrumented by `sqreen`.
pub fn app(sqreen: SqreenLayer) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/track", post(track))
        .route("/login", post(login))
        .route("/signup", post(signup))
        // Last, so it covers every route above (axum layers wrap the routes
        // added before them).
        .layer(sqreen)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sqreen: SqreenLayer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // With the connect info, the layer knows the peer address (client IP).
    let service = app(sqreen).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn index() -> &'static str {
    "ok"
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
fn bad_request(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
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

// The body is parsed by hand (not with `Json<T>`) so that every malformed
// body gets the same `400 {"error": ..}`, whatever the content type.
async fn track(sq: Sqreen, body: Bytes) -> Response {
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
    Json(json!({ "tracked": true })).into_response()
}

/// The form of `/login` and `/signup`.
#[derive(Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

/// Both fields, or `None` for a missing field or a body that is not a form.
fn credentials(form: Result<Form<Credentials>, FormRejection>) -> Option<(String, String)> {
    let Form(Credentials { username, password }) = form.ok()?;
    Some((username?, password?))
}

// `Result<_, Blocked>`: `identify()?` turns a blocked user into the same
// response as a blocked IP.
async fn login(
    sq: Sqreen,
    form: Result<Form<Credentials>, FormRejection>,
) -> Result<Response, Blocked> {
    let Some((username, password)) = credentials(form) else {
        return Ok((StatusCode::BAD_REQUEST, "missing username or password").into_response());
    };
    let user = sq.for_user([("username", username.as_str())]);
    if password != "open-sesame" {
        user.track_auth_failure();
        return Ok((StatusCode::UNAUTHORIZED, "invalid credentials").into_response());
    }
    user.track_auth_success();
    user.identify()?;
    Ok("welcome".into_response())
}

async fn signup(sq: Sqreen, form: Result<Form<Credentials>, FormRejection>) -> Response {
    let Some((username, _password)) = credentials(form) else {
        return (StatusCode::BAD_REQUEST, "missing username or password").into_response();
    };
    sq.for_user([("username", username.as_str())])
        .track_signup();
    sq.track_event("user.signup")
        .with_properties([("username", username.as_str())]);
    (StatusCode::CREATED, "created").into_response()
}

/// A running server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
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
        self.shutdown_and_join();
    }

    fn shutdown_and_join(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "server ended with an error"),
                Err(_) => tracing::error!("server thread panicked"),
            }
        }
    }
}

impl Drop for Running {
    /// A server dropped without [`stop`](Running::stop) is stopped the same way.
    fn drop(&mut self) {
        self.shutdown_and_join();
    }
}

/// Serves the demo routes on `addr` (port 0 = any free port) in a dedicated
/// thread with its own runtime, instrumented with `agent`. Returns once the
/// socket is listening.
pub fn start(agent: sqreen::Agent, addr: SocketAddr) -> std::io::Result<Running> {
    // Bound here, so that the port is known and listening before returning.
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sqreen = SqreenLayer::with_agent(agent);
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("example-axum".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                serve(listener, sqreen, async {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                })
                .await
            })
        })?;
    Ok(Running {
        addr,
        shutdown: Some(shutdown),
        thread: Some(thread),
    })
}
