//! The contract between sqreen agents and a backend: the paths of the
//! protocol's calls, the names both sides must spell alike (record
//! version, metric stores, actions, commands) and the limits both sides
//! keep, written once; and the backend's answers as types ([`answers`]).
//! `docs/PROTOCOL.md` describes the bodies.
//!
//! The agent (`sqreen-core`) never sends more than these limits allow, and
//! `sqreen-server` accepts everything within them: a test in
//! `sqreen-server` feeds the agent's largest legal output to the server's
//! decoders. A backend answers within [`limits::MAX_ACTIONS`] and
//! [`limits::MAX_ANSWER_BYTES`], which the agent enforces on its side.
//!
//! ```
//! use sqreen_protocol::limits;
//! assert!(limits::AGENT_BATCH_BYTES <= limits::MAX_BATCH_BYTES);
//! assert!(limits::MAX_METRIC_KEYS_PER_STORE <= limits::MAX_BATCH_EVENTS);
//! ```

/// The paths of the protocol's calls, relative to the backend's URL.
pub mod paths {
    /// Login (`POST`): token in, session out.
    pub const LOGIN: &str = "/sqreen/v1/app-login";
    /// Heartbeat (`POST`): metrics and command results in, commands out.
    pub const BEAT: &str = "/sqreen/v1/app-beat";
    /// Batch of request records (`POST`).
    pub const BATCH: &str = "/sqreen/v0/batch";
    /// The live security actions (`GET`).
    pub const ACTIONSPACK: &str = "/sqreen/v0/actionspack";
    /// Logout (`GET` or `POST`).
    pub const LOGOUT: &str = "/sqreen/v0/app-logout";

    // The routes below serve the historical Python and Node.js agents
    // (docs/PROTOCOL.md, "Variants"); ours uses none of them.

    /// Reachability check (`GET`, no credential): the Python agent pings
    /// its URLs before choosing them.
    pub const PING: &str = "/ping";
    /// The rules of the agent's callbacks (`GET`).
    pub const RULESPACK: &str = "/sqreen/v0/rulespack";
    /// Metric stores outside a heartbeat (`POST`, the Python agent at exit).
    pub const METRICS: &str = "/sqreen/v0/metrics";
    /// One request record when batching is off (`POST`).
    pub const REQUEST_RECORD: &str = "/sqreen/v0/request_record";
    /// An agent's own exception (`POST`).
    pub const SQREEN_EXCEPTION: &str = "/sqreen/v0/sqreen_exception";
    /// An agent's exception before login (`POST`, token credential).
    pub const APP_SQREEN_EXCEPTION: &str = "/sqreen/v0/app_sqreen_exception";
    /// The application's dependencies (`POST`).
    pub const BUNDLE: &str = "/sqreen/v0/bundle";
    /// An agent message (`POST`, Node.js).
    pub const AGENT_MESSAGE: &str = "/sqreen/v0/agent_message";
    /// An attack outside a batch (`POST`).
    pub const ATTACK: &str = "/sqreen/v0/attack";
    /// Command results outside a heartbeat (`POST`, Node.js).
    pub const COMMANDS: &str = "/sqreen/v0/commands";
    /// A data point (`POST`, Node.js).
    pub const DATA_POINT: &str = "/sqreen/v0/data_point";
}

/// The version of the request records this protocol describes (each
/// record's `version`).
pub const REQUEST_RECORD_VERSION: &str = "20171208";

/// The metric stores of user actions, sent in heartbeats (`metrics[].name`):
/// their keys are `{"keys": [[key, value], …], "ip": "…"}` as JSON text,
/// and their values counts.
pub mod metric_stores {
    /// Successful logins (`track_auth(true, …)`).
    pub const LOGIN_SUCCESS: &str = "sdk-login-success";
    /// Failed logins (`track_auth(false, …)`).
    pub const LOGIN_FAIL: &str = "sdk-login-fail";
    /// Signups (`track_signup`).
    pub const SIGNUP: &str = "sdk-signup";
    /// Every store above.
    pub const ALL: [&str; 3] = [LOGIN_FAIL, LOGIN_SUCCESS, SIGNUP];
}

/// The security actions of a login answer or an action pack (`action`).
pub mod actions {
    /// Block requests from IP networks (`parameters.ip_cidr`).
    pub const BLOCK_IP: &str = "block_ip";
    /// Redirect requests from IP networks (`parameters.ip_cidr`, `url`).
    pub const REDIRECT_IP: &str = "redirect_ip";
    /// Block requests of users (`parameters.users`).
    pub const BLOCK_USER: &str = "block_user";
    /// Redirect requests of users (`parameters.users`, `url`).
    pub const REDIRECT_USER: &str = "redirect_user";
}

/// The commands a heartbeat answer may carry (`commands[].name`).
pub mod commands {
    /// Fetch the action pack again.
    pub const ACTIONS_RELOAD: &str = "actions_reload";
    /// Turn the agent's instrumentation on: `sqreen-server` sends it at
    /// login to the historical Python and Node.js agents (the Node.js agent
    /// stays off until it gets it). Ours takes it too.
    pub const INSTRUMENTATION_ENABLE: &str = "instrumentation_enable";
}

pub mod answers;

pub mod limits {
    //! The limits both sides keep.
    //!
    //! | limit | value | agent | server |
    //! | --- | --- | --- | --- |
    //! | [`MAX_BATCH_BYTES`] | 32 MiB | never sends more ([`AGENT_BATCH_BYTES`]) | default `--max-batch-bytes` |
    //! | [`MAX_BATCH_EVENTS`] | 10 000 | tracks per batch | 400 above |
    //! | [`MAX_TRACKS_PER_RECORD`] | 100 | drops the rest, counted | 400 above |
    //! | [`MAX_BEAT_BYTES`] | 1 MiB | splits larger heartbeats | 413 above |
    //! | [`MAX_METRIC_STORES`] | 100 per heartbeat | splits | 400 above |
    //! | [`MAX_METRIC_KEYS_PER_STORE`] | 10 000 | folds the smallest keys | 400 above |
    //! | [`MAX_ACTIONS`] | 100 000 per answer | loads the first ones, counted | sends at most |
    //! | [`MAX_ANSWER_BYTES`] | 32 MiB | refuses larger answers | — |
    //! | [`MAX_RECORD_BYTES`] | 8 MiB per record | drops a larger record, counted | — |
    //! | [`MAX_CONTEXT_BYTES`] | 1 MiB per `request` / `response` | leaves the parameters out above | 400 above |
    //! | [`MAX_CONTEXT_DEPTH`] | 32 levels | leaves a deeper JSON body out | 400 above |
    //! | [`MAX_USER_IDENTIFIERS_BYTES`] | 2 KiB of identifiers as JSON | sends `{}` above, counted | 400 above |

    /// Largest batch body a backend must accept (the server's default
    /// limit).
    pub const MAX_BATCH_BYTES: usize = 32 << 20;
    /// Largest batch body the agent sends: a fraction of
    /// [`MAX_BATCH_BYTES`], so that one batch stays a short request.
    pub const AGENT_BATCH_BYTES: usize = 4 << 20;
    /// Most events in a batch, counting each `track` of each record.
    pub const MAX_BATCH_EVENTS: usize = 10_000;
    /// Most `track` entries in one request record.
    pub const MAX_TRACKS_PER_RECORD: usize = 100;
    /// Largest login, heartbeat or logout body.
    pub const MAX_BEAT_BYTES: usize = 1 << 20;
    /// Most metric stores in one heartbeat.
    pub const MAX_METRIC_STORES: usize = 100;
    /// Most observation keys in one metric store.
    pub const MAX_METRIC_KEYS_PER_STORE: usize = 10_000;
    /// Most security actions in one answer (login or action pack).
    pub const MAX_ACTIONS: usize = 100_000;
    /// Largest answer a backend sends.
    pub const MAX_ANSWER_BYTES: usize = 32 << 20;
    /// Largest request record the agent sends, as JSON text (a batch of one
    /// such record stays within [`MAX_BATCH_BYTES`]).
    pub const MAX_RECORD_BYTES: usize = 8 << 20;
    /// Largest `request` (or `response`) of a record, as JSON text.
    pub const MAX_CONTEXT_BYTES: usize = 1 << 20;
    /// Deepest nesting of a record's `request` (or `response`).
    pub const MAX_CONTEXT_DEPTH: usize = 32;
    /// Largest user identifier map of an event, as JSON text.
    pub const MAX_USER_IDENTIFIERS_BYTES: usize = 2048;
}
