//! `kafka-healing history`: recent executions from the journal (read-only; safe while the
//! service runs).

use std::path::{Path, PathBuf};
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

/// The journal's path. `history` reads only the journal, so a configuration that is not
/// valid as a whole (an SMTP secret unset where history runs) still names it: then only
/// `state.path` is read, as the loader would (environment override, `${NAME}`, the last
/// file that sets it wins, relative to the first file).
fn journal_path(config: &[PathBuf]) -> Result<PathBuf, ExitCode> {
    match crate::config::load_files(config) {
        Ok(l) => return Ok(l.resolve(&l.config.state.path)),
        Err(e @ crate::config::LoadError::Read { .. }) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(EXIT_USAGE));
        }
        Err(crate::config::LoadError::Invalid(_)) => {}
    }
    match state_path_only(config) {
        Ok(p) => Ok(p),
        Err((file, why)) => {
            eprintln!("error: {}: {why}", file.display());
            eprintln!("error: the configuration is invalid; run `kafka-healing check` for details");
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// `state.path` of the files at `config`, read on their own (the rest may be invalid).
fn state_path_only(config: &[PathBuf]) -> Result<PathBuf, (PathBuf, String)> {
    let env_key = format!("{}__STATE__PATH", crate::config::ENV_PREFIX);
    let mut written = None;
    for file in config {
        let fail = |why: String| (file.clone(), why);
        let text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
        let doc = crate::yaml::Document::parse(&text).map_err(|e| fail(format!("YAML: {e}")))?;
        match doc.value.get("state").and_then(|s| s.get("path")) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) => written = Some((file, s.clone())),
            Some(_) => return Err(fail("state.path must be a string".into())),
        }
    }
    let first = config.first().cloned().unwrap_or_default();
    let written = match std::env::var(&env_key) {
        Ok(v) => Some((&first, v)),
        Err(_) => written,
    };
    let path = match written {
        Some((file, s)) => PathBuf::from(
            crate::config::expand_env(&s, |n| std::env::var(n).ok())
                .map_err(|e| (file.clone(), format!("state.path: {e}")))?,
        ),
        None => crate::config::StateConfig::default().path,
    };
    let base = first.parent().unwrap_or(Path::new("."));
    Ok(if path.is_absolute() {
        path
    } else {
        base.join(path)
    })
}

pub(super) fn run(a: Args<'_>) -> ExitCode {
    // 0 would list nothing and look like an empty journal.
    if a.limit == 0 {
        eprintln!("error: --limit must be at least 1 (it is how many executions to list)");
        return ExitCode::from(EXIT_USAGE);
    }
    let status = match a.status.map(|s| (s, ExecStatus::parse(s))) {
        Some((s, None)) => {
            eprintln!(
                "error: unknown status `{s}` (queued, running, succeeded, failed, escalated, \
                 cancelled, interrupted, skipped, dry_run, refused)"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        Some((_, st)) => st,
        None => None,
    };
    let path = match journal_path(a.config) {
        Ok(p) => p,
        Err(code) => return code,
    };
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
