//! The heartbeat and what it carries back: the beat request (metrics and
//! command results), the commands it returns (passlists, actions reload,
//! instrumentation on and off), and loading an actions pack.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use ipnet::IpNet;
use serde_json::Value;
use sqreen_protocol::limits;

use crate::actions::{ActionStore, parse_cidr};
use crate::model::RuntimeState;
use crate::protocol::{Command, CommandResult};
use crate::stats::{LoginState, bump};

use super::{Op, Worker};

impl Worker {
    /// The next heartbeat: every command result, and the metrics that fit
    /// what is left of the protocol's heartbeat size (the rest follow in
    /// the next heartbeats, sent at once).
    pub(super) fn beat_op(&mut self, now: SystemTime) -> Op {
        self.next_beat = Instant::now() + self.heartbeat_delay;
        let results = std::mem::take(&mut self.command_results);
        let results_size = serde_json::to_vec(&results).map_or(0, |r| r.len());
        // Room for the envelope and the estimate's slack.
        let budget = limits::MAX_BEAT_BYTES.saturating_sub(results_size + 16 * 1024);
        let metrics = self.metrics.take(now, budget, limits::MAX_METRIC_STORES);
        self.metrics_left = !self.metrics.is_empty();
        Op::Beat { results, metrics }
    }

    /// Publishes the metric stores' losses in the agent's stats.
    pub(super) fn publish_metric_losses(&self) {
        let counters = &self.shared.home.counters;
        counters
            .metric_keys_folded
            .store(self.metrics.folded, Ordering::Relaxed);
        counters
            .metric_observations_dropped
            .store(self.metrics.dropped, Ordering::Relaxed);
    }

    /// Replaces the actions in force with `actions` (an actions pack or login answer); how many
    /// loaded.
    pub(super) fn load_actions(&mut self, actions: &[Value]) -> usize {
        let (store, errors) = ActionStore::from_json(
            actions,
            Instant::now(),
            self.shared.config.ipv6_action_prefix,
        );
        for e in &errors {
            self.bad_answer("actions", &e.to_string());
        }
        let loaded = actions
            .len()
            .min(limits::MAX_ACTIONS)
            .saturating_sub(errors.iter().filter(|e| !e.is_too_many()).count());
        let current = self.shared.home.runtime.load();
        self.shared.set_runtime(current.with_actions(store));
        tracing::info!(target: "sqreen::actions", event = "actions.loaded", loaded,
            skipped = errors.len(), "security actions loaded");
        loaded
    }

    /// Runs the backend's commands, keeping each result for the next heartbeat.
    pub(super) fn execute_commands(&mut self, commands: Vec<Value>) {
        for raw in commands {
            let command: Command = match serde_json::from_value(raw) {
                Ok(c) => c,
                Err(e) => {
                    self.bad_answer("command", &e.to_string());
                    continue;
                }
            };
            bump(&self.shared.home.counters.commands_executed, 1);
            tracing::info!(target: "sqreen::commands", event = "command.received",
                name = %command.name, uuid = %command.uuid, "executing backend command");
            let uuid = (!command.uuid.is_empty()).then(|| command.uuid.clone());
            let result = match command.name.as_str() {
                sqreen_protocol::commands::ACTIONS_RELOAD => {
                    // Reported once the action pack arrives.
                    self.reload_actions = Some(uuid);
                    continue;
                }
                "ips_whitelist" => self.set_ip_passlist(&command.params),
                "paths_whitelist" => self.set_path_passlist(&command.params),
                "instrumentation_enable" => {
                    self.shared.enabled.store(true, Ordering::Relaxed);
                    self.shared
                        .home
                        .counters
                        .set_login_state(LoginState::LoggedIn);
                    Ok("instrumentation enabled".to_owned())
                }
                "instrumentation_remove" => {
                    self.shared.enabled.store(false, Ordering::Relaxed);
                    self.shared
                        .home
                        .counters
                        .set_login_state(LoginState::Paused);
                    let current = self.shared.home.runtime.load();
                    self.shared
                        .set_runtime(current.with_actions(ActionStore::default()));
                    Ok("instrumentation removed".to_owned())
                }
                _ => Err("command is not supported".to_owned()),
            };
            if let Some(uuid) = uuid {
                let (status, output) = match result {
                    Ok(o) => (true, o),
                    Err(o) => (false, o),
                };
                self.command_results
                    .insert(uuid, CommandResult { status, output });
            }
        }
    }

    /// A command's first parameter as a list of strings.
    fn string_list(params: &[Value]) -> Result<Vec<String>, String> {
        let list = params
            .first()
            .and_then(Value::as_array)
            .ok_or_else(|| "params[0] must be a list of strings".to_owned())?;
        list.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("not a string: {v}"))
            })
            .collect()
    }

    /// The `ips_whitelist` command: replaces the IP passlist.
    fn set_ip_passlist(&mut self, params: &[Value]) -> Result<String, String> {
        let list = Self::string_list(params)?;
        let nets = list
            .iter()
            .map(|c| parse_cidr(c).ok_or_else(|| format!("invalid CIDR `{c}`")))
            .collect::<Result<Vec<IpNet>, String>>()?;
        let n = nets.len();
        let current = self.shared.home.runtime.load();
        self.shared.set_runtime(RuntimeState {
            actions: Arc::clone(&current.actions),
            ip_passlist: nets.into(),
            path_passlist: Arc::clone(&current.path_passlist),
        });
        Ok(format!("{n} IP ranges passlisted"))
    }

    /// The `paths_whitelist` command: replaces the path passlist.
    fn set_path_passlist(&mut self, params: &[Value]) -> Result<String, String> {
        let paths = Self::string_list(params)?;
        let n = paths.len();
        let current = self.shared.home.runtime.load();
        self.shared.set_runtime(RuntimeState {
            actions: Arc::clone(&current.actions),
            ip_passlist: Arc::clone(&current.ip_passlist),
            path_passlist: paths.into(),
        });
        Ok(format!("{n} paths passlisted"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::logged_in;
    use super::*;
    use crate::metrics::MetricKind;

    fn command(name: &str, uuid: &str, params: Value) -> Value {
        json!({"name": name, "uuid": uuid, "params": params})
    }

    /// A known command is answered with an ok result, an unknown one with
    /// an error result; both are counted.
    #[test]
    fn commands_are_answered() {
        let mut w = logged_in(10);
        w.execute_commands(vec![
            command("instrumentation_enable", "known", json!([])),
            command("self_destruct", "unknown", json!([])),
        ]);
        let known = &w.command_results["known"];
        assert!(known.status);
        assert_eq!(known.output, "instrumentation enabled");
        let unknown = &w.command_results["unknown"];
        assert!(!unknown.status);
        assert_eq!(unknown.output, "command is not supported");
        assert_eq!(
            w.shared
                .home
                .counters
                .commands_executed
                .load(Ordering::Relaxed),
            2
        );
    }

    /// A command without a uuid runs but has no result; a malformed one is
    /// a bad answer and does not run.
    #[test]
    fn commands_without_uuid_or_malformed() {
        let mut w = logged_in(10);
        w.execute_commands(vec![
            json!({"name": "instrumentation_enable"}),
            json!("not a command"),
        ]);
        assert!(w.command_results.is_empty());
        assert!(w.shared.enabled.load(Ordering::Relaxed));
        let stats = w.shared.home.counters.snapshot();
        assert_eq!((stats.commands_executed, stats.bad_backend_answers), (1, 1));
    }

    /// `instrumentation_remove` stops recording, pauses the agent and drops
    /// the actions; `instrumentation_enable` turns recording back on.
    #[test]
    fn instrumentation_remove_and_enable() {
        let mut w = logged_in(10);
        w.shared.enabled.store(true, Ordering::Relaxed);
        w.load_actions(&[json!({"action_id": "a", "action": "block_ip",
            "parameters": {"ip_cidr": ["10.0.0.1/32"]}})]);
        assert!(w.shared.looks_at_requests());
        w.execute_commands(vec![command("instrumentation_remove", "r", json!([]))]);
        assert!(w.command_results["r"].status);
        assert!(!w.shared.enabled.load(Ordering::Relaxed));
        let shared = Arc::clone(&w.shared);
        assert_eq!(shared.home.counters.login_state(), LoginState::Paused);
        assert!(!shared.home.runtime.load().actions.has_ip_actions());
        assert!(!shared.looks_at_requests());
        w.execute_commands(vec![command("instrumentation_enable", "e", json!([]))]);
        assert!(shared.enabled.load(Ordering::Relaxed));
        assert_eq!(shared.home.counters.login_state(), LoginState::LoggedIn);
    }

    /// `actions_reload` asks for the actions pack and answers only once it
    /// arrives.
    #[test]
    fn actions_reload_is_answered_later() {
        let mut w = logged_in(10);
        w.execute_commands(vec![command(
            sqreen_protocol::commands::ACTIONS_RELOAD,
            "u",
            json!([]),
        )]);
        assert_eq!(w.reload_actions, Some(Some("u".to_owned())));
        assert!(w.command_results.is_empty());
    }

    /// `ips_whitelist` replaces the IP passlist and keeps the path passlist;
    /// an invalid CIDR or parameter fails and changes nothing.
    #[test]
    fn ip_passlist_is_applied_or_refused_whole() {
        let mut w = logged_in(10);
        w.execute_commands(vec![
            command("paths_whitelist", "p", json!([["/health"]])),
            command(
                "ips_whitelist",
                "ok",
                json!([["10.0.0.0/8", "2001:db8::1"]]),
            ),
        ]);
        assert_eq!(w.command_results["ok"].output, "2 IP ranges passlisted");
        let runtime = w.shared.home.runtime.load();
        assert_eq!(runtime.ip_passlist.len(), 2);
        assert_eq!(runtime.path_passlist.len(), 1);
        assert!(w.shared.looks_at_requests());

        w.execute_commands(vec![
            command("ips_whitelist", "cidr", json!([["10.0.0.0/8", "nope"]])),
            command("ips_whitelist", "type", json!([[1]])),
            command("ips_whitelist", "none", json!([])),
        ]);
        assert_eq!(w.command_results["cidr"].output, "invalid CIDR `nope`");
        assert_eq!(w.command_results["type"].output, "not a string: 1");
        assert_eq!(
            w.command_results["none"].output,
            "params[0] must be a list of strings"
        );
        assert!(
            ["cidr", "type", "none"]
                .iter()
                .all(|u| !w.command_results[*u].status)
        );
        assert_eq!(w.shared.home.runtime.load().ip_passlist.len(), 2);
    }

    /// `paths_whitelist` replaces the path passlist and keeps the IP one;
    /// an empty list clears it.
    #[test]
    fn path_passlist_is_replaced() {
        let mut w = logged_in(10);
        w.execute_commands(vec![
            command("ips_whitelist", "i", json!([["10.0.0.0/8"]])),
            command("paths_whitelist", "p", json!([["/a", "/b"]])),
        ]);
        assert_eq!(w.command_results["p"].output, "2 paths passlisted");
        let runtime = w.shared.home.runtime.load();
        assert_eq!(&*runtime.path_passlist, ["/a".to_owned(), "/b".to_owned()]);
        assert_eq!(runtime.ip_passlist.len(), 1);
        w.execute_commands(vec![command("paths_whitelist", "e", json!([[]]))]);
        assert!(w.shared.home.runtime.load().path_passlist.is_empty());
        assert_eq!(w.command_results["e"].output, "0 paths passlisted");
    }

    /// Loading actions replaces those in force, counts only valid ones and
    /// reports the invalid ones as bad answers.
    #[test]
    fn actions_pack_is_loaded_with_its_errors() {
        let mut w = logged_in(10);
        let loaded = w.load_actions(&[
            json!({"action_id": "a", "action": "block_ip",
                "parameters": {"ip_cidr": ["192.0.2.0/24"]}}),
            json!({"action_id": "b", "action": "launch_missiles"}),
        ]);
        assert_eq!(loaded, 1);
        assert_eq!(
            w.shared
                .home
                .counters
                .bad_backend_answers
                .load(Ordering::Relaxed),
            1
        );
        let now = Instant::now();
        let runtime = w.shared.home.runtime.load();
        let ip = "192.0.2.7".parse().expect("IP");
        assert!(runtime.actions.match_ip(ip, now).is_some());
        assert_eq!(w.load_actions(&[]), 0);
        assert!(!w.shared.home.runtime.load().actions.has_ip_actions());
    }

    /// A heartbeat takes every command result and the waiting metrics, and
    /// schedules the next one.
    #[test]
    fn beat_op_takes_results_and_metrics() {
        let mut w = logged_in(10);
        w.execute_commands(vec![command("instrumentation_enable", "c", json!([]))]);
        w.metrics
            .add(MetricKind::LoginFail, [("email", "a@b")].into_iter(), None);
        let before = Instant::now();
        let Op::Beat { results, metrics } = w.beat_op(SystemTime::now()) else {
            panic!("a beat");
        };
        assert_eq!(results.keys().collect::<Vec<_>>(), ["c"]);
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].name, "sdk-login-fail");
        assert_eq!(metrics[0].observation.values().sum::<u64>(), 1);
        assert!(w.command_results.is_empty() && w.metrics.is_empty());
        assert!(!w.metrics_left);
        assert!(w.next_beat >= before + w.heartbeat_delay);
    }

    /// Metrics that do not fit one heartbeat wait for the next, sent at once.
    #[test]
    fn beat_op_leaves_what_does_not_fit() {
        let mut w = logged_in(10);
        let long = "x".repeat(200);
        for i in 0..8_000 {
            let id = format!("{long}{i}");
            w.metrics
                .add(MetricKind::Signup, [("u", id.as_str())].into_iter(), None);
        }
        let Op::Beat { metrics, .. } = w.beat_op(SystemTime::now()) else {
            panic!("a beat");
        };
        let sent: u64 = metrics.iter().flat_map(|m| m.observation.values()).sum();
        let size = serde_json::to_vec(&metrics).expect("JSON").len();
        assert!(size <= limits::MAX_BEAT_BYTES, "{size}");
        assert!(sent > 0 && sent < 8_000);
        assert!(w.metrics_left);
    }

    /// The metric stores' losses are published in the stats.
    #[test]
    fn metric_losses_are_published() {
        let mut w = logged_in(10);
        w.metrics.folded = 3;
        w.metrics.dropped = 5;
        w.publish_metric_losses();
        let stats = w.shared.home.counters.snapshot();
        assert_eq!(
            (stats.metric_keys_folded, stats.metric_observations_dropped),
            (3, 5)
        );
    }
}
