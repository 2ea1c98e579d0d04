//! The Event Explorer (`GET /events`): filters, the trend chart of the
//! filtered events, and a table of them with their request context, newest
//! first, paged by cursor.
//!
//! Filters are the admin API's (`event`, `app`, `ip`, `user_key` and
//! `user_value`, `property` and `value`) plus a time window: `range`
//! (`1h`, `24h`, `7d`, `30d`; 24 hours by default) ending now, or explicit
//! `since` / `until` (RFC 3339, `YYYY-MM-DDTHH:MM` in UTC, or milliseconds).
//! The chart and the table show the same window.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::chart::{bucket_for, trend_chart};
use super::layout::{PageError, Section, html_response, key_values, page, pretty, when};
use super::session::AdminSession;
use crate::AppState;
use crate::store::{EventFilter, EventView, TrendQuery, parse_cursor};
use crate::time::{now_ms, parse_filter_time};

/// Events per page.
const PAGE_SIZE: usize = 50;

/// The time windows offered, with their length in ms.
const RANGES: [(&str, &str, i64); 4] = [
    ("1h", "last hour", 3_600_000),
    ("24h", "last 24 hours", 86_400_000),
    ("7d", "last 7 days", 7 * 86_400_000),
    ("30d", "last 30 days", 30 * 86_400_000),
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
    cursor: String,
}

impl ExplorerParams {
    /// The query string of these filters (without the cursor), for links.
    fn query_string(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
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
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        q.finish()
    }
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

/// The filter and window of `p` (ending at `now` by default), or why they
/// are invalid.
///
/// # Errors
/// A message for people: a bad time, an empty window, a value without its
/// key.
pub fn filter_of(p: &ExplorerParams, now: i64) -> Result<EventFilter, String> {
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

/// `GET /events`.
pub async fn explorer(
    session: AdminSession,
    State(state): State<AppState>,
    query: Result<Query<ExplorerParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let params = query.map(|Query(p)| p).unwrap_or_default();
    let csrf = session.csrf();
    let apps = state.store.list_apps().await?;
    let filter = match filter_of(&params, now_ms()) {
        Ok(f) => f,
        Err(message) => {
            let body = html! {
                (filters_form(&params, &apps))
                p.notice.error role="alert" { (message) }
            };
            return Ok(html_response(
                StatusCode::BAD_REQUEST,
                page("Event Explorer", Section::Events, &csrf, &body),
            ));
        }
    };
    let cursor = match params.cursor.as_str() {
        "" => None,
        c => Some(parse_cursor(c).ok_or_else(|| PageError::bad_request("invalid cursor"))?),
    };
    let events = state.store.list_events(&filter, PAGE_SIZE, cursor).await?;
    let (since, until) = (filter.since.unwrap_or(0), filter.until.unwrap_or(0));
    let trend = state
        .store
        .event_trend(&TrendQuery {
            filter,
            bucket_s: bucket_for(until - since),
            group_by: None,
            max_groups: 1,
        })
        .await?;
    let body = html! {
        (filters_form(&params, &apps))
        h2 { "Occurrences over time" }
        (trend_chart(&trend))
        h2 { "Events" }
        (events_table(&events.events, cursor.is_some()))
        p.pager {
            @if cursor.is_some() {
                a href={ "/events?" (params.query_string(None)) } { "← Newest" } " "
            }
            @if let Some(next) = &events.next_cursor {
                a href={ "/events?" (params.query_string(Some(next))) } rel="next" id="older" { "Older events →" }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        page("Event Explorer", Section::Events, &csrf, &body),
    ))
}

fn filters_form(p: &ExplorerParams, apps: &[crate::store::AppView]) -> Markup {
    let field = |name: &'static str, label: &'static str, value: &str| {
        html! {
            label for=(format!("f-{name}")) {
                (label)
                input type="text" id=(format!("f-{name}")) name=(name) value=(value);
            }
        }
    };
    html! {
        form.filters method="get" action="/events" role="search" aria-label="Event filters" {
            (field("event", "Event", &p.event))
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
            (field("since", "Since (UTC)", &p.since))
            (field("until", "Until (UTC)", &p.until))
            button type="submit" id="apply-filters" { "Filter" }
            a href="/events" { "Reset" }
        }
    }
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
            details {
                summary { "request" }
                pre { (pretty(request)) }
            }
        } @else {
            span.muted { "— (metric)" }
        }
    }
}

fn events_table(events: &[EventView], paged: bool) -> Markup {
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
                            td { time datetime=(e.time) { (when(e.time_ms)) } }
                            td { (e.app) }
                            td.event-name {
                                (e.event)
                                @if e.count > 1 { " " span.muted { "×" (e.count) } }
                            }
                            td { (e.client_ip) }
                            td { (key_values(&e.user_identifiers)) }
                            td.properties { (key_values(&e.properties)) }
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
