//! Throughput and latency checks of the storage design, ignored by default
//! (they take a while; run them in release on a quiet machine):
//!
//! ```text
//! cargo test -p sqreen-server --release --test throughput -- --ignored --nocapture
//! ```
//! `SQREEN_BENCH_EVENTS` sets how many events the explorer check seeds
//! (default 1 000 000). Targets: ingestion >= 20 000 records/s in batches of
//! 1000 over HTTP on SQLite; explorer queries <= 200 ms over 1 000 000 events.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::*;
use serde_json::{Map, Value, json};
use sqreen_server::store::{EventFilter, NewEvent, Store, TrendGroup, TrendQuery};

fn batch(round: usize) -> Vec<Value> {
    (0..1000)
        .map(|i| {
            let ip = format!("81.2.{}.{}", (i / 250) % 250, i % 250);
            let user = (i % 3 == 0).then(|| json!({"uid": format!("user-{}", i % 5000)}));
            record(
                &format!("bench-{round}-{i}"),
                &ip,
                if i % 10 == 0 {
                    "payment.failed"
                } else {
                    "user.seen"
                },
                json!({"plan": if i % 2 == 0 { "gold" } else { "free" }, "n": i}),
                user,
            )
        })
        .collect()
}

/// Records per second ingested over HTTP on SQLite, batches of 1000.
#[test]
#[ignore = "throughput check; run in release"]
fn ingest_throughput_sqlite() {
    let server = TestServer::start();
    let token = server.admin().create_app("bench");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    // Bodies are serialised up front: the server's time is measured.
    let bodies: Vec<String> = (0..30)
        .map(|r| json!({"batch": batch(r)}).to_string())
        .collect();
    let started = Instant::now();
    for body in bodies {
        assert_eq!(agent.post_raw("/sqreen/v0/batch", body).status(), 200);
    }
    let rate = 30_000.0 / started.elapsed().as_secs_f64();
    eprintln!("ingestion: {rate:.0} records/s (30 batches of 1000, SQLite, one client)");
}

fn event(i: usize, now: i64) -> NewEvent {
    let mut properties = Map::new();
    properties.insert(
        "plan".into(),
        json!(if i.is_multiple_of(2) { "gold" } else { "free" }),
    );
    properties.insert("n".into(), json!(i % 1000));
    let mut user_identifiers = BTreeMap::new();
    if i.is_multiple_of(3) {
        user_identifiers.insert("uid".to_owned(), format!("user-{}", i % 50_000));
    }
    NewEvent {
        // Random-looking, like the agents' UUIDs.
        rid: sqreen_server::secret::hash(&i.to_string())[..36].to_owned(),
        event: format!("event.{}", i % 20),
        time: now - i64::try_from(i).unwrap() * 10,
        client_ip: format!("81.{}.{}.{}", i % 7, (i / 7) % 250, (i / 1750) % 250),
        user_identifiers,
        properties,
        count: 1,
        request: r#"{"verb":"POST","path":"/login","user_agent":"bench"}"#.to_owned(),
        response: "null".to_owned(),
    }
}

/// Explorer query times over many events (SQLite).
#[test]
#[ignore = "latency check; run in release"]
fn explorer_latency_sqlite() {
    let n: usize = std::env::var("SQREEN_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let url = sqlite_url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let (app, _) = store.create_app("bench").await.unwrap();
        let now = sqreen_server::time::now_ms();
        let started = Instant::now();
        let mut lap = Instant::now();
        for (c, chunk) in (0..n).collect::<Vec<_>>().chunks(1000).enumerate() {
            let events: Vec<NewEvent> = chunk.iter().map(|&i| event(i, now)).collect();
            store.insert_events(app.id, &events, &[]).await.unwrap();
            if (c + 1) % 200 == 0 {
                eprintln!(
                    "  {} events stored; last 200 000 at {:.0}/s",
                    (c + 1) * 1000,
                    200_000.0 / lap.elapsed().as_secs_f64()
                );
                lap = Instant::now();
            }
        }
        eprintln!(
            "seeded {n} events in {:?} ({:.0}/s, store only)",
            started.elapsed(),
            n as f64 / started.elapsed().as_secs_f64()
        );
        sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
        let f = |set: &dyn Fn(&mut EventFilter)| {
            let mut filter = EventFilter::default();
            set(&mut filter);
            filter
        };
        let hour = now - 3_600_000;
        let cases: Vec<(&str, EventFilter)> = vec![
            ("none", f(&|_| {})),
            ("app", f(&|x| x.app = Some("bench".into()))),
            ("event", f(&|x| x.event = Some("event.7".into()))),
            ("ip", f(&|x| x.ip = Some("81.3.10.2".into()))),
            (
                "since/until",
                f(&|x| {
                    x.since = Some(hour);
                    x.until = Some(now - 1_800_000);
                }),
            ),
            (
                "property=value",
                f(&|x| {
                    x.property = Some("n".into());
                    x.value = Some("123".into());
                }),
            ),
            (
                "common property=value",
                f(&|x| {
                    x.property = Some("plan".into());
                    x.value = Some("gold".into());
                }),
            ),
            (
                "user",
                f(&|x| {
                    x.user_key = Some("uid".into());
                    x.user_value = Some("user-42".into());
                }),
            ),
            (
                "event+ip",
                f(&|x| {
                    x.event = Some("event.3".into());
                    x.ip = Some("81.3.10.2".into());
                }),
            ),
            (
                "event+property",
                f(&|x| {
                    x.event = Some("event.4".into());
                    x.property = Some("n".into());
                    x.value = Some("124".into());
                }),
            ),
            ("no match", f(&|x| x.ip = Some("' OR 1=1 --".into()))),
        ];
        for (name, filter) in &cases {
            let started = Instant::now();
            let page = store.list_events(filter, 100, None).await.unwrap();
            eprintln!(
                "list {name:>24}: {:>8.1} ms ({} events)",
                started.elapsed().as_secs_f64() * 1000.0,
                page.events.len()
            );
        }
        for (name, group_by, filter) in [
            (
                "trend event 1h/60s",
                None,
                f(&|x| x.event = Some("event.7".into())),
            ),
            (
                "trend 1h by ip",
                Some(TrendGroup::Ip),
                f(&|x| x.event = Some("event.7".into())),
            ),
            (
                "trend 1h by plan",
                Some(TrendGroup::Property("plan".into())),
                f(&|x| x.event = Some("event.7".into())),
            ),
        ] {
            let mut filter = filter;
            filter.since = Some(hour);
            filter.until = Some(now);
            let started = Instant::now();
            let trend = store
                .event_trend(&TrendQuery {
                    filter,
                    bucket_s: 60,
                    group_by,
                    max_groups: 20,
                })
                .await
                .unwrap();
            eprintln!(
                "{name:>29}: {:>8.1} ms ({} series)",
                started.elapsed().as_secs_f64() * 1000.0,
                trend.series.len()
            );
        }
    });
}

/// Where ingestion time goes: parsing a batch body vs storing its events.
#[test]
#[ignore = "throughput check; run in release"]
fn ingest_breakdown() {
    let bodies: Vec<String> = (0..20)
        .map(|r| json!({"batch": batch(r)}).to_string())
        .collect();
    let started = Instant::now();
    let parsed: Vec<Vec<NewEvent>> = bodies
        .iter()
        .map(|b| {
            let body: sqreen_server::protocol::BatchBody = serde_json::from_str(b).unwrap();
            sqreen_server::protocol::batch_events(body).unwrap()
        })
        .collect();
    let parse = started.elapsed();
    eprintln!(
        "20 000 records: parse {:.0}/s",
        20_000.0 / parse.as_secs_f64()
    );
    let mut databases = vec![("SQLite", sqlite_url())];
    if let Some(url) = postgres_url("ingest_breakdown (PostgreSQL part)") {
        databases.push(("PostgreSQL", url));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (name, url) in databases {
        let store_time = rt.block_on(async {
            let store = Store::connect(&url).await.unwrap();
            let (app, _) = store.create_app("bench").await.unwrap();
            let started = Instant::now();
            for events in &parsed {
                store.insert_events(app.id, events, &[]).await.unwrap();
            }
            started.elapsed()
        });
        eprintln!(
            "20 000 records: store {:.0}/s on {name}",
            20_000.0 / store_time.as_secs_f64()
        );
    }
}
