//! The rocket adapter end to end: rocket's in-process async client, an
//! agent on the core's in-memory backend, and assertions on what reached it.

#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rocket::config::LogLevel;
use rocket::form::Form;
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::Client;
use rocket::{Build, Response, Rocket, State};
use serde_json::{Value, json};
use sqreen_core::test::{CaptureBackend, start_captured, test_config};
use sqreen_core::{Agent, AgentGuard, Config};
use sqreen_rocket::{Blocked, Sqreen, SqreenFairing};

const WAIT: Duration = Duration::from_secs(10);
const MASK: &str = "<Redacted by Sqreen>";

/// How many times the application's handlers ran.
#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

impl Hits {
    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[rocket::get("/hello")]
fn hello(hits: &State<Hits>) -> &'static str {
    hits.hit();
    "hello"
}

#[rocket::get("/tracked")]
fn tracked(sq: Sqreen, hits: &State<Hits>) -> &'static str {
    hits.hit();
    sq.track_event("page.viewed")
        .with_properties([("a", 1), ("b", 2), ("c", 3)]);
    "tracked"
}

#[derive(rocket::FromForm)]
struct Login {
    username: String,
    password: String,
}

#[rocket::post("/form", data = "<form>")]
fn form(sq: Sqreen, form: Form<Login>, hits: &State<Hits>) -> String {
    hits.hit();
    sq.track_event("form.posted");
    format!("{}:{}", form.username, form.password)
}

/// The same form through this crate's `Form`, which captures it whole.
#[rocket::post("/big-form", data = "<form>")]
fn big_form(sq: Sqreen, form: sqreen_rocket::Form<Login>, hits: &State<Hits>) -> String {
    hits.hit();
    sq.track_event("big_form.posted");
    format!("{}:{}", form.username.len(), form.password)
}

#[rocket::post("/json", data = "<body>")]
fn json_body(sq: Sqreen, body: String, hits: &State<Hits>) -> String {
    hits.hit();
    sq.track_event("json.posted");
    body
}

#[rocket::post("/login", data = "<form>")]
fn login(sq: Sqreen, form: Form<Login>, hits: &State<Hits>) -> Result<&'static str, Blocked> {
    hits.hit();
    let user = sq.for_user([("username", form.username.as_str())]);
    user.track_auth_success();
    user.identify()?;
    Ok("welcome")
}

#[rocket::get("/users/<id>/files/<path..>")]
fn user_file(sq: Sqreen, id: u32, path: std::path::PathBuf, hits: &State<Hits>) -> String {
    hits.hit();
    sq.track_event("file.read");
    format!("{id}/{}", path.display())
}

#[rocket::get("/disabled")]
fn disabled(sq: Sqreen, hits: &State<Hits>) -> Result<&'static str, Blocked> {
    hits.hit();
    sq.track_event("nobody.listens")
        .with_properties([("k", "v")]);
    sq.for_user([("username", "mallory")]).identify()?;
    Ok(if sq.is_enabled() {
        "enabled"
    } else {
        "disabled"
    })
}

/// A catch-all route of low priority: blocked requests must not reach it either.
#[rocket::get("/<_..>", rank = 100)]
fn fallback(hits: &State<Hits>) -> &'static str {
    hits.hit();
    "fallback"
}

fn quiet() -> rocket::Config {
    rocket::Config {
        log_level: LogLevel::Off,
        ..rocket::Config::debug_default()
    }
}

fn app(fairing: Option<SqreenFairing>, hits: &Hits) -> Rocket<Build> {
    let rocket = rocket::custom(quiet()).manage(hits.clone()).mount(
        "/",
        rocket::routes![
            hello, tracked, form, big_form, json_body, login, user_file, disabled
        ],
    );
    match fairing {
        Some(fairing) => rocket.attach(fairing),
        None => rocket,
    }
}

fn agent() -> (AgentGuard, CaptureBackend) {
    start_captured(test_config().build().unwrap())
}

/// An agent on a backend that blocks 203.0.113.0/24, redirects
/// 198.51.100.0/24 and blocks the user `mallory`.
fn agent_with_actions() -> (AgentGuard, CaptureBackend) {
    let backend = CaptureBackend::new();
    backend.set_actions(json!([
        {"action_id": "blk-ip", "action": "block_ip", "parameters": {"ip_cidr": ["203.0.113.0/24"]}},
        {"action_id": "red-ip", "action": "redirect_ip",
         "parameters": {"ip_cidr": ["198.51.100.0/24"], "url": "https://example.com/blocked"}},
        {"action_id": "blk-user", "action": "block_user",
         "parameters": {"users": [{"username": "mallory"}]}}
    ]));
    let guard = Agent::start(test_config().build().unwrap(), Arc::new(backend.clone()));
    assert!(guard.wait_ready(WAIT), "agent did not log in");
    (guard, backend)
}

async fn client(rocket: Rocket<Build>) -> Client {
    Client::untracked(rocket).await.unwrap()
}

async fn flushed_events(guard: &AgentGuard, backend: &CaptureBackend) -> Vec<Value> {
    assert!(guard.flush_async(WAIT).await, "flush failed");
    backend.events()
}

/// The names of an event's `track` entries.
fn track_names(event: &Value) -> Vec<String> {
    event["observed"]["sdk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["name"] == "track")
        .map(|e| e["args"][0].as_str().unwrap().to_owned())
        .collect()
}

/// The `Content-Length` a real client declares; rocket's local client sends none,
/// and the fairing captures only bodies of declared length.
fn length(body: &str) -> Header<'static> {
    Header::new("Content-Length", body.len().to_string())
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40_000)
}

/// A tracked event with properties reaches the backend with the request's
/// path, verb, user agent, client IP, query and response.
#[rocket::async_test]
async fn tracked_event_reaches_backend() {
    let (guard, backend) = agent();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let response = client
        .get("/tracked?page=2")
        .remote(peer("10.0.0.2"))
        .header(Header::new("User-Agent", "tests/1"))
        .header(Header::new("X-Forwarded-For", "81.2.69.160"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.into_string().await.unwrap(), "tracked");

    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(track_names(event), ["page.viewed"]);
    assert_eq!(event["client_ip"], "81.2.69.160");
    let request = &event["request"];
    assert_eq!(request["verb"], "GET");
    assert_eq!(request["path"], "/tracked");
    assert_eq!(request["user_agent"], "tests/1");
    assert_eq!(request["remote_ip"], "10.0.0.2");
    assert_eq!(request["parameters"]["query"]["page"], json!(["2"]));
    let options = &event["observed"]["sdk"][0]["args"][1];
    assert_eq!(options["properties"], json!({"a": 1, "b": 2, "c": 3}));
    assert_eq!(event["response"]["status"], 200);
    assert_eq!(event["response"]["content_length"], 7);
    assert_eq!(
        event["response"]["content_type"],
        "text/plain; charset=utf-8"
    );
}

/// An urlencoded form body is captured (and scrubbed) and the handler still
/// reads it intact.
#[rocket::async_test]
async fn form_body_captured_and_readable() {
    let (guard, backend) = agent();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let response = client
        .post("/form")
        .header(ContentType::Form)
        .header(length("username=bob&password=hunter2"))
        .body("username=bob&password=hunter2")
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.into_string().await.unwrap(), "bob:hunter2");

    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1);
    let form = &events[0]["request"]["parameters"]["form"];
    assert_eq!(form["username"], json!(["bob"]), "{:#}", events[0]);
    assert_eq!(form["password"], json!([MASK]));
}

/// A JSON body is captured and the handler still reads it intact.
#[rocket::async_test]
async fn json_body_captured_and_readable() {
    let (guard, backend) = agent();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let body = r#"{"item":"book","qty":2,"api_key":"k-123"}"#;
    let response = client
        .post("/json")
        .header(ContentType::JSON)
        .header(length(body))
        .body(body)
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.into_string().await.unwrap(), body);

    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1);
    let captured = &events[0]["request"]["parameters"]["json"];
    assert_eq!(
        captured,
        &json!({"item": "book", "qty": 2, "api_key": MASK}),
        "{:#}",
        events[0]
    );
}

/// A body larger than rocket's 512-byte peek buffer is not captured, and
/// the handler still reads all of it.
#[rocket::async_test]
async fn large_body_not_captured_but_readable() {
    let (guard, backend) = agent();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let body = json!({"blob": "x".repeat(2000)}).to_string();
    let response = client
        .post("/json")
        .header(ContentType::JSON)
        .header(length(&body))
        .body(&body)
        .dispatch()
        .await;
    assert_eq!(response.into_string().await.unwrap(), body);

    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1);
    assert!(
        events[0]["request"]["parameters"]["json"].is_null(),
        "{:#}",
        events[0]
    );
}

/// A 16 KiB form read with `sqreen_rocket::Form` is captured whole (the
/// fairing alone sees 512 bytes), scrubbed, and the handler gets every
/// field; one over `body_capture_limit` is served and not captured.
#[rocket::async_test]
async fn sixteen_kib_form_captured_through_the_form_guard() {
    let (guard, backend) = agent();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let name = "a".repeat(16_000);
    let body = format!("username={name}&password=hunter2");
    assert!(body.len() > 15 * 1024 && body.len() <= 16 * 1024);
    let response = client
        .post("/big-form")
        .header(ContentType::Form)
        .header(length(&body))
        .body(&body)
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.into_string().await.unwrap(), "16000:hunter2");
    let too_big = format!("username={}&password=hunter2", "b".repeat(17_000));
    let response = client
        .post("/big-form")
        .header(ContentType::Form)
        .header(length(&too_big))
        .body(&too_big)
        .dispatch()
        .await;
    assert_eq!(response.into_string().await.unwrap(), "17000:hunter2");

    assert!(guard.flush_async(WAIT).await);
    let events = backend.tracked_named("big_form.posted");
    assert_eq!(events.len(), 2);
    let captured = events
        .iter()
        .find(|e| e.request.as_ref().unwrap().form("username").is_some())
        .expect("the 16 KiB form was captured");
    let request = captured.request.as_ref().unwrap();
    assert_eq!(request.form("username"), Some(&json!([name])));
    assert_eq!(request.form("password"), Some(&json!([MASK])));
    let other = events.iter().find(|e| !std::ptr::eq(*e, captured)).unwrap();
    assert!(other.request.as_ref().unwrap().form("username").is_none());
    assert_eq!(hits.count(), 2);
}

/// A blocked IP gets 403 and the block page, on every kind of route, and no
/// application handler runs — not even one that never asks for `Sqreen`.
#[rocket::async_test]
async fn ip_block_answers_before_any_handler() {
    let (guard, backend) = agent_with_actions();
    let hits = Hits::default();
    let rocket = app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    )
    .mount("/", rocket::routes![fallback]);
    let client = client(rocket).await;
    let blocked = peer("203.0.113.5");

    for uri in ["/hello", "/tracked", "/users/7/files/a/b", "/anything/else"] {
        let response = client.get(uri).remote(blocked).dispatch().await;
        assert_eq!(response.status(), Status::Forbidden, "{uri}");
        assert_eq!(
            response.headers().get_one("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        assert!(
            response
                .into_string()
                .await
                .unwrap()
                .contains("Access denied")
        );
    }
    let response = client
        .post("/form")
        .remote(blocked)
        .header(ContentType::Form)
        .body("username=bob&password=x")
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Forbidden);
    let response = client.head("/hello").remote(blocked).dispatch().await;
    assert_eq!(response.status(), Status::Forbidden);
    assert_eq!(hits.count(), 0, "a handler ran for a blocked IP");

    // Other clients are served as usual.
    let response = client
        .get("/hello")
        .remote(peer("81.2.69.160"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(hits.count(), 1);

    let events = flushed_events(&guard, &backend).await;
    let blocks: Vec<&Value> = events
        .iter()
        .filter(|e| track_names(e) == ["sq.action.block_ip"])
        .collect();
    assert_eq!(blocks.len(), 6, "{events:#?}");
    assert_eq!(blocks[0]["client_ip"], "203.0.113.5");
    assert_eq!(blocks[0]["request"]["path"], "/hello");
    assert_eq!(blocks[0]["response"]["status"], 403);
}

/// A redirected IP gets 303 with the action's Location, and the handler does
/// not run.
#[rocket::async_test]
async fn ip_redirect_answers_303() {
    let (guard, _backend) = agent_with_actions();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let response = client
        .get("/tracked")
        .header(Header::new("X-Forwarded-For", "198.51.100.7"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::SeeOther);
    assert_eq!(
        response.headers().get_one("Location"),
        Some("https://example.com/blocked")
    );
    assert_eq!(hits.count(), 0);
}

/// A user blocked by a playbook gets 403 through `identify()?`, and the
/// record reports the enforcement with that status.
#[rocket::async_test]
async fn user_block_through_identify() {
    let (guard, backend) = agent_with_actions();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let response = client
        .post("/login")
        .header(ContentType::Form)
        .body("username=mallory&password=x")
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Forbidden);
    assert!(
        response
            .into_string()
            .await
            .unwrap()
            .contains("Access denied")
    );
    let response = client
        .post("/login")
        .header(ContentType::Form)
        .body("username=alice&password=x")
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);

    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(track_names(&events[0]), ["sq.action.block_user"]);
    assert_eq!(events[0]["response"]["status"], 403);
}

/// The fairing's custom renderer serves IP blocks and `Blocked` errors alike.
#[rocket::async_test]
async fn custom_blocked_response() {
    let (guard, _backend) = agent_with_actions();
    let hits = Hits::default();
    let fairing = SqreenFairing::with_agent(guard.agent().clone()).blocked_response(|resp| {
        let body = format!("custom {}", resp.status());
        Response::build()
            .status(Status::new(resp.status()))
            .sized_body(body.len(), std::io::Cursor::new(body))
            .finalize()
    });
    let client = client(app(Some(fairing), &hits)).await;
    let response = client
        .get("/hello")
        .remote(peer("203.0.113.9"))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Forbidden);
    assert_eq!(response.into_string().await.unwrap(), "custom 403");
    let response = client
        .post("/login")
        .header(ContentType::Form)
        .body("username=mallory&password=x")
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Forbidden);
    assert_eq!(response.into_string().await.unwrap(), "custom 403");
}

/// Route parameters of the matched route are captured, a trailing
/// `<path..>` with the rest of the path.
#[rocket::async_test]
async fn route_params_captured() {
    let (guard, backend) = agent();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let response = client.get("/users/42/files/docs/a.txt").dispatch().await;
    assert_eq!(response.into_string().await.unwrap(), "42/docs/a.txt");

    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1);
    let params = &events[0]["request"]["parameters"]["params"];
    assert_eq!(params["id"], json!(["42"]), "{:#}", events[0]);
    assert_eq!(params["path"], json!(["docs/a.txt"]));
}

/// Without the fairing, handlers get a disabled handle that works.
#[rocket::async_test]
async fn no_fairing_gives_disabled_handle() {
    let hits = Hits::default();
    let client = client(app(None, &hits)).await;
    let response = client.get("/disabled").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.into_string().await.unwrap(), "disabled");
}

/// An agent that is off passes every request through untouched, body included.
#[rocket::async_test]
async fn agent_off_passes_through() {
    let agent = Agent::off(Config::default());
    let hits = Hits::default();
    let client = client(app(Some(SqreenFairing::with_agent(agent)), &hits)).await;
    let response = client.get("/disabled").dispatch().await;
    assert_eq!(response.into_string().await.unwrap(), "disabled");
    let response = client
        .post("/json")
        .header(ContentType::JSON)
        .body(r#"{"a":1}"#)
        .dispatch()
        .await;
    assert_eq!(response.into_string().await.unwrap(), r#"{"a":1}"#);
    assert_eq!(hits.count(), 2);
}

/// A request that tracks nothing sends nothing.
#[rocket::async_test]
async fn untracked_request_sends_nothing() {
    let (guard, backend) = agent();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let response = client.get("/hello").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    assert!(flushed_events(&guard, &backend).await.is_empty());
}

/// Asking for the internal blocked route directly is a plain 404.
#[rocket::async_test]
async fn internal_route_is_not_reachable() {
    let (guard, _backend) = agent_with_actions();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let response = client.get(sqreen_rocket::BLOCKED_PATH).dispatch().await;
    assert_eq!(response.status(), Status::NotFound);
    let response = client.post(sqreen_rocket::BLOCKED_PATH).dispatch().await;
    assert_eq!(response.status(), Status::NotFound);
}

/// Rocket's shutdown flushes the agent: tracked events reach the backend
/// without an explicit flush.
#[rocket::async_test]
async fn shutdown_flushes() {
    let (guard, backend) = agent();
    let hits = Hits::default();
    let client = client(app(
        Some(SqreenFairing::with_agent(guard.agent().clone())),
        &hits,
    ))
    .await;
    let response = client.get("/tracked").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    drop(response);
    client.terminate().await;
    assert_eq!(backend.events().len(), 1);
}

/// The handle, the guard and the fairing can cross threads.
#[test]
fn types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<SqreenFairing>();
    assert_send_sync::<Sqreen>();
    assert_send_sync::<Blocked>();
}
