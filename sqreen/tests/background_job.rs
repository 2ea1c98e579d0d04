//! The background-job example, run as a tokio task on a global agent whose
//! backend is in memory: its events arrive without a request, with their
//! properties and user.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // its `main` is the example binary's
#[path = "../examples/background_job.rs"]
mod example;

use std::time::Duration;

use sqreen::test::{init_captured, test_config};

#[tokio::test(flavor = "multi_thread")]
async fn a_background_task_tracks_events_without_a_request() {
    let (guard, backend) = init_captured(test_config().build().unwrap());
    let task = tokio::spawn(async {
        example::renew_subscriptions(&[("u-1", "pro"), ("u-2", "team")]).await
    });
    assert_eq!(task.await.unwrap(), 2);
    assert!(guard.flush_async(Duration::from_secs(10)).await);

    let events = backend.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    for event in &events {
        assert_eq!(
            event["request"],
            serde_json::Value::Null,
            "no request context"
        );
        assert_eq!(event["client_ip"], "");
    }
    let renewal = |uid: &str| {
        events
            .iter()
            .find(|e| e["observed"]["sdk"][0]["args"][1]["user_identifiers"]["uid"] == uid)
            .unwrap()
    };
    let first = &renewal("u-1")["observed"]["sdk"][0]["args"];
    assert_eq!(first[0], "subscription.renewed");
    assert_eq!(first[1]["properties"]["plan"], "pro");
    assert_eq!(
        renewal("u-2")["observed"]["sdk"][0]["args"][1]["properties"]["plan"],
        "team"
    );
    let finished = events
        .iter()
        .find(|e| e["observed"]["sdk"][0]["args"][0] == "job.finished")
        .unwrap();
    assert_eq!(
        finished["observed"]["sdk"][0]["args"][1]["properties"]["renewed"],
        "2"
    );
}
