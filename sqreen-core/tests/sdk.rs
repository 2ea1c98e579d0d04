//! SDK behaviour through the public API, on the in-memory backend of the
//! `test` feature: input limits, disabled handles, late calls, flushing
//! from async code, and the configuration error path.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use sqreen_core::test::{start_captured, test_config, with_captured_events};
use sqreen_core::{
    Agent, Config, Open, PropertyValue, RequestInfo, RequestSlot, ResponseInfo, Sqreen,
};

/// A request opened and copied, as an adapter's extractor does when a
/// handler asks for the handle.
fn record(agent: &Agent) -> RequestSlot {
    let request = || RequestInfo::new("GET", "/", &[("Host", "h")]);
    match agent.open(request, None) {
        Open::Request(mut slot) => {
            slot.handle_with(request);
            slot
        }
        other => panic!("expected a record, got {other:?}"),
    }
}

/// Oversized input is cut, excess properties dropped, empty names dropped,
/// and every case is counted.
#[test]
fn input_limits_are_enforced_and_counted() {
    let (agent, backend) = start_captured(test_config().build().unwrap());
    let mut rec = record(&agent);
    let sq = rec.handle();
    sq.track_event(""); // dropped
    sq.track_event("x".repeat(1000)); // cut to 256 bytes
    let many: Vec<(String, PropertyValue)> = (0..20)
        .map(|i| (format!("k{i}"), PropertyValue::from(i)))
        .collect();
    sq.track_event("many").with_properties(many); // 16 kept
    sq.track_event("huge")
        .with_properties([("v", "é".repeat(5000))]); // cut on a char boundary
    rec.close(ResponseInfo::new(200));
    assert!(agent.flush(Duration::from_secs(10)));
    let events = backend.events();
    let sdk = events[0]["observed"]["sdk"].as_array().unwrap();
    assert_eq!(sdk.len(), 3);
    assert_eq!(sdk[0]["args"][0].as_str().unwrap().len(), 256);
    assert_eq!(
        sdk[1]["args"][1]["properties"].as_object().unwrap().len(),
        16
    );
    let huge = sdk[2]["args"][1]["properties"]["v"].as_str().unwrap();
    assert!(huge.len() <= 4096 && huge.chars().all(|c| c == 'é'));
    assert_eq!(agent.stats().invalid_sdk_input, 4);
}

/// Timestamps and user identifiers given to the builder are sent.
#[test]
fn timestamp_and_identifiers_are_sent() {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
    let events = with_captured_events(|agent| {
        let mut rec = record(agent);
        rec.handle()
            .track_event("my.event")
            .with_timestamp(t)
            .with_user_identifiers([("uid", "my-uid")]);
        rec.handle()
            .for_user([("uid", "u2")])
            .track_event("user.event")
            .with_properties([("flag", true)]);
        rec.close(ResponseInfo::new(200));
    });
    let sdk = &events[0]["observed"]["sdk"];
    assert_eq!(sdk[0]["time"], "2026-11-18T11:06:40.123Z");
    assert_eq!(
        sdk[0]["args"][1],
        json!({"user_identifiers": {"uid": "my-uid"}})
    );
    assert_eq!(
        sdk[1]["args"][1],
        json!({"properties": {"flag": true}, "user_identifiers": {"uid": "u2"}})
    );
}

/// Calls made after the request closed are ignored and counted, not sent.
#[test]
fn calls_after_close_are_ignored() {
    let (agent, backend) = start_captured(test_config().build().unwrap());
    let mut rec = record(&agent);
    let sq = rec.handle();
    rec.close(ResponseInfo::new(200));
    sq.track_event("too.late");
    assert!(agent.flush(Duration::from_secs(10)));
    assert!(backend.events().is_empty());
    assert_eq!(agent.stats().invalid_sdk_input, 1);
}

/// A record dropped without close (a cancelled handler) still delivers its events.
#[test]
fn dropped_record_is_closed() {
    let events = with_captured_events(|agent| {
        let mut rec = record(agent);
        rec.handle().track_event("cancelled.handler");
        drop(rec);
    });
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["response"], serde_json::Value::Null);
}

/// A handle may be cloned into other threads while the request runs.
#[test]
fn handles_cross_threads() {
    let events = with_captured_events(|agent| {
        let mut rec = record(agent);
        let sq: Sqreen = rec.handle();
        std::thread::scope(|s| {
            for i in 0..4 {
                let sq = sq.clone();
                s.spawn(move || {
                    sq.track_event(format!("t{i}"));
                });
            }
        });
        rec.close(ResponseInfo::new(200));
    });
    assert_eq!(events[0]["observed"]["sdk"].as_array().unwrap().len(), 4);
}

/// Flushing works from inside an async runtime, blocking or not, without deadlock.
#[tokio::test(flavor = "current_thread")]
async fn flush_from_async_code() {
    let (agent, backend) = start_captured(test_config().build().unwrap());
    let mut rec = record(&agent);
    rec.handle().track_event("async");
    rec.close(ResponseInfo::new(200));
    assert!(agent.flush_async(Duration::from_secs(10)).await);
    let mut rec = record(&agent);
    rec.handle().track_event("sync-in-async");
    rec.close(ResponseInfo::new(200));
    assert!(agent.flush(Duration::from_secs(10)));
    assert_eq!(backend.events().len(), 2);
}

/// An invalid configuration names its key and leaves an agent that is off.
#[test]
fn invalid_config_keeps_agent_off() {
    let err = Config::builder()
        .token("t")
        .strip_sensitive_key_regexp("(unclosed")
        .build()
        .unwrap_err();
    assert_eq!(err.key(), Some("strip_sensitive_key_regexp"));
    let agent = Agent::off(Config::default());
    assert!(matches!(
        agent.open(|| RequestInfo::new("GET", "/", &[("Host", "h")]), None),
        Open::Pass
    ));
    assert!(agent.flush(Duration::from_millis(10)));
}

/// Records are recycled: through thousands of requests that differ in
/// every captured field, some copied at once and some on demand (with route
/// parameters), some tracked, some not, some with a handle kept past the
/// response, on several threads at once, every event carries its own
/// request's data and nothing of another's.
#[test]
fn recycled_records_never_carry_another_requests_data() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2_000;
    let (agent, backend) =
        start_captured(test_config().event_queue_length(50_000).build().unwrap());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let agent = agent.agent().clone();
            scope.spawn(move || {
                let mut kept = Vec::new();
                for i in 0..PER_THREAD {
                    let n = thread * PER_THREAD + i;
                    let path = format!("/t{thread}/r{i}");
                    let query = format!("n={n}");
                    let ua = format!("agent-{n}");
                    let host = format!("h{n}.example");
                    let referer = format!("https://ref{n}.example/");
                    let mut headers = vec![("Host", host.as_str())];
                    // Every other request has a user agent, every third a referer.
                    if n.is_multiple_of(2) {
                        headers.push(("User-Agent", ua.as_str()));
                    }
                    if n.is_multiple_of(3) {
                        headers.push(("Referer", referer.as_str()));
                    }
                    // Every fourth carries a form body.
                    if n.is_multiple_of(4) {
                        headers.push(("Content-Type", "application/x-www-form-urlencoded"));
                    }
                    let body = format!("field={n}");
                    let id = n.to_string();
                    let params = [("id", id.as_str())];
                    let info = RequestInfo::new(
                        if n.is_multiple_of(2) { "GET" } else { "POST" },
                        &path,
                        &headers,
                    )
                    .query((!n.is_multiple_of(5)).then_some(query.as_str()));
                    // Requests with a body are copied at once; the others on
                    // demand, as the adapters open them, and copied (with a
                    // route parameter) when "the handler takes the handle":
                    // the tracked ones, and every eighth of the others.
                    let tracked = n % 3 != 2;
                    let body = n.is_multiple_of(4).then_some(body.as_bytes());
                    let Open::Request(mut record) = agent.open(|| info, body) else {
                        panic!("the agent records");
                    };
                    let sq = record.handle();
                    if !n.is_multiple_of(4) && (tracked || n.is_multiple_of(8)) {
                        assert!(record.needs_request());
                        record.handle_with(|| info.route_params(&params));
                        assert!(!record.needs_request());
                    }
                    // Two requests in three are tracked.
                    if tracked {
                        sq.track_event(format!("e{n}"))
                            .with_properties([("n", PropertyValue::from(n as u64))]);
                    }
                    record.close(ResponseInfo::new(200));
                    // Some handles outlive their request for a while.
                    if n.is_multiple_of(7) {
                        kept.push(sq);
                    }
                    if kept.len() > 3 {
                        kept.remove(0);
                    }
                }
            });
        }
    });
    assert!(agent.flush(Duration::from_secs(30)));
    let events = backend.events();
    let expected = (0..THREADS * PER_THREAD).filter(|n| n % 3 != 2).count();
    assert_eq!(events.len(), expected);
    for event in &events {
        let sdk = event["observed"]["sdk"].as_array().unwrap();
        assert_eq!(sdk.len(), 1, "{event}");
        let n: usize = sdk[0]["args"][0].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(sdk[0]["args"][1]["properties"]["n"], json!(n));
        let (thread, i) = (n / PER_THREAD, n % PER_THREAD);
        let request = &event["request"];
        assert_eq!(request["path"], format!("/t{thread}/r{i}"), "{event}");
        assert_eq!(
            request["verb"],
            if n.is_multiple_of(2) { "GET" } else { "POST" }
        );
        assert_eq!(request["host"], format!("h{n}.example"));
        let ua = if n.is_multiple_of(2) {
            format!("agent-{n}")
        } else {
            String::new()
        };
        assert_eq!(request["user_agent"], ua);
        let referer = if n.is_multiple_of(3) {
            format!("https://ref{n}.example/")
        } else {
            String::new()
        };
        assert_eq!(request["referer"], referer);
        let headers = request["headers"].as_array().unwrap();
        // In the request's order.
        let mut expected_headers = vec![json!(["Host", format!("h{n}.example")])];
        if n.is_multiple_of(4) {
            expected_headers.push(json!(["Content-Type", "application/x-www-form-urlencoded"]));
        }
        assert_eq!(headers, &expected_headers, "{event}");
        let form = &request["parameters"]["form"];
        if n.is_multiple_of(4) {
            assert_eq!(form, &json!({"field": [n.to_string()]}), "{event}");
        } else {
            assert!(form.is_null(), "{event}");
        }
        let query = &request["parameters"]["query"];
        if !n.is_multiple_of(5) {
            assert_eq!(query, &json!({"n": [n.to_string()]}));
        } else {
            assert!(query.is_null(), "{event}");
        }
        let params = &request["parameters"]["params"];
        if n.is_multiple_of(4) {
            assert!(params.is_null(), "{event}");
        } else {
            assert_eq!(params, &json!({"id": [n.to_string()]}), "{event}");
        }
        assert_eq!(event["response"]["status"], 200);
    }
}
