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
            self.capacity = n;
        }
        // A full batch must fit in what may wait, whichever feature moved:
        // otherwise only staleness would ever send, and events would be
        // dropped before a batch filled.
        self.capacity = self.capacity.max(self.batch_size);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::tests::worker;
    use super::*;

    fn login_answer(features: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "status": true,
            "session_id": "sess",
            "features": features,
        }))
        .expect("JSON")
    }

    /// The login body carries every field the protocol asks for, with the
    /// framework an adapter announced and the app name.
    #[test]
    fn login_body_has_the_protocol_fields() {
        let w = worker(10);
        *w.shared.framework.lock().expect("framework") =
            Some(("axum".to_owned(), "0.8".to_owned()));
        let body: Value = serde_json::from_slice(&w.login_body()).expect("JSON body");
        assert_eq!(body["agent_type"], "rust");
        assert_eq!(body["agent_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            body["os_type"],
            format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
        );
        assert!(body["hostname"].is_string());
        assert_eq!(body["runtime_version"], env!("CARGO_PKG_RUST_VERSION"));
        assert_eq!(body["framework_type"], "axum");
        assert_eq!(body["framework_version"], "0.8");
        assert_eq!(body["environment"], "");
        let infos = &body["various_infos"];
        assert_eq!(infos["pid"], std::process::id());
        assert_eq!(infos["name"], "unit");
        let time = infos["time"].as_str().expect("a time");
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    }

    /// Without a framework announced, the framework fields are empty.
    #[test]
    fn login_body_without_framework() {
        let w = worker(10);
        let body: Value = serde_json::from_slice(&w.login_body()).expect("JSON body");
        assert_eq!(body["framework_type"], "");
        assert_eq!(body["framework_version"], "");
    }

    /// A successful login sets the session, applies the features, enables
    /// recording and marks the agent ready.
    #[test]
    fn login_applies_features() {
        let mut w = worker(10);
        w.login_backoff.step();
        let body = login_answer(json!({
            "heartbeat_delay": 30, "batch_size": 50, "max_staleness": 5,
            "event_queue_length": 200, "batch_gzip": true,
        }));
        assert!(w.on_login(true, &body, ""));
        assert_eq!(w.session.as_deref(), Some("sess"));
        assert_eq!(w.heartbeat_delay, Duration::from_secs(30));
        assert_eq!((w.batch_size, w.retry_records), (50, 50));
        assert_eq!(w.max_staleness, Duration::from_secs(5));
        assert_eq!(w.capacity, 200);
        assert_eq!(w.shared.home.queue_limit.load(Ordering::Relaxed), 200);
        assert!(w.batch_gzip);
        assert_eq!(w.login_backoff.next, Duration::from_secs(1));
        assert!(w.shared.enabled.load(Ordering::Relaxed));
        assert!(*w.shared.ready.0.lock().expect("ready"));
        let counters = &w.shared.home.counters;
        assert_eq!(counters.login_state(), LoginState::LoggedIn);
        let stats = counters.snapshot();
        assert_eq!((stats.login_attempts, stats.logins), (1, 1));
    }

    /// Hostile feature values are clamped: delays to a day, the batch size
    /// to the protocol's limit, the queue to a million; zeros are ignored.
    #[test]
    fn login_clamps_hostile_features() {
        let mut w = worker(10);
        let body = login_answer(json!({
            "heartbeat_delay": u64::MAX, "batch_size": u64::MAX,
            "max_staleness": u64::MAX, "event_queue_length": u64::MAX,
        }));
        assert!(w.on_login(true, &body, ""));
        assert_eq!(w.heartbeat_delay, Duration::from_secs(86_400));
        assert_eq!(w.max_staleness, Duration::from_secs(86_400));
        assert_eq!(w.batch_size, limits::MAX_BATCH_EVENTS);
        assert_eq!(w.capacity, 1_000_000);
        assert_eq!(w.shared.home.queue_limit.load(Ordering::Relaxed), 1_000_000);

        let mut w = worker(10);
        let defaults = (w.heartbeat_delay, w.max_staleness, w.capacity);
        let body = login_answer(json!({
            "heartbeat_delay": 0, "batch_size": 0, "max_staleness": 0,
            "event_queue_length": 0,
        }));
        assert!(w.on_login(true, &body, ""));
        assert_eq!(w.batch_size, 10, "zero keeps the configured value");
        assert_eq!((w.heartbeat_delay, w.max_staleness, w.capacity), defaults);
    }

    /// The waiting-events bound never falls below the batch size.
    #[test]
    fn login_queue_length_is_at_least_the_batch_size() {
        let mut w = worker(10);
        let body = login_answer(json!({"batch_size": 500, "event_queue_length": 20}));
        assert!(w.on_login(true, &body, ""));
        assert_eq!(w.capacity, 500);
        assert_eq!(w.shared.home.queue_limit.load(Ordering::Relaxed), 20);
    }

    /// A larger batch size alone raises the waiting-events bound too.
    #[test]
    fn batch_size_alone_raises_the_bound() {
        let mut w = worker(10);
        let body = login_answer(json!({"batch_size": 500}));
        assert!(w.on_login(true, &body, ""));
        assert_eq!(w.batch_size, 500);
        assert!(w.capacity >= 500, "capacity {}", w.capacity);
    }

    /// Absent features keep the configuration's values.
    #[test]
    fn login_without_features_keeps_the_config() {
        let mut w = worker(10);
        let before = (w.heartbeat_delay, w.batch_size, w.max_staleness, w.capacity);
        assert!(w.on_login(true, br#"{"status":true,"session_id":"s"}"#, ""));
        assert_eq!(
            (w.heartbeat_delay, w.batch_size, w.max_staleness, w.capacity),
            before
        );
        assert!(!w.batch_gzip);
    }

    /// A refused, failed or unreadable login leaves the agent logged out
    /// and retries with backoff; only an unreadable answer is a bad answer.
    #[test]
    fn failed_logins_back_off() {
        let mut w = worker(10);
        let cases: [(bool, &[u8]); 4] = [
            (true, br#"{"status":false,"error":"bad token"}"#),
            (true, br#"{"status":true,"session_id":""}"#),
            (true, b"<html>"),
            (false, b""),
        ];
        for (ok, body) in cases {
            let before = Instant::now();
            assert!(!w.on_login(ok, body, "status 500"));
            assert_eq!(w.session, None);
            assert!(w.login_at >= before);
        }
        assert_eq!(w.login_backoff.next, Duration::from_secs(16));
        let stats = w.shared.home.counters.snapshot();
        assert_eq!((stats.login_attempts, stats.logins), (4, 0));
        assert_eq!(stats.bad_backend_answers, 1);
        assert!(!w.shared.enabled.load(Ordering::Relaxed));
        assert!(!*w.shared.ready.0.lock().expect("ready"));
    }

    /// A re-login while instrumentation is removed stays paused.
    #[test]
    fn login_keeps_a_paused_agent_paused() {
        let mut w = worker(10);
        w.shared.home.counters.set_login_state(LoginState::Paused);
        assert!(w.on_login(true, &login_answer(json!({})), ""));
        assert_eq!(w.shared.home.counters.login_state(), LoginState::Paused);
        assert!(!w.shared.enabled.load(Ordering::Relaxed));
        assert!(w.session.is_some());
    }

    /// The login answer's actions are loaded and its commands run.
    #[test]
    fn login_loads_actions_and_runs_commands() {
        let mut w = worker(10);
        let body = serde_json::to_vec(&json!({
            "status": true, "session_id": "s",
            "actions": [{"action_id": "a", "action": "block_ip",
                "parameters": {"ip_cidr": ["192.0.2.0/24"]}}],
            "commands": [{"name": "paths_whitelist", "uuid": "c", "params": [["/health"]]}],
        }))
        .expect("JSON");
        assert!(w.on_login(true, &body, ""));
        let runtime = w.shared.home.runtime.load();
        assert!(runtime.actions.has_ip_actions());
        assert_eq!(&*runtime.path_passlist, ["/health".to_owned()]);
        assert!(w.command_results["c"].status);
    }
}
