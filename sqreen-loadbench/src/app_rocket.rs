//! The route on rocket 0.5, with `sqreen_rocket::SqreenFairing` attached in
//! the middleware modes, served by one worker thread (`workers = 1`).

use std::collections::HashSet;
use std::net::SocketAddr;

use rocket::config::{LogLevel, Shutdown, Sig};
use sqreen_core::Agent;
use sqreen_rocket::{Sqreen, SqreenFairing};

use crate::{HELLO, Mode};

/// `bare` and `installed`: no guard, nothing tracked.
#[rocket::get("/")]
fn hello() -> &'static str {
    HELLO
}

/// `middleware`: takes the handle, tracks nothing.
#[rocket::get("/")]
fn hello_untracked(_sq: Sqreen) -> &'static str {
    HELLO
}

/// `track`: one 3-property event.
#[rocket::get("/")]
fn hello_tracked(sq: Sqreen) -> &'static str {
    crate::track(&sq);
    HELLO
}

/// Rocket's release configuration on `addr`: one worker, quiet logs,
/// graceful shutdown on SIGTERM and SIGINT.
fn config(addr: SocketAddr) -> rocket::Config {
    rocket::Config {
        address: addr.ip(),
        port: addr.port(),
        workers: 1,
        log_level: LogLevel::Off,
        shutdown: Shutdown {
            ctrlc: true,
            signals: HashSet::from([Sig::Term, Sig::Int]),
            ..Shutdown::default()
        },
        ..rocket::Config::release_default()
    }
}

/// Serves until SIGTERM/SIGINT on a tokio runtime with one worker thread,
/// as `rocket::execute` builds it with `workers = 1`.
pub fn serve(addr: SocketAddr, mode: Mode, agent: Agent) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("rocket-worker-thread")
        .enable_all()
        .build()?;
    let rocket = rocket::custom(config(addr));
    let rocket = match mode {
        Mode::Bare => rocket.mount("/", rocket::routes![hello]),
        Mode::Installed => rocket
            .attach(SqreenFairing::with_agent(agent))
            .mount("/", rocket::routes![hello]),
        Mode::Middleware => rocket
            .attach(SqreenFairing::with_agent(agent))
            .mount("/", rocket::routes![hello_untracked]),
        Mode::Track => rocket
            .attach(SqreenFairing::with_agent(agent))
            .mount("/", rocket::routes![hello_tracked]),
    };
    crate::report(&format!("rocket ({}) launching on {addr}", mode.name()));
    match runtime.block_on(rocket.launch()) {
        Ok(_) => Ok(()),
        // A shutdown that had to cut lingering connections is still the stop asked for.
        Err(e) if matches!(e.kind(), rocket::error::ErrorKind::Shutdown(..)) => Ok(()),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}
