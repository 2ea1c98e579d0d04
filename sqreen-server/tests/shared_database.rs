//! Two servers on one PostgreSQL database behave as one backend: sessions,
//! action reloads, threshold counts and the one-alert rule are shared.
//! Skipped (with a line saying so) without `SQREEN_TEST_POSTGRES_URL`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::*;
use reqwest::Method;
use serde_json::json;

fn reloads(beat: &serde_json::Value) -> bool {
    beat["commands"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "actions_reload")
}

/// A session opened on one server works on the other; a playbook crossed
/// through both raises one alert; each server tells its agents to reload.
#[test]
fn two_servers_act_as_one() {
    let Some(db) = postgres_url("two_servers_act_as_one") else {
        return;
    };
    let a = TestServer::start_db(&db);
    let b = TestServer::start_db(&db);
    let token = a.admin().create_app("shop");
    b.admin().create_playbook(&json!({"name": "brute force",
        "trigger": {"event": "sdk-login-fail", "threshold": 4, "period_s": 60, "actor": "ip"},
        "responses": [{"type": "block", "duration_s": 120}]}));
    let (on_a, _) = FakeAgent::login(&a.url, &token);
    let (mut on_b, _) = FakeAgent::login(&a.url, &token);
    on_b.url = b.url.clone(); // its session was opened on A

    assert_eq!(
        on_b.batch(&[record("r1", "81.2.69.160", "e", json!({}), None)])
            .status(),
        200
    );
    assert_eq!(a.admin().get_json("/api/events")["events"][0]["event"], "e");

    on_a.beat(&failed_logins("81.2.69.160", "bob", 2));
    assert!(reloads(&on_b.beat(&failed_logins("81.2.69.160", "eve", 2))));
    let alerts = b.admin().get_json("/api/alerts")["alerts"].clone();
    assert_eq!(alerts.as_array().unwrap().len(), 1);
    assert_eq!(alerts[0]["count"], 4);
    assert!(reloads(&on_a.beat(&json!({}))));
    assert!(!reloads(&on_b.beat(&json!({}))));
    let action = a.admin().get_json("/api/actions")["actions"][0].clone();
    assert_eq!(action["action"], "block_ip");
    assert_eq!(
        on_b.actionspack()["actions"][0]["action_id"],
        action["action_id"]
    );

    let id = action["action_id"].as_str().unwrap();
    let r = b
        .admin()
        .send(Method::DELETE, &format!("/api/actions/{id}"), None);
    assert_eq!(r.status(), 204);
    assert!(reloads(&on_a.beat(&json!({}))));
    assert!(on_a.actionspack()["actions"].as_array().unwrap().is_empty());
}

/// Many agents on both servers crossing the same threshold at once raise
/// exactly one alert and one action.
#[test]
fn concurrent_crossings_raise_one_alert() {
    let Some(db) = postgres_url("concurrent_crossings_raise_one_alert") else {
        return;
    };
    let servers = Arc::new([TestServer::start_db(&db), TestServer::start_db(&db)]);
    let token = servers[0].admin().create_app("shop");
    servers[0].admin().create_playbook(&json!({"name": "burst",
        "trigger": {"event": "sdk-login-fail", "threshold": 3, "period_s": 60, "actor": "ip"},
        "responses": [{"type": "block", "duration_s": 120}]}));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let servers = Arc::clone(&servers);
            let token = token.clone();
            std::thread::spawn(move || {
                let (agent, _) = FakeAgent::login(&servers[i % 2].url, &token);
                for n in 0..5 {
                    agent.beat(&failed_logins("81.2.69.160", &format!("u{i}-{n}"), 1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let admin = servers[1].admin();
    assert_eq!(
        admin.get_json("/api/alerts")["alerts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        admin.get_json("/api/actions")["actions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let events = admin.get_json("/api/events?event=sdk-login-fail&limit=1000");
    assert_eq!(events["events"].as_array().unwrap().len(), 40);
}
