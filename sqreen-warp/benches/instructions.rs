//! A fixed number of requests through one app, for instruction counting
//! under callgrind, which is deaf to the machine's noise (unlike the
//! criterion figures of `middleware.rs`).
//!
//! ```text
//! cargo bench -p sqreen-warp --bench instructions --no-run
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='instructions::run*' \
//!     target/release/deps/instructions-* untracked 10000
//! ```
//!
//! Only `run` is counted (agent start-up and the warm-up request are not);
//! divide the total by the request count. Like `warp::serve`, `run` clones
//! the filter for each request. Apps: `bare`, `off`,
//! `untracked`, `tracked`, as in `middleware.rs`, and `core`: the agent's
//! `open` + `close` alone, without warp.

// Benches abort loudly on a broken setup rather than measure the wrong path.
#![allow(clippy::unwrap_used)]
// The future size is printed for whoever runs it by hand.
#![allow(clippy::print_stderr)]

mod common;
use common::{hello, hello_tracked};
use std::sync::Arc;
use std::time::Duration;

use sqreen_core::test::{GatedBackend, test_config};
use sqreen_core::{Agent, Config, Open, RequestInfo, ResponseInfo};
use sqreen_warp::SqreenWrapper;
use tokio::runtime::Runtime;
use warp::Filter;
use warp::reply::Response;
use warp::test::RequestBuilder;

/// `GET /` as a browser sends it (the request of `middleware.rs`).
fn request() -> RequestBuilder {
    warp::test::request()
        .path("/")
        .header("host", "shop.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-encoding", "gzip, deflate, br")
        .remote_addr("203.0.113.195:52114".parse().unwrap())
}

/// The counted loop.
#[inline(never)]
fn run<F>(rt: &Runtime, app: &F, n: u64)
where
    F: Filter<Extract = (Response,), Error = warp::Rejection> + Clone + 'static,
{
    rt.block_on(async {
        for _ in 0..n {
            // `warp::serve` (through hyper-util) clones the filter for every request.
            let app = app.clone();
            std::hint::black_box(request().reply(&app).await);
        }
    });
}

/// One uncounted request first: lazy initialisations are not per-request costs.
fn measure<F>(rt: &Runtime, app: &F, n: u64)
where
    F: Filter<Extract = (Response,), Error = warp::Rejection> + Clone + 'static,
{
    // Large futures are moved around: their size is a cost of its own.
    eprintln!("filter future: {} bytes", std::mem::size_of::<F::Future>());
    rt.block_on(async {
        std::hint::black_box(request().reply(app).await);
    });
    run(rt, app, n);
}

/// The core alone: `open` + `close` of an untracked request with the same
/// headers, the floor of what any adapter costs.
#[inline(never)]
fn run_core(agent: &Agent, n: u64) {
    let headers: &[(&str, &str)] = &[
        ("host", "shop.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-encoding", "gzip, deflate, br"),
    ];
    for _ in 0..n {
        let info = RequestInfo::new("GET", "/", &headers)
            .peer(Some("203.0.113.195:52114".parse().unwrap()));
        if let Open::Request(slot) = agent.open(|| *std::hint::black_box(&info), None) {
            slot.close(ResponseInfo::new(200).content_length(Some(2)));
        }
    }
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
    let wrapper = SqreenWrapper::with_agent(agent.clone());
    match mode.as_str() {
        "bare" => {
            let app = hello().map(warp::Reply::into_response);
            measure(&rt, &app, n);
        }
        "off" => {
            let app = SqreenWrapper::with_agent(Agent::off(Config::default())).wrap(hello());
            measure(&rt, &app, n);
        }
        "untracked" => {
            let app = wrapper.wrap(hello());
            measure(&rt, &app, n);
        }
        "tracked" => {
            let app = wrapper.wrap(hello_tracked());
            measure(&rt, &app, n);
        }
        "core" => {
            run_core(&agent, 1);
            run_core(&agent, n);
        }
        other => panic!("unknown app {other}"),
    }
}
