//! The [`Sqreen`] extractor: the request's SDK handle in a handler.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use http::request::Parts;

/// The SDK handle of the current request, as an axum extractor.
///
/// It reads the handle the [`SqreenLayer`](crate::SqreenLayer) makes
/// [current](crate::current()) while the handler runs (or, failing that, a
/// `sqreen_core::Sqreen` in the request extensions, should another layer
/// have put one there). It never rejects: without the layer, or when the
/// agent does not record this request (agent off, passlisted path or IP),
/// it yields [`sqreen_core::Sqreen::disabled`], on which every call is a
/// no-op. It dereferences to [`sqreen_core::Sqreen`].
///
/// ```
/// use axum::{routing::post, Router};
/// use sqreen_axum::{Sqreen, SqreenLayer};
///
/// async fn invite(sq: Sqreen) -> &'static str {
///     sq.track_event("user.invited").with_properties([("plan", "pro"), ("seats", "5")]);
///     "invited"
/// }
/// let app: Router = Router::new().route("/invite", post(invite)).layer(SqreenLayer::new());
/// ```
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

impl<S: Send + Sync> FromRequestParts<S> for Sqreen {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let handle = crate::request::handle_for(parts).await;
        match parts.extensions.get::<sqreen_core::Sqreen>() {
            // A handle another layer put in the extensions (`Extension` style).
            Some(found) if !handle.is_enabled() => Ok(Self(found.clone())),
            _ => Ok(Self(handle)),
        }
    }
}
