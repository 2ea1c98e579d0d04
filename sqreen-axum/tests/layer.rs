//! The axum adapter end to end, in-process: axum routers driven with
//! `tower::ServiceExt::oneshot`, an agent logged in to the core's in-memory
//! backend, assertions on exactly what that backend received.

// Tests fail loudly on a broken setup.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqreen_axum::{Blocked, Sqreen, SqreenLayer};
use sqreen_core::actions::BLOCK_PAGE;
use sqreen_core::test::{CaptureBackend, start_captured, test_config};
use sqreen_core::{Agent, AgentGuard, Config};
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(10);
/// A public client address, so the resolver reports it as the client IP.
const CLIENT: &str = "81.2.69.160:52114";

fn config() -> Config {
    test_config().build().unwrap()
}

/// A logged-in agent on a backend serving `actions` from the start.
fn agent_with_actions(config: Config, actions: Value) -> (AgentGuard, CaptureBackend) {
    let backend = CaptureBackend::new();
    backend.set_actions(actions);
    let guard = Agent::start(config, Arc::new(backend.clone()));
    assert!(guard.wait_ready(WAIT), "agent did not log in");
    (guard, backend)
}

/// The router under test, instrumented with `agent`, seen from [`CLIENT`].
fn app(routes: Router, agent: &Agent) -> Router {
    routes
        .layer(SqreenLayer::with_agent(agent.clone()))
        .layer(MockConnectInfo(CLIENT.parse::<SocketAddr>().unwrap()))
}

async fn send(app: Router, req: Request<Body>) -> (StatusCode, Response) {
    let response = app.oneshot(req).await.unwrap();
    (response.status(), response)
}

async fn body_text(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn flushed_events(agent: &Agent, backend: &CaptureBackend) -> Vec<Value> {
    assert!(agent.flush_async(WAIT).await, "flush failed");
    backend.events()
}

/// The names of the `track` entries of an event.
fn tracked(event: &Value) -> Vec<String> {
    event["observed"]["sdk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["name"] == "track")
        .map(|e| e["args"][0].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A tracked event reaches the backend with its properties, the request's
/// path, verb, user agent, client IP and the response.
#[tokio::test]
async fn tracked_event_reaches_backend_with_request() {
    let (guard, backend) = start_captured(config());
    let routes = Router::new().route(
        "/items/{id}",
        get(|sq: Sqreen| async move {
            sq.track_event("item.viewed").with_properties([
                ("plan", "pro"),
                ("seats", "5"),
                ("region", "eu"),
            ]);
            "ok"
        }),
    );
    let req = Request::get("/items/42?page=2")
        .header(header::USER_AGENT, "curl/8.5")
        .header(header::HOST, "shop.example.com")
        .body(Body::empty())
        .unwrap();
    let (status, _) = send(app(routes, &guard), req).await;
    assert_eq!(status, StatusCode::OK);

    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["client_ip"], "81.2.69.160");
    let request = &event["request"];
    assert_eq!(request["verb"], "GET");
    assert_eq!(request["path"], "/items/42");
    assert_eq!(request["user_agent"], "curl/8.5");
    assert_eq!(request["host"], "shop.example.com");
    assert_eq!(request["remote_ip"], "81.2.69.160");
    assert_eq!(request["parameters"]["query"]["page"], json!(["2"]));
    assert_eq!(request["parameters"]["params"]["id"], json!(["42"]));
    assert_eq!(event["response"]["status"], 200);
    assert_eq!(event["response"]["content_length"], 2);
    let track = &event["observed"]["sdk"][0];
    assert_eq!(track["args"][0], "item.viewed");
    assert_eq!(
        track["args"][1]["properties"],
        json!({"plan": "pro", "seats": "5", "region": "eu"})
    );
}

/// An urlencoded form body is captured as `parameters.form`, and the
/// handler still reads the same bytes.
#[tokio::test]
async fn form_body_captured_and_readable() {
    let (guard, backend) = start_captured(config());
    let routes = Router::new().route(
        "/signup",
        post(
            |sq: Sqreen, Form(form): Form<std::collections::HashMap<String, String>>| async move {
                sq.track_event("user.signup");
                format!("{}:{}", form["username"], form["plan"])
            },
        ),
    );
    let req = Request::post("/signup")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, "25")
        .body(Body::from("username=alice&plan=gold+"))
        .unwrap();
    let (status, response) = send(app(routes, &guard), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body_text(response).await, "alice:gold ");

    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1);
    let form = &events[0]["request"]["parameters"]["form"];
    assert_eq!(form["username"], json!(["alice"]), "{form:#?}");
    assert_eq!(form["plan"], json!(["gold "]));
}

/// A JSON body is captured as `parameters.json` (scrubbed), and the handler
/// still parses the same document.
#[tokio::test]
async fn json_body_captured_and_readable() {
    let (guard, backend) = start_captured(config());
    let routes = Router::new().route(
        "/pay",
        post(|sq: Sqreen, Json(body): Json<Value>| async move {
            sq.track_event("payment.started");
            Json(body)
        }),
    );
    let document = json!({"amount": 42, "password": "hunter2", "items": ["a", "b"]});
    let text = document.to_string();
    let req = Request::post("/pay")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, text.len())
        .body(Body::from(text))
        .unwrap();
    let (status, response) = send(app(routes, &guard), req).await;
    assert_eq!(status, StatusCode::OK);
    let echoed: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(echoed, document);

    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1);
    let captured = &events[0]["request"]["parameters"]["json"];
    assert_eq!(captured["amount"], 42, "{captured:#?}");
    assert_eq!(captured["items"], json!(["a", "b"]));
    assert_eq!(captured["password"], sqreen_core::scrub::REDACTED);
}

/// A body sent without a declared length (chunked) is never buffered, and
/// reaches the handler intact.
#[tokio::test]
async fn body_without_length_is_not_captured() {
    let (guard, backend) = start_captured(config());
    let routes = Router::new().route(
        "/pay",
        post(|sq: Sqreen, body: String| async move {
            sq.track_event("payment.started");
            body
        }),
    );
    let req = Request::post("/pay")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"amount":1}"#))
        .unwrap();
    let (_, response) = send(app(routes, &guard), req).await;
    assert_eq!(body_text(response).await, r#"{"amount":1}"#);
    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1);
    assert!(events[0]["request"]["parameters"]["json"].is_null());
}

/// A body longer than its declared length is answered 400 and the handler
/// does not run.
#[tokio::test]
async fn body_longer_than_declared_is_rejected() {
    let (guard, _backend) = start_captured(config());
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let routes = Router::new().route(
        "/pay",
        post(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    );
    // axum's in-process `Body::from` does not enforce Content-Length;
    // `Limited` must not let a longer body through unnoticed.
    let req = Request::post("/pay")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "3")
        .body(Body::from(r#"{"amount":1}"#))
        .unwrap();
    let (status, _) = send(app(routes, &guard), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

/// An IP under a block action gets 403 and the block page; the handler
/// never runs; the enforcement is recorded.
#[tokio::test]
async fn ip_block_answers_403_without_running_handler() {
    let (guard, backend) = agent_with_actions(
        config(),
        json!([{"action_id": "blk", "action": "block_ip",
                "parameters": {"ip_cidr": ["81.2.69.0/24"]}}]),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let routes = Router::new().route(
        "/",
        get(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "ok"
        }),
    );
    let (status, response) = send(
        app(routes, &guard),
        Request::get("/").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert_eq!(body_text(response).await, BLOCK_PAGE);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let events = flushed_events(&guard, &backend).await;
    assert_eq!(tracked(&events[0]), ["sq.action.block_ip"]);
}

/// An IP under a redirect action gets 303 with `Location`.
#[tokio::test]
async fn ip_redirect_answers_303_with_location() {
    let (guard, _backend) = agent_with_actions(
        config(),
        json!([{"action_id": "red", "action": "redirect_ip",
                "parameters": {"ip_cidr": ["81.2.69.0/24"], "url": "https://example.com/blocked"}}]),
    );
    let routes = Router::new().route("/", get(|| async { "ok" }));
    let (status, response) = send(
        app(routes, &guard),
        Request::get("/").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "https://example.com/blocked"
    );

    // The same once a body to capture was read.
    let routes = Router::new().route("/", post(|| async { "ok" }));
    let req = Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "2")
        .body(Body::from("{}"))
        .unwrap();
    let (status, response) = send(app(routes, &guard), req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "https://example.com/blocked"
    );
}

async fn login(sq: Sqreen) -> Result<&'static str, Blocked> {
    let user = sq.for_user([("username", "mallory")]);
    user.track_auth_success();
    user.identify()?;
    Ok("welcome")
}

/// A user under a block action gets 403 and the block page through
/// `identify()?`, and the enforcement is recorded.
#[tokio::test]
async fn user_block_through_identify() {
    let (guard, backend) = agent_with_actions(
        config(),
        json!([{"action_id": "u1", "action": "block_user",
                "parameters": {"users": [{"username": "mallory"}]}}]),
    );
    let routes = Router::new().route("/login", post(login));
    let (status, response) = send(
        app(routes, &guard),
        Request::post("/login").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body_text(response).await, BLOCK_PAGE);
    let events = flushed_events(&guard, &backend).await;
    assert_eq!(tracked(&events[0]), ["sq.action.block_user"]);
    assert_eq!(events[0]["response"]["status"], 403);
}

/// A custom renderer answers both IP blocks and a handler's `Blocked`.
#[tokio::test]
async fn custom_renderer_for_ip_and_user_blocks() {
    let (guard, _backend) = agent_with_actions(
        config(),
        json!([{"action_id": "u1", "action": "block_user",
                "parameters": {"users": [{"username": "mallory"}]}},
               {"action_id": "blk", "action": "block_ip",
                "parameters": {"ip_cidr": ["203.0.113.0/24"]}}]),
    );
    let layer = SqreenLayer::with_agent(guard.agent().clone()).blocked_response(|response| {
        (
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            format!("custom {}", response.status()),
        )
            .into_response()
    });
    let routes = Router::new().route("/login", post(login)).layer(layer);

    let from = |ip: &str| MockConnectInfo(format!("{ip}:1000").parse::<SocketAddr>().unwrap());
    let user_blocked = routes.clone().layer(from("81.2.69.160"));
    let (status, response) = send(
        user_blocked,
        Request::post("/login").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert_eq!(body_text(response).await, "custom 403");

    let ip_blocked = routes.layer(from("203.0.113.9"));
    let (status, response) = send(
        ip_blocked,
        Request::post("/login").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert_eq!(body_text(response).await, "custom 403");
}

/// Without the layer, the extractor yields a disabled handle that works.
#[tokio::test]
async fn no_layer_gives_disabled_handle() {
    let routes: Router = Router::new().route(
        "/",
        get(|sq: Sqreen| async move {
            sq.track_event("x").with_properties([("k", 1)]);
            let user = sq.for_user([("uid", "1")]);
            user.track_auth_success();
            user.identify()
                .map(|()| format!("enabled={}", sq.is_enabled()))
                .map_err(Blocked::from)
        }),
    );
    let (status, response) = send(routes, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body_text(response).await, "enabled=false");
}

/// With the agent off, requests pass through untouched: handlers get a
/// disabled handle, bodies are not captured, nothing is sent.
#[tokio::test]
async fn agent_off_passes_through() {
    let backend = CaptureBackend::new();
    let guard = Agent::start(
        test_config().disable(true).build().unwrap(),
        Arc::new(backend.clone()),
    );
    let routes = Router::new().route(
        "/pay",
        post(|sq: Sqreen, body: String| async move {
            sq.track_event("payment.started");
            format!("{}:{body}", sq.is_enabled())
        }),
    );
    let req = Request::post("/pay")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "2")
        .body(Body::from("{}"))
        .unwrap();
    let (status, response) = send(app(routes, &guard), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body_text(response).await, "false:{}");
    assert!(guard.flush_async(WAIT).await);
    assert!(backend.events().is_empty());
    assert!(backend.logins().is_empty());
}

/// A layer built without a global agent passes everything through.
#[tokio::test]
async fn layer_without_agent_passes_through() {
    let routes: Router = Router::new()
        .route(
            "/",
            get(|sq: Sqreen| async move { format!("{}", sq.is_enabled()) }),
        )
        .layer(SqreenLayer::new());
    let (status, response) = send(routes, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body_text(response).await, "false");
}

/// A request that tracks nothing sends nothing.
#[tokio::test]
async fn untracked_request_sends_nothing() {
    let (guard, backend) = start_captured(config());
    let routes = Router::new().route("/", get(|_sq: Sqreen| async { "ok" }));
    for _ in 0..3 {
        let (status, _) = send(
            app(routes.clone(), &guard),
            Request::get("/").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(flushed_events(&guard, &backend).await.is_empty());
}

/// Behind a nested router, the full path the client asked for is reported.
#[tokio::test]
async fn nested_router_reports_full_path() {
    let (guard, backend) = start_captured(config());
    let api = Router::new().route(
        "/items",
        get(|sq: Sqreen| async move {
            sq.track_event("items.listed");
        }),
    );
    let routes = Router::new().nest("/api", api);
    send(
        app(routes, &guard),
        Request::get("/api/items").body(Body::empty()).unwrap(),
    )
    .await;
    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events[0]["request"]["path"], "/api/items");
}

/// The layer wraps plain tower services too (hyper / tonic style), with
/// `Full<Bytes>` bodies captured and handed back.
#[tokio::test]
async fn plain_tower_service() {
    use bytes::Bytes;
    use http_body_util::Full;
    use tower::Layer;

    let (guard, backend) = start_captured(config());
    let service = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let sq = sqreen_axum::from_request(&req);
        sq.track_event("raw.request");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(body)))
    });
    let service = SqreenLayer::with_agent(guard.agent().clone()).layer(service);
    let req = Request::post("/raw")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, "3")
        .body(Full::new(Bytes::from_static(b"a=1")))
        .unwrap();
    let response = service.oneshot(req).await.unwrap();
    assert_eq!(body_text(response).await, "a=1");
    let events = flushed_events(&guard, &backend).await;
    assert_eq!(
        events[0]["request"]["parameters"]["form"]["a"],
        json!(["1"])
    );
    // No `ConnectInfo`: no peer address.
    let remote_ip = &events[0]["request"]["remote_ip"];
    assert!(remote_ip.is_null() || remote_ip == "", "{remote_ip}");
}

/// Around the whole router (before routing) the layer records requests
/// too, with the peer from `ConnectInfo`, and the route parameters the
/// extractor sees after routing.
#[tokio::test]
async fn layer_around_router() {
    use axum::extract::ConnectInfo;
    use tower::Layer;

    let (guard, backend) = start_captured(config());
    let router: Router = Router::new().route(
        "/items/{id}",
        get(|sq: Sqreen| async move {
            sq.track_event("item.viewed");
            "ok"
        }),
    );
    let app = SqreenLayer::with_agent(guard.agent().clone()).layer(router);
    let mut req = Request::get("/items/7").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(CLIENT.parse::<SocketAddr>().unwrap()));
    let response = app.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["request"]["path"], "/items/7");
    assert_eq!(events[0]["client_ip"], "81.2.69.160");
    assert_eq!(
        events[0]["request"]["parameters"]["params"]["id"],
        json!(["7"])
    );
}

/// The layer copies the request only when a handler asks for the handle:
/// an event tracked through `current()` alone, in a request neither the
/// extractor nor `from_request` ran for, is still sent, without the
/// request's details, and counted.
#[tokio::test]
async fn current_without_the_extractor_sends_the_event_without_the_request() {
    let (guard, backend) = start_captured(config());
    let routes = Router::new()
        .route(
            "/bare",
            get(|| async {
                sqreen_axum::current().track_event("bare.tracked");
                "ok"
            }),
        )
        .route(
            "/taken",
            get(|_sq: Sqreen| async {
                sqreen_axum::current().track_event("taken.tracked");
                "ok"
            }),
        );
    let app = app(routes, guard.agent());
    for path in ["/bare", "/taken"] {
        let req = Request::get(path)
            .header(header::USER_AGENT, "agent/1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(app.clone(), req).await.0, StatusCode::OK);
    }
    let events = flushed_events(guard.agent(), &backend).await;
    assert_eq!(events.len(), 2);
    let bare = events
        .iter()
        .find(|e| tracked(e) == ["bare.tracked"])
        .unwrap();
    assert_eq!(bare["request"], Value::Null);
    assert_eq!(bare["client_ip"], "");
    let taken = events
        .iter()
        .find(|e| tracked(e) == ["taken.tracked"])
        .unwrap();
    assert_eq!(taken["request"]["path"], "/taken");
    assert_eq!(taken["request"]["user_agent"], "agent/1");
    assert_eq!(taken["client_ip"], CLIENT.split(':').next().unwrap());
    assert_eq!(guard.agent().stats().invalid_sdk_input, 1);
}

/// Milliseconds since midnight of a protocol timestamp
/// (`2026-11-24T19:00:00.123Z`).
fn millis_of_day(time: &Value) -> i64 {
    let text = time.as_str().expect("a timestamp");
    let clock = &text[text.find('T').expect("RFC 3339") + 1..text.len() - 1];
    let (hms, millis) = clock.split_once('.').expect("milliseconds");
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().unwrap());
    let (h, m, sec) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    ((h * 60 + m) * 60 + sec) * 1000 + millis.parse::<i64>().unwrap()
}

/// With nothing loaded that must see requests, the layer opens a request's
/// record only when a handler first asks for the handle; the record is
/// still dated from when the request reached the layer, and carries the
/// request once the extractor ran.
#[tokio::test]
async fn a_record_opened_late_is_dated_from_the_request() {
    let (guard, backend) = start_captured(config());
    let routes = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            sqreen_axum::current().track_event("slow.current");
            "ok"
        }),
    );
    let app = app(routes, guard.agent());
    let req = Request::get("/slow").body(Body::empty()).unwrap();
    assert_eq!(send(app.clone(), req).await.0, StatusCode::OK);
    let events = flushed_events(guard.agent(), &backend).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(tracked(event), ["slow.current"]);
    let mut waited =
        millis_of_day(&event["observed"]["sdk"][0]["time"]) - millis_of_day(&event["start"]);
    if waited < 0 {
        waited += 86_400_000; // the request crossed midnight
    }
    assert!(
        waited >= 60,
        "the record is dated from the request's arrival, {waited} ms before the event"
    );
}

/// Concurrent requests never mix their records: each event carries the
/// path of the request that tracked it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_keep_their_records() {
    let (guard, backend) = start_captured(config());
    let routes = Router::new().route(
        "/items/{id}",
        get(
            |sq: Sqreen, axum::extract::Path(id): axum::extract::Path<String>| async move {
                tokio::task::yield_now().await;
                sq.track_event("item.viewed").with_properties([("id", id)]);
                "ok"
            },
        ),
    );
    let app = app(routes, &guard);
    let requests = (0..64).map(|i| {
        let app = app.clone();
        tokio::spawn(async move {
            let req = Request::get(format!("/items/{i}"))
                .body(Body::empty())
                .unwrap();
            send(app, req).await.0
        })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    let events = flushed_events(&guard, &backend).await;
    assert_eq!(events.len(), 64);
    for event in &events {
        let id = event["observed"]["sdk"][0]["args"][1]["properties"]["id"]
            .as_str()
            .unwrap();
        assert_eq!(event["request"]["path"], format!("/items/{id}"));
        assert_eq!(event["request"]["parameters"]["params"]["id"], json!([id]));
    }
}

/// The handle a plain service reads with `current()` is its own request's
/// on every poll, while other requests' polls interleave on the same
/// thread; outside a request, and in a task spawned without the handle,
/// `current()` is disabled. `from_request` copied each request once.
#[tokio::test(flavor = "current_thread")]
async fn current_handle_follows_each_request_across_awaits() {
    use bytes::Bytes;
    use http_body_util::Full;
    use tower::Layer;

    let (guard, backend) = start_captured(config());
    assert!(!sqreen_axum::current().is_enabled());
    let service = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let name = req.uri().path().trim_start_matches('/').to_owned();
        assert!(sqreen_axum::from_request(&req).is_enabled());
        for step in 0..3 {
            // Let the other requests run between two reads.
            tokio::task::yield_now().await;
            sqreen_axum::current().track_event(format!("{name}.{step}"));
        }
        let spawned = tokio::spawn(async { sqreen_axum::current().is_enabled() });
        assert!(
            !spawned.await.unwrap(),
            "a spawned task has no current handle"
        );
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
    });
    let service = SqreenLayer::with_agent(guard.agent().clone()).layer(service);
    let request = |name: &'static str| {
        let service = service.clone();
        async move {
            let req = Request::get(format!("/{name}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            service.oneshot(req).await.unwrap()
        }
    };
    let responses = tokio::join!(request("a"), request("b"), request("c"), request("d"));
    for response in [responses.0, responses.1, responses.2, responses.3] {
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(!sqreen_axum::current().is_enabled());
    let events = flushed_events(guard.agent(), &backend).await;
    assert_eq!(events.len(), 4);
    for event in &events {
        let name = event["request"]["path"]
            .as_str()
            .unwrap()
            .trim_start_matches('/');
        let expected: Vec<String> = (0..3).map(|step| format!("{name}.{step}")).collect();
        assert_eq!(tracked(event), expected, "{event}");
    }
}

/// A handle another layer put in the request extensions still reaches the
/// `Sqreen` extractor when this layer did not make one current.
#[tokio::test]
async fn extractor_reads_a_handle_from_the_extensions() {
    let (guard, backend) = start_captured(config());
    let agent = guard.agent().clone();
    let router: Router = Router::new().route(
        "/x",
        get(|sq: Sqreen| async move {
            sq.track_event("from.extensions");
            "ok"
        }),
    );
    // The record is opened by hand, as another middleware could.
    let service = tower::service_fn(move |mut req: Request<Body>| {
        let router = router.clone();
        let agent = agent.clone();
        async move {
            let headers = [("Host", "example.com")];
            let info = sqreen_core::RequestInfo::new("GET", "/x", &headers);
            let sqreen_core::Open::Request(mut record) = agent.open(|| info, None) else {
                panic!("the agent records");
            };
            req.extensions_mut().insert(record.handle_with(|| info));
            let response = router.oneshot(req).await;
            record.close(sqreen_core::ResponseInfo::new(200));
            response
        }
    });
    let response = service
        .oneshot(Request::get("/x").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = flushed_events(guard.agent(), &backend).await;
    assert_eq!(tracked(&events[0]), vec!["from.extensions".to_owned()]);
}

/// A middleware between the layer and the handler that runs the rest of
/// the request in a spawned task loses the current handle; with
/// `handle_in_extensions` the handle travels with the request and the
/// extractor finds it.
#[tokio::test]
async fn handle_in_extensions_survives_a_spawned_task() {
    use axum::middleware::{Next, from_fn};

    async fn spawn_rest(req: Request<Body>, next: Next) -> Response {
        tokio::spawn(next.run(req)).await.unwrap()
    }
    let handler = get(|sq: Sqreen| async move {
        sq.track_event("spawned.handler");
        if sq.is_enabled() {
            "enabled"
        } else {
            "disabled"
        }
    });
    for (in_extensions, expected) in [(false, "disabled"), (true, "enabled")] {
        let (guard, backend) = start_captured(config());
        let app = Router::new()
            .route("/", handler.clone())
            .layer(from_fn(spawn_rest))
            .layer(
                SqreenLayer::with_agent(guard.agent().clone()).handle_in_extensions(in_extensions),
            );
        let (status, response) = send(app, Request::get("/").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body_text(response).await, expected);
        let events = flushed_events(guard.agent(), &backend).await;
        assert_eq!(events.len(), usize::from(in_extensions), "{events:?}");
    }
}

/// A passlisted request served in-process inside a recorded one (a
/// sub-request) sees a disabled handle, not the outer request's.
#[tokio::test]
async fn passlisted_sub_request_gets_a_disabled_handle() {
    let backend = CaptureBackend::new();
    backend.push_command("paths_whitelist", "p1", json!([["/inner"]]));
    let config = test_config()
        .heartbeat_delay(Duration::from_millis(100))
        .build()
        .unwrap();
    let guard = Agent::start(config, Arc::new(backend.clone()));
    assert!(guard.wait_ready(WAIT), "agent did not log in");
    let info = sqreen_core::RequestInfo::new("GET", "/inner", &[("Host", "h")]);
    let deadline = std::time::Instant::now() + WAIT;
    while !matches!(guard.agent().open(|| info, None), sqreen_core::Open::Pass) {
        assert!(
            std::time::Instant::now() < deadline,
            "the passlist never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let inner: Router = Router::new()
        .route(
            "/inner",
            get(|sq: Sqreen| async move {
                if sq.is_enabled() {
                    "enabled"
                } else {
                    "disabled"
                }
            }),
        )
        .layer(SqreenLayer::with_agent(guard.agent().clone()));
    let outer = Router::new().route(
        "/outer",
        get(move |sq: Sqreen| {
            let inner = inner.clone();
            async move {
                sq.track_event("outer.event");
                let req = Request::get("/inner").body(Body::empty()).unwrap();
                let response = inner.oneshot(req).await.unwrap();
                body_text(response).await
            }
        }),
    );
    let (status, response) = send(
        app(outer, guard.agent()),
        Request::get("/outer").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body_text(response).await, "disabled");
    let events = flushed_events(guard.agent(), &backend).await;
    assert_eq!(events.len(), 1);
    assert_eq!(tracked(&events[0]), vec!["outer.event".to_owned()]);
}
