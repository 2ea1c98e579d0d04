//! Every figure the agent keeps about itself, readable through
//! [`Agent::stats`](crate::Agent::stats).
//!
//! Counters are relaxed atomics bumped from the request path and the agent
//! thread; [`Stats`] is a plain snapshot of them. Warnings about bad input are
//! rate-limited so a hostile client cannot flood the logs.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the agent stands with its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginState {
    /// The agent is off: no token, `disable` set, or an invalid configuration.
    Off,
    /// Logging in (first attempt or retrying with backoff); requests pass
    /// through untouched until the first login succeeds.
    LoggingIn,
    /// Logged in: requests are recorded and batches are sent.
    LoggedIn,
    /// Logged in, but the backend turned instrumentation off
    /// (`instrumentation_remove`).
    Paused,
    /// Shut down: the guard was dropped or [`Agent::shutdown`](crate::Agent::shutdown) ran.
    ShutDown,
}

impl LoginState {
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::LoggingIn,
            2 => Self::LoggedIn,
            3 => Self::Paused,
            4 => Self::ShutDown,
            _ => Self::Off,
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::LoggingIn => 1,
            Self::LoggedIn => 2,
            Self::Paused => 3,
            Self::ShutDown => 4,
        }
    }
}

/// A snapshot of the agent's counters since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Request records handed to the agent thread (they held at least one entry).
    pub records_queued: u64,
    /// Request records dropped because the queue was full (`event_queue_length`).
    pub records_dropped_queue_full: u64,
    /// Events (request records) the backend acknowledged.
    pub events_sent: u64,
    /// Batches the backend acknowledged.
    pub batches_sent: u64,
    /// Batch sends that failed (network error, timeout, non-2xx answer).
    pub batches_failed: u64,
    /// Events re-sent after a failed batch.
    pub events_retried: u64,
    /// Events dropped because the retry buffer was full (oldest first).
    pub events_dropped_retry_buffer: u64,
    /// Events still waiting to be sent (pending batch plus retry buffer).
    pub events_pending: u64,
    /// String values replaced, whole or in part, by the scrubber.
    pub values_scrubbed: u64,
    /// SDK calls with invalid input that were truncated or dropped
    /// (empty or over-long names, too many properties, huge values).
    pub invalid_sdk_input: u64,
    /// Request fields skipped or truncated because they were malformed or
    /// oversized (non-UTF-8 headers, absurd lengths, unparsable bodies).
    pub invalid_request_input: u64,
    /// Backend answers that could not be understood (bad JSON, bad fields).
    pub bad_backend_answers: u64,
    /// Events dropped because the backend refused them on their own (400
    /// or 413 to a batch of one, after splitting the batch they came in).
    pub events_refused: u64,
    /// Events dropped after their batch failed too many times (answers
    /// other than 401, 429, 503 or a network error).
    pub events_abandoned: u64,
    /// Batches split in two because the backend refused them (400, 413).
    pub batches_split: u64,
    /// Heartbeats not delivered (their command results and metrics are
    /// kept, unless the backend refused the metrics).
    pub heartbeats_failed: u64,
    /// Login/signup metric keys folded into per-IP keys because a store
    /// was full (their user identifiers are lost, their counts are not).
    pub metric_keys_folded: u64,
    /// Login/signup observations lost: a store full of per-IP keys, or
    /// metrics the backend refused.
    pub metric_observations_dropped: u64,
    /// Login attempts, successful or not.
    pub login_attempts: u64,
    /// Successful logins (the first one and every re-login).
    pub logins: u64,
    /// Heartbeats the backend acknowledged.
    pub heartbeats_sent: u64,
    /// Commands received from the backend and executed (successfully or not).
    pub commands_executed: u64,
    /// Security responses enforced (blocked or redirected requests and users).
    pub actions_enforced: u64,
    /// The current login state.
    pub login_state: Option<LoginState>,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub records_queued: AtomicU64,
    pub records_dropped_queue_full: AtomicU64,
    pub events_sent: AtomicU64,
    pub batches_sent: AtomicU64,
    pub batches_failed: AtomicU64,
    pub events_retried: AtomicU64,
    pub events_dropped_retry_buffer: AtomicU64,
    pub events_pending: AtomicU64,
    pub values_scrubbed: AtomicU64,
    pub invalid_sdk_input: AtomicU64,
    pub invalid_request_input: AtomicU64,
    pub bad_backend_answers: AtomicU64,
    pub events_refused: AtomicU64,
    pub events_abandoned: AtomicU64,
    pub batches_split: AtomicU64,
    pub heartbeats_failed: AtomicU64,
    pub metric_keys_folded: AtomicU64,
    pub metric_observations_dropped: AtomicU64,
    pub login_attempts: AtomicU64,
    pub logins: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub commands_executed: AtomicU64,
    pub actions_enforced: AtomicU64,
    pub login_state: AtomicU8,
}

/// Adds `n` to a counter; relaxed because counters order nothing.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            records_queued: get(&self.records_queued),
            records_dropped_queue_full: get(&self.records_dropped_queue_full),
            events_sent: get(&self.events_sent),
            batches_sent: get(&self.batches_sent),
            batches_failed: get(&self.batches_failed),
            events_retried: get(&self.events_retried),
            events_dropped_retry_buffer: get(&self.events_dropped_retry_buffer),
            events_pending: get(&self.events_pending),
            values_scrubbed: get(&self.values_scrubbed),
            invalid_sdk_input: get(&self.invalid_sdk_input),
            invalid_request_input: get(&self.invalid_request_input),
            bad_backend_answers: get(&self.bad_backend_answers),
            events_refused: get(&self.events_refused),
            events_abandoned: get(&self.events_abandoned),
            batches_split: get(&self.batches_split),
            heartbeats_failed: get(&self.heartbeats_failed),
            metric_keys_folded: get(&self.metric_keys_folded),
            metric_observations_dropped: get(&self.metric_observations_dropped),
            login_attempts: get(&self.login_attempts),
            logins: get(&self.logins),
            heartbeats_sent: get(&self.heartbeats_sent),
            commands_executed: get(&self.commands_executed),
            actions_enforced: get(&self.actions_enforced),
            login_state: Some(self.login_state()),
        }
    }

    pub fn login_state(&self) -> LoginState {
        LoginState::from_u8(self.login_state.load(Ordering::Acquire))
    }

    pub fn set_login_state(&self, state: LoginState) {
        self.login_state.store(state.as_u8(), Ordering::Release);
    }
}

/// Lets one warning of a kind through every ten seconds at most.
///
/// Bad input can arrive on every request; logging each occurrence would let
/// a client fill the disk. The counters still count every occurrence.
#[derive(Debug, Default)]
pub(crate) struct WarnLimiter {
    last_second: AtomicU64,
}

impl WarnLimiter {
    const PERIOD_SECS: u64 = 10;

    /// True when the caller may log now.
    pub fn allow(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_second.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < Self::PERIOD_SECS {
            return false;
        }
        self.last_second
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limiter lets the first warning through and holds back the next ones.
    #[test]
    fn warn_limiter_allows_first_only() {
        let limiter = WarnLimiter::default();
        assert!(limiter.allow());
        assert!(!limiter.allow());
        assert!(!limiter.allow());
    }

    /// Login states survive the round trip through their atomic encoding.
    #[test]
    fn login_state_round_trips() {
        for state in [
            LoginState::Off,
            LoginState::LoggingIn,
            LoginState::LoggedIn,
            LoginState::Paused,
            LoginState::ShutDown,
        ] {
            assert_eq!(LoginState::from_u8(state.as_u8()), state);
        }
    }
}
