//! Row counts read at each `GET /metrics` scrape ([`crate::metrics`]):
//! live actions and stored alerts, database-wide (every server process on
//! a shared PostgreSQL database reports the same figures).

use sqlx::Row;

use super::{Store, StoreError};
use crate::time::now_ms;

impl Store {
    /// Actions neither lifted nor expired, of every app.
    ///
    /// # Errors
    /// Database errors.
    pub async fn count_live_actions(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM actions \
             WHERE lifted_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Alerts stored (fired and not yet removed by retention).
    ///
    /// # Errors
    /// Database errors.
    pub async fn count_alerts(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM alerts")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
