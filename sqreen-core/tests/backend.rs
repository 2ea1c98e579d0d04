//! Integration tests: the agent against a protocol backend served over a
//! real socket on 127.0.0.1 (`sqreen-test-backend`).
//!
//! No test asserts on timing; waits are bounded polls on what the backend
//! received, generous enough for a loaded 2-core machine.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqreen_core::transport::HttpTransport;
use sqreen_core::{
    Agent, AgentGuard, Config, ConfigBuilder, LoginState, Open, RequestInfo, ResponseInfo,
    SecurityResponse,
};
use sqreen_test_backend::{Mode, TestBackend};

use common::opened;

const WAIT: Duration = Duration::from_secs(20);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(backend: &TestBackend) -> ConfigBuilder {
    Config::builder()
        .token("test-token-123456")
        .app_name("tests")
        .url(backend.url())
        .shutdown_timeout(Duration::from_secs(5))
}

fn start(config: ConfigBuilder) -> AgentGuard {
    init_logs();
    let config = config.build().unwrap();
    let transport = HttpTransport::new(&config).unwrap();
    Agent::start(config, Arc::new(transport))
}

fn start_ready(config: ConfigBuilder) -> AgentGuard {
    let guard = start(config);
    assert!(guard.wait_ready(WAIT), "agent did not log in");
    guard
}

/// One request from `ip` (sent as X-Forwarded-For) that tracks `event`.
fn tracked_request(agent: &Agent, ip: &str, event: &str) {
    let headers = [("X-Forwarded-For", ip), ("User-Agent", "tests/1")];
    let info = RequestInfo::new("POST", "/checkout", &headers)
        .peer(Some("127.0.0.1:40000".parse().unwrap()));
    match opened(agent, info, None) {
        Open::Request(mut record) => {
            record.handle().track_event(event);
            record.close(ResponseInfo::new(200));
        }
        other => panic!("expected a record, got {other:?}"),
    }
}

fn begin_from(agent: &Agent, ip: &str, path: &str) -> Open {
    let headers = [("X-Forwarded-For", ip)];
    opened(agent, RequestInfo::new("GET", path, &headers), None)
}

fn event_names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .flat_map(|e| e["observed"]["sdk"].as_array().cloned().unwrap_or_default())
        .filter(|entry| entry["name"] == "track")
        .map(|entry| entry["args"][0].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Login sends the agent's description with the token and app name headers,
/// and its `features` (batch size, heartbeat delay) are honoured.
#[test]
fn login_features_are_honoured() {
    let backend = TestBackend::start();
    backend.set_features(json!({"batch_size": 2, "heartbeat_delay": 1, "max_staleness": 0}));
    let agent = start_ready(config(&backend));
    let (body, token, app) = backend.with(|s| s.logins[0].clone());
    assert_eq!(body["agent_type"], "rust");
    assert_eq!(token, "test-token-123456");
    assert_eq!(app, "tests");
    // Two records fill a batch of 2: sent without a flush.
    tracked_request(&agent, "81.2.69.160", "a");
    tracked_request(&agent, "81.2.69.160", "b");
    assert!(backend.wait_for(WAIT, |s| s.batches.iter().any(|b| b.len() == 2)));
    // A one-second heartbeat instead of the default minute.
    assert!(backend.wait_for(WAIT, |s| s.beats.len() >= 2));
    assert_eq!(agent.stats().events_sent, 2);
}

/// A lone event is sent once it is `max_staleness` old, without a flush.
#[test]
fn batch_sent_on_staleness() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend).max_staleness(Duration::from_millis(300)));
    tracked_request(&agent, "81.2.69.160", "lonely");
    assert!(backend.wait_for(WAIT, |s| s.events().len() == 1));
    assert_eq!(event_names(&backend.events()), ["lonely"]);
}

/// A record carries the request context the protocol describes.
#[test]
fn request_record_shape() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend));
    let headers = [
        ("Host", "shop.example:8443"),
        ("User-Agent", "curl/8"),
        ("Referer", "https://shop.example/cart"),
        ("X-Forwarded-For", "81.2.69.160, 10.0.0.2"),
        ("X-Request-Id", "req-1"),
        ("Cookie", "session=secret-cookie"),
        ("Authorization", "Bearer abc"),
        ("Content-Type", "application/json"),
    ];
    let body = br#"{"item": 3}"#;
    let info = RequestInfo::new("POST", "/orders/7", &headers)
        .query(Some("page=2&tag=a&tag=b"))
        .peer(Some("10.0.0.2:52114".parse().unwrap()))
        .scheme("https");
    let Open::Request(mut record) = opened(&agent, info, Some(body)) else {
        panic!("expected a record")
    };
    record.set_route_params(|| [("id", "7")]);
    let sq = record.handle();
    sq.track_event("order.placed")
        .with_properties([("amount", 42)])
        .with_user_identifiers([("uid", "u-1")]);
    sq.for_user([("uid", "u-1")]).identify().unwrap();
    record.close(
        ResponseInfo::new(201)
            .content_length(Some(12))
            .content_type(Some("application/json")),
    );
    assert!(agent.flush(WAIT));
    assert_eq!(agent.stats().events_pending, 0);
    let events = backend.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["event_type"], "request_record");
    assert_eq!(e["client_ip"], "81.2.69.160");
    let r = &e["request"];
    assert_eq!(r["verb"], "POST");
    assert_eq!(r["path"], "/orders/7");
    assert_eq!(r["host"], "shop.example");
    assert_eq!(r["port"], "8443");
    assert_eq!(r["scheme"], "https");
    assert_eq!(r["remote_ip"], "10.0.0.2");
    assert_eq!(r["remote_port"], "52114");
    assert_eq!(r["rid"], "req-1");
    assert_eq!(r["user_agent"], "curl/8");
    assert_eq!(r["referer"], "https://shop.example/cart");
    assert_eq!(
        r["parameters"]["query"],
        json!({"page": ["2"], "tag": ["a", "b"]})
    );
    assert_eq!(r["parameters"]["json"], json!({"item": 3}));
    assert_eq!(r["parameters"]["params"], json!({"id": ["7"]}));
    let header_names: Vec<&str> = r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap())
        .collect();
    assert!(header_names.contains(&"X-Forwarded-For"));
    assert!(header_names.contains(&"Host"));
    assert!(
        !header_names
            .iter()
            .any(|h| h.eq_ignore_ascii_case("cookie") || h.eq_ignore_ascii_case("authorization"))
    );
    assert_eq!(
        e["response"],
        json!({"status": 201, "content_length": 12, "content_type": "application/json"})
    );
    let sdk = e["observed"]["sdk"].as_array().unwrap();
    assert_eq!(sdk[0]["args"][0], "order.placed");
    assert_eq!(
        sdk[0]["args"][1],
        json!({"properties": {"amount": 42}, "user_identifiers": {"uid": "u-1"}})
    );
    assert_eq!(sdk[1]["name"], "identify");
    assert_eq!(sdk[1]["args"][0], json!({"uid": "u-1"}));
}

/// Personal data is scrubbed from every part of the record before sending.
#[test]
fn records_are_scrubbed() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend).strip_http_referer(true));
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", "card 4111 1111 1111 1111"),
        ("Referer", "https://x.example/?token=abc"),
    ];
    let body = b"username=bob&password=hunter2&note=4111-1111-1111-1111";
    let info = RequestInfo::new("POST", "/pay", &headers).query(Some("api_key=k3y&q=ok"));
    let Open::Request(mut record) = opened(&agent, info, Some(body)) else {
        panic!("expected a record")
    };
    record
        .handle()
        .track_event("payment")
        .with_properties([
            ("secret", "s3cr3t"),
            ("card", "5500 0000 0000 0004"),
            ("plain", "ok"),
        ])
        .with_user_identifiers([("access_token", "tok"), ("uid", "bob")]);
    record.close(ResponseInfo::new(200));
    assert!(agent.flush(WAIT));
    let text = serde_json::to_string(&backend.events()).unwrap();
    for secret in [
        "hunter2",
        "k3y",
        "s3cr3t",
        "4111",
        "5500",
        "\"tok\"",
        "token=abc",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let e = &backend.events()[0];
    let mask = "<Redacted by Sqreen>";
    assert_eq!(
        e["request"]["parameters"]["form"]["password"],
        json!([mask])
    );
    assert_eq!(
        e["request"]["parameters"]["form"]["username"],
        json!(["bob"])
    );
    assert_eq!(e["request"]["parameters"]["query"]["q"], json!(["ok"]));
    assert_eq!(e["request"]["referer"], "");
    let props = &e["observed"]["sdk"][0]["args"][1]["properties"];
    assert_eq!(props["secret"], mask);
    assert_eq!(props["plain"], "ok");
    assert_eq!(
        e["observed"]["sdk"][0]["args"][1]["user_identifiers"]["uid"],
        "bob"
    );
    assert!(agent.stats().values_scrubbed >= 6);
}

/// Heartbeat commands are executed and their results reported in the next beat.
#[test]
fn commands_are_executed_and_reported() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend).heartbeat_delay(Duration::from_millis(200)));
    backend.set_actions(json!([{"action_id": "act-1", "action": "block_ip",
        "parameters": {"ip_cidr": ["81.2.69.0/24"]}}]));
    backend.push_command("ips_whitelist", "c1", json!([["1.2.3.0/24"]]));
    backend.push_command("paths_whitelist", "c2", json!([["/health"]]));
    backend.push_command("explode", "c3", json!([]));
    backend.push_command("actions_reload", "c4", json!([]));
    backend.push_command("ips_whitelist", "c5", json!([["not-a-cidr"]]));
    assert!(backend.wait_for(WAIT, |s| s.command_results().len() >= 5));
    let results: std::collections::HashMap<String, Value> =
        backend.with(|s| s.command_results()).into_iter().collect();
    assert_eq!(results["c1"]["status"], true);
    assert_eq!(results["c2"]["status"], true);
    assert_eq!(
        results["c3"],
        json!({"status": false, "output": "command is not supported"})
    );
    assert_eq!(results["c4"]["status"], true);
    assert_eq!(results["c5"]["status"], false);
    assert!(matches!(
        begin_from(&agent, "81.2.69.160", "/health/live"),
        Open::Pass
    ));
    assert!(matches!(begin_from(&agent, "1.2.3.4", "/"), Open::Pass));
    assert!(matches!(
        begin_from(&agent, "8.8.8.8", "/"),
        Open::Request(_)
    ));
    assert!(matches!(
        begin_from(&agent, "81.2.69.160", "/"),
        Open::Respond(SecurityResponse::Block { status: 403 })
    ));
}

/// `instrumentation_remove` turns recording off and clears actions;
/// `instrumentation_enable` turns it back on.
#[test]
fn instrumentation_remove_and_enable() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend).heartbeat_delay(Duration::from_millis(200)));
    backend.push_command("instrumentation_remove", "r1", json!([]));
    assert!(backend.wait_for(WAIT, |s| s.command_results().iter().any(|(k, _)| k == "r1")));
    assert!(matches!(begin_from(&agent, "8.8.8.8", "/"), Open::Pass));
    assert_eq!(agent.stats().login_state, Some(LoginState::Paused));
    backend.push_command("instrumentation_enable", "e1", json!([]));
    assert!(backend.wait_for(WAIT, |s| s.command_results().iter().any(|(k, _)| k == "e1")));
    assert!(matches!(
        begin_from(&agent, "8.8.8.8", "/"),
        Open::Request(_)
    ));
}

/// IP block and redirect actions answer before any handler runs, and the
/// enforcement is reported as an `sq.action.*` event.
#[test]
fn ip_actions_are_enforced_and_recorded() {
    let backend = TestBackend::start();
    backend.set_actions(json!([
        {"action_id": "blk", "action": "block_ip", "parameters": {"ip_cidr": ["81.2.69.0/24"]}},
        {"action_id": "red", "action": "redirect_ip",
         "parameters": {"ip_cidr": ["2001:db8::/32"], "url": "https://example.com/blocked"}}
    ]));
    let agent = start_ready(config(&backend).blocking_status(451));
    match begin_from(&agent, "81.2.69.160", "/") {
        Open::Respond(r) => assert_eq!(r.status(), 451),
        other => panic!("expected a block, got {other:?}"),
    }
    match begin_from(&agent, "[2001:db8::1]:443", "/") {
        Open::Respond(r) => {
            assert_eq!(r.status(), 303);
            assert_eq!(r.location(), Some("https://example.com/blocked"));
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    assert!(agent.flush(WAIT));
    let events = backend.events();
    assert_eq!(
        event_names(&events),
        ["sq.action.block_ip", "sq.action.redirect_ip"]
    );
    let props = &events[0]["observed"]["sdk"][0]["args"][1]["properties"];
    assert_eq!(props["action_id"], "blk");
    assert_eq!(props["ip_address"], "81.2.69.160");
    assert_eq!(events[0]["response"]["status"], 451);
    assert_eq!(agent.stats().actions_enforced, 2);
}

/// `identify()` fails with the security response for a blocked user and
/// records `sq.action.block_user`.
#[test]
fn user_block_through_identify() {
    let backend = TestBackend::start();
    backend.set_actions(json!([{"action_id": "u1", "action": "block_user",
        "parameters": {"users": [{"username": "mallory"}]}}]));
    let agent = start_ready(config(&backend));
    let Open::Request(mut record) = begin_from(&agent, "8.8.8.8", "/login") else {
        panic!("expected a record")
    };
    let sq = record.handle();
    assert!(sq.for_user([("username", "alice")]).identify().is_ok());
    let blocked = sq
        .for_user([("username", "mallory")])
        .identify()
        .unwrap_err();
    assert_eq!(blocked.response(), &SecurityResponse::Block { status: 403 });
    record.close(ResponseInfo::new(403));
    assert!(agent.flush(WAIT));
    let events = backend.events();
    assert_eq!(event_names(&events), ["sq.action.block_user"]);
    let props = &events[0]["observed"]["sdk"][2]["args"][1]["properties"];
    assert_eq!(props["action_id"], "u1");
    assert_eq!(props["user"], r#"{"username":"mallory"}"#);
}

/// Auth and signup calls become metric stores keyed by user and client IP.
#[test]
fn auth_metrics_per_user_and_ip() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend));
    for (ip, ok) in [
        ("81.2.69.160", false),
        ("81.2.69.160", false),
        ("81.2.69.161", true),
    ] {
        let Open::Request(mut record) = begin_from(&agent, ip, "/login") else {
            panic!("expected a record")
        };
        record
            .handle()
            .for_user([("username", "bob")])
            .track_auth(ok);
        record
            .handle()
            .for_user([("username", "amy")])
            .track_signup();
        record.close(ResponseInfo::new(200));
    }
    // Records holding no `track` entry are not sent as events.
    drop(agent); // shutdown sends the final heartbeat with the metrics
    assert!(backend.events().is_empty());
    let metrics = backend.with(|s| s.metrics());
    let store = |name: &str| {
        metrics
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["observation"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        store("sdk-login-fail"),
        json!({r#"{"keys":[["username","bob"]],"ip":"81.2.69.160"}"#: 2})
    );
    assert_eq!(
        store("sdk-login-success"),
        json!({r#"{"keys":[["username","bob"]],"ip":"81.2.69.161"}"#: 1})
    );
    assert_eq!(store("sdk-signup").as_object().map(|o| o.len()), Some(2));
}

/// A 401 after login makes the agent log in again and deliver what was pending.
#[test]
fn unauthorized_triggers_relogin_without_loss() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend));
    backend.expire_sessions();
    tracked_request(&agent, "81.2.69.160", "kept");
    agent.flush(Duration::from_secs(2)); // meets the 401
    assert!(backend.wait_for(WAIT, |s| s.logins.len() >= 2 && s.events().len() == 1));
    assert_eq!(event_names(&backend.events()), ["kept"]);
    assert!(backend.with(|s| s.unauthorized) >= 1);
}

/// With the backend down, events wait in the buffer and are delivered once
/// it is back; nothing is lost and the app is never blocked.
#[test]
fn backend_down_then_back_loses_nothing() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend));
    backend.stop();
    for i in 0..5 {
        tracked_request(&agent, "81.2.69.160", &format!("e{i}"));
    }
    assert!(!agent.flush(Duration::from_secs(3)));
    assert!(agent.stats().batches_failed >= 1);
    backend.restart();
    assert!(backend.wait_for(WAIT, |s| s.events().len() == 5));
    assert_eq!(
        event_names(&backend.events()),
        ["e0", "e1", "e2", "e3", "e4"]
    );
    assert!(agent.stats().events_retried >= 5);
}

/// A backend answering garbage leaves the agent off (requests untouched)
/// and counts the bad answers.
#[test]
fn garbage_login_answer_keeps_agent_off() {
    let backend = TestBackend::start();
    backend.set_mode(Mode::Garbage);
    let agent = start(config(&backend));
    assert!(backend.wait_for(WAIT, |s| s.misbehaved >= 1));
    assert!(!agent.wait_ready(Duration::from_millis(300)));
    assert!(matches!(begin_from(&agent, "8.8.8.8", "/"), Open::Pass));
    assert!(backend.wait_for(WAIT, |_| agent.stats().bad_backend_answers >= 1));
    assert_eq!(agent.stats().login_state, Some(LoginState::LoggingIn));
}

/// A refused token keeps the agent off and retries login with backoff.
#[test]
fn bad_token_keeps_agent_off() {
    let backend = TestBackend::start();
    backend.require_token("the-right-one");
    let agent = start(config(&backend));
    assert!(backend.wait_for(WAIT, |s| s.logins.len() >= 2));
    assert!(matches!(begin_from(&agent, "8.8.8.8", "/"), Open::Pass));
    // The agent counts an attempt once its answer is read, which can be
    // just after the backend has seen the request.
    assert!(backend.wait_for(WAIT, |_| agent.stats().login_attempts >= 2));
    assert_eq!(agent.stats().logins, 0);
}

/// Garbage or error answers to batches and beats are survived: events are
/// kept for retry and delivered once the backend behaves.
#[test]
fn error_answers_after_login_are_survived() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend).heartbeat_delay(Duration::from_millis(200)));
    backend.set_batch_mode(Mode::Status(500));
    tracked_request(&agent, "81.2.69.160", "x");
    assert!(!agent.flush(Duration::from_secs(2)));
    backend.set_mode(Mode::Garbage);
    assert!(backend.wait_for(WAIT, |_| agent.stats().bad_backend_answers >= 1));
    backend.set_mode(Mode::Normal);
    backend.set_batch_mode(Mode::Normal);
    assert!(backend.wait_for(WAIT, |s| s.events().len() == 1));
    assert!(matches!(
        begin_from(&agent, "8.8.8.8", "/"),
        Open::Request(_)
    ));
}

/// A hanging backend never blocks the request path; flush and shutdown give
/// up at their deadlines.
#[test]
fn hanging_backend_does_not_block_the_app() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend).shutdown_timeout(Duration::from_secs(1)));
    backend.set_mode(Mode::Hang);
    for i in 0..50 {
        tracked_request(&agent, "81.2.69.160", &format!("h{i}"));
    }
    assert!(!agent.flush(Duration::from_millis(500)));
    // Requests are still recorded while the backend hangs.
    assert!(matches!(
        begin_from(&agent, "8.8.8.8", "/"),
        Open::Request(_)
    ));
    assert!(!agent.shutdown(Duration::from_secs(1)));
    assert_eq!(agent.stats().login_state, Some(LoginState::ShutDown));
}

/// Dropping the guard flushes queued events, sends a final heartbeat and logs out.
#[test]
fn exit_flush_on_guard_drop() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend));
    for i in 0..3 {
        tracked_request(&agent, "81.2.69.160", &format!("bye{i}"));
    }
    drop(agent);
    backend.with(|s| {
        assert_eq!(s.events().len(), 3);
        assert!(!s.beats.is_empty());
        assert_eq!(s.logouts, 1);
    });
}

/// An agent with no token is off: requests pass and nothing is sent.
#[test]
fn no_token_means_off() {
    let backend = TestBackend::start();
    let agent = start(Config::builder().url(backend.url()));
    assert!(matches!(begin_from(&agent, "8.8.8.8", "/"), Open::Pass));
    assert!(agent.flush(Duration::from_secs(1)));
    assert_eq!(agent.stats().login_state, Some(LoginState::Off));
    assert!(backend.with(|s| s.logins.is_empty()));
}

/// Concurrent requests on many threads never mix their entries.
#[test]
fn concurrent_records_do_not_mix() {
    let backend = TestBackend::start();
    let agent = start_ready(config(&backend));
    std::thread::scope(|scope| {
        for t in 0..8 {
            let agent = agent.agent().clone();
            scope.spawn(move || {
                for i in 0..50 {
                    let path = format!("/t{t}/r{i}");
                    let headers = [("X-Forwarded-For", "81.2.69.160")];
                    let Open::Request(mut record) =
                        opened(&agent, RequestInfo::new("GET", &path, &headers), None)
                    else {
                        panic!("expected a record")
                    };
                    record.handle().track_event(&path);
                    record.close(ResponseInfo::new(200));
                }
            });
        }
    });
    assert!(agent.flush(WAIT));
    let events = backend.events();
    assert_eq!(events.len(), 400);
    for e in &events {
        assert_eq!(e["observed"]["sdk"][0]["args"][0], e["request"]["path"]);
    }
}
