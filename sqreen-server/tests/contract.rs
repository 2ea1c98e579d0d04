//! The protocol's contract, end to end, between the real agent
//! (`sqreen-core`) and a real server on 127.0.0.1:
//!
//! - the agent driven to its largest legal output — records of 100 tracks
//!   with 16 properties of 4 KiB, the most headers, oversized identifiers
//!   and parameters, thousands of failed logins with 4 KiB user names —
//!   and the server refuses none of it;
//! - the bodies the agent's own encoder wrote (recorded on their way, by a
//!   transport wrapping the agent's HTTP transport) decode in the server
//!   without loss: every event, property and user identifier, every
//!   metric observation;
//! - every answer the server sent is exactly a `sqreen_protocol::answers`
//!   type (parsed, then written again byte for byte), and means the same
//!   to the agent: its parsers read the same fields, and the actions of a
//!   login answer and of an action pack, one of each kind, are enforced as
//!   they say.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sqreen_core::transport::{
    ApiRequest, ApiResponse, BoxFuture, HttpTransport, Transport, TransportError,
};
use sqreen_core::{Agent, AgentGuard, Config, Open, RequestInfo, ResponseInfo, SecurityResponse};
use sqreen_protocol::answers::{
    Action, ActionKind, ActionsPackAnswer, BatchAnswer, BeatAnswer, LoginAnswer, StatusAnswer,
};
use sqreen_protocol::{commands, paths};

/// `n` bytes of text, half of them control characters (six bytes each once
/// escaped in JSON).
fn heavy(n: usize, tag: usize) -> String {
    let head = format!("{tag:08}");
    let rest: String = (0..n - head.len())
        .map(|i| if i % 2 == 0 { 'y' } else { '\u{2}' })
        .collect();
    format!("{head}{rest}")
}

#[test]
fn the_agents_largest_output_is_accepted() {
    let server = TestServer::start();
    let admin = server.admin();
    let token = admin.create_app("contract");
    let config = Config::builder()
        .token(&token)
        .url(&server.url)
        .heartbeat_delay(Duration::from_millis(500))
        .shutdown_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let transport = HttpTransport::new(&config).unwrap();
    let agent = Agent::start(config, Arc::new(transport));
    assert!(agent.wait_ready(Duration::from_secs(30)));

    // Four records at the track limit, each track with 16 properties of
    // 4 KiB (about 6.5 MB of JSON per record: one batch each).
    let props: Vec<(String, String)> = (0..16)
        .map(|i| (format!("{i:0>256}"), "p".repeat(4096)))
        .collect();
    let big_headers: Vec<(String, String)> = (0..24)
        .map(|i| (format!("X-Big-{i}"), heavy(4096, i)))
        .collect();
    for r in 0..4 {
        let mut headers: Vec<(&str, &str)> = big_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers.push(("X-Forwarded-For", "81.2.69.160"));
        let query: String = (0..256)
            .map(|i| format!("k{i}={}", heavy(8192, i).replace('\u{2}', "%02")))
            .collect::<Vec<_>>()
            .join("&");
        let path = format!("/{}", "a".repeat(8000));
        let info = RequestInfo::new("POST", &path, &headers).query(Some(&query));
        let Open::Request(mut record) = agent.open(|| info, None) else {
            panic!("expected a record");
        };
        let sq = record.handle_with(|| info);
        for t in 0..100 {
            let long = heavy(4096, t);
            sq.track_event(format!("{r}-{t:0>250}"))
                .with_properties(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .with_user_identifiers((0..16).map(|i| (format!("id{i}"), long.clone())));
        }
        record.close(ResponseInfo::new(200));
    }
    // Failed logins with 3 000 distinct 4 KiB user names from one IP.
    for i in 0..3_000 {
        let headers = [("X-Forwarded-For", "81.2.69.161")];
        let request = || RequestInfo::new("POST", "/login", &headers);
        let Open::Request(mut record) = agent.open(request, None) else {
            panic!("expected a record");
        };
        record
            .handle_with(request)
            .for_user([("username", heavy(4096, i))])
            .track_auth_failure();
        record.close(ResponseInfo::new(401));
    }
    assert!(agent.flush(Duration::from_secs(120)), "flush");

    let stats = || admin.get_json("/api/stats");
    eventually("every event stored", Duration::from_secs(120), || {
        (stats()["events_stored"].as_u64().unwrap() >= 400).then_some(())
    });
    let fails = |s: &serde_json::Value| s["events_stored"].as_u64().unwrap();
    eventually("the failed logins stored", Duration::from_secs(120), || {
        (fails(&stats()) >= 400 + 3_000).then_some(())
    });
    let s = stats();
    eprintln!("server stats: {s}");
    assert_eq!(s["bad_request"], 0, "{s}");
    assert_eq!(s["too_large"], 0, "{s}");
    let a = agent.stats();
    eprintln!("agent stats: {a:?}");
    assert_eq!(a.events_refused, 0);
    assert_eq!(a.heartbeats_failed, 0);
    assert_eq!(a.metric_observations_dropped, 0);
    assert!(a.invalid_request_input > 0, "the parameters were left out");
}

/// One call of the agent: what its encoder wrote and what the server
/// answered, as bytes.
#[derive(Clone, Debug)]
struct Call {
    path: &'static str,
    /// The request body, inflated when the agent gzipped it.
    request: Option<Vec<u8>>,
    status: u16,
    answer: Vec<u8>,
}

/// The agent's HTTP transport, recording every call.
struct Recording {
    inner: HttpTransport,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recording {
    fn new(config: &Config) -> (Self, Arc<Mutex<Vec<Call>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let inner = HttpTransport::new(config).unwrap();
        (
            Self {
                inner,
                calls: Arc::clone(&calls),
            },
            calls,
        )
    }
}

impl Transport for Recording {
    fn call(&self, request: ApiRequest) -> BoxFuture<Result<ApiResponse, TransportError>> {
        let path = request.path;
        let gzipped = request
            .header("Content-Encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
        let body = request.body.clone().map(|b| {
            if gzipped {
                let mut inflated = Vec::new();
                flate2::read::GzDecoder::new(&b[..])
                    .read_to_end(&mut inflated)
                    .unwrap();
                inflated
            } else {
                b
            }
        });
        let calls = Arc::clone(&self.calls);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            if let Ok(r) = &result {
                calls.lock().unwrap().push(Call {
                    path,
                    request: body,
                    status: r.status,
                    answer: r.body.clone(),
                });
            }
            result
        })
    }
}

/// The recorded calls to `path` the server answered 200.
fn calls_to(calls: &Mutex<Vec<Call>>, path: &str) -> Vec<Call> {
    let calls = calls.lock().unwrap();
    calls
        .iter()
        .filter(|c| c.path == path && c.status == 200)
        .cloned()
        .collect()
}

/// Parses `bytes` as `T` and checks that `T` writes them again byte for
/// byte: the type describes the wire exactly.
fn exactly<T: serde::de::DeserializeOwned + serde::Serialize>(bytes: &[u8]) -> T {
    let text = std::str::from_utf8(bytes).unwrap();
    let typed: T = serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(serde_json::to_string(&typed).unwrap(), text);
    typed
}

fn start_agent(server: &TestServer, token: &str) -> (AgentGuard, Arc<Mutex<Vec<Call>>>) {
    let config = Config::builder()
        .token(token)
        .url(&server.url)
        .heartbeat_delay(Duration::from_millis(300))
        .build()
        .unwrap();
    let (transport, calls) = Recording::new(&config);
    let agent = Agent::start(config, Arc::new(transport));
    assert!(agent.wait_ready(Duration::from_secs(30)));
    (agent, calls)
}

/// A request from `ip` (through `X-Forwarded-For`).
/// The request is copied at once, as an extractor does when a handler
/// asks for the handle.
fn from_ip(agent: &Agent, ip: &str, path: &str) -> Open {
    let headers = [("X-Forwarded-For", ip)];
    let request = || RequestInfo::new("POST", path, &headers);
    match agent.open(request, None) {
        Open::Request(mut slot) => {
            slot.handle_with(request);
            Open::Request(slot)
        }
        other => other,
    }
}

/// What the agent's encoder writes, the server's decoders read: every
/// event with its name, properties, user identifiers and client IP, and
/// every metric observation with its user and count, nothing refused or
/// unknown.
#[test]
fn the_agents_encoding_decodes_without_loss() {
    let server = TestServer::start();
    let token = server.admin().create_app("encoding");
    let (agent, calls) = start_agent(&server, &token);

    let Open::Request(mut record) = from_ip(&agent, "81.2.69.160", "/checkout") else {
        panic!("expected a record");
    };
    let sq = record.handle();
    let text = "quotes \" and \\ backslash, ünïcödé ✓, control \u{1}, tab\t";
    sq.track_event("contract.properties")
        .with_properties([
            ("text", json!(text)),
            ("int", json!(-42)),
            ("big", json!(8_589_934_592_u64)),
        ])
        .with_properties([("float", json!(1.5)), ("yes", json!(true))])
        .with_user_identifiers([("uid", "u-1"), ("team", "blue ✓")]);
    sq.for_user([("username", "bob")]).identify().unwrap();
    sq.track_event("contract.inherits_identify");
    sq.for_user([("username", "carol")])
        .track_event("contract.for_user")
        .with_properties([("step", 2)]);
    record.close(ResponseInfo::new(201));
    // An event outside any request.
    agent
        .track_event("contract.background")
        .with_properties([("job", "nightly")]);
    // User-monitoring counts, carried by heartbeats.
    for _ in 0..3 {
        let Open::Request(mut record) = from_ip(&agent, "81.2.69.161", "/login") else {
            panic!("expected a record");
        };
        record
            .handle()
            .for_user([("username", "mallory"), ("tenant", "t1")])
            .track_auth_failure();
        record.close(ResponseInfo::new(401));
    }
    let Open::Request(mut record) = from_ip(&agent, "81.2.69.162", "/signup") else {
        panic!("expected a record");
    };
    record
        .handle()
        .for_user([("email_hash", "e1")])
        .track_signup();
    record.close(ResponseInfo::new(200));
    assert!(agent.flush(Duration::from_secs(30)));
    drop(agent);

    // Every batch the agent wrote, through the server's decoder.
    let mut events = Vec::new();
    for call in calls_to(&calls, paths::BATCH) {
        let outcome = sqreen_server::protocol::decode_batch(&call.request.unwrap()).unwrap();
        assert!(outcome.refused.is_empty(), "{:?}", outcome.refused);
        assert_eq!(outcome.leniency.unknown_fields, 0);
        assert_eq!(outcome.leniency.acknowledged, 0);
        let answer: StatusAnswer = exactly(&call.answer);
        assert!(answer.status);
        events.extend(outcome.events);
    }
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "contract.properties",
            "contract.inherits_identify",
            "contract.for_user",
            "contract.background",
        ]
    );
    let ids = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let props = &events[0];
    assert_eq!(
        Value::Object(props.properties.clone()),
        json!({"text": text, "int": -42, "big": 8_589_934_592_u64, "float": 1.5, "yes": true})
    );
    assert_eq!(
        props.user_identifiers,
        ids(&[("uid", "u-1"), ("team", "blue ✓")])
    );
    assert_eq!(props.client_ip, "81.2.69.160");
    let request: Value = serde_json::from_str(&props.request).unwrap();
    assert_eq!(request["path"], "/checkout");
    assert_eq!(request["verb"], "POST");
    let response: Value = serde_json::from_str(&props.response).unwrap();
    assert_eq!(response["status"], 201);
    // The record's other events share its context.
    assert_eq!(events[1].context_of, Some(0));
    assert_eq!(events[1].user_identifiers, ids(&[("username", "bob")]));
    assert!(events[1].properties.is_empty());
    assert_eq!(events[2].user_identifiers, ids(&[("username", "carol")]));
    assert_eq!(
        Value::Object(events[2].properties.clone()),
        json!({"step": 2})
    );
    assert_eq!(events[3].client_ip, "");
    assert!(events[3].user_identifiers.is_empty());
    assert_eq!(
        Value::Object(events[3].properties.clone()),
        json!({"job": "nightly"})
    );
    assert_eq!(&*events[3].request, "null");

    // Every heartbeat the agent wrote, through the server's decoder.
    let mut observed: BTreeMap<(String, String, BTreeMap<String, String>), i64> = BTreeMap::new();
    for call in calls_to(&calls, paths::BEAT) {
        let (_, metrics, leniency) =
            sqreen_server::protocol::decode_beat(&call.request.unwrap(), "s").unwrap();
        assert_eq!(leniency.unknown_fields, 0);
        for m in metrics {
            *observed
                .entry((m.event, m.client_ip, m.user_identifiers))
                .or_default() += m.count;
        }
    }
    let expected = BTreeMap::from([
        (
            (
                "sdk-login-fail".to_owned(),
                "81.2.69.161".to_owned(),
                ids(&[("tenant", "t1"), ("username", "mallory")]),
            ),
            3,
        ),
        (
            (
                "sdk-signup".to_owned(),
                "81.2.69.162".to_owned(),
                ids(&[("email_hash", "e1")]),
            ),
            1,
        ),
    ]);
    assert_eq!(observed, expected);
}

/// The playbooks of the contract: one per action kind, each fired by its
/// own event at its first occurrence.
fn action_playbooks(admin: &AdminClient) {
    for (kind, actor, response) in [
        (
            "block_ip",
            "ip",
            json!({"type": "block", "duration_s": 600}),
        ),
        (
            "redirect_ip",
            "ip",
            json!({"type": "redirect", "duration_s": 0, "url": "https://example.com/ip"}),
        ),
        (
            "block_user",
            "user",
            json!({"type": "block", "duration_s": 0}),
        ),
        (
            "redirect_user",
            "user",
            json!({"type": "redirect", "duration_s": 600, "url": "https://example.com/user"}),
        ),
    ] {
        admin.create_playbook(&json!({"name": format!("contract {kind}"),
            "trigger": {"event": format!("contract.{kind}"), "threshold": 1,
                        "period_s": 600, "actor": actor},
            "responses": [response]}));
    }
}

/// What the agent enforces for each of the four actions.
fn enforced(agent: &Agent) -> [Option<SecurityResponse>; 4] {
    let by_ip = |ip: &str| match from_ip(agent, ip, "/") {
        Open::Respond(r) => Some(r),
        Open::Request(record) => {
            record.close(ResponseInfo::new(200));
            None
        }
        _ => None,
    };
    let by_user = |user: &str| {
        let Open::Request(mut record) = from_ip(agent, "81.2.69.200", "/") else {
            panic!("expected a record");
        };
        let verdict = record.handle().for_user([("username", user)]).identify();
        record.close(ResponseInfo::new(200));
        verdict.err().map(|b| b.into_response())
    };
    [
        by_ip("81.2.69.170"),
        by_ip("81.2.69.171"),
        by_user("mallory"),
        by_user("eve"),
    ]
}

/// The four responses the actions call for.
fn expected_responses() -> [Option<SecurityResponse>; 4] {
    [
        Some(SecurityResponse::Block { status: 403 }),
        Some(SecurityResponse::Redirect {
            location: "https://example.com/ip".into(),
        }),
        Some(SecurityResponse::Block { status: 403 }),
        Some(SecurityResponse::Redirect {
            location: "https://example.com/user".into(),
        }),
    ]
}

/// Checks the actions of an answer: one of each kind, with the parameters
/// and durations the playbooks gave them.
fn check_actions(actions: &[Action]) {
    let mut kinds: Vec<ActionKind> = actions.iter().map(|a| a.action).collect();
    kinds.sort_by_key(|k| k.as_str());
    let mut all = ActionKind::ALL.to_vec();
    all.sort_by_key(|k| k.as_str());
    assert_eq!(kinds, all);
    for a in actions {
        assert!(a.send_response);
        assert!(!a.action_id.is_empty());
        let p = &a.parameters;
        match a.action {
            ActionKind::BlockIp => {
                assert_eq!(p.ip_cidr, Some(vec!["81.2.69.170/32".to_owned()]));
                assert!(a.duration.is_some_and(|d| (1..=600).contains(&d)));
                assert_eq!((&p.users, &p.url), (&None, &None));
            }
            ActionKind::RedirectIp => {
                assert_eq!(p.ip_cidr, Some(vec!["81.2.69.171/32".to_owned()]));
                assert_eq!(p.url.as_deref(), Some("https://example.com/ip"));
                assert_eq!(a.duration, None, "until lifted: no duration");
            }
            ActionKind::BlockUser => {
                let mallory = BTreeMap::from([("username".to_owned(), "mallory".to_owned())]);
                assert_eq!(p.users, Some(vec![mallory]));
                assert_eq!(a.duration, None);
                assert_eq!((&p.ip_cidr, &p.url), (&None, &None));
            }
            ActionKind::RedirectUser => {
                let eve = BTreeMap::from([("username".to_owned(), "eve".to_owned())]);
                assert_eq!(p.users, Some(vec![eve]));
                assert_eq!(p.url.as_deref(), Some("https://example.com/user"));
                assert!(a.duration.is_some_and(|d| (1..=600).contains(&d)));
            }
        }
    }
}

/// The core's own answer parsers read a server answer's commands as the
/// protocol type says.
fn core_reads_commands(raw: Vec<Value>, typed: &[sqreen_protocol::answers::Command]) {
    assert_eq!(raw.len(), typed.len());
    for (raw, typed) in raw.into_iter().zip(typed) {
        let command: sqreen_core::protocol::Command = serde_json::from_value(raw).unwrap();
        assert_eq!(command.name, typed.name);
        assert_eq!(command.uuid, typed.uuid);
        assert_eq!(command.params, typed.params);
    }
}

/// Every answer the server sends is exactly a protocol type, and means the
/// same to the agent: a beat answer's `actions_reload` makes it fetch the
/// action pack, whose four actions (one per kind) it enforces as they say;
/// a later login answer carries the same actions, enforced at once; the
/// historical agents' login answer carries `instrumentation_enable` and
/// their rules.
#[test]
fn server_answers_mean_the_same_to_the_agent() {
    let server = TestServer::start();
    let admin = server.admin();
    let token = admin.create_app("answers");
    action_playbooks(&admin);
    let (agent, calls) = start_agent(&server, &token);
    assert_eq!(enforced(&agent), [None, None, None, None]);

    // Fire the four playbooks.
    for (ip, kind, user) in [
        ("81.2.69.170", "block_ip", None),
        ("81.2.69.171", "redirect_ip", None),
        ("81.2.69.180", "block_user", Some("mallory")),
        ("81.2.69.181", "redirect_user", Some("eve")),
    ] {
        let Open::Request(mut record) = from_ip(&agent, ip, "/") else {
            panic!("expected a record");
        };
        let sq = record.handle();
        match user {
            Some(u) => {
                sq.for_user([("username", u)])
                    .track_event(format!("contract.{kind}"));
            }
            None => {
                sq.track_event(format!("contract.{kind}"));
            }
        }
        record.close(ResponseInfo::new(200));
    }
    assert!(agent.flush(Duration::from_secs(30)));
    eventually(
        "the agent enforces the four actions",
        Duration::from_secs(30),
        || (enforced(&agent) == expected_responses()).then_some(()),
    );

    // The login answer: no actions yet; the agent's parser reads it alike.
    let logins = calls_to(&calls, paths::LOGIN);
    assert_eq!(logins.len(), 1);
    let login: LoginAnswer = exactly(&logins[0].answer);
    assert!(login.status && login.actions.is_empty() && login.commands.is_empty());
    assert_eq!((login.pack_id.as_ref(), login.rules.as_ref()), (None, None));
    let core: sqreen_core::protocol::LoginResponse =
        serde_json::from_slice(&logins[0].answer).unwrap();
    assert!(core.status);
    assert_eq!(core.session_id, login.session_id);
    assert_eq!(core.error, login.error);
    assert_eq!(
        core.features.heartbeat_delay,
        login.features.heartbeat_delay
    );
    assert_eq!(core.features.max_staleness, login.features.max_staleness);
    assert_eq!(Some(core.features.batch_gzip), login.features.batch_gzip);
    assert_eq!(core.features.batch_size, login.features.batch_size);
    assert_eq!(
        core.features.event_queue_length,
        login.features.event_queue_length
    );

    // The beat answers: one says `actions_reload`, read alike by the agent.
    let mut reloads = 0;
    for call in calls_to(&calls, paths::BEAT) {
        let beat: BeatAnswer = exactly(&call.answer);
        assert!(beat.status);
        let core: sqreen_core::protocol::BeatResponse =
            serde_json::from_slice(&call.answer).unwrap();
        reloads += beat
            .commands
            .iter()
            .filter(|c| c.name == commands::ACTIONS_RELOAD && c.params.is_empty())
            .count();
        core_reads_commands(core.commands, &beat.commands);
    }
    assert!(reloads >= 1, "no actions_reload");

    // The action packs: the last one holds the four actions, which the
    // agent's parser reads all of (it enforces them, above).
    let packs = calls_to(&calls, paths::ACTIONSPACK);
    let last = packs.last().expect("an action pack");
    let pack: ActionsPackAnswer = exactly(&last.answer);
    assert!(pack.status);
    check_actions(&pack.actions);
    let core: sqreen_core::protocol::ActionsPack = serde_json::from_slice(&last.answer).unwrap();
    assert_eq!(core.actions.len(), 4);
    for (raw, typed) in core.actions.iter().zip(&pack.actions) {
        assert_eq!(raw, &serde_json::to_value(typed).unwrap());
    }

    // The batches were answered `{"status":true}`.
    for call in calls_to(&calls, paths::BATCH) {
        let answer: BatchAnswer = exactly(&call.answer);
        assert!(answer.status && answer.refused.is_empty());
    }
    drop(agent);
    for call in calls_to(&calls, paths::LOGOUT) {
        assert_eq!(exactly::<StatusAnswer>(&call.answer), StatusAnswer::OK);
    }

    // A new agent gets the actions in its login answer, and enforces them
    // before any heartbeat.
    let (second, calls) = start_agent(&server, &token);
    assert_eq!(enforced(&second), expected_responses());
    let logins = calls_to(&calls, paths::LOGIN);
    let login: LoginAnswer = exactly(&logins[0].answer);
    check_actions(&login.actions);
    let core: sqreen_core::protocol::LoginResponse =
        serde_json::from_slice(&logins[0].answer).unwrap();
    assert_eq!(core.actions.len(), 4);
    drop(second);

    // The historical agents' login answer: their rules and the command
    // that turns them on, read alike by our agent's parser.
    let http = client();
    for agent_type in ["python", "nodejs"] {
        let answer = http
            .post(format!("{}{}", server.url, paths::LOGIN))
            .header("X-Api-Key", &token)
            .json(&json!({"agent_type": agent_type}))
            .send()
            .unwrap();
        assert_eq!(answer.status(), 200);
        let bytes = answer.bytes().unwrap();
        let login: LoginAnswer = exactly(&bytes);
        assert!(login.pack_id.is_some());
        assert!(login.rules.as_ref().is_some_and(|r| !r.is_empty()));
        assert_eq!(login.commands.len(), 1);
        assert_eq!(login.commands[0].name, commands::INSTRUMENTATION_ENABLE);
        check_actions(&login.actions);
        let core: sqreen_core::protocol::LoginResponse = serde_json::from_slice(&bytes).unwrap();
        core_reads_commands(core.commands, &login.commands);
        assert_eq!(core.features.batch_size, Some(100));
    }
}
