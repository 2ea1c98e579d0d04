//! How the agent thread reaches its backend.
//!
//! The protocol logic (login, heartbeat, batches, retries) lives in the
//! agent thread and speaks to the backend through a [`Transport`]: one call,
//! a request in, a status and body out. [`HttpTransport`] is the real one
//! (reqwest over rustls, honouring the `proxy` setting); the `test` feature
//! adds an in-memory one ([`crate::test::CaptureBackend`]).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::Config;

/// A boxed, sendable future, as [`Transport::call`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Largest backend answer read, in bytes (the protocol's contract); a
/// larger one is an error.
pub const MAX_ANSWER_BYTES: usize = sqreen_protocol::limits::MAX_ANSWER_BYTES;

/// HTTP method of a protocol call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
}

/// One protocol call.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ApiRequest {
    /// The method.
    pub method: ApiMethod,
    /// The path, from [`crate::protocol`].
    pub path: &'static str,
    /// Protocol headers (`X-Api-Key`, `X-App-Name`, `X-Session-Key`).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body, if any.
    pub body: Option<Vec<u8>>,
}

impl ApiRequest {
    /// The value of a protocol header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The backend's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body (at most [`MAX_ANSWER_BYTES`]).
    pub body: Vec<u8>,
}

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The transport could not be set up (bad proxy URL, TLS setup).
    #[error("cannot set up the backend connection: {0}")]
    Setup(String),
    /// The call failed: connection refused, reset, TLS error.
    #[error("backend call failed: {0}")]
    Failed(String),
    /// The backend did not answer in time.
    #[error("backend call timed out")]
    Timeout,
    /// The answer was larger than [`MAX_ANSWER_BYTES`].
    #[error("backend answer larger than {0} bytes")]
    TooLarge(usize),
}

/// Carries protocol calls to a backend.
///
/// Implement it to route the agent through something other than HTTP; the
/// agent runs calls one at a time on its own thread, so implementations need
/// no internal queueing.
pub trait Transport: Send + Sync + 'static {
    /// Performs one call.
    fn call(&self, request: ApiRequest) -> BoxFuture<Result<ApiResponse, TransportError>>;
}

/// The HTTP transport: reqwest with rustls, honouring `proxy`.
///
/// Connections time out after 5 s and whole calls after 15 s, so a backend
/// that hangs only delays the agent thread, never the application.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    base_url: String,
}

impl HttpTransport {
    /// Connect timeout.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Whole-call timeout.
    pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

    /// A transport to `config.url`, through `config.proxy` when set.
    ///
    /// # Errors
    /// [`TransportError::Setup`] when the proxy URL or the TLS setup is invalid.
    pub fn new(config: &Config) -> Result<Self, TransportError> {
        warn_if_cleartext(&config.url);
        // Redirects are never followed: a backend (or whatever answers in
        // its name) could otherwise send the agent's token, session and
        // batches anywhere.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Self::CONNECT_TIMEOUT)
            .timeout(Self::CALL_TIMEOUT)
            .user_agent(concat!("sqreen-rs/", env!("CARGO_PKG_VERSION")));
        // Without `proxy`, reqwest reads HTTPS_PROXY / HTTP_PROXY /
        // ALL_PROXY and honours NO_PROXY, as other HTTP clients of the
        // process do: behind a corporate proxy, that is the only way out.
        // A backend on loopback is never reached through a proxy.
        if let Some(proxy) = &config.proxy {
            let proxy =
                reqwest::Proxy::all(proxy).map_err(|e| TransportError::Setup(e.to_string()))?;
            builder = builder.proxy(proxy);
        } else if is_loopback_url(&config.url) {
            builder = builder.no_proxy();
        }
        builder = builder
            .tls_built_in_webpki_certs(true)
            .tls_built_in_native_certs(config.platform_roots);
        if let Some(path) = &config.ca_file {
            for cert in read_ca_file(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        Ok(Self {
            client,
            base_url: config.url.trim_end_matches('/').to_owned(),
        })
    }
}

/// The certificates of the PEM file at `path`.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, TransportError> {
    let pem = std::fs::read(path).map_err(|e| {
        TransportError::Setup(format!("cannot read the CA file {}: {e}", path.display()))
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| TransportError::Setup(format!("invalid CA file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TransportError::Setup(format!(
            "the CA file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Warns when `url` is plain `http://` to a host other than loopback: the
/// agent token, user identifiers and requests would cross the network in
/// clear.
fn warn_if_cleartext(url: &str) {
    if is_cleartext_remote(url) {
        tracing::warn!(target: "sqreen::transport", event = "transport.cleartext",
            "the backend URL is plain http:// to another host: the token and events cross \
             the network unencrypted; use https://");
    }
}

/// Whether `url` is `http://` to a host other than loopback.
fn is_cleartext_remote(url: &str) -> bool {
    url.starts_with("http://") && !is_loopback_url(url)
}

/// Whether the host of `url` (`http(s)://[user@]host[:port]/…`) is
/// `localhost` or a loopback address.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => host,
        None => authority,
    };
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Transport for HttpTransport {
    fn call(&self, request: ApiRequest) -> BoxFuture<Result<ApiResponse, TransportError>> {
        let url = format!("{}{}", self.base_url, request.path);
        let mut builder = match request.method {
            ApiMethod::Get => self.client.get(url),
            ApiMethod::Post => self.client.post(url),
        }
        .header("Accept", "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = request.body {
            builder = builder
                .header("Content-Type", "application/json")
                .body(body);
        }
        Box::pin(async move {
            let map_err = |e: reqwest::Error| {
                if e.is_timeout() {
                    TransportError::Timeout
                } else {
                    TransportError::Failed(e.without_url().to_string())
                }
            };
            let mut response = builder.send().await.map_err(map_err)?;
            let status = response.status().as_u16();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(map_err)? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(TransportError::TooLarge(MAX_ANSWER_BYTES));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(ApiResponse { status, body })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config_with_ca(path: &std::path::Path) -> Config {
        Config::builder()
            .token("t")
            .url("https://backend.invalid")
            .ca_file(path)
            .build()
            .unwrap()
    }

    /// A missing, empty or invalid CA file is a setup error naming the
    /// file (the agent then stays off), never a silent fallback.
    #[test]
    fn bad_ca_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("sqreen-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for path in [&missing, &empty, &garbage] {
            let err = HttpTransport::new(&config_with_ca(path)).unwrap_err();
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }

    /// Plain `http://` is flagged for remote hosts only.
    #[test]
    fn cleartext_detection() {
        for url in [
            "http://127.0.0.1:8700",
            "http://localhost/sqreen",
            "http://[::1]:80/x",
            "http://user:pw@127.0.0.2",
            "https://example.com",
        ] {
            assert!(!is_cleartext_remote(url), "{url}");
        }
        for url in [
            "http://example.com",
            "http://10.0.0.5:8700",
            "http://[2001:db8::1]/",
            "http://localhost.example.com",
        ] {
            assert!(is_cleartext_remote(url), "{url}");
        }
    }
}
