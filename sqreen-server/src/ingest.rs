//! The agent protocol (docs/PROTOCOL.md): login, heartbeat, batch, action pack,
//! logout.
//!
//! Every route authenticates from its headers alone, before a byte of its
//! body is read: login by `X-Api-Key`, the others by `X-Session-Key`
//! ([`require_token`], [`require_session`]). A request without a valid
//! credential is answered 401 at once, whatever body it announces, and its
//! body is never read. Bodies are then read under limits sized to what
//! agents send: 1 MiB for login, heartbeat and logout, the configured batch
//! limit (32 MiB by default) for batches, of which at most
//! [`IngestLimits::concurrent_batches`] are read at once (others wait, up to
//! the request timeout, without their bodies being read). Batch and
//! heartbeat bodies may be gzip-compressed (`Content-Encoding: gzip`): the
//! limit then applies to the decompressed bytes, so a compression bomb gets
//! a 413 after at most the limit has been inflated.
//!
//! Sessions are rows (the agent holds a random session id, the database its
//! hash), so any server process sharing the database answers any agent.
//! Pending `actions_reload` commands are a version number: each app's
//! action set has a version bumped on every change, each session remembers
//! the version it has, and a heartbeat that finds them different answers
//! `actions_reload`.
//!
//! The historical Python and Node.js agents use more routes than ours
//! (docs/PROTOCOL.md, "Variants"): `GET /ping` (no credential), the rulespack
//! ([`crate::rulespack`]), metrics and request records outside a heartbeat
//! or batch (stored as if they came in one), and reports the server has no
//! use for (`sqreen_exception`, `bundle`, `agent_message`, `attack`,
//! `commands`, `data_point`), whose bodies are read under the small-body
//! limit, checked to be JSON, logged at debug level, counted and
//! acknowledged. Every answer carries `"status": true`: both agents refuse
//! an answer without it.
//!
//! Answers are the types of [`sqreen_protocol::answers`]; stored actions
//! take their wire form in [`crate::protocol::wire_actions`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Router};
use sqreen_protocol::answers::{
    Action, ActionsPackAnswer, BatchAnswer, BeatAnswer, Command, LoginAnswer, Refusal,
    RulespackAnswer, StatusAnswer,
};
use sqreen_protocol::{commands, paths};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::decompression::RequestDecompressionLayer;

use crate::AppState;
use crate::error::ApiError;
use crate::playbook;
use crate::protocol;
use crate::rulespack::{self, AgentKind};
use crate::secret;
use crate::store::{AppView, NewEvent, SessionRow, StoreError};
use crate::time::now_ms;

/// Largest login, heartbeat or logout body (the protocol's contract).
pub const SMALL_BODY: usize = sqreen_protocol::limits::MAX_BEAT_BYTES;
/// Longest token or session id looked up.
const MAX_CREDENTIAL: usize = 256;

/// Bounds of the agent routes.
#[derive(Clone, Copy, Debug)]
pub struct IngestLimits {
    /// Largest batch body, after decompression.
    pub max_batch_bytes: usize,
    /// Batch bodies read and parsed at once; the memory they take is at
    /// most this many times `max_batch_bytes` (plus parsing overhead).
    pub concurrent_batches: usize,
}

/// The agent routes.
pub fn routes(state: &AppState, limits: IngestLimits) -> Router<AppState> {
    let batch_slots = Arc::new(tokio::sync::Semaphore::new(
        limits.concurrent_batches.max(1),
    ));
    // Batch-sized bodies: the batch limit, and the batches' slots, so that
    // bodies read at once stay bounded (`concurrent_batches`).
    let batch_sized = |route: MethodRouter<AppState>| {
        route
            .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(limits.max_batch_bytes))
            .layer::<_, std::convert::Infallible>(GlobalConcurrencyLimitLayer::with_semaphore(
                Arc::clone(&batch_slots),
            ))
    };
    let small = |route: MethodRouter<AppState>| route.layer(DefaultBodyLimit::max(SMALL_BODY));
    let mut with_session = Router::new()
        .route(paths::BEAT, small(post(beat)))
        .route(paths::BATCH, batch_sized(post(batch)))
        .route(paths::REQUEST_RECORD, batch_sized(post(request_record)))
        .route(paths::ACTIONSPACK, get(actionspack))
        .route(paths::RULESPACK, get(rules))
        .route(paths::METRICS, small(post(metrics)))
        .route(paths::LOGOUT, small(get(logout).post(logout)));
    for report in [
        paths::SQREEN_EXCEPTION,
        paths::BUNDLE,
        paths::AGENT_MESSAGE,
        paths::ATTACK,
        paths::COMMANDS,
        paths::DATA_POINT,
    ] {
        with_session = with_session.route(report, small(post(acknowledge)));
    }
    let with_session = with_session
        .layer(RequestDecompressionLayer::new())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_session,
        ));
    let login = Router::new()
        .route(paths::LOGIN, small(post(login)))
        .route(paths::APP_SQREEN_EXCEPTION, small(post(acknowledge)))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let open = Router::new().route(paths::PING, get(ping));
    with_session.merge(login).merge(open)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Admits requests whose `X-Session-Key` names a live session, which it
/// hands to the handler; 401 otherwise, before the body is read.
pub async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = header(request.headers(), "x-session-key")
        .filter(|k| !k.is_empty() && k.len() <= MAX_CREDENTIAL);
    let Some(key) = key else {
        return ApiError::unauthorized("missing session").into_response();
    };
    match state.store.session(key).await {
        Ok(Some(session)) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Ok(None) => ApiError::unauthorized("unknown or expired session").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Admits logins whose `X-Api-Key` is an application's token, which it
/// hands to the handler; 401 otherwise, before the body is read.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = header(request.headers(), "x-api-key").unwrap_or_default();
    let app = if token.is_empty() || token.len() > MAX_CREDENTIAL {
        Ok(None)
    } else {
        state.store.app_by_token(token).await
    };
    match app {
        Ok(Some(app)) => {
            request.extensions_mut().insert(app);
            next.run(request).await
        }
        Ok(None) => {
            tracing::warn!(
                event = "login.refused",
                token = secret::redacted(token),
                "agent login with an unknown token"
            );
            ApiError::unauthorized("invalid token").into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn login(
    State(state): State<AppState>,
    Extension(app): Extension<AppView>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<LoginAnswer>, ApiError> {
    let info = protocol::decode_login(&body).map_err(|e| ApiError::bad_request(e.0))?;
    let session = state.store.open_session(app.id, &info.agent).await?;
    let actions = live_actions(&state, app.id).await?;
    tracing::info!(event = "login.ok", app = %app.name,
        app_name_header = header(&headers, "x-app-name").unwrap_or_default(),
        agent_type = %info.agent_type,
        "agent logged in");
    let delay = state.settings.heartbeat_delay_s;
    let kind = AgentKind::from_agent_type(&info.agent_type);
    let mut answer = LoginAnswer {
        actions,
        commands: Vec::new(),
        error: String::new(),
        features: rulespack::login_features(kind, delay),
        pack_id: None,
        rules: None,
        session_id: session,
        status: true,
    };
    if kind != AgentKind::Other {
        // The historical agents load these rules at login; the Node.js
        // agent keeps its instrumentation off until this command.
        let uuid = secret::random_id().map_err(StoreError::from)?;
        answer.pack_id = Some(rulespack::pack_id(kind, delay));
        answer.rules = Some(rulespack::rules(kind, delay));
        answer.commands = vec![Command::new(commands::INSTRUMENTATION_ENABLE, uuid)];
    }
    Ok(axum::Json(answer))
}

/// `GET /ping`: the Python agent checks that its URLs answer 200 before
/// using them (else it falls back to a public legacy URL).
async fn ping() -> axum::Json<StatusAnswer> {
    axum::Json(StatusAnswer::OK)
}

/// `GET /sqreen/v0/rulespack`: the rules for the calling agent, told by
/// its `User-Agent`.
async fn rules(State(state): State<AppState>, headers: HeaderMap) -> axum::Json<RulespackAnswer> {
    let kind = AgentKind::from_user_agent(header(&headers, "user-agent").unwrap_or_default());
    axum::Json(rulespack::rulespack(kind, state.settings.heartbeat_delay_s))
}

/// Reports the server has no use for: checked to be JSON, counted,
/// acknowledged.
async fn acknowledge(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Result<axum::Json<StatusAnswer>, ApiError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    state.stats.count_leniency(0, 1, 0);
    tracing::debug!(event = "agent.report_acknowledged", path = %uri.path(),
        bytes = body.len(), "agent report acknowledged, not stored");
    Ok(axum::Json(StatusAnswer::OK))
}

/// `POST /sqreen/v0/metrics`: metric stores outside a heartbeat (the
/// Python agent's last ones, at exit), stored as a heartbeat's.
async fn metrics(
    State(state): State<AppState>,
    Extension(s): Extension<SessionRow>,
    body: Bytes,
) -> Result<axum::Json<StatusAnswer>, ApiError> {
    let (_, events, leniency) =
        protocol::decode_beat(&body, &s.id_hash).map_err(|e| ApiError::bad_request(e.0))?;
    state.stats.count_leniency(leniency.unknown_fields, 0, 0);
    ingest(&state, &s, events).await?;
    Ok(axum::Json(StatusAnswer::OK))
}

/// `POST /sqreen/v0/request_record`: one record, stored as a batch of one.
async fn request_record(
    State(state): State<AppState>,
    Extension(s): Extension<SessionRow>,
    body: Bytes,
) -> Result<axum::Json<StatusAnswer>, ApiError> {
    let (events, leniency) =
        protocol::decode_request_record(&body).map_err(|e| ApiError::bad_request(e.0))?;
    state
        .stats
        .count_leniency(leniency.unknown_fields, leniency.acknowledged, 0);
    ingest(&state, &s, events).await?;
    Ok(axum::Json(StatusAnswer::OK))
}

/// Stores `events` of the session's app and runs the playbooks on them.
async fn ingest(state: &AppState, s: &SessionRow, events: Vec<NewEvent>) -> Result<(), ApiError> {
    if events.is_empty() {
        return Ok(());
    }
    let Some(app_name) = state.store.app_name(s.app_id).await? else {
        return Err(StoreError::AppDeleted.into());
    };
    let playbooks = state.playbooks.get(&state.store).await?;
    let hits = playbook::match_events(&playbooks, &app_name, &events);
    let inserted = state.store.insert_events(s.app_id, &events, &hits).await?;
    let stored = inserted.iter().filter(|n| **n).count() as u64;
    state
        .stats
        .count_events(stored, events.len() as u64 - stored);
    tracing::debug!(event = "ingest.stored", app = %app_name, received = events.len(),
        stored, "events stored");
    if !hits.is_empty() {
        let outcome = playbook::evaluate(
            &state.store,
            &state.notifier,
            &playbooks,
            (s.app_id, &app_name),
            &hits,
            &inserted,
        )
        .await;
        state.metrics.count_evaluation(outcome.is_err());
        if let Err(e) = outcome {
            // The events are stored: the agent must not resend them.
            tracing::error!(event = "playbook.evaluate_failed", error = %e,
                "playbook evaluation failed");
        }
    }
    Ok(())
}

async fn beat(
    State(state): State<AppState>,
    Extension(s): Extension<SessionRow>,
    body: Bytes,
) -> Result<axum::Json<BeatAnswer>, ApiError> {
    let (beat, events, leniency) =
        protocol::decode_beat(&body, &s.id_hash).map_err(|e| ApiError::bad_request(e.0))?;
    state.stats.count_leniency(leniency.unknown_fields, 0, 0);
    for (uuid, result) in &beat.command_results {
        tracing::debug!(event = "beat.command_result", uuid = %uuid,
            status = %result.get("status").unwrap_or(&serde_json::Value::Null),
            result = %result, "command result");
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
        commands.push(Command::new(commands::ACTIONS_RELOAD, uuid));
    }
    state.store.touch_session(&s.id_hash, app_version).await?;
    Ok(axum::Json(BeatAnswer {
        commands,
        status: true,
    }))
}

/// `POST /sqreen/v0/batch`, its handling time recorded
/// ([`crate::metrics`]).
async fn batch(
    State(state): State<AppState>,
    session: Extension<SessionRow>,
    body: Bytes,
) -> Result<axum::Json<BatchAnswer>, ApiError> {
    let started = std::time::Instant::now();
    let answer = handle_batch(&state, session, body).await;
    state.metrics.observe_batch(started.elapsed());
    answer
}

async fn handle_batch(
    state: &AppState,
    Extension(s): Extension<SessionRow>,
    body: Bytes,
) -> Result<axum::Json<BatchAnswer>, ApiError> {
    let outcome = protocol::decode_batch(&body).map_err(|e| ApiError::bad_request(e.0))?;
    let leniency = &outcome.leniency;
    let refused = outcome.refused.len() as u64;
    state
        .stats
        .count_leniency(leniency.unknown_fields, leniency.acknowledged, refused);
    // Every event refused: the batch is the agent's mistake, as a whole.
    if let Some(first) = outcome.refused.first()
        && outcome.refused.len() == outcome.received
    {
        return Err(ApiError::bad_request(format!(
            "batch[{}]: {}",
            first.index, first.reason
        )));
    }
    // Logged up to the number listed in the answer: a batch of 10 000 bad
    // events makes one summary line more, not 10 000.
    for r in outcome.refused.iter().take(protocol::MAX_REPORTED_REFUSALS) {
        tracing::warn!(event = "batch.event_refused", index = r.index, reason = %r.reason,
            "one event of a batch refused; the others are stored");
    }
    if outcome.refused.len() > protocol::MAX_REPORTED_REFUSALS {
        tracing::warn!(
            event = "batch.events_refused",
            refused,
            received = outcome.received,
            "more events of a batch refused than logged one by one"
        );
    }
    let refusals: Vec<Refusal> = outcome
        .refused
        .iter()
        .take(protocol::MAX_REPORTED_REFUSALS)
        .map(|r| Refusal {
            error: r.reason.clone(),
            index: r.index,
        })
        .collect();
    ingest(state, &s, outcome.events).await?;
    // `{"status": true}` alone when nothing was refused.
    Ok(axum::Json(BatchAnswer {
        refused: refusals,
        refused_count: refused,
        status: true,
    }))
}

async fn actionspack(
    State(state): State<AppState>,
    Extension(s): Extension<SessionRow>,
) -> Result<axum::Json<ActionsPackAnswer>, ApiError> {
    let actions = live_actions(&state, s.app_id).await?;
    Ok(axum::Json(ActionsPackAnswer::new(actions)))
}

/// The live actions of `app_id` in their wire form, at most the protocol's
/// [`sqreen_protocol::limits::MAX_ACTIONS`] (the newest first are kept).
async fn live_actions(state: &AppState, app_id: i64) -> Result<Vec<Action>, ApiError> {
    let now = now_ms();
    let mut actions = state.store.list_actions(Some(app_id)).await?;
    let max = sqreen_protocol::limits::MAX_ACTIONS;
    if actions.len() > max {
        tracing::warn!(
            event = "actions.capped",
            app_id,
            live = actions.len(),
            sent = max,
            "more live actions than an answer may carry: the oldest are left out"
        );
        actions.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        actions.truncate(max);
    }
    Ok(protocol::wire_actions(&actions, now))
}

async fn logout(
    State(state): State<AppState>,
    Extension(s): Extension<SessionRow>,
) -> Result<axum::Json<StatusAnswer>, ApiError> {
    state.store.close_session(&s.id_hash).await?;
    tracing::info!(event = "logout.ok", app_id = s.app_id, "agent logged out");
    Ok(axum::Json(StatusAnswer::OK))
}
