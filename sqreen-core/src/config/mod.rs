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
#![doc = include_str!("keys.md")]
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
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

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

mod checks;
mod file;
mod keys;
mod raw;
#[cfg(test)]
mod tests;

pub(crate) use file::FileFormat;

use checks::{
    BACKEND_SCHEMES, PROXY_SCHEMES, check_header_name, check_url, non_blank, non_zero_count,
    non_zero_duration, parse_trusted_proxies, redact_token, redact_userinfo,
};
use keys::{ENV_PREFIX, Key};
use raw::{PREFIX_REASON, Raw, STATUS_REASON};

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
        for (key, value) in file.0 {
            builder.apply(key, value)?;
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

/// A token that shows redacted in `Debug` output.
#[derive(Clone, Default)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_token(&self.0))
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
