//! `kafka-healing check`.

use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::config::{self, LoadError};
use crate::diag::{Diagnostics, plural};
use crate::rules;

pub(super) fn run(path: &Path, json: bool) -> ExitCode {
    let (mut diags, summary) = match config::load(path) {
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
            let summary = format!(
                "{}: {}, {}, {} in cluster {}",
                path.display(),
                plural(set.rules.len(), "rule"),
                plural(set.runbooks.len(), "runbook"),
                plural(loaded.config.cluster.kafka_brokers.len(), "broker"),
                loaded.config.cluster.name
            );
            (d, Some(summary))
        }
    };
    diags.sort();
    report(&diags, json);
    if diags.has_errors() {
        eprintln!(
            "{}: INVALID ({})",
            path.display(),
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
