//! Ingestion: the batch insert, the merge of attributes into their
//! filter-ordered table, and the deletion of events (retention, deleted
//! applications).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use sqlx::Row;

use super::*;
use crate::store::{Backend, Param, Store, StoreError, bind_all, without_nul};
use crate::time::now_ms;

impl Store {
    /// Stores `events` for `app_id` in one transaction, skipping those whose
    /// `rid` is already stored (a retried batch), with their attributes and
    /// the playbook hits of the new ones. Returns, per event, whether it was
    /// new.
    ///
    /// # Errors
    /// Database errors; nothing is stored then.
    pub async fn insert_events(
        &self,
        app_id: i64,
        events: &[NewEvent],
        hits: &[HitCandidate],
    ) -> Result<Vec<bool>, StoreError> {
        // The same rid twice in one batch: keep the first.
        let mut seen = HashSet::with_capacity(events.len());
        let unique: Vec<usize> = (0..events.len())
            .filter(|&i| seen.insert(without_nul(&events[i].rid)))
            .collect();
        let now = now_ms();
        let mut ids: Vec<Option<i64>> = vec![None; events.len()];

        // Events holding their own context first, so that the others of
        // their record can refer to them by id.
        let (holders, sharing): (Vec<usize>, Vec<usize>) = unique
            .iter()
            .partition(|&&i| events[i].context_of.is_none());

        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        // An app deleted since its session was looked up gets no events: its
        // purge would miss them.
        if !self.app_still_exists(&mut tx, app_id).await? {
            tx.rollback().await?;
            return Err(StoreError::AppDeleted);
        }
        for chunk in holders.chunks(CHUNK).chain(sharing.chunks(CHUNK)) {
            let sql = format!(
                "INSERT INTO events (app_id, rid, event, time, client_ip, user_key, properties, \
                 count, request, response, received_at, context_id) VALUES {} \
                 ON CONFLICT (app_id, time, rid) DO NOTHING RETURNING id, rid",
                values_sql(chunk.len(), 12, self.backend)
            );
            let mut q = sqlx::query(&sql);
            for &i in chunk {
                let e = &events[i];
                // A holder stored earlier in this call: refer to it. (One
                // that was stored before, by a retried batch, gets no id
                // here: the event then keeps its own copy.)
                let context_id = e.context_of.and_then(|h| ids.get(h).copied().flatten());
                let (request, response) = if context_id.is_some() {
                    ("null", "null")
                } else {
                    (&*e.request, &*e.response)
                };
                q = q
                    .bind(app_id)
                    .bind(without_nul(&e.rid).into_owned())
                    .bind(without_nul(&e.event).into_owned())
                    .bind(e.time)
                    .bind(e.client_ip.as_str())
                    .bind(e.user_key())
                    .bind(serde_json::to_string(&e.properties)?)
                    .bind(e.count)
                    .bind(request)
                    .bind(response)
                    .bind(now)
                    .bind(context_id);
            }
            let rows = q.fetch_all(&mut *tx).await?;
            let by_rid: HashMap<String, usize> = chunk
                .iter()
                .map(|&i| (without_nul(&events[i].rid).into_owned(), i))
                .collect();
            for row in rows {
                let id: i64 = row.try_get("id")?;
                let rid: String = row.try_get("rid")?;
                if let Some(&i) = by_rid.get(rid.as_str()) {
                    ids[i] = Some(id);
                }
            }
        }

        let mut attrs: Vec<(i64, &'static str, &str, String, i64)> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let Some(id) = ids[i] else { continue };
            if !e.client_ip.is_empty() {
                attrs.push((id, "i", "", e.client_ip.clone(), e.time));
            }
            for (k, v) in &e.properties {
                attrs.push((id, "p", k.as_str(), attr_text(v), e.time));
            }
            for (k, v) in &e.user_identifiers {
                attrs.push((id, "u", k.as_str(), v.clone(), e.time));
            }
        }
        attrs.retain(|a| a.2.len() <= MAX_INDEXED_VALUE && a.3.len() <= MAX_INDEXED_VALUE);
        for chunk in attrs.chunks(CHUNK) {
            let sql = format!(
                // The key is (event_id, kind, key, value): two keys of one
                // event equal once NULs are replaced add one row.
                "INSERT INTO event_attrs_by_event (event_id, kind, key, value, time) VALUES {} \
                 ON CONFLICT DO NOTHING",
                values_sql(chunk.len(), 5, self.backend)
            );
            let mut q = sqlx::query(&sql);
            for (id, kind, key, value, time) in chunk {
                q = q
                    .bind(*id)
                    .bind(*kind)
                    .bind(without_nul(key).into_owned())
                    .bind(without_nul(value).into_owned())
                    .bind(*time);
            }
            q.execute(&mut *tx).await?;
        }
        // The events whose attributes `event_attrs` does not have yet
        // (`attrs` is in event order).
        let mut unmerged: Vec<i64> = attrs.iter().map(|a| a.0).collect();
        unmerged.dedup();
        for chunk in unmerged.chunks(CHUNK * 5) {
            let sql = format!(
                "INSERT INTO event_attrs_unmerged (event_id) VALUES {}",
                values_sql(chunk.len(), 1, self.backend)
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }

        let new_hits: Vec<&HitCandidate> = hits
            .iter()
            .filter(|h| ids.get(h.event_index).is_some_and(Option::is_some))
            .collect();
        for chunk in new_hits.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO playbook_hits (playbook_id, app_id, actor, time, count) VALUES {}",
                values_sql(chunk.len(), 5, self.backend)
            );
            let mut q = sqlx::query(&sql);
            for h in chunk {
                q = q
                    .bind(h.playbook_id)
                    .bind(app_id)
                    .bind(without_nul(&h.actor).into_owned())
                    .bind(h.time)
                    .bind(h.count);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        drop(_w);
        self.note_unmerged(attrs.len() as u64);
        Ok(ids.iter().map(Option::is_some).collect())
    }

    /// Removes the events of deleted applications ([`Store::delete_app`])
    /// with their attributes, [`PURGE_BATCH`] events per transaction so that
    /// ingestion waits at most one batch, until none is left; returns how
    /// many were removed. Resumes purges an earlier process left unfinished
    /// (housekeeping calls it every minute). Returns 0 at once when this
    /// process is purging already.
    ///
    /// # Errors
    /// Database errors; what is left is removed by a later call.
    pub async fn purge_deleted_apps(&self) -> Result<u64, StoreError> {
        if self.purging.swap(true, Ordering::AcqRel) {
            return Ok(0);
        }
        let result = self.purge_deleted_apps_now().await;
        self.purging.store(false, Ordering::Release);
        if let Err(e) = &result {
            tracing::warn!(event = "app.purge_failed", error = %e,
                "removing a deleted application's events failed; will retry");
        }
        result
    }

    async fn purge_deleted_apps_now(&self) -> Result<u64, StoreError> {
        let pending = sqlx::query("SELECT app_id, name FROM app_purges ORDER BY app_id")
            .fetch_all(&self.pool)
            .await?;
        let mut total = 0;
        for row in pending {
            let app_id: i64 = row.try_get("app_id")?;
            let name: String = row.try_get("name")?;
            let mut removed = 0;
            loop {
                let n = self.purge_batch(app_id).await?;
                if n == 0 {
                    break;
                }
                removed += n;
            }
            {
                let _w = self.write_guard().await;
                sqlx::query("DELETE FROM app_purges WHERE app_id = $1")
                    .bind(app_id)
                    .execute(&self.writer)
                    .await?;
            }
            tracing::info!(event = "app.purged", app_id, app = %name, events = removed,
                "the deleted application's events are removed");
            total += removed;
        }
        Ok(total)
    }

    /// Removes up to [`PURGE_BATCH`] events of app `app_id` with their
    /// attributes, in one transaction; returns how many.
    async fn purge_batch(&self, app_id: i64) -> Result<u64, StoreError> {
        self.delete_event_batch(EventBatch::OfApp(app_id)).await
    }

    /// Removes up to [`PURGE_BATCH`] events of `which`, oldest first, with
    /// their attributes, in one transaction under the write lock (held
    /// only for that batch, so that ingestion goes on between batches);
    /// returns how many.
    pub(crate) async fn delete_event_batch(&self, which: EventBatch) -> Result<u64, StoreError> {
        let (condition, bound) = match which {
            EventBatch::OfApp(app_id) => ("app_id = $1", app_id),
            EventBatch::Before(time) => ("time < $1", time),
        };
        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM events WHERE {condition} ORDER BY time, id LIMIT $2"
        ))
        .bind(bound)
        .bind(PURGE_BATCH as i64)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let list: String = (1..=ids.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(",");
        let params: Vec<Param> = ids.iter().map(|id| Param::Int(*id)).collect();
        // The unmerged list first: on PostgreSQL a merge that claimed these
        // events is waited for, so that the attributes it copied are
        // visible to the next statement (and one that starts later skips
        // them).
        for sql in [
            format!("DELETE FROM event_attrs_unmerged WHERE event_id IN ({list})"),
            format!(
                "DELETE FROM event_attrs WHERE (kind, key, value, time, event_id) IN \
                 (SELECT kind, key, value, time, event_id FROM event_attrs_by_event \
                 WHERE event_id IN ({list}))"
            ),
            format!("DELETE FROM event_attrs_by_event WHERE event_id IN ({list})"),
            format!("DELETE FROM events WHERE id IN ({list})"),
        ] {
            bind_all(&sql, &params).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    /// Counts `added` unmerged attribute rows, and starts a background merge
    /// once [`MERGE_ROWS`] have gathered and none is running.
    fn note_unmerged(&self, added: u64) {
        let pending = self.merge.pending.fetch_add(added, Ordering::Relaxed) + added;
        if pending < MERGE_ROWS || self.merge.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            // Failures are logged and counted by `merge_attributes`.
            let _ = store.merge_attributes().await;
            store.merge.running.store(false, Ordering::Release);
        });
    }

    /// Merges of event attributes that moved rows, and merges that failed,
    /// in this process.
    pub fn merge_counts(&self) -> (u64, u64) {
        (
            self.merge.merges.load(Ordering::Relaxed),
            self.merge.failures.load(Ordering::Relaxed),
        )
    }

    /// Copies the attributes of every unmerged event into `event_attrs` in
    /// one sorted run, in one transaction (a query counts each attribute
    /// once, before or after). Runs by itself in the background; call it to
    /// have every attribute in the index now. Returns the rows copied. Safe
    /// to run from several processes at once on PostgreSQL.
    ///
    /// # Errors
    /// Database errors (logged and counted); nothing is merged then, and the
    /// attributes wait for the next merge.
    pub async fn merge_attributes(&self) -> Result<u64, StoreError> {
        match self.merge_attributes_now().await {
            Ok(moved) => {
                if moved > 0 {
                    self.merge.merges.fetch_add(1, Ordering::Relaxed);
                }
                Ok(moved)
            }
            Err(e) => {
                self.merge.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(event = "store.merge_failed", error = %e,
                    "merging event attributes into the index failed; will retry");
                Err(e)
            }
        }
    }

    async fn merge_attributes_now(&self) -> Result<u64, StoreError> {
        self.merge.pending.store(0, Ordering::Relaxed);
        let _w = self.write_guard().await;
        let started = std::time::Instant::now();
        let moved = match self.backend {
            Backend::Sqlite => {
                let mut tx = self.writer.begin().await?;
                let last: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(event_id) FROM event_attrs_unmerged")
                        .fetch_one(&mut *tx)
                        .await?;
                let Some(last) = last else {
                    return Ok(0);
                };
                let moved = sqlx::query(&format!(
                    "INSERT INTO event_attrs (event_id, kind, key, value, time) \
                     SELECT b.event_id, b.kind, b.key, b.value, b.time FROM {UNMERGED} \
                     WHERE {UNMERGED_JOIN} AND u.event_id <= $1 ORDER BY b.kind, b.key, b.value, b.time, b.event_id \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(last)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM event_attrs_unmerged WHERE event_id <= $1")
                    .bind(last)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                moved
            }
            // Each process copies the events its DELETE claimed; events
            // another process is merging are skipped once it commits.
            Backend::Postgres => {
                let moved = sqlx::query(
                    "WITH moved AS (DELETE FROM event_attrs_unmerged RETURNING event_id) \
                     INSERT INTO event_attrs (event_id, kind, key, value, time, client_ip, count) \
                     SELECT b.event_id, b.kind, b.key, b.value, b.time, e.client_ip, e.count \
                     FROM moved u JOIN event_attrs_by_event b ON b.event_id = u.event_id \
                     JOIN events e ON e.id = b.event_id AND e.time = b.time \
                     ORDER BY b.kind, b.key, b.value, b.time, b.event_id ON CONFLICT DO NOTHING",
                )
                .execute(&self.writer)
                .await?
                .rows_affected();
                // The list is emptied by every merge: until vacuumed, its dead
                // rows made every explorer query's planning slow (60-80 ms
                // instead of 2 ms: the planner reads the key's live range
                // from the index). The event tables' new pages become
                // all-visible, so that index-only scans of recent events stop
                // reading each row's table page (see migration 0007; a
                // vacuum of an insert-only table visits only its new pages).
                // Autovacuum would come within a minute or so; a table
                // another process is vacuuming is left to it.
                if moved > 0
                    && let Err(e) = sqlx::query(
                        "VACUUM (SKIP_LOCKED) event_attrs_unmerged, events, event_attrs, \
                         event_attrs_by_event",
                    )
                    .execute(&self.writer)
                    .await
                {
                    tracing::warn!(event = "store.vacuum_failed", error = %e,
                        "could not vacuum the event tables after a merge");
                }
                moved
            }
        };
        tracing::debug!(
            event = "store.merged",
            rows = moved,
            ms = started.elapsed().as_millis() as u64,
            "event attributes merged"
        );
        Ok(moved)
    }

    /// The request and response of the events that `rows` (with a
    /// `context_id` column) share them with, by id. An event whose holder
    /// is gone (deleted by retention first) shows none.
    pub(in crate::store) async fn shared_contexts(
        &self,
        rows: &[sqlx::any::AnyRow],
    ) -> Result<HashMap<i64, (String, String)>, StoreError> {
        let mut wanted: Vec<i64> = Vec::new();
        for row in rows {
            if let Some(id) = row.try_get::<Option<i64>, _>("context_id")? {
                wanted.push(id);
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        let mut found = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(CHUNK) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, request, response FROM events WHERE id IN ({})",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                found.insert(
                    row.try_get("id")?,
                    (row.try_get("request")?, row.try_get("response")?),
                );
            }
        }
        Ok(found)
    }
}
