//! Security responses as actix responses: the default rendering, the
//! pluggable renderer of [`SqreenMiddleware::blocked_response`], and
//! [`Blocked`], the error `identify()?` turns into that same response.
//!
//! [`SqreenMiddleware::blocked_response`]: crate::SqreenMiddleware::blocked_response

use std::fmt;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, ResponseError};
use sqreen_core::SecurityResponse;

/// A custom renderer of security responses, shared by every worker.
pub(crate) type Renderer = Arc<dyn Fn(&SecurityResponse) -> HttpResponse + Send + Sync>;

/// The response the adapter sends for a security response when no custom
/// renderer is set: `response.status()` (the configured `blocking_status`,
/// 403 by default, or 303 for a redirect), a `Location` header for redirects,
/// and [`SecurityResponse::body`] typed [`SecurityResponse::content_type`].
///
/// Custom renderers can fall back to it:
///
/// ```
/// use actix_web::HttpResponse;
/// use sqreen_core::SecurityResponse;
///
/// fn render(response: &SecurityResponse) -> HttpResponse {
///     match response {
///         SecurityResponse::Block { .. } => HttpResponse::Forbidden().body("go away"),
///         redirect => sqreen_actix::default_blocked_response(redirect),
///     }
/// }
/// let redirect = SecurityResponse::Redirect { location: "https://example.com/".into() };
/// assert_eq!(render(&redirect).status(), 303);
/// ```
pub fn default_blocked_response(response: &SecurityResponse) -> HttpResponse {
    // The core only produces valid statuses; 403 keeps a hostile value closed.
    let status = StatusCode::from_u16(response.status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut builder = HttpResponse::build(status);
    if let Some(location) = response.location() {
        builder.insert_header((LOCATION, location));
    }
    builder
        .content_type(response.content_type())
        .body(response.body())
}

/// The error a handler returns when `identify()` reports a blocked or
/// redirected user: actix turns it into the same response as an IP block
/// (see [`default_blocked_response`]), so `?` is all a handler needs.
///
/// ```
/// use actix_web::{HttpResponse, post};
/// use sqreen_actix::{Blocked, Sqreen};
///
/// #[post("/login")]
/// async fn login(sq: Sqreen) -> Result<HttpResponse, Blocked> {
///     let user = sq.for_user([("username", "bob")]);
///     user.track_auth_success();
///     user.identify()?; // a blocked user gets the block page or the redirect
///     Ok(HttpResponse::Ok().body("welcome"))
/// }
/// ```
///
/// When the middleware has a [custom renderer](crate::SqreenMiddleware::blocked_response),
/// it also renders the responses of `Blocked` errors. A handler that wants
/// its own answer for one route maps the error itself:
/// `user.identify().map_err(|b| my_error(b.response()))?`.
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

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Blocked {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl ResponseError for Blocked {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.response().status()).unwrap_or(StatusCode::FORBIDDEN)
    }

    fn error_response(&self) -> HttpResponse {
        default_blocked_response(self.0.response())
    }
}
