//! The listing: pages of events, newest first, by `(time, id)` cursor, and
//! one event by id.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sqlx::Row;

use super::*;
use crate::store::{Backend, Param, Store, StoreError, bind_all};
use crate::time::format_ms;

impl Store {
    /// Events matching `filter`, newest first, at most `limit`, after
    /// `cursor` (from a previous page's `next_cursor`).
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<(i64, i64)>,
    ) -> Result<EventPage, StoreError> {
        let columns = "e.id, a.name AS app, e.event, e.time, e.client_ip, e.user_key, \
                       e.properties, e.count, e.request, e.response, e.context_id";
        let (sql, params) = self.page_sql(filter, limit + 1, cursor, columns);
        let rows = bind_all(&sql, &params).fetch_all(&self.pool).await?;
        let page = rows.get(..limit).unwrap_or(&rows);
        let shared = self.shared_contexts(page).await?;
        let mut events = Vec::with_capacity(page.len());
        for row in page {
            events.push(Self::event_view(row, &shared)?);
        }
        let next_cursor = if rows.len() > limit {
            events.last().map(|e| format!("{}.{}", e.time_ms, e.id))
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    /// Event `id` (of an application that still exists), with its request
    /// context; `None` when there is none.
    ///
    /// # Errors
    /// Database errors.
    pub async fn get_event(&self, id: i64) -> Result<Option<EventView>, StoreError> {
        let row = sqlx::query(
            "SELECT e.id, a.name AS app, e.event, e.time, e.client_ip, e.user_key, \
             e.properties, e.count, e.request, e.response, e.context_id \
             FROM events e JOIN apps a ON a.id = e.app_id WHERE e.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let rows = [row];
        let shared = self.shared_contexts(&rows).await?;
        Ok(Some(Self::event_view(&rows[0], &shared)?))
    }

    /// The statement (and its parameters) of the newest `limit` events
    /// matching `filter` after `cursor`, newest first, selecting `columns`
    /// (of `e`, the event, and `a`, its app; `time` and `id` among them).
    pub(in crate::store) fn page_sql(
        &self,
        filter: &EventFilter,
        limit: usize,
        cursor: Option<(i64, i64)>,
        columns: &str,
    ) -> (String, Vec<Param>) {
        // An attribute filter with a value (property, then user, then IP)
        // drives the query through the `(kind, key, value, time, event_id)`
        // key, already in page order: a common value stops after one page,
        // a rare one reads few rows. Otherwise the `(…, time, id)` indexes of
        // events drive it.
        let driver = attr_filters(filter)
            .into_iter()
            .find_map(|(kind, key, value)| value.map(|v| (kind, key, v)));
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let (time_col, id_col) = match driver {
            Some((kind, key, value)) => {
                params.push(Param::Text(key.to_owned()));
                params.push(Param::Text(value.to_owned()));
                clauses.push(format!("d.kind = '{kind}' AND d.key = $1 AND d.value = $2"));
                if let Some(since) = filter.since {
                    params.push(Param::Int(since));
                    clauses.push(format!("d.time >= ${}", params.len()));
                }
                if let Some(until) = filter.until {
                    params.push(Param::Int(until));
                    clauses.push(format!("d.time < ${}", params.len()));
                }
                push_filters(
                    filter,
                    AttrFilters::Exists(Some(kind)),
                    &mut clauses,
                    &mut params,
                );
                ("d.time", "d.event_id")
            }
            None => {
                push_filters(filter, AttrFilters::Exists(None), &mut clauses, &mut params);
                ("e.time", "e.id")
            }
        };
        if let Some((t, id)) = cursor {
            params.push(Param::Int(t));
            let tp = params.len();
            params.push(Param::Int(id));
            let ip = params.len();
            clauses.push(format!(
                "({time_col} < ${tp} OR ({time_col} = ${tp} AND {id_col} < ${ip}))"
            ));
        }
        params.push(Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        let lp = params.len();
        let filters = where_sql(&clauses);
        let sql = if driver.is_some() {
            // One page from the index and one from the unmerged attributes,
            // then the newest of both.
            let arm = |from: &str, filters: &str| {
                format!(
                    "SELECT {columns} FROM {from}{filters} \
                     ORDER BY d.time DESC, d.event_id DESC LIMIT ${lp}"
                )
            };
            // As in UNMERGED: the (few) unmerged events drive, then their
            // attribute, then the event; SQLite keeps `CROSS JOIN` order.
            // PostgreSQL reads a range of the key instead (pg_unmerged_range).
            let (unmerged_from, unmerged_join) = match self.backend {
                Backend::Sqlite => (
                    "event_attrs_unmerged u CROSS JOIN event_attrs_by_event d \
                     CROSS JOIN events e CROSS JOIN apps a",
                    "d.event_id = u.event_id".to_owned(),
                ),
                Backend::Postgres => (
                    "event_attrs_by_event d CROSS JOIN events e CROSS JOIN apps a",
                    pg_unmerged_range("d"),
                ),
            };
            let mut unmerged_clauses = clauses.clone();
            unmerged_clauses.push(unmerged_join);
            unmerged_clauses.extend(["e.id = d.event_id", "a.id = e.app_id"].map(str::to_owned));
            format!(
                "SELECT * FROM ({}) AS merged UNION ALL SELECT * FROM ({}) AS unmerged \
                 ORDER BY time DESC, id DESC LIMIT ${lp}",
                // No `and_same_partition` here: with it, PostgreSQL expects
                // few matches and hashes every event of the key instead
                // of walking the newest (1.1 s instead of 6 ms for a value
                // half the events have).
                arm(
                    "event_attrs d JOIN events e ON e.id = d.event_id \
                     JOIN apps a ON a.id = e.app_id",
                    &filters
                ),
                arm(unmerged_from, &where_sql(&unmerged_clauses))
            )
        } else {
            format!(
                "SELECT {columns} FROM events e JOIN apps a ON a.id = e.app_id{filters} \
                 ORDER BY e.time DESC, e.id DESC LIMIT ${lp}"
            )
        };
        (sql, params)
    }

    /// The [`EventView`] of a row of [`Store::page_sql`] selecting every
    /// column, with the contexts `shared` (from [`Store::shared_contexts`]).
    pub(in crate::store) fn event_view(
        row: &sqlx::any::AnyRow,
        shared: &HashMap<i64, (String, String)>,
    ) -> Result<EventView, StoreError> {
        let time: i64 = row.try_get("time")?;
        let user_key: String = row.try_get("user_key")?;
        let properties: String = row.try_get("properties")?;
        let context_id: Option<i64> = row.try_get("context_id")?;
        let (request, response) = match context_id.and_then(|id| shared.get(&id)) {
            Some((request, response)) => (request.clone(), response.clone()),
            None => (row.try_get("request")?, row.try_get("response")?),
        };
        Ok(EventView {
            id: row.try_get("id")?,
            app: row.try_get("app")?,
            event: row.try_get("event")?,
            time: format_ms(time),
            time_ms: time,
            client_ip: row.try_get("client_ip")?,
            count: row.try_get("count")?,
            properties: parse_json(&properties),
            user_identifiers: if user_key.is_empty() {
                Value::Object(Map::new())
            } else {
                parse_json(&user_key)
            },
            request: parse_json(&request),
            response: parse_json(&response),
        })
    }
}
