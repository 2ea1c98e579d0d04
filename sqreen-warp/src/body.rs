//! Body filters that work whether or not the wrapper buffered the body:
//! drop-in replacements for `warp::body::{bytes, json, form}`.
//!
//! A warp filter can read the request body only once, and nothing can put it
//! back. So when body capture is on
//! ([`SqreenWrapper::capture_bodies`](crate::SqreenWrapper::capture_bodies))
//! and the wrapper buffered a capturable body (a form or JSON body with a
//! declared length within `body_capture_limit`), routes must read it through
//! these filters: they hand over the bytes the wrapper kept. Otherwise they
//! are exactly `warp::body::bytes()`, `json()` and `form()`.
//!
//! Decoding follows warp: `json` wants `application/json`, `form` wants
//! `application/x-www-form-urlencoded`. Decoding a buffered body fails with
//! an [`InvalidBody`] rejection (400, or 415 for the wrong content type)
//! that the wrapper answers like warp answers its own body rejections; a
//! `recover` of yours inside the wrapper can `find::<InvalidBody>()`.

use std::future::ready;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::http::StatusCode;
use warp::reject::Rejection;
use warp::reply::{Reply, Response};
use warp::{Filter, reject};

use crate::context::{self, StashedBody};

/// Why a buffered body could not be handed over as the route asked.
#[derive(Debug)]
pub struct InvalidBody {
    status: StatusCode,
    message: String,
}

impl InvalidBody {
    fn unsupported_media_type() -> Self {
        Self {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "The request's content-type is not supported".to_owned(),
        }
    }

    fn deserialize(cause: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("Request body deserialize error: {cause}"),
        }
    }

    /// The status warp would answer: 400 for a body that does not decode,
    /// 415 for the wrong content type.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for InvalidBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidBody {}

impl reject::Reject for InvalidBody {}

impl Reply for InvalidBody {
    fn into_response(self) -> Response {
        warp::reply::with_status(self.message, self.status).into_response()
    }
}

/// The body the wrapper buffered; rejects with "not found" (so an `or`
/// falls through to warp's own body filter) when there is none.
fn stashed() -> impl Filter<Extract = (StashedBody,), Error = Rejection> + Copy {
    warp::any().and_then(|| ready(context::current_body().ok_or_else(reject::not_found)))
}

/// The request body as [`Bytes`], like `warp::body::bytes()`.
pub fn bytes() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Copy {
    stashed()
        .map(|body: StashedBody| body.bytes)
        .or(warp::body::bytes())
        .unify()
}

/// The request body decoded from JSON, like `warp::body::json()`.
///
/// ```
/// use warp::Filter;
/// #[derive(serde::Deserialize)]
/// struct Order { amount: u32 }
/// let route = warp::post()
///     .and(sqreen_warp::body::json())
///     .map(|order: Order| format!("{}", order.amount));
/// ```
pub fn json<T: DeserializeOwned + Send>() -> impl Filter<Extract = (T,), Error = Rejection> + Copy {
    stashed()
        .map(|body: StashedBody| {
            decode(&body, "application/json", |b| {
                serde_json::from_slice(b).map_err(InvalidBody::deserialize)
            })
        })
        .or(warp::body::json().map(Ok))
        .unify()
        .and_then(|decoded: Result<T, Rejection>| ready(decoded))
}

/// The request body decoded from `application/x-www-form-urlencoded`, like
/// `warp::body::form()`.
pub fn form<T: DeserializeOwned + Send>() -> impl Filter<Extract = (T,), Error = Rejection> + Copy {
    stashed()
        .map(|body: StashedBody| {
            decode(&body, "application/x-www-form-urlencoded", |b| {
                serde_urlencoded::from_bytes(b).map_err(InvalidBody::deserialize)
            })
        })
        .or(warp::body::form().map(Ok))
        .unify()
        .and_then(|decoded: Result<T, Rejection>| ready(decoded))
}

fn decode<T>(
    body: &StashedBody,
    mime: &str,
    f: impl FnOnce(&[u8]) -> Result<T, InvalidBody>,
) -> Result<T, Rejection> {
    if &*body.mime != mime {
        return Err(reject::custom(InvalidBody::unsupported_media_type()));
    }
    f(&body.bytes).map_err(reject::custom)
}
