//! `loadbench-server`: the hello-world server the framework load benchmark
//! (`scripts/loadbench.sh`, figures in `BENCHMARKS.md`) drives with `wrk`.
//!
//! ```text
//! loadbench-server --framework axum|actix|rocket|warp --mode bare|installed|middleware|track --addr 127.0.0.1:PORT
//! ```
//!
//! Every framework serves the same route, `GET /` → `200 hello`
//! (`text/plain; charset=utf-8`), in one of three modes:
//!
//! | mode | what runs |
//! |---|---|
//! | `bare` | the route, no sqreen middleware |
//! | `installed` | the framework's sqreen adapter installed; the handler is `bare`'s (it never asks for the handle) |
//! | `middleware` | the adapter installed; the handler takes the `Sqreen` handle and tracks nothing |
//! | `track` | the same, and the handler tracks one `bench.hit` event with 3 properties (int, string, bool) |
//!
//! The agent is real and logged in, in every mode (idle in `bare`): it runs
//! its own thread in this process and talks to an in-process backend
//! ([`transport::DiscardBackend`]) that answers the protocol and discards
//! what it receives, counting the events. Each framework serves on ONE
//! worker thread (the benchmark pins the whole process to one core):
//! axum and warp on a tokio current-thread runtime, rocket on a one-worker
//! runtime with `workers = 1`, actix-web with `HttpServer::workers(1)`.
//!
//! SIGTERM or SIGINT stops the server gracefully; the agent then flushes
//! and logs out, and one `loadbench-stats` line with its counters goes to
//! stderr, e.g.
//! `loadbench-stats framework=axum mode=track records_queued=… events_sent=… dropped_queue_full=… …`.

mod app_actix;
mod app_axum;
mod app_rocket;
mod app_warp;
mod transport;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sqreen_core::{Agent, Config, PropertyValue, Stats};

use crate::transport::DiscardBackend;

/// The command line's usage, printed on a bad argument.
const USAGE: &str = "usage: loadbench-server --framework axum|actix|rocket|warp \
                     --mode bare|installed|middleware|track --addr 127.0.0.1:PORT";

/// Records the agent may hold before dropping new ones: large, so that a
/// burst of tracked requests is queued rather than dropped.
const EVENT_QUEUE_LENGTH: usize = 100_000;

/// How long the agent may take, at exit, to send what is still queued.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The framework serving the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framework {
    /// axum 0.8 with `sqreen_axum::SqreenLayer`.
    Axum,
    /// actix-web 4 with `sqreen_actix::SqreenMiddleware`.
    Actix,
    /// rocket 0.5 with `sqreen_rocket::SqreenFairing`.
    Rocket,
    /// warp 0.4 with `sqreen_warp::SqreenWrapper`.
    Warp,
}

impl Framework {
    /// The name used on the command line and in the stats line.
    fn name(self) -> &'static str {
        match self {
            Self::Axum => "axum",
            Self::Actix => "actix",
            Self::Rocket => "rocket",
            Self::Warp => "warp",
        }
    }
}

/// What the server adds around the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No middleware.
    Bare,
    /// The adapter installed; the handler never asks for the handle.
    Installed,
    /// The adapter installed; the handler takes `Sqreen` and tracks nothing.
    Middleware,
    /// The adapter installed; the handler tracks one event per request.
    Track,
}

impl Mode {
    /// The name used on the command line and in the stats line.
    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Installed => "installed",
            Self::Middleware => "middleware",
            Self::Track => "track",
        }
    }
}

/// The parsed command line.
#[derive(Debug)]
struct Args {
    /// `--framework`.
    framework: Framework,
    /// `--mode`.
    mode: Mode,
    /// `--addr`.
    addr: SocketAddr,
}

impl Args {
    /// Parses `--framework X --mode Y --addr Z` (in any order, each once).
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let (mut framework, mut mode, mut addr) = (None, None, None);
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .ok_or_else(|| format!("`{flag}` needs a value"))?;
            match flag.as_str() {
                "--framework" => {
                    framework = Some(match value.as_str() {
                        "axum" => Framework::Axum,
                        "actix" => Framework::Actix,
                        "rocket" => Framework::Rocket,
                        "warp" => Framework::Warp,
                        other => return Err(format!("unknown framework `{other}`")),
                    });
                }
                "--mode" => {
                    mode = Some(match value.as_str() {
                        "bare" => Mode::Bare,
                        "installed" => Mode::Installed,
                        "middleware" => Mode::Middleware,
                        "track" => Mode::Track,
                        other => return Err(format!("unknown mode `{other}`")),
                    });
                }
                "--addr" => {
                    addr = Some(
                        value
                            .parse()
                            .map_err(|e| format!("`--addr {value}`: {e}"))?,
                    );
                }
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Ok(Self {
            framework: framework.ok_or("`--framework` is required")?,
            mode: mode.ok_or("`--mode` is required")?,
            addr: addr.ok_or("`--addr` is required")?,
        })
    }
}

/// The one event `track` mode records per request: 3 properties, an
/// integer, a string and a boolean (as `PropertyValue`s, the SDK's type for
/// a list of mixed values).
pub(crate) fn track(sq: &sqreen_core::Sqreen) {
    sq.track_event("bench.hit").with_properties([
        ("a", PropertyValue::from(1)),
        ("b", PropertyValue::from("two")),
        ("c", PropertyValue::from(true)),
    ]);
}

/// The body every mode answers.
pub(crate) const HELLO: &str = "hello";

/// Completes on SIGTERM or SIGINT; the servers of axum, warp and actix stop
/// gracefully on it (rocket handles the signals itself).
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    /// Completes on the next `kind` signal, never if it cannot be listened for.
    async fn on(kind: SignalKind, name: &str) {
        match signal(kind) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                report(&format!("cannot listen for {name}: {e}"));
                std::future::pending::<()>().await;
            }
        }
    }
    tokio::select! {
        () = on(SignalKind::terminate(), "SIGTERM") => {},
        () = on(SignalKind::interrupt(), "SIGINT") => {},
    }
}

/// Writes one diagnostic line to stderr (this binary's only output).
#[expect(
    clippy::print_stderr,
    reason = "a bench binary reports on stderr, read by scripts/loadbench.sh"
)]
pub(crate) fn report(line: &str) {
    eprintln!("loadbench-server: {line}");
}

/// The `loadbench-stats` line printed at exit.
fn stats_line(args: &Args, stats: &Stats, backend: &DiscardBackend) -> String {
    format!(
        "loadbench-stats framework={} mode={} records_queued={} events_sent={} \
         dropped_queue_full={} dropped_retry_buffer={} events_pending={} batches_sent={} \
         batches_failed={} backend_batches={} backend_bad_batches={} backend_batch_bytes={}",
        args.framework.name(),
        args.mode.name(),
        stats.records_queued,
        stats.events_sent,
        stats.records_dropped_queue_full,
        stats.events_dropped_retry_buffer,
        stats.events_pending,
        stats.batches_sent,
        stats.batches_failed,
        backend.batches(),
        backend.bad_batches(),
        backend.batch_bytes(),
    )
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            report(&format!("{e}\n{USAGE}"));
            return ExitCode::from(2);
        }
    };

    let backend = Arc::new(DiscardBackend::new());
    let config = Config::builder()
        .token("bench")
        .app_name("loadbench")
        .event_queue_length(EVENT_QUEUE_LENGTH)
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .build()
        .expect("the fixed bench configuration is valid");
    let guard = Agent::start(config, Arc::clone(&backend) as _);
    if !guard.wait_ready(Duration::from_secs(10)) {
        report("the agent did not log in to the in-process backend");
        return ExitCode::FAILURE;
    }
    let agent = guard.agent().clone();

    let served = match args.framework {
        Framework::Axum => app_axum::serve(args.addr, args.mode, agent.clone()),
        Framework::Actix => app_actix::serve(args.addr, args.mode, agent.clone()),
        Framework::Rocket => app_rocket::serve(args.addr, args.mode, agent.clone()),
        Framework::Warp => app_warp::serve(args.addr, args.mode, agent.clone()),
    };

    // The server has stopped: send what is queued, then log out.
    let delivered = agent.shutdown(SHUTDOWN_TIMEOUT);
    drop(guard);
    report(&stats_line(&args, &agent.stats(), &backend));
    if !delivered {
        report("the agent did not deliver everything within the shutdown timeout");
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&format!("server failed: {e}"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, String> {
        Args::parse(line.split_whitespace().map(str::to_owned))
    }

    /// The three flags, in any order; anything else is refused.
    #[test]
    fn parses_the_command_line() {
        let args = parse("--mode track --addr 127.0.0.1:8080 --framework warp").unwrap();
        assert_eq!(args.framework, Framework::Warp);
        assert_eq!(args.mode, Mode::Track);
        assert_eq!(args.addr, "127.0.0.1:8080".parse().unwrap());
        assert!(parse("--framework axum --mode bare").is_err());
        assert!(parse("--framework tide --mode bare --addr 127.0.0.1:1").is_err());
        assert!(parse("--framework axum --mode fast --addr 127.0.0.1:1").is_err());
        assert!(parse("--framework axum --mode bare --addr localhost").is_err());
        assert!(parse("--framework axum --mode bare --addr").is_err());
    }
}
