//! The Event Explorer (`GET /events`); the page of one event is
//! [`super::event`].
//!
//! The explorer shows the trend chart of the filtered events (stacked by a
//! chosen dimension: event name, IP, user or a property's values), a table
//! of them with their request context, newest first, paged by cursor, and
//! facets: the most frequent event names, IPs, users and property keys of
//! the same events ([`crate::store::Store::facets`]). Every value shown is a
//! link that adds it to the filters, keeping the others.
//!
//! Filters are the admin API's (`event`, `app`, `ip`, `user_key` and
//! `user_value`, `property` and `value`) plus a time window: `range`
//! (`15m`, `1h`, `24h`, `7d`, `30d`; 24 hours by default) ending now, or
//! explicit `since` / `until` (RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` in UTC as
//! `datetime-local` inputs send them, or milliseconds); `group` (`event`,
//! `ip`, `user`, `property:NAME`) stacks the chart. The chart, the facets
//! and the table show the same window. Every parameter is bounded
//! ([`MAX_PARAM`] bytes): a longer one is a 400, never a slow query.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::chart::{ChartSeries, bucket_for, stacked_chart};
use super::layout::{PageError, Section, html_response, json_text, page, when};
use super::session::AdminSession;
use crate::AppState;
use crate::store::{
    EventFilter, EventView, FACET_SAMPLE, FACET_VALUES, FacetValue, Facets, KNOWN_EVENTS,
    MAX_INDEXED_VALUE, TrendGroup, TrendQuery, TrendView, parse_cursor,
};
use crate::time::{format_ms, now_ms, parse_filter_time};

/// Events per page.
const PAGE_SIZE: usize = 50;
/// The longest query parameter accepted, in bytes (an indexed value is at
/// most [`MAX_INDEXED_VALUE`]; anything longer finds nothing anyway).
pub const MAX_PARAM: usize = 1024;
/// Groups stacked in the chart (the rest is "other").
const CHART_GROUPS: usize = 6;

/// The time windows offered, with their length in ms.
const RANGES: [(&str, &str, i64); 5] = [
    ("15m", "last 15 minutes", 900_000),
    ("1h", "last hour", 3_600_000),
    ("24h", "last 24 hours", 86_400_000),
    ("7d", "last 7 days", 7 * 86_400_000),
    ("30d", "last 30 days", 30 * 86_400_000),
];
/// The windows offered as one-click presets.
const PRESETS: [(&str, &str); 4] = [
    ("15m", "15 min"),
    ("1h", "1 h"),
    ("24h", "24 h"),
    ("7d", "7 d"),
];

/// The explorer's query string; every field may be empty.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExplorerParams {
    event: String,
    app: String,
    ip: String,
    user_key: String,
    user_value: String,
    property: String,
    value: String,
    range: String,
    since: String,
    until: String,
    group: String,
    cursor: String,
}

/// A filter a link adds to the explorer's.
#[derive(Clone, Copy, Debug)]
pub enum Pivot<'a> {
    /// Event name.
    Event(&'a str),
    /// Application name.
    App(&'a str),
    /// Client IP.
    Ip(&'a str),
    /// A user identifier: key and value.
    User(&'a str, &'a str),
    /// A property: name, and value (any value when `None`).
    Property(&'a str, Option<&'a str>),
}

impl ExplorerParams {
    /// The pairs of these parameters (without the cursor), non-empty only.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("event", &self.event),
            ("app", &self.app),
            ("ip", &self.ip),
            ("user_key", &self.user_key),
            ("user_value", &self.user_value),
            ("property", &self.property),
            ("value", &self.value),
            ("range", &self.range),
            ("since", &self.since),
            ("until", &self.until),
            ("group", &self.group),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.as_str()))
        .collect()
    }

    /// The query string of these filters, with `cursor` when given.
    fn query_string(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            q.append_pair(k, v);
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        q.finish()
    }

    /// The explorer's link with `pivot` added to these filters (replacing
    /// a filter of the same kind), from its first page.
    pub fn with(&self, pivot: Pivot<'_>) -> String {
        let mut p = self.clone();
        p.cursor.clear();
        p.set(pivot);
        format!("/events?{}", p.query_string(None))
    }

    /// Sets the filter of `pivot`.
    fn set(&mut self, pivot: Pivot<'_>) {
        match pivot {
            Pivot::Event(v) => self.event = v.to_owned(),
            Pivot::App(v) => self.app = v.to_owned(),
            Pivot::Ip(v) => self.ip = v.to_owned(),
            Pivot::User(k, v) => {
                self.user_key = k.to_owned();
                self.user_value = v.to_owned();
            }
            Pivot::Property(k, v) => {
                self.property = k.to_owned();
                self.value = v.unwrap_or_default().to_owned();
            }
        }
    }

    /// These filters over the window `range` ending now (explicit times
    /// dropped).
    fn with_range(&self, range: &str) -> String {
        let mut p = self.clone();
        p.cursor.clear();
        p.since.clear();
        p.until.clear();
        p.range = range.to_owned();
        format!("/events?{}", p.query_string(None))
    }

    /// The first parameter longer than [`MAX_PARAM`], by name.
    fn too_long(&self) -> Option<&'static str> {
        self.pairs()
            .into_iter()
            .chain([("cursor", self.cursor.as_str())])
            .find(|(_, v)| v.len() > MAX_PARAM)
            .map(|(k, _)| k)
    }
}

/// The explorer's link for `pivots` alone, from `since` (ms; 24 hours
/// before `until` by default) to `until` (ms; now by default): for pages
/// other than the explorer.
pub fn explorer_link(pivots: &[Pivot<'_>], since: Option<i64>, until: Option<i64>) -> String {
    let mut p = ExplorerParams {
        since: since.map(|t| t.to_string()).unwrap_or_default(),
        until: until.map(|t| t.to_string()).unwrap_or_default(),
        ..ExplorerParams::default()
    };
    for pivot in pivots {
        p.set(*pivot);
    }
    format!("/events?{}", p.query_string(None))
}

/// A time field: ms, RFC 3339, or a `datetime-local` value read as UTC.
fn parse_time(text: &str, name: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    parse_filter_time(text)
        .or_else(|| parse_filter_time(&format!("{text}:00Z")))
        .or_else(|| parse_filter_time(&format!("{text}Z")))
        .map(Some)
        .ok_or_else(|| {
            format!("{name}: use 2026-11-24T18:00, RFC 3339, or milliseconds (years 1970 to 9999)")
        })
}

/// `ms` as a `datetime-local` value (UTC, to the second).
fn datetime_local(ms: i64) -> String {
    format_ms(ms).get(..19).unwrap_or_default().to_owned()
}

/// The filter and window of `p` (ending at `now` by default), or why they
/// are invalid.
///
/// # Errors
/// A message for people: a bad time, an empty window, a value without its
/// key, a parameter longer than [`MAX_PARAM`].
pub fn filter_of(p: &ExplorerParams, now: i64) -> Result<EventFilter, String> {
    if let Some(name) = p.too_long() {
        return Err(format!("{name} is longer than {MAX_PARAM} bytes"));
    }
    let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let range_ms = RANGES
        .iter()
        .find(|(name, _, _)| *name == p.range)
        .map_or(86_400_000, |r| r.2);
    let until = parse_time(&p.until, "until")?.unwrap_or(now);
    let since = parse_time(&p.since, "since")?.unwrap_or(until.saturating_sub(range_ms).max(0));
    if since >= until {
        return Err("since must be before until".into());
    }
    let filter = EventFilter {
        app: text(&p.app),
        event: text(&p.event),
        since: Some(since),
        until: Some(until),
        ip: text(&p.ip),
        user_key: text(&p.user_key),
        user_value: text(&p.user_value),
        property: text(&p.property),
        value: text(&p.value),
    };
    if filter.user_value.is_some() && filter.user_key.is_none() {
        return Err("a user value needs a user key".into());
    }
    if filter.value.is_some() && filter.property.is_none() {
        return Err("a property value needs a property name".into());
    }
    Ok(filter)
}

/// The chart's grouping named by `group`, or why it names none.
fn group_of(group: &str) -> Result<Option<TrendGroup>, String> {
    match group {
        "" => Ok(None),
        "event" => Ok(Some(TrendGroup::Event)),
        "ip" => Ok(Some(TrendGroup::Ip)),
        "user" => Ok(Some(TrendGroup::User)),
        other => match other.strip_prefix("property:") {
            Some(name) if !name.trim().is_empty() => {
                Ok(Some(TrendGroup::Property(name.trim().to_owned())))
            }
            _ => Err("group: use event, ip, user or property:NAME".into()),
        },
    }
}

/// The first identifier of a user key (canonical JSON of the identifiers).
fn first_identifier(user_key: &str) -> Option<(String, String)> {
    serde_json::from_str::<std::collections::BTreeMap<String, String>>(user_key)
        .ok()?
        .into_iter()
        .next()
}

/// A user key (canonical JSON of the identifiers) as `key=value, …`.
fn user_label(user_key: &str) -> String {
    match serde_json::from_str::<std::collections::BTreeMap<String, String>>(user_key) {
        Ok(ids) if ids.is_empty() => "(no user)".to_owned(),
        Ok(ids) => ids
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) if user_key.is_empty() => "(no user)".to_owned(),
        Err(_) => user_key.to_owned(),
    }
}

/// The chart's series: the largest groups of `grouped` (when grouped),
/// then "other" (the rest of `total`'s occurrences), or all of `total`.
fn chart_series(
    params: &ExplorerParams,
    group: Option<&TrendGroup>,
    total: &TrendView,
    grouped: Option<&TrendView>,
) -> Vec<ChartSeries> {
    let all: Vec<i64> = total
        .series
        .first()
        .map(|s| s.points.iter().map(|p| p.count).collect())
        .unwrap_or_default();
    let (Some(group), Some(grouped)) = (group, grouped) else {
        return vec![ChartSeries {
            label: "all events".into(),
            href: None,
            counts: all,
            other: false,
        }];
    };
    let mut rest = all.clone();
    let mut series = Vec::new();
    for s in &grouped.series {
        let value = s.group.clone().unwrap_or_default();
        let counts: Vec<i64> = s.points.iter().map(|p| p.count).collect();
        for (r, n) in rest.iter_mut().zip(&counts) {
            *r = r.saturating_sub(*n).max(0);
        }
        let (label, href) = match group {
            TrendGroup::Event => (value.clone(), Some(params.with(Pivot::Event(&value)))),
            TrendGroup::Ip => (value.clone(), Some(params.with(Pivot::Ip(&value)))),
            TrendGroup::User => (
                user_label(&value),
                first_identifier(&value).map(|(k, v)| params.with(Pivot::User(&k, &v))),
            ),
            TrendGroup::Property(name) => (
                format!("{name}={value}"),
                Some(params.with(Pivot::Property(name, Some(&value)))),
            ),
        };
        series.push(ChartSeries {
            label,
            href,
            counts,
            other: false,
        });
    }
    if rest.iter().any(|n| *n > 0) {
        series.push(ChartSeries {
            label: match group {
                TrendGroup::Ip => "other (or no IP)".into(),
                TrendGroup::Property(_) => "other (or without it)".into(),
                _ => "other".into(),
            },
            href: None,
            counts: rest,
            other: true,
        });
    }
    series
}

/// The explorer's answer to invalid parameters: the form and the reason.
fn invalid(
    params: &ExplorerParams,
    apps: &[crate::store::AppView],
    csrf: &str,
    message: &str,
) -> Response {
    let body = html! {
        (filters_form(params, apps, &[], &[]))
        p.notice.error role="alert" { (message) }
    };
    html_response(
        StatusCode::BAD_REQUEST,
        page("Event Explorer", Section::Events, csrf, &body),
    )
}

/// `GET /events`.
pub async fn explorer(
    session: AdminSession,
    State(state): State<AppState>,
    query: Result<Query<ExplorerParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let params = query.map(|Query(p)| p).unwrap_or_default();
    let csrf = session.csrf();
    let apps = state.store.list_apps().await?;
    let (filter, group) =
        match filter_of(&params, now_ms()).and_then(|f| Ok((f, group_of(params.group.trim())?))) {
            Ok(ok) => ok,
            Err(message) => return Ok(invalid(&params, &apps, &csrf, &message)),
        };
    let cursor = match params.cursor.as_str() {
        "" => None,
        c => match parse_cursor(c) {
            Some(c) => Some(c),
            None => return Ok(invalid(&params, &apps, &csrf, "invalid cursor")),
        },
    };
    let events = state.store.list_events(&filter, PAGE_SIZE, cursor).await?;
    let facets = state
        .store
        .facets(&filter, FACET_SAMPLE, FACET_VALUES)
        .await?;
    let known = state.store.known_events(KNOWN_EVENTS).await?;
    let (since, until) = (filter.since.unwrap_or(0), filter.until.unwrap_or(0));
    let bucket_s = bucket_for(until - since);
    let total = state
        .store
        .event_trend(&TrendQuery {
            filter: filter.clone(),
            bucket_s,
            group_by: None,
            max_groups: 1,
        })
        .await?;
    let grouped = match &group {
        Some(g) => Some(
            state
                .store
                .event_trend(&TrendQuery {
                    filter,
                    bucket_s,
                    group_by: Some(g.clone()),
                    max_groups: CHART_GROUPS,
                })
                .await?,
        ),
        None => None,
    };
    let series = chart_series(&params, group.as_ref(), &total, grouped.as_ref());
    let occurrences: i64 = total.series.first().map_or(0, |s| s.total);
    let export = |format: &str| {
        let q = params.query_string(None);
        if q.is_empty() {
            format!("/events/export?format={format}")
        } else {
            format!("/events/export?{q}&format={format}")
        }
    };
    let body = html! {
        (filters_form(&params, &apps, &known, &facets.property_keys))
        p.presets {
            "Window: "
            @for (range, label) in PRESETS {
                @let current = params.since.is_empty() && params.until.is_empty()
                    && (params.range == range || (params.range.is_empty() && range == "24h"));
                a.preset href=(params.with_range(range)) aria-current=[current.then_some("true")] { (label) }
            }
            span.muted { "·" }
            "Export: "
            a id="export-ndjson" href=(export("ndjson")) { "NDJSON" }
            " / "
            a id="export-csv" href=(export("csv")) { "CSV" }
        }
        div.explorer {
            div {
                h2 { "Occurrences over time" }
                (stacked_chart(&series, since, until, bucket_s))
                h2 { "Events" }
                (counts_line(&facets, events.events.len(), occurrences, cursor.is_some()))
                (events_table(&params, &events.events, cursor.is_some()))
                p.pager {
                    @if cursor.is_some() {
                        a href={ "/events?" (params.query_string(None)) } { "← Newest" } " "
                    }
                    @if let Some(next) = &events.next_cursor {
                        a href={ "/events?" (params.query_string(Some(next))) } rel="next" id="older" { "Older events →" }
                    }
                }
            }
            (facets_column(&params, &facets))
        }
    };
    Ok(html_response(
        StatusCode::OK,
        page("Event Explorer", Section::Events, &csrf, &body),
    ))
}

/// The line that says what the numbers count: events (rows) in the table
/// and facets, occurrences in the chart; a page against the total.
fn counts_line(facets: &Facets, shown: usize, occurrences: i64, paged: bool) -> Markup {
    let total = if facets.complete {
        facets.counted.to_string()
    } else {
        format!("more than {}", facets.counted)
    };
    html! {
        p.counts id="counts" data-events=[facets.complete.then_some(facets.counted)] {
            (total) " event" @if facets.counted != 1 { "s" } " match; "
            @if paged { "this older page shows " } @else { "this page shows the newest " }
            (shown) " (" (PAGE_SIZE) " per page). "
            "The chart counts " (occurrences) " occurrence" @if occurrences != 1 { "s" }
            ": a metric event (×n) stands for n occurrences, a tracked event for one."
            @if !facets.complete {
                " Facets count the newest " (facets.counted) " events."
            }
        }
    }
}

/// The facets column: each value links to the explorer narrowed to it.
fn facets_column(params: &ExplorerParams, facets: &Facets) -> Markup {
    let list = |id: &str,
                title: &str,
                values: &[FacetValue],
                link: &dyn Fn(&FacetValue) -> (String, String)| {
        html! {
            section id=(id) {
                h3 { (title) }
                @if values.is_empty() {
                    p.muted { "—" }
                } @else {
                    ol {
                        @for v in values {
                            @let (label, href) = link(v);
                            li {
                                a href=(href) data-value=(label) { (label) }
                                span.n data-events=(v.events) title=(format!("{} events, {} occurrences", v.events, v.occurrences)) {
                                    (v.events)
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html! {
        aside.facets aria-label="Facets" {
            h2 { "Top values" }
            (list("facet-event", "Event", &facets.events, &|v| (v.value.clone(), params.with(Pivot::Event(&v.value)))))
            (list("facet-ip", "Client IP", &facets.ips, &|v| (v.value.clone(), params.with(Pivot::Ip(&v.value)))))
            (list("facet-user", "User", &facets.users, &|v| {
                let value = v.user_value.as_deref().unwrap_or_default();
                (format!("{}={value}", v.value), params.with(Pivot::User(&v.value, value)))
            }))
            (list("facet-property", "Property keys", &facets.property_keys, &|v| (v.value.clone(), params.with(Pivot::Property(&v.value, None)))))
            p.muted { "Counts are events" @if !facets.complete { " among the newest " (facets.counted) } "." }
        }
    }
}

fn filters_form(
    p: &ExplorerParams,
    apps: &[crate::store::AppView],
    known: &[String],
    keys: &[FacetValue],
) -> Markup {
    let field = |name: &'static str, label: &'static str, value: &str| {
        html! {
            label for=(format!("f-{name}")) {
                (label)
                input type="text" id=(format!("f-{name}")) name=(name) value=(value) maxlength=(MAX_PARAM);
            }
        }
    };
    // A time as typed when it is a `datetime-local` value already, else
    // as one (an RFC 3339 or ms value from a link).
    let time_value = |text: &str| match parse_time(text, "") {
        Ok(Some(ms)) => datetime_local(ms),
        _ => String::new(),
    };
    let mut groups: Vec<(String, String)> = vec![
        (String::new(), "none".into()),
        ("event".into(), "event name".into()),
        ("ip".into(), "client IP".into()),
        ("user".into(), "user".into()),
    ];
    for k in keys {
        groups.push((
            format!("property:{}", k.value),
            format!("property {}", k.value),
        ));
    }
    if !groups.iter().any(|(v, _)| *v == p.group) {
        groups.push((p.group.clone(), p.group.clone()));
    }
    html! {
        form.filters method="get" action="/events" role="search" aria-label="Event filters" {
            label for="f-event" {
                "Event"
                input type="text" id="f-event" name="event" value=(p.event) list="known-events" maxlength=(MAX_PARAM);
                datalist id="known-events" {
                    @for name in known { option value=(name) {} }
                }
            }
            label for="f-app" {
                "Application"
                select id="f-app" name="app" {
                    option value="" { "all" }
                    @for app in apps {
                        option value=(app.name) selected[app.name == p.app] { (app.name) }
                    }
                }
            }
            (field("ip", "Client IP", &p.ip))
            (field("user_key", "User key", &p.user_key))
            (field("user_value", "User value", &p.user_value))
            (field("property", "Property", &p.property))
            (field("value", "Property value", &p.value))
            label for="f-range" {
                "Window"
                select id="f-range" name="range" {
                    @for (name, label, _) in RANGES {
                        option value=(name) selected[name == p.range || (p.range.is_empty() && name == "24h")] { (label) }
                    }
                }
            }
            label for="f-since" {
                "Since (UTC)"
                input type="datetime-local" step="1" id="f-since" name="since" value=(time_value(&p.since));
            }
            label for="f-until" {
                "Until (UTC)"
                input type="datetime-local" step="1" id="f-until" name="until" value=(time_value(&p.until));
            }
            label for="f-group" {
                "Stack chart by"
                select id="f-group" name="group" {
                    @for (value, label) in &groups {
                        option value=(value) selected[*value == p.group] { (label) }
                    }
                }
            }
            button type="submit" id="apply-filters" { "Filter" }
            a href="/events" { "Reset" }
        }
    }
}

/// A JSON object's `key: value` pairs, each value a link made by `link`
/// (`None`: plain text).
fn pivot_values(value: &Value, link: &dyn Fn(&str, &str) -> Option<String>) -> Markup {
    html! {
        @match value {
            Value::Object(map) if !map.is_empty() => ul.kv {
                @for (k, v) in map {
                    @let text = json_text(v);
                    li {
                        code { (k) } ": "
                        @match link(k, &text) {
                            Some(href) => a.pivot href=(href) { code { (text) } },
                            None => code { (text) },
                        }
                    }
                }
            },
            Value::Object(_) | Value::Null => span.muted { "—" },
            other => code { (other.to_string()) },
        }
    }
}

/// Whether a filter on `value` can find it (longer values are not indexed).
fn indexed(key: &str, value: &str) -> bool {
    key.len() <= MAX_INDEXED_VALUE && value.len() <= MAX_INDEXED_VALUE
}

fn request_summary(request: &Value, response: &Value) -> Markup {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    html! {
        @if request.is_object() {
            code { (s(request, "verb")) " " (s(request, "host")) (s(request, "path")) }
            @if let Some(status) = response.get("status").and_then(Value::as_i64) {
                " → " code { (status) }
            }
            @let ua = s(request, "user_agent");
            @if !ua.is_empty() { br; span.muted { (ua) } }
        } @else {
            span.muted { "— (metric)" }
        }
    }
}

fn events_table(params: &ExplorerParams, events: &[EventView], paged: bool) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted id="no-events" { "No events match these filters." }
        } @else {
            table id="events" {
                caption {
                    (events.len()) " event" @if events.len() != 1 { "s" }
                    @if paged { " (older page)" } ", newest first"
                }
                thead {
                    tr {
                        th scope="col" { "Event id" }
                        th scope="col" { "Time" }
                        th scope="col" { "Application" }
                        th scope="col" { "Event" }
                        th scope="col" { "Client IP" }
                        th scope="col" { "User" }
                        th scope="col" { "Properties" }
                        th scope="col" { "Request" }
                    }
                }
                tbody {
                    @for e in events {
                        tr.event {
                            td { a.event-link href=(format!("/events/{}", e.id)) { "#" (e.id) } }
                            td { time datetime=(e.time) { (when(e.time_ms)) } }
                            td { a.pivot data-filter="app" href=(params.with(Pivot::App(&e.app))) { (e.app) } }
                            td.event-name {
                                @if indexed("", &e.event) {
                                    a.pivot data-filter="event" href=(params.with(Pivot::Event(&e.event))) { (e.event) }
                                } @else {
                                    (e.event)
                                }
                                @if e.count > 1 { " " span.muted title="a metric event: occurrences it stands for" { "×" (e.count) } }
                            }
                            td {
                                @if e.client_ip.is_empty() {
                                    span.muted { "—" }
                                } @else {
                                    a.pivot data-filter="ip" href=(params.with(Pivot::Ip(&e.client_ip))) { (e.client_ip) }
                                }
                            }
                            td.user { (pivot_values(&e.user_identifiers, &|k, v| indexed(k, v).then(|| params.with(Pivot::User(k, v))))) }
                            td.properties { (pivot_values(&e.properties, &|k, v| indexed(k, v).then(|| params.with(Pivot::Property(k, Some(v)))))) }
                            td { (request_summary(&e.request, &e.response)) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Time fields accept the forms people type.
    #[test]
    fn times_parse() {
        let ms = parse_time("2026-09-21T14:13", "since").expect("ok");
        assert_eq!(ms, Some(1_790_000_000_123 - 20_123));
        assert_eq!(parse_time("", "since"), Ok(None));
        assert_eq!(parse_time("1000", "since"), Ok(Some(1000)));
        assert!(parse_time("yesterday", "since").is_err());
    }

    /// The window defaults to 24 hours; values need their keys.
    #[test]
    fn filters_validate() {
        let f = filter_of(&ExplorerParams::default(), 100_000_000).expect("ok");
        assert_eq!(f.until, Some(100_000_000));
        assert_eq!(f.since, Some(100_000_000 - 86_400_000));
        let p = ExplorerParams {
            value: "x".into(),
            ..ExplorerParams::default()
        };
        assert!(filter_of(&p, 100_000_000).is_err());
    }
}
