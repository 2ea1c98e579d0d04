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
    /// The next batch of pending events, taken off the front.
    pub(super) fn take_pending_batch(&mut self) -> Op {
        let n = batch_len(self.pending.iter(), self.batch_size);
        let events: Vec<EventJson> = self.pending.drain(..n).collect();
        self.pending_since = if self.pending.is_empty() {
            None
        } else {
            Some(Instant::now())
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
