//! The demo routes over a real socket: `start()` on 127.0.0.1:0 with an
//! agent on the core's in-memory backend, a blocking HTTP client in front.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use sqreen::Agent;
use sqreen::test::{CaptureBackend, test_config};

/// Starts the demo app on an agent whose backend blocks user `mallory`.
fn start() -> (example_actix::Running, sqreen::AgentGuard, CaptureBackend) {
    let backend = CaptureBackend::new();
    backend.set_actions(json!([{
        "action_id": "u-1", "action": "block_user", "duration": 0, "send_response": true,
        "parameters": {"users": [{"username": "mallory"}]}
    }]));
    let agent = Agent::start(test_config().build().unwrap(), Arc::new(backend.clone()));
    assert!(agent.wait_ready(Duration::from_secs(10)));
    let running =
        example_actix::start(agent.agent().clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    (running, agent, backend)
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Every route answers its documented statuses, including the 400 cases,
/// and what they track reaches the backend.
#[test]
fn routes_answer_their_statuses() {
    let (running, agent, backend) = start();
    let base = format!("http://{}", running.addr);
    let client = client();

    let res = client.get(format!("{base}/")).send().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(res.text().unwrap(), "ok");

    // /track: valid bodies.
    let tracked = |body: Value| {
        let res = client
            .post(format!("{base}/track"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{body}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(res.json::<Value>().unwrap(), json!({"tracked": true}));
    };
    tracked(json!({"event": "plain.event"}));
    tracked(json!({
        "event": "rich.event",
        "properties": {"amount": 42, "currency": "eur", "ok": true},
        "user_identifiers": {"uid": "u-1", "n": 7},
        "timestamp": "2026-11-18T11:06:40.123Z"
    }));
    tracked(json!({"event": "user.event", "for_user": {"username": "bob"}}));

    // /track: malformed bodies → 400 with a JSON error.
    for body in [
        "not json",
        "{}",
        r#"{"event": ""}"#,
        r#"{"event": 3}"#,
        r#"{"event": "e", "properties": [1]}"#,
        r#"{"event": "e", "timestamp": "yesterday"}"#,
        r#"{"event": "e", "for_user": "bob"}"#,
    ] {
        let res = client
            .post(format!("{base}/track"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = res.json().unwrap();
        assert!(error["error"].is_string(), "{body}: {error}");
    }

    // /login and /signup.
    let form = |path: &str, fields: &[(&str, &str)]| {
        let res = client
            .post(format!("{base}{path}"))
            .form(fields)
            .send()
            .unwrap();
        (res.status(), res.text().unwrap())
    };
    let welcome = (StatusCode::OK, "welcome".to_owned());
    let good = [("username", "bob"), ("password", "open-sesame")];
    assert_eq!(form("/login", &good), welcome);
    assert_eq!(
        form("/login", &[("username", "bob"), ("password", "nope")]),
        (StatusCode::UNAUTHORIZED, "invalid credentials".to_owned())
    );
    assert_eq!(
        form("/login", &[("username", "bob")]).0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(form("/login", &[]).0, StatusCode::BAD_REQUEST);
    let blocked = form(
        "/login",
        &[("username", "mallory"), ("password", "open-sesame")],
    );
    assert_eq!(blocked.0, StatusCode::FORBIDDEN, "a blocked user");
    assert!(blocked.1.contains("Access denied"));
    assert_eq!(
        form("/signup", &good),
        (StatusCode::CREATED, "created".to_owned())
    );
    assert_eq!(
        form("/signup", &[("password", "x")]).0,
        StatusCode::BAD_REQUEST
    );
    let res = client
        .post(format!("{base}/login"))
        .header("content-type", "application/json")
        .body(r#"{"username":"bob","password":"open-sesame"}"#)
        .send()
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "not a form");

    // The app kept running through the errors.
    assert_eq!(
        client.get(format!("{base}/")).send().unwrap().status(),
        StatusCode::OK
    );
    drop(client);
    running.stop();

    assert!(agent.flush(Duration::from_secs(10)));
    let events = backend.events();
    let names: Vec<&str> = events
        .iter()
        .flat_map(|e| e["observed"]["sdk"].as_array().unwrap())
        .filter(|entry| entry["name"] == "track")
        .map(|entry| entry["args"][0].as_str().unwrap())
        .collect();
    for expected in [
        "plain.event",
        "rich.event",
        "user.event",
        "user.signup",
        "sq.action.block_user",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let rich = events
        .iter()
        .find(|e| e["observed"]["sdk"][0]["args"][0] == "rich.event")
        .unwrap();
    let entry = &rich["observed"]["sdk"][0];
    assert_eq!(entry["time"], "2026-11-18T11:06:40.123Z");
    assert_eq!(
        entry["args"][1],
        json!({"properties": {"amount": 42, "currency": "eur", "ok": true},
               "user_identifiers": {"n": "7", "uid": "u-1"}})
    );
    assert_eq!(rich["request"]["path"], "/track");
    assert_eq!(rich["client_ip"], "127.0.0.1");
    let signup = events
        .iter()
        .find(|e| e["request"]["path"] == "/signup")
        .unwrap();
    assert_eq!(signup["response"]["status"], 201);
    assert_eq!(
        signup["request"]["parameters"]["form"]["username"],
        json!(["bob"])
    );
}

/// `stop` returns promptly even with an idle keep-alive connection open,
/// and the port is closed afterwards.
#[test]
fn stop_is_graceful_and_prompt() {
    let (running, _agent, _backend) = start();
    let addr = running.addr;
    let client = client();
    let res = client.get(format!("http://{addr}/")).send().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // `client` keeps its connection alive in its pool across the stop.
    running.stop();
    assert!(std::net::TcpStream::connect(addr).is_err());
    drop(client);
}
