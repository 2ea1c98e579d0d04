//! A backend that speaks the sqreen protocol (`docs/PROTOCOL.md`) over real HTTP
//! on 127.0.0.1, for tests of the agent and its adapters.
//!
//! It runs on its own thread and runtime, so sync and async tests alike can
//! start one. Like `sqreen-server`, it holds agents to the protocol's
//! limits ([`sqreen_protocol::limits`]): a heartbeat over 1 MiB is a 413,
//! one with too many metric stores or keys a 400, a batch over 32 MiB a
//! 413, one with too many events or tracks per record a 400. Each refusal
//! is counted in [`Snapshot::refused`]. Besides answering like a real backend, it can misbehave on
//! demand — be down, hang, answer garbage or an error status, expire
//! sessions — so tests can check that the agent survives it.
//!
//! ```no_run
//! let backend = sqreen_test_backend::TestBackend::start();
//! // point the agent at backend.url(), run requests, then:
//! assert!(backend.wait_for(std::time::Duration::from_secs(5), |s| !s.events().is_empty()));
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sqreen_protocol::answers::{
    ActionsPackAnswer, BeatAnswer, ErrorAnswer, LoginAnswer, StatusAnswer,
};
use sqreen_protocol::{limits, paths};
use tokio::sync::oneshot;

/// How the backend answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Like a real backend.
    Normal,
    /// Every call answers 200 with a body that is not JSON.
    Garbage,
    /// Every call hangs without answering.
    Hang,
    /// Every call answers this status with an empty JSON object.
    Status(u16),
}

/// Everything the backend received, and what it will answer.
#[derive(Debug)]
pub struct Snapshot {
    /// Login bodies with their `X-Api-Key` and `X-App-Name` headers.
    pub logins: Vec<(Value, String, String)>,
    /// Heartbeat bodies.
    pub beats: Vec<Value>,
    /// Batches received (and stored).
    pub batches: Vec<Vec<Value>>,
    /// Logouts received.
    pub logouts: usize,
    /// Calls refused with 401 because their session was expired.
    pub unauthorized: usize,
    /// Calls answered in a mode other than [`Mode::Normal`].
    pub misbehaved: usize,
    /// Calls refused for breaking the protocol's limits, or carrying an
    /// event [`TestBackend::refuse_events_containing`] names.
    pub refused: usize,
    /// Batches received gzip-compressed (`Content-Encoding: gzip`).
    pub gzip_batches: usize,
    refuse_marker: Option<String>,
    redirect: Option<String>,
    mode: Mode,
    batch_mode: Mode,
    token: Option<String>,
    sessions: Vec<String>,
    next_session: u64,
    commands: VecDeque<Value>,
    actions: Vec<Value>,
    features: Value,
}

impl Snapshot {
    /// Every stored event, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.batches.iter().flatten().cloned().collect()
    }

    /// Every metric store received with heartbeats.
    pub fn metrics(&self) -> Vec<Value> {
        self.beats
            .iter()
            .filter_map(|b| b["metrics"].as_array())
            .flatten()
            .cloned()
            .collect()
    }

    /// Every command result reported in heartbeats, as (uuid, result).
    pub fn command_results(&self) -> Vec<(String, Value)> {
        self.beats
            .iter()
            .filter_map(|b| b["command_results"].as_object())
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

type Shared = Arc<Mutex<Snapshot>>;

/// A running test backend; stops when dropped.
#[derive(Debug)]
pub struct TestBackend {
    addr: SocketAddr,
    state: Shared,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn lock(state: &Shared) -> MutexGuard<'_, Snapshot> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl TestBackend {
    /// Starts a backend on a free port of 127.0.0.1 that accepts any token.
    ///
    /// # Panics
    /// When no port of 127.0.0.1 can be bound (a test environment problem).
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("a valid address")).expect("bind 127.0.0.1:0")
    }

    /// Starts a backend on `addr` that accepts any token.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Snapshot {
            logins: Vec::new(),
            beats: Vec::new(),
            batches: Vec::new(),
            logouts: 0,
            unauthorized: 0,
            misbehaved: 0,
            mode: Mode::Normal,
            batch_mode: Mode::Normal,
            refused: 0,
            gzip_batches: 0,
            refuse_marker: None,
            redirect: None,
            token: None,
            sessions: Vec::new(),
            next_session: 0,
            commands: VecDeque::new(),
            actions: Vec::new(),
            features: json!({}),
        }));
        let listener = std::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let backend = Self {
            addr,
            state,
            stop: Mutex::new(None),
            thread: Mutex::new(None),
        };
        backend.serve(listener);
        Ok(backend)
    }

    fn serve(&self, listener: std::net::TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = Router::new()
            .route(paths::LOGIN, post(login))
            .route(paths::BEAT, post(beat))
            .route(paths::BATCH, post(batch))
            .route(paths::ACTIONSPACK, get(actionspack))
            .route(paths::LOGOUT, get(logout))
            // Bodies are checked against the protocol's limits in the
            // handlers (a 413 there is counted).
            .layer(axum::extract::DefaultBodyLimit::max(
                limits::MAX_BATCH_BYTES * 2,
            ))
            .with_state(Arc::clone(&self.state));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("test backend runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
            // Hanging handlers must not keep the thread alive.
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop_tx);
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
    }

    /// The base URL to configure the agent with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Only this token logs in; others get 401.
    pub fn require_token(&self, token: &str) {
        lock(&self.state).token = Some(token.to_owned());
    }

    /// How every call is answered from now on.
    pub fn set_mode(&self, mode: Mode) {
        lock(&self.state).mode = mode;
    }

    /// How batches alone are answered; unless it is [`Mode::Normal`], it
    /// wins over [`set_mode`](Self::set_mode)'s mode for batches.
    pub fn set_batch_mode(&self, mode: Mode) {
        lock(&self.state).batch_mode = mode;
    }

    /// Batches holding an event whose JSON text contains `marker` are
    /// refused with 400, as a server refuses a record it cannot store.
    pub fn refuse_events_containing(&self, marker: &str) {
        lock(&self.state).refuse_marker = Some(marker.to_owned());
    }

    /// Every call is answered `307 Temporary Redirect` to `location`.
    pub fn redirect_to(&self, location: &str) {
        lock(&self.state).redirect = Some(location.to_owned());
    }

    /// Forgets every session: the next call quoting one gets 401.
    pub fn expire_sessions(&self) {
        lock(&self.state).sessions.clear();
    }

    /// Queues a command for the next login or heartbeat answer (`params`
    /// as given, even when not a list: a hostile backend's).
    pub fn push_command(&self, name: &str, uuid: &str, params: Value) {
        lock(&self.state)
            .commands
            .push_back(json!({"name": name, "uuid": uuid, "params": params}));
    }

    /// The action set served at login and by the action pack.
    pub fn set_actions(&self, actions: Value) {
        lock(&self.state).actions = actions.as_array().cloned().unwrap_or_default();
    }

    /// The `features` of the login answer.
    pub fn set_features(&self, features: Value) {
        lock(&self.state).features = features;
    }

    /// Stops listening: the agent then meets connection refusals.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }

    /// Listens again on the same port after [`stop`](Self::stop).
    pub fn restart(&self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "port not free yet");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Reads what the backend received so far.
    pub fn with<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        f(&lock(&self.state))
    }

    /// Every stored event so far.
    pub fn events(&self) -> Vec<Value> {
        self.with(Snapshot::events)
    }

    /// Polls until `pred` holds or `timeout` passes; true if it held.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Snapshot) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.with(&pred) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `body` as JSON with `status`. The answers are sqreen-protocol's types,
/// whose actions, commands and features are any JSON here (set by tests,
/// hostile ones included).
fn json_response(status: u16, body: &impl serde::Serialize) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    (status, [("content-type", "application/json")], text).into_response()
}

/// A refusal for breaking the protocol's limits (counted), or `None`.
fn refuse(state: &Shared, status: u16, why: String) -> Option<Response> {
    lock(state).refused += 1;
    Some(json_response(status, &ErrorAnswer::new(why)))
}

/// Whether a heartbeat body breaks the protocol's limits.
fn beat_breaks_limits(state: &Shared, body: &[u8]) -> Option<Response> {
    if body.len() > limits::MAX_BEAT_BYTES {
        return refuse(state, 413, format!("heartbeat of {} bytes", body.len()));
    }
    let beat: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let stores = beat["metrics"].as_array().map_or(&[][..], Vec::as_slice);
    if stores.len() > limits::MAX_METRIC_STORES {
        return refuse(state, 400, format!("{} metric stores", stores.len()));
    }
    for m in stores {
        let keys = m["observation"].as_object().map_or(0, serde_json::Map::len);
        if keys > limits::MAX_METRIC_KEYS_PER_STORE {
            return refuse(state, 400, format!("{keys} keys in one metric store"));
        }
    }
    None
}

/// Whether a batch breaks the protocol's limits or holds a refused event.
fn batch_breaks_limits(state: &Shared, body: &[u8], events: &[Value]) -> Option<Response> {
    if body.len() > limits::MAX_BATCH_BYTES {
        return refuse(state, 413, format!("batch of {} bytes", body.len()));
    }
    let tracks = |e: &Value| {
        e["observed"]["sdk"]
            .as_array()
            .map_or(0, |sdk| sdk.iter().filter(|x| x["name"] == "track").count())
    };
    if events
        .iter()
        .any(|e| tracks(e) > limits::MAX_TRACKS_PER_RECORD)
    {
        return refuse(state, 400, "too many tracks in one record".into());
    }
    let total: usize = events.iter().map(tracks).sum();
    if total > limits::MAX_BATCH_EVENTS {
        return refuse(state, 400, format!("{total} events in one batch"));
    }
    let marker = lock(state).refuse_marker.clone();
    if let Some(marker) = marker
        && events.iter().any(|e| e.to_string().contains(&marker))
    {
        return refuse(state, 400, "an event is refused".into());
    }
    None
}

/// Answers per the current mode, or `None` to answer normally.
async fn misbehave(state: &Shared, batch: bool) -> Option<Response> {
    let redirect = lock(state).redirect.clone();
    if let Some(location) = redirect {
        return Some(
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", location.as_str())],
                "",
            )
                .into_response(),
        );
    }
    let mode = {
        let mut s = lock(state);
        // A batch-specific mode wins over the general one.
        let mode = if batch && s.batch_mode != Mode::Normal {
            s.batch_mode
        } else {
            s.mode
        };
        if mode != Mode::Normal {
            s.misbehaved += 1;
        }
        mode
    };
    match mode {
        Mode::Normal => None,
        Mode::Garbage => Some((StatusCode::OK, "<html>not json{{{").into_response()),
        Mode::Hang => {
            std::future::pending::<()>().await;
            None
        }
        Mode::Status(code) => Some(json_response(code, &json!({}))),
    }
}

/// Checks `X-Session-Key`; `Some` is the 401 to send.
fn check_session(state: &Shared, headers: &HeaderMap) -> Option<Response> {
    let mut s = lock(state);
    let session = header(headers, "x-session-key");
    if s.sessions.contains(&session) {
        None
    } else {
        s.unauthorized += 1;
        Some(json_response(401, &ErrorAnswer::new("session expired")))
    }
}

async fn login(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = misbehave(&state, false).await {
        return r;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = lock(&state);
    let token = header(&headers, "x-api-key");
    s.logins
        .push((body, token.clone(), header(&headers, "x-app-name")));
    if s.token.as_ref().is_some_and(|t| *t != token) {
        return json_response(401, &ErrorAnswer::new("bad token"));
    }
    s.next_session += 1;
    let session = format!("session-{}", s.next_session);
    s.sessions.push(session.clone());
    let commands: Vec<Value> = s.commands.drain(..).collect();
    let answer: LoginAnswer<Value, Value, Value> = LoginAnswer {
        actions: s.actions.clone(),
        commands,
        error: String::new(),
        features: s.features.clone(),
        pack_id: None,
        rules: None,
        session_id: session,
        status: true,
    };
    json_response(200, &answer)
}

async fn beat(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = misbehave(&state, false).await {
        return r;
    }
    if let Some(r) = check_session(&state, &headers) {
        return r;
    }
    if let Some(r) = beat_breaks_limits(&state, &body) {
        return r;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = lock(&state);
    s.beats.push(body);
    let commands: Vec<Value> = s.commands.drain(..).collect();
    json_response(
        200,
        &BeatAnswer {
            commands,
            status: true,
        },
    )
}

async fn batch(State(state): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Some(r) = misbehave(&state, true).await {
        return r;
    }
    if let Some(r) = check_session(&state, &headers) {
        return r;
    }
    let raw = if header(&headers, "content-encoding").eq_ignore_ascii_case("gzip") {
        use std::io::Read;
        let mut inflated = Vec::new();
        let read = flate2::read::GzDecoder::new(&raw[..])
            .take(limits::MAX_BATCH_BYTES as u64 + 1)
            .read_to_end(&mut inflated);
        if read.is_err() {
            return json_response(400, &ErrorAnswer::new("bad gzip"));
        }
        lock(&state).gzip_batches += 1;
        Bytes::from(inflated)
    } else {
        raw
    };
    let Ok(body) = serde_json::from_slice::<Value>(&raw) else {
        return json_response(400, &ErrorAnswer::new("invalid JSON"));
    };
    let Some(events) = body["batch"].as_array() else {
        return json_response(400, &ErrorAnswer::new("no batch"));
    };
    if let Some(r) = batch_breaks_limits(&state, &raw, events) {
        return r;
    }
    lock(&state).batches.push(events.clone());
    json_response(200, &StatusAnswer::OK)
}

async fn actionspack(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = misbehave(&state, false).await {
        return r;
    }
    if let Some(r) = check_session(&state, &headers) {
        return r;
    }
    let actions = lock(&state).actions.clone();
    json_response(200, &ActionsPackAnswer::new(actions))
}

async fn logout(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = misbehave(&state, false).await {
        return r;
    }
    if let Some(r) = check_session(&state, &headers) {
        return r;
    }
    lock(&state).logouts += 1;
    json_response(200, &StatusAnswer::OK)
}
