//! Security responses pushed by the backend, and the store that enforces them.
//!
//! The backend's playbooks answer attackers with actions: block or redirect
//! an IP range, block or redirect a user. The agent keeps them in an
//! `ActionStore` that is rebuilt whole on every `actionspack` answer and
//! swapped atomically, so the request path reads it without a lock.
//!
//! Matching rules (docs/PROTOCOL.md):
//! - IP actions match when the client IP lies in one of the action's CIDRs
//!   (IPv4 and IPv6; IPv4-mapped IPv6 addresses match IPv4 ranges). IPv6
//!   CIDRs narrower than the configured `ipv6_action_prefix` (64 by
//!   default) are widened to it: a host holds a whole /64. When several
//!   live actions cover an IP, the most specific one applies.
//! - IP actions are indexed by prefix length: a lookup masks the IP once
//!   per distinct prefix length loaded (a handful in practice, 33 or 129 at
//!   most) and probes a hash map, whatever the number of actions.
//! - User actions match an `identify()` whose identifier map is exactly equal
//!   to one of the action's maps.
//! - `duration` counts seconds from when the agent received the action; `0`
//!   or absent means no expiry. An expired action no longer matches.
//! - `send_response: false` makes an action a dry run: the enforcement is
//!   recorded (`sq.action.*`) but the request goes on.
//!
//! A malformed action (unknown kind, bad CIDR, a redirect URL that is not
//! `http(s)` or carries control characters) is skipped and counted; the rest
//! of the pack still applies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use sqreen_protocol::actions;

/// The static page served with a block response.
pub const BLOCK_PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Access denied</title></head>\
<body><h1>Access denied</h1><p>Your request was blocked by the application's security policy.</p></body></html>\n";

/// What the framework must answer instead of running the handler.
///
/// Adapters turn it into their framework's response; applications that want
/// their own page can match on it.
///
/// ```
/// use sqreen_core::SecurityResponse;
/// let block = SecurityResponse::Block { status: 403 };
/// assert_eq!(block.status(), 403);
/// assert_eq!(block.location(), None);
/// let redirect = SecurityResponse::Redirect { location: "https://example.com/blocked".into() };
/// assert_eq!(redirect.status(), 303);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecurityResponse {
    /// Answer with `status` (the configured `blocking_status`, 403 by default)
    /// and [`BLOCK_PAGE`].
    Block {
        /// The HTTP status.
        status: u16,
    },
    /// Answer `303 See Other` with a `Location` header.
    Redirect {
        /// Where to send the client.
        location: String,
    },
}

impl SecurityResponse {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Block { status } => *status,
            Self::Redirect { .. } => 303,
        }
    }

    /// The `Location` header value, for redirects.
    pub fn location(&self) -> Option<&str> {
        match self {
            Self::Block { .. } => None,
            Self::Redirect { location } => Some(location),
        }
    }

    /// The response body: the block page, or nothing for a redirect.
    pub fn body(&self) -> &'static str {
        match self {
            Self::Block { .. } => BLOCK_PAGE,
            Self::Redirect { .. } => "",
        }
    }

    /// The `Content-Type` of [`body`](Self::body).
    pub fn content_type(&self) -> &'static str {
        "text/html; charset=utf-8"
    }
}

/// What an action does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ActionKind {
    BlockIp,
    RedirectIp(String),
    BlockUser,
    RedirectUser(String),
}

impl ActionKind {
    /// The name of the `track` entry recorded when the action fires.
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::BlockIp => "sq.action.block_ip",
            Self::RedirectIp(_) => "sq.action.redirect_ip",
            Self::BlockUser => "sq.action.block_user",
            Self::RedirectUser(_) => "sq.action.redirect_user",
        }
    }
}

/// One live action.
#[derive(Debug)]
pub(crate) struct Action {
    pub id: String,
    pub kind: ActionKind,
    pub expires_at: Option<Instant>,
    /// False: record the enforcement, but let the request through.
    pub send_response: bool,
}

impl Action {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }

    /// The response to send, or `None` for a dry-run action.
    pub fn response(&self, blocking_status: u16) -> Option<SecurityResponse> {
        if !self.send_response {
            return None;
        }
        Some(match &self.kind {
            ActionKind::BlockIp | ActionKind::BlockUser => SecurityResponse::Block {
                status: blocking_status,
            },
            ActionKind::RedirectIp(url) | ActionKind::RedirectUser(url) => {
                SecurityResponse::Redirect {
                    location: url.clone(),
                }
            }
        })
    }
}

/// The actions of each network of one prefix length, by masked address
/// (foldhash: seeded per map, and several times faster than SipHash on an
/// integer key, which `begin` hashes once per prefix length).
type Level<K> = (u8, foldhash::HashMap<K, Vec<Arc<Action>>>);

/// IP actions by network, one map per prefix length (longest first).
#[derive(Debug, Default)]
struct IpIndex {
    v4: Vec<Level<u32>>,
    v6: Vec<Level<u128>>,
    len: usize,
    /// While at most [`SMALL_INDEX`] networks are loaded, they are also
    /// kept in a list, most specific first: a few comparisons beat a hash
    /// probe (the common case: one or two blocks live).
    small: Vec<(IpNet, Arc<Action>)>,
}

/// Networks up to which [`IpIndex`] matches by scanning a list.
const SMALL_INDEX: usize = 8;

fn mask_v4(bits: u32, len: u8) -> u32 {
    bits & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask_v6(bits: u128, len: u8) -> u128 {
    bits & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// The map of prefix length `len` in `levels` (kept longest first).
fn level<K>(levels: &mut Vec<Level<K>>, len: u8) -> &mut foldhash::HashMap<K, Vec<Arc<Action>>> {
    let at = match levels.binary_search_by(|(l, _)| len.cmp(l)) {
        Ok(i) => i,
        Err(i) => {
            levels.insert(i, (len, foldhash::HashMap::default()));
            i
        }
    };
    &mut levels[at].1
}

impl IpIndex {
    fn insert(&mut self, net: IpNet, action: &Arc<Action>, v6_prefix: u8) {
        let net = match net {
            IpNet::V6(n) if n.prefix_len() > v6_prefix => {
                ipnet::Ipv6Net::new(n.network(), v6_prefix)
                    .map_or(IpNet::V6(n), |wide| IpNet::V6(wide.trunc()))
            }
            other => other,
        };
        if self.len < SMALL_INDEX {
            let at = self
                .small
                .partition_point(|(n, _)| n.prefix_len() >= net.prefix_len());
            self.small.insert(at, (net, Arc::clone(action)));
        } else {
            self.small.clear();
        }
        match net {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                level(&mut self.v4, len)
                    .entry(mask_v4(n.network().into(), len))
                    .or_default()
                    .push(Arc::clone(action));
            }
            IpNet::V6(n) => {
                let len = n.prefix_len().min(v6_prefix);
                level(&mut self.v6, len)
                    .entry(mask_v6(n.network().into(), len))
                    .or_default()
                    .push(Arc::clone(action));
            }
        }
        self.len += 1;
    }

    fn lookup(&self, ip: IpAddr, now: Instant) -> Option<&Arc<Action>> {
        fn live(actions: &[Arc<Action>], now: Instant) -> Option<&Arc<Action>> {
            actions.iter().find(|a| a.is_live(now))
        }
        if self.len <= SMALL_INDEX {
            return self
                .small
                .iter()
                .find(|(net, action)| net.contains(&ip) && action.is_live(now))
                .map(|(_, action)| action);
        }
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4
                    .iter()
                    .find_map(|(len, map)| live(map.get(&mask_v4(bits, *len))?, now))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6
                    .iter()
                    .find_map(|(len, map)| live(map.get(&mask_v6(bits, *len))?, now))
            }
        }
    }
}

/// The live action set, replaced whole by each action pack.
#[derive(Debug, Default)]
pub(crate) struct ActionStore {
    ip: IpIndex,
    users: HashMap<String, Arc<Action>>,
}

/// Why an action from the backend was skipped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ActionError {
    #[error("action is not an object")]
    NotAnObject,
    #[error("unknown action kind `{0}`")]
    UnknownKind(String),
    #[error("invalid CIDR `{0}`")]
    BadCidr(String),
    #[error("redirect action without a valid http(s) `url`")]
    BadUrl,
    #[error("invalid `duration`")]
    BadDuration,
    #[error("user action without users")]
    NoUsers,
    #[error("IP action without `ip_cidr`")]
    NoCidr,
    #[error("{0} actions past the protocol's limit of {max} per answer were skipped", max = sqreen_protocol::limits::MAX_ACTIONS)]
    TooMany(usize),
}

impl ActionError {
    /// Whether this is [`ActionError::TooMany`] (not one skipped action).
    pub(crate) fn is_too_many(&self) -> bool {
        matches!(self, Self::TooMany(_))
    }
}

impl ActionStore {
    /// Builds a store from the backend's JSON actions, at most the
    /// protocol's [`MAX_ACTIONS`](sqreen_protocol::limits::MAX_ACTIONS),
    /// IPv6 networks widened to `v6_prefix`. Malformed actions are
    /// skipped; their errors come back so the caller can log and count them
    /// (the actions past the limit as one error).
    pub fn from_json(actions: &[Value], now: Instant, v6_prefix: u8) -> (Self, Vec<ActionError>) {
        let mut store = Self::default();
        let mut errors = Vec::new();
        let max = sqreen_protocol::limits::MAX_ACTIONS;
        if actions.len() > max {
            errors.push(ActionError::TooMany(actions.len() - max));
        }
        for raw in actions.iter().take(max) {
            if let Err(e) = store.add(raw, now, v6_prefix) {
                errors.push(e);
            }
        }
        (store, errors)
    }

    fn add(&mut self, raw: &Value, now: Instant, v6_prefix: u8) -> Result<(), ActionError> {
        let obj = raw.as_object().ok_or(ActionError::NotAnObject)?;
        let id = match obj.get("action_id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let kind_name = obj.get("action").and_then(Value::as_str).unwrap_or("");
        let empty = serde_json::Map::new();
        let params = obj
            .get("parameters")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let url = || {
            params
                .get("url")
                .and_then(Value::as_str)
                .filter(|u| is_safe_redirect(u))
                .map(str::to_owned)
                .ok_or(ActionError::BadUrl)
        };
        let kind = match kind_name {
            actions::BLOCK_IP => ActionKind::BlockIp,
            actions::REDIRECT_IP => ActionKind::RedirectIp(url()?),
            actions::BLOCK_USER => ActionKind::BlockUser,
            actions::REDIRECT_USER => ActionKind::RedirectUser(url()?),
            other => return Err(ActionError::UnknownKind(other.to_owned())),
        };
        let expires_at = match obj.get("duration") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(0.0) => None,
                Some(d) if d > 0.0 && d.is_finite() => {
                    now.checked_add(Duration::from_secs_f64(d.min(1e10)))
                }
                _ => return Err(ActionError::BadDuration),
            },
            Some(_) => return Err(ActionError::BadDuration),
        };
        let send_response = obj
            .get("send_response")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let action = Arc::new(Action {
            id,
            kind,
            expires_at,
            send_response,
        });
        match action.kind {
            ActionKind::BlockIp | ActionKind::RedirectIp(_) => {
                let cidrs = params
                    .get("ip_cidr")
                    .and_then(Value::as_array)
                    .ok_or(ActionError::NoCidr)?;
                let mut nets = Vec::with_capacity(cidrs.len());
                for c in cidrs {
                    let text = c.as_str().unwrap_or_default();
                    nets.push(parse_cidr(text).ok_or_else(|| ActionError::BadCidr(text.into()))?);
                }
                if nets.is_empty() {
                    return Err(ActionError::NoCidr);
                }
                for net in nets {
                    self.ip.insert(net, &action, v6_prefix);
                }
            }
            ActionKind::BlockUser | ActionKind::RedirectUser(_) => {
                let users = params
                    .get("users")
                    .and_then(Value::as_array)
                    .filter(|u| !u.is_empty())
                    .ok_or(ActionError::NoUsers)?;
                for user in users {
                    let map = user.as_object().ok_or(ActionError::NoUsers)?;
                    let mut ids: Vec<(String, String)> = map
                        .iter()
                        .map(|(k, v)| (k.clone(), scalar_text(v)))
                        .collect();
                    ids.sort();
                    self.users.insert(
                        user_key(ids.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                        Arc::clone(&action),
                    );
                }
            }
        }
        Ok(())
    }

    /// True when some IP action is loaded (the request path then needs the client IP).
    pub fn has_ip_actions(&self) -> bool {
        self.ip.len > 0
    }

    /// True when some user action is loaded.
    pub fn has_user_actions(&self) -> bool {
        !self.users.is_empty()
    }

    /// The most specific live action covering `ip`, if any.
    pub fn match_ip(&self, ip: IpAddr, now: Instant) -> Option<&Arc<Action>> {
        self.ip.lookup(canonical(ip), now)
    }

    /// The live action for exactly this identifier map (sorted by key).
    pub fn match_user<'a>(
        &self,
        sorted_ids: impl Iterator<Item = (&'a str, &'a str)>,
        now: Instant,
    ) -> Option<&Arc<Action>> {
        self.users
            .get(&user_key(sorted_ids))
            .filter(|a| a.is_live(now))
    }
}

/// IPv4-mapped IPv6 addresses are matched as the IPv4 they carry.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses `a.b.c.d/n`, `v6/n`, or a bare address (a /32 or /128).
pub(crate) fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A redirect target must be an absolute http(s) URL without control
/// characters, so it can never inject a header.
fn is_safe_redirect(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.chars().any(char::is_control)
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A map key for an identifier map: unambiguous because `\u{0}` cannot be
/// confused with the length-prefixed parts around it.
fn user_key<'a>(sorted_ids: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut key = String::new();
    for (k, v) in sorted_ids {
        key.push_str(&k.len().to_string());
        key.push(':');
        key.push_str(k);
        key.push_str(&v.len().to_string());
        key.push(':');
        key.push_str(v);
        key.push('\u{0}');
    }
    key
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(actions: Value) -> (ActionStore, usize) {
        let (s, errors) = ActionStore::from_json(actions.as_array().unwrap(), Instant::now(), 64);
        (s, errors.len())
    }

    /// An IPv6 block on one address covers its /64 by default, and only
    /// that /64; a wider prefix setting keeps it exact.
    #[test]
    fn ipv6_blocks_cover_the_64() {
        let pack = json!([{"action_id": "a", "action": "block_ip",
            "parameters": {"ip_cidr": ["2001:db8::1/128"]}}]);
        let (s, _) = ActionStore::from_json(pack.as_array().unwrap(), Instant::now(), 64);
        let now = Instant::now();
        assert!(s.match_ip("2001:db8::ffff".parse().unwrap(), now).is_some());
        assert!(
            s.match_ip("2001:db8::1:2:3:4".parse().unwrap(), now)
                .is_some()
        );
        assert!(
            s.match_ip("2001:db8:0:1::1".parse().unwrap(), now)
                .is_none()
        );
        let (exact, _) = ActionStore::from_json(pack.as_array().unwrap(), now, 128);
        assert!(
            exact
                .match_ip("2001:db8::1".parse().unwrap(), now)
                .is_some()
        );
        assert!(
            exact
                .match_ip("2001:db8::2".parse().unwrap(), now)
                .is_none()
        );
    }

    /// 100 000 IP actions (the most an answer carries) load and each is
    /// found; the most specific live action wins over a wider one.
    #[test]
    fn many_ip_actions_are_indexed() {
        let mut actions: Vec<Value> = (0..99_999u32)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
                json!({"action_id": format!("a{i}"), "action": "block_ip",
                    "parameters": {"ip_cidr": [format!("{ip}/32")]}})
            })
            .collect();
        actions.push(json!({"action_id": "wide", "action": "block_ip",
            "parameters": {"ip_cidr": ["11.0.0.0/8"]}}));
        let now = Instant::now();
        let (s, errors) = ActionStore::from_json(&actions, now, 64);
        assert!(errors.is_empty());
        assert_eq!(
            s.match_ip("11.0.0.7".parse().unwrap(), now).unwrap().id,
            "a7"
        );
        assert_eq!(
            s.match_ip("11.1.134.158".parse().unwrap(), now).unwrap().id,
            "a99998"
        );
        assert_eq!(
            s.match_ip("11.200.0.1".parse().unwrap(), now).unwrap().id,
            "wide"
        );
        assert!(s.match_ip("12.0.0.1".parse().unwrap(), now).is_none());
    }

    /// With few actions (the list path), the most specific live one wins
    /// too, and an expired narrow one gives way to the wider one.
    #[test]
    fn few_actions_most_specific_first() {
        let pack = json!([
            {"action_id": "wide", "action": "block_ip", "parameters": {"ip_cidr": ["11.0.0.0/8"]}},
            {"action_id": "narrow", "action": "block_ip", "duration": 10,
             "parameters": {"ip_cidr": ["11.0.0.7/32"]}}
        ]);
        let now = Instant::now();
        let (s, _) = ActionStore::from_json(pack.as_array().unwrap(), now, 64);
        assert_eq!(
            s.match_ip("11.0.0.7".parse().unwrap(), now).unwrap().id,
            "narrow"
        );
        assert_eq!(
            s.match_ip("11.0.0.8".parse().unwrap(), now).unwrap().id,
            "wide"
        );
        let later = now + Duration::from_secs(11);
        assert_eq!(
            s.match_ip("11.0.0.7".parse().unwrap(), later).unwrap().id,
            "wide"
        );
        assert!(s.match_ip("12.0.0.1".parse().unwrap(), now).is_none());
    }

    /// A v4 CIDR block matches addresses inside it, and only those.
    #[test]
    fn block_ip_v4_cidr() {
        let (s, errs) = store(json!([{"action_id": "a1", "action": "block_ip",
            "parameters": {"ip_cidr": ["81.2.69.0/24"]}}]));
        assert_eq!(errs, 0);
        let now = Instant::now();
        let hit = s.match_ip("81.2.69.160".parse().unwrap(), now).unwrap();
        assert_eq!(hit.id, "a1");
        assert_eq!(
            hit.response(403),
            Some(SecurityResponse::Block { status: 403 })
        );
        assert!(s.match_ip("81.2.70.1".parse().unwrap(), now).is_none());
        assert!(
            s.match_ip("::ffff:81.2.69.7".parse().unwrap(), now)
                .is_some()
        );
    }

    /// v6 CIDRs and bare addresses match.
    #[test]
    fn block_ip_v6_and_bare_address() {
        let (s, errs) = store(json!([{"action_id": "a", "action": "redirect_ip",
            "parameters": {"ip_cidr": ["2001:db8::/32", "1.2.3.4"], "url": "https://example.com/x"}}]));
        assert_eq!(errs, 0);
        let now = Instant::now();
        let hit = s.match_ip("2001:db8::5".parse().unwrap(), now).unwrap();
        assert_eq!(
            hit.response(403),
            Some(SecurityResponse::Redirect {
                location: "https://example.com/x".into()
            })
        );
        assert!(s.match_ip("1.2.3.4".parse().unwrap(), now).is_some());
        assert!(s.match_ip("1.2.3.5".parse().unwrap(), now).is_none());
    }

    /// User actions match only the exactly equal identifier map.
    #[test]
    fn block_user_exact_match() {
        let (s, _) = store(json!([{"action_id": "u", "action": "block_user",
            "parameters": {"users": [{"username": "mallory", "org": "x"}]}}]));
        let now = Instant::now();
        assert!(
            s.match_user([("org", "x"), ("username", "mallory")].into_iter(), now)
                .is_some()
        );
        assert!(
            s.match_user([("username", "mallory")].into_iter(), now)
                .is_none()
        );
        assert!(
            s.match_user([("org", "x"), ("username", "mallor")].into_iter(), now)
                .is_none()
        );
    }

    /// Expired actions stop matching; duration 0 never expires.
    #[test]
    fn expiry() {
        let t0 = Instant::now();
        let (s, _) = ActionStore::from_json(
            json!([
                {"action_id": "short", "action": "block_ip", "duration": 10, "parameters": {"ip_cidr": ["1.1.1.1"]}},
                {"action_id": "forever", "action": "block_ip", "duration": 0, "parameters": {"ip_cidr": ["2.2.2.2"]}}
            ])
            .as_array()
            .unwrap(),
            t0,
            64,
        );
        let later = t0 + Duration::from_secs(11);
        assert!(s.match_ip("1.1.1.1".parse().unwrap(), t0).is_some());
        assert!(s.match_ip("1.1.1.1".parse().unwrap(), later).is_none());
        assert!(s.match_ip("2.2.2.2".parse().unwrap(), later).is_some());
    }

    /// Malformed actions are skipped and reported while good ones still load.
    #[test]
    fn malformed_actions_are_skipped() {
        let (s, errs) = store(json!([
            "nope",
            {"action": "explode"},
            {"action": "block_ip", "parameters": {"ip_cidr": ["300.1.1.1/8"]}},
            {"action": "redirect_ip", "parameters": {"ip_cidr": ["1.1.1.1"], "url": "javascript:alert(1)"}},
            {"action": "redirect_ip", "parameters": {"ip_cidr": ["1.1.1.1"], "url": "https://a\r\nSet-Cookie: x"}},
            {"action": "block_ip", "duration": -5, "parameters": {"ip_cidr": ["1.1.1.1"]}},
            {"action": "block_user", "parameters": {"users": []}},
            {"action": "block_ip", "parameters": {}},
            {"action_id": "ok", "action": "block_ip", "parameters": {"ip_cidr": ["9.9.9.9/32"]}}
        ]));
        assert_eq!(errs, 8);
        assert!(
            s.match_ip("9.9.9.9".parse().unwrap(), Instant::now())
                .is_some()
        );
    }

    /// A dry-run action records but sends no response.
    #[test]
    fn dry_run_has_no_response() {
        let (s, _) = store(json!([{"action": "block_ip", "send_response": false,
            "parameters": {"ip_cidr": ["1.1.1.1"]}}]));
        let hit = s
            .match_ip("1.1.1.1".parse().unwrap(), Instant::now())
            .unwrap();
        assert_eq!(hit.response(403), None);
    }
}
