//! Records in: draining the queue from the request path on a short tick
//! (or when woken), turning each record into its event (client IP,
//! parameters, scrubbing, JSON; [`crate::encode`]) and its metrics, and
//! keeping the events waiting within `event_queue_length`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sqreen_protocol::limits;

use crate::encode::{EventSettings, request_record};
use crate::metrics::MetricKind;
use crate::model::Entry;
use crate::record::{RecordInner, StoredHeaders, wake_threshold};
use crate::stats::bump;

use super::Worker;
use super::batch::EventJson;

/// How long queued records wait for the agent thread at most, unless
/// [`wake_threshold`] records are queued first. Events wait for a batch far
/// longer than this anyway (`max_staleness`, 60 s by default).
const DRAIN_TICK: Duration = Duration::from_millis(20);

impl Worker {
    /// Drains the queue when its tick is due, and decides when to drain next.
    ///
    /// Records are drained in bulk every [`DRAIN_TICK`] while they come in,
    /// not one wake-up per record: on a loaded core, a context switch per
    /// tracked request costs more than building its event. With the queue
    /// empty, the thread marks itself idle and the next record wakes it
    /// ([`Home::enqueue`](crate::record::Home::enqueue)).
    pub(super) fn schedule_drain(&mut self, now: Instant) {
        if self.drain_at.is_some_and(|at| now >= at) {
            self.drain_at = None;
            self.drain_queue();
        }
        if self.drain_at.is_some() {
            return;
        }
        if self.shared.home.queue_len.load(Ordering::SeqCst) > 0 {
            self.drain_at = Some(now + DRAIN_TICK);
            return;
        }
        // SeqCst: a record enqueued after this store sees the flag and
        // wakes us; one enqueued before it is seen by the re-read below.
        self.shared.home.worker_idle.store(true, Ordering::SeqCst);
        if self.shared.home.queue_len.load(Ordering::SeqCst) > 0 {
            self.shared.home.worker_idle.store(false, Ordering::SeqCst);
            self.drain_at = Some(now + DRAIN_TICK);
        }
    }

    /// A wake-up from [`Home::enqueue`](crate::record::Home::enqueue): the first record after idling
    /// starts the drain tick; a queue filling up is drained at once.
    pub(super) fn on_wake(&mut self) {
        self.shared.home.worker_idle.store(false, Ordering::SeqCst);
        let limit = self.shared.home.queue_limit.load(Ordering::Relaxed);
        if self.shared.home.queue_len.load(Ordering::Relaxed) >= wake_threshold(limit) {
            self.drain_queue();
        } else if self.drain_at.is_none() {
            self.drain_at = Some(Instant::now() + DRAIN_TICK);
        }
    }

    /// Turns one record into its event and metrics (see the module docs).
    pub(super) fn process(&mut self, record: &RecordInner) {
        self.shared.home.queue_len.fetch_sub(1, Ordering::Relaxed);
        if record.is_pending() {
            // Recorded through a handle that no extractor handed out (see
            // `RequestSlot::handle`): events and metrics are kept
            // without the request's fields (its client IP included) rather
            // than dropped.
            bump(&self.shared.home.counters.invalid_sdk_input, 1);
            if self.shared.home.sdk_warnings.allow() {
                tracing::warn!(
                    target: "sqreen::sdk",
                    event = "sdk.request_not_captured",
                    "SDK calls were recorded on a request whose details were never captured \
                     (a handle not taken through the adapter's extractor): its events and \
                     login/signup metrics are kept without the request (no path, no client IP)"
                );
            }
        }
        let state = record.state();
        let client_ip = record.client_ip.or_else(|| {
            self.shared.resolver.resolve(
                &StoredHeaders(&state.request, self.shared.home.ip_header.as_deref()),
                state.request.peer.map(|p| p.ip()),
            )
        });
        let mut tracks = 0;
        let mut observed = false;
        for entry in &state.entries {
            let (kind, ids) = match entry {
                Entry::Auth { success: true, ids } => (MetricKind::LoginSuccess, ids),
                Entry::Auth {
                    success: false,
                    ids,
                } => (MetricKind::LoginFail, ids),
                Entry::Signup { ids } => (MetricKind::Signup, ids),
                Entry::Track { .. } => {
                    tracks += 1;
                    continue;
                }
                Entry::Identify { .. } => continue,
            };
            self.metrics.add(
                kind,
                ids.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                client_ip,
            );
            observed = true;
        }
        if observed {
            self.publish_metric_losses();
        }
        if tracks == 0 {
            return;
        }
        let (event, report) = request_record(
            self.spare.pop().unwrap_or_default(),
            &mut self.times,
            record,
            &state,
            client_ip,
            &EventSettings {
                scrubber: &self.scrubber,
                sensitive_headers: &self.sensitive_headers,
                ip_header: self.shared.home.ip_header.as_deref(),
                strip_referer: self.shared.config.strip_http_referer,
                resolver: &self.shared.resolver,
            },
        );
        drop(state);
        let counters = &self.shared.home.counters;
        bump(&counters.values_scrubbed, report.scrubbed);
        if report.invalid_input > 0 {
            bump(&counters.invalid_request_input, report.invalid_input);
            if self.shared.home.input_warnings.allow() {
                tracing::warn!(target: "sqreen::request", event = "request.invalid_input",
                    skipped = report.invalid_input,
                    "request fields that are not valid UTF-8 or JSON were left out of a record");
            }
        }
        if event.len() > limits::MAX_RECORD_BYTES {
            // Thousands of long, escaped properties: no backend would take
            // it, and it would hold up the batches behind it.
            bump(&counters.invalid_sdk_input, 1);
            if self.shared.home.sdk_warnings.allow() {
                tracing::warn!(target: "sqreen::sdk", event = "sdk.record_too_large",
                    bytes = event.len(), max = limits::MAX_RECORD_BYTES,
                    "a request tracked more than one record may carry; it is dropped");
            }
            return;
        }
        #[cfg(feature = "otel")]
        if let Some(otel) = &self.otel {
            otel.export(&event);
        }
        self.pending.push(EventJson {
            json: event,
            tracks,
        });
        self.pending_since.get_or_insert_with(Instant::now);
        self.enforce_capacity();
    }

    /// Keeps pending + retry within `capacity`, dropping the oldest first.
    pub(super) fn enforce_capacity(&mut self) {
        let mut over = (self.pending.len() + self.retry.len()).saturating_sub(self.capacity);
        if over == 0 {
            self.update_pending_gauge();
            return;
        }
        let dropped = over as u64;
        let from_retry = over.min(self.retry.len());
        self.retry.drain(..from_retry);
        over -= from_retry;
        self.pending.drain(..over.min(self.pending.len()));
        bump(
            &self.shared.home.counters.events_dropped_retry_buffer,
            dropped,
        );
        if self.shared.home.queue_warnings.allow() {
            tracing::warn!(target: "sqreen::batch", event = "batch.buffer_full", dropped,
                capacity = self.capacity,
                "events waiting for the backend exceed the buffer: oldest dropped");
        }
        self.update_pending_gauge();
    }

    /// Publishes how many events wait (pending and retry) in the stats.
    pub(super) fn update_pending_gauge(&self) {
        self.shared.home.counters.events_pending.store(
            (self.pending.len() + self.retry.len()) as u64,
            Ordering::Relaxed,
        );
    }

    /// Processes every queued record and puts each back in the pool.
    pub(super) fn drain_queue(&mut self) {
        while let Ok(record) = self.rx.try_recv() {
            self.process(&record);
            self.shared.home.recycle(record);
        }
        self.drain_at = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use compact_str::CompactString;
    use serde_json::Value;

    use super::super::tests::{event, ids, logged_in, worker_on};
    use super::*;
    use crate::config::Config;
    use crate::model::UserIds;
    use crate::request::{RequestInfo, ResponseInfo};

    fn track(name: &str) -> Entry {
        Entry::Track {
            time: SystemTime::now(),
            name: CompactString::from(name),
            properties: Default::default(),
            user_identifiers: None,
            timestamp: None,
        }
    }

    fn user(name: &str) -> UserIds {
        Arc::from(vec![(
            CompactString::from("username"),
            CompactString::from(name),
        )])
    }

    /// Opens a record on `w`'s home for `GET /p`, adds `entries`, closes it
    /// with a 200 and queues it as the request path does.
    fn queue(w: &Worker, entries: Vec<Entry>) {
        let headers: &[(&str, &str)] = &[("User-Agent", "unit")];
        let record = w
            .shared
            .home
            .new_record(&RequestInfo::new("GET", "/p", &headers), None);
        for entry in entries {
            record.push(entry);
        }
        assert!(record.close(|| Some(ResponseInfo::new(200))));
        w.shared.home.enqueue(record);
    }

    fn metric_total(w: &mut Worker) -> Vec<(&'static str, u64)> {
        w.metrics
            .take(SystemTime::now(), usize::MAX, 100)
            .into_iter()
            .map(|m| (m.name, m.observation.values().sum()))
            .collect()
    }

    /// A closed record with a track becomes one pending event carrying the
    /// tracked name; the queue is emptied and the record pooled again.
    #[test]
    fn tracked_record_becomes_an_event() {
        let mut w = logged_in(10);
        queue(&w, vec![track("my.event"), track("other")]);
        assert_eq!(w.shared.home.queue_len.load(Ordering::SeqCst), 1);
        w.drain_queue();
        assert_eq!(w.shared.home.queue_len.load(Ordering::SeqCst), 0);
        assert_eq!(w.pending.len(), 1);
        assert_eq!(w.pending[0].tracks, 2);
        assert!(w.pending_since.is_some());
        let json: Value = serde_json::from_slice(&w.pending[0].json).expect("event JSON");
        assert_eq!(json["observed"]["sdk"][0]["args"][0], "my.event");
        assert_eq!(json["observed"]["sdk"][1]["args"][0], "other");
        assert_eq!(w.shared.home.pool_len(), 1, "the record is reused");
        let stats = w.shared.home.counters.snapshot();
        assert_eq!((stats.records_queued, stats.events_pending), (1, 1));
        assert!(metric_total(&mut w).is_empty());
    }

    /// Auth and signup entries become metrics and no event.
    #[test]
    fn auth_and_signup_become_metrics() {
        let mut w = logged_in(10);
        queue(
            &w,
            vec![
                Entry::Auth {
                    success: true,
                    ids: user("a"),
                },
                Entry::Auth {
                    success: false,
                    ids: user("b"),
                },
                Entry::Auth {
                    success: false,
                    ids: user("b"),
                },
                Entry::Signup { ids: user("c") },
            ],
        );
        w.drain_queue();
        assert!(w.pending.is_empty());
        assert_eq!(w.pending_since, None);
        let mut totals = metric_total(&mut w);
        totals.sort_unstable();
        assert_eq!(
            totals,
            [
                ("sdk-login-fail", 2),
                ("sdk-login-success", 1),
                ("sdk-signup", 1)
            ]
        );
    }

    /// A record with a track and an auth gives both the event and the
    /// metric; `identify` alone gives neither.
    #[test]
    fn mixed_and_identify_only_records() {
        let mut w = logged_in(10);
        queue(
            &w,
            vec![
                track("t"),
                Entry::Auth {
                    success: true,
                    ids: user("a"),
                },
            ],
        );
        queue(
            &w,
            vec![Entry::Identify {
                time: SystemTime::now(),
                ids: user("z"),
            }],
        );
        w.drain_queue();
        assert_eq!(w.pending.len(), 1);
        assert_eq!(w.pending[0].tracks, 1);
        assert_eq!(metric_total(&mut w), [("sdk-login-success", 1)]);
    }

    /// A record whose request was never captured is kept and counted as
    /// invalid SDK input.
    #[test]
    fn uncaptured_request_is_kept_and_counted() {
        let mut w = logged_in(10);
        let record = w.shared.home.new_deferred_record(SystemTime::now(), None);
        record.push(track("t"));
        assert!(record.close(|| None));
        w.shared.home.enqueue(record);
        w.drain_queue();
        assert_eq!(w.pending.len(), 1);
        assert_eq!(
            w.shared
                .home
                .counters
                .invalid_sdk_input
                .load(Ordering::Relaxed),
            1
        );
    }

    /// Events waiting beyond the bound are dropped oldest first, retried
    /// ones before pending ones, and counted.
    #[test]
    fn waiting_events_bound_drops_the_oldest() {
        let mut w = logged_in(2);
        w.capacity = 3;
        w.retry.extend([event(1), event(2)]);
        w.pending.extend([event(3), event(4), event(5)]);
        w.enforce_capacity();
        assert!(w.retry.is_empty());
        assert_eq!(ids(&w.pending), [3, 4, 5]);
        w.pending.push(event(6));
        w.enforce_capacity();
        assert_eq!(ids(&w.pending), [4, 5, 6]);
        let stats = w.shared.home.counters.snapshot();
        assert_eq!(stats.events_dropped_retry_buffer, 3);
        assert_eq!(stats.events_pending, 3);
    }

    /// New events past `event_queue_length` push out the oldest.
    #[test]
    fn processing_enforces_the_bound() {
        let config = Config::builder()
            .token("t")
            .batch_size(2)
            .event_queue_length(3)
            .build()
            .expect("config");
        let (mut w, _) = worker_on(config);
        assert_eq!(w.capacity, 3);
        for i in 0..3 {
            queue(&w, vec![track(&format!("e{i}"))]);
        }
        w.drain_queue();
        for i in 3..5 {
            queue(&w, vec![track(&format!("e{i}"))]);
        }
        w.drain_queue();
        let names: Vec<Value> = w
            .pending
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_slice(&e.json).expect("JSON");
                v["observed"]["sdk"][0]["args"][0].clone()
            })
            .collect();
        assert_eq!(names, ["e2", "e3", "e4"]);
        assert_eq!(
            w.shared
                .home
                .counters
                .events_dropped_retry_buffer
                .load(Ordering::Relaxed),
            2
        );
    }

    /// With an empty queue the thread marks itself idle; a queued record
    /// schedules a drain a tick later, which drains it when due.
    #[test]
    fn schedule_drain_idles_or_ticks() {
        let mut w = logged_in(10);
        let now = Instant::now();
        w.schedule_drain(now);
        assert!(w.shared.home.worker_idle.load(Ordering::SeqCst));
        assert_eq!(w.drain_at, None);
        w.shared.home.worker_idle.store(false, Ordering::SeqCst);
        queue(&w, vec![track("t")]);
        w.schedule_drain(now);
        assert_eq!(w.drain_at, Some(now + DRAIN_TICK));
        w.schedule_drain(now);
        assert!(w.pending.is_empty(), "not due yet");
        w.schedule_drain(now + DRAIN_TICK);
        assert_eq!(w.pending.len(), 1);
        assert!(w.shared.home.worker_idle.load(Ordering::SeqCst));
    }

    /// A wake-up starts the drain tick; with the queue filling up it
    /// drains at once.
    #[test]
    fn wake_up_ticks_or_drains() {
        let config = Config::builder()
            .token("t")
            .event_queue_length(8)
            .build()
            .expect("config");
        let (mut w, _) = worker_on(config);
        w.shared.home.worker_idle.store(true, Ordering::SeqCst);
        queue(&w, vec![track("a")]);
        w.on_wake();
        assert!(!w.shared.home.worker_idle.load(Ordering::SeqCst));
        assert!(w.drain_at.is_some());
        assert!(w.pending.is_empty());
        queue(&w, vec![track("b")]);
        assert_eq!(wake_threshold(8), 2);
        w.on_wake();
        assert_eq!(w.pending.len(), 2);
        assert_eq!(w.drain_at, None);
    }
}
