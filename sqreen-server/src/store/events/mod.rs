//! Events: the batch insert of ingestion and the explorer's queries, by
//! concern: `insert` (ingestion, attribute merges, deletions), `filter`
//! (the `WHERE` builder shared by every query), `list` (pages and one
//! event), `trend` (counts per bucket and group) and `rank` (the groups of
//! a trend counted in the server). This module holds their shared types.
//!
//! Layout: `events` holds one row per tracked event (or metric observation)
//! with its request context as JSON. Its attributes, one per row, are what
//! the `ip=`, `user_key=&user_value=` and `property=&value=` filters look
//! up instead of scanning JSON: properties (kind `p`), user identifiers
//! (kind `u`) and the client IP (kind `i`, key `""`).
//!
//! Attributes are written twice. At ingestion they go to
//! `event_attrs_by_event`, keyed by `(event_id, kind, key, value)`, so a
//! batch lands on the table's last pages, and the event's id goes to
//! `event_attrs_unmerged`. [`Store::merge_attributes`](crate::store::Store::merge_attributes) later copies the
//! attributes of the unmerged events into `event_attrs`, keyed by
//! `(kind, key, value, time, event_id)`, the filters' order (on SQLite a
//! WITHOUT ROWID table: the key is the table), in one sorted run, once
//! [`MERGE_ROWS`] have gathered (and every minute). A batch inserted
//! straight into `event_attrs` dirtied one page per distinct value, which
//! made ingestion into a large table three times slower than into an empty
//! one; a run of many batches shares each page it touches.
//!
//! Value lookups read `event_attrs` plus the unmerged events' rows of
//! `event_attrs_by_event`; lookups by event (a second filter, grouping a
//! trend by a property) read `event_attrs_by_event` alone. A merge is one
//! transaction, so a query counts each attribute once.
//!
//! The other filters use `(app_id, time)` and `(event, time)` indexes on
//! `events`; every list is ordered by `(time, id)` descending, which is
//! also the cursor. The `(time, id)` index also carries the client IP and
//! count, so that a trend over a time range reads the index alone.
//!
//! A trend without attribute filters sums each bucket over its own index
//! range; a grouped trend first finds the largest groups (one sort of the
//! range by group), then counts the cells of those groups only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use serde::Serialize;
use serde_json::{Map, Value};

mod filter;
mod insert;
mod list;
mod rank;
mod trend;

pub use filter::parse_cursor;
pub(crate) use filter::*;
use rank::*;

/// Rows per multi-row `INSERT` (11 parameters each, far under every limit).
const CHUNK: usize = 200;
/// Attribute rows of unmerged events (counted by this process) after which
/// a merge into `event_attrs` starts in the background. A value lookup
/// scans the unmerged events' attributes, so this bounds that scan; larger
/// runs share more pages per merge (see BENCHMARKS.md for both).
pub const MERGE_ROWS: u64 = 200_000;
/// Events removed per transaction when a deleted application's events are
/// purged ([`Store::purge_deleted_apps`](crate::store::Store::purge_deleted_apps)).
pub const PURGE_BATCH: usize = 500;
/// Attribute values longer than this are kept in the event's JSON but not
/// indexed: filters on them find nothing.
pub const MAX_INDEXED_VALUE: usize = 512;

/// This process's view of the unmerged attributes: rows it added since its
/// last merge, and whether a merge is running.
#[derive(Debug, Default)]
pub(crate) struct MergeState {
    pending: AtomicU64,
    running: AtomicBool,
    merges: AtomicU64,
    failures: AtomicU64,
}

/// Which events [`Store::delete_event_batch`](crate::store::Store::delete_event_batch) removes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum EventBatch {
    /// Those of a deleted application.
    OfApp(i64),
    /// Those older than this time (ms): retention.
    Before(i64),
}

/// An event about to be stored.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Dedup key inside the app (`<record rid>#<entry index>`, or a metric key hash).
    pub rid: String,
    /// Event name (`my.event`, `sdk-login-fail`, …).
    pub event: String,
    /// When it happened (ms).
    pub time: i64,
    /// Client IP in the canonical text of [`std::net::IpAddr`]'s `Display`
    /// (as ingestion stores it), or empty. Trends grouped by IP rely on it
    /// holding no control character.
    pub client_ip: String,
    /// User identifiers (sorted), possibly empty.
    pub user_identifiers: BTreeMap<String, String>,
    /// Properties.
    pub properties: Map<String, Value>,
    /// How many occurrences this row stands for (1 for tracked events).
    pub count: i64,
    /// The request context as JSON text (`null` for metrics).
    pub request: Arc<str>,
    /// The response as JSON text (`null` when unknown).
    pub response: Arc<str>,
    /// The index, in the same slice, of an event of the same request record
    /// that holds this one's request and response: they are then stored
    /// once, with that event (when it is stored in the same call).
    pub context_of: Option<usize>,
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
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
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
    #[schema(value_type = Object)]
    pub properties: Value,
    /// User identifiers.
    #[schema(value_type = Object)]
    pub user_identifiers: Value,
    /// The request context (`verb`, `path`, `user_agent`, …), or null.
    #[schema(value_type = Option<Object>)]
    pub request: Value,
    /// The response (`status`, …), or null.
    #[schema(value_type = Option<Object>)]
    pub response: Value,
}

/// A page of events, newest first.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// The events.
    pub events: Vec<EventView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Above this many events in the largest IPs of a trend grouped by IP, their
/// cells are counted by selecting the whole range again rather than through
/// the IP index (one lookup per event).
const ATTRIBUTE_DRIVEN_TREND: i64 = 20_000;

/// By default, a trend grouped by a property is counted in one pass when its
/// cells (bucket × value with events) are at most this many
/// ([`Store::with_one_pass_cells`](crate::store::Store::with_one_pass_cells)); above, in two steps
/// (the largest values, then their cells) as IPs are. One pass halves the
/// time of a trend of 18 000 events by a 2-value property on PostgreSQL,
/// which joins each event's property once instead of twice.
pub(crate) const PROPERTY_CELLS: i64 = 100_000;

/// By default, the most events whose groups a trend grouped by IP or user
/// adds up in the server ([`Store::with_server_grouped_events`](crate::store::Store::with_server_grouped_events)).
pub(crate) const SERVER_GROUPED_EVENTS: i64 = 1_000_000;

/// What a trend is grouped by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrendGroup {
    /// Client IP; events without one are in no group.
    Ip,
    /// User identifiers (their canonical JSON); events without a user are
    /// the group `""`.
    User,
    /// The value of one property; events without it are in no group.
    Property(String),
    /// The event name.
    Event,
}

impl TrendGroup {
    /// Whether this grouping has few groups (a property's values, event
    /// names), whose cells are counted in one pass and ranked by the
    /// database rather than in [`Store::count_groups_here`](crate::store::Store::count_groups_here) (whose
    /// separators their text could hold).
    fn has_few_groups(&self) -> bool {
        matches!(self, TrendGroup::Property(_) | TrendGroup::Event)
    }
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
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TrendPoint {
    /// Bucket start (RFC 3339).
    pub time: String,
    /// Bucket start (ms).
    pub time_ms: i64,
    /// Occurrences in the bucket.
    pub count: i64,
}

/// One series of a trend: all events, or one group.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TrendSeries {
    /// The group's value (IP, user JSON, property value); null when ungrouped.
    pub group: Option<String>,
    /// Occurrences over the whole range.
    pub total: i64,
    /// One point per bucket, empty buckets included.
    pub points: Vec<TrendPoint>,
}

/// A trend answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Backend;

    /// Placeholders are numbered across rows.
    #[test]
    fn values_sql_numbers_placeholders() {
        assert_eq!(values_sql(2, 2, Backend::Postgres), "($1,$2),($3,$4)");
        assert_eq!(values_sql(2, 2, Backend::Sqlite), "(?,?),(?,?)");
    }

    /// Joined groups are added up, ranked by count then bytes, and cut.
    #[test]
    fn rank_groups_adds_up_and_cuts() {
        let joined = "b\u{1e}a\u{1f}3\u{1e}b\u{1e}\u{1e}c\u{1f}2\u{1e}d";
        assert_eq!(
            rank_groups(Some(joined), 3),
            Ok(vec![
                ("a".to_owned(), 3),
                ("b".to_owned(), 2),
                ("c".to_owned(), 2)
            ])
        );
        // The empty group (a user trend's events without a user) counts.
        assert_eq!(rank_groups(Some(""), 5), Ok(vec![(String::new(), 1)]));
        assert_eq!(rank_groups(None, 5), Ok(Vec::new()));
        assert_eq!(rank_groups(Some("a\u{1f}x"), 5), Err("a\u{1f}x".to_owned()));
    }

    /// Enough groups to be split into partitions: the same ranking as
    /// adding them up in a sorted map.
    #[test]
    fn rank_groups_partitioned_matches_sorted_map() {
        let mut joined = Vec::new();
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for i in 0..60_000u64 {
            // Groups sharing long prefixes, some repeated, some counts > 1.
            let group = format!("2001:db8::{:x}", (i * 7919) % 45_000);
            let n = if i % 11 == 0 { 3 } else { 1 };
            *expected.entry(group.clone()).or_default() += n;
            joined.push(if n == 1 {
                group
            } else {
                format!("{group}{COUNT_SEPARATOR}{n}")
            });
        }
        let joined = joined.join(&GROUP_SEPARATOR.to_string());
        let mut ranked: Vec<(String, i64)> = expected.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for max in [1, 20, 100] {
            assert_eq!(
                rank_groups(Some(&joined), max).as_deref(),
                Ok(&ranked[..max])
            );
        }
    }

    /// Cursors round-trip; garbage is refused.
    #[test]
    fn cursor_parses() {
        assert_eq!(parse_cursor("123.45"), Some((123, 45)));
        assert_eq!(parse_cursor("1; DROP TABLE events"), None);
    }
}
