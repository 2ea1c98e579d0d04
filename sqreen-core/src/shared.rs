//! [`Shared`]: the state of one agent, shared by its handle
//! ([`Agent`](crate::Agent)), the opener of requests and the agent thread;
//! and [`Control`], the messages the handle sends that thread.
//!
//! What request records need of it is in its [`Home`] (`Shared::home`),
//! the one interface between records and the agent (see `crate::record`):
//! records never see the rest (the configuration, the enabled flag, the
//! control channel, the agent thread).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::client_ip::ClientIpResolver;
use crate::config::Config;
use crate::model::RuntimeState;
use crate::record::{Home, RecordSender};

/// Where a flush or shutdown reports its outcome.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A blocking caller ([`Agent::flush`](crate::Agent::flush)).
    Sync(std::sync::mpsc::SyncSender<bool>),
    /// An async caller ([`Agent::flush_async`](crate::Agent::flush_async)).
    Async(tokio::sync::oneshot::Sender<bool>),
}

impl Reply {
    /// Tells the caller the outcome; a caller that gave up is ignored.
    pub fn send(self, ok: bool) {
        match self {
            Reply::Sync(tx) => {
                let _ = tx.try_send(ok);
            }
            Reply::Async(tx) => {
                let _ = tx.send(ok);
            }
        }
    }
}

/// Messages from the agent handle to the agent thread.
#[derive(Debug)]
pub(crate) enum Control {
    /// An adapter named the framework: the first login need not wait longer.
    FrameworkSet,
    /// Send everything queued by `deadline`, then reply.
    Flush {
        /// When to give up.
        deadline: Instant,
        /// Where the outcome goes.
        reply: Reply,
    },
    /// Final batch, heartbeat and logout by `deadline`, then reply and stop.
    Shutdown {
        /// When to give up.
        deadline: Instant,
        /// Where the outcome goes.
        reply: Reply,
    },
}

/// State shared by the agent handle, the opener and the agent thread.
pub(crate) struct Shared {
    /// The configuration the agent runs with.
    pub config: Config,
    /// What request records see of the agent: pool, queue, counters,
    /// capture settings, runtime state.
    pub home: Arc<Home>,
    /// Resolves client IPs from the request's headers and peer.
    pub resolver: ClientIpResolver,
    /// [`RuntimeState::looks_at_requests`] of `home.runtime`: most agents
    /// have nothing loaded, and their requests then skip the `ArcSwap` load.
    looks_at_requests: AtomicBool,
    /// True while requests are recorded: logged in and instrumentation on.
    pub enabled: AtomicBool,
    /// The framework an adapter announced (name, version), for the login.
    pub framework: Mutex<Option<(String, String)>>,
    /// The channel to the agent thread; `None` for an agent that is off.
    pub control: Option<mpsc::UnboundedSender<Control>>,
    /// The agent thread, taken by the first shutdown.
    pub thread: Mutex<Option<JoinHandle<()>>>,
    /// True once the first login succeeded, with its waiters.
    pub ready: (Mutex<bool>, Condvar),
}

impl Shared {
    /// The state of an agent running with `config`, queueing its records
    /// to `tx` (`None`: an agent that is off).
    pub(crate) fn new(config: Config, tx: Option<RecordSender>) -> Self {
        let resolver = ClientIpResolver::new(
            config.ip_header.as_deref(),
            config.ip_header_format,
            config.trusted_proxies.clone(),
        );
        Self {
            home: Arc::new(Home::new(&config, tx)),
            resolver,
            looks_at_requests: AtomicBool::new(false),
            enabled: AtomicBool::new(false),
            framework: Mutex::new(None),
            control: None,
            thread: Mutex::new(None),
            ready: (Mutex::new(false), Condvar::new()),
            config,
        }
    }

    /// True when something loaded (a passlist, an IP action) must see each
    /// request: read before the `ArcSwap` of [`Home::runtime`].
    pub fn looks_at_requests(&self) -> bool {
        self.looks_at_requests.load(Ordering::Acquire)
    }

    /// Replaces the actions and passlists requests are checked against.
    pub fn set_runtime(&self, state: RuntimeState) {
        let looks = state.looks_at_requests();
        self.home.runtime.store(Arc::new(state));
        self.looks_at_requests.store(looks, Ordering::Release);
    }

    /// Marks the first login done and wakes [`Agent::wait_ready`](crate::Agent::wait_ready) callers.
    pub fn set_ready(&self, ready: bool) {
        let (lock, cvar) = &self.ready;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = ready;
        cvar.notify_all();
    }
}
