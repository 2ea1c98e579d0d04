//! `GET /api/openapi.json`: an OpenAPI 3.1 description listing every admin
//! route, served without the admin key.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// Every route of the admin API (and /metrics), as `METHOD path`.
const ROUTES: [&str; 17] = [
    "POST /api/apps",
    "GET /api/apps",
    "DELETE /api/apps/{id}",
    "POST /api/apps/{id}/rotate-token",
    "GET /api/events",
    "GET /api/events/trend",
    "GET /api/events/export",
    "POST /api/playbooks",
    "GET /api/playbooks",
    "GET /api/playbooks/{id}",
    "PUT /api/playbooks/{id}",
    "DELETE /api/playbooks/{id}",
    "GET /api/alerts",
    "GET /api/actions",
    "DELETE /api/actions/{id}",
    "GET /api/stats",
    "GET /metrics",
];

/// The description parses as OpenAPI, lists exactly the admin routes,
/// declares the bearer schemes and requires the admin key by default.
#[test]
fn openapi_describes_every_admin_route() {
    let server = TestServer::start();
    let r = client()
        .get(format!("{}/api/openapi.json", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().unwrap();
    // utoipa's own model reads it back.
    let doc: utoipa::openapi::OpenApi = serde_json::from_str(&text).unwrap();
    let raw: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(raw["openapi"], "3.1.0");

    let mut listed = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ] {
            if let Some(op) = op {
                listed.insert(format!("{method} {path}"));
                assert!(
                    op.responses.responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} documents no success"
                );
            }
        }
    }
    let expected: BTreeSet<String> = ROUTES.iter().map(|r| (*r).to_owned()).collect();
    assert_eq!(listed, expected);

    let schemes = &raw["components"]["securitySchemes"];
    assert_eq!(schemes["admin_key"]["type"], "http");
    assert_eq!(schemes["admin_key"]["scheme"], "bearer");
    assert_eq!(schemes["metrics_token"]["scheme"], "bearer");
    assert_eq!(raw["security"][0]["admin_key"], Value::Array(vec![]));
    // The shapes the admin API answers are declared.
    for schema in [
        "EventPage",
        "EventView",
        "TrendView",
        "StatsView",
        "ErrorBody",
        "AppList",
    ] {
        assert!(
            raw["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
}

/// Each listed route answers as the description says it is protected:
/// 401 without the admin key (the description itself needs none).
#[test]
fn listed_routes_want_the_admin_key() {
    let server = TestServer::start();
    let http = client();
    for route in ROUTES {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", "1");
        let r = http
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{route}");
    }
}
