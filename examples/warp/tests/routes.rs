//! The demo app on a real socket: every route's status codes, including
//! the malformed-input cases, with an agent on the in-memory backend.

// Tests fail loudly on a broken setup.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use sqreen::test::{CaptureBackend, start_captured, test_config};

const WAIT: Duration = Duration::from_secs(10);

fn url(running: &example_warp::Running, path: &str) -> String {
    format!("http://{}{path}", running.addr)
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

fn post_json(client: &Client, url: &str, body: &str) -> (u16, String) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

fn post_form(client: &Client, url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = client.post(url).form(form).send().unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// Every route answers its documented status codes, malformed input gets
/// a 400 and the server keeps serving; what is tracked reaches the backend.
#[test]
fn routes_answer_their_status_codes() {
    let (guard, backend) = start_captured(test_config().build().unwrap());
    let running =
        example_warp::start(guard.agent().clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let client = client();

    let index = client.get(url(&running, "/")).send().unwrap();
    assert_eq!(index.status(), 200);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(index.text().unwrap(), "ok");
    assert_eq!(
        client
            .get(url(&running, "/nowhere"))
            .send()
            .unwrap()
            .status(),
        404
    );

    let track = url(&running, "/track");
    let (status, body) = post_json(
        &client,
        &track,
        &json!({"event": "payment.failed", "properties": {"amount": 42, "currency": "eur"},
                "user_identifiers": {"uid": "u-1", "n": 7}, "timestamp": "2024-05-01T10:00:00.250Z"})
        .to_string(),
    );
    assert_eq!((status, body.as_str()), (200, r#"{"tracked":true}"#));
    let (status, _) = post_json(
        &client,
        &track,
        &json!({"event": "invite.sent", "for_user": {"username": "alice"}}).to_string(),
    );
    assert_eq!(status, 200);
    for bad in [
        "not json",
        "{}",
        r#"{"event": ""}"#,
        r#"{"event": 5}"#,
        r#"{"event": "x", "properties": [1]}"#,
        r#"{"event": "x", "timestamp": "yesterday"}"#,
        r#"{"event": "x", "for_user": "bob"}"#,
    ] {
        let (status, body) = post_json(&client, &track, bad);
        assert_eq!(status, 400, "{bad}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(error["error"].is_string(), "{bad}: {body}");
    }

    let login = url(&running, "/login");
    let ok = [("username", "alice"), ("password", "open-sesame")];
    assert_eq!(post_form(&client, &login, &ok), (200, "welcome".to_owned()));
    let wrong = [("username", "alice"), ("password", "guess")];
    assert_eq!(
        post_form(&client, &login, &wrong),
        (401, "invalid credentials".to_owned())
    );
    assert_eq!(post_form(&client, &login, &[("username", "alice")]).0, 400);
    assert_eq!(post_json(&client, &login, "{}").0, 400);

    let signup = url(&running, "/signup");
    let form = [("username", "bob"), ("password", "pw")];
    assert_eq!(
        post_form(&client, &signup, &form),
        (201, "created".to_owned())
    );
    assert_eq!(post_form(&client, &signup, &[("password", "pw")]).0, 400);

    // Still serving after the malformed requests.
    assert_eq!(client.get(url(&running, "/")).send().unwrap().status(), 200);
    running.stop();

    assert!(guard.flush(WAIT));
    let events = backend.events();
    let names: Vec<&str> = events
        .iter()
        .flat_map(|e| e["observed"]["sdk"].as_array().unwrap())
        .filter(|entry| entry["name"] == "track")
        .map(|entry| entry["args"][0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["payment.failed", "invite.sent", "user.signup"]);
    let payment = &events[0]["observed"]["sdk"][0]["args"][1];
    assert_eq!(
        payment["properties"],
        json!({"amount": 42, "currency": "eur"})
    );
    assert_eq!(payment["user_identifiers"], json!({"uid": "u-1", "n": "7"}));
    assert_eq!(
        events[0]["request"]["parameters"]["json"]["event"],
        "payment.failed"
    );
    assert_eq!(events[0]["client_ip"], "127.0.0.1");
    let signup = &events[2]["request"];
    assert_eq!(signup["parameters"]["form"]["username"], json!(["bob"]));
    assert_eq!(events[2]["response"]["status"], 201);
}

/// A user blocked by a playbook gets 403 at login through `identify()?`; a
/// blocked IP gets 403 and a redirected one 303, on every route.
#[test]
fn security_responses_are_enforced() {
    let backend = CaptureBackend::new();
    backend.set_actions(json!([
        {"action_id": "u1", "action": "block_user",
         "parameters": {"users": [{"username": "mallory"}]}},
        {"action_id": "ip1", "action": "block_ip", "parameters": {"ip_cidr": ["203.0.113.0/24"]}},
        {"action_id": "ip2", "action": "redirect_ip",
         "parameters": {"ip_cidr": ["198.51.100.0/24"], "url": "https://example.com/blocked"}}
    ]));
    let guard = sqreen::Agent::start(test_config().build().unwrap(), Arc::new(backend.clone()));
    assert!(guard.wait_ready(WAIT));
    let running =
        example_warp::start(guard.agent().clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let client = client();
    let login = url(&running, "/login");
    let mallory = [("username", "mallory"), ("password", "open-sesame")];
    let (status, body) = post_form(&client, &login, &mallory);
    assert_eq!(status, 403);
    assert!(body.contains("Access denied"));
    let alice = [("username", "alice"), ("password", "open-sesame")];
    assert_eq!(post_form(&client, &login, &alice).0, 200);

    for path in ["/", "/track", "/nowhere"] {
        let blocked = client
            .post(url(&running, path))
            .header("x-forwarded-for", "203.0.113.5")
            .send()
            .unwrap();
        assert_eq!(blocked.status(), 403, "{path}");
        let redirected = client
            .get(url(&running, path))
            .header("x-forwarded-for", "198.51.100.7")
            .send()
            .unwrap();
        assert_eq!(redirected.status(), 303, "{path}");
        assert_eq!(
            redirected.headers()["location"],
            "https://example.com/blocked"
        );
    }
    running.stop();
}

/// With the agent off, every route works and nothing is blocked.
#[test]
fn agent_off_passes_through() {
    let agent = sqreen::Agent::off(sqreen::Config::default());
    let running = example_warp::start(agent, "127.0.0.1:0".parse().unwrap()).unwrap();
    let client = client();
    assert_eq!(client.get(url(&running, "/")).send().unwrap().status(), 200);
    let (status, _) = post_json(&client, &url(&running, "/track"), r#"{"event": "e"}"#);
    assert_eq!(status, 200);
    let mallory = [("username", "mallory"), ("password", "open-sesame")];
    assert_eq!(
        post_form(&client, &url(&running, "/login"), &mallory).0,
        200
    );
    running.stop();
}
