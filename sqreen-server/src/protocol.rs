//! The agent protocol's bodies (docs/PROTOCOL.md) as the server validates them,
//! and their conversion into stored events.
//!
//! The canonical shapes are the Go agent's; the Python (1.27) and Node.js
//! (2.0) agents send variants of them (docs/PROTOCOL.md, "Variants"), which
//! this module reads too, leniently where the agents differ and strictly
//! where it matters:
//!
//! - A field this module does not know is ignored and counted
//!   ([`Leniency::unknown_fields`]); fields the historical agents are known
//!   to send and that the server has no use for (`rulespack_id`, `local`,
//!   `observed.attacks`, track options `collect_body`, `timestamp`…) are
//!   ignored silently.
//! - Each event of a batch is decoded on its own: an invalid one is refused
//!   alone ([`BatchOutcome::refused`]) and the others are stored. Events of
//!   other types than `request_record` (`sqreen_exception`, `attack`,
//!   `agent_message`, Node's `error`) are acknowledged and counted, not stored.
//! - Sizes, the types of what is stored (identifiers, properties, IPs,
//!   times) and the counts of a batch stay strict: a batch over
//!   [`MAX_BATCH_EVENTS`] or not JSON is refused whole.
//!
//! Each `track` entry of a `request_record` (and each `auth_track` /
//! `signup_track` entry of the Python agent, stored under its event name
//! `sq.sdk.users.login` / `sq.sdk.users.signup`) becomes one event; the
//! record's request and response are stored once, with its first event,
//! and the record's other events refer to them ([`NewEvent::context_of`]),
//! so that a record with many tracks costs its context once. An event's
//! user identifiers are the entry's own, or else those of the record's
//! last `identify`.
//!
//! # Bounds
//!
//! | what | most |
//! | --- | --- |
//! | events of one batch, after expanding its records' tracks | [`MAX_BATCH_EVENTS`] |
//! | `track` entries of one record | [`MAX_TRACKS_PER_RECORD`] |
//! | a record's `request` or `response`, as JSON text | [`MAX_CONTEXT_BYTES`] |
//! | nesting of `request` or `response` | [`MAX_CONTEXT_DEPTH`] levels |
//! | an event's user identifiers, as canonical JSON | [`MAX_USER_KEY`] bytes |
//! | refusals reported in one answer | [`MAX_REPORTED_REFUSALS`] |
//!
//! So the bytes one batch stores are at most its body's plus
//! [`MAX_USER_KEY`] per event (identifiers inherited from `identify` are
//! copied to each event, which the explorer filters on). Each observation of a
//! user-monitoring metric (`sdk-login-fail`, `sdk-login-success`,
//! `sdk-signup`) becomes one event of that name whose `count` is the
//! observed count, with the key's IP and user identifiers.
//!
//! # Answers
//!
//! The server answers agents with the types of [`sqreen_protocol::answers`]
//! (`crate::ingest` builds them); a stored security action becomes its wire
//! form here ([`wire_action`], [`wire_actions`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use sqreen_protocol::limits;

use sqreen_protocol::answers::{Action, ActionKind, ActionParameters};

use crate::store::{ActionView, NewEvent};
use crate::time::parse_agent_time;

/// Most events in one batch, counted after expanding each record's tracks
/// (the protocol's contract).
pub const MAX_BATCH_EVENTS: usize = sqreen_protocol::limits::MAX_BATCH_EVENTS;
/// Most `track` entries in one request record (the protocol's contract).
pub const MAX_TRACKS_PER_RECORD: usize = sqreen_protocol::limits::MAX_TRACKS_PER_RECORD;
/// Longest `request` or `response` of a record, as JSON text (the
/// protocol's contract).
pub const MAX_CONTEXT_BYTES: usize = limits::MAX_CONTEXT_BYTES;
/// Deepest nesting of a `request` or `response` (the explorer parses them
/// back with serde_json, which stops at 128).
pub const MAX_CONTEXT_DEPTH: usize = limits::MAX_CONTEXT_DEPTH;
/// Longest user identifier map, as canonical JSON.
pub const MAX_USER_KEY: usize = limits::MAX_USER_IDENTIFIERS_BYTES;
/// Longest event name, property key or identifier key.
pub const MAX_NAME: usize = 256;
/// Longest property or identifier text value.
pub const MAX_VALUE: usize = 8192;
/// Most properties or identifiers on one event.
pub const MAX_FIELDS: usize = 100;
/// Largest count of one metric observation kept; larger ones are clamped.
pub const MAX_METRIC_COUNT: u64 = 1_000_000_000;
/// The metric stores turned into events.
pub const METRIC_STORES: [&str; 3] = sqreen_protocol::metric_stores::ALL;
/// Most refused events listed in one batch answer (the others are counted).
pub const MAX_REPORTED_REFUSALS: usize = 20;

/// Record fields the historical agents send that the server has no use
/// for: ignored without being counted as unknown.
const KNOWN_RECORD_FIELDS: [&str; 3] = ["version", "rulespack_id", "local"];
/// `observed` sections the server has no use for.
const KNOWN_OBSERVED_FIELDS: [&str; 4] = [
    "attacks",
    "sqreen_exceptions",
    "observations",
    "data_points",
];
/// Track options the server has no use for (the Python agent's).
const KNOWN_TRACK_OPTIONS: [&str; 6] = [
    "timestamp",
    "collect_body",
    "datadog_trace_id",
    "datadog_span_id",
    "stacktrace",
    "request",
];
/// Event types acknowledged without being stored (`error` is the Node.js
/// agent's name for its own exceptions).
const ACKNOWLEDGED_EVENT_TYPES: [&str; 4] =
    ["sqreen_exception", "attack", "agent_message", "error"];

/// Body of `POST /sqreen/v0/batch`: each event is kept as its JSON text
/// and decoded on its own, so that one bad event is refused alone.
#[derive(Debug, Deserialize)]
pub struct BatchBody {
    /// The events.
    pub batch: Vec<Box<RawValue>>,
}

/// What a lenient decoder skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leniency {
    /// Fields (and SDK entries) this server does not know, ignored.
    pub unknown_fields: u64,
    /// Events of types acknowledged but not stored (`sqreen_exception`,
    /// `attack`, `agent_message`).
    pub acknowledged: u64,
}

impl Leniency {
    fn add(&mut self, other: &Leniency) {
        self.unknown_fields += other.unknown_fields;
        self.acknowledged += other.acknowledged;
    }
}

/// One event of a batch that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its position in the batch.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// A decoded batch: the events to store, the events refused and what was
/// skipped.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// How many events the batch held.
    pub received: usize,
    /// The events to store.
    pub events: Vec<NewEvent>,
    /// The refused events, in batch order.
    pub refused: Vec<Refusal>,
    /// What was ignored.
    pub leniency: Leniency,
}

/// The `event_type` of a batch event, read before the rest.
#[derive(Deserialize)]
struct EventHead {
    #[serde(default)]
    event_type: Option<String>,
}

/// A map key of the hand-written visitors below, borrowed from the body
/// when it holds no escape (no allocation per field of every record).
struct Key<'a>(std::borrow::Cow<'a, str>);

impl Key<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A `request_record` event. Its fields are optional where the agents
/// differ: the Go and Python agents put the record id in `request.rid` and
/// send no `start`; ours sends both at the top.
#[derive(Debug, Default)]
pub struct RequestRecord {
    /// Its `event_type`: `request_record`, or another type whose fields
    /// happened to fit a record's (then it is not one).
    pub event_type: Option<String>,
    /// The record's unique id, or none (then `request.rid`, or else a hash
    /// of the record's text, identifies it).
    pub rid: Option<String>,
    /// The client IP, or empty.
    pub client_ip: String,
    /// Request start.
    pub start: Option<String>,
    /// Request end.
    pub end: Option<String>,
    /// The request context (a JSON object, kept as received).
    pub request: Option<Box<RawValue>>,
    /// The response (a JSON object, kept as received).
    pub response: Option<Box<RawValue>>,
    /// What the SDK recorded.
    pub observed: Observed,
    /// Unknown fields seen (here and below).
    pub unknown_fields: u64,
}

impl<'de> Deserialize<'de> for RequestRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = RequestRecord;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a request_record object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestRecord, A::Error> {
                let mut r = RequestRecord::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match key.as_str() {
                        "event_type" => r.event_type = map.next_value()?,
                        "rid" => r.rid = map.next_value()?,
                        "client_ip" => {
                            r.client_ip = map.next_value::<Option<String>>()?.unwrap_or_default();
                        }
                        "start" => r.start = map.next_value()?,
                        "end" => r.end = map.next_value()?,
                        "request" => r.request = map.next_value()?,
                        "response" => r.response = map.next_value()?,
                        "observed" => {
                            r.observed = map.next_value::<Option<Observed>>()?.unwrap_or_default();
                        }
                        other => {
                            map.next_value::<IgnoredAny>()?;
                            if !KNOWN_RECORD_FIELDS.contains(&other) {
                                r.unknown_fields += 1;
                            }
                        }
                    }
                }
                Ok(r)
            }
        }
        deserializer.deserialize_map(RecordVisitor)
    }
}

/// The `observed` part of a record. (Read by hand rather than with
/// `#[serde(flatten)]`, which would buffer every SDK entry once more.)
#[derive(Debug, Default)]
pub struct Observed {
    /// SDK entries (`track`, `identify`, and the Python agent's
    /// `auth_track`, `signup_track`).
    pub sdk: Vec<SdkEntry>,
    /// Sections this server does not know (those it knows and ignores,
    /// such as `attacks`, are not counted).
    pub unknown_fields: u64,
}

impl<'de> Deserialize<'de> for Observed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObservedVisitor;
        impl<'de> Visitor<'de> for ObservedVisitor {
            type Value = Observed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an observed object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Observed, A::Error> {
                let mut o = Observed::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if key.as_str() == "sdk" {
                        o.sdk = map
                            .next_value::<Option<Vec<SdkEntry>>>()?
                            .unwrap_or_default();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        if !KNOWN_OBSERVED_FIELDS.contains(&key.as_str()) {
                            o.unknown_fields += 1;
                        }
                    }
                }
                Ok(o)
            }
        }
        deserializer.deserialize_map(ObservedVisitor)
    }
}

/// One SDK entry.
#[derive(Debug)]
pub struct SdkEntry {
    /// When.
    pub time: String,
    /// `track`, `identify`, `auth_track` or `signup_track`.
    pub name: String,
    /// The call's arguments.
    pub args: Vec<Value>,
    /// Fields this server does not know (none is known besides the above).
    pub unknown_fields: u64,
}

impl<'de> Deserialize<'de> for SdkEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = SdkEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an SDK entry object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SdkEntry, A::Error> {
                let (mut time, mut name, mut args, mut unknown_fields) = (None, None, None, 0);
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match key.as_str() {
                        "time" => time = Some(map.next_value::<String>()?),
                        "name" => name = Some(map.next_value::<String>()?),
                        "args" => args = map.next_value::<Option<Vec<Value>>>()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            unknown_fields += 1;
                        }
                    }
                }
                Ok(SdkEntry {
                    time: time.ok_or_else(|| de::Error::missing_field("time"))?,
                    name: name.ok_or_else(|| de::Error::missing_field("name"))?,
                    args: args.unwrap_or_default(),
                    unknown_fields,
                })
            }
        }
        deserializer.deserialize_map(EntryVisitor)
    }
}

/// Body of `POST /sqreen/v1/app-beat` (and of `POST /sqreen/v0/metrics`,
/// which carries only `metrics`).
#[derive(Debug, Default, Deserialize)]
pub struct BeatBody {
    /// Results of commands, by uuid: any JSON (the Python agent sends
    /// objects as `output`, and `msg` / `reason` keys).
    #[serde(default)]
    pub command_results: BTreeMap<String, Value>,
    /// Metric stores.
    #[serde(default)]
    pub metrics: Vec<MetricBody>,
    /// Other fields.
    #[serde(flatten)]
    pub other: BTreeMap<String, IgnoredAny>,
}

/// A metric store.
#[derive(Debug, Deserialize)]
pub struct MetricBody {
    /// Store name.
    pub name: String,
    /// Period start.
    pub start: String,
    /// Period end.
    pub finish: String,
    /// Value per key: counts for the user-monitoring stores, any JSON for
    /// the others (the Python agent's `Binning` stores hold objects).
    pub observation: Map<String, Value>,
    /// Other fields (`kind`, `period`…).
    #[serde(flatten)]
    pub other: BTreeMap<String, IgnoredAny>,
}

/// The key of a user-monitoring observation.
#[derive(Debug, Deserialize)]
struct MetricKey {
    keys: Vec<(String, Value)>,
    #[serde(default)]
    ip: Option<String>,
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

fn time(text: &str, what: &str) -> Result<i64, Invalid> {
    parse_agent_time(text).ok_or_else(|| invalid(format!("{what}: not an RFC 3339 time")))
}

fn ip(text: &str) -> Result<String, Invalid> {
    if text.is_empty() {
        return Ok(String::new());
    }
    text.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| invalid(format!("client_ip {text:?} is not an IP address")))
}

fn name(text: &str, what: &str) -> Result<(), Invalid> {
    if text.is_empty() || text.len() > MAX_NAME {
        Err(invalid(format!("{what} must be 1 to {MAX_NAME} bytes")))
    } else {
        Ok(())
    }
}

fn value_text(value: &Value, what: &str) -> Result<String, Invalid> {
    let text = crate::store::attr_text(value);
    if text.len() > MAX_VALUE {
        return Err(invalid(format!("{what} longer than {MAX_VALUE} bytes")));
    }
    Ok(text)
}

/// An identifier map: string keys, scalar values kept as text.
fn identifiers(value: &Value, what: &str) -> Result<BTreeMap<String, String>, Invalid> {
    let Value::Object(map) = value else {
        return Err(invalid(format!("{what} must be an object")));
    };
    if map.len() > MAX_FIELDS {
        return Err(invalid(format!("{what}: more than {MAX_FIELDS} keys")));
    }
    map.iter()
        .map(|(k, v)| {
            name(k, what)?;
            if v.is_object() || v.is_array() {
                return Err(invalid(format!("{what}: values must be scalars")));
            }
            Ok((k.clone(), value_text(v, what)?))
        })
        .collect()
}

fn properties(value: &Value) -> Result<Map<String, Value>, Invalid> {
    let Value::Object(map) = value else {
        return Err(invalid("properties must be an object"));
    };
    if map.len() > MAX_FIELDS {
        return Err(invalid(format!("properties: more than {MAX_FIELDS} keys")));
    }
    for (k, v) in map {
        name(k, "property key")?;
        value_text(v, "property value")?;
    }
    Ok(map.clone())
}

/// How deep `json` (valid JSON text) nests arrays and objects.
pub fn json_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The text of a JSON object or null, as received (serde checked it is
/// JSON), within the size and depth bounds.
fn object_text(raw: Option<&RawValue>, what: &str) -> Result<Arc<str>, Invalid> {
    let Some(raw) = raw else {
        return Ok(Arc::from("null"));
    };
    let text = raw.get().trim();
    if text != "null" && !text.starts_with('{') {
        return Err(invalid(format!("{what} must be an object or null")));
    }
    if text.len() > MAX_CONTEXT_BYTES {
        return Err(invalid(format!(
            "{what} longer than {MAX_CONTEXT_BYTES} bytes"
        )));
    }
    if json_depth(text) > MAX_CONTEXT_DEPTH {
        return Err(invalid(format!(
            "{what} nested deeper than {MAX_CONTEXT_DEPTH} levels"
        )));
    }
    Ok(Arc::from(text))
}

/// Refuses user identifiers whose canonical JSON exceeds [`MAX_USER_KEY`].
fn bounded_user(
    ids: BTreeMap<String, String>,
    what: &str,
) -> Result<BTreeMap<String, String>, Invalid> {
    if crate::store::user_key(&ids).len() > MAX_USER_KEY {
        return Err(invalid(format!(
            "{what}: longer than {MAX_USER_KEY} bytes as JSON"
        )));
    }
    Ok(ids)
}

/// The record id inside a `request` context (Go and Python agents).
#[derive(Deserialize)]
struct RequestRid {
    #[serde(default)]
    rid: Option<Value>,
}

/// A `track`-like entry's arguments, checked.
struct TrackArgs {
    event: String,
    properties: Map<String, Value>,
    user: Option<BTreeMap<String, String>>,
}

/// A tracked event before it becomes a [`NewEvent`]: its entry's index and
/// time, and its arguments.
type Track = (usize, i64, TrackArgs);

/// Reads a `track`-like entry's arguments: `[name]` or `[name, options]`.
fn track_args(args: Vec<Value>, unknown: &mut u64) -> Result<TrackArgs, Invalid> {
    let mut args = args.into_iter();
    let (Some(Value::String(event)), options, None) = (args.next(), args.next(), args.next())
    else {
        return Err(invalid("track takes a name and an options object"));
    };
    name(&event, "event name")?;
    let mut props = Map::new();
    let mut ids = None;
    match options {
        None | Some(Value::Null) => {}
        Some(Value::Object(options)) => {
            for (k, v) in options {
                match k.as_str() {
                    "properties" => {
                        if !v.is_null() {
                            props = properties(&v)?;
                        }
                    }
                    "user_identifiers" => {
                        if !v.is_null() {
                            ids = Some(bounded_user(
                                identifiers(&v, "user_identifiers")?,
                                "user_identifiers",
                            )?);
                        }
                    }
                    other if KNOWN_TRACK_OPTIONS.contains(&other) => {}
                    _ => *unknown += 1,
                }
            }
        }
        Some(_) => return Err(invalid("track options must be an object")),
    }
    Ok(TrackArgs {
        event,
        properties: props,
        user: ids,
    })
}

impl RequestRecord {
    /// The events of this record, or why it is invalid; `raw` is the
    /// record's JSON text (its hash identifies a record that names no id).
    /// Nothing is pushed to `out` unless the whole record is valid.
    ///
    /// # Errors
    /// Any field out of the protocol's shape.
    pub fn into_events(self, raw: &str, out: &mut Vec<NewEvent>) -> Result<u64, Invalid> {
        let mut unknown = self.unknown_fields;
        let client_ip = ip(&self.client_ip)?;
        if let Some(start) = &self.start {
            time(start, "start")?;
        }
        if let Some(end) = &self.end {
            time(end, "end")?;
        }
        let request = object_text(self.request.as_deref(), "request")?;
        let response = object_text(self.response.as_deref(), "response")?;
        let rid = match self.rid.filter(|r| !r.is_empty()) {
            Some(rid) => rid,
            None => {
                let inner = serde_json::from_str::<RequestRid>(&request)
                    .ok()
                    .and_then(|r| match r.rid {
                        Some(Value::String(s)) if !s.is_empty() => Some(s),
                        _ => None,
                    });
                match inner {
                    Some(rid) => rid,
                    None => format!("h:{}", &crate::secret::hash(raw)[..32]),
                }
            }
        };
        name(&rid, "rid")?;
        unknown += self.observed.unknown_fields;

        // The record's user: its last `identify`.
        let mut identified = BTreeMap::new();
        let mut tracks: Vec<Track> = Vec::new();
        for (index, entry) in self.observed.sdk.into_iter().enumerate() {
            let at = time(&entry.time, "sdk time")?;
            unknown += entry.unknown_fields;
            match entry.name.as_str() {
                "identify" => {
                    // `[ids]` (Go, ours) or `[ids, traits]` (Python, Node).
                    let Some(ids) = entry.args.first().filter(|_| entry.args.len() <= 2) else {
                        return Err(invalid(
                            "identify takes the identifiers and optional traits",
                        ));
                    };
                    // Node.js 2.0's `auth_track(success, ids)` records an
                    // identify of `null`: it identifies no one.
                    if !ids.is_null() {
                        identified = bounded_user(identifiers(ids, "identify")?, "identify")?;
                    }
                }
                "track" | "auth_track" | "signup_track" => {
                    let args = track_args(entry.args, &mut unknown)?;
                    if tracks.len() == MAX_TRACKS_PER_RECORD {
                        return Err(invalid(format!(
                            "more than {MAX_TRACKS_PER_RECORD} track entries in one record"
                        )));
                    }
                    tracks.push((index, at, args));
                }
                _ => unknown += 1,
            }
        }
        let holder = out.len();
        for (index, at, args) in tracks {
            let first = out.len() == holder;
            out.push(NewEvent {
                rid: format!("{rid}#{index}"),
                event: args.event,
                time: at,
                client_ip: client_ip.clone(),
                user_identifiers: args.user.unwrap_or_else(|| identified.clone()),
                properties: args.properties,
                count: 1,
                request: Arc::clone(&request),
                response: Arc::clone(&response),
                context_of: (!first).then_some(holder),
            });
        }
        Ok(unknown)
    }
}

/// Decodes one batch event (its JSON text) into `out`.
///
/// Records, nearly all of a batch, are parsed once; an event that is not
/// a record's shape is parsed again for its `event_type` alone.
fn batch_event(raw: &str, out: &mut Vec<NewEvent>, leniency: &mut Leniency) -> Result<(), Invalid> {
    match serde_json::from_str::<RequestRecord>(raw) {
        Ok(record) if record.event_type.as_deref() == Some("request_record") => {
            leniency.unknown_fields += record.into_events(raw, out)?;
            Ok(())
        }
        Ok(other) => other_event(other.event_type.as_deref(), leniency),
        Err(e) => {
            let head = serde_json::from_str::<EventHead>(raw)
                .map_err(|e| invalid(format!("not an event object: {e}")))?;
            match head.event_type.as_deref() {
                Some("request_record") | None => Err(invalid(format!("invalid record: {e}"))),
                t => other_event(t, leniency),
            }
        }
    }
}

/// An event other than a record: acknowledged when of a known type.
fn other_event(event_type: Option<&str>, leniency: &mut Leniency) -> Result<(), Invalid> {
    match event_type {
        Some(t) if ACKNOWLEDGED_EVENT_TYPES.contains(&t) => {
            tracing::debug!(
                event = "batch.event_acknowledged",
                event_type = t,
                "agent event acknowledged, not stored"
            );
            leniency.acknowledged += 1;
            Ok(())
        }
        Some(t) => Err(invalid(format!("unknown event_type {t:?}"))),
        None => Err(invalid("event without event_type")),
    }
}

/// What an agent says of itself at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginInfo {
    /// The login body as JSON text, kept for people; `{"truncated":true}`
    /// when longer than 4 KiB.
    pub agent: String,
    /// Its `agent_type`, when a string.
    pub agent_type: String,
}

/// Reads a login body: any JSON object (agents of other languages say more
/// of themselves than ours).
///
/// # Errors
/// Not JSON, or not an object.
pub fn decode_login(body: &[u8]) -> Result<LoginInfo, Invalid> {
    let info: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid body: {e}")))?;
    if !info.is_object() {
        return Err(invalid("the login body must be a JSON object"));
    }
    let mut agent = info.to_string();
    if agent.len() > 4096 {
        agent = r#"{"truncated":true}"#.to_owned();
    }
    let agent_type = info["agent_type"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(100)
        .collect();
    Ok(LoginInfo { agent, agent_type })
}

/// Reads a batch body: its events, each decoded on its own.
///
/// # Errors
/// Not JSON of the batch's shape, or more events than a batch may hold.
pub fn decode_batch(body: &[u8]) -> Result<BatchOutcome, Invalid> {
    let batch: BatchBody =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid body: {e}")))?;
    batch_outcome(batch)
}

/// Reads a `POST /sqreen/v0/request_record` body (the Python and Node
/// agents' per-record route when batching is off): one record, without
/// `event_type`.
///
/// # Errors
/// Not JSON, or an invalid record.
pub fn decode_request_record(body: &[u8]) -> Result<(Vec<NewEvent>, Leniency), Invalid> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid body: {e}")))?;
    let Some(map) = value.as_object_mut() else {
        return Err(invalid("a request record must be an object"));
    };
    map.entry("event_type")
        .or_insert_with(|| Value::String("request_record".to_owned()));
    let raw = value.to_string();
    let mut events = Vec::new();
    let mut leniency = Leniency::default();
    batch_event(&raw, &mut events, &mut leniency)?;
    Ok((events, leniency))
}

/// Reads a heartbeat body: the body, the events of its metrics (see
/// [`metric_events`]) and the count of unknown fields.
///
/// # Errors
/// Not JSON of the heartbeat's shape, or an invalid metric.
pub fn decode_beat(
    body: &[u8],
    session: &str,
) -> Result<(BeatBody, Vec<NewEvent>, Leniency), Invalid> {
    let beat: BeatBody =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid body: {e}")))?;
    let events = metric_events(&beat.metrics, session)?;
    let leniency = Leniency {
        unknown_fields: beat.other.len() as u64,
        acknowledged: 0,
    };
    Ok((beat, events, leniency))
}

/// The events of a whole batch; invalid events are refused one by one.
///
/// # Errors
/// More than [`MAX_BATCH_EVENTS`] events (counting each track).
pub fn batch_outcome(body: BatchBody) -> Result<BatchOutcome, Invalid> {
    if body.batch.len() > MAX_BATCH_EVENTS {
        return Err(invalid(format!(
            "more than {MAX_BATCH_EVENTS} events in one batch"
        )));
    }
    let mut outcome = BatchOutcome {
        received: body.batch.len(),
        events: Vec::with_capacity(body.batch.len()),
        ..BatchOutcome::default()
    };
    for (index, raw) in body.batch.iter().enumerate() {
        let mut leniency = Leniency::default();
        match batch_event(raw.get(), &mut outcome.events, &mut leniency) {
            Ok(()) => outcome.leniency.add(&leniency),
            Err(e) => outcome.refused.push(Refusal { index, reason: e.0 }),
        }
        if outcome.events.len() > MAX_BATCH_EVENTS {
            return Err(invalid(format!(
                "more than {MAX_BATCH_EVENTS} events in one batch (counting each track)"
            )));
        }
    }
    Ok(outcome)
}

/// The events of a whole batch, or the first refusal (strict: for callers
/// that want all or nothing, such as benchmarks of the decoder).
///
/// # Errors
/// The first invalid event, with its position, or an oversized batch.
pub fn batch_events(body: BatchBody) -> Result<Vec<NewEvent>, Invalid> {
    let outcome = batch_outcome(body)?;
    match outcome.refused.first() {
        Some(r) => Err(invalid(format!("batch[{}]: {}", r.index, r.reason))),
        None => Ok(outcome.events),
    }
}

/// The events of a heartbeat's user-monitoring metrics. Stores with other
/// names are skipped (they are not events). `session` (the session's hash)
/// salts the dedup keys: a heartbeat resent in one session is stored once,
/// while two agents reporting the same key over the same period are not
/// mistaken for one.
///
/// # Errors
/// A bad time or key, with the store's name.
pub fn metric_events(metrics: &[MetricBody], session: &str) -> Result<Vec<NewEvent>, Invalid> {
    let mut events = Vec::new();
    if metrics.len() > limits::MAX_METRIC_STORES {
        return Err(invalid(format!(
            "more than {} metric stores",
            limits::MAX_METRIC_STORES
        )));
    }
    for m in metrics {
        let start = time(&m.start, "metric start")?;
        let finish = time(&m.finish, "metric finish")?;
        if !METRIC_STORES.contains(&m.name.as_str()) {
            tracing::debug!(event = "beat.metric_skipped", name = %m.name, "unknown metric store");
            continue;
        }
        if m.observation.len() > limits::MAX_METRIC_KEYS_PER_STORE {
            return Err(invalid("too many observations in one metric store"));
        }
        for (key, value) in &m.observation {
            // Counts: integers, or the whole part of a float (a `Sum` kept
            // as a float by some agents).
            let count = match value {
                Value::Number(n) => n
                    .as_u64()
                    .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.min(1e18) as u64)),
                _ => None,
            }
            .ok_or_else(|| invalid(format!("{}: counts must be non-negative numbers", m.name)))?;
            let parsed: MetricKey = serde_json::from_str(key)
                .map_err(|e| invalid(format!("{}: bad observation key: {e}", m.name)))?;
            let mut ids = BTreeMap::new();
            for (k, v) in &parsed.keys {
                name(k, "user identifier key")?;
                if v.is_object() || v.is_array() {
                    return Err(invalid("user identifier values must be scalars"));
                }
                ids.insert(k.clone(), value_text(v, "user identifier")?);
            }
            let ip = ip(parsed.ip.as_deref().unwrap_or_default())?;
            // Retried heartbeats carry the same store, period and key.
            let rid = format!(
                "m:{}",
                &crate::secret::hash(&format!("{session}|{}|{start}|{finish}|{key}", m.name))[..32]
            );
            events.push(NewEvent {
                rid,
                event: m.name.clone(),
                time: finish,
                client_ip: ip,
                user_identifiers: ids,
                properties: Map::new(),
                // Clamped so that sums over many observations (playbook
                // thresholds, trends) cannot overflow.
                count: i64::try_from(count.clamp(1, MAX_METRIC_COUNT)).unwrap_or(1),
                request: Arc::from("null"),
                response: Arc::from("null"),
                context_of: None,
            });
        }
    }
    Ok(events)
}

/// The wire form of a stored security action, sent to agents at login
/// and in action packs, with its `duration` counted from `now` (ms) and
/// rounded up to a whole second (at least 1 while it lives). An action
/// until lifted has no `duration`: the Python agent reads `0` as already
/// expired, while ours, Go's and Node's read both as forever.
///
/// # Errors
/// A stored action whose kind or parameters are not the protocol's (the
/// server stores none such; an edited database could).
pub fn wire_action(action: &ActionView, now: i64) -> Result<Action, Invalid> {
    let kind = ActionKind::from_name(&action.action)
        .ok_or_else(|| invalid(format!("unknown action kind {:?}", action.action)))?;
    let parameters = ActionParameters::deserialize(&action.parameters)
        .map_err(|e| invalid(format!("bad parameters: {e}")))?;
    // Whole seconds left, at least one; saturating: an edited row may hold
    // any time.
    let duration = action.expires_at_ms.map(|e| {
        let ms = e.saturating_sub(now).max(1);
        u64::try_from(ms).map_or(1, |ms| ms.div_ceil(1000))
    });
    Ok(Action {
        action: kind,
        action_id: action.action_id.clone(),
        duration,
        parameters,
        send_response: true,
    })
}

/// The wire forms of `actions` ([`wire_action`]); a stored action that
/// has none is left out and logged.
pub fn wire_actions(actions: &[ActionView], now: i64) -> Vec<Action> {
    actions
        .iter()
        .filter_map(|a| match wire_action(a, now) {
            Ok(wire) => Some(wire),
            Err(e) => {
                tracing::error!(event = "actions.unsendable", action_id = %a.action_id,
                    error = %e.0, "a stored action is not in the protocol's form: not sent");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Value {
        json!({"event_type": "request_record", "version": "20171208", "rid": "r1",
            "client_ip": "81.2.69.160", "start": "2026-11-24T19:00:00.123Z",
            "end": "2026-11-24T19:00:00.150Z",
            "request": {"rid": null, "verb": "POST", "path": "/login", "user_agent": "ua"},
            "response": {"status": 200, "content_length": 2, "content_type": "text/plain"},
            "observed": {"sdk": [
                {"time": "2026-11-24T19:00:00.130Z", "name": "identify", "args": [{"uid": "u1"}]},
                {"time": "2026-11-24T19:00:00.131Z", "name": "track",
                 "args": ["my.event", {"properties": {"k": "v", "n": 3}}]},
                {"time": "2026-11-24T19:00:00.132Z", "name": "track",
                 "args": ["other", {"user_identifiers": {"uid": "u2"}}]}]}})
    }

    fn parse(v: Value) -> Result<BatchOutcome, Invalid> {
        decode_batch(v.to_string().as_bytes())
    }

    /// Each track entry becomes an event with the record's context and user.
    #[test]
    fn record_becomes_events() {
        let events = parse(json!({"batch": [record()]})).expect("valid").events;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "my.event");
        assert_eq!(events[0].rid, "r1#1");
        assert_eq!(events[0].user_key(), r#"{"uid":"u1"}"#);
        assert_eq!(events[1].user_key(), r#"{"uid":"u2"}"#);
        assert_eq!(events[0].client_ip, "81.2.69.160");
        assert!(events[0].request.contains("/login"));
    }

    /// Malformed records are refused one by one; the valid ones around them
    /// are kept.
    #[test]
    fn bad_records_are_refused_alone() {
        let mut cases = Vec::new();
        let mut v = record();
        v["client_ip"] = json!("not-an-ip");
        cases.push(v);
        let mut v = record();
        v["start"] = json!("yesterday");
        cases.push(v);
        let mut v = record();
        v["event_type"] = json!("other");
        cases.push(v);
        let mut v = record();
        v["request"] = json!([1, 2]);
        cases.push(v);
        let mut v = record();
        v["observed"]["sdk"][1]["args"] = json!([42]);
        cases.push(v);
        let mut v = record();
        v["observed"]["sdk"][1]["args"][1]["properties"] = json!({"k": "x".repeat(MAX_VALUE + 1)});
        cases.push(v);
        let mut v = record();
        v["observed"]["sdk"][0]["args"] = json!([{"uid": {"nested": 1}}]);
        cases.push(v);
        let mut v = record();
        v["observed"]["sdk"][1]
            .as_object_mut()
            .map(|e| e.remove("time"));
        cases.push(v);
        let mut v = record();
        v["observed"]["sdk"] = json!({"not": "a list"});
        cases.push(v);
        for case in cases {
            let mut second = record();
            second["rid"] = json!("r2");
            let outcome = parse(json!({"batch": [record(), case, second]})).expect("decoded");
            assert_eq!(outcome.refused.len(), 1, "{:?}", outcome.refused);
            assert_eq!(outcome.refused[0].index, 1);
            assert_eq!(outcome.events.len(), 4);
            assert_eq!(outcome.events[2].rid, "r2#1");
            assert_eq!(outcome.events[3].context_of, Some(2));
        }
    }

    /// Unknown fields and SDK entries are ignored and counted; the fields
    /// the historical agents send are ignored silently.
    #[test]
    fn unknown_fields_are_counted() {
        let mut v = record();
        v["surprise"] = json!(true);
        v["rulespack_id"] = json!("pack");
        v["observed"]["attacks"] = json!([]);
        v["observed"]["mystery"] = json!({});
        v["observed"]["sdk"][1]["name"] = json!("explode");
        v["observed"]["sdk"][2]["args"][1]["collect_body"] = json!(false);
        v["observed"]["sdk"][2]["args"][1]["novel"] = json!(1);
        let outcome = parse(json!({"batch": [v]})).expect("valid");
        assert!(outcome.refused.is_empty());
        assert_eq!(outcome.events.len(), 1);
        assert_eq!(outcome.leniency.unknown_fields, 4);
    }

    /// A record without a top-level id takes its request's, or else a hash
    /// of its text; acknowledged event types are counted, not stored.
    #[test]
    fn record_ids_and_other_event_types() {
        let mut v = record();
        v.as_object_mut().map(|m| m.remove("rid"));
        v.as_object_mut().map(|m| m.remove("start"));
        v["request"]["rid"] = json!("req-7");
        let mut w = v.clone();
        w["request"]["rid"] = json!(null);
        let outcome = parse(json!({"batch": [v, w,
            {"event_type": "sqreen_exception", "klass": "E", "message": "m"},
            {"event_type": "agent_message", "kind": "k"}]}))
        .expect("valid");
        assert_eq!(outcome.events[0].rid, "req-7#1");
        assert!(outcome.events[2].rid.starts_with("h:"));
        assert_eq!(outcome.leniency.acknowledged, 2);
        // The strict wrapper refuses a batch with any bad event.
        let body: BatchBody =
            serde_json::from_value(json!({"batch": [{"event_type": "x"}]})).expect("shape");
        assert!(batch_events(body).is_err());
    }

    /// Metric observations become counted events with the key's user and IP.
    #[test]
    fn metrics_become_events() {
        let beat: BeatBody = serde_json::from_value(json!({"metrics": [
            {"name": "sdk-login-fail", "start": "2026-11-24T19:00:00.000Z",
             "finish": "2026-11-24T19:01:00.000Z",
             "observation": {"{\"keys\":[[\"username\",\"bob\"]],\"ip\":\"81.2.69.160\"}": 3}},
            {"name": "other-store", "start": "2026-11-24T19:00:00.000Z",
             "finish": "2026-11-24T19:01:00.000Z", "observation": {"x": {"v": [1]}}}]}))
        .expect("valid");
        let events = metric_events(&beat.metrics, "s1").expect("valid");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].count, 3);
        assert_eq!(events[0].client_ip, "81.2.69.160");
        assert_eq!(events[0].user_key(), r#"{"username":"bob"}"#);
        // The same beat again has the same dedup keys.
        assert_eq!(
            metric_events(&beat.metrics, "s1").expect("valid")[0].rid,
            events[0].rid
        );
        // Another session's identical report is another event.
        assert_ne!(
            metric_events(&beat.metrics, "s2").expect("valid")[0].rid,
            events[0].rid
        );
    }

    /// Command results may hold any JSON; a user-monitoring count must be a
    /// number.
    #[test]
    fn beats_are_lenient_where_agents_differ() {
        let body = json!({"command_results": {
            "a": {"status": true, "output": {"status": true}},
            "b": {"status": false, "msg": "unknown command name 'x'"}},
            "extra": 1, "metrics": []});
        let (beat, events, leniency) =
            decode_beat(body.to_string().as_bytes(), "s").expect("valid");
        assert_eq!(beat.command_results.len(), 2);
        assert!(events.is_empty());
        assert_eq!(leniency.unknown_fields, 1);
        let bad = json!({"metrics": [{"name": "sdk-signup", "start": "2026-11-24T19:00:00Z",
            "finish": "2026-11-24T19:01:00Z", "observation": {"{\"keys\":[]}": "x"}}]});
        assert!(decode_beat(bad.to_string().as_bytes(), "s").is_err());
    }
}
