//! What both axum benches serve and send: a browser's `GET /`, and the
//! hello-world route, bare or tracking one 3-property event.

pub mod peers;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use sqreen_axum::Sqreen;

/// `GET /` as a browser sends it, as axum's server hands it over.
pub fn request() -> Request<Body> {
    let mut request = Request::get("/")
        .header(header::HOST, "shop.example.com")
        .header(
            header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
        .body(Body::empty())
        .expect("a valid request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([81, 2, 69, 160], 52114))));
    request
}

/// `GET /` → `ok`, nothing tracked.
pub async fn hello() -> &'static str {
    "ok"
}

/// `GET /` → `ok`, tracking `page.viewed` with 3 properties.
pub async fn hello_tracked(sq: Sqreen) -> &'static str {
    sq.track_event("page.viewed").with_properties([
        ("plan", "pro"),
        ("region", "eu"),
        ("seats", "5"),
    ]);
    "ok"
}
