//! The session: the login request, what the backend's login answer sets
//! (session, features, actions), and the login features applied.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sqreen_protocol::limits;

use crate::protocol::{LoginRequest, LoginResponse, VariousInfos, format_time};
use crate::stats::{LoginState, bump};

use super::Worker;

impl Worker {
    /// The body of the login request.
    pub(super) fn login_body(&self) -> Vec<u8> {
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

    /// Handles the login answer; true when the agent is logged in.
    pub(super) fn on_login(&mut self, ok: bool, body: &[u8], problem: &str) -> bool {
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

    /// Applies the login answer's `features` (heartbeat, batching, queue length, gzip).
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
}
