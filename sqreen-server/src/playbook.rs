//! Playbooks: threshold rules per actor (IP or user) and the responses
//! they take.
//!
//! A playbook's trigger names an event (a custom `track` name, or one of the
//! user-monitoring stores `sdk-login-fail`, `sdk-login-success`,
//! `sdk-signup`), property conditions, and a threshold of occurrences within
//! `period_s` per actor. Evaluation runs as events and metrics arrive:
//!
//! ```text
//! batch / heartbeat ─▶ match triggers ─▶ insert events + hits (one transaction)
//!                                   └──▶ count hits per actor in the period
//!                                        └─▶ threshold crossed ─▶ raise_alert (lock, alert, actions,
//!                                                                  actions_version += 1)
//!                                                                 └─▶ signed webhook (spawned, retried;
//!                                                                     public destinations only)
//! ```
//!
//! Conditions test the event's properties: `eq`/`neq` compare the value's
//! text (strings as they are, other JSON as text), `contains` looks for a
//! substring, `regex` for a match (unanchored). A missing property matches
//! only `neq`. Private, loopback, link-local and unspecified addresses are
//! never blocked unless `allow_critical_ips` is set: the alert is stored
//! with `"blocked": false` instead.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqreen_protocol::actions;

use crate::destination::WebhookPolicy;
use crate::notify::Notifier;
use crate::secret;
use crate::store::{
    HitCandidate, LockOutcome, NewAction, NewAlert, NewEvent, PlaybookRow, Store, StoreError,
};
use crate::time::now_ms;

/// The longest period a playbook may count over: 30 days.
pub const MAX_PERIOD_S: i64 = 30 * 24 * 3600;
/// Longest regex source accepted in a condition.
const MAX_REGEX_LEN: usize = 1000;
/// Longest webhook URL accepted.
const MAX_URL_LEN: usize = 2048;

/// A playbook definition, as posted to `/api/playbooks`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// A name for people.
    pub name: String,
    /// Disabled playbooks are kept but not evaluated.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Only events of this application (by name); all applications when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// What is counted.
    pub trigger: Trigger,
    /// Actions taken against the actor.
    #[serde(default)]
    pub responses: Vec<ResponseSpec>,
    /// Who is told.
    #[serde(default)]
    pub notifications: Vec<Notification>,
    /// Allows blocking private and loopback addresses.
    #[serde(default)]
    pub allow_critical_ips: bool,
}

fn enabled_default() -> bool {
    true
}

/// The trigger of a playbook.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The event name counted.
    pub event: String,
    /// All must hold for an event to count.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Occurrences within `period_s` that fire the playbook.
    pub threshold: i64,
    /// The counting window, in seconds.
    pub period_s: i64,
    /// Who is counted.
    pub actor: Actor,
}

/// Who a playbook counts and acts against.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    /// The client IP.
    Ip,
    /// The user identifiers.
    User,
}

impl Actor {
    fn as_str(self) -> &'static str {
        match self {
            Actor::Ip => "ip",
            Actor::User => "user",
        }
    }
}

/// A property condition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Property name.
    pub property: String,
    /// Comparison.
    pub op: Op,
    /// Compared text (a regex for `regex`).
    pub value: String,
}

/// A condition's comparison.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal (or missing).
    Neq,
    /// Contains the text.
    Contains,
    /// Matches the regex.
    Regex,
}

/// A response to a fired playbook.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    /// Block or redirect.
    #[serde(rename = "type")]
    pub kind: ResponseKind,
    /// How long, in seconds; 0 = until lifted.
    #[serde(default)]
    pub duration_s: i64,
    /// Where `redirect` sends the actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The kind of a response.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResponseKind {
    /// The agent answers the blocking status.
    Block,
    /// The agent redirects to `url`.
    Redirect,
}

/// A notification of a fired playbook.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// Only `webhook`.
    #[serde(rename = "type")]
    pub kind: NotificationKind,
    /// Where the JSON alert is POSTed, signed (see [`crate::notify`]).
    /// Only public addresses unless the server allows private ones
    /// ([`crate::destination`]).
    pub url: String,
}

/// The kind of a notification.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// An HTTP POST of the alert as JSON.
    Webhook,
}

fn http_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

impl Playbook {
    /// Checks the definition; the error says what is wrong.
    ///
    /// # Errors
    /// A human-readable reason.
    pub fn validate(&self) -> Result<(), String> {
        let text = |name: &str, value: &str, max: usize| {
            if value.contains('\0') {
                Err(format!("{name} must not contain NUL"))
            } else if value.trim().is_empty() || value.len() > max {
                Err(format!("{name} must be 1 to {max} characters"))
            } else {
                Ok(())
            }
        };
        text("name", &self.name, 200)?;
        text("trigger.event", &self.trigger.event, 256)?;
        if let Some(app) = &self.app {
            text("app", app, 200)?;
        }
        if !(1..=1_000_000_000).contains(&self.trigger.threshold) {
            return Err("trigger.threshold must be between 1 and 1000000000".into());
        }
        if !(1..=MAX_PERIOD_S).contains(&self.trigger.period_s) {
            return Err(format!(
                "trigger.period_s must be between 1 and {MAX_PERIOD_S}"
            ));
        }
        if self.trigger.conditions.len() > 20 {
            return Err("at most 20 conditions".into());
        }
        for c in &self.trigger.conditions {
            text("condition property", &c.property, 256)?;
            if c.value.len() > MAX_REGEX_LEN || c.value.contains('\0') {
                return Err(format!(
                    "condition value longer than {MAX_REGEX_LEN} or holding NUL"
                ));
            }
            if c.op == Op::Regex {
                compile(&c.value).map_err(|e| format!("invalid regex {:?}: {e}", c.value))?;
            }
        }
        if self.responses.len() > 10 || self.notifications.len() > 10 {
            return Err("at most 10 responses and 10 notifications".into());
        }
        for r in &self.responses {
            if !(0..=MAX_PERIOD_S * 12).contains(&r.duration_s) {
                return Err("response duration_s must be between 0 and 31104000".into());
            }
            match (r.kind, &r.url) {
                (ResponseKind::Redirect, Some(url)) if http_url(url) => {}
                (ResponseKind::Redirect, _) => {
                    return Err("a redirect response needs an http(s) url".into());
                }
                (ResponseKind::Block, Some(_)) => {
                    return Err("a block response takes no url".into());
                }
                (ResponseKind::Block, None) => {}
            }
        }
        let mut urls = BTreeSet::new();
        for n in &self.notifications {
            if n.url.len() > MAX_URL_LEN || n.url.contains('\0') || !http_url(&n.url) {
                return Err(format!(
                    "a webhook needs an http(s) url of at most {MAX_URL_LEN} bytes"
                ));
            }
            if !urls.insert(n.url.as_str()) {
                return Err("each webhook url at most once per playbook".into());
            }
        }
        Ok(())
    }

    /// Checks that every webhook may be sent where it points under
    /// `policy` ([`crate::destination::check_at_save`]): literal addresses
    /// and local names at once, other host names by resolving them.
    ///
    /// # Errors
    /// A human-readable reason, naming the host (never the whole URL).
    pub async fn check_destinations(&self, policy: WebhookPolicy) -> Result<(), String> {
        for n in &self.notifications {
            crate::destination::check_at_save(&n.url, policy)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
}

/// A playbook ready to match events.
#[derive(Debug)]
pub struct Compiled {
    /// The stored playbook.
    pub row: PlaybookRow,
    regexes: Vec<Option<Regex>>,
}

impl Compiled {
    /// Compiles `row`'s regexes; `None` when one no longer compiles.
    pub fn new(row: PlaybookRow) -> Option<Self> {
        let regexes = row
            .playbook
            .trigger
            .conditions
            .iter()
            .map(|c| match c.op {
                Op::Regex => compile(&c.value).ok().map(Some),
                _ => Some(None),
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { row, regexes })
    }

    /// Whether `event` of app `app_name` counts for this playbook.
    pub fn matches(&self, app_name: &str, event: &NewEvent) -> bool {
        let p = &self.row.playbook;
        if p.trigger.event != event.event || p.app.as_deref().is_some_and(|a| a != app_name) {
            return false;
        }
        p.trigger
            .conditions
            .iter()
            .zip(&self.regexes)
            .all(|(c, re)| condition_holds(c, re.as_ref(), &event.properties))
    }

    /// The actor `event` is counted for, if it has one.
    pub fn actor(&self, event: &NewEvent) -> Option<String> {
        match self.row.playbook.trigger.actor {
            Actor::Ip => event
                .client_ip
                .parse::<IpAddr>()
                .ok()
                .map(|ip| ip.to_string()),
            Actor::User => Some(event.user_key()).filter(|k| !k.is_empty()),
        }
    }
}

fn condition_holds(c: &Condition, re: Option<&Regex>, properties: &Map<String, Value>) -> bool {
    let Some(value) = properties.get(&c.property) else {
        return c.op == Op::Neq;
    };
    let text = crate::store::attr_text(value);
    match c.op {
        Op::Eq => text == c.value,
        Op::Neq => text != c.value,
        Op::Contains => text.contains(c.value.as_str()),
        Op::Regex => re.is_some_and(|re| re.is_match(&text)),
    }
}

/// Addresses a playbook never blocks unless `allow_critical_ips`: loopback,
/// private, link-local, unspecified, shared (CGNAT) and unique-local.
pub fn is_critical_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_critical_ip(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
        }
    }
}

/// The playbooks that `events` of `app_name` touch, and the hits to store
/// with the events.
pub fn match_events(
    playbooks: &[Compiled],
    app_name: &str,
    events: &[NewEvent],
) -> Vec<HitCandidate> {
    let now = now_ms();
    let mut hits = Vec::new();
    for (i, event) in events.iter().enumerate() {
        for p in playbooks {
            if !p.matches(app_name, event) {
                continue;
            }
            if let Some(actor) = p.actor(event) {
                hits.push(HitCandidate {
                    event_index: i,
                    playbook_id: p.row.id,
                    actor,
                    time: event.time.min(now),
                    count: event.count,
                });
            }
        }
    }
    hits
}

/// The enabled playbooks, compiled once per change: every batch and
/// heartbeat asks for them, and gets the compiled set back as long as the
/// store's [`Store::playbooks_version`] is unchanged (one small query).
#[derive(Debug, Default)]
pub struct PlaybookCache {
    current: tokio::sync::Mutex<Option<(String, Arc<Vec<Compiled>>)>>,
    loads: AtomicU64,
}

impl PlaybookCache {
    /// The enabled playbooks, compiled.
    ///
    /// # Errors
    /// Database errors.
    pub async fn get(&self, store: &Store) -> Result<Arc<Vec<Compiled>>, StoreError> {
        let version = store.playbooks_version().await?;
        let mut current = self.current.lock().await;
        if let Some((v, compiled)) = current.as_ref()
            && *v == version
        {
            return Ok(Arc::clone(compiled));
        }
        let compiled = Arc::new(load(store).await?);
        self.loads.fetch_add(1, Ordering::Relaxed);
        *current = Some((version, Arc::clone(&compiled)));
        Ok(compiled)
    }

    /// How many times the playbooks were loaded and compiled.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}

/// The enabled playbooks, compiled; those that no longer compile are
/// skipped with a warning.
///
/// # Errors
/// Database errors.
pub async fn load(store: &Store) -> Result<Vec<Compiled>, StoreError> {
    let rows = store.enabled_playbooks().await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let id = row.id;
            let compiled = Compiled::new(row);
            if compiled.is_none() {
                tracing::warn!(
                    event = "playbook.invalid",
                    playbook_id = id,
                    "stored playbook has a regex that does not compile; skipped"
                );
            }
            compiled
        })
        .collect())
}

/// After the events of `hits` were stored (`inserted[i]` true when event
/// `i` was new): counts each touched actor over its playbook's period and
/// fires the playbooks whose threshold is crossed.
///
/// # Errors
/// Database errors (the events are stored by then).
pub async fn evaluate(
    store: &Store,
    notifier: &Notifier,
    playbooks: &[Compiled],
    app: (i64, &str),
    hits: &[HitCandidate],
    inserted: &[bool],
) -> Result<(), StoreError> {
    let (app_id, app_name) = app;
    let now = now_ms();
    for p in playbooks {
        let actors: BTreeSet<&str> = hits
            .iter()
            .filter(|h| h.playbook_id == p.row.id && inserted.get(h.event_index) == Some(&true))
            .map(|h| h.actor.as_str())
            .collect();
        if actors.is_empty() {
            continue;
        }
        let actors: Vec<String> = actors.into_iter().map(str::to_owned).collect();
        let trigger = &p.row.playbook.trigger;
        let since = now - trigger.period_s * 1000;
        let counts = store.count_hits(p.row.id, app_id, &actors, since).await?;
        for (actor, count) in counts {
            if count >= trigger.threshold {
                fire(store, notifier, p, (app_id, app_name), &actor, count).await?;
            }
        }
    }
    Ok(())
}

/// Raises the alert of playbook `p` against `actor`, with its actions,
/// unless one is live; then notifies.
async fn fire(
    store: &Store,
    notifier: &Notifier,
    p: &Compiled,
    (app_id, app_name): (i64, &str),
    actor: &str,
    count: i64,
) -> Result<(), StoreError> {
    let playbook = &p.row.playbook;
    let now = now_ms();
    let actor_type = playbook.trigger.actor;
    let critical = spared(playbook, actor);
    let mut actions = Vec::new();
    if !critical {
        for r in &playbook.responses {
            let (action, mut parameters) = match actor_type {
                Actor::Ip => {
                    let prefix = if actor.contains(':') { 128 } else { 32 };
                    let name = match r.kind {
                        ResponseKind::Block => actions::BLOCK_IP,
                        ResponseKind::Redirect => actions::REDIRECT_IP,
                    };
                    (name, json!({"ip_cidr": [format!("{actor}/{prefix}")]}))
                }
                Actor::User => {
                    let ids: BTreeMap<String, String> =
                        serde_json::from_str(actor).unwrap_or_default();
                    let name = match r.kind {
                        ResponseKind::Block => actions::BLOCK_USER,
                        ResponseKind::Redirect => actions::REDIRECT_USER,
                    };
                    (name, json!({"users": [ids]}))
                }
            };
            if let (Some(url), Some(map)) = (&r.url, parameters.as_object_mut()) {
                map.insert("url".into(), Value::String(url.clone()));
            }
            actions.push(NewAction {
                id: secret::random_id()?,
                action,
                parameters,
                expires_at: (r.duration_s > 0).then(|| now + r.duration_s * 1000),
            });
        }
    }
    let lock_until = lock_until(playbook, critical, now);
    let details = json!({
        "playbook": playbook.name,
        "event": playbook.trigger.event,
        "threshold": playbook.trigger.threshold,
        "period_s": playbook.trigger.period_s,
        "blocked": !actions.is_empty(),
        "skipped": if critical { Some("critical ip: never blocked without allow_critical_ips") } else { None },
        "actions": actions.iter().map(|a| json!({"action_id": a.id, "action": a.action})).collect::<Vec<_>>(),
    });
    let alert = NewAlert {
        playbook_id: p.row.id,
        app_id,
        actor_type: actor_type.as_str(),
        actor: actor.to_owned(),
        count,
        details: details.clone(),
    };
    match store.raise_alert(&alert, &actions, lock_until).await? {
        LockOutcome::AlreadyLive | LockOutcome::AppDeleted => {}
        LockOutcome::Raised(alert_id) => {
            tracing::warn!(event = "playbook.alert", playbook_id = p.row.id,
                playbook = %playbook.name, app = %app_name, actor_type = actor_type.as_str(),
                actor = %actor, count, alert_id, actions = actions.len(),
                "playbook threshold crossed");
            let payload = json!({
                "type": "sqreen.alert",
                "alert_id": alert_id,
                "playbook_id": p.row.id,
                "app": app_name,
                "actor_type": actor_type.as_str(),
                "actor": actor,
                "count": count,
                "time": crate::time::format_ms(now),
                "details": details,
            });
            if !playbook.notifications.is_empty() {
                let secrets = store.webhook_secrets(p.row.id).await?;
                for n in &playbook.notifications {
                    notifier.webhook_logged(
                        &n.url,
                        secrets.get(&n.url).map(String::as_str),
                        &payload,
                        Some(crate::notify::DeliveryLog {
                            store: store.clone(),
                            alert_id,
                        }),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Until when (ms) an alert raised at `now` keeps the actor from raising
/// another: its actions' expiry (for ever when one has none), or one
/// period when it takes none (no responses, or a `critical` IP spared).
fn lock_until(playbook: &Playbook, critical: bool, now: i64) -> i64 {
    if critical || playbook.responses.is_empty() {
        now + playbook.trigger.period_s * 1000
    } else if playbook.responses.iter().any(|r| r.duration_s <= 0) {
        i64::MAX
    } else {
        playbook
            .responses
            .iter()
            .map(|r| now + r.duration_s * 1000)
            .max()
            .unwrap_or(now)
    }
}

/// Whether `actor` is an IP the playbook must spare (private, loopback, …
/// without `allow_critical_ips`): it then raises an alert but takes no
/// action.
fn spared(playbook: &Playbook, actor: &str) -> bool {
    playbook.trigger.actor == Actor::Ip
        && !playbook.allow_critical_ips
        && actor.parse::<IpAddr>().is_ok_and(is_critical_ip)
}

/// The most stored events a dry run reads.
pub const DRY_RUN_EVENTS: usize = 100_000;
/// The window a dry run replays by default: the last 24 hours.
pub const DRY_RUN_WINDOW_MS: i64 = 86_400_000;

/// One alert a dry run says a playbook would have raised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DryRunAlert {
    /// Application name.
    pub app: String,
    /// The IP, or the user identifiers as JSON.
    pub actor: String,
    /// When (ms): the event that crossed the threshold.
    pub time: i64,
    /// Occurrences counted in the period then.
    pub count: i64,
}

/// What a playbook would have done over stored events ([`dry_run`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DryRun {
    /// The alerts it would have raised, oldest first.
    pub alerts: Vec<DryRunAlert>,
    /// Stored events its trigger matches (with an actor), in the window.
    pub matched: usize,
    /// Whether the events read stopped at [`DRY_RUN_EVENTS`] (the count is
    /// then a lower bound).
    pub truncated: bool,
}

/// Replays `events` (by time, with their application's name) through
/// `playbook` as if each arrived at its own time, and says which alerts it
/// would have raised from `from` (ms) on. Events before `from` count
/// towards the threshold but raise nothing.
///
/// This is the engine's rule, applied to each event in turn: the actor's
/// occurrences in the period up to the event reach the threshold, and no
/// alert of the playbook for that actor in that application is live (see
/// `lock_until`). The engine counts a whole batch at once, so a batch that
/// carries an actor past the threshold twice within one lock raises one
/// alert both ways.
pub fn dry_run(playbook: &Compiled, events: &[(String, NewEvent)], from: i64) -> DryRun {
    let p = &playbook.row.playbook;
    let period_ms = p.trigger.period_s.saturating_mul(1000);
    // Per (app, actor): hits in the period, their sum, the lock.
    let mut state: std::collections::HashMap<(&str, String), Counting> =
        std::collections::HashMap::new();
    let mut run = DryRun::default();
    for (app, event) in events {
        if !playbook.matches(app, event) {
            continue;
        }
        let Some(actor) = playbook.actor(event) else {
            continue;
        };
        let t = event.time;
        let c = state.entry((app.as_str(), actor.clone())).or_default();
        c.hits.push_back((t, event.count));
        c.sum = c.sum.saturating_add(event.count);
        while let Some(&(old, n)) = c.hits.front() {
            if old >= t.saturating_sub(period_ms) {
                break;
            }
            c.sum = c.sum.saturating_sub(n);
            c.hits.pop_front();
        }
        if t < from {
            continue;
        }
        run.matched += 1;
        if c.sum >= p.trigger.threshold && c.lock_until <= t {
            c.lock_until = lock_until(p, spared(p, &actor), t);
            run.alerts.push(DryRunAlert {
                app: app.clone(),
                actor,
                time: t,
                count: c.sum,
            });
        }
    }
    run
}

/// An actor's occurrences in the period of a [`dry_run`].
#[derive(Debug, Default)]
struct Counting {
    hits: std::collections::VecDeque<(i64, i64)>,
    sum: i64,
    lock_until: i64,
}

/// [`dry_run`] of `playbook` over the stored events of the `window_ms`
/// before `now` (and, for the threshold, one period more), at most
/// [`DRY_RUN_EVENTS`] of them.
///
/// # Errors
/// Database errors.
pub async fn dry_run_stored(
    store: &Store,
    playbook: &Playbook,
    now: i64,
    window_ms: i64,
) -> Result<DryRun, StoreError> {
    let Some(compiled) = Compiled::new(PlaybookRow {
        id: 0,
        playbook: playbook.clone(),
        created_at: now,
        updated_at: now,
    }) else {
        // A regex that does not compile: validation refuses it first.
        return Ok(DryRun::default());
    };
    let from = now.saturating_sub(window_ms);
    let since = from.saturating_sub(playbook.trigger.period_s.saturating_mul(1000));
    let events = store
        .trigger_events(
            &playbook.trigger.event,
            playbook.app.as_deref(),
            since,
            now,
            DRY_RUN_EVENTS + 1,
        )
        .await?;
    let truncated = events.len() > DRY_RUN_EVENTS;
    let events = events.get(..DRY_RUN_EVENTS).unwrap_or(&events);
    let mut run = dry_run(&compiled, events, from);
    run.truncated = truncated;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playbook(json: Value) -> Result<Playbook, String> {
        let p: Playbook = serde_json::from_value(json).map_err(|e| e.to_string())?;
        p.validate()?;
        Ok(p)
    }

    fn base() -> Value {
        json!({"name": "brute force", "trigger": {"event": "sdk-login-fail",
            "threshold": 5, "period_s": 60, "actor": "ip"},
            "responses": [{"type": "block", "duration_s": 300}]})
    }

    /// A minimal playbook parses, defaults apply, and it validates.
    fn stored(ip: &str, time: i64) -> (String, NewEvent) {
        let null: Arc<str> = Arc::from("null");
        (
            "shop".to_owned(),
            NewEvent {
                rid: format!("{ip}-{time}"),
                event: "sdk-login-fail".into(),
                time,
                client_ip: ip.into(),
                user_identifiers: BTreeMap::new(),
                properties: Map::new(),
                count: 1,
                request: Arc::clone(&null),
                response: null,
                context_of: None,
            },
        )
    }

    /// A dry run fires once per crossing, not again while the alert's lock
    /// (its block, or one period without responses) lasts; events before
    /// the window count but raise nothing.
    #[test]
    fn dry_runs_follow_the_engine_rule() {
        let run = |responses: Value, from: i64| {
            let mut v = base();
            v["trigger"]["threshold"] = json!(3);
            v["responses"] = responses;
            let compiled = Compiled::new(PlaybookRow {
                id: 1,
                playbook: playbook(v).expect("valid"),
                created_at: 0,
                updated_at: 0,
            })
            .expect("compiles");
            // A: 3 in 20 s, then 3 more 2 minutes later; B: 2 only.
            let mut events: Vec<_> = [0, 10_000, 20_000, 140_000, 150_000, 160_000]
                .iter()
                .map(|&t| stored("81.2.69.1", t))
                .collect();
            events.extend([stored("81.2.69.2", 5_000), stored("81.2.69.2", 6_000)]);
            events.sort_by_key(|e| e.1.time);
            dry_run(&compiled, &events, from)
        };
        // Blocked for 300 s: the second burst finds the alert live.
        let blocked = run(json!([{"type": "block", "duration_s": 300}]), 0);
        assert_eq!(blocked.alerts.len(), 1);
        assert_eq!(blocked.alerts[0].actor, "81.2.69.1");
        assert_eq!(
            (blocked.alerts[0].time, blocked.alerts[0].count),
            (20_000, 3)
        );
        assert_eq!(blocked.matched, 8);
        // No response: locked for one period (60 s), so both bursts fire.
        assert_eq!(run(json!([]), 0).alerts.len(), 2);
        // From 100 s on: the first burst only counts.
        let late = run(json!([]), 100_000);
        assert_eq!(late.alerts.len(), 1);
        assert_eq!(late.alerts[0].time, 160_000);
    }

    #[test]
    fn minimal_playbook_is_valid() {
        let p = playbook(base()).expect("valid");
        assert!(p.enabled);
        assert!(!p.allow_critical_ips);
        assert!(p.notifications.is_empty());
    }

    /// Unknown fields, bad enums and impossible numbers are refused.
    #[test]
    fn bad_playbooks_are_refused() {
        let mut v = base();
        v["surprise"] = json!(1);
        assert!(playbook(v).is_err());
        let mut v = base();
        v["trigger"]["actor"] = json!("planet");
        assert!(playbook(v).is_err());
        let mut v = base();
        v["trigger"]["threshold"] = json!(0);
        assert!(playbook(v).is_err());
        let mut v = base();
        v["responses"] = json!([{"type": "redirect"}]);
        assert!(playbook(v).is_err());
        let mut v = base();
        v["trigger"]["conditions"] = json!([{"property": "k", "op": "regex", "value": "("}]);
        assert!(playbook(v).is_err());
        let mut v = base();
        v["notifications"] = json!([{"type": "webhook", "url": "file:///etc/passwd"}]);
        assert!(playbook(v).is_err());
    }

    /// Conditions compare property text; a missing property only matches `neq`.
    #[test]
    fn conditions_match_properties() {
        let props: Map<String, Value> =
            serde_json::from_value(json!({"plan": "gold", "n": 42})).expect("object");
        let cond = |op, value: &str, property: &str| Condition {
            property: property.into(),
            op,
            value: value.into(),
        };
        assert!(condition_holds(&cond(Op::Eq, "gold", "plan"), None, &props));
        assert!(condition_holds(&cond(Op::Eq, "42", "n"), None, &props));
        assert!(condition_holds(
            &cond(Op::Contains, "ol", "plan"),
            None,
            &props
        ));
        assert!(condition_holds(
            &cond(Op::Neq, "x", "missing"),
            None,
            &props
        ));
        assert!(!condition_holds(
            &cond(Op::Eq, "x", "missing"),
            None,
            &props
        ));
        let re = compile("^g.l").expect("regex");
        assert!(condition_holds(
            &cond(Op::Regex, "^g.l", "plan"),
            Some(&re),
            &props
        ));
    }

    /// Loopback and private ranges are critical; public addresses are not.
    #[test]
    fn critical_ips() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "100.64.0.1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_critical_ip(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["81.2.69.160", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_critical_ip(ip.parse().expect("ip")), "{ip}");
        }
    }
}
