//! Start-up recovery: what was running when the service stopped is marked interrupted,
//! what was still queued is cancelled. Never re-run blindly.

use rusqlite::{Connection, TransactionBehavior, params};

use super::error::JournalError;
use super::model::{Event, EventKind, ExecStatus, Execution};
use super::read::{EXECUTION_COLUMNS, execution_from_row};
use super::write::insert_event;

/// Appended to an interrupted execution's reason.
pub const INTERRUPTED_REASON: &str = "interrupted: the service stopped while it was running";

/// The reason given to queued executions cancelled at start-up.
pub const CANCELLED_REASON: &str = "service restarted before it started";

/// In one transaction: marks `running` executions `interrupted` and `queued` ones
/// `cancelled`, with an event each; returns the interrupted ones (as now stored).
pub(crate) fn recover(conn: &mut Connection, now_ms: i64) -> Result<Vec<Execution>, JournalError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let select =
        format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE status = ?1 ORDER BY id");
    let running = tx
        .prepare(&select)?
        .query_map(params![ExecStatus::Running.as_str()], execution_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let queued = tx
        .prepare(&select)?
        .query_map(params![ExecStatus::Queued.as_str()], execution_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    let mut interrupted = Vec::with_capacity(running.len());
    for mut e in running {
        e.reason = if e.reason.is_empty() {
            INTERRUPTED_REASON.to_owned()
        } else {
            format!("{}; {INTERRUPTED_REASON}", e.reason)
        };
        e.status = ExecStatus::Interrupted;
        e.finished_ms = Some(now_ms);
        tx.execute(
            "UPDATE executions SET status = ?2, reason = ?3, finished_ms = ?4 WHERE id = ?1",
            params![e.id, e.status.as_str(), e.reason, now_ms],
        )?;
        insert_event(
            &tx,
            &Event {
                at_ms: now_ms,
                execution_id: Some(e.id),
                rule: Some(e.rule.clone()),
                target: e.target.clone(),
                kind: EventKind::Interrupted.as_str().to_owned(),
                message: format!(
                    "execution {} of runbook {} was running when the service stopped; \
                     it is not re-run automatically",
                    e.id, e.runbook
                ),
            },
        )?;
        interrupted.push(e);
    }
    for e in queued {
        tx.execute(
            "UPDATE executions SET status = ?2, reason = ?3, finished_ms = ?4 WHERE id = ?1",
            params![
                e.id,
                ExecStatus::Cancelled.as_str(),
                CANCELLED_REASON,
                now_ms
            ],
        )?;
        insert_event(
            &tx,
            &Event {
                at_ms: now_ms,
                execution_id: Some(e.id),
                rule: Some(e.rule.clone()),
                target: e.target.clone(),
                kind: EventKind::Cancelled.as_str().to_owned(),
                message: format!(
                    "execution {} of runbook {} was queued when the service stopped: \
                     {CANCELLED_REASON}",
                    e.id, e.runbook
                ),
            },
        )?;
    }
    tx.commit()?;
    Ok(interrupted)
}
