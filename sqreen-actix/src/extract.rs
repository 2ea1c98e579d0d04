//! The [`Sqreen`] extractor: the request's SDK handle, placed in the request
//! extensions by [`SqreenMiddleware`](crate::SqreenMiddleware).

use std::convert::Infallible;
use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

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
    /// `Sqreen` (other middleware, guards, error handlers).
    ///
    /// Like the extractor, it copies the request's details into the record
    /// the first time it is called for a request: the middleware copies
    /// nothing until something asks for the handle.
    pub fn of(req: &HttpRequest) -> Self {
        let deferred = req.extensions().contains::<Slot>();
        let handle = if deferred {
            opened(req)
        } else {
            req.extensions().get::<Self>().cloned().unwrap_or_default()
        };
        crate::request::capture(&handle, req);
        handle
    }
}

/// In the request extensions when the middleware deferred the record
/// (nothing loaded in the agent needed to see the request): the record is
/// opened the first time something asks for the handle, and the middleware
/// takes it back to close it.
pub(crate) enum Slot {
    Deferred(sqreen_core::DeferredRecord),
    Opened(sqreen_core::RequestRecord),
    /// The agent turned off since the request started.
    Off,
}

/// The handle of a deferred request's record, opened now if it was not yet.
fn opened(req: &HttpRequest) -> Sqreen {
    let mut extensions = req.extensions_mut();
    let Some(slot) = extensions.get_mut::<Slot>() else {
        return Sqreen::default();
    };
    if let Slot::Deferred(_) = slot
        && let Slot::Deferred(deferred) = std::mem::replace(slot, Slot::Off)
        && let Some(record) = deferred.open()
    {
        *slot = Slot::Opened(record);
    }
    match slot {
        Slot::Opened(record) => Sqreen(record.handle()),
        Slot::Deferred(_) | Slot::Off => Sqreen::default(),
    }
}

impl FromRequest for Sqreen {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(req)))
    }
}
