//! The SQLite schema, connection set-up and the text forms of enums.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::error::JournalError;
use super::model::StepStatus;

/// Schema version stored in `PRAGMA user_version`. 3: the `pauses` table and the circuits'
/// `healthy_since_ms` (an older journal gets both at the first start of this version). 4:
/// an execution may be `refused` (by a precondition); an older `executions` table is
/// rebuilt with the wider CHECK, as SQLite cannot change one in place.
pub(crate) const SCHEMA_VERSION: i64 = 4;

/// The executions table and its indexes (also used to rebuild an older one).
const EXECUTIONS: &str = r#"
CREATE TABLE IF NOT EXISTS executions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id    INTEGER REFERENCES alerts (id),
    rule        TEXT    NOT NULL,
    runbook     TEXT    NOT NULL,
    target      TEXT,
    fingerprint TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded',
                    'failed', 'escalated', 'cancelled', 'interrupted', 'skipped', 'dry_run',
                    'refused')),
    reason      TEXT    NOT NULL,
    dry_run     INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    disruptive  INTEGER NOT NULL CHECK (disruptive IN (0, 1)),
    attempt     INTEGER NOT NULL CHECK (attempt >= 0),
    plan        TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    started_ms  INTEGER,
    finished_ms INTEGER
);
CREATE INDEX IF NOT EXISTS executions_by_created ON executions (created_ms, id);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, created_ms);
CREATE INDEX IF NOT EXISTS executions_by_rule ON executions (rule, created_ms);
CREATE INDEX IF NOT EXISTS executions_by_target ON executions (target, created_ms);
CREATE INDEX IF NOT EXISTS executions_by_rule_target
    ON executions (rule, target, created_ms);
"#;

/// How long a connection waits for a lock held by another connection.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Tables and indexes. Times are INTEGER Unix milliseconds; labels, annotations, plans
/// and argv are JSON text; booleans are 0/1.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms   INTEGER NOT NULL,
    source        TEXT    NOT NULL,
    receiver      TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    external_url  TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    annotations   TEXT    NOT NULL,
    starts_at     TEXT    NOT NULL,
    ends_at       TEXT    NOT NULL,
    generator_url TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_fingerprint ON alerts (fingerprint, id);


CREATE TABLE IF NOT EXISTS steps (
    execution_id     INTEGER NOT NULL REFERENCES executions (id),
    idx              INTEGER NOT NULL CHECK (idx >= 0),
    name             TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    argv             TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('succeeded', 'failed',
                         'timed_out', 'not_run')),
    exit_code        INTEGER,
    signal           INTEGER,
    attempts         INTEGER NOT NULL CHECK (attempts >= 0),
    started_ms       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    stdout           TEXT    NOT NULL,
    stderr           TEXT    NOT NULL,
    stdout_truncated INTEGER NOT NULL CHECK (stdout_truncated IN (0, 1)),
    stderr_truncated INTEGER NOT NULL CHECK (stderr_truncated IN (0, 1)),
    error            TEXT,
    PRIMARY KEY (execution_id, idx)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms        INTEGER NOT NULL,
    execution_id INTEGER REFERENCES executions (id),
    rule         TEXT,
    target       TEXT,
    kind         TEXT    NOT NULL,
    message      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_execution ON events (execution_id, id);

CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms      INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    execution_id    INTEGER REFERENCES executions (id),
    recipients      TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    html            TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sent')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    sent_ms         INTEGER,
    sent_with       INTEGER,
    escalated       INTEGER NOT NULL DEFAULT 0 CHECK (escalated IN (0, 1))
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_ms);
CREATE INDEX IF NOT EXISTS outbox_by_key ON outbox (key, sent_ms);

-- Version 2: alerts journaled and not decided by the engine yet, so a restart decides
-- what a crash left undecided (an older journal's alerts count as decided). Kept apart
-- from `alerts` so that marking thousands decided touches a few small pages.
CREATE TABLE IF NOT EXISTS undecided (
    alert_id INTEGER PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS circuits (
    rule      TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    opened_ms INTEGER NOT NULL,
    reason    TEXT    NOT NULL,
    -- Version 3: since when the circuit's problem has been resolved (it closes by itself
    -- circuit_reset_seconds later, also across a restart). Added to older journals by
    -- migrate().
    healthy_since_ms INTEGER,
    PRIMARY KEY (rule, target)
) WITHOUT ROWID;

-- Version 3: pauses an operator set ("hands off kafka-2 for 30 minutes"), one row per
-- pause, kept after it ends (how: resumed, replaced or expired). `target` is NULL for the
-- whole cluster. In force: ended_ms IS NULL AND until_ms > now.
CREATE TABLE IF NOT EXISTS pauses (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    target   TEXT,
    from_ms  INTEGER NOT NULL,
    until_ms INTEGER NOT NULL CHECK (until_ms > from_ms),
    reason   TEXT    NOT NULL,
    ended_ms INTEGER,
    ended_by TEXT CHECK (ended_by IN ('resumed', 'replaced', 'expired'))
);
CREATE INDEX IF NOT EXISTS pauses_open ON pauses (ended_ms, target);
"#;

/// Opens the read-write connection: WAL, `synchronous=FULL`, foreign keys, busy timeout.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::NoWal(mode));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Each request runs under a SAVEPOINT, whose undo pages go to a statement journal: in
    // memory, not a temp file written page by page.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Multi-row statements of several sizes (see write.rs) are prepared once each.
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "foreign_keys", true)?;
    let fk: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    if !fk {
        return Err(JournalError::Corrupt(
            "SQLite refused to enable foreign keys".to_owned(),
        ));
    }
    Ok(conn)
}

/// Opens a read-only connection (used by the read API, never blocked by the writer).
pub(crate) fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Creates the tables and indexes if missing, in one transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), JournalError> {
    widen_executions(conn)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(JournalError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(EXECUTIONS)?;
    // A journal from before version 3 has `circuits` without the column.
    let has_health: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('circuits') WHERE name = 'healthy_since_ms'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_health {
        tx.execute_batch("ALTER TABLE circuits ADD COLUMN healthy_since_ms INTEGER")?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Version 4: rebuilds an `executions` table whose status CHECK predates `refused` (the
/// documented way to change a constraint in SQLite: new table, copy, drop, rename), with
/// foreign keys off meanwhile (steps, events and mail rows keep their execution ids).
fn widen_executions(conn: &mut Connection) -> Result<(), JournalError> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'executions'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if sql.is_none_or(|s| s.contains("'refused'")) {
        return Ok(());
    }
    conn.pragma_update(None, "foreign_keys", false)?;
    let rebuilt = (|| -> Result<(), JournalError> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let table = EXECUTIONS.replacen(
            "CREATE TABLE IF NOT EXISTS executions (",
            "CREATE TABLE executions_v4 (",
            1,
        );
        let create = &table[..table.find(");").map_or(table.len(), |i| i + 2)];
        tx.execute_batch(create)?;
        tx.execute_batch(
            "INSERT INTO executions_v4 SELECT * FROM executions;
             DROP TABLE executions;
             ALTER TABLE executions_v4 RENAME TO executions;",
        )?;
        tx.execute_batch(EXECUTIONS)?;
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(JournalError::Corrupt(format!(
                "{broken} row(s) lost their execution while `executions` was rebuilt"
            )));
        }
        tx.commit()?;
        Ok(())
    })();
    conn.pragma_update(None, "foreign_keys", true)?;
    rebuilt
}

/// The stored form of a step status.
pub(crate) fn step_status_str(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::TimedOut => "timed_out",
        StepStatus::NotRun => "not_run",
    }
}

/// Parses [`step_status_str`]'s output.
pub(crate) fn parse_step_status(s: &str) -> Option<StepStatus> {
    Some(match s {
        "succeeded" => StepStatus::Succeeded,
        "failed" => StepStatus::Failed,
        "timed_out" => StepStatus::TimedOut,
        "not_run" => StepStatus::NotRun,
        _ => return None,
    })
}
