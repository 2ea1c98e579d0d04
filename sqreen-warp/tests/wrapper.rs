//! The wrapper, the `sqreen()` filter, the body filters and `Blocked`,
//! driven in-process with `warp::test` against the core's in-memory backend.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sqreen_core::test::{CaptureBackend, start_captured, test_config};
use sqreen_core::{Agent, AgentGuard, Config, SecurityResponse};
use sqreen_warp::{Blocked, Sqreen, SqreenWrapper, sqreen};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

const WAIT: Duration = Duration::from_secs(10);
const MASK: &str = "<Redacted by Sqreen>";

fn peer(ip: &str) -> SocketAddr {
    format!("{ip}:52114").parse().unwrap()
}

fn recording_agent() -> (AgentGuard, CaptureBackend) {
    start_captured(test_config().build().unwrap())
}

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
    assert!(guard.wait_ready(WAIT));
    (guard, backend)
}

fn events(agent: &Agent, backend: &CaptureBackend) -> Vec<Value> {
    assert!(agent.flush(WAIT));
    backend.events()
}

/// `then`-style login: `identify()?` straight into `Blocked`.
async fn login(sq: Sqreen, form: HashMap<String, String>) -> Result<Response, Blocked> {
    let user = sq.for_user([("username", form["username"].as_str())]);
    user.track_auth_success();
    user.identify()?;
    Ok("welcome".into_response())
}

/// `and_then`-style login: `Blocked` as a rejection.
async fn login_rejecting(
    sq: Sqreen,
    form: HashMap<String, String>,
) -> Result<&'static str, Rejection> {
    sq.for_user([("username", form["username"].as_str())])
        .identify()
        .map_err(Blocked::from)?;
    Ok("welcome")
}

/// The test app; `ran` counts handler runs.
fn routes(
    ran: Arc<AtomicUsize>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone + Send + Sync + 'static {
    let count = move || {
        ran.fetch_add(1, Ordering::SeqCst);
    };
    let index = warp::path::end().and(warp::get()).map({
        let count = count.clone();
        move || {
            count();
            "ok"
        }
    });
    let event = warp::path("event").and(sqreen()).map(|sq: Sqreen| {
        sq.track_event("my.event")
            .with_properties([("a", "x"), ("b", "y")])
            .with_properties([("n", 3)]);
        "tracked"
    });
    let form = warp::path("form")
        .and(sqreen())
        .and(sqreen_warp::body::form())
        .map(|sq: Sqreen, form: HashMap<String, String>| {
            sq.track_event("form.seen");
            form["username"].clone()
        });
    let json = warp::path("json")
        .and(sqreen_warp::body::json())
        .and(sqreen())
        .map(|body: Value, sq: Sqreen| {
            sq.track_event("json.seen");
            warp::reply::json(&body)
        });
    let login = warp::path("login")
        .and(sqreen())
        .and(sqreen_warp::body::form())
        .then(login);
    let login2 = warp::path("login2")
        .and(sqreen())
        .and(sqreen_warp::body::form())
        .and_then(login_rejecting);
    index.or(event).or(form).or(json).or(login).or(login2)
}

fn app(
    wrapper: &SqreenWrapper,
) -> (
    impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
    Arc<AtomicUsize>,
) {
    let ran = Arc::new(AtomicUsize::new(0));
    (wrapper.wrap(routes(Arc::clone(&ran))), ran)
}

/// A tracked event reaches the backend with its properties, path, verb,
/// user agent and client IP, and the response status, length and type.
#[tokio::test]
async fn tracked_event_reaches_the_backend() {
    let (agent, backend) = recording_agent();
    let (app, _) = app(&SqreenWrapper::with_agent(agent.agent().clone()));
    let res = warp::test::request()
        .method("POST")
        .path("/event?q=shoes")
        .header("user-agent", "test/1")
        .header("x-forwarded-for", "81.2.69.160")
        .remote_addr(peer("10.0.0.2"))
        .reply(&app)
        .await;
    assert_eq!(res.status(), 200);
    let events = events(&agent, &backend);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["client_ip"], "81.2.69.160");
    assert_eq!(e["request"]["verb"], "POST");
    assert_eq!(e["request"]["path"], "/event");
    assert_eq!(e["request"]["user_agent"], "test/1");
    assert_eq!(e["request"]["remote_ip"], "10.0.0.2");
    assert_eq!(e["request"]["parameters"]["query"]["q"], json!(["shoes"]));
    let track = &e["observed"]["sdk"][0];
    assert_eq!(track["args"][0], "my.event");
    assert_eq!(
        track["args"][1]["properties"],
        json!({"a": "x", "b": "y", "n": 3})
    );
    assert_eq!(e["response"]["status"], 200);
    assert_eq!(e["response"]["content_length"], 7);
    assert_eq!(e["response"]["content_type"], "text/plain; charset=utf-8");
    assert_eq!(agent.stats().records_queued, 1);
}

/// A form body is captured (and scrubbed) and the handler still reads it.
#[tokio::test]
async fn form_body_is_captured_and_still_readable() {
    let (agent, backend) = recording_agent();
    let (app, _) = app(&SqreenWrapper::with_agent(agent.agent().clone()).capture_bodies(true));
    let res = warp::test::request()
        .method("POST")
        .path("/form")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=bob&password=hunter2")
        .reply(&app)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "bob");
    let events = events(&agent, &backend);
    let form = &events[0]["request"]["parameters"]["form"];
    assert_eq!(form["username"], json!(["bob"]));
    assert_eq!(form["password"], json!([MASK]));
}

/// A JSON body is captured and the handler still reads it, whichever side
/// of `sqreen()` the body filter sits.
#[tokio::test]
async fn json_body_is_captured_and_still_readable() {
    let (agent, backend) = recording_agent();
    let (app, _) = app(&SqreenWrapper::with_agent(agent.agent().clone()).capture_bodies(true));
    let body = json!({"item": "book", "card": "4111 1111 1111 1111"});
    let res = warp::test::request()
        .method("POST")
        .path("/json")
        .json(&body)
        .reply(&app)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(serde_json::from_slice::<Value>(res.body()).unwrap(), body);
    let events = events(&agent, &backend);
    let captured = &events[0]["request"]["parameters"]["json"];
    assert_eq!(captured["item"], "book");
    assert_eq!(captured["card"], MASK);
}

/// A buffered body that does not decode is a 400, like warp's own filter.
#[tokio::test]
async fn undecodable_captured_body_is_a_400() {
    let (agent, _backend) = recording_agent();
    let (app, _) = app(&SqreenWrapper::with_agent(agent.agent().clone()).capture_bodies(true));
    let res = warp::test::request()
        .method("POST")
        .path("/json")
        .header("content-type", "application/json")
        .body("{not json")
        .reply(&app)
        .await;
    assert_eq!(res.status(), 400);
}

/// Without capture, bodies are left to warp and never sent.
#[tokio::test]
async fn bodies_are_not_captured_by_default() {
    let (agent, backend) = recording_agent();
    let (app, _) = app(&SqreenWrapper::with_agent(agent.agent().clone()));
    let res = warp::test::request()
        .method("POST")
        .path("/json")
        .json(&json!({"item": "book"}))
        .reply(&app)
        .await;
    assert_eq!(res.status(), 200);
    let events = events(&agent, &backend);
    assert_eq!(events[0]["request"]["parameters"].get("json"), None);
}

/// A blocked IP gets the block page (403) and the handler never runs; the
/// enforcement is recorded.
#[tokio::test]
async fn blocked_ip_gets_403_before_the_handler() {
    let (agent, backend) = agent_with_actions();
    let (app, ran) = app(&SqreenWrapper::with_agent(agent.agent().clone()));
    let res = warp::test::request()
        .path("/")
        .remote_addr(peer("203.0.113.9"))
        .reply(&app)
        .await;
    assert_eq!(res.status(), 403);
    assert!(
        std::str::from_utf8(res.body())
            .unwrap()
            .contains("Access denied")
    );
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let events = events(&agent, &backend);
    assert_eq!(
        events[0]["observed"]["sdk"][0]["args"][0],
        "sq.action.block_ip"
    );
}

/// With body capture on, a blocked IP is still answered before the handler
/// (and before its body is read), capturable body or not.
#[tokio::test]
async fn blocked_ip_with_body_capture_gets_403() {
    let (agent, _backend) = agent_with_actions();
    let (app, ran) = app(&SqreenWrapper::with_agent(agent.agent().clone()).capture_bodies(true));
    let res = warp::test::request()
        .method("POST")
        .path("/json")
        .json(&json!({"k": "v"}))
        .remote_addr(peer("203.0.113.9"))
        .reply(&app)
        .await;
    assert_eq!(res.status(), 403);
    let res = warp::test::request()
        .path("/")
        .remote_addr(peer("203.0.113.9"))
        .reply(&app)
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

/// A redirected IP gets a 303 with `Location`, before the handler.
#[tokio::test]
async fn redirected_ip_gets_303_with_location() {
    let (agent, _backend) = agent_with_actions();
    let (app, ran) = app(&SqreenWrapper::with_agent(agent.agent().clone()));
    let res = warp::test::request()
        .path("/")
        .header("x-forwarded-for", "198.51.100.7")
        .reply(&app)
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "https://example.com/blocked");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

/// `identify()?` for a blocked user answers 403, both as a `then` reply and
/// as an `and_then` rejection.
#[tokio::test]
async fn blocked_user_through_identify_gets_403() {
    let (agent, backend) = agent_with_actions();
    let (app, _) = app(&SqreenWrapper::with_agent(agent.agent().clone()));
    for path in ["/login", "/login2"] {
        let res = warp::test::request()
            .method("POST")
            .path(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=mallory&password=x")
            .reply(&app)
            .await;
        assert_eq!(res.status(), 403, "{path}");
        assert!(
            std::str::from_utf8(res.body())
                .unwrap()
                .contains("Access denied")
        );
        let res = warp::test::request()
            .method("POST")
            .path(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=alice&password=x")
            .reply(&app)
            .await;
        assert_eq!(res.status(), 200, "{path}");
    }
    let events = events(&agent, &backend);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["response"]["status"], 403);
}

/// `blocked_response` renders IP actions and handlers' `Blocked` alike.
#[tokio::test]
async fn custom_blocked_response_is_used_everywhere() {
    let (agent, _backend) = agent_with_actions();
    let wrapper = SqreenWrapper::with_agent(agent.agent().clone()).blocked_response(
        |response: &SecurityResponse| {
            warp::reply::with_status(
                format!("custom {}", response.status()),
                warp::http::StatusCode::from_u16(response.status()).unwrap(),
            )
            .into_response()
        },
    );
    let (app, _) = app(&wrapper);
    let res = warp::test::request()
        .path("/")
        .remote_addr(peer("203.0.113.9"))
        .reply(&app)
        .await;
    assert_eq!(
        (res.status().as_u16(), res.body().as_ref()),
        (403, &b"custom 403"[..])
    );
    for path in ["/login", "/login2"] {
        let res = warp::test::request()
            .method("POST")
            .path(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=mallory&password=x")
            .reply(&app)
            .await;
        assert_eq!(
            (res.status().as_u16(), res.body().as_ref()),
            (403, &b"custom 403"[..])
        );
    }
}

/// `recover_blocked` turns a `Blocked` rejection into its response without the wrapper.
#[tokio::test]
async fn recover_blocked_without_the_wrapper() {
    let (agent, _backend) = agent_with_actions();
    let request = || sqreen_core::RequestInfo::new("POST", "/", &[("Host", "h")]);
    let mut record = match agent.open(request, None) {
        sqreen_core::Open::Request(slot) => slot,
        other => panic!("expected a record, got {other:?}"),
    };
    let blocked = record
        .handle_with(request)
        .for_user([("username", "mallory")])
        .identify()
        .unwrap_err();
    let route = warp::any()
        .and_then(move || {
            let blocked = blocked.clone();
            async move { Err::<&str, _>(warp::reject::custom(Blocked::from(blocked))) }
        })
        .recover(sqreen_warp::recover_blocked);
    let res = warp::test::request().reply(&route).await;
    assert_eq!(res.status(), 403);
}

/// Without the wrapper, `sqreen()` yields a disabled handle and routes work.
#[tokio::test]
async fn without_the_wrapper_the_handle_is_disabled() {
    let (agent, backend) = recording_agent();
    let route = sqreen().map(|sq: Sqreen| {
        assert!(!sq.is_enabled());
        sq.track_event("nobody.listens");
        sq.for_user([("uid", "1")]).identify().unwrap();
        "ok"
    });
    let res = warp::test::request().reply(&route).await;
    assert_eq!(res.status(), 200);
    assert!(events(&agent, &backend).is_empty());
}

/// An agent that is off passes everything through untouched, bodies included.
#[tokio::test]
async fn agent_off_passes_through() {
    let agent = Agent::off(Config::default());
    let (app, ran) = app(&SqreenWrapper::with_agent(agent).capture_bodies(true));
    let res = warp::test::request().path("/").reply(&app).await;
    assert_eq!(
        (res.status().as_u16(), res.body().as_ref()),
        (200, &b"ok"[..])
    );
    let res = warp::test::request()
        .method("POST")
        .path("/json")
        .json(&json!({"k": "v"}))
        .reply(&app)
        .await;
    assert_eq!(res.status(), 200);
    let res = warp::test::request()
        .method("POST")
        .path("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=mallory&password=x")
        .reply(&app)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

/// A request that tracks nothing sends nothing; a rejection passes on unchanged.
#[tokio::test]
async fn untracked_requests_send_nothing() {
    let (agent, backend) = recording_agent();
    let (app, _) = app(&SqreenWrapper::with_agent(agent.agent().clone()));
    let res = warp::test::request().path("/").reply(&app).await;
    assert_eq!(res.status(), 200);
    let res = warp::test::request().path("/nowhere").reply(&app).await;
    assert_eq!(res.status(), 404);
    assert!(events(&agent, &backend).is_empty());
    assert_eq!(agent.stats().records_queued, 0);
}

/// Requests running concurrently on spawned tasks never mix their records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_keep_their_own_records() {
    let (agent, backend) = recording_agent();
    let wrapper = SqreenWrapper::with_agent(agent.agent().clone()).capture_bodies(true);
    let route =
        sqreen_warp::body::json()
            .and(sqreen())
            .then(|body: Value, sq: Sqreen| async move {
                // Yield so requests interleave between reading the handle and tracking.
                tokio::task::yield_now().await;
                sq.track_event("concurrent")
                    .with_properties([("i", body["i"].clone())]);
                "ok"
            });
    let app = wrapper.wrap(route);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                warp::test::request()
                    .method("POST")
                    .path(&format!("/?i={i}"))
                    .json(&json!({"i": i}))
                    .reply(&app)
                    .await
                    .status()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let events = events(&agent, &backend);
    assert_eq!(events.len(), 64);
    for e in &events {
        let i = &e["observed"]["sdk"][0]["args"][1]["properties"]["i"];
        assert_eq!(
            e["request"]["parameters"]["query"]["i"],
            json!([i.to_string()])
        );
        assert_eq!(e["request"]["parameters"]["json"]["i"], *i);
    }
}
