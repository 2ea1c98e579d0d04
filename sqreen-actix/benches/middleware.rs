//! In-process cost of [`SqreenMiddleware`] per request, on actix's test
//! service: the same hello-world route in four modes.
//!
//! ```text
//! cargo bench -p sqreen-actix --bench middleware -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! | bench | what runs |
//! |---|---|
//! | `actix/bare` | the route, no middleware |
//! | `actix/middleware_installed` | the middleware on a logged-in agent; the handler is `bare`'s (it never takes the handle) |
//! | `actix/middleware_untracked` | the middleware; the handler takes the `Sqreen` handle and tracks nothing |
//! | `actix/middleware_track_event` | the same, and the handler tracks one event with 3 properties |
//!
//! Each iteration builds the request (`TestRequest`), calls the service and
//! drops the response, so the difference between modes is the middleware's
//! cost. The agent is logged in to the core's in-memory backend, which
//! answers batches without keeping them (memory stays flat however long
//! criterion runs), with a large queue so no record is dropped; the bench
//! checks that after each run.

// Benches abort loudly on a broken setup rather than measure the wrong path.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::rt::{System, SystemRunner};
use actix_web::{App, Error, HttpResponse, test, web};
use criterion::{Criterion, criterion_main};
use sqreen_actix::{Sqreen, SqreenMiddleware};
use sqreen_core::protocol::BATCH_PATH;
use sqreen_core::test::{CaptureBackend, test_config};
use sqreen_core::transport::{ApiRequest, ApiResponse, BoxFuture, Transport, TransportError};
use sqreen_core::{Agent, AgentGuard};

/// The in-memory backend, except that batches are acknowledged and dropped.
struct BenchBackend(CaptureBackend);

impl Transport for BenchBackend {
    fn call(&self, request: ApiRequest) -> BoxFuture<Result<ApiResponse, TransportError>> {
        if request.path != BATCH_PATH {
            return self.0.call(request);
        }
        Box::pin(async {
            Ok(ApiResponse {
                status: 200,
                body: br#"{"status":true}"#.to_vec(),
            })
        })
    }
}

/// A logged-in agent whose queue is large enough to never drop a record.
fn agent() -> AgentGuard {
    let config = test_config()
        .event_queue_length(10_000_000)
        .batch_size(1000)
        .build()
        .unwrap();
    let guard = Agent::start(config, Arc::new(BenchBackend(CaptureBackend::new())));
    assert!(guard.wait_ready(Duration::from_secs(10)), "agent login");
    guard
}

async fn hello() -> HttpResponse {
    HttpResponse::Ok().body("Hello, World!")
}

async fn hello_untracked(_sq: Sqreen) -> HttpResponse {
    HttpResponse::Ok().body("Hello, World!")
}

async fn hello_tracked(sq: Sqreen) -> HttpResponse {
    sq.track_event("hello.viewed")
        .with_properties([("plan", "pro"), ("country", "fr")])
        .with_properties([("items", 3)]);
    HttpResponse::Ok().body("Hello, World!")
}

/// `GET /` with a browser's usual headers, from a public address.
// Built by `to_request` at each call site: actix-web does not name its type.
fn request() -> test::TestRequest {
    test::TestRequest::get()
        .uri("/")
        .insert_header(("Host", "bench.example.com"))
        .insert_header((
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ))
        .insert_header(("Accept", "text/html,application/xhtml+xml"))
        .peer_addr("203.0.113.195:52114".parse().unwrap())
}

/// Times `iters` requests through `app`, all inside one `block_on`.
fn measure<S, R, B>(system: &SystemRunner, app: &S, make: impl Fn() -> R, iters: u64) -> Duration
where
    S: Service<R, Response = ServiceResponse<B>, Error = Error>,
{
    system.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let res = app.call(make()).await.unwrap();
            black_box(res);
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let system = System::new();
    let agent = agent();
    let mut group = c.benchmark_group("actix");

    let bare = system.block_on(test::init_service(
        App::new().route("/", web::get().to(hello)),
    ));
    group.bench_function("bare", |b| {
        b.iter_custom(|n| measure(&system, &bare, || request().to_request(), n))
    });

    let installed = system.block_on(test::init_service(
        App::new()
            .wrap(SqreenMiddleware::with_agent(agent.agent().clone()))
            .route("/", web::get().to(hello)),
    ));
    group.bench_function("middleware_installed", |b| {
        b.iter_custom(|n| measure(&system, &installed, || request().to_request(), n))
    });

    let untracked = system.block_on(test::init_service(
        App::new()
            .wrap(SqreenMiddleware::with_agent(agent.agent().clone()))
            .route("/", web::get().to(hello_untracked)),
    ));
    group.bench_function("middleware_untracked", |b| {
        b.iter_custom(|n| measure(&system, &untracked, || request().to_request(), n))
    });

    let tracked = system.block_on(test::init_service(
        App::new()
            .wrap(SqreenMiddleware::with_agent(agent.agent().clone()))
            .route("/", web::get().to(hello_tracked)),
    ));
    group.bench_function("middleware_track_event", |b| {
        b.iter_custom(|n| measure(&system, &tracked, || request().to_request(), n))
    });
    group.finish();

    assert!(agent.flush(Duration::from_secs(30)), "final flush");
    let stats = agent.stats();
    assert_eq!(stats.records_dropped_queue_full, 0, "records were dropped");
    eprintln!("records queued: {}", stats.records_queued);
}

/// The benchmark group (a private module: the macro's `pub fn` needs no
/// documentation there).
mod groups {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(groups::benches);
