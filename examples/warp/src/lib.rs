//! A demo warp application instrumented with sqreen: the routes every
//! example app serves (identical behaviour in the four frameworks, listed in
//! [`example_common`]), and a framework-neutral [`start`] used by the
//! conformance suite.

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use example_common::{Credentials, PASSWORD, Running, TRACKED, TrackRequest, error_json};
use sqreen::warp::{Blocked, Sqreen, SqreenWrapper, sqreen};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The demo routes, written for plain warp: bodies are read with warp's
/// own `warp::body::*` filters.
pub fn routes()
-> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone + Send + Sync + 'static {
    let index = warp::path::end().and(warp::get()).map(|| "ok");
    let track = warp::path("track")
        .and(warp::path::end())
        .and(warp::post())
        .and(sqreen())
        .and(warp::body::bytes())
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
    index.or(track).or(login).or(signup)
}

/// The wrapper the app is served with: the given agent, and body capture
/// on.
pub fn wrapper(agent: sqreen::Agent) -> SqreenWrapper {
    SqreenWrapper::with_agent(agent).capture_bodies(true)
}

/// Serves [`routes`] on `listener` until `shutdown` completes, then
/// finishes the requests in flight.
///
/// `wrapper.service(..)` goes around the whole app, so IP actions apply to
/// every route (and to unknown paths) and each request is recorded once;
/// served as a service (rather than by `warp::serve`), it copies the bodies
/// the agent captures while warp's own body filters read them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    wrapper: SqreenWrapper,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    wrapper.service(routes()).serve(listener, shutdown).await;
}

fn json(status: StatusCode, body: String) -> Response {
    warp::reply::with_status(
        warp::reply::with_header(body, "content-type", "application/json"),
        status,
    )
    .into_response()
}

fn track(sq: Sqreen, body: Bytes) -> Response {
    match TrackRequest::parse(&body) {
        Ok(request) => {
            request.record(&sq);
            json(StatusCode::OK, TRACKED.to_owned())
        }
        Err(error) => json(StatusCode::BAD_REQUEST, error_json(&error)),
    }
}

/// Both fields, or `None` for a missing field or a body that is not a form
/// (the `or` turns the body filter's rejection into `None`).
fn credentials()
-> impl Filter<Extract = (Option<(String, String)>,), Error = std::convert::Infallible> + Clone {
    warp::body::form()
        .map(Credentials::both)
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
    if password != PASSWORD {
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
                Ok::<(), std::io::Error>(())
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
