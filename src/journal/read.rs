//! Queries: how rows become model values. Used by the read pool and by recovery.

use std::collections::BTreeMap;

use rusqlite::types::{Type, Value};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::error::JournalError;
use super::model::{Circuit, Event, ExecStatus, Execution, ExecutionFilter, NewAlert, StepRecord};
use super::schema::parse_step_status;

/// Default number of executions listed.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
/// Most executions listed at once.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// The columns [`execution_from_row`] reads, in order.
pub(crate) const EXECUTION_COLUMNS: &str = "id, alert_id, rule, runbook, target, fingerprint, \
     status, reason, dry_run, disruptive, attempt, plan, created_ms, started_ms, finished_ms";

const STEP_COLUMNS: &str = "idx, name, kind, argv, status, exit_code, signal, attempts, \
     started_ms, duration_ms, stdout, stderr, stdout_truncated, stderr_truncated, error";

const ALERT_COLUMNS: &str = "id, received_ms, source, receiver, group_key, external_url, \
     fingerprint, status, labels, annotations, starts_at, ends_at, generator_url";

/// A conversion error for column `idx`.
fn bad(idx: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, msg.into())
}

/// Parses the JSON text in column `idx`.
fn json_col<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| bad(idx, format!("invalid JSON: {e}")))
}

/// An execution from a row selected with [`EXECUTION_COLUMNS`].
pub(crate) fn execution_from_row(row: &Row<'_>) -> rusqlite::Result<Execution> {
    let status: String = row.get(6)?;
    let status = ExecStatus::parse(&status)
        .ok_or_else(|| bad(6, format!("unknown execution status {status:?}")))?;
    Ok(Execution {
        id: row.get(0)?,
        alert_id: row.get(1)?,
        rule: row.get(2)?,
        runbook: row.get(3)?,
        target: row.get(4)?,
        fingerprint: row.get(5)?,
        status,
        reason: row.get(7)?,
        dry_run: row.get(8)?,
        disruptive: row.get(9)?,
        attempt: row.get(10)?,
        plan: json_col(row, 11)?,
        created_ms: row.get(12)?,
        started_ms: row.get(13)?,
        finished_ms: row.get(14)?,
    })
}

fn step_from_row(row: &Row<'_>) -> rusqlite::Result<StepRecord> {
    let status: String = row.get(4)?;
    let status = parse_step_status(&status)
        .ok_or_else(|| bad(4, format!("unknown step status {status:?}")))?;
    Ok(StepRecord {
        index: row.get(0)?,
        name: row.get(1)?,
        kind: row.get(2)?,
        argv: json_col(row, 3)?,
        status,
        exit_code: row.get(5)?,
        signal: row.get(6)?,
        attempts: row.get(7)?,
        started_ms: row.get(8)?,
        duration_ms: row.get(9)?,
        stdout: row.get(10)?,
        stderr: row.get(11)?,
        stdout_truncated: row.get(12)?,
        stderr_truncated: row.get(13)?,
        error: row.get(14)?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        at_ms: row.get(0)?,
        execution_id: row.get(1)?,
        rule: row.get(2)?,
        target: row.get(3)?,
        kind: row.get(4)?,
        message: row.get(5)?,
    })
}

fn alert_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, NewAlert)> {
    let labels: BTreeMap<String, String> = json_col(row, 8)?;
    let annotations: BTreeMap<String, String> = json_col(row, 9)?;
    Ok((
        row.get(0)?,
        NewAlert {
            received_ms: row.get(1)?,
            source: row.get(2)?,
            receiver: row.get(3)?,
            group_key: row.get(4)?,
            external_url: row.get(5)?,
            fingerprint: row.get(6)?,
            status: row.get(7)?,
            labels,
            annotations,
            starts_at: row.get(10)?,
            ends_at: row.get(11)?,
            generator_url: row.get(12)?,
        },
    ))
}

/// One execution by id.
pub(crate) fn execution(conn: &Connection, id: i64) -> Result<Option<Execution>, JournalError> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id], execution_from_row)
        .optional()?)
}

/// Executions matching `f`, newest first.
pub(crate) fn list_executions(
    conn: &Connection,
    f: &ExecutionFilter,
) -> Result<Vec<Execution>, JournalError> {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(s) = f.status {
        clauses.push("status = ?");
        args.push(Value::Text(s.as_str().to_owned()));
    }
    if let Some(r) = &f.rule {
        clauses.push("rule = ?");
        args.push(Value::Text(r.clone()));
    }
    if let Some(t) = &f.target {
        clauses.push("target = ?");
        args.push(Value::Text(t.clone()));
    }
    if let Some(since) = f.since_ms {
        clauses.push("created_ms >= ?");
        args.push(Value::Integer(since));
    }
    let limit = f.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    args.push(Value::Integer(i64::from(limit)));
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions {filter} \
         ORDER BY created_ms DESC, id DESC LIMIT ?"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), execution_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// An execution with its steps (by index) and events (in order recorded).
pub(crate) fn execution_detail(
    conn: &Connection,
    id: i64,
) -> Result<Option<super::ExecutionDetail>, JournalError> {
    // One read transaction so the three queries see the same snapshot.
    let tx = conn.unchecked_transaction()?;
    let Some(exec) = execution(&tx, id)? else {
        return Ok(None);
    };
    let sql = format!("SELECT {STEP_COLUMNS} FROM steps WHERE execution_id = ?1 ORDER BY idx");
    let steps = tx
        .prepare_cached(&sql)?
        .query_map(params![id], step_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let events = tx
        .prepare_cached(
            "SELECT at_ms, execution_id, rule, target, kind, message FROM events \
             WHERE execution_id = ?1 ORDER BY id",
        )?
        .query_map(params![id], event_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.finish()?;
    Ok(Some((exec, steps, events)))
}

/// Executions of `rule` (and `target`, when given) created at or after `since_ms`,
/// oldest first.
pub(crate) fn recent_executions(
    conn: &Connection,
    rule: &str,
    target: Option<&str>,
    since_ms: i64,
) -> Result<Vec<Execution>, JournalError> {
    let rows = match target {
        Some(t) => {
            let sql = format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions \
                 WHERE rule = ?1 AND target = ?2 AND created_ms >= ?3 \
                 ORDER BY created_ms, id"
            );
            conn.prepare_cached(&sql)?
                .query_map(params![rule, t, since_ms], execution_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
        None => {
            let sql = format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions \
                 WHERE rule = ?1 AND created_ms >= ?2 ORDER BY created_ms, id"
            );
            conn.prepare_cached(&sql)?
                .query_map(params![rule, since_ms], execution_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    Ok(rows)
}

/// Every open circuit, by rule then target.
pub(crate) fn open_circuits(conn: &Connection) -> Result<Vec<Circuit>, JournalError> {
    let rows = conn
        .prepare_cached(
            "SELECT rule, target, opened_ms, reason, healthy_since_ms FROM circuits \
             ORDER BY rule, target",
        )?
        .query_map([], |r| {
            Ok(Circuit {
                rule: r.get(0)?,
                target: r.get(1)?,
                opened_ms: r.get(2)?,
                reason: r.get(3)?,
                healthy_since_ms: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The newest resolved alerts among the last `scan` journaled, at most `limit`, oldest first,
/// as (fingerprint, startsAt text). Bounded by `scan` so a journal of millions of firing
/// alerts is not read whole at start-up.
pub(crate) fn recent_resolves(
    conn: &Connection,
    scan: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, JournalError> {
    let mut rows = conn
        .prepare_cached(
            "SELECT fingerprint, starts_at FROM alerts \
             WHERE id > (SELECT coalesce(max(id), 0) FROM alerts) - ?1 AND status = 'resolved' \
             ORDER BY id DESC LIMIT ?2",
        )?
        .query_map(params![scan, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
    rows.reverse();
    Ok(rows)
}

/// Number of journaled alerts.
pub(crate) fn alert_count(conn: &Connection) -> Result<u64, JournalError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM alerts")?
        .query_row([], |r| r.get(0))?;
    u64::try_from(n).map_err(|_| JournalError::Corrupt(format!("negative alert count {n}")))
}

/// Alerts with this fingerprint, oldest first, with their ids.
pub(crate) fn alerts_by_fingerprint(
    conn: &Connection,
    fp: &str,
) -> Result<Vec<(i64, NewAlert)>, JournalError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE fingerprint = ?1 ORDER BY id");
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![fp], alert_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Alerts the engine has not decided yet with ids above `after_id`, oldest first, at most
/// `limit`.
pub(crate) fn undecided_alerts(
    conn: &Connection,
    after_id: i64,
    limit: u32,
) -> Result<Vec<(i64, NewAlert)>, JournalError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE id IN \
         (SELECT alert_id FROM undecided WHERE alert_id > ?1 ORDER BY alert_id LIMIT ?2) \
         ORDER BY id"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![after_id, limit], alert_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The highest execution id ever given, also of rows since deleted (0 for none).
pub(crate) fn last_execution_id(conn: &Connection) -> Result<i64, JournalError> {
    let id = conn.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'executions'), 0), \
         coalesce((SELECT max(id) FROM executions), 0))",
        [],
        |r| r.get(0),
    )?;
    Ok(id)
}
