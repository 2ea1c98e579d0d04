//! `GET /events/export`: the Event Explorer's events as a file, behind the
//! dashboard session.
//!
//! It takes the explorer's own query string (`event`, `app`, `ip`,
//! `user_key`, `user_value`, `property`, `value`, `range`, `since`,
//! `until`; see [`super::events`]) plus `format=ndjson|csv` (ndjson by
//! default), so that the explorer links to
//! `/events/export?<its filters>&format=csv` and the file holds exactly the
//! events of its window and filters (every page of them, not only the one
//! shown; `cursor` is ignored). The body is streamed by the same code as
//! `GET /api/events/export` ([`crate::admin::export_response`]).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::events::{ExplorerParams, filter_of};
use super::layout::PageError;
use super::session::AdminSession;
use crate::AppState;
use crate::admin::{export_format, export_response};
use crate::time::now_ms;

/// The format parameter, read beside the explorer's filters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FormatParam {
    /// `ndjson` or `csv`.
    format: String,
}

/// `GET /events/export`.
///
/// # Errors
/// 400 (as a page) for a bad filter, window or format.
pub async fn export(
    _session: AdminSession,
    State(state): State<AppState>,
    filters: Result<Query<ExplorerParams>, QueryRejection>,
    format: Result<Query<FormatParam>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(params) = filters.map_err(|e| PageError::bad_request(e.body_text()))?;
    let Query(format) = format.map_err(|e| PageError::bad_request(e.body_text()))?;
    let filter = filter_of(&params, now_ms()).map_err(PageError::bad_request)?;
    let format = export_format(Some(&format.format))
        .map_err(|_| PageError::bad_request("format must be ndjson or csv"))?;
    Ok(export_response(&state.store, filter, format))
}
