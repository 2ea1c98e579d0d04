//! The [`Sqreen`] request guard: the request's SDK handle, for handlers.

use std::convert::Infallible;
use std::ops::Deref;

use rocket::Request;
use rocket::request::{FromRequest, Outcome};

use crate::fairing::RequestState;

/// Request guard handing a handler the `Sqreen` handle of its request.
///
/// Never fails: without the [`SqreenFairing`](crate::SqreenFairing), or for
/// a request the agent does not record (agent off, passlisted), it yields
/// [`sqreen_core::Sqreen::disabled()`], on which every call is a no-op.
/// Derefs to [`sqreen_core::Sqreen`].
///
/// ```
/// use sqreen_rocket::Sqreen;
///
/// #[rocket::post("/checkout")]
/// fn checkout(sq: Sqreen) -> &'static str {
///     sq.track_event("checkout.completed").with_properties([("amount", 42)]);
///     "thanks"
/// }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Sqreen(pub sqreen_core::Sqreen);

impl Deref for Sqreen {
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

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Sqreen {
    type Error = Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Infallible> {
        // The fairing copies nothing until a handler asks for the handle.
        let handle = request.local_cache(RequestState::passed).handle(request);
        Outcome::Success(Sqreen(handle))
    }
}
