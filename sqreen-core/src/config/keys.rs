//! The configuration keys, each declared once: its file key (the
//! environment variable is `SQREEN_` and the file key in upper case), its
//! default as documented, and its meaning.
//!
//! Everything that names keys is derived from this table: the config
//! file's accepted keys, the environment lookup, the key named by
//! [`ConfigError::Invalid`](super::ConfigError::Invalid), and the module
//! documentation's table (`keys.md`, rendered from it and checked by the
//! `keys_table_is_rendered_from_the_table` test; run that test with
//! `SQREEN_BLESS=1` to rewrite the file after changing a row). The typed
//! parts — a field of [`Config`](super::Config), a setter of
//! [`ConfigBuilder`](super::ConfigBuilder), the parsing in
//! `ConfigBuilder::apply` and the checks in `ConfigBuilder::build` — are
//! written out per key, and `match`es over [`Key`] make the compiler point
//! at each of them when a key is added.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use super::raw::Raw;

/// The prefix of every environment variable of the agent.
pub(super) const ENV_PREFIX: &str = "SQREEN_";

/// Declares [`Key`] and its table from one row per key:
/// `/// meaning` then `Variant = "file_key", default "as documented";`.
macro_rules! keys {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $file:literal, default $default:literal; )+) => {
        /// A configuration key.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) enum Key {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Key {
            /// Every key, in the documentation's order.
            pub(super) const ALL: &'static [Key] = &[$( Key::$variant, )+];

            /// Every file key, in the same order.
            const NAMES: &'static [&'static str] = &[$( $file, )+];

            /// The file key (`batch_size`).
            pub(super) const fn name(self) -> &'static str {
                match self { $( Key::$variant => $file, )+ }
            }

            /// The default as the documentation shows it.
            #[cfg(test)]
            pub(super) const fn default_shown(self) -> &'static str {
                match self { $( Key::$variant => $default, )+ }
            }

            /// What the key means, as the documentation shows it.
            #[cfg(test)]
            pub(super) fn meaning(self) -> &'static str {
                match self { $( Key::$variant => concat!($($doc),+).trim_start(), )+ }
            }
        }
    };
}

keys! {
    /// The application's secret token, sent to the backend at login. The agent
    /// stays off without it. Never logged beyond its first 7 characters.
    Token = "token", default "none";
    /// Application name sent at login (`X-App-Name`).
    AppName = "app_name", default "none";
    /// Backend base URL, `http://` or `https://`; trailing `/` is trimmed.
    Url = "url", default "`http://127.0.0.1:8700` ([`DEFAULT_URL`])";
    /// Turns the agent off even when a token is set.
    Disable = "disable", default "`false`";
    /// A header that carries the client IP, checked before the usual proxy
    /// headers.
    IpHeader = "ip_header", default "none";
    /// How `ip_header` encodes the address: `plain` or `haproxy_x_unique_id`.
    IpHeaderFormat = "ip_header_format", default "`plain`";
    /// Proxies whose forwarding headers are believed: CIDR ranges; a bare
    /// address means `/32` or `/128`. A list in a file, comma-separated in the
    /// environment (a file also takes that form).
    TrustedProxies = "trusted_proxies", default "none";
    /// Leaves the `Referer` header out of what is sent.
    StripHttpReferer = "strip_http_referer", default "`false`";
    /// Keys whose values are scrubbed; `""` disables.
    StripSensitiveKeyRegexp = "strip_sensitive_key_regexp", default "the protocol's key regex";
    /// Value parts that are scrubbed; `""` disables. To also mask e-mail
    /// addresses (off by default: user identifiers are often e-mails that
    /// playbooks act on), use
    /// [`scrub::CARD_OR_EMAIL_VALUE_REGEXP`](crate::scrub::CARD_OR_EMAIL_VALUE_REGEXP).
    StripSensitiveValueRegexp = "strip_sensitive_value_regexp", default "the protocol's card-number regex";
    /// Outgoing proxy for the backend connection: an `http`, `https`, `socks5`
    /// or `socks5h` URL. Without it, the standard `HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY` variables apply (never to a backend on
    /// loopback).
    Proxy = "proxy", default "none";
    /// A PEM file of certificate authorities trusted for the backend's HTTPS,
    /// besides the built-in ones (a self-hosted server behind an internal CA).
    CaFile = "ca_file", default "none";
    /// Also trust the operating system's certificate store for the backend's
    /// HTTPS.
    PlatformRoots = "platform_roots", default "`false`";
    /// With the `otel` feature: also export each tracked event as an
    /// OpenTelemetry log record (OTLP, configured by the standard `OTEL_*`
    /// variables).
    OtelLogs = "otel_logs", default "`false`";
    /// Time between heartbeats. Must not be zero.
    HeartbeatDelay = "heartbeat_delay", default "`60s`";
    /// Events sent per batch at most. Must not be zero.
    BatchSize = "batch_size", default "`1000`";
    /// Longest time an event waits before its batch is sent. Must not be zero.
    MaxStaleness = "max_staleness", default "`60s`";
    /// Request records queued for the agent's thread at most; more are dropped
    /// and counted. Must not be zero.
    EventQueueLength = "event_queue_length", default "`10000`";
    /// Bytes of a request body kept at most; `0` disables body capture.
    BodyCaptureLimit = "body_capture_limit", default "`16384`";
    /// Status of the response to a blocked request, `400`–`599`.
    BlockingStatus = "blocking_status", default "`403`";
    /// IPv6 IP actions narrower than this prefix length are widened to it (an
    /// attacker holds a whole /64), `1`–`128`.
    Ipv6ActionPrefix = "ipv6_action_prefix", default "`64`";
    /// Longest time the final flush may take at shutdown. Must not be zero.
    ShutdownTimeout = "shutdown_timeout", default "`5s`";
}

impl Key {
    /// The environment variable: `SQREEN_` and the file key in upper case.
    #[cfg(test)]
    pub(super) fn env_var(self) -> String {
        format!("{ENV_PREFIX}{}", self.name().to_ascii_uppercase())
    }

    /// The key whose environment variable is `name`.
    pub(super) fn from_env_var(name: &str) -> Option<Key> {
        let upper = name.strip_prefix(ENV_PREFIX)?;
        Key::ALL.iter().copied().find(|key| {
            let file = key.name();
            upper.len() == file.len()
                && upper
                    .bytes()
                    .zip(file.bytes())
                    .all(|(u, f)| u == f.to_ascii_uppercase())
        })
    }

    /// The key whose file key is `name`.
    fn from_name(name: &str) -> Option<Key> {
        Key::ALL.iter().copied().find(|key| key.name() == name)
    }

    /// The regexes keep their text as written, and `""` means "disabled"
    /// rather than "unset".
    pub(super) fn is_regex(self) -> bool {
        matches!(
            self,
            Key::StripSensitiveKeyRegexp | Key::StripSensitiveValueRegexp
        )
    }
}

/// The documentation's table of keys, rendered from [`Key`]'s table.
#[cfg(test)]
pub(super) fn render_table() -> String {
    let mut table = String::from(
        "| File key | Environment variable | Default | Meaning |\n|---|---|---|---|\n",
    );
    for key in Key::ALL {
        table.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            key.name(),
            key.env_var(),
            key.default_shown(),
            key.meaning()
        ));
    }
    table
}

/// A config file's settings, in the file's order: a table (mapping) whose
/// keys are file keys; an unknown or repeated key is an error naming it.
#[derive(Debug, Default)]
pub(super) struct FileEntries(pub(super) Vec<(Key, Raw)>);

impl<'de> Deserialize<'de> for FileEntries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = FileEntries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileEntries, A::Error> {
        let mut entries: Vec<(Key, Raw)> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let key =
                Key::from_name(&name).ok_or_else(|| de::Error::unknown_field(&name, Key::NAMES))?;
            if entries.iter().any(|(seen, _)| *seen == key) {
                return Err(de::Error::duplicate_field(key.name()));
            }
            entries.push((key, map.next_value::<Raw>()?));
        }
        Ok(FileEntries(entries))
    }
}
