//! The one error type of HTTP handlers: a status and a message, answered
//! as `{"status": false, "error": "…"}` (the agent protocol's shape, which
//! the admin API shares). Storage failures are logged and answered 500
//! without their details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("no such {what}"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self {
                status: StatusCode::CONFLICT,
                message: format!("{what} already exists"),
            },
            other => {
                tracing::error!(event = "store.error", error = %other, "storage failed");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "storage error".into(),
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(json!({"status": false, "error": &self.message})),
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
        response
    }
}
