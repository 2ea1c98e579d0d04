//! End to end with real processes: `sqreen-server` (this package's binary)
//! and the `example-axum` demo app, its agent pointed at the server.
//!
//! Failed logins from one IP cross a playbook's threshold; within two
//! heartbeats the agent answers that IP 403 while other IPs get 200; the
//! events, the alert and the action are visible through the admin API;
//! lifting the action restores access. Run on SQLite with one server, and
//! on PostgreSQL with two server processes sharing the database (the agent
//! on one, the admin API on the other).
//!
//! `example-axum` is another package's binary, so it is looked up beside
//! this test's executable (`target/<profile>/example-axum`): a workspace
//! test run builds it. Alone, build it first: `cargo build -p example-axum`.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const HEARTBEAT_S: u64 = 1;
const ATTACKER: &str = "81.2.69.160";
const BYSTANDER: &str = "81.2.69.161";

/// A child process killed (and its log shown) when the test ends.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} log (last lines, newest first) ---", self.name);
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sqreen-e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `target/<profile>/example-axum`, or `None` (a skip, outside CI).
fn example_axum() -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<this test> → target/<profile>/example-axum
    let bin = exe.parent()?.parent()?.join("example-axum");
    if bin.exists() {
        return Some(bin);
    }
    skip(
        "e2e_example",
        &format!(
            "{} not built (the workspace test run builds it; or cargo build -p example-axum)",
            bin.display()
        ),
    );
    None
}

fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sqreen-server")
}

/// `sqreen-server app create NAME`: the token is the last line of stdout.
fn create_app(database: &str, name: &str) -> String {
    let out = Command::new(server_bin())
        .args(["app", "create", name, "--database", database])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap().trim().to_owned()
}

/// `sqreen-server serve` on a free port; returns it and its base URL.
fn serve(database: &str, dir: &std::path::Path, name: &'static str) -> (Proc, String) {
    serve_on("127.0.0.1:0", database, dir, name)
}

/// `sqreen-server serve` on `addr`; returns it and its base URL.
fn serve_on(
    addr: &str,
    database: &str,
    dir: &std::path::Path,
    name: &'static str,
) -> (Proc, String) {
    let log = dir.join(format!("{name}.log"));
    let mut child = Command::new(server_bin())
        .args(["serve", "--addr", addr, "--database", database])
        .env("SQREEN_SERVER_ADMIN_KEY", ADMIN_KEY)
        .env("SQREEN_SERVER_HEARTBEAT_DELAY", HEARTBEAT_S.to_string())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let proc = Proc { name, child, log };
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server prints its address");
    (proc, url)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_app(
    bin: &PathBuf,
    server_url: &str,
    token: &str,
    dir: &std::path::Path,
) -> (Proc, String) {
    let port = free_port();
    let log = dir.join("example-axum.log");
    let child = Command::new(bin)
        .env("ADDR", format!("127.0.0.1:{port}"))
        .env("SQREEN_URL", server_url)
        .env("SQREEN_TOKEN", token)
        .env("SQREEN_APP_NAME", "e2e-app")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (
        Proc {
            name: "example-axum",
            child,
            log,
        },
        format!("http://127.0.0.1:{port}"),
    )
}

fn status_from(http: &reqwest::blocking::Client, base: &str, ip: &str) -> Option<u16> {
    http.get(format!("{base}/"))
        .header("X-Forwarded-For", ip)
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

/// The scenario, with the agent on `agent_server` and the admin API on
/// `admin_server` (the same server, or another one on the same database).
fn scenario(
    bin: &PathBuf,
    database: &str,
    agent_server: &str,
    admin: &AdminClient,
    dir: &std::path::Path,
) {
    let token = create_app(database, "e2e-app");
    assert!(token.starts_with("sqa_"), "{token}");
    let playbook_id = admin.create_playbook(&json!({
        "name": "login brute force", "enabled": true,
        "trigger": {"event": "sdk-login-fail", "conditions": [], "threshold": 5,
                    "period_s": 60, "actor": "ip"},
        "responses": [{"type": "block", "duration_s": 600}],
        "notifications": [], "allow_critical_ips": false}));

    let (_app, base) = start_app(bin, agent_server, &token, dir);
    let http = client();
    let wait = Duration::from_secs(30);
    eventually("the app to answer", wait, || {
        (status_from(&http, &base, BYSTANDER) == Some(200)).then_some(())
    });
    // The agent is logged in once an event it tracked reaches the server.
    eventually("the agent to deliver events", wait, || {
        let _ = http
            .post(format!("{base}/track"))
            .header("X-Forwarded-For", BYSTANDER)
            .json(&json!({"event": "e2e.ready", "properties": {"k": "v"}}))
            .send();
        let v = admin.get_json("/api/events?event=e2e.ready&limit=1");
        (!v["events"].as_array().unwrap().is_empty()).then_some(())
    });

    // Failed logins from one IP cross the threshold.
    for i in 0..5 {
        let r = http
            .post(format!("{base}/login"))
            .header("X-Forwarded-For", ATTACKER)
            .form(&[
                ("username", format!("victim{}", i % 2)),
                ("password", "guess".into()),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let crossed = Instant::now();
    eventually("the agent to block the attacker", wait, || {
        (status_from(&http, &base, ATTACKER) == Some(403)).then_some(())
    });
    let blocked_after = crossed.elapsed();
    eprintln!("blocked {blocked_after:?} after the threshold was crossed");
    // The metrics go up on the next beat, whose answer already carries
    // `actions_reload`: at most two heartbeats, plus slack for a busy machine.
    assert!(
        blocked_after <= Duration::from_secs(2 * HEARTBEAT_S + 6),
        "blocked only after {blocked_after:?}"
    );
    assert_eq!(status_from(&http, &base, BYSTANDER), Some(200));
    let r = http
        .post(format!("{base}/login"))
        .header("X-Forwarded-For", BYSTANDER)
        .form(&[("username", "alice"), ("password", "open-sesame")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "other IPs log in");

    // Visible through the API: events, alert, action.
    let fails = admin.get_json(&format!("/api/events?event=sdk-login-fail&ip={ATTACKER}"));
    let total: i64 = fails["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 5, "{fails}");
    assert_eq!(fails["events"][0]["app"], "e2e-app");
    let alerts = admin.get_json("/api/alerts");
    let alerts = alerts["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["actor"], ATTACKER);
    assert_eq!(alerts[0]["playbook_id"], playbook_id);
    let actions = admin.get_json("/api/actions")["actions"].clone();
    assert_eq!(actions.as_array().unwrap().len(), 1);
    let action: &Value = &actions[0];
    assert_eq!(action["action"], "block_ip");
    assert_eq!(
        action["parameters"]["ip_cidr"],
        json!([format!("{ATTACKER}/32")])
    );
    assert_eq!(action["playbook_id"], playbook_id);
    // The agent reports each enforcement as an event.
    eventually("the enforcement event", wait, || {
        let v = admin.get_json(&format!(
            "/api/events?event=sq.action.block_ip&ip={ATTACKER}"
        ));
        v["events"].as_array().unwrap().first().cloned()
    });
    let trend = admin.get_json(&format!(
        "/api/events/trend?event=sdk-login-fail&bucket=60&group_by=ip&since={}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            - 600_000
    ));
    assert_eq!(trend["series"][0]["group"], ATTACKER);
    assert_eq!(trend["series"][0]["total"], 5);

    // Lifting the action restores access.
    let id = action["action_id"].as_str().unwrap();
    assert_eq!(
        admin
            .send(Method::DELETE, &format!("/api/actions/{id}"), None)
            .status(),
        204
    );
    let lifted = Instant::now();
    eventually("the agent to unblock the attacker", wait, || {
        (status_from(&http, &base, ATTACKER) == Some(200)).then_some(())
    });
    eprintln!("unblocked {:?} after the lift", lifted.elapsed());
    assert!(
        admin.get_json("/api/actions")["actions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// One server on SQLite and the example app, as real processes.
#[test]
fn example_app_blocked_and_unblocked_sqlite() {
    let Some(bin) = example_axum() else { return };
    let dir = temp_dir();
    let database = format!("sqlite://{}", dir.join("e2e.db").display());
    // Migrations first, so that `app create` and `serve` do not race on them.
    let (_server, url) = serve(&database, &dir, "sqreen-server");
    let admin = AdminClient {
        url: url.clone(),
        http: client(),
    };
    scenario(&bin, &database, &url, &admin, &dir);
}

/// Two server processes on one PostgreSQL database and the example app: the
/// agent talks to one, the admin API to the other.
#[test]
fn example_app_blocked_and_unblocked_postgres_two_servers() {
    let Some(database) = postgres_url("example_app_blocked_and_unblocked_postgres_two_servers")
    else {
        return;
    };
    let Some(bin) = example_axum() else { return };
    let dir = temp_dir();
    let (_a, agent_url) = serve(&database, &dir, "sqreen-server-a");
    let (_b, admin_url) = serve(&database, &dir, "sqreen-server-b");
    let admin = AdminClient {
        url: admin_url,
        http: client(),
    };
    scenario(&bin, &database, &agent_url, &admin, &dir);
}

/// The `i`-th attacker user name: 100 characters, every other one made of
/// control characters (six bytes each once escaped in JSON).
fn stuffed_user(i: usize) -> String {
    let tag = format!("{i:06}");
    if i.is_multiple_of(2) {
        format!("{tag}{}", "x".repeat(94))
    } else {
        format!("{tag}{}", "\u{1}".repeat(94))
    }
}

/// Failed logins `range` of the attacker, sent from four threads; each
/// answer is a 401 (counted) or a 403 (blocked).
fn stuff(base: &str, range: std::ops::Range<usize>) {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let base = base.to_owned();
            let range = range.clone();
            std::thread::spawn(move || {
                let http = client();
                for i in range.skip(t).step_by(4) {
                    let status = http
                        .post(format!("{base}/login"))
                        .header("X-Forwarded-For", ATTACKER)
                        .form(&[("username", stuffed_user(i)), ("password", "guess".into())])
                        .send()
                        .map(|r| r.status().as_u16());
                    assert!(matches!(status, Ok(401 | 403)), "login {i}: {status:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Heartbeats the server refused, from its log.
fn refused_beats(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("request.refused") && l.contains("app-beat"))
        .map(str::to_owned)
        .collect()
}

/// Credential stuffing against the real processes: 10 000 failed logins
/// from one IP, each with its own 100-character user name (half of them
/// control characters), and a playbook of 50 failures per IP in 120 s.
/// The IP is blocked within two heartbeats of the last attempt and no
/// heartbeat is refused; with `outage`, the server is down for the first
/// half of the attempts and back (same address, same database) for the
/// second.
fn stuffing(outage: bool) {
    let Some(bin) = example_axum() else { return };
    let dir = temp_dir();
    let database = format!("sqlite://{}", dir.join("stuffing.db").display());
    let addr = format!("127.0.0.1:{}", free_port());
    let (server, url) = serve_on(&addr, &database, &dir, "sqreen-server");
    let admin = AdminClient {
        url: url.clone(),
        http: client(),
    };
    let token = create_app(&database, "e2e-app");
    admin.create_playbook(&json!({
        "name": "credential stuffing", "enabled": true,
        "trigger": {"event": "sdk-login-fail", "conditions": [], "threshold": 50,
                    "period_s": 120, "actor": "ip"},
        "responses": [{"type": "block", "duration_s": 600}],
        "notifications": [], "allow_critical_ips": false}));
    let (_app, base) = start_app(&bin, &url, &token, &dir);
    let http = client();
    let wait = Duration::from_secs(60);
    eventually("the agent to deliver events", wait, || {
        let _ = http
            .post(format!("{base}/track"))
            .header("X-Forwarded-For", BYSTANDER)
            .json(&json!({"event": "e2e.ready"}))
            .send();
        let v = admin.get_json("/api/events?event=e2e.ready&limit=1");
        (!v["events"].as_array().unwrap().is_empty()).then_some(())
    });

    let server = if outage {
        drop(server);
        stuff(&base, 0..5_000);
        let (server, _) = serve_on(&addr, &database, &dir, "sqreen-server-again");
        stuff(&base, 5_000..10_000);
        server
    } else {
        stuff(&base, 0..10_000);
        server
    };
    let last = Instant::now();
    eventually("the agent to block the attacker", wait, || {
        (status_from(&http, &base, ATTACKER) == Some(403)).then_some(())
    });
    eprintln!(
        "attacker blocked {:?} after the last attempt",
        last.elapsed()
    );
    assert!(
        last.elapsed() <= Duration::from_secs(2 * HEARTBEAT_S + 6),
        "blocked only {:?} after the last attempt",
        last.elapsed()
    );
    assert_eq!(status_from(&http, &base, BYSTANDER), Some(200));
    let refused: Vec<String> = [dir.join("sqreen-server.log"), server.log.clone()]
        .iter()
        .flat_map(|log| refused_beats(log))
        .collect();
    assert!(refused.is_empty(), "refused heartbeats: {refused:?}");
}

/// Credential stuffing does not blind the agent.
#[test]
fn credential_stuffing_is_blocked() {
    stuffing(false);
}

/// … nor does a backend outage in the middle of it.
#[test]
fn credential_stuffing_is_blocked_across_an_outage() {
    stuffing(true);
}
