//! The write statements. Each function is one request's work; the writer runs it inside
//! the batch transaction, under its own SAVEPOINT.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

use super::error::JournalError;
use super::model::{Circuit, Event, ExecStatus, NewAlert, NewExecution, StepRecord, WriteOp};
use super::schema::step_status_str;

/// A value bound to a statement, borrowed from the row's owner.
type Bound<'a> = ToSqlOutput<'a>;

/// Rows per multi-row INSERT: inside a transaction every statement that can fail keeps a
/// statement journal of the pages it touches first, so one statement per row costs a
/// journal copy of the same few pages per row; one per chunk amortizes it.
const CHUNK: usize = 64;

/// Runs `INSERT INTO {head} VALUES (..), (..)` over `values` (rows of `width` values, one
/// after the other) in chunks of [`CHUNK`] rows, with `tail` appended (a `RETURNING`
/// clause); calls `each` on every returned row. The values borrow from the caller: a
/// storm's rows are bound without a copy of each string, and nothing is allocated and
/// freed per value on the writer thread (glibc's allocator took half of its time).
fn insert_rows(
    conn: &Connection,
    head: &str,
    width: usize,
    tail: &str,
    values: &[Bound<'_>],
    mut each: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> Result<(), JournalError> {
    let one = format!("({})", vec!["?"; width].join(", "));
    for chunk in values.chunks(CHUNK * width) {
        let sql = format!(
            "INSERT INTO {head} VALUES {} {tail}",
            vec![one.as_str(); chunk.len() / width].join(", ")
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut out = stmt.query(rusqlite::params_from_iter(chunk))?;
        while let Some(r) = out.next()? {
            each(r)?;
        }
    }
    Ok(())
}

/// Text, borrowed.
fn text(s: &str) -> Bound<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
}

/// An integer.
fn int(v: i64) -> Bound<'static> {
    ToSqlOutput::Borrowed(ValueRef::Integer(v))
}

/// NULL.
const NULL: Bound<'static> = ToSqlOutput::Borrowed(ValueRef::Null);

/// Text or NULL, borrowed.
fn opt_text(s: Option<&str>) -> Bound<'_> {
    s.map_or(NULL, text)
}

/// An integer or NULL.
fn opt_int(v: Option<i64>) -> Bound<'static> {
    v.map_or(NULL, int)
}

/// Inserts alerts (each also recorded undecided), returning their ids in order.
pub(crate) fn insert_alerts(
    conn: &Connection,
    alerts: &[NewAlert],
) -> Result<Vec<i64>, JournalError> {
    let json: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            Ok((
                serde_json::to_string(&a.labels)?,
                serde_json::to_string(&a.annotations)?,
            ))
        })
        .collect::<Result<_, JournalError>>()?;
    let mut values = Vec::with_capacity(alerts.len() * 12);
    for (a, (labels, annotations)) in alerts.iter().zip(&json) {
        values.extend([
            int(a.received_ms),
            text(&a.source),
            text(&a.receiver),
            text(&a.group_key),
            text(&a.external_url),
            text(&a.fingerprint),
            text(&a.status),
            text(labels),
            text(annotations),
            text(&a.starts_at),
            text(&a.ends_at),
            text(&a.generator_url),
        ]);
    }
    let mut ids = Vec::with_capacity(alerts.len());
    insert_rows(
        conn,
        "alerts (received_ms, source, receiver, group_key, external_url, fingerprint, status, \
         labels, annotations, starts_at, ends_at, generator_url)",
        12,
        "RETURNING id",
        &values,
        |r| {
            ids.push(r.get(0)?);
            Ok(())
        },
    )?;
    // RETURNING gives no order guarantee: ids of one statement are ascending.
    ids.sort_unstable();
    let undecided: Vec<Bound<'_>> = ids.iter().map(|id| int(*id)).collect();
    insert_rows(conn, "undecided (alert_id)", 1, "", &undecided, |_| Ok(()))?;
    Ok(ids)
}

/// Appends the values of an execution row, in [`EXECUTION_INSERT`]'s column order; `plan`
/// is its plan as JSON.
fn execution_row<'a>(e: &'a NewExecution, plan: &'a str, values: &mut Vec<Bound<'a>>) {
    let started = (e.status == ExecStatus::Running).then_some(e.created_ms);
    let finished = e.status.is_terminal().then_some(e.created_ms);
    values.extend([
        opt_int(e.alert_id),
        text(&e.rule),
        text(&e.runbook),
        opt_text(e.target.as_deref()),
        text(&e.fingerprint),
        text(e.status.as_str()),
        text(&e.reason),
        int(i64::from(e.dry_run)),
        int(i64::from(e.disruptive)),
        int(i64::from(e.attempt)),
        text(plan),
        int(e.created_ms),
        opt_int(started),
        opt_int(finished),
        opt_int(e.id),
    ]);
}

/// Inserts executions in multi-row statements.
fn insert_executions(conn: &Connection, executions: &[&NewExecution]) -> Result<(), JournalError> {
    let plans: Vec<String> = executions
        .iter()
        .map(|e| serde_json::to_string(&e.plan))
        .collect::<Result<_, _>>()?;
    let mut values = Vec::with_capacity(executions.len() * 15);
    for (e, plan) in executions.iter().zip(&plans) {
        execution_row(e, plan, &mut values);
    }
    insert_rows(conn, EXECUTION_INSERT, 15, "", &values, |_| Ok(()))
}

/// The executions table and the columns [`execution_row`] fills.
const EXECUTION_INSERT: &str = "executions (alert_id, rule, runbook, target, fingerprint, \
     status, reason, dry_run, disruptive, attempt, plan, created_ms, started_ms, finished_ms, id)";

/// Inserts events in multi-row statements.
fn insert_events(conn: &Connection, events: &[&Event]) -> Result<(), JournalError> {
    let mut values = Vec::with_capacity(events.len() * 6);
    for e in events {
        values.extend([
            int(e.at_ms),
            opt_int(e.execution_id),
            opt_text(e.rule.as_deref()),
            opt_text(e.target.as_deref()),
            text(&e.kind),
            text(&e.message),
        ]);
    }
    insert_rows(
        conn,
        "events (at_ms, execution_id, rule, target, kind, message)",
        6,
        "",
        &values,
        |_| Ok(()),
    )
}

/// Inserts an execution, returning its id. A terminal initial status sets `finished_ms`
/// to `created_ms`; `running` sets `started_ms` to it.
pub(crate) fn insert_execution(conn: &Connection, e: &NewExecution) -> Result<i64, JournalError> {
    let plan = serde_json::to_string(&e.plan)?;
    let mut values = Vec::with_capacity(15);
    execution_row(e, &plan, &mut values);
    let mut id = 0;
    insert_rows(conn, EXECUTION_INSERT, 15, "RETURNING id", &values, |r| {
        id = r.get(0)?;
        Ok(())
    })?;
    Ok(id)
}

/// Runs one round of the engine's writes (see [`WriteOp`]); returns the ids of the
/// messages put in the outbox.
///
/// Executions are created first (in order: nothing in a round refers to an execution
/// before its creation, and everything after may), then the other writes in order, with
/// runs of events in multi-row statements, then the alerts are marked decided.
pub(crate) fn apply(conn: &Connection, ops: &[WriteOp]) -> Result<Vec<i64>, JournalError> {
    let creates: Vec<&NewExecution> = ops
        .iter()
        .filter_map(|op| match op {
            WriteOp::Create(e) => Some(e),
            _ => None,
        })
        .collect();
    insert_executions(conn, &creates)?;
    let mut mails = Vec::new();
    let mut events: Vec<&Event> = Vec::new();
    let mut decided: Vec<i64> = Vec::new();
    for op in ops {
        if !matches!(op, WriteOp::Event(_)) && !events.is_empty() {
            insert_events(conn, &events)?;
            events.clear();
        }
        match op {
            WriteOp::Create(_) => {}
            WriteOp::Event(e) => events.push(e),
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
            WriteOp::Step {
                execution_id,
                record,
            } => {
                // Already there (written by a retry of this round): not worth the round.
                let n: i64 = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM steps WHERE execution_id = ?1 AND idx = ?2",
                    )?
                    .query_row(params![execution_id, record.index], |r| r.get(0))?;
                if n == 0 {
                    insert_step(conn, *execution_id, record)?;
                } else {
                    tracing::warn!(
                        execution = execution_id,
                        step = record.index,
                        "step already recorded"
                    );
                }
            }
            WriteOp::OpenCircuit(c) => upsert_circuit(conn, c)?,
            WriteOp::CircuitHealth {
                rule,
                target,
                healthy_since_ms,
            } => {
                conn.prepare_cached(
                    "UPDATE circuits SET healthy_since_ms = ?3 WHERE rule = ?1 AND target = ?2",
                )?
                .execute(params![rule, target, healthy_since_ms])?;
            }
            WriteOp::CloseCircuit { rule, target } => {
                delete_circuit(conn, rule, target)?;
            }
            WriteOp::Mail(m) => mails.extend(super::outbox::insert(conn, std::slice::from_ref(m))?),
            WriteOp::Decided(id) => decided.push(*id),
            WriteOp::Pause(p) => super::pauses::insert(conn, p)?,
            WriteOp::EndPause { target, at_ms, how } => {
                super::pauses::end(conn, target.as_deref(), *at_ms, *how)?;
            }
        }
    }
    insert_events(conn, &events)?;
    for chunk in decided.chunks(CHUNK * 8) {
        let sql = format!(
            "DELETE FROM undecided WHERE alert_id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        conn.prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(chunk))?;
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
        "INSERT INTO circuits (rule, target, opened_ms, reason, healthy_since_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (rule, target) DO UPDATE SET opened_ms = excluded.opened_ms, \
         reason = excluded.reason, healthy_since_ms = excluded.healthy_since_ms",
    )?
    .execute(params![
        c.rule,
        c.target,
        c.opened_ms,
        c.reason,
        c.healthy_since_ms
    ])?;
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
