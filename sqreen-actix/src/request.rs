//! Translation of an actix request into the core's borrowed
//! [`RequestInfo`], and the buffering of small form/JSON bodies for capture.

use std::future::ready;

use actix_web::dev::{Payload, ServiceRequest};
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage, HttpRequest, error::PayloadError};
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use sqreen_core::current::with_slot;
use sqreen_core::{Agent, HeaderPairs, Open, RequestInfo};

/// actix's header map seen as the core's header lines, without copying.
///
/// actix keeps headers in a hash map grouped by name, so lines come grouped
/// by name rather than strictly in request order; repeated lines of one
/// name keep their order.
struct Headers<'a>(&'a HeaderMap);

impl HeaderPairs for Headers<'_> {
    fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self.0 {
            f(name.as_str(), value.as_bytes());
        }
    }
}

/// The declared body length, when the agent wants to capture this body.
pub(crate) fn wanted_body_len(agent: &Agent, req: &ServiceRequest) -> Option<u64> {
    let headers = req.headers();
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let content_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    agent
        .wants_body(content_type, content_length)
        .then_some(content_length)
        .flatten()
}

/// Asks the agent what to do with the request. A request whose body was
/// buffered is copied now (the handler consumes the body); any other is
/// copied only if a handler takes the [`Sqreen`](crate::Sqreen) handle
/// ([`handle_for`]).
pub(crate) fn open(agent: &Agent, req: &ServiceRequest, body: Option<&[u8]>) -> Open {
    let headers = Headers(req.headers());
    agent.open(|| request_info(req.request(), &headers), body)
}

/// The handle of the request being served, its record opened and the
/// request copied into it if not yet (route parameters included): what the
/// [`Sqreen`](crate::Sqreen) extractor does when a handler takes it.
pub(crate) fn handle_for(req: &HttpRequest) -> sqreen_core::Sqreen {
    // Allocates only for a request still to be copied, on a route with parameters.
    let params: Vec<(&str, &str)> =
        if req.match_info().segment_count() > 0 && with_slot(|slot| slot.needs_request()) {
            req.match_info().iter().collect()
        } else {
            Vec::new()
        };
    let headers = Headers(req.headers());
    with_slot(|slot| slot.handle_with(|| request_info(req, &headers).route_params(&params)))
}

/// The core's view of `req`.
fn request_info<'a>(req: &'a HttpRequest, headers: &'a Headers<'a>) -> RequestInfo<'a> {
    let uri = req.uri();
    // HTTP/1.1 requests carry an origin-form URI (no scheme, no authority):
    // the host then comes from the `Host` header, read by the core. Not
    // `connection_info()`: it builds owned strings in the extensions on
    // every request, and trusts `Forwarded` / `X-Forwarded-*` from any
    // client; those headers are sent as they are, for the backend to judge.
    let scheme = match uri.scheme_str() {
        Some(scheme) => scheme,
        None if req.app_config().secure() => "https",
        None => "http",
    };
    RequestInfo::new(req.method().as_str(), req.path(), headers)
        .query(Some(req.query_string()))
        .peer(req.peer_addr())
        .scheme(scheme)
        // Never the userinfo of `user:password@host`.
        .host(
            uri.authority()
                .map(|a| a.as_str().rsplit('@').next().unwrap_or_default()),
        )
}

/// Reads the whole body (its declared length is within the capture limit)
/// and puts it back as the request payload, so extractors read it intact.
///
/// Returns the bytes to capture, or `None` when the body could not be read
/// as declared (a read error, or more bytes than `Content-Length` said): the
/// handler then gets what was read followed by the rest of the stream (or
/// the error), exactly as if nothing had been buffered.
pub(crate) async fn buffer_body(req: &mut ServiceRequest, declared: u64) -> Option<Bytes> {
    let mut payload = req.take_payload();
    // `declared` is within `body_capture_limit`, so the capacity is bounded.
    let mut buf = BytesMut::with_capacity(usize::try_from(declared).unwrap_or(0));
    let failure: Result<(), PayloadError> = loop {
        match payload.next().await {
            Some(Ok(chunk)) => {
                buf.extend_from_slice(&chunk);
                if buf.len() as u64 > declared {
                    break Ok(());
                }
            }
            Some(Err(e)) => break Err(e),
            None => {
                let body = buf.freeze();
                req.set_payload(Payload::from(body.clone()));
                return Some(body);
            }
        }
    };
    tracing::debug!(
        target: "sqreen::actix",
        event = "body.not_captured",
        declared,
        read = buf.len(),
        "request body differs from its declared length; not captured"
    );
    let head = stream::once(ready(Ok(buf.freeze())));
    let rest: Payload = match failure {
        Ok(()) => Payload::from(boxed(head.chain(payload))),
        Err(e) => Payload::from(boxed(head.chain(stream::once(ready(Err(e)))))),
    };
    req.set_payload(rest);
    None
}

fn boxed(
    s: impl Stream<Item = Result<Bytes, PayloadError>> + 'static,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> {
    Box::pin(s)
}
