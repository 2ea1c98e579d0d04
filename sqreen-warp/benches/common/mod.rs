//! The routes both warp benches serve: a hello-world route, bare or
//! tracking one 3-property event through the `Sqreen` handle.

use sqreen_warp::{Sqreen, sqreen};
use warp::{Filter, Rejection};

/// `GET /` → `ok`, nothing tracked.
pub fn hello() -> impl Filter<Extract = (&'static str,), Error = Rejection> + Clone {
    warp::get().and(warp::path::end()).map(|| "ok")
}

/// `GET /` → `ok`, tracking `page.viewed` with 3 properties.
pub fn hello_tracked() -> impl Filter<Extract = (&'static str,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::path::end())
        .and(sqreen())
        .map(|sq: Sqreen| {
            sq.track_event("page.viewed").with_properties([
                ("plan", "pro"),
                ("region", "eu"),
                ("seats", "5"),
            ]);
            "ok"
        })
}
