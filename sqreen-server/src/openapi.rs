//! `GET /api/openapi.json`: the OpenAPI 3.1 description of the admin API
//! (and of `/metrics`), derived with `utoipa` from the handlers' attributes
//! and the types they read and answer.
//!
//! It is served without the admin key: it describes routes and shapes, no
//! data, and tools (code generators, `scripts/schemathesis.sh`) fetch it
//! before they are given credentials. Every operation it lists wants
//! `Authorization: Bearer <admin key>` (the `admin_key` security scheme);
//! `/metrics` also takes the metrics token (`metrics_token`).

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::admin;

/// The description, assembled at compile time by `utoipa`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sqreen-server admin API",
        description = "Applications, events (list, trend, export), playbooks, alerts, actions \
                       and counters of a self-hosted sqreen backend. Every operation wants \
                       `Authorization: Bearer <admin key>`; errors answer \
                       `{\"status\": false, \"error\": \"…\"}`."
    ),
    paths(
        admin::create_app,
        admin::list_apps,
        admin::delete_app,
        admin::rotate_token,
        admin::events,
        admin::trend,
        admin::export,
        admin::create_playbook,
        admin::list_playbooks,
        admin::get_playbook,
        admin::put_playbook,
        admin::delete_playbook,
        admin::alerts,
        admin::actions,
        admin::lift_action,
        admin::stats,
        crate::metrics::scrape,
    ),
    modifiers(&Credentials),
    security(("admin_key" = [])),
    tags(
        (name = "apps", description = "Applications and their agent tokens"),
        (name = "events", description = "The event explorer"),
        (name = "playbooks", description = "Playbooks: thresholds, responses, webhooks"),
        (name = "responses", description = "Alerts and live actions"),
        (name = "server", description = "This process's figures"),
    )
)]
pub struct ApiDoc;

/// Declares the two bearer schemes, and the answers of the credential check
/// on every operation: 401 (no or wrong key) and 429 (too many wrong keys
/// from one address, [`crate::key_limiter`]).
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                for (status, description) in [
                    ("401", "no admin key, or a wrong one"),
                    ("429", "too many wrong keys from this address lately"),
                ] {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            "admin_key",
            bearer("The admin key (`--admin-key`, `SQREEN_SERVER_ADMIN_KEY`)"),
        );
        components.add_security_scheme(
            "metrics_token",
            bearer("The metrics token (`--metrics-token`), for `/metrics` only"),
        );
    }
}

/// An error answer: `description`, an [`crate::admin::ErrorBody`].
fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// The description as JSON, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi().to_json().unwrap_or_else(|e| {
            tracing::error!(event = "openapi.failed", error = %e, "OpenAPI description failed");
            "{}".to_owned()
        })
    })
}

/// `GET /api/openapi.json`.
pub async fn serve() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json(),
    )
        .into_response()
}

/// The route, open to all.
pub fn routes() -> axum::Router<crate::AppState> {
    axum::Router::new().route("/api/openapi.json", axum::routing::get(serve))
}
