//! `kafka-healing history`: recent executions from the journal (read-only; safe while the
//! service runs).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_INVALID, EXIT_USAGE};
use crate::journal::{ExecStatus, ExecutionFilter, Journal};

/// Filters given on the command line.
pub(super) struct Args<'a> {
    pub config: &'a [PathBuf],
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
        target: a.target.clone(),
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
    // Pauses (their `paused` and `resumed` events), newest first.
    let now = crate::clock::now_ms();
    let pauses = match journal.recent_pauses(a.limit.min(1000), a.target.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if a.json {
        let pauses: Vec<_> = pauses
            .iter()
            .map(|p| super::pause::pause_json(p, now))
            .collect();
        let out = serde_json::json!({ "executions": list, "pauses": pauses });
        match serde_json::to_string(&out) {
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
    let lines = super::pause::pause_lines(&pauses, now, a.limit as usize);
    if !lines.is_empty() {
        println!();
        println!("{:<20}  {:<8}  {:<10}  pauses", "at", "event", "target");
        for (at, kind, who, words) in lines {
            println!("{:<20}  {kind:<8}  {who:<10}  {words}", fmt_ms(Some(at)));
        }
    }
    ExitCode::SUCCESS
}
