//! The agent's configuration: where each setting comes from, what it means,
//! and the checks that turn raw settings into a validated [`Config`].
//!
//! # Layering
//!
//! Every key is resolved on its own; each layer overrides the ones above it:
//!
//! 1. **defaults** built into the agent (the table below);
//! 2. **the config file**: the path in `SQREEN_CONFIG_FILE` if that is set (a
//!    missing file is then an error), otherwise the first of `sqreen.toml`,
//!    `sqreen.yml` and `sqreen.yaml` found in the working directory (finding
//!    none is fine);
//! 3. **the environment**: the `SQREEN_*` variables;
//! 4. **code**: the [`ConfigBuilder`] setters.
//!
//! [`Config::from_env`] applies layers 1–3 and validates;
//! [`ConfigBuilder::from_env`] applies the same layers and leaves room for
//! layer 4 before [`ConfigBuilder::build`]. [`Config::builder`] starts from
//! the defaults alone: no file, no environment.
//!
//! # Keys
//!
//! | File key | Environment variable | Default | Meaning |
//! |---|---|---|---|
//! | `token` | `SQREEN_TOKEN` | none | The application's secret token, sent to the backend at login. The agent stays off without it. Never logged beyond its first 7 characters. |
//! | `app_name` | `SQREEN_APP_NAME` | none | Application name sent at login (`X-App-Name`). |
//! | `url` | `SQREEN_URL` | `http://127.0.0.1:8700` ([`DEFAULT_URL`]) | Backend base URL, `http://` or `https://`; trailing `/` is trimmed. |
//! | `disable` | `SQREEN_DISABLE` | `false` | Turns the agent off even when a token is set. |
//! | `ip_header` | `SQREEN_IP_HEADER` | none | A header that carries the client IP, checked before the usual proxy headers. |
//! | `ip_header_format` | `SQREEN_IP_HEADER_FORMAT` | `plain` | How `ip_header` encodes the address: `plain` or `haproxy_x_unique_id`. |
//! | `trusted_proxies` | `SQREEN_TRUSTED_PROXIES` | none | Proxies whose forwarding headers are believed: CIDR ranges; a bare address means `/32` or `/128`. A list in a file, comma-separated in the environment (a file also takes that form). |
//! | `strip_http_referer` | `SQREEN_STRIP_HTTP_REFERER` | `false` | Leaves the `Referer` header out of what is sent. |
//! | `strip_sensitive_key_regexp` | `SQREEN_STRIP_SENSITIVE_KEY_REGEXP` | the protocol's key regex | Keys whose values are scrubbed; `""` disables. |
//! | `strip_sensitive_value_regexp` | `SQREEN_STRIP_SENSITIVE_VALUE_REGEXP` | the protocol's card-number regex | Value parts that are scrubbed; `""` disables. To also mask e-mail addresses (off by default: user identifiers are often e-mails that playbooks act on), use [`scrub::CARD_OR_EMAIL_VALUE_REGEXP`](crate::scrub::CARD_OR_EMAIL_VALUE_REGEXP). |
//! | `proxy` | `SQREEN_PROXY` | none | Outgoing proxy for the backend connection: an `http`, `https`, `socks5` or `socks5h` URL. Without it, the standard `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` variables apply (never to a backend on loopback). |
//! | `ca_file` | `SQREEN_CA_FILE` | none | A PEM file of certificate authorities trusted for the backend's HTTPS, besides the built-in ones (a self-hosted server behind an internal CA). |
//! | `platform_roots` | `SQREEN_PLATFORM_ROOTS` | `false` | Also trust the operating system's certificate store for the backend's HTTPS. |
//! | `otel_logs` | `SQREEN_OTEL_LOGS` | `false` | With the `otel` feature: also export each tracked event as an OpenTelemetry log record (OTLP, configured by the standard `OTEL_*` variables). |
//! | `heartbeat_delay` | `SQREEN_HEARTBEAT_DELAY` | `60s` | Time between heartbeats. Must not be zero. |
//! | `batch_size` | `SQREEN_BATCH_SIZE` | `1000` | Events sent per batch at most. Must not be zero. |
//! | `max_staleness` | `SQREEN_MAX_STALENESS` | `60s` | Longest time an event waits before its batch is sent. Must not be zero. |
//! | `event_queue_length` | `SQREEN_EVENT_QUEUE_LENGTH` | `10000` | Request records queued for the agent's thread at most; more are dropped and counted. Must not be zero. |
//! | `body_capture_limit` | `SQREEN_BODY_CAPTURE_LIMIT` | `16384` | Bytes of a request body kept at most; `0` disables body capture. |
//! | `blocking_status` | `SQREEN_BLOCKING_STATUS` | `403` | Status of the response to a blocked request, `400`–`599`. |
//! | `ipv6_action_prefix` | `SQREEN_IPV6_ACTION_PREFIX` | `64` | IPv6 IP actions narrower than this prefix length are widened to it (an attacker holds a whole /64), `1`–`128`. |
//! | `shutdown_timeout` | `SQREEN_SHUTDOWN_TIMEOUT` | `5s` | Longest time the final flush may take at shutdown. Must not be zero. |
//!
//! `SQREEN_CONFIG_FILE` chooses the config file; it has no file key.
//!
//! # Value syntax
//!
//! - **Booleans**: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any
//!   case (a file may also use its own booleans).
//! - **Durations**: whole seconds (`30`) or a [`humantime`] duration
//!   (`"500ms"`, `"5s"`, `"1m 30s"`).
//! - **Numbers**: whole, non-negative numbers.
//! - **Empty values**: an empty (or blank) value means *not set*, so the
//!   layer below applies, with one exception taken from the protocol: an
//!   empty `strip_sensitive_key_regexp` or `strip_sensitive_value_regexp`,
//!   from a file or the environment, disables that regex.
//! - **Surrounding whitespace** is trimmed from every value but the two
//!   regexes, which are taken as written.
//! - **Unknown keys**: a config file with a key not in the table is rejected,
//!   naming the key (a typo would otherwise be silently ignored). Unknown
//!   `SQREEN_*` environment variables are ignored with a warning, since other
//!   programs may share the prefix.
//!
//! Every invalid value is a [`ConfigError::Invalid`] naming its file key; no
//! error and no `Debug` output shows more than the first 7 characters of the
//! token, nor the password of a proxy URL.
//!
//! # Examples
//!
//! In code:
//!
//! ```
//! use std::time::Duration;
//!
//! let config = sqreen_core::config::Config::builder()
//!     .token("my-token")
//!     .app_name("my-app")
//!     .build()
//!     .unwrap();
//! assert!(config.is_enabled());
//! assert_eq!(config.heartbeat_delay, Duration::from_secs(60));
//! ```
//!
//! From environment-style pairs, with code on top:
//!
//! ```
//! use sqreen_core::config::ConfigBuilder;
//! use std::time::Duration;
//!
//! let config = ConfigBuilder::from_vars([
//!     ("SQREEN_TOKEN", "env-token"),
//!     ("SQREEN_HEARTBEAT_DELAY", "30s"),
//!     ("SQREEN_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
//! ])?
//! .app_name("shop")
//! .build()?;
//! assert_eq!(config.heartbeat_delay, Duration::from_secs(30));
//! assert_eq!(config.trusted_proxies.len(), 2);
//! # Ok::<(), sqreen_core::config::ConfigError>(())
//! ```
//!
//! A `sqreen.toml`:
//!
//! ```toml
//! token = "…"
//! app_name = "shop"
//! heartbeat_delay = "30s"
//! trusted_proxies = ["10.0.0.0/8", "192.168.1.1"]
//! strip_sensitive_value_regexp = ""   # no value scrubbing
//! ```

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::client_ip::IpHeaderFormat;
use crate::scrub::{Scrubber, ScrubberError};

/// The backend URL used when none is configured: the self-hosted
/// `sqreen-server`'s default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8700";
/// Default time between heartbeats.
pub const DEFAULT_HEARTBEAT_DELAY: Duration = Duration::from_secs(60);
/// Default number of events sent per batch at most.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// Default longest wait of an event before its batch is sent.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(60);
/// Default number of request records queued for the agent's thread at most.
pub const DEFAULT_EVENT_QUEUE_LENGTH: usize = 10_000;
/// Default number of request body bytes kept at most.
pub const DEFAULT_BODY_CAPTURE_LIMIT: usize = 16_384;
/// Default status of the response to a blocked request.
pub const DEFAULT_BLOCKING_STATUS: u16 = 403;
/// Default prefix length IPv6 IP actions are widened to.
pub const DEFAULT_IPV6_ACTION_PREFIX: u8 = 64;
/// Default longest time of the final flush at shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// The environment variable naming the config file to load.
pub const CONFIG_FILE_ENV: &str = "SQREEN_CONFIG_FILE";
/// The files looked for in the working directory, in this order, when
/// [`CONFIG_FILE_ENV`] is not set.
pub const DEFAULT_CONFIG_FILES: [&str; 3] = ["sqreen.toml", "sqreen.yml", "sqreen.yaml"];

/// The prefix of every environment variable the agent reads.
const ENV_PREFIX: &str = "SQREEN_";
/// How many leading characters of the token may appear in logs (PROTOCOL.md).
const TOKEN_SHOWN_CHARS: usize = 7;

/// The agent's validated configuration.
///
/// Built by [`Config::from_env`] or a [`ConfigBuilder`]; see the
/// [module documentation](self) for the layering and the value syntax. Its
/// `Debug` output shows the token redacted (see [`Config::redacted_token`]).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The application's secret token, sent to the backend at login; the
    /// agent is off without it.
    ///
    /// Default: none. Environment: `SQREEN_TOKEN`. File key: `token`.
    pub token: Option<String>,
    /// The application name sent at login.
    ///
    /// Default: none. Environment: `SQREEN_APP_NAME`. File key: `app_name`.
    pub app_name: Option<String>,
    /// The backend's base URL, `http://` or `https://`, without a trailing `/`.
    ///
    /// Default: [`DEFAULT_URL`]. Environment: `SQREEN_URL`. File key: `url`.
    pub url: String,
    /// Turns the agent off even when a token is set.
    ///
    /// Default: `false`. Environment: `SQREEN_DISABLE`. File key: `disable`.
    pub disable: bool,
    /// A header carrying the client IP, checked before the usual proxy headers.
    ///
    /// Default: none. Environment: `SQREEN_IP_HEADER`. File key: `ip_header`.
    pub ip_header: Option<String>,
    /// How [`ip_header`](Self::ip_header) encodes the address.
    ///
    /// Default: [`IpHeaderFormat::Plain`]. Environment:
    /// `SQREEN_IP_HEADER_FORMAT`. File key: `ip_header_format`.
    pub ip_header_format: IpHeaderFormat,
    /// Proxies whose forwarding headers are believed.
    ///
    /// Default: none. Environment: `SQREEN_TRUSTED_PROXIES` (comma-separated
    /// CIDRs; a bare address means `/32` or `/128`). File key:
    /// `trusted_proxies`.
    pub trusted_proxies: Vec<IpNet>,
    /// Leaves the `Referer` header out of what is sent.
    ///
    /// Default: `false`. Environment: `SQREEN_STRIP_HTTP_REFERER`. File key:
    /// `strip_http_referer`.
    pub strip_http_referer: bool,
    /// The scrubbing regex for keys: `None` is the protocol's default,
    /// `Some("")` disables key scrubbing.
    ///
    /// Default: `None`. Environment: `SQREEN_STRIP_SENSITIVE_KEY_REGEXP`.
    /// File key: `strip_sensitive_key_regexp`.
    pub strip_sensitive_key_regexp: Option<String>,
    /// The scrubbing regex for values: `None` is the protocol's default,
    /// `Some("")` disables value scrubbing.
    ///
    /// Default: `None`. Environment: `SQREEN_STRIP_SENSITIVE_VALUE_REGEXP`.
    /// File key: `strip_sensitive_value_regexp`.
    pub strip_sensitive_value_regexp: Option<String>,
    /// An outgoing proxy for the backend connection: an `http`, `https`,
    /// `socks5` or `socks5h` URL.
    ///
    /// Default: none, and then the standard `HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY` variables apply. Environment:
    /// `SQREEN_PROXY`. File key: `proxy`.
    pub proxy: Option<String>,
    /// A PEM file of certificate authorities trusted for the backend's
    /// HTTPS, besides the built-in (Mozilla) ones.
    ///
    /// Default: none. Environment: `SQREEN_CA_FILE`. File key: `ca_file`.
    pub ca_file: Option<PathBuf>,
    /// Also trusts the operating system's certificate store for the
    /// backend's HTTPS.
    ///
    /// Default: `false`. Environment: `SQREEN_PLATFORM_ROOTS`. File key:
    /// `platform_roots`.
    pub platform_roots: bool,
    /// Also export each tracked event, scrubbed, as an OpenTelemetry log
    /// record (needs the `otel` feature; without it, a warning at start).
    /// The exporter is OTLP over HTTP, configured by the standard `OTEL_*`
    /// variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `…_PROTOCOL`, `…_HEADERS`).
    ///
    /// Default: `false`. Environment: `SQREEN_OTEL_LOGS`. File key: `otel_logs`.
    pub otel_logs: bool,
    /// Time between heartbeats; never zero.
    ///
    /// Default: 60 s. Environment: `SQREEN_HEARTBEAT_DELAY`. File key:
    /// `heartbeat_delay`.
    pub heartbeat_delay: Duration,
    /// Events sent per batch at most; never zero.
    ///
    /// Default: 1000. Environment: `SQREEN_BATCH_SIZE`. File key: `batch_size`.
    pub batch_size: usize,
    /// Longest time an event waits before its batch is sent; never zero.
    ///
    /// Default: 60 s. Environment: `SQREEN_MAX_STALENESS`. File key:
    /// `max_staleness`.
    pub max_staleness: Duration,
    /// Request records queued for the agent's thread at most; never zero.
    ///
    /// Default: 10 000. Environment: `SQREEN_EVENT_QUEUE_LENGTH`. File key:
    /// `event_queue_length`.
    pub event_queue_length: usize,
    /// Bytes of a request body kept at most; `0` disables body capture.
    ///
    /// Default: 16 384. Environment: `SQREEN_BODY_CAPTURE_LIMIT`. File key:
    /// `body_capture_limit`.
    pub body_capture_limit: usize,
    /// Status of the response to a blocked request, within `400..=599`.
    ///
    /// Default: 403. Environment: `SQREEN_BLOCKING_STATUS`. File key:
    /// `blocking_status`.
    pub blocking_status: u16,
    /// IPv6 block and redirect actions narrower than this prefix length
    /// are widened to it: one host usually holds a whole /64, so a block on
    /// one address of it would be dodged by moving to the next. Within
    /// `1..=128`; 128 matches actions as sent.
    ///
    /// Default: 64. Environment: `SQREEN_IPV6_ACTION_PREFIX`. File key:
    /// `ipv6_action_prefix`.
    pub ipv6_action_prefix: u8,
    /// Longest time the final flush may take at shutdown; never zero.
    ///
    /// Default: 5 s. Environment: `SQREEN_SHUTDOWN_TIMEOUT`. File key:
    /// `shutdown_timeout`.
    pub shutdown_timeout: Duration,
    /// The config file that was loaded, if any (for information only).
    pub config_file: Option<PathBuf>,
}

impl Config {
    /// A builder holding the defaults only: no config file, no environment.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::new()
    }

    /// The configuration from the defaults, the config file and the
    /// environment, validated: [`ConfigBuilder::from_env`] then
    /// [`ConfigBuilder::build`].
    ///
    /// # Errors
    /// Any [`ConfigError`]: an unreadable or malformed config file, or an
    /// invalid value.
    pub fn from_env() -> Result<Config, ConfigError> {
        ConfigBuilder::from_env()?.build()
    }

    /// Whether the agent should run: a non-empty token is set and
    /// [`disable`](Self::disable) is off.
    pub fn is_enabled(&self) -> bool {
        !self.disable && self.token.as_deref().is_some_and(|token| !token.is_empty())
    }

    /// The scrubber described by the two `strip_sensitive_*_regexp` settings.
    ///
    /// # Errors
    /// A [`ScrubberError`] for an invalid regex; a `Config` made by
    /// [`ConfigBuilder::build`] has had both checked already.
    pub fn scrubber(&self) -> Result<Scrubber, ScrubberError> {
        Scrubber::new(
            self.strip_sensitive_key_regexp.as_deref(),
            self.strip_sensitive_value_regexp.as_deref(),
        )
    }

    /// The token cut to its first 7 characters followed by `…`, for logs:
    /// the token is a secret. A token of 7 characters or fewer shows as `…`
    /// alone. `None` when no token (or an empty one) is set.
    pub fn redacted_token(&self) -> Option<String> {
        self.token
            .as_deref()
            .filter(|token| !token.is_empty())
            .map(redact_token)
    }
}

impl Default for Config {
    /// The defaults of the [module documentation](self)'s table; the same as
    /// `Config::builder().build()`.
    fn default() -> Self {
        Config {
            token: None,
            app_name: None,
            url: DEFAULT_URL.to_owned(),
            disable: false,
            ip_header: None,
            ip_header_format: IpHeaderFormat::default(),
            trusted_proxies: Vec::new(),
            strip_http_referer: false,
            strip_sensitive_key_regexp: None,
            strip_sensitive_value_regexp: None,
            proxy: None,
            ca_file: None,
            platform_roots: false,
            otel_logs: false,
            heartbeat_delay: DEFAULT_HEARTBEAT_DELAY,
            batch_size: DEFAULT_BATCH_SIZE,
            max_staleness: DEFAULT_MAX_STALENESS,
            event_queue_length: DEFAULT_EVENT_QUEUE_LENGTH,
            body_capture_limit: DEFAULT_BODY_CAPTURE_LIMIT,
            blocking_status: DEFAULT_BLOCKING_STATUS,
            ipv6_action_prefix: DEFAULT_IPV6_ACTION_PREFIX,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            config_file: None,
        }
    }
}

impl fmt::Debug for Config {
    /// Every field, with the token cut to its first 7 characters and any
    /// password in the URLs hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("token", &self.redacted_token())
            .field("app_name", &self.app_name)
            .field("url", &redact_userinfo(&self.url))
            .field("disable", &self.disable)
            .field("ip_header", &self.ip_header)
            .field("ip_header_format", &self.ip_header_format)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("strip_http_referer", &self.strip_http_referer)
            .field(
                "strip_sensitive_key_regexp",
                &self.strip_sensitive_key_regexp,
            )
            .field(
                "strip_sensitive_value_regexp",
                &self.strip_sensitive_value_regexp,
            )
            .field("proxy", &self.proxy.as_deref().map(redact_userinfo))
            .field("ca_file", &self.ca_file)
            .field("platform_roots", &self.platform_roots)
            .field("otel_logs", &self.otel_logs)
            .field("heartbeat_delay", &self.heartbeat_delay)
            .field("batch_size", &self.batch_size)
            .field("max_staleness", &self.max_staleness)
            .field("event_queue_length", &self.event_queue_length)
            .field("body_capture_limit", &self.body_capture_limit)
            .field("blocking_status", &self.blocking_status)
            .field("ipv6_action_prefix", &self.ipv6_action_prefix)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("config_file", &self.config_file)
            .finish()
    }
}

/// Collects settings layer by layer, then checks them all in
/// [`build`](Self::build).
///
/// Each setter overrides whatever the builder held for its key, so setters
/// called after [`from_env`](Self::from_env) or [`from_file`](Self::from_file)
/// win over the environment and the file. Unset keys take their defaults at
/// build time. Its `Debug` output shows the token redacted.
///
/// ```
/// use sqreen_core::config::ConfigBuilder;
///
/// let config = ConfigBuilder::new()
///     .token("my-token")
///     .blocking_status(429)
///     .build()?;
/// assert_eq!(config.blocking_status, 429);
/// # Ok::<(), sqreen_core::config::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ConfigBuilder {
    token: Option<Secret>,
    app_name: Option<String>,
    url: Option<String>,
    disable: Option<bool>,
    ip_header: Option<String>,
    ip_header_format: Option<IpHeaderFormat>,
    /// Raw entries, each possibly comma-separated; parsed at build.
    trusted_proxies: Option<Vec<String>>,
    strip_http_referer: Option<bool>,
    strip_sensitive_key_regexp: Option<String>,
    strip_sensitive_value_regexp: Option<String>,
    proxy: Option<String>,
    ca_file: Option<PathBuf>,
    platform_roots: Option<bool>,
    otel_logs: Option<bool>,
    heartbeat_delay: Option<Duration>,
    batch_size: Option<usize>,
    max_staleness: Option<Duration>,
    event_queue_length: Option<usize>,
    body_capture_limit: Option<usize>,
    blocking_status: Option<u16>,
    ipv6_action_prefix: Option<u8>,
    shutdown_timeout: Option<Duration>,
    config_file: Option<PathBuf>,
}

impl ConfigBuilder {
    /// A builder holding the defaults only: no config file, no environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, then the config file, then the `SQREEN_*` environment
    /// variables.
    ///
    /// The file is the one named by `SQREEN_CONFIG_FILE` (relative to the
    /// working directory) if that is set and not empty; otherwise the first
    /// of [`DEFAULT_CONFIG_FILES`] found in the working directory, if any.
    /// Environment variables whose name or value is not valid UTF-8 are
    /// skipped.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when `SQREEN_CONFIG_FILE` names a file that
    /// cannot be read (a missing default file is fine),
    /// [`ConfigError::Parse`] for a malformed file, and
    /// [`ConfigError::Invalid`] for a value that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config_file = std::env::var_os(CONFIG_FILE_ENV)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        Self::load(Path::new(""), config_file, utf8_env_vars())
    }

    /// The defaults, then the settings of the file at `path`, read as TOML
    /// (`.toml`) or YAML (`.yml`, `.yaml`) after its extension.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for another extension or a malformed file,
    /// [`ConfigError::Read`] when the file cannot be read, and
    /// [`ConfigError::Invalid`] for a value that does not parse.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let format = FileFormat::of(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_file_text(path, format, &text)
    }

    /// The defaults, then the `SQREEN_*` pairs of `vars` (see
    /// [`merge_vars`](Self::merge_vars)); other pairs are ignored.
    ///
    /// [`from_env`](Self::from_env) feeds it the process environment; tests
    /// and embedders can feed it their own pairs.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value that does not parse.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::new().merge_vars(vars)
    }

    /// Applies the `SQREEN_*` pairs of `vars` over this builder's settings.
    ///
    /// Variables without the `SQREEN_` prefix are ignored, so is
    /// `SQREEN_CONFIG_FILE` (only [`from_env`](Self::from_env) reads it);
    /// other unknown `SQREEN_*` variables are ignored with a warning. An
    /// empty value leaves the key as it was, except for the two scrubbing
    /// regexes, where it disables the regex. A later pair for the same
    /// variable wins.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value that does not parse.
    pub fn merge_vars<I, K, V>(mut self, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (name, value) in vars {
            let name = name.as_ref();
            if !name.starts_with(ENV_PREFIX) || name == CONFIG_FILE_ENV {
                continue;
            }
            match Key::from_env_var(name) {
                Some(key) => self.apply(key, Raw::Str(value.as_ref().to_owned()))?,
                None => {
                    tracing::warn!(var = name, "ignoring unknown SQREEN_* environment variable")
                }
            }
        }
        Ok(self)
    }

    /// Sets the application's secret token, sent to the backend at login;
    /// the agent stays off without a non-empty one.
    ///
    /// Default: none. Environment: `SQREEN_TOKEN`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret(token.into()));
        self
    }

    /// Sets the application name sent at login.
    ///
    /// Default: none. Environment: `SQREEN_APP_NAME`.
    pub fn app_name(mut self, app_name: impl Into<String>) -> Self {
        self.app_name = Some(app_name.into());
        self
    }

    /// Sets the backend's base URL, `http://` or `https://` (checked at
    /// build); a trailing `/` is trimmed.
    ///
    /// Default: [`DEFAULT_URL`]. Environment: `SQREEN_URL`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Turns the agent off even when a token is set.
    ///
    /// Default: `false`. Environment: `SQREEN_DISABLE`.
    pub fn disable(mut self, disable: bool) -> Self {
        self.disable = Some(disable);
        self
    }

    /// Sets a header carrying the client IP, checked before the usual proxy
    /// headers; must be a valid header name (checked at build).
    ///
    /// Default: none. Environment: `SQREEN_IP_HEADER`.
    pub fn ip_header(mut self, ip_header: impl Into<String>) -> Self {
        self.ip_header = Some(ip_header.into());
        self
    }

    /// Sets how the [`ip_header`](Self::ip_header) encodes the address.
    ///
    /// Default: [`IpHeaderFormat::Plain`]. Environment:
    /// `SQREEN_IP_HEADER_FORMAT` (`plain` or `haproxy_x_unique_id`).
    pub fn ip_header_format(mut self, format: IpHeaderFormat) -> Self {
        self.ip_header_format = Some(format);
        self
    }

    /// Sets the proxies whose forwarding headers are believed: CIDR ranges,
    /// or bare addresses meaning `/32` or `/128`. Entries are trimmed, may
    /// themselves be comma-separated, and empty ones are ignored; they are
    /// checked at build.
    ///
    /// Default: none. Environment: `SQREEN_TRUSTED_PROXIES` (comma-separated).
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.trusted_proxies = Some(
            proxies
                .into_iter()
                .map(|proxy| proxy.as_ref().to_owned())
                .collect(),
        );
        self
    }

    /// Leaves the `Referer` header out of what is sent.
    ///
    /// Default: `false`. Environment: `SQREEN_STRIP_HTTP_REFERER`.
    pub fn strip_http_referer(mut self, strip: bool) -> Self {
        self.strip_http_referer = Some(strip);
        self
    }

    /// Sets the scrubbing regex for keys; `""` disables key scrubbing. The
    /// regex is checked at build.
    ///
    /// Default: the protocol's key regex. Environment:
    /// `SQREEN_STRIP_SENSITIVE_KEY_REGEXP`.
    pub fn strip_sensitive_key_regexp(mut self, regexp: impl Into<String>) -> Self {
        self.strip_sensitive_key_regexp = Some(regexp.into());
        self
    }

    /// Sets the scrubbing regex for values; `""` disables value scrubbing.
    /// The regex is checked at build.
    ///
    /// Default: the protocol's card-number regex. Environment:
    /// `SQREEN_STRIP_SENSITIVE_VALUE_REGEXP`.
    pub fn strip_sensitive_value_regexp(mut self, regexp: impl Into<String>) -> Self {
        self.strip_sensitive_value_regexp = Some(regexp.into());
        self
    }

    /// Sets an outgoing proxy for the backend connection: an `http`,
    /// `https`, `socks5` or `socks5h` URL (checked at build); `""` means none.
    ///
    /// Default: none. Environment: `SQREEN_PROXY`.
    pub fn proxy(mut self, proxy: impl Into<String>) -> Self {
        self.proxy = Some(proxy.into());
        self
    }

    /// Trusts the certificate authorities of this PEM file for the
    /// backend's HTTPS, besides the built-in ones (read when the agent
    /// starts; an unreadable or invalid file keeps the agent off, logged).
    ///
    /// Default: none. Environment: `SQREEN_CA_FILE`.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Also trusts the operating system's certificate store.
    ///
    /// Default: `false`. Environment: `SQREEN_PLATFORM_ROOTS`.
    pub fn platform_roots(mut self, on: bool) -> Self {
        self.platform_roots = Some(on);
        self
    }

    /// Also exports tracked events as OpenTelemetry log records (the `otel`
    /// feature); see [`Config::otel_logs`].
    ///
    /// Default: `false`. Environment: `SQREEN_OTEL_LOGS`.
    pub fn otel_logs(mut self, on: bool) -> Self {
        self.otel_logs = Some(on);
        self
    }

    /// Sets the time between heartbeats; zero is rejected at build.
    ///
    /// Default: 60 s. Environment: `SQREEN_HEARTBEAT_DELAY`.
    pub fn heartbeat_delay(mut self, delay: Duration) -> Self {
        self.heartbeat_delay = Some(delay);
        self
    }

    /// Sets the number of events sent per batch at most; zero is rejected
    /// at build.
    ///
    /// Default: 1000. Environment: `SQREEN_BATCH_SIZE`.
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = Some(size);
        self
    }

    /// Sets the longest time an event waits before its batch is sent; zero
    /// is rejected at build.
    ///
    /// Default: 60 s. Environment: `SQREEN_MAX_STALENESS`.
    pub fn max_staleness(mut self, staleness: Duration) -> Self {
        self.max_staleness = Some(staleness);
        self
    }

    /// Sets the number of request records queued for the agent's thread at
    /// most; zero is rejected at build.
    ///
    /// Default: 10 000. Environment: `SQREEN_EVENT_QUEUE_LENGTH`.
    pub fn event_queue_length(mut self, length: usize) -> Self {
        self.event_queue_length = Some(length);
        self
    }

    /// Sets the number of request body bytes kept at most; `0` disables body
    /// capture.
    ///
    /// Default: 16 384. Environment: `SQREEN_BODY_CAPTURE_LIMIT`.
    pub fn body_capture_limit(mut self, bytes: usize) -> Self {
        self.body_capture_limit = Some(bytes);
        self
    }

    /// Sets the status of the response to a blocked request; it must be
    /// within `400..=599` (checked at build).
    ///
    /// Default: 403. Environment: `SQREEN_BLOCKING_STATUS`.
    pub fn blocking_status(mut self, status: u16) -> Self {
        self.blocking_status = Some(status);
        self
    }

    /// Sets the prefix length IPv6 IP actions are widened to; it must be
    /// within `1..=128` (checked at build).
    ///
    /// Default: 64. Environment: `SQREEN_IPV6_ACTION_PREFIX`.
    pub fn ipv6_action_prefix(mut self, prefix: u8) -> Self {
        self.ipv6_action_prefix = Some(prefix);
        self
    }

    /// Sets the longest time the final flush may take at shutdown; zero is
    /// rejected at build.
    ///
    /// Default: 5 s. Environment: `SQREEN_SHUTDOWN_TIMEOUT`.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
        self
    }

    /// Checks every setting and fills unset keys with their defaults.
    ///
    /// Blank `token`, `app_name`, `ip_header` and `proxy` values count as
    /// unset; text values other than the regexes are trimmed.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`], naming the first invalid key: a URL or proxy
    /// with an unsupported scheme or no host, a malformed trusted proxy, an
    /// invalid header name or regex, a blocking status outside `400..=599`,
    /// or a zero duration, batch size or queue length.
    pub fn build(self) -> Result<Config, ConfigError> {
        let url = match self.url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => check_url(Key::Url, url, BACKEND_SCHEMES)?,
            _ => DEFAULT_URL.to_owned(),
        };
        let url = url.trim_end_matches('/').to_owned();
        let proxy = match non_blank(self.proxy.as_deref()) {
            Some(proxy) => Some(check_url(Key::Proxy, proxy, PROXY_SCHEMES)?),
            None => None,
        };
        let ip_header = match non_blank(self.ip_header.as_deref()) {
            Some(header) => Some(check_header_name(header)?),
            None => None,
        };
        let trusted_proxies =
            parse_trusted_proxies(self.trusted_proxies.as_deref().unwrap_or(&[]))?;
        Scrubber::new(
            self.strip_sensitive_key_regexp.as_deref(),
            self.strip_sensitive_value_regexp.as_deref(),
        )
        .map_err(|error| {
            let value = if error.key == Key::StripSensitiveValueRegexp.name() {
                &self.strip_sensitive_value_regexp
            } else {
                &self.strip_sensitive_key_regexp
            };
            ConfigError::Invalid {
                key: error.key,
                value: value.clone().unwrap_or_default(),
                reason: error.source.to_string(),
            }
        })?;
        let blocking_status = self.blocking_status.unwrap_or(DEFAULT_BLOCKING_STATUS);
        if !(400..=599).contains(&blocking_status) {
            return Err(ConfigError::invalid(
                Key::BlockingStatus,
                &blocking_status.to_string(),
                STATUS_REASON,
            ));
        }
        let ipv6_action_prefix = self
            .ipv6_action_prefix
            .unwrap_or(DEFAULT_IPV6_ACTION_PREFIX);
        if !(1..=128).contains(&ipv6_action_prefix) {
            return Err(ConfigError::invalid(
                Key::Ipv6ActionPrefix,
                &ipv6_action_prefix.to_string(),
                PREFIX_REASON,
            ));
        }
        Ok(Config {
            token: self
                .token
                .map(|Secret(token)| token.trim().to_owned())
                .filter(|token| !token.is_empty()),
            app_name: non_blank(self.app_name.as_deref()).map(str::to_owned),
            url,
            disable: self.disable.unwrap_or(false),
            ip_header,
            ip_header_format: self.ip_header_format.unwrap_or_default(),
            trusted_proxies,
            strip_http_referer: self.strip_http_referer.unwrap_or(false),
            strip_sensitive_key_regexp: self.strip_sensitive_key_regexp,
            strip_sensitive_value_regexp: self.strip_sensitive_value_regexp,
            proxy,
            ca_file: self.ca_file.filter(|p| !p.as_os_str().is_empty()),
            platform_roots: self.platform_roots.unwrap_or(false),
            otel_logs: self.otel_logs.unwrap_or(false),
            heartbeat_delay: non_zero_duration(
                Key::HeartbeatDelay,
                self.heartbeat_delay.unwrap_or(DEFAULT_HEARTBEAT_DELAY),
            )?,
            batch_size: non_zero_count(
                Key::BatchSize,
                self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
            )?,
            max_staleness: non_zero_duration(
                Key::MaxStaleness,
                self.max_staleness.unwrap_or(DEFAULT_MAX_STALENESS),
            )?,
            event_queue_length: non_zero_count(
                Key::EventQueueLength,
                self.event_queue_length
                    .unwrap_or(DEFAULT_EVENT_QUEUE_LENGTH),
            )?,
            body_capture_limit: self
                .body_capture_limit
                .unwrap_or(DEFAULT_BODY_CAPTURE_LIMIT),
            blocking_status,
            ipv6_action_prefix,
            shutdown_timeout: non_zero_duration(
                Key::ShutdownTimeout,
                self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            )?,
            config_file: self.config_file,
        })
    }

    /// [`from_env`](Self::from_env) with the working directory, the
    /// `SQREEN_CONFIG_FILE` value and the variables passed in, so tests
    /// need not touch the process.
    fn load(
        dir: &Path,
        config_file: Option<PathBuf>,
        vars: Vec<(String, String)>,
    ) -> Result<Self, ConfigError> {
        let builder = match config_file {
            Some(path) => Self::from_file(dir.join(path))?,
            None => Self::from_default_file(dir)?,
        };
        builder.merge_vars(vars)
    }

    /// The first of [`DEFAULT_CONFIG_FILES`] present in `dir`, or the
    /// defaults when there is none.
    fn from_default_file(dir: &Path) -> Result<Self, ConfigError> {
        for name in DEFAULT_CONFIG_FILES {
            let path = dir.join(name);
            // Reading directly rather than testing for existence first: no
            // window between the test and the read.
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let format = FileFormat::of(&path)?;
                    return Self::from_file_text(&path, format, &text);
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ConfigError::Read { path, source }),
            }
        }
        Ok(Self::new())
    }

    /// The defaults, then the settings parsed from `text`, the content of
    /// the file at `path`.
    pub(crate) fn from_file_text(
        path: &Path,
        format: FileFormat,
        text: &str,
    ) -> Result<Self, ConfigError> {
        let file = format.parse(path, text)?;
        let mut builder = Self::new();
        for (key, value) in file.into_entries() {
            if let Some(value) = value {
                builder.apply(key, value)?;
            }
        }
        builder.config_file = Some(path.to_owned());
        tracing::debug!(path = %path.display(), "loaded sqreen config file");
        Ok(builder)
    }

    /// Sets `key` from a raw file or environment value; a blank value
    /// leaves the key as it was, except for the regexes.
    fn apply(&mut self, key: Key, raw: Raw) -> Result<(), ConfigError> {
        if raw.is_blank() && !key.is_regex() {
            return Ok(());
        }
        match key {
            Key::Token => self.token = Some(Secret(raw.into_text(key)?)),
            Key::AppName => self.app_name = Some(raw.into_text(key)?),
            Key::Url => self.url = Some(raw.into_text(key)?),
            Key::Disable => self.disable = Some(raw.into_bool(key)?),
            Key::IpHeader => self.ip_header = Some(raw.into_text(key)?),
            Key::IpHeaderFormat => {
                let text = raw.into_text(key)?;
                let format = text
                    .to_ascii_lowercase()
                    .parse::<IpHeaderFormat>()
                    .map_err(|reason| ConfigError::invalid(key, &text, reason))?;
                self.ip_header_format = Some(format);
            }
            Key::TrustedProxies => self.trusted_proxies = Some(raw.into_list(key)?),
            Key::StripHttpReferer => self.strip_http_referer = Some(raw.into_bool(key)?),
            Key::StripSensitiveKeyRegexp => {
                self.strip_sensitive_key_regexp = raw
                    .into_regex(key)?
                    .or(self.strip_sensitive_key_regexp.take());
            }
            Key::StripSensitiveValueRegexp => {
                self.strip_sensitive_value_regexp = raw
                    .into_regex(key)?
                    .or(self.strip_sensitive_value_regexp.take());
            }
            Key::Proxy => self.proxy = Some(raw.into_text(key)?),
            Key::CaFile => self.ca_file = Some(PathBuf::from(raw.into_text(key)?)),
            Key::PlatformRoots => self.platform_roots = Some(raw.into_bool(key)?),
            Key::OtelLogs => self.otel_logs = Some(raw.into_bool(key)?),
            Key::HeartbeatDelay => self.heartbeat_delay = Some(raw.into_duration(key)?),
            Key::BatchSize => self.batch_size = Some(raw.into_count(key)?),
            Key::MaxStaleness => self.max_staleness = Some(raw.into_duration(key)?),
            Key::EventQueueLength => self.event_queue_length = Some(raw.into_count(key)?),
            Key::BodyCaptureLimit => self.body_capture_limit = Some(raw.into_count(key)?),
            Key::BlockingStatus => self.blocking_status = Some(raw.into_status(key)?),
            Key::Ipv6ActionPrefix => {
                let n = raw.into_count(key)?;
                self.ipv6_action_prefix = Some(
                    u8::try_from(n)
                        .map_err(|_| ConfigError::invalid(key, &n.to_string(), PREFIX_REASON))?,
                );
            }
            Key::ShutdownTimeout => self.shutdown_timeout = Some(raw.into_duration(key)?),
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("invalid `{key}` ({value:?}): {reason}")]
    Invalid {
        /// The file key of the setting (`batch_size`, …); its environment
        /// variable is `SQREEN_` followed by the key in upper case.
        key: &'static str,
        /// The offending value as given; a token shows redacted and a URL
        /// without its password.
        value: String,
        /// What was expected instead.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file's path.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or YAML, has an unknown key, or an
    /// unsupported extension.
    #[error("cannot parse config file {path}: {message}")]
    Parse {
        /// The file's path.
        path: PathBuf,
        /// What is wrong and where (line and column), without quoting the
        /// file's content.
        message: String,
    },
}

impl ConfigError {
    /// The file key the error is about, for [`ConfigError::Invalid`].
    pub fn key(&self) -> Option<&'static str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Parse { .. } => None,
        }
    }

    /// An [`Invalid`](ConfigError::Invalid) error, with secrets in `value`
    /// hidden: every path to an `Invalid` error goes through here.
    fn invalid(key: Key, value: &str, reason: impl Into<String>) -> Self {
        let value = match key {
            Key::Token => redact_token(value),
            Key::Url | Key::Proxy => redact_userinfo(value),
            _ => value.to_owned(),
        };
        ConfigError::Invalid {
            key: key.name(),
            value,
            reason: reason.into(),
        }
    }
}

/// Every configuration key; its name is the file key and, upper-cased after
/// `SQREEN_`, the environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Token,
    AppName,
    Url,
    Disable,
    IpHeader,
    IpHeaderFormat,
    TrustedProxies,
    StripHttpReferer,
    StripSensitiveKeyRegexp,
    StripSensitiveValueRegexp,
    Proxy,
    CaFile,
    PlatformRoots,
    OtelLogs,
    HeartbeatDelay,
    BatchSize,
    MaxStaleness,
    EventQueueLength,
    BodyCaptureLimit,
    BlockingStatus,
    Ipv6ActionPrefix,
    ShutdownTimeout,
}

impl Key {
    const ALL: [Key; 22] = [
        Key::Token,
        Key::AppName,
        Key::Url,
        Key::Disable,
        Key::IpHeader,
        Key::IpHeaderFormat,
        Key::TrustedProxies,
        Key::StripHttpReferer,
        Key::StripSensitiveKeyRegexp,
        Key::StripSensitiveValueRegexp,
        Key::Proxy,
        Key::CaFile,
        Key::PlatformRoots,
        Key::OtelLogs,
        Key::HeartbeatDelay,
        Key::BatchSize,
        Key::MaxStaleness,
        Key::EventQueueLength,
        Key::BodyCaptureLimit,
        Key::BlockingStatus,
        Key::Ipv6ActionPrefix,
        Key::ShutdownTimeout,
    ];

    /// The file key.
    const fn name(self) -> &'static str {
        match self {
            Key::Token => "token",
            Key::AppName => "app_name",
            Key::Url => "url",
            Key::Disable => "disable",
            Key::IpHeader => "ip_header",
            Key::IpHeaderFormat => "ip_header_format",
            Key::TrustedProxies => "trusted_proxies",
            Key::StripHttpReferer => "strip_http_referer",
            Key::StripSensitiveKeyRegexp => "strip_sensitive_key_regexp",
            Key::StripSensitiveValueRegexp => "strip_sensitive_value_regexp",
            Key::Proxy => "proxy",
            Key::CaFile => "ca_file",
            Key::PlatformRoots => "platform_roots",
            Key::OtelLogs => "otel_logs",
            Key::HeartbeatDelay => "heartbeat_delay",
            Key::BatchSize => "batch_size",
            Key::MaxStaleness => "max_staleness",
            Key::EventQueueLength => "event_queue_length",
            Key::BodyCaptureLimit => "body_capture_limit",
            Key::BlockingStatus => "blocking_status",
            Key::Ipv6ActionPrefix => "ipv6_action_prefix",
            Key::ShutdownTimeout => "shutdown_timeout",
        }
    }

    /// The environment variable.
    const fn env_var(self) -> &'static str {
        match self {
            Key::Token => "SQREEN_TOKEN",
            Key::AppName => "SQREEN_APP_NAME",
            Key::Url => "SQREEN_URL",
            Key::Disable => "SQREEN_DISABLE",
            Key::IpHeader => "SQREEN_IP_HEADER",
            Key::IpHeaderFormat => "SQREEN_IP_HEADER_FORMAT",
            Key::TrustedProxies => "SQREEN_TRUSTED_PROXIES",
            Key::StripHttpReferer => "SQREEN_STRIP_HTTP_REFERER",
            Key::StripSensitiveKeyRegexp => "SQREEN_STRIP_SENSITIVE_KEY_REGEXP",
            Key::StripSensitiveValueRegexp => "SQREEN_STRIP_SENSITIVE_VALUE_REGEXP",
            Key::Proxy => "SQREEN_PROXY",
            Key::CaFile => "SQREEN_CA_FILE",
            Key::PlatformRoots => "SQREEN_PLATFORM_ROOTS",
            Key::OtelLogs => "SQREEN_OTEL_LOGS",
            Key::HeartbeatDelay => "SQREEN_HEARTBEAT_DELAY",
            Key::BatchSize => "SQREEN_BATCH_SIZE",
            Key::MaxStaleness => "SQREEN_MAX_STALENESS",
            Key::EventQueueLength => "SQREEN_EVENT_QUEUE_LENGTH",
            Key::BodyCaptureLimit => "SQREEN_BODY_CAPTURE_LIMIT",
            Key::BlockingStatus => "SQREEN_BLOCKING_STATUS",
            Key::Ipv6ActionPrefix => "SQREEN_IPV6_ACTION_PREFIX",
            Key::ShutdownTimeout => "SQREEN_SHUTDOWN_TIMEOUT",
        }
    }

    fn from_env_var(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|key| key.env_var() == name)
    }

    /// The regexes keep their text as written, and `""` means "disabled"
    /// rather than "unset".
    fn is_regex(self) -> bool {
        matches!(
            self,
            Key::StripSensitiveKeyRegexp | Key::StripSensitiveValueRegexp
        )
    }
}

/// The config file's shape: every key optional, no other key allowed.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    token: Option<Raw>,
    app_name: Option<Raw>,
    url: Option<Raw>,
    disable: Option<Raw>,
    ip_header: Option<Raw>,
    ip_header_format: Option<Raw>,
    trusted_proxies: Option<Raw>,
    strip_http_referer: Option<Raw>,
    strip_sensitive_key_regexp: Option<Raw>,
    strip_sensitive_value_regexp: Option<Raw>,
    proxy: Option<Raw>,
    ca_file: Option<Raw>,
    platform_roots: Option<Raw>,
    otel_logs: Option<Raw>,
    heartbeat_delay: Option<Raw>,
    batch_size: Option<Raw>,
    max_staleness: Option<Raw>,
    event_queue_length: Option<Raw>,
    body_capture_limit: Option<Raw>,
    blocking_status: Option<Raw>,
    ipv6_action_prefix: Option<Raw>,
    shutdown_timeout: Option<Raw>,
}

impl FileConfig {
    fn into_entries(self) -> [(Key, Option<Raw>); 22] {
        [
            (Key::Token, self.token),
            (Key::AppName, self.app_name),
            (Key::Url, self.url),
            (Key::Disable, self.disable),
            (Key::IpHeader, self.ip_header),
            (Key::IpHeaderFormat, self.ip_header_format),
            (Key::TrustedProxies, self.trusted_proxies),
            (Key::StripHttpReferer, self.strip_http_referer),
            (
                Key::StripSensitiveKeyRegexp,
                self.strip_sensitive_key_regexp,
            ),
            (
                Key::StripSensitiveValueRegexp,
                self.strip_sensitive_value_regexp,
            ),
            (Key::Proxy, self.proxy),
            (Key::CaFile, self.ca_file),
            (Key::PlatformRoots, self.platform_roots),
            (Key::OtelLogs, self.otel_logs),
            (Key::HeartbeatDelay, self.heartbeat_delay),
            (Key::BatchSize, self.batch_size),
            (Key::MaxStaleness, self.max_staleness),
            (Key::EventQueueLength, self.event_queue_length),
            (Key::BodyCaptureLimit, self.body_capture_limit),
            (Key::BlockingStatus, self.blocking_status),
            (Key::Ipv6ActionPrefix, self.ipv6_action_prefix),
            (Key::ShutdownTimeout, self.shutdown_timeout),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileFormat {
    Toml,
    Yaml,
}

impl FileFormat {
    fn of(path: &Path) -> Result<Self, ConfigError> {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("toml") => Ok(FileFormat::Toml),
            Some("yml" | "yaml") => Ok(FileFormat::Yaml),
            _ => Err(ConfigError::Parse {
                path: path.to_owned(),
                message: "unsupported file extension; expected `.toml`, `.yml` or `.yaml`"
                    .to_owned(),
            }),
        }
    }

    /// Parses `text`, reporting errors by position only: the parsers' own
    /// messages may quote the offending line, which can hold the token.
    fn parse(self, path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        match self {
            FileFormat::Toml => toml::from_str::<FileConfig>(text).map_err(|error| {
                let message = error.message().trim_end();
                parse_error(match error.span() {
                    Some(span) => {
                        let (line, column) = line_column(text, span.start);
                        format!("{message} at line {line}, column {column}")
                    }
                    None => message.to_owned(),
                })
            }),
            // An empty YAML document is null, not an empty mapping.
            FileFormat::Yaml => serde_yaml_ng::from_str::<Option<FileConfig>>(text)
                .map(Option::unwrap_or_default)
                .map_err(|error| parse_error(error.to_string())),
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// A setting as a file or the environment gave it, before it is checked.
#[derive(Clone, Debug, PartialEq)]
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Raw>),
    /// A table or mapping, whose content is never wanted.
    Table,
}

const BOOL_REASON: &str = "expected one of true/false, 1/0, yes/no, on/off";
const COUNT_REASON: &str = "expected a whole, non-negative number";
const STATUS_REASON: &str = "expected an HTTP status code from 400 to 599";
const PREFIX_REASON: &str = "expected a prefix length from 1 to 128";
const DURATION_REASON: &str = "expected whole seconds or a duration such as `500ms`, `5s` or `1m`";
const SCALAR_REASON: &str = "expected a single value, not a list or table";
const ZERO_REASON: &str = "must be greater than zero";

impl Raw {
    fn is_blank(&self) -> bool {
        match self {
            Raw::Null => true,
            Raw::Str(text) => text.trim().is_empty(),
            _ => false,
        }
    }

    /// The value as shown in errors.
    fn shown(&self) -> String {
        match self {
            Raw::Null => String::new(),
            Raw::Bool(value) => value.to_string(),
            Raw::Int(value) => value.to_string(),
            Raw::Float(value) => format!("{value:?}"),
            Raw::Str(text) => text.clone(),
            Raw::List(items) => {
                let items: Vec<String> = items.iter().map(Raw::shown).collect();
                format!("[{}]", items.join(", "))
            }
            Raw::Table => "{…}".to_owned(),
        }
    }

    /// A scalar as text, untrimmed; lists and tables are invalid.
    fn into_untrimmed_text(self, key: Key) -> Result<String, ConfigError> {
        match self {
            Raw::Str(text) => Ok(text),
            Raw::List(_) | Raw::Table => {
                Err(ConfigError::invalid(key, &self.shown(), SCALAR_REASON))
            }
            scalar => Ok(scalar.shown()),
        }
    }

    fn into_text(self, key: Key) -> Result<String, ConfigError> {
        self.into_untrimmed_text(key)
            .map(|text| text.trim().to_owned())
    }

    /// `None` for a null (leave the key as it was); `""` is kept.
    fn into_regex(self, key: Key) -> Result<Option<String>, ConfigError> {
        match self {
            Raw::Null => Ok(None),
            raw => raw.into_untrimmed_text(key).map(Some),
        }
    }

    fn into_bool(self, key: Key) -> Result<bool, ConfigError> {
        if let Raw::Bool(value) = self {
            return Ok(value);
        }
        let text = self.into_text(key)?;
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::invalid(key, &text, BOOL_REASON)),
        }
    }

    fn into_count(self, key: Key) -> Result<usize, ConfigError> {
        match self {
            Raw::Int(value) => usize::try_from(value)
                .map_err(|_| ConfigError::invalid(key, &value.to_string(), COUNT_REASON)),
            Raw::Str(text) => text
                .trim()
                .parse()
                .map_err(|_| ConfigError::invalid(key, &text, COUNT_REASON)),
            other => Err(ConfigError::invalid(key, &other.shown(), COUNT_REASON)),
        }
    }

    fn into_status(self, key: Key) -> Result<u16, ConfigError> {
        match self {
            Raw::Int(value) => u16::try_from(value)
                .map_err(|_| ConfigError::invalid(key, &value.to_string(), STATUS_REASON)),
            Raw::Str(text) => text
                .trim()
                .parse()
                .map_err(|_| ConfigError::invalid(key, &text, STATUS_REASON)),
            other => Err(ConfigError::invalid(key, &other.shown(), STATUS_REASON)),
        }
    }

    fn into_duration(self, key: Key) -> Result<Duration, ConfigError> {
        match self {
            Raw::Int(seconds) => u64::try_from(seconds)
                .map(Duration::from_secs)
                .map_err(|_| ConfigError::invalid(key, &seconds.to_string(), DURATION_REASON)),
            Raw::Str(text) => parse_duration(text.trim())
                .ok_or_else(|| ConfigError::invalid(key, &text, DURATION_REASON)),
            other => Err(ConfigError::invalid(key, &other.shown(), DURATION_REASON)),
        }
    }

    /// One entry per scalar; a list of lists or tables is invalid.
    fn into_list(self, key: Key) -> Result<Vec<String>, ConfigError> {
        match self {
            Raw::List(items) => items
                .into_iter()
                .filter(|item| !item.is_blank())
                .map(|item| match item {
                    Raw::List(_) | Raw::Table => Err(ConfigError::invalid(
                        key,
                        &item.shown(),
                        "expected a list of addresses or CIDR ranges",
                    )),
                    scalar => scalar.into_text(key),
                })
                .collect(),
            Raw::Table => Err(ConfigError::invalid(key, &self.shown(), SCALAR_REASON)),
            scalar => scalar.into_text(key).map(|text| vec![text]),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

/// Takes any value, so that type mismatches become [`ConfigError::Invalid`]
/// errors naming the key rather than parser errors.
struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean or list")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Raw, E> {
        Ok(Raw::Int(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Raw, E> {
        Ok(Raw::Int(value.into()))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Raw, E> {
        Ok(Raw::Int(value))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Raw, E> {
        // Too large for any setting either way; as text it fails to parse.
        Ok(i128::try_from(value).map_or_else(|_| Raw::Str(value.to_string()), Raw::Int))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Raw, E> {
        Ok(Raw::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Raw, E> {
        Ok(Raw::Str(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Raw, E> {
        Ok(Raw::Str(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        Raw::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Raw>()? {
            items.push(item);
        }
        Ok(Raw::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Table)
    }
}

/// A token that shows redacted in `Debug` output.
#[derive(Clone, Default)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_token(&self.0))
    }
}

/// The first 7 characters of `token` followed by `…`; `…` alone for a token
/// so short that 7 characters would be all of it.
fn redact_token(token: &str) -> String {
    if token.chars().count() > TOKEN_SHOWN_CHARS {
        let shown: String = token.chars().take(TOKEN_SHOWN_CHARS).collect();
        format!("{shown}…")
    } else {
        "…".to_owned()
    }
}

/// `url` with any `user:password@` part replaced by `***@`.
fn redact_userinfo(url: &str) -> String {
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

fn non_blank(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// Whole seconds, or a humantime duration.
fn parse_duration(text: &str) -> Option<Duration> {
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        text.parse().ok().map(Duration::from_secs)
    } else {
        humantime::parse_duration(text).ok()
    }
}

const BACKEND_SCHEMES: &[&str] = &["http", "https"];
const PROXY_SCHEMES: &[&str] = &["http", "https", "socks5", "socks5h"];

/// `url`, trimmed, if it has one of `schemes` and a host.
fn check_url(key: Key, url: &str, schemes: &[&str]) -> Result<String, ConfigError> {
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
fn check_header_name(name: &str) -> Result<String, ConfigError> {
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
fn parse_trusted_proxies(entries: &[String]) -> Result<Vec<IpNet>, ConfigError> {
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

fn non_zero_duration(key: Key, duration: Duration) -> Result<Duration, ConfigError> {
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

fn non_zero_count(key: Key, count: usize) -> Result<usize, ConfigError> {
    if count == 0 {
        Err(ConfigError::invalid(key, "0", ZERO_REASON))
    } else {
        Ok(count)
    }
}

/// The process environment, skipping (with a warning, for ours) variables
/// that are not valid UTF-8.
fn utf8_env_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(
            |(name, value)| match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => Some((name, value)),
                (Ok(name), Err(_)) if name.starts_with(ENV_PREFIX) => {
                    tracing::warn!(
                        var = name,
                        "ignoring SQREEN_* environment variable whose value is not valid UTF-8"
                    );
                    None
                }
                _ => None,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TOKEN: &str = "org_abcdefghij0123456789secret";

    /// A directory under the system temp dir, unique to one test, removed
    /// when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "sqreen-config-test-{}-{name}-{unique}",
                std::process::id()
            ));
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn write(&self, name: &str, content: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn env_error(pairs: &[(&str, &str)]) -> ConfigError {
        match ConfigBuilder::from_vars(pairs.iter().copied()).and_then(ConfigBuilder::build) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(error) => error,
        }
    }

    fn toml_error(content: &str) -> ConfigError {
        let dir = TempDir::new("toml-error");
        let path = dir.write("sqreen.toml", content);
        match ConfigBuilder::from_file(path).and_then(ConfigBuilder::build) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(error) => error,
        }
    }

    /// The defaults are the documented ones, and `Default` equals building an
    /// empty builder.
    #[test]
    fn defaults_are_documented_values() {
        let config = Config::builder().build().unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.token, None);
        assert_eq!(config.app_name, None);
        assert_eq!(config.url, "http://127.0.0.1:8700");
        assert!(!config.disable);
        assert_eq!(config.ip_header, None);
        assert_eq!(config.ip_header_format, IpHeaderFormat::Plain);
        assert!(config.trusted_proxies.is_empty());
        assert!(!config.strip_http_referer);
        assert_eq!(config.strip_sensitive_key_regexp, None);
        assert_eq!(config.strip_sensitive_value_regexp, None);
        assert_eq!(config.proxy, None);
        assert_eq!(config.heartbeat_delay, Duration::from_secs(60));
        assert_eq!(config.batch_size, 1000);
        assert_eq!(config.max_staleness, Duration::from_secs(60));
        assert_eq!(config.event_queue_length, 10_000);
        assert_eq!(config.body_capture_limit, 16_384);
        assert_eq!(config.blocking_status, 403);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(config.config_file, None);
        assert!(!config.is_enabled());
        config.scrubber().unwrap();
    }

    /// The environment overrides the file, which overrides the defaults.
    #[test]
    fn env_overrides_file_overrides_defaults() {
        let dir = TempDir::new("layering");
        let path = dir.write(
            "sqreen.toml",
            "token = \"file-token-123\"\napp_name = \"file-app\"\nbatch_size = 50\n",
        );
        let config = ConfigBuilder::from_file(&path)
            .unwrap()
            .merge_vars(vars(&[("SQREEN_TOKEN", "env-token-456")]))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.token.as_deref(), Some("env-token-456"));
        assert_eq!(config.app_name.as_deref(), Some("file-app"));
        assert_eq!(config.batch_size, 50);
        assert_eq!(config.heartbeat_delay, DEFAULT_HEARTBEAT_DELAY);
        assert_eq!(config.config_file.as_deref(), Some(path.as_path()));
    }

    /// Setters called after the environment win over it.
    #[test]
    fn code_overrides_env() {
        let config = ConfigBuilder::from_vars(vars(&[
            ("SQREEN_TOKEN", "env-token-456"),
            ("SQREEN_BATCH_SIZE", "20"),
            ("SQREEN_APP_NAME", "env-app"),
        ]))
        .unwrap()
        .token("code-token-789")
        .batch_size(30)
        .build()
        .unwrap();
        assert_eq!(config.token.as_deref(), Some("code-token-789"));
        assert_eq!(config.batch_size, 30);
        assert_eq!(config.app_name.as_deref(), Some("env-app"));
    }

    /// `from_env`'s loading finds `sqreen.toml` in the working directory,
    /// then applies the environment over it.
    #[test]
    fn default_file_found_then_env_applied() {
        let dir = TempDir::new("default-file");
        dir.write("sqreen.toml", "app_name = \"from-file\"\nbatch_size = 7\n");
        dir.write("sqreen.yml", "app_name: from-yaml\n");
        let config = ConfigBuilder::load(&dir.0, None, vars(&[("SQREEN_BATCH_SIZE", "8")]))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.app_name.as_deref(), Some("from-file"));
        assert_eq!(config.batch_size, 8);
        assert_eq!(config.config_file, Some(dir.0.join("sqreen.toml")));
    }

    /// Without `sqreen.toml`, `sqreen.yml` and then `sqreen.yaml` are found.
    #[test]
    fn default_yaml_files_found() {
        let dir = TempDir::new("default-yaml");
        dir.write("sqreen.yaml", "app_name: from-yaml-long\n");
        let config = ConfigBuilder::load(&dir.0, None, Vec::new())
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.app_name.as_deref(), Some("from-yaml-long"));
        dir.write("sqreen.yml", "app_name: from-yml\n");
        let config = ConfigBuilder::load(&dir.0, None, Vec::new())
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.app_name.as_deref(), Some("from-yml"));
    }

    /// No default file is fine; a missing `SQREEN_CONFIG_FILE` is an error.
    #[test]
    fn missing_files() {
        let dir = TempDir::new("missing");
        let config = ConfigBuilder::load(&dir.0, None, Vec::new())
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config, Config::default());
        let error =
            ConfigBuilder::load(&dir.0, Some("absent.toml".into()), Vec::new()).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
        assert!(error.to_string().contains("absent.toml"), "{error}");
    }

    /// `SQREEN_CONFIG_FILE` takes precedence over the default files, and is
    /// not reported as an unknown variable by `merge_vars`.
    #[test]
    fn explicit_config_file_wins() {
        let dir = TempDir::new("explicit");
        dir.write("sqreen.toml", "app_name = \"default\"\n");
        dir.write("custom.yaml", "app_name: custom\n");
        let config = ConfigBuilder::load(
            &dir.0,
            Some("custom.yaml".into()),
            vars(&[("SQREEN_CONFIG_FILE", "custom.yaml")]),
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(config.app_name.as_deref(), Some("custom"));
    }

    /// A TOML file sets every key, with durations as seconds or humantime
    /// strings.
    #[test]
    fn toml_file_sets_every_key() {
        let dir = TempDir::new("toml");
        let path = dir.write(
            "agent.toml",
            r#"
token = "toml-token-abcdef"
app_name = "toml-app"
url = "https://sqreen.example.com/"
disable = false
ip_header = "X-Client-Ip"
ip_header_format = "haproxy_x_unique_id"
trusted_proxies = ["10.0.0.0/8", "192.168.1.1", "::1"]
strip_http_referer = true
strip_sensitive_key_regexp = "(?i)secret"
strip_sensitive_value_regexp = ""
proxy = "socks5h://proxy.example.com:1080"
heartbeat_delay = 30
batch_size = 10
max_staleness = "500ms"
event_queue_length = 20
body_capture_limit = 0
blocking_status = 451
shutdown_timeout = "2s"
"#,
        );
        let config = ConfigBuilder::from_file(&path).unwrap().build().unwrap();
        assert_eq!(config.token.as_deref(), Some("toml-token-abcdef"));
        assert_eq!(config.app_name.as_deref(), Some("toml-app"));
        assert_eq!(config.url, "https://sqreen.example.com");
        assert!(config.is_enabled());
        assert_eq!(config.ip_header.as_deref(), Some("X-Client-Ip"));
        assert_eq!(config.ip_header_format, IpHeaderFormat::HaproxyXUniqueId);
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.1/32", "::1/128"]);
        assert!(config.strip_http_referer);
        assert_eq!(
            config.strip_sensitive_key_regexp.as_deref(),
            Some("(?i)secret")
        );
        assert_eq!(config.strip_sensitive_value_regexp.as_deref(), Some(""));
        assert_eq!(
            config.proxy.as_deref(),
            Some("socks5h://proxy.example.com:1080")
        );
        assert_eq!(config.heartbeat_delay, Duration::from_secs(30));
        assert_eq!(config.batch_size, 10);
        assert_eq!(config.max_staleness, Duration::from_millis(500));
        assert_eq!(config.event_queue_length, 20);
        assert_eq!(config.body_capture_limit, 0);
        assert_eq!(config.blocking_status, 451);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(2));
        assert_eq!(config.config_file.as_deref(), Some(path.as_path()));
    }

    /// A YAML file sets keys, with `trusted_proxies` as a comma-separated
    /// string and YAML-native booleans and numbers.
    #[test]
    fn yaml_file_sets_keys() {
        let dir = TempDir::new("yaml");
        let path = dir.write(
            "agent.yml",
            "token: yaml-token-abcdef\nurl: http://localhost:9000\ndisable: true\n\
             trusted_proxies: \"10.0.0.1, , 172.16.0.0/12\"\nstrip_http_referer: yes\n\
             heartbeat_delay: 1m\nbatch_size: 5\nblocking_status: 429\napp_name: ~\n",
        );
        let config = ConfigBuilder::from_file(&path).unwrap().build().unwrap();
        assert_eq!(config.token.as_deref(), Some("yaml-token-abcdef"));
        assert_eq!(config.url, "http://localhost:9000");
        assert!(config.disable);
        assert!(!config.is_enabled());
        assert_eq!(config.trusted_proxies.len(), 2);
        assert!(config.strip_http_referer);
        assert_eq!(config.heartbeat_delay, Duration::from_secs(60));
        assert_eq!(config.batch_size, 5);
        assert_eq!(config.blocking_status, 429);
        assert_eq!(config.app_name, None);
    }

    /// Empty TOML and YAML files are accepted and set nothing.
    #[test]
    fn empty_files_accepted() {
        let dir = TempDir::new("empty");
        for name in ["empty.toml", "empty.yaml", "comments.yml"] {
            let content = if name.starts_with("comments") {
                "# nothing\n"
            } else {
                ""
            };
            let path = dir.write(name, content);
            let config = ConfigBuilder::from_file(&path).unwrap().build().unwrap();
            assert_eq!(config.heartbeat_delay, DEFAULT_HEARTBEAT_DELAY, "{name}");
        }
    }

    /// An unknown key in a TOML or YAML file is rejected, naming the key.
    #[test]
    fn unknown_file_key_rejected_naming_it() {
        let error = toml_error("tokn = \"abc\"\n");
        assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
        assert!(error.to_string().contains("tokn"), "{error}");
        assert!(error.to_string().contains("line 1"), "{error}");

        let dir = TempDir::new("unknown-yaml");
        let path = dir.write("sqreen.yaml", "app_name: a\nheartbeat: 5\n");
        let error = ConfigBuilder::from_file(path).unwrap_err();
        assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
        assert!(error.to_string().contains("heartbeat"), "{error}");
    }

    /// A file with another extension is rejected before it is read.
    #[test]
    fn unsupported_extension_rejected() {
        let error = ConfigBuilder::from_file("/nonexistent/sqreen.ini").unwrap_err();
        assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
        assert!(error.to_string().contains(".toml"), "{error}");
    }

    /// Malformed TOML is a parse error giving the position, without quoting
    /// the line (which could hold the token).
    #[test]
    fn toml_syntax_error_does_not_quote_the_file() {
        let error = toml_error(&format!("app_name = \"x\"\ntoken = \"{TOKEN}\" junk\n"));
        assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(!message.contains(TOKEN), "{message}");
    }

    /// A bad regex names its key, with the regex error as the reason.
    #[test]
    fn bad_regex_names_key() {
        let error = Config::builder()
            .strip_sensitive_key_regexp("(unclosed")
            .build()
            .unwrap_err();
        assert_eq!(error.key(), Some("strip_sensitive_key_regexp"));
        let error = env_error(&[("SQREEN_STRIP_SENSITIVE_VALUE_REGEXP", "[z-a]")]);
        assert_eq!(error.key(), Some("strip_sensitive_value_regexp"));
        let ConfigError::Invalid { value, reason, .. } = error else {
            panic!()
        };
        assert_eq!(value, "[z-a]");
        assert!(!reason.is_empty());
    }

    /// A bad trusted proxy entry names its key and the entry.
    #[test]
    fn bad_cidr_names_key() {
        let error = env_error(&[("SQREEN_TRUSTED_PROXIES", "10.0.0.0/8, 10.0.0.0/33")]);
        assert_eq!(error.key(), Some("trusted_proxies"));
        assert!(error.to_string().contains("10.0.0.0/33"), "{error}");
        let error = Config::builder()
            .trusted_proxies(["not-an-ip"])
            .build()
            .unwrap_err();
        assert_eq!(error.key(), Some("trusted_proxies"));
    }

    /// A number that does not parse names its key and value, from the
    /// environment and from a file.
    #[test]
    fn bad_number_names_key() {
        let error = env_error(&[("SQREEN_EVENT_QUEUE_LENGTH", "lots")]);
        assert_eq!(error.key(), Some("event_queue_length"));
        assert!(error.to_string().contains("lots"), "{error}");
        let error = env_error(&[("SQREEN_BODY_CAPTURE_LIMIT", "-1")]);
        assert_eq!(error.key(), Some("body_capture_limit"));
        let error = toml_error("batch_size = -5\n");
        assert_eq!(error.key(), Some("batch_size"));
        let error = toml_error("batch_size = 1.5\n");
        assert_eq!(error.key(), Some("batch_size"));
        let error = toml_error("batch_size = [1]\n");
        assert_eq!(error.key(), Some("batch_size"));
        let error = toml_error("url = { host = \"x\" }\n");
        assert_eq!(error.key(), Some("url"));
    }

    /// Zero batch size, queue length and durations are rejected, naming the
    /// key.
    #[test]
    fn zero_values_name_key() {
        assert_eq!(
            env_error(&[("SQREEN_BATCH_SIZE", "0")]).key(),
            Some("batch_size")
        );
        assert_eq!(
            Config::builder().batch_size(0).build().unwrap_err().key(),
            Some("batch_size")
        );
        assert_eq!(
            env_error(&[("SQREEN_EVENT_QUEUE_LENGTH", "0")]).key(),
            Some("event_queue_length")
        );
        assert_eq!(
            env_error(&[("SQREEN_HEARTBEAT_DELAY", "0")]).key(),
            Some("heartbeat_delay")
        );
        assert_eq!(
            env_error(&[("SQREEN_MAX_STALENESS", "0s")]).key(),
            Some("max_staleness")
        );
        assert_eq!(
            Config::builder()
                .shutdown_timeout(Duration::ZERO)
                .build()
                .unwrap_err()
                .key(),
            Some("shutdown_timeout")
        );
        let config = ConfigBuilder::from_vars([("SQREEN_BODY_CAPTURE_LIMIT", "0")])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.body_capture_limit, 0);
    }

    /// Booleans take true/false, 1/0, yes/no, on/off in any case; anything
    /// else names the key.
    #[test]
    fn booleans() {
        for (text, expected) in [
            ("true", true),
            ("FALSE", false),
            ("1", true),
            ("0", false),
            ("Yes", true),
            ("no", false),
            ("ON", true),
            ("off", false),
        ] {
            let config = ConfigBuilder::from_vars([("SQREEN_DISABLE", text)])
                .unwrap()
                .build()
                .unwrap();
            assert_eq!(config.disable, expected, "{text}");
        }
        let error = env_error(&[("SQREEN_STRIP_HTTP_REFERER", "maybe")]);
        assert_eq!(error.key(), Some("strip_http_referer"));
        assert!(error.to_string().contains("maybe"), "{error}");
    }

    /// A URL without http(s) scheme or host names the `url` key.
    #[test]
    fn bad_url_names_key() {
        for url in [
            "ftp://example.com",
            "example.com",
            "http://",
            "http:///path",
            "http://exa mple.com",
        ] {
            let error = Config::builder().url(url).build().unwrap_err();
            assert_eq!(error.key(), Some("url"), "{url}");
        }
        assert_eq!(
            env_error(&[("SQREEN_URL", "localhost:8700")]).key(),
            Some("url")
        );
    }

    /// A blocking status outside 400..=599, or not a number, names its key.
    #[test]
    fn bad_status_names_key() {
        assert_eq!(
            Config::builder()
                .blocking_status(200)
                .build()
                .unwrap_err()
                .key(),
            Some("blocking_status")
        );
        assert_eq!(
            env_error(&[("SQREEN_BLOCKING_STATUS", "600")]).key(),
            Some("blocking_status")
        );
        assert_eq!(
            env_error(&[("SQREEN_BLOCKING_STATUS", "70000")]).key(),
            Some("blocking_status")
        );
        assert_eq!(
            toml_error("blocking_status = 99999\n").key(),
            Some("blocking_status")
        );
        for status in [400, 599] {
            assert_eq!(
                Config::builder()
                    .blocking_status(status)
                    .build()
                    .unwrap()
                    .blocking_status,
                status
            );
        }
    }

    /// A proxy with an unsupported scheme names the `proxy` key; supported
    /// schemes pass and a blank proxy means none.
    #[test]
    fn bad_proxy_names_key() {
        assert_eq!(
            env_error(&[("SQREEN_PROXY", "ftp://proxy:21")]).key(),
            Some("proxy")
        );
        assert_eq!(
            Config::builder()
                .proxy("proxy:3128")
                .build()
                .unwrap_err()
                .key(),
            Some("proxy")
        );
        for proxy in [
            "http://p:3128",
            "https://p",
            "socks5://p:1080",
            "SOCKS5H://p:1080",
        ] {
            let config = Config::builder().proxy(proxy).build().unwrap();
            assert_eq!(config.proxy.as_deref(), Some(proxy));
        }
        assert_eq!(Config::builder().proxy("  ").build().unwrap().proxy, None);
    }

    /// A duration that does not parse names its key; seconds and humantime
    /// strings both parse.
    #[test]
    fn durations() {
        let error = env_error(&[("SQREEN_SHUTDOWN_TIMEOUT", "soon")]);
        assert_eq!(error.key(), Some("shutdown_timeout"));
        assert!(error.to_string().contains("soon"), "{error}");
        assert_eq!(
            env_error(&[("SQREEN_HEARTBEAT_DELAY", "-5")]).key(),
            Some("heartbeat_delay")
        );
        assert_eq!(
            toml_error("max_staleness = 2.5\n").key(),
            Some("max_staleness")
        );
        assert_eq!(
            toml_error("max_staleness = -1\n").key(),
            Some("max_staleness")
        );
        let config = ConfigBuilder::from_vars([
            ("SQREEN_HEARTBEAT_DELAY", "90"),
            ("SQREEN_MAX_STALENESS", "250ms"),
            ("SQREEN_SHUTDOWN_TIMEOUT", "1m 30s"),
        ])
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(config.heartbeat_delay, Duration::from_secs(90));
        assert_eq!(config.max_staleness, Duration::from_millis(250));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(90));
    }

    /// An unknown IP header format names its key; known ones parse in any
    /// case.
    #[test]
    fn bad_ip_header_format_names_key() {
        let error = env_error(&[("SQREEN_IP_HEADER_FORMAT", "base64")]);
        assert_eq!(error.key(), Some("ip_header_format"));
        assert!(error.to_string().contains("base64"), "{error}");
        let config = ConfigBuilder::from_vars([("SQREEN_IP_HEADER_FORMAT", "HAProxy")])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.ip_header_format, IpHeaderFormat::HaproxyXUniqueId);
    }

    /// An IP header that is not a valid header name names its key.
    #[test]
    fn bad_ip_header_names_key() {
        assert_eq!(
            env_error(&[("SQREEN_IP_HEADER", "X Real IP")]).key(),
            Some("ip_header")
        );
        let config = ConfigBuilder::from_vars([("SQREEN_IP_HEADER", " X-Real-Ip ")])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.ip_header.as_deref(), Some("X-Real-Ip"));
    }

    /// Trailing slashes of the backend URL are trimmed.
    #[test]
    fn trailing_slash_trimmed() {
        let config = Config::builder()
            .url("https://sqreen.example.com//")
            .build()
            .unwrap();
        assert_eq!(config.url, "https://sqreen.example.com");
        let config = ConfigBuilder::from_vars([("SQREEN_URL", "http://h:1/base/")])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.url, "http://h:1/base");
    }

    /// An empty token leaves the agent disabled, from code or environment.
    #[test]
    fn empty_token_disabled() {
        let config = Config::builder().token("").build().unwrap();
        assert!(!config.is_enabled());
        assert_eq!(config.redacted_token(), None);
        let config = ConfigBuilder::from_vars([("SQREEN_TOKEN", "")])
            .unwrap()
            .build()
            .unwrap();
        assert!(!config.is_enabled());
        let config = Config::builder().token(TOKEN).build().unwrap();
        assert!(config.is_enabled());
    }

    /// `disable = true` turns the agent off despite a token.
    #[test]
    fn disable_true_disabled() {
        let config =
            ConfigBuilder::from_vars([("SQREEN_TOKEN", TOKEN), ("SQREEN_DISABLE", "true")])
                .unwrap()
                .build()
                .unwrap();
        assert!(!config.is_enabled());
        assert!(
            !Config::builder()
                .token(TOKEN)
                .disable(true)
                .build()
                .unwrap()
                .is_enabled()
        );
    }

    /// Neither `Debug` of the config or builder nor an error shows the token.
    #[test]
    fn debug_does_not_leak_token() {
        let builder = Config::builder().token(TOKEN);
        assert!(!format!("{builder:?}").contains(TOKEN));
        let config = builder.build().unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
        assert!(debug.contains("org_abc…"), "{debug}");
        let debug = format!("{config:#?}");
        assert!(!debug.contains(TOKEN), "{debug}");
        let error = toml_error(&format!("token = [\"{TOKEN}\"]\n"));
        assert_eq!(error.key(), Some("token"));
        assert!(!error.to_string().contains(TOKEN), "{error}");
        assert!(!format!("{error:?}").contains(TOKEN), "{error:?}");
    }

    /// Proxy and URL passwords are hidden from `Debug` and from errors.
    #[test]
    fn url_passwords_hidden() {
        let config = Config::builder()
            .proxy("http://user:hunter2@proxy:3128/x")
            .build()
            .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("http://***@proxy:3128/x"), "{debug}");
        let error = Config::builder()
            .proxy("ftp://user:hunter2@proxy")
            .build()
            .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    /// `redacted_token` shows the first 7 characters and an ellipsis, and
    /// nothing of a token too short to cut.
    #[test]
    fn redacted_token_shows_seven_chars() {
        let config = Config::builder().token(TOKEN).build().unwrap();
        assert_eq!(config.redacted_token().as_deref(), Some("org_abc…"));
        let config = Config::builder().token("ééééééééé").build().unwrap();
        assert_eq!(config.redacted_token().as_deref(), Some("ééééééé…"));
        let config = Config::builder().token("short").build().unwrap();
        assert_eq!(config.redacted_token().as_deref(), Some("…"));
        assert_eq!(Config::default().redacted_token(), None);
    }

    /// An empty regex is accepted and kept as "disabled", from code, file
    /// and environment.
    #[test]
    fn empty_regex_accepted() {
        let config = Config::builder()
            .strip_sensitive_key_regexp("")
            .build()
            .unwrap();
        assert_eq!(config.strip_sensitive_key_regexp.as_deref(), Some(""));
        config.scrubber().unwrap();
        let config = ConfigBuilder::from_vars([("SQREEN_STRIP_SENSITIVE_VALUE_REGEXP", "")])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.strip_sensitive_value_regexp.as_deref(), Some(""));
        let dir = TempDir::new("empty-regex");
        let path = dir.write("sqreen.yaml", "strip_sensitive_key_regexp: \"\"\n");
        let config = ConfigBuilder::from_file(path).unwrap().build().unwrap();
        assert_eq!(config.strip_sensitive_key_regexp.as_deref(), Some(""));
    }

    /// Other variables are ignored, unknown `SQREEN_*` ones too (with a
    /// warning), and an empty value leaves the key unset.
    #[test]
    fn unknown_and_empty_env_vars_ignored() {
        let config = ConfigBuilder::from_vars([
            ("PATH", "/bin"),
            ("SQREEN_SOMETHING_ELSE", "x"),
            ("sqreen_token", "lower-case-is-not-ours"),
            ("SQREEN_BATCH_SIZE", ""),
            ("SQREEN_URL", "  "),
        ])
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(config, Config::default());
    }

    /// Trusted proxies take bare IPv4 and IPv6 addresses, trim entries and
    /// skip empty ones, from a setter or the environment.
    #[test]
    fn trusted_proxies_forms() {
        let config = Config::builder()
            .trusted_proxies([" 10.1.2.3 ", "", "2001:db8::/32", "127.0.0.1,::1"])
            .build()
            .unwrap();
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            proxies,
            ["10.1.2.3/32", "2001:db8::/32", "127.0.0.1/32", "::1/128"]
        );
        let config = ConfigBuilder::from_vars([("SQREEN_TRUSTED_PROXIES", ",10.0.0.0/8,,")])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.trusted_proxies.len(), 1);
    }

    /// Every environment variable is `SQREEN_` plus the upper-cased file key,
    /// and the module doc's table lists every key.
    #[test]
    fn keys_documented_and_consistent() {
        let source = include_str!("config.rs");
        for key in Key::ALL {
            assert_eq!(
                key.env_var(),
                format!("SQREEN_{}", key.name().to_uppercase())
            );
            let row = format!("//! | `{}` | `{}` |", key.name(), key.env_var());
            assert!(source.contains(&row), "missing doc row for {}", key.name());
            assert_eq!(Key::from_env_var(key.env_var()), Some(key));
        }
    }

    /// `ConfigError::key` names the key of `Invalid` errors only.
    #[test]
    fn error_key() {
        assert_eq!(
            env_error(&[("SQREEN_BATCH_SIZE", "x")]).key(),
            Some("batch_size")
        );
        let error = ConfigBuilder::from_file("/nonexistent/dir/sqreen.toml").unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }));
        assert_eq!(error.key(), None);
    }
}
