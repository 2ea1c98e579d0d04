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

/// The allocator of the `sqreen-server` binary, so that these figures are
/// the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sqreen_server::store::{
    EventFilter, FACET_SAMPLE, FACET_VALUES, KNOWN_EVENTS, MERGE_ROWS, NewEvent, Store, TrendGroup,
    TrendQuery,
};

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

/// The time between two events of [`event`]: `SQREEN_BENCH_SPACING_MS`,
/// default 10 (1 000 000 events then span 2.8 hours; 2 419 spreads them
/// over four weeks, as many PostgreSQL partitions).
fn spacing_ms() -> i64 {
    std::env::var("SQREEN_BENCH_SPACING_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
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
        time: now - i64::try_from(i).unwrap() * spacing_ms(),
        client_ip: format!("81.{}.{}.{}", i % 7, (i / 7) % 250, (i / 1750) % 250),
        user_identifiers,
        properties,
        count: 1,
        request: r#"{"verb":"POST","path":"/login","user_agent":"bench"}"#.into(),
        response: "null".into(),
        context_of: None,
    }
}

/// Explorer query times over many events (SQLite), twice: with the newest
/// events' attributes not merged into the index yet (as many as can wait
/// before a merge starts), and with everything merged.
#[test]
#[ignore = "latency check; run in release"]
fn explorer_latency_sqlite() {
    explorer_latency(&sqlite_url());
}

/// The same on PostgreSQL (`SQREEN_TEST_POSTGRES_URL`).
#[test]
#[ignore = "latency check; run in release"]
fn explorer_latency_postgres() {
    if let Some(url) = postgres_url("explorer_latency_postgres") {
        explorer_latency(&url);
    }
}

fn explorer_latency(url: &str) {
    let n: usize = std::env::var("SQREEN_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::connect(url).await.unwrap();
        let (app, _) = store.create_app("bench").await.unwrap();
        let now = sqreen_server::time::now_ms();
        // Oldest first, as they would arrive. Event `i` has 3⅓ attributes:
        // the newest `unmerged` events stay just under a merge's threshold.
        let per_event = 10.0 / 3.0;
        let unmerged = ((MERGE_ROWS as f64 / per_event) as usize)
            .saturating_sub(2000)
            .min(n);
        let started = Instant::now();
        let all: Vec<usize> = (0..n).rev().collect();
        let (older, newest) = all.split_at(n - unmerged);
        for chunk in older.chunks(1000) {
            let events: Vec<NewEvent> = chunk.iter().map(|&i| event(i, now)).collect();
            store.insert_events(app.id, &events, &[]).await.unwrap();
        }
        store.merge_attributes().await.unwrap();
        for chunk in newest.chunks(1000) {
            let events: Vec<NewEvent> = chunk.iter().map(|&i| event(i, now)).collect();
            store.insert_events(app.id, &events, &[]).await.unwrap();
        }
        eprintln!(
            "seeded {n} events in {:?} ({:.0}/s, store only)",
            started.elapsed(),
            n as f64 / started.elapsed().as_secs_f64()
        );
        sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM event_attrs_unmerged u \
             JOIN event_attrs_by_event b ON b.event_id = u.event_id",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        eprintln!("-- the newest {unmerged} events unmerged ({waiting} attribute rows):");
        explorer_queries(&store, now).await;
        // PostgreSQL's first reads of freshly written rows check each row's
        // transaction and cannot answer from an index alone until a vacuum
        // has marked the pages all-visible, which autovacuum does after
        // 20 000 inserts (migration 0007), within a minute or so. Measure
        // both: just after the bulk load, and once autovacuum has come.
        let postgres = url.starts_with("postgres");
        if postgres {
            wait_for_autovacuum(&store).await;
            eprintln!("-- the same once autovacuum has visited the tables:");
            explorer_queries(&store, now).await;
        }
        let merge = Instant::now();
        let moved = store.merge_attributes().await.unwrap();
        eprintln!(
            "-- merged {moved} rows in {:?}; everything merged:",
            merge.elapsed()
        );
        explorer_queries(&store, now).await;
        if postgres {
            wait_for_autovacuum(&store).await;
            eprintln!("-- the same once autovacuum has visited the tables:");
            explorer_queries(&store, now).await;
        }
    });
    eprintln!("-- whole dashboard pages (every query of the page, then rendering):");
    page_latency(url);
}

/// Times whole explorer pages (every query of the page: listing, facets,
/// event names, the chart's trends, and rendering) over the seeded events,
/// through a server on the same database.
fn page_latency(url: &str) {
    let server = TestServer::start_db(url);
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(format!("{}/login", server.url))
        .form(&[("key", ADMIN_KEY)])
        .send()
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for path in [
        "/events",
        "/events?group=event",
        "/events?group=ip",
        "/events?group=property:plan",
        "/events?event=event.7",
        "/events?ip=81.3.10.2",
        "/events?property=plan&value=gold",
        "/events?user_key=uid&user_value=user-42",
        "/events?range=1h&group=user",
    ] {
        for round in 0..2 {
            let started = Instant::now();
            let r = http
                .get(format!("{}{path}", server.url))
                .header("cookie", &cookie)
                .send()
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let bytes = r.bytes().unwrap().len();
            eprintln!(
                "page {path:>40}{}: {:>8.1} ms ({bytes} bytes)",
                if round == 0 { "" } else { " again" },
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
    }
}

/// Waits (at most 5 minutes) until autovacuum has visited the event tables
/// since their last 20 000 inserts, as migration 0007 asks of it, and has
/// no worker running (PostgreSQL).
async fn wait_for_autovacuum(store: &Store) {
    let started = Instant::now();
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_stat_user_tables \
             WHERE (relname IN ('events', 'event_attrs', 'event_attrs_by_event') \
             OR relname ~ '^event(s|_attrs|_attrs_by_event)_(w[0-9]+|default)$') \
             AND n_ins_since_vacuum >= 20000",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        // Its workers (vacuum, then analyze) also done: they compete for
        // the two cores.
        let working: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_stat_activity \
             WHERE backend_type = 'autovacuum worker'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if behind == 0 && working == 0 {
            eprintln!("   (autovacuum caught up after {:?})", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(300),
            "autovacuum did not visit the event tables in 5 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Times each explorer query shape over the events of [`event`], as many
/// times in a row as `SQREEN_BENCH_REPEAT` says (default 1: the first
/// queries on the store's connections).
async fn explorer_queries(store: &Store, now: i64) {
    let repeat: usize = std::env::var("SQREEN_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for round in 0..repeat {
        if round > 0 {
            eprintln!("   (again)");
        }
        explorer_round(store, now).await;
    }
}

/// One round of [`explorer_queries`].
async fn explorer_round(store: &Store, now: i64) {
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
    // The explorer's facets over its default window (24 hours), newest
    // FACET_SAMPLE matching events at most, with the same filters.
    for (name, filter) in &cases {
        let mut filter = filter.clone();
        filter.since = Some(now - 86_400_000);
        filter.until = Some(now);
        let started = Instant::now();
        let facets = store
            .facets(&filter, FACET_SAMPLE, FACET_VALUES)
            .await
            .unwrap();
        eprintln!(
            "facets {name:>22}: {:>8.1} ms ({} events counted)",
            started.elapsed().as_secs_f64() * 1000.0,
            facets.counted
        );
    }
    let started = Instant::now();
    let known = store.known_events(KNOWN_EVENTS).await.unwrap();
    eprintln!(
        "{:>29}: {:>8.1} ms ({} names)",
        "known event names",
        started.elapsed().as_secs_f64() * 1000.0,
        known.len()
    );
    for (name, group_by, filter) in [
        (
            "trend 1h all events by event",
            Some(TrendGroup::Event),
            f(&|_| {}),
        ),
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
        ("trend 1h all events", None, f(&|_| {})),
        (
            "trend 1h all events by ip",
            Some(TrendGroup::Ip),
            f(&|_| {}),
        ),
        (
            "trend 1h plan=gold by ip",
            Some(TrendGroup::Ip),
            f(&|x| {
                x.property = Some("plan".into());
                x.value = Some("gold".into());
            }),
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

/// A small deterministic generator (splitmix64): the same data on every run.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One batch body of 1000 request records, each tracking one event, built
/// as text (cheap: the client shares the 2 cores with the server).
///
/// `realistic`: 3 000 client IPs, 30 event names, properties `plan` (4
/// values), `country` (50), `path` (200), `amount` (1 000), a user id (of
/// 20 000) on half of them. Adversarial: every IP, `n`, `session` and user
/// id distinct (random index pages everywhere).
fn growth_batch(mix: &mut Mix, realistic: bool) -> String {
    let now = now_rfc3339();
    let mut body = String::with_capacity(1000 * 700);
    body.push_str(r#"{"batch":["#);
    for i in 0..1000 {
        if i > 0 {
            body.push(',');
        }
        let rid = format!("{:016x}-{:016x}", mix.next(), mix.next());
        let (ip, event, props, user) = if realistic {
            let ip = mix.below(3000);
            let user = mix.below(2) == 0;
            (
                format!("81.{}.{}.{}", ip % 7, (ip / 7) % 250, ip / 1750),
                format!("app.event.{}", mix.below(30)),
                format!(
                    r#"{{"plan":"{}","country":"c{}","path":"/p/{}","amount":{}}}"#,
                    ["free", "gold", "pro", "team"][usize::try_from(mix.below(4)).unwrap()],
                    mix.below(50),
                    mix.below(200),
                    mix.below(1000)
                ),
                user.then(|| {
                    format!(
                        r#","user_identifiers":{{"uid":"user-{}"}}"#,
                        mix.below(20_000)
                    )
                }),
            )
        } else {
            let ip = mix.next();
            (
                format!(
                    "{}.{}.{}.{}",
                    ip & 255,
                    (ip >> 8) & 255,
                    (ip >> 16) & 255,
                    (ip >> 24) & 255
                ),
                format!("app.event.{}", mix.below(30)),
                format!(
                    r#"{{"plan":"{}","n":"{}","session":"{:x}"}}"#,
                    if mix.below(2) == 0 { "gold" } else { "free" },
                    mix.next(),
                    mix.next()
                ),
                Some(format!(
                    r#","user_identifiers":{{"uid":"u-{:x}"}}"#,
                    mix.next()
                )),
            )
        };
        body.push_str(&format!(
            r#"{{"event_type":"request_record","version":"20171208","rid":"{rid}","client_ip":"{ip}","start":"{now}","end":"{now}","request":{{"rid":null,"verb":"POST","path":"/login","host":"example.com","port":"443","scheme":"https","remote_ip":"10.0.0.2","remote_port":"5000","user_agent":"bench/1","referer":"","headers":[["X-Forwarded-For","{ip}"]],"parameters":{{}}}},"response":{{"status":200,"content_length":2,"content_type":"text/plain"}},"observed":{{"sdk":[{{"time":"{now}","name":"track","args":["{event}",{{"properties":{props}{}}}]}}]}}}}"#,
            user.unwrap_or_default()
        ));
    }
    body.push_str("]}");
    body
}

/// Records per second over HTTP (one agent, batches of 1000) as the events
/// table grows from empty to `SQREEN_BENCH_EVENTS` (default 1 000 000), on
/// SQLite and, when `SQREEN_TEST_POSTGRES_URL` is set, PostgreSQL, with
/// realistic and adversarial data (`SQREEN_BENCH_DATA=realistic|adversarial`
/// runs one; `SQREEN_BENCH_BACKEND=sqlite|postgres` one backend). Each line
/// gives the rate over the 100 batches ending at that table size (long
/// enough to include the background merges of event attributes that this
/// ingestion causes, every ~37 batches); only the requests are timed, not
/// building their bodies.
#[test]
#[ignore = "throughput check; run in release"]
fn ingest_growth() {
    let n: usize = std::env::var("SQREEN_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let data = std::env::var("SQREEN_BENCH_DATA").unwrap_or_default();
    let only_backend = std::env::var("SQREEN_BENCH_BACKEND").unwrap_or_default();
    let mut databases = Vec::new();
    if only_backend.is_empty() || only_backend == "sqlite" {
        databases.push(("SQLite", Some(sqlite_url()), Some(sqlite_url())));
    }
    if only_backend.is_empty() || only_backend == "postgres" {
        databases.push((
            "PostgreSQL",
            postgres_url("ingest_growth (PostgreSQL part)"),
            postgres_url("ingest_growth (PostgreSQL part)"),
        ));
    }
    const WINDOW: usize = 100;
    let batches = n.div_ceil(1000);
    let marks: Vec<usize> = [20_000, 100_000, 500_000, 1_000_000]
        .into_iter()
        .map(|m| m.min(batches * 1000) / 1000)
        .collect();
    for (name, realistic_url, adversarial_url) in databases {
        for (realistic, url) in [(true, realistic_url), (false, adversarial_url)] {
            let kind = if realistic {
                "realistic"
            } else {
                "adversarial"
            };
            if !data.is_empty() && data != kind {
                continue;
            }
            let Some(url) = url else { continue };
            let server = TestServer::start_db(&url);
            let token = server.admin().create_app("bench");
            let (agent, _) = FakeAgent::login(&server.url, &token);
            let mut mix = Mix(if realistic { 1 } else { 2 });
            let mut window = std::time::Duration::ZERO;
            let mut total = std::time::Duration::ZERO;
            for b in 1..=batches {
                let body = growth_batch(&mut mix, realistic);
                let started = Instant::now();
                let response = agent.post_raw("/sqreen/v0/batch", body);
                let took = started.elapsed();
                let status = response.status();
                assert_eq!(status, 200, "{}", response.text().unwrap_or_default());
                total += took;
                // The window is the 100 batches ending at each mark.
                if marks.iter().any(|&m| b + WINDOW > m && b <= m) {
                    window += took;
                }
                if marks.contains(&b) {
                    let batches = b.min(WINDOW);
                    eprintln!(
                        "{name:>10} {kind:>11}: {:>7} events: {:>6.0} records/s (last {batches} batches)",
                        b * 1000,
                        (batches * 1000) as f64 / window.as_secs_f64()
                    );
                    window = std::time::Duration::ZERO;
                }
            }
            eprintln!(
                "{name:>10} {kind:>11}: {:>7} events: {:>6.0} records/s overall",
                batches * 1000,
                (batches * 1000) as f64 / total.as_secs_f64()
            );
        }
    }
}
