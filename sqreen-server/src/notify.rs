//! Webhook notifications of alerts: signed JSON POSTs sent from spawned
//! tasks, so ingestion never waits for them, with bounded retries and every
//! failure logged and counted.
//!
//! | setting | value |
//! | --- | --- |
//! | attempts | 3 (after 0.5 s, then 1 s); a refused destination is not retried |
//! | timeout per attempt | 5 s |
//! | deliveries in flight | 64 at most; more are dropped with a warning |
//! | destinations | public addresses only, unless `--allow-private-webhooks` ([`crate::destination`]) |
//! | redirects, proxies | never followed, never used |
//!
//! # Signatures
//! Each webhook of a playbook has its own secret (`sqw_` and 64 hex
//! digits), generated when the playbook is saved with that URL and shown
//! once, in the answer of `POST`/`PUT /api/playbooks` and on the dashboard
//! page after saving; it is kept while the URL stays in the playbook. Every
//! attempt carries:
//!
//! ```text
//! X-Sqreen-Timestamp: <unix seconds when the attempt was sent>
//! X-Sqreen-Signature: v1=<hex HMAC-SHA256(key = the secret, message = timestamp "." body)>
//! ```
//!
//! A receiver recomputes the HMAC over the timestamp header, a dot and the
//! raw body bytes (before any JSON parsing), compares it in constant time,
//! and refuses timestamps more than a few minutes away from its clock, so
//! that a captured delivery cannot be replayed later (the README has a
//! snippet). A webhook saved before secrets existed is sent unsigned, with
//! a warning, until its playbook is saved again.
//!
//! Logs name a webhook by its host only: URLs often carry a token in their
//! path or query. The webhooks of an alert also record each step (a failed
//! attempt, then sent, gave up, refused or dropped) with the alert
//! ([`crate::store::Store::alert_deliveries`]), by host too, for its page.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::destination::{self, CheckingResolver, WebhookPolicy};
use crate::store::Store;

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);
const IN_FLIGHT: usize = 64;

/// The header carrying the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Sqreen-Timestamp";
/// The header carrying the signature (`v1=<hex>`).
pub const SIGNATURE_HEADER: &str = "X-Sqreen-Signature";
/// Prefix of webhook secrets.
pub const SECRET_PREFIX: &str = "sqw_";

/// The `X-Sqreen-Signature` value of `body` sent at `timestamp` (unix
/// seconds) with `secret`: `v1=` and the hex HMAC-SHA256 of
/// `timestamp "." body`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", crate::secret::hex(&mac.finalize().into_bytes()))
}

/// What became of this process's webhooks since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WebhookCounts {
    /// Delivered (a 2xx answer).
    pub sent: u64,
    /// Abandoned after every attempt failed.
    pub failed: u64,
    /// Not sent: the destination is forbidden ([`crate::destination`]).
    pub refused: u64,
    /// Not sent: too many deliveries in flight.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
}

/// Where the steps of an alert's webhook are recorded.
#[derive(Clone)]
pub struct DeliveryLog {
    /// The store holding the alert.
    pub store: Store,
    /// The alert notified.
    pub alert_id: i64,
}

/// Records a step in `log`, if any; a failure is logged, never returned:
/// the delivery goes on.
async fn record(log: Option<&DeliveryLog>, host: &str, attempt: u32, outcome: &str, detail: &str) {
    let Some(log) = log else { return };
    if let Err(e) = log
        .store
        .record_delivery(log.alert_id, host, i64::from(attempt), outcome, detail)
        .await
    {
        tracing::warn!(event = "notify.record_failed", host = %host, error = %e,
            "a webhook step could not be recorded with its alert");
    }
}

/// Sends webhooks in the background; cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    /// `None` when it could not be built (logged once).
    client: Option<reqwest::Client>,
    policy: WebhookPolicy,
    slots: Arc<Semaphore>,
    counters: Arc<Counters>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new(WebhookPolicy::default())
    }
}

impl Notifier {
    /// A notifier with its own HTTP client, sending only where `policy`
    /// allows.
    pub fn new(policy: WebhookPolicy) -> Self {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve and connect on its own, past the checks.
            .no_proxy()
            .dns_resolver(Arc::new(CheckingResolver::new(policy)))
            .build()
            .inspect_err(|e| {
                // Only a TLS backend that cannot start fails here. No
                // fallback: a default client would skip the checks.
                tracing::error!(event = "notify.client_failed", error = %e,
                    "webhook client could not be built; webhooks will not be sent");
            })
            .ok();
        Self {
            client,
            policy,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            counters: Arc::default(),
        }
    }

    /// Where this notifier may send.
    pub fn policy(&self) -> WebhookPolicy {
        self.policy
    }

    /// What became of the webhooks so far.
    pub fn counts(&self) -> WebhookCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WebhookCounts {
            sent: get(&self.counters.sent),
            failed: get(&self.counters.failed),
            refused: get(&self.counters.refused),
            dropped: get(&self.counters.dropped),
        }
    }

    fn refused(&self, host: &str, reason: &destination::Refused) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(event = "notify.refused", host = %host, reason = %reason,
            "webhook not sent: forbidden destination");
    }

    /// POSTs `payload` to `url` in the background, signed with `secret`
    /// (unsigned, with a warning, when `None`). Must run inside a tokio
    /// runtime.
    pub fn webhook(&self, url: &str, secret: Option<&str>, payload: &Value) {
        self.webhook_logged(url, secret, payload, None);
    }

    /// [`Notifier::webhook`], recording each step in `log` (when given).
    pub fn webhook_logged(
        &self,
        url: &str,
        secret: Option<&str>,
        payload: &Value,
        log: Option<DeliveryLog>,
    ) {
        let host = destination::log_host(url);
        let record_now = |outcome: &'static str, detail: String| {
            if let Some(log) = log.clone() {
                let host = host.clone();
                tokio::spawn(async move { record(Some(&log), &host, 0, outcome, &detail).await });
            }
        };
        // Literal addresses never reach the resolver: judge them here.
        if let Err(reason) = destination::check_url(url, self.policy) {
            self.refused(&host, &reason);
            record_now("refused", reason.to_string());
            return;
        }
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(event = "notify.dropped", host = %host,
                "too many webhooks in flight; this one is dropped");
            record_now("dropped", "too many webhooks in flight".into());
            return;
        };
        let body = match serde_json::to_vec(payload) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(event = "notify.encode_failed", host = %host, error = %e,
                    "webhook payload could not be encoded");
                return;
            }
        };
        if secret.is_none() {
            tracing::warn!(event = "notify.unsigned", host = %host,
                "webhook has no secret (saved before signatures): sent unsigned; \
                 save its playbook again to get one");
        }
        let notifier = self.clone();
        let url = url.to_owned();
        let secret = secret.map(str::to_owned);
        tokio::spawn(async move {
            let _permit = permit;
            notifier
                .deliver(&url, &host, secret.as_deref(), body, log.as_ref())
                .await;
        });
    }

    async fn deliver(
        &self,
        url: &str,
        host: &str,
        secret: Option<&str>,
        body: Vec<u8>,
        log: Option<&DeliveryLog>,
    ) {
        let Some(client) = &self.client else {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(event = "notify.gave_up", host = %host, attempts = 0,
                "webhook not sent: no HTTP client");
            record(log, host, 0, "gave_up", "no HTTP client").await;
            return;
        };
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let mut request = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(secret) = secret {
                let timestamp = crate::time::now_ms().max(0).unsigned_abs() / 1000;
                request = request
                    .header(TIMESTAMP_HEADER, timestamp)
                    .header(SIGNATURE_HEADER, signature(secret, timestamp, &body));
            }
            match request.body(body.clone()).send().await {
                Ok(r) if r.status().is_success() => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(event = "notify.sent", host = %host, attempt,
                        "webhook delivered");
                    record(
                        log,
                        host,
                        attempt,
                        "sent",
                        &format!("HTTP {}", r.status().as_u16()),
                    )
                    .await;
                    return;
                }
                Ok(r) => {
                    tracing::warn!(event = "notify.failed", host = %host, attempt,
                        status = r.status().as_u16(), "webhook answered an error status");
                    record(
                        log,
                        host,
                        attempt,
                        "failed",
                        &format!("HTTP {}", r.status().as_u16()),
                    )
                    .await;
                }
                Err(e) => {
                    if let Some(reason) = destination::refusal_in(&e) {
                        self.refused(host, reason);
                        record(log, host, attempt, "refused", &reason.to_string()).await;
                        return;
                    }
                    // Without the URL: reqwest's message would carry it.
                    let e = e.without_url();
                    tracing::warn!(event = "notify.failed", host = %host, attempt,
                        error = %e, "webhook not delivered");
                    record(log, host, attempt, "failed", &e.to_string()).await;
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(event = "notify.gave_up", host = %host, attempts = ATTEMPTS,
            "webhook abandoned after retries");
        record(log, host, ATTEMPTS, "gave_up", "abandoned after retries").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host the resolver refuses is counted as refused and not retried:
    /// the refusal is found among the client error's causes. Nothing goes
    /// on the wire: `localhost` is refused before any lookup.
    #[tokio::test]
    async fn resolver_refusals_are_recognised() {
        let notifier = Notifier::new(WebhookPolicy::default());
        notifier
            .deliver(
                "http://localhost:9/hook",
                "localhost:9",
                None,
                b"{}".to_vec(),
                None,
            )
            .await;
        assert_eq!(
            notifier.counts(),
            WebhookCounts {
                refused: 1,
                ..WebhookCounts::default()
            }
        );
    }

    /// The signature is the documented HMAC (checked against a value
    /// computed with `openssl dgst -sha256 -hmac`).
    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        assert_eq!(
            signature("sqw_test", 1_700_000_000, br#"{"a":1}"#),
            "v1=e988be02689a958dba3fd1fced2be2d260eca5cb5619457f09235b3f861d83a5"
        );
    }
}
