//! In-process cost of the fairing per request, through rocket's async local
//! client: the same hello-world route bare, with the fairing and nothing
//! tracked, and with the fairing and one 3-property `track_event`.
//!
//! `cargo bench -p sqreen-rocket --bench middleware`

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use rocket::config::LogLevel;
use rocket::local::asynchronous::Client;
use rocket::{Build, Rocket};
use sqreen_core::test::{start_captured, test_config};
use sqreen_rocket::{Sqreen, SqreenFairing};

#[rocket::get("/")]
fn hello() -> &'static str {
    "Hello, world!"
}

#[rocket::get("/")]
fn hello_tracked(sq: Sqreen) -> &'static str {
    sq.track_event("hello.viewed")
        .with_properties([("a", 1), ("b", 2), ("c", 3)]);
    "Hello, world!"
}

fn quiet() -> Rocket<Build> {
    rocket::custom(rocket::Config {
        log_level: LogLevel::Off,
        ..rocket::Config::release_default()
    })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A logged-in agent whose queue never fills during the run.
    let (guard, _backend) = start_captured(
        test_config()
            .event_queue_length(50_000_000)
            .build()
            .unwrap(),
    );
    let agent = guard.agent().clone();

    let clients = [
        ("bare", quiet().mount("/", rocket::routes![hello])),
        (
            "fairing_nothing_tracked",
            quiet()
                .attach(SqreenFairing::with_agent(agent.clone()))
                .mount("/", rocket::routes![hello]),
        ),
        (
            "fairing_one_event",
            quiet()
                .attach(SqreenFairing::with_agent(agent.clone()))
                .mount("/", rocket::routes![hello_tracked]),
        ),
    ]
    .map(|(name, rocket)| (name, runtime.block_on(Client::untracked(rocket)).unwrap()));

    let mut group = c.benchmark_group("rocket");
    for (name, client) in &clients {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let response = client.get("/").dispatch().await;
                        black_box(response.status());
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    drop(clients);
    drop(guard);
}

criterion_group!(benches, bench);
criterion_main!(benches);
