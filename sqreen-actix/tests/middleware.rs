//! The actix adapter end to end, in process: actix's test service in front,
//! the core's in-memory `CaptureBackend` behind.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::{App, HttpResponse, test, web};
use serde::Deserialize;
use serde_json::{Value, json};
use sqreen_actix::{Blocked, Sqreen, SqreenMiddleware};
use sqreen_core::test::{CaptureBackend, start_captured, test_config};
use sqreen_core::{Agent, AgentGuard, Config, SecurityResponse};

const CLIENT: &str = "81.2.69.160:52114";

/// A logged-in agent on a fresh in-memory backend.
fn captured() -> (AgentGuard, CaptureBackend) {
    start_captured(test_config().build().unwrap())
}

/// A logged-in agent whose backend serves `actions` from the login on.
fn captured_with_actions(actions: Value) -> (AgentGuard, CaptureBackend) {
    let backend = CaptureBackend::new();
    backend.set_actions(actions);
    let guard = Agent::start(test_config().build().unwrap(), Arc::new(backend.clone()));
    assert!(guard.wait_ready(Duration::from_secs(10)));
    (guard, backend)
}

/// Flushes the agent and returns every event its backend received.
async fn events(agent: &Agent, backend: &CaptureBackend) -> Vec<Value> {
    assert!(agent.flush_async(Duration::from_secs(10)).await);
    backend.events()
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn item(sq: Sqreen, path: web::Path<u32>) -> HttpResponse {
    sq.track_event("item.viewed")
        .with_properties([("id", i64::from(*path)), ("on_sale", 1), ("source", 2)])
        .with_properties([("currency", "eur")]);
    HttpResponse::Ok().content_type("text/plain").body("item")
}

async fn form(sq: Sqreen, form: web::Form<Login>) -> HttpResponse {
    sq.track_event("form.posted");
    HttpResponse::Ok().body(format!("{}:{}", form.username, form.password))
}

async fn json_body(sq: Sqreen, body: web::Json<Value>) -> HttpResponse {
    sq.track_event("json.posted");
    HttpResponse::Ok().json(body.into_inner())
}

async fn login(sq: Sqreen, form: web::Form<Login>) -> Result<HttpResponse, Blocked> {
    let user = sq.for_user([("username", form.username.as_str())]);
    user.track_auth_success();
    user.identify()?;
    Ok(HttpResponse::Ok().body("welcome"))
}

async fn silent() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// The demo routes, behind `middleware` when given.
macro_rules! app {
    ($middleware:expr) => {
        test::init_service(
            App::new()
                .wrap($middleware)
                .route("/items/{id}", web::get().to(item))
                .route("/form", web::post().to(form))
                .route("/json", web::post().to(json_body))
                .route("/login", web::post().to(login))
                .route("/", web::get().to(silent)),
        )
        .await
    };
}

/// A tracked event with properties reaches the backend with the request's
/// path, verb, query, route parameters, user agent, client IP and response.
#[actix_web::test]
async fn tracked_event_reaches_backend() {
    let (agent, backend) = captured();
    let app = app!(SqreenMiddleware::with_agent(agent.agent().clone()));
    let req = test::TestRequest::get()
        .uri("/items/42?ref=home")
        .insert_header(("User-Agent", "curl/8.0"))
        .insert_header(("Host", "shop.example.com"))
        .peer_addr(CLIENT.parse().unwrap())
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(test::read_body(res).await, "item");

    let events = events(&agent, &backend).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["client_ip"], "81.2.69.160");
    let request = &event["request"];
    assert_eq!(request["verb"], "GET");
    assert_eq!(request["path"], "/items/42");
    assert_eq!(request["host"], "shop.example.com");
    assert_eq!(request["scheme"], "http");
    assert_eq!(request["user_agent"], "curl/8.0");
    assert_eq!(request["remote_ip"], "81.2.69.160");
    assert_eq!(request["parameters"]["query"], json!({"ref": ["home"]}));
    assert_eq!(request["parameters"]["params"], json!({"id": ["42"]}));
    assert_eq!(
        event["response"],
        json!({"status": 200, "content_length": 4, "content_type": "text/plain"})
    );
    let track = &event["observed"]["sdk"][0];
    assert_eq!(track["name"], "track");
    assert_eq!(track["args"][0], "item.viewed");
    assert_eq!(
        track["args"][1]["properties"],
        json!({"id": 42, "on_sale": 1, "source": 2, "currency": "eur"})
    );
}

/// An urlencoded form body is captured and still read intact by `web::Form`.
#[actix_web::test]
async fn form_body_is_captured_and_readable() {
    let (agent, backend) = captured();
    let app = app!(SqreenMiddleware::with_agent(agent.agent().clone()));
    let req = test::TestRequest::post()
        .uri("/form")
        .set_form([("username", "bob"), ("password", "hunter2")])
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(test::read_body(res).await, "bob:hunter2");

    let events = events(&agent, &backend).await;
    let form = &events[0]["request"]["parameters"]["form"];
    assert_eq!(form["username"], json!(["bob"]));
    assert_eq!(form["password"], json!(["<Redacted by Sqreen>"]));
}

/// A JSON body is captured and still read intact by `web::Json`.
#[actix_web::test]
async fn json_body_is_captured_and_readable() {
    let (agent, backend) = captured();
    let app = app!(SqreenMiddleware::with_agent(agent.agent().clone()));
    let body = json!({"name": "widget", "tags": ["a", "b"], "n": 3});
    let req = test::TestRequest::post()
        .uri("/json")
        .set_json(&body)
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let echoed: Value = test::read_body_json(res).await;
    assert_eq!(echoed, body);

    let events = events(&agent, &backend).await;
    assert_eq!(events[0]["request"]["parameters"]["json"], body);
}

/// A body larger than `body_capture_limit` is not captured, and the
/// handler reads it whole.
#[actix_web::test]
async fn large_body_is_not_captured() {
    let (agent, backend) = start_captured(test_config().body_capture_limit(16).build().unwrap());
    let app = app!(SqreenMiddleware::with_agent(agent.agent().clone()));
    let password = "x".repeat(64);
    let req = test::TestRequest::post()
        .uri("/form")
        .set_form([("username", "bob"), ("password", password.as_str())])
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(test::read_body(res).await, format!("bob:{password}"));

    let events = events(&agent, &backend).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["request"]["parameters"].get("form"), None);
}

/// A client IP under a block action gets 403 and the block page; the
/// handler never runs; the enforcement is recorded.
#[actix_web::test]
async fn ip_block_answers_403_before_the_handler() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let (agent, backend) = captured_with_actions(json!([{
        "action_id": "a-1", "action": "block_ip", "duration": 0, "send_response": true,
        "parameters": {"ip_cidr": ["81.2.69.0/24"]}
    }]));
    let app = test::init_service(
        App::new()
            .wrap(SqreenMiddleware::with_agent(agent.agent().clone()))
            .route(
                "/",
                web::get().to(|| async {
                    RUNS.fetch_add(1, Ordering::SeqCst);
                    HttpResponse::Ok().finish()
                }),
            ),
    )
    .await;
    let req = test::TestRequest::get()
        .uri("/")
        .peer_addr(CLIENT.parse().unwrap())
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        res.headers()
            .get(CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = test::read_body(res).await;
    assert_eq!(body, sqreen_core::actions::BLOCK_PAGE);
    assert_eq!(RUNS.load(Ordering::SeqCst), 0);

    let events = events(&agent, &backend).await;
    let track = &events[0]["observed"]["sdk"][0];
    assert_eq!(track["args"][0], "sq.action.block_ip");
    assert_eq!(track["args"][1]["properties"]["action_id"], "a-1");
}

/// A client IP under a redirect action gets 303 with a `Location`.
#[actix_web::test]
async fn ip_redirect_answers_303_with_location() {
    let (agent, _backend) = captured_with_actions(json!([{
        "action_id": "a-2", "action": "redirect_ip", "duration": 0, "send_response": true,
        "parameters": {"ip_cidr": ["81.2.69.0/24"], "url": "https://example.com/blocked"}
    }]));
    let app = app!(SqreenMiddleware::with_agent(agent.agent().clone()));
    let req = test::TestRequest::get()
        .uri("/")
        .peer_addr(CLIENT.parse().unwrap())
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers().get(LOCATION).unwrap(),
        "https://example.com/blocked"
    );
}

/// A user under a block action is answered 403 through `identify()?`.
#[actix_web::test]
async fn user_block_through_identify() {
    let (agent, backend) = captured_with_actions(json!([{
        "action_id": "u-1", "action": "block_user", "duration": 0, "send_response": true,
        "parameters": {"users": [{"username": "mallory"}]}
    }]));
    let app = app!(SqreenMiddleware::with_agent(agent.agent().clone()));
    for (user, status) in [("mallory", StatusCode::FORBIDDEN), ("bob", StatusCode::OK)] {
        let req = test::TestRequest::post()
            .uri("/login")
            .set_form([("username", user), ("password", "p")])
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), status, "{user}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(test::read_body(res).await, sqreen_core::actions::BLOCK_PAGE);
        }
    }
    let events = events(&agent, &backend).await;
    let blocked = events
        .iter()
        .find(|e| e["response"]["status"] == 403)
        .unwrap();
    let names: Vec<&Value> = blocked["observed"]["sdk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["args"][0])
        .collect();
    assert!(names.contains(&&json!("sq.action.block_user")), "{names:?}");
}

/// A custom renderer answers both IP actions and the `Blocked` errors of
/// handlers.
#[actix_web::test]
async fn custom_blocked_response() {
    let (agent, backend) = captured_with_actions(json!([
        {"action_id": "a-1", "action": "block_ip", "duration": 0, "send_response": true,
         "parameters": {"ip_cidr": ["81.2.69.0/24"]}},
        {"action_id": "u-1", "action": "block_user", "duration": 0, "send_response": true,
         "parameters": {"users": [{"username": "mallory"}]}}
    ]));
    let middleware = SqreenMiddleware::with_agent(agent.agent().clone()).blocked_response(
        |response: &SecurityResponse| {
            HttpResponse::build(StatusCode::from_u16(response.status()).unwrap())
                .content_type("text/plain")
                .body("custom")
        },
    );
    let app = app!(middleware);
    let req = test::TestRequest::get()
        .uri("/")
        .peer_addr(CLIENT.parse().unwrap())
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(test::read_body(res).await, "custom");

    let req = test::TestRequest::post()
        .uri("/login")
        .set_form([("username", "mallory"), ("password", "p")])
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(test::read_body(res).await, "custom");

    let events = events(&agent, &backend).await;
    let user_blocked = events
        .iter()
        .find(|e| e["request"]["path"] == "/login")
        .unwrap();
    assert_eq!(
        user_blocked["response"],
        json!({"status": 403, "content_length": 6, "content_type": "text/plain"}),
        "the record closes with the response actually sent"
    );
}

/// Without the middleware the extractor yields a disabled handle that
/// accepts every call, and `Blocked` never fires.
#[actix_web::test]
async fn no_middleware_gives_a_disabled_handle() {
    let app = test::init_service(App::new().route(
        "/",
        web::get().to(|sq: Sqreen| async move {
            sq.track_event("nobody.listens")
                .with_properties([("k", "v")]);
            let user = sq.for_user([("uid", "1")]);
            user.track_auth_success();
            user.identify().map_err(Blocked::from)?;
            Ok::<_, Blocked>(HttpResponse::Ok().body(if sq.is_enabled() {
                "enabled"
            } else {
                "disabled"
            }))
        }),
    ))
    .await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(test::read_body(res).await, "disabled");
}

/// With the agent off the middleware passes requests through untouched:
/// bodies reach handlers, handles are disabled, nothing is sent.
#[actix_web::test]
async fn agent_off_passes_through() {
    let agent = Agent::off(Config::default());
    let app = test::init_service(
        App::new()
            .wrap(SqreenMiddleware::with_agent(agent.clone()))
            .route(
                "/form",
                web::post().to(|sq: Sqreen, form: web::Form<Login>| async move {
                    sq.track_event("ignored");
                    HttpResponse::Ok().body(format!("{}:{}", form.username, sq.is_enabled()))
                }),
            ),
    )
    .await;
    let req = test::TestRequest::post()
        .uri("/form")
        .set_form([("username", "bob"), ("password", "p")])
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(test::read_body(res).await, "bob:false");
    assert_eq!(agent.stats().records_queued, 0);
}

/// A middleware built with `new()` before any `init` holds no agent and
/// passes requests through.
#[actix_web::test]
async fn new_without_global_agent_passes_through() {
    let app = app!(SqreenMiddleware::new());
    let res = test::call_service(&app, test::TestRequest::get().uri("/items/7").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// A request whose handler tracks nothing sends nothing.
#[actix_web::test]
async fn untracked_request_sends_nothing() {
    let (agent, backend) = captured();
    let app = app!(SqreenMiddleware::with_agent(agent.agent().clone()));
    for _ in 0..3 {
        let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(events(&agent, &backend).await.is_empty());
    assert_eq!(agent.stats().records_queued, 0);
}

/// Requests no route matches (the default service) are recorded too, with
/// the status they got.
#[actix_web::test]
async fn unmatched_requests_are_recorded() {
    let (agent, backend) = captured();
    let app = test::init_service(
        App::new()
            .wrap(SqreenMiddleware::with_agent(agent.agent().clone()))
            .default_service(web::to(|sq: Sqreen| async move {
                sq.track_event("not.found");
                HttpResponse::NotFound().finish()
            })),
    )
    .await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let events = events(&agent, &backend).await;
    assert_eq!(events[0]["response"]["status"], 404);
    assert_eq!(events[0]["request"]["path"], "/nope");
}

/// `Sqreen::of` gives the same handle from an `HttpRequest`.
#[actix_web::test]
async fn handle_from_http_request() {
    let (agent, backend) = captured();
    let app = test::init_service(
        App::new()
            .wrap(SqreenMiddleware::with_agent(agent.agent().clone()))
            .route(
                "/",
                web::get().to(|req: actix_web::HttpRequest| async move {
                    Sqreen::of(&req).track_event("from.request");
                    HttpResponse::Ok().finish()
                }),
            ),
    )
    .await;
    test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    let events = events(&agent, &backend).await;
    assert_eq!(events[0]["observed"]["sdk"][0]["args"][0], "from.request");
}

/// A middleware inside ours that takes the handle, tracks, and then fails
/// (an `Err` from the service, not an error response): the record it opened
/// has no response to close with, and what it tracked is still sent.
#[actix_web::test]
async fn event_tracked_before_a_service_error_is_sent() {
    let (agent, backend) = captured();
    let app = test::init_service(
        App::new()
            .wrap_fn(|req, _inner| {
                Sqreen::of(req.request()).track_event("before.failure");
                drop(req);
                std::future::ready(Err::<actix_web::dev::ServiceResponse, _>(
                    actix_web::error::ErrorBadGateway("upstream down"),
                ))
            })
            .wrap(SqreenMiddleware::with_agent(agent.agent().clone()))
            .route("/", web::get().to(|| async { HttpResponse::Ok().finish() })),
    )
    .await;
    let res = test::try_call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert!(res.is_err(), "the inner middleware failed");
    let events = events(&agent, &backend).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["observed"]["sdk"][0]["args"][0], "before.failure");
    assert_eq!(events[0]["request"]["path"], "/");
}

/// A body longer than its declared `Content-Length` (possible over HTTP/2)
/// is not captured, and the handler still reads every byte of it.
#[actix_web::test]
async fn body_longer_than_declared_reaches_the_handler_whole() {
    let (agent, backend) = captured();
    let app = app!(SqreenMiddleware::with_agent(agent.agent().clone()));
    let req = test::TestRequest::post()
        .uri("/form")
        .set_payload("username=bob&password=hunter2")
        .insert_header((CONTENT_TYPE, "application/x-www-form-urlencoded"))
        .insert_header(("Content-Length", "12"))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(test::read_body(res).await, "bob:hunter2");
    let events = events(&agent, &backend).await;
    assert_eq!(events[0]["request"]["parameters"].get("form"), None);
}

/// Compile-time check: the middleware can be captured by `HttpServer::new`'s
/// factory (which needs `Send + Clone`), and handles and errors can move
/// across threads.
const _: () = {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    let _ = assert_send_sync_clone::<SqreenMiddleware>;
    let _ = assert_send_sync_clone::<Sqreen>;
    let _ = assert_send_sync_clone::<Blocked>;
};

/// A scope's middleware that takes the handle before the resource is
/// matched copies the request with the scope's parameters only; the
/// event still reports every parameter of the route that answered.
#[actix_web::test]
async fn handle_taken_before_the_resource_keeps_every_route_parameter() {
    use actix_web::dev::Service as _;

    let (agent, backend) = captured();
    let app = test::init_service(
        App::new()
            .service(
                web::scope("/t/{tenant}")
                    .wrap_fn(|req, srv| {
                        // An auth middleware tracking through the handle.
                        Sqreen::of(req.request()).track_event("tenant.entered");
                        srv.call(req)
                    })
                    .route("/items/{id}", web::get().to(|| async { "ok" })),
            )
            .wrap(SqreenMiddleware::with_agent(agent.agent().clone())),
    )
    .await;
    let req = test::TestRequest::get()
        .uri("/t/acme/items/7")
        .peer_addr(CLIENT.parse().unwrap())
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let events = events(&agent, &backend).await;
    assert_eq!(events.len(), 1);
    let request = &events[0]["request"];
    assert_eq!(request["path"], "/t/acme/items/7");
    assert_eq!(
        request["parameters"]["params"],
        json!({"tenant": ["acme"], "id": ["7"]})
    );
}
