//! [`SqreenMiddleware`]: opens a request record before the inner service,
//! enforces IP actions, hands the handle to the [`Sqreen`](crate::Sqreen)
//! extractor, and closes the record with the response.
//!
//! ```text
//! call ─ agent absent/off ──────────────────────────────▶ inner service (untouched)
//!      ─ form/JSON body, declared length ≤ limit ─ buffer ─┐
//!      ─ otherwise ────────────────────────────────────────┴▶ Agent::open
//!           Pass    ─▶ inner service, polled with an empty slot current
//!           Respond ─▶ block page / redirect (inner service never runs)
//!           Request ─▶ inner service, polled with the request's slot current
//!                      (the extractor opens the record and copies the request)
//!                      ◀─ route params, status, length, type ─ slot.close
//! ```
//!
//! The request's [`RequestSlot`] is current ([`sqreen_core::current`])
//! while the inner service is called and polled, as in `sqreen-axum`: the
//! [`Sqreen`](crate::Sqreen) extractor (or [`Sqreen::of`](crate::Sqreen::of))
//! finds it there. Without a buffered body, and with no passlist or IP
//! action loaded, the record is opened and the request copied only when a
//! handler asks: a request whose handler never asks costs no record at all.
//!
//! The common path allocates nothing of its own: the response future is an
//! enum, boxed only when a body is buffered.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{Error, HttpResponse};
use pin_project_lite::pin_project;
use sqreen_core::current::enter;
use sqreen_core::{Agent, LazyAgent, Open, RequestSlot, ResponseInfo, SecurityResponse};

use crate::blocked::{Blocked, Renderer, default_blocked_response};
use crate::request::{buffer_body, open, wanted_body_len};

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
    /// [`default_blocked_response`]: IP blocks and redirects enforced before the
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
    ///         redirect => sqreen_actix::default_blocked_response(redirect),
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
            _ => return SqreenFuture::call(self.service.call(req), None, None),
        };
        if let Some(declared) = wanted_body_len(agent, &req) {
            let service = Rc::clone(&self.service);
            let agent = agent.clone();
            let renderer = self.renderer.clone();
            let mut req = req;
            return SqreenFuture::boxed(Box::pin(async move {
                let body = buffer_body(&mut req, declared).await;
                dispatch(&*service, &agent, renderer.as_ref(), req, body.as_deref()).await
            }));
        }
        dispatch(&*self.service, agent, self.renderer.as_ref(), req, None)
    }
}

/// Asks the agent about the request and starts the inner service with the
/// request's slot current, or answers in its place.
fn dispatch<S, B>(
    service: &S,
    agent: &Agent,
    renderer: Option<&Renderer>,
    req: ServiceRequest,
    body: Option<&[u8]>,
) -> SqreenFuture<S::Future, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    let slot = match open(agent, &req, body) {
        // A slot recording nothing is current: a request passlisted inside
        // another recorded one must not see the outer request's handle.
        Open::Pass => RequestSlot::default(),
        Open::Respond(response) => {
            let response = render(renderer, &response);
            let (req, _payload) = req.into_parts();
            return SqreenFuture::ready(ServiceResponse::new(req, response).map_into_right_body());
        }
        Open::Request(slot) => slot,
    };
    let mut slot = Some(slot);
    let fut = {
        let _entered = enter(&mut slot);
        service.call(req)
    };
    SqreenFuture::call(fut, slot, renderer.cloned())
}

fn render(renderer: Option<&Renderer>, response: &SecurityResponse) -> HttpResponse {
    match renderer {
        Some(render) => render(response),
        None => default_blocked_response(response),
    }
}

type BoxedResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>>>;

pin_project! {
    /// The response future of [`SqreenService`]: the inner service's
    /// future, then the record's close.
    ///
    /// Like every future, it must not be polled after it completed: it
    /// panics then (as `sqreen-axum`'s does).
    pub struct SqreenFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        // The inner service runs, polled with `slot` current (`None`: the
        // agent is off); the slot is closed when it answers.
        Call { #[pin] fut: F, slot: Option<RequestSlot>, renderer: Option<Renderer> },
        // A security response decided before the inner service.
        Ready { response: Option<ServiceResponse<EitherBody<B>>> },
        // The body is being buffered (rare: small form/JSON bodies only).
        Boxed { fut: BoxedResponseFuture<B> },
        // The response was handed out: polling again panics.
        Done,
    }
}

impl<F, B> SqreenFuture<F, B> {
    fn call(fut: F, slot: Option<RequestSlot>, renderer: Option<Renderer>) -> Self {
        Self {
            state: State::Call {
                fut,
                slot,
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
        let mut state = self.project().state;
        let output = match state.as_mut().project() {
            StateProj::Call {
                fut,
                slot,
                renderer,
            } => {
                let result = if slot.is_some() {
                    let _entered = enter(slot);
                    std::task::ready!(fut.poll(cx))
                } else {
                    std::task::ready!(fut.poll(cx))
                };
                finish(result, slot.take(), renderer.as_ref())
            }
            StateProj::Ready { response } => match response.take() {
                Some(response) => Ok(response),
                None => polled_after_completion(),
            },
            StateProj::Boxed { fut } => std::task::ready!(fut.as_mut().poll(cx)),
            StateProj::Done => polled_after_completion(),
        };
        state.set(State::Done);
        Poll::Ready(output)
    }
}

/// Futures may panic when polled after they completed; this one says so.
fn polled_after_completion<T>() -> T {
    panic!("sqreen_actix::SqreenFuture polled after it completed")
}

/// Closes the record (if any) with what the inner service answered.
fn finish<B: MessageBody + 'static>(
    result: Result<ServiceResponse<B>, Error>,
    slot: Option<RequestSlot>,
    renderer: Option<&Renderer>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let Some(slot) = slot else {
        return result.map(ServiceResponse::map_into_left_body);
    };
    let res = match result {
        Ok(res) => res,
        Err(e) => {
            // actix renders service errors later; their status is known now.
            let status = e.as_response_error().status_code().as_u16();
            slot.close(ResponseInfo::new(status));
            return Err(e);
        }
    };
    // App-level middleware runs before routing; by now the request was
    // routed, so its match info holds all the route's parameters (the
    // extractor copied those matched when it ran, maybe only a scope's).
    slot.set_route_params(|| res.request().match_info().iter());
    let res = match renderer.and_then(|r| blocked_of(&res).map(|b| r(b.0.response()))) {
        Some(custom) => {
            let (req, _default) = res.into_parts();
            ServiceResponse::new(req, custom).map_into_right_body()
        }
        None => res.map_into_left_body(),
    };
    close(slot, &res);
    Ok(res)
}

/// The `Blocked` error a handler answered with, if any.
fn blocked_of<B>(res: &ServiceResponse<B>) -> Option<&Blocked> {
    res.response().error().and_then(|e| e.as_error::<Blocked>())
}

fn close<B: MessageBody>(slot: RequestSlot, res: &ServiceResponse<B>) {
    // Only a record holding entries reads the response headers.
    slot.close_with(|| {
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
