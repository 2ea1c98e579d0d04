//! What the warp wrapper costs per request, in-process: the same
//! hello-world route driven with `warp::test::request()`, with and without
//! the wrapper.
//!
//! ```text
//! cargo bench -p sqreen-warp --bench middleware -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! | bench | what runs |
//! |---|---|
//! | `bare` | `GET /` → `"ok"`, no wrapper |
//! | `wrapped_agent_off` | the same inside `SqreenWrapper::wrap`, with an agent that is off: the pass-through path |
//! | `wrapped_untracked` | the same inside `SqreenWrapper::wrap`, agent recording; the route tracks nothing |
//! | `wrapped_track_event_3_props` | the route takes `Sqreen` (via `sqreen()`) and tracks one event with 3 properties; the agent thread is held (takes no CPU) while the requests are timed |
//! | `wrapped_track_event_3_props_agent_busy` | the same, with the agent thread turning the records into events on the other core meanwhile |
//!
//! Every request carries the headers of a browser and a peer address. The
//! agent is logged in to the core's in-memory backend (feature `test`), so
//! the wrapper takes the real recording path, with a large event queue so
//! that no record is dropped (checked at the end). Batches are acknowledged
//! and discarded rather than kept, or the backend would hold millions of
//! events. `warp::test::request()` itself (building the request, running
//! the filter, collecting the body) is part of every figure: compare with
//! `bare`.
//!
//! The agent thread turns far fewer records a second into events than this
//! loop produces, so the tracked benches time chunks of 1 000 requests and
//! flush the agent between chunks (untimed), keeping the queue short. In
//! `wrapped_track_event_3_props` the agent thread is blocked in a batch call
//! during each timed chunk, so the figure is the request thread's own cost;
//! in `…_agent_busy` it works on the other core meanwhile, as in a server at
//! full load, and the figure also carries that contention.

// Benches abort loudly on a broken setup rather than measure the wrong path.
#![allow(clippy::unwrap_used)]

mod common;
use common::{hello, hello_tracked};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_main};
use sqreen_core::test::{GatedBackend, test_config};
use sqreen_core::{Agent, AgentGuard, Config};
use sqreen_warp::SqreenWrapper;
use warp::test::RequestBuilder;

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

/// `GET /` as a browser sends it.
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

fn bench(c: &mut Criterion) {
    let gate = Arc::new(GatedBackend::default());
    let guard = start_agent(&gate);
    let agent = guard.agent().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let wrapper = SqreenWrapper::with_agent(agent.clone());
    let bare = hello();
    let off = SqreenWrapper::with_agent(Agent::off(Config::default())).wrap(hello());
    let untracked = wrapper.wrap(hello());
    let tracked = wrapper.wrap(hello_tracked());

    // Every mode answers 200, and only the tracked one records.
    rt.block_on(async {
        assert_eq!(request().reply(&bare).await.status(), 200);
        assert_eq!(request().reply(&off).await.status(), 200);
        assert_eq!(request().reply(&untracked).await.status(), 200);
        assert_eq!(request().reply(&tracked).await.status(), 200);
    });
    assert!(agent.flush(Duration::from_secs(10)));
    assert_eq!(agent.stats().records_queued, 1, "{:?}", agent.stats());

    let mut group = c.benchmark_group("warp_middleware");
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| request().reply(&bare));
    });
    group.bench_function("wrapped_agent_off", |b| {
        b.to_async(&rt).iter(|| request().reply(&off));
    });
    group.bench_function("wrapped_untracked", |b| {
        b.to_async(&rt).iter(|| request().reply(&untracked));
    });
    for (name, hold_agent) in [
        ("wrapped_track_event_3_props", true),
        ("wrapped_track_event_3_props_agent_busy", false),
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
                            request().reply(&app).await;
                            assert!(
                                gate.wait_held(Duration::from_secs(10)),
                                "the agent thread was not held"
                            );
                        }
                        let chunk = CHUNK.min(iters - done);
                        let start = Instant::now();
                        for _ in 0..chunk {
                            std::hint::black_box(request().reply(&app).await);
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
    group.finish();
    let stats = agent.stats();
    assert_eq!(stats.records_dropped_queue_full, 0, "records were dropped");
}

/// Every bench of this file, with criterion's command-line settings.
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}

criterion_main!(benches);
