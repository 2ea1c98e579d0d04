//! `sqreen-dev-backend`: the test backend as a process, for demos and
//! local development. It speaks the agent protocol on `--addr` (default
//! `127.0.0.1:8700`, the agent's default URL), accepts any token, and
//! prints every call it receives as one JSON line on stdout. Stops on
//! SIGINT or SIGTERM.

#![allow(clippy::print_stdout, clippy::print_stderr)] // its output is the point

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use sqreen_test_backend::TestBackend;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:8700".to_owned();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value,
            _ => {
                eprintln!("usage: sqreen-dev-backend [--addr 127.0.0.1:8700]");
                std::process::exit(2);
            }
        }
    }
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("invalid --addr {addr}: {e}");
            std::process::exit(2);
        }
    };
    let backend = match TestBackend::start_on(addr) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("sqreen-dev-backend listening on {}", backend.url());

    let stop = Arc::new(AtomicBool::new(false));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            runtime.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match &mut term { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            });
            stop.store(true, Ordering::Relaxed);
        });
    }

    // Print what arrived since the last look, one JSON line per item.
    let (mut logins, mut beats, mut events, mut logouts) = (0, 0, 0, 0);
    loop {
        let done = stop.load(Ordering::Relaxed);
        backend.with(|s| {
            for (body, _, app) in s.logins.iter().skip(logins) {
                println!(
                    "{}",
                    json!({"call": "app-login", "app_name": app, "agent": body})
                );
            }
            logins = s.logins.len();
            for beat in s.beats.iter().skip(beats) {
                println!("{}", json!({"call": "app-beat", "body": beat}));
            }
            beats = s.beats.len();
            let all = s.events();
            for event in all.iter().skip(events) {
                println!("{}", json!({"call": "batch", "event": event}));
            }
            events = all.len();
            for _ in logouts..s.logouts {
                println!("{}", json!({"call": "app-logout"}));
            }
            logouts = s.logouts;
        });
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    backend.stop();
}
