//! The [`Sqreen`] extractor: the SDK handle of the request that
//! [`SqreenMiddleware`](crate::SqreenMiddleware) made current.

use std::convert::Infallible;
use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};

/// The SDK handle of the current request, as an actix extractor.
///
/// Dereferences to [`sqreen_core::Sqreen`]: `sq.track_event(..)`,
/// `sq.for_user(..)`. Extraction never fails: without the middleware, or
/// when the agent does not record the request (agent off, passlisted path or
/// IP), the handle is [disabled](sqreen_core::Sqreen::disabled) and every
/// call is a no-op.
///
/// ```
/// use actix_web::{HttpResponse, get};
/// use sqreen_actix::Sqreen;
///
/// #[get("/items/{id}")]
/// async fn item(sq: Sqreen) -> HttpResponse {
///     sq.track_event("item.viewed").with_properties([("source", "web")]);
///     HttpResponse::Ok().finish()
/// }
/// ```
///
/// The handle is cheap to clone (one reference count) and `Send`: move a
/// clone (or `sq.0`) into tasks spawned while the request runs.
#[derive(Clone, Debug, Default)]
pub struct Sqreen(pub sqreen_core::Sqreen);

impl std::ops::Deref for Sqreen {
    type Target = sqreen_core::Sqreen;
    fn deref(&self) -> &sqreen_core::Sqreen {
        &self.0
    }
}

impl From<Sqreen> for sqreen_core::Sqreen {
    fn from(sq: Sqreen) -> Self {
        sq.0
    }
}

impl Sqreen {
    /// The handle of `req`, disabled when the middleware did not record it.
    ///
    /// For code that holds an [`HttpRequest`] rather than extracting
    /// `Sqreen` (middleware inside [`SqreenMiddleware`](crate::SqreenMiddleware),
    /// guards): it reads the request's slot, current while the middleware
    /// calls and polls the inner service, so a task spawned from a handler
    /// must take the handle first and move it in.
    ///
    /// Like the extractor, it copies the request's details into the record
    /// the first time it is called for a request: the middleware copies
    /// nothing until something asks for the handle.
    pub fn of(req: &HttpRequest) -> Self {
        Self(crate::request::handle_for(req))
    }
}

impl FromRequest for Sqreen {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(req)))
    }
}
