//! The agent under pressure, against a protocol backend on 127.0.0.1 that
//! holds it to the protocol's limits (`sqreen-test-backend`): credential
//! stuffing, a backend outage, a record the backend refuses, a redirecting
//! backend, a handler that tracks in a loop.
//!
//! No test asserts on timing; waits are bounded polls.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqreen_core::transport::HttpTransport;
use sqreen_core::{Agent, AgentGuard, Config, ConfigBuilder, Open, RequestInfo, ResponseInfo};
use sqreen_test_backend::{Snapshot, TestBackend};

use common::opened;

const WAIT: Duration = Duration::from_secs(60);

fn config(backend: &TestBackend) -> ConfigBuilder {
    Config::builder()
        .token("test-token-123456")
        .app_name("tests")
        .url(backend.url())
        .heartbeat_delay(Duration::from_millis(300))
        .shutdown_timeout(Duration::from_secs(5))
}

fn start(config: ConfigBuilder) -> AgentGuard {
    let config = config.build().unwrap();
    let transport = HttpTransport::new(&config).unwrap();
    Agent::start(config, Arc::new(transport))
}

/// A failed login of `user` from `ip`.
fn failed_login(agent: &Agent, ip: &str, user: &str) {
    let headers = [("X-Forwarded-For", ip)];
    match opened(agent, RequestInfo::new("POST", "/login", &headers), None) {
        Open::Request(mut record) => {
            record
                .handle()
                .for_user([("username", user)])
                .track_auth_failure();
            record.close(ResponseInfo::new(401));
        }
        other => panic!("expected a record, got {other:?}"),
    }
}

/// The `i`-th attacker user name: 100 characters, every other one made of
/// control characters (six bytes each once escaped in JSON).
fn user_name(i: usize) -> String {
    let tag = format!("{i:06}");
    if i.is_multiple_of(2) {
        format!("{tag}{}", "x".repeat(94))
    } else {
        format!("{tag}{}", "\u{1}".repeat(94))
    }
}

/// Failed logins counted for `ip` in every heartbeat the backend took.
fn failures_of(s: &Snapshot, ip: &str) -> u64 {
    s.metrics()
        .iter()
        .filter(|m| m["name"] == "sdk-login-fail")
        .filter_map(|m| m["observation"].as_object())
        .flatten()
        .filter(|(key, _)| serde_json::from_str::<Value>(key).is_ok_and(|k| k["ip"] == ip))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

/// 10 000 failed logins from one IP, each with its own long user name:
/// every heartbeat is accepted and the IP's count arrives whole.
#[test]
fn credential_stuffing_reaches_the_backend() {
    let backend = TestBackend::start();
    let agent = start(config(&backend));
    assert!(agent.wait_ready(WAIT));
    let ip = "203.0.113.9";
    for i in 0..10_000 {
        failed_login(&agent, ip, &user_name(i));
    }
    assert!(
        backend.wait_for(WAIT, |s| failures_of(s, ip) == 10_000),
        "counted {} of 10 000",
        backend.with(|s| failures_of(s, ip))
    );
    assert_eq!(backend.with(|s| s.refused), 0, "the backend refused calls");
    let stats = agent.stats();
    assert_eq!(stats.heartbeats_failed, 0);
    assert_eq!(stats.metric_observations_dropped, 0);
}

/// The same with the backend down for the first half: the failed
/// heartbeats' counts merge and arrive whole once it is back.
#[test]
fn credential_stuffing_survives_an_outage() {
    let backend = TestBackend::start();
    let agent = start(config(&backend));
    assert!(agent.wait_ready(WAIT));
    let ip = "203.0.113.10";
    backend.stop();
    for i in 0..5_000 {
        failed_login(&agent, ip, &user_name(i));
    }
    // Heartbeats fail while the backend is down.
    let deadline = std::time::Instant::now() + WAIT;
    while agent.stats().heartbeats_failed < 2 {
        assert!(std::time::Instant::now() < deadline, "no heartbeat failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    backend.restart();
    for i in 5_000..10_000 {
        failed_login(&agent, ip, &user_name(i));
    }
    assert!(
        backend.wait_for(WAIT, |s| failures_of(s, ip) == 10_000),
        "counted {} of 10 000",
        backend.with(|s| failures_of(s, ip))
    );
    assert_eq!(backend.with(|s| s.refused), 0);
    assert_eq!(agent.stats().metric_observations_dropped, 0);
}

/// A batch holding one event the backend refuses is split until that event
/// is alone: it is dropped (and counted), the others are delivered.
#[test]
fn a_refused_event_is_split_out() {
    let backend = TestBackend::start();
    backend.refuse_events_containing("poison");
    let agent = start(config(&backend).batch_size(20));
    assert!(agent.wait_ready(WAIT));
    for i in 0..20 {
        let headers = [("X-Forwarded-For", "81.2.69.160")];
        let Open::Request(mut record) =
            opened(&agent, RequestInfo::new("POST", "/x", &headers), None)
        else {
            panic!("expected a record");
        };
        let name = if i == 7 { "poison" } else { "fine" };
        record.handle().track_event(name);
        record.close(ResponseInfo::new(200));
    }
    assert!(backend.wait_for(WAIT, |s| s.events().len() == 19));
    let deadline = std::time::Instant::now() + WAIT;
    while agent.stats().events_refused < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the event was not dropped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = agent.stats();
    assert_eq!(stats.events_refused, 1);
    assert!(stats.batches_split >= 1);
    assert_eq!(stats.events_pending, 0);
}

/// A backend that redirects never gets the token sent to where it points.
#[test]
fn redirects_are_not_followed() {
    let elsewhere = TestBackend::start();
    let backend = TestBackend::start();
    backend.redirect_to(&format!("{}/sqreen/v1/app-login", elsewhere.url()));
    let agent = start(config(&backend));
    let deadline = std::time::Instant::now() + WAIT;
    while agent.stats().login_attempts < 2 {
        assert!(std::time::Instant::now() < deadline, "no login attempt");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(elsewhere.with(|s| s.logins.is_empty()));
}

/// A handler tracking in a loop fills its record up to the protocol's
/// tracks per record; the rest are ignored and counted.
#[test]
fn records_hold_at_most_the_contract_tracks() {
    let backend = TestBackend::start();
    let agent = start(config(&backend));
    assert!(agent.wait_ready(WAIT));
    let headers = [("X-Forwarded-For", "81.2.69.160")];
    let Open::Request(mut record) = opened(&agent, RequestInfo::new("POST", "/x", &headers), None)
    else {
        panic!("expected a record");
    };
    for _ in 0..150 {
        record.handle().track_event("loop");
    }
    record.close(ResponseInfo::new(200));
    assert!(agent.flush(WAIT));
    assert!(backend.wait_for(WAIT, |s| !s.events().is_empty()));
    let tracks = backend.with(|s| {
        s.events()[0]["observed"]["sdk"]
            .as_array()
            .map_or(0, Vec::len)
    });
    assert_eq!(tracks, sqreen_protocol::limits::MAX_TRACKS_PER_RECORD);
    assert!(agent.stats().invalid_sdk_input >= 50);
    assert_eq!(backend.with(|s| s.refused), 0);
}

/// Secrets in a path's query and in the referer's query never leave the
/// process: their values arrive scrubbed, the rest of the URLs intact.
#[test]
fn url_queries_are_scrubbed() {
    let backend = TestBackend::start();
    let agent = start(config(&backend));
    assert!(agent.wait_ready(WAIT));
    let headers = [
        ("X-Forwarded-For", "81.2.69.160"),
        (
            "Referer",
            "https://shop.example/login?user=bob&password=hunter2-secret",
        ),
    ];
    let info = RequestInfo::new("GET", "/reset?token=tok-4242-secret&lang=en", &headers)
        .query(Some("token=tok-4242-secret&lang=en"));
    let Open::Request(mut record) = opened(&agent, info, None) else {
        panic!("expected a record");
    };
    record.handle().track_event("password.reset");
    record.close(ResponseInfo::new(200));
    assert!(agent.flush(WAIT));
    assert!(backend.wait_for(WAIT, |s| !s.events().is_empty()));
    let event = backend.events().remove(0);
    let request = &event["request"];
    assert_eq!(request["path"], "/reset?token=<Redacted by Sqreen>&lang=en");
    assert_eq!(
        request["referer"],
        "https://shop.example/login?user=bob&password=<Redacted by Sqreen>"
    );
    let text = event.to_string();
    assert!(!text.contains("hunter2-secret"), "{text}");
    assert!(!text.contains("tok-4242-secret"), "{text}");
}

/// A backend that announces gzip at login gets compressed batches.
#[test]
fn batches_are_gzipped_when_the_backend_says_so() {
    let backend = TestBackend::start();
    backend.set_features(serde_json::json!({"batch_gzip": true}));
    let agent = start(config(&backend));
    assert!(agent.wait_ready(WAIT));
    let headers = [("X-Forwarded-For", "81.2.69.160")];
    let Open::Request(mut record) = opened(&agent, RequestInfo::new("POST", "/x", &headers), None)
    else {
        panic!("expected a record");
    };
    record.handle().track_event("zipped");
    record.close(ResponseInfo::new(200));
    assert!(agent.flush(WAIT));
    assert!(backend.wait_for(WAIT, |s| s.events().len() == 1));
    assert_eq!(backend.with(|s| s.gzip_batches), 1);
}

/// The agent keeps its records within the protocol's context bounds: a
/// JSON body nested too deep and oversized user identifiers are left out
/// (counted), and the record is accepted by a backend holding it to the
/// contract.
#[test]
fn records_stay_within_the_context_bounds() {
    let backend = TestBackend::start();
    let agent = start(config(&backend));
    assert!(agent.wait_ready(WAIT));
    let mut deep = "\"leaf\"".to_owned();
    for _ in 0..40 {
        deep = format!("{{\"a\":{deep}}}");
    }
    let headers = [
        ("X-Forwarded-For", "81.2.69.160"),
        ("Content-Type", "application/json"),
    ];
    let info = RequestInfo::new("POST", "/deep", &headers);
    let Open::Request(mut record) = opened(&agent, info, Some(deep.as_bytes())) else {
        panic!("expected a record");
    };
    let long = "v".repeat(1000);
    record
        .handle()
        .track_event("bounded")
        .with_user_identifiers([
            ("a", long.as_str()),
            ("b", long.as_str()),
            ("c", long.as_str()),
        ]);
    record.close(ResponseInfo::new(200));
    assert!(agent.flush(WAIT));
    assert!(backend.wait_for(WAIT, |s| s.events().len() == 1));
    let event = backend.events().remove(0);
    assert!(event["request"]["parameters"].get("json").is_none());
    let options = &event["observed"]["sdk"][0]["args"][1];
    assert!(
        options
            .get("user_identifiers")
            .is_none_or(|ids| ids == &serde_json::json!({})),
        "{options}"
    );
    assert!(agent.stats().invalid_request_input >= 1);
}

/// With `trusted_proxies` set, `X-Forwarded-For` from an untrusted peer is
/// ignored: a blocked client cannot dodge its block by claiming another
/// IP, nor get a victim blocked by claiming theirs. From a trusted proxy,
/// the header names the client.
#[test]
fn spoofed_forwarding_headers_are_ignored() {
    let backend = TestBackend::start();
    backend.set_actions(serde_json::json!([
        {"action_id": "v4", "action": "block_ip", "parameters": {"ip_cidr": ["81.2.69.160/32"]}},
        {"action_id": "v6", "action": "block_ip", "parameters": {"ip_cidr": ["2001:db8::1/128"]}}
    ]));
    let agent = start(config(&backend).trusted_proxies(["10.0.0.0/8"]));
    assert!(agent.wait_ready(WAIT));
    let begin = |peer: &str, xff: &str| {
        let headers = [("X-Forwarded-For", xff)];
        let info = RequestInfo::new("GET", "/", &headers).peer(Some(peer.parse().unwrap()));
        matches!(opened(&agent, info, None), Open::Respond(_))
    };
    // The blocked client claims a clean IP: still blocked.
    assert!(begin("81.2.69.160:5000", "203.0.113.1"));
    // A clean client claims the blocked IP: not blocked.
    assert!(!begin("198.51.100.7:5000", "81.2.69.160"));
    // Through a trusted proxy, the header names the client.
    assert!(begin("10.0.0.2:5000", "81.2.69.160"));
    assert!(!begin("10.0.0.2:5000", "198.51.100.7"));
    // IPv6: the block covers the client's /64.
    assert!(begin("[2001:db8::ffff]:5000", ""));
    assert!(!begin("[2001:db8:0:1::1]:5000", ""));
}
