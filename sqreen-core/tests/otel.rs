//! OpenTelemetry export: a tracked event arrives at an OTLP receiver on
//! 127.0.0.1 as one log record with the documented attributes, scrubbed.
//!
//! The receiver is a plain HTTP server in this test that decodes the
//! exporter's requests (OTLP/HTTP protobuf) with the official message
//! types. The agent runs in a child process of this test binary, because
//! the exporter is configured by `OTEL_*` environment variables.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
use prost::Message;
use sqreen_core::test::{start_captured, test_config};
use sqreen_core::{Open, RequestInfo, ResponseInfo};

const CHILD: &str = "SQREEN_OTEL_TEST_CHILD";

/// The requests the receiver got: path and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// What the child does: one request with a tracked event carrying
/// personal data, then a shutdown (which flushes the export).
fn child() {
    let (guard, _backend) = start_captured(test_config().otel_logs(true).build().unwrap());
    let headers: &[(&str, &str)] = &[
        ("User-Agent", "otel-test/1"),
        ("Host", "shop.example.com"),
        ("X-Forwarded-For", "81.2.69.160"),
    ];
    let info = RequestInfo::new("POST", "/checkout", &headers).query(Some("password=hunter2"));
    let Open::Request(mut record) = guard.open(|| info, None) else {
        panic!("the agent does not record");
    };
    record
        .handle_with(|| info)
        .for_user([("email", "alice@example.com")])
        .track_event("checkout.failed")
        .with_properties([("amount", 42)])
        .with_properties([("password", "hunter2"), ("card", "4111 1111 1111 1111")]);
    record.close(ResponseInfo::new(402));
    drop(guard);
}

#[test]
fn tracked_event_is_exported_as_one_scrubbed_log_record() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut path = String::new();
            let mut length = 0;
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(p) = line.split(' ').nth(1) {
                path = p.to_owned();
            }
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            sink.lock().unwrap().push((path, body));
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
        }
    });

    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tracked_event_is_exported_as_one_scrubbed_log_record",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env(
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            format!("http://{addr}/v1/logs"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_SERVICE_NAME", "otel-test-app")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .env_remove("ALL_PROXY")
        .env("NO_PROXY", "127.0.0.1")
        .status()
        .unwrap();
    assert!(status.success(), "the child agent failed");

    // The shutdown flushed the batch: everything has arrived.
    std::thread::sleep(Duration::from_millis(100));
    let received = received.lock().unwrap();
    let mut records = Vec::new();
    let mut service = None;
    for (path, body) in received.iter() {
        assert_eq!(path, "/v1/logs");
        let request = ExportLogsServiceRequest::decode(&body[..]).unwrap();
        for resource in request.resource_logs {
            for attribute in resource.resource.iter().flat_map(|r| &r.attributes) {
                if attribute.key == "service.name" {
                    service = attribute.value.clone();
                }
            }
            for scope in resource.scope_logs {
                records.extend(scope.log_records);
            }
        }
    }
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(text(service.as_ref()), "otel-test-app");
    assert_eq!(record.event_name, "sqreen.tracked_event");
    assert_eq!(text(record.body.as_ref()), "checkout.failed");
    assert_eq!(record.severity_text, "INFO");
    assert!(record.time_unix_nano > 0);
    let attribute = |key: &str| {
        record
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone())
            .unwrap_or_else(|| panic!("no {key} in {:#?}", record.attributes))
    };
    assert_eq!(
        text(Some(&attribute("sqreen.event.name"))),
        "checkout.failed"
    );
    assert_eq!(text(Some(&attribute("client.address"))), "81.2.69.160");
    assert_eq!(text(Some(&attribute("http.request.method"))), "POST");
    assert_eq!(text(Some(&attribute("url.path"))), "/checkout");
    assert_eq!(text(Some(&attribute("server.address"))), "shop.example.com");
    assert_eq!(text(Some(&attribute("user_agent.original"))), "otel-test/1");
    assert_eq!(text(Some(&attribute("enduser.id"))), "alice@example.com");
    assert_eq!(
        attribute("sqreen.property.amount").value,
        Some(Value::IntValue(42))
    );
    // Scrubbed as the backend's copy is: a sensitive key, a card number.
    let masked = "<Redacted by Sqreen>";
    assert_eq!(text(Some(&attribute("sqreen.property.password"))), masked);
    assert_eq!(text(Some(&attribute("sqreen.property.card"))), masked);
    let everything = format!("{records:?}");
    assert!(!everything.contains("hunter2"), "{everything}");
    assert!(!everything.contains("4111"), "{everything}");
}

fn text(value: Option<&AnyValue>) -> &str {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}
