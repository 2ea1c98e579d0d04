//! [`param`]: `warp::path::param()` that also records the segment as a
//! named route parameter.
//!
//! warp never tells a filter which route matched nor what its parameters
//! are called, so the wrapper cannot report route parameters on its own
//! (the other adapters send them as `parameters.params`). Routes that want
//! them sent name them with this filter, a drop-in for
//! `warp::path::param()`.

use std::future::ready;
use std::str::FromStr;

use warp::Filter;
use warp::reject::{self, Rejection};

use crate::context;

/// Extracts one path segment as a `T`, like `warp::path::param::<T>()`, and
/// records it as the route parameter `name` of the request (sent with its
/// tracked events, scrubbed like every parameter).
///
/// ```
/// use warp::Filter;
///
/// // /users/42/orders → parameters.params = {"user_id": "42"}
/// let orders = warp::path("users")
///     .and(sqreen_warp::param::<u32>("user_id"))
///     .and(warp::path("orders"))
///     .and(sqreen_warp::sqreen())
///     .map(|user_id: u32, sq: sqreen_warp::Sqreen| {
///         sq.track_event("orders.listed");
///         format!("orders of {user_id}")
///     });
/// ```
///
/// Like warp's, it rejects with "not found" when the segment does not
/// parse as a `T`. When warp tries several routes, a parameter matched by
/// a route that then rejects stays recorded, unless the route that answers
/// records one of the same name.
pub fn param<T>(name: &'static str) -> impl Filter<Extract = (T,), Error = Rejection> + Copy
where
    T: FromStr + Send + 'static,
{
    warp::path::param::<String>().and_then(move |segment: String| {
        ready(match segment.parse::<T>() {
            Ok(value) => {
                context::add_param(name, &segment);
                Ok(value)
            }
            Err(_) => Err(reject::not_found()),
        })
    })
}
