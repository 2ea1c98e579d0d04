//! The agent protocol's bodies (PROTOCOL.md) as the server validates them,
//! and their conversion into stored events.
//!
//! Batches and heartbeats are checked whole before anything is stored: an
//! unknown field, a wrong type, a bad timestamp or IP, an unknown event or
//! SDK entry, or an oversized value makes the whole body a 400. Login bodies
//! are read leniently (agents of other languages send more facts).
//!
//! Each `track` entry of a `request_record` becomes one event; the record's
//! request and response are stored once, with its first event, and the
//! record's other events refer to them ([`NewEvent::context_of`]), so that
//! a record with many tracks costs its context once. An event's user
//! identifiers are the entry's own, or else those of the record's last
//! `identify`.
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
//!
//! So the bytes one batch stores are at most its body's plus
//! [`MAX_USER_KEY`] per event (identifiers inherited from `identify` are
//! copied to each event, which the explorer filters on). Each observation of a
//! user-monitoring metric (`sdk-login-fail`, `sdk-login-success`,
//! `sdk-signup`) becomes one event of that name whose `count` is the
//! observed count, with the key's IP and user identifiers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use sqreen_protocol::limits;

use crate::store::NewEvent;
use crate::time::parse_rfc3339_ms;

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
pub const METRIC_STORES: [&str; 3] = ["sdk-login-fail", "sdk-login-success", "sdk-signup"];

/// Body of `POST /sqreen/v0/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The events.
    pub batch: Vec<RequestRecord>,
}

/// A `request_record` event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRecord {
    /// Must be `request_record`.
    pub event_type: String,
    /// The record format version.
    #[serde(default)]
    pub version: String,
    /// The record's unique id: retried batches are recognised by it.
    pub rid: String,
    /// The client IP, or empty.
    #[serde(default)]
    pub client_ip: String,
    /// Request start.
    pub start: String,
    /// Request end.
    #[serde(default)]
    pub end: Option<String>,
    /// The request context (a JSON object, kept as received).
    #[serde(default)]
    pub request: Option<Box<RawValue>>,
    /// The response (a JSON object, kept as received).
    #[serde(default)]
    pub response: Option<Box<RawValue>>,
    /// What the SDK recorded.
    pub observed: Observed,
}

/// The `observed` part of a record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    /// SDK entries (`track`, `identify`).
    #[serde(default)]
    pub sdk: Vec<SdkEntry>,
}

/// One SDK entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdkEntry {
    /// When.
    pub time: String,
    /// `track` or `identify`.
    pub name: String,
    /// The call's arguments.
    pub args: Vec<Value>,
}

/// Body of `POST /sqreen/v1/app-beat`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeatBody {
    /// Results of commands, by uuid.
    #[serde(default)]
    pub command_results: BTreeMap<String, CommandResult>,
    /// Metric stores.
    #[serde(default)]
    pub metrics: Vec<MetricBody>,
}

/// A command's result.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    /// Whether it worked.
    pub status: bool,
    /// What it said.
    #[serde(default)]
    pub output: String,
}

/// A metric store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricBody {
    /// Store name.
    pub name: String,
    /// Period start.
    pub start: String,
    /// Period end.
    pub finish: String,
    /// Count per key.
    pub observation: BTreeMap<String, u64>,
}

/// The key of a user-monitoring observation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricKey {
    keys: Vec<(String, Value)>,
    #[serde(default)]
    ip: String,
}

/// Why a body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

fn time(text: &str, what: &str) -> Result<i64, Invalid> {
    parse_rfc3339_ms(text).ok_or_else(|| invalid(format!("{what}: not an RFC 3339 time")))
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

impl RequestRecord {
    /// The events of this record, or why it is invalid.
    ///
    /// # Errors
    /// Any field out of the protocol's shape.
    pub fn into_events(self, out: &mut Vec<NewEvent>) -> Result<(), Invalid> {
        if self.event_type != "request_record" {
            return Err(invalid(format!("unknown event_type {:?}", self.event_type)));
        }
        name(&self.rid, "rid")?;
        let client_ip = ip(&self.client_ip)?;
        time(&self.start, "start")?;
        if let Some(end) = &self.end {
            time(end, "end")?;
        }
        let request = object_text(self.request.as_deref(), "request")?;
        let response = object_text(self.response.as_deref(), "response")?;

        // The record's user: its last `identify`.
        let mut identified = BTreeMap::new();
        let mut tracks = Vec::new();
        for (index, entry) in self.observed.sdk.into_iter().enumerate() {
            let at = time(&entry.time, "sdk time")?;
            match entry.name.as_str() {
                "identify" => {
                    let [ids] = entry.args.as_slice() else {
                        return Err(invalid("identify takes one argument"));
                    };
                    identified = bounded_user(identifiers(ids, "identify")?, "identify")?;
                }
                "track" => {
                    let mut args = entry.args.into_iter();
                    let (Some(Value::String(event)), options, None) =
                        (args.next(), args.next(), args.next())
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
                                    "properties" => props = properties(&v)?,
                                    "user_identifiers" => {
                                        ids = Some(bounded_user(
                                            identifiers(&v, "user_identifiers")?,
                                            "user_identifiers",
                                        )?);
                                    }
                                    other => {
                                        return Err(invalid(format!(
                                            "unknown track option {other:?}"
                                        )));
                                    }
                                }
                            }
                        }
                        Some(_) => return Err(invalid("track options must be an object")),
                    }
                    if tracks.len() == MAX_TRACKS_PER_RECORD {
                        return Err(invalid(format!(
                            "more than {MAX_TRACKS_PER_RECORD} track entries in one record"
                        )));
                    }
                    tracks.push((index, event, at, props, ids));
                }
                other => return Err(invalid(format!("unknown sdk entry {other:?}"))),
            }
        }
        let holder = out.len();
        for (index, event, at, props, ids) in tracks {
            let first = out.len() == holder;
            out.push(NewEvent {
                rid: format!("{}#{index}", self.rid),
                event,
                time: at,
                client_ip: client_ip.clone(),
                user_identifiers: ids.unwrap_or_else(|| identified.clone()),
                properties: props,
                count: 1,
                request: Arc::clone(&request),
                response: Arc::clone(&response),
                context_of: (!first).then_some(holder),
            });
        }
        Ok(())
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

/// Reads a batch body into its events.
///
/// # Errors
/// Not JSON of the batch's shape, or an invalid record.
pub fn decode_batch(body: &[u8]) -> Result<Vec<NewEvent>, Invalid> {
    let batch: BatchBody =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid body: {e}")))?;
    batch_events(batch)
}

/// Reads a heartbeat body: the body and the events of its metrics (see
/// [`metric_events`]).
///
/// # Errors
/// Not JSON of the heartbeat's shape, or an invalid metric.
pub fn decode_beat(body: &[u8], session: &str) -> Result<(BeatBody, Vec<NewEvent>), Invalid> {
    let beat: BeatBody =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid body: {e}")))?;
    let events = metric_events(&beat.metrics, session)?;
    Ok((beat, events))
}

/// The events of a whole batch, or why it is invalid (then nothing is stored).
///
/// # Errors
/// The first invalid record, with its position.
pub fn batch_events(body: BatchBody) -> Result<Vec<NewEvent>, Invalid> {
    if body.batch.len() > MAX_BATCH_EVENTS {
        return Err(invalid(format!(
            "more than {MAX_BATCH_EVENTS} events in one batch"
        )));
    }
    let mut events = Vec::with_capacity(body.batch.len());
    for (i, record) in body.batch.into_iter().enumerate() {
        record
            .into_events(&mut events)
            .map_err(|e| invalid(format!("batch[{i}]: {}", e.0)))?;
        if events.len() > MAX_BATCH_EVENTS {
            return Err(invalid(format!(
                "more than {MAX_BATCH_EVENTS} events in one batch (counting each track)"
            )));
        }
    }
    Ok(events)
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
        for (key, &count) in &m.observation {
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
            let ip = ip(&parsed.ip)?;
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

    fn parse(v: Value) -> Result<Vec<NewEvent>, Invalid> {
        let body: BatchBody = serde_json::from_value(v).map_err(|e| Invalid(e.to_string()))?;
        batch_events(body)
    }

    /// Each track entry becomes an event with the record's context and user.
    #[test]
    fn record_becomes_events() {
        let events = parse(json!({"batch": [record()]})).expect("valid");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "my.event");
        assert_eq!(events[0].rid, "r1#1");
        assert_eq!(events[0].user_key(), r#"{"uid":"u1"}"#);
        assert_eq!(events[1].user_key(), r#"{"uid":"u2"}"#);
        assert_eq!(events[0].client_ip, "81.2.69.160");
        assert!(events[0].request.contains("/login"));
    }

    /// Malformed records are refused whole.
    #[test]
    fn bad_records_are_refused() {
        let mut cases = Vec::new();
        let mut v = record();
        v["surprise"] = json!(true);
        cases.push(v);
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
        v["observed"]["sdk"][1]["name"] = json!("explode");
        cases.push(v);
        let mut v = record();
        v["observed"]["sdk"][1]["args"][1]["properties"] = json!({"k": "x".repeat(MAX_VALUE + 1)});
        cases.push(v);
        for case in cases {
            assert!(parse(json!({"batch": [record(), case]})).is_err());
        }
    }

    /// Metric observations become counted events with the key's user and IP.
    #[test]
    fn metrics_become_events() {
        let beat: BeatBody = serde_json::from_value(json!({"metrics": [
            {"name": "sdk-login-fail", "start": "2026-11-24T19:00:00.000Z",
             "finish": "2026-11-24T19:01:00.000Z",
             "observation": {"{\"keys\":[[\"username\",\"bob\"]],\"ip\":\"81.2.69.160\"}": 3}},
            {"name": "other-store", "start": "2026-11-24T19:00:00.000Z",
             "finish": "2026-11-24T19:01:00.000Z", "observation": {"x": 1}}]}))
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
}
