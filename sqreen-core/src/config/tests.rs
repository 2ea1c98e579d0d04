//! The configuration's tests: layering, every key from a file and the
//! environment, every kind of invalid value, redaction, and the
//! documentation's table against the table of keys.
#![allow(clippy::unwrap_used)]

use super::keys::{Key, render_table};
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
    let error = ConfigBuilder::load(&dir.0, Some("absent.toml".into()), Vec::new()).unwrap_err();
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
    let config = ConfigBuilder::from_vars([("SQREEN_TOKEN", TOKEN), ("SQREEN_DISABLE", "true")])
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

/// The module documentation's table is the one rendered from the table
/// of keys (`SQREEN_BLESS=1` rewrites it), and every key is found back
/// from its environment variable and, in a file, from its file key.
#[test]
fn keys_table_is_rendered_from_the_table() {
    let rendered = render_table();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/config/keys.md");
    if std::env::var_os("SQREEN_BLESS").is_some() {
        std::fs::write(path, &rendered).unwrap();
    }
    assert_eq!(
        include_str!("keys.md"),
        rendered,
        "src/config/keys.md is stale: run this test with SQREEN_BLESS=1"
    );
    for &key in Key::ALL {
        assert_eq!(Key::from_env_var(&key.env_var()), Some(key));
        assert!(key.env_var().starts_with("SQREEN_"));
        assert!(!key.meaning().is_empty());
    }
    assert_eq!(Key::from_env_var("SQREEN_token"), None);
    assert_eq!(Key::from_env_var("TOKEN"), None);
}

/// A file key given twice is refused, naming it.
#[test]
fn repeated_file_key_rejected_naming_it() {
    let dir = TempDir::new("repeated");
    let path = dir.write("sqreen.yml", "batch_size: 3\nbatch_size: 4\n");
    let error = ConfigBuilder::from_file(path).unwrap_err().to_string();
    assert!(error.contains("batch_size"), "{error}");
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
