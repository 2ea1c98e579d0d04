//! What the four example apps share, so that each app's own code is only
//! its framework's glue: the `/track` request and how it maps onto SDK
//! calls, the `/login` / `/signup` form, and the handle of a running server.
//!
//! | route | does |
//! |---|---|
//! | `GET /` | `200 ok`, tracks nothing |
//! | `POST /track` | tracks the event described by the JSON body ([`TrackRequest`]); `200 {"tracked": true}`, `400 {"error": ..}` |
//! | `POST /login` | form `username`, `password`; [`PASSWORD`] logs in (`200 welcome`), else `401`; missing fields `400` |
//! | `POST /signup` | form `username`, `password`; tracks a signup, `201 created` |

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The password `/login` accepts.
pub const PASSWORD: &str = "open-sesame";

/// The body of a successful `/track`.
pub const TRACKED: &str = r#"{"tracked":true}"#;

/// The JSON body of a `400`: `{"error": message}`.
pub fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// The body of `POST /track`:
/// `{"event", "properties"?, "user_identifiers"?, "timestamp"?, "for_user"?}`.
#[derive(Debug, Deserialize)]
pub struct TrackRequest {
    event: String,
    properties: Option<Map<String, Value>>,
    user_identifiers: Option<Map<String, Value>>,
    timestamp: Option<String>,
    for_user: Option<Map<String, Value>>,
    #[serde(skip)]
    parsed_timestamp: Option<SystemTime>,
}

impl TrackRequest {
    /// Parses and checks a body. Parsed by hand rather than by the
    /// framework's JSON extractor, so every malformed body gets the same
    /// `400 {"error": ..}` whatever its content type.
    ///
    /// # Errors
    /// The message for the `400`: invalid JSON or types, an empty `event`,
    /// a `timestamp` that is not RFC 3339.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let mut request: Self =
            serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))?;
        if request.event.is_empty() {
            return Err("`event` must not be empty".to_owned());
        }
        if let Some(t) = &request.timestamp {
            let t = humantime::parse_rfc3339(t)
                .map_err(|_| "`timestamp` must be an RFC 3339 date".to_owned())?;
            request.parsed_timestamp = Some(t);
        }
        Ok(request)
    }

    /// Records the event: `sq.for_user(ids).track_event(..)` when `for_user`
    /// is given, else `sq.track_event(..)`, with its properties, identifiers
    /// and timestamp.
    pub fn record(self, sq: &sqreen::Sqreen) {
        let user = self.for_user.map(|ids| sq.for_user(identifiers(ids)));
        let mut event = match &user {
            Some(user) => user.track_event(&self.event),
            None => sq.track_event(&self.event),
        };
        // JSON scalars become property values through `From<serde_json::Value>`.
        event = event.with_properties(self.properties.unwrap_or_default());
        if let Some(ids) = self.user_identifiers {
            event = event.with_user_identifiers(identifiers(ids));
        }
        if let Some(timestamp) = self.parsed_timestamp {
            event = event.with_timestamp(timestamp);
        }
        drop(event); // the event is recorded when its builder is dropped
    }
}

/// User identifiers are strings; other JSON values are sent as their JSON text.
fn identifiers(map: Map<String, Value>) -> Vec<(String, String)> {
    map.into_iter()
        .map(|(key, value)| match value {
            Value::String(s) => (key, s),
            other => (key, other.to_string()),
        })
        .collect()
}

/// The form of `/login` and `/signup`.
#[derive(Debug, Default, Deserialize)]
pub struct Credentials {
    /// The user name.
    pub username: Option<String>,
    /// The password.
    pub password: Option<String>,
}

impl Credentials {
    /// Both fields, or `None` when one is missing (a `400`).
    pub fn both(self) -> Option<(String, String)> {
        Some((self.username?, self.password?))
    }
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM: the binaries' cue
/// for a graceful shutdown (finish requests in flight, then flush the agent).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// A server running on its own thread; stopped gracefully by
/// [`stop`](Running::stop) or when dropped.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("addr", &self.addr).finish()
    }
}

impl Running {
    /// A server on `addr` that `stop` shuts down (finishing in-flight
    /// requests) and waits for.
    pub fn new(addr: SocketAddr, stop: impl FnOnce() + Send + 'static) -> Self {
        Self {
            addr,
            stop: Some(Box::new(stop)),
        }
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, wait for
    /// the server thread to end. Does not shut the agent down (its owner does).
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_now();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Malformed `/track` bodies are rejected with a message; good ones parse.
    #[test]
    fn track_request_validation() {
        for bad in [
            "not json",
            "{}",
            r#"{"event": ""}"#,
            r#"{"event": 5}"#,
            r#"{"event": "x", "properties": [1]}"#,
            r#"{"event": "x", "timestamp": "yesterday"}"#,
            r#"{"event": "x", "for_user": "bob"}"#,
        ] {
            assert!(TrackRequest::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let ok = TrackRequest::parse(
            br#"{"event": "x", "timestamp": "2026-11-24T10:00:00Z", "for_user": {"uid": 1}}"#,
        )
        .unwrap();
        assert!(ok.parsed_timestamp.is_some());
    }

    /// Credentials need both fields.
    #[test]
    fn credentials_need_both_fields() {
        let only_name = Credentials {
            username: Some("a".into()),
            password: None,
        };
        assert_eq!(only_name.both(), None);
    }
}
