//! The page of one event (`GET /events/{id}`): what happened, to whom, from
//! where, and its request and response as tables (one header per line, the
//! parameters by name), with links to the explorer narrowed to the same IP,
//! the same user or the same event.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::events::{Pivot, explorer_link};
use super::layout::{PageError, Section, html_response, json_text, page, when};
use super::session::AdminSession;
use crate::AppState;
use crate::store::EventView;

/// How deep nested objects of a request are shown as tables (deeper ones
/// as JSON text).
const MAX_DEPTH: usize = 3;

/// `GET /events/{id}`: 404 when there is no such event (or its application
/// was deleted), 400 when `id` is no number.
pub async fn event_page(
    session: AdminSession,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = PageError::numeric_id(&id, "An event")?;
    let event = state
        .store
        .get_event(id)
        .await?
        .ok_or_else(|| PageError::not_found("event"))?;
    let body = event_body(&event);
    Ok(html_response(
        StatusCode::OK,
        page(
            &format!("Event #{}: {}", event.id, event.event),
            Section::Events,
            &session.csrf(),
            &body,
        ),
    ))
}

/// The identifiers of `event` as `(key, value)` pairs.
fn identifiers(event: &EventView) -> Vec<(String, String)> {
    event
        .user_identifiers
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), json_text(v))).collect())
        .unwrap_or_default()
}

fn event_body(e: &EventView) -> Markup {
    // The explorer from a day before the event up to now.
    let since = e.time_ms.saturating_sub(86_400_000).max(0);
    let ids = identifiers(e);
    html! {
        p.presets id="pivots" {
            "In the explorer: "
            a id="same-event" href=(explorer_link(&[Pivot::Event(&e.event)], Some(since), None)) { "same event" }
            @if !e.client_ip.is_empty() {
                a id="same-ip" href=(explorer_link(&[Pivot::Ip(&e.client_ip)], Some(since), None)) { "same IP" }
            }
            @if let Some((k, v)) = ids.first() {
                a id="same-user" href=(explorer_link(&[Pivot::User(k, v)], Some(since), None)) { "same user" }
            }
        }
        div.cards {
            section {
                h2 { "Event" }
                table.kv id="event" {
                    tbody {
                        tr { th scope="row" { "Id" } td { (e.id) } }
                        tr { th scope="row" { "Event" } td { (e.event) } }
                        tr { th scope="row" { "Application" } td { (e.app) } }
                        tr { th scope="row" { "Time" } td { time datetime=(e.time) { (when(e.time_ms)) } } }
                        tr { th scope="row" { "Client IP" } td { @if e.client_ip.is_empty() { span.muted { "—" } } @else { (e.client_ip) } } }
                        tr {
                            th scope="row" { "Occurrences" }
                            td { (e.count) @if e.count > 1 { " " span.muted { "(a metric event)" } } }
                        }
                    }
                }
                h2 { "User" }
                @if ids.is_empty() {
                    p.muted id="user" { "No user identifiers." }
                } @else {
                    table.kv id="user" {
                        tbody {
                            @for (k, v) in &ids {
                                tr { th scope="row" { (k) } td { (v) } }
                            }
                        }
                    }
                }
                h2 { "Properties" }
                (value_table("properties", &e.properties, 0))
            }
            section {
                h2 { "Request" }
                (value_table("request", &e.request, 0))
                h2 { "Response" }
                (value_table("response", &e.response, 0))
            }
        }
    }
}

/// `value` as a table: an object's fields one per row, nested objects as
/// tables, `headers` (`[[name, value], …]` or an object) one per line.
fn value_table(id: &str, value: &Value, depth: usize) -> Markup {
    html! {
        @match value {
            Value::Object(map) if !map.is_empty() => {
                table.kv id=[(depth == 0).then_some(id)] {
                    tbody {
                        @for (k, v) in ordered(map) {
                            tr {
                                th scope="row" { (k) }
                                td { (cell(k, v, depth)) }
                            }
                        }
                    }
                }
            }
            Value::Null => p.muted id=[(depth == 0).then_some(id)] { "None." },
            Value::Object(_) => p.muted id=[(depth == 0).then_some(id)] { "Empty." },
            other => code id=[(depth == 0).then_some(id)] { (other.to_string()) },
        }
    }
}

/// The fields of a request or response in the order people read them
/// (the verb and URL first, headers and parameters last), others by name.
fn ordered(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    const FIRST: [&str; 11] = [
        "verb",
        "scheme",
        "host",
        "port",
        "path",
        "status",
        "remote_ip",
        "remote_port",
        "user_agent",
        "referer",
        "content_type",
    ];
    const LAST: [&str; 2] = ["headers", "parameters"];
    let rank = |k: &str| {
        FIRST.iter().position(|f| *f == k).unwrap_or_else(|| {
            FIRST.len() + 1 + LAST.iter().position(|l| *l == k).map_or(0, |p| p + 1)
        })
    };
    let mut fields: Vec<(&String, &Value)> = map.iter().collect();
    fields.sort_by_key(|(k, _)| rank(k));
    fields
}

/// One field of a request or response.
fn cell(key: &str, value: &Value, depth: usize) -> Markup {
    let pairs: Option<Vec<(String, String)>> = match value {
        Value::Array(items) if key == "headers" => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([name, value]) => Some((json_text(name), json_text(value))),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    html! {
        @if let Some(pairs) = pairs {
            @if pairs.is_empty() {
                span.muted { "—" }
            } @else {
                table.kv.headers {
                    tbody {
                        @for (name, value) in &pairs {
                            tr.header { th scope="row" { code { (name) } } td { code { (value) } } }
                        }
                    }
                }
            }
        } @else {
            @match value {
                Value::Object(map) if map.is_empty() => span.muted { "—" },
                Value::Object(_) if depth < MAX_DEPTH => (value_table("", value, depth + 1)),
                Value::String(s) if s.is_empty() => span.muted { "—" },
                Value::String(s) => code { (s) },
                Value::Null => span.muted { "—" },
                other => code { (other.to_string()) },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Headers are shown one per row; nested objects as tables.
    #[test]
    fn requests_are_tables() {
        let request = json!({"verb": "POST", "headers": [["X-A", "1"], ["X-B", "<b>"]],
            "parameters": {"form": {"q": "x"}}});
        let html = value_table("request", &request, 0).into_string();
        assert_eq!(html.matches("<tr class=\"header\">").count(), 2);
        assert!(html.contains("&lt;b&gt;"));
        assert!(html.contains("<th scope=\"row\">q</th>"));
    }
}
