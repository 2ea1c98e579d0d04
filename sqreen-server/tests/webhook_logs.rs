//! What the server logs about webhooks: their host, never their path or
//! query, which often carry a token. A file of its own: it captures the
//! process's logs with a global subscriber.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Delivered, failing and refused webhooks are logged by host only: the
/// secret parts of their URLs appear in no log line.
#[test]
fn webhook_logs_show_the_host_only() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let (url, deliveries) = receiver(200);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let db = sqlite_url();
    let hooks = [
        format!("{url}/hook/T0KEN-IN-PATH?key=T0KEN-IN-QUERY"),
        format!("http://user:T0KEN-PASSWORD@127.0.0.1:{closed}/fail/T0KEN-FAILING"),
    ];
    let token = {
        let server = TestServer::start_allowing_private_webhooks(&db);
        let admin = server.admin();
        let token = admin.create_app("shop");
        let notifications: Vec<_> = hooks
            .iter()
            .map(|u| json!({"type": "webhook", "url": u}))
            .collect();
        admin.create_playbook(&json!({"name": "brute force",
            "trigger": {"event": "sdk-login-fail", "threshold": 2, "period_s": 60, "actor": "ip"},
            "notifications": notifications}));
        let (agent, _) = FakeAgent::login(&server.url, &token);
        agent.beat(&failed_logins("81.2.69.160", "bob", 2));
        eventually("one sent, one failed", Duration::from_secs(20), || {
            let s = stats(&server);
            (s["webhooks_sent"] == 1 && s["webhooks_failed"] == 1).then_some(())
        });
        assert_eq!(deliveries.lock().unwrap().len(), 1);
        token
    };
    // The same playbook from a server that refuses private destinations.
    let strict = TestServer::start_db(&db);
    let (agent, _) = FakeAgent::login(&strict.url, &token);
    agent.beat(&failed_logins("81.2.69.161", "bob", 2));
    eventually("two refusals", Duration::from_secs(10), || {
        (stats(&strict)["webhooks_refused"] == 2).then_some(())
    });

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for event in [
        "notify.sent",
        "notify.failed",
        "notify.gave_up",
        "notify.refused",
    ] {
        assert!(text.contains(event), "{event} is logged:\n{text}");
    }
    let host = url.strip_prefix("http://").unwrap();
    assert!(text.contains(host), "the host is logged:\n{text}");
    assert!(text.contains(&format!("127.0.0.1:{closed}")));
    assert!(
        !text.contains("T0KEN"),
        "no path, query or password in the logs:\n{text}"
    );
}
