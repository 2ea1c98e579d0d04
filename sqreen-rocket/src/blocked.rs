//! Security responses as rocket responses: the default rendering, the
//! application's own rendering ([`SqreenFairing::blocked_response`]), and
//! [`Blocked`], the error a handler returns through `identify()?`.
//!
//! [`SqreenFairing::blocked_response`]: crate::SqreenFairing::blocked_response

use std::io::Cursor;
use std::sync::Arc;

use rocket::http::{Header, Status};
use rocket::response::{self, Responder};
use rocket::{Request, Response};
use sqreen_core::SecurityResponse;

/// The application's renderer of security responses.
pub(crate) type RenderFn = Arc<dyn Fn(&SecurityResponse) -> Response<'static> + Send + Sync>;

/// Managed state holding the renderer given to
/// [`SqreenFairing::blocked_response`](crate::SqreenFairing::blocked_response),
/// so IP actions and [`Blocked`] errors render the same way.
pub(crate) struct BlockedPage(pub RenderFn);

/// The default rendering of a security response: its status, a `Location`
/// header for redirects, and its body ([the block page] for blocks, empty for
/// redirects) with its `Content-Type`.
///
/// Custom renderers can start from it:
///
/// ```
/// use rocket::http::Header;
/// let mut response = sqreen_rocket::default_blocked_response(&sqreen_core::SecurityResponse::Block { status: 403 });
/// response.set_header(Header::new("Cache-Control", "no-store"));
/// assert_eq!(response.status().code, 403);
/// ```
///
/// [the block page]: sqreen_core::actions::BLOCK_PAGE
pub fn default_blocked_response(response: &SecurityResponse) -> Response<'static> {
    let body = response.body();
    let mut builder = Response::build();
    builder
        .status(Status::new(response.status()))
        .header(Header::new("Content-Type", response.content_type()))
        .sized_body(body.len(), Cursor::new(body));
    if let Some(location) = response.location() {
        builder.header(Header::new("Location", location.to_owned()));
    }
    builder.finalize()
}

/// Renders `response` with the application's renderer when the fairing has
/// one, the default page otherwise.
pub(crate) fn render(request: &Request<'_>, response: &SecurityResponse) -> Response<'static> {
    match request.rocket().state::<BlockedPage>() {
        Some(page) => (page.0)(response),
        None => default_blocked_response(response),
    }
}

/// The error a handler returns when a security response applies to its user;
/// a [`Responder`] that answers that response.
///
/// `identify()?` converts into it, so a handler returning
/// `Result<_, sqreen_rocket::Blocked>` answers a blocked user exactly like a
/// blocked IP: the blocked response's status (403 by default) and block page,
/// or a 303 with `Location` for redirects — rendered by the fairing's
/// [`blocked_response`](crate::SqreenFairing::blocked_response) function
/// when it has one.
///
/// ```
/// use rocket::http::Status;
/// use sqreen_rocket::{Blocked, Sqreen};
///
/// #[rocket::post("/login")]
/// fn login(sq: Sqreen) -> Result<&'static str, Blocked> {
///     let user = sq.for_user([("username", "bob")]);
///     user.track_auth_success();
///     user.identify()?;
///     Ok("welcome")
/// }
/// ```
///
/// To answer differently in one handler only, map the error yourself:
/// `user.identify().map_err(|blocked| (Status::Forbidden, "go away"))`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked(pub sqreen_core::Blocked);

impl Blocked {
    /// The security response to answer with.
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

impl std::error::Error for Blocked {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl<'r> Responder<'r, 'static> for Blocked {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        Ok(render(request, self.0.response()))
    }
}
