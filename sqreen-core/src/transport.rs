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
        if let Some(proxy) = &config.proxy {
            let proxy =
                reqwest::Proxy::all(proxy).map_err(|e| TransportError::Setup(e.to_string()))?;
            builder = builder.proxy(proxy);
        } else {
            // Only the configured proxy is used: an agent should not pick up
            // the process's HTTP(S)_PROXY by surprise.
            builder = builder.no_proxy();
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

/// Warns once when `url` is plain `http://` to a host other than loopback:
/// the agent token, user identifiers and requests would cross the network
/// in clear.
fn warn_if_cleartext(url: &str) {
    let Some(rest) = url.strip_prefix("http://") else {
        return;
    };
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
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        tracing::warn!(target: "sqreen::transport", event = "transport.cleartext",
            "the backend URL is plain http:// to another host: the token and events cross \
             the network unencrypted; use https://");
    }
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
