//! The rulespack the server gives the historical agents, and the login
//! features and commands they need (docs/PROTOCOL.md, "Rulespack").
//!
//! The Python agent (1.27) builds its SDK hooks (`track`, `identify`,
//! `auth_track`, `signup_track`), its request context and its IP and user
//! security responses from the rules its backend sends: without them every
//! SDK call does nothing. The Node.js agent (2.0) needs a rule for the page
//! of a blocked request (else it answers 500 with an empty body) and one
//! that counts `auth_track` calls. Each rule names a callback class of the
//! agent and the function it hooks:
//!
//! | agent | rule | hooks | does |
//! | --- | --- | --- | --- |
//! | Python | request context | `flask.app::Flask.full_dispatch_request` (strategy `flask`) | records the request of each call |
//! | Python | IP security responses | `flask.app::Flask.preprocess_request` | blocks or redirects an IP under an action |
//! | Python | error page | `flask.app::Flask.handle_exception` | answers a block with a 403 page, a redirect with a 303 |
//! | Python | SDK track / identify / auth / signup | `sqreen.sdk.events::_track`, `sqreen.sdk.auth::_identify`, `_auth_track`, `_signup_track` | records SDK calls and the `sdk-login-*`, `sdk-signup` metrics |
//! | Python | user security responses | `sqreen.sdk.auth::_identify` | blocks or redirects a user under an action |
//! | Node.js | error page | `sqreen` `dropRequest:answer` | answers a block with a 403 page |
//! | Node.js | auth metrics | `sqreen-sdk` `auth:auth_track` | counts `sdk-login-success` / `sdk-login-fail` |
//!
//! The Python agent ignores what a callback returns unless its rule says
//! `"block": true`: the security responses and the error page say so.
//!
//! The metrics these rules define have a period equal to the server's
//! heartbeat delay, so that a failed login reaches the playbooks within two
//! heartbeats. The rules are **unsigned**: Sqreen signed its rules with a
//! private key this server does not have, so the agents must run with
//! `SQREEN_RULES_SIGNATURE=false`. No WAF or attack-detection rule is
//! served: those were Sqreen's own content.

use serde_json::{Value, json};
use sqreen_protocol::answers::{Features, RulespackAnswer};
use sqreen_protocol::metric_stores;

/// Which historical agent speaks, from its login `agent_type` or its
/// `User-Agent` (`sqreen-python/1.27.4`, `sqreen-nodejs/2.0.2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// The Python agent.
    Python,
    /// The Node.js agent.
    Node,
    /// Ours, the Go agent, or anything else: no rulespack.
    Other,
}

impl AgentKind {
    /// From a login body's `agent_type`.
    pub fn from_agent_type(agent_type: &str) -> Self {
        match agent_type {
            "python" => Self::Python,
            "nodejs" => Self::Node,
            _ => Self::Other,
        }
    }

    /// From a `User-Agent` header.
    pub fn from_user_agent(user_agent: &str) -> Self {
        if user_agent.starts_with("sqreen-python/") {
            Self::Python
        } else if user_agent.starts_with("sqreen-nodejs/") {
            Self::Node
        } else {
            Self::Other
        }
    }
}

/// The rulespack's id: it changes with the rules, which depend on the
/// server's version and its heartbeat delay.
pub fn pack_id(kind: AgentKind, heartbeat_delay_s: u64) -> String {
    let agent = match kind {
        AgentKind::Python => "python",
        AgentKind::Node => "nodejs",
        AgentKind::Other => "none",
    };
    format!(
        "sqreen-server-{}-{agent}-{heartbeat_delay_s}s",
        env!("CARGO_PKG_VERSION")
    )
}

/// The `Sum` metric definitions of `names`, over one heartbeat.
fn sums(names: &[&str], period: u64) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "kind": "Sum", "period": period}))
            .collect(),
    )
}

/// The rules for `kind` (empty for [`AgentKind::Other`]).
pub fn rules(kind: AgentKind, heartbeat_delay_s: u64) -> Vec<Value> {
    let period = heartbeat_delay_s.max(1);
    let block_page = json!({"values": [{"type": "custom_error_page", "status_code": 403}]});
    match kind {
        AgentKind::Python => vec![
            json!({"name": "sqreen-server.flask.request_context",
                "hookpoint": {"klass": "flask.app::Flask", "method": "full_dispatch_request",
                              "strategy": "flask", "callback_class": "RecordRequestContextFlask"},
                "priority": 10}),
            json!({"name": "sqreen-server.flask.ip_security_responses",
                "hookpoint": {"klass": "flask.app::Flask", "method": "preprocess_request",
                              "callback_class": "SecurityResponsesIP"},
                "block": true, "priority": 10}),
            json!({"name": "sqreen-server.flask.error_page",
                "hookpoint": {"klass": "flask.app::Flask", "method": "handle_exception",
                              "callback_class": "SqreenErrorPageFlask"},
                "data": block_page, "block": true, "priority": 10}),
            json!({"name": "sqreen-server.sdk.track",
                "hookpoint": {"klass": "sqreen.sdk.events", "method": "_track",
                              "callback_class": "SDKTrackEvent"}}),
            json!({"name": "sqreen-server.sdk.identify",
                "hookpoint": {"klass": "sqreen.sdk.auth", "method": "_identify",
                              "callback_class": "SDKIdentify"}}),
            json!({"name": "sqreen-server.sdk.user_security_responses",
                "hookpoint": {"klass": "sqreen.sdk.auth", "method": "_identify",
                              "callback_class": "SecurityResponsesUser"},
                "block": true}),
            json!({"name": "sqreen-server.sdk.auth_track",
                "hookpoint": {"klass": "sqreen.sdk.auth", "method": "_auth_track",
                              "callback_class": "SDKAuthTrack"}}),
            json!({"name": "sqreen-server.sdk.auth_metrics",
                "hookpoint": {"klass": "sqreen.sdk.auth", "method": "_auth_track",
                              "callback_class": "SDKAuthMetrics"},
                "metrics": sums(&[metric_stores::LOGIN_SUCCESS, metric_stores::LOGIN_FAIL], period)}),
            json!({"name": "sqreen-server.sdk.signup_track",
                "hookpoint": {"klass": "sqreen.sdk.auth", "method": "_signup_track",
                              "callback_class": "SDKSignupTrack"}}),
            json!({"name": "sqreen-server.sdk.signup_metrics",
                "hookpoint": {"klass": "sqreen.sdk.auth", "method": "_signup_track",
                              "callback_class": "SDKSignupMetrics"},
                "metrics": sums(&[metric_stores::SIGNUP], period)}),
        ],
        AgentKind::Node => vec![
            json!({"name": "sqreen-server.block_page", "title": "block page",
                "hookpoint": {"klass": "sqreen", "method": "dropRequest:answer",
                              "callback_class": "DropRequestCB"},
                "data": block_page}),
            json!({"name": "sqreen-server.sdk.auth_metrics", "title": "auth metrics",
                "hookpoint": {"klass": "sqreen-sdk", "method": "auth:auth_track",
                              "callback_class": "AuthTrackCB"},
                "metrics": sums(&[metric_stores::LOGIN_SUCCESS, metric_stores::LOGIN_FAIL], period)}),
        ],
        AgentKind::Other => Vec::new(),
    }
}

/// The answer of `GET /sqreen/v0/rulespack` for `kind`.
pub fn rulespack(kind: AgentKind, heartbeat_delay_s: u64) -> RulespackAnswer {
    RulespackAnswer {
        pack_id: pack_id(kind, heartbeat_delay_s),
        rules: rules(kind, heartbeat_delay_s),
        status: true,
    }
}

/// The Python agent's batch deliverer adds a random delay drawn from
/// `0..=max_staleness / 10` with Python's `randint`, which fails unless
/// that bound is a whole number: its `max_staleness` is the heartbeat delay
/// rounded up to a multiple of 10 seconds.
pub fn python_max_staleness(heartbeat_delay_s: u64) -> u64 {
    heartbeat_delay_s.max(1).div_ceil(10).saturating_mul(10)
}

/// The login `features` for `kind`: the heartbeat delay for every agent;
/// for the historical ones, batching (else they post each record to
/// `/sqreen/v0/request_record`) and no signals (else they post to an
/// ingestion API this server does not serve).
pub fn login_features(kind: AgentKind, heartbeat_delay_s: u64) -> Features {
    let delay = Some(heartbeat_delay_s);
    match kind {
        AgentKind::Other => Features {
            heartbeat_delay: delay,
            max_staleness: delay,
            batch_gzip: Some(true),
            ..Features::default()
        },
        AgentKind::Python => Features {
            heartbeat_delay: delay,
            max_staleness: Some(python_max_staleness(heartbeat_delay_s)),
            batch_size: Some(100),
            use_signals: Some(false),
            call_counts_metrics_period: Some(60),
            whitelisted_metric: Some(false),
            ..Features::default()
        },
        // Only the features the Node.js agent knows: it reports any other
        // name as an exception.
        AgentKind::Node => Features {
            heartbeat_delay: delay,
            max_staleness: delay,
            batch_size: Some(100),
            use_signals: Some(false),
            ..Features::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metric periods follow the heartbeat delay; each rule names a class
    /// and a hookpoint.
    #[test]
    fn rules_follow_the_heartbeat() {
        for kind in [AgentKind::Python, AgentKind::Node] {
            let rules = rules(kind, 5);
            assert!(!rules.is_empty());
            for rule in &rules {
                assert!(rule["name"].is_string());
                assert!(rule["hookpoint"]["klass"].is_string());
                assert!(rule["hookpoint"]["callback_class"].is_string());
                if let Some(metrics) = rule["metrics"].as_array() {
                    assert!(metrics.iter().all(|m| m["period"] == 5));
                }
            }
        }
        assert!(rules(AgentKind::Other, 5).is_empty());
        assert_ne!(
            pack_id(AgentKind::Python, 5),
            pack_id(AgentKind::Python, 60)
        );
    }

    /// The Python agent's staleness bound is a multiple of 10.
    #[test]
    fn python_staleness_is_a_multiple_of_ten() {
        assert_eq!(python_max_staleness(5), 10);
        assert_eq!(python_max_staleness(10), 10);
        assert_eq!(python_max_staleness(61), 70);
        assert_eq!(python_max_staleness(0), 10);
    }

    /// Agents are told apart by type or user agent.
    #[test]
    fn agent_kinds() {
        assert_eq!(AgentKind::from_agent_type("python"), AgentKind::Python);
        assert_eq!(AgentKind::from_agent_type("nodejs"), AgentKind::Node);
        assert_eq!(AgentKind::from_agent_type("rust"), AgentKind::Other);
        assert_eq!(
            AgentKind::from_user_agent("sqreen-python/1.27.4"),
            AgentKind::Python
        );
        assert_eq!(
            AgentKind::from_user_agent("sqreen-nodejs/2.0.2"),
            AgentKind::Node
        );
    }
}
