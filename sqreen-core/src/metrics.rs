//! User-monitoring metric stores sent with each heartbeat.
//!
//! `track_auth_success`, `track_auth_failure` and `track_signup` are counted
//! per (user identifiers, client IP) into the stores `sdk-login-success`,
//! `sdk-login-fail` and `sdk-signup`. A store's key is the JSON text
//! `{"keys":[[k,v],…],"ip":"…"}` with keys sorted; its value is a count.
//! Each period ends at a heartbeat. Metric keys are not scrubbed: they are
//! what playbooks act on.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use crate::protocol::{Metric, format_time};

/// Distinct keys one store keeps per period; beyond it new keys are dropped
/// (a flood of random user names must not grow memory without bound).
const MAX_KEYS_PER_STORE: usize = 10_000;
/// Unsent periods kept while the backend is unreachable.
const MAX_UNSENT_PERIODS: usize = 60;

/// Which store an observation goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricKind {
    LoginSuccess,
    LoginFail,
    Signup,
}

impl MetricKind {
    fn name(self) -> &'static str {
        match self {
            Self::LoginSuccess => "sdk-login-success",
            Self::LoginFail => "sdk-login-fail",
            Self::Signup => "sdk-signup",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::LoginSuccess => 0,
            Self::LoginFail => 1,
            Self::Signup => 2,
        }
    }
}

/// The stores of the current period, plus periods a failed beat left unsent.
#[derive(Debug)]
pub(crate) struct MetricStores {
    start: SystemTime,
    stores: [BTreeMap<String, u64>; 3],
    unsent: Vec<Metric>,
    /// Observations dropped because a store was full.
    pub dropped: u64,
}

impl MetricStores {
    pub fn new(now: SystemTime) -> Self {
        Self {
            start: now,
            stores: Default::default(),
            unsent: Vec::new(),
            dropped: 0,
        }
    }

    /// Counts one observation.
    pub fn add<'a>(
        &mut self,
        kind: MetricKind,
        ids: impl Iterator<Item = (&'a str, &'a str)>,
        ip: Option<IpAddr>,
    ) {
        let key = metric_key(ids, ip);
        let store = &mut self.stores[kind.index()];
        if let Some(count) = store.get_mut(&key) {
            *count += 1;
        } else if store.len() < MAX_KEYS_PER_STORE {
            store.insert(key, 1);
        } else {
            self.dropped += 1;
        }
    }

    /// Closes the period at `now`: the finished stores plus anything unsent.
    pub fn take(&mut self, now: SystemTime) -> Vec<Metric> {
        let start = format_time(self.start);
        let finish = format_time(now);
        let mut out = std::mem::take(&mut self.unsent);
        for kind in [
            MetricKind::LoginSuccess,
            MetricKind::LoginFail,
            MetricKind::Signup,
        ] {
            let store = std::mem::take(&mut self.stores[kind.index()]);
            if !store.is_empty() {
                out.push(Metric {
                    name: kind.name(),
                    start: start.clone(),
                    finish: finish.clone(),
                    observation: store,
                });
            }
        }
        self.start = now;
        out
    }

    /// Puts back metrics a failed heartbeat could not deliver.
    pub fn restore(&mut self, mut metrics: Vec<Metric>) {
        metrics.append(&mut self.unsent);
        let excess = metrics.len().saturating_sub(MAX_UNSENT_PERIODS * 3);
        self.dropped += excess as u64;
        metrics.drain(..excess);
        self.unsent = metrics;
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

    /// Keys follow the protocol's exact text form.
    #[test]
    fn key_format() {
        let key = metric_key(
            [("username", "bob")].into_iter(),
            Some("81.2.69.160".parse().unwrap()),
        );
        assert_eq!(key, r#"{"keys":[["username","bob"]],"ip":"81.2.69.160"}"#);
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
        let out = m.take(t0);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "sdk-login-fail");
        assert_eq!(out[0].observation.values().sum::<u64>(), 3);
        assert!(m.take(t0).is_empty());
    }

    /// Metrics of a failed beat come back with the next one, bounded.
    #[test]
    fn restore_is_bounded() {
        let t0 = SystemTime::now();
        let mut m = MetricStores::new(t0);
        let lots: Vec<Metric> = (0..500)
            .map(|_| Metric {
                name: "sdk-signup",
                start: String::new(),
                finish: String::new(),
                observation: BTreeMap::new(),
            })
            .collect();
        m.restore(lots);
        assert_eq!(m.take(t0).len(), MAX_UNSENT_PERIODS * 3);
        assert_eq!(m.dropped, 500 - (MAX_UNSENT_PERIODS as u64) * 3);
    }
}
