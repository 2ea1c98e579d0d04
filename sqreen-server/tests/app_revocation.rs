//! Revoking a leaked agent token: rotating it (`POST
//! /api/apps/{id}/rotate-token`) and deleting the application (`DELETE
//! /api/apps/{id}`), with their effect on logins, open sessions and the
//! application's data.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sqreen_server::store::Store;

fn login_status(url: &str, token: &str) -> u16 {
    client()
        .post(format!("{url}/sqreen/v1/app-login"))
        .header("X-Api-Key", token)
        .json(&json!({"agent_type": "rust"}))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn app_id(admin: &AdminClient, name: &str) -> i64 {
    admin.get_json("/api/apps")["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

fn rotation_revokes_the_old_token_and_its_sessions(db: &str) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let old = admin.create_app("shop");
    let other = admin.create_app("blog");
    let id = app_id(&admin, "shop");
    let (agent, _) = FakeAgent::login(&server.url, &old);
    let (bystander, _) = FakeAgent::login(&server.url, &other);
    agent.beat(&json!({}));

    let r = admin.post(&format!("/api/apps/{id}/rotate-token"), &json!({}));
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["id"], id);
    assert_eq!(answer["name"], "shop");
    let new = answer["token"].as_str().unwrap().to_owned();
    assert!(new.starts_with("sqa_") && new != old, "{new}");

    // The old token logs in no more; the session opened with it is over.
    assert_eq!(login_status(&server.url, &old), 401);
    assert_eq!(
        agent.post_raw("/sqreen/v1/app-beat", "{}").status(),
        401,
        "heartbeat"
    );
    let batch = [record("r1", "81.2.69.160", "e", json!({}), None)];
    assert_eq!(agent.batch(&batch).status(), 401, "batch");
    // The new token works; other apps are untouched.
    let (renewed, _) = FakeAgent::login(&server.url, &new);
    assert_eq!(renewed.batch(&batch).status(), 200);
    bystander.beat(&json!({}));
    assert_eq!(login_status(&server.url, &other), 200);

    assert_eq!(
        admin
            .post("/api/apps/999999/rotate-token", &json!({}))
            .status(),
        404
    );
    assert_eq!(
        admin
            .post("/api/apps/shop/rotate-token", &json!({}))
            .status(),
        400
    );
}

/// Counts rows of `table` matching `filter` (one `$1` parameter).
fn count(store: &Store, rt: &tokio::runtime::Runtime, sql: &str, app_id: i64) -> i64 {
    rt.block_on(async {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(app_id)
            .fetch_one(store.pool())
            .await
            .unwrap()
    })
}

fn deletion_ends_sessions_and_removes_the_data(db: &str) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let token = admin.create_app("shop");
    let blog_token = admin.create_app("blog");
    let id = app_id(&admin, "shop");
    admin.create_playbook(&json!({"name": "brute force",
        "trigger": {"event": "sdk-login-fail", "threshold": 2, "period_s": 60, "actor": "ip"},
        "responses": [{"type": "block", "duration_s": 0}]}));
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let (blog, _) = FakeAgent::login(&server.url, &blog_token);
    // More events than one purge batch, with attributes.
    let shop_events: Vec<Value> = (0..1200)
        .map(|i| {
            record(
                &format!("s{i}"),
                &format!("81.2.{}.{}", i / 200, i % 200),
                "purchase",
                json!({"plan": "gold", "n": i}),
                Some(json!({"username": format!("user{}", i % 7)})),
            )
        })
        .collect();
    for chunk in shop_events.chunks(400) {
        assert_eq!(agent.batch(chunk).status(), 200);
    }
    agent.beat(&failed_logins("81.2.69.160", "bob", 2));
    let blog_events = [record(
        "b1",
        "81.2.69.200",
        "post.read",
        json!({"k": "v"}),
        None,
    )];
    assert_eq!(blog.batch(&blog_events).status(), 200);
    assert_eq!(admin.get_json("/api/alerts")["alerts"][0]["app"], "shop");
    assert_eq!(admin.get_json("/api/actions")["actions"][0]["app"], "shop");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(Store::connect(db)).unwrap();
    // Half of the attributes merged into the index, half not.
    rt.block_on(store.merge_attributes()).unwrap();
    let more: Vec<Value> = (0..50)
        .map(|i| {
            record(
                &format!("late{i}"),
                "81.2.9.9",
                "late",
                json!({"x": i}),
                None,
            )
        })
        .collect();
    assert_eq!(agent.batch(&more).status(), 200);

    let r = admin.send(Method::DELETE, &format!("/api/apps/{id}"), None);
    assert_eq!(r.status(), 204);
    // Its token and its sessions are refused at once.
    assert_eq!(login_status(&server.url, &token), 401);
    assert_eq!(agent.post_raw("/sqreen/v1/app-beat", "{}").status(), 401);
    assert_eq!(agent.batch(&more).status(), 401);
    assert_eq!(
        agent
            .http
            .get(format!("{}/sqreen/v0/actionspack", server.url))
            .header("X-Session-Key", &agent.session)
            .send()
            .unwrap()
            .status(),
        401
    );
    // Its actions and alerts are gone; the other app is untouched.
    let apps = admin.get_json("/api/apps")["apps"].clone();
    assert_eq!(apps.as_array().unwrap().len(), 1);
    assert_eq!(apps[0]["name"], "blog");
    assert_eq!(admin.get_json("/api/actions")["actions"], json!([]));
    assert_eq!(admin.get_json("/api/alerts")["alerts"], json!([]));
    blog.beat(&json!({}));
    // Its events are removed, with their attributes, in the background.
    eventually("the events purged", Duration::from_secs(30), || {
        (count(
            &store,
            &rt,
            "SELECT COUNT(*) FROM events WHERE app_id = $1",
            id,
        ) == 0)
            .then_some(())
    });
    eventually("the purge finished", Duration::from_secs(30), || {
        (count(
            &store,
            &rt,
            "SELECT COUNT(*) FROM app_purges WHERE app_id = $1",
            id,
        ) == 0)
            .then_some(())
    });
    for sql in [
        "SELECT COUNT(*) FROM event_attrs WHERE event_id NOT IN (SELECT id FROM events) \
         AND $1 > 0",
        "SELECT COUNT(*) FROM event_attrs_by_event WHERE event_id NOT IN (SELECT id FROM events) \
         AND $1 > 0",
        "SELECT COUNT(*) FROM event_attrs_unmerged WHERE event_id NOT IN (SELECT id FROM events) \
         AND $1 > 0",
        "SELECT COUNT(*) FROM sessions WHERE app_id = $1",
        "SELECT COUNT(*) FROM actions WHERE app_id = $1",
        "SELECT COUNT(*) FROM alerts WHERE app_id = $1",
        "SELECT COUNT(*) FROM playbook_hits WHERE app_id = $1",
        "SELECT COUNT(*) FROM playbook_locks WHERE app_id = $1",
    ] {
        assert_eq!(count(&store, &rt, sql, id), 0, "{sql}");
    }
    let events = admin.get_json("/api/events?limit=1000")["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["app"], "blog");
    let by_property = admin.get_json("/api/events?property=k&value=v")["events"].clone();
    assert_eq!(by_property.as_array().unwrap().len(), 1);
    rt.block_on(store.close());

    // The name is free again; the id is gone.
    assert_eq!(
        admin.post("/api/apps", &json!({"name": "shop"})).status(),
        201
    );
    assert_eq!(
        admin
            .send(Method::DELETE, &format!("/api/apps/{id}"), None)
            .status(),
        404
    );
    assert_eq!(
        admin.send(Method::DELETE, "/api/apps/shop", None).status(),
        400
    );
}

/// The new routes want the admin key.
#[test]
fn revocation_needs_the_admin_key() {
    let server = TestServer::start();
    let admin = server.admin();
    let token = admin.create_app("shop");
    let id = app_id(&admin, "shop");
    let http = client();
    for (method, path) in [
        (Method::DELETE, format!("/api/apps/{id}")),
        (Method::POST, format!("/api/apps/{id}/rotate-token")),
    ] {
        let r = http
            .request(method.clone(), format!("{}{path}", server.url))
            .bearer_auth("wrong")
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
    }
    assert_eq!(login_status(&server.url, &token), 200);
}

on_both_backends!(
    /// Rotating a token answers the new one once; the old token no longer
    /// logs in and the sessions opened with it get 401 at once.
    rotation_revokes_the_old_token_and_its_sessions => rotation_revokes_the_old_token_and_its_sessions_sqlite, rotation_revokes_the_old_token_and_its_sessions_postgres
);

on_both_backends!(
    /// Deleting an app ends its sessions and token at once, deletes its
    /// actions and alerts, and removes its events and their attributes.
    deletion_ends_sessions_and_removes_the_data => deletion_ends_sessions_and_removes_the_data_sqlite, deletion_ends_sessions_and_removes_the_data_postgres
);
