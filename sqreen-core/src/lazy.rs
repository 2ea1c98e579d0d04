//! [`LazyAgent`]: the agent an adapter reports to, found when the first
//! request comes rather than when the middleware is built, so that building
//! the application before or after `sqreen::init` behaves the same.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::agent::{Agent, announce_framework};

/// The agent a middleware reports to: one given to it, or the
/// [global](Agent::global) agent, looked up on each request until
/// [`init`](crate::init) has registered one and kept from then on.
///
/// Once found, [`get`](Self::get) is one atomic load. Until then each
/// request looks for it (a load of the global slot) and, finding none, is
/// passed through: the first such request logs a warning.
///
/// The framework named here is reported at the agent's login, whichever of
/// the middleware and `init` comes first.
///
/// ```
/// use sqreen_core::LazyAgent;
///
/// // Built before `init`: no agent yet, requests pass through.
/// let agent = LazyAgent::global("my-framework", "1.0");
/// assert!(agent.get().is_none());
/// let _guard = sqreen_core::init(sqreen_core::Config::default()); // an agent that is off
/// assert!(agent.get().is_some_and(|a| !a.is_enabled()));
/// ```
#[derive(Debug)]
pub struct LazyAgent {
    agent: OnceLock<Agent>,
    framework: (&'static str, &'static str),
    warned: AtomicBool,
}

impl Clone for LazyAgent {
    /// A copy that has found the agent if this one has.
    fn clone(&self) -> Self {
        Self {
            agent: self.agent.clone(),
            framework: self.framework,
            warned: AtomicBool::new(self.warned.load(Ordering::Relaxed)),
        }
    }
}

impl LazyAgent {
    /// The global agent, now or once `init` has run; reports `framework`
    /// `version` at its login.
    pub fn global(framework: &'static str, version: &'static str) -> Self {
        announce_framework(framework, version);
        Self {
            agent: OnceLock::new(),
            framework: (framework, version),
            warned: AtomicBool::new(false),
        }
    }

    /// Always `agent` (tests, applications running several agents);
    /// reports `framework` `version` at its login.
    pub fn fixed(agent: Agent, framework: &'static str, version: &'static str) -> Self {
        agent.set_framework(framework, version);
        Self {
            agent: OnceLock::from(agent),
            framework: (framework, version),
            warned: AtomicBool::new(false),
        }
    }

    /// Uses `agent` from now on, unless an agent was found already (then
    /// false): for a middleware that starts its own agent.
    pub fn set(&self, agent: Agent) -> bool {
        agent.set_framework(self.framework.0, self.framework.1);
        self.agent.set(agent).is_ok()
    }

    /// The agent, if there is one yet.
    #[inline]
    pub fn get(&self) -> Option<&Agent> {
        match self.agent.get() {
            Some(agent) => Some(agent),
            None => self.find(),
        }
    }

    #[cold]
    fn find(&self) -> Option<&Agent> {
        match Agent::global() {
            Some(agent) => {
                let agent = self.agent.get_or_init(|| agent);
                agent.set_framework(self.framework.0, self.framework.1);
                Some(agent)
            }
            None => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "sqreen::agent",
                        event = "middleware.no_agent",
                        framework = self.framework.0,
                        "a request arrived before sqreen::init: requests pass through \
                         unrecorded until the agent is started"
                    );
                }
                None
            }
        }
    }
}
