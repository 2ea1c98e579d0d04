//! Time as the server keeps it: milliseconds since the Unix epoch (`i64`)
//! in storage, RFC 3339 UTC with milliseconds on the wire (docs/PROTOCOL.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The latest time the server takes or shows: 9999-12-31T23:59:59.999Z
/// (RFC 3339 has four-digit years). The earliest is the epoch.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Parses an RFC 3339 timestamp (`2026-11-24T19:00:00.123Z`) to
/// milliseconds; `None` outside 1970 to 9999.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    let ms = i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    (ms <= MAX_TIME_MS).then_some(ms)
}

/// Parses a timestamp as the agents send it: RFC 3339 (`…Z`, ours and
/// Go's, Node's `Date` JSON), a numeric UTC offset (`…+00:00`, Python's
/// `isoformat()` of an aware time) or no zone at all (Python's naive UTC
/// times); `None` outside 1970 to 9999.
pub fn parse_agent_time(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let has_offset = n > 6
        && matches!(bytes[n - 6], b'+' | b'-')
        && bytes[n - 3] == b':'
        && [n - 5, n - 4, n - 2, n - 1]
            .iter()
            .all(|&i| bytes[i].is_ascii_digit());
    if !has_offset {
        return parse_rfc3339_ms(text);
    }
    let (base, offset) = text.split_at(n - 6);
    let hours: i64 = offset.get(1..3)?.parse().ok()?;
    let minutes: i64 = offset.get(4..6)?.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    let shift = (hours * 60 + minutes) * 60_000;
    let local = humantime::parse_rfc3339_weak(base).ok()?;
    let local = i64::try_from(local.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    let ms = if offset.starts_with('+') {
        local - shift
    } else {
        local + shift
    };
    (0..=MAX_TIME_MS).contains(&ms).then_some(ms)
}

/// Parses an API time filter: milliseconds since the epoch, or RFC 3339;
/// `None` outside 0 ..= [`MAX_TIME_MS`].
pub fn parse_filter_time(text: &str) -> Option<i64> {
    match text.parse::<i64>() {
        Ok(ms) => (0..=MAX_TIME_MS).contains(&ms).then_some(ms),
        Err(_) => parse_rfc3339_ms(text),
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds;
/// times outside 0 ..= [`MAX_TIME_MS`] are shown as the nearest bound.
pub fn format_ms(ms: i64) -> String {
    let ms = ms.clamp(0, MAX_TIME_MS).unsigned_abs();
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protocol timestamps round-trip through milliseconds.
    #[test]
    fn rfc3339_round_trip() {
        let ms = parse_rfc3339_ms("2026-09-21T14:13:20.123Z").expect("valid");
        assert_eq!(ms, 1_790_000_000_123);
        assert_eq!(format_ms(ms), "2026-09-21T14:13:20.123Z");
        assert_eq!(parse_filter_time("1790000000123"), Some(ms));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    /// The agents' variants: offsets, and naive times read as UTC.
    #[test]
    fn agent_times() {
        let z = parse_rfc3339_ms("2026-09-21T14:13:20.123Z");
        assert_eq!(parse_agent_time("2026-09-21T14:13:20.123456+00:00"), z);
        assert_eq!(parse_agent_time("2026-09-21T16:13:20.123+02:00"), z);
        assert_eq!(parse_agent_time("2026-09-21T13:13:20.123-01:00"), z);
        assert_eq!(parse_agent_time("2026-09-21T14:13:20.123456"), z);
        assert_eq!(parse_agent_time("2026-09-21T14:13:20.123Z"), z);
        assert_eq!(parse_agent_time("1970-01-01T00:00:00+01:00"), None);
        assert_eq!(parse_agent_time("garbage+00:00"), None);
    }

    /// Times beyond year 9999 or before the epoch are refused when parsed
    /// and clamped when shown: never a panic.
    #[test]
    fn extreme_times() {
        assert_eq!(parse_filter_time("253402300800000"), None);
        assert_eq!(parse_filter_time("-1"), None);
        assert_eq!(parse_filter_time(&i64::MIN.to_string()), None);
        assert_eq!(parse_filter_time("10000-01-01T00:00:00Z"), None);
        assert_eq!(format_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_ms(i64::MIN), "1970-01-01T00:00:00.000Z");
    }
}
