//! A demo axum application instrumented with sqreen: the routes every
//! example app serves (identical behaviour in the four frameworks, listed in
//! [`example_common`]), and a framework-neutral [`start`] used by the
//! conformance suite.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Form;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use example_common::{Credentials, PASSWORD, Running, TRACKED, TrackRequest, error_json};
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

fn json(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

async fn track(sq: Sqreen, body: Bytes) -> Response {
    match TrackRequest::parse(&body) {
        Ok(request) => {
            request.record(&sq);
            json(StatusCode::OK, TRACKED.to_owned())
        }
        Err(error) => json(StatusCode::BAD_REQUEST, error_json(&error)),
    }
}

/// Both fields, or `None` for a missing field or a body that is not a form.
fn credentials(form: Result<Form<Credentials>, FormRejection>) -> Option<(String, String)> {
    form.ok()?.0.both()
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
    if password != PASSWORD {
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
    Ok(Running::new(addr, move || {
        // A send error means the server already stopped.
        let _ = shutdown.send(());
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server ended with an error"),
            Err(_) => tracing::error!("server thread panicked"),
        }
    }))
}
