//! Pauses in the journal (schema version 3): each pause asked for, with how it ended, so
//! a restart restores the ones still in force and `history` can show them all.

use rusqlite::{Connection, Row, params};
use serde::{Deserialize, Serialize};

use super::error::JournalError;

/// A pause to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPause {
    /// Its broker's node_id; `None` for the whole cluster.
    pub target: Option<String>,
    /// When it was set.
    pub from_ms: i64,
    /// When it ends by itself.
    pub until_ms: i64,
    /// The operator's reason.
    pub reason: String,
}

/// How a pause ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseEnd {
    /// Ended early by `resume` (or its route).
    Resumed,
    /// A new pause of the same scope took its place.
    Replaced,
    /// Its time was up.
    Expired,
}

impl PauseEnd {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseEnd::Resumed => "resumed",
            PauseEnd::Replaced => "replaced",
            PauseEnd::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<PauseEnd> {
        Some(match s {
            "resumed" => PauseEnd::Resumed,
            "replaced" => PauseEnd::Replaced,
            "expired" => PauseEnd::Expired,
            _ => return None,
        })
    }
}

/// A pause as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRecord {
    /// Row id (in the order pauses were set).
    pub id: i64,
    /// Its broker; `None` for the cluster.
    pub target: Option<String>,
    /// When it was set.
    pub from_ms: i64,
    /// When it ends (or ended) by itself.
    pub until_ms: i64,
    /// The operator's reason.
    pub reason: String,
    /// When it ended, once the service saw it end (an expiry while the service was down
    /// leaves it unset: it is over once `until_ms` is past).
    pub ended_ms: Option<i64>,
    /// How it ended.
    pub ended_by: Option<PauseEnd>,
}

const COLUMNS: &str = "id, target, from_ms, until_ms, reason, ended_ms, ended_by";

fn from_row(r: &Row<'_>) -> rusqlite::Result<PauseRecord> {
    let how: Option<String> = r.get(6)?;
    let ended_by = match how {
        None => None,
        Some(s) => Some(PauseEnd::parse(&s).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                6,
                rusqlite::types::Type::Text,
                format!("unknown pause end {s:?}").into(),
            )
        })?),
    };
    Ok(PauseRecord {
        id: r.get(0)?,
        target: r.get(1)?,
        from_ms: r.get(2)?,
        until_ms: r.get(3)?,
        reason: r.get(4)?,
        ended_ms: r.get(5)?,
        ended_by,
    })
}

/// Records `p`, ending the pause of the same scope that has not ended yet (`replaced`
/// while in force, `expired` at its end when that is past).
pub(crate) fn insert(conn: &Connection, p: &NewPause) -> Result<(), JournalError> {
    conn.prepare_cached(
        "UPDATE pauses SET ended_ms = min(until_ms, ?2), \
         ended_by = CASE WHEN until_ms <= ?2 THEN 'expired' ELSE 'replaced' END \
         WHERE target IS ?1 AND ended_ms IS NULL",
    )?
    .execute(params![p.target, p.from_ms])?;
    conn.prepare_cached(
        "INSERT INTO pauses (target, from_ms, until_ms, reason) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![p.target, p.from_ms, p.until_ms, p.reason])?;
    Ok(())
}

/// Ends the pause of `target` (`None`: the cluster's) that has not ended yet.
pub(crate) fn end(
    conn: &Connection,
    target: Option<&str>,
    at_ms: i64,
    how: PauseEnd,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "UPDATE pauses SET ended_ms = ?2, ended_by = ?3 WHERE target IS ?1 AND ended_ms IS NULL",
    )?
    .execute(params![target, at_ms, how.as_str()])?;
    Ok(())
}

/// Whether the journal has the pauses table (a read-only look at a journal that a version
/// before schema 3 wrote finds none: no pauses).
fn has_table(conn: &Connection) -> Result<bool, JournalError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'pauses'",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(n > 0)
}

/// Pauses in force at `now`, oldest first.
pub(crate) fn active(conn: &Connection, now: i64) -> Result<Vec<PauseRecord>, JournalError> {
    if !has_table(conn)? {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM pauses WHERE ended_ms IS NULL AND until_ms > ?1 ORDER BY id"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![now], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The newest pauses, newest first, at most `limit`; only those of `target` (and the
/// cluster's, which cover it too) when given.
pub(crate) fn recent(
    conn: &Connection,
    limit: u32,
    target: Option<&str>,
) -> Result<Vec<PauseRecord>, JournalError> {
    if !has_table(conn)? {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM pauses WHERE ?1 IS NULL OR target IS NULL OR target = ?1 \
         ORDER BY id DESC LIMIT ?2"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![target, limit], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, WriteOp};

    fn pause(target: Option<&str>, from_ms: i64, until_ms: i64, reason: &str) -> WriteOp {
        WriteOp::Pause(NewPause {
            target: target.map(str::to_string),
            from_ms,
            until_ms,
            reason: reason.into(),
        })
    }

    /// (target, from, ended, how), newest first.
    type State = (Option<String>, i64, Option<i64>, Option<PauseEnd>);

    fn states(j: &Journal) -> Vec<State> {
        j.recent_pauses(100, None)
            .expect("recent")
            .into_iter()
            .map(|r| (r.target, r.from_ms, r.ended_ms, r.ended_by))
            .collect()
    }

    #[tokio::test]
    async fn pauses_are_recorded_replaced_ended_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (j, _) = Journal::open(&dir.path().join("j.db")).expect("open");
        j.write(vec![
            pause(Some("kafka-2"), 1_000, 60_000, "upgrade"),
            pause(None, 2_000, 10_000, "network"),
        ])
        .await
        .expect("write");
        assert_eq!(j.active_pauses(5_000).expect("active").len(), 2);
        // At 10 s the cluster's is over (the service was down: no end recorded).
        let active = j.active_pauses(10_000).expect("active");
        assert_eq!(active.len(), 1);
        assert_eq!(
            (active[0].target.as_deref(), active[0].reason.as_str()),
            (Some("kafka-2"), "upgrade")
        );
        // A new pause of kafka-2 replaces it; a new cluster pause marks the old one expired.
        j.write(vec![
            pause(Some("kafka-2"), 20_000, 90_000, "upgrade, longer"),
            pause(None, 30_000, 40_000, "again"),
        ])
        .await
        .expect("write");
        assert_eq!(
            states(&j),
            vec![
                (None, 30_000, None, None),
                (Some("kafka-2".into()), 20_000, None, None),
                (None, 2_000, Some(10_000), Some(PauseEnd::Expired)),
                (
                    Some("kafka-2".into()),
                    1_000,
                    Some(20_000),
                    Some(PauseEnd::Replaced)
                ),
            ]
        );
        // Ended early; ending what is not in force changes nothing.
        j.write(vec![
            WriteOp::EndPause {
                target: Some("kafka-2".into()),
                at_ms: 25_000,
                how: PauseEnd::Resumed,
            },
            WriteOp::EndPause {
                target: Some("kafka-3".into()),
                at_ms: 25_000,
                how: PauseEnd::Resumed,
            },
        ])
        .await
        .expect("write");
        assert_eq!(
            states(&j)[1],
            (
                Some("kafka-2".into()),
                20_000,
                Some(25_000),
                Some(PauseEnd::Resumed)
            )
        );
        assert_eq!(j.active_pauses(35_000).expect("active").len(), 1);
        // A broker's history includes the cluster's pauses, which cover it too.
        let k3: Vec<Option<String>> = j
            .recent_pauses(10, Some("kafka-3"))
            .expect("recent")
            .into_iter()
            .map(|r| r.target)
            .collect();
        assert_eq!(k3, vec![None, None]);
        // A pause must end after it starts.
        assert!(
            j.write(vec![pause(None, 5, 5, "zero")]).await.is_err(),
            "CHECK (until_ms > from_ms)"
        );
    }

    #[test]
    fn a_version_2_journal_gets_the_table_and_reads_without_it_find_no_pauses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.db");
        drop(Journal::open(&path).expect("open"));
        // As version 2 left it.
        {
            let c = rusqlite::Connection::open(&path).expect("sqlite");
            c.execute_batch("DROP TABLE pauses; PRAGMA user_version = 2;")
                .expect("downgrade");
        }
        let ro = Journal::open_read_only(&path).expect("read-only");
        assert_eq!(ro.recent_pauses(10, None).expect("no table: none"), vec![]);
        assert_eq!(ro.active_pauses(0).expect("no table: none"), vec![]);
        drop(ro);
        let (j, _) = Journal::open(&path).expect("open migrates");
        assert_eq!(j.active_pauses(0).expect("table"), vec![]);
        let c = rusqlite::Connection::open(&path).expect("sqlite");
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(v, super::super::schema::SCHEMA_VERSION);
    }
}
