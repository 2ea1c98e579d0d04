//! Security responses as warp replies: the default block page / redirect,
//! the [`Blocked`] error handlers return, and [`recover_blocked`].

use warp::http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use warp::http::{Response as HttpResponse, StatusCode};
use warp::reject::Rejection;
use warp::reply::{Reply, Response};

use sqreen_core::SecurityResponse;

/// Renders a security response: `Fn(&SecurityResponse) -> warp::reply::Response`.
pub(crate) type Renderer =
    std::sync::Arc<dyn Fn(&SecurityResponse) -> Response + Send + Sync + 'static>;

/// Marks a response rendered from a [`Blocked`], so the wrapper can render
/// it again with the application's own page.
#[derive(Clone, Debug)]
pub(crate) struct BlockedMarker(pub SecurityResponse);

/// The response the adapter sends for a security response, unless the
/// application set its own with
/// [`SqreenWrapper::blocked_response`](crate::SqreenWrapper::blocked_response).
///
/// A block answers the configured status (403 by default) with the core's
/// block page; a redirect answers `303 See Other` with `Location`. Both
/// carry `Content-Type: text/html; charset=utf-8`.
///
/// ```
/// use sqreen_core::SecurityResponse;
/// let response = sqreen_warp::default_blocked_response(&SecurityResponse::Block { status: 403 });
/// assert_eq!(response.status(), 403);
/// ```
pub fn default_blocked_response(response: &SecurityResponse) -> Response {
    let status = StatusCode::from_u16(response.status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut reply = HttpResponse::new(response.body()).into_response();
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response.content_type()),
    );
    if let Some(location) = response.location() {
        // The core only accepts http(s) URLs without control characters.
        match HeaderValue::from_str(location) {
            Ok(value) => {
                reply.headers_mut().insert(LOCATION, value);
            }
            Err(_) => tracing::warn!(
                target: "sqreen::warp",
                event = "blocked.bad_location",
                "redirect location is not a valid header value; sent without it"
            ),
        }
    }
    reply
}

/// The error of a handler whose user a security response applies to.
///
/// Converts from [`sqreen_core::Blocked`], what
/// [`SqreenUser::identify`](sqreen_core::SqreenUser::identify) returns, and
/// becomes the same response as an IP block (status, `Location` for
/// redirects, block page) in either of warp's handler styles:
///
/// - as a [`Reply`]: a handler used with `Filter::then` returns
///   `Result<impl Reply, Blocked>` and writes `user.identify()?`;
/// - as a rejection ([`Reject`](warp::reject::Reject), so warp's
///   `From<T: Reject> for Rejection` applies): a handler used with `Filter::and_then`
///   writes `user.identify().map_err(Blocked::from)?`; the wrapper turns the
///   rejection into the response (so does [`recover_blocked`], for routes
///   served without the wrapper).
///
/// Inside the wrapper, both ways render with the page set by
/// [`SqreenWrapper::blocked_response`](crate::SqreenWrapper::blocked_response).
/// To answer something else, match the error yourself:
/// `user.identify().map_err(|blocked| my_reply(blocked.response()))`.
///
/// ```
/// use sqreen_warp::{Blocked, Sqreen};
/// use warp::Reply;
///
/// async fn login(sq: Sqreen) -> Result<impl Reply, Blocked> {
///     let user = sq.for_user([("username", "alice")]);
///     user.track_auth_success();
///     user.identify()?; // Err: the block page / redirect
///     Ok("welcome")
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked(pub sqreen_core::Blocked);

impl Blocked {
    /// The security response to send.
    pub fn response(&self) -> &SecurityResponse {
        self.0.response()
    }
}

impl From<sqreen_core::Blocked> for Blocked {
    fn from(blocked: sqreen_core::Blocked) -> Self {
        Self(blocked)
    }
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Blocked {}

impl warp::reject::Reject for Blocked {}

impl Reply for Blocked {
    fn into_response(self) -> Response {
        let response = self.0.into_response();
        let mut reply = default_blocked_response(&response);
        reply.extensions_mut().insert(BlockedMarker(response));
        reply
    }
}

/// Turns a [`Blocked`] rejection into its response; passes any other
/// rejection on. For `Filter::recover`:
///
/// ```
/// use warp::Filter;
/// let routes = warp::path("login")
///     .and_then(|| async { Ok::<_, warp::Rejection>("welcome") })
///     .recover(sqreen_warp::recover_blocked);
/// ```
///
/// The wrapper already does this for the routes it wraps; a `recover` of
/// your own *inside* the wrapper should pass `Blocked` on (return
/// `Err(rejection)`) or call this first.
pub async fn recover_blocked(rejection: Rejection) -> Result<Response, Rejection> {
    match rejection.find::<Blocked>() {
        Some(blocked) => Ok(blocked.clone().into_response()),
        None => Err(rejection),
    }
}
