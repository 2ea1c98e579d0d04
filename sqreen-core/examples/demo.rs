//! A tour of the agent without any web framework: starts a protocol
//! backend on 127.0.0.1 (the test backend), runs the agent against it over
//! real HTTP, simulates a few requests the way an adapter would, then shows
//! what reached the backend and the agent's own figures.
//!
//! Run it with `cargo run -p sqreen-core --example demo`.

#![allow(clippy::print_stdout, clippy::unwrap_used)] // a demo prints its findings

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqreen_core::transport::HttpTransport;
use sqreen_core::{Agent, Config, Open, RequestInfo, ResponseInfo};
use sqreen_test_backend::TestBackend;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sqreen=info".into()),
        )
        .init();

    let backend = TestBackend::start();
    // A playbook already fired against this range: the agent gets it at login.
    backend.set_actions(json!([{"action_id": "demo-block", "action": "block_ip",
        "duration": 300, "parameters": {"ip_cidr": ["203.0.113.0/24"]}}]));
    println!("backend listening on {}", backend.url());

    let config = Config::builder()
        .token("demo-token-0123456789")
        .app_name("demo")
        .url(backend.url())
        .build()
        .unwrap();
    let transport = HttpTransport::new(&config).unwrap();
    let guard = Agent::start(config, Arc::new(transport));
    assert!(guard.wait_ready(Duration::from_secs(10)), "login failed");

    // A checkout that tracks a business event, with a card number to scrub.
    let headers = [
        ("Host", "shop.example"),
        ("User-Agent", "demo/1.0"),
        ("X-Forwarded-For", "81.2.69.160"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let body = b"item=42&card=4111 1111 1111 1111&password=hunter2";
    let request = || RequestInfo::new("POST", "/checkout", &headers).query(Some("coupon=WELCOME"));
    // The body was buffered for capture: the request is copied at once.
    if let Open::Request(mut record) = guard.open(request, Some(body)) {
        let sq = record.handle_with(request);
        sq.track_event("checkout.completed")
            .with_properties([("amount", 42)])
            .with_user_identifiers([("uid", "u-1")]);
        record.close(ResponseInfo::new(200));
    }

    // Three failed logins for bob: counted per user and IP for playbooks.
    for _ in 0..3 {
        let headers = [("X-Forwarded-For", "81.2.69.160")];
        let request = || RequestInfo::new("POST", "/login", &headers);
        if let Open::Request(mut record) = guard.open(request, None) {
            // What an adapter's extractor does when a handler asks.
            record
                .handle_with(request)
                .for_user([("username", "bob")])
                .track_auth_failure();
            record.close(ResponseInfo::new(401));
        }
    }

    // A request from the blocked range never reaches a handler.
    let headers = [("X-Forwarded-For", "203.0.113.9")];
    if let Open::Respond(response) = guard.open(|| RequestInfo::new("GET", "/", &headers), None) {
        println!(
            "request from 203.0.113.9 answered {} by the agent",
            response.status()
        );
    }

    // A request that tracks nothing costs almost nothing and is never sent.
    if let Open::Request(record) =
        guard.open(|| RequestInfo::new("GET", "/", &[("Host", "x")]), None)
    {
        record.close(ResponseInfo::new(200));
    }

    let agent = guard.agent().clone();
    drop(guard); // flush, final heartbeat, logout

    println!("\nevents the backend received:");
    for event in backend.events() {
        println!("{}", serde_json::to_string_pretty(&event).unwrap());
    }
    println!("\nmetrics sent with the heartbeat:");
    for metric in backend.with(|s| s.metrics()) {
        println!("{metric}");
    }
    println!("\nagent stats: {:#?}", agent.stats());
}
