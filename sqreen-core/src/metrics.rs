//! User-monitoring metric stores sent with each heartbeat.
//!
//! `track_auth_success`, `track_auth_failure` and `track_signup` are counted
//! per (user identifiers, client IP) into the stores `sdk-login-success`,
//! `sdk-login-fail` and `sdk-signup`. A store's key is the JSON text
//! `{"keys":[[k,v],…],"ip":"…"}` with keys sorted; its value is a count.
//! Metric keys are not scrubbed: they are what playbooks act on.
//!
//! Whatever an attacker sends, the counts reach the backend within the
//! protocol's limits ([`sqreen_protocol::limits`]):
//!
//! - Counts not yet delivered are kept merged, per store and key: a failed
//!   heartbeat's counts are added back to the current ones, so the next
//!   heartbeat carries each key once, whatever number of attempts failed.
//! - A store holds at most
//!   [`MAX_METRIC_KEYS_PER_STORE`](sqreen_protocol::limits::MAX_METRIC_KEYS_PER_STORE)
//!   keys. When a new key finds it full (credential stuffing: thousands of
//!   user names), the smaller half of the keys that carry user identifiers
//!   are folded into per-IP keys (`{"keys":[],"ip":"…"}`): the IP, which
//!   brute-force playbooks count on, keeps every observation; the user
//!   names of the folded keys are lost, and counted
//!   ([`Stats::metric_keys_folded`](crate::Stats::metric_keys_folded)).
//!   Only when every key is already per IP is an observation dropped
//!   ([`Stats::metric_observations_dropped`](crate::Stats::metric_observations_dropped)).
//! - A heartbeat takes the counts that fit its byte budget
//!   ([`MetricStores::take`]); the rest go with the next heartbeats, sent
//!   at once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use sqreen_protocol::limits::MAX_METRIC_KEYS_PER_STORE;
use sqreen_protocol::metric_stores;

use crate::protocol::{Metric, format_time};

/// Which store an observation goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricKind {
    LoginSuccess,
    LoginFail,
    Signup,
}

impl MetricKind {
    const ALL: [Self; 3] = [Self::LoginSuccess, Self::LoginFail, Self::Signup];

    fn name(self) -> &'static str {
        match self {
            Self::LoginSuccess => metric_stores::LOGIN_SUCCESS,
            Self::LoginFail => metric_stores::LOGIN_FAIL,
            Self::Signup => metric_stores::SIGNUP,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::LoginSuccess => 0,
            Self::LoginFail => 1,
            Self::Signup => 2,
        }
    }

    fn of_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The count of one key, with what folding needs to know of it.
#[derive(Clone, Copy, Debug)]
struct Count {
    n: u64,
    ip: Option<IpAddr>,
    /// The key names a user (not already a per-IP key).
    has_user: bool,
}

/// What the heartbeat carries per observation key beyond the key's own
/// JSON text: quotes, colon, count, comma.
const PER_KEY_OVERHEAD: usize = 24;
/// What the heartbeat carries per metric store beyond its keys: name,
/// start, finish and punctuation.
const PER_STORE_OVERHEAD: usize = 128;

/// The counts not yet delivered, per store and key.
#[derive(Debug)]
pub(crate) struct MetricStores {
    /// Start of the period of the oldest count not yet delivered.
    start: SystemTime,
    stores: [BTreeMap<String, Count>; 3],
    /// Keys folded into per-IP keys (see the module docs).
    pub folded: u64,
    /// Observations lost: a store full of per-IP keys, or counts the
    /// backend refused.
    pub dropped: u64,
}

impl MetricStores {
    pub fn new(now: SystemTime) -> Self {
        Self {
            start: now,
            stores: Default::default(),
            folded: 0,
            dropped: 0,
        }
    }

    /// Whether no count waits.
    pub fn is_empty(&self) -> bool {
        self.stores.iter().all(BTreeMap::is_empty)
    }

    /// Counts one observation.
    pub fn add<'a>(
        &mut self,
        kind: MetricKind,
        ids: impl Iterator<Item = (&'a str, &'a str)>,
        ip: Option<IpAddr>,
    ) {
        let mut ids = ids.peekable();
        let has_user = ids.peek().is_some();
        let key = metric_key(ids, ip);
        self.add_count(kind, key, Count { n: 1, ip, has_user });
    }

    fn add_count(&mut self, kind: MetricKind, key: String, count: Count) {
        let index = kind.index();
        if let Some(c) = self.stores[index].get_mut(&key) {
            c.n = c.n.saturating_add(count.n);
            return;
        }
        if self.stores[index].len() >= MAX_METRIC_KEYS_PER_STORE {
            self.fold(index);
        }
        if self.stores[index].len() < MAX_METRIC_KEYS_PER_STORE {
            self.stores[index].insert(key, count);
        } else if count.has_user {
            // Every key left is per IP: keep this observation as one too.
            self.add_count(
                kind,
                metric_key(std::iter::empty(), count.ip),
                Count {
                    has_user: false,
                    ..count
                },
            );
            self.folded += 1;
        } else {
            self.dropped = self.dropped.saturating_add(count.n);
        }
    }

    /// Folds the smaller half of store `index`'s user keys into per-IP keys.
    fn fold(&mut self, index: usize) {
        let store = &mut self.stores[index];
        let mut users: Vec<(u64, String)> = store
            .iter()
            .filter(|(_, c)| c.has_user)
            .map(|(k, c)| (c.n, k.clone()))
            .collect();
        if users.is_empty() {
            return;
        }
        users.sort_unstable();
        users.truncate(users.len().div_ceil(2));
        for (_, key) in &users {
            let Some(c) = store.remove(key) else { continue };
            let per_ip = metric_key(std::iter::empty(), c.ip);
            store
                .entry(per_ip)
                .and_modify(|p| p.n = p.n.saturating_add(c.n))
                .or_insert(Count {
                    has_user: false,
                    ..c
                });
        }
        self.folded += users.len() as u64;
    }

    /// Takes counts for one heartbeat, at most `budget` bytes of them as
    /// JSON and `max_stores` stores, in a period from the oldest count
    /// still waiting to `now`. What does not fit waits for the next
    /// heartbeat.
    pub fn take(&mut self, now: SystemTime, budget: usize, max_stores: usize) -> Vec<Metric> {
        let start = format_time(self.start);
        let finish = format_time(now);
        let mut left = budget;
        let mut out = Vec::new();
        for kind in MetricKind::ALL {
            if out.len() >= max_stores || left < PER_STORE_OVERHEAD {
                break;
            }
            let store = &mut self.stores[kind.index()];
            if store.is_empty() {
                continue;
            }
            left -= PER_STORE_OVERHEAD;
            let mut observation = BTreeMap::new();
            while let Some(entry) = store.first_entry() {
                let size = json_string_len(entry.key()) + PER_KEY_OVERHEAD;
                if size > left {
                    break;
                }
                left -= size;
                let (key, count) = entry.remove_entry();
                observation.insert(key, count.n);
            }
            if !observation.is_empty() {
                out.push(Metric {
                    name: kind.name(),
                    start: start.clone(),
                    finish: finish.clone(),
                    observation,
                });
            }
        }
        if self.is_empty() {
            self.start = now;
        }
        out
    }

    /// Adds back counts a failed heartbeat could not deliver.
    pub fn restore(&mut self, metrics: Vec<Metric>) {
        for m in metrics {
            let Some(kind) = MetricKind::of_name(m.name) else {
                continue;
            };
            for (key, n) in m.observation {
                let (ip, has_user) = key_facts(&key);
                self.add_count(kind, key, Count { n, ip, has_user });
            }
        }
    }

    /// Counts as lost what a heartbeat the backend refused carried.
    pub fn discard(&mut self, metrics: &[Metric]) {
        let lost = metrics
            .iter()
            .flat_map(|m| m.observation.values())
            .fold(0u64, |a, n| a.saturating_add(*n));
        self.dropped = self.dropped.saturating_add(lost);
    }
}

/// The length of `text` written as a JSON string.
fn json_string_len(text: &str) -> usize {
    2 + text
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

/// The IP of a key this module wrote, and whether it names a user.
fn key_facts(key: &str) -> (Option<IpAddr>, bool) {
    #[derive(serde::Deserialize)]
    struct Key {
        keys: Vec<serde_json::Value>,
        #[serde(default)]
        ip: String,
    }
    match serde_json::from_str::<Key>(key) {
        Ok(k) => (k.ip.parse().ok(), !k.keys.is_empty()),
        Err(_) => (None, true),
    }
}

/// `{"keys":[[k,v],…],"ip":"…"}`: field order as the protocol shows it.
pub(crate) fn metric_key<'a>(
    ids: impl Iterator<Item = (&'a str, &'a str)>,
    ip: Option<IpAddr>,
) -> String {
    let keys: Vec<[&str; 2]> = ids.map(|(k, v)| [k, v]).collect();
    let keys = serde_json::to_string(&keys).unwrap_or_else(|_| "[]".into());
    let ip = serde_json::to_string(&ip.map(|ip| ip.to_string()).unwrap_or_default())
        .unwrap_or_else(|_| "\"\"".into());
    format!("{{\"keys\":{keys},\"ip\":{ip}}}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ALL: usize = usize::MAX;

    /// Keys follow the protocol's exact text form.
    #[test]
    fn key_format() {
        let key = metric_key(
            [("username", "bob")].into_iter(),
            Some("81.2.69.160".parse().unwrap()),
        );
        assert_eq!(key, r#"{"keys":[["username","bob"]],"ip":"81.2.69.160"}"#);
        assert_eq!(
            key_facts(&key),
            (Some("81.2.69.160".parse().unwrap()), true)
        );
    }

    /// Observations are counted per key and per store, and a period resets.
    #[test]
    fn counting_and_periods() {
        let t0 = SystemTime::now();
        let mut m = MetricStores::new(t0);
        let ip = Some("1.2.3.4".parse().unwrap());
        for _ in 0..3 {
            m.add(MetricKind::LoginFail, [("u", "bob")].into_iter(), ip);
        }
        m.add(MetricKind::Signup, [("u", "amy")].into_iter(), ip);
        let out = m.take(t0, ALL, 100);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "sdk-login-fail");
        assert_eq!(out[0].observation.values().sum::<u64>(), 3);
        assert!(m.take(t0, ALL, 100).is_empty());
    }

    /// Counts of failed heartbeats add up per key: the next heartbeat
    /// carries each key once.
    #[test]
    fn failed_beats_merge() {
        let t0 = SystemTime::now();
        let mut m = MetricStores::new(t0);
        let ip = Some("1.2.3.4".parse().unwrap());
        for attempt in 0..50 {
            m.add(MetricKind::LoginFail, [("u", "bob")].into_iter(), ip);
            let out = m.take(t0, ALL, 100);
            if attempt < 49 {
                m.restore(out);
            } else {
                assert_eq!(out.len(), 1);
                assert_eq!(out[0].observation.len(), 1);
                assert_eq!(out[0].observation.values().sum::<u64>(), 50);
            }
        }
    }

    /// A flood of distinct user names folds into the attacker's IP: its
    /// count is whole, the store stays within the contract.
    #[test]
    fn floods_fold_into_the_ip() {
        let t0 = SystemTime::now();
        let mut m = MetricStores::new(t0);
        let attacker = Some("203.0.113.9".parse().unwrap());
        let other = Some("198.51.100.1".parse().unwrap());
        for _ in 0..5 {
            m.add(MetricKind::LoginFail, [("u", "alice")].into_iter(), other);
        }
        let n = 3 * MAX_METRIC_KEYS_PER_STORE;
        for i in 0..n {
            let user = format!("user-{i}");
            m.add(
                MetricKind::LoginFail,
                [("u", user.as_str())].into_iter(),
                attacker,
            );
        }
        assert!(m.stores[1].len() <= MAX_METRIC_KEYS_PER_STORE);
        assert!(m.folded > 0);
        assert_eq!(m.dropped, 0);
        let out = m.take(t0, ALL, 100);
        let per_ip: u64 = out[0]
            .observation
            .iter()
            .filter(|(k, _)| key_facts(k).0 == attacker)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(per_ip, n as u64);
        // The other user's key, with more observations, was not folded.
        assert_eq!(
            out[0].observation[&metric_key([("u", "alice")].into_iter(), other)],
            5
        );
    }

    /// A heartbeat takes what fits its budget; the rest follow.
    #[test]
    fn take_respects_the_budget() {
        let t0 = SystemTime::now();
        let mut m = MetricStores::new(t0);
        let ip = Some("1.2.3.4".parse().unwrap());
        for i in 0..1000 {
            let user = format!("{i:0>100}");
            m.add(
                MetricKind::LoginFail,
                [("u", user.as_str())].into_iter(),
                ip,
            );
        }
        let mut total = 0;
        let mut beats = 0;
        while !m.is_empty() {
            let out = m.take(t0, 20_000, 100);
            let body = serde_json::to_string(&out).unwrap();
            assert!(body.len() <= 20_000, "{}", body.len());
            total += out.iter().map(|o| o.observation.len()).sum::<usize>();
            beats += 1;
        }
        assert_eq!(total, 1000);
        assert!(beats > 1);
    }
}
