//! The plain data request records hold, shared by the layers above
//! `record`: property values, entries, user identifiers and the limits of
//! one record, plus [`RuntimeState`], what the request path checks requests
//! against. No behaviour beyond conversions; nothing here knows the agent.

use std::sync::Arc;
use std::time::SystemTime;

use compact_str::CompactString;
use ipnet::IpNet;
use smallvec::SmallVec;

use crate::actions::ActionStore;

/// A scalar property value: a string, a number or a boolean.
///
/// Anything that converts into a JSON scalar converts into it; a JSON array
/// or object becomes its JSON text, and `null` the string `"null"`.
///
/// ```
/// use sqreen_core::PropertyValue;
/// assert_eq!(PropertyValue::from(3), PropertyValue::Int(3));
/// assert_eq!(PropertyValue::from("eur"), PropertyValue::String("eur".into()));
/// assert_eq!(PropertyValue::from(serde_json::json!(true)), PropertyValue::Bool(true));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum PropertyValue {
    /// A string (short ones are stored inline, without allocating).
    String(CompactString),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `i64`.
    UInt(u64),
    /// A floating-point number (NaN and infinities are sent as `null`).
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl From<&str> for PropertyValue {
    fn from(s: &str) -> Self {
        Self::String(CompactString::new(s))
    }
}
impl From<&String> for PropertyValue {
    fn from(s: &String) -> Self {
        Self::String(CompactString::new(s))
    }
}
impl From<String> for PropertyValue {
    fn from(s: String) -> Self {
        Self::String(CompactString::from(s))
    }
}
impl From<CompactString> for PropertyValue {
    fn from(s: CompactString) -> Self {
        Self::String(s)
    }
}
impl From<bool> for PropertyValue {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}
impl From<f64> for PropertyValue {
    fn from(f: f64) -> Self {
        Self::Float(f)
    }
}
impl From<f32> for PropertyValue {
    fn from(f: f32) -> Self {
        Self::Float(f64::from(f))
    }
}
macro_rules! int_property {
    ($($t:ty),*) => {$(
        impl From<$t> for PropertyValue {
            fn from(i: $t) -> Self {
                Self::Int(i64::from(i))
            }
        }
    )*};
}
int_property!(i8, i16, i32, i64, u8, u16, u32);
impl From<u64> for PropertyValue {
    fn from(u: u64) -> Self {
        i64::try_from(u).map_or(Self::UInt(u), Self::Int)
    }
}
impl From<usize> for PropertyValue {
    fn from(u: usize) -> Self {
        Self::from(u as u64)
    }
}
impl From<isize> for PropertyValue {
    fn from(i: isize) -> Self {
        Self::Int(i as i64)
    }
}
impl From<serde_json::Value> for PropertyValue {
    fn from(v: serde_json::Value) -> Self {
        use serde_json::Value;
        match v {
            Value::String(s) => Self::from(s),
            Value::Bool(b) => Self::Bool(b),
            Value::Number(n) => n
                .as_i64()
                .map(Self::Int)
                .or_else(|| n.as_u64().map(Self::UInt))
                .unwrap_or_else(|| Self::Float(n.as_f64().unwrap_or(f64::NAN))),
            Value::Null => Self::String(CompactString::const_new("null")),
            other => Self::String(CompactString::from(other.to_string())),
        }
    }
}

/// A user identifier map, sorted by key.
pub(crate) type UserIds = Arc<[(CompactString, CompactString)]>;

/// An event's properties: up to four inline, so that a typical event
/// allocates nothing.
pub(crate) type Properties = SmallVec<[(CompactString, PropertyValue); 4]>;

/// Most `track` entries in one record (the protocol's contract).
pub(crate) const MAX_TRACKS_PER_RECORD: usize = sqreen_protocol::limits::MAX_TRACKS_PER_RECORD;
/// Most entries of any kind in one record.
pub(crate) const MAX_ENTRIES_PER_RECORD: usize = 256;

/// One thing a handler did during the request.
///
/// `Track` is much larger than the other variants on purpose: its
/// properties are inline, and entries live in the record's reused `Vec`, so
/// a tracked event allocates nothing (boxing it would allocate per event).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Entry {
    /// A custom event (`track_event`).
    Track {
        time: SystemTime,
        name: CompactString,
        properties: Properties,
        user_identifiers: Option<UserIds>,
        timestamp: Option<SystemTime>,
    },
    /// `identify()`: the request's user.
    Identify { time: SystemTime, ids: UserIds },
    /// `track_auth(success)`: counted into a metric store, never sent as an entry.
    Auth { success: bool, ids: UserIds },
    /// `track_signup()`: counted into a metric store.
    Signup { ids: UserIds },
}
/// What the request path reads on every request, swapped whole by the agent
/// thread when the backend sends new actions or passlists.
#[derive(Debug, Default)]
pub(crate) struct RuntimeState {
    /// The security responses (IP and user actions) in force.
    pub actions: Arc<ActionStore>,
    /// Client IPs whose requests pass through unrecorded.
    pub ip_passlist: Arc<[IpNet]>,
    /// Path prefixes whose requests pass through unrecorded.
    pub path_passlist: Arc<[String]>,
}

impl RuntimeState {
    /// True when requests must be looked at before they are recorded: a
    /// path or IP passlist, or IP actions, are loaded.
    pub fn looks_at_requests(&self) -> bool {
        !self.ip_passlist.is_empty()
            || self.actions.has_ip_actions()
            || !self.path_passlist.is_empty()
    }

    /// This state with `actions` instead of its own.
    pub fn with_actions(&self, actions: ActionStore) -> Self {
        Self {
            actions: Arc::new(actions),
            ip_passlist: Arc::clone(&self.ip_passlist),
            path_passlist: Arc::clone(&self.path_passlist),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Property values convert from the usual scalar types.
    #[test]
    fn property_conversions() {
        assert_eq!(PropertyValue::from(u64::MAX), PropertyValue::UInt(u64::MAX));
        assert_eq!(PropertyValue::from(7u64), PropertyValue::Int(7));
        assert_eq!(PropertyValue::from(1.5f32), PropertyValue::Float(1.5));
        assert_eq!(
            PropertyValue::from(serde_json::json!([1, 2])),
            PropertyValue::String("[1,2]".into())
        );
        assert_eq!(
            PropertyValue::from(serde_json::Value::Null),
            PropertyValue::String("null".into())
        );
    }
}
