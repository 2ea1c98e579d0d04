//! `sqreen-server`: a self-hosted backend for sqreen agents.
//!
//! It speaks the agent protocol (`docs/PROTOCOL.md`: login, heartbeat, batch,
//! action pack, logout), stores events in SQLite or PostgreSQL, serves an
//! admin JSON API to explore them and manage playbooks, and evaluates the
//! playbooks as events arrive: an actor (IP or user) crossing a threshold
//! gets an alert, block/redirect actions that every agent of the app
//! reloads on its next heartbeat, and a webhook.
//!
//! # Running
//! ```text
//! sqreen-server app create my-app --database sqlite://sqreen.db   # prints the agent token last
//! SQREEN_SERVER_ADMIN_KEY="$KEY" sqreen-server serve --addr 127.0.0.1:8700 --database sqlite://sqreen.db
//! sqreen-server app rotate-token my-app --database sqlite://sqreen.db  # a leaked token: prints the new one last
//! sqreen-server app delete my-app --database sqlite://sqreen.db        # the app, its sessions and its data
//! ```
//! Every flag has an environment equivalent (`SQREEN_SERVER_ADDR`,
//! `SQREEN_SERVER_DATABASE`, `SQREEN_SERVER_ADMIN_KEY`,
//! `SQREEN_SERVER_HEARTBEAT_DELAY`, `SQREEN_SERVER_MAX_BATCH_BYTES`,
//! `SQREEN_SERVER_ALLOW_PRIVATE_WEBHOOKS`, `SQREEN_SERVER_METRICS_TOKEN`).
//! Without an admin key, one is generated at first start, printed once, and
//! only its hash is stored.
//!
//! # Library
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sqreen_server::{Server, ServerConfig};
//! // At least 32 characters; in practice from the environment or a file.
//! let config = ServerConfig::new("sqlite://sqreen.db")
//!     .with_admin_key("an admin key of at least 32 characters");
//! let (server, _generated_key) = Server::open(&config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8700").await?;
//! server.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! # Modules
//! - [`ingest`]: the agent protocol routes; [`protocol`]: their bodies;
//!   [`rulespack`]: the rules the historical agents are given at login.
//! - [`admin`]: the admin JSON API; [`openapi`]: its OpenAPI description;
//!   [`metrics`]: `GET /metrics` for Prometheus; [`stats`]: the counters
//!   behind `/api/stats` and `/metrics`.
//! - [`dashboard`]: the HTML dashboard (Event Explorer, playbooks,
//!   responses, alerts, applications).
//! - [`key_limiter`]: the rate limiter of admin key guesses (admin API,
//!   `/metrics`, dashboard login).
//! - [`store`]: every query (SQLite and PostgreSQL through one `Any` pool);
//!   front ends such as a dashboard call its `Store` methods.
//! - [`playbook`]: definitions, matching and firing; [`notify`]: signed
//!   webhooks; [`destination`]: where webhooks may not go.
//! - [`secret`]: tokens and hashes; [`time`]: timestamps; [`error`]: the
//!   API's error answers.
//! - [`listen`]: the accept loop and its bounds.
//! - [`fuzzing`]: the fuzz targets' entry points.
//!
//! # Several processes
//! With `postgres://…`, any number of `serve` processes share one database
//! and behave as one backend: sessions, pending action reloads, threshold
//! counts and the one-alert-per-actor rule all live in the database.

pub mod admin;
pub mod dashboard;
pub mod destination;
pub mod error;
pub mod fuzzing;
pub mod ingest;
pub mod key_limiter;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod playbook;
pub mod protocol;
pub mod rulespack;
pub mod secret;
pub mod stats;
pub mod store;
pub mod time;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use crate::destination::WebhookPolicy;
use crate::notify::Notifier;
use crate::store::{Store, StoreError};

/// The settings key of the generated admin key's hash.
const ADMIN_KEY_SETTING: &str = "admin_key_hash";
/// Default largest batch body: the protocol's 32 MiB (agents send at most
/// 4 MiB).
pub const DEFAULT_MAX_BATCH_BYTES: usize = sqreen_protocol::limits::MAX_BATCH_BYTES;
/// Default heartbeat delay told to agents, in seconds.
pub const DEFAULT_HEARTBEAT_DELAY_S: u64 = 60;
/// Default number of batch bodies read at once.
pub const DEFAULT_CONCURRENT_BATCHES: usize = 8;
/// Default deadline of one request, from its head to its answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest gap between two pieces of a request body.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the dashboard's session secret comes from (see
/// [`dashboard::session`]): never from the database.
#[derive(Clone, Debug, Default)]
pub enum SessionSecret {
    /// A key file beside an SQLite database (`PATH.session-key`), or
    /// `sqreen-server.session-key` in the working directory with
    /// PostgreSQL; created (mode 0600) when missing.
    #[default]
    Default,
    /// This key file, created (mode 0600) when missing.
    File(std::path::PathBuf),
    /// This value (at least 32 bytes), e.g. from an environment variable.
    Value(String),
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// A key file could not be used.
    #[error(transparent)]
    KeyFile(#[from] secret::KeyFileError),
}

/// How to run a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// The admin key (at least 32 characters); generated at first start
    /// when `None`.
    pub admin_key: Option<String>,
    /// The dashboard's session secret.
    pub session_secret: SessionSecret,
    /// Seconds between heartbeats, told to agents at login.
    pub heartbeat_delay_s: u64,
    /// Largest batch body accepted (after gzip decompression).
    pub max_batch_bytes: usize,
    /// Batch bodies read at once (others wait for their turn).
    pub concurrent_batches: usize,
    /// Deadline of one request, from its head to its answer (then 408).
    pub request_timeout: Duration,
    /// Bounds of the accept loop: connections and header reads.
    pub connections: listen::ConnectionLimits,
    /// How long events, alerts and ended actions are kept
    /// ([`store::Store::apply_retention`]); `None` keeps them forever.
    /// Default: 30 days.
    pub retention: Option<Duration>,
    /// How often housekeeping (retention, idle sessions, index merges)
    /// runs; default a minute.
    pub housekeeping_period: Duration,
    /// Lets webhooks reach loopback, private and other non-public
    /// addresses ([`destination`]); off by default.
    pub allow_private_webhooks: bool,
    /// A token (at least 32 characters) that opens `GET /metrics` besides
    /// the admin key ([`metrics`]); `None`: the admin key only.
    pub metrics_token: Option<String>,
}

impl ServerConfig {
    /// Defaults for `database_url`: generated admin key, 60 s heartbeats,
    /// 32 MiB batches, webhooks to public addresses only.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            admin_key: None,
            session_secret: SessionSecret::Default,
            heartbeat_delay_s: DEFAULT_HEARTBEAT_DELAY_S,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            concurrent_batches: DEFAULT_CONCURRENT_BATCHES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connections: listen::ConnectionLimits::default(),
            retention: Some(Duration::from_secs(
                store::DEFAULT_RETENTION_DAYS * 24 * 3600,
            )),
            housekeeping_period: Duration::from_secs(60),
            allow_private_webhooks: false,
            metrics_token: None,
        }
    }

    /// Lets `Bearer <token>` (at least 32 characters) scrape `GET /metrics`
    /// without the admin key (flag `--metrics-token`, env
    /// `SQREEN_SERVER_METRICS_TOKEN`).
    #[must_use]
    pub fn with_metrics_token(mut self, token: impl Into<String>) -> Self {
        self.metrics_token = Some(token.into());
        self
    }

    /// Uses `key` as the admin key.
    #[must_use]
    pub fn with_admin_key(mut self, key: impl Into<String>) -> Self {
        self.admin_key = Some(key.into());
        self
    }

    /// Takes the dashboard's session secret from `secret`.
    #[must_use]
    pub fn with_session_secret(mut self, secret: SessionSecret) -> Self {
        self.session_secret = secret;
        self
    }

    /// Tells agents to beat every `seconds` (at least 1).
    #[must_use]
    pub fn with_heartbeat_delay(mut self, seconds: u64) -> Self {
        self.heartbeat_delay_s = seconds.max(1);
        self
    }

    /// Whether webhooks may reach loopback, private, link-local and other
    /// non-public addresses (default: no; flag `--allow-private-webhooks`,
    /// env `SQREEN_SERVER_ALLOW_PRIVATE_WEBHOOKS`). Turn it on only for
    /// receivers on the server's own network: whoever can save a playbook
    /// can then make the server POST to any of them.
    #[must_use]
    pub fn with_private_webhooks(mut self, allow: bool) -> Self {
        self.allow_private_webhooks = allow;
        self
    }
}

/// Settings the handlers read.
#[derive(Debug)]
pub struct Settings {
    /// Seconds between heartbeats.
    pub heartbeat_delay_s: u64,
    /// SHA-256 (hex) of the admin key.
    pub admin_key_hash: String,
    /// Signs dashboard sessions and CSRF tokens.
    pub session_key: dashboard::session::SessionKey,
    /// SHA-256 (hex) of the metrics token, if any.
    pub metrics_token_hash: Option<String>,
}

/// What every handler shares; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The storage.
    pub store: Store,
    /// The webhook sender.
    pub notifier: Notifier,
    /// Fixed settings.
    pub settings: Arc<Settings>,
    /// What this process refused, failed at and stored.
    pub stats: Arc<stats::Stats>,
    /// Wrong admin keys per client address.
    pub key_limiter: Arc<key_limiter::KeyGuessLimiter>,
    /// The enabled playbooks, compiled once per change.
    pub playbooks: Arc<playbook::PlaybookCache>,
    /// This server's Prometheus registry (`GET /metrics`).
    pub metrics: Arc<metrics::Metrics>,
}

/// A server ready to serve: storage open and migrated, admin key known.
#[derive(Clone, Debug)]
pub struct Server {
    state: AppState,
    ingest: ingest::IngestLimits,
    request_timeout: Duration,
    connections: listen::ConnectionLimits,
    housekeeping: Housekeeping,
}

impl Server {
    /// Opens the database (applying migrations) and settles the admin key.
    /// Returns the generated admin key when this call created it: print it
    /// once, it is not stored.
    ///
    /// # Errors
    /// An admin key shorter than 32 characters, an unusable session secret,
    /// database errors.
    pub async fn open(config: &ServerConfig) -> Result<(Self, Option<String>), OpenError> {
        if let Some(key) = &config.admin_key
            && key.chars().count() < secret::MIN_ADMIN_KEY_LEN
        {
            return Err(OpenError::Config(format!(
                "the admin key must be at least {} characters (generate one with \
                 `openssl rand -hex 32`, or start without one to have it generated)",
                secret::MIN_ADMIN_KEY_LEN
            )));
        }
        if let Some(token) = &config.metrics_token
            && token.chars().count() < secret::MIN_ADMIN_KEY_LEN
        {
            return Err(OpenError::Config(format!(
                "the metrics token must be at least {} characters",
                secret::MIN_ADMIN_KEY_LEN
            )));
        }
        let session_secret = session_secret(config)?;
        let store = Store::connect(&config.database_url).await?;
        let (admin_key_hash, generated) = match &config.admin_key {
            Some(key) => (secret::hash(key), None),
            None => match store.setting(ADMIN_KEY_SETTING).await? {
                Some(hash) => (hash, None),
                None => {
                    let key =
                        secret::generate(secret::ADMIN_KEY_PREFIX).map_err(StoreError::from)?;
                    let ours = secret::hash(&key);
                    let hash = store.setting_or_insert(ADMIN_KEY_SETTING, &ours).await?;
                    // Another process may have generated one first.
                    let generated = (hash == ours).then_some(key);
                    (hash, generated)
                }
            },
        };
        let notifier = Notifier::new(WebhookPolicy {
            allow_private: config.allow_private_webhooks,
        });
        let stats: Arc<stats::Stats> = Arc::default();
        let playbooks: Arc<playbook::PlaybookCache> = Arc::default();
        let metrics = Arc::new(metrics::Metrics::new(metrics::Sources {
            stats: stats.clone(),
            notifier: notifier.clone(),
            store: store.clone(),
            playbooks: playbooks.clone(),
        }));
        let state = AppState {
            store,
            notifier,
            settings: Arc::new(Settings {
                heartbeat_delay_s: config.heartbeat_delay_s.max(1),
                session_key: dashboard::session::SessionKey::new(&session_secret, &admin_key_hash),
                admin_key_hash,
                metrics_token_hash: config.metrics_token.as_deref().map(secret::hash),
            }),
            stats,
            key_limiter: Arc::default(),
            playbooks,
            metrics,
        };
        Ok((
            Self {
                state,
                ingest: ingest::IngestLimits {
                    max_batch_bytes: config.max_batch_bytes,
                    concurrent_batches: config.concurrent_batches,
                },
                request_timeout: config.request_timeout,
                connections: config.connections,
                housekeeping: Housekeeping {
                    period: config.housekeeping_period.max(Duration::from_millis(100)),
                    retention_ms: config
                        .retention
                        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                    heartbeat_delay_s: config.heartbeat_delay_s.max(1),
                },
            },
            generated,
        ))
    }

    /// The storage, for other front ends.
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The shared handler state, for routes added beside these.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Every route: the agent protocol and the admin API, each request
    /// under a deadline (408) and each body under an idle timeout.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(ingest::routes(&self.state, self.ingest))
            .merge(admin::routes(self.state.clone()))
            .merge(metrics::routes(self.state.clone()))
            .merge(openapi::routes())
            .merge(dashboard::routes())
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                BODY_IDLE_TIMEOUT,
            ))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                self.request_timeout,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                stats::record_outcome,
            ))
            .layer(axum::middleware::from_fn(listen::close_after_refused_body))
            .with_state(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, with periodic
    /// housekeeping (idle sessions, old playbook counts).
    ///
    /// # Errors
    /// I/O errors of the listener.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let housekeeping = tokio::spawn(housekeeping(self.state.store.clone(), self.housekeeping));
        let result = listen::serve(listener, self.router(), self.connections, shutdown).await;
        housekeeping.abort();
        result
    }
}

/// The session secret `config` names, its key file created if missing.
fn session_secret(config: &ServerConfig) -> Result<Vec<u8>, OpenError> {
    let path = match &config.session_secret {
        SessionSecret::Value(v) if v.len() >= secret::MIN_SECRET_LEN => {
            return Ok(v.as_bytes().to_vec());
        }
        SessionSecret::Value(_) => {
            return Err(OpenError::Config(format!(
                "the session secret must be at least {} bytes",
                secret::MIN_SECRET_LEN
            )));
        }
        SessionSecret::File(path) => path.clone(),
        SessionSecret::Default => match store::sqlite_path(&config.database_url) {
            Some(db) => {
                let mut name = db.into_os_string();
                name.push(".session-key");
                name.into()
            }
            None => std::path::PathBuf::from("sqreen-server.session-key"),
        },
    };
    Ok(secret::load_or_create_key_file(&path)?)
}

/// What housekeeping does and how often.
#[derive(Clone, Copy, Debug)]
struct Housekeeping {
    period: Duration,
    /// Events older than this many milliseconds are removed.
    retention_ms: Option<i64>,
    heartbeat_delay_s: u64,
}

/// Every period (a minute by default): applies retention, forgets sessions
/// idle for ten heartbeats (and at least an hour), and playbook hits older
/// than the longest playbook period, moves pending event attributes into
/// the index (other processes' too, on a shared PostgreSQL database), and
/// removes what is left of deleted apps' events.
async fn housekeeping(store: Store, settings: Housekeeping) {
    let Housekeeping {
        period,
        retention_ms,
        heartbeat_delay_s,
    } = settings;
    let idle_ms = i64::try_from(heartbeat_delay_s.saturating_mul(10_000))
        .unwrap_or(i64::MAX)
        .max(3_600_000);
    // The first round a period after start, not at once: nothing is due
    // yet, and a merge racing the first batches would make the explorer's
    // tests (which merge on demand) depend on timing.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        let now = time::now_ms();
        let longest = store
            .list_playbooks()
            .await
            .map(|p| {
                p.iter()
                    .map(|p| p.playbook.trigger.period_s)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(playbook::MAX_PERIOD_S);
        if let Err(e) = store
            .prune(now - idle_ms, now - (longest + 60) * 1000)
            .await
        {
            tracing::warn!(event = "housekeeping.failed", error = %e, "housekeeping failed");
        }
        if let Err(e) = store.ensure_event_partitions(now).await {
            tracing::warn!(event = "store.partition_failed", error = %e,
                "could not create the coming week's event partitions; will retry");
        }
        // Failures are logged and counted by `merge_attributes`.
        let _ = store.merge_attributes().await;
        // Deleted apps whose events are left (an interrupted purge);
        // failures are logged by `purge_deleted_apps`.
        let _ = store.purge_deleted_apps().await;
        if let Some(keep) = retention_ms {
            // Failures are logged by `apply_retention`.
            let _ = store.apply_retention(now.saturating_sub(keep)).await;
        }
    }
}
