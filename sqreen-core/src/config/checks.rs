//! The checks and redactions of settings: URLs, header names, trusted
//! proxies, durations and counts that must not be zero; tokens and URL
//! passwords hidden in errors and `Debug` output.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::ConfigError;
use super::keys::Key;
use super::raw::ZERO_REASON;

/// Characters of the token shown in logs, errors and `Debug` output.
const TOKEN_SHOWN_CHARS: usize = 7;

/// The first 7 characters of `token` followed by `…`; `…` alone for a token
/// so short that 7 characters would be all of it.
pub(super) fn redact_token(token: &str) -> String {
    if token.chars().count() > TOKEN_SHOWN_CHARS {
        let shown: String = token.chars().take(TOKEN_SHOWN_CHARS).collect();
        format!("{shown}…")
    } else {
        "…".to_owned()
    }
}

/// `url` with any `user:password@` part replaced by `***@`.
pub(super) fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => url.to_owned(),
    }
}

pub(super) fn non_blank(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// Whole seconds, or a humantime duration.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        text.parse().ok().map(Duration::from_secs)
    } else {
        humantime::parse_duration(text).ok()
    }
}

pub(super) const BACKEND_SCHEMES: &[&str] = &["http", "https"];
pub(super) const PROXY_SCHEMES: &[&str] = &["http", "https", "socks5", "socks5h"];

/// `url`, trimmed, if it has one of `schemes` and a host.
pub(super) fn check_url(key: Key, url: &str, schemes: &[&str]) -> Result<String, ConfigError> {
    let url = url.trim();
    let invalid = || {
        let schemes: Vec<String> = schemes
            .iter()
            .map(|scheme| format!("`{scheme}://`"))
            .collect();
        let schemes = match schemes.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => schemes.concat(),
        };
        ConfigError::invalid(
            key,
            url,
            format!("expected a URL with a host, starting with {schemes}"),
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
    if !schemes
        .iter()
        .any(|known| known.eq_ignore_ascii_case(scheme))
    {
        return Err(invalid());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') || url.chars().any(char::is_whitespace) {
        return Err(invalid());
    }
    Ok(url.to_owned())
}

/// `name` if it is a valid HTTP header name (RFC 9110 token).
pub(super) fn check_header_name(name: &str) -> Result<String, ConfigError> {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.chars().all(is_token_char) {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::invalid(
            Key::IpHeader,
            name,
            "expected an HTTP header name such as `X-Forwarded-For`",
        ))
    }
}

/// CIDR ranges from entries that may each be comma-separated; a bare
/// address is a single-address range, empty entries are skipped.
pub(super) fn parse_trusted_proxies(entries: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    entries
        .iter()
        .flat_map(|entry| entry.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::invalid(
                        Key::TrustedProxies,
                        entry,
                        "expected an IP address or a CIDR range such as `10.0.0.0/8`",
                    )
                })
        })
        .collect()
}

pub(super) fn non_zero_duration(key: Key, duration: Duration) -> Result<Duration, ConfigError> {
    if duration.is_zero() {
        Err(ConfigError::invalid(
            key,
            &humantime::format_duration(duration).to_string(),
            ZERO_REASON,
        ))
    } else {
        Ok(duration)
    }
}

pub(super) fn non_zero_count(key: Key, count: usize) -> Result<usize, ConfigError> {
    if count == 0 {
        Err(ConfigError::invalid(key, "0", ZERO_REASON))
    } else {
        Ok(count)
    }
}
