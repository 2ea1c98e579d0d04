//! The page shell every dashboard page shares (head, stylesheet, navigation,
//! logout button), the error page, and small rendering helpers.
//!
//! Everything is rendered with `maud`, which escapes every interpolated
//! value: event names, properties and playbook names reach the browser as
//! text, never as markup. The only unescaped text is the constant
//! stylesheet below.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use crate::store::StoreError;

/// The dashboard's whole stylesheet, inline so nothing is fetched.
const CSS: &str = "
:root { color-scheme: light; --fg: #1d232a; --muted: #5b6570; --line: #d5dbe1; --accent: #1f5fbf; --bad: #a61b1b; --ok: #1b6e2d; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: var(--fg); background: #f6f8fa; }
header.top { display: flex; align-items: center; gap: 1.5rem; padding: .6rem 1.2rem; background: #fff; border-bottom: 1px solid var(--line); }
header.top .brand { font-weight: 700; }
nav ul { display: flex; gap: 1rem; list-style: none; margin: 0; padding: 0; }
nav a { color: var(--accent); text-decoration: none; padding: .2rem .1rem; }
nav a[aria-current=page] { color: var(--fg); font-weight: 600; border-bottom: 2px solid var(--accent); }
header.top form { margin-left: auto; }
main { padding: 1rem 1.2rem 3rem; max-width: 1400px; }
h1 { font-size: 1.4rem; margin: .3rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .6rem; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
caption { text-align: left; padding: .4rem 0; color: var(--muted); }
th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid var(--line); }
th { background: #eef1f4; font-weight: 600; }
td code, td pre { font-size: .85rem; white-space: pre-wrap; overflow-wrap: anywhere; }
td pre { margin: .2rem 0 0; max-width: 40rem; }
ul.kv { list-style: none; margin: 0; padding: 0; }
form.filters, form.create { display: flex; flex-wrap: wrap; gap: .6rem 1rem; align-items: flex-end; background: #fff; border: 1px solid var(--line); padding: .8rem; }
form.create fieldset { border: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: .6rem 1rem; }
label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); gap: .15rem; }
label.inline { flex-direction: row; align-items: center; gap: .3rem; }
input, select { font: inherit; padding: .25rem .4rem; border: 1px solid #aab4bf; border-radius: 3px; color: var(--fg); }
button { font: inherit; padding: .3rem .8rem; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 3px; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
.notice { padding: .5rem .8rem; border-radius: 3px; margin: 0 0 1rem; }
.notice.ok { background: #e3f4e7; color: var(--ok); }
.notice.error { background: #fbe4e4; color: var(--bad); }
.muted { color: var(--muted); }
.chart { background: #fff; border: 1px solid var(--line); padding: .5rem; margin: 1rem 0; }
.chart svg { width: 100%; height: auto; max-height: 240px; display: block; }
.chart .bar { fill: var(--accent); }
.chart .grid { stroke: #e6eaee; stroke-width: 1; }
.s0 { --c: #1f5fbf; } .s1 { --c: #d9822b; } .s2 { --c: #2e9e5b; } .s3 { --c: #b83280; }
.s4 { --c: #7b61c9; } .s5 { --c: #b8950f; } .s6 { --c: #2b9fb8; } .s7 { --c: #8c564b; } .so { --c: #9aa5b1; }
.chart g.series .bar { fill: var(--c); }
ul.legend { display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; list-style: none; margin: .4rem 0 0; padding: 0; font-size: .85rem; }
ul.legend li { display: flex; align-items: center; gap: .35rem; overflow-wrap: anywhere; max-width: 22rem; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; background: var(--c); flex: none; }
.explorer { display: grid; grid-template-columns: minmax(0, 1fr) 16rem; gap: 1.2rem; align-items: start; }
.facets { background: #fff; border: 1px solid var(--line); padding: .4rem .8rem .8rem; font-size: .85rem; }
.facets h3 { font-size: .9rem; margin: .8rem 0 .3rem; }
.facets ol { list-style: none; margin: 0; padding: 0; }
.facets li { display: flex; justify-content: space-between; gap: .5rem; padding: .1rem 0; }
.facets li a { overflow-wrap: anywhere; }
.facets .n { color: var(--muted); font-variant-numeric: tabular-nums; }
.presets { display: flex; gap: .8rem; align-items: center; flex-wrap: wrap; margin: .6rem 0; font-size: .9rem; }
.presets a[aria-current] { font-weight: 600; color: var(--fg); }
.counts { color: var(--muted); font-size: .85rem; margin: .3rem 0; }
a.pivot { color: inherit; text-decoration: underline dotted var(--accent); text-underline-offset: 2px; }
a.pivot:hover { color: var(--accent); }
table.kv th { width: 12rem; font-weight: 600; background: #f6f8fa; }
table.kv td, table.kv th { font-size: .9rem; overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(24rem, 1fr)); gap: 1rem; }
@media (max-width: 900px) { .explorer { grid-template-columns: 1fr; } }
.chart .axis { stroke: var(--muted); stroke-width: 1; }
.chart text { font-size: 11px; fill: var(--muted); }
.pager { margin: .8rem 0; }
.login { max-width: 26rem; margin: 4rem auto; background: #fff; border: 1px solid var(--line); padding: 1.5rem; }
.login form { display: flex; flex-direction: column; gap: .8rem; }
";

/// The dashboard's sections, for the navigation bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Event Explorer.
    Events,
    /// Playbooks.
    Playbooks,
    /// Security responses (live actions).
    Actions,
    /// Alerts.
    Alerts,
    /// Applications and their tokens.
    Apps,
}

const SECTIONS: [(Section, &str, &str); 5] = [
    (Section::Events, "/events", "Event Explorer"),
    (Section::Playbooks, "/playbooks", "Playbooks"),
    (Section::Actions, "/actions", "Security responses"),
    (Section::Alerts, "/alerts", "Alerts"),
    (Section::Apps, "/apps", "Applications"),
];

/// A whole page: `title`, the navigation (with `current` marked), a logout
/// button carrying `csrf`, and `body`.
pub fn page(title: &str, current: Section, csrf: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sqreen" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header.top {
                    span.brand { "sqreen" }
                    nav aria-label="Dashboard" {
                        ul {
                            @for (section, href, label) in SECTIONS {
                                li {
                                    a href=(href) aria-current=[(section == current).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                    form method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        button.secondary type="submit" id="logout" { "Log out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without navigation (login, errors before login).
pub fn bare_page(title: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sqreen" }
                style { (PreEscaped(CSS)) }
            }
            body {
                main.login {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// An HTML answer with `status`.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A flash notice chosen by a fixed code from the query string (never the
/// query's text itself).
pub fn notice(ok: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = ok { p.notice.ok role="status" { (text) } }
        @if let Some(text) = error { p.notice.error role="alert" { (text) } }
    }
}

/// A failed dashboard request: a status and a message for people.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 403 with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// 404 for a missing `what`.
    pub fn not_found(what: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("No such {what}."),
        }
    }

    /// The id in a page's path (`/events/{id}`), or a 400 saying that
    /// `what` ("An event") id is a number.
    pub fn numeric_id(text: &str, what: &str) -> Result<i64, Self> {
        text.parse()
            .map_err(|_| Self::bad_request(format!("{what} id is a number.")))
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        tracing::error!(event = "dashboard.store_error", error = %e, "storage failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "The storage failed; see the server log.".into(),
        }
    }
}

impl From<crate::secret::RandomError> for PageError {
    fn from(e: crate::secret::RandomError) -> Self {
        tracing::error!(event = "dashboard.random_error", error = %e, "no random bytes");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "The server could not draw random bytes.".into(),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let body = html! {
            p.notice.error role="alert" { (self.message) }
            p { a href="/events" { "Back to the dashboard" } }
        };
        html_response(self.status, bare_page(&title, &body))
    }
}

/// A timestamp (ms) as people read it: `2026-11-24 19:00:00 UTC`.
pub fn when(ms: i64) -> String {
    let text = crate::time::format_ms(ms);
    // `2026-11-24T19:00:00.123Z` → `2026-11-24 19:00:00 UTC`.
    match (text.get(..10), text.get(11..19)) {
        (Some(day), Some(clock)) => format!("{day} {clock} UTC"),
        _ => text,
    }
}

/// A JSON value's text: strings as they are, other values as JSON.
pub fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON object as a `key: value` list (anything else as JSON text).
pub fn key_values(value: &Value) -> Markup {
    html! {
        @match value {
            Value::Object(map) if map.is_empty() => span.muted { "—" },
            Value::Object(map) => ul.kv {
                @for (k, v) in map {
                    li { code { (k) } ": " code { (json_text(v)) } }
                }
            },
            Value::Null => span.muted { "—" },
            other => code { (other.to_string()) },
        }
    }
}

/// Pretty JSON, for `<pre>` blocks.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
