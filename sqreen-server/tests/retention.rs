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
    let names = |q: &str| -> Vec<String> {
        admin.get_json(&format!("/api/events?event=aged&limit=1000{q}"))["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["properties"]["plan"].as_str().unwrap().to_owned())
            .collect()
    };
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
