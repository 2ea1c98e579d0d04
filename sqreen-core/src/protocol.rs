//! The wire types of the agent ⇄ backend protocol (`docs/PROTOCOL.md`).
//!
//! Requests are serialised from these types. Answers are parsed leniently:
//! a backend is an untrusted peer, so an odd field (a negative delay, a
//! string where a number belongs, an unknown action) is skipped and counted
//! rather than failing the whole answer.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Path of the login call.
pub const LOGIN_PATH: &str = sqreen_protocol::paths::LOGIN;
/// Path of the heartbeat call.
pub const BEAT_PATH: &str = sqreen_protocol::paths::BEAT;
/// Path of the batch call.
pub const BATCH_PATH: &str = sqreen_protocol::paths::BATCH;
/// Path of the action pack call.
pub const ACTIONSPACK_PATH: &str = sqreen_protocol::paths::ACTIONSPACK;
/// Path of the logout call.
pub const LOGOUT_PATH: &str = sqreen_protocol::paths::LOGOUT;

/// The `version` of the `request_record` events this agent sends.
pub const REQUEST_RECORD_VERSION: &str = sqreen_protocol::REQUEST_RECORD_VERSION;

/// RFC 3339 UTC with millisecond precision, as the protocol wants.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Body of `POST /sqreen/v1/app-login`.
#[derive(Debug, Serialize)]
pub struct LoginRequest {
    /// Always `"rust"`.
    pub agent_type: &'static str,
    /// This crate's version.
    pub agent_version: &'static str,
    /// `<arch>-<os>`.
    pub os_type: String,
    /// The machine's host name.
    pub hostname: String,
    /// The Rust version the agent was built for (its `rust-version`).
    pub runtime_version: &'static str,
    /// The web framework the adapter reported, if any.
    pub framework_type: String,
    /// The framework's version, if known.
    pub framework_version: String,
    /// Deployment environment (empty when unknown).
    pub environment: String,
    /// Free-form facts about the process.
    pub various_infos: VariousInfos,
}

/// The `various_infos` of a login.
#[derive(Debug, Serialize)]
pub struct VariousInfos {
    /// When the agent started.
    pub time: String,
    /// The process id.
    pub pid: u32,
    /// The application name.
    pub name: String,
}

/// Answer to a login.
#[derive(Debug, Deserialize)]
pub struct LoginResponse {
    /// `false` means the login was refused.
    #[serde(default)]
    pub status: bool,
    /// The session to quote in `X-Session-Key`.
    #[serde(default)]
    pub session_id: String,
    /// Why a login was refused.
    #[serde(default, deserialize_with = "lenient_string")]
    pub error: String,
    /// Commands to execute right away.
    #[serde(default, deserialize_with = "lenient_list")]
    pub commands: Vec<Value>,
    /// Settings that override the agent's defaults.
    #[serde(default, deserialize_with = "lenient_features")]
    pub features: Features,
    /// The initial action set.
    #[serde(default, deserialize_with = "lenient_list")]
    pub actions: Vec<Value>,
}

/// Settings the backend pushes at login; zero or absent keeps the default.
#[derive(Debug, Default, Deserialize)]
pub struct Features {
    /// Seconds between heartbeats.
    #[serde(default, deserialize_with = "positive_u64")]
    pub heartbeat_delay: Option<u64>,
    /// Events per batch.
    #[serde(default, deserialize_with = "positive_u64")]
    pub batch_size: Option<u64>,
    /// Seconds an event may wait before its batch is sent.
    #[serde(default, deserialize_with = "positive_u64")]
    pub max_staleness: Option<u64>,
    /// Request records the local queue holds.
    #[serde(default, deserialize_with = "positive_u64")]
    pub event_queue_length: Option<u64>,
    /// The backend accepts gzip batch bodies (`Content-Encoding: gzip`); a
    /// `sqreen-server` extension, absent from the historical protocol.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub batch_gzip: bool,
}

/// A command from the backend.
#[derive(Debug, Clone, Deserialize)]
pub struct Command {
    /// What to do.
    pub name: String,
    /// The id to report the result under.
    #[serde(default, deserialize_with = "lenient_string")]
    pub uuid: String,
    /// Arguments.
    #[serde(default, deserialize_with = "lenient_list")]
    pub params: Vec<Value>,
}

/// The outcome of a command, reported in the next heartbeat.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CommandResult {
    /// Whether the command succeeded.
    pub status: bool,
    /// What it said.
    pub output: String,
}

/// One metric store sent with a heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Store name (`sdk-login-success`, `sdk-login-fail`, `sdk-signup`).
    pub name: &'static str,
    /// Start of the period.
    pub start: String,
    /// End of the period.
    pub finish: String,
    /// Count per key.
    pub observation: BTreeMap<String, u64>,
}

/// Body of `POST /sqreen/v1/app-beat`.
#[derive(Debug, Serialize)]
pub struct BeatRequest<'a> {
    /// Results of the commands executed since the last acknowledged beat.
    pub command_results: &'a BTreeMap<String, CommandResult>,
    /// Metric stores of the period.
    pub metrics: &'a [Metric],
}

/// Answer to a heartbeat.
#[derive(Debug, Deserialize)]
pub struct BeatResponse {
    /// Commands to execute.
    #[serde(default, deserialize_with = "lenient_list")]
    pub commands: Vec<Value>,
}

/// Answer to `GET /sqreen/v0/actionspack`.
#[derive(Debug, Deserialize)]
pub struct ActionsPack {
    /// The whole new action set.
    #[serde(default, deserialize_with = "lenient_list")]
    pub actions: Vec<Value>,
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn lenient_features<'de, D: Deserializer<'de>>(d: D) -> Result<Features, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(d)?).unwrap_or_default())
}

fn lenient_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items,
        _ => Vec::new(),
    })
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(matches!(Value::deserialize(d)?, Value::Bool(true)))
}

fn positive_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 1.0).map(|f| f as u64))
            .filter(|v| *v > 0),
        _ => None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Hostile feature values (negative, strings, zero) are ignored, not fatal.
    #[test]
    fn features_parse_leniently() {
        let login: LoginResponse = serde_json::from_str(
            r#"{"status":true,"session_id":"s","features":{"heartbeat_delay":-3,"batch_size":"x","max_staleness":0,"event_queue_length":50}}"#,
        )
        .unwrap();
        assert_eq!(login.features.heartbeat_delay, None);
        assert_eq!(login.features.batch_size, None);
        assert_eq!(login.features.max_staleness, None);
        assert_eq!(login.features.event_queue_length, Some(50));
    }

    /// A login answer with odd shapes for lists still parses.
    #[test]
    fn lists_that_are_not_lists_become_empty() {
        let login: LoginResponse = serde_json::from_str(
            r#"{"status":true,"commands":{},"actions":"no","error":null,"features":null}"#,
        )
        .unwrap();
        assert!(login.commands.is_empty());
        assert!(login.actions.is_empty());
        assert_eq!(login.error, "");
    }

    /// Timestamps are RFC 3339 UTC with milliseconds.
    #[test]
    fn time_format_has_millis() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_790_000_000_123);
        assert_eq!(format_time(t), "2026-09-21T14:13:20.123Z");
    }
}
