//! Running a program: its own process group, capped output, timeout and cancellation that
//! stop the whole group (SIGTERM, a grace period, then SIGKILL).
//!
//! Where `setpriv` is available the child is started through it with a parent-death
//! signal (SIGKILL), so it dies with the service. Every child is forked by one of the
//! spawner threads that live as long as the process (see [`super::lifeline`]), never by a
//! runtime thread that also answers webhooks.
//!
//! A descendant that calls `setsid` (a daemon: double fork, new session) leaves the group,
//! so stopping the group cannot reach it. Every child therefore also gets a per-try cookie,
//! [`STEP_COOKIE_VAR`], in its environment, which its descendants inherit; when a try is
//! stopped (timeout, cancellation), every process that still carries the cookie gets
//! SIGKILL (no grace: the step's time is over). A process that drops the variable from its
//! environment before `exec` escapes this too.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lifeline;
use super::options::ExecOptions;
use super::outcome::{ExecError, Outcome};
use super::output::{Captured, read_capped};
use crate::journal::StepStatus;

/// How often an emptied process group is checked during the grace period.
const GROUP_POLL: Duration = Duration::from_millis(50);
/// How long to wait for the killed leader to be reaped before giving up on its status.
const REAP_LIMIT: Duration = Duration::from_secs(5);
/// Most sweeps for processes carrying a stopped try's cookie (each catches what the
/// previous one's victims forked meanwhile).
const SWEEP_ROUNDS: usize = 20;

pub use super::lifeline::STEP_COOKIE_VAR;

/// A new cookie for one try.
fn new_cookie() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Why the wait for the child ended.
enum End {
    Exited(ExitStatus),
    WaitFailed(std::io::Error),
    TimedOut,
    Cancelled,
}

/// Kills the process group with SIGKILL if dropped while armed, so a step abandoned mid-run
/// (its future dropped) leaves no process behind.
struct GroupGuard {
    pgid: Option<Pid>,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let (true, Some(pgid)) = (self.armed, self.pgid) {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Runs `argv` once as a child process (see the module doc).
pub(crate) async fn run_process(
    argv: &[String],
    timeout: Duration,
    opts: &ExecOptions,
    cancel: &CancellationToken,
) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome::fatal(ExecError::EmptyArgv);
    };
    if program.is_empty() {
        return Outcome::fatal(ExecError::InvalidStep {
            kind: "exec".to_string(),
            message: "the program name is empty".to_string(),
        });
    }
    let cookie = new_cookie();
    let mut child = match spawn(program, args, opts, &cookie).await {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    // process_group(0): the child leads a group whose id is its pid.
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let mut guard = GroupGuard { pgid, armed: true };
    let stop = CancellationToken::new();
    let _stop_readers_on_drop = stop.clone().drop_guard();
    let out_task = child
        .stdout
        .take()
        .map(|s| tokio::spawn(read_capped(s, opts.max_output, stop.clone())));
    let err_task = child
        .stderr
        .take()
        .map(|s| tokio::spawn(read_capped(s, opts.max_output, stop.clone())));

    let end = tokio::select! {
        biased;
        r = child.wait() => match r {
            Ok(st) => End::Exited(st),
            Err(e) => End::WaitFailed(e),
        },
        _ = tokio::time::sleep(timeout) => End::TimedOut,
        _ = cancel.cancelled() => End::Cancelled,
    };

    let stopped = !matches!(end, End::Exited(_));
    let mut outcome = match end {
        End::Exited(st) => {
            guard.armed = false;
            exited(st)
        }
        other => stop_group(other, &mut child, pgid, program, timeout, opts).await,
    };
    guard.armed = false;
    if stopped {
        // Stopped by us: what left the group (a daemon) goes too.
        let escaped = kill_cookie_holders(cookie).await;
        if escaped > 0 {
            tracing::warn!(program = %program, escaped, "killed processes that had left the step's process group");
        }
    }
    let (out, err) = drain(program, out_task, err_task, &stop, opts.drain_timeout).await;
    outcome.stdout = out.text();
    outcome.stdout_truncated = out.truncated;
    outcome.stderr = err.text();
    outcome.stderr_truncated = err.truncated;
    outcome
}

/// Starts `program` in a process group of its own with only the step's environment and
/// the try's cookie; through `setpriv` when configured, directly when `setpriv` cannot
/// be started. `Err` is the step's outcome.
async fn spawn(
    program: &str,
    args: &[String],
    opts: &ExecOptions,
    cookie: &str,
) -> Result<Child, Outcome> {
    let prepare = |setpriv: Option<&std::path::Path>| {
        let (mut cmd, wrapped) = lifeline::command(program, args, &opts.env, setpriv);
        cmd.env_clear()
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(STEP_COOKIE_VAR, cookie)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        (cmd, wrapped)
    };
    let (cmd, wrapped) = prepare(opts.setpriv.as_deref());
    // Every child is forked by a spawner thread, not by a runtime thread: the fork blocks
    // its thread until the child has exec'd, which on 2 busy cores stalled the webhook's
    // replies (ACK p50 39–205 ms against 2–4 ms at 1,000 distinct alerts/s).
    let spawned = match lifeline::spawn(cmd, opts.nice).await {
        Err(e) if wrapped => {
            // `setpriv` itself could not be started (removed since it was found): the
            // step is not held back for it.
            tracing::warn!(error = %e, "cannot start the step through setpriv; starting it directly");
            prepare(None).0.spawn()
        }
        other => other,
    };
    spawned.map_err(|source| {
        let e = ExecError::Spawn {
            program: program.to_string(),
            source,
        };
        if e.unfixable() {
            Outcome::fatal(e)
        } else {
            Outcome::failed(e)
        }
    })
}

/// The outcome of a try that did not end by itself (its wait failed, it timed out, or it
/// was cancelled): its process group is stopped first.
async fn stop_group(
    end: End,
    child: &mut Child,
    pgid: Option<Pid>,
    program: &str,
    timeout: Duration,
    opts: &ExecOptions,
) -> Outcome {
    match end {
        End::Exited(st) => exited(st),
        End::WaitFailed(source) => {
            let (st, _) = terminate(child, pgid, opts.kill_grace).await;
            Outcome {
                exit_code: st.and_then(|s| s.code()),
                signal: st.and_then(|s| s.signal()),
                ..Outcome::failed(ExecError::Wait {
                    program: program.to_string(),
                    source,
                })
            }
        }
        End::TimedOut => {
            tracing::warn!(program = %program, ?timeout, ?pgid, "timed out; stopping its process group");
            let (st, sent) = terminate(child, pgid, opts.kill_grace).await;
            Outcome {
                status: StepStatus::TimedOut,
                exit_code: st.and_then(|s| s.code()),
                signal: st.and_then(|s| s.signal()).or(Some(sent as i32)),
                error: Some(format!(
                    "timed out after {}; process group stopped with {}",
                    humantime::format_duration(timeout),
                    sent.as_str()
                )),
                ..Outcome::new(StepStatus::TimedOut)
            }
        }
        End::Cancelled => {
            tracing::warn!(program = %program, ?pgid, "cancelled; stopping its process group");
            let (st, sent) = terminate(child, pgid, opts.kill_grace).await;
            Outcome {
                exit_code: st.and_then(|s| s.code()),
                signal: st.and_then(|s| s.signal()).or(Some(sent as i32)),
                ..Outcome::fatal(ExecError::Cancelled)
            }
        }
    }
}

/// The captured output: read to its end, unless something the child started keeps the
/// pipes open past `drain_timeout`.
async fn drain(
    program: &str,
    out_task: Option<JoinHandle<Captured>>,
    err_task: Option<JoinHandle<Captured>>,
    stop: &CancellationToken,
    drain_timeout: Duration,
) -> (Captured, Captured) {
    let readers = async { (join(out_task).await, join(err_task).await) };
    tokio::pin!(readers);
    tokio::select! {
        r = &mut readers => r,
        _ = tokio::time::sleep(drain_timeout) => {
            tracing::warn!(program = %program, "output still open after the process ended; no longer read");
            stop.cancel();
            readers.await
        }
    }
}

fn exited(st: ExitStatus) -> Outcome {
    Outcome {
        exit_code: st.code(),
        signal: st.signal(),
        ..Outcome::new(if st.success() {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        })
    }
}

async fn join(task: Option<JoinHandle<Captured>>) -> Captured {
    match task {
        None => Captured::default(),
        Some(t) => t.await.unwrap_or_else(|e| Captured {
            error: Some(e.to_string()),
            ..Captured::default()
        }),
    }
}

/// Stops the child's process group: SIGTERM, then SIGKILL once `grace` has passed unless the
/// whole group is gone by then. Returns the leader's status (when it could be reaped) and the
/// last signal sent.
async fn terminate(
    child: &mut Child,
    pgid: Option<Pid>,
    grace: Duration,
) -> (Option<ExitStatus>, Signal) {
    let Some(pgid) = pgid else {
        // No pid (already reaped): only the leader can be reached.
        let _ = child.start_kill();
        let st = tokio::time::timeout(REAP_LIMIT, child.wait()).await;
        return (st.ok().and_then(Result::ok), Signal::SIGKILL);
    };
    let _ = killpg(pgid, Signal::SIGTERM);
    let grace_over = tokio::time::sleep(grace);
    tokio::pin!(grace_over);
    let mut status = None;
    let mut reaped = false;
    loop {
        // A zombie leader still counts as a member: only check once it is reaped.
        if reaped && group_gone(pgid).await {
            return (status, Signal::SIGTERM);
        }
        tokio::select! {
            biased;
            r = child.wait(), if !reaped => {
                reaped = true;
                status = r.ok();
            }
            _ = &mut grace_over => break,
            _ = tokio::time::sleep(GROUP_POLL), if reaped => {}
        }
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    if !reaped {
        status = tokio::time::timeout(REAP_LIMIT, child.wait())
            .await
            .ok()
            .and_then(Result::ok);
    }
    (status, Signal::SIGKILL)
}

/// SIGKILLs every live process whose environment holds `STEP_COOKIE_VAR=cookie`, sweeping
/// until none is left (or [`SWEEP_ROUNDS`] sweeps); returns how many were killed.
async fn kill_cookie_holders(cookie: String) -> usize {
    tokio::task::spawn_blocking(move || {
        let needle = format!("{STEP_COOKIE_VAR}={cookie}");
        let own = std::process::id();
        let mut killed = std::collections::BTreeSet::new();
        for _ in 0..SWEEP_ROUNDS {
            let found = cookie_holders(&needle, own);
            if found.is_empty() {
                break;
            }
            for pid in found {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                killed.insert(pid);
            }
            std::thread::sleep(GROUP_POLL / 5);
        }
        killed.len()
    })
    .await
    .unwrap_or(0)
}

/// Live (not zombie) processes other than `own` whose environment holds `needle` as one
/// whole entry. Processes whose environment cannot be read are skipped.
fn cookie_holders(needle: &str, own: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid).is_ok_and(|p| p == own) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|e| e == needle.as_bytes()) {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| {
                st.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next().map(|x| matches!(x, "Z" | "X")))
            })
            .unwrap_or(true);
        if !zombie {
            out.push(pid);
        }
    }
    out
}

/// Whether no live process is left in the group. Zombies (killed, waiting for whoever
/// inherited them to reap them, which some init processes do slowly) count as gone.
async fn group_gone(pgid: Pid) -> bool {
    if killpg(pgid, None) == Err(Errno::ESRCH) {
        return true;
    }
    tokio::task::spawn_blocking(move || only_zombies_in(pgid.as_raw()))
        .await
        .unwrap_or(Some(false))
        .unwrap_or(false)
}

/// Scans `/proc`: `Some(true)` when every member of group `pgid` is a zombie, `None` when
/// `/proc` cannot be read.
fn only_zombies_in(pgid: i32) -> Option<bool> {
    let dir = std::fs::read_dir("/proc").ok()?;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // exited meanwhile
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(pgid) && !matches!(state, "Z" | "X") {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_scan() {
        let own = nix::unistd::getpgrp().as_raw();
        assert_eq!(only_zombies_in(own), Some(false));
        // No process has a negative group id.
        assert_eq!(only_zombies_in(-7), Some(true));
    }
}
