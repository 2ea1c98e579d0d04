//! The dashboard against a real server on 127.0.0.1: plain HTTP checks of
//! login, cookies, CSRF and escaping, and a headless-Chromium scenario (log
//! in, filter events, see the chart, create and toggle a playbook, lift an
//! action, log out) driven through chromedriver.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver`
//! (`.ci/run` installs them); without them it fails and says so, unless
//! `SQREEN_SKIP_BROWSER=1` is set. `SQREEN_CHROMEDRIVER` and
//! `SQREEN_CHROMIUM` override the binaries' paths, and
//! `SQREEN_DASHBOARD_SCREENSHOTS=DIR` saves a screenshot of each page there.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod common;

use std::time::Duration;

use common::browser::*;
use common::*;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

const XSS_EVENT: &str = "<script>alert(1)</script>";
const XSS_PROPERTY: &str = "<img src=x onerror=alert(2)><b>bold</b>";

/// A client that shows redirects instead of following them, and keeps no cookies.
fn http() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn location(r: &Response) -> String {
    r.headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Logs in with `key`; returns the answer.
fn post_login(server: &TestServer, key: &str) -> Response {
    http()
        .post(format!("{}/login", server.url))
        .form(&[("key", key)])
        .send()
        .unwrap()
}

/// Logs in with the admin key; returns the `name=value` of the session cookie.
fn session_cookie(server: &TestServer) -> String {
    let r = post_login(server, ADMIN_KEY);
    assert_eq!(r.status(), 303);
    let set = r.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

fn get_page(server: &TestServer, cookie: &str, path: &str) -> (u16, String) {
    let r = http()
        .get(format!("{}{path}", server.url))
        .header(COOKIE, cookie)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form with a CSRF token") + marker.len();
    page[start..start + 64].to_owned()
}

/// The creation form of a 3-per-minute IP block playbook, with `csrf` when given.
fn playbook_fields(csrf: Option<&str>) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = [
        ("name", "csrf test"),
        ("event", "e"),
        ("threshold", "3"),
        ("period_s", "60"),
        ("actor", "ip"),
        ("response", "block"),
        ("duration_s", "60"),
        ("cond_op", "eq"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    if let Some(csrf) = csrf {
        fields.push(("csrf".into(), csrf.to_owned()));
    }
    fields
}

fn post_form<T: serde::Serialize + ?Sized>(
    server: &TestServer,
    cookie: &str,
    path: &str,
    form: &T,
) -> Response {
    http()
        .post(format!("{}{path}", server.url))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .unwrap()
}

/// Seeds app `shop` with tracked events over the agent protocol; returns the agent.
fn seed(server: &TestServer) -> FakeAgent {
    let admin = server.admin();
    let token = admin.create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let mut records = Vec::new();
    for i in 0..3 {
        records.push(record(
            &format!("p{i}"),
            "81.2.69.160",
            "purchase",
            json!({"amount": 10 + i, "currency": "EUR"}),
            Some(json!({"username": "alice"})),
        ));
    }
    for i in 0..2 {
        records.push(record(
            &format!("s{i}"),
            "81.2.69.161",
            "search",
            json!({"q": "shoes"}),
            None,
        ));
    }
    records.push(record(
        "x0",
        "81.2.69.162",
        XSS_EVENT,
        json!({"comment": XSS_PROPERTY}),
        Some(json!({"<i>user</i>": "<u>mallory</u>"})),
    ));
    let r = agent.batch(&records);
    assert_eq!(r.status(), 200);
    eventually("events stored", Duration::from_secs(10), || {
        let events = admin.get_json("/api/events")["events"].clone();
        (events.as_array().unwrap().len() == 6).then_some(())
    });
    agent
}

/// Pages redirect to the login form without a session; form posts are 403.
#[test]
fn pages_require_login() {
    let server = TestServer::start();
    for path in [
        "/",
        "/events",
        "/playbooks",
        "/actions",
        "/alerts",
        "/apps",
        "/apps/1/delete",
    ] {
        let r = http().get(format!("{}{path}", server.url)).send().unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(location(&r), "/login", "{path}");
    }
    for path in [
        "/playbooks",
        "/playbooks/1/toggle",
        "/actions/x/lift",
        "/apps/1/rotate-token",
        "/apps/1/delete",
        "/logout",
    ] {
        let r = http()
            .post(format!("{}{path}", server.url))
            .form(&[("csrf", "x")])
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    // A forged or foreign cookie is no session.
    let (status, _) = get_page(&server, "sqreen_session=1.2.3", "/events");
    assert_eq!(status, 303);
    let r = http().get(format!("{}/login", server.url)).send().unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().unwrap();
    assert!(page.contains("type=\"password\""));
}

/// A wrong admin key is refused with 401 and no cookie.
#[test]
fn wrong_key_is_refused() {
    let server = TestServer::start();
    for key in ["wrong", "", ADMIN_KEY.to_uppercase().as_str()] {
        let r = post_login(&server, key);
        assert_eq!(r.status(), 401, "{key:?}");
        assert!(r.headers().get(SET_COOKIE).is_none());
        assert!(r.text().unwrap().contains("Wrong admin key"));
    }
}

/// The session cookie is HttpOnly, SameSite=Strict, Path=/; it opens the pages,
/// which carry a script-free Content-Security-Policy.
#[test]
fn login_sets_a_strict_http_only_cookie() {
    let server = TestServer::start();
    let r = post_login(&server, ADMIN_KEY);
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/events");
    let set = r.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.starts_with("sqreen_session="), "{set}");
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(attrs.contains(&"HttpOnly"), "{set}");
    assert!(attrs.contains(&"SameSite=Strict"), "{set}");
    assert!(attrs.contains(&"Path=/"), "{set}");
    assert!(!attrs.contains(&"Secure"), "plain HTTP: {set}");
    let cookie = set.split(';').next().unwrap();
    let r = http()
        .get(format!("{}/events", server.url))
        .header(COOKIE, cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    // Behind an HTTPS proxy the cookie is Secure too.
    let r = http()
        .post(format!("{}/login", server.url))
        .header("X-Forwarded-Proto", "https")
        .form(&[("key", ADMIN_KEY)])
        .send()
        .unwrap();
    let set = r.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.split(';').any(|a| a.trim() == "Secure"), "{set}");
    // Logged in, `/` and `/login` lead to the explorer.
    for path in ["/", "/login"] {
        let r = http()
            .get(format!("{}{path}", server.url))
            .header(COOKIE, cookie)
            .send()
            .unwrap();
        assert_eq!(location(&r), "/events", "{path}");
    }
}

fn forms_need_the_session_csrf_token(db: &str) {
    let server = TestServer::start_db(db);
    let cookie = session_cookie(&server);
    let other = session_cookie(&server);
    let (_, page) = get_page(&server, &cookie, "/playbooks");
    let csrf = csrf_of(&page);
    let (_, other_page) = get_page(&server, &other, "/playbooks");
    let other_csrf = csrf_of(&other_page);
    assert_ne!(csrf, other_csrf);

    for token in ["", "0000", other_csrf.as_str()] {
        let r = post_form(
            &server,
            &cookie,
            "/playbooks",
            &playbook_fields(Some(token)),
        );
        assert_eq!(r.status(), 403, "{token:?}");
    }
    assert_eq!(
        post_form(&server, &cookie, "/playbooks", &playbook_fields(None)).status(),
        403
    );
    for path in [
        "/playbooks/1/toggle",
        "/actions/x/lift",
        "/apps/1/rotate-token",
        "/apps/1/delete",
        "/logout",
    ] {
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            post_form(&server, &cookie, path, &none).status(),
            403,
            "{path}"
        );
        assert_eq!(
            post_form(&server, &cookie, path, &[("csrf", &other_csrf)]).status(),
            403,
            "{path}"
        );
    }
    assert!(
        server.admin().get_json("/api/playbooks")["playbooks"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // With the right token it works.
    let r = post_form(
        &server,
        &cookie,
        "/playbooks",
        &playbook_fields(Some(&csrf)),
    );
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/playbooks?done=created");
    let playbooks = server.admin().get_json("/api/playbooks")["playbooks"].clone();
    assert_eq!(playbooks[0]["name"], "csrf test");
    assert_eq!(playbooks[0]["trigger"]["threshold"], 3);
    // An invalid definition is shown back with its reason, not stored.
    let mut bad = playbook_fields(Some(&csrf));
    bad[4].1 = "nobody".into();
    let r = post_form(&server, &cookie, "/playbooks", &bad);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("the actor is ip or user"));
}

/// The `sqw_…` secrets shown in a page.
fn secrets_in(page: &str) -> Vec<String> {
    page.match_indices("sqw_")
        .map(|(i, _)| page[i..i + 68].to_owned())
        .collect()
}

fn webhooks_from_the_dashboard(db: &str) {
    // Without the flag: a private destination is refused with its reason.
    let strict = TestServer::start_db(db);
    let cookie = session_cookie(&strict);
    let (_, page) = get_page(&strict, &cookie, "/playbooks");
    let mut fields = playbook_fields(Some(&csrf_of(&page)));
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/",
        "http://[::1]/",
        "http://0x7f000001/",
        "http://169.254.169.254/",
    ] {
        fields.push(("webhook_url".into(), url.into()));
        let r = post_form(&strict, &cookie, "/playbooks", &fields);
        assert_eq!(r.status(), 400, "{url}");
        assert!(
            r.text().unwrap().contains("--allow-private-webhooks"),
            "{url}"
        );
        fields.pop();
    }
    assert_eq!(
        strict.admin().get_json("/api/playbooks")["playbooks"],
        json!([])
    );
    drop(strict);

    // With it: the secret is shown in the answer to the save, and only there;
    // the webhook arrives signed with it.
    let server = TestServer::start_allowing_private_webhooks(db);
    let token = server.admin().create_app("shop");
    let (url, deliveries) = receiver(200);
    let cookie = session_cookie(&server);
    let (_, page) = get_page(&server, &cookie, "/playbooks");
    let mut fields = playbook_fields(Some(&csrf_of(&page)));
    fields.push(("webhook_url".into(), format!("{url}/hook?token=T0KEN")));
    let r = post_form(&server, &cookie, "/playbooks", &fields);
    assert_eq!(r.status(), 201);
    let page = r.text().unwrap();
    let secrets = secrets_in(&page);
    assert_eq!(secrets.len(), 1, "{page}");
    assert!(page.contains(url.strip_prefix("http://").unwrap()));
    let (_, list) = get_page(&server, &cookie, "/playbooks");
    assert!(secrets_in(&list).is_empty(), "shown once");
    // Toggling twice keeps the secret.
    let id = server.admin().get_json("/api/playbooks")["playbooks"][0]["id"].clone();
    for _ in 0..2 {
        let r = post_form(
            &server,
            &cookie,
            &format!("/playbooks/{id}/toggle"),
            &[("csrf", csrf_of(&list).as_str())],
        );
        assert_eq!(r.status(), 303);
    }
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let events: Vec<Value> = (0..3)
        .map(|i| record(&format!("w{i}"), "81.2.69.160", "e", json!({}), None))
        .collect();
    assert_eq!(agent.batch(&events).status(), 200);
    let delivery = eventually("the webhook", Duration::from_secs(10), || {
        deliveries.lock().unwrap().first().cloned()
    });
    assert!(signature_is_valid(&delivery, &secrets[0]));
}

fn apps_are_rotated_and_deleted(db: &str) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let old = admin.create_app("shop <b>");
    let kept = admin.create_app("blog");
    let apps = admin.get_json("/api/apps")["apps"].clone();
    let id = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "shop <b>")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (agent, _) = FakeAgent::login(&server.url, &old);
    let cookie = session_cookie(&server);
    let (status, page) = get_page(&server, &cookie, "/apps");
    assert_eq!(status, 200);
    assert!(
        page.contains("shop &lt;b&gt;") && page.contains("blog"),
        "{page}"
    );
    assert!(!page.contains("sqa_"), "tokens are never listed");
    let csrf = csrf_of(&page);

    // Rotation: the new token is shown in this answer only.
    let rotate = format!("/apps/{id}/rotate-token");
    let none: [(&str, &str); 0] = [];
    assert_eq!(post_form(&server, &cookie, &rotate, &none).status(), 403);
    let r = post_form(&server, &cookie, &rotate, &[("csrf", csrf.as_str())]);
    assert_eq!(r.status(), 200);
    let page = r.text().unwrap();
    let start = page.find("sqa_").expect("the new token is shown");
    let new = page[start..start + 68].to_owned();
    assert_ne!(new, old);
    let (_, list) = get_page(&server, &cookie, "/apps");
    assert!(!list.contains("sqa_"), "shown once");
    assert_eq!(agent.post_raw("/sqreen/v1/app-beat", "{}").status(), 401);
    let login = |token: &str| {
        client()
            .post(format!("{}/sqreen/v1/app-login", server.url))
            .header("X-Api-Key", token)
            .json(&json!({}))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(login(&old), 401);
    assert_eq!(login(&new), 200);

    // Deletion: a confirmation page, then the name typed again.
    let (status, confirm) = get_page(&server, &cookie, &format!("/apps/{id}/delete"));
    assert_eq!(status, 200);
    assert!(confirm.contains("name=\"confirm\""), "{confirm}");
    let delete = format!("/apps/{id}/delete");
    assert_eq!(
        post_form(&server, &cookie, &delete, &[("confirm", "shop <b>")]).status(),
        403
    );
    for typed in ["", "shop", "blog"] {
        let r = post_form(
            &server,
            &cookie,
            &delete,
            &[("csrf", csrf.as_str()), ("confirm", typed)],
        );
        assert_eq!(r.status(), 400, "{typed:?}");
    }
    assert_eq!(login(&new), 200, "nothing deleted yet");
    let r = post_form(
        &server,
        &cookie,
        &delete,
        &[("csrf", csrf.as_str()), ("confirm", "shop <b>")],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/apps?done=deleted");
    assert_eq!(login(&new), 401);
    assert_eq!(login(&kept), 200);
    let apps = admin.get_json("/api/apps")["apps"].clone();
    assert_eq!(apps.as_array().unwrap().len(), 1);
    assert_eq!(
        get_page(&server, &cookie, &format!("/apps/{id}/delete")).0,
        404
    );
}

fn sessions_work_across_processes(db: &str) {
    let a = TestServer::start_db(db);
    let b = TestServer::start_db(&a.database_url);
    let cookie = session_cookie(&a);
    let (status, page) = get_page(&b, &cookie, "/playbooks");
    assert_eq!(status, 200);
    let r = post_form(
        &b,
        &cookie,
        "/playbooks",
        &[
            ("csrf", csrf_of(&page).as_str()),
            ("name", "from b"),
            ("event", "e"),
            ("threshold", "3"),
            ("period_s", "60"),
            ("actor", "user"),
            ("response", "none"),
        ],
    );
    assert_eq!(r.status(), 303);
    // Logging out on A ends the session on B too: a copy of the cookie
    // no longer opens a page or posts a form.
    let (_, page) = get_page(&a, &cookie, "/events");
    let csrf = csrf_of(&page);
    let r = post_form(&a, &cookie, "/logout", &[("csrf", csrf.as_str())]);
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/login");
    for server in [&a, &b] {
        let (status, _) = get_page(server, &cookie, "/events");
        assert_eq!(status, 303, "a logged-out cookie opens no page");
        let r = post_form(server, &cookie, "/logout", &[("csrf", csrf.as_str())]);
        assert_eq!(r.status(), 403);
    }
    // A new login works.
    let (status, _) = get_page(&b, &session_cookie(&b), "/events");
    assert_eq!(status, 200);
}

fn html_in_events_is_escaped(db: &str) {
    let server = TestServer::start_db(db);
    seed(&server);
    let cookie = session_cookie(&server);
    let (status, page) = get_page(&server, &cookie, "/events");
    assert_eq!(status, 200);
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("&lt;img src=x onerror=alert(2)&gt;&lt;b&gt;bold&lt;/b&gt;"));
    assert!(page.contains("&lt;u&gt;mallory&lt;/u&gt;"));
    assert!(!page.contains("<script"));
    assert!(!page.contains("<img"));
    assert!(!page.contains("<b>"));
    // Filtering by the hostile name works and echoes it escaped in the form.
    let (status, page) = get_page(
        &server,
        &cookie,
        "/events?event=%3Cscript%3Ealert(1)%3C%2Fscript%3E&property=comment",
    );
    assert_eq!(status, 200);
    assert!(!page.contains("<script"));
    assert_eq!(page.matches("<tr class=\"event\"").count(), 1);
    // Bad filters are explained, not failed.
    let (status, page) = get_page(&server, &cookie, "/events?since=yesterday");
    assert_eq!(status, 400);
    assert!(page.contains("since:"));
}

fn explorer_pages_by_cursor(db: &str) {
    let server = TestServer::start_db(db);
    let token = server.admin().create_app("shop");
    let (agent, _) = FakeAgent::login(&server.url, &token);
    let records: Vec<Value> = (0..60)
        .map(|i| {
            record(
                &format!("r{i}"),
                "81.2.69.160",
                "view",
                json!({"n": i}),
                None,
            )
        })
        .collect();
    assert_eq!(agent.batch(&records).status(), 200);
    assert_eq!(
        agent
            .batch(&[record("other", "81.2.69.1", "other", json!({}), None)])
            .status(),
        200
    );
    let cookie = session_cookie(&server);
    let (status, first) = get_page(&server, &cookie, "/events?event=view");
    assert_eq!(status, 200);
    assert_eq!(first.matches("<tr class=\"event\"").count(), 50);
    assert!(first.contains("data-total=\"60\""));
    let start = first
        .find("href=\"/events?event=view&amp;cursor=")
        .expect("an older-events link keeping the filter");
    let href = &first[start + 6..];
    let href = href[..href.find('"').unwrap()].replace("&amp;", "&");
    let (status, second) = get_page(&server, &cookie, &href);
    assert_eq!(status, 200);
    assert_eq!(second.matches("<tr class=\"event\"").count(), 10);
    assert!(!second.contains("id=\"older\""));
    assert!(!second.contains(">other<"));
    let (status, _) = get_page(&server, &cookie, "/events?cursor=nonsense");
    assert_eq!(status, 400);
}

on_both_backends!(
    /// State-changing forms without this session's CSRF token are 403 and change nothing.
    forms_need_the_session_csrf_token => forms_need_the_session_csrf_token_sqlite, forms_need_the_session_csrf_token_postgres
);

on_both_backends!(
    /// A session cookie from one server process is accepted by another on the
    /// same database and admin key (no in-process session state), and a
    /// logout in one ends it in both.
    sessions_work_across_processes => sessions_work_across_processes_sqlite, sessions_work_across_processes_postgres
);

on_both_backends!(
    /// HTML in event names, properties and user identifiers reaches the page escaped.
    html_in_events_is_escaped => html_in_events_is_escaped_sqlite, html_in_events_is_escaped_postgres
);

on_both_backends!(
    /// The explorer pages by 50 with an "Older events" link that keeps the filters.
    explorer_pages_by_cursor => explorer_pages_by_cursor_sqlite, explorer_pages_by_cursor_postgres
);

// ── headless Chromium ───────────────────────────────────────────────────

async fn scenario(b: &Browser, server_url: &str, agent: FakeAgent) {
    // Log in.
    b.goto(&format!("{server_url}/events")).await.unwrap();
    wait_path(b, "/login").await;
    snap(b, "login").await;
    fill(b, "#key", "not the key").await;
    b.find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .for_element(Locator::Css(".notice.error"))
        .await
        .unwrap();
    fill(b, "#key", ADMIN_KEY).await;
    b.find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/events").await;

    // All events, with their chart.
    assert_eq!(texts(b, "#events tbody tr").await.len(), 6);
    let svg = b.find(Locator::Css("#trend svg")).await.unwrap();
    assert_eq!(svg.attr("data-total").await.unwrap().as_deref(), Some("6"));
    assert!(
        !b.find_all(Locator::Css("#trend svg rect.bar"))
            .await
            .unwrap()
            .is_empty()
    );

    // Escaping: the hostile name and property are text; no element was injected.
    let names = texts(b, "#events td.event-name").await;
    assert!(names.iter().any(|n| n == XSS_EVENT), "{names:?}");
    let props = texts(b, "#events td.properties").await;
    assert!(props.iter().any(|p| p.contains(XSS_PROPERTY)), "{props:?}");
    assert!(b.find_all(Locator::Css("script")).await.unwrap().is_empty());
    assert!(
        b.find_all(Locator::Css("main img, main b, main u, main i"))
            .await
            .unwrap()
            .is_empty()
    );

    snap(b, "events").await;
    // Filter: one event name and one user.
    fill(b, "#f-event", "purchase").await;
    fill(b, "#f-user_key", "username").await;
    fill(b, "#f-user_value", "alice").await;
    b.find(Locator::Css("#apply-filters"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(
        b,
        "/events?event=purchase&app=&ip=&user_key=username&user_value=alice&property=&value=\
         &range=24h&since=&until=&group=",
    )
    .await;
    let names = texts(b, "#events td.event-name").await;
    assert_eq!(names, vec!["purchase"; 3]);
    let svg = b.find(Locator::Css("#trend svg")).await.unwrap();
    assert_eq!(svg.attr("data-total").await.unwrap().as_deref(), Some("3"));
    let bars = b
        .find_all(Locator::Css("#trend svg rect.bar"))
        .await
        .unwrap();
    let mut drawn = 0;
    for bar in &bars {
        drawn += bar
            .attr("data-count")
            .await
            .unwrap()
            .unwrap()
            .parse::<i64>()
            .unwrap();
    }
    assert_eq!(drawn, 3);
    snap(b, "events-filtered").await;
    // The filter form keeps its values.
    let event_field = b.find(Locator::Css("#f-event")).await.unwrap();
    assert_eq!(
        event_field.prop("value").await.unwrap().as_deref(),
        Some("purchase")
    );

    // Create a playbook: 3 failed logins per IP within a minute block for 10 minutes.
    b.find(Locator::Css("nav a[href='/playbooks']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/playbooks").await;
    fill(b, "#p-name", "Brute force <from the browser>").await;
    fill(b, "#p-event", "sdk-login-fail").await;
    fill(b, "#p-threshold", "3").await;
    fill(b, "#p-period_s", "60").await;
    fill(b, "#p-duration_s", "600").await;
    b.find(Locator::Css("#p-actor"))
        .await
        .unwrap()
        .select_by_value("ip")
        .await
        .unwrap();
    b.find(Locator::Css("#p-response"))
        .await
        .unwrap()
        .select_by_value("block")
        .await
        .unwrap();
    b.find(Locator::Css("#create-playbook"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/playbooks?done=created").await;
    assert_eq!(texts(b, ".notice.ok").await, vec!["Playbook created."]);
    assert_eq!(
        texts(b, "#playbooks td.name").await,
        vec!["Brute force <from the browser>"]
    );
    snap(b, "playbooks").await;
    // Disable, then enable again.
    b.find(Locator::Css("#playbooks tr.playbook button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/playbooks?done=disabled").await;
    assert_eq!(texts(b, "#playbooks td.status").await, vec!["disabled"]);
    b.find(Locator::Css("#playbooks tr.playbook button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/playbooks?done=enabled").await;
    assert_eq!(texts(b, "#playbooks td.status").await, vec!["enabled"]);

    // An agent reports failed logins over the threshold: an alert and a block.
    let agent = tokio::task::spawn_blocking(move || {
        agent.beat(&failed_logins("81.2.69.200", "bob", 4));
        agent
    })
    .await
    .unwrap();
    b.find(Locator::Css("nav a[href='/alerts']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/alerts").await;
    let alerts = texts(b, "#alerts tr.alert").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("81.2.69.200"), "{alerts:?}");

    snap(b, "alerts").await;
    // Lift the action.
    b.find(Locator::Css("nav a[href='/actions']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/actions").await;
    let rows = texts(b, "#actions tr.action").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains("block_ip") && rows[0].contains("81.2.69.200"),
        "{rows:?}"
    );
    snap(b, "actions").await;
    b.find(Locator::Css("#actions tr.action button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/actions?done=lifted").await;
    b.find(Locator::Css("#no-actions")).await.unwrap();
    let pack = tokio::task::spawn_blocking(move || agent.actionspack())
        .await
        .unwrap();
    assert_eq!(pack["actions"], json!([]), "{pack}");

    // Log out: the pages ask for the key again.
    b.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/login").await;
    b.goto(&format!("{server_url}/playbooks")).await.unwrap();
    wait_path(b, "/login").await;
}

/// In headless Chromium: log in, filter events, see the chart, create and
/// toggle a playbook, lift the action it took, log out; hostile event text
/// is shown as text.
#[test]
fn browser_scenario() {
    let server = TestServer::start();
    let agent = seed(&server);
    let url = server.url.clone();
    run_in_browser("browser_scenario", move |b| async move {
        scenario(&b, &url, agent).await;
    });
}

on_both_backends!(
    /// A private webhook destination is refused by the form unless the
    /// server allows it; then the secret is shown once, after saving, and
    /// signs the delivery.
    webhooks_from_the_dashboard => webhooks_from_the_dashboard_sqlite, webhooks_from_the_dashboard_postgres
);

on_both_backends!(
    /// The applications page rotates a token (shown once; the old one and
    /// its sessions stop working) and deletes an application once its name
    /// is typed again; both forms need the CSRF token.
    apps_are_rotated_and_deleted => apps_are_rotated_and_deleted_sqlite, apps_are_rotated_and_deleted_postgres
);
