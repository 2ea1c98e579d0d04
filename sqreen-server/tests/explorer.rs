//! The Event Explorer that explores, against a real server on 127.0.0.1:
//! pivots, facets and the stacked chart, the event page, the alert page and
//! a playbook's dry run, over plain HTTP (both backends) and in headless
//! Chromium (see `common::browser`), which also saves screenshots of each
//! page (`SQREEN_DASHBOARD_SCREENSHOTS`, or `screenshots` in the target's
//! test directory).
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod common;

use std::time::Duration;

use common::browser::*;
use common::*;
use reqwest::blocking::Client;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

const XSS: &str = "<img src=x onerror=alert(1)>";

/// A client that shows redirects instead of following them, and keeps no cookies.
fn http() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Logs in with the admin key; returns the `name=value` of the session cookie.
fn session_cookie(server: &TestServer) -> String {
    let r = http()
        .post(format!("{}/login", server.url))
        .form(&[("key", ADMIN_KEY)])
        .send()
        .unwrap();
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

/// `record` as if it happened `minutes` ago.
fn aged(mut record: Value, minutes: u64) -> Value {
    let t = std::time::SystemTime::now() - Duration::from_secs(minutes * 60);
    let t = Value::String(humantime::format_rfc3339_millis(t).to_string());
    record["start"] = t.clone();
    record["end"] = t.clone();
    record["observed"]["sdk"][0]["time"] = t;
    record
}

/// Failed logins of `user` from `ip`, `n` of them, as tracked events.
fn login_fails(prefix: &str, ip: &str, user: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            record(
                &format!("{prefix}-{ip}-{i}"),
                ip,
                "login-fail",
                json!({"path": "/login"}),
                Some(json!({"username": user})),
            )
        })
        .collect()
}

/// Seeds two apps: `shop` (purchases, searches, failed logins from three
/// IPs: 4, 2 and 3) and `blog` (comments, one purchase). Returns the shop's
/// agent and the number of events.
fn seed(server: &TestServer) -> (FakeAgent, usize) {
    let admin = server.admin();
    let shop = admin.create_app("shop");
    let blog = admin.create_app("blog");
    let (shop_agent, _) = FakeAgent::login(&server.url, &shop);
    let (blog_agent, _) = FakeAgent::login(&server.url, &blog);
    let mut records = Vec::new();
    for i in 0..3 {
        records.push(aged(
            record(
                &format!("p{i}"),
                "81.2.69.160",
                "purchase",
                json!({"amount": 10 + i, "currency": "EUR"}),
                Some(json!({"username": "alice"})),
            ),
            60 + 170 * i,
        ));
    }
    for i in 0..2 {
        records.push(aged(
            record(
                &format!("s{i}"),
                "81.2.69.161",
                "search",
                json!({"q": "shoes"}),
                None,
            ),
            300 + 240 * i,
        ));
    }
    records.extend(login_fails("seed", "81.2.69.170", "bob", 4));
    records.extend(login_fails("seed", "81.2.69.171", "bob", 2));
    records.extend(login_fails("seed", "81.2.69.172", "eve", 3));
    assert_eq!(shop_agent.batch(&records).status(), 200);
    let mut blog_records = Vec::new();
    for i in 0..3 {
        blog_records.push(aged(
            record(
                &format!("c{i}"),
                "81.2.69.180",
                "comment",
                json!({"post": "p1", "note": XSS}),
                Some(json!({"username": "carol"})),
            ),
            30 + 400 * i,
        ));
    }
    blog_records.push(record(
        "bp0",
        "81.2.69.160",
        "purchase",
        json!({"amount": 5, "currency": "USD"}),
        Some(json!({"username": "alice"})),
    ));
    assert_eq!(blog_agent.batch(&blog_records).status(), 200);
    let total = records.len() + blog_records.len();
    eventually("events stored", Duration::from_secs(10), || {
        let events = admin.get_json("/api/events?limit=1000")["events"].clone();
        (events.as_array().unwrap().len() == total).then_some(())
    });
    (shop_agent, total)
}

/// The `data-events` counts of a facet's values, by their link.
fn facet_links(page: &str, id: &str) -> Vec<(String, i64)> {
    let start = page.find(&format!("id=\"{id}\"")).unwrap();
    let section = &page[start..];
    let section = &section[..section.find("</section>").unwrap()];
    let mut out = Vec::new();
    let mut rest = section;
    while let Some(at) = rest.find("<a href=\"") {
        rest = &rest[at + 9..];
        let href = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
        let n_at = rest.find("data-events=\"").unwrap() + 13;
        let n: i64 = rest[n_at..n_at + rest[n_at..].find('"').unwrap()]
            .parse()
            .unwrap();
        out.push((href, n));
        rest = &rest[n_at..];
    }
    out
}

/// How many events the admin API lists for an explorer link's filters.
fn api_count(server: &TestServer, explorer_href: &str) -> usize {
    let query = explorer_href.strip_prefix("/events?").unwrap();
    let v = server
        .admin()
        .get_json(&format!("/api/events?{query}&limit=1000"));
    v["events"].as_array().unwrap().len()
}

fn facets_and_pages(db: &str) {
    let server = TestServer::start_db(db);
    let (_, total) = seed(&server);
    let cookie = session_cookie(&server);
    let (status, page) = get_page(&server, &cookie, "/events");
    assert_eq!(status, 200);
    assert!(page.contains(&format!("data-events=\"{total}\"")), "{page}");
    // Every facet value's count is what the API lists for that filter.
    for facet in ["facet-event", "facet-ip", "facet-user", "facet-property"] {
        let links = facet_links(&page, facet);
        assert!(!links.is_empty(), "{facet}");
        for (href, n) in links {
            assert_eq!(api_count(&server, &href) as i64, n, "{facet} {href}");
        }
    }
    // Facets follow the filters: one app.
    let (_, page) = get_page(&server, &cookie, "/events?app=blog");
    let events = facet_links(&page, "facet-event");
    assert_eq!(events.len(), 2, "{events:?}");
    for (href, n) in events {
        assert!(href.contains("app=blog"), "{href}");
        assert_eq!(api_count(&server, &href) as i64, n, "{href}");
    }
    // And a filter on an attribute value, which drives the listing's query.
    let (_, bob) = get_page(&server, &cookie, "/events?user_key=username&user_value=bob");
    assert!(bob.contains("data-events=\"6\""), "{bob}");
    for facet in ["facet-event", "facet-ip", "facet-property"] {
        for (href, n) in facet_links(&bob, facet) {
            assert!(href.contains("user_value=bob"), "{href}");
            assert_eq!(api_count(&server, &href) as i64, n, "{href}");
        }
    }
    // The known-events picker lists every event name.
    for name in ["comment", "login-fail", "purchase", "search"] {
        assert!(
            page.contains(&format!("<option value=\"{name}\">")),
            "{name}"
        );
    }
    // The export links carry the same filters.
    assert!(page.contains("href=\"/events/export?app=blog&amp;format=csv\""));

    // Grouped by event name: one series per name, and ticks.
    let (status, page) = get_page(&server, &cookie, "/events?group=event");
    assert_eq!(status, 200);
    assert_eq!(page.matches("<g class=\"series").count(), 4);
    assert!(page.matches("<text class=\"tick\"").count() >= 4);
    let (status, page) = get_page(&server, &cookie, "/events?group=property:currency");
    assert_eq!(status, 200);
    // EUR, USD, then the events without a currency.
    assert_eq!(page.matches("<g class=\"series").count(), 3, "{page}");

    // Hostile values as chart groups, legend entries and facets: text.
    let (status, page) = get_page(&server, &cookie, "/events?group=property:note");
    assert_eq!(status, 200);
    assert!(!page.contains(XSS), "{page}");
    assert!(page.contains("note=&lt;img src=x onerror=alert(1)&gt;"));

    // Hostile parameters: clear 400s.
    for bad in [
        format!("/events?ip={}", "1".repeat(5000)),
        "/events?group=planet".to_owned(),
        "/events?cursor=x".to_owned(),
        "/events?since=2026-13-45T99:00".to_owned(),
        "/events?value=x".to_owned(),
    ] {
        let (status, page) = get_page(&server, &cookie, &bad);
        assert_eq!(status, 400, "{bad}");
        assert!(page.contains("role=\"alert\""), "{bad}");
    }

    // The event page: tables, escaped, and 404/400 otherwise.
    let events = server.admin().get_json("/api/events?event=comment&limit=1");
    let id = events["events"][0]["id"].as_i64().unwrap();
    let (status, page) = get_page(&server, &cookie, &format!("/events/{id}"));
    assert_eq!(status, 200);
    assert!(page.contains("<tr class=\"header\">"));
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!page.contains(XSS));
    assert!(page.contains("id=\"same-ip\""));
    for (path, want) in [
        ("/events/999999", 404),
        ("/events/x", 400),
        ("/alerts/999999", 404),
        ("/alerts/x", 400),
        ("/playbooks/999999", 404),
    ] {
        assert_eq!(get_page(&server, &cookie, path).0, want, "{path}");
    }
}

on_both_backends!(
    /// Facet counts equal what the API lists for each value's filter; the
    /// chart stacks one series per group; bad parameters are 400s; the
    /// event page shows headers as a table, escaped.
    facets_and_pages => facets_and_pages_sqlite, facets_and_pages_postgres
);

/// A threshold-3 playbook on failed logins per IP, as the admin API takes it.
fn brute_force() -> Value {
    json!({"name": "brute force", "trigger": {"event": "login-fail", "threshold": 3,
        "period_s": 600, "actor": "ip"}, "responses": [{"type": "block", "duration_s": 600}]})
}

fn dry_run_matches_the_engine(db: &str) {
    let server = TestServer::start_allowing_private_webhooks(db);
    let (agent, _) = seed(&server);
    let cookie = session_cookie(&server);
    let (_, page) = get_page(&server, &cookie, "/playbooks");
    let csrf = {
        let marker = "name=\"csrf\" value=\"";
        let start = page.find(marker).unwrap() + marker.len();
        page[start..start + 64].to_owned()
    };
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "brute force"),
        ("event", "login-fail"),
        ("threshold", "3"),
        ("period_s", "600"),
        ("actor", "ip"),
        ("response", "block"),
        ("duration_s", "600"),
        ("cond_op", "eq"),
        ("intent", "dry-run"),
    ];
    let r = http()
        .post(format!("{}/playbooks", server.url))
        .header(COOKIE, &cookie)
        .form(&form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().unwrap();
    // .170 (4) and .172 (3) cross 3; .171 (2) does not.
    assert!(page.contains("data-fires=\"2\""), "{page}");
    assert!(page.contains("81.2.69.170") && page.contains("81.2.69.172"));
    assert!(
        server.admin().get_json("/api/playbooks")["playbooks"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Saved (with a webhook that answers and one that cannot be reached),
    // then the same events again: the engine raises as many alerts.
    let (hook, deliveries) = receiver(200);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut playbook = brute_force();
    playbook["notifications"] = json!([
        {"type": "webhook", "url": format!("{hook}/hook")},
        {"type": "webhook", "url": format!("http://127.0.0.1:{closed}/hook")},
    ]);
    let id = server.admin().create_playbook(&playbook);
    let mut again = login_fails("again", "81.2.69.170", "bob", 4);
    again.extend(login_fails("again", "81.2.69.171", "bob", 2));
    again.extend(login_fails("again", "81.2.69.172", "eve", 3));
    assert_eq!(agent.batch(&again).status(), 200);
    let alerts = eventually("alerts", Duration::from_secs(10), || {
        let alerts = server.admin().get_json("/api/alerts")["alerts"].clone();
        (alerts.as_array().unwrap().len() >= 2).then_some(alerts)
    });
    assert_eq!(alerts.as_array().unwrap().len(), 2, "{alerts}");

    // The alert page: its events, its action, what became of its webhooks.
    let alert_id = alerts[0]["id"].as_i64().unwrap();
    let page = eventually("deliveries recorded", Duration::from_secs(20), || {
        let (status, page) = get_page(&server, &cookie, &format!("/alerts/{alert_id}"));
        assert_eq!(status, 200);
        (page.contains("data-outcome=\"sent\"") && page.contains("data-outcome=\"gave_up\""))
            .then_some(page)
    });
    assert_eq!(page.matches("data-outcome=\"failed\"").count(), 3, "{page}");
    assert!(!page.contains("/hook"), "webhooks by host only");
    assert!(page.contains("data-state=\"live\""));
    assert!(page.matches("class=\"event-link\"").count() >= 3);
    // Readable, not a dump of the alert's JSON details.
    assert!(
        !page.contains("null") && !page.contains("\"action_id\""),
        "{page}"
    );
    assert_eq!(deliveries.lock().unwrap().len(), 2);

    // Editing: a dry run of threshold 4 finds .170 alone (its 8 events now
    // count, .172's 6 too: both), and saving keeps the playbook enabled.
    let mut edit: Vec<(&str, &str)> = form.to_vec();
    edit.retain(|(k, _)| *k != "threshold" && *k != "intent");
    edit.push(("threshold", "7"));
    edit.push(("intent", "dry-run"));
    let r = http()
        .post(format!("{}/playbooks/{id}", server.url))
        .header(COOKIE, &cookie)
        .form(&edit)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().unwrap();
    assert!(page.contains("data-fires=\"1\""), "{page}");
    edit.retain(|(k, _)| *k != "intent");
    edit.push(("intent", "save"));
    let r = http()
        .post(format!("{}/playbooks/{id}", server.url))
        .header(COOKIE, &cookie)
        .form(&edit)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let saved = server.admin().get_json(&format!("/api/playbooks/{id}"));
    assert_eq!(saved["trigger"]["threshold"], 7, "{saved}");
    assert_eq!(saved["enabled"], true);
    // Without the token, nothing is saved.
    edit.retain(|(k, _)| *k != "csrf");
    let r = http()
        .post(format!("{}/playbooks/{id}", server.url))
        .header(COOKIE, &cookie)
        .form(&edit)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

on_both_backends!(
    /// A dry run reports the alerts the saved playbook then raises on the
    /// same events; an edit is dry-run, then saved (CSRF-protected).
    dry_run_matches_the_engine => dry_run_matches_the_engine_sqlite, dry_run_matches_the_engine_postgres
);

// ── headless Chromium ───────────────────────────────────────────────────

async fn log_in(b: &Browser, url: &str) {
    b.goto(&format!("{url}/login")).await.unwrap();
    fill(b, "#key", ADMIN_KEY).await;
    b.find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_path(b, "/events").await;
}

async fn click(b: &Browser, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits until the page's path is `path` (any query).
async fn wait_on(b: &Browser, path: &str) -> reqwest::Url {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let url = b.current_url().await.unwrap();
        if url.path() == path {
            return reqwest::Url::parse(url.as_str()).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "on {url}, expected {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the page's path starts with `prefix`.
async fn wait_prefix(b: &Browser, prefix: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let url = b.current_url().await.unwrap();
        if url.path().starts_with(prefix) && url.path() != prefix.trim_end_matches('/') {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "on {url}, expected {prefix}…"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the page is the explorer with parameter `key` set to `value`.
async fn wait_param(b: &Browser, key: &str, value: &str) -> reqwest::Url {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let url = reqwest::Url::parse(b.current_url().await.unwrap().as_str()).unwrap();
        if url.path() == "/events" && query_value(&url, key).as_deref() == Some(value) {
            return url;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "on {url}, expected {key}={value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn query_value(url: &reqwest::Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The admin API's answer to `GET path`, off the browser's runtime (the
/// client blocks).
async fn api_json(url: &str, path: String) -> Value {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        AdminClient {
            url,
            http: common::client(),
        }
        .get_json(&path)
    })
    .await
    .unwrap()
}

async fn explorer_scenario(b: Browser, url: String, agent: FakeAgent) {
    let b = &b;
    log_in(b, &url).await;

    // Clicking an IP in the table filters by it, keeping the other filters.
    b.goto(&format!("{url}/events?app=shop")).await.unwrap();
    let link = b
        .find(Locator::XPath(
            "//table[@id='events']//a[@data-filter='ip' and text()='81.2.69.161']",
        ))
        .await
        .unwrap();
    link.click().await.unwrap();
    let here = wait_param(b, "ip", "81.2.69.161").await;
    assert_eq!(query_value(&here, "app").as_deref(), Some("shop"));
    let ips = texts(b, "#events a[data-filter=ip]").await;
    assert_eq!(ips, vec!["81.2.69.161"; 2]);

    // Facet counts match the API for the same filter.
    b.goto(&format!("{url}/events")).await.unwrap();
    for facet in ["facet-event", "facet-ip", "facet-user", "facet-property"] {
        let links = b
            .find_all(Locator::Css(&format!("#{facet} li")))
            .await
            .unwrap();
        assert!(!links.is_empty(), "{facet}");
        for li in links {
            let a = li.find(Locator::Css("a")).await.unwrap();
            let href = a.attr("href").await.unwrap().unwrap();
            let n: usize = li
                .find(Locator::Css(".n"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .parse()
                .unwrap();
            let query = href.strip_prefix("/events?").unwrap();
            let listed = api_json(&url, format!("/api/events?{query}&limit=1000")).await["events"]
                .as_array()
                .unwrap()
                .len();
            assert_eq!(listed, n, "{facet} {href}");
        }
    }

    // The stacked chart: ≥ 4 labelled time ticks, one series per top group
    // (the event names), a legend entry for each.
    b.goto(&format!("{url}/events")).await.unwrap();
    let group = b.find(Locator::Css("#f-group")).await.unwrap();
    group.select_by_value("event").await.unwrap();
    click(b, "#apply-filters").await;
    wait_param(b, "group", "event").await;
    let ticks = texts(b, "#trend text.tick").await;
    assert!(ticks.len() >= 4, "{ticks:?}");
    assert!(ticks.iter().all(|t| !t.trim().is_empty()), "{ticks:?}");
    let series = b.find_all(Locator::Css("#trend g.series")).await.unwrap();
    let names = texts(b, "#facet-event li a").await;
    assert_eq!(series.len(), names.len());
    for s in &series {
        let group = s.attr("data-group").await.unwrap().unwrap();
        assert!(names.contains(&group), "{group} in {names:?}");
    }
    assert_eq!(texts(b, "#legend li").await.len(), names.len());
    // The whole page: a window as tall as it.
    b.set_window_size(1400, 2000).await.unwrap();
    snap_always(b, "explorer").await;
    b.set_window_size(1400, 1000).await.unwrap();

    // A time preset keeps the filters and sets the window.
    click(b, "a.preset[href*='range=15m']").await;
    let here = wait_param(b, "range", "15m").await;
    assert_eq!(query_value(&here, "group").as_deref(), Some("event"));

    // The event page: headers as a table, links to the same IP.
    b.goto(&format!("{url}/events?event=purchase&app=shop"))
        .await
        .unwrap();
    click(b, "#events a.event-link").await;
    wait_prefix(b, "/events/").await;
    let headers = texts(b, "#request tr.header th").await;
    assert_eq!(headers, vec!["X-Forwarded-For"]);
    assert!(!texts(b, "#response th").await.is_empty());
    assert_eq!(texts(b, "#user td").await, vec!["alice"]);
    snap_always(b, "event").await;
    click(b, "#same-ip").await;
    wait_param(b, "ip", "81.2.69.160").await;
    // Both apps' purchases by that IP.
    assert_eq!(texts(b, "#events tbody tr").await.len(), 4);

    // The playbook's dry run, then the same playbook for real.
    b.goto(&format!("{url}/playbooks")).await.unwrap();
    fill(b, "#p-name", "brute force").await;
    fill(b, "#p-event", "login-fail").await;
    fill(b, "#p-threshold", "3").await;
    fill(b, "#p-period_s", "600").await;
    fill(b, "#p-duration_s", "600").await;
    click(b, "#dry-run-button").await;
    let notice = b
        .wait()
        .for_element(Locator::Css("#dry-run"))
        .await
        .unwrap();
    let fires: usize = notice
        .attr("data-fires")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(fires, 2);
    snap_always(b, "playbook-dry-run").await;
    // The form kept what was typed: save it.
    click(b, "#create-playbook").await;
    wait_on(b, "/playbooks").await;
    b.wait()
        .for_element(Locator::Css("tr.playbook"))
        .await
        .unwrap();
    let mut again = login_fails("again", "81.2.69.170", "bob", 4);
    again.extend(login_fails("again", "81.2.69.171", "bob", 2));
    again.extend(login_fails("again", "81.2.69.172", "eve", 3));
    let status = tokio::task::spawn_blocking(move || agent.batch(&again).status())
        .await
        .unwrap();
    assert_eq!(status, 200);
    let mut alerts = 0;
    for _ in 0..200 {
        alerts = api_json(&url, "/api/alerts".into()).await["alerts"]
            .as_array()
            .unwrap()
            .len();
        if alerts >= fires {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alerts, fires, "the dry run's count is the engine's");

    // The alert page: its events (linked) and its action.
    b.goto(&format!("{url}/alerts")).await.unwrap();
    click(b, "#alerts a.alert-link").await;
    wait_prefix(b, "/alerts/").await;
    let rows = texts(b, "#events tbody tr").await;
    assert!(rows.len() >= 3, "{rows:?}");
    let states = b
        .find_all(Locator::Css("#actions tr.action"))
        .await
        .unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(
        states[0].attr("data-state").await.unwrap().as_deref(),
        Some("live")
    );
    assert!(!texts(b, "#playbook").await.is_empty());
    snap_always(b, "alert").await;
    click(b, "#events a.event-link").await;
    wait_prefix(b, "/events/").await;
    assert_eq!(texts(b, "#event td").await[1], "login-fail");
    // The actor links to the explorer filtered by it.
    b.back().await.unwrap();
    click(b, "#actor").await;
    let here = wait_on(b, "/events").await;
    assert!(query_value(&here, "ip").is_some());
}

/// In headless Chromium: an IP in the table filters by it; facet counts
/// match the API; the chart stacks one series per event name with ≥ 4
/// labelled ticks; the event page shows headers as a table; the dry run of
/// a playbook reports the alerts it then raises; the alert page links to
/// its events and shows its action. Screenshots of each page are saved.
#[test]
fn explorer_in_a_browser() {
    let server = TestServer::start();
    let (agent, _) = seed(&server);
    let url = server.url.clone();
    run_in_browser("explorer_in_a_browser", move |b| async move {
        explorer_scenario(b, url, agent).await;
    });
    eprintln!("screenshots in {}", screenshot_dir().display());
}
