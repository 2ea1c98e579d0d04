//! The `sqreen-server` command line: `serve`, and `app create`, `app delete`,
//! `app rotate-token`.
//!
//! Logs go to stderr (filtered by `RUST_LOG`, default `info`); stdout holds
//! only what a script reads: the listening address, a generated admin key,
//! a new or rotated app token (its last line).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use sqreen_server::listen::{ConnectionLimits, DEFAULT_MAX_CONNECTIONS};
use sqreen_server::{
    DEFAULT_CONCURRENT_BATCHES, DEFAULT_MAX_BATCH_BYTES, Server, ServerConfig, SessionSecret,
};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's allocator: ingestion allocates and frees
/// SQLite pages and parsed batches at a high rate (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Self-hosted backend for sqreen agents.
#[derive(Parser, Debug)]
#[command(name = "sqreen-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: a boxed `Serve` would save nothing worth its noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the agent protocol and the admin API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "SQREEN_SERVER_ADDR", default_value = "127.0.0.1:8700")]
        addr: SocketAddr,
        /// `sqlite://PATH` (created if missing) or `postgres://…`.
        #[arg(
            long,
            env = "SQREEN_SERVER_DATABASE",
            default_value = "sqlite://sqreen.db"
        )]
        database: String,
        /// Admin API key (at least 32 characters); generated at first start
        /// (printed once) when absent. Prefer the environment variable or
        /// `--admin-key-file`: a command line is visible to every local user.
        #[arg(
            long,
            env = "SQREEN_SERVER_ADMIN_KEY",
            hide_env_values = true,
            conflicts_with = "admin_key_file"
        )]
        admin_key: Option<String>,
        /// A file holding the admin key (its first line).
        #[arg(long, env = "SQREEN_SERVER_ADMIN_KEY_FILE")]
        admin_key_file: Option<PathBuf>,
        /// The dashboard's session secret file, created (mode 0600) when
        /// missing; default: beside the SQLite database, or
        /// `sqreen-server.session-key` in the working directory. Give every
        /// server process of one database the same file.
        #[arg(
            long,
            env = "SQREEN_SERVER_SESSION_SECRET_FILE",
            conflicts_with = "session_secret"
        )]
        session_secret_file: Option<PathBuf>,
        /// The dashboard's session secret itself (at least 32 bytes).
        #[arg(long, env = "SQREEN_SERVER_SESSION_SECRET", hide_env_values = true)]
        session_secret: Option<String>,
        /// Seconds between agent heartbeats, told to agents at login.
        #[arg(long, env = "SQREEN_SERVER_HEARTBEAT_DELAY", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..=86_400))]
        heartbeat_delay: u64,
        /// Largest batch body accepted, in bytes (after gzip decompression).
        #[arg(long, env = "SQREEN_SERVER_MAX_BATCH_BYTES", default_value_t = DEFAULT_MAX_BATCH_BYTES as u64,
              value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
        max_batch_bytes: u64,
        /// Batch bodies read at once; the others wait their turn.
        #[arg(long, env = "SQREEN_SERVER_CONCURRENT_BATCHES", default_value_t = DEFAULT_CONCURRENT_BATCHES as u64,
              value_parser = clap::value_parser!(u64).range(1..=1024))]
        concurrent_batches: u64,
        /// Deadline of one request, from its head to its answer (e.g. `60s`).
        #[arg(long, env = "SQREEN_SERVER_REQUEST_TIMEOUT", default_value = "60s",
              value_parser = duration)]
        request_timeout: Duration,
        /// Connections served at once; more wait in the kernel's backlog.
        #[arg(long, env = "SQREEN_SERVER_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS as u64,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        max_connections: u64,
        /// Time to read a request's head, and to wait idle for the next one
        /// on a kept-alive connection (e.g. `10s`).
        #[arg(long, env = "SQREEN_SERVER_HEADER_READ_TIMEOUT", default_value = "10s",
              value_parser = duration)]
        header_read_timeout: Duration,
        /// How long events, alerts and ended actions are kept (e.g. `30d`,
        /// `12h`), or `off` to keep them forever.
        #[arg(long, env = "SQREEN_SERVER_RETENTION", default_value = "30d",
              value_parser = retention)]
        retention: Retention,
        /// Let webhooks reach loopback, private, link-local and other
        /// non-public addresses (refused by default).
        #[arg(long, env = "SQREEN_SERVER_ALLOW_PRIVATE_WEBHOOKS")]
        allow_private_webhooks: bool,
        /// A token (at least 32 characters) that opens `GET /metrics`
        /// (`Authorization: Bearer <token>`) besides the admin key, for a
        /// Prometheus scraper.
        #[arg(long, env = "SQREEN_SERVER_METRICS_TOKEN", hide_env_values = true)]
        metrics_token: Option<String>,
    },
    /// Manage applications.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AppCommand {
    /// Create an application; prints its agent token as the last line.
    Create {
        /// The application's name (unique).
        name: String,
        /// `sqlite://PATH` or `postgres://…`.
        #[arg(
            long,
            env = "SQREEN_SERVER_DATABASE",
            default_value = "sqlite://sqreen.db"
        )]
        database: String,
    },
    /// Delete an application: its token and sessions stop working at once,
    /// and its actions, alerts and events are deleted.
    Delete {
        /// The application's name, or its id.
        app: String,
        /// `sqlite://PATH` or `postgres://…`.
        #[arg(
            long,
            env = "SQREEN_SERVER_DATABASE",
            default_value = "sqlite://sqreen.db"
        )]
        database: String,
    },
    /// Give an application a new agent token; the old one and its sessions
    /// stop working at once. Prints the new token as the last line.
    RotateToken {
        /// The application's name, or its id.
        app: String,
        /// `sqlite://PATH` or `postgres://…`.
        #[arg(
            long,
            env = "SQREEN_SERVER_DATABASE",
            default_value = "sqlite://sqreen.db"
        )]
        database: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sqreen-server failed");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)] // stdout is the command's deliberate output
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve {
            addr,
            database,
            admin_key,
            admin_key_file,
            session_secret_file,
            session_secret,
            heartbeat_delay,
            max_batch_bytes,
            concurrent_batches,
            request_timeout,
            max_connections,
            header_read_timeout,
            allow_private_webhooks,
            retention,
            metrics_token,
        } => {
            let mut config = ServerConfig::new(database)
                .with_heartbeat_delay(heartbeat_delay)
                .with_private_webhooks(allow_private_webhooks);
            if allow_private_webhooks {
                tracing::warn!(
                    event = "server.private_webhooks",
                    "webhooks may reach loopback and private addresses (--allow-private-webhooks)"
                );
            }
            if std::env::args().any(|a| a == "--admin-key" || a.starts_with("--admin-key=")) {
                tracing::warn!(
                    event = "server.admin_key_on_command_line",
                    "the admin key was given on the command line, which other local users can read: \
                     prefer SQREEN_SERVER_ADMIN_KEY or --admin-key-file"
                );
            }
            config.admin_key = match admin_key_file {
                Some(path) => Some(read_key_file(&path)?),
                None => admin_key.filter(|k| !k.is_empty()),
            };
            config.session_secret = match (session_secret_file, session_secret) {
                (Some(path), _) => SessionSecret::File(path),
                (None, Some(value)) if !value.is_empty() => SessionSecret::Value(value),
                _ => SessionSecret::Default,
            };
            config.metrics_token = metrics_token.filter(|t| !t.is_empty());
            config.retention = retention.0;
            config.max_batch_bytes = usize::try_from(max_batch_bytes)?;
            config.concurrent_batches = usize::try_from(concurrent_batches)?;
            config.request_timeout = request_timeout;
            config.connections = ConnectionLimits {
                max_connections: usize::try_from(max_connections)?,
                header_read_timeout,
            };
            let (server, generated) = Server::open(&config).await?;
            if let Some(key) = generated {
                say(&format!(
                    "admin key (shown once; only its hash is stored): {key}"
                ));
            }
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            tracing::info!(event = "server.listening", addr = %local,
                backend = ?server.store().backend(), "sqreen-server listening");
            say(&format!("listening on http://{local}"));
            server.serve(listener, shutdown_signal()).await?;
            tracing::info!(event = "server.stopped", "sqreen-server stopped");
            Ok(())
        }
        Command::App {
            command: AppCommand::Create { name, database },
        } => {
            if !sqreen_server::admin::valid_app_name(&name) {
                return Err(
                    "the name must be 1 to 100 characters without control characters".into(),
                );
            }
            let store = sqreen_server::store::Store::connect(&database).await?;
            let (app, token) = store.create_app(&name).await?;
            store.close().await;
            say(&format!("created app {:?} (id {})", app.name, app.id));
            say(&token);
            Ok(())
        }
        Command::App {
            command: AppCommand::Delete { app, database },
        } => {
            let store = sqreen_server::store::Store::connect(&database).await?;
            let result = delete_app(&store, &app).await;
            store.close().await;
            result
        }
        Command::App {
            command: AppCommand::RotateToken { app, database },
        } => {
            let store = sqreen_server::store::Store::connect(&database).await?;
            let result = rotate_token(&store, &app).await;
            store.close().await;
            result
        }
    }
}

/// The first line of the admin key file at `path`.
fn read_key_file(path: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("admin key file {}: {e}", path.display()))?;
    sqreen_server::secret::warn_if_readable_by_others(path);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// The `--retention` flag: a duration, or `off`.
#[derive(Clone, Copy, Debug)]
struct Retention(Option<Duration>);

/// `off`, or a duration from an hour to 100 years.
fn retention(text: &str) -> Result<Retention, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Retention(None));
    }
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(3600) || d > Duration::from_secs(100 * 365 * 86_400) {
        return Err("must be `off` or between 1h and 100y".into());
    }
    Ok(Retention(Some(d)))
}

/// A duration flag: `10s`, `2m`, `1h30m`…, from 1 s to a day.
fn duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err("must be between 1s and 24h".into());
    }
    Ok(d)
}

/// The application named `name_or_id` (a name first, then an id).
async fn app_named(
    store: &sqreen_server::store::Store,
    name_or_id: &str,
) -> Result<sqreen_server::store::AppView, Box<dyn std::error::Error>> {
    Ok(store
        .find_app(name_or_id)
        .await?
        .ok_or_else(|| format!("no application {name_or_id:?}"))?)
}

async fn delete_app(
    store: &sqreen_server::store::Store,
    name_or_id: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let found = app_named(store, name_or_id).await?;
    let app = store
        .delete_app(found.id)
        .await?
        .ok_or_else(|| format!("no application {name_or_id:?}"))?;
    tracing::warn!(event = "app.deleted", app = %app.name, id = app.id, "application deleted");
    let events = store.purge_deleted_apps().await?;
    say(&format!(
        "deleted app {:?} (id {}) and {events} event(s)",
        app.name, app.id
    ));
    Ok(())
}

async fn rotate_token(
    store: &sqreen_server::store::Store,
    name_or_id: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let app = app_named(store, name_or_id).await?;
    let token = store
        .rotate_app_token(app.id)
        .await?
        .ok_or_else(|| format!("no application {name_or_id:?}"))?;
    tracing::warn!(event = "app.token_rotated", app = %app.name, id = app.id,
        "application token rotated; its sessions are ended");
    say(&format!(
        "new token for app {:?} (id {}); the old one no longer works",
        app.name, app.id
    ));
    say(&token);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
