//! The rate limiter of admin key guesses, per client address.
//!
//! The admin key guards the admin API (`Authorization: Bearer`) and the
//! dashboard's login form. A generated key is 256 random bits, but one given
//! with `--admin-key` may be short; without a limit, an attacker could try
//! thousands of keys a second. After [`MAX_FAILURES`] wrong keys from one
//! address within a [`WINDOW_MS`] window, every attempt from that address,
//! right key or not, is refused with `429 Too Many Requests` (and
//! `Retry-After`) until the window ends: refusing the right key too keeps
//! the answer from telling a guess apart.
//!
//! On top of that, a global budget: after [`GLOBAL_MAX_FAILURES`] wrong
//! keys from all addresses together within one window, attempts are
//! refused until that window ends (at most [`WINDOW_MS`], so no lockout
//! outlasts a minute after the guessing stops), except from addresses that
//! presented the right key within the last [`TRUSTED_MS`]: an attacker
//! spread over many addresses can slow guessing to a crawl but cannot lock
//! out an admin who logged in from where they work.
//!
//! An address is an IPv4 address or an IPv6 /64 (one host usually holds a
//! whole /64). The address is the TCP peer's: behind a reverse proxy every
//! client shares the proxy's, and a guesser then locks the admin out for
//! the rest of the window. Requests without a known peer (a router served
//! without `ConnectInfo`) share one budget. Each server process counts its
//! own: `N` processes on one database allow `N` times the guesses.
//!
//! ```
//! use sqreen_server::key_limiter::{KeyGuessLimiter, MAX_FAILURES, WINDOW_MS};
//! let guesses = KeyGuessLimiter::default();
//! let ip = Some("203.0.113.7".parse().unwrap());
//! for _ in 0..MAX_FAILURES {
//!     assert!(guesses.check(ip, 0).is_ok());
//!     guesses.failed(ip, 0);
//! }
//! assert_eq!(guesses.check(ip, 1_000), Err(59));
//! assert!(guesses.check(ip, WINDOW_MS).is_ok());
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::extract::ConnectInfo;
use axum::http::Extensions;

/// Wrong keys allowed from one address per window.
pub const MAX_FAILURES: u32 = 20;
/// The window, in milliseconds.
pub const WINDOW_MS: i64 = 60_000;
/// Wrong keys allowed from all addresses together per window.
pub const GLOBAL_MAX_FAILURES: u32 = 100;
/// How long an address that presented the right key is exempt from the
/// global budget: a day.
pub const TRUSTED_MS: i64 = 24 * 3600 * 1000;
/// Addresses tracked at once; past this, expired windows are forgotten, and
/// if all are live, new addresses share the budget of unknown peers.
const MAX_TRACKED: usize = 10_000;
/// Trusted addresses remembered at once (the oldest are forgotten first).
const MAX_TRUSTED: usize = 1_000;

/// One address's failures in its current window.
#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: i64,
    failures: u32,
}

impl Window {
    fn starting(now_ms: i64) -> Self {
        Self {
            start_ms: now_ms,
            failures: 0,
        }
    }

    /// Counts a failure at `now_ms` (in a new window once this one has
    /// ended); returns the failures of the window.
    fn count_failure(&mut self, now_ms: i64) -> u32 {
        if now_ms >= self.start_ms.saturating_add(WINDOW_MS) {
            *self = Self::starting(now_ms);
        }
        self.failures = self.failures.saturating_add(1);
        self.failures
    }
}

/// Wrong admin keys per address and overall (see the module docs).
#[derive(Debug, Default)]
pub struct KeyGuessLimiter {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    windows: HashMap<Option<IpAddr>, Window>,
    global: Option<Window>,
    /// When each address last presented the right key.
    trusted: HashMap<Option<IpAddr>, i64>,
}

/// Seconds left in `w` at `now_ms` when it holds `max` failures or more.
fn locked(w: &Window, max: u32, now_ms: i64) -> Option<u64> {
    let end = w.start_ms.saturating_add(WINDOW_MS);
    (w.failures >= max && now_ms < end).then(|| {
        u64::try_from((end - now_ms + 999) / 1000)
            .unwrap_or(1)
            .max(1)
    })
}

/// The address an attempt is counted under: IPv6 addresses by their /64.
fn bucket(ip: Option<IpAddr>) -> Option<IpAddr> {
    match ip? {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(IpAddr::V4(v4)),
            None => Some(IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())),
        },
        v4 => Some(v4),
    }
}

/// The TCP peer's address of a request, when the server was started with
/// `ConnectInfo` (as [`crate::Server::serve`] does).
pub fn peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Where `ip`'s attempts are counted: its own window if it has one or if
/// there is room for one, else the unknown peers' window.
fn slot(windows: &HashMap<Option<IpAddr>, Window>, ip: Option<IpAddr>) -> Option<IpAddr> {
    let key = bucket(ip);
    if windows.contains_key(&key) || windows.len() < MAX_TRACKED {
        key
    } else {
        None
    }
}

impl KeyGuessLimiter {
    /// Whether `ip` may present a key at `now_ms`: `Err(seconds)` until its
    /// window ends when it has used up its wrong keys.
    pub fn check(&self, ip: Option<IpAddr>, now_ms: i64) -> Result<(), u64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = inner.windows.get(&slot(&inner.windows, ip))
            && let Some(left) = locked(w, MAX_FAILURES, now_ms)
        {
            return Err(left);
        }
        let trusted = inner
            .trusted
            .get(&bucket(ip))
            .is_some_and(|&at| now_ms.saturating_sub(at) < TRUSTED_MS);
        match inner.global.as_ref() {
            Some(w) if !trusted => locked(w, GLOBAL_MAX_FAILURES, now_ms).map_or(Ok(()), Err),
            _ => Ok(()),
        }
    }

    /// Remembers that `ip` presented the right key at `now_ms`: it is
    /// exempt from the global budget for [`TRUSTED_MS`].
    pub fn succeeded(&self, ip: Option<IpAddr>, now_ms: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = bucket(ip);
        if !inner.trusted.contains_key(&key) && inner.trusted.len() >= MAX_TRUSTED {
            inner
                .trusted
                .retain(|_, at| now_ms.saturating_sub(*at) < TRUSTED_MS);
            if inner.trusted.len() >= MAX_TRUSTED
                && let Some(oldest) = inner
                    .trusted
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| *k)
            {
                inner.trusted.remove(&oldest);
            }
        }
        inner.trusted.insert(key, now_ms);
    }

    /// Counts a wrong key from `ip` at `now_ms`.
    pub fn failed(&self, ip: Option<IpAddr>, now_ms: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let global = inner
            .global
            .get_or_insert(Window::starting(now_ms))
            .count_failure(now_ms);
        if global == GLOBAL_MAX_FAILURES {
            tracing::warn!(
                event = "admin_key.global_guesses_limited",
                window_s = WINDOW_MS / 1000,
                "too many wrong admin keys from all addresses: refusing attempts from addresses \
                 that have not logged in lately until the window ends"
            );
        }
        let windows = &mut inner.windows;
        if !windows.contains_key(&bucket(ip)) && windows.len() >= MAX_TRACKED {
            windows.retain(|_, w| now_ms < w.start_ms + WINDOW_MS);
        }
        let key = slot(windows, ip);
        let failures = windows
            .entry(key)
            .or_insert(Window::starting(now_ms))
            .count_failure(now_ms);
        if failures == MAX_FAILURES {
            tracing::warn!(
                event = "admin_key.guesses_limited",
                client = %key.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
                window_s = WINDOW_MS / 1000,
                "too many wrong admin keys from one address: refusing its attempts until the window ends"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("an IP"))
    }

    /// Addresses count apart; an IPv6 /64 counts as one address.
    #[test]
    fn addresses_count_apart() {
        let g = KeyGuessLimiter::default();
        for i in 0..MAX_FAILURES {
            g.failed(ip(&format!("2001:db8::{i}")), 0);
        }
        assert!(g.check(ip("2001:db8::ffff"), 0).is_err());
        assert!(g.check(ip("2001:db8:0:1::1"), 0).is_ok());
        assert!(g.check(ip("198.51.100.1"), 0).is_ok());
        assert!(g.check(None, 0).is_ok());
    }

    /// Below the limit nothing is refused; a new window starts afresh.
    #[test]
    fn windows_reset() {
        let g = KeyGuessLimiter::default();
        let a = ip("198.51.100.1");
        for _ in 0..MAX_FAILURES - 1 {
            g.failed(a, 0);
        }
        assert!(g.check(a, 0).is_ok());
        g.failed(a, WINDOW_MS);
        assert!(g.check(a, WINDOW_MS).is_ok());
    }

    /// Wrong keys spread over many addresses exhaust the global budget:
    /// new addresses are then refused until the window ends, addresses that
    /// logged in lately are not.
    #[test]
    fn global_budget_spares_trusted_addresses() {
        let g = KeyGuessLimiter::default();
        let admin = ip("198.51.100.7");
        g.succeeded(admin, 0);
        for i in 0..GLOBAL_MAX_FAILURES {
            let attacker = Some(IpAddr::V4((0x0a00_0000 + i).into()));
            assert!(g.check(attacker, 1).is_ok());
            g.failed(attacker, 1);
        }
        assert_eq!(g.check(ip("203.0.113.50"), 1_000), Err(60));
        assert!(g.check(admin, 1_000).is_ok());
        // The lockout ends with its window.
        assert!(g.check(ip("203.0.113.50"), WINDOW_MS + 1).is_ok());
        // Trust expires.
        let later = TRUSTED_MS + 10;
        for i in 0..GLOBAL_MAX_FAILURES {
            g.failed(Some(IpAddr::V4((0x0a00_0000 + i).into())), later);
        }
        assert!(g.check(admin, later).is_err());
    }

    /// When every tracked address is live, new ones share the unknown
    /// peers' budget instead of growing the map.
    #[test]
    fn tracking_is_bounded() {
        let g = KeyGuessLimiter::default();
        for i in 0..MAX_TRACKED as u32 {
            g.failed(Some(IpAddr::V4(i.into())), 0);
        }
        for _ in 0..MAX_FAILURES {
            g.failed(ip("203.0.113.9"), 0);
        }
        assert!(g.check(None, 0).is_err());
        assert!(g.check(ip("203.0.113.9"), 0).is_err());
        // (Address 7 logged in once: the global budget, spent by now,
        // does not apply to it.)
        g.succeeded(Some(IpAddr::V4(7.into())), 0);
        assert!(g.check(Some(IpAddr::V4(7.into())), 0).is_ok());
        let size = g.inner.lock().expect("lock").windows.len();
        assert_eq!(size, MAX_TRACKED + 1);
    }
}
