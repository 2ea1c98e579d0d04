//! The request record: what the agent keeps of one request while it runs.
//!
//! A record copies the few request fields the protocol sends (method,
//! path, query, host, the tracked headers, user agent, referer, a captured
//! body) into one buffer, when the adapter's extractor shows it the request
//! ([`RequestSlot::handle_with`](crate::RequestSlot::handle_with)), or at
//! once when a body is captured or an IP action matched: a request nobody
//! asks about is never copied. Handlers add entries through their
//! [`Sqreen`](crate::Sqreen) handle; [`RequestRecord::close`] hands the
//! record to the agent thread only when it holds entries. Parsing
//! parameters, resolving the client IP (unless an IP action needed it
//! already), scrubbing and serialising all happen on the agent thread.
//!
//! Records are recycled: once the agent thread has written a record's event,
//! or a request closes without tracking anything, the record is cleared and
//! goes back to the agent's pool (a bounded lock-free queue), and the next
//! request fills it again. The pool, the queue to the agent thread and what
//! records read and count while a request runs make up the record's
//! [`Home`], the one interface between records and the agent (see
//! [`home`](self::home) for what it holds). Once the pool holds records (it fills as the
//! agent thread works), a request whose event has at most four properties,
//! with names and string values of up to 24 bytes, allocates nothing for
//! its record, and the agent thread frees nothing that a request thread
//! allocated: with glibc malloc, memory freed on another thread sent each
//! tracked request's allocations down malloc's slow path, which cost more
//! than the rest of the request's recording. A request that finds the pool
//! empty allocates a new record.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use crate::model::{Entry, MAX_ENTRIES_PER_RECORD, MAX_TRACKS_PER_RECORD};
use crate::request::{RequestInfo, ResponseInfo};
use crate::stats::bump;

mod captured;
mod home;

use captured::cut;
pub(crate) use captured::{Captured, IP_HEADER_SLOT, StoredHeaders, TRACKED_HEADERS};
pub(crate) use home::{Home, RecordSender, wake_threshold};

/// A recycled record keeps its buffer up to this capacity; a record with a
/// larger one is freed rather than pooled.
const MAX_KEPT_BUF: usize = 2 * 1024;

/// A recycled record keeps room for this many entries at most.
const MAX_KEPT_ENTRIES: usize = 4;
/// A recycled record keeps room for this many route parameters at most.
const MAX_KEPT_PARAMS: usize = 8;

/// What the response looked like, kept once the record is queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClosedResponse {
    pub status: u16,
    pub content_length: Option<u64>,
    /// The response had a content type; its text is [`RecordState::response_type`].
    pub content_type: bool,
}

#[derive(Debug, Default)]
pub(crate) struct RecordState {
    /// The copied request; empty while the record waits for an on-demand
    /// capture ([`RecordInner::pending`]).
    pub request: Captured,
    pub entries: Vec<Entry>,
    pub route_params: Vec<(String, String)>,
    pub response: Option<ClosedResponse>,
    /// The response's content type (see [`ClosedResponse::content_type`]),
    /// in a buffer a recycled record reuses.
    pub response_type: String,
    /// When the record was closed with entries.
    pub end: Option<SystemTime>,
    pub closed: bool,
}

/// The shared part of a record: the copied request plus its entries.
pub(crate) struct RecordInner {
    /// Where the record comes from and goes back to ([`Home`]); weak, so
    /// that the records pooled in it do not keep the agent alive.
    pub home: Weak<Home>,
    pub start: SystemTime,
    /// Set when the request path already had to resolve it (IP actions loaded).
    pub client_ip: Option<IpAddr>,
    /// The request is still to be copied, when a handler asks for the
    /// handle ([`RequestSlot::handle_with`](crate::RequestSlot::handle_with)).
    pending: AtomicBool,
    state: Mutex<RecordState>,
}

impl std::fmt::Debug for RecordInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("RecordInner");
        // `try_lock`: formatting a record must never wait for (or deadlock
        // with) the code that holds its state.
        if let Ok(state) = self.state.try_lock() {
            debug
                .field("method", &state.request.method_str())
                .field("path", &state.request.path_str());
        }
        debug
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Route parameters kept per request.
const MAX_ROUTE_PARAMS: usize = 32;

fn push_route_params(kept: &mut Vec<(String, String)>, params: &[(&str, &str)]) {
    kept.extend(
        params
            .iter()
            .take(MAX_ROUTE_PARAMS)
            .map(|&(k, v)| (k.to_owned(), v.to_owned())),
    );
}

impl RecordInner {
    /// An empty record of `home`, to be [filled](Self::fill).
    pub fn blank(home: &Arc<Home>) -> Self {
        Self {
            home: Arc::downgrade(home),
            start: SystemTime::UNIX_EPOCH,
            client_ip: None,
            pending: AtomicBool::new(false),
            state: Mutex::new(RecordState::default()),
        }
    }

    /// A new record of `home` holding what the protocol needs of `info`.
    pub fn capture(home: &Arc<Home>, info: &RequestInfo<'_>, client_ip: Option<IpAddr>) -> Self {
        let mut record = Self::blank(home);
        record.fill(home, info, client_ip);
        record
    }

    /// Copies what the protocol needs out of the borrowed request into this
    /// blank or [reset](Self::reset) record, reusing its buffer.
    pub fn fill(&mut self, home: &Home, info: &RequestInfo<'_>, client_ip: Option<IpAddr>) {
        let state = self.state_mut();
        state.request.fill(home, info);
        push_route_params(&mut state.route_params, info.route_params);
        *self.pending.get_mut() = false;
        self.start = SystemTime::now();
        self.client_ip = client_ip;
    }

    /// Opens this blank or reset record, for a request that started at
    /// `start`, without copying the request yet:
    /// [`capture_request`](Self::capture_request) does, if a handler asks.
    pub fn defer(&mut self, start: SystemTime, client_ip: Option<IpAddr>) {
        *self.pending.get_mut() = true;
        self.start = start;
        self.client_ip = client_ip;
    }

    /// Keeps `body` as the request's body (an adapter that copied it while
    /// it streamed to the handler): only a whole body within the agent's
    /// `body_capture_limit`, in a record that is open and holds its request
    /// (a form or JSON body cut short could not be parsed). True when kept.
    pub fn attach_body(&self, body: &[u8]) -> bool {
        let Some(home) = self.home.upgrade() else {
            return false;
        };
        if body.is_empty() || body.len() > home.body_capture_limit || self.is_pending() {
            return false;
        }
        let mut state = self.state();
        if state.closed {
            return false;
        }
        state.request.set_body(body)
    }

    /// Opens the record for events tracked outside any request
    /// ([`Agent::track_event`](crate::Agent::track_event)): nothing is to
    /// be copied, and it is sent without a request.
    pub fn detach(&mut self, start: SystemTime) {
        *self.pending.get_mut() = false;
        self.start = start;
        self.client_ip = None;
    }

    /// True while the request is still to be copied.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Copies the request now if the record was [deferred](Self::defer) and
    /// has not been yet; a later call, or one on a closed record, does
    /// nothing.
    pub fn capture_request(&self, info: &RequestInfo<'_>) {
        if !self.is_pending() {
            return;
        }
        let Some(home) = self.home.upgrade() else {
            return;
        };
        let mut state = self.state();
        // Re-checked under the lock: two handles may race to capture.
        if state.closed || !self.pending.load(Ordering::Acquire) {
            return;
        }
        state.request.fill(&home, info);
        push_route_params(&mut state.route_params, info.route_params);
        self.pending.store(false, Ordering::Release);
    }

    fn state_mut(&mut self) -> &mut RecordState {
        self.state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Clears the record for reuse: entries, parameters and the captured
    /// body are dropped, buffers keep their capacity. False when a buffer
    /// grew too large to be worth keeping (the record should then be freed).
    pub fn reset(&mut self) -> bool {
        let state = self.state_mut();
        if state.request.buf.capacity() > MAX_KEPT_BUF
            || state.entries.capacity() > MAX_KEPT_ENTRIES
            || state.route_params.capacity() > MAX_KEPT_PARAMS
        {
            return false;
        }
        state.entries.clear();
        state.route_params.clear();
        state.response = None;
        state.response_type.clear();
        state.end = None;
        state.closed = false;
        state.request.clear();
        *self.pending.get_mut() = false;
        self.client_ip = None;
        true
    }

    /// The record's state; a poisoned lock (a panic while holding it, which
    /// no code here can cause) still yields the data.
    pub fn state(&self) -> MutexGuard<'_, RecordState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an entry unless the record is already closed or full (at most
    /// [`MAX_TRACKS_PER_RECORD`] tracks and [`MAX_ENTRIES_PER_RECORD`]
    /// entries: a handler tracking in a loop cannot grow a record without
    /// bound, nor make a record the backend refuses).
    pub fn push(&self, entry: Entry) {
        let mut state = self.state();
        let full = if matches!(entry, Entry::Track { .. }) {
            state
                .entries
                .iter()
                .filter(|e| matches!(e, Entry::Track { .. }))
                .count()
                >= MAX_TRACKS_PER_RECORD
        } else {
            state.entries.len() >= MAX_ENTRIES_PER_RECORD
        };
        if state.closed || full {
            let closed = state.closed;
            drop(state);
            self.ignored_call(closed);
            return;
        }
        if state.entries.capacity() == 0 {
            // Most requests track one thing: room for one entry (272 bytes),
            // not the four a `Vec` would start with.
            state.entries.reserve_exact(1);
        }
        state.entries.push(entry);
    }

    /// Counts (and logs, rate-limited) an SDK call ignored because the
    /// record is `closed`, or else full.
    fn ignored_call(&self, closed: bool) {
        let Some(home) = self.home.upgrade() else {
            return;
        };
        bump(&home.counters.invalid_sdk_input, 1);
        if !home.sdk_warnings.allow() {
            return;
        }
        if closed {
            tracing::warn!(
                target: "sqreen::sdk",
                event = "sdk.after_close",
                "an SDK call was made after its request ended; it is ignored"
            );
        } else {
            tracing::warn!(
                target: "sqreen::sdk",
                event = "sdk.record_full",
                max_tracks = MAX_TRACKS_PER_RECORD,
                max_entries = MAX_ENTRIES_PER_RECORD,
                "one request tracked more than a record may hold; the extra calls are ignored"
            );
        }
    }

    /// Closes the record; true when it holds entries and must be queued.
    /// `response` runs only then.
    pub(crate) fn close<'r>(&self, response: impl FnOnce() -> Option<ResponseInfo<'r>>) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        state.closed = true;
        if state.entries.is_empty() {
            return false;
        }
        let state = &mut *state;
        state.response = response().map(|r| {
            if let Some(c) = r.content_type {
                state.response_type.push_str(cut(c, 256));
            }
            ClosedResponse {
                status: r.status,
                content_length: r.content_length,
                content_type: r.content_type.is_some(),
            }
        });
        state.end = Some(SystemTime::now());
        true
    }
}

/// An open request record, owned by a [`RequestSlot`](crate::RequestSlot)
/// (or, outside requests, by an SDK builder).
///
/// Dropping it unclosed (a cancelled or panicking handler) closes it
/// without a response, so nothing tracked is lost.
pub(crate) struct RequestRecord {
    inner: Option<Arc<RecordInner>>,
    home: Arc<Home>,
}

impl std::fmt::Debug for RequestRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRecord")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl RequestRecord {
    pub(crate) fn new(home: Arc<Home>, inner: Arc<RecordInner>) -> Self {
        Self {
            inner: Some(inner),
            home,
        }
    }

    /// The record's state, for the SDK builders that own their record.
    pub(crate) fn inner(&self) -> Option<&RecordInner> {
        self.inner.as_deref()
    }

    /// Another reference to the record, for the SDK handle handlers track
    /// events through (`Sqreen::from_record`).
    pub(crate) fn share(&self) -> Option<Arc<RecordInner>> {
        self.inner.clone()
    }

    /// True while the request is still to be copied ([`RecordInner::defer`]).
    pub fn needs_request(&self) -> bool {
        self.inner.as_ref().is_some_and(|r| r.is_pending())
    }

    /// Copies the request into a record opened without it, once: `request`
    /// runs only then.
    pub fn capture_request<'a>(&self, request: impl FnOnce() -> RequestInfo<'a>) {
        if let Some(inner) = &self.inner
            && inner.is_pending()
        {
            inner.capture_request(&request());
        }
    }

    /// Keeps `body` as the request's body; see [`RecordInner::attach_body`].
    pub fn attach_body(&self, body: &[u8]) -> bool {
        self.inner.as_ref().is_some_and(|r| r.attach_body(body))
    }

    /// Route parameters; see [`RequestSlot::set_route_params`](crate::RequestSlot::set_route_params).
    pub fn set_route_params<I, K, V>(&self, params: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        if let Some(inner) = &self.inner {
            let mut state = inner.state();
            state.route_params.clear();
            state.route_params.extend(
                params
                    .into_iter()
                    .take(MAX_ROUTE_PARAMS)
                    .map(|(k, v)| (k.into(), v.into())),
            );
        }
    }

    /// Closes the record with the application's response; see
    /// [`RequestSlot::close`](crate::RequestSlot::close).
    pub fn close(mut self, response: ResponseInfo<'_>) {
        self.finish(|| Some(response));
    }

    /// [`close`](Self::close), building the response only when the record is kept.
    pub fn close_with<'r>(mut self, response: impl FnOnce() -> ResponseInfo<'r>) {
        self.finish(|| Some(response()));
    }

    fn finish<'r>(&mut self, response: impl FnOnce() -> Option<ResponseInfo<'r>>) {
        if let Some(inner) = self.inner.take() {
            if inner.close(response) {
                self.home.enqueue(inner);
            } else {
                self.home.recycle(inner);
            }
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.finish(|| None);
    }
}
