//! The filter builder shared by the listing, the trends and the export:
//! `WHERE` clauses from an [`EventFilter`], attribute lookups over merged
//! and unmerged rows, and the `VALUES` lists of batch inserts.

use serde_json::Value;

use super::*;
use crate::store::{Backend, Param, Store};

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

/// The attributes (alias `b`) of the events not merged into `event_attrs`
/// yet, with [`UNMERGED_JOIN`] among the conditions. SQLite's `CROSS JOIN`
/// keeps the (small) list of unmerged events as the outer loop; left to
/// itself, the planner scans `event_attrs_by_event` by id and probes the
/// list. PostgreSQL plans it as any join.
pub(crate) const UNMERGED: &str = "event_attrs_unmerged u CROSS JOIN event_attrs_by_event b";
/// The join condition of [`UNMERGED`].
pub(crate) const UNMERGED_JOIN: &str = "b.event_id = u.event_id";
/// PostgreSQL's way to the same rows: with `event_attrs_by_event {alias}`,
/// a range of its key from the oldest unmerged event (the unmerged events
/// are the newest), each checked against the list. PostgreSQL ignores the
/// `CROSS JOIN` order: it probed the key once per unmerged event or scanned
/// the whole table, 125-150 ms with 58 000 events waiting, against 12-18 ms.
pub(crate) fn pg_unmerged_range(alias: &str) -> String {
    format!(
        "{alias}.event_id >= (SELECT MIN(event_id) FROM event_attrs_unmerged) \
         AND EXISTS (SELECT 1 FROM event_attrs_unmerged u WHERE u.event_id = {alias}.event_id)"
    )
}

impl Store {
    /// On PostgreSQL, ` AND {attr}.time = {event}.time` for a join from
    /// an event to its attribute rows: they carry its time, which names
    /// their partition, so the lookup probes one partition instead of each
    /// (see `partitions`). Empty on SQLite, whose plans are tuned without it.
    pub(super) fn and_same_partition(&self, attr: &str, event: &str) -> String {
        match self.backend {
            Backend::Postgres => format!(" AND {attr}.time = {event}.time"),
            Backend::Sqlite => String::new(),
        }
    }
}

/// How attribute (property, user) filters are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrFilters {
    /// `e.id IN (SELECT event_id … time range)`: for scans of a whole range
    /// (trends), where the attribute index narrows the rows first.
    In,
    /// `(e.id IN (merged …) OR e.id IN (unmerged …))`: the same set, written
    /// so that PostgreSQL hashes each list once and checks the range's
    /// events against it. Written as one `IN` over a `UNION ALL`, it
    /// guesses the list at 200 rows and looks its events up one by one
    /// (180 000 lookups: 450-570 ms instead of about 150 ms).
    Hashed,
    /// `EXISTS (… WHERE event_id = e.id …)`, skipping the attribute of that
    /// kind that drives the query: for newest-first pages.
    Exists(Option<&'static str>),
}

/// Adds the WHERE clauses of `f` (on alias `e`) to `clauses` and `params`.
pub(crate) fn push_filters(
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
    for (kind, key, value) in attr_filters(f) {
        if mode == AttrFilters::Exists(Some(kind)) {
            continue;
        }
        let k = next(Param::Text(key.to_owned()), params);
        let v = value.map(|v| next(Param::Text(v.to_owned()), params));
        // The condition on one attribute row, its columns prefixed by `x`.
        let mut terms = vec![format!("kind = '{kind}'"), format!("key = {k}")];
        if let Some(v) = v {
            terms.push(format!("value = {v}"));
        }
        match mode {
            AttrFilters::In | AttrFilters::Hashed => {
                // PostgreSQL's unmerged arm reads the key alone: the
                // statement selects the time range on `events` anyway.
                let pg_unmerged = terms
                    .iter()
                    .map(|t| format!("b.{t}"))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                if let Some(since) = f.since {
                    let p = next(Param::Int(since), params);
                    terms.push(format!("time >= {p}"));
                }
                if let Some(until) = f.until {
                    let p = next(Param::Int(until), params);
                    terms.push(format!("time < {p}"));
                }
                let cond = |alias: &str| {
                    terms
                        .iter()
                        .map(|t| format!("{alias}{t}"))
                        .collect::<Vec<_>>()
                        .join(" AND ")
                };
                clauses.push(if mode == AttrFilters::Hashed {
                    format!(
                        "(e.id IN (SELECT event_id FROM event_attrs WHERE {}) \
                         OR e.id IN (SELECT b.event_id FROM event_attrs_by_event b \
                         WHERE {} AND {pg_unmerged}))",
                        cond(""),
                        pg_unmerged_range("b"),
                    )
                } else {
                    format!(
                        "e.id IN (SELECT event_id FROM event_attrs WHERE {} \
                         UNION ALL SELECT b.event_id FROM {UNMERGED} WHERE {UNMERGED_JOIN} AND {})",
                        cond(""),
                        cond("b.")
                    )
                });
            }
            AttrFilters::Exists(_) => {
                let cond = terms
                    .iter()
                    .map(|t| format!("x.{t}"))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                clauses.push(format!(
                    "EXISTS (SELECT 1 FROM event_attrs_by_event x \
                     WHERE x.event_id = e.id AND {cond})"
                ));
            }
        }
    }
}

/// The attribute filters of `f` as `(kind, key, value)`, in the order
/// they are preferred to drive a page query: the property, the user
/// identifier, the client IP (kind `i`, key `""`). A key without a value
/// matches every event that has the key.
pub(crate) fn attr_filters(f: &EventFilter) -> Vec<(&'static str, &str, Option<&str>)> {
    let mut filters = Vec::with_capacity(3);
    if let Some(key) = &f.property {
        filters.push(("p", key.as_str(), f.value.as_deref()));
    }
    if let Some(key) = &f.user_key {
        filters.push(("u", key.as_str(), f.user_value.as_deref()));
    }
    if let Some(ip) = &f.ip {
        filters.push(("i", "", Some(ip.as_str())));
    }
    filters
}

pub(crate) fn where_sql(clauses: &[String]) -> String {
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

pub(crate) fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}
