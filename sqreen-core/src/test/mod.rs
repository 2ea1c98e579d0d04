//! Test support (feature `test`): an in-memory backend that speaks the
//! protocol without a network, so adapters and applications can assert on
//! exactly what the agent would send.
//!
//! Modelled on `sentry::test::with_captured_events`.
//!
//! ```
//! use sqreen_core::{Open, RequestInfo, ResponseInfo};
//! let events = sqreen_core::test::with_captured_events(|agent| {
//!     let headers: &[(&str, &str)] = &[("User-Agent", "curl/8")];
//!     let request = || RequestInfo::new("GET", "/", &headers);
//!     if let Open::Request(mut slot) = agent.open(request, None) {
//!         slot.handle_with(request).track_event("my.event").with_properties([("key", "value")]);
//!         slot.close(ResponseInfo::new(200));
//!     }
//! });
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0]["observed"]["sdk"][0]["args"][0], "my.event");
//! ```
//!
//! [`CaptureBackend`] also gives typed views: [`CaptureBackend::tracked`]
//! (one [`TrackedEvent`] per `track_event`, with its request and response)
//! and [`CaptureBackend::observations`] (logins and signups, as the
//! heartbeats counted them).
//!
//! ```
//! use sqreen_core::test::{ObservationKind, start_captured, test_config};
//! use sqreen_core::{Open, RequestInfo, ResponseInfo};
//!
//! let (agent, backend) = start_captured(test_config().build().unwrap());
//! let headers: &[(&str, &str)] = &[("User-Agent", "curl/8")];
//! let request = || RequestInfo::new("POST", "/login", &headers);
//! if let Open::Request(mut slot) = agent.open(request, None) {
//!     let sq = slot.handle_with(request);
//!     sq.track_event("login.page").with_properties([("step", 2)]);
//!     sq.for_user([("username", "bob")]).track_auth_failure();
//!     slot.close(ResponseInfo::new(401));
//! }
//! drop(agent); // shuts down: the last batch, and a heartbeat with the counts
//!
//! let event = backend.tracked_one("login.page").unwrap();
//! assert_eq!(event.property("step"), Some(&serde_json::json!(2)));
//! assert_eq!(event.request.as_ref().unwrap().path, "/login");
//! assert_eq!(event.response.as_ref().unwrap().status, 401);
//! let failures = backend.observations_of(ObservationKind::LoginFailure);
//! assert_eq!(failures[0].user("username"), Some("bob"));
//! assert_eq!(failures[0].count, 1);
//! ```

mod captured;

pub use captured::{
    CapturedRequest, CapturedResponse, ObservationKind, TrackedEvent, UserObservation,
};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::{Agent, AgentGuard};
use crate::config::{Config, ConfigBuilder};
use crate::protocol::{ACTIONSPACK_PATH, BATCH_PATH, BEAT_PATH, LOGIN_PATH, LOGOUT_PATH};
use crate::transport::{ApiRequest, ApiResponse, BoxFuture, Transport, TransportError};

#[derive(Debug, Default)]
struct CaptureState {
    logins: Vec<Value>,
    batches: Vec<Vec<Value>>,
    beats: Vec<Value>,
    commands: VecDeque<Value>,
    actions: Vec<Value>,
    features: Value,
    logouts: usize,
    sessions: u64,
}

/// An in-memory backend: accepts any login, stores batches and heartbeats,
/// serves the action pack and queued commands.
#[derive(Clone, Debug, Default)]
pub struct CaptureBackend {
    state: Arc<Mutex<CaptureState>>,
}

impl CaptureBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, CaptureState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every event received, in order.
    pub fn events(&self) -> Vec<Value> {
        self.state().batches.iter().flatten().cloned().collect()
    }

    /// Every `track` received, in order, typed (see [`TrackedEvent`]).
    pub fn tracked(&self) -> Vec<TrackedEvent> {
        TrackedEvent::from_records(&self.events())
    }

    /// The `track`s named `name`, in order.
    pub fn tracked_named(&self, name: &str) -> Vec<TrackedEvent> {
        let mut events = self.tracked();
        events.retain(|e| e.name == name);
        events
    }

    /// The one `track` named `name`: `None` when there is none, or more
    /// than one.
    pub fn tracked_one(&self, name: &str) -> Option<TrackedEvent> {
        let mut events = self.tracked_named(name);
        (events.len() == 1).then(|| events.remove(0))
    }

    /// The login and signup counts of every heartbeat, added up per kind,
    /// user and client IP (see [`UserObservation`]).
    pub fn observations(&self) -> Vec<UserObservation> {
        UserObservation::from_metrics(&self.metrics())
    }

    /// The [`observations`](Self::observations) of one kind.
    pub fn observations_of(&self, kind: ObservationKind) -> Vec<UserObservation> {
        let mut all = self.observations();
        all.retain(|o| o.kind == kind);
        all
    }

    /// Every batch received, in order.
    pub fn batches(&self) -> Vec<Vec<Value>> {
        self.state().batches.clone()
    }

    /// Every heartbeat body received, in order.
    pub fn heartbeats(&self) -> Vec<Value> {
        self.state().beats.clone()
    }

    /// Every metric store received with heartbeats, in order.
    pub fn metrics(&self) -> Vec<Value> {
        self.state()
            .beats
            .iter()
            .filter_map(|b| b["metrics"].as_array())
            .flatten()
            .cloned()
            .collect()
    }

    /// Every login body received.
    pub fn logins(&self) -> Vec<Value> {
        self.state().logins.clone()
    }

    /// How many logouts were received.
    pub fn logouts(&self) -> usize {
        self.state().logouts
    }

    /// Sets the action set returned at login and by the action pack.
    /// Agents already logged in pick it up after [`push_command`](Self::push_command)`("actions_reload", ..)`.
    pub fn set_actions(&self, actions: Value) {
        self.state().actions = actions.as_array().cloned().unwrap_or_default();
    }

    /// Sets the login answer's `features`.
    pub fn set_features(&self, features: Value) {
        self.state().features = features;
    }

    /// Queues a command for the next login or heartbeat answer.
    pub fn push_command(&self, name: &str, uuid: &str, params: Value) {
        self.state()
            .commands
            .push_back(json!({"name": name, "uuid": uuid, "params": params}));
    }

    fn answer(&self, request: &ApiRequest) -> (u16, Value) {
        let body: Value = request
            .body
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let mut state = self.state();
        match request.path {
            LOGIN_PATH => {
                state.logins.push(body);
                state.sessions += 1;
                let commands: Vec<Value> = state.commands.drain(..).collect();
                let features = match &state.features {
                    Value::Null => json!({}),
                    other => other.clone(),
                };
                (
                    200,
                    json!({"status": true, "session_id": format!("session-{}", state.sessions),
                           "commands": commands, "features": features,
                           "actions": state.actions.clone()}),
                )
            }
            BEAT_PATH => {
                state.beats.push(body);
                let commands: Vec<Value> = state.commands.drain(..).collect();
                (200, json!({"status": true, "commands": commands}))
            }
            BATCH_PATH => {
                let batch = body["batch"].as_array().cloned().unwrap_or_default();
                state.batches.push(batch);
                (200, json!({"status": true}))
            }
            ACTIONSPACK_PATH => (200, json!({"actions": state.actions.clone()})),
            LOGOUT_PATH => {
                state.logouts += 1;
                (200, json!({"status": true}))
            }
            _ => (404, json!({"status": false})),
        }
    }
}

impl Transport for CaptureBackend {
    fn call(&self, request: ApiRequest) -> BoxFuture<Result<ApiResponse, TransportError>> {
        let (status, body) = self.answer(&request);
        let body = serde_json::to_vec(&body).unwrap_or_default();
        Box::pin(async move { Ok(ApiResponse { status, body }) })
    }
}

/// The configuration test agents start from: a token, and defaults otherwise.
pub fn test_config() -> ConfigBuilder {
    Config::builder().token("test-token").app_name("test")
}

/// Starts an agent on a fresh [`CaptureBackend`] and waits for its login.
pub fn start_captured(config: Config) -> (AgentGuard, CaptureBackend) {
    let backend = CaptureBackend::new();
    let guard = Agent::start(config, Arc::new(backend.clone()));
    guard.wait_ready(Duration::from_secs(10));
    (guard, backend)
}

/// [`start_captured`], registered as the [global](Agent::global) agent the
/// way [`init`](crate::init) registers it (with the framework a middleware
/// built earlier announced): for tests of code that uses the global agent.
/// Dropping the guard unregisters it.
pub fn init_captured(config: Config) -> (AgentGuard, CaptureBackend) {
    let backend = CaptureBackend::new();
    let guard = Agent::start(config, Arc::new(backend.clone()));
    crate::agent::register_global(&guard);
    guard.wait_ready(Duration::from_secs(10));
    (guard, backend)
}

/// Runs `f` with a logged-in agent on an in-memory backend, flushes, and
/// returns the events the backend received.
pub fn with_captured_events(f: impl FnOnce(&Agent)) -> Vec<Value> {
    let config = match test_config().build() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "test configuration is invalid");
            return Vec::new();
        }
    };
    let (guard, backend) = start_captured(config);
    f(&guard);
    guard.flush(Duration::from_secs(10));
    backend.events()
}

/// A backend for benchmarks: answers the protocol like [`CaptureBackend`]
/// but acknowledges and drops batches (memory stays flat over millions of
/// events), and can hold the agent thread inside its next batch call so a
/// benchmark can time the request path with the agent thread idle.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sqreen_core::test::{GatedBackend, test_config};
/// let backend = Arc::new(GatedBackend::default());
/// let config = test_config().batch_size(1).build().unwrap();
/// let agent = sqreen_core::Agent::start(config, backend.clone());
/// assert!(agent.wait_ready(Duration::from_secs(10)));
/// backend.arm(); // the next batch call blocks the agent thread…
/// backend.release(); // …until released
/// ```
#[derive(Debug, Default)]
pub struct GatedBackend {
    protocol: CaptureBackend,
    /// (armed, a batch call is held)
    gate: Mutex<(bool, bool)>,
    cvar: std::sync::Condvar,
}

impl GatedBackend {
    fn gate(&self) -> MutexGuard<'_, (bool, bool)> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next batch call block the agent thread until [`release`](Self::release).
    pub fn arm(&self) {
        self.gate().0 = true;
    }

    /// Waits until the agent thread is held in a batch call; false after `timeout`.
    pub fn wait_held(&self, timeout: Duration) -> bool {
        let state = self.gate();
        let (state, _) = self
            .cvar
            .wait_timeout_while(state, timeout, |s| !s.1)
            .unwrap_or_else(|p| p.into_inner());
        state.1
    }

    /// Lets a held agent thread go and disarms the gate.
    pub fn release(&self) {
        self.gate().0 = false;
        self.cvar.notify_all();
    }

    /// Called on the agent thread: blocks while armed.
    fn pass(&self) {
        let mut state = self.gate();
        if !state.0 {
            return;
        }
        state.1 = true;
        self.cvar.notify_all();
        while state.0 {
            state = self.cvar.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.1 = false;
    }
}

impl Transport for GatedBackend {
    fn call(&self, request: ApiRequest) -> BoxFuture<Result<ApiResponse, TransportError>> {
        if request.path != BATCH_PATH {
            return self.protocol.call(request);
        }
        // Synchronous on purpose: the agent thread stops while held.
        self.pass();
        Box::pin(async {
            Ok(ApiResponse {
                status: 200,
                body: br#"{"status":true}"#.to_vec(),
            })
        })
    }
}
