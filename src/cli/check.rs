//! `kafka-healing check`.

use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::config::{self, LoadError};
use crate::diag::Diagnostics;
use crate::rules;

pub(super) fn run(path: &Path, json: bool) -> ExitCode {
    let (diags, summary) = match config::load(path) {
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
            let summary = format!(
                "{}: {} rules, {} runbooks, {} brokers in cluster {}",
                path.display(),
                set.rules.len(),
                set.runbooks.len(),
                loaded.config.cluster.kafka_brokers.len(),
                loaded.config.cluster.name
            );
            (d, Some(summary))
        }
    };
    report(&diags, json);
    if diags.has_errors() {
        eprintln!(
            "{}: INVALID ({} errors)",
            path.display(),
            diags.error_count()
        );
        ExitCode::from(EXIT_INVALID)
    } else {
        if let Some(s) = summary {
            println!("OK {s}");
        }
        ExitCode::SUCCESS
    }
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
