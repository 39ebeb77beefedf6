//! The journal: durable record of alerts, executions, steps and policy events (SQLite).
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous=FULL`: every write call resolves only
//! after the transaction containing it is committed and fsynced. Writes are funnelled to
//! one writer thread that commits whatever is queued together (group commit, one fsync per
//! batch), so many concurrent writers cost few fsyncs. Within a batch each request runs
//! under its own SAVEPOINT: a request that fails is rolled back alone and answered with
//! its error; the others commit.
//!
//! # Failures
//!
//! Write failures are returned as [`JournalError`], never panics: a read-only or full
//! disk, an I/O error, or the database file being deleted or replaced after opening
//! (checked before every batch, [`JournalError::FileMoved`]). The HTTP layer answers
//! `503 Service Unavailable` when any part of
//! [`Journal::record_alerts_in_parts`] fails, so Alertmanager retries the webhook;
//! nothing is acknowledged that is not journaled.
//!
//! # Reads
//!
//! The read methods are synchronous and use their own read-only connections, so they are
//! never blocked by the writer (WAL readers see the last committed state). They do disk
//! I/O: from async code call them through `tokio::task::spawn_blocking` (the handle is
//! cheap to clone into the closure).
//!
//! # Restart
//!
//! [`Journal::open`] marks executions left `running` as `interrupted` (returned to the
//! caller to log and report) and executions left `queued` as `cancelled`; nothing is
//! re-run blindly.

pub mod audit;
mod error;
pub mod model;
mod outbox;
mod pauses;
mod profile;
mod read;
mod recover;
mod schema;
mod write;
mod writer;

use crate::clock::now_ms;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

pub use error::JournalError;
pub use model::*;
pub use pauses::{NewPause, PauseEnd, PauseRecord};
pub use recover::{CANCELLED_REASON, INTERRUPTED_REASON};

pub use writer::INTAKE_PART;
use writer::{FileId, Job, Lane, Pending, Queue, Shared};

/// An execution with its steps (by index) and its events (in recorded order).
pub type ExecutionDetail = (Execution, Vec<StepRecord>, Vec<Event>);

/// Idle read-only connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;

/// Handle to the journal. Cheap to clone; all clones share one writer thread and one
/// read pool. Dropping the last clone lets the writer finish what is queued, then closes
/// the database and joins the writer thread (which blocks for at most one batch).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    tx: Option<Queue>,
    writer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    shared: Arc<Shared>,
    /// The exclusive lock on `<journal>.lock`, held while the journal is open for writing.
    _lock: Option<std::fs::File>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Readers first, so the writer's connection is the last one and checkpoints.
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // Closing the channel ends the writer once it has drained the queue.
        drop(self.tx.take());
        if let Some(h) = self.writer.take()
            && h.join().is_err()
        {
            tracing::error!("journal writer thread panicked");
        }
    }
}

/// Write-path counters (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    /// Batches committed (each one transaction, one fsync).
    pub commits: u64,
    /// Write requests answered, successfully or not.
    pub requests: u64,
    /// Batches that could not be committed (every request in them got an error).
    pub failed_batches: u64,
    /// Most requests seen in one batch.
    pub largest_batch: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Takes the exclusive lock beside the journal: one writing process per journal. The
/// lock is released by the OS when the process ends, even by SIGKILL.
fn lock(path: &Path) -> Result<std::fs::File, JournalError> {
    use std::io::{Read, Seek, Write};
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let io = |source| JournalError::Io {
        path: lock_path.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(JournalError::Locked {
                path: lock_path.clone(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    write!(f, "{}", std::process::id()).map_err(io)?;
    Ok(f)
}

impl Journal {
    /// Opens (creating if needed, with its parent directory) the journal at `path`.
    ///
    /// Sets WAL mode, `synchronous=FULL`, foreign keys and a busy timeout, creates the
    /// schema, then in one transaction marks executions left `running` as `interrupted`
    /// (reason suffixed with [`INTERRUPTED_REASON`], `finished_ms` now, an `interrupted`
    /// event each) and executions left `queued` as `cancelled` (reason
    /// [`CANCELLED_REASON`], a `cancelled` event each). Returns the interrupted
    /// executions, as now stored, so the caller can log and report them.
    ///
    /// Blocking: call it at start-up, or through `spawn_blocking`.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Execution>), JournalError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| JournalError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let lock = lock(path)?;
        let mut conn = schema::open_writer(path)?;
        schema::migrate(&mut conn)?;
        let interrupted = recover::recover(&mut conn, now_ms())?;
        let file = FileId::of(path).map_err(|source| JournalError::Io {
            path: path.to_owned(),
            source,
        })?;
        // One reader up front, so a journal that cannot be read fails here, not later.
        let reader = schema::open_reader(path)?;
        let shared = Arc::new(Shared::new());
        let (tx, writer) = writer::spawn(
            conn,
            path.to_owned(),
            file,
            Arc::clone(&shared),
            writer::ENGINE_LINGER,
        )?;
        tracing::info!(
            path = %path.display(),
            interrupted = interrupted.len(),
            "journal opened"
        );
        let journal = Journal {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                tx: Some(tx),
                writer: Some(writer),
                readers: Mutex::new(vec![reader]),
                shared,
                _lock: Some(lock),
            }),
        };
        Ok((journal, interrupted))
    }

    /// Opens an existing journal for reading only: no recovery, no writer thread, so it is
    /// safe while `serve` runs (for `kafka-healing history`). Writes fail with
    /// [`JournalError::WriterGone`].
    pub fn open_read_only(path: &Path) -> Result<Journal, JournalError> {
        if !path.exists() {
            return Err(JournalError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no journal here yet"),
            });
        }
        let reader = schema::open_reader(path)?;
        Ok(Journal {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                tx: None,
                writer: None,
                readers: Mutex::new(vec![reader]),
                shared: Arc::new(Shared::new()),
                _lock: None,
            }),
        })
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether the journal can take writes: the writer thread is alive and the last batch
    /// it tried (if any) committed. False after a write failure until a batch commits
    /// again.
    pub fn is_healthy(&self) -> bool {
        let alive = self.inner.writer.as_ref().is_some_and(|h| !h.is_finished());
        alive && self.inner.shared.last_ok.load(Ordering::Acquire)
    }

    /// Batches committed so far (each is one transaction and one fsync).
    pub fn commits(&self) -> u64 {
        self.inner.shared.commits.load(Ordering::Relaxed)
    }

    /// Write-path counters.
    pub fn stats(&self) -> JournalStats {
        let s = &self.inner.shared;
        JournalStats {
            commits: s.commits.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            failed_batches: s.failed_batches.load(Ordering::Relaxed),
            largest_batch: s.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// Queues `work` for the writer and waits for the commit that contains it. A request
    /// already queued is written even if the caller stops waiting.
    async fn submit<T, F>(&self, work: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    {
        self.submit_in(Lane::Engine, 1, work).await
    }

    /// Like [`submit`](Self::submit), in `lane`, for `weight` rows (how the writer
    /// bounds a batch's work).
    async fn submit_in<T, F>(&self, lane: Lane, weight: usize, work: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    {
        let answer = self.send_in(lane, weight, work)?;
        answer.await.map_err(|_| JournalError::WriterGone)?
    }

    /// Queues a write request now (so requests sent one after the other are queued in
    /// that order); its answer comes on the returned receiver.
    fn send_in<T, F>(
        &self,
        lane: Lane,
        weight: usize,
        work: F,
    ) -> Result<oneshot::Receiver<Result<T, JournalError>>, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> =
            Box::new(Pending::new(Box::new(work), lane, reply).weighing(weight));
        self.inner
            .tx
            .as_ref()
            .ok_or(JournalError::WriterGone)?
            .send(job)
            .map_err(|_| JournalError::WriterGone)?;
        Ok(answer)
    }

    /// Journals alerts, returning their ids in order; an error when any of them could not
    /// be journaled (the webhook must then not be acknowledged: the server answers 503 so
    /// Alertmanager retries). A request of more than [`INTAKE_PART`] alerts is journaled
    /// in parts (see [`record_alerts_in_parts`](Self::record_alerts_in_parts)); parts
    /// committed before an error stay journaled, undecided, and are decided at the next
    /// start.
    pub async fn record_alerts(&self, alerts: Vec<NewAlert>) -> Result<Vec<i64>, JournalError> {
        let recorded = self.record_alerts_in_parts(alerts).await;
        match recorded.error {
            Some(e) => Err(e),
            None => Ok(recorded.ids.into_iter().flatten().collect()),
        }
    }

    /// Journals alerts in parts of at most [`INTAKE_PART`], each part all or none, and
    /// waits for every part. The writer commits a part at a time, so a one-alert request
    /// queued behind a 500-alert one waits for one part's commit, not for all of it. The
    /// caller gets the id of every alert whose part committed: those are journaled, and
    /// must be decided even when another part failed.
    pub async fn record_alerts_in_parts(&self, alerts: Vec<NewAlert>) -> Recorded {
        let total = alerts.len();
        let mut rest = alerts;
        let mut parts = Vec::with_capacity(total.div_ceil(INTAKE_PART));
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(INTAKE_PART));
            let part = std::mem::replace(&mut rest, tail);
            let n = part.len();
            parts.push((
                n,
                self.send_in(Lane::Intake, n, move |c| {
                    write::insert_alerts(c, &part).map(|ids| (ids, Freed(part)))
                }),
            ));
        }
        let mut recorded = Recorded {
            ids: Vec::with_capacity(total),
            error: None,
        };
        for (n, sent) in parts {
            let answer = match sent {
                Ok(answer) => answer.await.map_err(|_| JournalError::WriterGone),
                Err(e) => Err(e),
            };
            match answer.and_then(|r| r) {
                Ok((ids, _)) => recorded.ids.extend(ids.into_iter().map(Some)),
                Err(e) => {
                    recorded.ids.extend(std::iter::repeat_n(None, n));
                    recorded.error.get_or_insert(e);
                }
            }
        }
        recorded
    }

    /// Creates an execution, returning its id. `started_ms` is set to `created_ms` when
    /// the initial status is `running`, `finished_ms` when it is terminal.
    pub async fn create_execution(&self, e: NewExecution) -> Result<i64, JournalError> {
        self.submit(move |c| write::insert_execution(c, &e)).await
    }

    /// Changes an execution's status at `at_ms`: sets `started_ms` when it becomes
    /// `running` (if not set yet) and `finished_ms` when it becomes terminal; `reason`
    /// replaces the stored reason when `Some`. Fails with
    /// [`JournalError::NoSuchExecution`] for an unknown id and
    /// [`JournalError::AlreadyFinished`] when the execution is already terminal.
    pub async fn set_status(
        &self,
        id: i64,
        status: ExecStatus,
        reason: Option<String>,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        self.submit(move |c| write::set_status(c, id, status, reason.as_deref(), at_ms))
            .await
    }

    /// Records a finished step of an execution. Fails when the execution does not exist
    /// or that step index was already recorded.
    pub async fn record_step(
        &self,
        execution_id: i64,
        step: StepRecord,
    ) -> Result<(), JournalError> {
        self.submit(move |c| write::insert_step(c, execution_id, &step))
            .await
    }

    /// Records an event. Fails when it names an execution that does not exist.
    pub async fn add_event(&self, e: Event) -> Result<(), JournalError> {
        self.submit(move |c| write::insert_event(c, &e)).await
    }

    /// Opens a circuit for (rule, target), replacing time and reason if already open.
    pub async fn open_circuit(&self, c: Circuit) -> Result<(), JournalError> {
        self.submit(move |conn| write::upsert_circuit(conn, &c))
            .await
    }

    /// Closes the circuit for (rule, target); true when one was open.
    pub async fn close_circuit(&self, rule: &str, target: &str) -> Result<bool, JournalError> {
        let (rule, target) = (rule.to_owned(), target.to_owned());
        self.submit(move |c| write::delete_circuit(c, &rule, &target))
            .await
    }

    /// Ends an execution and puts the messages reporting it in the outbox, in one
    /// transaction: the result is never recorded without its messages, nor the reverse.
    pub async fn finish_execution(
        &self,
        id: i64,
        status: ExecStatus,
        reason: String,
        at_ms: i64,
        mails: Vec<NewMail>,
    ) -> Result<Vec<i64>, JournalError> {
        self.submit(move |c| {
            write::set_status(c, id, status, Some(&reason), at_ms)?;
            outbox::insert(c, &mails)
        })
        .await
    }

    /// Commits one round of the engine's writes in one transaction (all or none), in
    /// order; returns the ids of the messages it put in the outbox.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<i64>, JournalError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let weight = ops.len();
        // The ops come back to be freed here, not on the writer thread (see `Freed`).
        self.submit_in(Lane::Engine, weight, move |c| {
            write::apply(c, &ops).map(|ids| (ids, Freed(ops)))
        })
        .await
        .map(|(ids, _)| ids)
    }

    /// Puts messages in the outbox.
    pub async fn enqueue_mails(&self, mails: Vec<NewMail>) -> Result<Vec<i64>, JournalError> {
        if mails.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(move |c| outbox::insert(c, &mails)).await
    }

    /// Marks messages `ids` as sent together as message `main`.
    pub async fn mails_sent(
        &self,
        ids: Vec<i64>,
        main: i64,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        self.submit(move |c| outbox::sent(c, &ids, main, at_ms))
            .await
    }

    /// Records a failed delivery of `ids`; they are due again at `next_ms`.
    pub async fn mails_failed(
        &self,
        ids: Vec<i64>,
        error: String,
        next_ms: i64,
    ) -> Result<(), JournalError> {
        self.submit(move |c| outbox::failed(c, &ids, &error, next_ms))
            .await
    }

    /// Holds `ids` back until `next_ms` (rate limit).
    pub async fn mails_deferred(&self, ids: Vec<i64>, next_ms: i64) -> Result<(), JournalError> {
        self.submit(move |c| outbox::defer(c, &ids, next_ms)).await
    }

    /// Marks message `id`'s undeliverability as escalated.
    pub async fn mail_escalated(&self, id: i64) -> Result<(), JournalError> {
        self.submit(move |c| outbox::escalated(c, id)).await
    }

    /// Pending messages due at `now_ms`, oldest first. Blocking.
    pub fn due_mails(&self, now_ms: i64, limit: u32) -> Result<Vec<Mail>, JournalError> {
        self.read(|c| outbox::due(c, now_ms, limit))
    }

    /// Every pending message, oldest first. Blocking.
    pub fn pending_mails(&self) -> Result<Vec<Mail>, JournalError> {
        self.read(outbox::pending)
    }

    /// The newest messages, sent or not. Blocking.
    pub fn recent_mails(&self, limit: u32) -> Result<Vec<Mail>, JournalError> {
        self.read(|c| outbox::recent(c, limit))
    }

    /// When a message with `key` was last sent. Blocking.
    pub fn last_mail_sent(&self, key: &str) -> Result<Option<i64>, JournalError> {
        self.read(|c| outbox::last_sent(c, key))
    }

    /// Pending messages and the creation time of the oldest. Blocking.
    pub fn outbox_depth(&self) -> Result<(u64, Option<i64>), JournalError> {
        self.read(outbox::depth)
    }

    /// Committed events with an id above `after`, oldest first, at most `limit`
    /// (the audit file's source). Blocking.
    pub fn events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<audit::AuditEvent>, JournalError> {
        self.read(|c| audit::events_after(c, after, limit))
    }

    /// Runs `f` on a pooled read-only connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let pooled = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => schema::open_reader(&self.inner.path)?,
        };
        let result = f(&conn);
        let mut pool = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }

    /// Executions matching `f`, newest first (by creation time, then id); at most
    /// `f.limit` (default 100, capped at 1000). Blocking (see the module docs).
    pub fn list_executions(&self, f: &ExecutionFilter) -> Result<Vec<Execution>, JournalError> {
        self.read(|c| read::list_executions(c, f))
    }

    /// An execution with its steps (by index) and events (in recorded order), or `None`.
    /// Blocking (see the module docs).
    pub fn get_execution(&self, id: i64) -> Result<Option<ExecutionDetail>, JournalError> {
        self.read(|c| read::execution_detail(c, id))
    }

    /// Executions of `rule` created at or after `since_ms`, oldest first; only those of
    /// `target` when it is `Some`, every target (including none) when it is `None`. Used
    /// to rebuild cooldown and attempt state after a restart. Blocking (see the module
    /// docs).
    pub fn recent_executions(
        &self,
        rule: &str,
        target: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<Execution>, JournalError> {
        self.read(|c| read::recent_executions(c, rule, target, since_ms))
    }

    /// Every open circuit, by rule then target. Blocking (see the module docs).
    pub fn open_circuits(&self) -> Result<Vec<Circuit>, JournalError> {
        self.read(read::open_circuits)
    }

    /// Alerts not decided yet (journaled, then the service stopped before the engine
    /// decided them) with ids above `after_id`, oldest first, at most `limit`. Blocking
    /// (see the module docs).
    pub fn undecided_alerts(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, NewAlert)>, JournalError> {
        self.read(|c| read::undecided_alerts(c, after_id, limit))
    }

    /// The highest execution id given so far (0 for none); the engine gives the next
    /// ones itself. Blocking (see the module docs).
    pub fn last_execution_id(&self) -> Result<i64, JournalError> {
        self.read(read::last_execution_id)
    }

    /// The newest resolved alerts among the last `scan` journaled (at most `limit`), oldest
    /// first, as (fingerprint, startsAt text). Blocking (see the module docs).
    pub fn recent_resolves(
        &self,
        scan: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, JournalError> {
        self.read(move |c| read::recent_resolves(c, scan, limit))
    }

    /// Pauses in force at `now`, oldest first. Blocking (see the module docs).
    pub fn active_pauses(&self, now: i64) -> Result<Vec<PauseRecord>, JournalError> {
        self.read(|c| pauses::active(c, now))
    }

    /// The newest pauses (in force or ended), newest first, at most `limit`; with a
    /// `target`, its pauses and the cluster's. Blocking (see the module docs).
    pub fn recent_pauses(
        &self,
        limit: u32,
        target: Option<&str>,
    ) -> Result<Vec<PauseRecord>, JournalError> {
        self.read(|c| pauses::recent(c, limit, target))
    }

    /// Number of journaled alerts. Blocking (see the module docs).
    pub fn alert_count(&self) -> Result<u64, JournalError> {
        self.read(read::alert_count)
    }

    /// Journaled alerts with this fingerprint, oldest first, with their ids. Blocking
    /// (see the module docs).
    pub fn alerts_by_fingerprint(&self, fp: &str) -> Result<Vec<(i64, NewAlert)>, JournalError> {
        self.read(|c| read::alerts_by_fingerprint(c, fp))
    }
}

/// What a write request hands back to be dropped by its caller: a storm's alerts and
/// decisions are many small allocations, and freeing them on the writer thread (the one
/// thread every commit waits for) took a tenth of its time.
struct Freed<T>(#[allow(dead_code)] T);
