//! `kafka-healing dry-run`: the plan for a webhook payload; nothing is executed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::output::print_plans;
use super::{EXIT_INVALID, EXIT_USAGE};
use crate::diag::plural;
use crate::engine::plan_payload;
use crate::ingest::parse_webhook;
use crate::rules;

pub(super) fn run(config_path: &[PathBuf], alerts: &Path, json: bool) -> ExitCode {
    let loaded = match super::load_config(config_path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let (set, mut diags) = rules::load_rules(&loaded);
    if diags.has_errors() {
        diags.sort();
        eprint!("{diags}");
        eprintln!(
            "error: the rules are invalid ({})",
            plural(diags.error_count(), "error")
        );
        return ExitCode::from(EXIT_INVALID);
    }
    let body = if alerts == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map(|_| buf)
    } else {
        std::fs::read(alerts)
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read alerts {}: {e}", alerts.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let payload = match parse_webhook(&body) {
        Ok(p) => p,
        Err(e) => {
            let name = if alerts == Path::new("-") {
                "<stdin>".to_string()
            } else {
                alerts.display().to_string()
            };
            eprintln!("error: {name}: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let plans = plan_payload(&loaded.config, &set, &payload);
    if json {
        match serde_json::to_string(&plans) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
    } else {
        print!("{}", print_plans(&payload, &plans));
    }
    ExitCode::SUCCESS
}
