//! Storage: one `sqlx` [`AnyPool`] over SQLite or PostgreSQL, the same SQL
//! for both (`$N` placeholders, integer milliseconds, JSON as TEXT), and one
//! migration directory per backend where the DDL must differ.
//!
//! Every query the server runs lives in this module, as methods of
//! [`Store`], so that other front ends (a dashboard) reuse them:
//!
//! | what | method |
//! | --- | --- |
//! | events, newest first, filtered and paged | [`Store::list_events`] |
//! | one event | [`Store::get_event`] |
//! | every matching event as NDJSON or CSV, streamed in chunks | [`Store::export_events`] |
//! | counts per time bucket (and per IP, user, property or event name) | [`Store::event_trend`] |
//! | the explorer's facets, the names of stored events | [`Store::facets`], [`Store::known_events`] |
//! | playbooks | [`Store::list_playbooks`], [`Store::get_playbook`] |
//! | live actions | [`Store::list_actions`] |
//! | alerts, newest first; one alert, its actions, its webhook deliveries | [`Store::list_alerts`], [`Store::get_alert`], [`Store::alert_actions`], [`Store::alert_deliveries`] |
//! | live actions and alerts counted, for `/metrics` | [`Store::count_live_actions`], [`Store::count_alerts`] |
//! | applications | [`Store::list_apps`], [`Store::find_app`] |
//! | deleting an application, rotating its token | [`Store::delete_app`], [`Store::purge_deleted_apps`], [`Store::rotate_app_token`] |
//! | retention, weekly partitions (PostgreSQL) | [`Store::apply_retention`], [`Store::ensure_event_partitions`] |
//!
//! Nothing that must be shared between server processes lives in memory:
//! sessions, pending `actions_reload`, threshold counts and the "one alert
//! per actor" rule are all rows and constraints, so several `serve`
//! processes on one PostgreSQL database behave as one backend.
//!
//! On SQLite, writes are serialised by an in-process lock and all go
//! through one dedicated connection (SQLite has a single writer anyway, and
//! a connection's page cache is dropped whenever another one writes, so one
//! writer keeps the index pages it inserts into at hand). The database runs
//! in WAL mode with `synchronous=NORMAL`; readers run beside the writer on a
//! pool of their own. The writer keeps a 256 MiB page cache (a merge of
//! event attributes fits in it) and maps up to 256 MiB of the file; each
//! reader keeps 64 MiB and maps up to 2 GiB, so that any reader finds the
//! pages the OS already caches.

mod counts;
mod events;
mod export;
mod facets;
mod partitions;
mod playbooks;
mod retention;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::{Mutex, MutexGuard};

pub use events::{
    EventFilter, EventPage, EventView, HitCandidate, MAX_INDEXED_VALUE, MERGE_ROWS, NewEvent,
    PURGE_BATCH, TrendGroup, TrendPoint, TrendQuery, TrendSeries, TrendView, attr_text,
    parse_cursor, user_key,
};
pub use export::{CSV_COLUMNS, EXPORT_CHUNK, ExportFormat};
pub use facets::{FACET_SAMPLE, FACET_VALUES, FacetValue, Facets, KNOWN_EVENTS};
pub use partitions::{LOCK_TIMEOUT, WEEK_MS, week_of};
pub use playbooks::{
    ActionView, AlertView, DeliveryView, LockOutcome, NewAction, NewAlert, PlaybookRow,
};
pub use retention::{DEFAULT_RETENTION_DAYS, RetentionReport};

use crate::secret;
use crate::time::now_ms;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The database behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (`sqlite://PATH`): one server process.
    Sqlite,
    /// PostgreSQL (`postgres://…`): any number of server processes.
    Postgres,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported database URL (want sqlite://PATH or postgres://…): {0}")]
    BadUrl(String),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A name that must be unique is taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// Random bytes could not be drawn.
    #[error(transparent)]
    Random(#[from] secret::RandomError),
    /// A stored JSON column does not parse (the database was edited by hand).
    #[error("corrupt stored JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The application was deleted (while a request of its agent was on
    /// its way): nothing was stored for it.
    #[error("the application was deleted")]
    AppDeleted,
    /// Exported events could not be encoded ([`Store::export_events`]).
    #[error("export encoding failed: {0}")]
    Encoding(String),
}

/// A parameter of a dynamically built query.
#[derive(Clone, Debug)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
}

/// `text` without NUL characters (PostgreSQL refuses them in TEXT): each is
/// replaced by U+FFFD, on the way in and in filters alike, so both agree.
pub fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Binds `params` in order to the query on `sql`.
pub(crate) fn bind_all<'q>(
    sql: &'q str,
    params: &'q [Param],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            Param::Int(v) => q.bind(*v),
            Param::Text(v) => q.bind(without_nul(v).into_owned()),
        };
    }
    q
}

/// An application known to the server.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AppView {
    /// Its id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
}

/// An agent session, looked up by its `X-Session-Key`.
#[derive(Clone, Debug)]
pub struct SessionRow {
    /// The hash of the session id.
    pub id_hash: String,
    /// The application it belongs to.
    pub app_id: i64,
    /// The action-set version the agent has.
    pub actions_version: i64,
    /// The application's current action-set version.
    pub app_actions_version: i64,
}

/// The storage of the server; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Where writes go: on SQLite one connection of its own, on PostgreSQL
    /// the same pool as reads.
    writer: AnyPool,
    /// What exports read with ([`Store::export_events`]): on SQLite two
    /// connections of their own that map nothing (an export reads the
    /// whole range once: mapped, its pages would stay in the process's RSS)
    /// and keep a 4 MiB cache (a range scan needs little more than the
    /// index's upper pages), so that exports neither hold the explorer's
    /// readers nor grow with the database; on PostgreSQL the same pool as
    /// reads.
    export_pool: AnyPool,
    backend: Backend,
    write_lock: Option<Arc<Mutex<()>>>,
    merge: Arc<events::MergeState>,
    /// See [`Store::with_one_pass_cells`].
    one_pass_cells: i64,
    /// See [`Store::with_server_grouped_events`].
    server_grouped_events: i64,
    /// Whether this process is purging deleted apps' events.
    purging: Arc<std::sync::atomic::AtomicBool>,
    /// Whether this process is applying retention.
    retaining: Arc<std::sync::atomic::AtomicBool>,
}

/// Pool options for SQLite connections of at most `connections`, each in
/// WAL mode with `synchronous=NORMAL`, `cache_mib` of page cache and up to
/// `mmap_mib` of the file mapped.
///
/// Temporary storage stays SQLite's default (files, which a sort only
/// touches once it outgrows the page cache). With `temp_store=MEMORY` the
/// sorter behind `GROUP BY` and `ORDER BY` allocates every row on its own
/// and sorts one linked list: grouping a busy hour's 360 000 events by IP
/// took 2.5 times as long (BENCHMARKS.md).
fn sqlite_pool(connections: u32, cache_mib: u32, mmap_mib: u64) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(
                    format!(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                         PRAGMA busy_timeout=10000; \
                         PRAGMA cache_size=-{}; PRAGMA mmap_size={}; \
                         PRAGMA wal_autocheckpoint=10000;",
                        cache_mib * 1024,
                        mmap_mib * 1024 * 1024
                    )
                    .as_str(),
                )
                .await?;
                Ok(())
            })
        })
}

/// The file of an SQLite URL (`sqlite://PATH?…` or `sqlite:PATH`), or `None`
/// for PostgreSQL and in-memory databases.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| path.into())
}

/// Creates a missing SQLite database file readable by its owner only (the
/// journal files SQLite adds take the same mode); warns about an existing
/// one that others may read.
fn create_private_sqlite(url: &str) {
    let Some(path) = sqlite_path(url) else {
        return;
    };
    if path.exists() {
        secret::warn_if_readable_by_others(&path);
        return;
    }
    match secret::private_file(&path, true) {
        Ok(_) => {}
        // Another process created it first, or the directory is missing
        // (SQLite then reports the error).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => tracing::debug!(event = "store.create_failed", error = %e,
            "could not pre-create the database file"),
    }
}

/// `sqlite://PATH` gets `mode=rwc` (create if missing) unless it says otherwise.
fn normalise_url(url: &str) -> Result<(String, Backend), StoreError> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let url = if rest.contains("mode=") || rest.contains(":memory:") {
            url.to_owned()
        } else if rest.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        Ok((url, Backend::Sqlite))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((url.to_owned(), Backend::Postgres))
    } else {
        Err(StoreError::BadUrl(url.to_owned()))
    }
}

impl Store {
    /// Connects to `url` (`sqlite://PATH`, created if missing, or
    /// `postgres://…`) and applies the migrations.
    ///
    /// # Errors
    /// A bad URL, an unreachable database or a failed migration.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = normalise_url(url)?;
        if backend == Backend::Sqlite && !url.contains("mode=ro") {
            create_private_sqlite(&url);
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let (pool, writer, export_pool) = match backend {
            Backend::Sqlite => {
                // Readers share a small pool; every write goes through one
                // dedicated connection, so its page cache stays warm: SQLite
                // drops a connection's cache whenever another connection
                // has written, and on a large table the cold index pages
                // cost more than the insert itself.
                // Readers map up to 2 GiB (SQLite's default ceiling) of the
                // file: pages are then read from the OS cache in place, by
                // whichever connection a query gets, instead of each
                // connection filling its own cache first (the first trend
                // over a busy hour on a connection: 21-30 ms instead of
                // 32-116 ms at 1 000 000 events).
                let readers = sqlite_pool(4, 64, 2048)
                    .connect_with(options.clone())
                    .await?;
                let export = sqlite_pool(2, 4, 0).connect_lazy_with(options.clone());
                // The writer's cache holds a merge of event attributes (see
                // `events`) without spilling it to the log mid-transaction.
                let writer = sqlite_pool(1, 256, 256)
                    .min_connections(1)
                    .connect_with(options)
                    .await?;
                (readers, writer, export)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?;
                (pool.clone(), pool.clone(), pool)
            }
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        // Two processes starting at once on a fresh PostgreSQL database may
        // race on creating the migrations table itself; the loser retries.
        let mut attempt = 0;
        loop {
            match migrator.run(&writer).await {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(event = "store.migrate_retry", error = %e, attempt,
                        "migration failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let write_lock = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let store = Self {
            pool,
            writer,
            export_pool,
            backend,
            write_lock,
            merge: Arc::default(),
            one_pass_cells: events::PROPERTY_CELLS,
            server_grouped_events: events::SERVER_GROUPED_EVENTS,
            purging: Arc::default(),
            retaining: Arc::default(),
        };
        // This week's partition before the first batch (PostgreSQL); the
        // default partition takes the events if it cannot be made now.
        if let Err(e) = store.ensure_event_partitions(now_ms()).await {
            tracing::warn!(event = "store.partition_failed", error = %e,
                "could not create this week's event partitions; will retry");
        }
        Ok(store)
    }

    /// The most events whose groups a trend grouped by IP or user adds up
    /// in this process (about 100 bytes of memory each, for the time of
    /// the query); above, or at 0, the database groups them, which is
    /// slower over many groups but spills to disk. Default 1 000 000.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), sqreen_server::store::StoreError> {
    /// let store = sqreen_server::store::Store::connect("sqlite://sqreen.db")
    ///     .await?
    ///     .with_server_grouped_events(200_000);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_server_grouped_events(mut self, events: u32) -> Self {
        self.server_grouped_events = i64::from(events);
        self
    }

    /// The most cells (bucket × value with events) a trend grouped by a
    /// property counts in one pass; above, it counts the largest values
    /// first, then their cells. Default 100 000; lower it to test or to
    /// cap the memory one trend takes.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), sqreen_server::store::StoreError> {
    /// let store = sqreen_server::store::Store::connect("sqlite://sqreen.db")
    ///     .await?
    ///     .with_one_pass_cells(10_000);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_one_pass_cells(mut self, cells: u32) -> Self {
        self.one_pass_cells = i64::from(cells);
        self
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for queries this module does not offer.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Serialises writers on SQLite; a no-op on PostgreSQL.
    pub(crate) async fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Closes the pool (waits for connections in use).
    pub async fn close(&self) {
        self.pool.close().await;
        self.export_pool.close().await;
        self.writer.close().await;
    }

    // ── applications ────────────────────────────────────────────────────

    /// Creates an application; returns it and its agent token (shown once:
    /// only its hash is stored).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the name is taken; database errors.
    pub async fn create_app(&self, name: &str) -> Result<(AppView, String), StoreError> {
        let token = secret::generate(secret::TOKEN_PREFIX)?;
        let now = now_ms();
        let _w = self.write_guard().await;
        let row = sqlx::query(
            "INSERT INTO apps (name, token_hash, actions_version, created_at) \
             VALUES ($1, $2, 0, $3) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(secret::hash(&token))
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Conflict("an application with this name"));
        };
        let app = AppView {
            id: row.try_get("id")?,
            name: name.to_owned(),
            created_at: now,
        };
        Ok((app, token))
    }

    /// Every application, by name.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_apps(&self) -> Result<Vec<AppView>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM apps ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AppView {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The application whose agent token is `token`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn app_by_token(&self, token: &str) -> Result<Option<AppView>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM apps WHERE token_hash = $1")
            .bind(secret::hash(token))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(AppView {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// The application named `name_or_id`, or else (when it is a number)
    /// the one with that id: a name wins over an id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn find_app(&self, name_or_id: &str) -> Result<Option<AppView>, StoreError> {
        let by_name = sqlx::query("SELECT id, name, created_at FROM apps WHERE name = $1")
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?;
        let row = match (by_name, name_or_id.trim().parse::<i64>()) {
            (Some(row), _) => Some(row),
            (None, Ok(id)) => {
                sqlx::query("SELECT id, name, created_at FROM apps WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
            (None, Err(_)) => None,
        };
        row.map(|r| {
            Ok(AppView {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Gives application `id` a new agent token (returned, shown once) and
    /// ends its sessions: the old token no longer logs in, and agents
    /// logged in with it get 401 on their next request (they log in again
    /// with the new token). `None` when there is no such application.
    ///
    /// # Errors
    /// Database errors.
    pub async fn rotate_app_token(&self, id: i64) -> Result<Option<String>, StoreError> {
        let token = secret::generate(secret::TOKEN_PREFIX)?;
        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("UPDATE apps SET token_hash = $1 WHERE id = $2")
            .bind(secret::hash(&token))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query("DELETE FROM sessions WHERE app_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(token))
    }

    /// Deletes application `id`: at once, in one transaction, the app (its
    /// token stops working and its name is free again), its sessions (its
    /// agents get 401), its actions, alerts and playbook counts; its events
    /// are then removed in bounded batches by [`Store::purge_deleted_apps`]
    /// (until then no query shows them: every query joins `apps`).
    /// Playbooks, which name apps rather than hold them, are kept. `None`
    /// when there is no such application.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_app(&self, id: i64) -> Result<Option<AppView>, StoreError> {
        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        // On PostgreSQL, a login racing the deletion waits for it (and then
        // finds no app) instead of adding a session that would make the
        // deletion fail.
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM apps WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        // Sessions first: they reference the app.
        for sql in [
            "DELETE FROM sessions WHERE app_id = $1",
            "DELETE FROM actions WHERE app_id = $1",
            "DELETE FROM webhook_deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE app_id = $1)",
            "DELETE FROM alerts WHERE app_id = $1",
            "DELETE FROM playbook_hits WHERE app_id = $1",
            "DELETE FROM playbook_locks WHERE app_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let row = sqlx::query("DELETE FROM apps WHERE id = $1 RETURNING id, name, created_at")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let app = AppView {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            created_at: row.try_get("created_at")?,
        };
        sqlx::query(
            "INSERT INTO app_purges (app_id, name, requested_at) VALUES ($1, $2, $3) \
             ON CONFLICT (app_id) DO NOTHING",
        )
        .bind(id)
        .bind(app.name.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(app))
    }

    /// Whether application `app_id` still exists, checked inside `tx`,
    /// which writes on its behalf. On PostgreSQL the row is locked against
    /// deletion until `tx` ends, so a deletion waits for the write and its
    /// purge sees what it wrote; on SQLite writers are serialised anyway.
    pub(crate) async fn app_still_exists(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        app_id: i64,
    ) -> Result<bool, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT id FROM apps WHERE id = $1",
            Backend::Postgres => "SELECT id FROM apps WHERE id = $1 FOR KEY SHARE",
        };
        let row = sqlx::query(sql)
            .bind(app_id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.is_some())
    }

    /// The name of application `id`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn app_name(&self, id: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT name FROM apps WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("name")).transpose()?)
    }

    /// The current action-set version of application `id`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn app_actions_version(&self, id: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT actions_version FROM apps WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("actions_version")).transpose()?)
    }

    // ── settings ────────────────────────────────────────────────────────

    /// Stores `value` under `key` unless a value is there already; returns
    /// the value in force (the existing one when another process won).
    ///
    /// # Errors
    /// Database errors.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        {
            let _w = self.write_guard().await;
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await?;
        }
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.writer)
            .await?;
        Ok(row.try_get("value")?)
    }

    /// The value stored under `key`, if any.
    ///
    /// # Errors
    /// Database errors.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    // ── sessions ────────────────────────────────────────────────────────

    /// Opens a session for `app_id`; returns the session id to hand to the
    /// agent (only its hash is stored). The agent starts with the current
    /// action set (sent in the login answer), so it owes no reload.
    ///
    /// # Errors
    /// Database errors.
    pub async fn open_session(&self, app_id: i64, agent: &str) -> Result<String, StoreError> {
        let session = secret::generate(secret::SESSION_PREFIX)?;
        let now = now_ms();
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO sessions (id_hash, app_id, actions_version, created_at, last_seen, agent) \
             SELECT $1, id, actions_version, $2, $2, $3 FROM apps WHERE id = $4",
        )
        .bind(secret::hash(&session))
        .bind(now)
        .bind(agent)
        .bind(app_id)
        .execute(&self.writer)
        .await?;
        Ok(session)
    }

    /// The session whose id is `session`, with its application's current
    /// action-set version.
    ///
    /// # Errors
    /// Database errors.
    pub async fn session(&self, session: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT s.id_hash, s.app_id, s.actions_version, a.actions_version AS app_version \
             FROM sessions s JOIN apps a ON a.id = s.app_id WHERE s.id_hash = $1",
        )
        .bind(secret::hash(session))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                id_hash: r.try_get("id_hash")?,
                app_id: r.try_get("app_id")?,
                actions_version: r.try_get("actions_version")?,
                app_actions_version: r.try_get("app_version")?,
            })
        })
        .transpose()
    }

    /// Records a heartbeat: the session was seen now and has (or is about
    /// to fetch) action-set version `actions_version`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn touch_session(
        &self,
        id_hash: &str,
        actions_version: i64,
    ) -> Result<(), StoreError> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE sessions SET last_seen = $1, actions_version = $2 WHERE id_hash = $3")
            .bind(now_ms())
            .bind(actions_version)
            .bind(id_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Ends a session (logout).
    ///
    /// # Errors
    /// Database errors.
    pub async fn close_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let _w = self.write_guard().await;
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Forgets sessions not seen since `before` (ms), playbook hits older
    /// than `hits_before`, expired alert locks and the logouts of dashboard
    /// sessions that have expired anyway: the periodic housekeeping.
    ///
    /// # Errors
    /// Database errors.
    pub async fn prune(&self, before: i64, hits_before: i64) -> Result<(), StoreError> {
        let _w = self.write_guard().await;
        sqlx::query("DELETE FROM sessions WHERE last_seen < $1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        sqlx::query("DELETE FROM playbook_hits WHERE time < $1")
            .bind(hits_before)
            .execute(&self.writer)
            .await?;
        sqlx::query("DELETE FROM playbook_locks WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        sqlx::query("DELETE FROM revoked_sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    // ── dashboard sessions ──────────────────────────────────────────────

    /// Ends the dashboard session whose cookie carries `nonce`: every
    /// process on this database refuses it from now on. `expires_at` (ms)
    /// is when the cookie would have expired, after which the row is
    /// forgotten by [`Store::prune`].
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke_session(&self, nonce: &str, expires_at: i64) -> Result<(), StoreError> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO revoked_sessions (nonce, expires_at) VALUES ($1, $2) \
             ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Whether the dashboard session of `nonce` was ended by a logout.
    ///
    /// # Errors
    /// Database errors.
    pub async fn session_revoked(&self, nonce: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS revoked FROM revoked_sessions WHERE nonce = $1")
            .bind(nonce)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite URLs get create-if-missing; other schemes are refused.
    #[test]
    fn urls_are_normalised() {
        assert_eq!(
            normalise_url("sqlite://x.db").expect("ok"),
            ("sqlite://x.db?mode=rwc".to_owned(), Backend::Sqlite)
        );
        assert_eq!(
            normalise_url("sqlite://x.db?mode=ro").expect("ok").0,
            "sqlite://x.db?mode=ro"
        );
        assert_eq!(
            normalise_url("postgres://u@h/db").expect("ok").1,
            Backend::Postgres
        );
        assert!(normalise_url("mysql://h/db").is_err());
    }

    /// SQLite URLs name their file; others name none.
    #[test]
    fn sqlite_paths() {
        let path = |u| sqlite_path(u).map(|p| p.display().to_string());
        assert_eq!(path("sqlite://x.db?mode=rwc").as_deref(), Some("x.db"));
        assert_eq!(path("sqlite:///tmp/x.db").as_deref(), Some("/tmp/x.db"));
        assert_eq!(path("sqlite:x.db").as_deref(), Some("x.db"));
        assert_eq!(path("sqlite::memory:"), None);
        assert_eq!(path("postgres://h/db"), None);
    }
}
