//! The agent: what adapters call on every request, and the handle to the
//! agent thread.
//!
//! ```text
//!  request path (any thread)                     agent thread (its own runtime)
//!  ───────────────────────────                   ──────────────────────────────
//!  Agent::open ── pass / respond / request slot
//!  handler: track_event, identify …
//!  RequestSlot::close ── has entries? ─ try_send ─▶ queue ─▶ resolve IP, parse,
//!                         no: back to the pool        (bounded)  scrub, serialise
//!                                                              ─▶ batch ─▶ backend
//!  slot opens   ◀── a cleared record ◀── pool ◀──────────────── the record, done
//!  Agent::flush / guard drop ── control ─────────────────────▶ flush / shutdown
//!  ◀── actions, passlists (ArcSwap) ◀──────────────────────── heartbeat commands
//! ```
//!
//! The request path takes no lock shared between requests and never waits:
//! a full queue drops the record and counts it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use crossbeam_queue::ArrayQueue;
use ipnet::IpNet;
use tokio::sync::{Notify, mpsc};

use crate::actions::ActionStore;
use crate::client_ip::ClientIpResolver;
use crate::config::{Config, ConfigError};
use crate::open::Open;
use crate::record::{RecordInner, RequestRecord};
use crate::request::RequestInfo;
use crate::sdk::{SqreenUser, TrackEvent};
use crate::stats::{Counters, LoginState, Stats, WarnLimiter, bump};
use crate::transport::{HttpTransport, Transport};
use crate::worker::{Control, Reply, Worker};

/// What the request path reads on every request, swapped whole by the agent
/// thread when the backend sends new actions or passlists.
#[derive(Debug, Default)]
pub(crate) struct RuntimeState {
    pub actions: Arc<ActionStore>,
    pub ip_passlist: Arc<[IpNet]>,
    pub path_passlist: Arc<[String]>,
}

impl RuntimeState {
    /// True when requests must be looked at before they are recorded: a
    /// path or IP passlist, or IP actions, are loaded.
    fn looks_at_requests(&self) -> bool {
        !self.ip_passlist.is_empty()
            || self.actions.has_ip_actions()
            || !self.path_passlist.is_empty()
    }

    pub fn with_actions(&self, actions: ActionStore) -> Self {
        Self {
            actions: Arc::new(actions),
            ip_passlist: Arc::clone(&self.ip_passlist),
            path_passlist: Arc::clone(&self.path_passlist),
        }
    }
}

/// State shared by the agent handle, every request record and the agent thread.
pub(crate) struct Shared {
    pub config: Config,
    pub counters: Counters,
    pub sdk_warnings: WarnLimiter,
    pub input_warnings: WarnLimiter,
    pub queue_warnings: WarnLimiter,
    pub ip_header: Option<String>,
    pub body_capture_limit: usize,
    pub blocking_status: u16,
    pub resolver: ClientIpResolver,
    /// Read through [`Shared::looks_at_requests`] first on the request path;
    /// written through [`Shared::set_runtime`] only.
    pub runtime: ArcSwap<RuntimeState>,
    /// [`RuntimeState::looks_at_requests`] of `runtime`: most agents have
    /// nothing loaded, and their requests then skip the `ArcSwap` load.
    looks_at_requests: AtomicBool,
    /// True while requests are recorded: logged in and instrumentation on.
    pub enabled: AtomicBool,
    pub queue_len: AtomicUsize,
    pub queue_limit: AtomicUsize,
    /// Set by the agent thread when it waits with an empty queue: the next
    /// record wakes it (see [`Shared::enqueue`]).
    pub worker_idle: AtomicBool,
    /// Wakes the agent thread: a first record after idling, or a queue
    /// filling up. Otherwise records wait for the thread's next drain tick.
    pub wake: Notify,
    pub framework: Mutex<Option<(String, String)>>,
    /// Cleared records waiting to be filled by the next requests (see
    /// [`crate::record`]): they hold only a weak reference to this agent.
    pool: ArrayQueue<Arc<RecordInner>>,
    tx: Option<std::sync::mpsc::Sender<Arc<RecordInner>>>,
    control: Option<mpsc::UnboundedSender<Control>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    ready: (Mutex<bool>, Condvar),
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        tx: Option<std::sync::mpsc::Sender<Arc<RecordInner>>>,
    ) -> Self {
        let resolver = ClientIpResolver::new(
            config.ip_header.as_deref(),
            config.ip_header_format,
            config.trusted_proxies.clone(),
        );
        Self {
            counters: Counters::default(),
            sdk_warnings: WarnLimiter::default(),
            input_warnings: WarnLimiter::default(),
            queue_warnings: WarnLimiter::default(),
            ip_header: config.ip_header.clone(),
            body_capture_limit: config.body_capture_limit,
            blocking_status: config.blocking_status,
            resolver,
            runtime: ArcSwap::from_pointee(RuntimeState::default()),
            looks_at_requests: AtomicBool::new(false),
            enabled: AtomicBool::new(false),
            queue_len: AtomicUsize::new(0),
            queue_limit: AtomicUsize::new(config.event_queue_length),
            worker_idle: AtomicBool::new(false),
            wake: Notify::new(),
            framework: Mutex::new(None),
            pool: ArrayQueue::new(config.event_queue_length.clamp(1, MAX_POOLED_RECORDS)),
            tx,
            control: None,
            thread: Mutex::new(None),
            ready: (Mutex::new(false), Condvar::new()),
            config,
        }
    }

    /// A record of this agent holding what the protocol needs of `info`: a
    /// pooled one when there is one, else a new one.
    pub fn new_record(
        self: &Arc<Self>,
        info: &RequestInfo<'_>,
        client_ip: Option<IpAddr>,
    ) -> Arc<RecordInner> {
        if let Some(mut record) = self.pool.pop()
            && let Some(inner) = Arc::get_mut(&mut record)
        {
            inner.fill(self, info, client_ip);
            return record;
        }
        Arc::new(RecordInner::capture(self, info, client_ip))
    }

    /// True when something loaded (a passlist, an IP action) must see each
    /// request: read before the `ArcSwap` of [`Shared::runtime`].
    pub fn looks_at_requests(&self) -> bool {
        self.looks_at_requests.load(Ordering::Acquire)
    }

    /// Replaces the actions and passlists requests are checked against.
    pub fn set_runtime(&self, state: RuntimeState) {
        let looks = state.looks_at_requests();
        self.runtime.store(Arc::new(state));
        self.looks_at_requests.store(looks, Ordering::Release);
    }

    /// A pooled or new record, for a request that started at `start`,
    /// opened without copying the request ([`RecordInner::defer`]).
    pub fn new_deferred_record(
        self: &Arc<Self>,
        start: SystemTime,
        client_ip: Option<IpAddr>,
    ) -> Arc<RecordInner> {
        if let Some(mut record) = self.pool.pop()
            && let Some(inner) = Arc::get_mut(&mut record)
        {
            inner.defer(start, client_ip);
            return record;
        }
        let mut inner = RecordInner::blank(self);
        inner.defer(start, client_ip);
        Arc::new(inner)
    }

    /// A pooled or new record for events tracked outside any request
    /// ([`RecordInner::detach`]).
    pub fn new_detached_record(self: &Arc<Self>) -> Arc<RecordInner> {
        let start = SystemTime::now();
        if let Some(mut record) = self.pool.pop()
            && let Some(inner) = Arc::get_mut(&mut record)
        {
            inner.detach(start);
            return record;
        }
        let mut inner = RecordInner::blank(self);
        inner.detach(start);
        Arc::new(inner)
    }

    /// Clears a record nobody else holds and puts it back in the pool; a
    /// record still referenced (a handle kept past the request), too large,
    /// or beyond the pool's capacity is simply dropped.
    pub fn recycle(&self, mut record: Arc<RecordInner>) {
        if let Some(inner) = Arc::get_mut(&mut record)
            && inner.reset()
        {
            let _ = self.pool.push(record);
        }
    }

    /// Hands a closed record to the agent thread without ever waiting.
    ///
    /// The agent thread is not woken for every record: a context switch per
    /// tracked request would cost more than turning the record into an
    /// event. It drains the queue on a short tick while records come in
    /// ([`crate::worker`]), and is woken here only when it idles with an
    /// empty queue or when [`wake_threshold`] records wait.
    pub fn enqueue(&self, record: Arc<RecordInner>) {
        let Some(tx) = &self.tx else {
            return;
        };
        let limit = self.queue_limit.load(Ordering::Relaxed);
        // SeqCst pairs with the agent thread's store of `worker_idle` and
        // its re-read of `queue_len`: one of the two sides sees the other.
        let before = self.queue_len.fetch_add(1, Ordering::SeqCst);
        let dropped = if before < limit {
            match tx.send(record) {
                Ok(()) => {
                    bump(&self.counters.records_queued, 1);
                    let filling = before + 1 == wake_threshold(limit);
                    if filling
                        || (self.worker_idle.load(Ordering::SeqCst)
                            && self.worker_idle.swap(false, Ordering::SeqCst))
                    {
                        self.wake.notify_one();
                    }
                    return;
                }
                Err(std::sync::mpsc::SendError(record)) => record,
            }
        } else {
            record
        };
        self.recycle(dropped);
        self.queue_len.fetch_sub(1, Ordering::Relaxed);
        bump(&self.counters.records_dropped_queue_full, 1);
        if self.queue_warnings.allow() {
            tracing::warn!(
                target: "sqreen::queue",
                event = "queue.full",
                limit,
                dropped_total = self.counters.records_dropped_queue_full.load(Ordering::Relaxed),
                "event queue full: request record dropped (further warnings suppressed for 10 s)"
            );
        }
    }

    /// How many cleared records wait in the pool.
    #[cfg(test)]
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    /// Marks the first login done and wakes [`Agent::wait_ready`] callers.
    pub fn set_ready(&self, ready: bool) {
        let (lock, cvar) = &self.ready;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = ready;
        cvar.notify_all();
    }
}

/// The agent: cheap to clone, shared by the middleware of every framework.
///
/// Created by [`init`] (which also registers it as the [global](Agent::global)
/// agent adapters use by default) or [`Agent::start`]. When the agent is
/// off — no token, `disable`, an invalid configuration — every method is a
/// cheap no-op and [`open`](Agent::open) always passes.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("state", &self.inner.counters.login_state())
            .finish_non_exhaustive()
    }
}

static GLOBAL: ArcSwapOption<Shared> = ArcSwapOption::const_empty();

/// The framework a middleware built before [`init`] announced: `init`
/// gives it to the agent it starts, so that its login reports it.
static PENDING_FRAMEWORK: std::sync::Mutex<Option<(&'static str, &'static str)>> =
    std::sync::Mutex::new(None);

/// Tells the global agent which framework serves the application, or, when
/// none is running yet, the next one [`init`] starts.
pub(crate) fn announce_framework(name: &'static str, version: &'static str) {
    match Agent::global() {
        Some(agent) => agent.set_framework(name, version),
        None => {
            *PENDING_FRAMEWORK.lock().unwrap_or_else(|p| p.into_inner()) = Some((name, version));
        }
    }
}

/// Registers `guard`'s agent as the global one, with the framework a
/// middleware announced before.
pub(crate) fn register_global(guard: &AgentGuard) {
    let pending = PENDING_FRAMEWORK
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some((name, version)) = pending {
        guard.agent.set_framework(name, version);
    }
    GLOBAL.store(Some(Arc::clone(&guard.agent.inner)));
}

impl Agent {
    /// Starts an agent that talks to its backend through `transport`,
    /// without registering it globally. Tests and applications running
    /// several agents use this; most applications call [`init`].
    pub fn start(config: Config, transport: Arc<dyn Transport>) -> AgentGuard {
        if !config.is_enabled() {
            tracing::info!(
                target: "sqreen::agent",
                event = "agent.off",
                "sqreen agent is off (no token, or `disable` set); every SDK call is a no-op"
            );
            return AgentGuard::new(Self::off(config));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let mut shared = Shared::new(config, Some(tx));
        shared.control = Some(control_tx);
        shared.counters.set_login_state(LoginState::LoggingIn);
        let shared = Arc::new(shared);
        let worker = match Worker::new(Arc::clone(&shared), transport, rx, control_rx) {
            Ok(worker) => worker,
            Err(e) => {
                tracing::error!(target: "sqreen::agent", event = "agent.config_error", error = %e,
                    "sqreen agent stays off: invalid configuration");
                shared.counters.set_login_state(LoginState::Off);
                return AgentGuard::new(Self { inner: shared });
            }
        };
        let spawned = std::thread::Builder::new()
            .name("sqreen-agent".into())
            .spawn(move || worker.run_blocking());
        match spawned {
            Ok(handle) => {
                *shared.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
                tracing::info!(
                    target: "sqreen::agent",
                    event = "agent.started",
                    url = %shared.config.url,
                    token = shared.config.redacted_token().as_deref().unwrap_or(""),
                    "sqreen agent started"
                );
                if shared.config.trusted_proxies.is_empty() {
                    tracing::warn!(
                        target: "sqreen::agent",
                        event = "agent.client_ip_spoofable",
                        "`trusted_proxies` is not set: client IPs are read from proxy headers \
                         (X-Forwarded-For…) that any client can write, so a client can choose the \
                         IP it is recorded and blocked under. Set `trusted_proxies` \
                         (SQREEN_TRUSTED_PROXIES) to the proxies in front of the application, or \
                         to an address no peer has when none is"
                    );
                }
            }
            Err(e) => {
                tracing::error!(target: "sqreen::agent", event = "agent.thread_error", error = %e,
                    "sqreen agent stays off: cannot start its thread");
                shared.counters.set_login_state(LoginState::Off);
            }
        }
        AgentGuard::new(Self { inner: shared })
    }

    /// The agent of this shared state.
    #[cfg(test)]
    pub(crate) fn from_shared(inner: Arc<Shared>) -> Self {
        Self { inner }
    }

    /// An agent that is off: every call is a no-op.
    pub fn off(config: Config) -> Self {
        Self {
            inner: Arc::new(Shared::new(config, None)),
        }
    }

    /// The agent registered by the last [`init`], if it is still running.
    pub fn global() -> Option<Agent> {
        GLOBAL.load_full().map(|inner| Agent { inner })
    }

    /// The configuration the agent runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Tells the backend which framework serves the application (adapters
    /// call this when they are built; reported at login). The first login
    /// waits up to 250 ms for it, so an adapter built right after [`init`]
    /// is reported.
    pub fn set_framework(&self, name: &str, version: &str) {
        *self
            .inner
            .framework
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((name.to_owned(), version.to_owned()));
        if let Some(control) = &self.inner.control {
            let _ = control.send(Control::FrameworkSet);
        }
    }

    /// True while requests are recorded (logged in, instrumentation on).
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    /// Blocks until the first login succeeded, at most `timeout`; true if it did.
    ///
    /// Until then requests pass through untouched. Applications need not
    /// wait; tests and demos that must see their first requests recorded do.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let (lock, cvar) = &self.inner.ready;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |ready| !*ready)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    /// A snapshot of the agent's counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Whether an adapter should buffer this request's body for capture:
    /// the agent is recording, the body is a urlencoded form or JSON, and its
    /// declared `Content-Length` is within `body_capture_limit`.
    ///
    /// Bodies without a declared length (chunked) are not captured, so the
    /// adapter never has to buffer an unbounded stream; the handler always
    /// receives the body intact.
    pub fn wants_body(&self, content_type: Option<&str>, content_length: Option<u64>) -> bool {
        let limit = self.inner.body_capture_limit as u64;
        self.is_enabled()
            && content_length.is_some_and(|len| len > 0 && len <= limit)
            && content_type.is_some_and(is_capturable_type)
    }

    /// True when [`open`](Self::open) must see the request now: a path
    /// passlist, an IP passlist or IP actions are loaded. Otherwise `open`
    /// never calls its `request` argument (without a body), so an adapter
    /// that pays to build the request's view (warp's filters clone what they
    /// extract) builds it only when this is true.
    pub fn checks_requests(&self) -> bool {
        self.inner.looks_at_requests()
    }

    /// Opens a request: decides what happens to it ([`Open`]) and, when it
    /// is recorded, hands the adapter its [`RequestSlot`](crate::RequestSlot).
    ///
    /// `request` builds the adapter's view of the request. It is called at
    /// most once, and only when the request must be seen now: to check a
    /// loaded path passlist, IP passlist or IP action, or to copy it with
    /// `body`, the request body the adapter buffered for capture (a form or
    /// JSON body that [`wants_body`](Self::wants_body) accepted), which is
    /// the handler's afterwards. Otherwise nothing is copied, nor even
    /// opened, until a handler asks for the handle
    /// ([`RequestSlot::handle_with`](crate::RequestSlot::handle_with)).
    ///
    /// In this order: agent off or path/IP passlisted → [`Open::Pass`]; IP
    /// under a block/redirect action → [`Open::Respond`]; otherwise
    /// [`Open::Request`]. The client IP is resolved here only when IP
    /// passlists or IP actions are loaded; otherwise on the agent thread.
    ///
    /// ```
    /// use sqreen_core::{Agent, Config, Open, RequestInfo, ResponseInfo, Sqreen};
    ///
    /// fn serve(agent: &Agent, headers: &[(&str, &str)], path: &str) -> u16 {
    ///     let request = || RequestInfo::new("GET", path, &headers);
    ///     match agent.open(request, None) {
    ///         Open::Pass => handler(Sqreen::disabled()),
    ///         Open::Respond(response) => response.status(),
    ///         Open::Request(mut slot) => {
    ///             // The handler's extractor asks for the handle:
    ///             let status = handler(slot.handle_with(request));
    ///             slot.close(ResponseInfo::new(status));
    ///             status
    ///         }
    ///     }
    /// }
    /// fn handler(sq: Sqreen) -> u16 {
    ///     sq.track_event("page.viewed");
    ///     200
    /// }
    /// # assert_eq!(serve(&Agent::off(Config::default()), &[], "/"), 200);
    /// ```
    ///
    /// What is copied is the request as the extractor sees it: a middleware
    /// between the adapter's and the handler that rewrites the path or the
    /// headers changes what is recorded.
    pub fn open<'a>(
        &self,
        request: impl FnOnce() -> RequestInfo<'a>,
        body: Option<&'a [u8]>,
    ) -> Open {
        crate::open::open(&self.inner, request, body)
    }

    /// Starts a custom event outside any request (a background job, a queue
    /// consumer): the same builder as [`Sqreen::track_event`](crate::Sqreen::track_event), the same
    /// scrubbing, sent without a request context (no path, no client IP).
    /// The event is queued when the builder is dropped. A no-op while the
    /// agent is off.
    ///
    /// ```
    /// use sqreen_core::{Agent, Config};
    ///
    /// fn nightly_export(agent: &Agent, rows: usize) {
    ///     agent
    ///         .track_event("export.finished")
    ///         .with_properties([("rows", rows as i64)]);
    /// }
    /// # nightly_export(&Agent::off(Config::default()), 3);
    /// ```
    pub fn track_event(&self, name: impl AsRef<str>) -> TrackEvent<'static> {
        TrackEvent::detached(self.detached_record(), name.as_ref())
    }

    /// User-scoped calls outside any request: events about this user,
    /// login and signup counts (without a client IP), and
    /// [`identify`](SqreenUser::identify), which reports whether a playbook
    /// blocks the user. What they record is queued when the returned value
    /// (and every clone of it) is dropped.
    ///
    /// ```
    /// # let agent = sqreen_core::Agent::off(sqreen_core::Config::default());
    /// let user = agent.for_user([("uid", "42")]);
    /// user.track_event("subscription.renewed");
    /// if user.identify().is_err() {
    ///     // a playbook blocks this user: skip the renewal
    /// }
    /// ```
    pub fn for_user<I, K, V>(&self, identifiers: I) -> SqreenUser
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        SqreenUser::detached(self.detached_record(), identifiers)
    }

    /// A record for SDK calls outside any request; `None` when the agent
    /// does not record.
    fn detached_record(&self) -> Option<RequestRecord> {
        let shared = &self.inner;
        if !shared.enabled.load(Ordering::Relaxed) {
            return None;
        }
        Some(RequestRecord::new(
            Arc::clone(shared),
            shared.new_detached_record(),
        ))
    }

    /// Sends everything queued so far, waiting at most `timeout`; true when
    /// the backend acknowledged it all.
    ///
    /// Blocks the calling thread (the I/O runs on the agent's own thread, so
    /// this works from sync code and from inside any async runtime without
    /// deadlocking); in async code prefer [`flush_async`](Self::flush_async).
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(control) = &self.inner.control else {
            return true;
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let deadline = Instant::now() + timeout;
        if control
            .send(Control::Flush {
                deadline,
                reply: Reply::Sync(tx),
            })
            .is_err()
        {
            return false;
        }
        rx.recv_timeout(timeout).unwrap_or(false)
    }

    /// [`flush`](Self::flush) for async code: awaits without blocking the
    /// executor (any executor; the deadline is enforced by the agent thread).
    pub async fn flush_async(&self, timeout: Duration) -> bool {
        let Some(control) = &self.inner.control else {
            return true;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if control
            .send(Control::Flush {
                deadline: Instant::now() + timeout,
                reply: Reply::Async(tx),
            })
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Stops recording and takes the agent thread's handle: `None` when
    /// the agent is off or a shutdown already took it.
    fn begin_shutdown(
        &self,
    ) -> Option<(&mpsc::UnboundedSender<Control>, std::thread::JoinHandle<()>)> {
        let shared = &self.inner;
        shared.enabled.store(false, Ordering::Relaxed);
        let control = shared.control.as_ref()?;
        let handle = shared
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some((control, handle))
    }

    /// Runs the shutdown sequence — final batch, final heartbeat, logout —
    /// within `timeout`, then stops the agent thread. True when everything
    /// was delivered in time. Later calls do nothing and return true.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let shared = &self.inner;
        let Some((control, handle)) = self.begin_shutdown() else {
            return true;
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let delivered = control
            .send(Control::Shutdown {
                deadline: Instant::now() + timeout,
                reply: Reply::Sync(tx),
            })
            .is_ok()
            // A small margin past the deadline lets the thread report.
            && rx.recv_timeout(timeout + Duration::from_millis(200)).unwrap_or(false);
        if handle.is_finished() || delivered {
            let _ = handle.join();
        }
        shared.counters.set_login_state(LoginState::ShutDown);
        delivered
    }

    /// [`shutdown`](Self::shutdown) for async code (a framework's shutdown
    /// hook): awaits the final batch, heartbeat and logout without blocking
    /// the executor. The agent thread ends by itself once it has answered.
    pub async fn shutdown_async(&self, timeout: Duration) -> bool {
        let shared = &self.inner;
        let Some((control, _thread)) = self.begin_shutdown() else {
            return true;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let delivered = control
            .send(Control::Shutdown {
                deadline: Instant::now() + timeout,
                reply: Reply::Async(tx),
            })
            .is_ok()
            && rx.await.unwrap_or(false);
        shared.counters.set_login_state(LoginState::ShutDown);
        delivered
    }
}

/// Form and JSON bodies are the ones the protocol sends as parameters.
fn is_capturable_type(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    mime.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        || mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5 && mime.as_bytes()[mime.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// Keeps the agent running; dropping it flushes and shuts the agent down.
///
/// Keep it alive for the whole life of the application — typically as a
/// variable in `main` (`let _guard = sqreen::init(..)`, not `let _ = ..`,
/// which drops it at once). On drop it sends what is queued, a final
/// heartbeat and a logout, bounded by `shutdown_timeout` (default 5 s).
#[must_use = "the agent shuts down when its guard is dropped"]
#[derive(Debug)]
pub struct AgentGuard {
    agent: Agent,
}

impl AgentGuard {
    fn new(agent: Agent) -> Self {
        Self { agent }
    }

    /// The agent this guard keeps running.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }
}

impl std::ops::Deref for AgentGuard {
    type Target = Agent;
    fn deref(&self) -> &Agent {
        &self.agent
    }
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let current = GLOBAL.load();
        if current
            .as_ref()
            .is_some_and(|g| Arc::ptr_eq(g, &self.agent.inner))
        {
            GLOBAL.store(None);
        }
        drop(current);
        let timeout = self.agent.inner.config.shutdown_timeout;
        self.agent.shutdown(timeout);
    }
}

/// Starts the agent with the HTTP transport and registers it as the
/// [global](Agent::global) agent adapters use by default.
///
/// ```no_run
/// let _guard = sqreen_core::init(sqreen_core::Config::builder().token("my-token").build().unwrap());
/// // build and run the application; the guard flushes when main returns
/// ```
pub fn init(config: Config) -> AgentGuard {
    let guard = match HttpTransport::new(&config) {
        Ok(transport) => Agent::start(config, Arc::new(transport)),
        Err(e) => {
            tracing::error!(target: "sqreen::agent", event = "agent.transport_error", error = %e,
                "sqreen agent stays off: cannot set up the backend connection");
            AgentGuard::new(Agent::off(config))
        }
    };
    register_global(&guard);
    guard
}

/// [`Agent::track_event`] on the [global](Agent::global) agent: an event
/// outside any request (a background job, a queue consumer). A no-op
/// before [`init`], or while the agent is off.
///
/// ```
/// // In a tokio task, a cron job, a queue consumer…
/// sqreen_core::track_event("invoice.sent").with_properties([("invoice", "inv-42")]);
/// ```
pub fn track_event(name: impl AsRef<str>) -> TrackEvent<'static> {
    match Agent::global() {
        Some(agent) => agent.track_event(name),
        None => TrackEvent::detached(None, ""),
    }
}

/// [`Agent::for_user`] on the [global](Agent::global) agent: user-scoped
/// calls outside any request. A no-op before [`init`], or while the agent
/// is off.
///
/// ```
/// let user = sqreen_core::for_user([("uid", "42")]);
/// user.track_event("password.reset_email_sent");
/// ```
pub fn for_user<I, K, V>(identifiers: I) -> SqreenUser
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    match Agent::global() {
        Some(agent) => agent.for_user(identifiers),
        None => SqreenUser::detached(None, identifiers),
    }
}

/// [`init`] with the configuration from the file and the environment
/// ([`Config::from_env`]). An invalid configuration is logged, naming the
/// key, and the agent stays off: the application runs on unaffected.
pub fn init_from_env() -> AgentGuard {
    match Config::from_env() {
        Ok(config) => init(config),
        Err(e) => {
            log_config_error(&e);
            let guard = AgentGuard::new(Agent::off(Config::default()));
            register_global(&guard);
            guard
        }
    }
}

fn log_config_error(e: &ConfigError) {
    tracing::error!(
        target: "sqreen::agent",
        event = "agent.config_error",
        key = e.key().unwrap_or(""),
        error = %e,
        "invalid sqreen configuration: the agent stays off"
    );
}

/// Most records the pool keeps (fewer with a smaller event queue). On a
/// fully loaded core the agent thread may only run on its drain tick, so
/// the pool holds about one tick's records at 50 000 tracked requests a
/// second (20 ms × 50 000); a request that finds it empty allocates a
/// record (about 1 500 instructions more). A pooled record with one entry
/// takes 1–1.5 KB (1–1.5 MB for a full pool), at most about 4 KB (a 2 KiB
/// buffer and four entries; records with larger buffers are not pooled).
/// The pool does not shrink while the agent runs.
const MAX_POOLED_RECORDS: usize = 1024;

/// How many queued records wake the agent thread before its drain tick:
/// 256, or a quarter of a smaller queue. Small enough that the records
/// drained together are still in the CPU's caches (a 20 ms tick at 100 000
/// tracked requests/s would pile up megabytes of records), large enough
/// that a fully loaded core pays a wake-up for hundreds of records, not one.
pub(crate) fn wake_threshold(limit: usize) -> usize {
    (limit / 4).clamp(1, 256)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use compact_str::CompactString;

    use super::*;
    use crate::record::Entry;
    use crate::request::ResponseInfo;
    use crate::sdk::PropertyValue;

    fn shared_with_queue(
        limit: usize,
    ) -> (Arc<Shared>, std::sync::mpsc::Receiver<Arc<RecordInner>>) {
        let config = Config::builder()
            .token("t")
            .event_queue_length(limit)
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        (Arc::new(Shared::new(config, Some(tx))), rx)
    }

    /// With nobody draining the queue, records past the limit are dropped
    /// and counted, and enqueueing returns at once.
    #[test]
    fn full_queue_drops_newest_and_counts() {
        let (shared, rx) = shared_with_queue(2);
        let info = RequestInfo::new("GET", "/", &[("Host", "h")]);
        for _ in 0..5 {
            shared.enqueue(Arc::new(RecordInner::capture(&shared, &info, None)));
        }
        let stats = shared.counters.snapshot();
        assert_eq!(stats.records_queued, 2);
        assert_eq!(stats.records_dropped_queue_full, 3);
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
    }

    /// A recycled record is the same allocation, and carries nothing of the
    /// request it held before: every field is the new request's, entries,
    /// parameters, response and body are gone.
    #[test]
    fn recycled_record_keeps_nothing_of_the_last_request() {
        let (shared, _rx) = shared_with_queue(16);
        let first_headers = [
            ("Host", "first.example"),
            ("User-Agent", "first-agent"),
            ("Referer", "https://first.example/from"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let peer = "10.0.0.1:4000".parse().ok();
        let first = RequestInfo::new("POST", "/first", &first_headers)
            .query(Some("secret=1"))
            .peer(peer)
            .body(Some(b"password=hunter2"));
        let record = shared.new_record(&first, Some("203.0.113.7".parse().unwrap()));
        record.push(Entry::Track {
            time: SystemTime::now(),
            name: CompactString::const_new("first.event"),
            properties: smallvec::smallvec![(
                CompactString::const_new("k"),
                PropertyValue::from("v")
            )],
            user_identifiers: None,
            timestamp: None,
        });
        record.state().route_params.push(("id".into(), "7".into()));
        assert!(record.close(|| Some(ResponseInfo::new(201).content_type(Some("text/html")))));
        let first_ptr = Arc::as_ptr(&record);
        shared.recycle(record);
        assert_eq!(shared.pool.len(), 1);

        let second_headers = [("Host", "second.example")];
        let second = RequestInfo::new("GET", "/second", &second_headers);
        let record = shared.new_record(&second, None);
        assert_eq!(
            Arc::as_ptr(&record),
            first_ptr,
            "the pooled record is reused"
        );
        assert_eq!(record.client_ip, None);
        let state = record.state();
        assert_eq!(state.request.peer, None);
        let request = &state.request;
        assert_eq!(request.method_str(), "GET");
        assert_eq!(request.path_str(), "/second");
        assert_eq!(request.query_str(), None);
        assert_eq!(request.user_agent(), None);
        assert_eq!(request.referer(), None);
        assert_eq!(request.body(), None);
        let lines: Vec<_> = request.header_lines(None).collect();
        assert_eq!(lines, vec![("Host", &b"second.example"[..])]);
        assert!(state.entries.is_empty());
        assert!(state.route_params.is_empty());
        assert!(state.response.is_none());
        assert!(state.response_type.is_empty());
        assert!(state.end.is_none());
        assert!(!state.closed);
    }

    /// A deferred record copies nothing until it is asked to, then copies
    /// once; a record that never was is recycled like any other.
    #[test]
    fn deferred_record_copies_the_request_once_on_demand() {
        let (shared, _rx) = shared_with_queue(16);
        let peer = "10.0.0.1:4000".parse().ok();
        let headers = [("Host", "shop.example"), ("User-Agent", "ua/1")];
        let info = RequestInfo::new("POST", "/cart", &headers)
            .query(Some("item=3"))
            .peer(peer);
        let inner = shared.new_deferred_record(SystemTime::now(), None);
        let record = RequestRecord::new(Arc::clone(&shared), Arc::clone(&inner));
        assert!(record.needs_request());
        let handle = record.handle();
        assert_eq!(inner.state().request.method_str(), "", "nothing copied yet");
        assert_eq!(inner.state().request.peer, None);
        record.capture_request(|| info);
        assert!(!record.needs_request());
        // A second capture (another extractor, another request) changes
        // nothing, and does not even build the request's view.
        record.capture_request(|| panic!("not called once copied"));
        {
            let state = inner.state();
            assert_eq!(state.request.method_str(), "POST");
            assert_eq!(state.request.path_str(), "/cart");
            assert_eq!(state.request.query_str(), Some("item=3"));
            assert_eq!(state.request.user_agent(), Some(&b"ua/1"[..]));
            assert_eq!(state.request.peer, peer);
        }
        drop((handle, inner));
        record.close(ResponseInfo::new(200));
        assert_eq!(shared.pool.len(), 1, "untracked: back in the pool");

        // The pooled record opens deferred again, with nothing of the last request.
        let again = shared.new_deferred_record(SystemTime::now(), None);
        assert!(again.is_pending());
        {
            let state = again.state();
            assert_eq!(state.request.path_str(), "");
            assert_eq!(state.request.peer, None);
            // Not even an empty query or user agent: the event of a record
            // never copied reports no field.
            assert_eq!(state.request.query_str(), None);
            assert_eq!(state.request.host_str(), None);
            assert_eq!(state.request.user_agent(), None);
            assert_eq!(state.request.header_lines(None).count(), 0);
        }
        // Closed before any capture: capturing afterwards does nothing.
        assert!(!again.close(|| None));
        again.capture_request(&info);
        assert!(again.is_pending());
        assert_eq!(again.state().request.path_str(), "");
    }

    /// A handle that outlives its request (a framework's request-local
    /// cache) puts the record back in the pool when it drops last.
    #[test]
    fn last_handle_recycles_a_closed_record() {
        let (shared, _rx) = shared_with_queue(16);
        let info = RequestInfo::new("GET", "/", &[("Host", "h")]);
        let record = RequestRecord::new(Arc::clone(&shared), shared.new_record(&info, None));
        let handle = record.handle();
        let copy = handle.clone();
        record.close(ResponseInfo::new(200));
        assert_eq!(shared.pool.len(), 0, "the handles still hold the record");
        drop(copy);
        assert_eq!(shared.pool.len(), 0);
        drop(handle);
        assert_eq!(shared.pool.len(), 1, "the last handle recycled it");
    }

    /// A record still referenced elsewhere (a handle kept past its request)
    /// is not pooled, and the pool never holds more than its capacity.
    #[test]
    fn shared_or_surplus_records_are_not_pooled() {
        let (shared, _rx) = shared_with_queue(2);
        let info = RequestInfo::new("GET", "/", &[("Host", "h")]);
        let record = shared.new_record(&info, None);
        let kept = Arc::clone(&record);
        shared.recycle(record);
        assert_eq!(shared.pool.len(), 0);
        drop(kept);
        for _ in 0..5 {
            shared.recycle(Arc::new(RecordInner::capture(&shared, &info, None)));
        }
        assert_eq!(
            shared.pool.len(),
            2,
            "the pool is bounded by the queue's length"
        );
    }

    /// Only form and JSON content types are capturable.
    #[test]
    fn capturable_types() {
        for ok in [
            "application/json",
            "application/JSON; charset=utf-8",
            "application/x-www-form-urlencoded",
            "application/vnd.api+json",
        ] {
            assert!(is_capturable_type(ok), "{ok}");
        }
        for no in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "",
            "json",
            "+json",
            "é+jso",
            "ééé",
        ] {
            assert!(!is_capturable_type(no), "{no}");
        }
    }

    /// An agent that is off passes every request and flushes trivially.
    #[test]
    fn off_agent_passes() {
        let agent = Agent::off(Config::default());
        assert!(matches!(
            agent.open(|| RequestInfo::new("GET", "/", &[("Host", "h")]), None),
            Open::Pass
        ));
        assert!(agent.flush(Duration::from_millis(1)));
        assert!(agent.shutdown(Duration::from_millis(1)));
        assert!(!agent.wait_ready(Duration::from_millis(1)));
    }
}
