//! Two servers on one PostgreSQL database behave as one backend: sessions,
//! action reloads, threshold counts and the one-alert rule are shared, and
//! both may merge event attributes into the index at once.
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

/// The events of batch `b`: 50 events with two properties and an IP each
/// (three attributes).
fn merge_batch(b: usize) -> Vec<sqreen_server::store::NewEvent> {
    let now = sqreen_server::time::now_ms();
    (0..50)
        .map(|i| {
            let mut properties = serde_json::Map::new();
            properties.insert("batch".into(), json!(b));
            properties.insert("plan".into(), json!(["free", "gold"][i % 2]));
            sqreen_server::store::NewEvent {
                rid: format!("m{b}-{i}"),
                event: "merge.test".into(),
                time: now,
                client_ip: format!("81.2.{}.{}", b % 200, i),
                user_identifiers: std::collections::BTreeMap::new(),
                properties,
                count: 1,
                request: "null".into(),
                response: "null".into(),
                context_of: None,
            }
        })
        .collect()
}

/// Two stores (two server processes) merge event attributes into the index
/// while batches keep arriving: every attribute ends up in the index
/// exactly once, and nothing stays unmerged.
#[test]
fn concurrent_merges_move_each_attribute_once() {
    let Some(db) = postgres_url("concurrent_merges_move_each_attribute_once") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = sqreen_server::store::Store::connect(&db).await.unwrap();
        let b = sqreen_server::store::Store::connect(&db).await.unwrap();
        let (app, _) = a.create_app("merges").await.unwrap();
        let batches = 40;
        let insert = async {
            for n in 0..batches {
                let store = if n % 2 == 0 { &a } else { &b };
                store
                    .insert_events(app.id, &merge_batch(n), &[])
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        };
        let merge = |store: &sqreen_server::store::Store| {
            let store = store.clone();
            async move {
                let mut moved = 0;
                for _ in 0..30 {
                    moved += store.merge_attributes().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                moved
            }
        };
        let ((), moved_a, moved_b) = tokio::join!(insert, merge(&a), merge(&b));
        let last = a.merge_attributes().await.unwrap();
        let expected = u64::try_from(batches * 50 * 3).unwrap();
        assert!(moved_a + moved_b > 0, "the concurrent merges moved rows");
        let ((merges_a, failed_a), (merges_b, failed_b)) = (a.merge_counts(), b.merge_counts());
        assert_eq!((failed_a, failed_b), (0, 0));
        assert!(merges_a + merges_b > 0);
        assert_eq!(moved_a + moved_b + last, expected);
        let count = |sql: &'static str| {
            let pool = a.pool().clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            count("SELECT COUNT(*) FROM event_attrs").await,
            expected as i64
        );
        assert_eq!(count("SELECT COUNT(*) FROM event_attrs_unmerged").await, 0);
        let page = a
            .list_events(
                &sqreen_server::store::EventFilter {
                    property: Some("plan".into()),
                    value: Some("gold".into()),
                    ..Default::default()
                },
                5000,
                None,
            )
            .await
            .unwrap();
        assert_eq!(page.events.len(), batches * 25);
        a.close().await;
        b.close().await;
    });
}
