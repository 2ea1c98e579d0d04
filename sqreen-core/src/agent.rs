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

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::mpsc;

use crate::config::{Config, ConfigError};
use crate::open::Open;
use crate::record::RequestRecord;
use crate::request::RequestInfo;
use crate::sdk::{SqreenUser, TrackEvent};
use crate::shared::{Control, Reply, Shared};
use crate::stats::{LoginState, Stats};
use crate::transport::{HttpTransport, Transport};
use crate::worker::Worker;

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
            .field("state", &self.inner.home.counters.login_state())
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
        shared.home.counters.set_login_state(LoginState::LoggingIn);
        let shared = Arc::new(shared);
        let worker = match Worker::new(Arc::clone(&shared), transport, rx, control_rx) {
            Ok(worker) => worker,
            Err(e) => {
                tracing::error!(target: "sqreen::agent", event = "agent.config_error", error = %e,
                    "sqreen agent stays off: invalid configuration");
                shared.home.counters.set_login_state(LoginState::Off);
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
                shared.home.counters.set_login_state(LoginState::Off);
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
        self.inner.home.counters.snapshot()
    }

    /// Whether an adapter should buffer this request's body for capture:
    /// the agent is recording, the body is a urlencoded form or JSON, and its
    /// declared `Content-Length` is within `body_capture_limit`.
    ///
    /// Bodies without a declared length (chunked) are not captured, so the
    /// adapter never has to buffer an unbounded stream; the handler always
    /// receives the body intact.
    pub fn wants_body(&self, content_type: Option<&str>, content_length: Option<u64>) -> bool {
        self.is_enabled()
            && content_length
                .is_some_and(|len| len > 0 && len <= self.inner.home.body_capture_limit as u64)
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
            Arc::clone(&shared.home),
            shared.home.new_detached_record(),
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
        shared.home.counters.set_login_state(LoginState::ShutDown);
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
        shared.home.counters.set_login_state(LoginState::ShutDown);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
