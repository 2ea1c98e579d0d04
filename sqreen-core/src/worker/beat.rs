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
