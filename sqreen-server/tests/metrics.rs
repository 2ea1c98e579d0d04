//! `GET /metrics`: the Prometheus text format, parsed back, with the
//! figures of what the server did; who may scrape it.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::{Value, json};

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdefghijklmnop";

fn scrape(server: &TestServer, bearer: &str) -> Scrape {
    let r = client()
        .get(format!("{}/metrics", server.url))
        .bearer_auth(bearer)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
    match &sample.value {
        Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

/// After events are ingested and a playbook fires, the scrape shows the
/// events stored, the evaluations, the alert, the live action, the batch
/// histogram and the pool, as `/api/stats` counts them.
#[test]
fn metrics_count_what_the_server_did() {
    metrics_count_on(&sqlite_url());
}

/// The same on PostgreSQL (the gauges are read by SQL at each scrape).
#[test]
fn metrics_count_what_the_server_did_on_postgres() {
    if let Some(url) = postgres_url("metrics_count_what_the_server_did_on_postgres") {
        metrics_count_on(&url);
    }
}

fn metrics_count_on(database_url: &str) {
    let server = TestServer::start_with(database_url, |c| {
        c.with_heartbeat_delay(1).with_metrics_token(METRICS_TOKEN)
    });
    let admin = server.admin();
    let token = admin.create_app("shop");
    admin.create_playbook(&json!({"name": "brute force",
        "trigger": {"event": "login.failed", "threshold": 3, "period_s": 600, "actor": "ip"},
        "responses": [{"type": "block", "duration_s": 3600}]}));
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let batch: Vec<Value> = (0..5)
        .map(|i| {
            record(
                &format!("r{i}"),
                "81.2.69.7",
                "login.failed",
                json!({}),
                None,
            )
        })
        .chain((0..7).map(|i| record(&format!("o{i}"), "81.2.69.8", "page.view", json!({}), None)))
        .collect();
    assert_eq!(agent.batch(&batch).status(), 200);
    // Sent again: duplicates, not stored twice.
    assert_eq!(agent.batch(&batch[..2]).status(), 200);
    // One refused request.
    assert_eq!(admin.get("/api/events?limit=0").status(), 400);

    let m = scrape(&server, ADMIN_KEY);
    assert_eq!(value(&m, "sqreen_events_stored_total", &[]), 12.0);
    assert_eq!(value(&m, "sqreen_events_duplicate_total", &[]), 2.0);
    // Both batches held events of the playbook (the second one's were
    // duplicates: evaluated, counting nothing new).
    assert_eq!(value(&m, "sqreen_playbook_evaluations_total", &[]), 2.0);
    assert_eq!(
        value(&m, "sqreen_playbook_evaluation_failures_total", &[]),
        0.0
    );
    assert_eq!(value(&m, "sqreen_alerts", &[]), 1.0);
    assert_eq!(value(&m, "sqreen_actions_live", &[]), 1.0);
    assert_eq!(
        value(&m, "sqreen_http_errors_total", &[("kind", "bad_request")]),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "sqreen_webhook_deliveries_total",
            &[("outcome", "sent")]
        ),
        0.0
    );
    assert!(value(&m, "sqreen_db_pool_connections", &[]) >= 1.0);
    value(&m, "sqreen_db_pool_idle_connections", &[]);
    assert!(value(&m, "sqreen_playbook_loads_total", &[]) >= 1.0);
    // Two batches handled.
    assert_eq!(value(&m, "sqreen_batch_duration_seconds_count", &[]), 2.0);
    let buckets = m
        .samples
        .iter()
        .find(|s| s.metric == "sqreen_batch_duration_seconds")
        .unwrap();
    match &buckets.value {
        Sample::Histogram(counts) => {
            assert_eq!(counts.last().unwrap().count, 2.0);
            assert!(counts.last().unwrap().less_than.is_infinite());
        }
        other => panic!("{other:?}"),
    }
    // The same figures as /api/stats.
    let stats = stats(&server);
    assert_eq!(stats["events_stored"], 12);
    assert_eq!(stats["events_duplicate"], 2);

    // Lifting the action: the gauge follows at the next scrape.
    let actions = admin.get_json("/api/actions");
    let id = actions["actions"][0]["action_id"].as_str().unwrap();
    assert_eq!(
        admin
            .send(reqwest::Method::DELETE, &format!("/api/actions/{id}"), None)
            .status(),
        204
    );
    let m = scrape(&server, METRICS_TOKEN);
    assert_eq!(value(&m, "sqreen_actions_live", &[]), 0.0);
}

/// Without credentials, or with a wrong token, /metrics is a 401; the
/// metrics token opens /metrics and nothing else.
#[test]
fn metrics_want_the_admin_key_or_the_token() {
    let server = TestServer::start_with(&sqlite_url(), |c| c.with_metrics_token(METRICS_TOKEN));
    let url = format!("{}/metrics", server.url);
    let r = client().get(&url).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    for wrong in [
        "metrics-token-0123456789abcdefghijklmnoq",
        "short",
        "Bearer",
    ] {
        let r = client().get(&url).bearer_auth(wrong).send().unwrap();
        assert_eq!(r.status(), 401, "{wrong}");
    }
    let r = client()
        .get(&url)
        .header("authorization", format!("Basic {METRICS_TOKEN}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    scrape(&server, METRICS_TOKEN);
    scrape(&server, ADMIN_KEY);
    // The token is no admin key.
    let r = client()
        .get(format!("{}/api/stats", server.url))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    // A server without a token: the admin key only.
    let plain = TestServer::start();
    let r = client()
        .get(format!("{}/metrics", plain.url))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    scrape(&plain, ADMIN_KEY);
}

/// A metrics token shorter than 32 characters is refused at start.
#[test]
fn short_metrics_tokens_are_refused() {
    let config = sqreen_server::ServerConfig::new(sqlite_url())
        .with_admin_key(ADMIN_KEY)
        .with_metrics_token("too-short");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(sqreen_server::Server::open(&config))
        .err()
        .unwrap();
    assert!(err.to_string().contains("metrics token"), "{err}");
}
