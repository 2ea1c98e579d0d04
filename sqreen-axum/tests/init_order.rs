//! Init order: a layer built before `sqreen::init` passes requests through
//! until the agent starts, then records them, on a real server on
//! 127.0.0.1. (Its own test binary: it registers the process's global agent.)

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use sqreen_axum::{Sqreen, SqreenLayer};
use sqreen_core::test::{init_captured, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status of `GET path` on `addr`, over a fresh connection.
async fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer[9..12].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn layer_built_before_init_records_once_it_runs() {
    // The application is built first, as with a router assembled in a
    // library function called before `main` starts the agent.
    let app = Router::new()
        .route(
            "/track",
            get(|sq: Sqreen| async move {
                sq.track_event("early.layer");
                "ok"
            }),
        )
        .layer(SqreenLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // No agent yet: served, not recorded.
    assert_eq!(status_of(addr, "/track").await, 200);

    let (guard, backend) = init_captured(test_config().build().unwrap());
    assert_eq!(status_of(addr, "/track").await, 200);
    assert!(guard.flush_async(Duration::from_secs(10)).await);
    let events = backend.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["observed"]["sdk"][0]["args"][0], "early.layer");
    assert_eq!(events[0]["request"]["path"], "/track");
    // The login names the framework the layer announced before `init`.
    assert_eq!(backend.logins()[0]["framework_type"], "axum");
}
