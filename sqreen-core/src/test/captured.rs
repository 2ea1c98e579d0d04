//! Typed views of what a backend received: one [`TrackedEvent`] per
//! `track` call, with its request and response, and one
//! [`UserObservation`] per login/signup count of the heartbeats. The raw
//! protocol JSON stays available ([`TrackedEvent::raw`],
//! [`CaptureBackend::events`](super::CaptureBackend::events)).

use std::net::IpAddr;
use std::time::SystemTime;

use serde_json::{Map, Value};

/// One `track` call (`sq.track_event(..)`, or an enforced action's
/// `sq.action.*` event), as the backend received it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackedEvent {
    /// The event name.
    pub name: String,
    /// Its properties, scrubbed.
    pub properties: Map<String, Value>,
    /// The user it is about, if any (`with_user_identifiers`, `for_user`).
    pub user_identifiers: Option<Map<String, Value>>,
    /// When it happened: the time given with `with_timestamp`, or when it
    /// was tracked.
    pub time: Option<SystemTime>,
    /// The client IP of its request, if one was resolved.
    pub client_ip: Option<IpAddr>,
    /// The request it was tracked in; `None` outside a request.
    pub request: Option<CapturedRequest>,
    /// The response the request got, if it had one.
    pub response: Option<CapturedResponse>,
    /// The whole `request_record` the event came in.
    pub raw: Value,
}

/// A request as the agent sent it (scrubbed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CapturedRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The host, from the URI or the `Host` header.
    pub host: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// The `Referer` header (its query scrubbed).
    pub referer: String,
    /// The tracked headers, in order.
    pub headers: Vec<(String, String)>,
    /// `parameters`: `query`, `form`, `json`, `params` (route parameters).
    pub parameters: Map<String, Value>,
}

impl CapturedRequest {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query parameter `name`'s values.
    pub fn query(&self, name: &str) -> Option<&Value> {
        self.parameters.get("query")?.get(name)
    }

    /// The form field `name`'s values (urlencoded bodies).
    pub fn form(&self, name: &str) -> Option<&Value> {
        self.parameters.get("form")?.get(name)
    }

    /// The JSON body, if one was captured.
    pub fn json(&self) -> Option<&Value> {
        self.parameters.get("json")
    }

    /// The route parameter `name` (`/users/{id}` → `id`); the protocol
    /// sends each as a one-value list, `{"id": ["42"]}`.
    pub fn route_param(&self, name: &str) -> Option<&str> {
        match self.parameters.get("params")?.get(name)? {
            Value::Array(values) => values.first()?.as_str(),
            value => value.as_str(),
        }
    }
}

/// The response a recorded request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedResponse {
    /// The status code.
    pub status: u16,
    /// Its `Content-Length`, when known.
    pub content_length: Option<u64>,
    /// Its `Content-Type`, when set.
    pub content_type: Option<String>,
}

impl TrackedEvent {
    /// The events of one `request_record` (any backend's raw JSON), one per
    /// `track` entry, in order.
    pub fn from_record(record: &Value) -> Vec<TrackedEvent> {
        let client_ip = record["client_ip"].as_str().and_then(|ip| ip.parse().ok());
        let request = record.get("request").and_then(request_of);
        let response = record.get("response").and_then(response_of);
        record["observed"]["sdk"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["name"] == "track")
            .map(|entry| {
                let args = &entry["args"];
                let options = &args[1];
                TrackedEvent {
                    name: args[0].as_str().unwrap_or_default().to_owned(),
                    properties: options["properties"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    user_identifiers: options["user_identifiers"].as_object().cloned(),
                    time: entry["time"]
                        .as_str()
                        .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
                    client_ip,
                    request: request.clone(),
                    response: response.clone(),
                    raw: record.clone(),
                }
            })
            .collect()
    }

    /// [`from_record`](Self::from_record) over a list of records.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Value>) -> Vec<TrackedEvent> {
        records.into_iter().flat_map(Self::from_record).collect()
    }

    /// The property `key`.
    pub fn property(&self, key: &str) -> Option<&Value> {
        self.properties.get(key)
    }

    /// The user identifier `key`.
    pub fn user(&self, key: &str) -> Option<&str> {
        self.user_identifiers.as_ref()?.get(key)?.as_str()
    }
}

fn request_of(value: &Value) -> Option<CapturedRequest> {
    let r = value.as_object()?;
    let text = |k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Some(CapturedRequest {
        method: text("verb"),
        path: text("path"),
        host: text("host"),
        scheme: text("scheme"),
        user_agent: text("user_agent"),
        referer: text("referer"),
        headers: r.get("headers").map(string_pairs).unwrap_or_default(),
        parameters: r
            .get("parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    })
}

/// `[["k", "v"], …]` as pairs; items that are not two strings are left out.
fn string_pairs(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| {
            Some((
                pair.get(0)?.as_str()?.to_owned(),
                pair.get(1)?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn response_of(value: &Value) -> Option<CapturedResponse> {
    let r = value.as_object()?;
    Some(CapturedResponse {
        status: u16::try_from(r.get("status")?.as_u64()?).ok()?,
        content_length: r.get("content_length").and_then(Value::as_u64),
        content_type: r
            .get("content_type")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// What a login or signup count is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObservationKind {
    /// `track_auth_success` (`sdk-login-success`).
    LoginSuccess,
    /// `track_auth_failure` (`sdk-login-fail`).
    LoginFailure,
    /// `track_signup` (`sdk-signup`).
    Signup,
}

impl ObservationKind {
    /// The metric store the agent counts it in.
    pub fn store(self) -> &'static str {
        match self {
            Self::LoginSuccess => sqreen_protocol::metric_stores::LOGIN_SUCCESS,
            Self::LoginFailure => sqreen_protocol::metric_stores::LOGIN_FAIL,
            Self::Signup => sqreen_protocol::metric_stores::SIGNUP,
        }
    }

    fn of_store(store: &str) -> Option<Self> {
        [Self::LoginSuccess, Self::LoginFailure, Self::Signup]
            .into_iter()
            .find(|k| k.store() == store)
    }
}

/// Logins or signups of one user from one client IP, added up over every
/// heartbeat received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserObservation {
    /// Login success, failure, or signup.
    pub kind: ObservationKind,
    /// The user's identifiers, in the order the agent sent them.
    pub user_identifiers: Vec<(String, String)>,
    /// The client IP (empty outside a request, or when none resolved).
    pub client_ip: String,
    /// How many.
    pub count: u64,
}

impl UserObservation {
    /// The user identifier `key`.
    pub fn user(&self, key: &str) -> Option<&str> {
        self.user_identifiers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The observations of a list of metric stores (heartbeats'
    /// `metrics`, any backend's raw JSON), the counts of one kind, user and
    /// IP added up, in order of first appearance. Keys that do not parse
    /// are left out.
    pub fn from_metrics<'a>(stores: impl IntoIterator<Item = &'a Value>) -> Vec<Self> {
        let mut out: Vec<Self> = Vec::new();
        for store in stores {
            let Some(kind) = store["name"].as_str().and_then(ObservationKind::of_store) else {
                continue;
            };
            let Some(observation) = store["observation"].as_object() else {
                continue;
            };
            for (key, count) in observation {
                let Ok(key) = serde_json::from_str::<Value>(key) else {
                    continue;
                };
                let user_identifiers = string_pairs(&key["keys"]);
                let client_ip = key["ip"].as_str().unwrap_or_default().to_owned();
                let count = count.as_u64().unwrap_or(0);
                match out.iter_mut().find(|o| {
                    o.kind == kind
                        && o.client_ip == client_ip
                        && o.user_identifiers == user_identifiers
                }) {
                    Some(o) => o.count += count,
                    None => out.push(Self {
                        kind,
                        user_identifiers,
                        client_ip,
                        count,
                    }),
                }
            }
        }
        out
    }
}
