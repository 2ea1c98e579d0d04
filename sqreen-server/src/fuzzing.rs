//! Entry points for the fuzz targets of `sqreen-server/fuzz` (cargo fuzz)
//! and for the test that replays their corpus with stable Rust
//! (`tests/fuzz_corpus.rs`): each takes arbitrary bytes, runs one decoder
//! the way a request would, and checks what it returns against the
//! decoder's documented bounds. A panic, from the decoder or from a broken
//! bound, is a finding.
//!
//! | target | what it reads |
//! | --- | --- |
//! | [`batch`] | a `POST /sqreen/v0/batch` body |
//! | [`heartbeat`] | a `POST /sqreen/v1/app-beat` body |
//! | [`login`] | a `POST /sqreen/v1/app-login` body |
//! | [`session_cookie`] | a `Cookie` header, for the dashboard session |
//! | [`dashboard_forms`] | the playbook form and the explorer's query string |
//! | [`admin_query`] | the admin API's `/api/events` and `/api/events/trend` query strings |

use axum::http::{HeaderMap, HeaderValue, header};

use crate::protocol::{self, MAX_BATCH_EVENTS, MAX_USER_KEY};
use crate::time::MAX_TIME_MS;

/// A fixed "now" for the targets: results must not depend on the clock.
const NOW_MS: i64 = 1_800_000_000_000;

/// A batch body: refused, or events within the bounds.
pub fn batch(data: &[u8]) {
    if let Ok(outcome) = protocol::decode_batch(data) {
        let events = &outcome.events;
        assert!(events.len() <= MAX_BATCH_EVENTS);
        assert!(outcome.refused.len() <= outcome.received);
        for (i, e) in events.iter().enumerate() {
            assert!(e.user_key().len() <= MAX_USER_KEY);
            assert!((0..=MAX_TIME_MS).contains(&e.time));
            assert!(e.context_of.is_none_or(|h| h < i));
        }
    }
}

/// A heartbeat body: refused, or metric events with sane counts.
pub fn heartbeat(data: &[u8]) {
    if let Ok((_, events, _)) = protocol::decode_beat(data, "fuzz-session") {
        for e in &events {
            assert!(
                (1..=i64::try_from(protocol::MAX_METRIC_COUNT).unwrap_or(i64::MAX))
                    .contains(&e.count)
            );
            assert!((0..=MAX_TIME_MS).contains(&e.time));
        }
    }
}

/// A login body: refused, or an agent description of bounded size.
pub fn login(data: &[u8]) {
    if let Ok(info) = protocol::decode_login(data) {
        assert!(info.agent.len() <= 4096);
        assert!(info.agent_type.chars().count() <= 100);
    }
}

/// A `Cookie` header: the session cookie found in it never verifies (the
/// fuzzer cannot forge a MAC) and its CSRF token is computed without panic.
pub fn session_cookie(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, value);
    let key = crate::dashboard::session::SessionKey::new(
        b"fuzzing secret, thirty-two bytes!",
        &crate::secret::hash("fuzzing admin key"),
    );
    if let Some(cookie) = crate::dashboard::session::cookie_value(&headers, "sqreen_session") {
        assert!(!key.verify(cookie, NOW_MS));
        let _ = key.csrf_token(cookie);
    }
}

/// A form body, read both as the playbook form (then validated) and as the
/// explorer's query string.
pub fn dashboard_forms(data: &[u8]) {
    if let Ok(form) =
        serde_urlencoded::from_bytes::<crate::dashboard::playbooks::PlaybookForm>(data)
        && let Ok(playbook) = form.to_playbook()
    {
        assert!(playbook.validate().is_ok());
    }
    if let Ok(params) =
        serde_urlencoded::from_bytes::<crate::dashboard::events::ExplorerParams>(data)
        && let Ok(filter) = crate::dashboard::events::filter_of(&params, NOW_MS)
    {
        let (since, until) = (filter.since.unwrap_or(0), filter.until.unwrap_or(0));
        assert!(since < until);
        assert!(since >= 0 && until <= MAX_TIME_MS.max(NOW_MS));
    }
}

/// An admin API query string, read as an event list query and as a trend
/// query.
pub fn admin_query(data: &[u8]) {
    let Ok(params) = serde_urlencoded::from_bytes::<crate::admin::EventsParams>(data) else {
        return;
    };
    if let Ok(q) = crate::admin::list_query(&params) {
        assert!((1..=crate::admin::MAX_LIMIT).contains(&q.limit));
    }
    if let Ok(q) = crate::admin::trend_query(&params, NOW_MS) {
        let (since, until) = (q.filter.since.unwrap_or(0), q.filter.until.unwrap_or(0));
        assert!(since < until);
        assert!((until - since) / (q.bucket_s * 1000) <= crate::admin::MAX_BUCKETS);
    }
}
