//! Retention: what the server forgets, and when.
//!
//! Housekeeping calls [`Store::apply_retention`] every minute with the
//! cut-off of `--retention` (default 30 days; `off` keeps everything):
//!
//! | what | removed when |
//! | --- | --- |
//! | events, with their indexed attributes | their time is before the cut-off |
//! | alerts | raised before the cut-off, unless an action they created is still live |
//! | actions | lifted, or expired, before the cut-off (live ones stay, however old) |
//!
//! On PostgreSQL, each week of events that ended before the cut-off is
//! dropped whole (see `partitions`). The events left (on SQLite, all of
//! them) go [`PURGE_BATCH`] at a time, oldest first, each batch one short
//! transaction under the write lock, so ingestion carries on between
//! batches and a large backlog (the first run after retention is turned on)
//! never holds a long lock. One process runs it at a time (several on one
//! PostgreSQL database may overlap harmlessly: each batch deletes what is
//! still there).
//!
//! An event that shares its request context with an older event of the
//! same record ([`super::NewEvent::context_of`]) may outlive it by the
//! milliseconds between them: it then shows no request.

use std::sync::atomic::Ordering;

use super::events::EventBatch;
use super::{PURGE_BATCH, Store, StoreError};

/// Default retention: 30 days.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;

/// What one run of [`Store::apply_retention`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Events removed.
    pub events: u64,
    /// Alerts removed.
    pub alerts: u64,
    /// Ended actions removed.
    pub actions: u64,
}

impl Store {
    /// Removes events, alerts and ended actions older than `cutoff_ms`
    /// (see the module docs). Returns at once, with nothing removed, when
    /// this process is already applying it.
    ///
    /// # Errors
    /// Database errors; what is left is removed by a later call.
    pub async fn apply_retention(&self, cutoff_ms: i64) -> Result<RetentionReport, StoreError> {
        if self.retaining.swap(true, Ordering::AcqRel) {
            return Ok(RetentionReport::default());
        }
        let result = self.apply_retention_now(cutoff_ms).await;
        self.retaining.store(false, Ordering::Release);
        match &result {
            Ok(r) if *r != RetentionReport::default() => {
                tracing::info!(
                    event = "retention.applied",
                    events = r.events,
                    alerts = r.alerts,
                    actions = r.actions,
                    cutoff_ms,
                    "removed data older than the retention period"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(event = "retention.failed", error = %e,
                "applying retention failed; will retry"),
        }
        result
    }

    async fn apply_retention_now(&self, cutoff_ms: i64) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport {
            events: self.drop_expired_weeks(cutoff_ms).await?,
            ..RetentionReport::default()
        };
        loop {
            let n = self
                .delete_event_batch(EventBatch::Before(cutoff_ms))
                .await?;
            report.events += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
            // Let writers waiting for the lock in.
            tokio::task::yield_now().await;
        }
        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        report.actions = sqlx::query(
            "DELETE FROM actions WHERE (lifted_at IS NOT NULL AND lifted_at < $1) \
             OR (expires_at IS NOT NULL AND expires_at < $1)",
        )
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE alert_id IN (SELECT id FROM alerts \
             WHERE time < $1 AND NOT EXISTS (SELECT 1 FROM actions x WHERE x.alert_id = alerts.id))",
        )
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?;
        report.alerts = sqlx::query(
            "DELETE FROM alerts WHERE time < $1 AND NOT EXISTS \
             (SELECT 1 FROM actions x WHERE x.alert_id = alerts.id)",
        )
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(report)
    }
}
