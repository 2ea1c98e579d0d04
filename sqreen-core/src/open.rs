//! The one way adapters open a request: [`Agent::open`](crate::Agent::open)
//! decides what happens to it ([`Open`]), and a recorded request lives in a
//! [`RequestSlot`] until the adapter closes it with the response.
//!
//! ```text
//! Agent::open(request, body)
//!   agent off, path or IP passlisted ─────────────▶ Open::Pass
//!   IP under a block/redirect action ─────────────▶ Open::Respond(response)
//!   body to capture, or an IP action to record ───▶ Open::Request(slot: record, request copied)
//!   nothing loaded to check the request against ──▶ Open::Request(slot: deferred, nothing opened)
//!   otherwise ────────────────────────────────────▶ Open::Request(slot: record, request not copied)
//!
//! RequestSlot::handle_with(request)   opens the record if deferred, copies the request if not yet
//! RequestSlot::close(response)        queues the record if it tracked something, else recycles it
//! ```
//!
//! A request whose handler never asks for the handle costs no record (when
//! nothing loaded needs to see it) or an empty one, and is never copied.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use compact_str::CompactString;

use crate::actions::SecurityResponse;
use crate::model::{Entry, PropertyValue};
use crate::record::{Home, RecordInner, RequestRecord};
use crate::request::{RequestInfo, ResponseInfo};
use crate::sdk::Sqreen;
use crate::shared::Shared;
use crate::stats::bump;

/// What [`Agent::open`](crate::Agent::open) decided for a request. Every
/// arm matters: `Respond` must answer in the handler's place.
#[derive(Debug)]
#[must_use = "a request under an IP action must be answered with `Open::Respond`"]
pub enum Open {
    /// Let the request through untouched: the agent is off or not logged in,
    /// or the path or client IP is passlisted. Handlers get a disabled handle.
    Pass,
    /// Answer with this security response; the handler must not run. The
    /// enforcement was recorded (`sq.action.block_ip` / `redirect_ip`).
    Respond(SecurityResponse),
    /// Serve the request and hand its handle to the handlers through the
    /// slot; [close](RequestSlot::close) the slot with the response.
    Request(RequestSlot),
}

/// A request the agent records, owned by the adapter while it is served.
///
/// It hands out the request's [`Sqreen`] handle ([`handle_with`](Self::handle_with)
/// for an extractor that can show the request, [`handle`](Self::handle)
/// otherwise), opening the record on first use and copying the request the
/// first time it is shown. [`close`](Self::close) it with the response;
/// dropping it unclosed (a cancelled or panicking handler) closes it
/// without a response, so nothing tracked is lost.
///
/// The [`Default`] slot records nothing: adapters make it current for a
/// passed request, so that code under it does not see an enclosing
/// request's handle.
#[derive(Debug, Default)]
pub struct RequestSlot {
    state: SlotState,
}

#[derive(Default)]
enum SlotState {
    /// Records nothing.
    #[default]
    Off,
    /// Nothing opened yet: the agent and when the request started.
    Deferred {
        shared: Arc<Shared>,
        start: SystemTime,
    },
    /// The open record.
    Open(RequestRecord),
}

impl std::fmt::Debug for SlotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("Off"),
            Self::Deferred { start, .. } => {
                f.debug_struct("Deferred").field("start", start).finish()
            }
            Self::Open(record) => f.debug_tuple("Open").field(record).finish(),
        }
    }
}

impl RequestSlot {
    fn open(record: RequestRecord) -> Self {
        Self {
            state: SlotState::Open(record),
        }
    }

    /// A slot over `inner`, a record just taken from `home`.
    fn recording(home: &Arc<Home>, inner: Arc<RecordInner>) -> Self {
        Self::open(RequestRecord::new(Arc::clone(home), inner))
    }

    /// The request's handle, opening its record if it was not yet; the
    /// request is not copied (see [`handle_with`](Self::handle_with)).
    /// Disabled when the slot records nothing, or when the agent turned off
    /// since the request started.
    pub fn handle(&mut self) -> Sqreen {
        match self.record() {
            Some(record) => Sqreen::from_record(record),
            None => Sqreen::disabled(),
        }
    }

    /// The request's handle, opening its record if it was not yet and
    /// copying the request into it if it was not yet: `request` is called
    /// only then, so an extractor taken twice copies once. What is copied is
    /// the request as the extractor sees it (route parameters included).
    ///
    /// ```
    /// use sqreen_core::{Agent, Config, Open, RequestInfo, ResponseInfo};
    ///
    /// # let agent = Agent::off(Config::default());
    /// let headers: &[(&str, &str)] = &[("Host", "shop.example.com")];
    /// let request = || RequestInfo::new("GET", "/cart", &headers);
    /// match agent.open(request, None) {
    ///     Open::Request(mut slot) => {
    ///         // In the handler's extractor:
    ///         let sq = slot.handle_with(request);
    ///         sq.track_event("cart.viewed");
    ///         slot.close(ResponseInfo::new(200));
    ///     }
    ///     Open::Pass => { /* serve the request, unrecorded */ }
    ///     Open::Respond(response) => { /* answer with it */ let _ = response; }
    /// }
    /// ```
    pub fn handle_with<'a>(&mut self, request: impl FnOnce() -> RequestInfo<'a>) -> Sqreen {
        match self.record() {
            Some(record) => {
                record.capture_request(request);
                Sqreen::from_record(record)
            }
            None => Sqreen::disabled(),
        }
    }

    /// The open record, opened now if it was deferred; `None` when the slot
    /// records nothing.
    fn record(&mut self) -> Option<&RequestRecord> {
        if let SlotState::Deferred { shared, start } = &self.state {
            // The agent may have turned off since the request started.
            *self = if shared.enabled.load(Ordering::Relaxed) {
                Self::recording(&shared.home, shared.home.new_deferred_record(*start, None))
            } else {
                Self::default()
            };
        }
        match &self.state {
            SlotState::Open(record) => Some(record),
            SlotState::Off | SlotState::Deferred { .. } => None,
        }
    }

    /// True while the slot records the request and has not copied it yet
    /// (no handler asked for the handle with the request): route
    /// parameters then come with the request, from
    /// [`RequestInfo::route_params`].
    pub fn needs_request(&self) -> bool {
        match &self.state {
            SlotState::Deferred { .. } => true,
            SlotState::Open(record) => record.needs_request(),
            SlotState::Off => false,
        }
    }

    /// Route parameters (`/users/{id}` → `("id", "42")`), when the framework
    /// exposes them; sent as `parameters.params`. They replace those the
    /// record holds: an adapter that knows the final route only once the
    /// response is ready (a scope matched before the resource) sets the
    /// authoritative ones at close.
    ///
    /// `params` runs only when the slot holds a record whose request was
    /// copied: a request not recorded, or not copied yet (its parameters
    /// come with the request, from [`RequestInfo::route_params`]), costs
    /// nothing.
    pub fn set_route_params<I, K, V>(&self, params: impl FnOnce() -> I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        if let SlotState::Open(record) = &self.state
            && !record.needs_request()
        {
            record.set_route_params(params());
        }
    }

    /// Attaches the request body, copied while it streamed to the handler
    /// (a framework whose middleware cannot buffer it first). Kept, and true
    /// returned, when the whole body fits `body_capture_limit`, the request
    /// was copied already, no body was kept before, and the record is still
    /// open. Parsed as a form or JSON by the request's `Content-Type`, and
    /// scrubbed, when the record is sent.
    pub fn attach_body(&self, body: &[u8]) -> bool {
        match &self.state {
            SlotState::Open(record) => record.attach_body(body),
            SlotState::Off | SlotState::Deferred { .. } => false,
        }
    }

    /// Closes the record with the application's response. A record that
    /// holds entries goes to the agent thread (never blocking: a full queue
    /// drops it and counts); an empty one goes back to the agent's pool.
    /// A record never opened costs nothing.
    pub fn close(self, response: ResponseInfo<'_>) {
        self.close_with(|| response);
    }

    /// [`close`](Self::close), building the [`ResponseInfo`] only when the
    /// record is kept: adapters whose response fields cost something to read
    /// (a header lookup) skip that work for requests that tracked nothing.
    pub fn close_with<'r>(self, response: impl FnOnce() -> ResponseInfo<'r>) {
        if let SlotState::Open(record) = self.state {
            record.close_with(response);
        }
    }
}

/// [`Agent::open`](crate::Agent::open): see [`Open`] and the module docs.
pub(crate) fn open<'a>(
    shared: &Arc<Shared>,
    request: impl FnOnce() -> RequestInfo<'a>,
    body: Option<&'a [u8]>,
) -> Open {
    if !shared.enabled.load(Ordering::Relaxed) {
        return Open::Pass;
    }
    if !shared.looks_at_requests() {
        // Nothing to check against the request.
        return Open::Request(match body {
            // The handler consumes the body: the request is copied now.
            Some(body) => RequestSlot::recording(
                &shared.home,
                shared.home.new_record(&request().body(Some(body)), None),
            ),
            // Nothing opened until a handler asks.
            None => RequestSlot {
                state: SlotState::Deferred {
                    shared: Arc::clone(shared),
                    start: SystemTime::now(),
                },
            },
        });
    }
    let state = shared.home.runtime.load();
    let info = &request().body(body);
    if !state.path_passlist.is_empty()
        && state
            .path_passlist
            .iter()
            .any(|p| info.path.starts_with(p.as_str()))
    {
        return Open::Pass;
    }
    let mut client_ip = None;
    if !state.ip_passlist.is_empty() || state.actions.has_ip_actions() {
        client_ip = shared
            .resolver
            .resolve(info.headers, info.peer.map(|p| p.ip()));
        if let Some(ip) = client_ip {
            let ip = crate::actions::canonical(ip);
            if state.ip_passlist.iter().any(|net| net.contains(&ip)) {
                return Open::Pass;
            }
            if let Some(action) = state.actions.match_ip(ip, Instant::now()) {
                let record = shared.home.new_record(info, Some(ip));
                record.push(action_entry(action.kind.event_name(), &action.id, ip));
                bump(&shared.home.counters.actions_enforced, 1);
                // Debug only: a client IP is personal data, and a blocked
                // attacker would fill the logs at info.
                tracing::debug!(
                    target: "sqreen::actions",
                    event = "action.ip",
                    action_id = %action.id,
                    action = action.kind.event_name(),
                    client_ip = %ip,
                    "security response applied to a client IP"
                );
                let record = RequestRecord::new(Arc::clone(&shared.home), record);
                if let Some(response) = action.response(shared.home.blocking_status) {
                    record.close(ResponseInfo::new(response.status()));
                    return Open::Respond(response);
                }
                return Open::Request(RequestSlot::open(record));
            }
        }
    }
    let record = if body.is_some() {
        shared.home.new_record(info, client_ip)
    } else {
        // Checked, not copied: the extractor copies it if a handler asks.
        shared
            .home
            .new_deferred_record(SystemTime::now(), client_ip)
    };
    Open::Request(RequestSlot::recording(&shared.home, record))
}

/// The `track` entry recording an IP action.
fn action_entry(name: &'static str, action_id: &str, ip: IpAddr) -> Entry {
    Entry::Track {
        time: SystemTime::now(),
        name: CompactString::const_new(name),
        properties: smallvec::smallvec![
            (
                CompactString::const_new("action_id"),
                PropertyValue::from(action_id),
            ),
            (
                CompactString::const_new("ip_address"),
                PropertyValue::from(ip.to_string()),
            ),
        ],
        user_identifiers: None,
        timestamp: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Agent;
    use crate::config::Config;
    use crate::model::RuntimeState;
    use crate::record::RecordInner;

    fn agent_with_queue(
        limit: usize,
    ) -> (
        Agent,
        Arc<Shared>,
        std::sync::mpsc::Receiver<Arc<RecordInner>>,
    ) {
        let config = Config::builder()
            .token("t")
            .event_queue_length(limit)
            .build()
            .expect("valid config");
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared::new(config, Some(tx)));
        (Agent::from_shared(Arc::clone(&shared)), shared, rx)
    }

    /// `open` builds the request view only to check passlists and IP
    /// actions, or to copy it with a body; otherwise the extractor does.
    #[test]
    fn open_reads_the_request_only_when_needed() {
        let (agent, shared, _rx) = agent_with_queue(16);
        shared.enabled.store(true, Ordering::Relaxed);
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let plain = RequestInfo::new("GET", "/", &headers);
        // Opens `plain`, saying whether `open` built its view.
        let open_plain = || {
            let mut asked = false;
            let open = agent.open(
                || {
                    asked = true;
                    plain
                },
                None,
            );
            match open {
                Open::Request(slot) => (slot, asked),
                other => panic!("recorded, got {other:?}"),
            }
        };
        let (slot, asked) = open_plain();
        assert!(slot.needs_request());
        assert!(
            !asked,
            "nothing to check: the request is not even looked at"
        );
        // With a path passlist, the path is checked.
        shared.set_runtime(RuntimeState {
            path_passlist: Arc::from(vec!["/health".to_owned()]),
            ..RuntimeState::default()
        });
        let health = RequestInfo::new("GET", "/health/live", &headers);
        assert!(matches!(agent.open(|| health, None), Open::Pass));
        let (slot, asked) = open_plain();
        assert!(asked && slot.needs_request());
        let with_body = RequestInfo::new("POST", "/login", &headers);
        let Open::Request(slot) = agent.open(|| with_body, Some(b"user=a")) else {
            panic!("recorded");
        };
        assert!(!slot.needs_request(), "a body is copied at once");
    }

    /// A slot opens no record until asked; the record it opens is dated
    /// from the `open` call and copies the request the first time it is
    /// shown; with the agent off by then, the slot records nothing.
    #[test]
    fn slots_open_their_record_only_when_asked() {
        let (agent, shared, rx) = agent_with_queue(16);
        assert!(matches!(agent.open(|| unreachable!(), None), Open::Pass));
        shared.enabled.store(true, Ordering::Relaxed);

        // Never opened: the pool is not touched, nothing is queued.
        shared
            .home
            .recycle(Arc::new(RecordInner::blank(&shared.home)));
        let Open::Request(untouched) = agent.open(|| unreachable!(), None) else {
            panic!("recorded");
        };
        untouched.close(ResponseInfo::new(200));
        assert_eq!(
            shared.home.pool_len(),
            1,
            "no record was taken from the pool"
        );

        let before = SystemTime::now();
        let Open::Request(mut slot) = agent.open(|| unreachable!(), None) else {
            panic!("recorded");
        };
        std::thread::sleep(Duration::from_millis(5));
        let sq = slot.handle();
        assert_eq!(shared.home.pool_len(), 0, "the pooled record was taken");
        assert!(slot.needs_request(), "opened without the request");
        let late = slot.handle_with(|| RequestInfo::new("GET", "/late", &[("Host", "h")]));
        assert!(!slot.needs_request());
        late.track_event("deferred.event");
        drop((sq, late));
        slot.close(ResponseInfo::new(200));
        let queued = rx.try_recv().expect("tracked: queued");
        let start = queued.start;
        assert!(
            start >= before && start < before + Duration::from_millis(5),
            "dated from when the request was opened"
        );
        assert_eq!(queued.state().request.path_str(), "/late");

        // The agent turned off meanwhile: the slot records nothing.
        let Open::Request(mut slot) = agent.open(|| unreachable!(), None) else {
            panic!("recorded");
        };
        shared.enabled.store(false, Ordering::Relaxed);
        assert!(!slot.handle().is_enabled(), "turned off meanwhile");
        assert!(!slot.needs_request());

        // The default slot records nothing.
        let mut off = RequestSlot::default();
        assert!(!off.handle_with(|| unreachable!()).is_enabled());
        assert!(!off.attach_body(b"a=1"));
    }

    /// A body is kept only by a record that holds its request.
    #[test]
    fn attached_body_needs_the_request() {
        let (agent, shared, rx) = agent_with_queue(16);
        shared.enabled.store(true, Ordering::Relaxed);
        let headers = [("Content-Type", "application/json")];
        let request = || RequestInfo::new("POST", "/api", &headers);
        let Open::Request(mut slot) = agent.open(request, None) else {
            panic!("recorded");
        };
        assert!(!slot.attach_body(br#"{"a":1}"#), "not opened yet");
        let sq = slot.handle_with(request);
        assert!(slot.attach_body(br#"{"a":1}"#));
        sq.track_event("api.called");
        drop(sq);
        slot.close(ResponseInfo::new(200));
        let queued = rx.try_recv().expect("queued");
        assert_eq!(queued.state().request.body(), Some(&br#"{"a":1}"#[..]));
    }
}
