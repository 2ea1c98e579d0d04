//! The historical agents' exact traffic replayed against the server: the
//! Python agent (`sqreen==1.27.4`, Flask 1.1) and the Node.js agent
//! (`sqreen@2.0.2`, Express 4) as captured from real runs of
//! `scripts/interop.sh` (`scripts/interop/capture_proxy.py`, then
//! `make_fixtures.py`), and the Go agent as written from its public wire
//! types (`tests/fixtures/agents/go.json` says how). Every exchange must be
//! answered 200 with `"status": true`, and what it carries must be stored
//! as the explorer shows it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use serde_json::{Value, json};

fn fixture(agent: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/agents/{agent}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A server with 5 s heartbeats that keeps events forever (the fixtures'
/// times are those of their capture).
fn server() -> TestServer {
    TestServer::start_with(&sqlite_url(), |mut c| {
        c.retention = None;
        c.with_heartbeat_delay(5)
    })
}

/// Replays `fixture`'s exchanges with `token`; returns the login answer.
fn replay(server: &TestServer, fixture: &Value, token: &str) -> Value {
    let http = client();
    let mut session = String::new();
    let mut login = Value::Null;
    // The Node.js agent's last batch races its logout (it drains, then
    // logs out without waiting): sequentially, the logout goes last.
    let mut exchanges = fixture["exchanges"].as_array().unwrap().clone();
    exchanges.sort_by_key(|ex| ex["path"] == "/sqreen/v0/app-logout");
    for (i, ex) in exchanges.iter().enumerate() {
        let path = ex["path"].as_str().unwrap();
        let url = format!("{}{path}", server.url);
        let mut request = match ex["method"].as_str().unwrap() {
            "GET" => http.get(&url),
            "POST" => http.post(&url),
            other => panic!("method {other}"),
        };
        request = request.header("User-Agent", ex["user_agent"].as_str().unwrap_or(""));
        match ex["credential"].as_str() {
            Some("api-key") => request = request.header("X-Api-Key", token),
            Some("session") => request = request.header("X-Session-Key", &session),
            _ => {}
        }
        if !ex["body"].is_null() {
            request = request
                .header("Content-Type", "application/json")
                .body(ex["body"].to_string());
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().unwrap_or(Value::Null);
        assert_eq!(status, 200, "exchange {i} {path}: {answer}");
        assert_eq!(answer["status"], true, "exchange {i} {path}: {answer}");
        if path == "/sqreen/v1/app-login" {
            session = answer["session_id"].as_str().unwrap().to_owned();
            login = answer;
        }
    }
    login
}

fn events(server: &TestServer, query: &str) -> Vec<Value> {
    server
        .admin()
        .get_json(&format!("/api/events?{query}&limit=1000"))["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn count(events: &[Value]) -> i64 {
    events.iter().map(|e| e["count"].as_i64().unwrap()).sum()
}

/// Nothing the agent sent was refused.
fn nothing_refused(server: &TestServer) -> Value {
    let s = stats(server);
    for key in [
        "bad_request",
        "not_found",
        "too_large",
        "agent_events_refused",
    ] {
        assert_eq!(s[key], 0, "{key}: {s}");
    }
    s
}

/// The Python agent's login, beats (command results as objects, metric
/// stores of every kind, `+00:00` times), batches (records without a
/// top-level id, `auth_track` / `signup_track` entries, identify with
/// traits), its exit metrics and logout are all accepted and stored.
#[test]
fn python_agent_traffic_is_stored() {
    let server = server();
    let token = server.admin().create_app("py-app");
    let login = replay(&server, &fixture("python"), &token);

    // The login answer the agent needs: its rules, batching, no signals,
    // a staleness its batch deliverer can randomise.
    assert!(login["pack_id"].as_str().unwrap().contains("python"));
    assert!(login["rules"].as_array().unwrap().len() >= 8);
    assert_eq!(login["features"]["use_signals"], false);
    assert!(login["features"]["batch_size"].as_u64().unwrap() > 0);
    assert_eq!(login["features"]["max_staleness"].as_u64().unwrap() % 10, 0);
    assert_eq!(login["commands"][0]["name"], "instrumentation_enable");

    let tracked = events(&server, "event=interop.viewed&ip=81.2.69.160");
    assert_eq!(tracked.len(), 1, "{tracked:?}");
    let e = &tracked[0];
    assert_eq!(e["properties"], json!({"plan": "gold", "seats": 3}));
    assert_eq!(e["user_identifiers"], json!({"uid": "alice"}));
    assert_eq!(e["request"]["path"], "/track");

    let failed = events(&server, "event=sdk-login-fail&ip=81.2.69.170");
    assert!(count(&failed) >= 5, "{failed:?}");
    assert_eq!(failed[0]["user_identifiers"], json!({"username": "eve"}));
    let logins = events(&server, "event=sq.sdk.users.login&ip=81.2.69.170");
    assert_eq!(logins.len(), 5, "{logins:?}");
    assert_eq!(logins[0]["properties"], json!({"success": false}));
    assert!(!events(&server, "event=sdk-signup").is_empty());
    let signups = events(&server, "event=sq.sdk.users.signup&ip=81.2.69.162");
    assert_eq!(signups[0]["user_identifiers"], json!({"username": "carol"}));
    nothing_refused(&server);
}

/// The Node.js agent's login (a large body), beats, batches (records with
/// its own extra fields, paths with their query, identify of `null`,
/// `error` events) and logout are all accepted and stored.
#[test]
fn node_agent_traffic_is_stored() {
    let server = server();
    let token = server.admin().create_app("node-app");
    let login = replay(&server, &fixture("node"), &token);
    assert_eq!(login["commands"][0]["name"], "instrumentation_enable");
    assert!(login["pack_id"].as_str().unwrap().contains("nodejs"));
    assert_eq!(login["features"]["use_signals"], false);

    let tracked = events(&server, "event=interop.viewed&ip=81.2.69.160");
    assert_eq!(tracked.len(), 1, "{tracked:?}");
    let e = &tracked[0];
    assert_eq!(e["properties"], json!({"plan": "gold", "seats": 3}));
    assert_eq!(e["user_identifiers"], json!({"uid": "alice"}));
    assert!(
        e["request"]["path"].as_str().unwrap().starts_with("/track"),
        "{e}"
    );
    let failed = events(&server, "event=interop.login_failed&ip=81.2.69.170");
    assert_eq!(failed.len(), 5, "{failed:?}");
    assert_eq!(failed[0]["user_identifiers"], json!({"username": "eve"}));
    nothing_refused(&server);
}

/// The Go agent's shapes: flattened event types, header pairs, the record
/// id in `request.rid`, track without options, identify's user inherited
/// by the record's tracks, object properties, a `sqreen_exception` event
/// acknowledged, string command outputs, metrics.
#[test]
fn go_agent_shapes_are_stored() {
    let server = server();
    let token = server.admin().create_app("go-app");
    replay(&server, &fixture("go"), &token);

    let placed = events(&server, "event=order.placed");
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0]["client_ip"], "81.2.69.146");
    assert_eq!(placed[0]["user_identifiers"], json!({"uid": "go-user-7"}));
    assert_eq!(
        placed[0]["properties"],
        json!({"amount": 42, "currency": "EUR"})
    );
    assert_eq!(placed[0]["request"]["path"], "/orders");
    let shipped = events(&server, "event=order.shipped");
    assert_eq!(shipped[0]["user_identifiers"], json!({"uid": "go-user-8"}));
    let viewed = events(&server, "event=order.viewed");
    assert_eq!(viewed[0]["user_identifiers"], json!({"uid": "go-user-7"}));
    let blocked = events(&server, "event=sq.action.block_ip");
    assert_eq!(
        blocked[0]["properties"]["output"],
        json!({"ip_address": "81.2.69.147"})
    );
    let failed = events(&server, "event=sdk-login-fail&ip=81.2.69.144");
    assert_eq!(count(&failed), 4);
    assert_eq!(
        failed[0]["user_identifiers"],
        json!({"username": "mallory"})
    );
    assert_eq!(events(&server, "event=sdk-login-success").len(), 1);
    let s = nothing_refused(&server);
    assert!(
        s["agent_reports_acknowledged"].as_u64().unwrap() >= 1,
        "{s}"
    );
}

/// One bad event is refused alone: the rest of its batch is stored and the
/// answer names it; a batch of only bad events is a 400; unknown fields
/// are ignored and counted.
#[test]
fn bad_events_are_refused_alone() {
    let server = server();
    let token = server.admin().create_app("mixed");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let good = |rid: &str| {
        let mut r = record(rid, "81.2.69.160", "mixed.ok", json!({"k": "v"}), None);
        r["novel_field"] = json!({"anything": [1, 2]});
        r
    };
    let mut bad = record("bad", "81.2.69.160", "mixed.bad", json!({}), None);
    bad["client_ip"] = json!("not-an-ip");
    let r = agent.batch(&[good("g1"), bad.clone(), good("g2")]);
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["status"], true);
    assert_eq!(answer["refused"][0]["index"], 1, "{answer}");
    assert_eq!(events(&server, "event=mixed.ok").len(), 2);
    assert!(events(&server, "event=mixed.bad").is_empty());

    assert_eq!(agent.batch(&[bad]).status(), 400);
    let s = stats(&server);
    assert_eq!(s["agent_events_refused"], 2, "{s}");
    assert!(s["agent_fields_ignored"].as_u64().unwrap() >= 2, "{s}");
}

/// The routes only the historical agents use answer, with `status`:
/// `/ping` without a credential, the rulespack chosen by User-Agent, and
/// the reports the server only acknowledges (with a session).
#[test]
fn extra_routes_answer() {
    let server = server();
    let token = server.admin().create_app("routes");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let http = client();
    let ping: Value = http
        .get(format!("{}/ping", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ping["status"], true);

    let pack = |ua: &str| -> Value {
        http.get(format!("{}/sqreen/v0/rulespack", server.url))
            .header("X-Session-Key", &agent.session)
            .header("User-Agent", ua)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let python = pack("sqreen-python/1.27.4");
    assert_eq!(python["status"], true);
    let periods: Vec<&Value> = python["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["metrics"].as_array())
        .flatten()
        .map(|m| &m["period"])
        .collect();
    assert!(!periods.is_empty() && periods.iter().all(|p| **p == 5));
    assert!(
        pack("curl/8").as_object().unwrap()["rules"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    for path in [
        "/sqreen/v0/sqreen_exception",
        "/sqreen/v0/bundle",
        "/sqreen/v0/agent_message",
        "/sqreen/v0/attack",
        "/sqreen/v0/commands",
        "/sqreen/v0/data_point",
    ] {
        let r = agent.post_raw(path, r#"{"anything": true}"#);
        assert_eq!(r.status(), 200, "{path}");
        let without = http
            .post(format!("{}{path}", server.url))
            .body("{}")
            .send()
            .unwrap();
        assert_eq!(without.status(), 401, "{path} without a session");
    }
    let r = agent.post_raw("/sqreen/v0/bundle", "not json");
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{}/sqreen/v0/app_sqreen_exception", server.url))
        .header("X-Api-Key", &token)
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = agent
        .post_raw(
            "/sqreen/v0/request_record",
            record("rr", "81.2.69.160", "single.record", json!({}), None).to_string(),
        )
        .json()
        .unwrap();
    assert_eq!(answer["status"], true);
    assert_eq!(events(&server, "event=single.record").len(), 1);
    assert_eq!(agent.actionspack()["status"], true);
}
