//! Playbooks as events and metrics arrive: threshold crossing, alerts,
//! actions pushed to agents with `actions_reload`, lifting, critical IPs,
//! user actors, conditions and webhooks.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn brute_force(threshold: i64) -> Value {
    json!({"name": "brute force",
        "trigger": {"event": "sdk-login-fail", "threshold": threshold, "period_s": 60,
                    "actor": "ip"},
        "responses": [{"type": "block", "duration_s": 300}]})
}

fn reloads(beat: &Value) -> bool {
    beat["commands"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "actions_reload" && c["uuid"].as_str().is_some_and(|u| !u.is_empty()))
}

fn threshold_blocks_ip_and_lift_restores(db: &str) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let token = admin.create_app("shop");
    let other_token = admin.create_app("blog");
    let playbook_id = admin.create_playbook(&brute_force(5));
    let (a, _) = FakeAgent::login(&server.url, &token);
    let (b, _) = FakeAgent::login(&server.url, &token);
    let (other, _) = FakeAgent::login(&server.url, &other_token);

    // Under the threshold: nothing.
    assert!(!reloads(&a.beat(&failed_logins("81.2.69.160", "bob", 2))));
    assert!(
        admin.get_json("/api/alerts")["alerts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Over it, counted across heartbeats and users of the same IP: the
    // agent whose beat crossed it reloads at once.
    assert!(reloads(&a.beat(&failed_logins("81.2.69.160", "alice", 3))));
    let alerts = admin.get_json("/api/alerts")["alerts"].clone();
    assert_eq!(alerts.as_array().unwrap().len(), 1);
    assert_eq!(alerts[0]["playbook_id"], playbook_id);
    assert_eq!(alerts[0]["actor"], "81.2.69.160");
    assert_eq!(alerts[0]["actor_type"], "ip");
    assert_eq!(alerts[0]["count"], 5);
    assert_eq!(alerts[0]["app"], "shop");
    let actions = admin.get_json("/api/actions")["actions"].clone();
    assert_eq!(actions.as_array().unwrap().len(), 1);
    let action = &actions[0];
    assert_eq!(action["action"], "block_ip");
    assert_eq!(action["parameters"]["ip_cidr"], json!(["81.2.69.160/32"]));
    assert_eq!(action["playbook_id"], playbook_id);
    assert!(action["expires_at"].as_str().is_some());

    // The other agent of the app on its next beat; each once.
    assert!(reloads(&b.beat(&json!({}))));
    for agent in [&a, &b] {
        assert!(!reloads(&agent.beat(&json!({}))));
        let pack = agent.actionspack();
        assert_eq!(pack["actions"][0]["action_id"], action["action_id"]);
        assert_eq!(pack["actions"][0]["action"], "block_ip");
        let duration = pack["actions"][0]["duration"].as_i64().unwrap();
        assert!((290..=300).contains(&duration), "{duration}");
    }
    // The other app is not concerned.
    assert!(!reloads(&other.beat(&json!({}))));
    assert!(
        other.actionspack()["actions"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // More failures while the action is live: no second alert.
    a.beat(&failed_logins("81.2.69.160", "bob", 50));
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

    // Lifting: gone from the API and the pack, agents reload.
    let id = action["action_id"].as_str().unwrap();
    let r = admin.send(Method::DELETE, &format!("/api/actions/{id}"), None);
    assert_eq!(r.status(), 204);
    assert_eq!(
        admin
            .send(Method::DELETE, &format!("/api/actions/{id}"), None)
            .status(),
        404
    );
    assert!(
        admin.get_json("/api/actions")["actions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(reloads(&a.beat(&json!({}))));
    assert!(a.actionspack()["actions"].as_array().unwrap().is_empty());

    // Counting starts afresh after a lift; crossing again raises a new alert.
    a.beat(&failed_logins("81.2.69.160", "bob", 4));
    assert_eq!(
        admin.get_json("/api/alerts")["alerts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    a.beat(&failed_logins("81.2.69.160", "bob", 1));
    assert_eq!(
        admin.get_json("/api/alerts")["alerts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

fn critical_ips_are_not_blocked(db: &str) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let token = admin.create_app("shop");
    admin.create_playbook(&brute_force(2));
    let (a, _) = FakeAgent::login(&server.url, &token);
    a.beat(&failed_logins("127.0.0.1", "bob", 5));
    a.beat(&failed_logins("10.1.2.3", "bob", 5));
    let alerts = admin.get_json("/api/alerts")["alerts"].clone();
    assert_eq!(alerts.as_array().unwrap().len(), 2);
    assert_eq!(alerts[0]["details"]["blocked"], false);
    assert!(
        admin.get_json("/api/actions")["actions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(!reloads(&a.beat(&json!({}))));

    let mut allowing = brute_force(2);
    allowing["allow_critical_ips"] = json!(true);
    allowing["name"] = json!("allowing");
    admin.create_playbook(&allowing);
    a.beat(&failed_logins("192.168.1.9", "bob", 5));
    let actions = admin.get_json("/api/actions")["actions"].clone();
    assert_eq!(actions.as_array().unwrap().len(), 1);
    assert_eq!(
        actions[0]["parameters"]["ip_cidr"],
        json!(["192.168.1.9/32"])
    );
}

fn user_actor_with_conditions(db: &str) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let token = admin.create_app("shop");
    admin.create_playbook(&json!({"name": "card testing",
        "trigger": {"event": "payment.failed", "threshold": 3, "period_s": 600, "actor": "user",
            "conditions": [{"property": "reason", "op": "regex", "value": "^card_"},
                           {"property": "amount", "op": "neq", "value": "0"}]},
        "responses": [{"type": "redirect", "duration_s": 0, "url": "https://example.com/help"}]}));
    let (a, _) = FakeAgent::login(&server.url, &token);
    let mallory = Some(json!({"username": "mallory"}));
    let mut batch = vec![
        // Not counted: the condition fails.
        record(
            "x1",
            "81.2.69.1",
            "payment.failed",
            json!({"reason": "network", "amount": 5}),
            mallory.clone(),
        ),
        record(
            "x2",
            "81.2.69.1",
            "payment.failed",
            json!({"reason": "card_declined", "amount": 0}),
            mallory.clone(),
        ),
        // Not counted: no user.
        record(
            "x3",
            "81.2.69.1",
            "payment.failed",
            json!({"reason": "card_declined", "amount": 5}),
            None,
        ),
    ];
    for i in 0..2 {
        batch.push(record(
            &format!("c{i}"),
            "81.2.69.1",
            "payment.failed",
            json!({"reason": "card_declined", "amount": 5}),
            mallory.clone(),
        ));
    }
    assert_eq!(a.batch(&batch).status(), 200);
    assert!(
        admin.get_json("/api/alerts")["alerts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A retried batch adds no count.
    assert_eq!(a.batch(&batch).status(), 200);
    assert!(
        admin.get_json("/api/alerts")["alerts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let third = [record(
        "c9",
        "81.2.69.2",
        "payment.failed",
        json!({"reason": "card_stolen", "amount": 9}),
        mallory,
    )];
    assert_eq!(a.batch(&third).status(), 200);
    let actions = admin.get_json("/api/actions")["actions"].clone();
    assert_eq!(actions.as_array().unwrap().len(), 1);
    assert_eq!(actions[0]["action"], "redirect_user");
    assert_eq!(
        actions[0]["parameters"]["users"],
        json!([{"username": "mallory"}])
    );
    assert_eq!(actions[0]["parameters"]["url"], "https://example.com/help");
    assert!(
        actions[0]["expires_at"].is_null(),
        "duration 0: until lifted"
    );
    // Until lifted: no `duration` (the Python agent reads 0 as expired).
    let pack = a.actionspack();
    assert_eq!(pack["status"], true);
    assert!(pack["actions"][0].get("duration").is_none(), "{pack}");
}

/// A tiny HTTP server that records request bodies and answers `status`.
fn webhook_receiver(status: u16) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice(&body) {
                seen.lock().unwrap().push(v);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, bodies)
}

/// A fired playbook POSTs its alert to the webhook; a failing webhook is
/// retried a bounded number of times and blocks nothing.
#[test]
fn webhooks_are_sent_and_retried() {
    let server = TestServer::start_allowing_private_webhooks(&sqlite_url());
    let admin = server.admin();
    let token = admin.create_app("shop");
    let (ok_url, ok_bodies) = webhook_receiver(200);
    let (failing_url, failing_bodies) = webhook_receiver(500);
    let mut p = brute_force(2);
    p["notifications"] = json!([{"type": "webhook", "url": ok_url},
                                {"type": "webhook", "url": failing_url}]);
    admin.create_playbook(&p);
    let (a, _) = FakeAgent::login(&server.url, &token);
    let started = std::time::Instant::now();
    a.beat(&failed_logins("81.2.69.160", "bob", 2));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ingestion did not wait"
    );
    let body = eventually("the webhook", Duration::from_secs(10), || {
        ok_bodies.lock().unwrap().first().cloned()
    });
    assert_eq!(body["type"], "sqreen.alert");
    assert_eq!(body["actor"], "81.2.69.160");
    assert_eq!(body["app"], "shop");
    eventually("three attempts", Duration::from_secs(10), || {
        (failing_bodies.lock().unwrap().len() == 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(failing_bodies.lock().unwrap().len(), 3, "bounded retries");
    assert_eq!(ok_bodies.lock().unwrap().len(), 1);
}

on_both_backends!(
    /// Crossing the threshold stores one alert and one block action, every
    /// agent of the app is told to reload once, the action pack carries it,
    /// and lifting it takes it away (with another reload).
    threshold_blocks_ip_and_lift_restores => threshold_blocks_ip_and_lift_restores_sqlite, threshold_blocks_ip_and_lift_restores_postgres
);

on_both_backends!(
    /// A custom event with conditions, counted per user, redirects that user.
    user_actor_with_conditions => user_actor_with_conditions_sqlite, user_actor_with_conditions_postgres
);

on_both_backends!(
    /// Loopback and private IPs get an alert but no action, unless the
    /// playbook allows critical IPs.
    critical_ips_are_not_blocked => critical_ips_are_not_blocked_sqlite, critical_ips_are_not_blocked_postgres
);
