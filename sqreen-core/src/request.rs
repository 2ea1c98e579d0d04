//! The core's own, borrowed view of an HTTP request and response.
//!
//! Adapters translate their framework's request into a [`RequestInfo`]
//! without copying: every field borrows from the framework's request. The
//! core never names an `http` type, so the same view serves frameworks on
//! `http` 0.2 (actix-web, rocket) and `http` 1 (axum, warp) alike.

use std::net::SocketAddr;

/// Read access to a request's header lines, without copying them.
///
/// Header names may come in any case; values are raw bytes because HTTP
/// allows non-UTF-8 header values (the core skips and counts those).
/// Repeated headers are visited once per line, in request order.
///
/// Slices of `(&str, &[u8])` and `(&str, &str)` pairs implement it; an
/// adapter implements it on a thin wrapper around its framework's header map.
///
/// ```
/// use sqreen_core::HeaderPairs;
/// let headers: &[(&str, &str)] = &[("User-Agent", "curl/8"), ("X-Real-Ip", "81.2.69.160")];
/// let mut names = Vec::new();
/// headers.visit(&mut |name, _value| names.push(name.to_owned()));
/// assert_eq!(names, ["User-Agent", "X-Real-Ip"]);
/// ```
pub trait HeaderPairs {
    /// Calls `f` with each header line's name and raw value, in request order.
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8]));
}

impl<T: HeaderPairs + ?Sized> HeaderPairs for &T {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        (**self).visit(f);
    }
}

impl HeaderPairs for [(&str, &[u8])] {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self {
            f(name, value);
        }
    }
}

impl HeaderPairs for [(&str, &str)] {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self {
            f(name, value.as_bytes());
        }
    }
}

impl<const N: usize> HeaderPairs for [(&str, &str); N] {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        self[..].visit(f);
    }
}

impl HeaderPairs for Vec<(&str, &str)> {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        self[..].visit(f);
    }
}

impl HeaderPairs for Vec<(String, String)> {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self {
            f(name, value.as_bytes());
        }
    }
}

/// A borrowed view of one incoming request, built by an adapter.
///
/// Only what the agent may need is asked for, and nothing is copied until the
/// agent decides to record the request.
///
/// ```
/// use sqreen_core::RequestInfo;
/// let headers: &[(&str, &str)] = &[("Host", "example.com"), ("User-Agent", "curl/8")];
/// let info = RequestInfo::new("GET", "/search", &headers)
///     .query(Some("q=shoes"))
///     .peer(Some("10.0.0.2:52114".parse().unwrap()))
///     .scheme("https");
/// assert_eq!(info.path(), "/search");
/// ```
#[derive(Clone, Copy)]
pub struct RequestInfo<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a dyn HeaderPairs,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) scheme: &'a str,
    pub(crate) host: Option<&'a str>,
    pub(crate) body: Option<&'a [u8]>,
    pub(crate) route_params: &'a [(&'a str, &'a str)],
}

impl<'a> RequestInfo<'a> {
    /// A request with its method, path (without the query) and headers.
    /// The scheme defaults to `http`.
    pub fn new(method: &'a str, path: &'a str, headers: &'a dyn HeaderPairs) -> Self {
        Self {
            method,
            path,
            query: None,
            headers,
            peer: None,
            scheme: "http",
            host: None,
            body: None,
            route_params: &[],
        }
    }

    /// The raw query string, without the `?`.
    #[must_use]
    pub fn query(mut self, query: Option<&'a str>) -> Self {
        self.query = query.filter(|q| !q.is_empty());
        self
    }

    /// The address of the TCP peer (the client, or the last proxy).
    #[must_use]
    pub fn peer(mut self, peer: Option<SocketAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// `http` or `https`.
    #[must_use]
    pub fn scheme(mut self, scheme: &'a str) -> Self {
        self.scheme = scheme;
        self
    }

    /// The host (and port) the request was addressed to, when the adapter
    /// knows it from the URI; otherwise the `Host` header is used.
    #[must_use]
    pub fn host(mut self, host: Option<&'a str>) -> Self {
        self.host = host;
        self
    }

    /// The request body the adapter buffered for capture, given to
    /// [`Agent::open`](crate::Agent::open). Its type is read from the
    /// `Content-Type` header.
    #[must_use]
    pub(crate) fn body(mut self, body: Option<&'a [u8]>) -> Self {
        self.body = body;
        self
    }

    /// The route parameters the framework matched (`/users/{id}` →
    /// `("id", "42")`), sent as `parameters.params`. Adapters that only know
    /// them only once the response is ready use
    /// [`RequestSlot::set_route_params`](crate::RequestSlot::set_route_params)
    /// instead.
    #[must_use]
    pub fn route_params(mut self, params: &'a [(&'a str, &'a str)]) -> Self {
        self.route_params = params;
        self
    }

    /// The request path.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The request method.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The peer address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The headers.
    pub fn headers(&self) -> &'a dyn HeaderPairs {
        self.headers
    }
}

impl std::fmt::Debug for RequestInfo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers and body may hold secrets: they are not printed.
        f.debug_struct("RequestInfo")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("peer", &self.peer)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// What the application answered, passed to the record when it closes.
///
/// Borrowed like [`RequestInfo`]: the content type is copied only when the
/// record is kept (it holds something to send).
///
/// ```
/// use sqreen_core::ResponseInfo;
/// let response = ResponseInfo::new(200).content_length(Some(2)).content_type(Some("text/plain"));
/// assert_eq!(response.status, 200);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseInfo<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The body length, when known.
    pub content_length: Option<u64>,
    /// The `Content-Type`, when set.
    pub content_type: Option<&'a str>,
}

impl<'a> ResponseInfo<'a> {
    /// A response with this status.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            content_length: None,
            content_type: None,
        }
    }

    /// The body length, when known.
    #[must_use]
    pub fn content_length(mut self, len: Option<u64>) -> Self {
        self.content_length = len;
        self
    }

    /// The response's `Content-Type`.
    #[must_use]
    pub fn content_type(mut self, content_type: Option<&'a str>) -> Self {
        self.content_type = content_type;
        self
    }
}
