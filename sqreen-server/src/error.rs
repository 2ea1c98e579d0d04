//! The one error type of HTTP handlers: a status and a message, answered
//! as `{"status": false, "error": "…"}` (the agent protocol's shape, which
//! the admin API shares). Storage failures are logged and answered 500
//! without their details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sqreen_protocol::answers::ErrorAnswer;

use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
    /// Seconds to wait before trying again (`Retry-After`), for 429.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// 429: too many wrong admin keys; try again in `retry_after_s`.
    pub fn too_many_guesses(retry_after_s: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("too many wrong admin keys: try again in {retry_after_s} s"),
            retry_after_s: Some(retry_after_s),
        }
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("no such {what}"),
            retry_after_s: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self {
                status: StatusCode::CONFLICT,
                message: format!("{what} already exists"),
                retry_after_s: None,
            },
            // Its agent's session went with it.
            StoreError::AppDeleted => Self::unauthorized("unknown or expired session"),
            other => {
                tracing::error!(event = "store.error", error = %other, "storage failed");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "storage error".into(),
                    retry_after_s: None,
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorAnswer::new(self.message.as_str())),
        )
            .into_response();
        response
            .extensions_mut()
            .insert(crate::stats::ErrorReason(self.message));
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
