//! The conformance scenario: one script of real HTTP requests, run against
//! each framework's example app on 127.0.0.1, checking that every adapter
//! behaves the same way.
//!
//! Each framework's test (`tests/tests/<framework>.rs`) hands [`run`] a
//! function that serves the example app with a given agent; the scenario
//! drives the app with `reqwest`, and asserts on what the agent's in-memory
//! backend received.
//!
//! What it checks: every route's statuses, malformed bodies answered 400,
//! default request properties captured (client IP, user agent, path, verb), query/form/JSON parameters scrubbed, tracked events
//! with properties, identifiers and timestamp, `for_user`, auth metrics per
//! user and IP, IP block and redirect before the handler, user block through
//! `identify()`, records without `track` entries not sent, a disabled agent
//! passes through, 64 concurrent requests never mix their records, the
//! request body is still readable by the handler after capture, the
//! agent flushes at shutdown, and behind a trusted proxy the client's
//! address and scheme come from its headers.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // a test script

mod process;

pub use process::run_example_process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqreen::test::{CaptureBackend, ObservationKind, TrackedEvent, UserObservation, test_config};
use sqreen::{Agent, AgentGuard, Config};

/// Stops a running app (graceful shutdown, waiting for its thread).
pub type Stop = Box<dyn FnOnce() + Send>;

/// Serves the example app with `agent` on 127.0.0.1, any free port.
pub type Start = fn(Agent) -> (SocketAddr, Stop);

const MASK: &str = "<Redacted by Sqreen>";
const WAIT: Duration = Duration::from_secs(20);

/// An address whose requests a playbook blocked.
const BLOCKED_IP: &str = "203.0.113.5";
/// An address a playbook redirects.
const REDIRECTED_IP: &str = "198.51.100.7";

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

fn agent_with_actions() -> (AgentGuard, CaptureBackend) {
    let backend = CaptureBackend::new();
    backend.set_actions(json!([
        {"action_id": "blk-ip", "action": "block_ip", "parameters": {"ip_cidr": ["203.0.113.0/24"]}},
        {"action_id": "red-ip", "action": "redirect_ip",
         "parameters": {"ip_cidr": ["198.51.100.0/24"], "url": "https://example.com/blocked"}},
        {"action_id": "blk-user", "action": "block_user",
         "parameters": {"users": [{"username": "mallory"}]}}
    ]));
    let config = test_config().event_queue_length(100_000).build().unwrap();
    let guard = Agent::start(config, Arc::new(backend.clone()));
    assert!(guard.wait_ready(WAIT), "agent did not log in");
    (guard, backend)
}

/// The one event named `name`.
fn one(backend: &CaptureBackend, name: &str) -> TrackedEvent {
    backend
        .tracked_one(name)
        .unwrap_or_else(|| panic!("not exactly one {name} in {:#?}", backend.tracked()))
}

/// The one observation of `kind` for `username` from `ip`, or a panic.
fn observed(backend: &CaptureBackend, kind: ObservationKind, username: &str, ip: &str) -> u64 {
    let all = backend.observations_of(kind);
    let found: Vec<&UserObservation> = all
        .iter()
        .filter(|o| o.user("username") == Some(username) && o.client_ip == ip)
        .collect();
    assert_eq!(found.len(), 1, "{kind:?} of {username} from {ip}: {all:#?}");
    found[0].count
}

/// Runs the whole scenario against one framework's app.
pub fn run(start: Start) {
    tracked_requests_and_actions(start);
    disabled_agent_passes_through(start);
    behind_a_trusted_proxy(start);
}

/// Behind a trusted proxy (here 127.0.0.1), its `X-Forwarded-For` and
/// `X-Forwarded-Proto` name the client and its scheme; from anyone else
/// they would be ignored.
fn behind_a_trusted_proxy(start: Start) {
    let config = test_config()
        .trusted_proxies(["127.0.0.1/32"])
        .build()
        .unwrap();
    let backend = CaptureBackend::new();
    let guard = Agent::start(config, Arc::new(backend.clone()));
    assert!(guard.wait_ready(WAIT), "agent did not log in");
    let (addr, stop) = start(guard.agent().clone());
    let r = client()
        .post(format!("http://{addr}/track"))
        .header("X-Forwarded-For", "81.2.69.180")
        .header("X-Forwarded-Proto", "https")
        .json(&json!({"event": "behind.proxy"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    stop();
    drop(guard);
    let event = one(&backend, "behind.proxy");
    assert_eq!(event.client_ip, Some("81.2.69.180".parse().unwrap()));
    assert_eq!(event.request.as_ref().unwrap().scheme, "https");
}

fn tracked_requests_and_actions(start: Start) {
    let (guard, backend) = agent_with_actions();
    let (addr, stop) = start(guard.agent().clone());
    let base = format!("http://{addr}");
    let http = client();

    // A request that tracks nothing: 200, and never sent.
    let r = http
        .get(format!("{base}/"))
        .header("X-Forwarded-For", "81.2.69.160")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "ok");

    // A tracked event with properties, identifiers and a timestamp; the JSON
    // body is captured and still parsed by the handler.
    let r = http
        .post(format!("{base}/track?page=2&password=q-secret"))
        .header("X-Forwarded-For", "81.2.69.160")
        .header("User-Agent", "conformance/1")
        .json(&json!({
            "event": "order.placed",
            "properties": {"amount": 42, "card": "4111 1111 1111 1111", "gift": true},
            "user_identifiers": {"uid": "u-1"},
            "timestamp": "2026-11-24T10:00:00.000Z"
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap(), json!({"tracked": true}));

    // for_user.
    let r = http
        .post(format!("{base}/track"))
        .header("X-Forwarded-For", "81.2.69.160")
        .json(&json!({"event": "user.event", "for_user": {"username": "bob"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // Malformed bodies are 400s with a JSON error, and the app keeps serving.
    for bad in [
        "{not json",
        "{}",
        r#"{"event": ""}"#,
        r#"{"event": 5}"#,
        r#"{"event": "x", "properties": [1]}"#,
        r#"{"event": "x", "timestamp": "yesterday"}"#,
        r#"{"event": "x", "for_user": "bob"}"#,
    ] {
        let r = http
            .post(format!("{base}/track"))
            .header("Content-Type", "application/json")
            .body(bad)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.json::<Value>().unwrap()["error"].is_string(), "{bad}");
    }
    for (path, form) in [
        ("login", &[("username", "bob")][..]),
        ("login", &[("password", "pw")][..]),
        ("signup", &[("password", "pw")][..]),
    ] {
        let r = http
            .post(format!("{base}/{path}"))
            .form(form)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{path} {form:?}");
    }
    assert_eq!(http.get(format!("{base}/")).send().unwrap().status(), 200);

    // Auth metrics per user and IP; login records hold no `track` entry.
    for _ in 0..2 {
        let r = http
            .post(format!("{base}/login"))
            .header("X-Forwarded-For", "81.2.69.161")
            .form(&[("username", "bob"), ("password", "wrong")])
            .send()
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http
        .post(format!("{base}/login"))
        .header("X-Forwarded-For", "81.2.69.162")
        .form(&[("username", "alice"), ("password", "open-sesame")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // A user blocked by a playbook gets the block response through identify().
    let r = http
        .post(format!("{base}/login"))
        .header("X-Forwarded-For", "81.2.69.163")
        .form(&[("username", "mallory"), ("password", "open-sesame")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);

    // Signup: a metric and a custom event.
    let r = http
        .post(format!("{base}/signup"))
        .header("X-Forwarded-For", "81.2.69.164")
        .form(&[("username", "carol"), ("password", "pw-carol")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);

    // IP block and redirect answer before the handler.
    let r = http
        .get(format!("{base}/"))
        .header("X-Forwarded-For", BLOCKED_IP)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("Access denied"));
    let r = http
        .post(format!("{base}/track"))
        .header("X-Forwarded-For", REDIRECTED_IP)
        .json(&json!({"event": "must.not.be.tracked"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "https://example.com/blocked");

    // 64 concurrent requests never mix their records.
    std::thread::scope(|s| {
        for i in 0..64 {
            let (http, base) = (&http, &base);
            s.spawn(move || {
                let r = http
                    .post(format!("{base}/track?n={i}"))
                    .header("X-Forwarded-For", "81.2.69.170")
                    .json(&json!({"event": format!("concurrent.{i}"), "properties": {"i": i}}))
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200);
            });
        }
    });

    // Shutdown: stop the app, then drop the guard; it flushes everything.
    stop();
    drop(guard);

    let events = backend.tracked();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert!(!names.contains(&"must.not.be.tracked"), "{names:?}");
    // Only records with a `track` entry were sent: 2 tracks, block_user,
    // signup, block_ip, redirect_ip and the 64 concurrent ones, one track
    // per record.
    assert_eq!(events.len(), 2 + 1 + 1 + 2 + 64, "{names:?}");
    assert_eq!(backend.events().len(), events.len(), "one track per record");

    let placed = one(&backend, "order.placed");
    assert_eq!(placed.client_ip, Some("81.2.69.160".parse().unwrap()));
    let request = placed.request.as_ref().unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/track");
    assert_eq!(request.user_agent, "conformance/1");
    assert_eq!(request.query("page"), Some(&json!(["2"])));
    assert_eq!(request.query("password"), Some(&json!([MASK])));
    let body = request.json().unwrap();
    assert_eq!(
        body["event"], "order.placed",
        "JSON body captured: {request:#?}"
    );
    assert_eq!(body["properties"]["card"], MASK);
    assert_eq!(placed.response.as_ref().unwrap().status, 200);
    assert_eq!(placed.property("amount"), Some(&json!(42)));
    assert_eq!(placed.property("gift"), Some(&json!(true)));
    assert_eq!(placed.property("card"), Some(&json!(MASK)));
    assert_eq!(placed.user("uid"), Some("u-1"));
    // 2026-11-24T10:00:00Z, the `timestamp` the request gave.
    assert_eq!(
        placed.time,
        Some(std::time::UNIX_EPOCH + Duration::from_secs(1_795_514_400))
    );

    assert_eq!(one(&backend, "user.event").user("username"), Some("bob"));

    let blocked_user = one(&backend, "sq.action.block_user");
    assert_eq!(blocked_user.client_ip, Some("81.2.69.163".parse().unwrap()));
    assert_eq!(blocked_user.response.as_ref().unwrap().status, 403);
    let form = blocked_user.request.as_ref().unwrap();
    assert_eq!(
        form.form("username"),
        Some(&json!(["mallory"])),
        "form body captured: {blocked_user:#?}"
    );
    assert_eq!(form.form("password"), Some(&json!([MASK])));

    let signup = one(&backend, "user.signup");
    assert_eq!(signup.property("username"), Some(&json!("carol")));

    let block_ip = one(&backend, "sq.action.block_ip");
    assert_eq!(block_ip.client_ip, Some(BLOCKED_IP.parse().unwrap()));
    assert_eq!(block_ip.property("action_id"), Some(&json!("blk-ip")));
    let redirect_ip = one(&backend, "sq.action.redirect_ip");
    assert_eq!(redirect_ip.response.as_ref().unwrap().status, 303);

    for i in 0..64 {
        let e = one(&backend, &format!("concurrent.{i}"));
        assert_eq!(e.property("i"), Some(&json!(i)), "records mixed: {e:#?}");
        assert_eq!(
            e.request.as_ref().unwrap().query("n"),
            Some(&json!([i.to_string()]))
        );
    }

    use ObservationKind::{LoginFailure, LoginSuccess, Signup};
    assert_eq!(backend.observations_of(LoginFailure).len(), 1);
    assert_eq!(observed(&backend, LoginFailure, "bob", "81.2.69.161"), 2);
    assert_eq!(observed(&backend, LoginSuccess, "alice", "81.2.69.162"), 1);
    assert_eq!(
        observed(&backend, LoginSuccess, "mallory", "81.2.69.163"),
        1
    );
    assert_eq!(backend.observations_of(Signup).len(), 1);
    assert_eq!(observed(&backend, Signup, "carol", "81.2.69.164"), 1);
}

fn disabled_agent_passes_through(start: Start) {
    let agent = Agent::off(Config::default());
    let (addr, stop) = start(agent);
    let base = format!("http://{addr}");
    let http = client();
    assert_eq!(http.get(format!("{base}/")).send().unwrap().status(), 200);
    let r = http
        .post(format!("{base}/track"))
        .json(&json!({"event": "nobody.listens", "properties": {"k": "v"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/login"))
        .form(&[("username", "mallory"), ("password", "open-sesame")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "no agent, no block");
    stop();
}
