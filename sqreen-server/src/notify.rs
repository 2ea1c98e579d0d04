//! Webhook notifications of alerts: JSON POSTs sent from spawned tasks, so
//! ingestion never waits for them, with bounded retries and every failure
//! logged.
//!
//! | setting | value |
//! | --- | --- |
//! | attempts | 3 (after 0.5 s, then 1 s) |
//! | timeout per attempt | 5 s |
//! | deliveries in flight | 64 at most; more are dropped with a warning |

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);
const IN_FLIGHT: usize = 64;

/// Sends webhooks in the background; cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier {
    /// A notifier with its own HTTP client.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| {
                tracing::warn!(event = "notify.client_fallback", error = %e,
                    "webhook client with defaults");
                reqwest::Client::new()
            });
        Self {
            client,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// POSTs `payload` to `url` in the background. Must run inside a tokio
    /// runtime.
    pub fn webhook(&self, url: &str, payload: Value) {
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::warn!(event = "notify.dropped", url = %url,
                "too many webhooks in flight; this one is dropped");
            return;
        };
        let client = self.client.clone();
        let url = url.to_owned();
        tokio::spawn(async move {
            let _permit = permit;
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=ATTEMPTS {
                match client.post(&url).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => {
                        tracing::info!(event = "notify.sent", url = %url, attempt,
                            "webhook delivered");
                        return;
                    }
                    Ok(r) => tracing::warn!(event = "notify.failed", url = %url, attempt,
                        status = r.status().as_u16(), "webhook answered an error status"),
                    Err(e) => tracing::warn!(event = "notify.failed", url = %url, attempt,
                        error = %e, "webhook not delivered"),
                }
                if attempt < ATTEMPTS {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
            tracing::error!(event = "notify.gave_up", url = %url, attempts = ATTEMPTS,
                "webhook abandoned after retries");
        });
    }
}
