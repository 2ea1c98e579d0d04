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
//! properties), `wrapped` (the layer around the `Router`), and the peers
//! of `common/peers.rs`: `trace`, `sentry`, `from_fn`.

// Benches abort loudly on a broken setup rather than measure the wrong path.
#![allow(clippy::unwrap_used)]

mod common;
use common::{hello, hello_tracked, peers, request};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use sqreen_axum::SqreenLayer;
use sqreen_core::Agent;
use sqreen_core::test::{GatedBackend, test_config};
use tokio::runtime::Runtime;
use tower::util::MapRequestLayer;
use tower::{Layer, ServiceExt};

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
        "trace" => measure(&rt, &peers::trace(), n),
        "sentry" => {
            peers::init_sentry();
            measure(&rt, &peers::sentry(), n);
        }
        "from_fn" => measure(&rt, &peers::naive_from_fn(), n),
        other => panic!("unknown app {other}"),
    }
}
