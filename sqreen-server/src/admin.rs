//! The admin JSON API under `/api`, behind `Authorization: Bearer <admin key>`.
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /api/apps` `{"name"}` | 201 `{"id", "name", "token"}` (the token is shown once) |
//! | `GET /api/apps` | `{"apps": [{"id", "name", "created_at"}]}` |
//! | `DELETE /api/apps/{id}` | 204: its token and sessions stop working at once (agents get 401); its actions, alerts and playbook counts are deleted at once, its events in the background ([`crate::store::Store::delete_app`]) |
//! | `POST /api/apps/{id}/rotate-token` | `{"id", "name", "token"}`: a new token (shown once); the old one and the sessions opened with it stop working at once |
//! | `GET /api/events?event=&app=&since=&until=&ip=&user_key=&user_value=&property=&value=&limit=&cursor=` | `{"events": […], "next_cursor"}`, newest first |
//! | `GET /api/events/export?…same filters as /api/events…&format=ndjson\|csv` | 200, every matching event newest first, streamed as an attachment: NDJSON (one `/api/events` item per line) or CSV (columns [`crate::store::CSV_COLUMNS`]); ndjson by default |
//! | `GET /api/events/trend?…&bucket=60&group_by=ip\|user\|property:NAME` | `{"bucket_s", "since", "until", "series": [{"group", "total", "points": [{"time", "time_ms", "count"}]}]}` |
//! | `POST /api/playbooks` | 201 `{"id", "webhook_secrets": {"<url>": "sqw_…"}}`: each webhook's signing secret, shown once ([`crate::notify`]) |
//! | `GET /api/playbooks`, `GET /api/playbooks/{id}` | the playbooks / one playbook with its `id` |
//! | `PUT /api/playbooks/{id}` | `{"id", "webhook_secrets"}`: secrets of the webhook URLs it adds (an unchanged URL keeps its secret); its counts start afresh |
//! | `DELETE /api/playbooks/{id}` | 204 |
//! | `GET /api/alerts?limit=` | `{"alerts": […]}`, newest first |
//! | `GET /api/actions?app=` | `{"actions": [{"action_id", "action", "parameters", "expires_at", "playbook_id", …}]}` (live ones) |
//! | `DELETE /api/actions/{id}` | 204: lifted; agents reload on their next heartbeat |
//! | `GET /api/stats` | this process's counters since it started: refused requests by status, storage errors, events stored and received twice, attribute merges ([`crate::stats::StatsView`]) |
//!
//! Its OpenAPI 3.1 description is served at `GET /api/openapi.json`
//! ([`crate::openapi`]); `GET /metrics` is [`crate::metrics`].
//!
//! Webhook URLs pointing at loopback, private or other non-public addresses
//! are refused with 400 unless the server allows them
//! ([`crate::destination`]).
//!
//! Times in filters are milliseconds since the epoch or RFC 3339. Unknown
//! query parameters and unknown body fields are 400s; every filter value is
//! a bound parameter, never SQL text.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::ApiError;
use crate::playbook::Playbook;
use crate::secret;
use crate::store::{
    ActionView, AlertView, AppView, EventFilter, EventPage, ExportFormat, PlaybookRow, TrendGroup,
    TrendQuery, TrendView, parse_cursor,
};
use crate::time::{now_ms, parse_filter_time};

/// Largest admin request body.
const BODY_LIMIT: usize = 256 * 1024;
/// Most events per page.
pub const MAX_LIMIT: usize = 1000;
/// Most buckets in a trend.
pub const MAX_BUCKETS: i64 = 10_000;
/// Widest trend bucket: a year.
pub const MAX_BUCKET_S: i64 = 366 * 24 * 3600;

/// The admin routes, behind the admin key check.
pub fn routes(state: AppState) -> axum::Router<AppState> {
    Router::new()
        .route("/api/apps", get(list_apps).post(create_app))
        .route("/api/apps/{id}", delete(delete_app))
        .route("/api/apps/{id}/rotate-token", post(rotate_token))
        .route("/api/events", get(events))
        .route("/api/events/trend", get(trend))
        .route("/api/events/export", get(export))
        .route("/api/playbooks", get(list_playbooks).post(create_playbook))
        .route(
            "/api/playbooks/{id}",
            get(get_playbook).put(put_playbook).delete(delete_playbook),
        )
        .route("/api/alerts", get(alerts))
        .route("/api/actions", get(actions))
        .route("/api/actions/{id}", delete(lift_action))
        .route("/api/stats", get(stats))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// Refuses requests without the admin key (401), and every attempt from an
/// address that sent too many wrong ones lately (429, see [`crate::key_limiter`]).
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let admin_key = |presented: &str| secret::same_hash(presented, &state.settings.admin_key_hash);
    match check_bearer(&state, &request, "admin key", admin_key) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Checks the `Authorization: Bearer …` credential of `request` under the
/// wrong-guess limiter ([`crate::key_limiter`]): `accepts` gets the hash of the
/// credential presented. `Err` is the refusal: 401 when it is missing or
/// refused (naming `what` was expected), 429 when the address sent too
/// many wrong ones lately.
pub(crate) fn check_bearer(
    state: &AppState,
    request: &Request,
    what: &str,
    accepts: impl FnOnce(&str) -> bool,
) -> Result<(), ApiError> {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty());
    let Some(key) = presented else {
        return Err(ApiError::unauthorized(format!("missing {what}")));
    };
    let peer = crate::key_limiter::peer(request.extensions());
    let now = crate::time::now_ms();
    if let Err(retry_after_s) = state.key_limiter.check(peer, now) {
        return Err(ApiError::too_many_guesses(retry_after_s));
    }
    if accepts(&secret::hash(key)) {
        state.key_limiter.succeeded(peer, now);
        Ok(())
    } else {
        state.key_limiter.failed(peer, now);
        Err(ApiError::unauthorized(format!("wrong {what}")))
    }
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// The body of every error answer (and of 401s and 429s).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always false.
    pub status: bool,
    /// What went wrong.
    pub error: String,
}

// ── apps ────────────────────────────────────────────────────────────────

/// `POST /api/apps`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// 1 to 100 characters without control characters, unique.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

/// An application with its agent token (shown once).
#[derive(Serialize, ToSchema)]
pub struct AppWithToken {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its agent token (`X-Api-Key`), shown once.
    pub token: String,
}

/// `GET /api/apps`.
#[derive(Serialize, ToSchema)]
pub struct AppList {
    /// Every application.
    pub apps: Vec<AppView>,
}

/// A valid application name: 1 to 100 characters, no control characters.
pub fn valid_app_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control)
}

/// Creates an application; its agent token is shown once.
#[utoipa::path(post, path = "/api/apps", tag = "apps",
    request_body = NewApp,
    responses(
        (status = 201, description = "created", body = AppWithToken),
        (status = 400, description = "invalid body or name", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    ))]
pub(crate) async fn create_app(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<AppWithToken>), ApiError> {
    let NewApp { name } = body(&bytes)?;
    if !valid_app_name(&name) {
        return Err(ApiError::bad_request(
            "name must be 1 to 100 characters without control characters",
        ));
    }
    let (app, token) = state.store.create_app(&name).await?;
    tracing::info!(event = "app.created", app = %app.name, id = app.id, "application created");
    Ok((
        StatusCode::CREATED,
        Json(AppWithToken {
            id: app.id,
            name: app.name,
            token,
        }),
    ))
}

/// Lists the applications.
#[utoipa::path(get, path = "/api/apps", tag = "apps",
    responses((status = 200, description = "the applications", body = AppList)))]
pub(crate) async fn list_apps(State(state): State<AppState>) -> Result<Json<AppList>, ApiError> {
    Ok(Json(AppList {
        apps: state.store.list_apps().await?,
    }))
}

/// Deletes an application: its token and sessions stop working at once, its
/// events are removed in the background.
#[utoipa::path(delete, path = "/api/apps/{id}", tag = "apps",
    params(("id" = i64, Path, description = "the application's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "not an id", body = ErrorBody),
        (status = 404, description = "no such application", body = ErrorBody),
    ))]
pub(crate) async fn delete_app(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path(id)?;
    let app = state
        .store
        .delete_app(id)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    tracing::warn!(event = "app.deleted", app = %app.name, id, "application deleted");
    let store = state.store.clone();
    // Failures are logged by `purge_deleted_apps`; housekeeping resumes.
    tokio::spawn(async move { store.purge_deleted_apps().await });
    Ok(StatusCode::NO_CONTENT)
}

/// Gives an application a new agent token (shown once); the old one and
/// its sessions stop working at once.
#[utoipa::path(post, path = "/api/apps/{id}/rotate-token", tag = "apps",
    params(("id" = i64, Path, description = "the application's id")),
    responses(
        (status = 200, description = "the new token", body = AppWithToken),
        (status = 400, description = "not an id", body = ErrorBody),
        (status = 404, description = "no such application", body = ErrorBody),
    ))]
pub(crate) async fn rotate_token(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<AppWithToken>, ApiError> {
    let id = path(id)?;
    let token = state
        .store
        .rotate_app_token(id)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    let name = state.store.app_name(id).await?.unwrap_or_default();
    tracing::warn!(event = "app.token_rotated", app = %name, id,
        "application token rotated; its sessions are ended");
    Ok(Json(AppWithToken { id, name, token }))
}

// ── events ──────────────────────────────────────────────────────────────

/// Explorer query parameters shared by the list and the trend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    event: Option<String>,
    app: Option<String>,
    since: Option<String>,
    until: Option<String>,
    ip: Option<String>,
    user_key: Option<String>,
    user_value: Option<String>,
    property: Option<String>,
    value: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    bucket: Option<i64>,
    group_by: Option<String>,
    format: Option<String>,
}

/// The filters of `/api/events`, its trend and its export, as the
/// OpenAPI description lists them ([`EventsParams`] reads them).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FilterDoc {
    /// Event name.
    event: Option<String>,
    /// Application name.
    app: Option<String>,
    /// From this time (inclusive): ms since the epoch or RFC 3339.
    since: Option<String>,
    /// Up to this time (exclusive): ms since the epoch or RFC 3339.
    until: Option<String>,
    /// Client IP.
    ip: Option<String>,
    /// User identifier key.
    user_key: Option<String>,
    /// User identifier value (needs `user_key`).
    user_value: Option<String>,
    /// Property name.
    property: Option<String>,
    /// Property value (needs `property`).
    value: Option<String>,
}

/// The paging parameters of `/api/events`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageDoc {
    /// Events per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The parameters of `/api/events/trend` besides the filters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TrendDoc {
    /// Bucket width in seconds (default 60).
    #[param(minimum = 1, maximum = 31_622_400)]
    bucket: Option<i64>,
    /// `ip`, `user` or `property:NAME`.
    group_by: Option<String>,
}

/// The format of `/api/events/export`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FormatDoc {
    /// `ndjson` (default, also when empty) or `csv`.
    #[param(pattern = "^(ndjson|csv)?$")]
    format: Option<String>,
}

fn time_param(text: Option<&str>, name: &str) -> Result<Option<i64>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            parse_filter_time(t).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name}: want ms since the epoch or RFC 3339, years 1970 to 9999"
                ))
            })
        })
        .transpose()
}

/// The filter of `p`, validated.
///
/// # Errors
/// 400 for a bad time, or a value without its key.
pub fn filter_of(p: &EventsParams) -> Result<EventFilter, ApiError> {
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let f = EventFilter {
        app: nonempty(&p.app),
        event: nonempty(&p.event),
        since: time_param(p.since.as_deref(), "since")?,
        until: time_param(p.until.as_deref(), "until")?,
        ip: nonempty(&p.ip),
        user_key: nonempty(&p.user_key),
        user_value: p.user_value.clone(),
        property: nonempty(&p.property),
        value: p.value.clone(),
    };
    if f.user_value.is_some() && f.user_key.is_none() {
        return Err(ApiError::bad_request("user_value needs user_key"));
    }
    if f.value.is_some() && f.property.is_none() {
        return Err(ApiError::bad_request("value needs property"));
    }
    Ok(f)
}

/// Events matching the filters, newest first, one page.
#[utoipa::path(get, path = "/api/events", tag = "events",
    params(FilterDoc, PageDoc),
    responses(
        (status = 200, description = "a page of events", body = EventPage),
        (status = 400, description = "a bad parameter", body = ErrorBody),
    ))]
pub(crate) async fn events(
    State(state): State<AppState>,
    q: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let q = list_query(&query(q)?)?;
    let page = state
        .store
        .list_events(&q.filter, q.limit, q.cursor)
        .await?;
    Ok(Json(page))
}

/// An event list query, validated.
#[derive(Debug)]
pub struct ListQuery {
    /// The filter.
    pub filter: EventFilter,
    /// Events per page, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// Where the page starts: the `(time, id)` after which events are listed.
    pub cursor: Option<(i64, i64)>,
}

/// The filter, page size and cursor of an event list query, validated.
///
/// # Errors
/// 400 for trend-only parameters, a bad filter, limit or cursor.
pub fn list_query(p: &EventsParams) -> Result<ListQuery, ApiError> {
    if p.bucket.is_some() || p.group_by.is_some() {
        return Err(ApiError::bad_request(
            "bucket and group_by belong to /api/events/trend",
        ));
    }
    no_format(p)?;
    let filter = filter_of(p)?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let cursor = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(parse_cursor(c).ok_or_else(|| ApiError::bad_request("invalid cursor"))?),
        None => None,
    };
    Ok(ListQuery {
        filter,
        limit,
        cursor,
    })
}

/// Occurrences of the matching events per time bucket, optionally per
/// IP, user or property value (the 20 largest).
#[utoipa::path(get, path = "/api/events/trend", tag = "events",
    params(FilterDoc, TrendDoc),
    responses(
        (status = 200, description = "the trend", body = TrendView),
        (status = 400, description = "a bad parameter", body = ErrorBody),
    ))]
pub(crate) async fn trend(
    State(state): State<AppState>,
    q: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Json<TrendView>, ApiError> {
    let query = trend_query(&query(q)?, now_ms())?;
    Ok(Json(state.store.event_trend(&query).await?))
}

/// The trend query of `p` (its window ending at `now` by default),
/// validated.
///
/// # Errors
/// 400 for list-only parameters, a bad filter, bucket, window or grouping.
pub fn trend_query(p: &EventsParams, now: i64) -> Result<TrendQuery, ApiError> {
    if p.limit.is_some() || p.cursor.is_some() {
        return Err(ApiError::bad_request(
            "limit and cursor belong to /api/events",
        ));
    }
    no_format(p)?;
    let mut filter = filter_of(p)?;
    let bucket_s = p.bucket.unwrap_or(60);
    if !(1..=MAX_BUCKET_S).contains(&bucket_s) {
        return Err(ApiError::bad_request(format!(
            "bucket must be between 1 and {MAX_BUCKET_S} seconds"
        )));
    }
    // Both bounds are within 0 ..= MAX_TIME_MS (filter_of checks them):
    // their difference cannot overflow.
    let until = filter.until.unwrap_or(now);
    let since = filter
        .since
        .unwrap_or_else(|| until.saturating_sub(24 * 3600 * 1000).max(0));
    if since >= until {
        return Err(ApiError::bad_request("since must be before until"));
    }
    if (until - since) / (bucket_s * 1000) > MAX_BUCKETS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BUCKETS} buckets: widen bucket or narrow the range"
        )));
    }
    filter.since = Some(since);
    filter.until = Some(until);
    let group_by = match p.group_by.as_deref().filter(|g| !g.is_empty()) {
        None => None,
        Some("ip") => Some(TrendGroup::Ip),
        Some("user") => Some(TrendGroup::User),
        Some(g) => match g.strip_prefix("property:") {
            Some(name) if !name.is_empty() => Some(TrendGroup::Property(name.to_owned())),
            _ => {
                return Err(ApiError::bad_request(
                    "group_by must be ip, user or property:NAME",
                ));
            }
        },
    };
    Ok(TrendQuery {
        filter,
        bucket_s,
        group_by,
        max_groups: 20,
    })
}

/// Every matching event, newest first, streamed as an attachment.
#[utoipa::path(get, path = "/api/events/export", tag = "events",
    params(FilterDoc, FormatDoc),
    responses(
        (status = 200, description = "the events: one JSON object per line, or CSV with a header row",
            content(
                (String = "application/x-ndjson"),
                (String = "text/csv; charset=utf-8"),
            )),
        (status = 400, description = "a bad parameter", body = ErrorBody),
    ))]
pub(crate) async fn export(
    State(state): State<AppState>,
    q: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (filter, format) = export_query(&query(q)?)?;
    Ok(export_response(&state.store, filter, format))
}

/// The filter and format of an export query, validated.
///
/// # Errors
/// 400 for paging or trend parameters, a bad filter or format.
pub fn export_query(p: &EventsParams) -> Result<(EventFilter, ExportFormat), ApiError> {
    if p.limit.is_some() || p.cursor.is_some() || p.bucket.is_some() || p.group_by.is_some() {
        return Err(ApiError::bad_request(
            "an export takes filters and format only (no limit, cursor, bucket, group_by)",
        ));
    }
    Ok((filter_of(p)?, export_format(p.format.as_deref())?))
}

/// Refuses `format` outside `/api/events/export`.
fn no_format(p: &EventsParams) -> Result<(), ApiError> {
    match p.format {
        Some(_) => Err(ApiError::bad_request(
            "format belongs to /api/events/export",
        )),
        None => Ok(()),
    }
}

/// The export format named `name` (`ndjson` by default).
///
/// # Errors
/// 400 for another name.
pub fn export_format(name: Option<&str>) -> Result<ExportFormat, ApiError> {
    match name.filter(|n| !n.is_empty()) {
        None => Ok(ExportFormat::Ndjson),
        Some(n) => ExportFormat::parse(n)
            .ok_or_else(|| ApiError::bad_request("format must be ndjson or csv")),
    }
}

/// A 200 answer streaming the events of `filter` as `format`
/// ([`crate::store::Store::export_events`]), as an attachment named
/// `sqreen-events-<ms since the epoch>.<ndjson|csv>`. A storage failure
/// after the first byte is logged and cuts the body short (the client
/// sees an incomplete chunked transfer, never a truncated file that looks
/// whole).
pub fn export_response(
    store: &crate::store::Store,
    filter: EventFilter,
    format: ExportFormat,
) -> Response {
    use futures_util::TryStreamExt;
    let stream = store.export_events(filter, format).inspect_err(|e| {
        tracing::error!(event = "export.failed", error = %e, "event export cut short");
    });
    let disposition = format!(
        "attachment; filename=\"sqreen-events-{}.{}\"",
        now_ms(),
        format.extension()
    );
    (
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

// ── playbooks ───────────────────────────────────────────────────────────

async fn playbook_body(state: &AppState, bytes: &[u8]) -> Result<Playbook, ApiError> {
    let playbook: Playbook = body(bytes)?;
    playbook.validate().map_err(ApiError::bad_request)?;
    playbook
        .check_destinations(state.notifier.policy())
        .await
        .map_err(ApiError::bad_request)?;
    Ok(playbook)
}

/// A playbook saved, with the signing secrets of its new webhook URLs.
#[derive(Serialize, ToSchema)]
pub struct PlaybookSaved {
    /// Its id.
    pub id: i64,
    /// Signing secret (`sqw_…`) per webhook URL it adds, shown once.
    pub webhook_secrets: BTreeMap<String, String>,
}

/// `GET /api/playbooks`.
#[derive(Serialize, ToSchema)]
pub struct PlaybookList {
    /// Every playbook with its `id` ([`crate::playbook::Playbook`]).
    #[schema(value_type = Vec<Object>)]
    pub playbooks: Vec<PlaybookRow>,
}

/// Creates a playbook ([`crate::playbook::Playbook`]: `name`, `trigger`,
/// `responses`, `notifications`, …).
#[utoipa::path(post, path = "/api/playbooks", tag = "playbooks",
    request_body(content = Object, description = "a playbook (see the playbook module's docs)",
        example = json!({"name": "brute force", "trigger": {"event": "login.failed", "threshold": 5, "period_s": 60, "actor": "ip"}, "responses": [{"type": "block", "duration_s": 3600}]})),
    responses(
        (status = 201, description = "created", body = PlaybookSaved),
        (status = 400, description = "an invalid playbook", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    ))]
pub(crate) async fn create_playbook(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<PlaybookSaved>), ApiError> {
    let playbook = playbook_body(&state, &bytes).await?;
    let (id, secrets) = state.store.create_playbook(&playbook).await?;
    tracing::info!(event = "playbook.created", id, name = %playbook.name,
        webhooks = playbook.notifications.len(), "playbook created");
    Ok((
        StatusCode::CREATED,
        Json(PlaybookSaved {
            id,
            webhook_secrets: secrets,
        }),
    ))
}

/// Lists the playbooks.
#[utoipa::path(get, path = "/api/playbooks", tag = "playbooks",
    responses((status = 200, description = "the playbooks", body = PlaybookList)))]
pub(crate) async fn list_playbooks(
    State(state): State<AppState>,
) -> Result<Json<PlaybookList>, ApiError> {
    Ok(Json(PlaybookList {
        playbooks: state.store.list_playbooks().await?,
    }))
}

/// One playbook with its `id`.
#[utoipa::path(get, path = "/api/playbooks/{id}", tag = "playbooks",
    params(("id" = i64, Path, description = "the playbook's id")),
    responses(
        (status = 200, description = "the playbook", body = Object),
        (status = 400, description = "not an id", body = ErrorBody),
        (status = 404, description = "no such playbook", body = ErrorBody),
    ))]
pub(crate) async fn get_playbook(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<PlaybookRow>, ApiError> {
    let id = path(id)?;
    let row = state
        .store
        .get_playbook(id)
        .await?
        .ok_or_else(|| ApiError::not_found("playbook"))?;
    Ok(Json(row))
}

/// Replaces a playbook; its counts start afresh, an unchanged webhook URL
/// keeps its secret.
#[utoipa::path(put, path = "/api/playbooks/{id}", tag = "playbooks",
    params(("id" = i64, Path, description = "the playbook's id")),
    request_body(content = Object, description = "a playbook (see the playbook module's docs)",
        example = json!({"name": "brute force", "trigger": {"event": "login.failed", "threshold": 5, "period_s": 60, "actor": "ip"}, "responses": [{"type": "block", "duration_s": 3600}]})),
    responses(
        (status = 200, description = "replaced", body = PlaybookSaved),
        (status = 400, description = "not an id, or an invalid playbook", body = ErrorBody),
        (status = 404, description = "no such playbook", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    ))]
pub(crate) async fn put_playbook(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    bytes: Bytes,
) -> Result<Json<PlaybookSaved>, ApiError> {
    let id = path(id)?;
    let playbook = playbook_body(&state, &bytes).await?;
    let secrets = state
        .store
        .update_playbook(id, &playbook)
        .await?
        .ok_or_else(|| ApiError::not_found("playbook"))?;
    tracing::info!(event = "playbook.updated", id, name = %playbook.name,
        new_webhooks = secrets.len(), "playbook replaced");
    Ok(Json(PlaybookSaved {
        id,
        webhook_secrets: secrets,
    }))
}

/// Deletes a playbook.
#[utoipa::path(delete, path = "/api/playbooks/{id}", tag = "playbooks",
    params(("id" = i64, Path, description = "the playbook's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "not an id", body = ErrorBody),
        (status = 404, description = "no such playbook", body = ErrorBody),
    ))]
pub(crate) async fn delete_playbook(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path(id)?;
    if state.store.delete_playbook(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("playbook"))
    }
}

// ── alerts and actions ──────────────────────────────────────────────────

/// `GET /api/alerts`'s parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LimitParams {
    /// Most alerts (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /api/alerts`.
#[derive(Serialize, ToSchema)]
pub struct AlertList {
    /// The alerts, newest first.
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<AlertView>,
}

/// `GET /api/actions`.
#[derive(Serialize, ToSchema)]
pub struct ActionList {
    /// The live actions (`action_id`, `action`, `parameters`,
    /// `expires_at`, `playbook_id`, …).
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<ActionView>,
}

/// This process's counters since it started.
#[utoipa::path(get, path = "/api/stats", tag = "server",
    responses((status = 200, description = "the counters", body = crate::stats::StatsView)))]
pub(crate) async fn stats(State(state): State<AppState>) -> Json<crate::stats::StatsView> {
    let (merges, failures) = state.store.merge_counts();
    let mut view = state.stats.view(merges, failures, state.notifier.counts());
    view.playbook_loads = state.playbooks.loads();
    Json(view)
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/alerts", tag = "responses",
    params(LimitParams),
    responses(
        (status = 200, description = "the alerts", body = AlertList),
        (status = 400, description = "a bad limit", body = ErrorBody),
    ))]
pub(crate) async fn alerts(
    State(state): State<AppState>,
    q: Result<Query<LimitParams>, QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    let limit = query(q)?.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(Json(AlertList {
        alerts: state.store.list_alerts(limit).await?,
    }))
}

/// `GET /api/actions`'s parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ActionParams {
    /// Only this application's actions.
    app: Option<String>,
}

/// The live actions.
#[utoipa::path(get, path = "/api/actions", tag = "responses",
    params(ActionParams),
    responses(
        (status = 200, description = "the live actions", body = ActionList),
        (status = 400, description = "a bad parameter", body = ErrorBody),
    ))]
pub(crate) async fn actions(
    State(state): State<AppState>,
    q: Result<Query<ActionParams>, QueryRejection>,
) -> Result<Json<ActionList>, ApiError> {
    let app = query(q)?.app.filter(|a| !a.is_empty());
    let mut actions = state.store.list_actions(None).await?;
    if let Some(app) = app {
        actions.retain(|a| a.app == app);
    }
    Ok(Json(ActionList { actions }))
}

/// Lifts a live action; agents reload on their next heartbeat.
#[utoipa::path(delete, path = "/api/actions/{id}", tag = "responses",
    params(("id" = String, Path, description = "the action's id")),
    responses(
        (status = 204, description = "lifted"),
        (status = 404, description = "no such live action", body = ErrorBody),
    ))]
pub(crate) async fn lift_action(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path(id)?;
    if id.len() > 64 {
        return Err(ApiError::not_found("action"));
    }
    if state.store.lift_action(&id).await? {
        tracing::info!(event = "action.lifted", action_id = %id, "action lifted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("action"))
    }
}
