//! Tracking events outside any request: a background job (a tokio task)
//! that renews subscriptions every so often and reports what it did.
//!
//! ```sh
//! SQREEN_TOKEN=… SQREEN_URL=http://127.0.0.1:8700 cargo run -p sqreen --example background_job
//! ```
//!
//! Events tracked outside a request carry no request context (no path, no
//! client IP); they are scrubbed and batched like any other.

use std::time::Duration;

/// One run of the job: renews `due` subscriptions, tracking one event per
/// renewal (about its user) and one for the run.
pub async fn renew_subscriptions(due: &[(&str, &str)]) -> usize {
    let mut renewed = 0;
    for (uid, plan) in due {
        // … charge the customer …
        let user = sqreen::for_user([("uid", *uid)]);
        user.track_event("subscription.renewed")
            .with_properties([("plan", *plan)]);
        renewed += 1;
    }
    sqreen::track_event("job.finished").with_properties([
        ("job", "renew_subscriptions"),
        ("renewed", &renewed.to_string()),
    ]);
    renewed
}

#[tokio::main]
async fn main() {
    // Keep the guard for the life of the program: dropping it flushes.
    let _guard = sqreen::init_from_env();
    let job = tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        for _ in 0..3 {
            every.tick().await;
            renew_subscriptions(&[("u-1", "pro"), ("u-2", "team")]).await;
        }
    });
    let _ = job.await;
}
