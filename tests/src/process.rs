//! The example apps as real processes: each binary is started with its
//! agent pointed at a protocol backend on 127.0.0.1 (`sqreen-test-backend`),
//! driven over HTTP, then stopped with SIGTERM.
//!
//! Checks the examples' contract end to end: configuration from `SQREEN_*`
//! and `ADDR`, the routes' statuses, IP actions loaded from the backend,
//! events and metrics delivered, and SIGTERM → graceful shutdown → final
//! flush and logout → exit status 0.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sqreen::test::{ObservationKind, TrackedEvent, UserObservation};
use sqreen_test_backend::TestBackend;

const WAIT: Duration = Duration::from_secs(30);

/// Kills the child if the scenario fails half-way.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Polls `f` until it yields `Some`, at most [`WAIT`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the example binary at `bin` against a real backend and checks it.
pub fn run_example_process(bin: &str) {
    let backend = TestBackend::start();
    backend.set_actions(json!([{"action_id": "proc-block", "action": "block_ip",
        "parameters": {"ip_cidr": ["203.0.113.0/24"]}}]));
    let port = free_port();
    let child = Command::new(bin)
        .env("ADDR", format!("127.0.0.1:{port}"))
        .env("SQREEN_TOKEN", "process-test-token")
        .env("SQREEN_APP_NAME", "process-test")
        .env("SQREEN_URL", backend.url())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("the example binary starts");
    let mut guard = Guard(Some(child));
    let base = format!("http://127.0.0.1:{port}");
    let http = crate::client();

    // Up, and logged in: the blocked range is answered 403 by the agent.
    eventually("the app to answer", || {
        http.get(format!("{base}/"))
            .send()
            .ok()
            .filter(|r| r.status() == 200)
    });
    eventually("the agent to enforce its actions", || {
        http.get(format!("{base}/"))
            .header("X-Forwarded-For", "203.0.113.9")
            .send()
            .ok()
            .filter(|r| r.status() == 403)
    });

    let r = http
        .post(format!("{base}/track"))
        .header("X-Forwarded-For", "81.2.69.160")
        .json(&json!({"event": "process.event", "properties": {"k": "v"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/track"))
        .header("Content-Type", "application/json")
        .body("[]")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/login"))
        .header("X-Forwarded-For", "81.2.69.161")
        .form(&[("username", "bob"), ("password", "nope")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/signup"))
        .form(&[("username", "dora"), ("password", "pw")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);

    // SIGTERM: graceful stop, agent flush, exit status 0.
    let mut child = guard.0.take().expect("child still owned");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = eventually("the app to exit", || child.try_wait().ok().flatten());
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM");

    let (login, token, app) = backend.with(|s| s.logins[0].clone());
    assert_eq!(token, "process-test-token");
    assert_eq!(app, "process-test");
    assert_eq!(login["agent_type"], "rust");
    let framework = login["framework_type"].as_str().unwrap_or_default();
    assert!(
        bin.contains(&format!("example-{framework}")) && !framework.is_empty(),
        "login reports the framework, got {framework:?}"
    );
    let tracked = TrackedEvent::from_records(&backend.events());
    let names: Vec<&str> = tracked.iter().map(|e| e.name.as_str()).collect();
    for expected in ["process.event", "user.signup", "sq.action.block_ip"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let fails = UserObservation::from_metrics(&backend.with(|s| s.metrics()));
    let fails: Vec<&UserObservation> = fails
        .iter()
        .filter(|o| o.kind == ObservationKind::LoginFailure)
        .collect();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert_eq!(
        fails[0].user_identifiers,
        [("username".to_owned(), "bob".to_owned())]
    );
    assert_eq!(fails[0].client_ip, "81.2.69.161");
    assert_eq!(fails[0].count, 1);
    assert_eq!(backend.with(|s| s.logouts), 1, "logout at shutdown");
}
