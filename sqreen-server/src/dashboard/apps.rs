//! Applications: the list (`GET /apps`), rotating an agent token
//! (`POST /apps/{id}/rotate-token`) and deleting an application after a
//! confirmation step (`GET /apps/{id}/delete`, then `POST /apps/{id}/delete`
//! with the application's name typed again).
//!
//! Both act at once, as their admin API routes do
//! ([`crate::store::Store::rotate_app_token`],
//! [`crate::store::Store::delete_app`]): the old token and every session
//! opened with it stop working. A rotated token is shown in the answer to
//! the rotation only, never in a URL, and cannot be shown again.

use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{PageError, Section, html_response, notice, page, when};
use super::playbooks::CsrfForm;
use super::session::AdminSession;
use crate::AppState;
use crate::store::AppView;

/// Which notice the list shows after a redirect.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListParams {
    done: String,
}

/// The deletion form: the CSRF token and the application's name, typed
/// again to confirm.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteForm {
    csrf: String,
    confirm: String,
}

/// `GET /apps`.
pub async fn list(
    session: AdminSession,
    State(state): State<AppState>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let done = query.map(|Query(q)| q.done).unwrap_or_default();
    let ok = (done == "deleted").then_some(
        "Application deleted: its agents are logged out and its events are being removed.",
    );
    let csrf = session.csrf();
    let apps = state.store.list_apps().await?;
    let body = html! {
        (notice(ok, None))
        (apps_table(&apps, &csrf))
    };
    Ok(html_response(
        StatusCode::OK,
        page("Applications", Section::Apps, &csrf, &body),
    ))
}

/// `POST /apps/{id}/rotate-token`: the list, with the new token shown once.
pub async fn rotate(
    session: AdminSession,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    let token = state
        .store
        .rotate_app_token(id)
        .await?
        .ok_or_else(|| PageError::not_found("application"))?;
    let name = state.store.app_name(id).await?.unwrap_or_default();
    tracing::warn!(event = "dashboard.app_token_rotated", app = %name, id,
        "application token rotated from the dashboard; its sessions are ended");
    let csrf = session.csrf();
    let apps = state.store.list_apps().await?;
    let body = html! {
        div.notice.ok id="new-token" role="status" {
            p {
                "New agent token of " strong { (name) } ". The old token and the agents logged in with it stop working now. "
                strong { "It is shown only now:" } " give it to the application's agents (SQREEN_TOKEN)."
            }
            code.token { (token) }
        }
        (apps_table(&apps, &csrf))
    };
    Ok(html_response(
        StatusCode::OK,
        page("Applications", Section::Apps, &csrf, &body),
    ))
}

/// `GET /apps/{id}/delete`: what deleting means, and the confirmation form.
pub async fn confirm_delete(
    session: AdminSession,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let app = find(&state, id).await?;
    Ok(delete_page(&session, &app, StatusCode::OK, None))
}

/// `POST /apps/{id}/delete`: deletes the application when the typed name is
/// its name; shows the confirmation again otherwise.
pub async fn delete(
    session: AdminSession,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    let app = find(&state, id).await?;
    if form.confirm.trim() != app.name {
        return Ok(delete_page(
            &session,
            &app,
            StatusCode::BAD_REQUEST,
            Some("The name typed is not the application's: nothing was deleted."),
        ));
    }
    if state.store.delete_app(id).await?.is_none() {
        return Err(PageError::not_found("application"));
    }
    tracing::warn!(event = "dashboard.app_deleted", app = %app.name, id,
        "application deleted from the dashboard");
    let store = state.store.clone();
    // Failures are logged by `purge_deleted_apps`; housekeeping resumes.
    tokio::spawn(async move { store.purge_deleted_apps().await });
    Ok(Redirect::to("/apps?done=deleted").into_response())
}

async fn find(state: &AppState, id: i64) -> Result<AppView, PageError> {
    state
        .store
        .list_apps()
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| PageError::not_found("application"))
}

fn delete_page(
    session: &AdminSession,
    app: &AppView,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let csrf = session.csrf();
    let body = html! {
        (notice(None, error))
        p {
            "Deleting " strong { (app.name) } " (id " (app.id) ") ends its agents' sessions and refuses its token at once, "
            "deletes its security responses and alerts, and removes all its events. This cannot be undone."
        }
        form.create method="post" action=(format!("/apps/{}/delete", app.id)) {
            input type="hidden" name="csrf" value=(csrf);
            label for="confirm" {
                "Type the application's name to confirm"
                input type="text" id="confirm" name="confirm" autocomplete="off" required;
            }
            button type="submit" id="delete-app" { "Delete " (app.name) }
        }
        p { a href="/apps" { "Cancel" } }
    };
    html_response(
        status,
        page("Delete an application", Section::Apps, &csrf, &body),
    )
}

fn apps_table(apps: &[AppView], csrf: &str) -> Markup {
    html! {
        @if apps.is_empty() {
            p.muted id="no-apps" { "No applications yet: create one with `sqreen-server app create NAME` or POST /api/apps." }
        } @else {
            table id="apps" {
                caption { (apps.len()) " application(s)" }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Id" }
                        th scope="col" { "Created" }
                        th scope="col" { span.muted { "Token" } }
                        th scope="col" { span.muted { "Delete" } }
                    }
                }
                tbody {
                    @for app in apps {
                        tr.app data-id=(app.id) {
                            td.name { (app.name) }
                            td { (app.id) }
                            td { (when(app.created_at)) }
                            td {
                                form method="post" action=(format!("/apps/{}/rotate-token", app.id)) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.secondary type="submit" aria-label={ "Rotate the token of " (app.name) } { "Rotate token" }
                                }
                            }
                            td {
                                a href=(format!("/apps/{}/delete", app.id)) aria-label={ "Delete " (app.name) } { "Delete…" }
                            }
                        }
                    }
                }
            }
        }
    }
}
