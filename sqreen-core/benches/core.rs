//! Criterion benchmarks of sqreen-core: what the request path pays per
//! request, plus the agent thread's scrubbing and the client IP resolver.
//!
//! ```text
//! cargo bench -p sqreen-core --features test --bench core -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! | group | what it measures | target |
//! |---|---|---|
//! | `open_close_untracked` | `Agent::open` + `RequestSlot::close` of a request whose handler never asks for the handle | ≤ 300 ns |
//! | `track_event_3_props` | one `track_event(..).with_properties([3 props])` on an open record, agent thread idle / busy | ≤ 250 ns |
//! | `scrub_typical_record` | `Scrubber::scrub_json` over a typical request record | — |
//! | `client_ip` | `ClientIpResolver::resolve` in its three common situations | — |
//! | `queue_full_never_blocks` | open + track + close with the queue full (record dropped) / with room | full ≲ with room |
//!
//! Every agent here is logged in to an in-memory backend (feature `test`),
//! so `open` takes the real recording path; each bench asserts that
//! outside its timed loop. The agents' backend drops batches instead of
//! keeping them, so memory stays flat however long criterion runs.

// Benches abort loudly on a broken setup rather than measure the wrong path.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_main};
use serde_json::{Value, json};
use sqreen_core::client_ip::{ClientIpResolver, IpHeaderFormat};
use sqreen_core::protocol::BATCH_PATH;
use sqreen_core::scrub::{REDACTED, Scrubber};
use sqreen_core::test::{CaptureBackend, start_captured, test_config};
use sqreen_core::transport::{ApiRequest, ApiResponse, BoxFuture, Transport, TransportError};
use sqreen_core::{
    Agent, AgentGuard, Config, ConfigBuilder, HeaderPairs, Open, PropertyValue, RequestInfo,
    RequestSlot, ResponseInfo, Sqreen,
};

/// The headers of a typical browser API call behind one proxy.
const HEADERS: [(&str, &str); 8] = [
    ("Host", "shop.example.com"),
    (
        "User-Agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    ("Accept", "application/json, text/plain, */*"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Referer", "https://shop.example.com/items?page=1"),
    (
        "Cookie",
        "session=3f9a1c6be07d4b52a8e1f0c9d2b7a4e6; theme=dark; consent=1",
    ),
    ("X-Forwarded-For", "10.1.2.3, 203.0.113.195, 10.0.0.2"),
    ("X-Request-Id", "7b1f0c2e-9d4a-4f8e-b6a1-2c3d4e5f6a7b"),
];

/// The client [`HEADERS`] name: the first global `X-Forwarded-For` entry.
const CLIENT: &str = "203.0.113.195";
/// The socket peer: the proxy in front of the application.
const PEER: &str = "10.0.0.1:52114";

/// `GET /api/items?page=2` with [`HEADERS`], from [`PEER`].
fn typical_request(headers: &dyn HeaderPairs) -> RequestInfo<'_> {
    RequestInfo::new("GET", "/api/items", headers)
        .query(Some("page=2"))
        .peer(Some(PEER.parse().unwrap()))
        .scheme("https")
}

/// The response every benchmarked request gets.
fn response() -> ResponseInfo<'static> {
    ResponseInfo::new(200)
        .content_length(Some(512))
        .content_type(Some("application/json"))
}

/// Opens a request and copies it (what an extractor does when a handler
/// asks), panicking unless `open` takes the recording path.
fn open(agent: &Agent, info: &RequestInfo<'_>) -> RequestSlot {
    match agent.open(|| *info, None) {
        Open::Request(mut slot) => {
            slot.handle_with(|| *info);
            slot
        }
        other => panic!("open should record the request, got {other:?}"),
    }
}

/// The `track_event` call of the benches: three properties of mixed types.
fn track_payment_failed(sq: &Sqreen) {
    sq.track_event("payment.failed").with_properties([
        ("amount", PropertyValue::from(42)),
        ("currency", PropertyValue::from("eur")),
        ("retry", PropertyValue::from(true)),
    ]);
}

/// Holds the agent thread inside a batch call until released.
#[derive(Default)]
struct Gate {
    /// (a batch call is waiting, released)
    state: Mutex<(bool, bool)>,
    cvar: Condvar,
}

impl Gate {
    fn hold(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        self.cvar.notify_all();
        while !state.1 {
            state = self.cvar.wait(state).unwrap();
        }
    }

    fn wait_held(&self, timeout: Duration) -> bool {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .cvar
            .wait_timeout_while(state, timeout, |s| !s.0)
            .unwrap();
        state.0
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.cvar.notify_all();
    }
}

/// A [`CaptureBackend`] that answers batches without keeping them and,
/// when gated, blocks the agent thread in its batch calls until released.
struct BenchBackend {
    capture: CaptureBackend,
    gate: Option<Arc<Gate>>,
}

impl Transport for BenchBackend {
    fn call(&self, request: ApiRequest) -> BoxFuture<Result<ApiResponse, TransportError>> {
        if request.path != BATCH_PATH {
            return self.capture.call(request);
        }
        if let Some(gate) = &self.gate {
            // Synchronous on purpose: the agent thread stops draining its queue.
            gate.hold();
        }
        Box::pin(async {
            Ok(ApiResponse {
                status: 200,
                body: br#"{"status":true}"#.to_vec(),
            })
        })
    }
}

/// Starts a logged-in agent on a [`BenchBackend`].
fn start_bench_agent(config: Config, gate: Option<Arc<Gate>>) -> AgentGuard {
    let backend = BenchBackend {
        capture: CaptureBackend::new(),
        gate,
    };
    let guard = Agent::start(config, Arc::new(backend));
    assert!(guard.wait_ready(Duration::from_secs(10)), "agent login");
    guard
}

/// An agent whose thread is held in a batch call, so it neither drains its
/// queue nor competes for a core: records queue up to the configured
/// `event_queue_length`, then are dropped at `close`. Dropping it releases
/// the thread, then shuts the agent down.
struct StalledAgent {
    guard: AgentGuard,
    gate: Arc<Gate>,
}

impl std::ops::Deref for StalledAgent {
    type Target = Agent;
    fn deref(&self) -> &Agent {
        &self.guard
    }
}

impl Drop for StalledAgent {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// Starts a logged-in agent and stalls it on its first record.
fn start_stalled_agent(config: ConfigBuilder) -> StalledAgent {
    let gate = Arc::new(Gate::default());
    let config = config
        .batch_size(1)
        .shutdown_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let guard = start_bench_agent(config, Some(Arc::clone(&gate)));
    let mut record = open(&guard, &typical_request(&HEADERS));
    track_payment_failed(&record.handle());
    record.close(response());
    assert!(gate.wait_held(Duration::from_secs(10)), "batch call held");
    StalledAgent { guard, gate }
}

/// `open` + `close` of a typical untracked request (its handler never asks
/// for the handle), without and with an IP action loaded.
fn open_close_untracked(c: &mut Criterion) {
    let mut group = c.benchmark_group("open_close_untracked");
    let info = typical_request(&HEADERS);
    let open_close = |agent: &Agent| {
        if let Open::Request(slot) = agent.open(|| *black_box(&info), None) {
            slot.close(response());
        }
    };

    {
        // No IP action loaded: the client IP is left to the agent thread.
        let (guard, _backend) = start_captured(test_config().build().unwrap());
        drop(open(&guard, &info));
        group.bench_function("no_ip_actions", |b| b.iter(|| open_close(&guard)));
        assert_eq!(
            guard.stats().records_queued,
            0,
            "untracked records stay local"
        );
    }

    {
        // An IP action loaded: `open` resolves the client IP and matches it.
        let backend = CaptureBackend::new();
        backend.set_actions(json!([{
            "action_id": "bench-block",
            "action": "block_ip",
            "parameters": {"ip_cidr": ["81.2.69.0/24"]},
        }]));
        let guard = Agent::start(test_config().build().unwrap(), Arc::new(backend.clone()));
        assert!(guard.wait_ready(Duration::from_secs(10)), "agent login");
        // The action is live: a client inside the range is answered.
        let blocked = [("X-Forwarded-For", "81.2.69.160")];
        assert!(matches!(
            guard.open(|| RequestInfo::new("GET", "/", &blocked), None),
            Open::Respond(_)
        ));
        drop(open(&guard, &info));
        group.bench_function("ip_action_loaded", |b| b.iter(|| open_close(&guard)));
    }
    group.finish();
}

/// `open` + `close` of a typical untracked request whose client no action
/// covers, with 0, 100 and 100 000 IP actions loaded (the lookup misses:
/// the common case).
fn action_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("action_lookup");
    let info = typical_request(&HEADERS);
    for n in [0u32, 100, 100_000] {
        let backend = CaptureBackend::new();
        let actions: Vec<Value> = (0..n)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
                json!({"action_id": format!("a{i}"), "action": "block_ip",
                    "parameters": {"ip_cidr": [format!("{ip}/32")]}})
            })
            .collect();
        backend.set_actions(Value::Array(actions));
        let guard = Agent::start(test_config().build().unwrap(), Arc::new(backend.clone()));
        assert!(guard.wait_ready(Duration::from_secs(30)), "agent login");
        if n > 0 {
            let blocked = [("X-Forwarded-For", "11.0.0.7")];
            assert!(matches!(
                guard.open(|| RequestInfo::new("GET", "/", &blocked), None),
                Open::Respond(_)
            ));
        }
        drop(open(&guard, &info));
        group.bench_function(format!("{n}_actions"), |b| {
            b.iter(|| {
                if let Open::Request(slot) = guard.open(|| *black_box(&info), None) {
                    slot.close(response());
                }
            });
        });
    }
    group.finish();
}

/// One `track_event` with three properties on an open record (agent thread idle, then busy).
fn track_event_3_props(c: &mut Criterion) {
    let mut group = c.benchmark_group("track_event_3_props");
    let info = typical_request(&HEADERS);
    // A fresh record per iteration, opened in untimed setup; the record is
    // returned so that closing (and queueing or dropping) it is untimed too.
    // Batches of 32 keep the records of a batch in cache, as a record is
    // when its handler runs; criterion's size-based batches of thousands of
    // records (about 1 KiB each) made every call start with cache misses.
    let bench = |b: &mut criterion::Bencher<'_>, agent: &Agent| {
        b.iter_batched(
            || {
                let mut record = open(agent, &info);
                let sq = record.handle();
                (record, sq)
            },
            |(record, sq)| {
                track_payment_failed(black_box(&sq));
                (record, sq)
            },
            BatchSize::NumIterations(32),
        );
    };

    {
        // The agent thread parked: the call's own cost.
        let agent = start_stalled_agent(test_config());
        group.bench_function("agent_idle", |b| bench(b, &agent));
    }

    {
        // The agent thread turning the previous batches' records into events
        // at full speed on the other core, as under sustained tracking load.
        let guard = start_bench_agent(test_config().build().unwrap(), None);
        group.bench_function("agent_busy", |b| bench(b, &guard));
    }
    group.finish();
}

/// A request record as the agent thread builds it, before scrubbing: query,
/// form with a password, JSON body with a card number, headers, properties.
fn typical_record() -> Value {
    json!({
        "event_type": "request_record",
        "version": "20171208",
        "rid": "0c6f2e7a-55a4-4d8e-9a51-3f1b7c2d9e10",
        "client_ip": CLIENT,
        "start": "2026-05-04T10:15:30.120Z",
        "end": "2026-05-04T10:15:30.164Z",
        "request": {
            "rid": "7b1f0c2e-9d4a-4f8e-b6a1-2c3d4e5f6a7b",
            "verb": "POST",
            "path": "/api/checkout",
            "host": "shop.example.com",
            "port": "443",
            "scheme": "https",
            "remote_ip": "10.0.0.1",
            "remote_port": "52114",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "referer": "https://shop.example.com/cart",
            "headers": [
                ["X-Forwarded-For", "10.1.2.3, 203.0.113.195, 10.0.0.2"],
                ["Content-Type", "application/json"],
                ["Content-Length", "214"],
                ["Host", "shop.example.com"],
                ["X-Request-Id", "7b1f0c2e-9d4a-4f8e-b6a1-2c3d4e5f6a7b"],
            ],
            "parameters": {
                "query": {"step": ["payment"], "lang": ["en"]},
                "form": {
                    "username": ["alice"],
                    "password": ["hunter2"],
                    "remember": ["on"],
                },
                "json": {
                    "order": {
                        "items": [
                            {"sku": "A-1042", "qty": 2, "price": 1999},
                            {"sku": "B-7", "qty": 1, "price": 4500},
                        ],
                        "coupon": "SPRING10",
                        "payment": {
                            "method": "card",
                            "card": {
                                "holder": "Alice Example",
                                "number": "4111 1111 1111 1111",
                                "expiry": "12/29",
                            },
                        },
                    },
                    "notes": "leave at the door",
                },
            },
        },
        "response": {"status": 402, "content_length": 87, "content_type": "application/json"},
        "observed": {"sdk": [{
            "time": "2026-05-04T10:15:30.160Z",
            "name": "track",
            "args": ["payment.failed", {
                "properties": {"amount": 42, "currency": "eur", "retry": true},
                "user_identifiers": {"uid": "u-1842"},
            }],
        }]},
    })
}

/// `Scrubber::scrub_json` over a typical request record (clone untimed).
fn scrub_typical_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("scrub_typical_record");
    let scrubber = Scrubber::default();
    let record = typical_record();
    let mut check = record.clone();
    assert_eq!(scrubber.scrub_json(&mut check), 2);
    let params = &check["request"]["parameters"];
    assert_eq!(params["form"]["password"][0], REDACTED);
    assert_eq!(
        params["json"]["order"]["payment"]["card"]["number"],
        REDACTED
    );
    group.bench_function("default_scrubber", |b| {
        b.iter_batched_ref(
            || record.clone(),
            |v| scrubber.scrub_json(black_box(v)),
            // Small batches: the agent thread scrubs a record it just built, in cache.
            BatchSize::NumIterations(8),
        );
    });
    group.finish();
}

/// `ClientIpResolver::resolve` over [`HEADERS`] in three situations.
fn client_ip(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_ip");
    let peer = Some(PEER.parse::<SocketAddr>().unwrap().ip());
    let client = Some(CLIENT.parse().unwrap());
    let default = ClientIpResolver::default();
    let without_xff: Vec<(&str, &str)> = HEADERS
        .iter()
        .copied()
        .filter(|(name, _)| *name != "X-Forwarded-For")
        .collect();
    let trusted = ClientIpResolver::new(
        None,
        IpHeaderFormat::Plain,
        vec!["10.0.0.0/8".parse().unwrap()],
    );
    assert_eq!(default.resolve(&HEADERS, peer), client);
    assert_eq!(default.resolve(&without_xff, peer), peer);
    assert_eq!(trusted.resolve(&HEADERS, peer), client);

    // Default mode, `X-Forwarded-For: private, global, private`.
    group.bench_function("xff_3_entries", |b| {
        b.iter(|| default.resolve(black_box(&HEADERS), black_box(peer)));
    });
    // Default mode, no forwarding header: every header is looked at, the peer answers.
    group.bench_function("no_forwarding_headers", |b| {
        b.iter(|| default.resolve(black_box(&without_xff), black_box(peer)));
    });
    // Spoof-proof mode (trusted 10.0.0.0/8): the chain is walked right to left.
    group.bench_function("trusted_proxies", |b| {
        b.iter(|| trusted.resolve(black_box(&HEADERS), black_box(peer)));
    });
    group.finish();
}

/// open + track + close when the queue is full (record dropped), against the same with room.
fn queue_full_never_blocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_full_never_blocks");
    let info = typical_request(&HEADERS);
    let request = |agent: &Agent| {
        let mut record = open(agent, black_box(&info));
        track_payment_failed(&record.handle());
        record.close(response());
    };

    {
        // One slot, and an agent thread stuck in its first batch call: from
        // the second record on the queue stays full and every further record is dropped.
        let agent = start_stalled_agent(test_config().event_queue_length(1));
        request(&agent);
        request(&agent);
        let before = agent.stats();
        assert_eq!(
            (before.records_queued, before.records_dropped_queue_full),
            (2, 1),
            "the second record fills the queue, the third is dropped"
        );
        group.bench_function("full", |b| b.iter(|| request(&agent)));
        assert_eq!(
            agent.stats().records_queued,
            2,
            "nothing entered the full queue"
        );
    }

    {
        // The default queue, drained by the agent thread between timed
        // chunks (flush untimed), so every timed record is accepted.
        const CHUNK: u64 = 1_000;
        let guard = start_bench_agent(test_config().build().unwrap(), None);
        group.sample_size(20);
        group.bench_function("with_room", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let start = Instant::now();
                    for _ in 0..n {
                        request(&guard);
                    }
                    total += start.elapsed();
                    left -= n;
                    assert!(guard.flush(Duration::from_secs(30)), "flush");
                }
                total
            });
        });
        assert_eq!(guard.stats().records_dropped_queue_full, 0);
    }
    group.finish();
}

/// The benchmark groups, in the order they run (a private module: the
/// macro's `pub fn` needs no documentation there).
mod groups {
    criterion::criterion_group!(
        benches,
        super::open_close_untracked,
        super::action_lookup,
        super::track_event_3_props,
        super::scrub_typical_record,
        super::client_ip,
        super::queue_full_never_blocks
    );
}
criterion_main!(groups::benches);
