//! The SDK surface handlers use: [`Sqreen`], its event builder
//! [`TrackEvent`], and [`SqreenUser`] for user-scoped calls.
//!
//! Shaped after the Go SDK's `sdk.FromContext(ctx).TrackEvent("my.event")`:
//! an adapter hands each handler a [`Sqreen`] handle bound to the current
//! request; every call records an entry in that request's record. A handle
//! from a request the agent does not record (agent off, passlisted path, no
//! middleware) is *disabled*: every call is a cheap no-op and never panics.
//!
//! Input limits, enforced with a counted, rate-limited warning:
//!
//! | what | limit | beyond it |
//! |---|---|---|
//! | event name | 1 to 256 bytes | empty: the event is dropped; longer: cut |
//! | properties per event | 16 | the extra ones are dropped |
//! | user identifiers per map | 16 | the extra ones are dropped |
//! | key length | 256 bytes | cut |
//! | string value length | 4 096 bytes | cut |

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use compact_str::CompactString;

use crate::actions::SecurityResponse;
use crate::model::{Entry, Properties, PropertyValue, UserIds};
use crate::record::{RecordInner, RequestRecord};
use crate::stats::bump;

const MAX_NAME_LEN: usize = 256;
const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 4096;
const MAX_PROPERTIES: usize = 16;

/// The error a handler gets when a security response applies to its user.
///
/// Returned by [`SqreenUser::identify`]. Every adapter turns it into the
/// response it carries (a block page with the configured status, or a 303
/// redirect), so `?` in a handler is all it takes.
///
/// ```
/// use sqreen_core::{Blocked, SecurityResponse};
/// fn status_of(err: &Blocked) -> u16 { err.response().status() }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    response: SecurityResponse,
}

impl Blocked {
    pub(crate) fn new(response: SecurityResponse) -> Self {
        Self { response }
    }

    /// The response to send instead of the handler's.
    pub fn response(&self) -> &SecurityResponse {
        &self.response
    }

    /// Takes the response out.
    pub fn into_response(self) -> SecurityResponse {
        self.response
    }
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.response {
            SecurityResponse::Block { .. } => f.write_str("user blocked by a security response"),
            SecurityResponse::Redirect { .. } => {
                f.write_str("user redirected by a security response")
            }
        }
    }
}

impl std::error::Error for Blocked {}

/// The handle a request handler tracks events through.
///
/// Cheap to clone (one reference count), `Send + Sync`, and usable from any
/// task the handler spawns while the request runs. Adapters provide it as an
/// extractor / request guard / filter; [`Sqreen::disabled`] (also its
/// `Default`) is the inert handle used when nothing records the request.
///
/// ```
/// use sqreen_core::Sqreen;
/// let sq = Sqreen::disabled(); // what a handler gets without the middleware
/// sq.track_event("payment.failed").with_properties([("amount", 42)]);
/// let user = sq.for_user([("uid", "my-uid")]);
/// user.track_auth_success();
/// assert!(user.identify().is_ok());
/// ```
#[derive(Clone, Default)]
pub struct Sqreen {
    record: Option<Arc<RecordInner>>,
}

impl std::fmt::Debug for Sqreen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqreen")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Drop for Sqreen {
    /// The last reference to a record is usually the adapter's or the agent
    /// thread's, which recycle it; when it is a handle (a framework keeps
    /// the handle in a request-local cache that outlives the response), the
    /// handle puts the record back in the agent's pool. A handle can only
    /// be the last once its request is closed: the adapter holds the record
    /// until then.
    fn drop(&mut self) {
        if let Some(record) = self.record.take()
            && Arc::strong_count(&record) == 1
            && let Some(home) = record.home.upgrade()
        {
            home.recycle(record);
        }
    }
}

impl Sqreen {
    /// The handle of an open record (of none: a disabled handle).
    pub(crate) fn from_record(record: &RequestRecord) -> Self {
        Self {
            record: record.share(),
        }
    }

    /// A handle that records nothing.
    pub fn disabled() -> Self {
        Self { record: None }
    }

    /// True when calls on this handle are recorded.
    pub fn is_enabled(&self) -> bool {
        self.record.is_some()
    }

    /// Starts a custom event; it is recorded when the returned builder is
    /// dropped, so a bare statement works.
    ///
    /// ```
    /// # let sq = sqreen_core::Sqreen::disabled();
    /// sq.track_event("user.invited");
    /// sq.track_event("payment.failed")
    ///     .with_properties([("currency", "eur")])
    ///     .with_timestamp(std::time::SystemTime::now());
    /// ```
    pub fn track_event(&self, name: impl AsRef<str>) -> TrackEvent<'_> {
        TrackEvent::new(self.record.as_deref(), name.as_ref(), None)
    }

    /// User-scoped calls for the user with these identifiers
    /// (`[("uid", "42")]`, `[("username", "bob"), ("org", "acme")]`).
    pub fn for_user<I, K, V>(&self, identifiers: I) -> SqreenUser
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let ids = match &self.record {
            Some(record) => user_ids(record, identifiers),
            None => Arc::from(Vec::new()),
        };
        SqreenUser {
            sq: self.clone(),
            ids,
            detached: None,
        }
    }
}

/// Counts and warns (rate-limited) about invalid SDK input.
fn invalid_input(record: &RecordInner, what: &'static str) {
    let Some(home) = record.home.upgrade() else {
        return;
    };
    bump(&home.counters.invalid_sdk_input, 1);
    if home.sdk_warnings.allow() {
        tracing::warn!(
            target: "sqreen::sdk",
            event = "sdk.invalid_input",
            problem = what,
            "invalid SDK input was truncated or dropped (further warnings suppressed for 10 s)"
        );
    }
}

fn bounded(record: &RecordInner, s: &str, max: usize, what: &'static str) -> CompactString {
    if s.len() <= max {
        return CompactString::new(s);
    }
    invalid_input(record, what);
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    CompactString::new(&s[..end])
}

fn bounded_value(record: &RecordInner, value: PropertyValue) -> PropertyValue {
    match value {
        PropertyValue::String(s) if s.len() > MAX_VALUE_LEN => {
            PropertyValue::String(bounded(record, &s, MAX_VALUE_LEN, "value too long"))
        }
        other => other,
    }
}

fn user_ids<I, K, V>(record: &RecordInner, identifiers: I) -> UserIds
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut ids: Vec<(CompactString, CompactString)> = Vec::new();
    for (i, (k, v)) in identifiers.into_iter().enumerate() {
        if i == MAX_PROPERTIES {
            invalid_input(record, "too many user identifiers");
            break;
        }
        ids.push((
            bounded(record, k.as_ref(), MAX_KEY_LEN, "key too long"),
            bounded(record, v.as_ref(), MAX_VALUE_LEN, "value too long"),
        ));
    }
    ids.sort_unstable();
    ids.dedup_by(|a, b| a.0 == b.0);
    Arc::from(ids)
}

/// A custom event being built; recorded when dropped.
///
/// Each `with_*` consumes and returns the builder. On a disabled handle every
/// method returns at once.
pub struct TrackEvent<'a> {
    target: Target<'a>,
    name: CompactString,
    properties: Properties,
    user_identifiers: Option<UserIds>,
    timestamp: Option<SystemTime>,
}

impl std::fmt::Debug for TrackEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackEvent")
            .field("name", &self.name)
            .field("properties", &self.properties.len())
            .finish_non_exhaustive()
    }
}

/// Where a [`TrackEvent`] goes.
enum Target<'a> {
    /// Nowhere: a disabled handle, or an invalid name.
    Off,
    /// A request's record, which its adapter closes.
    Request(&'a RecordInner),
    /// A record of its own, closed and queued when the builder is dropped
    /// ([`Agent::track_event`](crate::Agent::track_event)).
    Detached(RequestRecord),
}

impl<'a> TrackEvent<'a> {
    fn new(record: Option<&'a RecordInner>, name: &str, user: Option<UserIds>) -> Self {
        let (target, name) = match record {
            None => (Target::Off, CompactString::default()),
            Some(r) if name.is_empty() => {
                invalid_input(r, "empty event name");
                (Target::Off, CompactString::default())
            }
            Some(r) => (
                Target::Request(r),
                bounded(r, name, MAX_NAME_LEN, "event name too long"),
            ),
        };
        Self {
            target,
            name,
            properties: Properties::new(),
            user_identifiers: user,
            timestamp: None,
        }
    }
}

impl Target<'_> {
    /// The record the event goes to, if any.
    #[inline]
    fn record(&self) -> Option<&RecordInner> {
        match self {
            Target::Off => None,
            Target::Request(r) => Some(r),
            Target::Detached(r) => r.inner(),
        }
    }
}

impl TrackEvent<'static> {
    /// An event outside any request, in `record` of its own.
    pub(crate) fn detached(record: Option<RequestRecord>, name: &str) -> Self {
        let mut event = TrackEvent::new(None, "", None);
        let Some(record) = record else {
            return event;
        };
        let Some(inner) = record.inner() else {
            return event;
        };
        if name.is_empty() {
            invalid_input(inner, "empty event name");
            return event;
        }
        event.name = bounded(inner, name, MAX_NAME_LEN, "event name too long");
        event.target = Target::Detached(record);
        event
    }
}

impl<'a> TrackEvent<'a> {
    /// Adds properties: string keys with scalar values
    /// (`[("amount", 42)]`, `[("currency", "eur")]`). At most 16 per event.
    pub fn with_properties<I, K, V>(mut self, properties: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<PropertyValue>,
    {
        let properties = properties.into_iter();
        let Some(record) = self.target.record() else {
            return self;
        };
        if self.properties.is_empty() {
            self.properties
                .reserve(properties.size_hint().0.min(MAX_PROPERTIES));
        }
        for (k, v) in properties {
            if self.properties.len() == MAX_PROPERTIES {
                invalid_input(record, "more than 16 properties");
                break;
            }
            self.properties.push((
                bounded(record, k.as_ref(), MAX_KEY_LEN, "key too long"),
                bounded_value(record, v.into()),
            ));
        }
        self
    }

    /// Sets when the event happened (default: when it was recorded).
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        if self.target.record().is_some() {
            self.timestamp = Some(timestamp);
        }
        self
    }

    /// Attaches the user the event is about.
    pub fn with_user_identifiers<I, K, V>(mut self, identifiers: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        if let Some(record) = self.target.record() {
            self.user_identifiers = Some(user_ids(record, identifiers));
        }
        self
    }
}

impl Drop for TrackEvent<'_> {
    /// Records the event; a detached record is then closed and queued (when
    /// the `target` field drops, right after).
    fn drop(&mut self) {
        if let Some(record) = self.target.record() {
            record.push(Entry::Track {
                time: SystemTime::now(),
                name: std::mem::take(&mut self.name),
                properties: std::mem::take(&mut self.properties),
                user_identifiers: self.user_identifiers.take(),
                timestamp: self.timestamp,
            });
        }
    }
}

/// User-scoped SDK calls, from [`Sqreen::for_user`] (in a request) or
/// [`Agent::for_user`](crate::Agent::for_user) (outside any).
#[derive(Clone)]
pub struct SqreenUser {
    sq: Sqreen,
    ids: UserIds,
    /// Outside a request: the record the calls go to, closed and queued
    /// when the last clone is dropped (after `sq`, declared before it).
    detached: Option<Arc<RequestRecord>>,
}

impl std::fmt::Debug for SqreenUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Identifiers are personal data: only their keys are shown.
        f.debug_struct("SqreenUser")
            .field("keys", &self.ids.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl SqreenUser {
    /// Calls outside any request, recorded in `record` of their own.
    pub(crate) fn detached<I, K, V>(record: Option<RequestRecord>, identifiers: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let Some(record) = record else {
            return Sqreen::disabled().for_user(identifiers);
        };
        let sq = Sqreen::from_record(&record);
        let mut user = sq.for_user(identifiers);
        user.detached = Some(Arc::new(record));
        user
    }

    /// A custom event about this user (its `user_identifiers` are set).
    pub fn track_event(&self, name: impl AsRef<str>) -> TrackEvent<'_> {
        TrackEvent::new(
            self.sq.record.as_deref(),
            name.as_ref(),
            Some(Arc::clone(&self.ids)),
        )
    }

    /// Counts a login attempt of this user from this client IP
    /// (`sdk-login-success` or `sdk-login-fail`).
    pub fn track_auth(&self, success: bool) {
        if let Some(record) = &self.sq.record {
            record.push(Entry::Auth {
                success,
                ids: Arc::clone(&self.ids),
            });
        }
    }

    /// Same as `track_auth(true)`.
    pub fn track_auth_success(&self) {
        self.track_auth(true);
    }

    /// Same as `track_auth(false)`.
    pub fn track_auth_failure(&self) {
        self.track_auth(false);
    }

    /// Counts a signup of this user from this client IP (`sdk-signup`).
    pub fn track_signup(&self) {
        if let Some(record) = &self.sq.record {
            record.push(Entry::Signup {
                ids: Arc::clone(&self.ids),
            });
        }
    }

    /// Associates the request with this user, and applies the security
    /// responses that target them.
    ///
    /// # Errors
    /// [`Blocked`] when a live block or redirect action covers exactly this
    /// identifier map; the enforcement is recorded as a
    /// `sq.action.block_user` / `sq.action.redirect_user` event.
    pub fn identify(&self) -> Result<(), Blocked> {
        let Some(record) = &self.sq.record else {
            return Ok(());
        };
        record.push(Entry::Identify {
            time: SystemTime::now(),
            ids: Arc::clone(&self.ids),
        });
        let Some(home) = record.home.upgrade() else {
            return Ok(());
        };
        let state = home.runtime.load();
        if !state.actions.has_user_actions() {
            return Ok(());
        }
        let ids = self.ids.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let Some(action) = state.actions.match_user(ids, Instant::now()) else {
            return Ok(());
        };
        bump(&home.counters.actions_enforced, 1);
        let user = serde_json::Value::Object(
            self.ids
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect(),
        );
        record.push(Entry::Track {
            time: SystemTime::now(),
            name: CompactString::const_new(action.kind.event_name()),
            properties: smallvec::smallvec![
                (
                    CompactString::const_new("action_id"),
                    PropertyValue::from(action.id.as_str()),
                ),
                (
                    CompactString::const_new("user"),
                    PropertyValue::from(user.to_string()),
                ),
            ],
            user_identifiers: Some(Arc::clone(&self.ids)),
            timestamp: None,
        });
        tracing::debug!(
            target: "sqreen::actions",
            event = "action.user",
            action_id = %action.id,
            action = action.kind.event_name(),
            "security response applied to an identified user"
        );
        match action.response(home.blocking_status) {
            Some(response) => Err(Blocked::new(response)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handle types cross threads, as handlers spawned on any executor need.
    #[test]
    fn handles_are_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Sqreen>();
        assert_send_sync::<SqreenUser>();
        assert_send_sync::<TrackEvent<'static>>();
        assert_send_sync::<Blocked>();
    }

    /// Every call on a disabled handle is a no-op that never fails.
    #[test]
    fn disabled_handle_is_inert() {
        let sq = Sqreen::disabled();
        assert!(!sq.is_enabled());
        sq.track_event("").with_properties([("k", 1)]);
        sq.track_event("x")
            .with_user_identifiers([("uid", "1")])
            .with_timestamp(SystemTime::now());
        let user = sq.for_user([("uid", "1")]);
        user.track_auth(true);
        user.track_auth_failure();
        user.track_signup();
        user.track_event("y");
        assert_eq!(user.identify(), Ok(()));
    }
}
