//! The write statements. Each function is one request's work; the writer runs it inside
//! the batch transaction, under its own SAVEPOINT.

use rusqlite::{Connection, OptionalExtension, params};

use super::error::JournalError;
use super::model::{Circuit, Event, ExecStatus, NewAlert, NewExecution, StepRecord, WriteOp};
use super::schema::step_status_str;

/// Inserts alerts, returning their ids in order.
pub(crate) fn insert_alerts(
    conn: &Connection,
    alerts: &[NewAlert],
) -> Result<Vec<i64>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO alerts (received_ms, source, receiver, group_key, external_url, \
         fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, decided) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0) RETURNING id",
    )?;
    let mut ids = Vec::with_capacity(alerts.len());
    for a in alerts {
        let labels = serde_json::to_string(&a.labels)?;
        let annotations = serde_json::to_string(&a.annotations)?;
        let id: i64 = stmt.query_row(
            params![
                a.received_ms,
                a.source,
                a.receiver,
                a.group_key,
                a.external_url,
                a.fingerprint,
                a.status,
                labels,
                annotations,
                a.starts_at,
                a.ends_at,
                a.generator_url,
            ],
            |r| r.get(0),
        )?;
        ids.push(id);
    }
    Ok(ids)
}

/// Inserts an execution, returning its id. A terminal initial status sets `finished_ms`
/// to `created_ms`; `running` sets `started_ms` to it.
pub(crate) fn insert_execution(conn: &Connection, e: &NewExecution) -> Result<i64, JournalError> {
    let plan = serde_json::to_string(&e.plan)?;
    let started = (e.status == ExecStatus::Running).then_some(e.created_ms);
    let finished = e.status.is_terminal().then_some(e.created_ms);
    let id = conn
        .prepare_cached(
            "INSERT INTO executions (alert_id, rule, runbook, target, fingerprint, status, \
             reason, dry_run, disruptive, attempt, plan, created_ms, started_ms, finished_ms, id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
             RETURNING id",
        )?
        .query_row(
            params![
                e.alert_id,
                e.rule,
                e.runbook,
                e.target,
                e.fingerprint,
                e.status.as_str(),
                e.reason,
                e.dry_run,
                e.disruptive,
                e.attempt,
                plan,
                e.created_ms,
                started,
                finished,
                e.id,
            ],
            |r| r.get(0),
        )?;
    Ok(id)
}

/// Runs one round of the engine's writes (see [`WriteOp`]), in order; returns the ids of
/// the messages put in the outbox.
pub(crate) fn apply(conn: &Connection, ops: &[WriteOp]) -> Result<Vec<i64>, JournalError> {
    let mut mails = Vec::new();
    for op in ops {
        match op {
            WriteOp::Create(e) => {
                insert_execution(conn, e)?;
            }
            WriteOp::Status {
                id,
                status,
                reason,
                at_ms,
            } => match set_status(conn, *id, *status, reason.as_deref(), *at_ms) {
                Ok(()) => {}
                Err(
                    e @ (JournalError::NoSuchExecution(_) | JournalError::AlreadyFinished { .. }),
                ) => {
                    tracing::warn!(execution = id, error = %e, "status change not recorded");
                }
                Err(e) => return Err(e),
            },
            WriteOp::Event(e) => insert_event(conn, e)?,
            WriteOp::OpenCircuit(c) => upsert_circuit(conn, c)?,
            WriteOp::CloseCircuit { rule, target } => {
                delete_circuit(conn, rule, target)?;
            }
            WriteOp::Mail(m) => mails.extend(super::outbox::insert(conn, std::slice::from_ref(m))?),
            WriteOp::Decided(id) => {
                conn.prepare_cached("UPDATE alerts SET decided = 1 WHERE id = ?1")?
                    .execute(params![id])?;
            }
        }
    }
    Ok(mails)
}

/// Changes an execution's status (see [`Journal::set_status`](super::Journal::set_status)).
pub(crate) fn set_status(
    conn: &Connection,
    id: i64,
    status: ExecStatus,
    reason: Option<&str>,
    at_ms: i64,
) -> Result<(), JournalError> {
    let current: Option<String> = conn
        .prepare_cached("SELECT status FROM executions WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?;
    let current = current.ok_or(JournalError::NoSuchExecution(id))?;
    let current = ExecStatus::parse(&current).ok_or_else(|| {
        JournalError::Corrupt(format!("execution {id} has unknown status {current:?}"))
    })?;
    if current.is_terminal() {
        return Err(JournalError::AlreadyFinished {
            id,
            status: current.as_str(),
        });
    }
    let running = status == ExecStatus::Running;
    let terminal = status.is_terminal();
    conn.prepare_cached(
        "UPDATE executions SET status = ?2, reason = coalesce(?3, reason), \
         started_ms = CASE WHEN ?4 THEN coalesce(started_ms, ?6) ELSE started_ms END, \
         finished_ms = CASE WHEN ?5 THEN ?6 ELSE finished_ms END \
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        status.as_str(),
        reason,
        running,
        terminal,
        at_ms
    ])?;
    Ok(())
}

/// Inserts a finished step. Fails (foreign key) when the execution does not exist, and
/// (primary key) when that step index was already recorded.
pub(crate) fn insert_step(
    conn: &Connection,
    execution_id: i64,
    s: &StepRecord,
) -> Result<(), JournalError> {
    let argv = serde_json::to_string(&s.argv)?;
    conn.prepare_cached(
        "INSERT INTO steps (execution_id, idx, name, kind, argv, status, exit_code, signal, \
         attempts, started_ms, duration_ms, stdout, stderr, stdout_truncated, \
         stderr_truncated, error) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        execution_id,
        s.index,
        s.name,
        s.kind,
        argv,
        step_status_str(s.status),
        s.exit_code,
        s.signal,
        s.attempts,
        s.started_ms,
        s.duration_ms,
        s.stdout,
        s.stderr,
        s.stdout_truncated,
        s.stderr_truncated,
        s.error,
    ])?;
    Ok(())
}

/// Inserts an event. Fails (foreign key) when it names an execution that does not exist.
pub(crate) fn insert_event(conn: &Connection, e: &Event) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO events (at_ms, execution_id, rule, target, kind, message) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        e.at_ms,
        e.execution_id,
        e.rule,
        e.target,
        e.kind,
        e.message
    ])?;
    Ok(())
}

/// Opens (or re-opens, replacing time and reason) a circuit.
pub(crate) fn upsert_circuit(conn: &Connection, c: &Circuit) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO circuits (rule, target, opened_ms, reason) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (rule, target) DO UPDATE SET \
         opened_ms = excluded.opened_ms, reason = excluded.reason",
    )?
    .execute(params![c.rule, c.target, c.opened_ms, c.reason])?;
    Ok(())
}

/// Closes a circuit; true when one was open.
pub(crate) fn delete_circuit(
    conn: &Connection,
    rule: &str,
    target: &str,
) -> Result<bool, JournalError> {
    let n = conn
        .prepare_cached("DELETE FROM circuits WHERE rule = ?1 AND target = ?2")?
        .execute(params![rule, target])?;
    Ok(n > 0)
}
