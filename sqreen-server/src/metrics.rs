//! `GET /metrics`: this server's figures in the Prometheus text format
//! (version 0.0.4), for a Prometheus scraper.
//!
//! Access: `Authorization: Bearer <admin key>`, or `Bearer <metrics token>`
//! when the server has one (`--metrics-token`,
//! `SQREEN_SERVER_METRICS_TOKEN`, at least 32 characters), so that a
//! scraper needs no admin key. Both are compared by their SHA-256 in
//! constant time, and wrong ones count as admin key guesses
//! ([`crate::key_limiter`]): too many from one address get 429s.
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `sqreen_events_stored_total` | counter | events and metric observations stored by this process |
//! | `sqreen_events_duplicate_total` | counter | events received again and not stored twice |
//! | `sqreen_agent_fields_ignored_total`, `sqreen_agent_reports_acknowledged_total`, `sqreen_agent_events_refused_total` | counter | what the lenient agent decoder skipped ([`crate::stats::StatsView`]) |
//! | `sqreen_http_errors_total{kind}` | counter | error answers: `bad_request`, `unauthorized`, `not_found`, `too_large`, `too_many_requests`, `other_client_error`, `server_error` |
//! | `sqreen_attribute_merges_total`, `sqreen_attribute_merge_failures_total` | counter | merges of event attributes into the explorer's index |
//! | `sqreen_playbook_loads_total` | counter | compilations of the enabled playbooks |
//! | `sqreen_playbook_evaluations_total` | counter | batches whose events matched a playbook and were evaluated |
//! | `sqreen_playbook_evaluation_failures_total` | counter | such evaluations that failed (their events are stored) |
//! | `sqreen_webhook_deliveries_total{outcome}` | counter | webhooks `sent`, `failed` (every attempt), `refused` (forbidden destination), `dropped` (too many in flight) |
//! | `sqreen_batch_duration_seconds` | histogram | handling of one agent batch (`POST /sqreen/v0/batch`): decoding, storing, playbooks |
//! | `sqreen_alerts` | gauge | alerts in the database (fired, not yet removed by retention) |
//! | `sqreen_actions_live` | gauge | live actions (neither lifted nor expired), every app |
//! | `sqreen_db_pool_connections`, `sqreen_db_pool_idle_connections` | gauge | the read pool's open and idle connections |
//!
//! Counters are this process's since it started (like `/api/stats`, whose
//! figures they are); the gauges `sqreen_alerts` and `sqreen_actions_live`
//! are read from the database at each scrape, so every process of a shared
//! PostgreSQL database reports the same.
//!
//! Each [`crate::Server`] has its own registry (`prometheus-client`'s
//! [`Registry`]), never a process-wide recorder: several servers in one
//! process (the tests) keep their own figures.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::admin::check_bearer;
use crate::error::ApiError;
use crate::notify::Notifier;
use crate::playbook::PlaybookCache;
use crate::stats::Stats;
use crate::store::Store;

/// The media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics of one server: a registry of its own, the instruments the
/// handlers update, and a collector reading [`Stats`] at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    batch_duration: Histogram,
    playbook_evaluations: Counter,
    playbook_evaluation_failures: Counter,
    alerts: Gauge,
    actions_live: Gauge,
}

impl Metrics {
    /// A registry over `sources` (the same values the state shares).
    pub fn new(sources: Sources) -> Self {
        let mut registry = Registry::with_prefix("sqreen");
        // 1 ms to ~16 s: a batch of 10 000 events takes about a second.
        let batch_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register_with_unit(
            "batch_duration",
            "Handling of one agent batch: decoding, storing, playbooks",
            prometheus_client::registry::Unit::Seconds,
            batch_duration.clone(),
        );
        let playbook_evaluations = Counter::default();
        registry.register(
            "playbook_evaluations",
            "Batches whose events matched a playbook and were evaluated",
            playbook_evaluations.clone(),
        );
        let playbook_evaluation_failures = Counter::default();
        registry.register(
            "playbook_evaluation_failures",
            "Playbook evaluations that failed (their events are stored)",
            playbook_evaluation_failures.clone(),
        );
        let alerts = Gauge::default();
        registry.register(
            "alerts",
            "Alerts in the database (fired, not yet removed by retention)",
            alerts.clone(),
        );
        let actions_live = Gauge::default();
        registry.register(
            "actions_live",
            "Live actions (neither lifted nor expired) of every app",
            actions_live.clone(),
        );
        registry.register_collector(Box::new(sources));
        Self {
            registry,
            batch_duration,
            playbook_evaluations,
            playbook_evaluation_failures,
            alerts,
            actions_live,
        }
    }

    /// Records the handling time of one batch.
    pub fn observe_batch(&self, took: Duration) {
        self.batch_duration.observe(took.as_secs_f64());
    }

    /// Counts one playbook evaluation, failed or not.
    pub fn count_evaluation(&self, failed: bool) {
        self.playbook_evaluations.inc();
        if failed {
            self.playbook_evaluation_failures.inc();
        }
    }

    /// The text exposition, after reading the gauges from `store`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn render(&self, store: &Store) -> Result<String, crate::store::StoreError> {
        self.alerts.set(store.count_alerts().await?);
        self.actions_live.set(store.count_live_actions().await?);
        let mut text = String::with_capacity(4096);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .map_err(|e| crate::store::StoreError::Encoding(e.to_string()))?;
        Ok(text)
    }
}

/// What the collector reads at each scrape: the process's counters, the
/// notifier's, the store's merge counters and pool, the playbook cache.
#[derive(Debug)]
pub struct Sources {
    /// Counters of [`crate::stats`].
    pub stats: Arc<Stats>,
    /// Webhook counters.
    pub notifier: Notifier,
    /// Merge counters and the pool.
    pub store: Store,
    /// Playbook loads.
    pub playbooks: Arc<PlaybookCache>,
}

/// Writes one unlabelled metric.
fn one(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes one counter family with a label `label`.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (value, n) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*n).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (merges, merge_failures) = self.store.merge_counts();
        let v = self
            .stats
            .view(merges, merge_failures, self.notifier.counts());
        let e = &mut encoder;
        let counters = [
            (
                "events_stored",
                "Events and metric observations stored",
                v.events_stored,
            ),
            (
                "events_duplicate",
                "Events received again and not stored twice",
                v.events_duplicate,
            ),
            (
                "agent_fields_ignored",
                "Unknown fields of agent bodies, ignored",
                v.agent_fields_ignored,
            ),
            (
                "agent_reports_acknowledged",
                "Agent reports acknowledged without being stored",
                v.agent_reports_acknowledged,
            ),
            (
                "agent_events_refused",
                "Events refused one by one while their batch was stored",
                v.agent_events_refused,
            ),
            (
                "attribute_merges",
                "Merges of event attributes into the index that moved rows",
                v.attribute_merges,
            ),
            (
                "attribute_merge_failures",
                "Merges of event attributes that failed",
                v.attribute_merge_failures,
            ),
            (
                "playbook_loads",
                "Loads of the enabled playbooks",
                self.playbooks.loads(),
            ),
        ];
        for (name, help, value) in counters {
            one(e, name, help, &ConstCounter::new(value))?;
        }
        family(
            e,
            "http_errors",
            "Error answers by kind",
            "kind",
            &[
                ("bad_request", v.bad_request),
                ("unauthorized", v.unauthorized),
                ("not_found", v.not_found),
                ("too_large", v.too_large),
                ("too_many_requests", v.too_many_requests),
                ("other_client_error", v.other_client_error),
                ("server_error", v.server_error),
            ],
        )?;
        family(
            e,
            "webhook_deliveries",
            "Webhooks by outcome",
            "outcome",
            &[
                ("sent", v.webhooks_sent),
                ("failed", v.webhooks_failed),
                ("refused", v.webhooks_refused),
                ("dropped", v.webhooks_dropped),
            ],
        )?;
        let pool = self.store.pool();
        one(
            e,
            "db_pool_connections",
            "Open connections of the read pool",
            &ConstGauge::new(i64::from(pool.size())),
        )?;
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        one(
            e,
            "db_pool_idle_connections",
            "Idle connections of the read pool",
            &ConstGauge::new(idle),
        )?;
        Ok(())
    }
}

/// Lets through requests carrying the admin key or the metrics token;
/// refuses the others like [`crate::admin::require_admin`] does (401, 429
/// after too many wrong ones).
pub async fn require_scraper(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let admin_or_token = |presented: &str| {
        // Both compared, in constant time, whichever matches.
        let admin = presented
            .as_bytes()
            .ct_eq(state.settings.admin_key_hash.as_bytes());
        let token = match &state.settings.metrics_token_hash {
            Some(hash) => presented.as_bytes().ct_eq(hash.as_bytes()),
            None => subtle::Choice::from(0),
        };
        bool::from(admin | token)
    };
    match check_bearer(
        &state,
        &request,
        "admin key or metrics token",
        admin_or_token,
    ) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /metrics`.
///
/// # Errors
/// 500 when the gauges cannot be read from the database.
#[utoipa::path(get, path = "/metrics", tag = "server",
    security(("admin_key" = []), ("metrics_token" = [])),
    responses(
        (status = 200, description = "the Prometheus text format (0.0.4)",
            content((String = "text/plain; version=0.0.4; charset=utf-8"))),
        (status = 401, description = "no or wrong credentials", body = crate::admin::ErrorBody),
    ))]
pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics.render(&state.store).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        text,
    )
        .into_response())
}

/// The `/metrics` route, behind [`require_scraper`].
pub fn routes(state: AppState) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .route_layer(axum::middleware::from_fn_with_state(state, require_scraper))
}
