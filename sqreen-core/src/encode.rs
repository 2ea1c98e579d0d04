//! Turns a closed request record into the protocol's `request_record` event.
//!
//! Runs on the agent thread only. The event is written straight into JSON
//! bytes from the record, with no intermediate `serde_json::Value` tree:
//! parameters are parsed here (query string, urlencoded form, JSON body,
//! route parameters), the client IP is resolved if the request path did not
//! need it, and every string that leaves the process goes through the
//! [`Scrubber`] as it is written — parameters, tracked header values, user
//! agent, referer, path, properties and user identifiers.
//!
//! Writing straight to bytes is what keeps the agent thread cheap under
//! load: building a `Value` tree cost about 40 allocations per event and
//! serialising it again, several microseconds of a core per tracked request.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::client_ip::ClientIpResolver;
use crate::model::{Entry, PropertyValue};
use crate::protocol::REQUEST_RECORD_VERSION;
use crate::record::{IP_HEADER_SLOT, RecordInner, RecordState, StoredHeaders, TRACKED_HEADERS};
use crate::scrub::{REDACTED, Scrubber};
use sqreen_protocol::limits;

/// What building one event found worth counting.
#[derive(Debug, Default)]
pub(crate) struct BuildReport {
    pub scrubbed: u64,
    pub invalid_input: u64,
}

/// At most this many query or form pairs are kept per record.
const MAX_PAIRS: usize = 256;

/// Formats the protocol's timestamps (RFC 3339 UTC with milliseconds) with
/// the text up to the second cached: the records the agent thread drains
/// together share their second, so the date arithmetic runs about once a
/// second instead of three times per event.
#[derive(Debug, Default)]
pub(crate) struct TimeText {
    /// The second `prefix` spells, since the epoch.
    second: Option<u64>,
    /// `2026-11-24T19:00:00.`
    prefix: Vec<u8>,
}

impl TimeText {
    /// Appends `"<time>"` to `out`.
    fn write(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since_epoch.as_secs();
        if self.second != Some(second) {
            let whole = UNIX_EPOCH + Duration::from_secs(second);
            // `2026-11-24T19:00:00Z` → `2026-11-24T19:00:00.`
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            self.prefix.clear();
            self.prefix
                .extend_from_slice(text.trim_end_matches('Z').as_bytes());
            self.prefix.push(b'.');
            self.second = Some(second);
        }
        let millis = since_epoch.subsec_millis();
        out.push(b'"');
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&[
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
            b'"',
        ]);
    }
}

/// A JSON writer that scrubs what it writes, counting into a report.
struct Out<'s> {
    buf: Vec<u8>,
    scrubber: &'s Scrubber,
    times: &'s mut TimeText,
    report: BuildReport,
}

impl<'s> Out<'s> {
    fn new(buf: Vec<u8>, scrubber: &'s Scrubber, times: &'s mut TimeText) -> Self {
        Self {
            buf,
            scrubber,
            times,
            report: BuildReport::default(),
        }
    }

    fn raw(&mut self, bytes: &str) {
        self.buf.extend_from_slice(bytes.as_bytes());
    }

    /// `"s"`, escaped, exactly as given (names, verbs, fixed strings).
    fn string(&mut self, s: &str) {
        if needs_escape(s.as_bytes()) {
            // Serialising a `str` into a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut self.buf, s);
        } else {
            self.buf.reserve(s.len() + 2);
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        }
    }

    /// `"key":`
    fn key(&mut self, key: &str) {
        self.string(key);
        self.buf.push(b':');
    }

    /// A string value, masked whole when `masked`, otherwise through the
    /// value regex.
    fn scrubbed(&mut self, s: &str, masked: bool) {
        if masked {
            if s != REDACTED {
                self.report.scrubbed += 1;
            }
            self.string(REDACTED);
        } else if let Some(scrubbed) = self.scrubber.scrubbed(s) {
            self.report.scrubbed += 1;
            self.string(&scrubbed);
        } else {
            self.string(s);
        }
    }

    /// A string value stored under `key` (a header, parameter, property or
    /// identifier name).
    fn keyed(&mut self, key: &str, s: &str) {
        let masked = self.scrubber.is_sensitive_key(key);
        self.scrubbed(s, masked);
    }

    /// A path or URL, its query scrubbed like parameters
    /// ([`Scrubber::scrubbed_url`]).
    fn url(&mut self, s: &str) {
        if let Some(scrubbed) = self.scrubber.scrubbed_url(s) {
            self.report.scrubbed += 1;
            self.string(&scrubbed);
        } else {
            self.string(s);
        }
    }

    /// Bytes that should be UTF-8 text: scrubbed, or `""` (counted) when not.
    fn text_or_empty(&mut self, bytes: Option<&[u8]>) {
        match bytes.map(std::str::from_utf8) {
            Some(Ok(s)) => self.scrubbed(s, false),
            Some(Err(_)) => {
                self.report.invalid_input += 1;
                self.string("");
            }
            None => self.string(""),
        }
    }

    /// An IP address as a JSON string; IPv4 (most of them) without the
    /// `fmt` machinery.
    fn ip(&mut self, ip: IpAddr) {
        self.buf.push(b'"');
        match ip {
            IpAddr::V4(v4) => {
                // At most `255.255.255.255`, written digit by digit.
                let mut text = [0u8; 15];
                let mut len = 0;
                for (i, n) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    if n >= 100 {
                        text[len] = b'0' + n / 100;
                        len += 1;
                    }
                    if n >= 10 {
                        text[len] = b'0' + n / 10 % 10;
                        len += 1;
                    }
                    text[len] = b'0' + n % 10;
                    len += 1;
                }
                self.buf.extend_from_slice(&text[..len]);
            }
            // Writing into a `Vec` cannot fail.
            IpAddr::V6(v6) => {
                let _ = write!(self.buf, "{v6}");
            }
        }
        self.buf.push(b'"');
    }

    fn time(&mut self, t: SystemTime) {
        self.times.write(t, &mut self.buf);
    }

    /// An integer, as JSON.
    fn integer(&mut self, n: impl itoa::Integer) {
        self.raw(itoa::Buffer::new().format(n));
    }

    /// A property value under `key`: see the scrubbing rules in [`crate::scrub`].
    fn property(&mut self, key: &str, value: &PropertyValue) {
        let masked = self.scrubber.is_sensitive_key(key);
        let number = match value {
            PropertyValue::String(s) => return self.scrubbed(s, masked),
            PropertyValue::Bool(b) if !masked => {
                return self.raw(if *b { "true" } else { "false" });
            }
            PropertyValue::Bool(_) => None,
            PropertyValue::Int(i) => Some(serde_json::Number::from(*i)),
            PropertyValue::UInt(u) => Some(serde_json::Number::from(*u)),
            PropertyValue::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => Some(n),
                None => return self.raw("null"),
            },
        };
        if masked
            || number
                .as_ref()
                .is_some_and(|n| self.scrubber.masks_number(n))
        {
            self.report.scrubbed += 1;
            self.string(REDACTED);
        } else if let Some(n) = number {
            let _ = write!(self.buf, "{n}");
        }
    }

    /// `{"k": v, …}` from pairs, the last of repeated keys winning.
    fn map<V>(
        &mut self,
        pairs: &[(impl AsRef<str>, V)],
        mut value: impl FnMut(&mut Self, &str, &V),
    ) {
        self.buf.push(b'{');
        let mut first = true;
        for (i, (k, v)) in pairs.iter().enumerate() {
            let k = k.as_ref();
            if pairs[i + 1..].iter().any(|(later, _)| later.as_ref() == k) {
                continue;
            }
            if !first {
                self.buf.push(b',');
            }
            first = false;
            self.key(k);
            value(self, k, v);
        }
        self.buf.push(b'}');
    }

    /// `k=v&k=w` → `{"k": ["v", "w"]}`, the protocol's parameter shape.
    fn form(&mut self, input: &[u8]) {
        let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> =
            form_urlencoded::parse(input).take(MAX_PAIRS).collect();
        self.buf.push(b'{');
        let mut first = true;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(earlier, _)| earlier == k) {
                continue;
            }
            if !first {
                self.buf.push(b',');
            }
            first = false;
            self.key(k);
            let masked = self.scrubber.is_sensitive_key(k);
            self.buf.push(b'[');
            let mut first_value = true;
            for (_, v) in pairs[i..].iter().filter(|(key, _)| key == k) {
                if !first_value {
                    self.buf.push(b',');
                }
                first_value = false;
                self.scrubbed(v, masked);
            }
            self.buf.push(b']');
        }
        self.buf.push(b'}');
    }

    /// User identifiers; `{}` (counted) when they would exceed the
    /// protocol's [`MAX_USER_IDENTIFIERS_BYTES`](limits::MAX_USER_IDENTIFIERS_BYTES).
    fn user_ids(&mut self, ids: &[(compact_str::CompactString, compact_str::CompactString)]) {
        let start = self.buf.len();
        self.map(ids, |out, k, v| out.keyed(k, v));
        if self.buf.len() - start > limits::MAX_USER_IDENTIFIERS_BYTES {
            self.buf.truncate(start);
            self.raw("{}");
            self.report.invalid_input += 1;
        }
    }

    fn parameters(&mut self, state: &RecordState) {
        self.buf.push(b'{');
        let mut sep = "";
        if let Some(query) = state.request.query_str() {
            self.raw(sep);
            self.key("query");
            self.form(query.as_bytes());
            sep = ",";
        }
        if let Some(body) = state.request.body() {
            let content_type = state
                .request
                .content_type()
                .and_then(|c| std::str::from_utf8(c).ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            let mime = content_type.split(';').next().unwrap_or_default().trim();
            if mime == "application/x-www-form-urlencoded" {
                self.raw(sep);
                self.key("form");
                self.form(body);
                sep = ",";
            } else if mime == "application/json" || mime.ends_with("+json") {
                match serde_json::from_slice::<Value>(body) {
                    // request → parameters → json: three levels above it.
                    Ok(json) if depth(&json) + 3 > limits::MAX_CONTEXT_DEPTH => {
                        self.report.invalid_input += 1;
                    }
                    Ok(mut json) => {
                        self.report.scrubbed += self.scrubber.scrub_json(&mut json) as u64;
                        self.raw(sep);
                        self.key("json");
                        let _ = serde_json::to_writer(&mut self.buf, &json);
                        sep = ",";
                    }
                    Err(_) => self.report.invalid_input += 1,
                }
            }
        }
        if !state.route_params.is_empty() {
            self.raw(sep);
            self.key("params");
            self.map(&state.route_params, |out, k, v| {
                out.buf.push(b'[');
                out.keyed(k, v);
                out.buf.push(b']');
            });
        }
        self.buf.push(b'}');
    }

    fn sdk_entries(&mut self, state: &RecordState) {
        self.buf.push(b'[');
        let mut first = true;
        for entry in &state.entries {
            let (time, name) = match entry {
                Entry::Track {
                    time, timestamp, ..
                } => (timestamp.unwrap_or(*time), "track"),
                Entry::Identify { time, .. } => (*time, "identify"),
                Entry::Auth { .. } | Entry::Signup { .. } => continue,
            };
            if !first {
                self.buf.push(b',');
            }
            first = false;
            self.raw("{\"time\":");
            self.time(time);
            self.raw(",\"name\":\"");
            self.raw(name);
            self.raw("\",\"args\":[");
            match entry {
                Entry::Track {
                    name,
                    properties,
                    user_identifiers,
                    ..
                } => {
                    self.string(name);
                    self.raw(",{");
                    let mut sep = "";
                    if !properties.is_empty() {
                        self.raw("\"properties\":");
                        self.map(properties, |out, k, v| out.property(k, v));
                        sep = ",";
                    }
                    if let Some(ids) = user_identifiers.as_ref().filter(|ids| !ids.is_empty()) {
                        self.raw(sep);
                        self.raw("\"user_identifiers\":");
                        self.user_ids(ids);
                    }
                    self.buf.push(b'}');
                }
                Entry::Identify { ids, .. } => self.user_ids(ids),
                Entry::Auth { .. } | Entry::Signup { .. } => {}
            }
            self.raw("]}");
        }
        self.buf.push(b']');
    }
}

/// Whether a JSON string needs escapes: it holds a control character, `"`
/// or `\`. Most strings (paths, user agents, names) do not, and are copied
/// as they are; this test reads 8 bytes at a time.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// A byte of `v` is zero.
    fn has_zero(v: u64) -> bool {
        v.wrapping_sub(ONES) & !v & HIGH != 0
    }
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Bytes under 0x20 (bytes of 0x80 and more have their high bit set
        // in `x`, so `!x` rules them out), then `"` and `\`.
        if x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Which tracked header names the key regex masks, worked out once per
/// agent: header names are fixed, so no event pays the regex for them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SensitiveHeaders([bool; IP_HEADER_SLOT as usize + 1]);

impl SensitiveHeaders {
    pub fn new(scrubber: &Scrubber, ip_header: Option<&str>) -> Self {
        let mut sensitive = [false; IP_HEADER_SLOT as usize + 1];
        for (slot, name) in TRACKED_HEADERS.iter().enumerate() {
            sensitive[slot] = scrubber.is_sensitive_key(name);
        }
        sensitive[IP_HEADER_SLOT as usize] =
            ip_header.is_some_and(|h| scrubber.is_sensitive_key(h));
        Self(sensitive)
    }

    fn is_sensitive(&self, slot: u8) -> bool {
        self.0.get(slot as usize).copied().unwrap_or(true)
    }
}

/// What the agent's configuration says about writing events.
#[derive(Clone, Copy)]
pub(crate) struct EventSettings<'a> {
    pub scrubber: &'a Scrubber,
    pub sensitive_headers: &'a SensitiveHeaders,
    /// The configured client IP header's name, if any.
    pub ip_header: Option<&'a str>,
    /// `strip_http_referer`: send an empty referer.
    pub strip_referer: bool,
    /// Believes a trusted proxy's `X-Forwarded-Proto` / `Forwarded: proto=`.
    pub resolver: &'a ClientIpResolver,
}

/// How deep `v` nests arrays and objects.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Writes the scrubbed `request` object of a record whose request was
/// copied.
fn request_json(
    out: &mut Out<'_>,
    state: &RecordState,
    ip_header: Option<&str>,
    strip_referer: bool,
    settings: &EventSettings<'_>,
) {
    let request_at = out.buf.len();
    out.raw("{\"rid\":");
    match state.request.request_id().map(std::str::from_utf8) {
        Some(Ok(id)) => out.string(id),
        Some(Err(_)) => {
            out.report.invalid_input += 1;
            out.raw("null");
        }
        None => out.raw("null"),
    }
    out.raw(",\"verb\":");
    out.string(state.request.method_str());
    out.raw(",\"path\":");
    out.url(state.request.path_str());

    // A trusted proxy knows the client's scheme; the adapter only its own
    // connection's (plain HTTP behind a TLS-terminating proxy).
    let scheme = settings
        .resolver
        .forwarded_scheme(
            &StoredHeaders(&state.request, ip_header),
            state.request.peer.map(|p| p.ip()),
        )
        .unwrap_or_else(|| state.request.scheme_str());
    let host_header = match state.request.host_header().map(std::str::from_utf8) {
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => {
            out.report.invalid_input += 1;
            None
        }
        None => None,
    };
    let authority = state.request.host_str().or(host_header).unwrap_or_default();
    let (host, port) = split_authority(authority, scheme);
    out.raw(",\"host\":");
    out.string(host);
    out.raw(",\"port\":");
    out.string(port);
    out.raw(",\"scheme\":");
    out.string(scheme);
    out.raw(",\"remote_ip\":");
    match state.request.peer {
        Some(peer) => out.ip(peer.ip()),
        None => out.string(""),
    }
    out.raw(",\"remote_port\":");
    match state.request.peer {
        Some(peer) => {
            out.buf.push(b'"');
            out.integer(peer.port());
            out.buf.push(b'"');
        }
        None => out.string(""),
    }
    out.raw(",\"user_agent\":");
    out.text_or_empty(state.request.user_agent());
    out.raw(",\"referer\":");
    match (
        strip_referer,
        state.request.referer().map(std::str::from_utf8),
    ) {
        (false, Some(Ok(referer))) => out.url(referer),
        (false, Some(Err(_))) => {
            out.report.invalid_input += 1;
            out.string("");
        }
        _ => out.string(""),
    }

    out.raw(",\"headers\":[");
    let mut first = true;
    for (slot, name, value) in state.request.header_slots(ip_header) {
        let Ok(value) = std::str::from_utf8(value) else {
            out.report.invalid_input += 1;
            continue;
        };
        if !first {
            out.buf.push(b',');
        }
        first = false;
        out.buf.push(b'[');
        out.string(name);
        out.buf.push(b',');
        let masked = settings.sensitive_headers.is_sensitive(slot);
        out.scrubbed(value, masked);
        out.buf.push(b']');
    }
    out.raw("],\"parameters\":");
    let params_at = out.buf.len();
    out.parameters(state);
    // The protocol's bound of a request context: above it (thousands of
    // long, escaped parameters), the parameters are left out, counted.
    if out.buf.len() - request_at + 64 > limits::MAX_CONTEXT_BYTES {
        out.buf.truncate(params_at);
        out.raw("{}");
        out.report.invalid_input += 1;
    }
    out.buf.push(b'}');
}

/// Writes the scrubbed `request_record` of `record` as JSON bytes into
/// `buf` (an empty buffer, possibly reused).
pub(crate) fn request_record(
    mut buf: Vec<u8>,
    times: &mut TimeText,
    record: &RecordInner,
    state: &RecordState,
    client_ip: Option<IpAddr>,
    settings: &EventSettings<'_>,
) -> (Vec<u8>, BuildReport) {
    let EventSettings {
        scrubber,
        ip_header,
        strip_referer,
        ..
    } = *settings;
    buf.clear();
    buf.reserve(768);
    let mut out = Out::new(buf, scrubber, times);
    let end = state.end.unwrap_or_else(SystemTime::now);

    out.raw("{\"event_type\":\"request_record\",\"version\":");
    out.string(REQUEST_RECORD_VERSION);
    out.raw(",\"rid\":\"");
    // Hex digits and hyphens: nothing to escape.
    let mut rid = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.raw(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut rid));
    out.buf.push(b'"');
    out.raw(",\"client_ip\":");
    match client_ip {
        Some(ip) => out.ip(ip),
        None => out.string(""),
    }
    out.raw(",\"start\":");
    out.time(record.start);
    out.raw(",\"end\":");
    out.time(end);

    out.raw(",\"request\":");
    if state.request.method_str().is_empty() {
        // Tracked outside any request (`Agent::track_event`), or through a
        // handle whose request was never copied.
        out.raw("null");
    } else {
        request_json(&mut out, state, ip_header, strip_referer, settings);
    }
    out.raw(",\"response\":");
    match &state.response {
        Some(r) => {
            out.raw("{\"status\":");
            out.integer(r.status);
            out.raw(",\"content_length\":");
            match r.content_length {
                Some(n) => out.integer(n),
                None => out.raw("null"),
            }
            out.raw(",\"content_type\":");
            if r.content_type {
                out.string(&state.response_type);
            } else {
                out.raw("null");
            }
            out.buf.push(b'}');
        }
        None => out.raw("null"),
    }
    out.raw(",\"observed\":{\"sdk\":");
    out.sdk_entries(state);
    out.raw("}}");
    (out.buf, out.report)
}

/// `example.com:8443` → (`example.com`, `8443`); without a port, the scheme's.
fn split_authority<'a>(authority: &'a str, scheme: &str) -> (&'a str, &'a str) {
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (authority, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (authority, None),
        }
    };
    let port = port
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(default_port);
    (host, port)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    /// Hosts split from their port, v6 literals included, with scheme defaults.
    #[test]
    fn authority_split() {
        let cases = [
            ("example.com", "https", "example.com", "443"),
            ("example.com:8080", "http", "example.com", "8080"),
            ("[::1]:3000", "http", "::1", "3000"),
            ("[::1]", "https", "::1", "443"),
            ("", "http", "", "80"),
            ("host:abc", "http", "host", "80"),
        ];
        for (authority, scheme, host, port) in cases {
            assert_eq!(
                split_authority(authority, scheme),
                (host, port),
                "{authority}"
            );
        }
    }

    /// Repeated form keys keep every value, in order; sensitive keys are masked.
    #[test]
    fn form_repeated_keys() {
        let scrubber = Scrubber::default();
        let mut times = TimeText::default();
        let mut out = Out::new(Vec::new(), &scrubber, &mut times);
        out.form(b"a=1&b=x+y&a=2&password=hunter2");
        let v: Value = serde_json::from_slice(&out.buf).unwrap();
        assert_eq!(
            v,
            json!({"a": ["1", "2"], "b": ["x y"], "password": [REDACTED]})
        );
        assert_eq!(out.report.scrubbed, 1);
    }

    /// Property values: NaN is `null`, sensitive keys mask every scalar,
    /// card-like integers are masked, ordinary scalars pass.
    #[test]
    fn property_scalars() {
        let scrubber = Scrubber::default();
        let mut times = TimeText::default();
        let mut out = Out::new(Vec::new(), &scrubber, &mut times);
        let props: Vec<(&str, PropertyValue)> = vec![
            ("nan", PropertyValue::Float(f64::NAN)),
            ("ratio", PropertyValue::Float(0.5)),
            ("pin_token", PropertyValue::Int(1234)),
            ("api_key", PropertyValue::Bool(true)),
            ("ok", PropertyValue::Bool(false)),
            ("card", PropertyValue::UInt(4_111_111_111_111_111)),
            ("count", PropertyValue::Int(-3)),
            (
                "note",
                PropertyValue::String("card 4111 1111 1111 1111".into()),
            ),
            ("count", PropertyValue::Int(4)),
        ];
        out.map(&props, |out, k, v| out.property(k, v));
        let v: Value = serde_json::from_slice(&out.buf).unwrap();
        assert_eq!(
            v,
            json!({"nan": null, "ratio": 0.5, "pin_token": REDACTED, "api_key": REDACTED,
                   "ok": false, "card": REDACTED, "count": 4,
                   "note": format!("card {REDACTED}")})
        );
        assert_eq!(out.report.scrubbed, 4);
    }

    /// Cached timestamps read exactly like `protocol::format_time`, across
    /// second and day boundaries and for times before the epoch.
    #[test]
    fn time_text_matches_format_time() {
        let mut times = TimeText::default();
        let base = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let cases = [
            base,
            base + Duration::from_millis(7),
            base + Duration::from_millis(999),
            base + Duration::from_millis(1_000),
            base + Duration::from_millis(86_400_123),
            base + Duration::from_millis(86_400_045),
            UNIX_EPOCH,
            SystemTime::UNIX_EPOCH + Duration::from_nanos(1_999_999),
        ];
        for t in cases {
            let mut out = Vec::new();
            times.write(t, &mut out);
            let expected = format!("\"{}\"", crate::protocol::format_time(t));
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    /// The 8-bytes-at-a-time test agrees with the byte-by-byte rule for
    /// every byte value at every position, and strings written either way
    /// parse back to themselves.
    #[test]
    fn escape_test_is_exact() {
        let slow = |b: &[u8]| b.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for len in [1usize, 7, 8, 9, 16, 23] {
            for pos in 0..len {
                for byte in 0u8..=255 {
                    let mut bytes = vec![b'a'; len];
                    bytes[pos] = byte;
                    assert_eq!(needs_escape(&bytes), slow(&bytes), "{len} {pos} {byte}");
                }
            }
        }
        let scrubber = Scrubber::default();
        let mut times = TimeText::default();
        for s in [
            "plain/path?x",
            "quote \" in",
            "back\\slash",
            "tab\there",
            "é ünïcode ✓",
            "",
        ] {
            let mut out = Out::new(Vec::new(), &scrubber, &mut times);
            out.string(s);
            let back: String = serde_json::from_slice(&out.buf).unwrap();
            assert_eq!(back, s);
        }
    }

    /// Header values are masked by their canonical name's verdict, worked
    /// out once: tracked headers under a custom key regex, and the
    /// configured IP header under the default one.
    #[test]
    fn header_names_masked_by_slot() {
        let config = crate::Config::builder()
            .token("t")
            .ip_header("X-Secret-Ip")
            .build()
            .unwrap();
        let home = std::sync::Arc::new(crate::record::Home::new(&config, None));
        let headers = [
            ("Host", "example.com"),
            ("X-Forwarded-For", "81.2.69.160"),
            ("X-Secret-Ip", "81.2.69.161"),
        ];
        let info = crate::RequestInfo::new("GET", "/", &headers);
        let record = RecordInner::capture(&home, &info, None);
        let state = record.state();
        for (key_regex, masked) in [
            (None, vec!["X-Secret-Ip"]),
            (Some("(?i)forwarded"), vec!["X-Forwarded-For"]),
        ] {
            let scrubber = Scrubber::new(key_regex, None).unwrap();
            let sensitive = SensitiveHeaders::new(&scrubber, Some("X-Secret-Ip"));
            let mut times = TimeText::default();
            let (bytes, _) = request_record(
                Vec::new(),
                &mut times,
                &record,
                &state,
                None,
                &EventSettings {
                    scrubber: &scrubber,
                    sensitive_headers: &sensitive,
                    ip_header: Some("X-Secret-Ip"),
                    strip_referer: false,
                    resolver: &ClientIpResolver::default(),
                },
            );
            let event: Value = serde_json::from_slice(&bytes).unwrap();
            let lines = event["request"]["headers"].as_array().unwrap();
            assert_eq!(lines.len(), 3, "{lines:?}");
            for line in lines {
                let name = line[0].as_str().unwrap();
                let value = line[1].as_str().unwrap();
                assert_eq!(
                    value == REDACTED,
                    masked.contains(&name),
                    "{key_regex:?} {name}"
                );
            }
        }
    }

    /// Addresses are written as `Display` writes them.
    #[test]
    fn ip_text() {
        let scrubber = Scrubber::default();
        let mut times = TimeText::default();
        for ip in [
            "0.0.0.0",
            "81.2.69.160",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Out::new(Vec::new(), &scrubber, &mut times);
            out.ip(ip);
            assert_eq!(String::from_utf8(out.buf).unwrap(), format!("\"{ip}\""));
        }
    }
}
