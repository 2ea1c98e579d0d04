//! `SqreenService` served on 127.0.0.1 and driven with real HTTP requests:
//! routes reading bodies with warp's own filters, with body capture on,
//! answer as without the agent while the body is captured; the peer
//! address, route parameters and a trusted proxy's scheme are recorded.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use sqreen_core::test::{CaptureBackend, start_captured, test_config};
use sqreen_core::{AgentGuard, Config};
use sqreen_warp::{Sqreen, SqreenWrapper, sqreen};
use warp::Filter;

const WAIT: Duration = Duration::from_secs(10);
const MASK: &str = "<Redacted by Sqreen>";

/// Routes written for plain warp: `warp::body::json()`, `warp::body::form()`.
fn routes()
-> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static
{
    let order = warp::path("orders")
        .and(warp::path::end())
        .and(warp::post())
        .and(sqreen())
        .and(warp::body::json())
        .map(|sq: Sqreen, order: Value| {
            sq.track_event("order.placed");
            warp::reply::json(&json!({"echo": order}))
        });
    let login = warp::path("login")
        .and(warp::post())
        .and(sqreen())
        .and(warp::body::form())
        .map(|sq: Sqreen, form: HashMap<String, String>| {
            sq.track_event("login.tried");
            format!("hello {}", form["username"])
        });
    let item = warp::path("users")
        .and(sqreen_warp::param::<u32>("user_id"))
        .and(warp::path("items"))
        .and(sqreen_warp::param::<String>("item"))
        .and(warp::path::end())
        .and(sqreen())
        .map(|user: u32, item: String, sq: Sqreen| {
            sq.track_event("item.viewed");
            format!("{user}/{item}")
        });
    order.or(login).or(item)
}

/// Serves `wrapper.service(routes())` on 127.0.0.1 until the returned
/// sender is dropped.
async fn serve(wrapper: SqreenWrapper) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = wrapper.service(routes());
    tokio::spawn(service.serve(listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

fn agent(config: Config) -> (AgentGuard, CaptureBackend) {
    start_captured(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn warp_body_json_with_capture_answers_200_and_is_captured() {
    let (guard, backend) = agent(test_config().build().unwrap());
    let wrapper = SqreenWrapper::with_agent(guard.agent().clone()).capture_bodies(true);
    let (addr, _stop) = serve(wrapper).await;
    let order = json!({"item": "book", "quantity": 2, "password": "hunter2"});
    let response = client()
        .post(format!("http://{addr}/orders"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"echo": order})
    );

    assert!(guard.agent().flush(WAIT));
    let event = backend.tracked_one("order.placed").unwrap();
    let request = event.request.as_ref().unwrap();
    let body = request.json().expect("the JSON body is captured");
    assert_eq!(body["item"], "book");
    assert_eq!(body["quantity"], 2);
    assert_eq!(body["password"], MASK);
    // The peer comes from the connection, although warp's
    // `addr::remote()` knows it only under `warp::serve`.
    assert_eq!(event.client_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(request.scheme, "http");
}

#[tokio::test(flavor = "multi_thread")]
async fn warp_body_form_with_capture_is_captured() {
    let (guard, backend) = agent(test_config().build().unwrap());
    let wrapper = SqreenWrapper::with_agent(guard.agent().clone()).capture_bodies(true);
    let (addr, _stop) = serve(wrapper).await;
    let response = client()
        .post(format!("http://{addr}/login"))
        .form(&[("username", "alice"), ("password", "s3cret")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello alice");

    assert!(guard.agent().flush(WAIT));
    let event = backend.tracked_one("login.tried").unwrap();
    let request = event.request.as_ref().unwrap();
    assert_eq!(request.form("username"), Some(&json!(["alice"])));
    assert_eq!(request.form("password"), Some(&json!([MASK])));
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_reach_the_route_whole_and_are_not_captured() {
    let config = test_config().body_capture_limit(64).build().unwrap();
    let (guard, backend) = agent(config);
    let wrapper = SqreenWrapper::with_agent(guard.agent().clone()).capture_bodies(true);
    let (addr, _stop) = serve(wrapper).await;
    let order = json!({"note": "x".repeat(4096)});
    let response = client()
        .post(format!("http://{addr}/orders"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"echo": order})
    );

    assert!(guard.agent().flush(WAIT));
    let event = backend.tracked_one("order.placed").unwrap();
    assert_eq!(event.request.as_ref().unwrap().json(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_capture_nothing_is_copied() {
    let (guard, backend) = agent(test_config().build().unwrap());
    let (addr, _stop) = serve(SqreenWrapper::with_agent(guard.agent().clone())).await;
    let response = client()
        .post(format!("http://{addr}/orders"))
        .json(&json!({"item": "pen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    assert!(guard.agent().flush(WAIT));
    let event = backend.tracked_one("order.placed").unwrap();
    assert_eq!(event.request.as_ref().unwrap().json(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn named_route_parameters_are_recorded() {
    let (guard, backend) = agent(test_config().build().unwrap());
    let (addr, _stop) = serve(SqreenWrapper::with_agent(guard.agent().clone())).await;
    let response = client()
        .get(format!("http://{addr}/users/42/items/pen"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "42/pen");

    assert!(guard.agent().flush(WAIT));
    let event = backend.tracked_one("item.viewed").unwrap();
    let request = event.request.as_ref().unwrap();
    assert_eq!(request.route_param("user_id"), Some("42"));
    assert_eq!(request.route_param("item"), Some("pen"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_tells_the_scheme() {
    let config = test_config()
        .trusted_proxies(["127.0.0.1/32"])
        .build()
        .unwrap();
    let (guard, backend) = agent(config);
    let (addr, _stop) = serve(SqreenWrapper::with_agent(guard.agent().clone())).await;
    let response = client()
        .post(format!("http://{addr}/orders"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-For", "81.2.69.160")
        .json(&json!({"item": "pen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    assert!(guard.agent().flush(WAIT));
    let event = backend.tracked_one("order.placed").unwrap();
    assert_eq!(event.client_ip, Some("81.2.69.160".parse().unwrap()));
    assert_eq!(event.request.as_ref().unwrap().scheme, "https");
}
