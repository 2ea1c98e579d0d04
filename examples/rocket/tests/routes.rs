//! The demo app on a real socket: every route's status codes, the 400
//! cases, a user block, and what reached the agent's in-memory backend.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use sqreen::test::{CaptureBackend, test_config};
use sqreen::{Agent, AgentGuard, Config};

const WAIT: Duration = Duration::from_secs(20);

fn http() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// An agent that blocks the user `mallory` and the IP range 203.0.113.0/24.
fn agent() -> (AgentGuard, CaptureBackend) {
    let backend = CaptureBackend::new();
    backend.set_actions(json!([
        {"action_id": "blk-user", "action": "block_user",
         "parameters": {"users": [{"username": "mallory"}]}},
        {"action_id": "blk-ip", "action": "block_ip", "parameters": {"ip_cidr": ["203.0.113.0/24"]}}
    ]));
    let guard = Agent::start(test_config().build().unwrap(), Arc::new(backend.clone()));
    assert!(guard.wait_ready(WAIT), "agent did not log in");
    (guard, backend)
}

fn start(agent: &Agent) -> example_rocket::Running {
    example_rocket::start(agent.clone(), "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Every route answers its documented status codes, malformed input gets a
/// 400 with a JSON error and the app keeps serving.
#[test]
fn routes_answer_their_status_codes() {
    let (guard, backend) = agent();
    let server = start(guard.agent());
    assert_ne!(server.addr.port(), 0);
    let base = format!("http://{}", server.addr);
    let http = http();

    let r = http.get(format!("{base}/")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text().unwrap(), "ok");

    let r = http
        .post(format!("{base}/track"))
        .json(&json!({
            "event": "order.placed",
            "properties": {"amount": 42, "gift": true, "note": null},
            "user_identifiers": {"uid": "u-1", "n": 7},
            "timestamp": "2026-11-24T10:00:00.000Z",
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().unwrap(), json!({"tracked": true}));
    let r = http
        .post(format!("{base}/track"))
        .json(&json!({"event": "user.event", "for_user": {"username": "bob"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    for bad in [
        "{not json",
        "{}",
        r#"{"event": ""}"#,
        r#"{"event": 3}"#,
        r#"{"event": "e", "properties": [1]}"#,
        r#"{"event": "e", "timestamp": "yesterday"}"#,
        r#"{"event": "e", "for_user": "bob"}"#,
    ] {
        let r = http
            .post(format!("{base}/track"))
            .header("Content-Type", "application/json")
            .body(bad)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let error = r.json::<Value>().unwrap();
        assert!(error["error"].is_string(), "{bad}: {error}");
    }
    assert_eq!(http.get(format!("{base}/")).send().unwrap().status(), 200);

    let login = |form: &[(&str, &str)]| {
        http.post(format!("{base}/login"))
            .form(form)
            .send()
            .unwrap()
    };
    let r = login(&[("username", "alice"), ("password", "open-sesame")]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "welcome");
    let r = login(&[("username", "alice"), ("password", "nope")]);
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().unwrap(), "invalid credentials");
    assert_eq!(login(&[("username", "alice")]).status(), 400);
    assert_eq!(login(&[("password", "open-sesame")]).status(), 400);
    let r = login(&[("username", "mallory"), ("password", "open-sesame")]);
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("Access denied"));

    let signup = |form: &[(&str, &str)]| {
        http.post(format!("{base}/signup"))
            .form(form)
            .send()
            .unwrap()
    };
    let r = signup(&[("username", "carol"), ("password", "pw")]);
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().unwrap(), "created");
    assert_eq!(signup(&[("password", "pw")]).status(), 400);

    let r = http
        .get(format!("{base}/"))
        .header("X-Forwarded-For", "203.0.113.5")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);

    server.stop();
    drop(guard);

    let events = backend.events();
    let names: Vec<&str> = events
        .iter()
        .flat_map(|e| e["observed"]["sdk"].as_array().unwrap())
        .filter(|entry| entry["name"] == "track")
        .filter_map(|entry| entry["args"][0].as_str())
        .collect();
    for expected in [
        "order.placed",
        "user.event",
        "sq.action.block_user",
        "user.signup",
        "sq.action.block_ip",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert_eq!(events.len(), 5, "{names:?}");
}

/// With the agent off the app serves the same answers, and a blocked user
/// is not blocked.
#[test]
fn agent_off_serves_the_same() {
    let agent = Agent::off(Config::default());
    let server = start(&agent);
    let base = format!("http://{}", server.addr);
    let http = http();
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
    assert_eq!(r.status(), 200);
    server.stop();
}

/// Starting on an address already in use fails with an error instead of hanging.
#[test]
fn start_reports_bind_errors() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = Agent::off(Config::default());
    let result = example_rocket::start(agent, taken.local_addr().unwrap());
    assert!(result.is_err());
}
