//! `GET /api/events/export` and the dashboard's `GET /events/export`: every
//! matching event, streamed as NDJSON or CSV, the same as `/api/events`
//! shows them.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

/// Events seeded: more than the /api/events page size so that the API
/// side pages, fewer than an export chunk.
const SEEDED: usize = 360;

/// A server with `SEEDED` events of `shop` (three kinds, five IPs, some
/// with a user and odd characters in their properties) and one of `blog`.
fn seeded() -> (TestServer, AdminClient) {
    seeded_on(&sqlite_url())
}

fn seeded_on(database_url: &str) -> (TestServer, AdminClient) {
    let server = TestServer::start_db(database_url);
    let admin = server.admin();
    let shop = admin.create_app("shop");
    let blog = admin.create_app("blog");
    let (a, _) = FakeAgent::login(&server.url, &shop);
    let (b, _) = FakeAgent::login(&server.url, &blog);
    for chunk in 0..SEEDED / 120 {
        let batch: Vec<Value> = (chunk * 120..(chunk + 1) * 120)
            .map(|i| {
                let event = ["payment.failed", "user.invited", "login,\"odd\""][i % 3];
                let user = (i % 2 == 0).then(|| json!({"uid": format!("u{}", i % 4)}));
                record(
                    &format!("s{i}"),
                    &format!("81.2.69.{}", i % 5),
                    event,
                    json!({"n": i, "note": "comma, \"quote\"\nnewline"}),
                    user,
                )
            })
            .collect();
        assert_eq!(a.batch(&batch).status(), 200);
    }
    let post = vec![record("b1", "81.2.69.200", "post.read", json!({}), None)];
    assert_eq!(b.batch(&post).status(), 200);
    (server, admin)
}

/// Every event of `/api/events?{filters}`, through all its pages.
fn api_events(admin: &AdminClient, filters: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = admin.get_json(&format!("/api/events?{filters}&limit=100{cursor}"));
        all.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return all,
        }
    }
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The CSV export read back with the csv crate, each row turned into the
/// `/api/events` item it stands for.
fn csv_events(text: &str) -> Vec<Value> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers,
        [
            "id",
            "time",
            "time_ms",
            "app",
            "event",
            "client_ip",
            "count",
            "user_identifiers",
            "properties",
            "request",
            "response"
        ]
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let json = |i: usize| serde_json::from_str::<Value>(&r[i]).unwrap();
            json!({
                "id": r[0].parse::<i64>().unwrap(),
                "time": &r[1],
                "time_ms": r[2].parse::<i64>().unwrap(),
                "app": &r[3],
                "event": &r[4],
                "client_ip": &r[5],
                "count": r[6].parse::<i64>().unwrap(),
                "user_identifiers": json(7),
                "properties": json(8),
                "request": json(9),
                "response": json(10),
            })
        })
        .collect()
}

/// Both formats hold every event, in the order and with the fields of
/// `/api/events`, with the content type and attachment name of their format.
#[test]
fn export_matches_the_api() {
    let (_server, admin) = seeded();
    export_matches(&admin);
}

/// The same on PostgreSQL.
#[test]
fn export_matches_the_api_on_postgres() {
    let Some(url) = postgres_url("export_matches_the_api_on_postgres") else {
        return;
    };
    let (_server, admin) = seeded_on(&url);
    export_matches(&admin);
    let r = admin.get("/api/events/export?ip=81.2.69.3&format=csv");
    assert_eq!(
        csv_events(&r.text().unwrap()),
        api_events(&admin, "ip=81.2.69.3")
    );
}

fn export_matches(admin: &AdminClient) {
    let expected = api_events(admin, "");
    assert_eq!(expected.len(), SEEDED + 1);

    let r = admin.get("/api/events/export?format=ndjson");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[CONTENT_TYPE], "application/x-ndjson");
    let disposition = r.headers()[CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment; filename=\"sqreen-events-"));
    assert!(disposition.ends_with(".ndjson\""), "{disposition}");
    assert_eq!(ndjson(&r.text().unwrap()), expected);

    // ndjson is the default.
    let r = admin.get("/api/events/export");
    assert_eq!(r.status(), 200);
    assert_eq!(ndjson(&r.text().unwrap()), expected);

    let r = admin.get("/api/events/export?format=csv");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    let disposition = r.headers()[CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.ends_with(".csv\""), "{disposition}");
    let rows = csv_events(&r.text().unwrap());
    assert_eq!(rows, expected);
    // The odd characters went through the quoting intact.
    assert!(rows.iter().any(|e| e["event"] == "login,\"odd\""));
    assert!(
        rows.iter()
            .any(|e| e["properties"]["note"] == "comma, \"quote\"\nnewline")
    );
}

/// The filters of `/api/events` apply to the export, alone and together.
#[test]
fn export_applies_the_filters() {
    let (_server, admin) = seeded();
    for filters in [
        "app=blog",
        "event=payment.failed",
        "ip=81.2.69.3",
        "user_key=uid&user_value=u2",
        "property=n&value=7",
        "app=shop&event=user.invited&ip=81.2.69.1",
        "user_key=uid",
        "since=0&until=1",
    ] {
        let expected = api_events(&admin, filters);
        let r = admin.get(&format!("/api/events/export?{filters}&format=ndjson"));
        assert_eq!(r.status(), 200, "{filters}");
        assert_eq!(ndjson(&r.text().unwrap()), expected, "{filters}");
        let r = admin.get(&format!("/api/events/export?{filters}&format=csv"));
        assert_eq!(r.status(), 200, "{filters}");
        assert_eq!(csv_events(&r.text().unwrap()), expected, "{filters}");
    }
    // An export with no match is empty (CSV: its header alone).
    let r = admin.get("/api/events/export?event=nothing");
    assert_eq!(r.text().unwrap(), "");
    let r = admin.get("/api/events/export?event=nothing&format=csv");
    assert_eq!(csv_events(&r.text().unwrap()), Vec::<Value>::new());
}

/// Bad formats, paging parameters and bad filters are 400s; no key or a
/// wrong one is a 401.
#[test]
fn export_refuses_bad_queries_and_strangers() {
    let server = TestServer::start();
    let admin = server.admin();
    for query in [
        "format=xml",
        "format=NDJSON",
        "limit=10",
        "cursor=1.1",
        "bucket=60",
        "group_by=ip",
        "since=yesterday",
        "user_value=x",
        "unknown=1",
    ] {
        let r = admin.get(&format!("/api/events/export?{query}"));
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["status"], false, "{query}");
    }
    // The list and the trend do not take a format.
    assert_eq!(admin.get("/api/events?format=csv").status(), 400);
    assert_eq!(admin.get("/api/events/trend?format=csv").status(), 400);

    let url = format!("{}/api/events/export", server.url);
    assert_eq!(client().get(&url).send().unwrap().status(), 401);
    let r = client()
        .get(&url)
        .bearer_auth("wrong-key-0123456789abcdefghijklmnop")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// The dashboard's export takes the explorer's query string behind the
/// session cookie: the same events as the API for the same window.
#[test]
fn dashboard_export_follows_the_explorer_filters() {
    let (server, admin) = seeded();
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without a session: sent to the login page, no data.
    let r = http
        .get(format!("{}/events/export?format=csv", server.url))
        .send()
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());

    let r = http
        .post(format!("{}/login", server.url))
        .form(&[("key", ADMIN_KEY)])
        .send()
        .unwrap();
    let cookie = r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let get = |path: &str| {
        http.get(format!("{}{path}", server.url))
            .header(COOKIE, &cookie)
            .send()
            .unwrap()
    };
    // The explorer's default window (the last 24 hours) holds every event.
    let r = get("/events/export?event=payment.failed&range=24h&format=csv");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        csv_events(&r.text().unwrap()),
        api_events(&admin, "event=payment.failed")
    );
    let r = get("/events/export?ip=81.2.69.200");
    assert_eq!(r.status(), 200);
    assert_eq!(
        ndjson(&r.text().unwrap()),
        api_events(&admin, "ip=81.2.69.200")
    );
    // A window with nothing in it, a bad window, a bad format.
    let r = get("/events/export?since=0&until=1000&format=ndjson");
    assert_eq!(r.text().unwrap(), "");
    assert_eq!(get("/events/export?since=2000&until=1000").status(), 400);
    assert_eq!(get("/events/export?format=xml").status(), 400);
}
