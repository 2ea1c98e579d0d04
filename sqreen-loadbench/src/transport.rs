//! An in-process backend: answers the protocol of `PROTOCOL.md` without a
//! network and throws away what it receives, counting the events.
//!
//! The agent under load talks to this instead of a real backend, so the
//! figures carry the agent's own work (turning records into events,
//! scrubbing, serialising batches) but no network I/O, and no other process
//! competes for the server's core.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Deserialize;
use serde::de::IgnoredAny;
use sqreen_core::protocol::{ACTIONSPACK_PATH, BATCH_PATH, BEAT_PATH, LOGIN_PATH, LOGOUT_PATH};
use sqreen_core::transport::{ApiRequest, ApiResponse, BoxFuture, Transport, TransportError};

/// Answer to a login: accepted, one fixed session.
const LOGIN_ANSWER: &[u8] = br#"{"status":true,"session_id":"bench"}"#;
/// Answer to a heartbeat: no commands.
const BEAT_ANSWER: &[u8] = br#"{"status":true,"commands":[]}"#;
/// Answer to a batch or a logout.
const OK_ANSWER: &[u8] = br#"{"status":true}"#;
/// Answer to an action pack request: no actions.
const ACTIONSPACK_ANSWER: &[u8] = br#"{"actions":[]}"#;

/// The body of a batch call, read only to count its events: each event is
/// skipped, not built.
#[derive(Deserialize)]
struct Batch {
    /// The events, ignored one by one.
    #[serde(default)]
    batch: Vec<IgnoredAny>,
}

/// The in-process backend: logs every agent in, acknowledges everything and
/// keeps nothing but counters.
#[derive(Debug, Default)]
pub struct DiscardBackend {
    /// Events received in batches.
    events: AtomicU64,
    /// Batch calls received.
    batches: AtomicU64,
    /// Batch bodies that were not the expected JSON.
    bad_batches: AtomicU64,
    /// Bytes of batch bodies received.
    batch_bytes: AtomicU64,
    /// Nanoseconds spent counting events (reading batch bodies): work a
    /// real backend would do elsewhere, reported so it can be told apart.
    count_nanos: AtomicU64,
}

impl DiscardBackend {
    /// A backend that has received nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events received so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Batch calls received so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Batch bodies that could not be read as `{"batch": [..]}`.
    pub fn bad_batches(&self) -> u64 {
        self.bad_batches.load(Ordering::Relaxed)
    }

    /// Bytes of batch bodies received so far.
    pub fn batch_bytes(&self) -> u64 {
        self.batch_bytes.load(Ordering::Relaxed)
    }

    /// Time spent counting events so far, in nanoseconds.
    pub fn count_nanos(&self) -> u64 {
        self.count_nanos.load(Ordering::Relaxed)
    }

    /// Counts the events of one batch body.
    fn count_batch(&self, body: Option<&[u8]>) {
        let start = Instant::now();
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_bytes
            .fetch_add(body.map_or(0, <[u8]>::len) as u64, Ordering::Relaxed);
        match body.map(serde_json::from_slice::<Batch>) {
            Some(Ok(batch)) => {
                self.events
                    .fetch_add(batch.batch.len() as u64, Ordering::Relaxed);
            }
            _ => {
                self.bad_batches.fetch_add(1, Ordering::Relaxed);
            }
        }
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.count_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The status and body answering `request`.
    fn answer(&self, request: &ApiRequest) -> (u16, &'static [u8]) {
        match request.path {
            LOGIN_PATH => (200, LOGIN_ANSWER),
            BEAT_PATH => (200, BEAT_ANSWER),
            BATCH_PATH => {
                self.count_batch(request.body.as_deref());
                (200, OK_ANSWER)
            }
            LOGOUT_PATH => (200, OK_ANSWER),
            ACTIONSPACK_PATH => (200, ACTIONSPACK_ANSWER),
            _ => (404, br#"{"status":false}"#),
        }
    }
}

impl Transport for DiscardBackend {
    fn call(&self, request: ApiRequest) -> BoxFuture<Result<ApiResponse, TransportError>> {
        let (status, body) = self.answer(&request);
        Box::pin(async move {
            Ok(ApiResponse {
                status,
                body: body.to_vec(),
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sqreen_core::{Agent, Begin, Config, RequestInfo, ResponseInfo};

    use super::*;

    /// A real agent logs in to the backend, and the events it sends are counted.
    #[test]
    fn agent_logs_in_and_events_are_counted() {
        let backend = Arc::new(DiscardBackend::new());
        let config = Config::builder().token("bench").build().unwrap();
        let guard = Agent::start(config, Arc::clone(&backend) as Arc<dyn Transport>);
        assert!(guard.wait_ready(Duration::from_secs(10)));
        for _ in 0..3 {
            let headers: &[(&str, &str)] = &[("Host", "h")];
            let Begin::Record(record) = guard.begin(&RequestInfo::new("GET", "/", &headers)) else {
                panic!("the agent should record");
            };
            crate::track(&record.handle());
            record.close(ResponseInfo::new(200));
        }
        assert!(guard.flush(Duration::from_secs(10)));
        assert_eq!(backend.events(), 3);
        assert_eq!(backend.bad_batches(), 0);
        assert_eq!(guard.stats().events_sent, 3);
    }
}
