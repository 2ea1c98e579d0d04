//! The agent thread: batching, heartbeat, login and commands.
//!
//! One task on a current-thread runtime of the agent's own thread owns all
//! protocol state, so nothing here needs a lock. At most one backend call is
//! in flight; while it runs, the loop keeps draining the record queue, so a
//! slow backend delays delivery but never the application.
//!
//! | setting | default | env | what it drives here |
//! |---|---|---|---|
//! | `heartbeat_delay` | 60 s | `SQREEN_HEARTBEAT_DELAY` | beat period (login `features` override) |
//! | `batch_size` | 1000 | `SQREEN_BATCH_SIZE` | a batch is sent when this many events wait |
//! | `max_staleness` | 60 s | `SQREEN_MAX_STALENESS` | … or when the oldest waited this long |
//! | `event_queue_length` | 10 000 | `SQREEN_EVENT_QUEUE_LENGTH` | records queued from the request path; also the bound of events waiting here (pending + retry) |
//! | `shutdown_timeout` | 5 s | `SQREEN_SHUTDOWN_TIMEOUT` | bound of the final batch + beat + logout |
//!
//! Within the protocol's limits ([`sqreen_protocol::limits`]): a batch
//! holds at most `batch_size` records, 10 000 tracked events and 4 MiB; a
//! heartbeat carries the metrics that fit 1 MiB and 100 stores, the rest
//! following in heartbeats sent at once (see [`crate::metrics`] for how
//! metrics stay bounded and merge across failures).
//!
//! Failures, by answer:
//!
//! | answer | batch | heartbeat |
//! |---|---|---|
//! | 401 | kept; the session is dropped and the agent logs in again | the same |
//! | 400, 413 | split in halves until the refused event is alone, which is dropped and counted (`events_refused`) | its metrics are dropped and counted, its command results kept |
//! | 429, 503, network error, timeout | kept, retried after a backoff with full jitter (up to 5 min) | kept for the next heartbeat |
//! | anything else | kept and retried with backoff; abandoned (`events_abandoned`) after 8 failures over 10 minutes or more | kept for the next heartbeat |
//!
//! A failed login retries with the same jittered backoff forever. Events
//! waiting (pending and retried) are bounded by `event_queue_length`, the
//! oldest dropped and counted first. While re-logging in, requests go on
//! being recorded (the session loss is transient); only before the first
//! login, or after `instrumentation_remove`, do requests pass through.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | the thread, its loop, scheduling the next backend call and dispatching its answer; shutdown |
//! | `intake.rs` | records in: draining the queue, record → event and metrics, the bound of waiting events |
//! | `batch.rs` | events out: batches, their answers (split, retry, backoff, abandon), flushes |
//! | `login.rs` | the login and the features it sets |
//! | `beat.rs` | the heartbeat, backend commands, actions packs |

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use crate::encode::{SensitiveHeaders, TimeText};
use crate::metrics::MetricStores;
use crate::protocol::{
    ACTIONSPACK_PATH, ActionsPack, BATCH_PATH, BEAT_PATH, BeatRequest, BeatResponse, CommandResult,
    LOGIN_PATH, LOGOUT_PATH, Metric,
};
use crate::record::RecordInner;
use crate::scrub::{Scrubber, ScrubberError};
use crate::shared::{Control, Reply, Shared};
use crate::stats::{LoginState, bump};
use crate::transport::{ApiMethod, ApiRequest, ApiResponse, BoxFuture, Transport, TransportError};

mod batch;
mod beat;
mod intake;
mod login;

use batch::{BatchOutcome, EventJson, batch_body, batch_len, gzip};

/// How long the first login waits for an adapter to name the framework.
const FIRST_LOGIN_GRACE: Duration = Duration::from_millis(250);

/// Exponential backoff with full jitter: each wait is drawn uniformly
/// from zero to a ceiling that starts at 1 s and doubles up to 5 min, so
/// that agents cut off by the same outage do not all come back at once.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(300);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn step(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=ms))
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// A backend call and what it carried, so its result can be handled.
#[derive(Debug)]
enum Op {
    Login,
    Beat {
        results: BTreeMap<String, CommandResult>,
        metrics: Vec<Metric>,
    },
    Batch {
        events: Vec<EventJson>,
        retried: bool,
    },
    ActionsPack {
        uuid: Option<String>,
    },
    Logout,
}

type OpResult = (Op, Result<ApiResponse, TransportError>);

pub(crate) struct Worker {
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    rx: std::sync::mpsc::Receiver<Arc<RecordInner>>,
    control: mpsc::UnboundedReceiver<Control>,
    scrubber: Scrubber,
    /// The key regex's verdict on each tracked header name.
    sensitive_headers: SensitiveHeaders,
    /// The OpenTelemetry log export of tracked events (`otel_logs`).
    #[cfg(feature = "otel")]
    otel: Option<Arc<crate::otel::OtelLogs>>,
    /// When queued records are next drained; `None` while the queue is
    /// empty and the thread idles (a record then wakes it).
    drain_at: Option<Instant>,
    started: SystemTime,

    heartbeat_delay: Duration,
    batch_size: usize,
    max_staleness: Duration,
    /// Bound of pending + retry events.
    capacity: usize,

    session: Option<String>,
    login_at: Instant,
    login_backoff: Backoff,
    next_beat: Instant,
    pending: Vec<EventJson>,
    /// Emptied buffers of delivered events, reused for new ones.
    spare: Vec<Vec<u8>>,
    /// Timestamp text of the current second.
    times: TimeText,
    pending_since: Option<Instant>,
    retry: VecDeque<EventJson>,
    retry_at: Instant,
    retry_backoff: Backoff,
    /// Most records in the next retried batch: halved by each refused
    /// (400, 413) batch, back to `batch_size` once one is delivered.
    retry_records: usize,
    /// Consecutive failed batches ([`BatchOutcome::Failed`]), since when.
    failed_attempts: u32,
    failing_since: Option<Instant>,
    /// Metrics that did not fit the last heartbeat wait: the next one
    /// goes at once.
    metrics_left: bool,
    /// The backend said at login that it takes gzip batch bodies.
    batch_gzip: bool,
    reload_actions: Option<Option<String>>,
    command_results: BTreeMap<String, CommandResult>,
    metrics: MetricStores,
    in_flight: Option<BoxFuture<OpResult>>,
    in_flight_batch: bool,
    /// Flush callers waiting for pending + retry to drain.
    flush_waiters: Vec<(Instant, Reply)>,
    /// A batch failed since the current flush began.
    flush_failed: bool,
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        transport: Arc<dyn Transport>,
        rx: std::sync::mpsc::Receiver<Arc<RecordInner>>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Result<Self, ScrubberError> {
        let scrubber = shared.config.scrubber()?;
        let sensitive_headers = SensitiveHeaders::new(&scrubber, shared.home.ip_header.as_deref());
        let config = &shared.config;
        let now = Instant::now();
        Ok(Self {
            heartbeat_delay: config.heartbeat_delay,
            batch_size: config.batch_size.max(1),
            max_staleness: config.max_staleness,
            capacity: config.event_queue_length.max(config.batch_size).max(1),
            transport,
            rx,
            control,
            scrubber,
            sensitive_headers,
            #[cfg(feature = "otel")]
            otel: None,
            drain_at: None,
            started: SystemTime::now(),
            session: None,
            // The first login waits briefly for an adapter to name the
            // framework (adapters are built right after `init`), so the
            // login reports it; `Control::FrameworkSet` cuts the wait short.
            login_at: now + FIRST_LOGIN_GRACE,
            login_backoff: Backoff::new(),
            next_beat: now + config.heartbeat_delay,
            pending: Vec::new(),
            spare: Vec::new(),
            times: TimeText::default(),
            pending_since: None,
            retry: VecDeque::new(),
            retry_at: now,
            retry_backoff: Backoff::new(),
            retry_records: config.batch_size.max(1),
            failed_attempts: 0,
            failing_since: None,
            metrics_left: false,
            batch_gzip: false,
            reload_actions: None,
            command_results: BTreeMap::new(),
            metrics: MetricStores::new(SystemTime::now()),
            in_flight: None,
            in_flight_batch: false,
            flush_waiters: Vec::new(),
            flush_failed: false,
            shared,
        })
    }

    /// The OpenTelemetry log pipeline, when `otel_logs` asks for it.
    #[cfg(feature = "otel")]
    fn start_otel(&self) -> Option<Arc<crate::otel::OtelLogs>> {
        if !self.shared.config.otel_logs {
            return None;
        }
        match crate::otel::OtelLogs::start() {
            Ok(otel) => {
                tracing::info!(target: "sqreen::agent", event = "otel.started",
                    "tracked events are also exported as OpenTelemetry log records");
                Some(Arc::new(otel))
            }
            Err(e) => {
                tracing::error!(target: "sqreen::agent", event = "otel.config_error", error = %e,
                    "OpenTelemetry log export is off: the exporter could not be built");
                None
            }
        }
    }

    /// The thread's body: a current-thread runtime running [`Worker::run`].
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    pub fn run_blocking(mut self) {
        // The OpenTelemetry pipeline is built and stopped here, outside the
        // runtime: its exporter's blocking HTTP client runs its own.
        #[cfg(feature = "otel")]
        let otel = {
            self.otel = self.start_otel();
            self.otel.clone()
        };
        #[cfg(not(feature = "otel"))]
        if self.shared.config.otel_logs {
            tracing::warn!(target: "sqreen::agent", event = "otel.unavailable",
                "`otel_logs` is set but this build has no `otel` feature: \
                 tracked events are not exported to OpenTelemetry");
        }
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(self.run()),
            Err(e) => {
                tracing::error!(target: "sqreen::agent", event = "agent.runtime_error", error = %e,
                    "sqreen agent stops: cannot build its runtime");
                self.shared.home.counters.set_login_state(LoginState::Off);
            }
        }
        #[cfg(feature = "otel")]
        if let Some(otel) = otel {
            otel.shutdown();
        }
    }

    async fn run(mut self) {
        loop {
            let now = Instant::now();
            self.schedule_drain(now);
            self.expire_flush_waiters(now);
            if self.in_flight.is_none()
                && let Some(op) = self.next_op(now)
            {
                self.in_flight_batch = matches!(op, Op::Batch { .. });
                self.in_flight = Some(self.start_op(op));
            }
            let mut wake = self.next_wakeup();
            if let Some(at) = self.drain_at {
                wake = wake.min(at);
            }
            tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    Some(Control::FrameworkSet) => {
                        if self.session.is_none() && self.shared.home.counters.login_attempts.load(Ordering::Relaxed) == 0 {
                            self.login_at = Instant::now();
                        }
                    }
                    Some(Control::Flush { deadline, reply }) => self.begin_flush(deadline, reply),
                    Some(Control::Shutdown { deadline, reply }) => {
                        let ok = self.shutdown(deadline).await;
                        reply.send(ok);
                        return;
                    }
                    None => {
                        let deadline = Instant::now() + self.shared.config.shutdown_timeout;
                        self.shutdown(deadline).await;
                        return;
                    }
                },
                (op, result) = wait(&mut self.in_flight) => {
                    self.in_flight = None;
                    self.handle(op, result);
                }
                () = self.shared.home.wake.notified() => self.on_wake(),
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    fn next_op(&mut self, now: Instant) -> Option<Op> {
        if self.session.is_none() {
            return (now >= self.login_at).then_some(Op::Login);
        }
        if let Some(uuid) = self.reload_actions.take() {
            return Some(Op::ActionsPack { uuid });
        }
        if !self.retry.is_empty() && (now >= self.retry_at || self.flushing()) {
            let n = batch_len(self.retry.iter(), self.retry_records.min(self.batch_size));
            let events: Vec<EventJson> = self.retry.drain(..n).collect();
            bump(
                &self.shared.home.counters.events_retried,
                events.len() as u64,
            );
            self.update_pending_gauge();
            return Some(Op::Batch {
                events,
                retried: true,
            });
        }
        if !self.pending.is_empty()
            && (self.pending.len() >= self.batch_size
                || self.flushing()
                || self
                    .pending_since
                    .is_some_and(|t| now >= t + self.max_staleness))
        {
            return Some(self.take_pending_batch());
        }
        if now >= self.next_beat {
            return Some(self.beat_op(SystemTime::now()));
        }
        None
    }

    fn next_wakeup(&self) -> Instant {
        let mut wake = Instant::now() + Duration::from_secs(3600);
        if self.in_flight.is_none() {
            if self.session.is_none() {
                wake = wake.min(self.login_at);
            } else {
                wake = wake.min(self.next_beat);
                if let Some(since) = self.pending_since {
                    wake = wake.min(since + self.max_staleness);
                }
                if !self.retry.is_empty() {
                    wake = wake.min(self.retry_at);
                }
            }
        }
        for (deadline, _) in &self.flush_waiters {
            wake = wake.min(*deadline);
        }
        wake
    }

    fn request(&self, method: ApiMethod, path: &'static str, body: Option<Vec<u8>>) -> ApiRequest {
        let mut headers = Vec::with_capacity(2);
        if let Some(session) = &self.session {
            headers.push(("X-Session-Key", session.clone()));
        }
        ApiRequest {
            method,
            path,
            headers,
            body,
        }
    }

    fn start_op(&self, op: Op) -> BoxFuture<OpResult> {
        let request = match &op {
            Op::Login => {
                let mut request =
                    self.request(ApiMethod::Post, LOGIN_PATH, Some(self.login_body()));
                request.headers.clear();
                request.headers.push((
                    "X-Api-Key",
                    self.shared.config.token.clone().unwrap_or_default(),
                ));
                if let Some(app) = &self.shared.config.app_name {
                    request.headers.push(("X-App-Name", app.clone()));
                }
                request
            }
            Op::Beat { results, metrics } => {
                let body = serde_json::to_vec(&BeatRequest {
                    command_results: results,
                    metrics,
                })
                .unwrap_or_default();
                self.request(ApiMethod::Post, BEAT_PATH, Some(body))
            }
            Op::Batch { events, .. } => {
                let body = batch_body(events);
                match self.batch_gzip.then(|| gzip(&body)).flatten() {
                    Some(zipped) => {
                        let mut request = self.request(ApiMethod::Post, BATCH_PATH, Some(zipped));
                        request
                            .headers
                            .push(("Content-Encoding", "gzip".to_owned()));
                        request
                    }
                    None => self.request(ApiMethod::Post, BATCH_PATH, Some(body)),
                }
            }
            Op::ActionsPack { .. } => self.request(ApiMethod::Get, ACTIONSPACK_PATH, None),
            Op::Logout => self.request(ApiMethod::Get, LOGOUT_PATH, None),
        };
        let call = self.transport.call(request);
        Box::pin(async move { (op, call.await) })
    }

    /// Runs one call to completion (shutdown path).
    async fn run_op(&mut self, op: Op) -> bool {
        let (op, result) = self.start_op(op).await;
        self.handle(op, result)
    }

    /// Handles a call's outcome; true when it succeeded.
    fn handle(&mut self, op: Op, result: Result<ApiResponse, TransportError>) -> bool {
        let ok = match &result {
            Ok(r) => (200..300).contains(&r.status),
            Err(_) => false,
        };
        let status = result.as_ref().ok().map(|r| r.status);
        let unauthorized = status == Some(401);
        let problem = match &result {
            Ok(r) => format!("status {}", r.status),
            Err(e) => e.to_string(),
        };
        let body = result.map(|r| r.body).unwrap_or_default();
        match op {
            Op::Login => return self.on_login(ok, &body, &problem),
            Op::Batch { events, retried } => {
                let outcome = match status {
                    Some(200..=299) => BatchOutcome::Delivered,
                    Some(401) => BatchOutcome::SessionLost,
                    Some(400 | 413) => BatchOutcome::Refused,
                    Some(429 | 503) | None => BatchOutcome::Unavailable,
                    Some(_) => BatchOutcome::Failed,
                };
                self.on_batch(events, retried, outcome, &problem);
            }
            Op::Beat { results, metrics } => {
                if ok {
                    bump(&self.shared.home.counters.heartbeats_sent, 1);
                    match serde_json::from_slice::<BeatResponse>(&body) {
                        Ok(beat) => self.execute_commands(beat.commands),
                        Err(e) => self.bad_answer("app-beat", &e.to_string()),
                    }
                    if self.metrics_left {
                        // The rest of the metrics go at once.
                        self.next_beat = Instant::now();
                    }
                } else {
                    bump(&self.shared.home.counters.heartbeats_failed, 1);
                    for (uuid, r) in results {
                        self.command_results.entry(uuid).or_insert(r);
                    }
                    if matches!(status, Some(400 | 413)) {
                        // The backend refuses these metrics: resending them
                        // would block every later heartbeat.
                        tracing::warn!(target: "sqreen::heartbeat", event = "heartbeat.refused",
                            problem = %problem,
                            "heartbeat refused; its metrics are dropped, its command results kept");
                        self.metrics.discard(&metrics);
                    } else {
                        tracing::warn!(target: "sqreen::heartbeat", event = "heartbeat.failed",
                            problem = %problem, "heartbeat not delivered; its data is kept");
                        self.metrics.restore(metrics);
                    }
                    self.publish_metric_losses();
                }
            }
            Op::ActionsPack { uuid } => {
                let outcome = if ok {
                    match serde_json::from_slice::<ActionsPack>(&body) {
                        Ok(pack) => Ok(self.load_actions(&pack.actions)),
                        Err(e) => {
                            self.bad_answer("actionspack", &e.to_string());
                            Err(format!("invalid actionspack answer: {e}"))
                        }
                    }
                } else {
                    Err(format!("actionspack failed: {problem}"))
                };
                if let Some(uuid) = uuid {
                    let result = match outcome {
                        Ok(n) => CommandResult {
                            status: true,
                            output: format!("{n} actions loaded"),
                        },
                        Err(output) => CommandResult {
                            status: false,
                            output,
                        },
                    };
                    self.command_results.insert(uuid, result);
                }
            }
            Op::Logout => {}
        }
        if unauthorized {
            tracing::warn!(target: "sqreen::login", event = "login.session_lost",
                "backend answered 401: logging in again");
            self.session = None;
            self.login_at = Instant::now();
        }
        self.check_flush_done();
        ok
    }

    fn bad_answer(&self, call: &'static str, error: &str) {
        bump(&self.shared.home.counters.bad_backend_answers, 1);
        tracing::warn!(target: "sqreen::protocol", event = "protocol.bad_answer", call,
            error, "backend answer could not be understood");
    }

    async fn shutdown(&mut self, deadline: Instant) -> bool {
        self.shared.enabled.store(false, Ordering::Relaxed);
        let sequence = async {
            if let Some(call) = self.in_flight.take() {
                let (op, result) = call.await;
                self.handle(op, result);
            }
            self.drain_queue();
            let mut ok = true;
            if self.session.is_none() && !(self.pending.is_empty() && self.retry.is_empty()) {
                ok = self.run_op(Op::Login).await;
            }
            if self.session.is_some() {
                while ok && !(self.pending.is_empty() && self.retry.is_empty()) {
                    let op = if self.retry.is_empty() {
                        self.take_pending_batch()
                    } else {
                        let n =
                            batch_len(self.retry.iter(), self.retry_records.min(self.batch_size));
                        Op::Batch {
                            events: self.retry.drain(..n).collect(),
                            retried: true,
                        }
                    };
                    ok = self.run_op(op).await;
                }
                let beat = self.beat_op(SystemTime::now());
                ok &= self.run_op(beat).await;
                self.run_op(Op::Logout).await;
            }
            ok
        };
        let ok = match tokio::time::timeout_at(deadline.into(), sequence).await {
            Ok(ok) => ok,
            Err(_) => {
                tracing::warn!(target: "sqreen::agent", event = "agent.shutdown_timeout",
                    "shutdown timeout reached before everything was delivered");
                false
            }
        };
        let lost = (self.pending.len() + self.retry.len()) as u64;
        self.update_pending_gauge();
        for (_, reply) in self.flush_waiters.drain(..) {
            reply.send(false);
        }
        let stats = self.shared.home.counters.snapshot();
        self.shared
            .home
            .counters
            .set_login_state(LoginState::ShutDown);
        tracing::info!(target: "sqreen::agent", event = "agent.shutdown", delivered = ok,
            undelivered_events = lost, events_sent = stats.events_sent,
            records_dropped_queue_full = stats.records_dropped_queue_full,
            events_dropped_retry_buffer = stats.events_dropped_retry_buffer,
            "sqreen agent stopped");
        ok
    }
}

/// Awaits the call in flight, or never when there is none.
async fn wait(in_flight: &mut Option<BoxFuture<OpResult>>) -> OpResult {
    match in_flight {
        Some(call) => call.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::batch::{MAX_FAILED_ATTEMPTS, MIN_FAILING_TIME};
    use super::*;
    use crate::config::Config;

    /// An in-memory backend for the worker's unit tests: answers every call
    /// with one status and body, and keeps the requests it was sent.
    pub(super) struct Fixed {
        pub status: u16,
        pub body: Vec<u8>,
        pub requests: Mutex<Vec<ApiRequest>>,
    }

    impl Transport for Fixed {
        fn call(&self, request: ApiRequest) -> BoxFuture<Result<ApiResponse, TransportError>> {
            self.requests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(request);
            let answer = ApiResponse {
                status: self.status,
                body: self.body.clone(),
            };
            Box::pin(async move { Ok(answer) })
        }
    }

    /// A worker on `config` whose backend answers 200 `{}`, with its
    /// transport, and no session yet.
    pub(super) fn worker_on(config: Config) -> (Worker, Arc<Fixed>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (_control_tx, control_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(config, Some(tx)));
        let transport = Arc::new(Fixed {
            status: 200,
            body: b"{}".to_vec(),
            requests: Mutex::new(Vec::new()),
        });
        let worker = Worker::new(
            shared,
            Arc::clone(&transport) as Arc<dyn Transport>,
            rx,
            control_rx,
        )
        .expect("valid scrubber");
        (worker, transport)
    }

    /// A worker with a token, an app name and `batch_size`.
    pub(super) fn worker(batch_size: usize) -> Worker {
        let config = Config::builder()
            .token("test-token")
            .app_name("unit")
            .batch_size(batch_size)
            .build()
            .expect("valid config");
        worker_on(config).0
    }

    /// A worker as [`worker`] makes it, logged in (session `s`).
    pub(super) fn logged_in(batch_size: usize) -> Worker {
        let mut worker = worker(batch_size);
        worker.session = Some("s".to_owned());
        worker
    }

    /// An event of one track whose JSON is `{"id":id}`.
    pub(super) fn event(id: usize) -> EventJson {
        EventJson {
            json: format!("{{\"id\":{id}}}").into_bytes(),
            tracks: 1,
        }
    }

    /// The ids of `events`, as [`event`] wrote them.
    pub(super) fn ids<'a>(events: impl IntoIterator<Item = &'a EventJson>) -> Vec<u64> {
        events
            .into_iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_slice(&e.json).expect("event JSON");
                v["id"].as_u64().expect("an id")
            })
            .collect()
    }

    /// Runs `future` to completion on a current-thread runtime.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    fn answer(status: u16, body: &str) -> Result<ApiResponse, TransportError> {
        Ok(ApiResponse {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    /// The backoff ceiling starts at 1 s, doubles at each step and stops at 5 min.
    #[test]
    fn backoff_ceiling_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new();
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            ceilings.push(backoff.next.as_secs());
            backoff.step();
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff.next, Backoff::CAP);
    }

    /// Each wait is drawn between zero and the current ceiling (full jitter),
    /// and the draws differ.
    #[test]
    fn backoff_waits_are_jittered_within_the_ceiling() {
        fastrand::seed(7);
        let mut waits = Vec::new();
        for _ in 0..200 {
            let mut backoff = Backoff::new();
            for _ in 0..10 {
                backoff.step();
            }
            // The ceiling is now the cap.
            waits.push(backoff.step());
        }
        assert!(waits.iter().all(|w| *w <= Backoff::CAP));
        let first = waits[0];
        assert!(
            waits.iter().any(|w| *w != first),
            "full jitter draws different waits"
        );
        let mut first_step = Backoff::new();
        assert!(first_step.step() <= Backoff::FIRST);
    }

    /// `reset` brings the ceiling back to 1 s.
    #[test]
    fn backoff_resets_to_the_first_ceiling() {
        let mut backoff = Backoff::new();
        for _ in 0..5 {
            backoff.step();
        }
        assert_eq!(backoff.next, Duration::from_secs(32));
        backoff.reset();
        assert_eq!(backoff.next, Backoff::FIRST);
        assert!(backoff.step() <= Backoff::FIRST);
    }

    /// Without a session the only call is the login, once its time came.
    #[test]
    fn next_op_logs_in_first() {
        let mut w = worker(10);
        w.pending.push(event(1));
        w.pending_since = Some(Instant::now());
        assert!(w.next_op(w.login_at - Duration::from_millis(1)).is_none());
        assert!(matches!(w.next_op(w.login_at), Some(Op::Login)));
    }

    /// Logged in: an actions reload goes first, then retried events, then a
    /// full pending batch, then the heartbeat when it is due.
    #[test]
    fn next_op_orders_reload_retry_batch_beat() {
        let mut w = logged_in(2);
        let now = Instant::now();
        w.next_beat = now;
        w.retry_at = now;
        w.reload_actions = Some(Some("u".to_owned()));
        w.retry.push_back(event(1));
        w.pending.extend([event(2), event(3), event(4)]);
        w.pending_since = Some(now);

        assert!(matches!(w.next_op(now), Some(Op::ActionsPack { uuid: Some(u) }) if u == "u"));
        match w.next_op(now) {
            Some(Op::Batch { events, retried }) => {
                assert!(retried);
                assert_eq!(ids(&events), [1]);
            }
            other => panic!("a retried batch, not {other:?}"),
        }
        assert_eq!(
            w.shared
                .home
                .counters
                .events_retried
                .load(Ordering::Relaxed),
            1
        );
        match w.next_op(now) {
            Some(Op::Batch { events, retried }) => {
                assert!(!retried);
                assert_eq!(ids(&events), [2, 3], "at most batch_size events");
            }
            other => panic!("a pending batch, not {other:?}"),
        }
        // One event left: below batch_size and not stale yet.
        assert!(matches!(w.next_op(now), Some(Op::Beat { .. })));
        assert!(w.next_op(now).is_none(), "the next beat is a delay away");
        assert_eq!(ids(&w.pending), [4]);
    }

    /// A pending event is sent on its own once it waited `max_staleness`;
    /// retried events wait for `retry_at`.
    #[test]
    fn next_op_sends_stale_events_and_waits_for_retry_time() {
        let mut w = logged_in(10);
        let now = Instant::now();
        w.next_beat = now + Duration::from_secs(3600);
        w.retry_at = now + w.max_staleness * 2;
        w.retry.push_back(event(1));
        w.pending.push(event(2));
        w.pending_since = Some(now);
        assert!(w.next_op(now).is_none());
        match w.next_op(now + w.max_staleness) {
            Some(Op::Batch { events, retried }) => {
                assert!(!retried);
                assert_eq!(ids(&events), [2]);
            }
            other => panic!("the stale batch, not {other:?}"),
        }
        assert_eq!(w.pending_since, None);
        assert!(w.next_op(now + w.max_staleness).is_none());
        assert!(matches!(
            w.next_op(now + w.max_staleness * 2),
            Some(Op::Batch { retried: true, .. })
        ));
    }

    /// The login request carries the token and app name, and no session key.
    #[test]
    fn login_request_carries_the_api_key_and_app_name() {
        let (mut w, transport) = worker_on(
            Config::builder()
                .token("tok")
                .app_name("app")
                .build()
                .expect("valid config"),
        );
        w.session = Some("old".to_owned());
        let (op, result) = block_on(w.start_op(Op::Login));
        assert!(matches!(op, Op::Login));
        assert_eq!(result.expect("answered").status, 200);
        let requests = transport.requests.lock().expect("requests");
        let login = &requests[0];
        assert_eq!(login.method, ApiMethod::Post);
        assert_eq!(login.path, LOGIN_PATH);
        assert_eq!(login.header("X-Api-Key"), Some("tok"));
        assert_eq!(login.header("X-App-Name"), Some("app"));
        assert_eq!(login.header("X-Session-Key"), None);
    }

    /// Calls after the login carry the session key; a batch body is
    /// gzipped only when the backend announced it takes gzip.
    #[test]
    fn batch_requests_carry_the_session_and_gzip_when_announced() {
        let (mut w, transport) = worker_on(Config::builder().token("t").build().expect("config"));
        w.session = Some("sess".to_owned());
        let ops = [
            Op::Batch {
                events: vec![event(1)],
                retried: false,
            },
            Op::Batch {
                events: vec![event(2)],
                retried: false,
            },
            Op::Logout,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            w.batch_gzip = i == 1;
            let (_, result) = block_on(w.start_op(op));
            assert_eq!(result.expect("answered").status, 200);
        }
        let requests = transport.requests.lock().expect("requests");
        let plain = &requests[0];
        assert_eq!(plain.path, BATCH_PATH);
        assert_eq!(plain.header("X-Session-Key"), Some("sess"));
        assert_eq!(plain.header("Content-Encoding"), None);
        assert_eq!(
            plain.body.as_deref(),
            Some(&b"{\"batch\":[{\"id\":1}]}"[..])
        );
        let zipped = &requests[1];
        assert_eq!(zipped.header("Content-Encoding"), Some("gzip"));
        assert_eq!(
            zipped.body.as_deref().map(|b| &b[..2]),
            Some(&[0x1f, 0x8b][..])
        );
        let logout = &requests[2];
        assert_eq!((logout.method, logout.path), (ApiMethod::Get, LOGOUT_PATH));
        assert_eq!(logout.body, None);
    }

    /// Batch answers map to outcomes: 2xx delivered, 400/413 refused (a lone
    /// event dropped), 429/503/network error kept for retry, 401 kept and
    /// the session dropped.
    #[test]
    fn handle_maps_batch_answers_to_outcomes() {
        let mut w = logged_in(10);
        let batch = |id| Op::Batch {
            events: vec![event(id)],
            retried: false,
        };
        assert!(w.handle(batch(1), answer(204, "")));
        assert!(!w.handle(batch(2), answer(413, "")));
        assert!(!w.handle(batch(3), answer(429, "")));
        assert!(!w.handle(batch(4), Err(TransportError::Timeout)));
        assert!(!w.handle(batch(5), answer(500, "")));
        assert_eq!(w.session.as_deref(), Some("s"));
        assert!(!w.handle(batch(6), answer(401, "")));
        assert_eq!(w.session, None, "a 401 drops the session");
        let stats = w.shared.home.counters.snapshot();
        assert_eq!(stats.events_sent, 1);
        assert_eq!(stats.events_refused, 1);
        assert_eq!(stats.batches_failed, 5);
        assert_eq!(w.failed_attempts, 1, "only the 500 counts as a failure");
        let mut kept = ids(&w.retry);
        kept.sort_unstable();
        assert_eq!(kept, [3, 4, 5, 6]);
    }

    /// A delivered heartbeat runs the commands of its answer; a failed one
    /// keeps its command results, and its metrics unless it was refused.
    #[test]
    fn handle_beat_answers() {
        let mut w = logged_in(10);
        let beat = r#"{"commands":[{"name":"instrumentation_enable","uuid":"c1"}]}"#;
        let op = Op::Beat {
            results: BTreeMap::new(),
            metrics: Vec::new(),
        };
        assert!(w.handle(op, answer(200, beat)));
        assert!(w.command_results["c1"].status);
        assert_eq!(
            w.shared
                .home
                .counters
                .heartbeats_sent
                .load(Ordering::Relaxed),
            1
        );

        let now = SystemTime::now();
        w.metrics.add(
            crate::metrics::MetricKind::Signup,
            [("u", "a")].into_iter(),
            None,
        );
        let Op::Beat { results, metrics } = w.beat_op(now) else {
            panic!("a beat");
        };
        assert_eq!(results.len(), 1);
        assert_eq!(metrics.len(), 1);
        assert!(w.metrics.is_empty() && w.command_results.is_empty());
        assert!(!w.handle(Op::Beat { results, metrics }, answer(503, "")));
        assert!(!w.metrics.is_empty(), "a failed beat's metrics are kept");
        assert!(w.command_results.contains_key("c1"));

        let Op::Beat { results, metrics } = w.beat_op(now) else {
            panic!("a beat");
        };
        assert!(!w.handle(Op::Beat { results, metrics }, answer(400, "")));
        assert!(w.metrics.is_empty(), "a refused beat's metrics are dropped");
        assert!(w.command_results.contains_key("c1"));
        let stats = w.shared.home.counters.snapshot();
        assert_eq!(stats.heartbeats_failed, 2);
        assert_eq!(stats.metric_observations_dropped, 1);
    }

    /// A beat answer that is not JSON counts as a bad answer.
    #[test]
    fn handle_counts_bad_beat_answers() {
        let mut w = logged_in(10);
        let op = Op::Beat {
            results: BTreeMap::new(),
            metrics: Vec::new(),
        };
        assert!(w.handle(op, answer(200, "not json")));
        let stats = w.shared.home.counters.snapshot();
        assert_eq!((stats.heartbeats_sent, stats.bad_backend_answers), (1, 1));
    }

    /// An actions pack answers its reload command with how many actions
    /// loaded, or with the failure.
    #[test]
    fn handle_actions_pack_answers_the_reload_command() {
        let mut w = logged_in(10);
        let pack = r#"{"actions":[{"action_id":"a","action":"block_ip",
            "parameters":{"ip_cidr":["10.0.0.0/8"]}}]}"#;
        let op = |uuid: &str| Op::ActionsPack {
            uuid: Some(uuid.to_owned()),
        };
        assert!(w.handle(op("ok"), answer(200, pack)));
        assert!(w.handle(op("bad"), answer(200, "\"nope\"")));
        assert!(!w.handle(op("down"), answer(503, "")));
        let ok = &w.command_results["ok"];
        assert!(ok.status);
        assert_eq!(ok.output, "1 actions loaded");
        assert!(w.shared.home.runtime.load().actions.has_ip_actions());
        assert!(!w.command_results["bad"].status);
        assert!(
            w.command_results["bad"]
                .output
                .starts_with("invalid actionspack answer")
        );
        assert_eq!(
            w.command_results["down"].output,
            "actionspack failed: status 503"
        );
    }

    /// The abandon thresholds are what the module docs say: 8 failures over
    /// 10 minutes.
    #[test]
    fn abandon_thresholds() {
        assert_eq!(MAX_FAILED_ATTEMPTS, 8);
        assert_eq!(MIN_FAILING_TIME, Duration::from_secs(600));
    }

    /// The next wake-up is the login time without a session, and the
    /// earliest of beat, staleness and retry with one; none while a call runs.
    #[test]
    fn next_wakeup_follows_the_schedule() {
        let mut w = worker(10);
        assert_eq!(w.next_wakeup(), w.login_at);
        w.session = Some("s".to_owned());
        let now = Instant::now();
        w.next_beat = now + Duration::from_secs(50);
        assert_eq!(w.next_wakeup(), w.next_beat);
        w.pending_since = Some(now);
        w.max_staleness = Duration::from_secs(20);
        assert_eq!(w.next_wakeup(), now + Duration::from_secs(20));
        w.retry.push_back(event(1));
        w.retry_at = now + Duration::from_secs(5);
        assert_eq!(w.next_wakeup(), w.retry_at);
        w.in_flight = Some(Box::pin(async { (Op::Logout, answer(200, "")) }));
        assert!(w.next_wakeup() > now + Duration::from_secs(3000));
    }
}
