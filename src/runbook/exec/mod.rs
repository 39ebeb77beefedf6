//! The executor: runs one rendered step — a child process, an HTTP request, a readiness
//! wait or a Kubernetes API action — with its timeout and retries, and reports how it ended as a [`StepRecord`].
//! One try of each kind is that kind's `run`, in [`crate::runbook::steps`]; what is shared
//! between kinds (the process runner, output capture, [`ExecOptions`], [`ExecError`]) is here.
//!
//! Child processes get exactly [`ExecOptions::env`] plus a per-try [`STEP_COOKIE_VAR`] as
//! their environment, no stdin, and their own process group, so a timeout or a cancellation
//! reaches every process they started, even one that left the group (`setsid`).
//! Nothing here ever goes through a shell.

mod env;
pub mod lifeline;
pub(crate) mod options;
pub(crate) mod outcome;
pub(crate) mod output;
pub(crate) mod process;

use std::time::{Duration, Instant};

use crate::clock::now_ms;

use tokio_util::sync::CancellationToken;

use super::render::RenderedStep;
use crate::journal::{StepRecord, StepStatus};
use outcome::Outcome;

pub use crate::runbook::steps::kube::{
    KubeConn, RESTARTED_AT, not_ready_reason, resolve_kubeconfig,
};
pub use env::{DEFAULT_PATH, ENV_ALLOWED_PREFIX, ENV_ALLOWLIST, child_env, filter_env};
pub use options::{ExecOptions, client_builder};
pub use outcome::ExecError;
pub use process::STEP_COOKIE_VAR;

/// The longest time limit honoured; larger ones are cut to this (about ten years).
const MAX_TIMEOUT_SECS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;
/// Time allowed, after a try's kill grace, until its processes are surely gone (SIGKILL
/// to the group, then to the processes that left it).
const STOP_MARGIN: Duration = Duration::from_secs(1);

/// A step's record, and whether its failure is one no run can fix.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// The record.
    pub record: StepRecord,
    /// It failed in a way no later run of the same plan can fix
    /// ([`ExecError::unfixable`]).
    pub unfixable: bool,
    /// The gate refused a retry (see [`run_step_gated`]): its reason.
    pub refused: Option<String>,
}

/// Asked before each retry of a step; `Err` with a reason stops the step there (the
/// preconditions of a disruptive step, judged again).
pub type RetryGate<'a> = &'a (
        dyn Fn() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>,
> + Send
            + Sync
    );

/// Runs `step` (position `index` in its runbook): up to `1 + step.retries` tries, with
/// [`ExecOptions::retry_pause`] between them, stopping at the first success.
///
/// The record holds the number of tries, the total duration and the last try's outcome.
/// Cancelling `cancel` stops the running try (killing its process group) and ends the step
/// as `Failed` with error `cancelled`; a token already cancelled runs nothing (`attempts` 0).
/// Never panics, whatever the step holds.
pub async fn run_step(
    step: &RenderedStep,
    index: u32,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> StepRecord {
    run_step_judged(step, index, opts, cancel).await.record
}

/// [`run_step`], also saying whether a failure is one no later run can fix.
pub async fn run_step_judged(
    step: &RenderedStep,
    index: u32,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> StepRun {
    run_step_gated(step, index, opts, cancel, None).await
}

/// [`run_step_judged`], asking `gate` (when given) before each retry: a refusal ends the
/// step failed, with the last try's outcome and the reason in its error and in
/// [`StepRun::refused`].
pub async fn run_step_gated(
    step: &RenderedStep,
    index: u32,
    opts: &ExecOptions,
    cancel: &CancellationToken,
    gate: Option<RetryGate<'_>>,
) -> StepRun {
    let started_ms = now_ms();
    let t0 = Instant::now();
    let mut attempts: u32 = 0;
    let mut refused = None;
    let last = loop {
        if cancel.is_cancelled() {
            break Outcome::fatal(ExecError::Cancelled);
        }
        attempts = attempts.saturating_add(1);
        tracing::info!(step = %step.name, kind = step.kind, index, attempt = attempts, "step try");
        let outcome = run_once(step, opts, cancel).await;
        if outcome.status == StepStatus::Succeeded || outcome.final_ || attempts > step.retries {
            break outcome;
        }
        tracing::warn!(
            step = %step.name, attempt = attempts, status = ?outcome.status,
            error = outcome.error.as_deref().unwrap_or(""), "step try failed; retrying"
        );
        tokio::select! {
            _ = tokio::time::sleep(opts.retry_pause) => {}
            _ = cancel.cancelled() => {
                break Outcome {
                    status: StepStatus::Failed,
                    error: Some(ExecError::Cancelled.to_string()),
                    ..outcome
                };
            }
        }
        if let Some(gate) = gate
            && let Err(why) = gate().await
        {
            let error = format!(
                "{}; try {} refused: {why}",
                outcome.error.as_deref().unwrap_or("failed"),
                attempts.saturating_add(1)
            );
            refused = Some(why);
            break Outcome {
                error: Some(error),
                ..outcome
            };
        }
    };
    let duration_ms = i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX);
    tracing::info!(
        step = %step.name, index, attempts, status = ?last.status, duration_ms, "step finished"
    );
    let unfixable = last.unfixable && last.status != StepStatus::Succeeded;
    let record = StepRecord {
        index,
        name: step.name.clone(),
        kind: step.kind.to_string(),
        argv: step.argv.clone(),
        status: last.status,
        exit_code: last.exit_code,
        signal: last.signal,
        attempts,
        started_ms,
        duration_ms,
        stdout: last.stdout,
        stderr: last.stderr,
        stdout_truncated: last.stdout_truncated,
        stderr_truncated: last.stderr_truncated,
        error: last.error,
    };
    StepRun {
        record,
        unfixable,
        refused,
    }
}

/// One try of `step`, by its kind.
async fn run_once(step: &RenderedStep, opts: &ExecOptions, cancel: &CancellationToken) -> Outcome {
    let timeout = step_timeout(step.timeout_seconds, opts.default_timeout);
    crate::runbook::steps::run(step, timeout, opts, cancel).await
}

/// The longest `step` can take with `opts`, by which every process it started has been
/// stopped: for each try its time limit, the kill grace and a margin, plus the pauses
/// between tries. In HA mode this is the deadline recorded in etcd before the step
/// starts, which a peer waits out if this instance dies mid-step.
pub fn step_budget(step: &RenderedStep, opts: &ExecOptions) -> Duration {
    let one = step_timeout(step.timeout_seconds, opts.default_timeout)
        .saturating_add(opts.kill_grace)
        .saturating_add(STOP_MARGIN);
    one.saturating_mul(step.retries.saturating_add(1))
        .saturating_add(opts.retry_pause.saturating_mul(step.retries))
}

/// The step's time limit: its own (negative counts as zero, NaN as none, capped at about
/// ten years) or `default`.
fn step_timeout(seconds: Option<f64>, default: Duration) -> Duration {
    match seconds {
        None => default,
        Some(s) if s.is_nan() => default,
        Some(s) if s <= 0.0 => Duration::ZERO,
        Some(s) => Duration::try_from_secs_f64(s.min(MAX_TIMEOUT_SECS)).unwrap_or(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        let d = Duration::from_secs(300);
        assert_eq!(step_timeout(None, d), d);
        assert_eq!(step_timeout(Some(f64::NAN), d), d);
        assert_eq!(step_timeout(Some(-1.0), d), Duration::ZERO);
        assert_eq!(step_timeout(Some(1.5), d), Duration::from_millis(1500));
        assert_eq!(
            step_timeout(Some(f64::INFINITY), d),
            Duration::from_secs_f64(MAX_TIMEOUT_SECS)
        );
    }

    #[test]
    fn a_steps_budget_covers_every_try_and_the_kill_grace() {
        let opts = ExecOptions {
            default_timeout: Duration::from_secs(300),
            kill_grace: Duration::from_secs(10),
            retry_pause: Duration::from_secs(1),
            ..ExecOptions::new(Vec::new())
        };
        let mut step = RenderedStep {
            name: "restart".into(),
            kind: "exec",
            argv: vec!["/bin/true".into()],
            body: None,
            timeout_seconds: Some(16.0),
            retries: 0,
            on_failure: crate::rules::model::OnFailure::Abort,
        };
        // 16 s + 10 s grace + 1 s margin.
        assert_eq!(step_budget(&step, &opts), Duration::from_secs(27));
        // Three tries and two pauses.
        step.retries = 2;
        assert_eq!(step_budget(&step, &opts), Duration::from_secs(3 * 27 + 2));
        // The default time limit.
        step.timeout_seconds = None;
        step.retries = 0;
        assert_eq!(step_budget(&step, &opts), Duration::from_secs(311));
        // The extremes: no overflow (the try count saturates at u32::MAX).
        step.timeout_seconds = Some(f64::INFINITY);
        step.retries = u32::MAX;
        let one = MAX_TIMEOUT_SECS as u64 + 10 + 1;
        assert_eq!(
            step_budget(&step, &opts),
            Duration::from_secs(one * u64::from(u32::MAX) + u64::from(u32::MAX))
        );
        let huge = ExecOptions {
            kill_grace: Duration::MAX,
            ..opts
        };
        assert_eq!(step_budget(&step, &huge), Duration::MAX);
    }
}
