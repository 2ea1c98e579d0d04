//! The backend's answers to the agent, as types: what `sqreen-server`
//! serializes and what an agent may expect (docs/PROTOCOL.md).
//!
//! | call | answer |
//! | --- | --- |
//! | `POST /sqreen/v1/app-login` | [`LoginAnswer`] (its [`Features`], [`Command`]s, [`Action`]s) |
//! | `POST /sqreen/v1/app-beat` | [`BeatAnswer`] (its [`Command`]s) |
//! | `POST /sqreen/v0/batch` | [`BatchAnswer`] (its [`Refusal`]s) |
//! | `GET /sqreen/v0/actionspack` | [`ActionsPackAnswer`] (its [`Action`]s) |
//! | `GET /sqreen/v0/rulespack` | [`RulespackAnswer`] (the historical agents') |
//! | logout, ping and the other acknowledged calls | [`StatusAnswer`] |
//! | any refused call | [`ErrorAnswer`] |
//!
//! The JSON these types serialize to is the protocol's, byte for byte:
//! fields are declared in alphabetical order (the order in which
//! `sqreen-server` has always written them), and optional fields are left
//! out when absent, never written as `null`. Deserializing is strict on
//! types; an agent facing an untrusted backend parses more leniently, and
//! `sqreen-server`'s contract test checks that `sqreen-core`'s parser reads
//! these types' JSON with the same meaning.
//!
//! The answers that carry lists of actions, commands or features take their
//! element types as parameters, whose defaults are the protocol's: a test
//! backend can put hostile elements (any JSON) in the protocol's envelope.
//!
//! ```
//! use sqreen_protocol::answers::{Action, ActionKind, ActionParameters, ActionsPackAnswer};
//! let pack: ActionsPackAnswer = ActionsPackAnswer::new(vec![Action {
//!     action: ActionKind::BlockIp,
//!     action_id: "a1".into(),
//!     duration: Some(300),
//!     parameters: ActionParameters {
//!         ip_cidr: Some(vec!["81.2.69.160/32".into()]),
//!         ..ActionParameters::default()
//!     },
//!     send_response: true,
//! }]);
//! assert_eq!(
//!     serde_json::to_string(&pack).unwrap(),
//!     r#"{"actions":[{"action":"block_ip","action_id":"a1","duration":300,"parameters":{"ip_cidr":["81.2.69.160/32"]},"send_response":true}],"status":true}"#
//! );
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Answer to `POST /sqreen/v1/app-login`.
///
/// To the historical Python and Node.js agents, `sqreen-server` also sends
/// their rulespack ([`pack_id`](Self::pack_id), [`rules`](Self::rules)) and
/// an `instrumentation_enable` command; to others, neither.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginAnswer<A = Action, C = Command, F = Features> {
    /// The live security actions.
    #[serde(default = "Vec::new")]
    pub actions: Vec<A>,
    /// Commands to execute at once.
    #[serde(default = "Vec::new")]
    pub commands: Vec<C>,
    /// Why a login was refused (empty when it was not).
    #[serde(default)]
    pub error: String,
    /// Settings that override the agent's defaults.
    #[serde(default)]
    pub features: F,
    /// The rulespack's id (historical agents only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_id: Option<String>,
    /// The rulespack's rules (historical agents only; see
    /// [`RulespackAnswer`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Value>>,
    /// The session to quote in `X-Session-Key`.
    pub session_id: String,
    /// Whether the login succeeded.
    pub status: bool,
}

/// The `features` of a [`LoginAnswer`]: settings that override the agent's
/// defaults. An absent one (or 0) keeps the agent's configured default;
/// absent ones are left out of the JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// The backend accepts gzip batch bodies (`Content-Encoding: gzip`); a
    /// `sqreen-server` extension, absent from the historical protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_gzip: Option<bool>,
    /// Events per batch (the historical agents post each record alone
    /// without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u64>,
    /// Period of the Python agent's call count metrics, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_counts_metrics_period: Option<u64>,
    /// Request records the agent's local queue holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_queue_length: Option<u64>,
    /// Seconds between heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_delay: Option<u64>,
    /// Seconds an event may wait before its batch is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_staleness: Option<u64>,
    /// Whether the historical agents post signals to an ingestion API
    /// (`false` from `sqreen-server`, which does not serve one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_signals: Option<bool>,
    /// The Python agent's `whitelisted_metric` switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whitelisted_metric: Option<bool>,
}

/// A command of a [`LoginAnswer`] or a [`BeatAnswer`]: the agent executes
/// it and reports its result under [`uuid`](Self::uuid) in its next
/// heartbeat's `command_results`. The names `sqreen-server` sends are
/// [`crate::commands::ACTIONS_RELOAD`] and
/// [`crate::commands::INSTRUMENTATION_ENABLE`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// What to do.
    pub name: String,
    /// Its arguments (empty for the commands `sqreen-server` sends).
    #[serde(default)]
    pub params: Vec<Value>,
    /// The id its result is reported under.
    pub uuid: String,
}

impl Command {
    /// The command `name`, without arguments, reported under `uuid`.
    pub fn new(name: impl Into<String>, uuid: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
            uuid: uuid.into(),
        }
    }
}

/// Answer to `POST /sqreen/v1/app-beat`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BeatAnswer<C = Command> {
    /// Commands to execute.
    #[serde(default = "Vec::new")]
    pub commands: Vec<C>,
    /// Always `true` in a 2xx answer.
    pub status: bool,
}

/// Answer to `GET /sqreen/v0/actionspack`: the whole new action set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionsPackAnswer<A = Action> {
    /// The live security actions, which replace the agent's.
    #[serde(default = "Vec::new")]
    pub actions: Vec<A>,
    /// Always `true` in a 2xx answer.
    pub status: bool,
}

impl<A> ActionsPackAnswer<A> {
    /// A successful answer carrying `actions`.
    pub fn new(actions: Vec<A>) -> Self {
        Self {
            actions,
            status: true,
        }
    }
}

/// A security action, in a [`LoginAnswer`] or an [`ActionsPackAnswer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// What it does.
    pub action: ActionKind,
    /// Its id, quoted in the `sq.action.*` event the agent records when it
    /// fires.
    pub action_id: String,
    /// Seconds it lasts from when the agent receives it. Absent: until
    /// lifted (`sqreen-server` never sends `0`, which the Python agent reads
    /// as already expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// Whom it targets, and where a redirect goes.
    pub parameters: ActionParameters,
    /// `false`: a dry run (the agent records the enforcement and lets the
    /// request through).
    pub send_response: bool,
}

/// The kinds of security action, named on the wire as in
/// [`crate::actions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Block requests from IP networks ([`crate::actions::BLOCK_IP`]).
    BlockIp,
    /// Redirect requests from IP networks ([`crate::actions::REDIRECT_IP`]).
    RedirectIp,
    /// Block requests of users ([`crate::actions::BLOCK_USER`]).
    BlockUser,
    /// Redirect requests of users ([`crate::actions::REDIRECT_USER`]).
    RedirectUser,
}

impl ActionKind {
    /// Every kind.
    pub const ALL: [ActionKind; 4] = [
        Self::BlockIp,
        Self::RedirectIp,
        Self::BlockUser,
        Self::RedirectUser,
    ];

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlockIp => crate::actions::BLOCK_IP,
            Self::RedirectIp => crate::actions::REDIRECT_IP,
            Self::BlockUser => crate::actions::BLOCK_USER,
            Self::RedirectUser => crate::actions::REDIRECT_USER,
        }
    }

    /// The kind named `name` on the wire, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether it targets IP networks (else users).
    pub fn targets_ips(self) -> bool {
        matches!(self, Self::BlockIp | Self::RedirectIp)
    }

    /// Whether it redirects (then its parameters carry a `url`).
    pub fn redirects(self) -> bool {
        matches!(self, Self::RedirectIp | Self::RedirectUser)
    }
}

/// The `parameters` of an [`Action`]: `ip_cidr` for IP actions, `users`
/// for user actions, `url` for redirects. Absent ones are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionParameters {
    /// The networks of an IP action (`a.b.c.d/n`, `v6/n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_cidr: Option<Vec<String>>,
    /// Where a redirect sends the client (`http` or `https`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The users of a user action: each an identifier map, matched when an
    /// `identify` carries exactly that map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<BTreeMap<String, String>>>,
}

/// Answer to `POST /sqreen/v0/batch`: `{"status": true}`, plus the
/// refused events when some were invalid (the others are stored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAnswer {
    /// The first refused events, in batch order (at most 20 from
    /// `sqreen-server`); left out when none was refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refusal>,
    /// How many events were refused; left out when none was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused_count: u64,
    /// Always `true` in a 2xx answer.
    pub status: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One refused event of a [`BatchAnswer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Why it was refused.
    pub error: String,
    /// Its position in the batch.
    pub index: usize,
}

/// Answer to `GET /sqreen/v0/rulespack`, for the historical agents (an
/// empty `rules` for others). The rules are opaque here: docs/PROTOCOL.md,
/// "GET /sqreen/v0/rulespack", describes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RulespackAnswer {
    /// The rulespack's id.
    pub pack_id: String,
    /// Its rules.
    pub rules: Vec<Value>,
    /// Always `true`.
    pub status: bool,
}

/// The answer of the calls that answer nothing but success: logout, ping,
/// a batch without refusals, and the historical agents' reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// Always `true` (both historical agents refuse an answer without it).
    pub status: bool,
}

impl StatusAnswer {
    /// `{"status": true}`.
    pub const OK: StatusAnswer = StatusAnswer { status: true };
}

/// The body of an error answer (any non-2xx status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What went wrong.
    pub error: String,
    /// Always `false`.
    pub status: bool,
}

impl ErrorAnswer {
    /// A refusal saying `error`.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            status: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap_or_default()
    }

    /// Action kinds are named as in `crate::actions`, by serde too.
    #[test]
    fn action_kinds_are_named_alike() {
        for kind in ActionKind::ALL {
            assert_eq!(json(&kind), format!("\"{}\"", kind.as_str()));
            assert_eq!(ActionKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(ActionKind::from_name("block"), None);
    }

    /// Optional fields are left out, lists of a refused batch too.
    #[test]
    fn absent_fields_are_left_out() {
        assert_eq!(json(&Features::default()), "{}");
        assert_eq!(json(&ActionParameters::default()), "{}");
        let ok = BatchAnswer {
            status: true,
            ..BatchAnswer::default()
        };
        assert_eq!(json(&ok), r#"{"status":true}"#);
        assert_eq!(json(&StatusAnswer::OK), r#"{"status":true}"#);
        let refused = BatchAnswer {
            refused: vec![Refusal {
                error: "bad".into(),
                index: 3,
            }],
            refused_count: 7,
            status: true,
        };
        assert_eq!(
            json(&refused),
            r#"{"refused":[{"error":"bad","index":3}],"refused_count":7,"status":true}"#
        );
        assert_eq!(
            json(&ErrorAnswer::new("no")),
            r#"{"error":"no","status":false}"#
        );
    }

    /// A login answer reads back as written, and a minimal one (as a
    /// stub backend sends) reads with defaults.
    #[test]
    fn login_answers_round_trip() {
        let login: LoginAnswer = LoginAnswer {
            actions: Vec::new(),
            commands: vec![Command::new(crate::commands::ACTIONS_RELOAD, "u1")],
            error: String::new(),
            features: Features {
                heartbeat_delay: Some(60),
                ..Features::default()
            },
            pack_id: None,
            rules: None,
            session_id: "s".into(),
            status: true,
        };
        let text = json(&login);
        assert_eq!(
            text,
            r#"{"actions":[],"commands":[{"name":"actions_reload","params":[],"uuid":"u1"}],"error":"","features":{"heartbeat_delay":60},"session_id":"s","status":true}"#
        );
        let back: Result<LoginAnswer, _> = serde_json::from_str(&text);
        assert_eq!(back.ok(), Some(login));
        let minimal: Result<LoginAnswer, _> =
            serde_json::from_str(r#"{"status":true,"session_id":"s","features":{}}"#);
        assert!(minimal.is_ok_and(|m| m.actions.is_empty() && m.commands.is_empty()));
    }
}
