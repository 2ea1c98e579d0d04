//! Init order: a wrapper built before `sqreen::init` passes requests
//! through until the agent starts, then records them, on a real server on
//! 127.0.0.1. (Its own test binary: it registers the process's global agent.)

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sqreen_core::test::{init_captured, test_config};
use sqreen_warp::{Sqreen, SqreenWrapper, sqreen};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warp::Filter;

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
async fn wrapper_built_before_init_records_once_it_runs() {
    let route = warp::path("track").and(sqreen()).map(|sq: Sqreen| {
        sq.track_event("early.wrapper");
        "ok"
    });
    let app = SqreenWrapper::new().wrap(route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(app).incoming(listener).run());

    // No agent yet: served, not recorded.
    assert_eq!(status_of(addr, "/track").await, 200);

    let (guard, backend) = init_captured(test_config().build().unwrap());
    assert_eq!(status_of(addr, "/track").await, 200);
    assert!(guard.flush_async(Duration::from_secs(10)).await);
    let events = backend.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["observed"]["sdk"][0]["args"][0], "early.wrapper");
    assert_eq!(events[0]["request"]["path"], "/track");
    assert_eq!(backend.logins()[0]["framework_type"], "warp");
}
