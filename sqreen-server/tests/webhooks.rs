//! Webhooks under attack: destinations on loopback, private and other
//! non-public addresses are refused when a playbook is saved and again when
//! a webhook is sent, unless the server allows them; deliveries are signed
//! with a per-webhook secret shown once.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn with_webhooks(urls: &[&str]) -> Value {
    let notifications: Vec<Value> = urls
        .iter()
        .map(|u| json!({"type": "webhook", "url": u}))
        .collect();
    json!({"name": "brute force",
        "trigger": {"event": "sdk-login-fail", "threshold": 2, "period_s": 60, "actor": "ip"},
        "responses": [{"type": "block", "duration_s": 300}],
        "notifications": notifications})
}

/// Every URL form of a loopback, private, link-local, CGNAT, unique-local,
/// unspecified or multicast address, and local names, is refused with 400
/// at `POST` and `PUT`; nothing is stored; public addresses are accepted.
#[test]
fn private_destinations_are_refused_at_save() {
    let server = TestServer::start();
    let admin = server.admin();
    let refused = [
        "http://127.0.0.1:9/hook",
        "http://127.0.0.2/",
        "http://localhost:9/hook",
        "http://LocalHost./hook",
        "http://hooks.localhost/",
        "http://[::1]:9/hook",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://0.0.0.0/",
        "http://0/",
        "http://[::]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://[fc00::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[::127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::]/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
    ];
    for url in refused {
        let r = admin.post("/api/playbooks", &with_webhooks(&[url]));
        assert_eq!(r.status(), 400, "{url}");
        let error = r.json::<Value>().unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains("--allow-private-webhooks"), "{url}: {error}");
        // One bad webhook among good ones is enough.
        let r = admin.post(
            "/api/playbooks",
            &with_webhooks(&["https://81.2.69.160/ok", url]),
        );
        assert_eq!(r.status(), 400, "{url} second");
    }
    assert_eq!(
        admin.get_json("/api/playbooks")["playbooks"],
        json!([]),
        "nothing stored"
    );
    // A public address is accepted (nothing is sent when saving).
    let id = admin.create_playbook(&with_webhooks(&["https://81.2.69.160/ok"]));
    for url in refused {
        let r = admin.send(
            Method::PUT,
            &format!("/api/playbooks/{id}"),
            Some(&with_webhooks(&[url])),
        );
        assert_eq!(r.status(), 400, "PUT {url}");
    }
    let stored = admin.get_json(&format!("/api/playbooks/{id}"));
    assert_eq!(
        stored["notifications"][0]["url"], "https://81.2.69.160/ok",
        "the refused PUTs changed nothing"
    );
}

/// A webhook to 127.0.0.1 (and one to `localhost`) stored while the
/// server allowed private destinations is not sent by a server started
/// without the flag: the refusal is counted, the receiver gets nothing,
/// the alert and its action are stored all the same.
#[test]
fn stored_private_destination_is_refused_at_send_time() {
    let db = sqlite_url();
    let (url, deliveries) = receiver(200);
    let port = url.rsplit(':').next().unwrap().to_owned();
    let token = {
        let permissive = TestServer::start_allowing_private_webhooks(&db);
        let admin = permissive.admin();
        let token = admin.create_app("shop");
        admin.create_playbook(&with_webhooks(&[
            &format!("{url}/hook"),
            &format!("http://localhost:{port}/hook"),
        ]));
        token
    };
    let strict = TestServer::start_db(&db);
    let (agent, _) = FakeAgent::login(&strict.url, &token);
    agent.beat(&failed_logins("81.2.69.160", "bob", 2));
    let counted = eventually("two refusals", Duration::from_secs(10), || {
        let s = stats(&strict);
        (s["webhooks_refused"] == 2).then_some(s)
    });
    assert_eq!(counted["webhooks_sent"], 0, "{counted}");
    assert_eq!(counted["webhooks_failed"], 0, "{counted}");
    assert!(deliveries.lock().unwrap().is_empty(), "nothing delivered");
    let alerts = strict.admin().get_json("/api/alerts")["alerts"].clone();
    assert_eq!(alerts.as_array().unwrap().len(), 1);
    assert_eq!(
        strict.admin().get_json("/api/actions")["actions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn deliveries_are_signed_and_secrets_kept(db: &str) {
    let server = TestServer::start_allowing_private_webhooks(db);
    let admin = server.admin();
    let token = admin.create_app("shop");
    let (url, deliveries) = receiver(200);
    let hook = format!("{url}/hook?token=abc");
    let r = admin.post("/api/playbooks", &with_webhooks(&[&hook]));
    assert_eq!(r.status(), 201);
    let created: Value = r.json().unwrap();
    let id = created["id"].as_i64().unwrap();
    let secret = created["webhook_secrets"][&hook]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("sqw_") && secret.len() == 68, "{secret}");
    // Shown once: no read of the playbook carries it.
    for path in ["/api/playbooks".to_owned(), format!("/api/playbooks/{id}")] {
        let text = admin.get(&path).text().unwrap();
        assert!(!text.contains(&secret) && !text.contains("sqw_"), "{path}");
    }

    let (agent, _) = FakeAgent::login(&server.url, &token);
    agent.beat(&failed_logins("81.2.69.160", "bob", 2));
    let first = eventually("the signed webhook", Duration::from_secs(10), || {
        deliveries.lock().unwrap().first().cloned()
    });
    assert_eq!(first.path, "/hook?token=abc");
    assert_eq!(first.json()["actor"], "81.2.69.160");
    assert!(first.headers["x-sqreen-signature"].starts_with("v1="));
    assert!(signature_is_valid(&first, &secret), "{:?}", first.headers);
    assert!(!signature_is_valid(&first, "sqw_another"));
    let mut tampered = first.clone();
    tampered.body.push(b' ');
    assert!(!signature_is_valid(&tampered, &secret));

    // An edit keeping the URL keeps its secret and shows none; a new URL
    // gets its own.
    let mut edited = with_webhooks(&[&hook]);
    edited["trigger"]["threshold"] = json!(3);
    let r = admin.send(Method::PUT, &format!("/api/playbooks/{id}"), Some(&edited));
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["webhook_secrets"], json!({}));
    let (other_url, other_deliveries) = receiver(200);
    let other_hook = format!("{other_url}/other");
    let r = admin.send(
        Method::PUT,
        &format!("/api/playbooks/{id}"),
        Some(&with_webhooks(&[&hook, &other_hook])),
    );
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    let secrets = answer["webhook_secrets"].as_object().unwrap();
    assert_eq!(secrets.len(), 1, "{answer}");
    let other_secret = secrets[&other_hook].as_str().unwrap().to_owned();
    assert_ne!(other_secret, secret);

    agent.beat(&failed_logins("81.2.69.161", "bob", 2));
    let second = eventually("the second alert", Duration::from_secs(10), || {
        deliveries.lock().unwrap().get(1).cloned()
    });
    assert_eq!(second.json()["actor"], "81.2.69.161");
    assert!(signature_is_valid(&second, &secret), "the secret was kept");
    let other = eventually("the new webhook", Duration::from_secs(10), || {
        other_deliveries.lock().unwrap().first().cloned()
    });
    assert!(signature_is_valid(&other, &other_secret));
    assert!(!signature_is_valid(&other, &secret));
}

on_both_backends!(
    /// With private destinations allowed, a delivery reaches the receiver
    /// signed with the secret returned at creation; an edit keeping the URL
    /// keeps the secret, a new URL gets its own.
    deliveries_are_signed_and_secrets_kept => deliveries_are_signed_and_secrets_kept_sqlite, deliveries_are_signed_and_secrets_kept_postgres
);
