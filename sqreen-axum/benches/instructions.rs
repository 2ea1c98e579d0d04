//! A fixed number of requests through one app, for instruction counting
//! under callgrind, which is deaf to the machine's noise (unlike the
//! criterion figures of `middleware.rs`).
//!
//! ```text
//! cargo bench -p sqreen-axum --bench instructions --no-run
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='instructions::run*' \
//!     target/release/deps/instructions-* untracked 10000
//! ```
//!
//! Only `run` is counted (agent start-up and the warm-up request are not,
//! nor the agent thread's work); divide the total by the request count.
//! Apps, as in `middleware.rs` and with its request: `bare`, `noop` (a
//! do-nothing `Router::layer`), `untracked`, `tracked` (one event with 3
//! properties), `wrapped` (the layer around the `Router`).

// Benches abort loudly on a broken setup rather than measure the wrong path.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use axum::routing::get;
use sqreen_axum::{Sqreen, SqreenLayer};
use sqreen_core::Agent;
use sqreen_core::test::{GatedBackend, test_config};
use tokio::runtime::Runtime;
use tower::util::MapRequestLayer;
use tower::{Layer, ServiceExt};

/// `GET /` as a browser sends it, as axum's server hands it over (the
/// request of `middleware.rs`).
fn request() -> Request<Body> {
    let mut request = Request::get("/")
        .header(header::HOST, "shop.example.com")
        .header(
            header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([81, 2, 69, 160], 52114))));
    request
}

async fn hello() -> &'static str {
    "ok"
}

async fn hello_tracked(sq: Sqreen) -> &'static str {
    sq.track_event("page.viewed").with_properties([
        ("plan", "pro"),
        ("region", "eu"),
        ("seats", "5"),
    ]);
    "ok"
}

/// The counted loop.
#[inline(never)]
fn run<S>(rt: &Runtime, app: &S, n: u64)
where
    S: tower::Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        for _ in 0..n {
            std::hint::black_box(app.clone().oneshot(request()).await.unwrap());
        }
    });
}

/// One uncounted request first: lazy initialisations are not per-request costs.
fn measure<S>(rt: &Runtime, app: &S, n: u64)
where
    S: tower::Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    run(rt, app, 1);
    run(rt, app, n);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` runs every bench with `--bench`: do nothing then.
    let (Some(mode), Some(n)) = (args.get(1), args.get(2)) else {
        return;
    };
    if mode.starts_with("--") {
        return;
    }
    let n: u64 = n.parse().unwrap();
    let gate = Arc::new(GatedBackend::default());
    let config = test_config().event_queue_length(1_000_000).build().unwrap();
    let guard = Agent::start(config, gate);
    assert!(guard.wait_ready(Duration::from_secs(30)));
    let agent = guard.agent().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let layer = SqreenLayer::with_agent(agent);
    match mode.as_str() {
        "bare" => measure(&rt, &Router::new().route("/", get(hello)).with_state(()), n),
        "noop" => {
            let app = Router::new()
                .route("/", get(hello))
                .layer(MapRequestLayer::new(|r: Request<Body>| r))
                .with_state(());
            measure(&rt, &app, n);
        }
        "untracked" => {
            let app = Router::new()
                .route("/", get(hello))
                .layer(layer)
                .with_state(());
            measure(&rt, &app, n);
        }
        "tracked" => {
            let app = Router::new()
                .route("/", get(hello_tracked))
                .layer(layer)
                .with_state(());
            measure(&rt, &app, n);
        }
        "wrapped" => {
            let app = layer.layer(Router::new().route("/", get(hello)).with_state(()));
            measure(&rt, &app, n);
        }
        other => panic!("unknown app {other}"),
    }
}
