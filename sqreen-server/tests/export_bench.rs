//! Seeds the database of `scripts/export-bench.sh`: a measurement, not a
//! test, so it is ignored unless asked for (`--ignored`) and does nothing
//! without `SQREEN_EXPORT_BENCH_DB`.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use sqreen_server::store::{NewEvent, Store};

/// Stores `SQREEN_EXPORT_BENCH_EVENTS` (default 1 000 000) events of one app
/// in `SQREEN_EXPORT_BENCH_DB` (`sqlite://…`), straight through the store in
/// batches of 10 000, timed over the last 12 hours.
#[test]
#[ignore = "a measurement's setup: run by scripts/export-bench.sh"]
fn seed_export_bench_db() {
    let Ok(url) = std::env::var("SQREEN_EXPORT_BENCH_DB") else {
        eprintln!("SQREEN_EXPORT_BENCH_DB is not set: nothing to seed");
        return;
    };
    let total: usize = std::env::var("SQREEN_EXPORT_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let (app, _) = store.create_app("bench").await.unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let request: Arc<str> = json!({"verb": "POST", "path": "/login", "host": "example.com",
            "user_agent": "bench/1", "remote_ip": "10.0.0.2"})
        .to_string()
        .into();
        let response: Arc<str> = json!({"status": 200}).to_string().into();
        let start = std::time::Instant::now();
        const BATCH: usize = 10_000;
        for first in (0..total).step_by(BATCH) {
            let events: Vec<NewEvent> = (first..(first + BATCH).min(total))
                .map(|i| {
                    let mut properties = Map::new();
                    properties.insert("n".into(), Value::from(i));
                    properties.insert("plan".into(), Value::from(["gold", "free"][i % 2]));
                    let mut user_identifiers = BTreeMap::new();
                    if i % 3 == 0 {
                        user_identifiers.insert("uid".into(), format!("u{}", i % 1000));
                    }
                    NewEvent {
                        rid: format!("bench-{i}"),
                        event: ["login.failed", "payment.failed", "page.view"][i % 3].into(),
                        time: now - 12 * 3_600_000 + (i as i64 * 43_200_000) / total as i64,
                        client_ip: format!("81.2.{}.{}", (i / 256) % 256, i % 256),
                        user_identifiers,
                        properties,
                        count: 1,
                        request: request.clone(),
                        response: response.clone(),
                        context_of: None,
                    }
                })
                .collect();
            store.insert_events(app.id, &events, &[]).await.unwrap();
        }
        store.merge_attributes().await.unwrap();
        eprintln!(
            "seeded {total} events in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    });
}
