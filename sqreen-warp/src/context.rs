//! The per-request side channel between the wrapper and the filters inside it.
//!
//! warp 0.4 gives filters no way to attach data to a request: its request
//! extensions are read-only from filters, and a wrapper built from public
//! combinators (`Filter` is sealed) never sees the inner filter's future, so
//! it cannot scope a `tokio::task_local!` around it either. What the wrapper
//! *can* rely on is where warp runs a request: `warp::serve` drives each
//! request's filter future inside one tokio task (HTTP/1: the connection's
//! task, one request at a time; HTTP/2: one task per stream), and
//! `warp::test` drives it inside the caller's future.
//!
//! So the wrapper registers the request's handle (and, when it buffered
//! one, its body) under the key of the task polling the request — the tokio
//! task id, or the thread outside any task (`block_on`, `#[tokio::test]`) —
//! and [`sqreen()`](crate::sqreen) and the body filters look it up under the
//! same key. The registration is removed when the wrapper's state is dropped
//! (the request ended or was cancelled).
//!
//! ```text
//!  wrapper: begin ──register(key = current task)──▶ table ◀──lookup(key)── sqreen(), body::*
//!           close / drop ──remove──────────────────▶
//! ```
//!
//! Safety net: if two requests are registered under one key at once (two
//! nested wrappers, or several requests driven concurrently by one task,
//! e.g. `join!` over `warp::test` calls), a lookup cannot tell them apart;
//! it then answers "nothing" (a disabled handle, the real body), logs a
//! rate-limited warning, and never hands one request another's record.
//!
//! The entry owns the request's [`RequestSlot`] (the wrapper takes it back
//! to close it), so registering costs no extra reference count. The slot
//! opens its record the first time a route asks for the handle: when
//! nothing loaded in the agent needs to see the request, a request whose
//! routes never ask costs no record at all.
//!
//! Cost: the table is split into shards by key, each a short `Vec` behind
//! its own mutex held for a few instructions. Registering and removing take
//! the shard's lock once each and touch no other shared memory (no global
//! counter): two uncontended atomic operations apiece.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sqreen_core::{RequestInfo, RequestSlot};

use crate::serve::BodyTap;

/// Who is polling the current request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

impl Key {
    fn current() -> Self {
        match tokio::task::try_id() {
            Some(id) => Self::Task(id),
            None => Self::Thread(std::thread::current().id()),
        }
    }

    fn shard(&self) -> &'static Mutex<Shard> {
        let mut hasher = ShardHasher(0xcbf2_9ce4_8422_2325);
        self.hash(&mut hasher);
        // The top bits of a multiplicative hash are the well-mixed ones.
        &TABLE[(hasher.finish() >> (64 - SHARD_BITS)) as usize]
    }
}

/// A request body the wrapper buffered for capture, handed back to handlers.
#[derive(Clone, Debug)]
pub(crate) struct StashedBody {
    pub bytes: Bytes,
    /// The request's `Content-Type`, lowercased essence (`application/json`).
    pub mime: Box<str>,
}

struct Entry {
    key: Key,
    id: u64,
    /// The request's slot (one recording nothing for a passlisted request
    /// whose body was buffered).
    slot: RequestSlot,
    body: Option<StashedBody>,
    /// The body `SqreenService` copies while the route reads it.
    tap: Option<BodyTap>,
    /// Route parameters the route's [`param`](crate::param()) filters
    /// matched, by name.
    params: Vec<(&'static str, String)>,
}

/// The entries of the keys hashing here, and the shard's own id counter
/// (ids need only be unique within a shard: lookups match the key first).
struct Shard {
    entries: Vec<Entry>,
    next_id: u64,
}

const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;

static TABLE: [Mutex<Shard>; SHARDS] = [const {
    Mutex::new(Shard {
        entries: Vec::new(),
        next_id: 0,
    })
}; SHARDS];
/// Unix second of the last ambiguity warning, for rate limiting.
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

/// FNV-1a for bytes, a multiplicative mix for the `u64`s task and thread ids hash as.
struct ShardHasher(u64);

impl Hasher for ShardHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    // The enum's discriminant.
    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Nothing panics while holding a shard; a poisoned one still holds valid data.
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

/// A live registration; dropping it removes the entry (and drops its
/// record, closing it without a response).
#[derive(Debug)]
pub(crate) struct Registration {
    key: Key,
    id: u64,
}

/// Registers the current request's slot and buffered body under the
/// current task (or thread).
pub(crate) fn register(slot: RequestSlot, body: Option<StashedBody>) -> Registration {
    insert(slot, body, None)
}

/// Registers a request whose body is copied as it streams: the record
/// takes it when the wrapper finishes.
pub(crate) fn register_tapped(slot: RequestSlot, tap: BodyTap) -> Registration {
    insert(slot, None, Some(tap))
}

fn insert(slot: RequestSlot, body: Option<StashedBody>, tap: Option<BodyTap>) -> Registration {
    let key = Key::current();
    let mut shard = lock(key.shard());
    shard.next_id = shard.next_id.wrapping_add(1);
    let id = shard.next_id;
    shard.entries.push(Entry {
        key,
        id,
        slot,
        body,
        tap,
        params: Vec::new(),
    });
    Registration { key, id }
}

impl Registration {
    /// Removes the entry, handing its slot back to be closed.
    pub(crate) fn finish(mut self) -> Option<RequestSlot> {
        let record = self.remove();
        std::mem::forget(self);
        record
    }

    /// Removes the entry; its record takes the copied body and the route
    /// parameters (outside the shard's lock).
    fn remove(&mut self) -> Option<RequestSlot> {
        let entry = {
            let mut shard = lock(self.key.shard());
            let i = shard
                .entries
                .iter()
                .position(|e| e.id == self.id && e.key == self.key)?;
            shard.entries.swap_remove(i)
        };
        let slot = entry.slot;
        if let Some(body) = entry.tap.as_ref().and_then(BodyTap::body) {
            slot.attach_body(body);
        }
        if !entry.params.is_empty() {
            slot.set_route_params(|| entry.params);
        }
        Some(slot)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Dropped after the shard's lock is released: closing may queue the record.
        drop(self.remove());
    }
}

/// Records a route parameter of the current request (a later value of the
/// same name replaces the earlier one, as when warp tries another route).
pub(crate) fn add_param(name: &'static str, value: &str) {
    with_current(|e| {
        // A bound on what one request can make the entry hold.
        const MAX_PARAMS: usize = 32;
        const MAX_LEN: usize = 1024;
        let mut end = value.len().min(MAX_LEN);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let value = value[..end].to_owned();
        if let Some(slot) = e.params.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else if e.params.len() < MAX_PARAMS {
            e.params.push((name, value));
        }
    });
}

/// Works on the one entry registered for the current task, if there is
/// exactly one.
fn with_current<T>(f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
    let key = Key::current();
    let mut shard = lock(key.shard());
    let mut found = None;
    for (i, entry) in shard.entries.iter().enumerate() {
        if entry.key == key {
            if found.is_some() {
                drop(shard);
                warn_ambiguous();
                return None;
            }
            found = Some(i);
        }
    }
    shard.entries.get_mut(found?).map(f)
}

/// The handle of the request the current task is running when it needs
/// nothing more: disabled when no wrapper registered it, or its record
/// with the request copied (opened now if it was not yet, under the
/// shard's lock: opening takes a pooled record and calls nothing back
/// here). `None` when the request must be shown first ([`handle_with`]).
pub(crate) fn copied_handle() -> Option<sqreen_core::Sqreen> {
    match with_current(|e| (!e.slot.needs_request()).then(|| e.slot.handle())) {
        Some(handle) => handle,
        // Nothing registered (or ambiguous): a disabled handle.
        None => Some(sqreen_core::Sqreen::disabled()),
    }
}

/// The current request's handle, its record opened and `request` copied
/// into it if not yet; disabled when nothing (or more than one request) is
/// registered for the task.
pub(crate) fn handle_with<'a>(request: impl FnOnce() -> RequestInfo<'a>) -> sqreen_core::Sqreen {
    with_current(|e| e.slot.handle_with(request)).unwrap_or_default()
}

/// The body the wrapper buffered for the request the current task is running.
pub(crate) fn current_body() -> Option<StashedBody> {
    with_current(|e| e.body.clone()).flatten()
}

fn warn_ambiguous() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            target: "sqreen::warp",
            event = "context.ambiguous",
            "two sqreen-wrapped requests are driven by one task at once (nested wrappers, \
             or concurrent requests joined in one task): handlers get a disabled handle \
             (further warnings suppressed for 10 s)"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A registration is visible to its own thread only, and gone once dropped.
    #[test]
    fn registration_is_scoped_to_the_thread_and_removed_on_drop() {
        let reg = register(RequestSlot::default(), None);
        assert!(with_current(|_| ()).is_some());
        std::thread::spawn(|| assert!(with_current(|_| ()).is_none()))
            .join()
            .unwrap();
        drop(reg);
        assert!(with_current(|_| ()).is_none());
    }

    /// A deferred registration opens its record the first time the handle
    /// is asked for, and hands it back to close; never asked, there is no
    /// record at all.
    #[test]
    fn the_record_opens_when_the_handle_is_asked_for() {
        let config = sqreen_core::test::test_config().build().unwrap();
        let (guard, _backend) = sqreen_core::test::start_captured(config);
        assert!(guard.wait_ready(std::time::Duration::from_secs(10)));
        let headers: &[(&str, &str)] = &[("Host", "h")];
        let request = || RequestInfo::new("GET", "/", &headers);
        let sqreen_core::Open::Request(slot) = guard.open(request, None) else {
            panic!("the agent records");
        };
        let reg = register(slot, None);
        assert!(copied_handle().is_none(), "the request must be shown first");
        let handle = handle_with(request);
        assert!(handle.is_enabled());
        let again = copied_handle().expect("copied now");
        assert!(again.is_enabled());
        drop((handle, again));
        let slot = reg.finish().expect("registered");
        assert!(!slot.needs_request(), "opened and copied once, handed back");
    }

    /// Two registrations under one key are ambiguous: nothing is answered.
    #[test]
    fn two_registrations_under_one_key_answer_nothing() {
        let body = StashedBody {
            bytes: Bytes::from_static(b"{}"),
            mime: "application/json".into(),
        };
        let a = register(RequestSlot::default(), Some(body.clone()));
        assert!(current_body().is_some());
        let b = register(RequestSlot::default(), Some(body));
        assert!(current_body().is_none());
        drop(a);
        assert!(current_body().is_some());
        drop(b);
        assert!(current_body().is_none());
    }
}
