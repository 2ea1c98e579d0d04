//! Facets of the Event Explorer: the most frequent event names, client IPs,
//! user identifiers and property keys among the events a filter selects,
//! and the names of the events stored at all (the explorer's picker).
//!
//! Facets are counted over the newest [`FACET_SAMPLE`] matching events at
//! most, read by the same statement as a page of the explorer
//! ([`Store::list_events`]): the index that drives the listing drives this
//! too, and one million events in the window cost no more than ten
//! thousand. The answer says whether it saw every matching event
//! ([`Facets::complete`]); when it did, its counts are exact and equal what
//! the listing (and `/api/events`) returns for the filter narrowed to that
//! value, because every value is counted the way its filter matches:
//!
//! | facet | counted per event | the filter a value adds |
//! | --- | --- | --- |
//! | event name | its name | `event=` |
//! | client IP | its IP, when known | `ip=` |
//! | user | each identifier `key = value` | `user_key=&user_value=` |
//! | property key | each key it has | `property=` (any value) |
//!
//! Counts are events (rows), as the listing shows them; a metric event
//! stands for `count` occurrences, which [`FacetValue::occurrences`] adds.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde::de::IgnoredAny;
use sqlx::Row;

use super::events::EventFilter;
use super::{Store, StoreError, bind_all};

/// The most matching events (newest first) the facets are counted over.
pub const FACET_SAMPLE: usize = 10_000;
/// The most values a facet lists by default.
pub const FACET_VALUES: usize = 8;
/// The most event names [`Store::known_events`] returns by default.
pub const KNOWN_EVENTS: usize = 200;

/// One value of a facet and how often it occurs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FacetValue {
    /// The value: an event name, an IP, a property key, or for users the
    /// identifier's key (see [`FacetValue::user_value`]).
    pub value: String,
    /// For a user identifier, its value (`value` is then its key).
    pub user_value: Option<String>,
    /// Matching events with this value.
    pub events: i64,
    /// Occurrences those events stand for (metric events count several).
    pub occurrences: i64,
}

/// The facets of a filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facets {
    /// Event names, most frequent first.
    pub events: Vec<FacetValue>,
    /// Client IPs.
    pub ips: Vec<FacetValue>,
    /// User identifiers (`key = value`).
    pub users: Vec<FacetValue>,
    /// Property keys.
    pub property_keys: Vec<FacetValue>,
    /// Events the counts are over.
    pub counted: usize,
    /// Whether those are every event matching the filter (otherwise the
    /// newest [`FACET_SAMPLE`]).
    pub complete: bool,
}

/// Adds up values as `(events, occurrences)`.
#[derive(Default)]
struct Tally(HashMap<(String, Option<String>), (i64, i64)>);

impl Tally {
    fn add(&mut self, value: String, user_value: Option<String>, count: i64) {
        let entry = self.0.entry((value, user_value)).or_default();
        entry.0 = entry.0.saturating_add(1);
        entry.1 = entry.1.saturating_add(count);
    }

    /// The `top` most frequent values; ties by value, so that the answer
    /// does not depend on hashing.
    fn top(self, top: usize) -> Vec<FacetValue> {
        let mut all: Vec<FacetValue> = self
            .0
            .into_iter()
            .map(|((value, user_value), (events, occurrences))| FacetValue {
                value,
                user_value,
                events,
                occurrences,
            })
            .collect();
        all.sort_by(|a, b| {
            b.events
                .cmp(&a.events)
                .then_with(|| a.value.cmp(&b.value))
                .then_with(|| a.user_value.cmp(&b.user_value))
        });
        all.truncate(top);
        all
    }
}

impl Store {
    /// The `top` most frequent values of each facet among the newest
    /// `sample` events matching `filter` (see the module doc).
    ///
    /// # Errors
    /// Database errors.
    pub async fn facets(
        &self,
        filter: &EventFilter,
        sample: usize,
        top: usize,
    ) -> Result<Facets, StoreError> {
        let columns = "e.id, e.time, e.event, e.client_ip, e.user_key, e.count, e.properties";
        let (sql, params) = self.page_sql(filter, sample.saturating_add(1), None, columns);
        let rows = bind_all(&sql, &params).fetch_all(&self.pool).await?;
        let complete = rows.len() <= sample;
        let rows = rows.get(..sample).unwrap_or(&rows);
        let (mut events, mut ips, mut users, mut keys) = (
            Tally::default(),
            Tally::default(),
            Tally::default(),
            Tally::default(),
        );
        for row in rows {
            let count: i64 = row.try_get("count")?;
            events.add(row.try_get("event")?, None, count);
            let ip: String = row.try_get("client_ip")?;
            if !ip.is_empty() {
                ips.add(ip, None, count);
            }
            let user_key: String = row.try_get("user_key")?;
            if !user_key.is_empty() {
                // Stored as serde_json wrote it; one that does not parse
                // (edited by hand) is left out rather than failing the page.
                let ids: BTreeMap<String, String> =
                    serde_json::from_str(&user_key).unwrap_or_default();
                for (k, v) in ids {
                    users.add(k, Some(v), count);
                }
            }
            let properties: String = row.try_get("properties")?;
            let props: BTreeMap<String, IgnoredAny> =
                serde_json::from_str(&properties).unwrap_or_default();
            for k in props.into_keys() {
                keys.add(k, None, count);
            }
        }
        Ok(Facets {
            events: events.top(top),
            ips: ips.top(top),
            users: users.top(top),
            property_keys: keys.top(top),
            counted: rows.len(),
            complete,
        })
    }

    /// The names of stored events, in byte order, at most `limit`: one
    /// index seek per name (`events (event, time, id)`), however many
    /// events each name has.
    ///
    /// # Errors
    /// Database errors.
    pub async fn known_events(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let sql = "WITH RECURSIVE n(name) AS (SELECT MIN(event) FROM events \
                   UNION ALL SELECT (SELECT MIN(e.event) FROM events e WHERE e.event > n.name) \
                   FROM n WHERE n.name IS NOT NULL) \
                   SELECT name FROM n WHERE name IS NOT NULL LIMIT $1";
        let rows = sqlx::query(sql)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("name")?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are ranked by events, then by value; occurrences add counts.
    #[test]
    fn tally_ranks() {
        let mut t = Tally::default();
        t.add("b".into(), None, 1);
        t.add("a".into(), None, 5);
        t.add("b".into(), None, 1);
        t.add("c".into(), None, 1);
        let top = t.top(2);
        assert_eq!(top.len(), 2);
        assert_eq!(
            (top[0].value.as_str(), top[0].events, top[0].occurrences),
            ("b", 2, 2)
        );
        assert_eq!(
            (top[1].value.as_str(), top[1].events, top[1].occurrences),
            ("a", 1, 5)
        );
    }
}
