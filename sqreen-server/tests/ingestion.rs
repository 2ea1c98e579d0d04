//! The agent protocol against a real server: login, batches, heartbeats,
//! logout, and bad input of every kind.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use serde_json::{Value, json};

fn event_count(admin: &AdminClient) -> usize {
    admin.get_json("/api/events?limit=1000")["events"]
        .as_array()
        .unwrap()
        .len()
}

/// A missing, wrong or oversized token is a 401 and opens no session.
#[test]
fn login_refuses_bad_tokens() {
    let server = TestServer::start();
    server.admin().create_app("shop");
    let http = client();
    let login = |token: Option<&str>| {
        let mut req = http
            .post(format!("{}/sqreen/v1/app-login", server.url))
            .json(&json!({"agent_type": "rust"}));
        if let Some(token) = token {
            req = req.header("X-Api-Key", token);
        }
        req.send().unwrap().status()
    };
    assert_eq!(login(None), 401);
    assert_eq!(login(Some("sqa_wrong")), 401);
    assert_eq!(login(Some("' OR 1=1 --")), 401);
    assert_eq!(login(Some(&"x".repeat(10_000))), 401);
    assert_eq!(server.admin().get_json("/api/stats")["unauthorized"], 4);
}

/// A good login answers a session, the heartbeat delay and the actions.
#[test]
fn login_answers_session_and_features() {
    let server = TestServer::start();
    let token = server.admin().create_app("shop");
    let (_agent, answer) = FakeAgent::login(&server.url, &token);
    assert_eq!(answer["status"], true);
    assert_eq!(answer["features"]["heartbeat_delay"], 1);
    assert!(answer["actions"].as_array().unwrap().is_empty());
}

/// Calls without a valid session are 401s (the agent then logs in again).
#[test]
fn calls_need_a_session() {
    let server = TestServer::start();
    let http = client();
    for path in ["/sqreen/v1/app-beat", "/sqreen/v0/batch"] {
        let r = http
            .post(format!("{}{path}", server.url))
            .header("X-Session-Key", "sqs_nope")
            .body("{}")
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http
        .get(format!("{}/sqreen/v0/actionspack", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn batches_are_stored_once(db: &str) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let token = admin.create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let batch = vec![
        record(
            "r1",
            "81.2.69.160",
            "user.invited",
            json!({"plan": "gold"}),
            None,
        ),
        record(
            "r2",
            "81.2.69.161",
            "payment.failed",
            json!({"amount": 12}),
            Some(json!({"uid": "u-1"})),
        ),
    ];
    assert_eq!(agent.batch(&batch).status(), 200);
    assert_eq!(agent.batch(&batch).status(), 200, "a retry is accepted");
    let events = admin.get_json("/api/events")["events"].clone();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "the retry stored nothing");
    let paid = events
        .iter()
        .find(|e| e["event"] == "payment.failed")
        .unwrap();
    assert_eq!(paid["app"], "shop");
    assert_eq!(paid["client_ip"], "81.2.69.161");
    assert_eq!(paid["properties"]["amount"], 12);
    assert_eq!(paid["user_identifiers"]["uid"], "u-1");
    assert_eq!(paid["request"]["verb"], "POST");
    assert_eq!(paid["request"]["path"], "/login");
    assert_eq!(paid["request"]["user_agent"], "test-agent/1");
    assert_eq!(paid["response"]["status"], 200);

    // NUL characters (refused by PostgreSQL in TEXT) are stored and found.
    let odd = [record(
        "r3\u{0}",
        "81.2.69.162",
        "odd\u{0}event",
        json!({"k\u{0}": "v\u{0}al"}),
        Some(json!({"uid": "\u{0}"})),
    )];
    assert_eq!(agent.batch(&odd).status(), 200);
    let found = admin.get_json("/api/events?property=k%00&value=v%00al");
    assert_eq!(found["events"].as_array().unwrap().len(), 1);
    assert_eq!(found["events"][0]["properties"]["k\u{0}"], "v\u{0}al");
}

fn bad_batches_store_nothing(db: &str) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let token = admin.create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let good = record("ok", "81.2.69.160", "e", json!({}), None);
    let mut cases: Vec<(String, u16)> = vec![
        ("not json".into(), 400),
        ("{\"batch\": 3}".into(), 400),
        ("[]".into(), 400),
        ("{\"batch\": {}}".into(), 400),
    ];
    // Unknown fields, a missing or empty `rid` (the Go and Python agents
    // put it in `request.rid`) are accepted since issue 16: not here.
    let bad_records = [
        json!({"event_type": "request_record", "observed": {"sdk": 3}}),
        {
            let mut r = good.clone();
            r["client_ip"] = json!("1.2.3.4'; DROP TABLE events; --");
            r
        },
        {
            let mut r = good.clone();
            r["observed"]["sdk"][0]["args"] = json!([{"not": "a name"}]);
            r
        },
        {
            let mut r = good.clone();
            r["observed"]["sdk"][0]["time"] = json!("noon");
            r
        },
        {
            let mut r = good.clone();
            r["event_type"] = json!("surprise");
            r
        },
    ];
    // A batch whose every event is bad is refused whole.
    for r in &bad_records {
        cases.push((json!({"batch": [r, r]}).to_string(), 400));
    }
    // Over the 32 MiB batch limit.
    cases.push((
        format!("{{\"batch\": [], \"pad\": \"{}\"}}", "x".repeat(33 << 20)),
        413,
    ));
    for (body, status) in cases {
        let r = agent.post_raw("/sqreen/v0/batch", body.clone());
        assert_eq!(
            r.status().as_u16(),
            status,
            "{}",
            &body[..body.len().min(200)]
        );
    }
    assert_eq!(event_count(&admin), 0, "nothing was stored");
    // A bad event beside good ones is refused alone.
    for (i, r) in bad_records.iter().enumerate() {
        let mixed = agent.batch(&[good.clone(), r.clone()]);
        assert_eq!(mixed.status(), 200);
        let answer: Value = mixed.json().unwrap();
        assert_eq!(answer["refused"][0]["index"], 1, "{i}: {answer}");
    }
    assert_eq!(event_count(&admin), 1, "the good event, stored once");
    // Every refusal was counted (and logged), and so was what was stored.
    assert_eq!(agent.batch(&[good]).status(), 200, "a retried batch");
    let stats = admin.get_json("/api/stats");
    assert_eq!(stats["bad_request"], 9, "{stats}");
    assert_eq!(stats["agent_events_refused"], 15, "{stats}");
    assert_eq!(stats["too_large"], 1, "{stats}");
    assert_eq!(stats["server_error"], 0, "{stats}");
    assert_eq!(stats["events_stored"], 1, "{stats}");
    assert_eq!(stats["events_duplicate"], 5, "{stats}");
}

fn heartbeat_metrics_become_events(db: &str) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let token = admin.create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let beat = failed_logins("81.2.69.160", "bob", 3);
    let answer = agent.beat(&beat);
    assert_eq!(answer["status"], true);
    agent.beat(&beat);
    let events = admin.get_json("/api/events?event=sdk-login-fail")["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["count"], 3);
    assert_eq!(events[0]["client_ip"], "81.2.69.160");
    assert_eq!(events[0]["user_identifiers"]["username"], "bob");

    let bad = json!({"metrics": [{"name": "sdk-login-fail", "start": "x", "finish": "y",
        "observation": {}}]});
    let r = agent.post_raw("/sqreen/v1/app-beat", bad.to_string());
    assert_eq!(r.status(), 400);
    // Unknown fields are ignored and counted (issue 16: the historical
    // agents send more than ours).
    let extra = json!({"metrics": [], "unknown": true});
    let r = agent.post_raw("/sqreen/v1/app-beat", extra.to_string());
    assert_eq!(r.status(), 200);
    assert_eq!(admin.get_json("/api/stats")["agent_fields_ignored"], 1);
    let r = agent.post_raw("/sqreen/v1/app-beat", vec![b'{'; 2 << 20]);
    assert_eq!(r.status(), 413);
}

/// After logout the session is gone.
#[test]
fn logout_ends_the_session() {
    let server = TestServer::start();
    let token = server.admin().create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let r = agent
        .http
        .get(format!("{}/sqreen/v0/app-logout", server.url))
        .header("X-Session-Key", &agent.session)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = agent.post_raw("/sqreen/v1/app-beat", "{}");
    assert_eq!(r.status(), 401);
    let _: Value = r.json().unwrap();
}

on_both_backends!(
    /// Events are stored with their request context; a retried batch is not
    /// stored twice.
    batches_are_stored_once => batches_are_stored_once_sqlite, batches_are_stored_once_postgres
);

on_both_backends!(
    /// Malformed, unknown-field, ill-typed and oversized batches are refused
    /// whole, store nothing, and the server keeps working.
    bad_batches_store_nothing => bad_batches_store_nothing_sqlite, bad_batches_store_nothing_postgres
);

on_both_backends!(
    /// User-monitoring metrics of a heartbeat become counted events; a
    /// resent heartbeat is not counted twice; a bad one is a 400.
    heartbeat_metrics_become_events => heartbeat_metrics_become_events_sqlite, heartbeat_metrics_become_events_postgres
);
