//! Playbooks: the list (`GET /playbooks`), creation from a form
//! (`POST /playbooks`), editing one (`GET /playbooks/{id}`,
//! `POST /playbooks/{id}`) and enabling/disabling
//! (`POST /playbooks/{id}/toggle`).
//!
//! The form covers the common case — one event, at most one property
//! condition, one response, at most one webhook; richer playbooks are
//! posted to the admin API and listed here all the same (their page shows
//! them, without the form). Saving or toggling stores the playbook again,
//! so its counts start afresh (as with `PUT`).
//!
//! Both forms have a "Dry run" button (`intent=dry-run`): the page comes
//! back with the form as typed and what the playbook would have done over
//! the stored events of the last 24 hours
//! ([`crate::playbook::dry_run_stored`]), and nothing is saved.
//!
//! A webhook URL pointing at a loopback, private or other non-public
//! address is refused (400, with the reason) unless the server allows them
//! ([`crate::destination`]). Saving a webhook answers the list page itself
//! (201) with the webhook's signing secret, shown this once; without one
//! the form redirects to the list.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{PageError, Section, html_response, notice, page};
use super::session::AdminSession;
use crate::AppState;
use crate::destination::log_host;
use crate::playbook::{
    Actor, Condition, Notification, NotificationKind, Op, Playbook, ResponseKind, ResponseSpec,
    Trigger,
};
use crate::playbook::{DRY_RUN_EVENTS, DRY_RUN_WINDOW_MS, DryRun, dry_run_stored};
use crate::store::PlaybookRow;
use crate::time::now_ms;

/// Which notice the list shows after a redirect.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListParams {
    done: String,
}

/// The creation form; every field arrives as text.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PlaybookForm {
    csrf: String,
    name: String,
    app: String,
    event: String,
    cond_property: String,
    cond_op: String,
    cond_value: String,
    threshold: String,
    period_s: String,
    actor: String,
    response: String,
    duration_s: String,
    redirect_url: String,
    webhook_url: String,
    allow_critical_ips: String,
    /// `dry-run` to replay the stored events instead of saving.
    intent: String,
}

/// A form carrying only its CSRF token (toggle, lift, logout).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: String,
}

impl PlaybookForm {
    fn defaults() -> Self {
        Self {
            threshold: "10".into(),
            period_s: "60".into(),
            actor: "ip".into(),
            response: "block".into(),
            duration_s: "3600".into(),
            cond_op: "eq".into(),
            ..Self::default()
        }
    }

    /// The form of `playbook`, when the form can describe it (at most one
    /// condition, one response and one webhook).
    pub fn from_playbook(playbook: &Playbook) -> Option<Self> {
        if playbook.trigger.conditions.len() > 1
            || playbook.responses.len() > 1
            || playbook.notifications.len() > 1
        {
            return None;
        }
        let condition = playbook.trigger.conditions.first();
        let response = playbook.responses.first();
        Some(Self {
            name: playbook.name.clone(),
            app: playbook.app.clone().unwrap_or_default(),
            event: playbook.trigger.event.clone(),
            cond_property: condition.map(|c| c.property.clone()).unwrap_or_default(),
            cond_op: match condition.map(|c| c.op) {
                None | Some(Op::Eq) => "eq",
                Some(Op::Neq) => "neq",
                Some(Op::Contains) => "contains",
                Some(Op::Regex) => "regex",
            }
            .into(),
            cond_value: condition.map(|c| c.value.clone()).unwrap_or_default(),
            threshold: playbook.trigger.threshold.to_string(),
            period_s: playbook.trigger.period_s.to_string(),
            actor: match playbook.trigger.actor {
                Actor::Ip => "ip",
                Actor::User => "user",
            }
            .into(),
            response: match response.map(|r| r.kind) {
                None => "none",
                Some(ResponseKind::Block) => "block",
                Some(ResponseKind::Redirect) => "redirect",
            }
            .into(),
            duration_s: response.map_or(0, |r| r.duration_s).to_string(),
            redirect_url: response.and_then(|r| r.url.clone()).unwrap_or_default(),
            webhook_url: playbook
                .notifications
                .first()
                .map(|n| n.url.clone())
                .unwrap_or_default(),
            allow_critical_ips: if playbook.allow_critical_ips {
                "on".into()
            } else {
                String::new()
            },
            ..Self::default()
        })
    }

    /// Whether the form asks for a dry run rather than saving.
    fn is_dry_run(&self) -> bool {
        self.intent == "dry-run"
    }

    /// The playbook this form describes, validated.
    ///
    /// # Errors
    /// A message for people naming the field at fault.
    pub fn to_playbook(&self) -> Result<Playbook, String> {
        let number = |text: &str, name: &str| {
            text.trim()
                .parse::<i64>()
                .map_err(|_| format!("{name} must be a whole number"))
        };
        let trimmed = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let conditions = match trimmed(&self.cond_property) {
            None => Vec::new(),
            Some(property) => vec![Condition {
                property,
                op: match self.cond_op.as_str() {
                    "eq" => Op::Eq,
                    "neq" => Op::Neq,
                    "contains" => Op::Contains,
                    "regex" => Op::Regex,
                    _ => return Err("unknown condition operator".into()),
                },
                value: self.cond_value.clone(),
            }],
        };
        let actor = match self.actor.as_str() {
            "ip" => Actor::Ip,
            "user" => Actor::User,
            _ => return Err("the actor is ip or user".into()),
        };
        let duration_s = match self.duration_s.trim() {
            "" => 0,
            d => number(d, "the response duration")?,
        };
        let responses = match self.response.as_str() {
            "none" => Vec::new(),
            "block" => vec![ResponseSpec {
                kind: ResponseKind::Block,
                duration_s,
                url: None,
            }],
            "redirect" => vec![ResponseSpec {
                kind: ResponseKind::Redirect,
                duration_s,
                url: trimmed(&self.redirect_url),
            }],
            _ => return Err("the response is none, block or redirect".into()),
        };
        let notifications = trimmed(&self.webhook_url)
            .map(|url| Notification {
                kind: NotificationKind::Webhook,
                url,
            })
            .into_iter()
            .collect();
        let playbook = Playbook {
            name: self.name.trim().to_owned(),
            enabled: true,
            app: trimmed(&self.app),
            trigger: Trigger {
                event: self.event.trim().to_owned(),
                conditions,
                threshold: number(&self.threshold, "the threshold")?,
                period_s: number(&self.period_s, "the period")?,
                actor,
            },
            responses,
            notifications,
            allow_critical_ips: !self.allow_critical_ips.is_empty(),
        };
        playbook.validate()?;
        Ok(playbook)
    }
}

/// `GET /playbooks`.
pub async fn list(
    session: AdminSession,
    State(state): State<AppState>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let done = query.map(|Query(q)| q.done).unwrap_or_default();
    let ok = match done.as_str() {
        "created" => Some("Playbook created."),
        "enabled" => Some("Playbook enabled."),
        "disabled" => Some("Playbook disabled."),
        _ => None,
    };
    render(
        &session,
        &state,
        StatusCode::OK,
        (ok, None),
        &BTreeMap::new(),
        &PlaybookForm::defaults(),
    )
    .await
}

async fn render(
    session: &AdminSession,
    state: &AppState,
    status: StatusCode,
    (ok, error): (Option<&str>, Option<&str>),
    secrets: &BTreeMap<String, String>,
    form: &PlaybookForm,
) -> Result<Response, PageError> {
    render_with(session, state, status, (ok, error), secrets, form, None).await
}

async fn render_with(
    session: &AdminSession,
    state: &AppState,
    status: StatusCode,
    (ok, error): (Option<&str>, Option<&str>),
    secrets: &BTreeMap<String, String>,
    form: &PlaybookForm,
    dry_run: Option<&DryRun>,
) -> Result<Response, PageError> {
    let csrf = session.csrf();
    let playbooks = state.store.list_playbooks().await?;
    let apps = state.store.list_apps().await?;
    let body = html! {
        (notice(ok, error))
        (secrets_notice(secrets))
        (playbooks_table(&playbooks, &csrf))
        h2 id="new-playbook" { "New playbook" }
        @if let Some(run) = dry_run { (dry_run_notice(run)) }
        (create_form(form, &apps, &csrf, "/playbooks", "Create playbook"))
    };
    Ok(html_response(
        status,
        page("Playbooks", Section::Playbooks, &csrf, &body),
    ))
}

/// `POST /playbooks`.
pub async fn create(
    session: AdminSession,
    State(state): State<AppState>,
    Form(form): Form<PlaybookForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    if form.is_dry_run() {
        let (status, error, run) = dry_run_of(&state, &form).await?;
        return render_with(
            &session,
            &state,
            status,
            (None, error.as_deref()),
            &BTreeMap::new(),
            &form,
            run.as_ref(),
        )
        .await;
    }
    let checked = match form.to_playbook() {
        Ok(playbook) => playbook
            .check_destinations(state.notifier.policy())
            .await
            .map(|()| playbook),
        Err(message) => Err(message),
    };
    match checked {
        Ok(playbook) => {
            let (id, secrets) = state.store.create_playbook(&playbook).await?;
            tracing::info!(event = "dashboard.playbook_created", id, name = %playbook.name,
                webhooks = secrets.len(), "playbook created from the dashboard");
            if secrets.is_empty() {
                return Ok(Redirect::to("/playbooks?done=created").into_response());
            }
            // The secret is shown in this answer only: never in a URL, and
            // not stored anywhere the list page would read it again.
            render(
                &session,
                &state,
                StatusCode::CREATED,
                (Some("Playbook created."), None),
                &secrets,
                &PlaybookForm::defaults(),
            )
            .await
        }
        Err(message) => {
            render(
                &session,
                &state,
                StatusCode::BAD_REQUEST,
                (None, Some(&message)),
                &BTreeMap::new(),
                &form,
            )
            .await
        }
    }
}

/// The dry run of the playbook `form` describes: its answer's status, why
/// it is invalid, or what it would have done.
async fn dry_run_of(
    state: &AppState,
    form: &PlaybookForm,
) -> Result<(StatusCode, Option<String>, Option<DryRun>), PageError> {
    match form.to_playbook() {
        Ok(playbook) => {
            let run = dry_run_stored(&state.store, &playbook, now_ms(), DRY_RUN_WINDOW_MS).await?;
            tracing::info!(
                event = "dashboard.playbook_dry_run",
                alerts = run.alerts.len(),
                matched = run.matched,
                "playbook dry run from the dashboard"
            );
            Ok((StatusCode::OK, None, Some(run)))
        }
        Err(message) => Ok((StatusCode::BAD_REQUEST, Some(message), None)),
    }
}

/// The most alerts of a dry run listed.
const DRY_RUN_SHOWN: usize = 20;

/// What a dry run found.
fn dry_run_notice(run: &DryRun) -> Markup {
    let fires = run.alerts.len();
    let mut actors: Vec<(&str, &str, usize)> = Vec::new();
    for a in &run.alerts {
        match actors
            .iter_mut()
            .find(|(app, actor, _)| *app == a.app && *actor == a.actor)
        {
            Some(entry) => entry.2 += 1,
            None => actors.push((&a.app, &a.actor, 1)),
        }
    }
    html! {
        div.notice.ok id="dry-run" role="status" data-fires=(fires) {
            p {
                strong { "Dry run: " }
                "over the last 24 h this playbook would have fired "
                strong.fires { (fires) } " time" @if fires != 1 { "s" }
                @if run.truncated { " (at least: only the first " (DRY_RUN_EVENTS) " events were read)" }
                ", from " (run.matched) " matching event" @if run.matched != 1 { "s" } ". Nothing was saved."
            }
            @if !actors.is_empty() {
                ul.kv id="dry-run-actors" {
                    @for (app, actor, n) in actors.iter().take(DRY_RUN_SHOWN) {
                        li {
                            code { (actor) } " in " (app)
                            @if *n > 1 { " (" (n) " times)" }
                        }
                    }
                }
                @if actors.len() > DRY_RUN_SHOWN { p.muted { "and " (actors.len() - DRY_RUN_SHOWN) " more actors" } }
            }
        }
    }
}

/// `GET /playbooks/{id}`: the playbook, with the form to edit it.
pub async fn edit_page(
    session: AdminSession,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = PageError::numeric_id(&id, "A playbook")?;
    let row = stored_playbook(&state, id).await?;
    let form = PlaybookForm::from_playbook(&row.playbook);
    render_edit(
        &session,
        &state,
        &row,
        StatusCode::OK,
        (None, None),
        &BTreeMap::new(),
        form.as_ref(),
        None,
    )
    .await
}

/// Playbook `id` as stored: 404 when there is none.
async fn stored_playbook(state: &AppState, id: i64) -> Result<PlaybookRow, PageError> {
    state
        .store
        .get_playbook(id)
        .await?
        .ok_or_else(|| PageError::not_found("playbook"))
}

/// `POST /playbooks/{id}`: saves the edited playbook (keeping it enabled
/// or disabled), or shows its dry run.
pub async fn update(
    session: AdminSession,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<PlaybookForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    let id = PageError::numeric_id(&id, "A playbook")?;
    let row = stored_playbook(&state, id).await?;
    if form.is_dry_run() {
        let (status, error, run) = dry_run_of(&state, &form).await?;
        return render_edit(
            &session,
            &state,
            &row,
            status,
            (None, error.as_deref()),
            &BTreeMap::new(),
            Some(&form),
            run.as_ref(),
        )
        .await;
    }
    let checked = match form.to_playbook() {
        Ok(mut playbook) => {
            playbook.enabled = row.playbook.enabled;
            playbook
                .check_destinations(state.notifier.policy())
                .await
                .map(|()| playbook)
        }
        Err(message) => Err(message),
    };
    let playbook = match checked {
        Ok(playbook) => playbook,
        Err(message) => {
            return render_edit(
                &session,
                &state,
                &row,
                StatusCode::BAD_REQUEST,
                (None, Some(&message)),
                &BTreeMap::new(),
                Some(&form),
                None,
            )
            .await;
        }
    };
    let secrets = state
        .store
        .update_playbook(id, &playbook)
        .await?
        .ok_or_else(|| PageError::not_found("playbook"))?;
    tracing::info!(event = "dashboard.playbook_updated", id, name = %playbook.name,
        webhooks = secrets.len(), "playbook updated from the dashboard");
    let row = stored_playbook(&state, id).await?;
    let form = PlaybookForm::from_playbook(&row.playbook);
    render_edit(
        &session,
        &state,
        &row,
        StatusCode::OK,
        (Some("Playbook saved."), None),
        &secrets,
        form.as_ref(),
        None,
    )
    .await
}

/// The page of playbook `row`: a summary, and the edit form (`form`) when
/// the form can describe it.
#[allow(clippy::too_many_arguments)]
async fn render_edit(
    session: &AdminSession,
    state: &AppState,
    row: &PlaybookRow,
    status: StatusCode,
    (ok, error): (Option<&str>, Option<&str>),
    secrets: &BTreeMap<String, String>,
    form: Option<&PlaybookForm>,
    dry_run: Option<&DryRun>,
) -> Result<Response, PageError> {
    let csrf = session.csrf();
    let apps = state.store.list_apps().await?;
    let body = html! {
        (notice(ok, error))
        (secrets_notice(secrets))
        (playbooks_table(std::slice::from_ref(row), &csrf))
        h2 id="new-playbook" { "Edit" }
        @if let Some(run) = dry_run { (dry_run_notice(run)) }
        @match form {
            Some(form) => (create_form(form, &apps, &csrf, &format!("/playbooks/{}", row.id), "Save playbook")),
            None => p.muted {
                "This playbook has more conditions, responses or webhooks than the form holds: "
                "change it through the admin API (PUT /api/playbooks/" (row.id) ")."
            },
        }
        p { a href="/playbooks" { "← All playbooks" } }
    };
    Ok(html_response(
        status,
        page(
            &format!("Playbook: {}", row.playbook.name),
            Section::Playbooks,
            &csrf,
            &body,
        ),
    ))
}

/// The signing secrets of webhooks just saved, shown once.
fn secrets_notice(secrets: &BTreeMap<String, String>) -> Markup {
    html! {
        @if !secrets.is_empty() {
            div.notice.ok id="webhook-secrets" role="status" {
                p {
                    "Each webhook request carries X-Sqreen-Signature, an HMAC-SHA256 made with the secret below. "
                    strong { "It is shown only now:" } " copy it to the receiver."
                }
                ul.kv {
                    @for (url, secret) in secrets {
                        li { (log_host(url)) ": " code.webhook-secret { (secret) } }
                    }
                }
            }
        }
    }
}

/// `POST /playbooks/{id}/toggle`.
pub async fn toggle(
    session: AdminSession,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    let mut row = state
        .store
        .get_playbook(id)
        .await?
        .ok_or_else(|| PageError::not_found("playbook"))?;
    row.playbook.enabled = !row.playbook.enabled;
    // The webhook URLs are unchanged: they keep their secrets.
    if state
        .store
        .update_playbook(id, &row.playbook)
        .await?
        .is_none()
    {
        return Err(PageError::not_found("playbook"));
    }
    let done = if row.playbook.enabled {
        "enabled"
    } else {
        "disabled"
    };
    tracing::info!(
        event = "dashboard.playbook_toggled",
        id,
        enabled = row.playbook.enabled,
        "playbook toggled from the dashboard"
    );
    Ok(Redirect::to(&format!("/playbooks?done={done}")).into_response())
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Neq => "≠",
        Op::Contains => "contains",
        Op::Regex => "matches",
    }
}

fn playbooks_table(playbooks: &[PlaybookRow], csrf: &str) -> Markup {
    html! {
        @if playbooks.is_empty() {
            p.muted { "No playbooks yet." }
        } @else {
            table id="playbooks" {
                caption { (playbooks.len()) " playbook(s)" }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Status" }
                        th scope="col" { "Trigger" }
                        th scope="col" { "Responses" }
                        th scope="col" { "Webhooks" }
                        th scope="col" { span.muted { "Action" } }
                    }
                }
                tbody {
                    @for row in playbooks {
                        @let p = &row.playbook;
                        tr.playbook data-id=(row.id) {
                            td.name { a.playbook-link href=(format!("/playbooks/{}", row.id)) { (p.name) } @if let Some(app) = &p.app { br; span.muted { "app " (app) } } }
                            td.status { @if p.enabled { "enabled" } @else { span.muted { "disabled" } } }
                            td {
                                code { (p.trigger.event) }
                                @for c in &p.trigger.conditions {
                                    br; "where " code { (c.property) } " " (op_text(c.op)) " " code { (c.value) }
                                }
                                br;
                                (p.trigger.threshold) " in " (p.trigger.period_s) " s per "
                                (match p.trigger.actor { Actor::Ip => "IP", Actor::User => "user" })
                            }
                            td {
                                @if p.responses.is_empty() { span.muted { "alert only" } }
                                @for r in &p.responses {
                                    (match r.kind { ResponseKind::Block => "block", ResponseKind::Redirect => "redirect" })
                                    @if let Some(url) = &r.url { " to " code { (url) } }
                                    " for " @if r.duration_s == 0 { "ever (until lifted)" } @else { (r.duration_s) " s" }
                                    br;
                                }
                            }
                            td { @for n in &p.notifications { code { (n.url) } br; } }
                            td {
                                form method="post" action=(format!("/playbooks/{}/toggle", row.id)) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.secondary type="submit" aria-label={ (if p.enabled { "Disable " } else { "Enable " }) (p.name) } {
                                        @if p.enabled { "Disable" } @else { "Enable" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn create_form(
    f: &PlaybookForm,
    apps: &[crate::store::AppView],
    csrf: &str,
    action: &str,
    submit: &str,
) -> Markup {
    let text = |name: &'static str, label: &'static str, value: &str, required: bool| {
        html! {
            label for=(format!("p-{name}")) {
                (label)
                input type="text" id=(format!("p-{name}")) name=(name) value=(value) required[required];
            }
        }
    };
    let number = |name: &'static str, label: &'static str, value: &str| {
        html! {
            label for=(format!("p-{name}")) {
                (label)
                input type="number" min="0" id=(format!("p-{name}")) name=(name) value=(value);
            }
        }
    };
    let choice =
        |name: &'static str, label: &'static str, value: &str, options: &[(&str, &str)]| {
            html! {
                label for=(format!("p-{name}")) {
                    (label)
                    select id=(format!("p-{name}")) name=(name) {
                        @for (v, text) in options {
                            option value=(v) selected[*v == value] { (text) }
                        }
                    }
                }
            }
        };
    html! {
        form.create method="post" action=(action) aria-labelledby="new-playbook" {
            input type="hidden" name="csrf" value=(csrf);
            fieldset {
                legend { "What is counted" }
                (text("name", "Name", &f.name, true))
                label for="p-app" {
                    "Application"
                    select id="p-app" name="app" {
                        option value="" { "all" }
                        @for app in apps {
                            option value=(app.name) selected[app.name == f.app] { (app.name) }
                        }
                    }
                }
                (text("event", "Event (e.g. sdk-login-fail)", &f.event, true))
                (text("cond_property", "Condition: property (optional)", &f.cond_property, false))
                (choice("cond_op", "operator", &f.cond_op, &[("eq", "equals"), ("neq", "differs from"), ("contains", "contains"), ("regex", "matches regex")]))
                (text("cond_value", "value", &f.cond_value, false))
                (number("threshold", "Threshold", &f.threshold))
                (number("period_s", "Period (s)", &f.period_s))
                (choice("actor", "Per", &f.actor, &[("ip", "IP"), ("user", "user")]))
            }
            fieldset {
                legend { "What happens" }
                (choice("response", "Response", &f.response, &[("block", "block"), ("redirect", "redirect"), ("none", "alert only")]))
                (number("duration_s", "Duration (s, 0 = until lifted)", &f.duration_s))
                (text("redirect_url", "Redirect URL", &f.redirect_url, false))
                (text("webhook_url", "Webhook URL (optional)", &f.webhook_url, false))
                label.inline for="p-allow_critical_ips" {
                    input type="checkbox" id="p-allow_critical_ips" name="allow_critical_ips" value="on" checked[!f.allow_critical_ips.is_empty()];
                    "Allow blocking private and loopback IPs"
                }
            }
            div.presets {
                button type="submit" id="create-playbook" name="intent" value="save" { (submit) }
                button.secondary type="submit" id="dry-run-button" name="intent" value="dry-run" { "Dry run (last 24 h)" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default form with a name and an event is a valid block playbook.
    #[test]
    fn form_builds_a_playbook() {
        let form = PlaybookForm {
            name: "brute".into(),
            event: "sdk-login-fail".into(),
            cond_property: "path".into(),
            cond_value: "/login".into(),
            webhook_url: "http://127.0.0.1:9/hook".into(),
            ..PlaybookForm::defaults()
        };
        let p = form.to_playbook().expect("valid");
        assert_eq!(p.trigger.threshold, 10);
        assert_eq!(p.trigger.conditions.len(), 1);
        assert_eq!(p.responses[0].kind, ResponseKind::Block);
        assert_eq!(p.notifications.len(), 1);
        assert!(!p.allow_critical_ips);
    }

    /// Bad numbers and invalid definitions are reported, not stored.
    #[test]
    fn bad_forms_are_refused() {
        let base = PlaybookForm {
            name: "x".into(),
            event: "e".into(),
            ..PlaybookForm::defaults()
        };
        let bad = PlaybookForm {
            threshold: "ten".into(),
            ..base.clone()
        };
        assert!(bad.to_playbook().is_err());
        let bad = PlaybookForm {
            response: "redirect".into(),
            ..base.clone()
        };
        assert!(bad.to_playbook().is_err());
        let bad = PlaybookForm {
            name: " ".into(),
            ..base
        };
        assert!(bad.to_playbook().is_err());
    }
}
