//! PostgreSQL's event tables, partitioned by week.
//!
//! On PostgreSQL, `events`, `event_attrs` and `event_attrs_by_event` are
//! partitioned by the events' time (migration `0013_partitioned_events`):
//! week `N` (counted from the Unix epoch, [`WEEK_MS`] long) is the partition
//! `events_wN` of each table, and a default partition takes times outside
//! the weeks created (a clock far off, a record queued for months).
//!
//! - [`Store::ensure_event_partitions`] creates this week and the next, at
//!   start and in every housekeeping round, so that new events never land
//!   in the default partition for long. Rows the default partition holds
//!   for a week move into it when the week is created.
//! - Retention ([`Store::apply_retention`]) drops each week that ended
//!   before the cut-off, three `DROP TABLE`s instead of deleting its rows
//!   one by one; what is left before the cut-off (the week the cut-off
//!   falls in, the default partition) is deleted in batches as on SQLite.
//!
//! Creating or dropping a week takes a brief exclusive lock on the parent
//! tables: both wait at most [`LOCK_TIMEOUT`] for it (behind a long explorer
//! query, say) and otherwise give up until the next housekeeping round, so
//! ingestion is never held up behind them. Processes sharing a database
//! take turns through an advisory lock.
//!
//! SQLite keeps plain tables: these methods do nothing there.

use sqlx::Row;

use super::{Backend, Store, StoreError};

/// The span of one partition: a week, in milliseconds.
pub const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

/// How long creating or dropping a week waits for its locks.
pub const LOCK_TIMEOUT: &str = "5s";

/// The advisory lock that processes sharing a database take to change
/// partitions (an arbitrary constant: "sqreen" in ASCII).
const PARTITION_LOCK: i64 = 0x73_71_72_65_65_6e;

/// The week (partition number) of a time in milliseconds.
pub fn week_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(WEEK_MS)
}

impl Store {
    /// Creates the partitions of this week and the next (see the module
    /// docs) where they are missing; returns how many weeks were created.
    /// Does nothing on SQLite.
    ///
    /// # Errors
    /// Database errors, a lock not had within [`LOCK_TIMEOUT`] among them;
    /// events then go to the default partition until a later call succeeds.
    pub async fn ensure_event_partitions(&self, now_ms: i64) -> Result<u32, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(0);
        }
        let this_week = week_of(now_ms);
        let mut created = 0;
        for week in [this_week, this_week + 1] {
            if self.week_exists(week).await? {
                continue;
            }
            let mut tx = self.partition_transaction().await?;
            let made: bool = sqlx::query_scalar("SELECT sqreen_event_week($1)")
                .bind(week)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            if made {
                created += 1;
                tracing::info!(
                    event = "store.partition_created",
                    week,
                    from_ms = week * WEEK_MS,
                    "created the event partitions of a week"
                );
            }
        }
        Ok(created)
    }

    /// A transaction for changing partitions: the processes sharing the
    /// database take turns, and a lock not had within [`LOCK_TIMEOUT`]
    /// fails it.
    async fn partition_transaction(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn week_exists(&self, week: i64) -> Result<bool, StoreError> {
        let found: Option<String> = sqlx::query_scalar("SELECT CAST(to_regclass($1) AS TEXT)")
            .bind(format!("events_w{week}"))
            .fetch_one(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// The weeks that have partitions, in order. Empty on SQLite.
    ///
    /// # Errors
    /// Database errors.
    pub async fn event_partition_weeks(&self) -> Result<Vec<i64>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(Vec::new());
        }
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(c.relname AS TEXT) FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = CAST('events' AS regclass)",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut weeks: Vec<i64> = names
            .iter()
            .filter_map(|n| n.strip_prefix("events_w")?.parse().ok())
            .collect();
        weeks.sort_unstable();
        Ok(weeks)
    }

    /// Drops every week that ended at or before `cutoff_ms`, with its rows
    /// in the three event tables; returns the events dropped. Does nothing
    /// on SQLite.
    ///
    /// Attribute rows still waiting for a merge name events that are gone
    /// then; the next merge finds nothing to copy for them and forgets
    /// them.
    pub(crate) async fn drop_expired_weeks(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut dropped = 0;
        for week in self.event_partition_weeks().await? {
            let ends = week.saturating_add(1).saturating_mul(WEEK_MS);
            if ends > cutoff_ms {
                break;
            }
            let mut tx = self.partition_transaction().await?;
            // Another process may have dropped it meanwhile.
            let row = sqlx::query("SELECT CAST(to_regclass($1) AS TEXT) AS t")
                .bind(format!("events_w{week}"))
                .fetch_one(&mut *tx)
                .await?;
            if row.try_get::<Option<String>, _>("t")?.is_none() {
                tx.rollback().await?;
                continue;
            }
            // `week` is an integer read back from the catalogue: the names
            // are safe to format.
            let events: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM events_w{week}"))
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(&format!(
                "DROP TABLE events_w{week}, event_attrs_w{week}, event_attrs_by_event_w{week}"
            ))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(
                event = "store.partition_dropped",
                week,
                events,
                "dropped the event partitions of a week past the retention period"
            );
            dropped += u64::try_from(events).unwrap_or(0);
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_at_the_epoch() {
        assert_eq!(week_of(0), 0);
        assert_eq!(week_of(WEEK_MS - 1), 0);
        assert_eq!(week_of(WEEK_MS), 1);
        assert_eq!(week_of(-1), -1);
        // 2026-12-07T00:00:00Z is in week 2970.
        assert_eq!(week_of(1_796_601_600_000), 2970);
    }
}
