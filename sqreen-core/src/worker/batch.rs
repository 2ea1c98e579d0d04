//! Events out: cutting the waiting events into batches within the
//! protocol's limits, their bodies (gzip when the backend takes it), the
//! backend's answer to a batch (deliver, split, retry with backoff,
//! abandon), and the flushes waiting for it all to be delivered.

use std::time::{Duration, Instant};

use sqreen_protocol::limits;

use crate::shared::Reply;
use crate::stats::bump;

use super::{Op, Worker};

/// Most emptied event buffers kept for reuse (about 1 KB each).
const SPARE_BUFFERS: usize = 1024;

/// One request record, already serialised and scrubbed (see
/// [`crate::encode`]), with its number of `track` entries (what the backend
/// counts as events).
#[derive(Debug, Default)]
pub(super) struct EventJson {
    /// The event's JSON text.
    pub json: Vec<u8>,
    /// Its `track` entries.
    pub tracks: usize,
}

/// Body of `POST /sqreen/v0/batch`: `{"batch":[e1,e2,…]}` from events that
/// are already JSON, copied once.
pub(super) fn batch_body(events: &[EventJson]) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"batch\":[";
    let len = HEAD.len() + 2 + events.iter().map(|e| e.json.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(HEAD);
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&event.json);
    }
    body.extend_from_slice(b"]}");
    body
}

/// How many of `events`, from the front, make one batch: at most `records`
/// records, the protocol's events (tracks) and the agent's batch bytes,
/// and always at least one.
pub(super) fn batch_len<'a>(events: impl Iterator<Item = &'a EventJson>, records: usize) -> usize {
    let (mut n, mut tracks, mut bytes) = (0, 0, 16);
    for e in events.take(records.max(1)) {
        tracks += e.tracks;
        bytes += e.json.len() + 1;
        if n > 0 && (tracks > limits::MAX_BATCH_EVENTS || bytes > limits::AGENT_BATCH_BYTES) {
            break;
        }
        n += 1;
    }
    n
}

/// `body` gzip-compressed (fast level: batches are JSON, which shrinks
/// several times even so), or `None` if compression failed.
pub(super) fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

/// How the backend's answer to a batch is handled.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BatchOutcome {
    Delivered,
    /// 401: the session is gone; kept for after the next login.
    SessionLost,
    /// 400 or 413: something in the batch is refused; split it.
    Refused,
    /// 429, 503, a network error or a timeout: kept, backing off.
    Unavailable,
    /// Any other answer: kept for a few attempts, then abandoned.
    Failed,
}

/// A batch answered [`BatchOutcome::Failed`] is abandoned once it has
/// failed this many times in a row…
pub(super) const MAX_FAILED_ATTEMPTS: u32 = 8;

/// … over at least this long (flushes retry at once, so attempts alone
/// would pass quickly).
pub(super) const MIN_FAILING_TIME: Duration = Duration::from_secs(600);

impl Worker {
    /// The next batch of pending events, taken off the front. Those left
    /// keep the time the oldest pending event started waiting: none of
    /// them waited longer, so they are sent within `max_staleness` (maybe
    /// a little early), never later.
    pub(super) fn take_pending_batch(&mut self) -> Op {
        let n = batch_len(self.pending.iter(), self.batch_size);
        let events: Vec<EventJson> = self.pending.drain(..n).collect();
        self.pending_since = if self.pending.is_empty() {
            None
        } else {
            self.pending_since.or_else(|| Some(Instant::now()))
        };
        self.update_pending_gauge();
        Op::Batch {
            events,
            retried: false,
        }
    }

    /// Handles a batch's outcome (see [`BatchOutcome`]).
    pub(super) fn on_batch(
        &mut self,
        events: Vec<EventJson>,
        retried: bool,
        outcome: BatchOutcome,
        problem: &str,
    ) {
        let counters = &self.shared.home.counters;
        if outcome == BatchOutcome::Delivered {
            bump(&counters.events_sent, events.len() as u64);
            bump(&counters.batches_sent, 1);
            self.retry_backoff.reset();
            self.failed_attempts = 0;
            self.failing_since = None;
            self.retry_records = self.retry_records.saturating_mul(2).min(self.batch_size);
            tracing::debug!(target: "sqreen::batch", event = "batch.sent",
                events = events.len(), retried, "batch delivered");
            // Delivered events' buffers are written over by the next
            // events instead of being freed and allocated again.
            let room = SPARE_BUFFERS.saturating_sub(self.spare.len());
            self.spare.extend(events.into_iter().take(room).map(|e| {
                let mut json = e.json;
                json.clear();
                json
            }));
            return;
        }
        bump(&counters.batches_failed, 1);
        let n = events.len();
        let keep = match outcome {
            BatchOutcome::Refused if n == 1 => {
                bump(&counters.events_refused, 1);
                if self.shared.home.queue_warnings.allow() {
                    tracing::warn!(target: "sqreen::batch", event = "batch.event_refused",
                        problem = %problem,
                        "the backend refuses one event on its own: it is dropped");
                }
                false
            }
            BatchOutcome::Refused => {
                // Send halves until the refused event is alone.
                bump(&counters.batches_split, 1);
                self.retry_records = n.div_ceil(2);
                self.retry_at = Instant::now();
                tracing::debug!(target: "sqreen::batch", event = "batch.split", events = n,
                    problem = %problem, "batch refused; sending it in halves");
                true
            }
            BatchOutcome::Failed
                if self.failed_attempts + 1 >= MAX_FAILED_ATTEMPTS
                    && self
                        .failing_since
                        .is_some_and(|t| t.elapsed() >= MIN_FAILING_TIME) =>
            {
                self.failed_attempts = 0;
                self.failing_since = None;
                bump(&counters.events_abandoned, n as u64);
                tracing::error!(target: "sqreen::batch", event = "batch.abandoned", events = n,
                    attempts = MAX_FAILED_ATTEMPTS, problem = %problem,
                    "batch failed too many times: its events are dropped");
                false
            }
            BatchOutcome::Failed | BatchOutcome::Unavailable | BatchOutcome::SessionLost => {
                if outcome == BatchOutcome::Failed {
                    self.failed_attempts = self.failed_attempts.saturating_add(1);
                    self.failing_since.get_or_insert_with(Instant::now);
                }
                if self.flushing() {
                    self.flush_failed = true;
                }
                let delay = self.retry_backoff.step();
                self.retry_at = Instant::now() + delay;
                tracing::warn!(target: "sqreen::batch", event = "batch.failed",
                    events = n, problem = %problem,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "batch not delivered; kept for retry");
                true
            }
            BatchOutcome::Delivered => false,
        };
        if keep {
            for event in events.into_iter().rev() {
                self.retry.push_front(event);
            }
            self.enforce_capacity();
        } else {
            self.update_pending_gauge();
        }
    }

    /// True while flush callers wait.
    pub(super) fn flushing(&self) -> bool {
        !self.flush_waiters.is_empty()
    }

    /// Starts a flush answered on `reply` once everything waiting is delivered (or at
    /// `deadline`).
    pub(super) fn begin_flush(&mut self, deadline: Instant, reply: Reply) {
        self.drain_queue();
        if self.session.is_none() {
            reply.send(self.pending.is_empty() && self.retry.is_empty());
            return;
        }
        if self.flush_waiters.is_empty() {
            self.flush_failed = false;
        }
        self.flush_waiters.push((deadline, reply));
        self.check_flush_done();
    }

    /// True while a batch call runs (its events are in neither queue).
    fn batch_in_flight(&self) -> bool {
        // A login or beat in flight holds no events; a batch does.
        self.in_flight.is_some() && self.in_flight_batch
    }

    /// Answers the flush callers once everything is delivered, or a batch failed.
    pub(super) fn check_flush_done(&mut self) {
        if self.flush_waiters.is_empty() {
            return;
        }
        let drained = self.pending.is_empty() && self.retry.is_empty();
        if self.flush_failed || (drained && !self.batch_in_flight()) {
            let ok = !self.flush_failed;
            for (_, reply) in self.flush_waiters.drain(..) {
                reply.send(ok);
            }
            self.flush_failed = false;
        }
    }

    /// Answers `false` to the flush callers whose deadline passed.
    pub(super) fn expire_flush_waiters(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.flush_waiters.len() {
            if self.flush_waiters[i].0 <= now {
                let (_, reply) = self.flush_waiters.swap_remove(i);
                reply.send(false);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::sync_channel;

    use super::super::tests::{event, ids, logged_in, worker};
    use super::*;

    fn events(n: usize) -> Vec<EventJson> {
        (0..n).map(event).collect()
    }

    /// `batch_body` writes `{"batch":[…]}` with each event's JSON, in order.
    #[test]
    fn batch_body_is_the_protocols_json() {
        let body = batch_body(&events(3));
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(
            value,
            serde_json::json!({"batch": [{"id": 0}, {"id": 1}, {"id": 2}]})
        );
        assert_eq!(batch_body(&[]), b"{\"batch\":[]}");
    }

    /// A batch takes at most `records` events, and at least one.
    #[test]
    fn batch_len_bounds_records() {
        let all = events(5);
        assert_eq!(batch_len(all.iter(), 3), 3);
        assert_eq!(batch_len(all.iter(), 10), 5);
        assert_eq!(batch_len(all.iter(), 0), 1, "always at least one");
        assert_eq!(batch_len([].iter(), 10), 0);
    }

    /// A batch stops before the protocol's tracked-event limit, unless its
    /// first record alone passes it.
    #[test]
    fn batch_len_bounds_tracks() {
        let big = |tracks| EventJson {
            json: b"{}".to_vec(),
            tracks,
        };
        let half = limits::MAX_BATCH_EVENTS / 2;
        let fit = [big(half), big(half), big(1)];
        assert_eq!(batch_len(fit.iter(), 10), 2);
        let huge = [big(limits::MAX_BATCH_EVENTS + 1), big(1)];
        assert_eq!(batch_len(huge.iter(), 10), 1);
    }

    /// A batch stops before the agent's batch size in bytes, unless its
    /// first record alone passes it.
    #[test]
    fn batch_len_bounds_bytes() {
        let sized = |bytes| EventJson {
            json: vec![b' '; bytes],
            tracks: 1,
        };
        let third = limits::AGENT_BATCH_BYTES / 3;
        let three = [sized(third), sized(third), sized(third), sized(10)];
        assert_eq!(
            batch_len(three.iter(), 10),
            2,
            "16 bytes of envelope and commas"
        );
        let huge = [sized(limits::AGENT_BATCH_BYTES), sized(1)];
        assert_eq!(batch_len(huge.iter(), 10), 1);
    }

    /// `gzip` output is a gzip stream that decompresses to the body.
    #[test]
    fn gzip_round_trips() {
        let body = batch_body(&events(200));
        let zipped = gzip(&body).expect("compressed");
        assert_eq!(&zipped[..2], &[0x1f, 0x8b]);
        assert!(zipped.len() < body.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        assert_eq!(out, body);
    }

    /// Taking a batch drains the front of the pending events; the rest
    /// keep the oldest event's waiting time.
    #[test]
    fn take_pending_batch_takes_the_front() {
        let mut w = logged_in(2);
        w.pending.extend(events(3));
        let since = Instant::now();
        w.pending_since = Some(since);
        let Op::Batch { events, retried } = w.take_pending_batch() else {
            panic!("a batch");
        };
        assert!(!retried);
        assert_eq!(ids(&events), [0, 1]);
        assert_eq!(ids(&w.pending), [2]);
        assert_eq!(w.pending_since, Some(since), "the staleness clock goes on");
        assert_eq!(
            w.shared
                .home
                .counters
                .events_pending
                .load(Ordering::Relaxed),
            1
        );
        w.take_pending_batch();
        assert_eq!(w.pending_since, None);
    }

    /// A delivered batch is counted, resets the backoff and failures, grows
    /// the retried batch size back (up to `batch_size`) and keeps its
    /// emptied buffers for reuse.
    #[test]
    fn delivered_batch_resets_failures() {
        let mut w = logged_in(8);
        w.retry_records = 3;
        w.failed_attempts = 4;
        w.failing_since = Some(Instant::now());
        w.retry_backoff.step();
        w.on_batch(events(2), true, BatchOutcome::Delivered, "");
        let stats = w.shared.home.counters.snapshot();
        assert_eq!((stats.events_sent, stats.batches_sent), (2, 1));
        assert_eq!(w.retry_records, 6);
        assert_eq!((w.failed_attempts, w.failing_since), (0, None));
        assert_eq!(w.retry_backoff.next, Duration::from_secs(1));
        assert_eq!(w.spare.len(), 2);
        assert!(w.spare.iter().all(Vec::is_empty));
        w.on_batch(events(1), true, BatchOutcome::Delivered, "");
        assert_eq!(w.retry_records, 8, "capped at batch_size");
    }

    /// At most `SPARE_BUFFERS` emptied buffers are kept.
    #[test]
    fn spare_buffers_are_bounded() {
        let mut w = logged_in(10);
        w.on_batch(
            events(SPARE_BUFFERS + 5),
            false,
            BatchOutcome::Delivered,
            "",
        );
        assert_eq!(w.spare.len(), SPARE_BUFFERS);
    }

    /// A refused batch is sent again in halves until the refused event is
    /// alone, which is dropped and counted; the others are delivered.
    #[test]
    fn refused_batch_is_split_until_the_bad_event_is_alone() {
        let mut w = logged_in(16);
        w.next_beat = Instant::now() + Duration::from_secs(3600);
        let bad = 11;
        w.on_batch(events(16), false, BatchOutcome::Refused, "status 400");
        assert_eq!(w.retry_records, 8);
        assert_eq!(w.retry.len(), 16, "kept whole");
        let mut calls = 0;
        while let Some(Op::Batch { events, retried }) = w.next_op(Instant::now()) {
            assert!(retried);
            calls += 1;
            assert!(calls < 64, "splitting ends");
            let outcome = if ids(&events).contains(&bad) {
                BatchOutcome::Refused
            } else {
                BatchOutcome::Delivered
            };
            w.on_batch(events, retried, outcome, "status 400");
        }
        let stats = w.shared.home.counters.snapshot();
        assert!(w.retry.is_empty());
        assert_eq!(stats.events_refused, 1);
        assert_eq!(stats.events_sent, 15);
        assert!(stats.batches_split >= 4, "16 → 8 → 4 → 2 → 1");
        assert_eq!(stats.events_pending, 0);
    }

    /// A 429, 503 or network error keeps the batch at the front of the
    /// retries, in order, and backs off; it is not a failure towards
    /// abandoning.
    #[test]
    fn unavailable_backend_keeps_the_batch_and_backs_off() {
        let mut w = logged_in(10);
        w.retry.push_back(event(9));
        let before = Instant::now();
        w.on_batch(events(3), true, BatchOutcome::Unavailable, "status 503");
        assert_eq!(ids(&w.retry), [0, 1, 2, 9]);
        assert!(w.retry_at >= before);
        assert!(w.retry_at <= Instant::now() + Duration::from_secs(1));
        assert_eq!(w.retry_backoff.next, Duration::from_secs(2));
        assert_eq!((w.failed_attempts, w.failing_since), (0, None));
        w.on_batch(events(1), true, BatchOutcome::SessionLost, "status 401");
        assert_eq!(w.retry_backoff.next, Duration::from_secs(4));
        let stats = w.shared.home.counters.snapshot();
        assert_eq!((stats.batches_failed, stats.events_pending), (2, 5));
    }

    /// Other failures are retried and counted; the batch is abandoned only
    /// after `MAX_FAILED_ATTEMPTS` failures lasting `MIN_FAILING_TIME`.
    #[test]
    fn failed_batch_is_abandoned_after_attempts_and_time() {
        let mut w = logged_in(10);
        for _ in 0..MAX_FAILED_ATTEMPTS + 2 {
            let batch: Vec<EventJson> = w.retry.drain(..).collect();
            let batch = if batch.is_empty() { events(2) } else { batch };
            w.on_batch(batch, true, BatchOutcome::Failed, "status 500");
        }
        // Many attempts, but not for long enough: still kept.
        assert_eq!(w.failed_attempts, MAX_FAILED_ATTEMPTS + 2);
        assert_eq!(w.retry.len(), 2);
        w.failing_since = Instant::now().checked_sub(MIN_FAILING_TIME);
        assert!(w.failing_since.is_some(), "uptime allows the test");
        let batch: Vec<EventJson> = w.retry.drain(..).collect();
        w.on_batch(batch, true, BatchOutcome::Failed, "status 500");
        assert!(w.retry.is_empty());
        assert_eq!((w.failed_attempts, w.failing_since), (0, None));
        let stats = w.shared.home.counters.snapshot();
        assert_eq!(stats.events_abandoned, 2);
        assert_eq!(stats.events_pending, 0);
    }

    /// Long enough but too few failures: the batch is kept.
    #[test]
    fn failed_batch_is_kept_before_enough_attempts() {
        let mut w = logged_in(10);
        w.failed_attempts = MAX_FAILED_ATTEMPTS - 2;
        w.failing_since = Instant::now().checked_sub(MIN_FAILING_TIME);
        w.on_batch(events(1), true, BatchOutcome::Failed, "status 500");
        assert_eq!(w.retry.len(), 1);
        assert_eq!(w.failed_attempts, MAX_FAILED_ATTEMPTS - 1);
        let batch: Vec<EventJson> = w.retry.drain(..).collect();
        w.on_batch(batch, true, BatchOutcome::Failed, "status 500");
        assert!(w.retry.is_empty(), "the eighth failure abandons");
        assert_eq!(w.shared.home.counters.snapshot().events_abandoned, 1);
    }

    /// Retried events stay within the waiting-events bound.
    #[test]
    fn kept_batch_respects_capacity() {
        let mut w = logged_in(4);
        w.capacity = 4;
        w.pending.extend((10..13).map(event));
        w.on_batch(events(3), true, BatchOutcome::Unavailable, "timeout");
        assert_eq!(w.pending.len() + w.retry.len(), 4);
        assert_eq!(ids(&w.retry), [2], "retried events go first");
        assert_eq!(ids(&w.pending), [10, 11, 12]);
        assert_eq!(
            w.shared
                .home
                .counters
                .snapshot()
                .events_dropped_retry_buffer,
            2
        );
    }

    /// Without a session a flush answers at once: true with nothing
    /// waiting, false with events waiting.
    #[test]
    fn flush_without_session_answers_at_once() {
        let mut w = worker(10);
        let (tx, rx) = sync_channel(1);
        w.begin_flush(Instant::now(), Reply::Sync(tx));
        assert_eq!(rx.try_recv(), Ok(true));
        w.pending.push(event(1));
        let (tx, rx) = sync_channel(1);
        w.begin_flush(Instant::now(), Reply::Sync(tx));
        assert_eq!(rx.try_recv(), Ok(false));
        assert!(!w.flushing());
    }

    /// A flush waits for everything to be delivered, and answers true.
    #[test]
    fn flush_answers_true_once_delivered() {
        let mut w = logged_in(10);
        w.pending.push(event(1));
        let (tx, rx) = sync_channel(1);
        w.begin_flush(Instant::now() + Duration::from_secs(60), Reply::Sync(tx));
        assert!(w.flushing());
        assert!(rx.try_recv().is_err(), "still waiting");
        let Some(Op::Batch { events, retried }) = w.next_op(Instant::now()) else {
            panic!("a flush sends pending events at once");
        };
        w.on_batch(events, retried, BatchOutcome::Delivered, "");
        w.check_flush_done();
        assert_eq!(rx.try_recv(), Ok(true));
        assert!(!w.flushing());
    }

    /// A batch failing during a flush answers the flush false, and the
    /// next flush starts clean.
    #[test]
    fn flush_answers_false_on_failure() {
        let mut w = logged_in(10);
        w.pending.push(event(1));
        let (tx, rx) = sync_channel(1);
        w.begin_flush(Instant::now() + Duration::from_secs(60), Reply::Sync(tx));
        let Some(Op::Batch { events, retried }) = w.next_op(Instant::now()) else {
            panic!("a batch");
        };
        w.on_batch(events, retried, BatchOutcome::Unavailable, "timeout");
        assert!(w.flush_failed);
        w.check_flush_done();
        assert_eq!(rx.try_recv(), Ok(false));
        assert!(!w.flush_failed);
        assert_eq!(w.retry.len(), 1, "the events are still kept");
    }

    /// Flush callers past their deadline are answered false; the others wait.
    #[test]
    fn expired_flush_waiters_answer_false() {
        let mut w = logged_in(10);
        w.pending.push(event(1));
        let now = Instant::now();
        let (early_tx, early) = sync_channel(1);
        let (late_tx, late) = sync_channel(1);
        w.begin_flush(now, Reply::Sync(early_tx));
        w.begin_flush(now + Duration::from_secs(60), Reply::Sync(late_tx));
        w.expire_flush_waiters(now);
        assert_eq!(early.try_recv(), Ok(false));
        assert!(late.try_recv().is_err());
        assert_eq!(w.flush_waiters.len(), 1);
    }
}
