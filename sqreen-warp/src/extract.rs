//! The [`sqreen()`] filter that hands handlers the request's [`Sqreen`] handle.

use std::convert::Infallible;

use warp::Filter;

use crate::context;

/// The request's SDK handle, as extracted by [`sqreen()`]; derefs to
/// [`sqreen_core::Sqreen`] (`track_event`, `for_user`, …).
///
/// Disabled (every call a no-op) when the request is not recorded: the
/// agent is off, the path or IP is passlisted, or the route is not inside a
/// [`SqreenWrapper`](crate::SqreenWrapper).
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

/// A filter extracting the request's [`Sqreen`] handle; it never rejects.
///
/// Outside a [`SqreenWrapper`](crate::SqreenWrapper) it yields a disabled
/// handle. Where it sits in the route does not matter (before or after
/// path, body or other filters).
///
/// ```
/// use warp::Filter;
/// use sqreen_warp::Sqreen;
///
/// let route = warp::path("pay")
///     .and(sqreen_warp::sqreen())
///     .map(|sq: Sqreen| {
///         sq.track_event("payment.done").with_properties([("amount", 42)]);
///         "paid"
///     });
/// ```
pub fn sqreen() -> impl Filter<Extract = (Sqreen,), Error = Infallible> + Copy + Send + Sync {
    // Runs at poll time, in the task the wrapper registered the request
    // under. The wrapper copies nothing of the request until a route asks
    // for the handle: the first arm hands over a handle whose record needs
    // nothing (disabled, or copied already); the second extracts what the
    // record needs (warp clones the header map for that) and copies it.
    let ready = warp::any().and_then(|| {
        std::future::ready(match context::copied_handle() {
            Some(handle) => Ok(Sqreen(handle)),
            None => Err(warp::reject::not_found()),
        })
    });
    let copying =
        crate::wrapper::snapshot().map(|peer, method, query: Option<String>, path, headers| {
            Sqreen(crate::wrapper::handle_with(
                peer,
                &method,
                query.as_deref(),
                &path,
                &headers,
            ))
        });
    ready.or(copying).unify()
}
