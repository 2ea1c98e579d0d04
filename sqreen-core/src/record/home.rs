//! [`Home`]: the one interface between request records and the agent that
//! owns them.
//!
//! Records come from the home's pool and go back to it, or to the agent
//! thread through its queue; what they read while a request runs (capture
//! settings, the actions `identify` checks) and what they count (counters,
//! rate-limited warnings) is here too, and nothing else of the agent. A
//! record holds a [`Weak`](std::sync::Weak) reference to its home (pooled
//! records must not keep the agent alive); the agent state
//! (`crate::shared::Shared`) holds the home in an `Arc`, beside what
//! records never see (the configuration, the enabled flag, the control
//! channel and the agent thread).
//!
//! | field | written by | read by |
//! |---|---|---|
//! | `pool` | [`Home::recycle`] (request path, agent thread) | [`Home::new_record`] and its siblings |
//! | `queue_len`, `worker_idle`, `wake` | [`Home::enqueue`], the agent thread | the same |
//! | `queue_limit` | the agent thread (login features) | [`Home::enqueue`] |
//! | `runtime` | `Shared::set_runtime` only | the opener, `identify` |
//! | `counters`, `*_warnings` | everyone | `Agent::stats`, everyone |

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use super::RecordInner;
use crate::config::Config;
use crate::model::RuntimeState;
use crate::request::RequestInfo;
use crate::stats::{Counters, WarnLimiter, bump};

/// The sending half of the record queue, from the request path to the
/// agent thread.
pub(crate) type RecordSender = std::sync::mpsc::Sender<Arc<RecordInner>>;

/// Where an agent's records live: their pool, their queue to the agent
/// thread, and what they read and count while a request runs. See the
/// module docs.
pub(crate) struct Home {
    /// The agent's counters ([`Agent::stats`](crate::Agent::stats)).
    pub counters: Counters,
    /// Rate limit of the warnings about invalid SDK input.
    pub sdk_warnings: WarnLimiter,
    /// Rate limit of the warnings about invalid request input.
    pub input_warnings: WarnLimiter,
    /// Rate limit of the warnings about a full queue or event buffer.
    pub queue_warnings: WarnLimiter,
    /// The configured client IP header, kept by records beside the tracked ones.
    pub ip_header: Option<String>,
    /// Largest request body a record keeps, in bytes.
    pub body_capture_limit: usize,
    /// Status of the block page a security response answers with.
    pub blocking_status: u16,
    /// The actions and passlists requests are checked against. Written
    /// through `Shared::set_runtime` only, which also keeps the agent's
    /// cheap "anything loaded?" flag in step.
    pub runtime: ArcSwap<RuntimeState>,
    /// Records queued and not yet taken by the agent thread.
    pub queue_len: AtomicUsize,
    /// Most records queued at once (the backend may lower it at login).
    pub queue_limit: AtomicUsize,
    /// Set by the agent thread when it waits with an empty queue: the next
    /// record wakes it (see [`Home::enqueue`]).
    pub worker_idle: AtomicBool,
    /// Wakes the agent thread: a first record after idling, or a queue
    /// filling up. Otherwise records wait for the thread's next drain tick.
    pub wake: Notify,
    /// Cleared records waiting to be filled by the next requests (see
    /// [`crate::record`]): they hold only a weak reference to this home.
    pool: ArrayQueue<Arc<RecordInner>>,
    /// The queue to the agent thread; `None` for an agent that is off.
    tx: Option<RecordSender>,
}

impl Home {
    /// The home of an agent running with `config`, queueing its records to
    /// `tx` (`None`: an agent that is off, whose records are never queued).
    pub(crate) fn new(config: &Config, tx: Option<RecordSender>) -> Self {
        Self {
            counters: Counters::default(),
            sdk_warnings: WarnLimiter::default(),
            input_warnings: WarnLimiter::default(),
            queue_warnings: WarnLimiter::default(),
            ip_header: config.ip_header.clone(),
            body_capture_limit: config.body_capture_limit,
            blocking_status: config.blocking_status,
            runtime: ArcSwap::from_pointee(RuntimeState::default()),
            queue_len: AtomicUsize::new(0),
            queue_limit: AtomicUsize::new(config.event_queue_length),
            worker_idle: AtomicBool::new(false),
            wake: Notify::new(),
            pool: ArrayQueue::new(config.event_queue_length.clamp(1, MAX_POOLED_RECORDS)),
            tx,
        }
    }

    /// A record of this agent holding what the protocol needs of `info`: a
    /// pooled one when there is one, else a new one.
    pub fn new_record(
        self: &Arc<Self>,
        info: &RequestInfo<'_>,
        client_ip: Option<IpAddr>,
    ) -> Arc<RecordInner> {
        if let Some(mut record) = self.pool.pop()
            && let Some(inner) = Arc::get_mut(&mut record)
        {
            inner.fill(self, info, client_ip);
            return record;
        }
        Arc::new(RecordInner::capture(self, info, client_ip))
    }

    /// A pooled or new record, for a request that started at `start`,
    /// opened without copying the request ([`RecordInner::defer`]).
    pub fn new_deferred_record(
        self: &Arc<Self>,
        start: SystemTime,
        client_ip: Option<IpAddr>,
    ) -> Arc<RecordInner> {
        if let Some(mut record) = self.pool.pop()
            && let Some(inner) = Arc::get_mut(&mut record)
        {
            inner.defer(start, client_ip);
            return record;
        }
        let mut inner = RecordInner::blank(self);
        inner.defer(start, client_ip);
        Arc::new(inner)
    }

    /// A pooled or new record for events tracked outside any request
    /// ([`RecordInner::detach`]).
    pub fn new_detached_record(self: &Arc<Self>) -> Arc<RecordInner> {
        let start = SystemTime::now();
        if let Some(mut record) = self.pool.pop()
            && let Some(inner) = Arc::get_mut(&mut record)
        {
            inner.detach(start);
            return record;
        }
        let mut inner = RecordInner::blank(self);
        inner.detach(start);
        Arc::new(inner)
    }

    /// Clears a record nobody else holds and puts it back in the pool; a
    /// record still referenced (a handle kept past the request), too large,
    /// or beyond the pool's capacity is simply dropped.
    pub fn recycle(&self, mut record: Arc<RecordInner>) {
        if let Some(inner) = Arc::get_mut(&mut record)
            && inner.reset()
        {
            let _ = self.pool.push(record);
        }
    }

    /// Hands a closed record to the agent thread without ever waiting.
    ///
    /// The agent thread is not woken for every record: a context switch per
    /// tracked request would cost more than turning the record into an
    /// event. It drains the queue on a short tick while records come in
    /// (`crate::worker`), and is woken here only when it idles with an
    /// empty queue or when [`wake_threshold`] records wait.
    pub fn enqueue(&self, record: Arc<RecordInner>) {
        let Some(tx) = &self.tx else {
            return;
        };
        let limit = self.queue_limit.load(Ordering::Relaxed);
        // SeqCst pairs with the agent thread's store of `worker_idle` and
        // its re-read of `queue_len`: one of the two sides sees the other.
        let before = self.queue_len.fetch_add(1, Ordering::SeqCst);
        let dropped = if before < limit {
            match tx.send(record) {
                Ok(()) => {
                    bump(&self.counters.records_queued, 1);
                    let filling = before + 1 == wake_threshold(limit);
                    if filling
                        || (self.worker_idle.load(Ordering::SeqCst)
                            && self.worker_idle.swap(false, Ordering::SeqCst))
                    {
                        self.wake.notify_one();
                    }
                    return;
                }
                Err(std::sync::mpsc::SendError(record)) => record,
            }
        } else {
            record
        };
        self.recycle(dropped);
        self.queue_len.fetch_sub(1, Ordering::Relaxed);
        bump(&self.counters.records_dropped_queue_full, 1);
        if self.queue_warnings.allow() {
            tracing::warn!(
                target: "sqreen::queue",
                event = "queue.full",
                limit,
                dropped_total = self.counters.records_dropped_queue_full.load(Ordering::Relaxed),
                "event queue full: request record dropped (further warnings suppressed for 10 s)"
            );
        }
    }

    /// How many cleared records wait in the pool.
    #[cfg(test)]
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }
}

/// Most records the pool keeps (fewer with a smaller event queue). On a
/// fully loaded core the agent thread may only run on its drain tick, so
/// the pool holds about one tick's records at 50 000 tracked requests a
/// second (20 ms × 50 000); a request that finds it empty allocates a
/// record. A pooled record with one entry
/// takes 1–1.5 KB (1–1.5 MB for a full pool), at most about 4 KB (a 2 KiB
/// buffer and four entries; records with larger buffers are not pooled).
/// The pool does not shrink while the agent runs.
const MAX_POOLED_RECORDS: usize = 1024;

/// How many queued records wake the agent thread before its drain tick:
/// 256, or a quarter of a smaller queue. Small enough that the records
/// drained together are still in the CPU's caches (a 20 ms tick at 100 000
/// tracked requests/s would pile up megabytes of records), large enough
/// that a fully loaded core pays a wake-up for hundreds of records, not one.
pub(crate) fn wake_threshold(limit: usize) -> usize {
    (limit / 4).clamp(1, 256)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use compact_str::CompactString;

    use super::*;
    use crate::model::{Entry, PropertyValue};
    use crate::record::RequestRecord;
    use crate::request::ResponseInfo;
    use crate::sdk::Sqreen;

    fn home_with_queue(limit: usize) -> (Arc<Home>, std::sync::mpsc::Receiver<Arc<RecordInner>>) {
        let config = Config::builder()
            .token("t")
            .event_queue_length(limit)
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        (Arc::new(Home::new(&config, Some(tx))), rx)
    }

    /// With nobody draining the queue, records past the limit are dropped
    /// and counted, and enqueueing returns at once.
    #[test]
    fn full_queue_drops_newest_and_counts() {
        let (home, rx) = home_with_queue(2);
        let info = RequestInfo::new("GET", "/", &[("Host", "h")]);
        for _ in 0..5 {
            home.enqueue(Arc::new(RecordInner::capture(&home, &info, None)));
        }
        let stats = home.counters.snapshot();
        assert_eq!(stats.records_queued, 2);
        assert_eq!(stats.records_dropped_queue_full, 3);
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
    }

    /// A recycled record is the same allocation, and carries nothing of the
    /// request it held before: every field is the new request's, entries,
    /// parameters, response and body are gone.
    #[test]
    fn recycled_record_keeps_nothing_of_the_last_request() {
        let (home, _rx) = home_with_queue(16);
        let first_headers = [
            ("Host", "first.example"),
            ("User-Agent", "first-agent"),
            ("Referer", "https://first.example/from"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let peer = "10.0.0.1:4000".parse().ok();
        let first = RequestInfo::new("POST", "/first", &first_headers)
            .query(Some("secret=1"))
            .peer(peer)
            .body(Some(b"password=hunter2"));
        let record = home.new_record(&first, Some("203.0.113.7".parse().unwrap()));
        record.push(Entry::Track {
            time: SystemTime::now(),
            name: CompactString::const_new("first.event"),
            properties: smallvec::smallvec![(
                CompactString::const_new("k"),
                PropertyValue::from("v")
            )],
            user_identifiers: None,
            timestamp: None,
        });
        record.state().route_params.push(("id".into(), "7".into()));
        assert!(record.close(|| Some(ResponseInfo::new(201).content_type(Some("text/html")))));
        let first_ptr = Arc::as_ptr(&record);
        home.recycle(record);
        assert_eq!(home.pool.len(), 1);

        let second_headers = [("Host", "second.example")];
        let second = RequestInfo::new("GET", "/second", &second_headers);
        let record = home.new_record(&second, None);
        assert_eq!(
            Arc::as_ptr(&record),
            first_ptr,
            "the pooled record is reused"
        );
        assert_eq!(record.client_ip, None);
        let state = record.state();
        assert_eq!(state.request.peer, None);
        let request = &state.request;
        assert_eq!(request.method_str(), "GET");
        assert_eq!(request.path_str(), "/second");
        assert_eq!(request.query_str(), None);
        assert_eq!(request.user_agent(), None);
        assert_eq!(request.referer(), None);
        assert_eq!(request.body(), None);
        let lines: Vec<_> = request.header_lines(None).collect();
        assert_eq!(lines, vec![("Host", &b"second.example"[..])]);
        assert!(state.entries.is_empty());
        assert!(state.route_params.is_empty());
        assert!(state.response.is_none());
        assert!(state.response_type.is_empty());
        assert!(state.end.is_none());
        assert!(!state.closed);
    }

    /// A deferred record copies nothing until it is asked to, then copies
    /// once; a record that never was is recycled like any other.
    #[test]
    fn deferred_record_copies_the_request_once_on_demand() {
        let (home, _rx) = home_with_queue(16);
        let peer = "10.0.0.1:4000".parse().ok();
        let headers = [("Host", "shop.example"), ("User-Agent", "ua/1")];
        let info = RequestInfo::new("POST", "/cart", &headers)
            .query(Some("item=3"))
            .peer(peer);
        let inner = home.new_deferred_record(SystemTime::now(), None);
        let record = RequestRecord::new(Arc::clone(&home), Arc::clone(&inner));
        assert!(record.needs_request());
        let handle = Sqreen::from_record(&record);
        assert_eq!(inner.state().request.method_str(), "", "nothing copied yet");
        assert_eq!(inner.state().request.peer, None);
        record.capture_request(|| info);
        assert!(!record.needs_request());
        // A second capture (another extractor, another request) changes
        // nothing, and does not even build the request's view.
        record.capture_request(|| panic!("not called once copied"));
        {
            let state = inner.state();
            assert_eq!(state.request.method_str(), "POST");
            assert_eq!(state.request.path_str(), "/cart");
            assert_eq!(state.request.query_str(), Some("item=3"));
            assert_eq!(state.request.user_agent(), Some(&b"ua/1"[..]));
            assert_eq!(state.request.peer, peer);
        }
        drop((handle, inner));
        record.close(ResponseInfo::new(200));
        assert_eq!(home.pool.len(), 1, "untracked: back in the pool");

        // The pooled record opens deferred again, with nothing of the last request.
        let again = home.new_deferred_record(SystemTime::now(), None);
        assert!(again.is_pending());
        {
            let state = again.state();
            assert_eq!(state.request.path_str(), "");
            assert_eq!(state.request.peer, None);
            // Not even an empty query or user agent: the event of a record
            // never copied reports no field.
            assert_eq!(state.request.query_str(), None);
            assert_eq!(state.request.host_str(), None);
            assert_eq!(state.request.user_agent(), None);
            assert_eq!(state.request.header_lines(None).count(), 0);
        }
        // Closed before any capture: capturing afterwards does nothing.
        assert!(!again.close(|| None));
        again.capture_request(&info);
        assert!(again.is_pending());
        assert_eq!(again.state().request.path_str(), "");
    }

    /// A handle that outlives its request (a framework's request-local
    /// cache) puts the record back in the pool when it drops last.
    #[test]
    fn last_handle_recycles_a_closed_record() {
        let (home, _rx) = home_with_queue(16);
        let info = RequestInfo::new("GET", "/", &[("Host", "h")]);
        let record = RequestRecord::new(Arc::clone(&home), home.new_record(&info, None));
        let handle = Sqreen::from_record(&record);
        let copy = handle.clone();
        record.close(ResponseInfo::new(200));
        assert_eq!(home.pool.len(), 0, "the handles still hold the record");
        drop(copy);
        assert_eq!(home.pool.len(), 0);
        drop(handle);
        assert_eq!(home.pool.len(), 1, "the last handle recycled it");
    }

    /// A record still referenced elsewhere (a handle kept past its request)
    /// is not pooled, and the pool never holds more than its capacity.
    #[test]
    fn shared_or_surplus_records_are_not_pooled() {
        let (home, _rx) = home_with_queue(2);
        let info = RequestInfo::new("GET", "/", &[("Host", "h")]);
        let record = home.new_record(&info, None);
        let kept = Arc::clone(&record);
        home.recycle(record);
        assert_eq!(home.pool.len(), 0);
        drop(kept);
        for _ in 0..5 {
            home.recycle(Arc::new(RecordInner::capture(&home, &info, None)));
        }
        assert_eq!(
            home.pool.len(),
            2,
            "the pool is bounded by the queue's length"
        );
    }
}
