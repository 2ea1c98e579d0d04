//! The page of one alert (`GET /alerts/{id}`): the playbook that fired, the
//! actor (linked to the explorer), the count, the stored events that
//! crossed the threshold, the actions the alert created with their state
//! (live, expired, lifted) and what became of its webhooks (each attempt
//! and the outcome, by host).
//!
//! The events are those of the actor, the playbook's event and the alert's
//! application in the period before the alert, as stored: the ones its
//! trigger counted, unless the playbook's conditions narrowed them (they
//! are listed all the same, up to [`EVENTS_SHOWN`]).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::events::{Pivot, explorer_link};
use super::layout::{PageError, Section, html_response, key_values, page, when};
use super::session::AdminSession;
use crate::AppState;
use crate::destination::log_host;
use crate::store::{ActionView, AlertView, EventFilter, EventView};
use crate::time::now_ms;

/// The most events listed.
pub const EVENTS_SHOWN: usize = 100;

/// The explorer's filters of an alert's actor: an IP, or (for a user) the
/// first of its identifiers, the whole set being checked on the events.
fn actor_pivot(alert: &AlertView) -> Option<(String, Option<String>)> {
    match alert.actor_type.as_str() {
        "ip" => Some((alert.actor.clone(), None)),
        _ => serde_json::from_str::<BTreeMap<String, String>>(&alert.actor)
            .ok()?
            .into_iter()
            .next()
            .map(|(k, v)| (k, Some(v))),
    }
}

fn pivot_of(actor: &(String, Option<String>)) -> Pivot<'_> {
    match actor {
        (ip, None) => Pivot::Ip(ip),
        (k, Some(v)) => Pivot::User(k, v),
    }
}

/// An action's state at `now`.
fn action_state(action: &ActionView, lifted_at: Option<i64>, now: i64) -> (&'static str, String) {
    match (lifted_at, action.expires_at_ms) {
        (Some(t), _) => ("lifted", format!("lifted {}", when(t))),
        (None, Some(t)) if t <= now => ("expired", format!("expired {}", when(t))),
        (None, Some(t)) => ("live", format!("live until {}", when(t))),
        (None, None) => ("live", "live until lifted".to_owned()),
    }
}

/// `GET /alerts/{id}`: 404 when there is no such alert, 400 when `id` is
/// no number.
pub async fn alert_page(
    session: AdminSession,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = PageError::numeric_id(&id, "An alert")?;
    let alert = state
        .store
        .get_alert(id)
        .await?
        .ok_or_else(|| PageError::not_found("alert"))?;
    let playbook = state.store.get_playbook(alert.playbook_id).await?;
    let detail = |k: &str| alert.details.get(k).cloned().unwrap_or(Value::Null);
    // What the playbook counted when it fired (kept in the alert: the
    // playbook may have changed since).
    let event_name = detail("event")
        .as_str()
        .map(str::to_owned)
        .or_else(|| playbook.as_ref().map(|p| p.playbook.trigger.event.clone()));
    let period_s = detail("period_s")
        .as_i64()
        .or_else(|| playbook.as_ref().map(|p| p.playbook.trigger.period_s))
        .unwrap_or(0);
    let since = alert.time_ms.saturating_sub(period_s.saturating_mul(1000));
    let until = alert.time_ms.saturating_add(1);
    let actor = actor_pivot(&alert);
    let events = match (&actor, &event_name) {
        (Some(actor), Some(event)) => {
            let (ip, user_key, user_value) = match actor {
                (ip, None) => (Some(ip.clone()), None, None),
                (k, Some(v)) => (None, Some(k.clone()), Some(v.clone())),
            };
            let filter = EventFilter {
                app: Some(alert.app.clone()),
                event: Some(event.clone()),
                since: Some(since),
                until: Some(until),
                ip,
                user_key,
                user_value,
                ..EventFilter::default()
            };
            let page = state.store.list_events(&filter, EVENTS_SHOWN, None).await?;
            let whole: Option<Value> = (alert.actor_type == "user")
                .then(|| serde_json::from_str(&alert.actor).ok())
                .flatten();
            page.events
                .into_iter()
                .filter(|e| whole.as_ref().is_none_or(|w| *w == e.user_identifiers))
                .collect()
        }
        _ => Vec::new(),
    };
    let actions = state.store.alert_actions(alert.id).await?;
    let deliveries = state.store.alert_deliveries(alert.id).await?;
    let events_link = match (&actor, &event_name) {
        (Some(actor), Some(event)) => Some(explorer_link(
            &[pivot_of(actor), Pivot::Event(event), Pivot::App(&alert.app)],
            Some(since),
            Some(until),
        )),
        _ => None,
    };
    let body = html! {
        div.cards {
            section {
                h2 { "Alert" }
                table.kv id="alert" {
                    tbody {
                        tr { th scope="row" { "Time" } td { time datetime=(alert.time) { (when(alert.time_ms)) } } }
                        tr {
                            th scope="row" { "Playbook" }
                            td {
                                @match &playbook {
                                    Some(p) => a id="playbook" href=(format!("/playbooks/{}", p.id)) { (p.playbook.name) },
                                    None => span.muted { "#" (alert.playbook_id) " (deleted)" },
                                }
                            }
                        }
                        tr { th scope="row" { "Application" } td { (alert.app) } }
                        tr {
                            th scope="row" { "Actor" }
                            td {
                                (alert.actor_type) " "
                                @match &actor {
                                    Some(a) => a.pivot id="actor" href=(explorer_link(&[pivot_of(a)], Some(since), None)) { code { (alert.actor) } },
                                    None => code { (alert.actor) },
                                }
                            }
                        }
                        tr {
                            th scope="row" { "Count" }
                            td {
                                (alert.count)
                                @if let (Some(t), Some(e)) = (detail("threshold").as_i64(), &event_name) {
                                    span.muted { " (threshold " (t) " " code { (e) } " in " (period_s) " s)" }
                                }
                            }
                        }
                        @if let Some(reason) = detail("skipped").as_str() {
                            tr { th scope="row" { "Response" } td id="skipped" { "not applied: " (reason) } }
                        }
                        @if let Some(rest) = other_details(&alert.details) {
                            tr { th scope="row" { "Details" } td { (key_values(&rest)) } }
                        }
                    }
                }
            }
            section {
                h2 { "Actions" }
                (actions_table(&actions))
                h2 { "Notifications" }
                @if deliveries.is_empty() {
                    p.muted id="notifications" {
                        @match &playbook {
                            Some(p) if !p.playbook.notifications.is_empty() => {
                                "No delivery recorded yet for its webhook(s) to "
                                @for (i, n) in p.playbook.notifications.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    code { (log_host(&n.url)) }
                                }
                                "."
                            }
                            _ => "No webhook.",
                        }
                    }
                } @else {
                    table id="notifications" {
                        thead { tr { th scope="col" { "Webhook host" } th scope="col" { "Time" } th scope="col" { "Attempt" } th scope="col" { "Outcome" } } }
                        tbody {
                            @for d in &deliveries {
                                tr.delivery data-outcome=(d.outcome) {
                                    td { code { (d.host) } }
                                    td { (when(d.time)) }
                                    td { @if d.attempt > 0 { (d.attempt) } @else { "—" } }
                                    td { strong { (outcome_text(&d.outcome)) } " " span.muted { (d.detail) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Events that crossed the threshold" }
        p.counts {
            (events.len()) " stored event" @if events.len() != 1 { "s" }
            " of this actor in the " (period_s) " s before the alert"
            @if events.len() >= EVENTS_SHOWN { " (the newest " (EVENTS_SHOWN) ")" } ". "
            @if let Some(href) = &events_link { a id="alert-events" href=(href) { "Open in the explorer" } }
        }
        (events_list(&events))
    };
    Ok(html_response(
        StatusCode::OK,
        page(
            &format!("Alert #{}", alert.id),
            Section::Alerts,
            &session.csrf(),
            &body,
        ),
    ))
}

/// A delivery step for people.
fn outcome_text(outcome: &str) -> &str {
    match outcome {
        "sent" => "delivered",
        "failed" => "attempt failed",
        "gave_up" => "gave up",
        "refused" => "refused (forbidden destination)",
        "dropped" => "dropped (too many in flight)",
        other => other,
    }
}

fn actions_table(actions: &[(ActionView, Option<i64>)]) -> Markup {
    let now = now_ms();
    html! {
        @if actions.is_empty() {
            p.muted id="actions" { "None: the alert only notified (or spared a private IP)." }
        } @else {
            table id="actions" {
                thead { tr { th scope="col" { "Action" } th scope="col" { "Created" } th scope="col" { "State" } } }
                tbody {
                    @for (a, lifted) in actions {
                        @let (state, text) = action_state(a, *lifted, now);
                        tr.action data-state=(state) {
                            td { code { (a.action) } br; span.muted { (a.action_id) } }
                            td { (crate::time::parse_rfc3339_ms(&a.created_at).map_or_else(|| a.created_at.clone(), when)) }
                            td {
                                (text)
                                @if state == "live" { " · " a href="/actions" { "lift it" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn events_list(events: &[EventView]) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted id="no-events" { "No stored event (removed by retention, or the alert came from metrics)." }
        } @else {
            table id="events" {
                thead {
                    tr {
                        th scope="col" { "Event id" }
                        th scope="col" { "Time" }
                        th scope="col" { "Event" }
                        th scope="col" { "Client IP" }
                        th scope="col" { "User" }
                        th scope="col" { "Properties" }
                    }
                }
                tbody {
                    @for e in events {
                        tr.event {
                            td { a.event-link href=(format!("/events/{}", e.id)) { "#" (e.id) } }
                            td { time datetime=(e.time) { (when(e.time_ms)) } }
                            td { (e.event) @if e.count > 1 { " " span.muted { "×" (e.count) } } }
                            td { (e.client_ip) }
                            td { (key_values(&e.user_identifiers)) }
                            td { (key_values(&e.properties)) }
                        }
                    }
                }
            }
        }
    }
}

/// The alert's details that no row of the page already shows (the
/// playbook, event, threshold and period, the actions, whether it
/// blocked, why not), without empty values; `None` when nothing is left.
fn other_details(details: &Value) -> Option<Value> {
    const SHOWN: [&str; 7] = [
        "actions",
        "blocked",
        "event",
        "period_s",
        "playbook",
        "skipped",
        "threshold",
    ];
    let rest: serde_json::Map<String, Value> = details
        .as_object()?
        .iter()
        .filter(|(k, v)| !SHOWN.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!rest.is_empty()).then_some(Value::Object(rest))
}
