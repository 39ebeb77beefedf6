//! Reading committed journal events in id order, for the audit file (`logging.audit`).

use rusqlite::Connection;
use serde::Serialize;

use super::error::JournalError;

/// One committed journal event: one line of the audit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// The event's id (increasing; the audit file resumes after the last one).
    pub id: i64,
    /// When it was recorded, in Unix milliseconds.
    pub at_ms: i64,
    /// The execution it belongs to, if any.
    pub execution_id: Option<i64>,
    /// The rule, if any.
    pub rule: Option<String>,
    /// The target, if any.
    pub target: Option<String>,
    /// The event kind (decision, step, status…).
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// Events with an id above `after`, oldest first, at most `limit`.
pub(crate) fn events_after(
    conn: &Connection,
    after: i64,
    limit: u32,
) -> Result<Vec<AuditEvent>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, execution_id, rule, target, kind, message FROM events \
         WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(rusqlite::params![after, limit], |r| {
        Ok(AuditEvent {
            id: r.get(0)?,
            at_ms: r.get(1)?,
            execution_id: r.get(2)?,
            rule: r.get(3)?,
            target: r.get(4)?,
            kind: r.get(5)?,
            message: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
