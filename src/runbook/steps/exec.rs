//! `exec` steps: a command, argv elements each a template, run as a child process.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::runbook::exec::options::ExecOptions;
use crate::runbook::exec::outcome::Outcome;
use crate::runbook::exec::process::run_process;
use crate::runbook::render::{Lowered, RenderedStep, Renderer, StepError};

/// The key the kind is written with.
pub const KEY: &str = "exec";

/// The argv as written in step `step`, refused when empty.
pub(crate) fn checked(argv: Vec<String>, step: &str) -> Result<Vec<String>, String> {
    if argv.is_empty() {
        return Err(format!("step `{step}`: `exec` needs at least the program"));
    }
    Ok(argv)
}

/// Every template source: each argv element.
pub(crate) fn templates(argv: &[String]) -> Vec<&str> {
    argv.iter().map(String::as_str).collect()
}

/// Renders each element to one argv element.
pub(crate) fn lower(argv: &[String], r: &Renderer<'_>) -> Result<Lowered, StepError> {
    argv.iter()
        .enumerate()
        .map(|(i, a)| r.one(&format!("exec[{i}]"), a))
        .collect::<Result<Vec<_>, _>>()
        .map(Lowered::argv)
}

/// An `exec` may do anything.
pub(crate) fn is_disruptive(_argv: &[String]) -> bool {
    true
}

/// One try: the argv as a child process (`systemctl` and `ansible` run this too).
pub(crate) async fn run(
    step: &RenderedStep,
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    run_process(&step.argv, timeout, opts, cancel).await
}
