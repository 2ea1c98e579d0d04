//! Security responses and alerts: the live actions agents enforce
//! (`GET /actions`) with a button to lift each (`POST /actions/{id}/lift`),
//! and the alerts playbooks raised (`GET /alerts`), newest first, each
//! linked to its page ([`super::alert`]) and its actor to the explorer.

use std::collections::{BTreeMap, HashMap};

use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::events::{Pivot, explorer_link};
use super::layout::{
    PageError, Section, html_response, json_text, key_values, notice, page, pretty, when,
};
use super::playbooks::CsrfForm;
use super::session::AdminSession;
use crate::AppState;
use crate::store::{ActionView, AlertView};
use crate::time::parse_rfc3339_ms;

/// Alerts shown.
const ALERTS_SHOWN: usize = 200;

/// Which notice the actions page shows after a redirect.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionsParams {
    done: String,
}

/// `GET /actions`.
pub async fn actions(
    session: AdminSession,
    State(state): State<AppState>,
    query: Result<Query<ActionsParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let done = query.map(|Query(q)| q.done).unwrap_or_default();
    let ok = (done == "lifted").then_some("Action lifted: agents drop it at their next heartbeat.");
    let csrf = session.csrf();
    let actions = state.store.list_actions(None).await?;
    let names = playbook_names(&state).await?;
    let body = html! {
        (notice(ok, None))
        (actions_table(&actions, &names, &csrf))
    };
    Ok(html_response(
        StatusCode::OK,
        page("Security responses", Section::Actions, &csrf, &body),
    ))
}

/// `POST /actions/{id}/lift`.
pub async fn lift(
    session: AdminSession,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    if id.len() > 64 || !state.store.lift_action(&id).await? {
        return Err(PageError::not_found("live action"));
    }
    tracing::info!(event = "dashboard.action_lifted", action_id = %id, "action lifted from the dashboard");
    Ok(Redirect::to("/actions?done=lifted").into_response())
}

/// `GET /alerts`.
pub async fn alerts(
    session: AdminSession,
    State(state): State<AppState>,
) -> Result<Response, PageError> {
    let csrf = session.csrf();
    let alerts = state.store.list_alerts(ALERTS_SHOWN).await?;
    let names = playbook_names(&state).await?;
    let body = alerts_table(&alerts, &names);
    Ok(html_response(
        StatusCode::OK,
        page("Alerts", Section::Alerts, &csrf, &body),
    ))
}

async fn playbook_names(state: &AppState) -> Result<HashMap<i64, String>, PageError> {
    Ok(state
        .store
        .list_playbooks()
        .await?
        .into_iter()
        .map(|row| (row.id, row.playbook.name))
        .collect())
}

fn playbook_cell(id: Option<i64>, names: &HashMap<i64, String>) -> Markup {
    html! {
        @match id.map(|id| (id, names.get(&id))) {
            Some((id, Some(name))) => a href=(format!("/playbooks/{id}")) { (name) },
            Some((id, None)) => span.muted { "#" (id) " (deleted)" },
            None => span.muted { "—" },
        }
    }
}

fn actions_table(actions: &[ActionView], names: &HashMap<i64, String>, csrf: &str) -> Markup {
    html! {
        @if actions.is_empty() {
            p.muted id="no-actions" { "No live actions." }
        } @else {
            table id="actions" {
                caption { (actions.len()) " live action(s), newest first" }
                thead {
                    tr {
                        th scope="col" { "Action" }
                        th scope="col" { "Target" }
                        th scope="col" { "Application" }
                        th scope="col" { "Playbook" }
                        th scope="col" { "Created" }
                        th scope="col" { "Expires" }
                        th scope="col" { span.muted { "Lift" } }
                    }
                }
                tbody {
                    @for a in actions {
                        tr.action data-id=(a.action_id) {
                            td { code { (a.action) } }
                            td {
                                code { (a.actor) }
                                details { summary { "parameters" } pre { (pretty(&a.parameters)) } }
                            }
                            td { (a.app) }
                            td { (playbook_cell(a.playbook_id, names)) }
                            td {
                                @match parse_rfc3339_ms(&a.created_at) {
                                    Some(ms) => (when(ms)),
                                    None => (a.created_at),
                                }
                            }
                            td {
                                @match a.expires_at_ms {
                                    Some(ms) => (when(ms)),
                                    None => "never (until lifted)",
                                }
                            }
                            td {
                                form method="post" action=(format!("/actions/{}/lift", a.action_id)) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" aria-label={ "Lift " (a.action) " on " (a.actor) } { "Lift" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The explorer filtered by an alert's actor (an IP, or a user's first
/// identifier), from a period before the alert.
fn actor_link(a: &AlertView) -> Option<String> {
    let period_s = a
        .details
        .get("period_s")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let since = Some(a.time_ms.saturating_sub(period_s.saturating_mul(1000)));
    if a.actor_type == "ip" {
        return Some(explorer_link(&[Pivot::Ip(&a.actor)], since, None));
    }
    let ids: BTreeMap<String, String> = serde_json::from_str(&a.actor).ok()?;
    let (k, v) = ids.iter().next()?;
    Some(explorer_link(&[Pivot::User(k, v)], since, None))
}

fn alerts_table(alerts: &[AlertView], names: &HashMap<i64, String>) -> Markup {
    html! {
        @if alerts.is_empty() {
            p.muted id="no-alerts" { "No alerts." }
        } @else {
            table id="alerts" {
                caption { (alerts.len()) " alert(s), newest first" }
                thead {
                    tr {
                        th scope="col" { "Time" }
                        th scope="col" { "Playbook" }
                        th scope="col" { "Application" }
                        th scope="col" { "Actor" }
                        th scope="col" { "Count" }
                        th scope="col" { "Details" }
                    }
                }
                tbody {
                    @for a in alerts {
                        tr.alert {
                            td { a.alert-link href=(format!("/alerts/{}", a.id)) { time datetime=(a.time) { (when(a.time_ms)) } } }
                            td { (playbook_cell(Some(a.playbook_id), names)) }
                            td { (a.app) }
                            td {
                                (a.actor_type) " "
                                @match actor_link(a) {
                                    Some(href) => a.pivot href=(href) { code { (a.actor) } },
                                    None => code { (a.actor) },
                                }
                            }
                            td { (a.count) }
                            td {
                                @match a.details.as_object() {
                                    Some(_) => (key_values(&a.details)),
                                    None => code { (json_text(&a.details)) },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
