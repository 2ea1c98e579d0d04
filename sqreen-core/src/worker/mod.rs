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

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use serde_json::Value;
use sqreen_protocol::limits;
use tokio::sync::mpsc;

use crate::actions::{ActionStore, parse_cidr};
use crate::encode::{EventSettings, SensitiveHeaders, TimeText, request_record};
use crate::metrics::{MetricKind, MetricStores};
use crate::model::{Entry, RuntimeState};
use crate::protocol::{
    ACTIONSPACK_PATH, ActionsPack, BATCH_PATH, BEAT_PATH, BeatRequest, BeatResponse, Command,
    CommandResult, LOGIN_PATH, LOGOUT_PATH, LoginRequest, LoginResponse, Metric, VariousInfos,
    format_time,
};
use crate::record::{RecordInner, StoredHeaders, wake_threshold};
use crate::scrub::{Scrubber, ScrubberError};
use crate::shared::{Control, Reply, Shared};
use crate::stats::{LoginState, bump};
use crate::transport::{ApiMethod, ApiRequest, ApiResponse, BoxFuture, Transport, TransportError};

/// How long the first login waits for an adapter to name the framework.
const FIRST_LOGIN_GRACE: Duration = Duration::from_millis(250);

/// How long queued records wait for the agent thread at most, unless
/// [`wake_threshold`] records are queued first. Events wait for a batch far
/// longer than this anyway (`max_staleness`, 60 s by default).
const DRAIN_TICK: Duration = Duration::from_millis(20);

/// Most emptied event buffers kept for reuse (about 1 KB each).
const SPARE_BUFFERS: usize = 1024;

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

/// One request record, already serialised and scrubbed (see
/// [`crate::encode`]), with its number of `track` entries (what the backend
/// counts as events).
#[derive(Debug, Default)]
struct EventJson {
    json: Vec<u8>,
    tracks: usize,
}

/// Body of `POST /sqreen/v0/batch`: `{"batch":[e1,e2,…]}` from events that
/// are already JSON, copied once.
fn batch_body(events: &[EventJson]) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"batch\":[";
    let len = HEAD.len() + 2 + events.iter().map(|e| e.json.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(HEAD);
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&event.json);
    }
    body.extend_from_slice(b"]}");
    body
}

/// How many of `events`, from the front, make one batch: at most `records`
/// records, the protocol's events (tracks) and the agent's batch bytes,
/// and always at least one.
fn batch_len<'a>(events: impl Iterator<Item = &'a EventJson>, records: usize) -> usize {
    let (mut n, mut tracks, mut bytes) = (0, 0, 16);
    for e in events.take(records.max(1)) {
        tracks += e.tracks;
        bytes += e.json.len() + 1;
        if n > 0 && (tracks > limits::MAX_BATCH_EVENTS || bytes > limits::AGENT_BATCH_BYTES) {
            break;
        }
        n += 1;
    }
    n
}

/// `body` gzip-compressed (fast level: batches are JSON, which shrinks
/// several times even so), or `None` if compression failed.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

/// How the backend's answer to a batch is handled.
#[derive(Debug, PartialEq, Eq)]
enum BatchOutcome {
    Delivered,
    /// 401: the session is gone; kept for after the next login.
    SessionLost,
    /// 400 or 413: something in the batch is refused; split it.
    Refused,
    /// 429, 503, a network error or a timeout: kept, backing off.
    Unavailable,
    /// Any other answer: kept for a few attempts, then abandoned.
    Failed,
}

/// A batch answered [`BatchOutcome::Failed`] is abandoned once it has
/// failed this many times in a row…
const MAX_FAILED_ATTEMPTS: u32 = 8;
/// … over at least this long (flushes retry at once, so attempts alone
/// would pass quickly).
const MIN_FAILING_TIME: Duration = Duration::from_secs(600);

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

    // ── records ────────────────────────────────────────────────────────

    /// Drains the queue when its tick is due, and decides when to drain next.
    ///
    /// Records are drained in bulk every [`DRAIN_TICK`] while they come in,
    /// not one wake-up per record: on a loaded core, a context switch per
    /// tracked request costs more than building its event. With the queue
    /// empty, the thread marks itself idle and the next record wakes it
    /// ([`Shared::enqueue`]).
    fn schedule_drain(&mut self, now: Instant) {
        if self.drain_at.is_some_and(|at| now >= at) {
            self.drain_at = None;
            self.drain_queue();
        }
        if self.drain_at.is_some() {
            return;
        }
        if self.shared.home.queue_len.load(Ordering::SeqCst) > 0 {
            self.drain_at = Some(now + DRAIN_TICK);
            return;
        }
        // SeqCst: a record enqueued after this store sees the flag and
        // wakes us; one enqueued before it is seen by the re-read below.
        self.shared.home.worker_idle.store(true, Ordering::SeqCst);
        if self.shared.home.queue_len.load(Ordering::SeqCst) > 0 {
            self.shared.home.worker_idle.store(false, Ordering::SeqCst);
            self.drain_at = Some(now + DRAIN_TICK);
        }
    }

    /// A wake-up from [`Shared::enqueue`]: the first record after idling
    /// starts the drain tick; a queue filling up is drained at once.
    fn on_wake(&mut self) {
        self.shared.home.worker_idle.store(false, Ordering::SeqCst);
        let limit = self.shared.home.queue_limit.load(Ordering::Relaxed);
        if self.shared.home.queue_len.load(Ordering::Relaxed) >= wake_threshold(limit) {
            self.drain_queue();
        } else if self.drain_at.is_none() {
            self.drain_at = Some(Instant::now() + DRAIN_TICK);
        }
    }

    // ── records ────────────────────────────────────────────────────────

    fn process(&mut self, record: &RecordInner) {
        self.shared.home.queue_len.fetch_sub(1, Ordering::Relaxed);
        if record.is_pending() {
            // Recorded through a handle that no extractor handed out (see
            // `RequestSlot::handle`): events and metrics are kept
            // without the request's fields (its client IP included) rather
            // than dropped.
            bump(&self.shared.home.counters.invalid_sdk_input, 1);
            if self.shared.home.sdk_warnings.allow() {
                tracing::warn!(
                    target: "sqreen::sdk",
                    event = "sdk.request_not_captured",
                    "SDK calls were recorded on a request whose details were never captured \
                     (a handle not taken through the adapter's extractor): its events and \
                     login/signup metrics are kept without the request (no path, no client IP)"
                );
            }
        }
        let state = record.state();
        let client_ip = record.client_ip.or_else(|| {
            self.shared.resolver.resolve(
                &StoredHeaders(&state.request, self.shared.home.ip_header.as_deref()),
                state.request.peer.map(|p| p.ip()),
            )
        });
        let mut tracks = 0;
        let mut observed = false;
        for entry in &state.entries {
            let (kind, ids) = match entry {
                Entry::Auth { success: true, ids } => (MetricKind::LoginSuccess, ids),
                Entry::Auth {
                    success: false,
                    ids,
                } => (MetricKind::LoginFail, ids),
                Entry::Signup { ids } => (MetricKind::Signup, ids),
                Entry::Track { .. } => {
                    tracks += 1;
                    continue;
                }
                Entry::Identify { .. } => continue,
            };
            self.metrics.add(
                kind,
                ids.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                client_ip,
            );
            observed = true;
        }
        if observed {
            self.publish_metric_losses();
        }
        if tracks == 0 {
            return;
        }
        let (event, report) = request_record(
            self.spare.pop().unwrap_or_default(),
            &mut self.times,
            record,
            &state,
            client_ip,
            &EventSettings {
                scrubber: &self.scrubber,
                sensitive_headers: &self.sensitive_headers,
                ip_header: self.shared.home.ip_header.as_deref(),
                strip_referer: self.shared.config.strip_http_referer,
                resolver: &self.shared.resolver,
            },
        );
        drop(state);
        let counters = &self.shared.home.counters;
        bump(&counters.values_scrubbed, report.scrubbed);
        if report.invalid_input > 0 {
            bump(&counters.invalid_request_input, report.invalid_input);
            if self.shared.home.input_warnings.allow() {
                tracing::warn!(target: "sqreen::request", event = "request.invalid_input",
                    skipped = report.invalid_input,
                    "request fields that are not valid UTF-8 or JSON were left out of a record");
            }
        }
        if event.len() > limits::MAX_RECORD_BYTES {
            // Thousands of long, escaped properties: no backend would take
            // it, and it would hold up the batches behind it.
            bump(&counters.invalid_sdk_input, 1);
            if self.shared.home.sdk_warnings.allow() {
                tracing::warn!(target: "sqreen::sdk", event = "sdk.record_too_large",
                    bytes = event.len(), max = limits::MAX_RECORD_BYTES,
                    "a request tracked more than one record may carry; it is dropped");
            }
            return;
        }
        #[cfg(feature = "otel")]
        if let Some(otel) = &self.otel {
            otel.export(&event);
        }
        self.pending.push(EventJson {
            json: event,
            tracks,
        });
        self.pending_since.get_or_insert_with(Instant::now);
        self.enforce_capacity();
    }

    /// Keeps pending + retry within `capacity`, dropping the oldest first.
    fn enforce_capacity(&mut self) {
        let mut over = (self.pending.len() + self.retry.len()).saturating_sub(self.capacity);
        if over == 0 {
            self.update_pending_gauge();
            return;
        }
        let dropped = over as u64;
        let from_retry = over.min(self.retry.len());
        self.retry.drain(..from_retry);
        over -= from_retry;
        self.pending.drain(..over.min(self.pending.len()));
        bump(
            &self.shared.home.counters.events_dropped_retry_buffer,
            dropped,
        );
        if self.shared.home.queue_warnings.allow() {
            tracing::warn!(target: "sqreen::batch", event = "batch.buffer_full", dropped,
                capacity = self.capacity,
                "events waiting for the backend exceed the buffer: oldest dropped");
        }
        self.update_pending_gauge();
    }

    fn update_pending_gauge(&self) {
        self.shared.home.counters.events_pending.store(
            (self.pending.len() + self.retry.len()) as u64,
            Ordering::Relaxed,
        );
    }

    fn drain_queue(&mut self) {
        while let Ok(record) = self.rx.try_recv() {
            self.process(&record);
            self.shared.home.recycle(record);
        }
        self.drain_at = None;
    }

    // ── scheduling ─────────────────────────────────────────────────────

    fn flushing(&self) -> bool {
        !self.flush_waiters.is_empty()
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

    fn take_pending_batch(&mut self) -> Op {
        let n = batch_len(self.pending.iter(), self.batch_size);
        let events: Vec<EventJson> = self.pending.drain(..n).collect();
        self.pending_since = if self.pending.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        self.update_pending_gauge();
        Op::Batch {
            events,
            retried: false,
        }
    }

    /// The next heartbeat: every command result, and the metrics that fit
    /// what is left of the protocol's heartbeat size (the rest follow in
    /// the next heartbeats, sent at once).
    fn beat_op(&mut self, now: SystemTime) -> Op {
        self.next_beat = Instant::now() + self.heartbeat_delay;
        let results = std::mem::take(&mut self.command_results);
        let results_size = serde_json::to_vec(&results).map_or(0, |r| r.len());
        // Room for the envelope and the estimate's slack.
        let budget = limits::MAX_BEAT_BYTES.saturating_sub(results_size + 16 * 1024);
        let metrics = self.metrics.take(now, budget, limits::MAX_METRIC_STORES);
        self.metrics_left = !self.metrics.is_empty();
        Op::Beat { results, metrics }
    }

    /// Publishes the metric stores' losses in the agent's stats.
    fn publish_metric_losses(&self) {
        let counters = &self.shared.home.counters;
        counters
            .metric_keys_folded
            .store(self.metrics.folded, Ordering::Relaxed);
        counters
            .metric_observations_dropped
            .store(self.metrics.dropped, Ordering::Relaxed);
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

    // ── calls ──────────────────────────────────────────────────────────

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

    fn login_body(&self) -> Vec<u8> {
        let config = &self.shared.config;
        let (framework_type, framework_version) = self
            .shared
            .framework
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default()
            .unwrap_or_default();
        let body = LoginRequest {
            agent_type: "rust",
            agent_version: env!("CARGO_PKG_VERSION"),
            os_type: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            runtime_version: env!("CARGO_PKG_RUST_VERSION"),
            framework_type,
            framework_version,
            environment: String::new(),
            various_infos: VariousInfos {
                time: format_time(self.started),
                pid: std::process::id(),
                name: config.app_name.clone().unwrap_or_default(),
            },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Runs one call to completion (shutdown path).
    async fn run_op(&mut self, op: Op) -> bool {
        let (op, result) = self.start_op(op).await;
        self.handle(op, result)
    }

    // ── results ────────────────────────────────────────────────────────

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

    /// Handles a batch's outcome (see [`BatchOutcome`]).
    fn on_batch(
        &mut self,
        events: Vec<EventJson>,
        retried: bool,
        outcome: BatchOutcome,
        problem: &str,
    ) {
        let counters = &self.shared.home.counters;
        if outcome == BatchOutcome::Delivered {
            bump(&counters.events_sent, events.len() as u64);
            bump(&counters.batches_sent, 1);
            self.retry_backoff.reset();
            self.failed_attempts = 0;
            self.failing_since = None;
            self.retry_records = self.retry_records.saturating_mul(2).min(self.batch_size);
            tracing::debug!(target: "sqreen::batch", event = "batch.sent",
                events = events.len(), retried, "batch delivered");
            // Delivered events' buffers are written over by the next
            // events instead of being freed and allocated again.
            let room = SPARE_BUFFERS.saturating_sub(self.spare.len());
            self.spare.extend(events.into_iter().take(room).map(|e| {
                let mut json = e.json;
                json.clear();
                json
            }));
            return;
        }
        bump(&counters.batches_failed, 1);
        let n = events.len();
        let keep = match outcome {
            BatchOutcome::Refused if n == 1 => {
                bump(&counters.events_refused, 1);
                if self.shared.home.queue_warnings.allow() {
                    tracing::warn!(target: "sqreen::batch", event = "batch.event_refused",
                        problem = %problem,
                        "the backend refuses one event on its own: it is dropped");
                }
                false
            }
            BatchOutcome::Refused => {
                // Send halves until the refused event is alone.
                bump(&counters.batches_split, 1);
                self.retry_records = n.div_ceil(2);
                self.retry_at = Instant::now();
                tracing::debug!(target: "sqreen::batch", event = "batch.split", events = n,
                    problem = %problem, "batch refused; sending it in halves");
                true
            }
            BatchOutcome::Failed
                if self.failed_attempts + 1 >= MAX_FAILED_ATTEMPTS
                    && self
                        .failing_since
                        .is_some_and(|t| t.elapsed() >= MIN_FAILING_TIME) =>
            {
                self.failed_attempts = 0;
                self.failing_since = None;
                bump(&counters.events_abandoned, n as u64);
                tracing::error!(target: "sqreen::batch", event = "batch.abandoned", events = n,
                    attempts = MAX_FAILED_ATTEMPTS, problem = %problem,
                    "batch failed too many times: its events are dropped");
                false
            }
            BatchOutcome::Failed | BatchOutcome::Unavailable | BatchOutcome::SessionLost => {
                if outcome == BatchOutcome::Failed {
                    self.failed_attempts = self.failed_attempts.saturating_add(1);
                    self.failing_since.get_or_insert_with(Instant::now);
                }
                if self.flushing() {
                    self.flush_failed = true;
                }
                let delay = self.retry_backoff.step();
                self.retry_at = Instant::now() + delay;
                tracing::warn!(target: "sqreen::batch", event = "batch.failed",
                    events = n, problem = %problem,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "batch not delivered; kept for retry");
                true
            }
            BatchOutcome::Delivered => false,
        };
        if keep {
            for event in events.into_iter().rev() {
                self.retry.push_front(event);
            }
            self.enforce_capacity();
        } else {
            self.update_pending_gauge();
        }
    }

    fn bad_answer(&self, call: &'static str, error: &str) {
        bump(&self.shared.home.counters.bad_backend_answers, 1);
        tracing::warn!(target: "sqreen::protocol", event = "protocol.bad_answer", call,
            error, "backend answer could not be understood");
    }

    fn on_login(&mut self, ok: bool, body: &[u8], problem: &str) -> bool {
        let shared = Arc::clone(&self.shared);
        let counters = &shared.home.counters;
        bump(&counters.login_attempts, 1);
        let answer = if ok {
            match serde_json::from_slice::<LoginResponse>(body) {
                Ok(a) if a.status && !a.session_id.is_empty() => Ok(a),
                Ok(a) => Err(if a.error.is_empty() {
                    "login refused".to_owned()
                } else {
                    format!("login refused: {}", a.error)
                }),
                Err(e) => {
                    self.bad_answer("app-login", &e.to_string());
                    Err(format!("invalid login answer: {e}"))
                }
            }
        } else {
            Err(problem.to_owned())
        };
        let login = match answer {
            Ok(login) => login,
            Err(error) => {
                let delay = self.login_backoff.step();
                self.login_at = Instant::now() + delay;
                tracing::warn!(target: "sqreen::login", event = "login.failed", error = %error,
                    token = self.shared.config.redacted_token().as_deref().unwrap_or(""),
                    retry_in_s = delay.as_secs(), "sqreen login failed; retrying with backoff");
                return false;
            }
        };
        bump(&counters.logins, 1);
        self.session = Some(login.session_id);
        self.login_backoff.reset();
        self.retry_at = Instant::now();
        self.apply_features(&login.features);
        self.next_beat = Instant::now() + self.heartbeat_delay;
        self.load_actions(&login.actions);
        if counters.login_state() != LoginState::Paused {
            counters.set_login_state(LoginState::LoggedIn);
            self.shared.enabled.store(true, Ordering::Relaxed);
        }
        tracing::info!(target: "sqreen::login", event = "login.ok",
            heartbeat_delay_s = self.heartbeat_delay.as_secs(), batch_size = self.batch_size,
            "sqreen agent logged in");
        self.execute_commands(login.commands);
        self.shared.set_ready(true);
        true
    }

    fn apply_features(&mut self, features: &crate::protocol::Features) {
        self.batch_gzip = features.batch_gzip;
        if let Some(s) = features.heartbeat_delay {
            self.heartbeat_delay = Duration::from_secs(s.min(86_400));
        }
        if let Some(n) = features.batch_size {
            self.batch_size = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .clamp(1, limits::MAX_BATCH_EVENTS);
            self.retry_records = self.batch_size;
        }
        if let Some(s) = features.max_staleness {
            self.max_staleness = Duration::from_secs(s.min(86_400));
        }
        if let Some(n) = features.event_queue_length {
            let n = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, 1_000_000);
            self.shared.home.queue_limit.store(n, Ordering::Relaxed);
            self.capacity = n.max(self.batch_size);
        }
    }

    fn load_actions(&mut self, actions: &[Value]) -> usize {
        let (store, errors) = ActionStore::from_json(
            actions,
            Instant::now(),
            self.shared.config.ipv6_action_prefix,
        );
        for e in &errors {
            self.bad_answer("actions", &e.to_string());
        }
        let loaded = actions
            .len()
            .min(limits::MAX_ACTIONS)
            .saturating_sub(errors.iter().filter(|e| !e.is_too_many()).count());
        let current = self.shared.home.runtime.load();
        self.shared.set_runtime(current.with_actions(store));
        tracing::info!(target: "sqreen::actions", event = "actions.loaded", loaded,
            skipped = errors.len(), "security actions loaded");
        loaded
    }

    // ── commands ───────────────────────────────────────────────────────

    fn execute_commands(&mut self, commands: Vec<Value>) {
        for raw in commands {
            let command: Command = match serde_json::from_value(raw) {
                Ok(c) => c,
                Err(e) => {
                    self.bad_answer("command", &e.to_string());
                    continue;
                }
            };
            bump(&self.shared.home.counters.commands_executed, 1);
            tracing::info!(target: "sqreen::commands", event = "command.received",
                name = %command.name, uuid = %command.uuid, "executing backend command");
            let uuid = (!command.uuid.is_empty()).then(|| command.uuid.clone());
            let result = match command.name.as_str() {
                sqreen_protocol::commands::ACTIONS_RELOAD => {
                    // Reported once the action pack arrives.
                    self.reload_actions = Some(uuid);
                    continue;
                }
                "ips_whitelist" => self.set_ip_passlist(&command.params),
                "paths_whitelist" => self.set_path_passlist(&command.params),
                "instrumentation_enable" => {
                    self.shared.enabled.store(true, Ordering::Relaxed);
                    self.shared
                        .home
                        .counters
                        .set_login_state(LoginState::LoggedIn);
                    Ok("instrumentation enabled".to_owned())
                }
                "instrumentation_remove" => {
                    self.shared.enabled.store(false, Ordering::Relaxed);
                    self.shared
                        .home
                        .counters
                        .set_login_state(LoginState::Paused);
                    let current = self.shared.home.runtime.load();
                    self.shared
                        .set_runtime(current.with_actions(ActionStore::default()));
                    Ok("instrumentation removed".to_owned())
                }
                _ => Err("command is not supported".to_owned()),
            };
            if let Some(uuid) = uuid {
                let (status, output) = match result {
                    Ok(o) => (true, o),
                    Err(o) => (false, o),
                };
                self.command_results
                    .insert(uuid, CommandResult { status, output });
            }
        }
    }

    fn string_list(params: &[Value]) -> Result<Vec<String>, String> {
        let list = params
            .first()
            .and_then(Value::as_array)
            .ok_or_else(|| "params[0] must be a list of strings".to_owned())?;
        list.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("not a string: {v}"))
            })
            .collect()
    }

    fn set_ip_passlist(&mut self, params: &[Value]) -> Result<String, String> {
        let list = Self::string_list(params)?;
        let nets = list
            .iter()
            .map(|c| parse_cidr(c).ok_or_else(|| format!("invalid CIDR `{c}`")))
            .collect::<Result<Vec<IpNet>, String>>()?;
        let n = nets.len();
        let current = self.shared.home.runtime.load();
        self.shared.set_runtime(RuntimeState {
            actions: Arc::clone(&current.actions),
            ip_passlist: nets.into(),
            path_passlist: Arc::clone(&current.path_passlist),
        });
        Ok(format!("{n} IP ranges passlisted"))
    }

    fn set_path_passlist(&mut self, params: &[Value]) -> Result<String, String> {
        let paths = Self::string_list(params)?;
        let n = paths.len();
        let current = self.shared.home.runtime.load();
        self.shared.set_runtime(RuntimeState {
            actions: Arc::clone(&current.actions),
            ip_passlist: Arc::clone(&current.ip_passlist),
            path_passlist: paths.into(),
        });
        Ok(format!("{n} paths passlisted"))
    }

    // ── flush and shutdown ─────────────────────────────────────────────

    fn begin_flush(&mut self, deadline: Instant, reply: Reply) {
        self.drain_queue();
        if self.session.is_none() {
            reply.send(self.pending.is_empty() && self.retry.is_empty());
            return;
        }
        if self.flush_waiters.is_empty() {
            self.flush_failed = false;
        }
        self.flush_waiters.push((deadline, reply));
        self.check_flush_done();
    }

    fn batch_in_flight(&self) -> bool {
        // A login or beat in flight holds no events; a batch does.
        self.in_flight.is_some() && self.in_flight_batch
    }

    fn check_flush_done(&mut self) {
        if self.flush_waiters.is_empty() {
            return;
        }
        let drained = self.pending.is_empty() && self.retry.is_empty();
        if self.flush_failed || (drained && !self.batch_in_flight()) {
            let ok = !self.flush_failed;
            for (_, reply) in self.flush_waiters.drain(..) {
                reply.send(ok);
            }
            self.flush_failed = false;
        }
    }

    fn expire_flush_waiters(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.flush_waiters.len() {
            if self.flush_waiters[i].0 <= now {
                let (_, reply) = self.flush_waiters.swap_remove(i);
                reply.send(false);
            } else {
                i += 1;
            }
        }
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
