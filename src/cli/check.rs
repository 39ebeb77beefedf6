//! `kafka-healing check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::config::{self, LoadError};
use crate::diag::{Diagnostics, plural};
use crate::rules;

pub(super) fn run(paths: &[PathBuf], json: bool) -> ExitCode {
    let path = paths.first().map_or(Path::new(""), PathBuf::as_path);
    let mut shown = super::ConfigFiles::shown(paths);
    let (mut diags, summary) = match config::load_files(paths) {
        Err(e @ LoadError::Read { .. }) => {
            // Unreadable file: a usage problem, not an invalid config.
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(LoadError::Invalid(mut d)) => {
            // Still check the rule files the config names, so one run shows everything.
            let (_, more) = rules::load_rules_of_file(path);
            d.extend(more);
            (d, None)
        }
        Ok(loaded) => {
            // With the environment overlay, when one was read.
            shown = super::ConfigFiles::shown(&loaded.files());
            let (set, more) = rules::load_rules(&loaded);
            let mut d = loaded.warnings.clone();
            d.extend(more);
            let n = &loaded.config.notifications;
            if n.smtp.is_some()
                && let Err(e) =
                    crate::notify::message::Composer::new(&n.templates, &loaded.base_dir)
            {
                d.error(&loaded.path, None, format!("notifications.templates: {e}"));
            }
            if let Some(w) = capacity_warning(&loaded.config, &set) {
                d.warning(&loaded.path, None, w);
            }
            let builtin = set
                .builtin
                .as_ref()
                .map(|b| format!("{b}\n"))
                .unwrap_or_default();
            let summary = format!(
                "{shown}: {}, {}, {} in cluster {}\n{builtin}{}",
                plural(set.rules.len(), "rule"),
                plural(set.runbooks.len(), "runbook"),
                plural(loaded.config.cluster.kafka_brokers.len(), "broker"),
                loaded.config.cluster.name,
                policy_summary(&loaded.config, &set)
            );
            (d, Some(summary))
        }
    };
    diags.sort();
    report(&diags, json);
    if diags.has_errors() {
        eprintln!(
            "{shown}: INVALID ({})",
            plural(diags.error_count(), "error")
        );
        return ExitCode::from(EXIT_INVALID);
    }
    // With --json, standard output carries only JSON lines.
    match (summary, json) {
        (Some(s), false) => println!("OK {s}"),
        (Some(s), true) => eprintln!("OK {s}"),
        (None, _) => {}
    }
    ExitCode::SUCCESS
}

/// A warning when the brokers times the series the conditions need per broker could pass
/// the series store's caps (estimated from the selectors:
/// [`KeepSet::series_per_broker`](crate::promql::KeepSet::series_per_broker); health
/// series: 3 per method and [`HEALTH_PER_KAFKA`] for the `kafka` method).
fn capacity_warning(cfg: &crate::config::Config, set: &rules::RuleSet) -> Option<String> {
    use crate::config::MonitoringMethod as M;
    let brokers = cfg.cluster.kafka_brokers.len();
    let methods = &cfg.monitoring.methods;
    let keep = crate::promql::KeepSet::of_rules(set);
    let exporter = if methods.contains(&M::Jmx) {
        keep.series_per_broker()
    } else {
        0
    };
    let health: usize = methods
        .iter()
        .map(|m| match m {
            M::Kafka => HEALTH_PER_KAFKA,
            M::Zookeeper => 0,
            // probe success and duration; the pod's exists, ready and restarts.
            M::Kubernetes => 5,
            M::Jmx | M::Socket | M::Http => 3,
        })
        .sum();
    let (need, health_need) = (brokers * exporter, brokers * health);
    let (cap, reserved) = (cfg.monitoring.max_series, cfg.monitoring.max_health_series);
    if need <= cap && health_need <= reserved {
        return None;
    }
    Some(format!(
        "monitoring: {brokers} brokers may need about {need} exporter series ({exporter} per broker for what the conditions read: {keep}) and {health_need} health series, over the series store's caps ({cap}, monitoring.max_series, and {reserved}, monitoring.max_health_series): series beyond them are dropped; narrow the conditions' selectors or raise the caps"
    ))
}

/// Health series per broker of the `kafka` method (its `kafka_healing_kafka_*` series).
const HEALTH_PER_KAFKA: usize = 10;

/// The limits the engine will decide with, each with its maximum, and the rules that
/// override them: what an SRE wants to see before a storm, not after.
fn policy_summary(cfg: &crate::config::Config, set: &rules::RuleSet) -> String {
    let r = &cfg.recovery;
    let s = &cfg.server;
    let mut out = format!(
        "  attempts: {} per {} s window (max 10 per 2592000 s); backoff {} s ×{} (max 86400 s ×10); \
         cooldown {} s (max 604800); circuits close {} s after their problem resolved (max 604800)\n  \
         at once: {} disruptive (max 100), {} diagnostics (max 1000); waiting: {} diagnostics \
         (max_queued, max 1000000), {} remediation (max_queued_remediation, max 100000); \
         undecided alerts: {} (max_pending_alerts, max 10000000)",
        r.max_attempts,
        r.attempt_window_seconds,
        r.initial_delay_seconds,
        r.backoff_multiplier,
        r.cooldown_seconds,
        r.circuit_reset_seconds,
        r.max_concurrent_per_cluster,
        r.max_concurrent_diagnostics,
        r.max_queued,
        r.max_queued_remediation,
        s.max_pending_alerts,
    );
    let overrides: Vec<String> = set
        .rules
        .iter()
        .filter_map(|rule| {
            let mut o = Vec::new();
            if let Some(n) = rule.max_attempts {
                o.push(format!("max_attempts {n}"));
            }
            if let Some(c) = rule.cooldown_seconds {
                o.push(format!("cooldown {c} s"));
            }
            (!o.is_empty()).then(|| format!("{} ({})", rule.name, o.join(", ")))
        })
        .collect();
    if !overrides.is_empty() {
        out.push_str(&format!("\n  rule overrides: {}", overrides.join("; ")));
    }
    out
}

fn report(diags: &Diagnostics, json: bool) {
    for d in &diags.items {
        if json {
            match serde_json::to_string(d) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("error: {e}"),
            }
        } else {
            eprintln!("{d}");
        }
    }
}
