//! Events: the batch insert of ingestion and the explorer's queries.
//!
//! Layout: `events` holds one row per tracked event (or metric observation)
//! with its request context as JSON; `event_attrs` holds its properties
//! (kind `p`) and user identifiers (kind `u`) one per row, so that the
//! `property=&value=` and `user_key=&user_value=` filters use its
//! `(kind, key, value, time, event_id)` primary key (on SQLite a WITHOUT
//! ROWID table: the key is the table) instead of scanning JSON. The other
//! filters use `(app_id, time)`, `(event, time)` and `(client_ip, time)`;
//! every list is ordered by `(time, id)` descending, which is also the
//! cursor.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

use super::{Backend, Param, Store, StoreError, bind_all, without_nul};
use crate::time::{format_ms, now_ms};

/// Rows per multi-row `INSERT` (11 parameters each, far under every limit).
const CHUNK: usize = 200;
/// Attribute values longer than this are kept in the event's JSON but not
/// indexed: filters on them find nothing.
pub const MAX_INDEXED_VALUE: usize = 512;

/// An event about to be stored.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Dedup key inside the app (`<record rid>#<entry index>`, or a metric key hash).
    pub rid: String,
    /// Event name (`my.event`, `sdk-login-fail`, …).
    pub event: String,
    /// When it happened (ms).
    pub time: i64,
    /// Client IP, or empty.
    pub client_ip: String,
    /// User identifiers (sorted), possibly empty.
    pub user_identifiers: BTreeMap<String, String>,
    /// Properties.
    pub properties: Map<String, Value>,
    /// How many occurrences this row stands for (1 for tracked events).
    pub count: i64,
    /// The request context as JSON text (`null` for metrics).
    pub request: String,
    /// The response as JSON text (`null` when unknown).
    pub response: String,
}

impl NewEvent {
    /// The canonical JSON of the user identifiers, or `""` for none: the
    /// `user` actor of playbooks and the `group_by=user` key.
    pub fn user_key(&self) -> String {
        user_key(&self.user_identifiers)
    }
}

/// The canonical JSON of a user identifier map, or `""` when empty.
pub fn user_key(ids: &BTreeMap<String, String>) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        serde_json::to_string(ids).unwrap_or_default()
    }
}

/// A property value as the index keeps it: strings as they are, other JSON as text.
pub fn attr_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A playbook hit to record with the event at `event_index`, if that event
/// is new (a retried batch adds no hits).
#[derive(Clone, Debug)]
pub struct HitCandidate {
    /// Index into the events being inserted.
    pub event_index: usize,
    /// The playbook whose trigger matched.
    pub playbook_id: i64,
    /// The actor (IP or user key).
    pub actor: String,
    /// Event time (ms).
    pub time: i64,
    /// Occurrences.
    pub count: i64,
}

/// Explorer filters; every field is optional.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Application name.
    pub app: Option<String>,
    /// Event name.
    pub event: Option<String>,
    /// From this time (ms, inclusive).
    pub since: Option<i64>,
    /// Up to this time (ms, exclusive).
    pub until: Option<i64>,
    /// Client IP.
    pub ip: Option<String>,
    /// User identifier key.
    pub user_key: Option<String>,
    /// User identifier value (with `user_key`).
    pub user_value: Option<String>,
    /// Property name.
    pub property: Option<String>,
    /// Property value (with `property`).
    pub value: Option<String>,
}

/// One stored event as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct EventView {
    /// Its id.
    pub id: i64,
    /// Application name.
    pub app: String,
    /// Event name.
    pub event: String,
    /// RFC 3339 time.
    pub time: String,
    /// Time in ms since the epoch.
    pub time_ms: i64,
    /// Client IP ("" when unknown).
    pub client_ip: String,
    /// Occurrences this row stands for.
    pub count: i64,
    /// Properties.
    pub properties: Value,
    /// User identifiers.
    pub user_identifiers: Value,
    /// The request context (`verb`, `path`, `user_agent`, …), or null.
    pub request: Value,
    /// The response (`status`, …), or null.
    pub response: Value,
}

/// A page of events, newest first.
#[derive(Clone, Debug, Serialize)]
pub struct EventPage {
    /// The events.
    pub events: Vec<EventView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// What a trend is grouped by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrendGroup {
    /// Client IP.
    Ip,
    /// User identifiers.
    User,
    /// The value of one property.
    Property(String),
}

/// A trend query: counts per `bucket_s` between `since` and `until`.
#[derive(Clone, Debug)]
pub struct TrendQuery {
    /// Filters (`since`/`until` are required here).
    pub filter: EventFilter,
    /// Bucket width in seconds.
    pub bucket_s: i64,
    /// Optional grouping.
    pub group_by: Option<TrendGroup>,
    /// Most groups returned (the largest totals).
    pub max_groups: usize,
}

/// One point of a trend.
#[derive(Clone, Debug, Serialize)]
pub struct TrendPoint {
    /// Bucket start (RFC 3339).
    pub time: String,
    /// Bucket start (ms).
    pub time_ms: i64,
    /// Occurrences in the bucket.
    pub count: i64,
}

/// One series of a trend: all events, or one group.
#[derive(Clone, Debug, Serialize)]
pub struct TrendSeries {
    /// The group's value (IP, user JSON, property value); null when ungrouped.
    pub group: Option<String>,
    /// Occurrences over the whole range.
    pub total: i64,
    /// One point per bucket, empty buckets included.
    pub points: Vec<TrendPoint>,
}

/// A trend answer.
#[derive(Clone, Debug, Serialize)]
pub struct TrendView {
    /// Bucket width in seconds.
    pub bucket_s: i64,
    /// Range start (ms).
    pub since: i64,
    /// Range end (ms, exclusive).
    pub until: i64,
    /// The series, largest total first.
    pub series: Vec<TrendSeries>,
}

/// `($1, $2, …), (…)` for `rows` rows of `cols` parameters; on SQLite
/// anonymous `?` instead, because sqlx looks each named parameter up by a
/// linear scan, which makes a 2000-parameter insert quadratic.
pub(crate) fn values_sql(rows: usize, cols: usize, backend: Backend) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            n += 1;
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// How attribute (property, user) filters are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AttrFilters {
    /// `e.id IN (SELECT event_id … time range)`: for scans of a whole range
    /// (trends), where the attribute index narrows the rows first.
    In,
    /// `EXISTS (… WHERE event_id = e.id …)`, skipping the attribute of that
    /// kind that drives the query: for newest-first pages.
    Exists(Option<&'static str>),
}

/// Adds the WHERE clauses of `f` (on alias `e`) to `clauses` and `params`.
fn push_filters(
    f: &EventFilter,
    mode: AttrFilters,
    clauses: &mut Vec<String>,
    params: &mut Vec<Param>,
) {
    let next = |p: Param, params: &mut Vec<Param>| {
        params.push(p);
        format!("${}", params.len())
    };
    if let Some(app) = &f.app {
        let p = next(Param::Text(app.clone()), params);
        clauses.push(format!("e.app_id = (SELECT id FROM apps WHERE name = {p})"));
    }
    if let Some(event) = &f.event {
        let p = next(Param::Text(event.clone()), params);
        clauses.push(format!("e.event = {p}"));
    }
    if let Some(since) = f.since {
        let p = next(Param::Int(since), params);
        clauses.push(format!("e.time >= {p}"));
    }
    if let Some(until) = f.until {
        let p = next(Param::Int(until), params);
        clauses.push(format!("e.time < {p}"));
    }
    if let Some(ip) = &f.ip {
        let p = next(Param::Text(ip.clone()), params);
        clauses.push(format!("e.client_ip = {p}"));
    }
    for (kind, key, value) in [
        ("u", &f.user_key, &f.user_value),
        ("p", &f.property, &f.value),
    ] {
        let Some(key) = key else { continue };
        if mode == AttrFilters::Exists(Some(kind)) {
            continue;
        }
        let k = next(Param::Text(key.clone()), params);
        let mut cond = format!("kind = '{kind}' AND key = {k}");
        if let Some(value) = value {
            let v = next(Param::Text(value.clone()), params);
            cond.push_str(&format!(" AND value = {v}"));
        }
        match mode {
            AttrFilters::In => {
                if let Some(since) = f.since {
                    let p = next(Param::Int(since), params);
                    cond.push_str(&format!(" AND time >= {p}"));
                }
                if let Some(until) = f.until {
                    let p = next(Param::Int(until), params);
                    cond.push_str(&format!(" AND time < {p}"));
                }
                clauses.push(format!(
                    "e.id IN (SELECT event_id FROM event_attrs WHERE {cond})"
                ));
            }
            AttrFilters::Exists(_) => clauses.push(format!(
                "EXISTS (SELECT 1 FROM event_attrs x WHERE x.event_id = e.id AND x.{})",
                cond.replace(" AND ", " AND x.")
            )),
        }
    }
}

fn where_sql(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    }
}

/// Parses a cursor made by [`Store::list_events`].
pub fn parse_cursor(cursor: &str) -> Option<(i64, i64)> {
    let (t, id) = cursor.split_once('.')?;
    Some((t.parse().ok()?, id.parse().ok()?))
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

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

        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        for chunk in unique.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO events (app_id, rid, event, time, client_ip, user_key, properties, \
                 count, request, response, received_at) VALUES {} \
                 ON CONFLICT (app_id, time, rid) DO NOTHING RETURNING id, rid",
                values_sql(chunk.len(), 11, self.backend)
            );
            let mut q = sqlx::query(&sql);
            for &i in chunk {
                let e = &events[i];
                q = q
                    .bind(app_id)
                    .bind(without_nul(&e.rid).into_owned())
                    .bind(without_nul(&e.event).into_owned())
                    .bind(e.time)
                    .bind(e.client_ip.as_str())
                    .bind(e.user_key())
                    .bind(serde_json::to_string(&e.properties)?)
                    .bind(e.count)
                    .bind(e.request.as_str())
                    .bind(e.response.as_str())
                    .bind(now);
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
                // The table's key is (kind, key, value, time, event_id): two
                // keys of one event equal once NULs are replaced add one row.
                "INSERT INTO event_attrs (event_id, kind, key, value, time) VALUES {} \
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
        Ok(ids.iter().map(Option::is_some).collect())
    }

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
        // A property or user filter with a value drives the query through
        // the `(kind, key, value, time, event_id)` index, already in page
        // order: a common value stops after one page, a rare one reads few
        // rows. Otherwise the `(…, time, id)` indexes of events drive it.
        let driver = match (
            &filter.property,
            &filter.value,
            &filter.user_key,
            &filter.user_value,
        ) {
            (Some(k), Some(v), _, _) => Some(("p", k, v)),
            (_, _, Some(k), Some(v)) => Some(("u", k, v)),
            _ => None,
        };
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let (from, time_col, id_col) = match driver {
            Some((kind, key, value)) => {
                params.push(Param::Text(key.clone()));
                params.push(Param::Text(value.clone()));
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
                (
                    "event_attrs d JOIN events e ON e.id = d.event_id",
                    "d.time",
                    "d.event_id",
                )
            }
            None => {
                push_filters(filter, AttrFilters::Exists(None), &mut clauses, &mut params);
                ("events e", "e.time", "e.id")
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
        params.push(Param::Int(i64::try_from(limit + 1).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT e.id, a.name AS app, e.event, e.time, e.client_ip, e.user_key, e.properties, \
             e.count, e.request, e.response FROM {from} JOIN apps a ON a.id = e.app_id{} \
             ORDER BY {time_col} DESC, {id_col} DESC LIMIT ${}",
            where_sql(&clauses),
            params.len()
        );
        let rows = bind_all(&sql, &params).fetch_all(&self.pool).await?;
        let mut events = Vec::with_capacity(rows.len().min(limit));
        for row in rows.iter().take(limit) {
            let time: i64 = row.try_get("time")?;
            let user_key: String = row.try_get("user_key")?;
            let properties: String = row.try_get("properties")?;
            let request: String = row.try_get("request")?;
            let response: String = row.try_get("response")?;
            events.push(EventView {
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
            });
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

    /// Occurrences per bucket (and per group) of the events matching the
    /// query; `since` and `until` must be set.
    ///
    /// # Errors
    /// Database errors.
    pub async fn event_trend(&self, query: &TrendQuery) -> Result<TrendView, StoreError> {
        let since = query.filter.since.unwrap_or(0);
        let until = query.filter.until.unwrap_or_else(now_ms);
        let bucket_ms = query.bucket_s.max(1) * 1000;
        let mut filter = query.filter.clone();
        filter.since = Some(since);
        filter.until = Some(until);
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let mut join = String::new();
        let group_expr = match &query.group_by {
            None => "''",
            Some(TrendGroup::Ip) => "e.client_ip",
            Some(TrendGroup::User) => "e.user_key",
            Some(TrendGroup::Property(name)) => {
                params.push(Param::Text(name.clone()));
                join = format!(
                    " JOIN event_attrs g ON g.event_id = e.id AND g.kind = 'p' AND g.key = ${}",
                    params.len()
                );
                "g.value"
            }
        };
        push_filters(&filter, AttrFilters::In, &mut clauses, &mut params);
        params.push(Param::Int(since));
        let sp = params.len();
        params.push(Param::Int(bucket_ms));
        let bp = params.len();
        let sql = format!(
            "SELECT (e.time - ${sp}) / ${bp} AS bucket, {group_expr} AS grp, \
             CAST(SUM(e.count) AS BIGINT) AS n FROM events e{join}{} GROUP BY bucket, grp",
            where_sql(&clauses)
        );
        let rows = bind_all(&sql, &params).fetch_all(&self.pool).await?;
        let buckets = usize::try_from((until - since + bucket_ms - 1) / bucket_ms)
            .unwrap_or(0)
            .max(1);
        let mut cells = Vec::with_capacity(rows.len());
        let mut totals: HashMap<String, i64> = HashMap::new();
        for row in rows {
            let bucket: i64 = row.try_get("bucket")?;
            let group: String = row.try_get("grp")?;
            let n: i64 = row.try_get("n")?;
            let Some(b) = usize::try_from(bucket).ok().filter(|b| *b < buckets) else {
                continue;
            };
            *totals.entry(group.clone()).or_default() += n;
            cells.push((group, b, n));
        }
        // Dense series for the largest groups only.
        let mut top: Vec<(String, i64)> = totals.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(query.max_groups.max(1));
        let mut groups: HashMap<String, Vec<i64>> = top
            .into_iter()
            .map(|(g, _)| (g, vec![0; buckets]))
            .collect();
        for (group, b, n) in cells {
            if let Some(counts) = groups.get_mut(&group) {
                counts[b] += n;
            }
        }
        let mut series: Vec<TrendSeries> = groups
            .into_iter()
            .map(|(group, counts)| TrendSeries {
                group: query.group_by.as_ref().map(|_| group),
                total: counts.iter().sum(),
                points: counts
                    .iter()
                    .enumerate()
                    .map(|(b, &count)| {
                        let t = since + i64::try_from(b).unwrap_or(0) * bucket_ms;
                        TrendPoint {
                            time: format_ms(t),
                            time_ms: t,
                            count,
                        }
                    })
                    .collect(),
            })
            .collect();
        series.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.group.cmp(&b.group)));
        series.truncate(query.max_groups.max(1));
        if series.is_empty() && query.group_by.is_none() {
            series.push(TrendSeries {
                group: None,
                total: 0,
                points: (0..buckets)
                    .map(|b| {
                        let t = since + i64::try_from(b).unwrap_or(0) * bucket_ms;
                        TrendPoint {
                            time: format_ms(t),
                            time_ms: t,
                            count: 0,
                        }
                    })
                    .collect(),
            });
        }
        Ok(TrendView {
            bucket_s: query.bucket_s,
            since,
            until,
            series,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placeholders are numbered across rows.
    #[test]
    fn values_sql_numbers_placeholders() {
        assert_eq!(values_sql(2, 2, Backend::Postgres), "($1,$2),($3,$4)");
        assert_eq!(values_sql(2, 2, Backend::Sqlite), "(?,?),(?,?)");
    }

    /// Cursors round-trip; garbage is refused.
    #[test]
    fn cursor_parses() {
        assert_eq!(parse_cursor("123.45"), Some((123, 45)));
        assert_eq!(parse_cursor("1; DROP TABLE events"), None);
    }
}
