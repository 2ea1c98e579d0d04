//! PostgreSQL: a database written by the version before weekly partitions
//! (migrations up to 0012) keeps its events, their shared contexts and
//! their indexed attributes once the server moves them into partitions
//! (migration 0013), and ingestion carries on with new ids.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::json;

const WEEK_MS: i64 = 604_800_000;

/// Applies the migrations before 0013, then writes three events the way the
/// previous version did: two of one record sharing a context (one merged
/// into the attribute index, one not yet) and one of another week.
fn seed_previous_version(url: &str, now_ms: i64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let mut migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
        let before: Vec<_> = migrator
            .migrations
            .iter()
            .filter(|m| m.version < 13)
            .cloned()
            .collect();
        assert_eq!(before.len(), 12);
        migrator.migrations = before.into();
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        migrator.run(&mut conn).await.unwrap();
        let old = now_ms - 3 * WEEK_MS;
        let statements = [
            "INSERT INTO apps (name, token_hash, created_at) VALUES ('legacy', 'not-a-token', 0)"
                .to_owned(),
            format!(
                "INSERT INTO events (app_id, rid, event, time, client_ip, user_key, properties, \
                 count, request, response, received_at, context_id) VALUES \
                 (1, 'r1', 'legacy.login', {now_ms}, '81.2.69.160', '{{\"email\":\"a@b.c\"}}', \
                  '{{\"plan\":\"gold\"}}', 1, '{{\"path\":\"/login\"}}', 'null', {now_ms}, NULL), \
                 (1, 'r1#1', 'legacy.cart', {now_ms}, '81.2.69.160', '', \
                  '{{\"plan\":\"silver\"}}', 1, 'null', 'null', {now_ms}, 1), \
                 (1, 'r2', 'legacy.login', {old}, '81.2.69.161', '', \
                  '{{\"plan\":\"bronze\"}}', 1, '{{\"path\":\"/old\"}}', 'null', {old}, NULL)"
            ),
            format!(
                "INSERT INTO event_attrs_by_event (event_id, kind, key, value, time) VALUES \
                 (1, 'i', '', '81.2.69.160', {now_ms}), (1, 'p', 'plan', 'gold', {now_ms}), \
                 (1, 'u', 'email', 'a@b.c', {now_ms}), \
                 (2, 'i', '', '81.2.69.160', {now_ms}), (2, 'p', 'plan', 'silver', {now_ms}), \
                 (3, 'i', '', '81.2.69.161', {old}), (3, 'p', 'plan', 'bronze', {old})"
            ),
            format!(
                "INSERT INTO event_attrs (event_id, kind, key, value, time, client_ip, count) VALUES \
                 (1, 'i', '', '81.2.69.160', {now_ms}, '81.2.69.160', 1), \
                 (1, 'p', 'plan', 'gold', {now_ms}, '81.2.69.160', 1), \
                 (1, 'u', 'email', 'a@b.c', {now_ms}, '81.2.69.160', 1), \
                 (3, 'i', '', '81.2.69.161', {old}, '81.2.69.161', 1), \
                 (3, 'p', 'plan', 'bronze', {old}, '81.2.69.161', 1)"
            ),
            "INSERT INTO event_attrs_unmerged (event_id) VALUES (2)".to_owned(),
        ];
        for sql in statements {
            sqlx::Executor::execute(&mut conn, sql.as_str()).await.unwrap();
        }
    });
}

#[test]
fn previous_events_survive_partitioning() {
    let Some(db) = common::postgres_url("previous_events_survive_partitioning") else {
        return;
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    seed_previous_version(&db, now_ms);
    let server = TestServer::start_with(&db, |mut c| {
        c.housekeeping_period = Duration::from_secs(3600);
        c
    });
    let admin = server.admin();
    let plans = |q: &str| -> Vec<String> {
        let page = admin.get_json(&format!("/api/events?limit=100{q}"));
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["properties"]["plan"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut all = plans("");
    all.sort();
    assert_eq!(all, ["bronze", "gold", "silver"]);
    // The merged index and the unmerged rows both answer filters.
    assert_eq!(plans("&property=plan&value=gold"), ["gold"]);
    assert_eq!(plans("&property=plan&value=silver"), ["silver"]);
    assert_eq!(plans("&property=plan&value=bronze"), ["bronze"]);
    assert_eq!(plans("&ip=81.2.69.161"), ["bronze"]);
    // The second event of the record still shows the first one's request.
    let silver = admin.get_json("/api/events?property=plan&value=silver");
    assert_eq!(silver["events"][0]["request"]["path"], json!("/login"));

    // New events get new ids, beside the old ones.
    let token = admin.create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let r = record(
        "new1",
        "81.2.69.162",
        "shop.buy",
        json!({"plan": "new"}),
        None,
    );
    assert_eq!(agent.batch(&[r]).status(), 200);
    assert_eq!(plans("&property=plan&value=new"), ["new"]);
    let mut all = plans("");
    all.sort();
    assert_eq!(all, ["bronze", "gold", "new", "silver"]);
}
