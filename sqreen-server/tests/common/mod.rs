//! Helpers of the integration tests: a real server on 127.0.0.1 (in-process,
//! its own runtime thread), an agent speaking the protocol over HTTP, and
//! the admin API.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr, missing_docs)]

pub mod browser;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use sqreen_server::{Server, ServerConfig};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdefghij";

/// The env var naming a PostgreSQL server for the tests that need one.
pub const POSTGRES_ENV: &str = "SQREEN_TEST_POSTGRES_URL";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh SQLite database URL in the temp dir.
pub fn sqlite_url() -> String {
    let dir = std::env::temp_dir().join("sqreen-server-tests");
    std::fs::create_dir_all(&dir).unwrap();
    format!(
        "sqlite://{}",
        dir.join(format!("{}.db", unique())).display()
    )
}

/// Records that `test` did not run because of `reason`: printed, appended
/// to `$SQREEN_SKIP_LOG` (scripts/test.sh lists every skip at the end: a
/// skip is never a pass), and a failure when `CI` is set.
pub fn skip(test: &str, reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} cannot run in CI: {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("SQREEN_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(log) {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}

/// A fresh, empty PostgreSQL database on the server of `SQREEN_TEST_POSTGRES_URL`,
/// or `None` (with a skip line) when the variable is absent.
pub fn postgres_url(test: &str) -> Option<String> {
    let Ok(base) = std::env::var(POSTGRES_ENV) else {
        // scripts/test.sh starts PostgreSQL: without it, a skip (a failure in CI).
        skip(
            test,
            &format!("set {POSTGRES_ENV} (scripts/test.sh starts a throwaway server)"),
        );
        return None;
    };
    let name = format!("sqreen_test_{}", unique());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
    });
    // Replace the database name (the path) of the base URL.
    let (prefix, rest) = base.rsplit_once('/').unwrap();
    let query = rest
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Some(format!("{prefix}/{name}{query}"))
}

/// A server on 127.0.0.1, any free port; stops when dropped.
pub struct TestServer {
    pub url: String,
    /// The admin key the server generated, when it was started without one
    /// on a new database.
    pub generated_admin_key: Option<String>,
    pub database_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_on(&sqlite_url(), 1)
    }

    /// A server on `database_url` with 1 s heartbeats.
    pub fn start_db(database_url: &str) -> Self {
        Self::start_on(database_url, 1)
    }

    pub fn start_on(database_url: &str, heartbeat_delay: u64) -> Self {
        Self::start_with(database_url, |c| c.with_heartbeat_delay(heartbeat_delay))
    }

    /// A server on `database_url` with 1 s heartbeats whose webhooks may
    /// reach 127.0.0.1 (`--allow-private-webhooks`), for the tests'
    /// receivers.
    pub fn start_allowing_private_webhooks(database_url: &str) -> Self {
        Self::start_with(database_url, |c| {
            c.with_heartbeat_delay(1).with_private_webhooks(true)
        })
    }

    /// A server on `database_url` with the admin key and whatever
    /// `configure` sets.
    pub fn start_with(
        database_url: &str,
        configure: impl FnOnce(ServerConfig) -> ServerConfig,
    ) -> Self {
        Self::start_config(configure(
            ServerConfig::new(database_url).with_admin_key(ADMIN_KEY),
        ))
    }

    /// A server with `config` (its database, admin key, limits…).
    pub fn start_config(config: ServerConfig) -> Self {
        let database_url = config.database_url.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (server, generated) = Server::open(&config).await.unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_tx
                    .send((listener.local_addr().unwrap(), generated))
                    .unwrap();
                server
                    .serve(listener, async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
            rt.shutdown_timeout(Duration::from_millis(200));
        });
        let (addr, generated_admin_key) = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server starts");
        Self {
            url: format!("http://{addr}"),
            generated_admin_key,
            database_url,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn admin(&self) -> AdminClient {
        AdminClient {
            url: self.url.clone(),
            http: client(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The admin API with the right key.
pub struct AdminClient {
    pub url: String,
    pub http: Client,
}

impl AdminClient {
    pub fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN_KEY)
            .send()
            .unwrap()
    }

    pub fn get_json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().unwrap()
    }

    pub fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.send(reqwest::Method::POST, path, Some(body))
    }

    /// Creates an app; returns its token.
    pub fn create_app(&self, name: &str) -> String {
        let r = self.post("/api/apps", &json!({"name": name}));
        assert_eq!(r.status(), 201);
        let v: Value = r.json().unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    pub fn create_playbook(&self, playbook: &Value) -> i64 {
        let r = self.post("/api/playbooks", playbook);
        let status = r.status();
        let v: Value = r.json().unwrap();
        assert_eq!(status, 201, "{v}");
        v["id"].as_i64().unwrap()
    }
}

/// A protocol client standing in for an agent.
pub struct FakeAgent {
    pub url: String,
    pub session: String,
    pub http: Client,
}

impl FakeAgent {
    pub fn login(url: &str, token: &str) -> (Self, Value) {
        let http = client();
        let r = http
            .post(format!("{url}/sqreen/v1/app-login"))
            .header("X-Api-Key", token)
            .json(&json!({"agent_type": "rust", "agent_version": "0.1.0"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().unwrap();
        let session = answer["session_id"].as_str().unwrap().to_owned();
        (
            Self {
                url: url.to_owned(),
                session,
                http,
            },
            answer,
        )
    }

    pub fn post_raw(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> Response {
        self.http
            .post(format!("{}{path}", self.url))
            .header("X-Session-Key", &self.session)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .unwrap()
    }

    pub fn batch(&self, events: &[Value]) -> Response {
        self.post_raw("/sqreen/v0/batch", json!({"batch": events}).to_string())
    }

    pub fn beat(&self, body: &Value) -> Value {
        let r = self.post_raw("/sqreen/v1/app-beat", body.to_string());
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    }

    pub fn actionspack(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/sqreen/v0/actionspack", self.url))
            .header("X-Session-Key", &self.session)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A request record holding one `track` of `event`.
pub fn record(rid: &str, ip: &str, event: &str, properties: Value, user: Option<Value>) -> Value {
    let mut options = json!({"properties": properties});
    if let Some(user) = user {
        options["user_identifiers"] = user;
    }
    let now = now_rfc3339();
    json!({"event_type": "request_record", "version": "20171208", "rid": rid,
        "client_ip": ip, "start": now, "end": now,
        "request": {"rid": null, "verb": "POST", "path": "/login", "host": "example.com",
                    "port": "443", "scheme": "https", "remote_ip": "10.0.0.2",
                    "remote_port": "5000", "user_agent": "test-agent/1", "referer": "",
                    "headers": [["X-Forwarded-For", ip]], "parameters": {}},
        "response": {"status": 200, "content_length": 2, "content_type": "text/plain"},
        "observed": {"sdk": [{"time": now, "name": "track", "args": [event, options]}]}})
}

/// A heartbeat carrying `count` failed logins of `user` from `ip`.
pub fn failed_logins(ip: &str, user: &str, count: u64) -> Value {
    let key = json!({"keys": [["username", user]], "ip": ip}).to_string();
    let now = now_rfc3339();
    json!({"command_results": {}, "metrics": [{"name": "sdk-login-fail",
        "start": now, "finish": now, "observation": {key: count}}]})
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two tests running `scenario(database_url)`: one on a fresh SQLite file,
/// one on a fresh PostgreSQL database (skipped without `SQREEN_TEST_POSTGRES_URL`).
#[macro_export]
macro_rules! on_both_backends {
    ($(#[$doc:meta])* $scenario:ident => $sqlite:ident, $postgres:ident) => {
        $(#[$doc])*
        #[test]
        fn $sqlite() {
            $scenario(&common::sqlite_url());
        }
        $(#[$doc])*
        #[test]
        fn $postgres() {
            if let Some(url) = common::postgres_url(stringify!($postgres)) {
                $scenario(&url);
            }
        }
    };
}

/// A request a [`receiver`] got: its lower-case headers and raw body.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub path: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A tiny HTTP server on 127.0.0.1 that records each request and answers
/// `status`; returns its base URL (`http://127.0.0.1:PORT`) and what it got.
pub fn receiver(status: u16) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let mut headers = std::collections::HashMap::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let length = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.lock().unwrap().push(Delivery {
                path,
                headers,
                body,
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

/// Checks a delivery's signature as a receiver would: the HMAC-SHA256 of
/// `timestamp "." body` with `secret`, and a timestamp within 5 minutes.
pub fn signature_is_valid(delivery: &Delivery, secret: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(timestamp) = delivery.headers.get("x-sqreen-timestamp") else {
        return false;
    };
    let Some(signature) = delivery.headers.get("x-sqreen-signature") else {
        return false;
    };
    let Ok(seconds) = timestamp.parse::<u64>() else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(seconds) > 300 {
        return false;
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&delivery.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    signature.strip_prefix("v1=") == Some(expected.as_str())
}

/// `/api/stats` of `server`.
pub fn stats(server: &TestServer) -> Value {
    server.admin().get_json("/api/stats")
}
