//! Security responses as axum responses: the default rendering, and the
//! [`Blocked`] error handlers return from `identify()?`.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, StatusCode};
use sqreen_core::SecurityResponse;

/// The response the layer sends for a security response when no
/// [`blocked_response`](crate::SqreenLayer::blocked_response) renderer is set.
///
/// A block answers its status (the configured `blocking_status`, 403 by
/// default) with the core's block page; a redirect answers `303 See Other`
/// with a `Location` header and an empty body. Custom renderers can start
/// from it and adjust.
///
/// ```
/// use sqreen_axum::default_blocked_response;
/// use sqreen_core::SecurityResponse;
///
/// let response = default_blocked_response(&SecurityResponse::Block { status: 403 });
/// assert_eq!(response.status(), 403);
/// let response = default_blocked_response(&SecurityResponse::Redirect {
///     location: "https://example.com/blocked".into(),
/// });
/// assert_eq!(response.status(), 303);
/// assert_eq!(response.headers()["location"], "https://example.com/blocked");
/// ```
pub fn default_blocked_response(response: &SecurityResponse) -> Response {
    let status = StatusCode::from_u16(response.status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut out = Response::new(Body::from(response.body()));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response.content_type()),
    );
    if let Some(location) = response.location() {
        match HeaderValue::from_str(location) {
            Ok(value) => {
                headers.insert(LOCATION, value);
            }
            // The core only accepts http(s) URLs without control characters,
            // so this is unreachable in practice; a redirect without a
            // target still keeps the client out.
            Err(_) => tracing::warn!(
                target: "sqreen::axum",
                event = "response.bad_location",
                "redirect location is not a valid header value; sent without Location"
            ),
        }
    }
    out
}

/// Marks a response built from a [`Blocked`], so the layer can re-render it
/// with the application's custom renderer.
#[derive(Clone, Debug)]
pub(crate) struct BlockedMarker(pub SecurityResponse);

/// The error a handler returns when `identify()` blocks its user:
/// `user.identify()?` in a handler returning `Result<_, Blocked>`.
///
/// It answers like an IP block: the blocked response's status, a `Location`
/// header for redirects, the block page body. When the layer has a custom
/// [`blocked_response`](crate::SqreenLayer::blocked_response) renderer, the
/// layer applies it to this response too as it passes back through.
///
/// ```
/// use axum::{routing::post, Router};
/// use sqreen_axum::{Blocked, Sqreen, SqreenLayer};
///
/// async fn login(sq: Sqreen) -> Result<&'static str, Blocked> {
///     let user = sq.for_user([("username", "alice")]);
///     user.track_auth_success();
///     user.identify()?; // a blocked user gets the security response
///     Ok("welcome")
/// }
/// let app: Router = Router::new().route("/login", post(login)).layer(SqreenLayer::new());
/// ```
///
/// To render it differently in one handler, map the core error yourself
/// instead of using `?`: `user.identify().map_err(|b| my_page(b.response()))`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked(pub sqreen_core::Blocked);

impl From<sqreen_core::Blocked> for Blocked {
    fn from(blocked: sqreen_core::Blocked) -> Self {
        Self(blocked)
    }
}

impl std::ops::Deref for Blocked {
    type Target = sqreen_core::Blocked;
    fn deref(&self) -> &sqreen_core::Blocked {
        &self.0
    }
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Blocked {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl IntoResponse for Blocked {
    fn into_response(self) -> Response {
        let security_response = sqreen_core::Blocked::into_response(self.0);
        let mut response = default_blocked_response(&security_response);
        response
            .extensions_mut()
            .insert(BlockedMarker(security_response));
        response
    }
}
