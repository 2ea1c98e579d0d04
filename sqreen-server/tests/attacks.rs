//! The server under attack, on real sockets: each test replays one way the
//! server once broke (issue 14's list) and checks it no longer does.
//!
//! | weakness | tests |
//! | --- | --- |
//! | 1. bodies read before authentication, no timeouts | `unauthenticated_bodies_are_refused_unread`, `slow_heads_are_cut`, `slow_bodies_are_cut`, `gzip_batches_and_bombs` |
//! | 2. amplification | `tracks_and_events_are_capped`, `contexts_are_stored_once_per_record` |
//! | 3. forgeable sessions | `database_copy_cannot_forge_sessions` (files 0600: `cli.rs`) |
//! | 6. extreme values | `extreme_values_are_refused` |
//! | 7. deep contexts | `deep_contexts_are_refused` |
//! | 9. admin key guessing | `global_guess_budget_spares_known_addresses` (length and file: `cli.rs`) |
//! | 10. playbooks compiled per batch | `playbooks_compile_once_per_change` |
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sqreen_server::ServerConfig;

/// Writes `head` and `body` on a new connection to `server`, then reads
/// what comes back until the server closes or 30 s pass. Returns the answer
/// (empty when the server closed without one) and how long it took.
fn raw_exchange(server: &TestServer, head: &str, body: &[u8]) -> (String, Duration) {
    let addr = server.url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let start = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    // The server may refuse (and close) before taking all of this: a
    // failed write is part of the answer, not an error of the test.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                // The head of the answer is all these tests look at.
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no answer within 30 s ({e}): the server is still waiting"),
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        start.elapsed(),
    )
}

fn status_of(answer: &str) -> Option<u16> {
    answer.split(' ').nth(1)?.parse().ok()
}

/// Announced 30 MiB bodies without a valid token or session are answered
/// 401 after the first 64 KiB, without the server waiting for the rest.
#[test]
fn unauthenticated_bodies_are_refused_unread() {
    let server = TestServer::start();
    server.admin().create_app("shop");
    let announced = 30 << 20;
    let first_part = vec![b'{'; 64 * 1024];
    for (path, credential) in [
        ("/sqreen/v0/batch", "X-Session-Key: sqs_bogus\r\n"),
        ("/sqreen/v0/batch", ""),
        ("/sqreen/v1/app-beat", "X-Session-Key: sqs_bogus\r\n"),
        ("/sqreen/v1/app-login", "X-Api-Key: sqa_bogus\r\n"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\n{credential}\
             Content-Type: application/json\r\nContent-Length: {announced}\r\n\r\n"
        );
        let (answer, took) = raw_exchange(&server, &head, &first_part);
        eprintln!("{path} {credential:?}: answered in {took:?}");
        assert_eq!(status_of(&answer), Some(401), "{path}: {answer:?}");
    }
}

/// A client that sends half a request head is disconnected once the header
/// read timeout passes, instead of holding its connection forever.
#[test]
fn slow_heads_are_cut() {
    let mut config = ServerConfig::new(sqlite_url()).with_admin_key(ADMIN_KEY);
    config.connections.header_read_timeout = Duration::from_secs(1);
    let server = TestServer::start_config(config);
    let (answer, took) = raw_exchange(&server, "POST /sqreen/v0/batch HTTP/1.1\r\nHost: t", b"");
    eprintln!("half a head: closed after {took:?} with {answer:?}");
    assert!(
        answer.is_empty() || status_of(&answer) == Some(408),
        "{answer:?}"
    );
}

/// An authenticated request whose body trickles in is answered 408 at the
/// request deadline.
#[test]
fn slow_bodies_are_cut() {
    let mut config = ServerConfig::new(sqlite_url()).with_admin_key(ADMIN_KEY);
    config.request_timeout = Duration::from_secs(2);
    let server = TestServer::start_config(config);
    let token = server.admin().create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let head = format!(
        "POST /sqreen/v0/batch HTTP/1.1\r\nHost: t\r\nX-Session-Key: {}\r\n\
         Content-Length: 1000\r\n\r\n",
        agent.session
    );
    let (answer, took) = raw_exchange(&server, &head, b"{\"batch\"");
    eprintln!("trickling body: answered after {took:?}");
    assert_eq!(status_of(&answer), Some(408), "{answer:?}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Gzip batches are stored; one that inflates past the batch limit is a
/// 413 (a compression bomb), and so is a plain one over the limit.
#[test]
fn gzip_batches_and_bombs() {
    let mut config = ServerConfig::new(sqlite_url()).with_admin_key(ADMIN_KEY);
    config.max_batch_bytes = 1 << 20;
    let server = TestServer::start_config(config);
    let admin = server.admin();
    let token = admin.create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let post = |body: Vec<u8>, gzipped: bool| {
        let mut req = agent
            .http
            .post(format!("{}/sqreen/v0/batch", server.url))
            .header("X-Session-Key", &agent.session)
            .header("Content-Type", "application/json");
        if gzipped {
            req = req.header("Content-Encoding", "gzip");
        }
        let len = body.len();
        req.body(body)
            .send()
            .unwrap_or_else(|e| panic!("{len} bytes, gzip {gzipped}: {e:?}"))
            .status()
    };
    let batch = json!({"batch": [record("g1", "81.2.69.160", "zipped", json!({}), None)]});
    assert_eq!(post(gzip(batch.to_string().as_bytes()), true), 200);
    let events = admin.get_json("/api/events?event=zipped")["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 1);

    // 64 MiB of spaces inside a valid batch: about 64 KiB on the wire.
    let mut bomb = b"{\"batch\": [".to_vec();
    bomb.resize(64 << 20, b' ');
    bomb.extend_from_slice(b"]}");
    let bomb = gzip(&bomb);
    assert!(bomb.len() < 1 << 20);
    assert_eq!(post(bomb, true), 413);
    assert_eq!(post(vec![b' '; 2 << 20], false), 413);
    assert_eq!(post(b"not gzip at all".to_vec(), true), 400);
}

/// A record with more tracks than the cap, or a batch whose records expand
/// to more events than the cap, is refused.
#[test]
fn tracks_and_events_are_capped() {
    let server = TestServer::start();
    let token = server.admin().create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let with_tracks = |rid: &str, n: usize| {
        let mut r = record(rid, "81.2.69.160", "e", json!({}), None);
        let track = r["observed"]["sdk"][0].clone();
        r["observed"]["sdk"] = Value::Array(vec![track; n]);
        r
    };
    let r = agent.batch(&[with_tracks("many", 101)]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("track entries"));
    let records: Vec<Value> = (0..101)
        .map(|i| with_tracks(&format!("r{i}"), 100))
        .collect();
    let r = agent.batch(&records);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("counting each track"));
    assert_eq!(agent.batch(&[with_tracks("ok", 100)]).status(), 200);
}

/// The events of one record share its request: a 100 KiB request tracked
/// 50 times is stored once, and every event still shows it.
#[test]
fn contexts_are_stored_once_per_record() {
    let server = TestServer::start();
    let admin = server.admin();
    let token = admin.create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let mut r = record("big", "81.2.69.160", "shared", json!({}), None);
    r["request"]["parameters"] = json!({"blob": "x".repeat(100 * 1024)});
    let track = r["observed"]["sdk"][0].clone();
    r["observed"]["sdk"] = Value::Array(vec![track; 50]);
    assert_eq!(agent.batch(&[r]).status(), 200);
    let events = admin.get_json("/api/events?event=shared&limit=100")["events"].clone();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 50);
    for e in events {
        assert_eq!(e["request"]["path"], "/login");
        assert_eq!(
            e["request"]["parameters"]["blob"].as_str().map(str::len),
            Some(100 * 1024)
        );
    }
    let stored = stored_request_bytes(&server.database_url);
    assert!(stored < 2 * 100 * 1024, "{stored} bytes of requests stored");
}

/// The bytes of every stored request context, read from the SQLite file.
fn stored_request_bytes(database_url: &str) -> i64 {
    sqlite_value(
        database_url,
        "SELECT COALESCE(SUM(LENGTH(request)), 0) AS v FROM events",
    )
}

/// The one value (column `v`) of `sql` run on the SQLite file of
/// `database_url`, as a backup's reader would.
fn sqlite_value<T>(database_url: &str, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + Unpin,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get::<T, _>("v")
    })
}

/// Request contexts nested deeper than the bound are refused (400), not
/// stored to be shown as `null`.
#[test]
fn deep_contexts_are_refused() {
    let server = TestServer::start();
    let token = server.admin().create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let nested = |depth: usize| -> Value {
        let mut v = json!("leaf");
        for _ in 0..depth {
            v = json!({ "a": v });
        }
        v
    };
    for (depth, status) in [(200, 400), (40, 400), (20, 200)] {
        let mut r = record(&format!("d{depth}"), "81.2.69.160", "deep", json!({}), None);
        r["request"]["parameters"] = nested(depth);
        let body = json!({"batch": [r]}).to_string();
        let answer = agent.post_raw("/sqreen/v0/batch", body);
        assert_eq!(answer.status(), status, "depth {depth}");
    }
}

/// Times past year 9999, `i64` extremes and absurd buckets are 400s, and
/// a cookie with an extreme issue time is no session: never a dropped
/// connection (a panic).
#[test]
fn extreme_values_are_refused() {
    let server = TestServer::start();
    let admin = server.admin();
    for query in [
        "/api/events/trend?since=10000-01-01T00:00:00Z",
        "/api/events/trend?since=253402300800000",
        "/api/events/trend?since=-9223372036854775808&until=9223372036854775807",
        "/api/events/trend?bucket=9223372036854775807",
        "/api/events?until=9223372036854775807",
        "/api/events?since=-1",
    ] {
        assert_eq!(admin.get(query).status(), 400, "{query}");
    }
    let far = "/api/events/trend?since=9999-12-31T00:00:00Z&until=9999-12-31T23:00:00Z&bucket=3600";
    assert_eq!(admin.get(far).status(), 200);
    let http = client_without_redirects();
    for cookie in [
        format!("sqreen_session=-9223372036854775808.{}.00", "0".repeat(32)),
        format!("sqreen_session=9223372036854775807.{}.00", "0".repeat(32)),
    ] {
        let r = http
            .get(format!("{}/events", server.url))
            .header("Cookie", cookie)
            .send()
            .unwrap();
        assert!(r.status().is_redirection(), "{}", r.status());
    }
    let r = http
        .get(format!("{}/events?since=10000-01-01T00:00", server.url))
        .send()
        .unwrap();
    assert!(r.status().is_redirection() || r.status() == 400);
}

fn client_without_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A cookie forged the old way, from the admin key hash that a copy of the
/// database holds, opens nothing; a server with another session secret
/// refuses a real cookie, one with the same secret accepts it.
#[test]
fn database_copy_cannot_forge_sessions() {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    let db = sqlite_url();
    // A generated admin key: its hash is in the database, as in a backup.
    let secret_a = "session secret of server A, 32+ bytes".to_owned();
    let a = TestServer::start_config(
        ServerConfig::new(&db)
            .with_session_secret(sqreen_server::SessionSecret::Value(secret_a.clone())),
    );
    let hash = admin_key_hash_in(&db);
    let mut key = Sha256::new();
    key.update(b"sqreen-dashboard-session-v1\0");
    key.update(hash.as_bytes());
    let key: [u8; 32] = key.finalize().into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let payload = format!("{now}.{}", "ab".repeat(16));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(b"session\0");
    mac.update(payload.as_bytes());
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let forged = format!("sqreen_session={payload}.{tag}");
    let http = client_without_redirects();
    let page = |server: &TestServer, cookie: &str| {
        http.get(format!("{}/events", server.url))
            .header("Cookie", cookie)
            .send()
            .unwrap()
            .status()
    };
    assert!(
        page(&a, &forged).is_redirection(),
        "a forged cookie opened the dashboard"
    );

    // A real session of server A.
    let key_a = generated_key_of(&a);
    let r = http
        .post(format!("{}/login", a.url))
        .form(&[("key", key_a.as_str())])
        .send()
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(page(&a, &cookie), 200);
    let b = TestServer::start_config(ServerConfig::new(&db).with_session_secret(
        sqreen_server::SessionSecret::Value("another secret, also 32 bytes or more".into()),
    ));
    assert!(page(&b, &cookie).is_redirection());
    let c = TestServer::start_config(
        ServerConfig::new(&db).with_session_secret(sqreen_server::SessionSecret::Value(secret_a)),
    );
    assert_eq!(page(&c, &cookie), 200);
}

fn admin_key_hash_in(database_url: &str) -> String {
    sqlite_value(
        database_url,
        "SELECT value AS v FROM settings WHERE key = 'admin_key_hash'",
    )
}

/// The admin key `server` generated at its first start (only its hash is
/// stored).
fn generated_key_of(server: &TestServer) -> String {
    server
        .generated_admin_key
        .clone()
        .expect("the server generated its admin key")
}

/// Wrong keys from many addresses spend the global budget: a new address
/// is then refused even with the right key (429), while an address that
/// logged in before the attack is still served.
#[test]
fn global_guess_budget_spares_known_addresses() {
    let server = TestServer::start();
    let from = |last: u8| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .local_address(IpAddr::from([127, 0, 0, last]))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let apps = |client: &reqwest::blocking::Client, key: &str| {
        client
            .get(format!("{}/api/apps", server.url))
            .bearer_auth(key)
            .send()
            .unwrap()
            .status()
    };
    let known = from(1);
    assert_eq!(apps(&known, ADMIN_KEY), 200);
    for last in 2..=6 {
        let attacker = from(last);
        for i in 0..20 {
            assert_eq!(apps(&attacker, &format!("guess-{last}-{i}")), 401);
        }
    }
    assert_eq!(apps(&from(7), ADMIN_KEY), 429);
    assert_eq!(apps(&known, ADMIN_KEY), 200);
}

/// Playbooks are compiled when they change, not on every batch.
#[test]
fn playbooks_compile_once_per_change() {
    let server = TestServer::start();
    let admin = server.admin();
    let token = admin.create_app("shop");
    let playbook = json!({"name": "regex", "trigger": {"event": "e", "actor": "ip",
        "threshold": 1000, "period_s": 60,
        "conditions": [{"property": "plan", "op": "regex", "value": "^g(o|ol)d$"}]},
        "responses": []});
    let id = admin.create_playbook(&playbook);
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let send = |range: std::ops::Range<usize>| {
        for i in range {
            let r = record(
                &format!("p{i}"),
                "81.2.69.160",
                "e",
                json!({"plan": "gold"}),
                None,
            );
            assert_eq!(agent.batch(&[r]).status(), 200);
        }
    };
    send(0..5);
    assert_eq!(admin.get_json("/api/stats")["playbook_loads"], 1);
    let r = admin.send(
        reqwest::Method::PUT,
        &format!("/api/playbooks/{id}"),
        Some(&playbook),
    );
    assert_eq!(r.status(), 200);
    send(5..8);
    assert_eq!(admin.get_json("/api/stats")["playbook_loads"], 2);
}
