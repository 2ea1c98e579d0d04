//! The server process under attack, with its memory measured: the
//! `sqreen-server` binary (a release build under `cargo test --release`, as
//! `scripts/adversarial.sh` and CI run it) on 127.0.0.1, attacked the ways
//! it once broke, while its resident memory is read from `/proc`.
//!
//! - Ten connections each announce a 30 MiB batch with a bogus session and
//!   keep sending it: each must be refused before the rest of its body is
//!   sent, and the peak resident memory must not grow by 64 MiB.
//! - Then, in turn: a record whose request is tracked 100 times, a forged
//!   session cookie, a webhook to loopback, extreme times, deeply nested
//!   contexts. Each is refused (or stored once), and the server still
//!   answers.
//!
//! Figures (time to each refusal, bytes sent before it, memory) are
//! printed for BENCHMARKS.md; the assertions are about bytes and memory,
//! not time.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The server process; killed when dropped.
struct Process {
    child: Child,
    url: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Process {
    // SQREEN_SERVER_BIN measures another build (an older version, say).
    let bin = std::env::var("SQREEN_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sqreen-server").to_owned());
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--database",
            &sqlite_url(),
        ])
        .env("SQREEN_SERVER_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned))
        .expect("the server starts");
    Process { child, url }
}

/// A figure of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends a request announcing `announced` body bytes, writing the body in
/// 256 KiB pieces until the server answers; returns the status, the body
/// bytes written by then, and the time the answer took.
fn upload_until_answered(addr: &str, head: &str, announced: usize) -> (u16, u64, Duration) {
    let stream = TcpStream::connect(addr).unwrap();
    let mut reader = stream.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let answered = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let writer = {
        let (answered, written) = (Arc::clone(&answered), Arc::clone(&written));
        let mut stream = stream;
        let head = head.to_owned();
        std::thread::spawn(move || {
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let piece = vec![b' '; 256 * 1024];
            let mut sent = 0;
            while sent < announced && !answered.load(Ordering::Acquire) {
                let n = piece.len().min(announced - sent);
                if stream.write_all(&piece[..n]).is_err() {
                    return;
                }
                sent += n;
                written.store(sent as u64, Ordering::Release);
            }
        })
    };
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let took = start.elapsed();
    let sent_by_then = written.load(Ordering::Acquire);
    answered.store(true, Ordering::Release);
    let _ = reader.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, sent_by_then, took)
}

/// Ten unauthenticated 30 MiB uploads at once, then the other attacks:
/// refused early, memory bounded, the server alive.
#[test]
fn attacks_on_the_server_process() {
    let server = start();
    let pid = server.child.id();
    let admin = AdminClient {
        url: server.url.clone(),
        http: client(),
    };
    let token = admin.create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let rss_before = status_kib(pid, "VmRSS:");
    let peak_before = status_kib(pid, "VmHWM:");

    // 1. Unauthenticated uploads.
    let announced = 30 << 20;
    let addr = server.url.strip_prefix("http://").unwrap().to_owned();
    let uploads: Vec<_> = (0..10)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let head = format!(
                    "POST /sqreen/v0/batch HTTP/1.1\r\nHost: t\r\nX-Session-Key: sqs_bogus{i}\r\n\
                     Content-Type: application/json\r\nContent-Length: {announced}\r\n\r\n"
                );
                upload_until_answered(&addr, &head, announced)
            })
        })
        .collect();
    let results: Vec<_> = uploads.into_iter().map(|u| u.join().unwrap()).collect();
    let peak_after = status_kib(pid, "VmHWM:");
    let rss_after = status_kib(pid, "VmRSS:");
    for (i, (status, sent, took)) in results.iter().enumerate() {
        eprintln!(
            "upload {i}: {status} after {took:?}, {} KiB of 30 MiB sent",
            sent / 1024
        );
    }
    eprintln!(
        "RSS {rss_before} KiB -> {rss_after} KiB; peak {peak_before} KiB -> {peak_after} KiB"
    );
    for (status, sent, _) in &results {
        assert_eq!(*status, 401);
        assert!(
            *sent < announced as u64,
            "the whole body was sent before the refusal"
        );
    }
    assert!(
        peak_after.saturating_sub(rss_before) < 64 * 1024,
        "peak memory grew by {} KiB",
        peak_after - rss_before
    );

    // 2. One request tracked 100 times: stored once, accepted.
    let mut r = record("amplify", "81.2.69.160", "amp", json!({}), None);
    r["request"]["parameters"] = json!({"blob": "x".repeat(200 * 1024)});
    let track = r["observed"]["sdk"][0].clone();
    r["observed"]["sdk"] = Value::Array(vec![track; 100]);
    assert_eq!(agent.batch(&[r]).status(), 200);

    // 3. A forged session cookie opens nothing.
    let no_redirects = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = format!("sqreen_session=1.{}.{}", "0".repeat(32), "ab".repeat(32));
    let r = no_redirects
        .get(format!("{}/events", server.url))
        .header("Cookie", forged)
        .send()
        .unwrap();
    assert!(r.status().is_redirection());

    // 4. A webhook to loopback is refused when the playbook is saved.
    let r = admin.post(
        "/api/playbooks",
        &json!({"name": "ssrf", "trigger": {"event": "e", "actor": "ip", "threshold": 1,
            "period_s": 60}, "responses": [],
            "notifications": [{"type": "webhook", "url": "http://0x7f000001:9/hook"}]}),
    );
    assert_eq!(r.status(), 400);

    // 6. Extreme values.
    for q in [
        "/api/events/trend?since=10000-01-01T00:00:00Z",
        "/api/events/trend?since=-9223372036854775808&until=9223372036854775807",
    ] {
        assert_eq!(admin.get(q).status(), 400, "{q}");
    }

    // 7. Deep contexts.
    let mut deep = json!("leaf");
    for _ in 0..200 {
        deep = json!({ "a": deep });
    }
    let mut r = record("deep", "81.2.69.160", "deep", json!({}), None);
    r["request"]["parameters"] = deep;
    assert_eq!(agent.batch(&[r]).status(), 400);

    let r = admin.get("/healthz");
    assert_eq!(r.status(), 200);
    eprintln!(
        "after every attack: RSS {} KiB, peak {} KiB",
        status_kib(pid, "VmRSS:"),
        status_kib(pid, "VmHWM:")
    );
}
