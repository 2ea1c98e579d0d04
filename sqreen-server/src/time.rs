//! Time as the server keeps it: milliseconds since the Unix epoch (`i64`)
//! in storage, RFC 3339 UTC with milliseconds on the wire (PROTOCOL.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Parses an RFC 3339 timestamp (`2026-11-24T19:00:00.123Z`) to milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok(),
        Err(e) => i64::try_from(e.duration().as_millis()).ok().map(|v| -v),
    }
}

/// Parses an API time filter: milliseconds since the epoch, or RFC 3339.
pub fn parse_filter_time(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| parse_rfc3339_ms(text))
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_millis(t).to_string()
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
}
