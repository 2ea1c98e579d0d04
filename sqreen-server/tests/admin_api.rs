//! The admin JSON API: authentication, the event explorer's filters and
//! paging, trends, playbook management, and hostile input.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn ids(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["event"].as_str().unwrap(),
                e["client_ip"].as_str().unwrap()
            )
        })
        .collect()
}

fn seeded(db: &str) -> (TestServer, AdminClient) {
    let server = TestServer::start_db(db);
    let admin = server.admin();
    let shop = admin.create_app("shop");
    let blog = admin.create_app("blog");
    let (a, _) = FakeAgent::login(&server.url, &shop);
    let (b, _) = FakeAgent::login(&server.url, &blog);
    let mut batch = Vec::new();
    for i in 0..30 {
        let (event, props) = if i % 3 == 0 {
            ("payment.failed", json!({"plan": "gold", "n": i}))
        } else {
            ("user.invited", json!({"plan": "free", "n": i}))
        };
        let user = (i % 2 == 0).then(|| json!({"uid": format!("u{}", i % 4)}));
        batch.push(record(
            &format!("s{i}"),
            &format!("81.2.69.{}", i % 5),
            event,
            props,
            user,
        ));
    }
    assert_eq!(a.batch(&batch).status(), 200);
    let blog_batch = vec![record("b1", "81.2.69.200", "post.read", json!({}), None)];
    assert_eq!(b.batch(&blog_batch).status(), 200);
    (server, admin)
}

/// Every admin route wants the admin key: none or a wrong one is a 401.
#[test]
fn admin_needs_the_key() {
    let server = TestServer::start();
    let http = client();
    for (method, path) in [
        (Method::GET, "/api/events"),
        (Method::GET, "/api/events/trend"),
        (Method::POST, "/api/apps"),
        (Method::GET, "/api/playbooks"),
        (Method::GET, "/api/alerts"),
        (Method::GET, "/api/actions"),
        (Method::DELETE, "/api/actions/x"),
        (Method::GET, "/api/stats"),
    ] {
        let r = http
            .request(method.clone(), format!("{}{path}", server.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path} without a key");
        let r = http
            .request(method.clone(), format!("{}{path}", server.url))
            .bearer_auth("wrong")
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path} with a wrong key");
    }
}

/// After 20 wrong admin keys from one address, every attempt from it is
/// refused with 429 and `Retry-After`, the right key too, on the API and
/// the dashboard's login form; other addresses are not affected, and the
/// refusals are counted.
#[test]
fn admin_key_guesses_are_limited() {
    let server = TestServer::start();
    let from = |ip: [u8; 4]| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .local_address(std::net::IpAddr::from(ip))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let guesser = from([127, 0, 0, 2]);
    let api = |http: &reqwest::blocking::Client, key: &str| {
        http.get(format!("{}/api/alerts", server.url))
            .bearer_auth(key)
            .send()
            .unwrap()
    };
    for i in 0..sqreen_server::key_limiter::MAX_FAILURES {
        assert_eq!(
            api(&guesser, &format!("guess-{i}")).status(),
            401,
            "guess {i}"
        );
    }
    for key in ["one more guess", ADMIN_KEY] {
        let r = api(&guesser, key);
        assert_eq!(r.status(), 429, "{key}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
    }
    let login = guesser
        .post(format!("{}/login", server.url))
        .form(&[("key", ADMIN_KEY)])
        .send()
        .unwrap();
    assert_eq!(login.status(), 429);
    assert!(login.headers().get("set-cookie").is_none());
    // Another address still gets in, and sees the refusals counted.
    let other = from([127, 0, 0, 3]);
    let r = api(&other, ADMIN_KEY);
    assert_eq!(r.status(), 200);
    let stats: Value = other
        .get(format!("{}/api/stats", server.url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(stats["too_many_requests"], 3, "{stats}");
    assert_eq!(stats["unauthorized"], 20, "{stats}");
}

/// Apps: created with a token, names unique, bodies checked.
#[test]
fn apps_are_created_once() {
    let server = TestServer::start();
    let admin = server.admin();
    let r = admin.post("/api/apps", &json!({"name": "shop"}));
    assert_eq!(r.status(), 201);
    let v: Value = r.json().unwrap();
    assert_eq!(v["name"], "shop");
    assert!(v["id"].as_i64().is_some());
    assert!(v["token"].as_str().unwrap().starts_with("sqa_"));
    assert_eq!(
        admin.post("/api/apps", &json!({"name": "shop"})).status(),
        409
    );
    assert_eq!(admin.post("/api/apps", &json!({"name": ""})).status(), 400);
    assert_eq!(
        admin
            .post("/api/apps", &json!({"name": "x", "extra": 1}))
            .status(),
        400
    );
    assert_eq!(admin.post("/api/apps", &json!({})).status(), 400);
    let apps = admin.get_json("/api/apps");
    assert_eq!(apps["apps"].as_array().unwrap().len(), 1);
}

fn event_filters(db: &str) {
    let (_server, admin) = seeded(db);
    let count = |q: &str| {
        admin.get_json(&format!("/api/events?limit=1000&{q}"))["events"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(""), 31);
    assert_eq!(count("app=shop"), 30);
    assert_eq!(count("app=blog"), 1);
    assert_eq!(count("event=payment.failed"), 10);
    assert_eq!(count("ip=81.2.69.0"), 6);
    assert_eq!(count("property=plan&value=gold"), 10);
    assert_eq!(count("property=plan"), 30);
    assert_eq!(count("property=n&value=3"), 1);
    assert_eq!(count("user_key=uid&user_value=u0"), 8);
    assert_eq!(count("user_key=uid"), 15);
    assert_eq!(
        count("event=user.invited&ip=81.2.69.1&property=plan&value=free"),
        4
    );
    assert_eq!(count("since=2000-01-01T00:00:00Z"), 31);
    assert_eq!(count("until=2000-01-01T00:00:00Z"), 0);
    assert_eq!(count("since=0&until=99999999999999"), 31);
    let list = admin.get_json("/api/events?limit=1000");
    let times: Vec<i64> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["time_ms"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
}

fn cursor_pages_through_everything(db: &str) {
    let (_server, admin) = seeded(db);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/events?limit=7&cursor={c}"),
            None => "/api/events?limit=7".to_owned(),
        };
        let page = admin.get_json(&q);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 31);
}

fn hostile_filters(db: &str) {
    let (_server, admin) = seeded(db);
    for q in [
        "event=' OR '1'='1",
        "ip=1.2.3.4'; DROP TABLE events; --",
        "property=plan' OR 1=1 --&value=x",
        "user_key=uid&user_value=\" OR \"\"=\"",
        "app=shop' UNION SELECT * FROM apps --",
        "event=%00%27",
    ] {
        let r = admin.get(&format!("/api/events?{q}"));
        assert_eq!(r.status(), 200, "{q}");
        let v: Value = r.json().unwrap();
        assert!(v["events"].as_array().unwrap().is_empty(), "{q}");
    }
    for q in [
        "bogus=1",
        "limit=0",
        "limit=100000",
        "limit=ten",
        "since=yesterday",
        "cursor=1;DROP",
        "value=x",
        "user_value=x",
        "bucket=60",
    ] {
        assert_eq!(admin.get(&format!("/api/events?{q}")).status(), 400, "{q}");
    }
    // Everything is still there.
    assert_eq!(ids(&admin.get_json("/api/events?limit=1000")).len(), 31);
}

/// The groups of a trend answer's series, in order.
fn groups(trend: &Value) -> Vec<&str> {
    trend["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["group"].as_str().unwrap())
        .collect()
}

fn trend_counts(db: &str) {
    let (_server, admin) = seeded(db);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let range = format!("since={}&until={}", now - 600_000, now + 60_000);
    let total = |v: &Value| -> i64 {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["total"].as_i64().unwrap())
            .sum()
    };
    let v = admin.get_json(&format!("/api/events/trend?{range}&bucket=60"));
    assert_eq!(v["bucket_s"], 60);
    assert_eq!(v["series"].as_array().unwrap().len(), 1);
    assert_eq!(v["series"][0]["points"].as_array().unwrap().len(), 11);
    assert_eq!(total(&v), 31);
    let v = admin.get_json(&format!(
        "/api/events/trend?{range}&event=payment.failed&group_by=ip"
    ));
    assert_eq!(total(&v), 10);
    assert_eq!(v["series"].as_array().unwrap().len(), 5);
    let v = admin.get_json(&format!(
        "/api/events/trend?{range}&app=shop&group_by=property:plan"
    ));
    assert_eq!(groups(&v), ["free", "gold"]);
    assert_eq!(v["series"][0]["total"], 20);
    let v = admin.get_json(&format!(
        "/api/events/trend?{range}&group_by=user&user_key=uid"
    ));
    assert_eq!(total(&v), 15);
    // 30 values of `n`, one event each: the 20 first by value are kept.
    let v = admin.get_json(&format!("/api/events/trend?{range}&group_by=property:n"));
    let mut expected: Vec<String> = (0..30).map(|n| n.to_string()).collect();
    expected.sort();
    expected.truncate(20);
    assert_eq!(groups(&v), expected);
    assert_eq!(total(&v), 20);
    for q in [
        "group_by=planet",
        "bucket=0",
        "bucket=1&since=0",
        "limit=3",
        "since=5&until=1",
    ] {
        assert_eq!(
            admin.get(&format!("/api/events/trend?{q}")).status(),
            400,
            "{q}"
        );
    }
}

/// What the explorer answers to a set of queries that use every
/// attribute filter (as drivers and as extra conditions), paging and
/// trends grouped by property: one line per query.
fn explorer_answers(admin: &AdminClient, now: i64) -> Vec<String> {
    let range = format!("since={}&until={}", now - 600_000, now + 60_000);
    let mut answers = Vec::new();
    for q in [
        "",
        "ip=81.2.69.0",
        "ip=81.2.69.3&event=user.invited",
        "property=plan&value=gold",
        "property=plan",
        "property=plan&value=free&ip=81.2.69.1",
        "user_key=uid&user_value=u0",
        "user_key=uid&property=plan&value=free",
        "user_key=uid&user_value=u2&ip=81.2.69.2",
    ] {
        // Walk every page of 4, so that pages end in either table.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("/api/events?limit=4&{q}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = admin.get_json(&url);
            seen.extend(
                page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].to_string()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        answers.push(format!("{q}: {}", seen.join(",")));
    }
    for q in [
        "group_by=property:plan",
        "group_by=ip&property=plan&value=gold",
        "group_by=user&ip=81.2.69.4",
    ] {
        let v = admin.get_json(&format!("/api/events/trend?{range}&bucket=600&{q}"));
        answers.push(format!("trend {q}: {}", v["series"]));
    }
    answers
}

/// Attributes of new events wait in a pending table until they are merged
/// into the index: the explorer answers the same before and after a merge,
/// and while events are split between the two.
fn pending_and_merged_attributes(db: &str) {
    let (server, admin) = seeded(db);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(sqreen_server::store::Store::connect(db))
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let pending = explorer_answers(&admin, now);
    let listed = |answer: &str| answer.split_once(": ").unwrap().1.split(',').count();
    assert_eq!(listed(&pending[1]), 6, "{}", pending[1]);
    assert_eq!(listed(&pending[7]), 10, "{}", pending[7]);
    assert_eq!(listed(&pending[8]), 2, "{}", pending[8]);
    let moved = rt.block_on(store.merge_attributes()).unwrap();
    // 31 IPs, 60 properties, 15 user identifiers.
    assert_eq!(moved, 31 + 60 + 15);
    assert_eq!(explorer_answers(&admin, now), pending);
    assert_eq!(rt.block_on(store.merge_attributes()).unwrap(), 0);

    // More events, pending again: answers cover both tables.
    let shop_token = admin.create_app("shop2");
    let (agent, _) = FakeAgent::login(&server.url, &shop_token);
    let batch: Vec<Value> = (0..9)
        .map(|i| {
            record(
                &format!("late{i}"),
                &format!("81.2.69.{}", i % 5),
                "payment.failed",
                json!({"plan": "gold"}),
                Some(json!({"uid": "u0"})),
            )
        })
        .collect();
    assert_eq!(agent.batch(&batch).status(), 200);
    let count = |q: &str| {
        admin.get_json(&format!("/api/events?limit=1000&{q}"))["events"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count("ip=81.2.69.0"), 6 + 2);
    assert_eq!(count("property=plan&value=gold"), 10 + 9);
    assert_eq!(
        count("user_key=uid&user_value=u0&property=plan&value=gold"),
        3 + 9
    );
    let split = explorer_answers(&admin, now);
    assert_ne!(split, pending);
    rt.block_on(store.merge_attributes()).unwrap();
    assert_eq!(explorer_answers(&admin, now), split);
    rt.block_on(store.close());
}

fn playbook() -> Value {
    json!({"name": "brute force", "enabled": true,
        "trigger": {"event": "sdk-login-fail", "conditions": [], "threshold": 5,
                    "period_s": 60, "actor": "ip"},
        "responses": [{"type": "block", "duration_s": 300}],
        "notifications": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
        "allow_critical_ips": false})
}

fn playbook_crud(db: &str) {
    // Its webhook points at 127.0.0.1 (never called: nothing fires).
    let server = TestServer::start_allowing_private_webhooks(db);
    let admin = server.admin();
    let id = admin.create_playbook(&playbook());
    let got = admin.get_json(&format!("/api/playbooks/{id}"));
    assert_eq!(got["id"], id);
    assert_eq!(got["name"], "brute force");
    assert_eq!(got["trigger"]["threshold"], 5);
    let mut changed = playbook();
    changed["trigger"]["threshold"] = json!(9);
    let r = admin.send(Method::PUT, &format!("/api/playbooks/{id}"), Some(&changed));
    assert_eq!(r.status(), 200);
    assert_eq!(
        admin.get_json(&format!("/api/playbooks/{id}"))["trigger"]["threshold"],
        9
    );
    assert_eq!(
        admin.get_json("/api/playbooks")["playbooks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = admin.send(Method::PUT, "/api/playbooks/999", Some(&changed));
    assert_eq!(r.status(), 404);
    assert_eq!(
        admin
            .send(Method::DELETE, &format!("/api/playbooks/{id}"), None)
            .status(),
        204
    );
    assert_eq!(admin.get(&format!("/api/playbooks/{id}")).status(), 404);
    assert_eq!(
        admin
            .send(Method::DELETE, &format!("/api/playbooks/{id}"), None)
            .status(),
        404
    );
    assert_eq!(admin.get("/api/playbooks/abc").status(), 400);

    let mut bad = Vec::new();
    let mut p = playbook();
    p["unknown"] = json!(1);
    bad.push(p);
    let mut p = playbook();
    p["trigger"]["extra"] = json!(1);
    bad.push(p);
    let mut p = playbook();
    p["trigger"]["actor"] = json!("planet");
    bad.push(p);
    let mut p = playbook();
    p["trigger"]["threshold"] = json!(-1);
    bad.push(p);
    let mut p = playbook();
    p["trigger"]["period_s"] = json!("60");
    bad.push(p);
    let mut p = playbook();
    p["responses"] = json!([{"type": "redirect", "duration_s": 10}]);
    bad.push(p);
    let mut p = playbook();
    p["trigger"]["conditions"] = json!([{"property": "k", "op": "like", "value": "x"}]);
    bad.push(p);
    let mut p = playbook();
    p["trigger"]["conditions"] = json!([{"property": "k", "op": "regex", "value": "(["}]);
    bad.push(p);
    let mut p = playbook();
    p["name"] = json!("");
    bad.push(p);
    for p in bad {
        let r = admin.post("/api/playbooks", &p);
        assert_eq!(r.status(), 400, "{p}");
    }
    let r = admin
        .http
        .post(format!("{}/api/playbooks", server.url))
        .bearer_auth(ADMIN_KEY)
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = admin
        .http
        .post(format!("{}/api/playbooks", server.url))
        .bearer_auth(ADMIN_KEY)
        .body(vec![b' '; 1 << 20])
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
}

on_both_backends!(
    /// Each explorer filter narrows the list; results are newest first.
    event_filters => event_filters_sqlite, event_filters_postgres
);

on_both_backends!(
    /// The cursor walks every event exactly once.
    cursor_pages_through_everything => cursor_pages_through_everything_sqlite, cursor_pages_through_everything_postgres
);

on_both_backends!(
    /// SQL-looking filter values are plain values: they match nothing and
    /// break nothing; bad parameters are 400s.
    hostile_filters => hostile_filters_sqlite, hostile_filters_postgres
);

on_both_backends!(
    /// The trend counts per bucket, and per IP, user or property.
    trend_counts => trend_counts_sqlite, trend_counts_postgres
);

on_both_backends!(
    /// The explorer reads attributes both before and after they are merged.
    pending_and_merged_attributes => pending_and_merged_attributes_sqlite, pending_and_merged_attributes_postgres
);

on_both_backends!(
    /// Playbooks: create, read, list, replace, delete; bad bodies refused.
    playbook_crud => playbook_crud_sqlite, playbook_crud_postgres
);
