//! What happens to one request: [`dispatch`] asks the agent about it and
//! starts the inner service (or answers in its place), and
//! [`ResponseFuture`], the service's future, a small state machine instead
//! of a boxed `async` block, so the per-request path allocates nothing of
//! its own, drives it to the response and closes the record.
//!
//! The crate's modules form a chain: `layer` (the public layer and
//! service) → `future` → `request`, `current`, `blocked`.
//!
//! ```text
//! Buffer (form/JSON body to capture) ─▶ Inner (inner service running) ─▶ done
//!                                   └─▶ Ready (security response / unreadable body)
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http_body_util::Limited;
use http_body_util::combinators::Collect;
use pin_project_lite::pin_project;
use sqreen_core::{Agent, LazyAgent, Open, RequestSlot, ResponseInfo, SecurityResponse};
use tower_service::Service;

use crate::blocked::{BlockedMarker, default_blocked_response};
use crate::request::{HeaderMapPairs, rebuild, request_info, route_params};

/// A custom renderer of security responses.
pub(crate) type Renderer = Arc<dyn Fn(&SecurityResponse) -> Response + Send + Sync>;

/// What every clone of the layer and its services shares: one reference
/// count to bump when axum clones the service for a request.
#[derive(Clone)]
pub(crate) struct Settings {
    pub agent: LazyAgent,
    pub renderer: Option<Renderer>,
    /// Also put the handle in the request extensions
    /// ([`SqreenLayer::handle_in_extensions`](crate::SqreenLayer::handle_in_extensions)).
    pub in_extensions: bool,
}

impl Settings {
    /// The response for a security response: the custom renderer's, or the default.
    pub fn render(&self, response: &SecurityResponse) -> Response {
        match &self.renderer {
            Some(render) => render(response),
            None => default_blocked_response(response),
        }
    }
}

/// What the buffering state needs to go on once the body is read.
pub(crate) struct Pending<S> {
    pub service: S,
    pub parts: Parts,
    pub settings: Arc<Settings>,
}

pin_project! {
    /// Reading a body to capture. Boxed in [`State::Buffer`]: it is the
    /// largest state and the rarest, and every request's future would
    /// otherwise carry its size.
    pub(crate) struct Buffering<S, B>
    where
        B: http_body::Body,
        B::Error: Into<axum::BoxError>,
    {
        #[pin]
        pub collect: Collect<Limited<B>>,
        pub pending: Option<Pending<S>>,
    }
}

pin_project! {
    /// The states of a [`ResponseFuture`].
    #[project = StateProj]
    pub(crate) enum State<S, B>
    where
        S: Service<Request<B>>,
        B: http_body::Body,
        B::Error: Into<axum::BoxError>,
    {
        /// The inner service runs; the record, if any, is closed with its response.
        Inner {
            #[pin]
            future: S::Future,
            // Made current while `future` is polled: the request's slot
            // (a slot recording nothing for a passed request); `None` when
            // the agent is off.
            slot: Option<RequestSlot>,
            renderer: Option<Renderer>,
        },
        /// Reading a form or JSON body to capture, before asking the agent.
        Buffer { buffering: Pin<Box<Buffering<S, B>>> },
        /// Answered without the inner service.
        Ready { response: Option<Response> },
        /// The response was handed out: polling again panics.
        Done,
    }
}

impl<S, B> State<S, B>
where
    S: Service<Request<B>>,
    B: http_body::Body,
    B::Error: Into<axum::BoxError>,
{
    /// The inner service runs untouched.
    pub fn pass(future: S::Future) -> Self {
        Self::Inner {
            future,
            slot: None,
            renderer: None,
        }
    }
}

pin_project! {
    /// The response future of [`SqreenService`](crate::SqreenService).
    ///
    /// Like every future, it must not be polled after it completed: it
    /// panics then (as `sqreen-actix`'s does).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
        B: http_body::Body,
        B::Error: Into<axum::BoxError>,
    {
        #[pin]
        state: State<S, B>,
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    B: http_body::Body,
    B::Error: Into<axum::BoxError>,
{
    pub(crate) fn new(state: State<S, B>) -> Self {
        Self { state }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    B: http_body::Body,
    B::Error: Into<axum::BoxError>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Inner { slot: Some(_), .. } => "inner",
            State::Inner { slot: None, .. } => "inner, agent off",
            State::Buffer { .. } => "buffer",
            State::Ready { .. } => "ready",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = http::Response<ResBody>>,
    B: http_body::Body + 'static,
    B::Error: Into<axum::BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Inner {
                    future,
                    slot,
                    renderer,
                } => {
                    let result = if slot.is_some() {
                        let _entered = sqreen_core::current::enter(slot);
                        ready!(future.poll(cx))
                    } else {
                        ready!(future.poll(cx))
                    };
                    // On an error the slot is dropped, which closes its
                    // record without a response: what was tracked is still
                    // sent.
                    let slot = slot.take();
                    let renderer = renderer.take();
                    state.set(State::Done);
                    return Poll::Ready(
                        result.map(|response| finish(response.map(Body::new), slot, renderer)),
                    );
                }
                StateProj::Ready { response } => {
                    let response = response.take();
                    state.set(State::Done);
                    return Poll::Ready(Ok(response.unwrap_or_else(polled_after_ready)));
                }
                StateProj::Done => polled_after_ready(),
                StateProj::Buffer { buffering } => {
                    let buffering = buffering.as_mut().project();
                    let collected = ready!(buffering.collect.poll(cx));
                    let pending = buffering.pending;
                    let Some(Pending {
                        mut service,
                        parts,
                        settings,
                    }) = pending.take()
                    else {
                        polled_after_ready()
                    };
                    match (collected, settings.agent.get()) {
                        (Ok(collected), Some(agent)) => {
                            let bytes = collected.to_bytes();
                            match rebuild::<B>(bytes.clone()) {
                                Some(body) => dispatch(
                                    &settings,
                                    agent,
                                    &mut service,
                                    Request::from_parts(parts, body),
                                    Some(&bytes),
                                ),
                                // `call` only buffers bodies `rebuild` accepts.
                                None => State::Ready {
                                    response: Some(unreadable_body()),
                                },
                            }
                        }
                        (Err(error), _) => {
                            tracing::debug!(
                                target: "sqreen::axum",
                                event = "request.body_unreadable",
                                error = %error,
                                "request body could not be read for capture; answered 400"
                            );
                            State::Ready {
                                response: Some(unreadable_body()),
                            }
                        }
                        // `call` only buffers when there is an agent.
                        (Ok(_), None) => State::Ready {
                            response: Some(unreadable_body()),
                        },
                    }
                }
            };
            state.set(next);
        }
    }
}

/// Futures may panic when polled after they completed; this one says so.
fn polled_after_ready<T>() -> T {
    panic!("sqreen_axum::ResponseFuture polled after it completed")
}

/// Applies the custom renderer to a handler's `Blocked`, then closes the
/// record with what the client gets.
fn finish(
    mut response: Response,
    slot: Option<RequestSlot>,
    renderer: Option<Renderer>,
) -> Response {
    if let Some(render) = renderer
        && let Some(BlockedMarker(blocked)) = response.extensions_mut().remove::<BlockedMarker>()
    {
        response = render(&blocked);
    }
    if let Some(slot) = slot {
        // Only a record holding entries reads the response headers.
        slot.close_with(|| {
            let headers = response.headers();
            let content_length =
                http_body::Body::size_hint(response.body())
                    .exact()
                    .or_else(|| {
                        headers
                            .get(CONTENT_LENGTH)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                    });
            let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
            ResponseInfo::new(response.status().as_u16())
                .content_length(content_length)
                .content_type(content_type)
        });
    }
    response
}

/// Asks the agent about the request and starts the inner service, or not.
pub(crate) fn dispatch<S, B>(
    settings: &Settings,
    agent: &Agent,
    service: &mut S,
    mut req: Request<B>,
    body: Option<&[u8]>,
) -> State<S, B>
where
    S: Service<Request<B>>,
    B: http_body::Body,
    B::Error: Into<axum::BoxError>,
{
    let open = {
        let headers = HeaderMapPairs(req.headers());
        agent.open(|| request_info(&req, &headers), body)
    };
    let slot = match open {
        // A slot recording nothing is current: a request passlisted inside
        // another recorded one (an in-process sub-request) must not see the
        // outer request's handle.
        Open::Pass => RequestSlot::default(),
        Open::Respond(response) => {
            return State::Ready {
                response: Some(settings.render(&response)),
            };
        }
        Open::Request(mut slot) => {
            if settings.in_extensions {
                // The handle travels with the request to wherever the
                // thread-local does not (a task behind a `Buffer`): the
                // request is copied now, as the layer sees it.
                let headers = HeaderMapPairs(req.headers());
                let handle = slot.handle_with(|| request_info(&req, &headers));
                req.extensions_mut().insert(handle);
            }
            slot
        }
    };
    // A request copied now (a captured body, an IP action, the handle in
    // the extensions) gets its route parameters here; one copied later, by
    // the extractor, gets them with the request.
    slot.set_route_params(|| route_params(&mut req));
    let mut slot = Some(slot);
    let future = {
        let _entered = sqreen_core::current::enter(&mut slot);
        service.call(req)
    };
    State::Inner {
        future,
        slot,
        renderer: settings.renderer.clone(),
    }
}

/// The answer when a request body to capture cannot be read: the client
/// sent less or more than it declared, or went away.
pub(crate) fn unreadable_body() -> Response {
    let mut response = Response::new(Body::from("invalid request body"));
    *response.status_mut() = http::StatusCode::BAD_REQUEST;
    response
}
