//! The agent protocol (PROTOCOL.md): login, heartbeat, batch, action pack,
//! logout.
//!
//! Sessions are rows (the agent holds a random session id, the database its
//! hash), so any server process sharing the database answers any agent.
//! Pending `actions_reload` commands are a version number: each app's
//! action set has a version bumped on every change, each session remembers
//! the version it has, and a heartbeat that finds them different answers
//! `actions_reload`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::playbook;
use crate::protocol::{self, BatchBody, BeatBody};
use crate::secret;
use crate::store::{NewEvent, SessionRow, StoreError};
use crate::time::now_ms;

/// Largest login, heartbeat or logout body.
const SMALL_BODY: usize = 1 << 20;

/// The agent routes, `max_batch_bytes` being the largest batch body.
pub fn routes(max_batch_bytes: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/sqreen/v1/app-login",
            post(login).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/sqreen/v1/app-beat",
            post(beat).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/sqreen/v0/batch",
            post(batch).layer(DefaultBodyLimit::max(max_batch_bytes)),
        )
        .route("/sqreen/v0/actionspack", get(actionspack))
        .route("/sqreen/v0/app-logout", get(logout).post(logout))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn session(state: &AppState, headers: &HeaderMap) -> Result<SessionRow, ApiError> {
    let Some(key) = header(headers, "x-session-key").filter(|k| !k.is_empty() && k.len() <= 256)
    else {
        return Err(ApiError::unauthorized("missing session"));
    };
    state
        .store
        .session(key)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or expired session"))
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let token = header(&headers, "x-api-key").unwrap_or_default();
    let app = if token.is_empty() || token.len() > 256 {
        None
    } else {
        state.store.app_by_token(token).await?
    };
    let Some(app) = app else {
        tracing::warn!(
            event = "login.refused",
            token = secret::redacted(token),
            "agent login with an unknown token"
        );
        return Err(ApiError::unauthorized("invalid token"));
    };
    let info: Value = json_body(&body)?;
    if !info.is_object() {
        return Err(ApiError::bad_request(
            "the login body must be a JSON object",
        ));
    }
    // What the agent says of itself, kept for people; bounded.
    let mut agent = info.to_string();
    if agent.len() > 4096 {
        agent = json!({"truncated": true}).to_string();
    }
    let session = state.store.open_session(app.id, &agent).await?;
    let now = now_ms();
    let actions: Vec<Value> = state
        .store
        .list_actions(Some(app.id))
        .await?
        .iter()
        .map(|a| a.to_protocol(now))
        .collect();
    tracing::info!(event = "login.ok", app = %app.name,
        app_name_header = header(&headers, "x-app-name").unwrap_or_default(),
        agent_type = info["agent_type"].as_str().unwrap_or_default(),
        "agent logged in");
    let delay = state.settings.heartbeat_delay_s;
    Ok(axum::Json(json!({
        "status": true, "session_id": session, "error": "", "commands": [],
        "features": {"heartbeat_delay": delay, "max_staleness": delay},
        "actions": actions,
    })))
}

/// Stores `events` of the session's app and runs the playbooks on them.
async fn ingest(state: &AppState, s: &SessionRow, events: Vec<NewEvent>) -> Result<(), ApiError> {
    if events.is_empty() {
        return Ok(());
    }
    let Some(app_name) = state.store.app_name(s.app_id).await? else {
        return Err(StoreError::AppDeleted.into());
    };
    let playbooks = playbook::load(&state.store).await?;
    let hits = playbook::match_events(&playbooks, &app_name, &events);
    let inserted = state.store.insert_events(s.app_id, &events, &hits).await?;
    let stored = inserted.iter().filter(|n| **n).count() as u64;
    state
        .stats
        .count_events(stored, events.len() as u64 - stored);
    tracing::debug!(event = "ingest.stored", app = %app_name, received = events.len(),
        stored, "events stored");
    if !hits.is_empty()
        && let Err(e) = playbook::evaluate(
            &state.store,
            &state.notifier,
            &playbooks,
            (s.app_id, &app_name),
            &hits,
            &inserted,
        )
        .await
    {
        // The events are stored: the agent must not resend them.
        tracing::error!(event = "playbook.evaluate_failed", error = %e,
            "playbook evaluation failed");
    }
    Ok(())
}

async fn beat(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let s = session(&state, &headers).await?;
    let beat: BeatBody = json_body(&body)?;
    let events = protocol::metric_events(&beat.metrics, &s.id_hash)
        .map_err(|e| ApiError::bad_request(e.0))?;
    for (uuid, result) in &beat.command_results {
        tracing::debug!(event = "beat.command_result", uuid = %uuid, status = result.status,
            output = %result.output, "command result");
    }
    let had_metrics = !events.is_empty();
    ingest(&state, &s, events).await?;
    // These very metrics may have fired a playbook: read the version again
    // so that the agent reloads now rather than on its next beat.
    let app_version = if had_metrics {
        state
            .store
            .app_actions_version(s.app_id)
            .await?
            .unwrap_or(s.app_actions_version)
    } else {
        s.app_actions_version
    };
    let mut commands = Vec::new();
    if s.actions_version != app_version {
        let uuid = secret::random_id().map_err(StoreError::from)?;
        commands.push(json!({"name": "actions_reload", "uuid": uuid, "params": []}));
    }
    state.store.touch_session(&s.id_hash, app_version).await?;
    Ok(axum::Json(json!({"status": true, "commands": commands})))
}

async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let s = session(&state, &headers).await?;
    let batch: BatchBody = json_body(&body)?;
    let events = protocol::batch_events(batch).map_err(|e| ApiError::bad_request(e.0))?;
    ingest(&state, &s, events).await?;
    Ok(axum::Json(json!({"status": true})))
}

async fn actionspack(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let s = session(&state, &headers).await?;
    let now = now_ms();
    let actions: Vec<Value> = state
        .store
        .list_actions(Some(s.app_id))
        .await?
        .iter()
        .map(|a| a.to_protocol(now))
        .collect();
    Ok(axum::Json(json!({"actions": actions})))
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let s = session(&state, &headers).await?;
    state.store.close_session(&s.id_hash).await?;
    Ok(axum::Json(json!({"status": true})))
}
