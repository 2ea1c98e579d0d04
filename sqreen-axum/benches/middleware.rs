//! What the axum layer costs per request, in-process: the same hello-world
//! route driven with `tower::ServiceExt::oneshot`, with and without the layer.
//!
//! ```text
//! cargo bench -p sqreen-axum --bench middleware -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! | bench | what runs | target (over `bare`) |
//! |---|---|---|
//! | `bare` | `GET /` → `"ok"`, no layer | — |
//! | `noop_layer` | the same behind a do-nothing `Router::layer` (tower's `MapRequest` with the identity): what any layer costs there | — |
//! | `layer_untracked` | the same behind `Router::layer(SqreenLayer)`; the handler tracks nothing | ≤ 300 ns |
//! | `layer_track_event_3_props` | the handler takes `Sqreen` and tracks one event with 3 properties; the agent thread is held (takes no CPU) while the requests are timed | ≤ 1 µs |
//! | `layer_track_event_3_props_agent_busy` | the same, with the agent thread turning the records into events on the other core meanwhile | — |
//! | `wrapped_router_untracked` | `SqreenLayer` around the whole `Router` (before routing) instead; nothing tracked | — |
//! | `peer_trace`, `peer_sentry`, `peer_from_fn` | the same route behind tower-http's `TraceLayer`, sentry-tower's layers, or a naive copying `from_fn` (see `common/peers.rs`) | — |
//!
//! Every request carries the headers of a browser and axum's
//! `ConnectInfo<SocketAddr>`, as `into_make_service_with_connect_info`
//! serves it. The agent is logged in to the core's in-memory backend
//! (feature `test`), so the layer takes the real recording path, with a
//! large event queue so that no record is dropped (checked at the end).
//! Batches are acknowledged and discarded rather than kept, or the backend
//! would hold millions of events.
//!
//! The agent thread turns a few tens of thousands of records a second into
//! events (see BENCHMARKS.md), far fewer than this loop produces: the
//! tracked benches time chunks of 1 000 requests and flush the agent
//! between chunks (untimed), so the queue stays short. In
//! `layer_track_event_3_props` the agent thread is blocked in a batch call
//! during each timed chunk, so the figure is the request thread's own cost;
//! in `…_agent_busy` it works on the other core meanwhile, as in a server
//! at full load, and the figure also carries that contention (on a
//! two-core machine shared with other work, mostly CPU time).

// Benches abort loudly on a broken setup rather than measure the wrong path.
#![allow(clippy::unwrap_used)]

mod common;
use common::{hello, hello_tracked, peers, request};

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use criterion::{Criterion, criterion_main};
use sqreen_axum::SqreenLayer;
use sqreen_core::test::{GatedBackend, test_config};
use sqreen_core::{Agent, AgentGuard};
use tower::util::MapRequestLayer;
use tower::{Layer, ServiceExt};

/// Tracked requests timed between two flushes of the agent.
const CHUNK: u64 = 1_000;

fn start_agent(gate: &Arc<GatedBackend>) -> AgentGuard {
    let config = test_config()
        .event_queue_length(1_000_000)
        // A batch per record: the gate catches the agent thread at once.
        .batch_size(1)
        .build()
        .unwrap();
    let guard = Agent::start(config, gate.clone());
    assert!(
        guard.wait_ready(Duration::from_secs(10)),
        "agent did not log in"
    );
    guard
}

fn same(request: Request<Body>) -> Request<Body> {
    request
}

fn bench(c: &mut Criterion) {
    let gate = Arc::new(GatedBackend::default());
    let guard = start_agent(&gate);
    let agent = guard.agent().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // `with_state(())` turns the handlers into services once, as
    // `axum::serve` (through `into_make_service`) does; a bare `Router<()>`
    // driven with `oneshot` would redo it, layers included, on every request.
    let bare = Router::new().route("/", get(hello)).with_state(());
    let noop = Router::new()
        .route("/", get(hello))
        .layer(MapRequestLayer::new(same))
        .with_state(());
    let untracked = Router::new()
        .route("/", get(hello))
        .layer(SqreenLayer::with_agent(agent.clone()))
        .with_state(());
    let tracked = Router::new()
        .route("/", get(hello_tracked))
        .layer(SqreenLayer::with_agent(agent.clone()))
        .with_state(());
    let wrapped = SqreenLayer::with_agent(agent.clone())
        .layer(Router::new().route("/", get(hello)).with_state(()));
    peers::init_sentry();
    let (trace, sentry, from_fn) = (peers::trace(), peers::sentry(), peers::naive_from_fn());

    // Every mode answers 200, and only the tracked one records.
    rt.block_on(async {
        for app in [
            &bare, &noop, &untracked, &tracked, &trace, &sentry, &from_fn,
        ] {
            let response = app.clone().oneshot(request()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let response = wrapped.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    });
    assert!(agent.flush(Duration::from_secs(10)));
    assert_eq!(agent.stats().records_queued, 1, "{:?}", agent.stats());

    let mut group = c.benchmark_group("axum_middleware");
    for (name, app) in [
        ("bare", &bare),
        ("noop_layer", &noop),
        ("layer_untracked", &untracked),
        ("peer_trace", &trace),
        ("peer_sentry", &sentry),
        ("peer_from_fn", &from_fn),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { app.clone().oneshot(request()).await.unwrap() });
        });
    }
    for (name, hold_agent) in [
        ("layer_track_event_3_props", true),
        ("layer_track_event_3_props_agent_busy", false),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (app, agent, gate) = (tracked.clone(), agent.clone(), Arc::clone(&gate));
                async move {
                    let mut timed = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        if hold_agent {
                            // One untimed record sends the agent thread
                            // into a batch call, where it waits.
                            gate.arm();
                            app.clone().oneshot(request()).await.unwrap();
                            assert!(
                                gate.wait_held(Duration::from_secs(10)),
                                "the agent thread was not held"
                            );
                        }
                        let chunk = CHUNK.min(iters - done);
                        let start = Instant::now();
                        for _ in 0..chunk {
                            let response = app.clone().oneshot(request()).await.unwrap();
                            std::hint::black_box(response);
                        }
                        timed += start.elapsed();
                        done += chunk;
                        gate.release();
                        assert!(agent.flush_async(Duration::from_secs(60)).await);
                    }
                    timed
                }
            });
        });
    }
    group.bench_function("wrapped_router_untracked", |b| {
        b.to_async(&rt)
            .iter(|| async { wrapped.clone().oneshot(request()).await.unwrap() });
    });
    group.finish();

    let stats = agent.stats();
    assert_eq!(
        stats.records_dropped_queue_full, 0,
        "records were dropped: the figures are not the recording path's"
    );
}

/// The benchmarks (by hand: `criterion_group!` makes an undocumented `pub fn`).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
}

criterion_main!(benches);
