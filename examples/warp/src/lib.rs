//! A demo warp application instrumented with sqreen: the routes every
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

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqreen::warp::{Blocked, Sqreen, SqreenWrapper, body, sqreen};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The demo app: its routes, instrumented by `wrapper`.
pub fn app(
    wrapper: &SqreenWrapper,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let index = warp::path::end().and(warp::get()).map(|| "ok");
    // Bodies are read with `sqreen::warp::body::*`: with body capture on, the
    // wrapper has already buffered them and these filters hand them over.
    let track = warp::path("track")
        .and(warp::path::end())
        .and(warp::post())
        .and(sqreen())
        .and(body::bytes())
        .map(track);
    let login = warp::path("login")
        .and(warp::path::end())
        .and(warp::post())
        .and(sqreen())
        .and(credentials())
        .then(login);
    let signup = warp::path("signup")
        .and(warp::path::end())
        .and(warp::post())
        .and(sqreen())
        .and(credentials())
        .map(signup);
    // The wrapper goes around the whole app, so IP actions apply to every
    // route (and to unknown paths) and each request is recorded once.
    wrapper.wrap(index.or(track).or(login).or(signup))
}

/// The wrapper the app is served with: the given agent, and body capture
/// on, since every route reads its body with `sqreen::warp::body::*`.
pub fn wrapper(agent: sqreen::Agent) -> SqreenWrapper {
    SqreenWrapper::with_agent(agent).capture_bodies(true)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    wrapper: SqreenWrapper,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(app(&wrapper))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
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
    warp::reply::with_status(
        warp::reply::json(&json!({ "error": error })),
        StatusCode::BAD_REQUEST,
    )
    .into_response()
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

// The body is parsed by hand (not with `body::json()`) so that every
// malformed body gets the same `400 {"error": ..}`, whatever the content type.
fn track(sq: Sqreen, body: Bytes) -> Response {
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
    warp::reply::json(&json!({ "tracked": true })).into_response()
}

/// The form of `/login` and `/signup`.
#[derive(Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

/// Both fields, or `None` for a missing field or a body that is not a form
/// (the `or` turns the body filter's rejection into `None`).
fn credentials()
-> impl Filter<Extract = (Option<(String, String)>,), Error = std::convert::Infallible> + Clone {
    body::form()
        .map(|form: Credentials| form.username.zip(form.password))
        .or(warp::any().map(|| None))
        .unify()
}

// `Result<_, Blocked>` with `then`: `identify()?` turns a blocked user into
// the same response as a blocked IP.
async fn login(sq: Sqreen, credentials: Option<(String, String)>) -> Result<Response, Blocked> {
    let Some((username, password)) = credentials else {
        return Ok(missing_credentials());
    };
    let user = sq.for_user([("username", username.as_str())]);
    if password != "open-sesame" {
        user.track_auth_failure();
        return Ok(
            warp::reply::with_status("invalid credentials", StatusCode::UNAUTHORIZED)
                .into_response(),
        );
    }
    user.track_auth_success();
    user.identify()?;
    Ok("welcome".into_response())
}

fn signup(sq: Sqreen, credentials: Option<(String, String)>) -> Response {
    let Some((username, _password)) = credentials else {
        return missing_credentials();
    };
    sq.for_user([("username", username.as_str())])
        .track_signup();
    sq.track_event("user.signup")
        .with_properties([("username", username.as_str())]);
    warp::reply::with_status("created", StatusCode::CREATED).into_response()
}

fn missing_credentials() -> Response {
    warp::reply::with_status("missing username or password", StatusCode::BAD_REQUEST)
        .into_response()
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
    let wrapper = wrapper(agent);
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("example-warp".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                serve(listener, wrapper, async {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                })
                .await;
                Ok(())
            })
        })?;
    Ok(Running {
        addr,
        shutdown: Some(shutdown),
        thread: Some(thread),
    })
}
