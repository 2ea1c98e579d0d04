//! What this server process refused, failed at and stored since it started,
//! served at `GET /api/stats`.
//!
//! Every answer passes through [`record_outcome`]: a client error (bad
//! body, bad token, unknown route, body too large…) is counted by status and
//! logged with its reason, a server error is counted (its cause is logged
//! where it happened). Counters live in the process, like the agent's: with
//! several `serve` processes on one PostgreSQL database, each counts its
//! own requests.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use crate::AppState;

/// The reason of an error answer, attached by [`crate::error::ApiError`]
/// so that [`record_outcome`] can log it.
#[derive(Clone, Debug)]
pub struct ErrorReason(pub String);

/// Counters of one server process.
#[derive(Debug, Default)]
pub struct Stats {
    bad_request: AtomicU64,
    unauthorized: AtomicU64,
    not_found: AtomicU64,
    too_large: AtomicU64,
    too_many_requests: AtomicU64,
    other_client_error: AtomicU64,
    server_error: AtomicU64,
    events_stored: AtomicU64,
    events_duplicate: AtomicU64,
    agent_fields_ignored: AtomicU64,
    agent_reports_acknowledged: AtomicU64,
    agent_events_refused: AtomicU64,
}

/// A snapshot of [`Stats`], as `GET /api/stats` answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    /// Requests answered 400 (malformed or invalid body or parameters).
    pub bad_request: u64,
    /// Requests answered 401 (wrong token, session or admin key).
    pub unauthorized: u64,
    /// Requests answered 404.
    pub not_found: u64,
    /// Requests answered 413 (body over the limit).
    pub too_large: u64,
    /// Requests answered 429 (too many wrong admin keys from one address).
    pub too_many_requests: u64,
    /// Other 4xx answers (wrong method, media type…).
    pub other_client_error: u64,
    /// 5xx answers (storage failures).
    pub server_error: u64,
    /// Events and metric observations stored.
    pub events_stored: u64,
    /// Events received again (a retried batch) and not stored twice.
    pub events_duplicate: u64,
    /// Fields and SDK entries of agent bodies this server does not know,
    /// ignored (the historical agents send more than it stores).
    pub agent_fields_ignored: u64,
    /// Agent events and reports acknowledged without being stored
    /// (`sqreen_exception`, `attack`, `agent_message`, bundles…).
    pub agent_reports_acknowledged: u64,
    /// Events of batches refused one by one while the rest of their batch
    /// was stored.
    pub agent_events_refused: u64,
    /// Merges of event attributes into the explorer's index that moved rows.
    pub attribute_merges: u64,
    /// Merges that failed (retried later; nothing is lost).
    pub attribute_merge_failures: u64,
    /// Times the enabled playbooks were loaded and compiled (once per
    /// change of the playbooks, not per batch).
    pub playbook_loads: u64,
    /// Webhooks delivered.
    pub webhooks_sent: u64,
    /// Webhooks abandoned after every attempt failed.
    pub webhooks_failed: u64,
    /// Webhooks not sent because their destination is forbidden
    /// ([`crate::destination`]).
    pub webhooks_refused: u64,
    /// Webhooks not sent because too many were in flight.
    pub webhooks_dropped: u64,
}

impl Stats {
    /// Counts one answer of `status`.
    pub fn count_status(&self, status: StatusCode) {
        let counter = match status {
            StatusCode::BAD_REQUEST => &self.bad_request,
            StatusCode::UNAUTHORIZED => &self.unauthorized,
            StatusCode::NOT_FOUND => &self.not_found,
            StatusCode::PAYLOAD_TOO_LARGE => &self.too_large,
            StatusCode::TOO_MANY_REQUESTS => &self.too_many_requests,
            s if s.is_client_error() => &self.other_client_error,
            s if s.is_server_error() => &self.server_error,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the outcome of one stored batch.
    pub fn count_events(&self, stored: u64, duplicate: u64) {
        self.events_stored.fetch_add(stored, Ordering::Relaxed);
        self.events_duplicate
            .fetch_add(duplicate, Ordering::Relaxed);
    }

    /// Counts what a lenient decoder skipped: unknown fields, reports
    /// acknowledged without being stored, events refused alone.
    pub fn count_leniency(&self, unknown_fields: u64, acknowledged: u64, refused: u64) {
        self.agent_fields_ignored
            .fetch_add(unknown_fields, Ordering::Relaxed);
        self.agent_reports_acknowledged
            .fetch_add(acknowledged, Ordering::Relaxed);
        self.agent_events_refused
            .fetch_add(refused, Ordering::Relaxed);
    }

    /// The counters now; the merge counters come from the store, the
    /// webhook counters from the notifier.
    pub fn view(
        &self,
        merges: u64,
        merge_failures: u64,
        webhooks: crate::notify::WebhookCounts,
    ) -> StatsView {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsView {
            bad_request: get(&self.bad_request),
            unauthorized: get(&self.unauthorized),
            not_found: get(&self.not_found),
            too_large: get(&self.too_large),
            too_many_requests: get(&self.too_many_requests),
            other_client_error: get(&self.other_client_error),
            server_error: get(&self.server_error),
            events_stored: get(&self.events_stored),
            events_duplicate: get(&self.events_duplicate),
            agent_fields_ignored: get(&self.agent_fields_ignored),
            agent_reports_acknowledged: get(&self.agent_reports_acknowledged),
            agent_events_refused: get(&self.agent_events_refused),
            attribute_merges: merges,
            attribute_merge_failures: merge_failures,
            playbook_loads: 0,
            webhooks_sent: webhooks.sent,
            webhooks_failed: webhooks.failed,
            webhooks_refused: webhooks.refused,
            webhooks_dropped: webhooks.dropped,
        }
    }
}

/// Middleware over every route: counts error answers and logs client
/// errors with their reason (axum's own refusals, such as a body over the
/// limit, carry none: their status says it).
pub async fn record_outcome(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        state.stats.count_status(status);
        if status.is_client_error() {
            let reason = response
                .extensions()
                .get::<ErrorReason>()
                .map_or("", |r| r.0.as_str());
            tracing::warn!(event = "request.refused", %method, path = %truncated(&path),
                status = status.as_u16(), reason, "request refused");
        }
    }
    response
}

/// `path` cut to 200 bytes (at a character boundary) for the log.
fn truncated(path: &str) -> &str {
    let mut end = path.len().min(200);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_counted_by_kind() {
        let stats = Stats::default();
        for s in [400, 400, 401, 404, 405, 413, 429, 500, 503, 200, 303] {
            stats.count_status(StatusCode::from_u16(s).unwrap_or(StatusCode::OK));
        }
        stats.count_events(7, 2);
        stats.count_leniency(3, 2, 1);
        let webhooks = crate::notify::WebhookCounts {
            sent: 4,
            failed: 5,
            refused: 6,
            dropped: 7,
        };
        let v = stats.view(3, 1, webhooks);
        assert_eq!(
            v,
            StatsView {
                bad_request: 2,
                unauthorized: 1,
                not_found: 1,
                too_large: 1,
                too_many_requests: 1,
                other_client_error: 1,
                server_error: 2,
                events_stored: 7,
                events_duplicate: 2,
                agent_fields_ignored: 3,
                agent_reports_acknowledged: 2,
                agent_events_refused: 1,
                attribute_merges: 3,
                attribute_merge_failures: 1,
                playbook_loads: 0,
                webhooks_sent: 4,
                webhooks_failed: 5,
                webhooks_refused: 6,
                webhooks_dropped: 7,
            }
        );
    }

    #[test]
    fn long_paths_are_cut_at_a_boundary() {
        let path = "é".repeat(150);
        let cut = truncated(&path);
        assert!(cut.len() <= 200);
        assert!(path.starts_with(cut));
    }
}
