//! Init order: a middleware built before `sqreen::init` (the server's
//! workers build their apps when it starts) passes requests through until
//! the agent starts, then records them, on a real server on 127.0.0.1.
//! (Its own test binary: it registers the process's global agent.)

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use sqreen_actix::{Sqreen, SqreenMiddleware};
use sqreen_core::test::{init_captured, test_config};

/// The status of `GET path` on `addr`, over a fresh connection.
fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer[9..12].parse().unwrap()
}

#[test]
fn middleware_built_before_init_records_once_it_runs() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(|| {
                App::new().wrap(SqreenMiddleware::new()).route(
                    "/track",
                    web::get().to(|sq: Sqreen| async move {
                        sq.track_event("early.middleware");
                        HttpResponse::Ok().body("ok")
                    }),
                )
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).unwrap();
            server.await.unwrap();
        });
    });
    let (addr, _server) = rx.recv().unwrap();

    // No agent yet: served, not recorded.
    assert_eq!(status_of(addr, "/track"), 200);

    let (guard, backend) = init_captured(test_config().build().unwrap());
    assert_eq!(status_of(addr, "/track"), 200);
    assert!(guard.flush(Duration::from_secs(10)));
    let events = backend.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0]["observed"]["sdk"][0]["args"][0],
        "early.middleware"
    );
    assert_eq!(events[0]["request"]["path"], "/track");
    assert_eq!(backend.logins()[0]["framework_type"], "actix");
}
