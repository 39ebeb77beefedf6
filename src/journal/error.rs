//! What can go wrong in the journal.

use std::path::PathBuf;
use std::sync::Arc;

/// An error from the journal.
///
/// Every write failure surfaces as one of these (the writer never panics); the HTTP layer
/// answers `503 Service Unavailable` when a part of
/// [`record_alerts_in_parts`](super::Journal::record_alerts_in_parts) fails, so
/// Alertmanager retries the webhook later.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file-system operation outside SQLite failed (creating the directory, …).
    #[error("journal {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused a statement of this request; nothing of the request was written.
    #[error("journal database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The batch this request was part of could not be written as a whole (BEGIN or
    /// COMMIT failed, or SQLite rolled the transaction back); nothing of it was written.
    #[error("journal batch failed at {stage}: {source}")]
    Batch {
        /// `begin`, `savepoint`, `release`, `rollback` or `commit`.
        stage: &'static str,
        /// The underlying error, shared by every request of the batch.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// The database file was deleted or replaced after it was opened: writes would go
    /// to a file nobody can read any more, so they are refused until the service restarts.
    #[error("journal file {path} was deleted or replaced since it was opened; restart the service")]
    FileMoved {
        /// The database path.
        path: PathBuf,
    },
    /// A value could not be converted to or from JSON.
    #[error("journal JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The database holds something this version does not understand.
    #[error("journal data is invalid: {0}")]
    Corrupt(String),
    /// The database was written by a newer version of kafka-healing.
    #[error("journal schema version {found} is newer than this binary understands ({supported})")]
    SchemaTooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// SQLite refused to switch the database to write-ahead logging.
    #[error("journal could not enable WAL mode (got journal_mode={0})")]
    NoWal(String),
    /// No execution has this id.
    #[error("no execution with id {0}")]
    NoSuchExecution(i64),
    /// The execution already reached a terminal status, which never changes again.
    #[error("execution {id} is already {status} and cannot change status")]
    AlreadyFinished {
        /// The execution.
        id: i64,
        /// Its terminal status.
        status: &'static str,
    },
    /// The writer thread has stopped; no write can be made.
    #[error("journal writer thread is not running")]
    WriterGone,
    /// Another process holds the journal (two services on one journal would each mark
    /// the other's running work interrupted).
    #[error("journal {path} is in use by another kafka-healing process{holder}")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// ` (pid N)` when the holder wrote its pid.
        holder: String,
    },
}
