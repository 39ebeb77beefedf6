//! What the core must know after a restart, read back from the journal: recent attempts
//! (cooldowns, backoff, attempt counts), open circuits and the pauses in force. Blocking
//! reads, at start-up.

use tracing::{error, info, warn};

use super::decide::Core;
use super::pause::{Pause, PauseScope};
use super::plan::WorkKey;
use super::policy::Attempt;
use crate::journal::{ExecStatus, ExecutionFilter, Journal};

/// How many of the newest journaled alerts are searched for resolves at start-up.
const RESOLVES_SCANNED: i64 = 200_000;

/// Feeds `core` the attempts of the attempt window before `now` and the open circuits.
pub fn restore(core: &mut Core, journal: &Journal, now: i64) {
    let window = core.setup().limits(None).window_ms;
    // Per status: skips (one per alert in a storm) must not push the runs out of the
    // newest 1000, or a restart would forget cooldowns and attempts.
    let mut recent = Vec::new();
    for status in [
        ExecStatus::Succeeded,
        ExecStatus::Failed,
        ExecStatus::Escalated,
        ExecStatus::Interrupted,
    ] {
        let filter = ExecutionFilter {
            status: Some(status),
            since_ms: Some(now.saturating_sub(window)),
            limit: Some(1000),
            ..Default::default()
        };
        match journal.list_executions(&filter) {
            Ok(list) => recent.extend(list),
            Err(e) => {
                warn!(error = %e, "cannot read recent executions: attempt history starts empty");
                recent.clear();
                break;
            }
        }
    }
    recent.sort_by_key(|e| (e.created_ms, e.id));
    for e in recent {
        let ok = e.status == ExecStatus::Succeeded;
        // As Plan::work_key: a disruptive runbook's work is (rule, target).
        let params = match e.disruptive {
            true => Default::default(),
            false => serde_json::from_value(e.plan["params"].clone()).unwrap_or_default(),
        };
        let key = WorkKey {
            rule: e.rule,
            target: e.target,
            params,
        };
        let started = e.started_ms.unwrap_or(e.created_ms);
        let finished = e.finished_ms.unwrap_or(started);
        core.restore_attempt(
            &key,
            Attempt {
                started_ms: started,
                finished: Some((finished, ok)),
            },
        );
    }
    // The resolves the core remembers, so a replayed firing copy of an occurrence that is
    // over stays stale across a restart too.
    match journal.recent_resolves(RESOLVES_SCANNED, super::decide::RESOLVES_REMEMBERED as i64) {
        Ok(list) => {
            for (fingerprint, starts_at) in list {
                if let Some(s) = crate::clock::parse_rfc3339_ms(&starts_at) {
                    core.restore_resolve(&fingerprint, s);
                }
            }
        }
        Err(e) => warn!(error = %e, "cannot read recent resolved alerts"),
    }
    match journal.open_circuits() {
        Ok(list) => {
            for c in list {
                let target = (c.target != "-").then_some(c.target);
                let circuit = crate::engine::policy::OpenCircuit {
                    opened_ms: c.opened_ms,
                    reason: c.reason,
                    healthy_since_ms: c.healthy_since_ms,
                };
                core.restore_circuit(c.rule, target, circuit);
            }
        }
        Err(e) => warn!(error = %e, "cannot read open circuits"),
    }
    restore_pauses(core, journal, now);
}

/// Feeds `core` the pauses in force at `now`.
fn restore_pauses(core: &mut Core, journal: &Journal, now: i64) {
    match journal.active_pauses(now) {
        Ok(list) => {
            for p in list {
                let scope = match p.target {
                    Some(t) => PauseScope::Target(t),
                    None => PauseScope::Cluster,
                };
                info!(scope = %scope, until = %crate::clock::rfc3339_ms(p.until_ms), reason = ?p.reason, "pause restored from the journal");
                core.restore_pause(Pause {
                    scope,
                    from_ms: p.from_ms,
                    until_ms: p.until_ms,
                    reason: p.reason,
                });
            }
        }
        // Refusing to start would stop all healing for a pause; starting without it is
        // logged loudly.
        Err(e) => error!(error = %e, "cannot read the pauses in force: starting without them"),
    }
}
