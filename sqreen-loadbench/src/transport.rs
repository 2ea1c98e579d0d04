//! An in-process backend: answers the protocol of `docs/PROTOCOL.md` without a
//! network and throws away what it receives.
//!
//! The agent under load talks to this instead of a real backend, so the
//! figures carry the agent's own work (turning records into events,
//! scrubbing, serialising batches) but no network I/O, and no other process
//! competes for the server's core. A real backend reads batches in its own
//! process, so this one does not parse them on the server's core: it checks
//! each body's `{"batch":[…]}` framing and counts bytes; the agent's own
//! `events_sent` counter says how many events were delivered.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use sqreen_core::protocol::{ACTIONSPACK_PATH, BATCH_PATH, BEAT_PATH, LOGIN_PATH, LOGOUT_PATH};
use sqreen_core::transport::{ApiRequest, ApiResponse, BoxFuture, Transport, TransportError};
use sqreen_protocol::answers::{
    ActionsPackAnswer, BeatAnswer, ErrorAnswer, Features, LoginAnswer, StatusAnswer,
};

/// The answers, serialized once from the protocol's types.
struct Answers {
    /// To a login: accepted, one fixed session, no actions.
    login: Vec<u8>,
    /// To a heartbeat: no commands.
    beat: Vec<u8>,
    /// To a batch or a logout.
    ok: Vec<u8>,
    /// To an action pack request: no actions.
    actionspack: Vec<u8>,
    /// To any other path.
    not_found: Vec<u8>,
}

static ANSWERS: LazyLock<Answers> = LazyLock::new(|| {
    let json = |value: Result<Vec<u8>, serde_json::Error>| value.unwrap_or_default();
    let login: LoginAnswer = LoginAnswer {
        actions: Vec::new(),
        commands: Vec::new(),
        error: String::new(),
        features: Features::default(),
        pack_id: None,
        rules: None,
        session_id: "bench".to_owned(),
        status: true,
    };
    let beat: BeatAnswer = BeatAnswer {
        commands: Vec::new(),
        status: true,
    };
    let pack: ActionsPackAnswer = ActionsPackAnswer::new(Vec::new());
    Answers {
        login: json(serde_json::to_vec(&login)),
        beat: json(serde_json::to_vec(&beat)),
        ok: json(serde_json::to_vec(&StatusAnswer::OK)),
        actionspack: json(serde_json::to_vec(&pack)),
        not_found: json(serde_json::to_vec(&ErrorAnswer::new("not found"))),
    }
});

/// The in-process backend: logs every agent in, acknowledges everything and
/// keeps nothing but counters.
#[derive(Debug, Default)]
pub struct DiscardBackend {
    /// Batch calls received.
    batches: AtomicU64,
    /// Batch bodies that were not the expected JSON.
    bad_batches: AtomicU64,
    /// Bytes of batch bodies received.
    batch_bytes: AtomicU64,
}

impl DiscardBackend {
    /// A backend that has received nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Batch calls received so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Batch bodies not framed as `{"batch":[…]}`.
    pub fn bad_batches(&self) -> u64 {
        self.bad_batches.load(Ordering::Relaxed)
    }

    /// Bytes of batch bodies received so far.
    pub fn batch_bytes(&self) -> u64 {
        self.batch_bytes.load(Ordering::Relaxed)
    }

    /// Counts one batch body, checking its framing only.
    fn count_batch(&self, body: Option<&[u8]>) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        let body = body.unwrap_or_default();
        self.batch_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if !(body.starts_with(b"{\"batch\":[") && body.ends_with(b"]}")) {
            self.bad_batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The status and body answering `request`.
    fn answer(&self, request: &ApiRequest) -> (u16, &'static [u8]) {
        let answers: &'static Answers = &ANSWERS;
        match request.path {
            LOGIN_PATH => (200, &answers.login),
            BEAT_PATH => (200, &answers.beat),
            BATCH_PATH => {
                self.count_batch(request.body.as_deref());
                (200, &answers.ok)
            }
            LOGOUT_PATH => (200, &answers.ok),
            ACTIONSPACK_PATH => (200, &answers.actionspack),
            _ => (404, &answers.not_found),
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

    use sqreen_core::{Agent, Config, Open, RequestInfo, ResponseInfo};

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
            let request = || RequestInfo::new("GET", "/", &headers);
            let Open::Request(mut record) = guard.open(request, None) else {
                panic!("the agent should record");
            };
            crate::track(&record.handle_with(request));
            record.close(ResponseInfo::new(200));
        }
        assert!(guard.flush(Duration::from_secs(10)));
        assert!(backend.batches() >= 1);
        assert!(backend.batch_bytes() > 3 * 100);
        assert_eq!(backend.bad_batches(), 0);
        assert_eq!(guard.stats().events_sent, 3);
    }
}
