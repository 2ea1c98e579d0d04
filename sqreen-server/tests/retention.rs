//! Retention on real sockets: events older than `--retention` disappear
//! from the explorer (with their attributes), newer ones stay, on SQLite
//! and PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::{Value, json};

/// A record tracked `age` ago.
fn record_aged(rid: &str, age: Duration) -> Value {
    let mut r = record(rid, "81.2.69.160", "aged", json!({"plan": rid}), None);
    let at = humantime::format_rfc3339_millis(SystemTime::now() - age).to_string();
    r["start"] = json!(at);
    r["end"] = json!(at);
    r["observed"]["sdk"][0]["time"] = json!(at);
    r
}

/// The `plan` of each `aged` event the explorer lists with query `q`.
fn aged_plans(admin: &AdminClient, q: &str) -> Vec<String> {
    admin.get_json(&format!("/api/events?event=aged&limit=1000{q}"))["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["properties"]["plan"].as_str().unwrap().to_owned())
        .collect()
}

fn old_events_are_forgotten(db: &str) {
    let server = TestServer::start_with(db, |mut c| {
        c.retention = Some(Duration::from_secs(24 * 3600));
        c.housekeeping_period = Duration::from_millis(200);
        c
    });
    let admin = server.admin();
    let token = admin.create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let day = Duration::from_secs(24 * 3600);
    // More than one deletion batch of old events.
    let old: Vec<Value> = (0..1200)
        .map(|i| record_aged(&format!("old{i}"), day * 2 + Duration::from_secs(i)))
        .collect();
    for chunk in old.chunks(400) {
        assert_eq!(agent.batch(chunk).status(), 200);
    }
    assert_eq!(
        agent
            .batch(&[record_aged("fresh", Duration::from_secs(60))])
            .status(),
        200
    );
    let names = |q: &str| aged_plans(&admin, q);
    eventually("old events removed", Duration::from_secs(60), || {
        (names("") == ["fresh"]).then_some(())
    });
    // Their attributes went with them: a property filter finds nothing.
    assert!(names("&property=plan&value=old5").is_empty());
    assert_eq!(names("&property=plan&value=fresh"), ["fresh"]);
}

on_both_backends!(
    /// Events past the retention period are removed; newer ones stay.
    old_events_are_forgotten => retention_sqlite, retention_postgres
);

/// One number a PostgreSQL query returns.
fn pg_number(url: &str, sql: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let row = sqlx::query(sql).fetch_one(&mut conn).await.unwrap();
        row.try_get::<i64, _>(0).unwrap()
    })
}

/// Whether a table exists, as 0 or 1.
fn pg_table(url: &str, name: &str) -> i64 {
    pg_number(
        url,
        &format!("SELECT CAST(CASE WHEN to_regclass('{name}') IS NULL THEN 0 ELSE 1 END AS INT8)"),
    )
}

/// PostgreSQL: events land in weekly partitions; a week created late takes
/// its events from the default partition; retention drops a week that
/// ended before the cut-off whole, and deletes the rest row by row.
#[test]
fn retention_drops_postgres_weeks() {
    let Some(db) = common::postgres_url("retention_drops_postgres_weeks") else {
        return;
    };
    let week = Duration::from_secs(7 * 24 * 3600);
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let this_week = sqreen_server::store::week_of(now_ms);
    let three_weeks_ago = sqreen_server::store::week_of(now_ms - 3 * 604_800_000);
    let token = {
        let server = TestServer::start_with(&db, |c| c);
        let token = server.admin().create_app("shop");
        let (agent, _) = FakeAgent::login(&server.url, &token);
        let old: Vec<Value> = (0..300)
            .map(|i| record_aged(&format!("old{i}"), week * 3 + Duration::from_secs(i)))
            .collect();
        assert_eq!(agent.batch(&old).status(), 200);
        let ancient: Vec<Value> = (0..5)
            .map(|i| record_aged(&format!("ancient{i}"), week * 10 + Duration::from_secs(i)))
            .collect();
        assert_eq!(agent.batch(&ancient).status(), 200);
        assert_eq!(
            agent
                .batch(&[record_aged("fresh", Duration::from_secs(60))])
                .status(),
            200
        );
        token
    };
    // This week and the next were made at start; the new event is in this
    // week's partition, the old ones in the default one.
    assert_eq!(pg_table(&db, &format!("events_w{this_week}")), 1);
    assert_eq!(pg_table(&db, &format!("events_w{}", this_week + 1)), 1);
    assert_eq!(
        pg_number(&db, &format!("SELECT COUNT(*) FROM events_w{this_week}")),
        1
    );
    assert_eq!(pg_number(&db, "SELECT COUNT(*) FROM events_default"), 305);
    // Creating the week three weeks ago moves its events (and their
    // attributes) out of the default partitions.
    let moved = pg_number(
        &db,
        &format!(
            "SELECT CAST(CASE WHEN sqreen_event_week({three_weeks_ago}) THEN 1 ELSE 0 END AS INT8)"
        ),
    );
    assert_eq!(moved, 1);
    let in_week = pg_number(
        &db,
        &format!("SELECT COUNT(*) FROM events_w{three_weeks_ago}"),
    );
    let in_default = pg_number(&db, "SELECT COUNT(*) FROM events_default");
    assert_eq!(in_week + in_default, 305);
    assert!(in_week >= 290, "{in_week} of 300 moved");
    assert!(
        pg_number(
            &db,
            &format!("SELECT COUNT(*) FROM event_attrs_by_event_w{three_weeks_ago}")
        ) >= 2 * in_week
    );

    // With a retention of one week, the old week goes whole and the
    // default partition's old events row by row.
    let server = TestServer::start_with(&db, |mut c| {
        c.retention = Some(week);
        c.housekeeping_period = Duration::from_millis(200);
        c
    });
    let admin = server.admin();
    eventually("the old week dropped", Duration::from_secs(60), || {
        (pg_table(&db, &format!("events_w{three_weeks_ago}")) == 0).then_some(())
    });
    assert_eq!(pg_table(&db, &format!("event_attrs_w{three_weeks_ago}")), 0);
    assert_eq!(
        pg_table(&db, &format!("event_attrs_by_event_w{three_weeks_ago}")),
        0
    );
    let names = |q: &str| aged_plans(&admin, q);
    eventually("old events removed", Duration::from_secs(60), || {
        (names("") == ["fresh"]).then_some(())
    });
    assert_eq!(pg_number(&db, "SELECT COUNT(*) FROM events_default"), 0);
    assert!(names("&property=plan&value=old5").is_empty());
    assert!(names("&property=plan&value=ancient1").is_empty());
    assert_eq!(names("&property=plan&value=fresh"), ["fresh"]);
    // The agent carries on into this week's partition.
    let (agent, _) = FakeAgent::login(&server.url, &token);
    assert_eq!(
        agent
            .batch(&[record_aged("fresh2", Duration::from_secs(30))])
            .status(),
        200
    );
    assert_eq!(
        pg_number(&db, &format!("SELECT COUNT(*) FROM events_w{this_week}")),
        2
    );
}
