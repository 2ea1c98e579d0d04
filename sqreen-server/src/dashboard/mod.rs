//! The dashboard: server-rendered HTML pages behind the admin key.
//!
//! | route | page |
//! | --- | --- |
//! | `GET /` | redirect to `/events` (or `/login`) |
//! | `GET /login`, `POST /login` (`key`) | log in with the admin key |
//! | `POST /logout` | log out |
//! | `GET /events?event=&app=&ip=&user_key=&user_value=&property=&value=&range=&since=&until=&group=&cursor=` | Event Explorer: filters, stacked trend chart, facets, events with their request context |
//! | `GET /events/export?…the explorer's filters…&format=ndjson\|csv` | the explorer's events (all pages) as a file ([`export`]) |
//! | `GET /events/{id}` | one event: its request and response as tables, its user, links to the same IP, user, event |
//! | `GET /playbooks`, `POST /playbooks` | playbooks; create one from the form, or dry-run it (`intent=dry-run`) |
//! | `GET /playbooks/{id}`, `POST /playbooks/{id}` | one playbook; edit it, or dry-run the edit |
//! | `POST /playbooks/{id}/toggle` | enable or disable a playbook |
//! | `GET /actions`, `POST /actions/{id}/lift` | Security responses: live actions; lift one |
//! | `GET /alerts` | alerts, newest first |
//! | `GET /alerts/{id}` | one alert: its playbook, actor, the events that crossed the threshold, its actions and their state, its webhooks |
//! | `GET /apps`, `POST /apps/{id}/rotate-token` | applications; give one a new agent token (shown once) |
//! | `GET /apps/{id}/delete`, `POST /apps/{id}/delete` (`confirm` = its name) | delete an application, after confirming |
//!
//! Pages are plain HTML rendered by `maud` (every value escaped) with a
//! small inline stylesheet; the trend chart is inline SVG. Nothing runs in
//! the browser and nothing is fetched from elsewhere, which the
//! `Content-Security-Policy` of every answer enforces (`script-src 'none'`).
//!
//! Sessions are stateless signed cookies, and every state-changing form
//! carries a CSRF token: see [`session`]. Any number of server processes on
//! one database accept the same sessions.

pub mod alert;
pub mod apps;
pub mod chart;
pub mod event;
pub mod events;
pub mod export;
pub mod layout;
pub mod playbooks;
pub mod responses;
pub mod session;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::html;
use serde::Deserialize;

use crate::AppState;
use crate::secret;
use crate::time::now_ms;
use layout::{PageError, bare_page, html_response};
use playbooks::CsrfForm;
use session::AdminSession;

/// Largest form body accepted.
const FORM_LIMIT: usize = 64 * 1024;

/// Every dashboard route, with the security headers of its answers.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/events", get(events::explorer))
        .route("/events/{id}", get(event::event_page))
        .route("/events/export", get(export::export))
        .route("/playbooks", get(playbooks::list).post(playbooks::create))
        .route(
            "/playbooks/{id}",
            get(playbooks::edit_page).post(playbooks::update),
        )
        .route("/playbooks/{id}/toggle", post(playbooks::toggle))
        .route("/actions", get(responses::actions))
        .route("/actions/{id}/lift", post(responses::lift))
        .route("/alerts", get(responses::alerts))
        .route("/alerts/{id}", get(alert::alert_page))
        .route("/apps", get(apps::list))
        .route("/apps/{id}/rotate-token", post(apps::rotate))
        .route(
            "/apps/{id}/delete",
            get(apps::confirm_delete).post(apps::delete),
        )
        .layer(axum::extract::DefaultBodyLimit::max(FORM_LIMIT))
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers of every dashboard answer: no scripts, no framing, no caching.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn logged_in(state: &AppState, headers: &HeaderMap) -> bool {
    AdminSession::of(state, headers).await.is_some()
}

async fn root(State(state): State<AppState>, headers: HeaderMap) -> Redirect {
    if logged_in(&state, &headers).await {
        Redirect::to("/events")
    } else {
        Redirect::to("/login")
    }
}

fn login_form(status: StatusCode, error: Option<&str>) -> Response {
    let body = html! {
        @if let Some(error) = error { p.notice.error role="alert" { (error) } }
        form method="post" action="/login" {
            label for="key" {
                "Admin key"
                input type="password" id="key" name="key" autocomplete="current-password" required autofocus;
            }
            button type="submit" id="login" { "Log in" }
        }
    };
    html_response(status, bare_page("Log in to sqreen", &body))
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if logged_in(&state, &headers).await {
        return Redirect::to("/events").into_response();
    }
    login_form(StatusCode::OK, None)
}

/// The login form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginForm {
    key: String,
}

async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let key = form.key.trim();
    let peer = crate::key_limiter::peer(&extensions);
    let now = now_ms();
    if let Err(retry_after_s) = state.key_limiter.check(peer, now) {
        let mut response = login_form(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many wrong admin keys from your address: try again in {retry_after_s} s."
            )),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        return Ok(response);
    }
    if key.is_empty() || !secret::same_hash(&secret::hash(key), &state.settings.admin_key_hash) {
        if !key.is_empty() {
            state.key_limiter.failed(peer, now);
        }
        tracing::warn!(
            event = "dashboard.login_failed",
            "dashboard login with a wrong admin key"
        );
        return Ok(login_form(
            StatusCode::UNAUTHORIZED,
            Some("Wrong admin key."),
        ));
    }
    state.key_limiter.succeeded(peer, now);
    let cookie = state.settings.session_key.issue(now_ms())?;
    tracing::info!(event = "dashboard.login", "dashboard login");
    let mut response = Redirect::to("/events").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(&cookie, &headers))
            .map_err(|_| PageError::bad_request("unusable cookie"))?,
    );
    Ok(response)
}

async fn logout(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    session.revoke(&state).await?;
    tracing::info!(event = "dashboard.logout", "dashboard logout");
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie())
            .map_err(|_| PageError::bad_request("unusable cookie"))?,
    );
    Ok(response)
}
