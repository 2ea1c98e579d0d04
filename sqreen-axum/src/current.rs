//! The SDK handle of the request being served, for the code the layer wraps.
//!
//! While the [`SqreenLayer`](crate::SqreenLayer)'s service calls and polls
//! the inner service for a recorded request, that request's handle is the
//! thread's *current* handle, as `tracing` enters a span or sentry binds a
//! hub for the duration of each poll. The [`Sqreen`](crate::Sqreen)
//! extractor and [`current`] read it. Entering and leaving swaps one
//! pointer in a thread-local slot: it replaced putting the handle in the
//! request extensions, which cost an allocation and a hash-map insert (often
//! a rehash) per request, about 500 instructions.

use std::cell::RefCell;

thread_local! {
    static CURRENT: RefCell<Option<sqreen_core::Sqreen>> = const { RefCell::new(None) };
}

/// The SDK handle of the request the calling code serves, inside a service
/// wrapped by [`SqreenLayer`](crate::SqreenLayer): what a plain hyper or
/// tonic handler uses where an axum handler takes the [`Sqreen`](crate::Sqreen)
/// extractor.
///
/// It is set while the layer calls and polls the inner service, so it is
/// found anywhere in the handler's own task, but not in a task the handler
/// spawns: read it first and move the handle in. Outside a recorded request
/// it is [disabled](sqreen_core::Sqreen::disabled): every call is a no-op.
///
/// ```
/// use sqreen_axum::SqreenLayer;
/// use tower::Layer;
///
/// // A plain tower service (hyper / tonic style) behind the layer.
/// let service = tower::service_fn(|_req: http::Request<String>| async move {
///     let sq = sqreen_axum::current();
///     sq.track_event("raw.request");
///     // a task spawned from here gets the handle moved in:
///     tokio::spawn(async move {
///         sq.track_event("raw.background");
///     });
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// });
/// let service = SqreenLayer::new().layer(service);
/// ```
pub fn current() -> sqreen_core::Sqreen {
    CURRENT
        .try_with(|slot| slot.try_borrow().ok().and_then(|handle| handle.clone()))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Makes `handle` the current handle until the guard drops; the previous
/// one (usually none) waits in `handle` meanwhile and is put back.
pub(crate) fn enter(handle: &mut Option<sqreen_core::Sqreen>) -> Entered<'_> {
    swap(handle);
    Entered { handle }
}

/// Puts the previous handle back when dropped, a panic included.
pub(crate) struct Entered<'a> {
    handle: &'a mut Option<sqreen_core::Sqreen>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        swap(self.handle);
    }
}

/// Exchanges `handle` with the thread's slot. The slot is only ever
/// borrowed inside this module for one swap or one clone, so the borrow
/// cannot fail; nor can the thread-local be gone while a future is polled.
fn swap(handle: &mut Option<sqreen_core::Sqreen>) {
    let _ = CURRENT.try_with(|slot| {
        if let Ok(mut current) = slot.try_borrow_mut() {
            std::mem::swap(&mut *current, handle);
        }
    });
}
