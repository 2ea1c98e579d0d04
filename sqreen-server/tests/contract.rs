//! The protocol's contract, end to end: the real agent (`sqreen-core`)
//! driven to its largest legal output — records of 100 tracks with 16
//! properties of 4 KiB, the most headers, oversized identifiers and
//! parameters, thousands of failed logins with 4 KiB user names — talks to
//! a real server on 127.0.0.1, which must refuse none of it.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sqreen_core::transport::HttpTransport;
use sqreen_core::{Agent, Config, Open, RequestInfo, ResponseInfo};

/// `n` bytes of text, half of them control characters (six bytes each once
/// escaped in JSON).
fn heavy(n: usize, tag: usize) -> String {
    let head = format!("{tag:08}");
    let rest: String = (0..n - head.len())
        .map(|i| if i % 2 == 0 { 'y' } else { '\u{2}' })
        .collect();
    format!("{head}{rest}")
}

#[test]
fn the_agents_largest_output_is_accepted() {
    let server = TestServer::start();
    let admin = server.admin();
    let token = admin.create_app("contract");
    let config = Config::builder()
        .token(&token)
        .url(&server.url)
        .heartbeat_delay(Duration::from_millis(500))
        .shutdown_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let transport = HttpTransport::new(&config).unwrap();
    let agent = Agent::start(config, Arc::new(transport));
    assert!(agent.wait_ready(Duration::from_secs(30)));

    // Four records at the track limit, each track with 16 properties of
    // 4 KiB (about 6.5 MB of JSON per record: one batch each).
    let props: Vec<(String, String)> = (0..16)
        .map(|i| (format!("{i:0>256}"), "p".repeat(4096)))
        .collect();
    let big_headers: Vec<(String, String)> = (0..24)
        .map(|i| (format!("X-Big-{i}"), heavy(4096, i)))
        .collect();
    for r in 0..4 {
        let mut headers: Vec<(&str, &str)> = big_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers.push(("X-Forwarded-For", "81.2.69.160"));
        let query: String = (0..256)
            .map(|i| format!("k{i}={}", heavy(8192, i).replace('\u{2}', "%02")))
            .collect::<Vec<_>>()
            .join("&");
        let path = format!("/{}", "a".repeat(8000));
        let info = RequestInfo::new("POST", &path, &headers).query(Some(&query));
        let Open::Request(mut record) = agent.open(|| info, None) else {
            panic!("expected a record");
        };
        let sq = record.handle_with(|| info);
        for t in 0..100 {
            let long = heavy(4096, t);
            sq.track_event(format!("{r}-{t:0>250}"))
                .with_properties(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .with_user_identifiers((0..16).map(|i| (format!("id{i}"), long.clone())));
        }
        record.close(ResponseInfo::new(200));
    }
    // Failed logins with 3 000 distinct 4 KiB user names from one IP.
    for i in 0..3_000 {
        let headers = [("X-Forwarded-For", "81.2.69.161")];
        let request = || RequestInfo::new("POST", "/login", &headers);
        let Open::Request(mut record) = agent.open(request, None) else {
            panic!("expected a record");
        };
        record
            .handle_with(request)
            .for_user([("username", heavy(4096, i))])
            .track_auth_failure();
        record.close(ResponseInfo::new(401));
    }
    assert!(agent.flush(Duration::from_secs(120)), "flush");

    let stats = || admin.get_json("/api/stats");
    eventually("every event stored", Duration::from_secs(120), || {
        (stats()["events_stored"].as_u64().unwrap() >= 400).then_some(())
    });
    let fails = |s: &serde_json::Value| s["events_stored"].as_u64().unwrap();
    eventually("the failed logins stored", Duration::from_secs(120), || {
        (fails(&stats()) >= 400 + 3_000).then_some(())
    });
    let s = stats();
    eprintln!("server stats: {s}");
    assert_eq!(s["bad_request"], 0, "{s}");
    assert_eq!(s["too_large"], 0, "{s}");
    let a = agent.stats();
    eprintln!("agent stats: {a:?}");
    assert_eq!(a.events_refused, 0);
    assert_eq!(a.heartbeats_failed, 0);
    assert_eq!(a.metric_observations_dropped, 0);
    assert!(a.invalid_request_input > 0, "the parameters were left out");
}
