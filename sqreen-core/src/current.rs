//! The request being served on this thread, for adapters whose middleware
//! wraps the handler's future (tower, actix-web): while the middleware
//! polls the inner future, the request's [`RequestSlot`] is *current*, as
//! `tracing` enters a span or sentry binds a hub for the duration of each
//! poll, and the framework's extractor finds it with [`with_slot`].
//!
//! Entering and leaving swaps the slot (a few machine words) with the
//! thread-local's: no allocation and no map insert, where putting a handle
//! in the request's extensions cost both. The thread-local holds the slot itself, not a
//! handle to it (no reference count to take and give back per request).
//!
//! ```
//! use sqreen_core::{Agent, Config, Open, RequestInfo, RequestSlot, ResponseInfo, current};
//!
//! fn serve(agent: &Agent) -> u16 {
//!     let headers: &[(&str, &str)] = &[];
//!     let request = || RequestInfo::new("GET", "/", &headers);
//!     let mut slot = match agent.open(request, None) {
//!         Open::Request(slot) => Some(slot),
//!         // A passed request makes an empty slot current: code under it
//!         // must not see an enclosing request's handle.
//!         Open::Pass => Some(RequestSlot::default()),
//!         // The handler must not run.
//!         Open::Respond(response) => return response.status(),
//!     };
//!     {
//!         let _entered = current::enter(&mut slot);
//!         // … poll the handler's future; its extractor does:
//!         let sq = current::with_slot(|slot| slot.handle_with(request));
//!         sq.track_event("page.viewed");
//!     }
//!     // `slot` is back, with the record the extractor opened: close it.
//!     if let Some(slot) = slot {
//!         slot.close(ResponseInfo::new(200));
//!     }
//!     200
//! }
//! # assert_eq!(serve(&Agent::off(Config::default())), 200);
//! ```

use std::cell::RefCell;

use crate::open::RequestSlot;

thread_local! {
    static CURRENT: RefCell<Option<RequestSlot>> = const { RefCell::new(None) };
}

/// Makes `slot` the current one until the guard drops; the previous one
/// (usually none) waits in `slot` meanwhile and is put back, with the
/// record it may have opened, when the guard drops (a panic included).
pub fn enter(slot: &mut Option<RequestSlot>) -> Entered<'_> {
    swap(slot);
    Entered { slot }
}

/// Puts the previous slot back when dropped; see [`enter`].
#[must_use = "the slot is current only while the guard lives"]
#[derive(Debug)]
pub struct Entered<'a> {
    slot: &'a mut Option<RequestSlot>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        swap(self.slot);
    }
}

/// Runs `f` on the current slot; `R::default()` (for a handle, a disabled
/// one) when no request is current. `f` must not enter or read the current
/// slot itself; the slot's own methods never do.
pub fn with_slot<R: Default>(f: impl FnOnce(&mut RequestSlot) -> R) -> R {
    CURRENT
        .try_with(|current| match current.try_borrow_mut() {
            Ok(mut current) => current.as_mut().map(f).unwrap_or_default(),
            Err(_) => R::default(),
        })
        .unwrap_or_default()
}

/// Exchanges `slot` with the thread's. The thread's slot is only borrowed
/// inside this module, for one swap or one `with_slot` call, so the borrow
/// cannot fail; nor can the thread-local be gone while a future is polled.
fn swap(slot: &mut Option<RequestSlot>) {
    let _ = CURRENT.try_with(|current| {
        if let Ok(mut current) = current.try_borrow_mut() {
            std::mem::swap(&mut *current, slot);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entering nests: the inner slot hides the outer one, which is back
    /// when the inner guard drops; nothing is current outside.
    #[test]
    fn entering_nests_and_restores() {
        assert!(!with_slot(|_| true), "nothing current");
        let mut outer = Some(RequestSlot::default());
        let _outer = enter(&mut outer);
        assert!(with_slot(|_| true), "outer current");
        {
            let mut inner = None;
            let _inner = enter(&mut inner);
            assert!(
                !with_slot(|_| true),
                "the inner (empty) slot hides the outer"
            );
        }
        assert!(with_slot(|_| true), "outer current again");
    }
}
