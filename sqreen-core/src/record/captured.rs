//! [`Captured`]: the request fields a record copies, in one buffer, and
//! which headers it keeps (the tracked ones, the configured client IP
//! header, user agent and referer), found without comparing most header
//! names at all.

use std::net::SocketAddr;

use super::Home;
use crate::request::{HeaderPairs, RequestInfo};
use crate::stats::bump;

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

/// The request fields a record copies: one buffer and spans into it.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    /// The TCP peer's address.
    pub peer: Option<SocketAddr>,
    /// The copied bytes; a recycled record keeps its capacity.
    pub(super) buf: Vec<u8>,
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

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(super) fn cut(s: &str, max: usize) -> &str {
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
    pub(super) fn clear(&mut self) {
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
    pub(super) fn fill(&mut self, home: &Home, info: &RequestInfo<'_>) {
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

    /// Keeps `body` as the request's body, unless one is kept already;
    /// true when kept.
    pub fn set_body(&mut self, body: &[u8]) -> bool {
        if self.body.is_some() {
            return false;
        }
        self.body = Some(body.into());
        true
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
