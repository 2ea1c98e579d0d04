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
//! tracked request's allocations down malloc's slow path (about 1 900 of the
//! 3 300 instructions a tracked request cost). A request that finds the
//! pool empty allocates a new record.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use crate::model::{Entry, MAX_ENTRIES_PER_RECORD, MAX_TRACKS_PER_RECORD};
use crate::request::{HeaderPairs, RequestInfo, ResponseInfo};
use crate::stats::bump;

mod home;

pub(crate) use home::{Home, RecordSender, wake_threshold};

/// Headers the protocol sends, in the order they are reported.
pub(crate) const TRACKED_HEADERS: [&str; 15] = [
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Client-Ip",
    "X-Real-Ip",
    "X-Forwarded",
    "X-Cluster-Client-Ip",
    "Forwarded-For",
    "Forwarded",
    "Via",
    "Content-Type",
    "Content-Length",
    "Host",
    "X-Requested-With",
    "X-Request-Id",
];
/// Slot of the configured `ip_header` in a header span.
pub(crate) const IP_HEADER_SLOT: u8 = TRACKED_HEADERS.len() as u8;
const CONTENT_TYPE_SLOT: u8 = 10;
const HOST_SLOT: u8 = 12;
const REQUEST_ID_SLOT: u8 = 14;

/// Header lines kept per request; more are ignored (and counted).
const MAX_HEADER_LINES: usize = 24;
/// Longest path, query, host, user agent or referer kept, in bytes.
const MAX_FIELD_LEN: usize = 8 * 1024;
/// Longest header value kept, in bytes.
const MAX_HEADER_LEN: usize = 4 * 1024;

/// A byte range in the record's buffer.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct HeaderSpan {
    slot: u8,
    value: Span,
}

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

/// The request fields a record copies: one buffer and spans into it.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    /// The TCP peer's address.
    pub peer: Option<SocketAddr>,
    buf: Vec<u8>,
    method: Span,
    path: Span,
    query: Option<Span>,
    scheme: Span,
    host: Option<Span>,
    user_agent: Option<Span>,
    referer: Option<Span>,
    headers: [HeaderSpan; MAX_HEADER_LINES],
    header_count: u8,
    body: Option<Box<[u8]>>,
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

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Copier {
    buf: Vec<u8>,
    truncated: bool,
}

impl Copier {
    fn push(&mut self, bytes: &[u8], max: usize) -> Span {
        let bytes = if bytes.len() > max {
            self.truncated = true;
            &bytes[..max]
        } else {
            bytes
        };
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    fn push_str(&mut self, s: &str, max: usize) -> Span {
        let kept = cut(s, max);
        if kept.len() < s.len() {
            self.truncated = true;
        }
        self.push(kept.as_bytes(), usize::MAX)
    }
}

/// Pseudo-slot of `User-Agent` (kept in its own span, not a header line).
const USER_AGENT_SLOT: u8 = 100;
/// Pseudo-slot of `Referer`.
const REFERER_SLOT: u8 = 101;

/// `TRACKED_HEADERS` lowercased, as http libraries hand names over.
const TRACKED_LOWER: [&str; 15] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-client-ip",
    "x-real-ip",
    "x-forwarded",
    "x-cluster-client-ip",
    "forwarded-for",
    "forwarded",
    "via",
    "content-type",
    "content-length",
    "host",
    "x-requested-with",
    "x-request-id",
];

/// `name` equals `lower` (lowercase letters, digits and `-`) ignoring
/// ASCII case: one `memcmp` for the lowercase names http libraries use,
/// byte by byte only otherwise.
fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && (name == lower
            || name
                .iter()
                .zip(lower)
                .all(|(&a, &b)| a == b || (b.is_ascii_lowercase() && a | 0x20 == b)))
}

/// Which slot a header name takes, if it is kept at all: a tracked header's
/// index in [`TRACKED_HEADERS`], the configured IP header's, or the user
/// agent's or referer's pseudo-slot.
fn header_slot(name: &str, ip_header: Option<&str>) -> Option<u8> {
    let bytes = name.as_bytes();
    let found = tracked_slot(bytes);
    // The user agent and referer first, then the configured IP header
    // (which may be one of the tracked ones), then the tracked headers.
    if matches!(found, Some(USER_AGENT_SLOT | REFERER_SLOT)) {
        return found;
    }
    if let Some(ip) = ip_header
        && ip.len() == name.len()
        && ip.eq_ignore_ascii_case(name)
    {
        return Some(IP_HEADER_SLOT);
    }
    found
}

/// [`header_slot`] without the configured IP header.
fn tracked_slot(bytes: &[u8]) -> Option<u8> {
    let first = bytes.first()? | 0x20;
    // Dispatch on length and first letter: most request headers (Accept-*,
    // Cookie, Sec-*, …) are rejected without a single string comparison.
    let candidates: &[u8] = match (bytes.len(), first) {
        (3, b'v') => &[9],                // Via
        (4, b'h') => &[12],               // Host
        (7, b'r') => &[REFERER_SLOT],     // Referer
        (9, b'x') => &[4],                // X-Real-Ip
        (9, b'f') => &[8],                // Forwarded
        (10, b'u') => &[USER_AGENT_SLOT], // User-Agent
        (11, b'x') => &[3, 5],            // X-Client-Ip, X-Forwarded
        (12, b'c') => &[10],              // Content-Type
        (12, b'x') => &[14],              // X-Request-Id
        (13, b'f') => &[7],               // Forwarded-For
        (14, b'c') => &[11],              // Content-Length
        (15, b'x') => &[0],               // X-Forwarded-For
        (16, b'x') => &[1, 13],           // X-Forwarded-Host, X-Requested-With
        (17, b'x') => &[2],               // X-Forwarded-Proto
        (19, b'x') => &[6],               // X-Cluster-Client-Ip
        _ => &[],
    };
    candidates.iter().copied().find(|&slot| {
        let lower = match slot {
            USER_AGENT_SLOT => "user-agent",
            REFERER_SLOT => "referer",
            i => TRACKED_LOWER[i as usize],
        };
        eq_lower(bytes, lower.as_bytes())
    })
}

impl Captured {
    /// Forgets the request, keeping the buffer's capacity: a record that is
    /// recycled and then never captured reports no field at all.
    ///
    /// Field by field: the header array beyond `header_count` is never read,
    /// so it is left as it is (rewriting its 288 bytes for every recycled
    /// record was most of a reset's cost).
    /// The destructuring names every field, so a new one cannot be forgotten.
    fn clear(&mut self) {
        let Self {
            peer,
            buf,
            method,
            path,
            query,
            scheme,
            host,
            user_agent,
            referer,
            headers: _,
            header_count,
            body,
        } = self;
        *peer = None;
        buf.clear();
        *method = Span::default();
        *path = Span::default();
        *query = None;
        *scheme = Span::default();
        *host = None;
        *user_agent = None;
        *referer = None;
        *header_count = 0;
        *body = None;
    }

    /// Copies what the protocol needs out of the borrowed request, reusing
    /// this capture's buffer.
    fn fill(&mut self, home: &Home, info: &RequestInfo<'_>) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(
            info.method.len()
                + info.path.len()
                + info.query.map_or(0, str::len)
                + info.host.map_or(0, str::len)
                + 256,
        );
        let mut copier = Copier {
            buf,
            truncated: false,
        };
        self.method = copier.push_str(info.method, 32);
        self.path = copier.push_str(info.path, MAX_FIELD_LEN);
        self.query = info.query.map(|q| copier.push_str(q, MAX_FIELD_LEN));
        self.scheme = copier.push_str(info.scheme, 16);
        self.host = info.host.map(|h| copier.push_str(h, MAX_FIELD_LEN));
        let headers = &mut self.headers;
        let mut header_count = 0usize;
        let mut user_agent = None;
        let mut referer = None;
        let mut dropped_lines = false;
        let ip_header = home.ip_header.as_deref();
        info.headers
            .visit(&mut |name, value| match header_slot(name, ip_header) {
                None => {}
                Some(USER_AGENT_SLOT) if user_agent.is_none() => {
                    user_agent = Some(copier.push(value, MAX_FIELD_LEN));
                }
                Some(REFERER_SLOT) if referer.is_none() => {
                    referer = Some(copier.push(value, MAX_FIELD_LEN));
                }
                // Repeated user agents and referers: the first one is kept.
                Some(USER_AGENT_SLOT | REFERER_SLOT) => {}
                Some(slot) => {
                    if header_count < MAX_HEADER_LINES {
                        headers[header_count] = HeaderSpan {
                            slot,
                            value: copier.push(value, MAX_HEADER_LEN),
                        };
                        header_count += 1;
                    } else {
                        dropped_lines = true;
                    }
                }
            });
        self.header_count = header_count as u8;
        self.user_agent = user_agent;
        self.referer = referer;
        self.body = info.body.and_then(|b| {
            if b.is_empty() {
                None
            } else if b.len() > home.body_capture_limit {
                bump(&home.counters.invalid_request_input, 1);
                None
            } else {
                Some(Box::from(b))
            }
        });
        if copier.truncated || dropped_lines {
            bump(&home.counters.invalid_request_input, 1);
            if home.input_warnings.allow() {
                tracing::warn!(
                    target: "sqreen::request",
                    event = "request.truncated",
                    "oversized request fields were truncated in the record (further warnings suppressed for 10 s)"
                );
            }
        }
        self.buf = copier.buf;
        self.peer = info.peer;
    }

    fn bytes(&self, span: Span) -> &[u8] {
        let start = span.start as usize;
        self.buf
            .get(start..start + span.len as usize)
            .unwrap_or_default()
    }

    /// A span copied from a `&str` is always valid UTF-8.
    fn text(&self, span: Span) -> &str {
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    pub fn method_str(&self) -> &str {
        self.text(self.method)
    }

    pub fn path_str(&self) -> &str {
        self.text(self.path)
    }

    pub fn query_str(&self) -> Option<&str> {
        self.query.map(|s| self.text(s))
    }

    pub fn scheme_str(&self) -> &str {
        self.text(self.scheme)
    }

    pub fn host_str(&self) -> Option<&str> {
        self.host.map(|s| self.text(s))
    }

    pub fn user_agent(&self) -> Option<&[u8]> {
        self.user_agent.map(|s| self.bytes(s))
    }

    pub fn referer(&self) -> Option<&[u8]> {
        self.referer.map(|s| self.bytes(s))
    }

    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Keeps `body` as the request's body, unless one is kept already.
    pub fn set_body(&mut self, body: &[u8]) {
        if self.body.is_none() {
            self.body = Some(body.into());
        }
    }

    /// Kept header lines as (canonical name, raw value); `ip_header` is the
    /// configured client IP header's name.
    pub fn header_lines<'a>(
        &'a self,
        ip_header: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.header_slots(ip_header)
            .map(|(_, name, value)| (name, value))
    }

    /// [`Self::header_lines`] with each line's slot: its index in
    /// [`TRACKED_HEADERS`], or [`IP_HEADER_SLOT`].
    pub fn header_slots<'a>(
        &'a self,
        ip_header: Option<&'a str>,
    ) -> impl Iterator<Item = (u8, &'a str, &'a [u8])> {
        self.headers[..self.header_count as usize]
            .iter()
            .map(move |h| {
                let name = TRACKED_HEADERS
                    .get(h.slot as usize)
                    .copied()
                    .or(ip_header)
                    .unwrap_or_default();
                (h.slot, name, self.bytes(h.value))
            })
    }

    fn slot_value(&self, slot: u8) -> Option<&[u8]> {
        self.headers[..self.header_count as usize]
            .iter()
            .find(|h| h.slot == slot)
            .map(|h| self.bytes(h.value))
    }

    pub fn content_type(&self) -> Option<&[u8]> {
        self.slot_value(CONTENT_TYPE_SLOT)
    }

    pub fn host_header(&self) -> Option<&[u8]> {
        self.slot_value(HOST_SLOT)
    }

    pub fn request_id(&self) -> Option<&[u8]> {
        self.slot_value(REQUEST_ID_SLOT)
    }
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
        state.request.set_body(body);
        true
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

/// Header lines of a kept record, for the client IP resolver, with the
/// configured client IP header's name.
pub(crate) struct StoredHeaders<'a>(pub &'a Captured, pub Option<&'a str>);

impl HeaderPairs for StoredHeaders<'_> {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self.0.header_lines(self.1) {
            f(name, value);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tracked header, in any case, finds its own slot; others none.
    #[test]
    fn header_slots() {
        for (i, name) in TRACKED_HEADERS.iter().enumerate() {
            assert_eq!(header_slot(name, None), Some(i as u8), "{name}");
            assert_eq!(header_slot(&name.to_ascii_lowercase(), None), Some(i as u8));
            assert_eq!(header_slot(&name.to_ascii_uppercase(), None), Some(i as u8));
        }
        for (name, slot) in [("User-Agent", USER_AGENT_SLOT), ("Referer", REFERER_SLOT)] {
            assert_eq!(header_slot(name, None), Some(slot));
            assert_eq!(header_slot(&name.to_ascii_lowercase(), None), Some(slot));
            assert_eq!(header_slot(&name.to_ascii_uppercase(), None), Some(slot));
        }
        for other in [
            "Accept",
            "Accept-Encoding",
            "Cookie",
            "Authorization",
            "Set-Cookie",
            "X-Api-Key",
            "Sec-Fetch-Mode",
            "Content-Encoding",
            "X-Forwarded-Fox",
            "Referrer",
            "",
            // Bytes that equal a letter or `-` once 0x20 is or-ed in.
            "x\rforwarded\rfor",
            "Hos\x14",
            "user\ragent",
        ] {
            assert_eq!(header_slot(other, None), None, "{other:?}");
        }
        assert_eq!(
            header_slot("x-my-ip", Some("X-My-Ip")),
            Some(IP_HEADER_SLOT)
        );
    }
}
