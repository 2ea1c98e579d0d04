//! Trends: counts per time bucket, optionally per group (IP, user,
//! property, event name), counted in the database or, for dense ranges,
//! in the server.

use std::collections::HashMap;

use sqlx::Row;

use super::*;
use crate::store::{Backend, Param, Store, StoreError, bind_all};
use crate::time::{format_ms, now_ms};

impl Store {
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
        let mut params = Vec::new();
        let mut join = String::new();
        let group_expr = match &query.group_by {
            None => "''",
            Some(TrendGroup::Ip) => "e.client_ip",
            Some(TrendGroup::User) => "e.user_key",
            Some(TrendGroup::Event) => "e.event",
            Some(TrendGroup::Property(name)) => {
                params.push(Param::Text(name.clone()));
                join = format!(
                    " JOIN event_attrs_by_event g ON g.event_id = e.id{} AND g.kind = 'p' \
                     AND g.key = ${}",
                    self.and_same_partition("g", "e"),
                    params.len()
                );
                "g.value"
            }
        };
        // `params` now holds what `join` needs, and every statement below
        // starts from it.
        let base = params;
        let mut params = base.clone();
        let mut clauses = Vec::new();
        // Scans of the whole range check attribute filters against lists
        // of event ids; PostgreSQL needs them written as hashed lists.
        let range_mode = match self.backend {
            Backend::Sqlite => AttrFilters::In,
            Backend::Postgres => AttrFilters::Hashed,
        };
        push_filters(&filter, range_mode, &mut clauses, &mut params);
        // Grouped by IP, events without one belong to no group (as events
        // without the property, grouped by a property).
        let ip_known = "e.client_ip <> ''".to_owned();
        if matches!(query.group_by, Some(TrendGroup::Ip)) {
            clauses.push(ip_known.clone());
        }
        let cells = |clauses: &[String], params: &mut Vec<Param>| {
            params.push(Param::Int(since));
            let sp = params.len();
            params.push(Param::Int(bucket_ms));
            format!(
                "SELECT (e.time - ${sp}) / ${} AS bucket, {group_expr} AS grp, \
                 CAST(SUM(e.count) AS BIGINT) AS n FROM events e{join}{} \
                 GROUP BY bucket, grp",
                params.len(),
                where_sql(clauses)
            )
        };
        let buckets = usize::try_from((until - since + bucket_ms - 1) / bucket_ms)
            .unwrap_or(0)
            .max(1);
        // Grouped by a property, the cells themselves are usually few (a
        // property has few values): one pass, ranked below, unless there
        // are more than `one_pass_cells` of them. Then that pass is wasted
        // (the database grouped every cell to return the first ones), the
        // price of not knowing a property's values in advance.
        let one_pass = if query
            .group_by
            .as_ref()
            .is_some_and(TrendGroup::has_few_groups)
        {
            let mut params = params.clone();
            let sql = cells(&clauses, &mut params);
            params.push(Param::Int(self.one_pass_cells + 1));
            let sql = format!("{sql} LIMIT ${}", params.len());
            let rows = bind_all(&sql, &params).fetch_all(&self.pool).await?;
            (i64::try_from(rows.len()).unwrap_or(i64::MAX) <= self.one_pass_cells).then_some(rows)
        } else {
            None
        };
        let rows = if query.group_by.is_none() && attr_filters(&filter).is_empty() {
            // One range of the time (or event, or app) index per bucket:
            // no sort of the range's events by bucket, which for a busy
            // hour of 360 000 events took 80-140 ms instead of 16 ms.
            params.push(Param::Int(since));
            let s = params.len();
            params.push(Param::Int(bucket_ms));
            let b = params.len();
            params.push(Param::Int(i64::try_from(buckets).unwrap_or(i64::MAX)));
            let mut clauses = clauses;
            clauses.push(format!("e.time >= ${s} + b.i * ${b}"));
            clauses.push(format!("e.time < ${s} + (b.i + 1) * ${b}"));
            let sql = format!(
                "WITH RECURSIVE b(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i + 1 < ${}) \
                 SELECT b.i AS bucket, '' AS grp, \
                 (SELECT CAST(COALESCE(SUM(e.count), 0) AS BIGINT) FROM events e{}) AS n FROM b",
                params.len(),
                where_sql(&clauses)
            );
            bind_all(&sql, &params).fetch_all(&self.pool).await?
        } else if query.group_by.is_none() {
            let sql = cells(&clauses, &mut params);
            bind_all(&sql, &params).fetch_all(&self.pool).await?
        } else if let Some(rows) = one_pass {
            rows
        } else {
            // Two steps: the largest groups, then the cells of those groups
            // only. Grouped by IP over a busy hour there can be as many
            // groups as events.
            let max_groups = query.max_groups.max(1);
            let counted_here = if query
                .group_by
                .as_ref()
                .is_some_and(TrendGroup::has_few_groups)
            {
                None
            } else if let Some((source, source_params)) =
                self.pg_attr_ip_source(&query.group_by, &filter)
            {
                self.count_groups_here(&source, &source_params, max_groups)
                    .await
            } else {
                let source = format!(
                    "SELECT {group_expr} AS g, e.count AS n FROM events e{}",
                    where_sql(&clauses)
                );
                self.count_groups_here(&source, &params, max_groups).await
            };
            let top = match counted_here {
                Some(top) => top,
                None => {
                    params.push(Param::Int(i64::try_from(max_groups).unwrap_or(i64::MAX)));
                    // Ties by bytes, as everywhere else (SQLite's default;
                    // PostgreSQL's is the database's collation).
                    let bytes = match self.backend {
                        Backend::Sqlite => "",
                        Backend::Postgres => " COLLATE \"C\"",
                    };
                    let sql = format!(
                        "SELECT {group_expr} AS grp, CAST(SUM(e.count) AS BIGINT) AS n \
                         FROM events e{join}{} GROUP BY {group_expr} \
                         ORDER BY SUM(e.count) DESC, {group_expr}{bytes} LIMIT ${}",
                        where_sql(&clauses),
                        params.len()
                    );
                    let mut top = Vec::new();
                    for row in bind_all(&sql, &params).fetch_all(&self.pool).await? {
                        top.push((
                            row.try_get::<String, _>("grp")?,
                            row.try_get::<i64, _>("n")?,
                        ));
                    }
                    top
                }
            };
            let mut groups = Vec::with_capacity(top.len());
            let mut top_events = 0i64;
            for (group, n) in top {
                groups.push(group);
                top_events = top_events.saturating_add(n);
            }
            if groups.is_empty() {
                Vec::new()
            } else {
                let mut params = base;
                let mut list = Vec::with_capacity(groups.len());
                for g in groups {
                    params.push(Param::Text(g));
                    list.push(format!("${}", params.len()));
                }
                let list = list.join(", ");
                let mut clauses = Vec::new();
                // IPs are many and each has few events: unless the largest
                // groups hold many, the IP index finds their events, and the
                // other filters are checked on those events alone instead of
                // selecting the range again. (A property has few values, each
                // with many events whatever the other filters select.)
                match query.group_by {
                    Some(TrendGroup::Ip) if top_events <= ATTRIBUTE_DRIVEN_TREND => {
                        push_filters(
                            &filter,
                            AttrFilters::Exists(None),
                            &mut clauses,
                            &mut params,
                        );
                        params.push(Param::Int(since));
                        let s = params.len();
                        params.push(Param::Int(until));
                        let u = params.len();
                        // In the unmerged arm, `b.value || ''` keeps SQLite
                        // from seeking every unmerged event once per IP: one
                        // seek to its IP, then the list is checked.
                        let unmerged = match self.backend {
                            Backend::Sqlite => format!(
                                "SELECT b.event_id FROM {UNMERGED} WHERE {UNMERGED_JOIN} \
                                 AND b.kind = 'i' AND b.key = '' AND b.value || '' IN ({list}) \
                                 AND b.time >= ${s} AND b.time < ${u}"
                            ),
                            Backend::Postgres => format!(
                                "SELECT b.event_id FROM event_attrs_by_event b \
                                 WHERE {} AND b.kind = 'i' AND b.key = '' \
                                 AND b.value IN ({list})",
                                pg_unmerged_range("b")
                            ),
                        };
                        clauses.push(format!(
                            "e.id IN (SELECT event_id FROM event_attrs WHERE kind = 'i' \
                             AND key = '' AND value IN ({list}) AND time >= ${s} AND time < ${u} \
                             UNION ALL {unmerged})"
                        ));
                    }
                    _ => {
                        push_filters(&filter, range_mode, &mut clauses, &mut params);
                        if matches!(query.group_by, Some(TrendGroup::Ip)) {
                            clauses.push(ip_known);
                        }
                        clauses.push(format!("{group_expr} IN ({list})"));
                    }
                }
                let sql = cells(&clauses, &mut params);
                bind_all(&sql, &params).fetch_all(&self.pool).await?
            }
        };
        let mut cells = Vec::with_capacity(rows.len());
        let mut totals: HashMap<String, i64> = HashMap::new();
        for row in rows {
            let bucket: i64 = row.try_get("bucket")?;
            let group: String = row.try_get("grp")?;
            let n: i64 = row.try_get("n")?;
            let Some(b) = usize::try_from(bucket).ok().filter(|b| *b < buckets) else {
                continue;
            };
            let total = totals.entry(group.clone()).or_default();
            *total = total.saturating_add(n);
            cells.push((group, b, n));
        }
        // Dense series for the largest groups (the query kept only those).
        let mut top: Vec<(String, i64)> = totals.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(query.max_groups.max(1));
        let mut groups: HashMap<String, Vec<i64>> = top
            .into_iter()
            .map(|(g, _)| (g, vec![0; buckets]))
            .collect();
        for (group, b, n) in cells {
            if let Some(counts) = groups.get_mut(&group) {
                counts[b] = counts[b].saturating_add(n);
            }
        }
        let mut series: Vec<TrendSeries> = groups
            .into_iter()
            .map(|(group, counts)| TrendSeries {
                group: query.group_by.as_ref().map(|_| group),
                total: counts.iter().fold(0i64, |a, &n| a.saturating_add(n)),
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

impl Store {
    /// The `max_groups` largest groups (and their counts) of the events
    /// `source` selects (as `g`, the group, and `n`, the event's count),
    /// counted here rather than by the database: the
    /// database joins every event's group (and count, when not 1) into one
    /// string, and a hash map adds them up.
    ///
    /// Grouped by IP over a busy hour there are about as many groups as
    /// events. Both databases aggregate that many groups slowly: SQLite
    /// sorts them (130-160 ms for 360 000 IPs), PostgreSQL hashes them
    /// and, past `work_mem`, spills to disk (270-370 ms); this takes
    /// 75-110 ms. Ties are broken by the groups' bytes.
    ///
    /// The separators are control characters, which neither a group of
    /// this kind nor its count can hold: IPs are stored in their canonical
    /// text (see [`NewEvent::client_ip`]), user keys as serde_json writes
    /// them (control characters escaped). Properties are not grouped this
    /// way: their values are any text, and a property has few values.
    ///
    /// `None`, and the caller asks the database to group, when more than
    /// [`Store::with_server_grouped_events`] events match (the string and
    /// the map take about 100 bytes per event here), when the database
    /// refuses the query, or when an item does not parse.
    async fn count_groups_here(
        &self,
        source: &str,
        params: &[Param],
        max_groups: usize,
    ) -> Option<Vec<(String, i64)>> {
        if self.server_grouped_events == 0 {
            return None;
        }
        let mut params = params.to_vec();
        params.push(Param::Int(self.server_grouped_events.saturating_add(1)));
        let cap = params.len();
        params.push(Param::Text(COUNT_SEPARATOR.to_string()));
        let count_sep = params.len();
        params.push(Param::Text(GROUP_SEPARATOR.to_string()));
        let group_sep = params.len();
        let sql = format!(
            "SELECT string_agg(CASE WHEN t.n = 1 THEN t.g ELSE t.g || ${count_sep} || t.n END, \
             ${group_sep}) AS grps, CAST(COUNT(*) AS BIGINT) AS events \
             FROM (SELECT s.g, s.n FROM ({source}) s LIMIT ${cap}) t"
        );
        let answer = match bind_all(&sql, &params).fetch_one(&self.pool).await {
            Ok(row) => row
                .try_get::<Option<String>, _>("grps")
                .and_then(|joined| Ok((joined, row.try_get::<i64, _>("events")?))),
            Err(e) => Err(e),
        };
        match answer {
            Ok((_, events)) if events > self.server_grouped_events => None,
            Ok((joined, _)) => match rank_groups(joined.as_deref(), max_groups) {
                Ok(top) => Some(top),
                Err(bad) => {
                    // The item may hold a user's identifiers: only its length.
                    tracing::error!(target: "sqreen_server::store", item_bytes = bad.len(),
                        "a joined trend group does not parse; the database groups instead");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(target: "sqreen_server::store", %error,
                    "joining a trend's groups failed; the database groups instead");
                None
            }
        }
    }
}

impl Store {
    /// On PostgreSQL, for a trend grouped by IP whose only filters are the
    /// time range and one property or user identifier with a value: the
    /// IPs and counts of the matching events, read from that attribute's
    /// range of `event_attrs`, whose rows carry them (migration 0009), plus
    /// the unmerged events'. Otherwise `None`: the range of `events` is
    /// scanned, each event checked against the attribute's list of ids
    /// (180 000 of 360 000 events: ~200 ms, against ~40 ms this way).
    fn pg_attr_ip_source(
        &self,
        group_by: &Option<TrendGroup>,
        filter: &EventFilter,
    ) -> Option<(String, Vec<Param>)> {
        if self.backend != Backend::Postgres
            || !matches!(group_by, Some(TrendGroup::Ip))
            || filter.app.is_some()
            || filter.event.is_some()
        {
            return None;
        }
        let [(kind, key, Some(value))] = attr_filters(filter)[..] else {
            return None;
        };
        let since = filter.since?;
        let until = filter.until?;
        let params = vec![
            Param::Text(key.to_owned()),
            Param::Text(value.to_owned()),
            Param::Int(since),
            Param::Int(until),
        ];
        // The unmerged events' ids first (MATERIALIZED: left to itself,
        // PostgreSQL scanned the whole time range of `events` to find
        // them, 110 ms instead of 31 + 38 for their lookups), with their
        // times: each is then looked up in its own partition (by id alone,
        // PostgreSQL hashed the hour's events instead: 284 against 163 ms).
        let source = format!(
            "WITH unmerged AS MATERIALIZED (SELECT b.event_id, b.time FROM event_attrs_by_event b \
             WHERE {} AND b.kind = '{kind}' AND b.key = $1 AND b.value = $2) \
             SELECT a.client_ip AS g, a.count AS n FROM event_attrs a \
             WHERE a.kind = '{kind}' AND a.key = $1 AND a.value = $2 \
             AND a.time >= $3 AND a.time < $4 AND a.client_ip <> '' \
             UNION ALL SELECT e.client_ip AS g, e.count AS n \
             FROM unmerged m JOIN events e ON e.id = m.event_id AND e.time = m.time \
             WHERE m.time >= $3 AND m.time < $4 AND e.client_ip <> ''",
            pg_unmerged_range("b")
        );
        Some((source, params))
    }
}
