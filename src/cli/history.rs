//! `kafka-healing history`: recent executions from the journal (read-only; safe while the
//! service runs).

use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::journal::{ExecStatus, ExecutionFilter, Journal};

/// Filters given on the command line.
pub(super) struct Args<'a> {
    pub config: &'a Path,
    pub json: bool,
    pub limit: u32,
    pub status: Option<&'a str>,
    pub rule: Option<String>,
    pub target: Option<String>,
}

fn fmt_ms(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => crate::clock::rfc3339_ms(ms),
        None => "-".into(),
    }
}

pub(super) fn run(a: Args<'_>) -> ExitCode {
    let loaded = match super::load_config(a.config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let status = match a.status.map(|s| (s, ExecStatus::parse(s))) {
        Some((s, None)) => {
            eprintln!(
                "error: unknown status `{s}` (queued, running, succeeded, failed, escalated, \
                 cancelled, interrupted, skipped, dry_run)"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        Some((_, st)) => st,
        None => None,
    };
    let path = loaded.resolve(&loaded.config.state.path);
    let journal = match Journal::open_read_only(&path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: cannot open the journal {}: {e}", path.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let filter = ExecutionFilter {
        status,
        rule: a.rule,
        target: a.target,
        since_ms: None,
        limit: Some(a.limit),
    };
    let list = match journal.list_executions(&filter) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if a.json {
        match serde_json::to_string(&serde_json::json!({ "executions": list })) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "{:>6}  {:<20}  {:<11}  {:<24}  {:<10}  reason",
        "id", "created", "status", "rule", "target"
    );
    for e in &list {
        println!(
            "{:>6}  {:<20}  {:<11}  {:<24}  {:<10}  {}",
            e.id,
            fmt_ms(Some(e.created_ms)),
            e.status.as_str(),
            e.rule,
            e.target.as_deref().unwrap_or("-"),
            e.reason
        );
    }
    if list.is_empty() {
        println!("(no executions)");
    }
    ExitCode::SUCCESS
}
