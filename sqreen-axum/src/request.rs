//! Translating an `http::Request` into the core's borrowed [`RequestInfo`]
//! view, and the few request-side helpers the layer needs (route
//! parameters, rebuilding a buffered body).
//!
//! Nothing here copies the request: the core copies what it keeps, and only
//! when it records the request.

use std::any::{Any, TypeId};
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, OriginalUri, RawPathParams};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri};
use http_body_util::Full;
use sqreen_core::{HeaderPairs, RequestInfo};

/// The request's header map seen as the core's [`HeaderPairs`], without copying.
pub(crate) struct HeaderMapPairs<'a>(pub &'a HeaderMap);

impl HeaderPairs for HeaderMapPairs<'_> {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self.0 {
            f(name.as_str(), value.as_bytes());
        }
    }
}

/// Builds the core's view of `req`.
///
/// The path and query come from axum's `OriginalUri` when present: a layer
/// on a nested router sees the URI with the nest prefix stripped, the
/// original one is what the client asked for. The peer address comes from
/// `ConnectInfo<SocketAddr>` (set by `into_make_service_with_connect_info`)
/// or, in tests, `MockConnectInfo<SocketAddr>`.
pub(crate) fn request_info<'a, B>(
    req: &'a Request<B>,
    headers: &'a HeaderMapPairs<'a>,
) -> RequestInfo<'a> {
    info_from(req.method(), req.uri(), req.extensions(), headers)
}

/// [`request_info`] from a request's `Parts`, as extractors see it.
pub(crate) fn parts_info<'a>(parts: &'a Parts, headers: &'a HeaderMapPairs<'a>) -> RequestInfo<'a> {
    info_from(&parts.method, &parts.uri, &parts.extensions, headers)
}

fn info_from<'a>(
    method: &'a Method,
    uri: &'a Uri,
    extensions: &'a Extensions,
    headers: &'a HeaderMapPairs<'a>,
) -> RequestInfo<'a> {
    let original = match extensions.get::<OriginalUri>() {
        Some(OriginalUri(original)) => original,
        None => uri,
    };
    // Like axum's `ConnectInfo` extractor, fall back on the test helper
    // `MockConnectInfo`.
    let peer = match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => Some(*addr),
        None => extensions
            .get::<MockConnectInfo<SocketAddr>>()
            .map(|MockConnectInfo(addr)| *addr),
    };
    // HTTP/1.1 requests carry an origin-form URI (no scheme, no authority):
    // the core then falls back to the `Host` and `X-Forwarded-Proto` headers.
    // HTTP/2 requests carry both as pseudo-headers, which hyper puts in the URI.
    let host = uri
        .authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or_default());
    RequestInfo::new(method.as_str(), original.path(), headers)
        .query(original.query())
        .peer(peer)
        .scheme(uri.scheme_str().unwrap_or("http"))
        .host(host)
}

/// The current request's handle, its record opened and the request copied
/// into it if not yet: what the [`Sqreen`](crate::Sqreen) extractor does
/// when a handler takes it. The route parameters axum matched go with it.
pub(crate) async fn handle_for(parts: &mut Parts) -> sqreen_core::Sqreen {
    // Route parameters are read only for a request still to be copied.
    let params = if sqreen_core::current::with_slot(|slot| slot.needs_request())
        && has_route_params(&parts.extensions)
    {
        <RawPathParams as FromRequestParts<()>>::from_request_parts(parts, &())
            .await
            .ok()
    } else {
        None
    };
    // Allocates only for routes with parameters.
    let pairs: Vec<(&str, &str)> = params.iter().flat_map(RawPathParams::iter).collect();
    let headers = HeaderMapPairs(&parts.headers);
    sqreen_core::current::with_slot(|slot| {
        slot.handle_with(|| parts_info(parts, &headers).route_params(&pairs))
    })
}

/// True when the matched route (a cheap lookup) has parameters.
fn has_route_params(extensions: &Extensions) -> bool {
    extensions
        .get::<MatchedPath>()
        .is_some_and(|route| route.as_str().contains('{'))
}

/// The declared `Content-Type` and `Content-Length`, as `Agent::wants_body`
/// takes them. The length is only parsed when there is a content type.
pub(crate) fn body_headers(headers: &HeaderMap) -> (Option<&str>, Option<u64>) {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return (None, None);
    };
    let content_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    (Some(content_type), content_length)
}

/// True when a buffered body can be handed back to the inner service as a `B`.
///
/// The layer is generic over the request body type, and a buffered body can
/// only be turned back into the body types we know how to build: axum's
/// `Body` (what `Router::layer` gives its layers) and `Full<Bytes>`. For any
/// other type (hyper's `Incoming`, …) the body is never read.
pub(crate) fn can_rebuild<B: 'static>() -> bool {
    let ty = TypeId::of::<B>();
    ty == TypeId::of::<Body>() || ty == TypeId::of::<Full<Bytes>>()
}

/// The buffered bytes as a `B`, for the types [`can_rebuild`] accepts.
pub(crate) fn rebuild<B: 'static>(bytes: Bytes) -> Option<B> {
    // Downcasting `&mut Option<B>` picks the concrete type without `unsafe`
    // and without boxing (the trick axum's own `Body::new` uses).
    let mut slot: Option<B> = None;
    let any = &mut slot as &mut dyn Any;
    if let Some(slot) = any.downcast_mut::<Option<Body>>() {
        *slot = Some(Body::from(bytes));
    } else if let Some(slot) = any.downcast_mut::<Option<Full<Bytes>>>() {
        *slot = Some(Full::new(bytes));
    }
    slot
}

/// The route parameters axum matched (`/users/{id}` → `id`), when the
/// layer runs after routing (`Router::layer`); none before.
///
/// The matched route (`MatchedPath`, a cheap lookup) says whether there are
/// any: most routes have none, and cost nothing more. axum keeps the values
/// in a private request extension that only its extractors read;
/// `RawPathParams` is the cheapest of them (no deserialisation). It wants
/// `Parts` but only reads the extensions, so the request's extensions are
/// lent to an empty `Parts` (a pointer swap) rather than taking the request
/// apart. Its extraction is synchronous, so it is polled once in place.
pub(crate) fn route_params<B>(req: &mut Request<B>) -> Vec<(String, String)> {
    if !has_route_params(req.extensions()) {
        return Vec::new();
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    std::mem::swap(&mut parts.extensions, req.extensions_mut());
    let mut owned = Vec::new();
    {
        let extract = <RawPathParams as FromRequestParts<()>>::from_request_parts(&mut parts, &());
        let mut extract = std::pin::pin!(extract);
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Ok(params)) = extract.as_mut().poll(&mut cx) {
            owned.extend(params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        }
    }
    std::mem::swap(&mut parts.extensions, req.extensions_mut());
    owned
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only axum's `Body` and `Full<Bytes>` are rebuilt from buffered bytes.
    #[test]
    fn rebuildable_body_types() {
        assert!(can_rebuild::<Body>());
        assert!(can_rebuild::<Full<Bytes>>());
        assert!(!can_rebuild::<String>());
        assert!(rebuild::<Body>(Bytes::from_static(b"a=1")).is_some());
        assert!(rebuild::<Full<Bytes>>(Bytes::from_static(b"a=1")).is_some());
        assert!(rebuild::<String>(Bytes::from_static(b"a=1")).is_none());
    }

    /// Header lines are visited once each, with their raw bytes.
    #[test]
    fn header_pairs_visit_every_line() {
        let mut map = HeaderMap::new();
        map.append("x-forwarded-for", http::HeaderValue::from_static("1.2.3.4"));
        map.append("x-forwarded-for", http::HeaderValue::from_static("5.6.7.8"));
        let mut seen = Vec::new();
        HeaderMapPairs(&map).visit(&mut |n, v| seen.push((n.to_owned(), v.to_vec())));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].1, b"5.6.7.8");
    }
}
