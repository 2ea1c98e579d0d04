//! Who starts the agent, and when, on a real rocket server on 127.0.0.1:
//! a fairing built before `sqreen::init` records once the agent starts,
//! and a fairing that owns its agent (`from_config`, for `#[launch]`)
//! starts it at ignite and logs it out at shutdown. (Their own test
//! binary: they register the process's global agent, one at a time.)

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use rocket::fairing::AdHoc;
use serde_json::Value;
use sqreen_core::Config;
use sqreen_core::test::{init_captured, test_config};
use sqreen_rocket::{Sqreen, SqreenFairing};
use sqreen_test_backend::TestBackend;

/// The tests share the process's global agent: one at a time.
static GLOBAL_AGENT: Mutex<()> = Mutex::new(());

#[rocket::get("/track")]
fn track(sq: Sqreen) -> &'static str {
    sq.track_event("rocket.event");
    "ok"
}

/// The status of `GET path` on `addr`, over a fresh connection.
fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer[9..12].parse().unwrap()
}

/// Launches rocket with `fairing` on a free port in a thread of its own;
/// returns its address, its shutdown handle and the thread.
fn launch(fairing: SqreenFairing) -> (SocketAddr, rocket::Shutdown, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let config = rocket::Config {
            port: 0,
            log_level: rocket::config::LogLevel::Off,
            ..rocket::Config::debug_default()
        };
        let server = rocket::custom(config)
            .attach(fairing)
            .mount("/", rocket::routes![track])
            .attach(AdHoc::on_liftoff("report address", move |rocket| {
                Box::pin(async move {
                    let config = rocket.config();
                    let addr = SocketAddr::new(config.address, config.port);
                    tx.send((addr, rocket.shutdown())).unwrap();
                })
            }));
        rocket::execute(async move {
            let _ = server.launch().await;
        });
    });
    let (addr, shutdown) = rx.recv().unwrap();
    (addr, shutdown, thread)
}

#[test]
fn fairing_built_before_init_records_once_it_runs() {
    let _one = GLOBAL_AGENT.lock().unwrap_or_else(|p| p.into_inner());
    let (addr, shutdown, thread) = launch(SqreenFairing::new());

    // No agent yet: served, not recorded.
    assert_eq!(status_of(addr, "/track"), 200);

    let (guard, backend) = init_captured(test_config().build().unwrap());
    assert_eq!(status_of(addr, "/track"), 200);
    assert!(guard.flush(Duration::from_secs(10)));
    let events = backend.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["observed"]["sdk"][0]["args"][0], "rocket.event");
    assert_eq!(events[0]["request"]["path"], "/track");
    assert_eq!(backend.logins()[0]["framework_type"], "rocket");
    shutdown.notify();
    thread.join().unwrap();
}

#[test]
fn fairing_owning_its_agent_starts_it_and_logs_it_out() {
    let _one = GLOBAL_AGENT.lock().unwrap_or_else(|p| p.into_inner());
    let backend = TestBackend::start();
    let config = Config::builder()
        .url(backend.url())
        .token("launch-token")
        .app_name("launch")
        .build()
        .unwrap();
    let (addr, shutdown, thread) = launch(SqreenFairing::from_config(config));
    assert!(
        backend.wait_for(Duration::from_secs(10), |s| !s.logins.is_empty()),
        "the fairing started the agent at ignite"
    );
    // Requests before the login completes pass through; wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sqreen_core::Agent::global().is_none_or(|a| !a.is_enabled()) {
        assert!(std::time::Instant::now() < deadline, "agent never enabled");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status_of(addr, "/track"), 200);

    // Rocket's shutdown: the fairing sends what is queued and logs out.
    shutdown.notify();
    thread.join().unwrap();
    backend.with(|s| {
        assert_eq!(s.logouts, 1, "logout at rocket's shutdown");
        assert_eq!(s.logins[0].0["framework_type"], "rocket");
    });
    let names: Vec<Value> = backend
        .events()
        .iter()
        .map(|e| e["observed"]["sdk"][0]["args"][0].clone())
        .collect();
    assert_eq!(names, ["rocket.event"]);
    assert!(
        sqreen_core::Agent::global().is_none(),
        "unregistered at shutdown"
    );
}
