//! The outbox: messages written with the result they report, delivered later, retried
//! until sent. Nothing is deleted; a sent message keeps its time and the message it was
//! folded into.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::error::JournalError;
use super::model::{Mail, NewMail};

const COLUMNS: &str = "id, created_ms, kind, key, execution_id, recipients, subject, text, \
     html, sent_ms, sent_with, attempts, next_attempt_ms, last_error, escalated";

/// Inserts pending messages.
pub(crate) fn insert(conn: &Connection, mails: &[NewMail]) -> Result<Vec<i64>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO outbox (created_ms, kind, key, execution_id, recipients, subject, text, \
         html, status, next_attempt_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?1)",
    )?;
    let mut ids = Vec::with_capacity(mails.len());
    for m in mails {
        stmt.execute(params![
            m.created_ms,
            m.kind,
            m.key,
            m.execution_id,
            serde_json::to_string(&m.recipients)?,
            m.subject,
            m.text,
            m.html,
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Mail> {
    let recipients: String = r.get(5)?;
    let recipients = serde_json::from_str(&recipients).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(Mail {
        id: r.get(0)?,
        mail: NewMail {
            created_ms: r.get(1)?,
            kind: r.get(2)?,
            key: r.get(3)?,
            execution_id: r.get(4)?,
            recipients,
            subject: r.get(6)?,
            text: r.get(7)?,
            html: r.get(8)?,
        },
        sent_ms: r.get(9)?,
        sent_with: r.get(10)?,
        attempts: r.get(11)?,
        next_attempt_ms: r.get(12)?,
        last_error: r.get(13)?,
        escalated: r.get(14)?,
    })
}

/// Pending messages due at `now_ms`, oldest first.
pub(crate) fn due(conn: &Connection, now_ms: i64, limit: u32) -> Result<Vec<Mail>, JournalError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_ms <= ?1 \
         ORDER BY id LIMIT ?2"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![now_ms, limit], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Every pending message, oldest first.
pub(crate) fn pending(conn: &Connection) -> Result<Vec<Mail>, JournalError> {
    let sql = format!("SELECT {COLUMNS} FROM outbox WHERE status = 'pending' ORDER BY id");
    let rows = conn
        .prepare_cached(&sql)?
        .query_map([], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// All messages, newest first, at most `limit`.
pub(crate) fn recent(conn: &Connection, limit: u32) -> Result<Vec<Mail>, JournalError> {
    let sql = format!("SELECT {COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?1");
    let rows = conn
        .prepare_cached(&sql)?
        .query_map([limit], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// When a message with `key` was last sent.
pub(crate) fn last_sent(conn: &Connection, key: &str) -> Result<Option<i64>, JournalError> {
    Ok(conn
        .prepare_cached("SELECT max(sent_ms) FROM outbox WHERE key = ?1 AND sent_ms IS NOT NULL")?
        .query_row([key], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten())
}

/// Marks `ids` sent together as message `main` at `at_ms`.
pub(crate) fn sent(
    conn: &Connection,
    ids: &[i64],
    main: i64,
    at_ms: i64,
) -> Result<(), JournalError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE outbox SET status = 'sent', sent_ms = ?2, \
         sent_with = CASE WHEN id = ?3 THEN NULL ELSE ?3 END WHERE id = ?1 AND status = 'pending'",
    )?;
    for id in ids {
        stmt.execute(params![id, at_ms, main])?;
    }
    Ok(())
}

/// Records a failed attempt for `ids` and when to try again.
pub(crate) fn failed(
    conn: &Connection,
    ids: &[i64],
    error: &str,
    next_ms: i64,
) -> Result<(), JournalError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3 \
         WHERE id = ?1 AND status = 'pending'",
    )?;
    for id in ids {
        stmt.execute(params![id, error, next_ms])?;
    }
    Ok(())
}

/// Holds `ids` back until `next_ms` (rate limit; not an attempt).
pub(crate) fn defer(conn: &Connection, ids: &[i64], next_ms: i64) -> Result<(), JournalError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE outbox SET next_attempt_ms = max(next_attempt_ms, ?2) WHERE id = ?1 AND status = 'pending'",
    )?;
    for id in ids {
        stmt.execute(params![id, next_ms])?;
    }
    Ok(())
}

/// Marks `id`'s undeliverability as escalated.
pub(crate) fn escalated(conn: &Connection, id: i64) -> Result<(), JournalError> {
    conn.prepare_cached("UPDATE outbox SET escalated = 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Pending count and the creation time of the oldest pending message.
pub(crate) fn depth(conn: &Connection) -> Result<(u64, Option<i64>), JournalError> {
    Ok(conn
        .prepare_cached("SELECT count(*), min(created_ms) FROM outbox WHERE status = 'pending'")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?)
}
