//! Playbooks, their hit counts, alerts and actions.
//!
//! The rule "one alert per actor per playbook while its action is live" is
//! the primary key of `playbook_locks`: raising an alert inserts the lock
//! first, in the same transaction as the alert and its actions, and a
//! conflict means another request (or another server process) raised it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{NewEvent, Param, Store, StoreError, bind_all};
use crate::playbook::Playbook;
use crate::secret;
use crate::time::{format_ms, now_ms};

/// A stored playbook.
#[derive(Clone, Debug, Serialize)]
pub struct PlaybookRow {
    /// Its id.
    pub id: i64,
    /// The definition, as posted.
    #[serde(flatten)]
    pub playbook: Playbook,
    /// When it was created (ms).
    pub created_at: i64,
    /// When it was last changed (ms).
    pub updated_at: i64,
}

/// An alert about to be raised.
#[derive(Clone, Debug)]
pub struct NewAlert {
    /// The playbook that fired.
    pub playbook_id: i64,
    /// The application the events came from.
    pub app_id: i64,
    /// `ip` or `user`.
    pub actor_type: &'static str,
    /// The IP, or the user identifiers as JSON.
    pub actor: String,
    /// Matching occurrences counted in the period.
    pub count: i64,
    /// Free-form JSON details (the responses taken or skipped).
    pub details: Value,
}

/// An action about to be created with an alert.
#[derive(Clone, Debug)]
pub struct NewAction {
    /// Its id (sent to agents as `action_id`).
    pub id: String,
    /// `block_ip`, `redirect_ip`, `block_user` or `redirect_user`.
    pub action: &'static str,
    /// The protocol's `parameters`.
    pub parameters: Value,
    /// Expiry (ms), or none.
    pub expires_at: Option<i64>,
}

/// What [`Store::raise_alert`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutcome {
    /// The alert was stored (its id) with its actions.
    Raised(i64),
    /// An alert for this actor and playbook is still live: nothing stored.
    AlreadyLive,
    /// The application was deleted meanwhile: nothing stored.
    AppDeleted,
}

/// An alert as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AlertView {
    /// Its id.
    pub id: i64,
    /// The playbook that fired.
    pub playbook_id: i64,
    /// Application name.
    pub app: String,
    /// `ip` or `user`.
    pub actor_type: String,
    /// The IP, or the user identifiers as JSON.
    pub actor: String,
    /// Matching occurrences counted in the period.
    pub count: i64,
    /// RFC 3339 time.
    pub time: String,
    /// Time (ms).
    pub time_ms: i64,
    /// Responses taken or skipped, notifications.
    pub details: Value,
}

/// A recorded step of a webhook notification of an alert.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryView {
    /// The webhook's host (never its path or query).
    pub host: String,
    /// When (ms).
    pub time: i64,
    /// The attempt (1, 2, 3; 0 before any).
    pub attempt: i64,
    /// `failed` (an attempt), `sent`, `gave_up`, `refused` or `dropped`.
    pub outcome: String,
    /// The status answered, or the error.
    pub detail: String,
}

/// A security action as the API shows it (agents get its wire form,
/// [`crate::protocol::wire_action`]).
#[derive(Clone, Debug, Serialize)]
pub struct ActionView {
    /// Its id.
    pub action_id: String,
    /// `block_ip`, `redirect_ip`, `block_user` or `redirect_user`.
    pub action: String,
    /// The protocol's `parameters`.
    pub parameters: Value,
    /// RFC 3339 expiry, or null for none.
    pub expires_at: Option<String>,
    /// Expiry (ms), or null.
    pub expires_at_ms: Option<i64>,
    /// The playbook that created it.
    pub playbook_id: Option<i64>,
    /// The alert it answers.
    pub alert_id: Option<i64>,
    /// Application name.
    pub app: String,
    /// The IP or user JSON it targets.
    pub actor: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

fn playbook_row(row: &sqlx::any::AnyRow) -> Result<PlaybookRow, StoreError> {
    let definition: String = row.try_get("definition")?;
    Ok(PlaybookRow {
        id: row.try_get("id")?,
        playbook: serde_json::from_str(&definition)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn alert_view(r: &sqlx::any::AnyRow) -> Result<AlertView, StoreError> {
    let time: i64 = r.try_get("time")?;
    let details: String = r.try_get("details")?;
    Ok(AlertView {
        id: r.try_get("id")?,
        playbook_id: r.try_get("playbook_id")?,
        app: r.try_get("app")?,
        actor_type: r.try_get("actor_type")?,
        actor: r.try_get("actor")?,
        count: r.try_get("count")?,
        time: format_ms(time),
        time_ms: time,
        details: serde_json::from_str(&details)?,
    })
}

fn action_view(row: &sqlx::any::AnyRow) -> Result<ActionView, StoreError> {
    let parameters: String = row.try_get("parameters")?;
    let expires_at_ms: Option<i64> = row.try_get("expires_at")?;
    let created_at: i64 = row.try_get("created_at")?;
    Ok(ActionView {
        action_id: row.try_get("id")?,
        action: row.try_get("action")?,
        parameters: serde_json::from_str(&parameters)?,
        expires_at: expires_at_ms.map(format_ms),
        expires_at_ms,
        playbook_id: row.try_get("playbook_id")?,
        alert_id: row.try_get("alert_id")?,
        app: row.try_get("app")?,
        actor: row.try_get("actor")?,
        created_at: format_ms(created_at),
    })
}

/// The settings key of [`Store::playbooks_version`].
const PLAYBOOKS_VERSION: &str = "playbooks_version";

/// Gives the playbooks a new version (a random id), in `tx`.
async fn bump_playbooks_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(PLAYBOOKS_VERSION)
    .bind(secret::random_id()?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A fresh secret for each distinct webhook URL of `playbook`.
fn new_secrets(playbook: &Playbook) -> Result<BTreeMap<String, String>, StoreError> {
    playbook
        .notifications
        .iter()
        .map(|n| {
            Ok((
                n.url.clone(),
                secret::generate(crate::notify::SECRET_PREFIX)?,
            ))
        })
        .collect()
}

async fn insert_secret(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    playbook_id: i64,
    url: &str,
    secret: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_secrets (playbook_id, url, secret, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(playbook_id)
    .bind(url)
    .bind(secret)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const ACTION_COLUMNS: &str = "x.id, x.action, x.parameters, x.expires_at, x.playbook_id, \
     x.alert_id, a.name AS app, x.actor, x.created_at";

impl Store {
    /// Stores a new playbook; returns its id and the signing secret
    /// generated for each of its webhook URLs (shown once: see
    /// [`crate::notify`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_playbook(
        &self,
        playbook: &Playbook,
    ) -> Result<(i64, BTreeMap<String, String>), StoreError> {
        let secrets = new_secrets(playbook)?;
        let now = now_ms();
        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "INSERT INTO playbooks (name, enabled, definition, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(playbook.name.as_str())
        .bind(i64::from(playbook.enabled))
        .bind(serde_json::to_string(playbook)?)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        for (url, secret) in &secrets {
            insert_secret(&mut tx, id, url, secret, now).await?;
        }
        bump_playbooks_version(&mut tx).await?;
        tx.commit().await?;
        Ok((id, secrets))
    }

    /// A value that changes whenever a playbook is created, changed or
    /// deleted, by any process on this database: compiled playbooks are
    /// kept while it stays the same.
    ///
    /// # Errors
    /// Database errors.
    pub async fn playbooks_version(&self) -> Result<String, StoreError> {
        Ok(self.setting(PLAYBOOKS_VERSION).await?.unwrap_or_default())
    }

    /// Replaces playbook `id`, and forgets its counts and live locks (the
    /// new definition counts afresh). A webhook URL the playbook already
    /// had keeps its secret; a new one gets a secret, returned (URL →
    /// secret, shown once); a removed one's secret is forgotten. `None`
    /// when there is no such playbook.
    ///
    /// # Errors
    /// Database errors.
    pub async fn update_playbook(
        &self,
        id: i64,
        playbook: &Playbook,
    ) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        let mut candidates = new_secrets(playbook)?;
        let now = now_ms();
        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE playbooks SET name = $1, enabled = $2, definition = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(playbook.name.as_str())
        .bind(i64::from(playbook.enabled))
        .bind(serde_json::to_string(playbook)?)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        for sql in [
            "DELETE FROM playbook_hits WHERE playbook_id = $1",
            "DELETE FROM playbook_locks WHERE playbook_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let kept: Vec<String> =
            sqlx::query("SELECT url FROM webhook_secrets WHERE playbook_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("url"))
                .collect::<Result<_, _>>()?;
        for url in kept {
            if candidates.remove(&url).is_none() {
                sqlx::query("DELETE FROM webhook_secrets WHERE playbook_id = $1 AND url = $2")
                    .bind(id)
                    .bind(url.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (url, secret) in &candidates {
            insert_secret(&mut tx, id, url, secret, now).await?;
        }
        bump_playbooks_version(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(candidates))
    }

    /// Deletes playbook `id` with its counts, locks and webhook secrets;
    /// the actions it created stay until they expire or are lifted. False
    /// when absent.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_playbook(&self, id: i64) -> Result<bool, StoreError> {
        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("DELETE FROM playbooks WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for sql in [
            "DELETE FROM playbook_hits WHERE playbook_id = $1",
            "DELETE FROM playbook_locks WHERE playbook_id = $1",
            "DELETE FROM webhook_secrets WHERE playbook_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        bump_playbooks_version(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The signing secrets of playbook `id`'s webhooks, by URL.
    ///
    /// # Errors
    /// Database errors.
    pub async fn webhook_secrets(&self, id: i64) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT url, secret FROM webhook_secrets WHERE playbook_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("url")?, r.try_get("secret")?)))
            .collect()
    }

    /// Playbook `id`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn get_playbook(&self, id: i64) -> Result<Option<PlaybookRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, definition, created_at, updated_at FROM playbooks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(playbook_row).transpose()
    }

    /// Every playbook, by id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_playbooks(&self) -> Result<Vec<PlaybookRow>, StoreError> {
        let rows =
            sqlx::query("SELECT id, definition, created_at, updated_at FROM playbooks ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(playbook_row).collect()
    }

    /// The enabled playbooks, by id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enabled_playbooks(&self) -> Result<Vec<PlaybookRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, definition, created_at, updated_at FROM playbooks WHERE enabled = 1 \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(playbook_row).collect()
    }

    /// Occurrences counted for each of `actors` by playbook `playbook_id`
    /// in `app_id` since `since` (ms).
    ///
    /// # Errors
    /// Database errors.
    pub async fn count_hits(
        &self,
        playbook_id: i64,
        app_id: i64,
        actors: &[String],
        since: i64,
    ) -> Result<HashMap<String, i64>, StoreError> {
        let mut counts = HashMap::new();
        for chunk in actors.chunks(200) {
            let mut params = vec![
                Param::Int(playbook_id),
                Param::Int(app_id),
                Param::Int(since),
            ];
            params.extend(chunk.iter().map(|a| Param::Text(a.clone())));
            let list: String = (0..chunk.len())
                .map(|i| format!("${}", i + 4))
                .collect::<Vec<_>>()
                .join(",");
            let sql = format!(
                "SELECT actor, CAST(SUM(count) AS BIGINT) AS n FROM playbook_hits \
                 WHERE playbook_id = $1 AND app_id = $2 AND time >= $3 AND actor IN ({list}) \
                 GROUP BY actor"
            );
            let rows = bind_all(&sql, &params).fetch_all(&self.pool).await?;
            for row in rows {
                counts.insert(row.try_get("actor")?, row.try_get("n")?);
            }
        }
        Ok(counts)
    }

    /// Raises an alert with its actions unless one is live for the same
    /// playbook, app and actor; the new lock lasts until `lock_until` (ms).
    /// Agents of the app are told to reload their actions when any are
    /// created.
    ///
    /// # Errors
    /// Database errors.
    pub async fn raise_alert(
        &self,
        alert: &NewAlert,
        actions: &[NewAction],
        lock_until: i64,
    ) -> Result<LockOutcome, StoreError> {
        let now = now_ms();
        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        if !self.app_still_exists(&mut tx, alert.app_id).await? {
            tx.rollback().await?;
            return Ok(LockOutcome::AppDeleted);
        }
        sqlx::query(
            "DELETE FROM playbook_locks WHERE playbook_id = $1 AND app_id = $2 AND actor = $3 \
             AND expires_at <= $4",
        )
        .bind(alert.playbook_id)
        .bind(alert.app_id)
        .bind(alert.actor.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let locked = sqlx::query(
            "INSERT INTO playbook_locks (playbook_id, app_id, actor, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (playbook_id, app_id, actor) DO NOTHING \
             RETURNING playbook_id",
        )
        .bind(alert.playbook_id)
        .bind(alert.app_id)
        .bind(alert.actor.as_str())
        .bind(lock_until)
        .fetch_optional(&mut *tx)
        .await?;
        if locked.is_none() {
            tx.rollback().await?;
            return Ok(LockOutcome::AlreadyLive);
        }
        let row = sqlx::query(
            "INSERT INTO alerts (playbook_id, app_id, actor_type, actor, count, time, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(alert.playbook_id)
        .bind(alert.app_id)
        .bind(alert.actor_type)
        .bind(alert.actor.as_str())
        .bind(alert.count)
        .bind(now)
        .bind(alert.details.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let alert_id: i64 = row.try_get("id")?;
        for action in actions {
            sqlx::query(
                "INSERT INTO actions (id, app_id, playbook_id, alert_id, actor, action, \
                 parameters, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(action.id.as_str())
            .bind(alert.app_id)
            .bind(alert.playbook_id)
            .bind(alert_id)
            .bind(alert.actor.as_str())
            .bind(action.action)
            .bind(action.parameters.to_string())
            .bind(now)
            .bind(action.expires_at)
            .execute(&mut *tx)
            .await?;
        }
        if !actions.is_empty() {
            sqlx::query("UPDATE apps SET actions_version = actions_version + 1 WHERE id = $1")
                .bind(alert.app_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(LockOutcome::Raised(alert_id))
    }

    /// The stored events named `event` (of application `app`, or of all)
    /// from `since` to `until` (ms, exclusive), oldest first, at most
    /// `limit`, with their application's name: what a playbook's dry run
    /// replays ([`crate::playbook::dry_run_stored`]). Read through the
    /// `(event, time, id)` index.
    ///
    /// # Errors
    /// Database errors.
    pub async fn trigger_events(
        &self,
        event: &str,
        app: Option<&str>,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(String, NewEvent)>, StoreError> {
        let mut params = vec![
            Param::Text(event.to_owned()),
            Param::Int(since),
            Param::Int(until),
            Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        ];
        let mut sql = "SELECT a.name AS app, e.rid, e.time, e.client_ip, e.user_key, \
                       e.properties, e.count FROM events e JOIN apps a ON a.id = e.app_id \
                       WHERE e.event = $1 AND e.time >= $2 AND e.time < $3"
            .to_owned();
        if let Some(app) = app {
            params.push(Param::Text(app.to_owned()));
            sql.push_str(" AND a.name = $5");
        }
        sql.push_str(" ORDER BY e.time, e.id LIMIT $4");
        let rows = bind_all(&sql, &params).fetch_all(&self.pool).await?;
        let null: std::sync::Arc<str> = std::sync::Arc::from("null");
        rows.iter()
            .map(|r| {
                let user_key: String = r.try_get("user_key")?;
                let properties: String = r.try_get("properties")?;
                Ok((
                    r.try_get("app")?,
                    NewEvent {
                        rid: r.try_get("rid")?,
                        event: event.to_owned(),
                        time: r.try_get("time")?,
                        client_ip: r.try_get("client_ip")?,
                        user_identifiers: if user_key.is_empty() {
                            BTreeMap::new()
                        } else {
                            serde_json::from_str(&user_key)?
                        },
                        properties: serde_json::from_str(&properties)?,
                        count: r.try_get("count")?,
                        request: std::sync::Arc::clone(&null),
                        response: std::sync::Arc::clone(&null),
                        context_of: None,
                    },
                ))
            })
            .collect()
    }

    /// Alerts, newest first, at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_alerts(&self, limit: usize) -> Result<Vec<AlertView>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.id, l.playbook_id, a.name AS app, l.actor_type, l.actor, l.count, l.time, \
             l.details FROM alerts l JOIN apps a ON a.id = l.app_id \
             ORDER BY l.time DESC, l.id DESC LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_view).collect()
    }

    /// Alert `id` (of an application that still exists).
    ///
    /// # Errors
    /// Database errors.
    pub async fn get_alert(&self, id: i64) -> Result<Option<AlertView>, StoreError> {
        let row = sqlx::query(
            "SELECT l.id, l.playbook_id, a.name AS app, l.actor_type, l.actor, l.count, l.time, \
             l.details FROM alerts l JOIN apps a ON a.id = l.app_id WHERE l.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(alert_view).transpose()
    }

    /// The actions alert `alert_id` created, lifted or not, each with when
    /// it was lifted (ms), if it was.
    ///
    /// # Errors
    /// Database errors.
    pub async fn alert_actions(
        &self,
        alert_id: i64,
    ) -> Result<Vec<(ActionView, Option<i64>)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS}, x.lifted_at FROM actions x JOIN apps a ON a.id = x.app_id \
             WHERE x.alert_id = $1 ORDER BY x.created_at, x.id"
        ))
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((action_view(r)?, r.try_get("lifted_at")?)))
            .collect()
    }

    /// Records a step of a webhook notification of alert `alert_id`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn record_delivery(
        &self,
        alert_id: i64,
        host: &str,
        attempt: i64,
        outcome: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let _w = self.write_guard().await;
        sqlx::query(
            "INSERT INTO webhook_deliveries (alert_id, host, time, attempt, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(alert_id)
        .bind(host)
        .bind(now_ms())
        .bind(attempt)
        .bind(outcome)
        .bind(detail)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The recorded steps of alert `alert_id`'s webhook notifications, in
    /// order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn alert_deliveries(&self, alert_id: i64) -> Result<Vec<DeliveryView>, StoreError> {
        let rows = sqlx::query(
            "SELECT host, time, attempt, outcome, detail FROM webhook_deliveries \
             WHERE alert_id = $1 ORDER BY time, attempt LIMIT 100",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryView {
                    host: r.try_get("host")?,
                    time: r.try_get("time")?,
                    attempt: r.try_get("attempt")?,
                    outcome: r.try_get("outcome")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Live actions (not lifted, not expired), of one app or of all,
    /// newest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_actions(&self, app_id: Option<i64>) -> Result<Vec<ActionView>, StoreError> {
        let mut params = vec![Param::Int(now_ms())];
        let mut sql = format!(
            "SELECT {ACTION_COLUMNS} FROM actions x JOIN apps a ON a.id = x.app_id \
             WHERE x.lifted_at IS NULL AND (x.expires_at IS NULL OR x.expires_at > $1)"
        );
        if let Some(app_id) = app_id {
            params.push(Param::Int(app_id));
            sql.push_str(" AND x.app_id = $2");
        }
        sql.push_str(" ORDER BY x.created_at DESC, x.id");
        let rows = bind_all(&sql, &params).fetch_all(&self.pool).await?;
        rows.iter().map(action_view).collect()
    }

    /// Lifts live action `id`: agents of its app reload their actions, and
    /// its playbook counts the actor afresh. False when no live action has
    /// this id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn lift_action(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let _w = self.write_guard().await;
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "UPDATE actions SET lifted_at = $1 WHERE id = $2 AND lifted_at IS NULL \
             RETURNING app_id, playbook_id, actor",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let app_id: i64 = row.try_get("app_id")?;
        let playbook_id: Option<i64> = row.try_get("playbook_id")?;
        let actor: String = row.try_get("actor")?;
        if let Some(playbook_id) = playbook_id {
            for sql in [
                "DELETE FROM playbook_locks WHERE playbook_id = $1 AND app_id = $2 AND actor = $3",
                "DELETE FROM playbook_hits WHERE playbook_id = $1 AND app_id = $2 AND actor = $3",
            ] {
                sqlx::query(sql)
                    .bind(playbook_id)
                    .bind(app_id)
                    .bind(actor.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("UPDATE apps SET actions_version = actions_version + 1 WHERE id = $1")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
