//! [`SqreenMiddleware`]: opens a request record before the inner service,
//! enforces IP actions, hands the handle to the [`Sqreen`](crate::Sqreen)
//! extractor, and closes the record with the response.
//!
//! ```text
//! request ─▶ agent on? ─no─────────────────────────────▶ inner service (untouched)
//!              │ yes
//!              ├─ small form/JSON body? ─▶ buffer it, put it back as the payload
//!              ▼
//!          nothing loaded needs the request? ─yes─▶ deferred record in extensions ▶ inner service
//!              │ no                (the extractor opens it and copies the request)
//!              ▼                   ◀─ status, length, type ─ record.close, if opened
//!          Agent::begin(_on_demand) ─ Pass ────────────▶ inner service
//!                       ─ Respond ─▶ block page / redirect (inner service never runs)
//!                       ─ Record ──▶ handle in extensions ▶ inner service
//!                                    (the extractor copies the request, route params included)
//!                                    ◀─ status, length, type ─ record.close
//! ```
//!
//! Without a buffered body, and with no passlist or IP action loaded, the
//! record is opened and the request copied only when a handler takes the
//! [`Sqreen`](crate::Sqreen) extractor (or calls
//! [`Sqreen::of`](crate::Sqreen::of)): a request whose handler never asks
//! costs an extensions entry, and no record at all.
//!
//! The common path allocates nothing of its own besides the record (and
//! the handle's slot in the extensions): the response future is an enum,
//! boxed only when a body is buffered.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{Error, HttpMessage, HttpResponse};
use pin_project_lite::pin_project;
use sqreen_core::{Agent, Begin, LazyAgent, RequestRecord, ResponseInfo, SecurityResponse};

use crate::blocked::{Blocked, Renderer, default_response};
use crate::extract::{Slot, Sqreen};
use crate::request::{begin, buffer_body, wanted_body_len};

/// The framework name and major version reported to the backend at login.
const FRAMEWORK: (&str, &str) = ("actix", "4");

/// The sqreen middleware for actix-web: wrap your `App` with it.
///
/// ```no_run
/// use actix_web::{App, HttpResponse, HttpServer, web};
/// use sqreen_actix::{Sqreen, SqreenMiddleware};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let _guard = sqreen_core::init_from_env(); // keep it alive: dropping it flushes
///     HttpServer::new(|| {
///         App::new()
///             .wrap(SqreenMiddleware::new())
///             .route("/", web::get().to(|sq: Sqreen| async move {
///                 sq.track_event("home.viewed");
///                 HttpResponse::Ok().body("ok")
///             }))
///     })
///     .bind(("127.0.0.1", 8000))?
///     .run()
///     .await
/// }
/// ```
///
/// Cheap to clone; every actix worker builds (or clones) its own.
#[derive(Clone)]
pub struct SqreenMiddleware {
    agent: LazyAgent,
    renderer: Option<Renderer>,
}

impl std::fmt::Debug for SqreenMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqreenMiddleware")
            .field("agent", &self.agent)
            .field("custom_blocked_response", &self.renderer.is_some())
            .finish()
    }
}

impl Default for SqreenMiddleware {
    /// Same as [`SqreenMiddleware::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl SqreenMiddleware {
    /// A middleware on the [global](Agent::global) agent, the one
    /// `sqreen::init` / `sqreen::init_from_env` starts.
    ///
    /// Build it before or after `init`: the agent is looked up on the first
    /// requests (one atomic load per request once found). Requests that
    /// arrive before `init` pass through untouched.
    pub fn new() -> Self {
        Self {
            agent: LazyAgent::global(FRAMEWORK.0, FRAMEWORK.1),
            renderer: None,
        }
    }

    /// A middleware on this agent (tests, or applications running several agents).
    pub fn with_agent(agent: Agent) -> Self {
        Self {
            agent: LazyAgent::fixed(agent, FRAMEWORK.0, FRAMEWORK.1),
            renderer: None,
        }
    }

    /// Renders security responses with `render` instead of
    /// [`default_response`]: IP blocks and redirects enforced before the
    /// handler, and the [`Blocked`] errors handlers return from `identify()?`.
    ///
    /// ```
    /// use actix_web::{App, HttpResponse};
    /// use sqreen_actix::SqreenMiddleware;
    /// use sqreen_core::SecurityResponse;
    ///
    /// # let agent = sqreen_core::Agent::off(sqreen_core::Config::default());
    /// let sqreen = SqreenMiddleware::with_agent(agent).blocked_response(|response| {
    ///     match response {
    ///         SecurityResponse::Block { .. } => HttpResponse::Forbidden()
    ///             .content_type("text/plain")
    ///             .body("Blocked. Contact support@example.com"),
    ///         redirect => sqreen_actix::default_response(redirect),
    ///     }
    /// });
    /// let app = App::new().wrap(sqreen);
    /// ```
    #[must_use]
    pub fn blocked_response<F>(mut self, render: F) -> Self
    where
        F: Fn(&SecurityResponse) -> HttpResponse + Send + Sync + 'static,
    {
        self.renderer = Some(Arc::new(render));
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for SqreenMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = SqreenService<S>;
    type InitError = ();
    type Future = Ready<Result<SqreenService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SqreenService {
            service: Rc::new(service),
            agent: self.agent.clone(),
            renderer: self.renderer.clone(),
        }))
    }
}

/// The service [`SqreenMiddleware`] wraps around the application.
pub struct SqreenService<S> {
    // Shared with the future of a request whose body is being buffered.
    service: Rc<S>,
    agent: LazyAgent,
    renderer: Option<Renderer>,
}

impl<S> std::fmt::Debug for SqreenService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqreenService")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for SqreenService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = SqreenFuture<S::Future, B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let agent = match self.agent.get() {
            // Off, or not logged in yet: not even the headers are looked at.
            Some(agent) if agent.is_enabled() => agent,
            _ => return SqreenFuture::call(self.service.call(req), Held::Nothing, None),
        };
        if let Some(declared) = wanted_body_len(agent, &req) {
            let service = Rc::clone(&self.service);
            let agent = agent.clone();
            let renderer = self.renderer.clone();
            let mut req = req;
            return SqreenFuture::boxed(Box::pin(async move {
                let body = buffer_body(&mut req, declared).await;
                let decision = begin(&agent, &req, body.as_deref());
                dispatch(&*service, renderer.as_ref(), req, decision).await
            }));
        }
        // Nothing loaded needs to see the request: its record is opened
        // only if something asks for the handle.
        if let Some(deferred) = agent.defer() {
            req.extensions_mut().insert(Slot::Deferred(deferred));
            return SqreenFuture::call(
                self.service.call(req),
                Held::Deferred,
                self.renderer.clone(),
            );
        }
        let decision = begin(agent, &req, None);
        dispatch(&*self.service, self.renderer.as_ref(), req, decision)
    }
}

/// What a [`SqreenFuture`] closes once the inner service answers.
enum Held {
    /// Nothing: the request is not recorded.
    Nothing,
    /// The request's record.
    Record(RequestRecord),
    /// A deferred record, in the request's extensions (opened if a handler
    /// asked for the handle). actix forbids keeping a clone of the request
    /// while it is routed, so the record is taken back from the response's
    /// request; when the service fails there is none, and the record
    /// (dropped with the request) closes without a response: what it
    /// tracked is still sent.
    Deferred,
}

impl Held {
    /// The record to close, if one was opened.
    fn take_record<B>(
        &mut self,
        result: &Result<ServiceResponse<B>, Error>,
    ) -> Option<RequestRecord> {
        match std::mem::replace(self, Self::Nothing) {
            Self::Nothing => None,
            Self::Record(record) => Some(record),
            Self::Deferred => match result
                .as_ref()
                .ok()?
                .request()
                .extensions_mut()
                .remove::<Slot>()
            {
                Some(Slot::Opened(record)) => Some(record),
                Some(Slot::Deferred(_) | Slot::Off) | None => None,
            },
        }
    }
}

/// Acts on the agent's decision for a request.
fn dispatch<S, B>(
    service: &S,
    renderer: Option<&Renderer>,
    req: ServiceRequest,
    decision: Begin,
) -> SqreenFuture<S::Future, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    match decision {
        Begin::Pass => SqreenFuture::call(service.call(req), Held::Nothing, None),
        Begin::Respond(response) => {
            let response = render(renderer, &response);
            let (req, _payload) = req.into_parts();
            SqreenFuture::ready(ServiceResponse::new(req, response).map_into_right_body())
        }
        Begin::Record(record) => {
            req.extensions_mut().insert(Sqreen(record.handle()));
            SqreenFuture::call(service.call(req), Held::Record(record), renderer.cloned())
        }
    }
}

fn render(renderer: Option<&Renderer>, response: &SecurityResponse) -> HttpResponse {
    match renderer {
        Some(render) => render(response),
        None => default_response(response),
    }
}

type BoxedResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>>>;

pin_project! {
    /// The response future of [`SqreenService`]: the inner service's
    /// future, then the record's close.
    pub struct SqreenFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        // The inner service runs; `held`'s record is closed when it answers.
        Call { #[pin] fut: F, held: Held, renderer: Option<Renderer> },
        // A security response decided before the inner service.
        Ready { response: Option<ServiceResponse<EitherBody<B>>> },
        // The body is being buffered (rare: small form/JSON bodies only).
        Boxed { fut: BoxedResponseFuture<B> },
    }
}

impl<F, B> SqreenFuture<F, B> {
    fn call(fut: F, held: Held, renderer: Option<Renderer>) -> Self {
        Self {
            state: State::Call {
                fut,
                held,
                renderer,
            },
        }
    }

    fn ready(response: ServiceResponse<EitherBody<B>>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }

    fn boxed(fut: BoxedResponseFuture<B>) -> Self {
        Self {
            state: State::Boxed { fut },
        }
    }
}

impl<F, B> Future for SqreenFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody + 'static,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Call {
                fut,
                held,
                renderer,
            } => {
                let result = std::task::ready!(fut.poll(cx));
                let record = held.take_record(&result);
                Poll::Ready(finish(result, record, renderer.as_ref()))
            }
            StateProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => {
                    tracing::error!(target: "sqreen::actix", "SqreenFuture polled after completion");
                    Poll::Pending
                }
            },
            StateProj::Boxed { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// Closes the record (if any) with what the inner service answered.
fn finish<B: MessageBody + 'static>(
    result: Result<ServiceResponse<B>, Error>,
    record: Option<RequestRecord>,
    renderer: Option<&Renderer>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let Some(record) = record else {
        return result.map(ServiceResponse::map_into_left_body);
    };
    let res = match result {
        Ok(res) => res,
        Err(e) => {
            // actix renders service errors later; their status is known now.
            let status = e.as_response_error().status_code().as_u16();
            record.close(ResponseInfo::new(status));
            return Err(e);
        }
    };
    // App-level middleware runs before routing; by now the request was
    // routed, so its match info holds all the route's parameters (the
    // extractor copied those matched when it ran, maybe only a scope's).
    // A record still waiting for its copy tracked nothing: no parameters.
    let params = res.request().match_info();
    if params.segment_count() > 0 && !record.needs_request() {
        record.set_route_params(params.iter());
    }
    let res = match renderer.and_then(|r| blocked_of(&res).map(|b| r(b.0.response()))) {
        Some(custom) => {
            let (req, _default) = res.into_parts();
            ServiceResponse::new(req, custom).map_into_right_body()
        }
        None => res.map_into_left_body(),
    };
    close(record, &res);
    Ok(res)
}

/// The `Blocked` error a handler answered with, if any.
fn blocked_of<B>(res: &ServiceResponse<B>) -> Option<&Blocked> {
    res.response().error().and_then(|e| e.as_error::<Blocked>())
}

fn close<B: MessageBody>(record: RequestRecord, res: &ServiceResponse<B>) {
    // Only a record holding entries reads the response headers.
    record.close_with(|| {
        let content_length = match res.response().body().size() {
            BodySize::Sized(len) => Some(len),
            BodySize::None => Some(0),
            BodySize::Stream => None,
        };
        let content_type = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        ResponseInfo::new(res.status().as_u16())
            .content_length(content_length)
            .content_type(content_type)
    });
}
