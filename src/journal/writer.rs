//! Group commit: one thread owns the write connection and commits many requests at once.
//!
//! The writer blocks for the first request, drains whatever else is already queued (up to
//! [`MAX_BATCH`]), runs them all in one `BEGIN IMMEDIATE … COMMIT` (one fsync with
//! `synchronous=FULL`), then replies to each. Every request runs under its own SAVEPOINT:
//! a request that fails is rolled back alone and gets its own error while the others
//! commit. When BEGIN or COMMIT fails, or SQLite rolls the whole transaction back, every
//! request of the batch gets the error and nothing of the batch is written.
//!
//! A batch of engine requests alone waits up to [`ENGINE_LINGER`] for more requests before
//! it commits, and stops waiting the moment a webhook request arrives: a webhook request
//! then rides in the same commit instead of waiting behind an engine fsync, and a run's
//! records share commits (one fsync and one write of each touched page for several).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::error::JournalError;
use super::profile::{BatchSample, Profile};

/// Most requests committed in one transaction.
pub(crate) const MAX_BATCH: usize = 1024;

/// How long a batch of engine requests alone waits for more before it commits. Engine
/// writes (decisions, run ends) tolerate a millisecond; a webhook's reply waits for its
/// commit, so it never lingers.
pub(crate) const ENGINE_LINGER: Duration = Duration::from_millis(1);

/// One request's work, run on the writer thread inside the batch transaction.
pub(crate) type Work<T> = Box<dyn FnOnce(&Connection) -> Result<T, JournalError> + Send>;

/// Where write requests are sent.
pub(crate) type Queue = Sender<Box<dyn Job>>;

/// Who waits for a write: a webhook's reply (`Intake`) or the engine and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Alerts of a webhook request, acknowledged once committed.
    Intake,
    /// Decisions, runs, mails, pauses.
    Engine,
}

/// A queued write request, type-erased so one channel carries every kind.
pub(crate) trait Job: Send {
    /// Whose write it is.
    fn lane(&self) -> Lane;
    /// When it was queued.
    fn queued_at(&self) -> Instant;
    /// Runs the work and keeps its result; false when it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// The batch committed: sends the kept result.
    fn complete(self: Box<Self>);
    /// The batch was not committed: sends this request's own error if it failed,
    /// `err` otherwise.
    fn fail(self: Box<Self>, err: JournalError);
}

/// A request and the place its answer goes.
pub(crate) struct Pending<T> {
    work: Option<Work<T>>,
    result: Option<Result<T, JournalError>>,
    reply: oneshot::Sender<Result<T, JournalError>>,
    lane: Lane,
    queued: Instant,
}

impl<T> Pending<T> {
    /// A request for `work` in `lane`, answered on `reply`.
    pub(crate) fn new(
        work: Work<T>,
        lane: Lane,
        reply: oneshot::Sender<Result<T, JournalError>>,
    ) -> Self {
        Pending {
            work: Some(work),
            result: None,
            reply,
            lane,
            queued: Instant::now(),
        }
    }
}

impl<T: Send> Job for Pending<T> {
    fn lane(&self) -> Lane {
        self.lane
    }

    fn queued_at(&self) -> Instant {
        self.queued
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.work.take() {
            Some(work) => work(conn),
            None => Err(JournalError::Corrupt("write request run twice".to_owned())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn complete(self: Box<Self>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(JournalError::Corrupt("write request not run".to_owned())));
        // The caller may have stopped waiting; the write is durable either way.
        let _ = self.reply.send(result);
    }

    fn fail(self: Box<Self>, err: JournalError) {
        let result = match self.result {
            Some(Err(own)) => Err(own),
            _ => Err(err),
        };
        let _ = self.reply.send(result);
    }
}

/// Counters shared between the writer thread and the handles.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Batches committed.
    pub(crate) commits: AtomicU64,
    /// Requests answered (committed or not).
    pub(crate) requests: AtomicU64,
    /// Batches that could not be committed.
    pub(crate) failed_batches: AtomicU64,
    /// Largest batch seen.
    pub(crate) largest_batch: AtomicU64,
    /// Whether the last batch committed (true before the first).
    pub(crate) last_ok: AtomicBool,
}

impl Shared {
    /// Fresh counters.
    pub(crate) fn new() -> Shared {
        Shared {
            commits: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
            last_ok: AtomicBool::new(true),
        }
    }
}

/// Which file the writer opened, to notice it being deleted or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file at `path` now.
    #[cfg(unix)]
    pub(crate) fn of(path: &Path) -> std::io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path)?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Without inode numbers only existence can be checked.
    #[cfg(not(unix))]
    pub(crate) fn of(path: &Path) -> std::io::Result<FileId> {
        std::fs::metadata(path).map(|_| FileId { dev: 0, ino: 0 })
    }
}

/// Starts the writer thread owning `conn`; engine-only batches linger up to `linger`
/// ([`ENGINE_LINGER`] in service).
pub(crate) fn spawn(
    conn: Connection,
    path: PathBuf,
    file: FileId,
    shared: Arc<Shared>,
    linger: Duration,
) -> Result<(Queue, JoinHandle<()>), JournalError> {
    let (tx, rx) = channel::<Box<dyn Job>>();
    let thread_path = path.clone();
    let handle = std::thread::Builder::new()
        .name("journal-writer".to_owned())
        .spawn(move || run(conn, &thread_path, file, &shared, rx, linger))
        .map_err(|source| JournalError::Io { path, source })?;
    Ok((tx, handle))
}

/// The writer loop; returns when every handle is gone and the queue is drained.
fn run(
    conn: Connection,
    path: &Path,
    file: FileId,
    shared: &Shared,
    rx: Receiver<Box<dyn Job>>,
    linger_for: Duration,
) {
    let mut profile = Profile::new();
    while let Ok(first) = rx.recv() {
        let started = Instant::now();
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        drain_queued(&rx, &mut batch);
        if batch.iter().all(|j| j.lane() == Lane::Engine) {
            linger(&rx, &mut batch, started + linger_for);
        }
        commit_and_answer(&conn, path, file, shared, batch, started, &mut profile);
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "journal: closing the write connection failed");
    }
    tracing::debug!("journal writer stopped");
}

/// Moves what is already queued into `batch`, up to [`MAX_BATCH`].
fn drain_queued(rx: &Receiver<Box<dyn Job>>, batch: &mut Vec<Box<dyn Job>>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Adds requests to an engine-only `batch` until `deadline`, a full batch, or a webhook
/// request (then with whatever queued behind it), whichever comes first.
fn linger(rx: &Receiver<Box<dyn Job>>, batch: &mut Vec<Box<dyn Job>>, deadline: Instant) {
    while batch.len() < MAX_BATCH {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match rx.recv_timeout(left) {
            Ok(job) => {
                let intake = job.lane() == Lane::Intake;
                batch.push(job);
                if intake {
                    drain_queued(rx, batch);
                    return;
                }
            }
            // Timed out, or every handle is gone: commit what there is.
            Err(_) => return,
        }
    }
}

/// Commits `batch` in one transaction and answers each of its requests.
fn commit_and_answer(
    conn: &Connection,
    path: &Path,
    file: FileId,
    shared: &Shared,
    mut batch: Vec<Box<dyn Job>>,
    started: Instant,
    profile: &mut Profile,
) {
    let n = batch.len() as u64;
    let sample = profile.on().then(|| {
        let intake: Vec<Instant> = batch
            .iter()
            .filter(|j| j.lane() == Lane::Intake)
            .map(|j| j.queued_at())
            .collect();
        (n - intake.len() as u64, intake)
    });
    let (outcome, run, commit) = commit_batch(conn, path, file, &mut batch);
    let committed = Instant::now();
    // Counters and health first, so a caller woken by its reply sees them.
    shared.largest_batch.fetch_max(n, Ordering::Relaxed);
    shared.requests.fetch_add(n, Ordering::Relaxed);
    if outcome.is_ok() {
        shared.commits.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.failed_batches.fetch_add(1, Ordering::Relaxed);
    }
    shared.last_ok.store(outcome.is_ok(), Ordering::Release);
    match outcome {
        Ok(()) => batch.into_iter().for_each(|job| job.complete()),
        Err(failure) => {
            for job in batch {
                job.fail(failure.error(path));
            }
        }
    }
    if let Some((engine_jobs, intake_queued)) = sample {
        profile.batch(BatchSample {
            started,
            committed,
            run,
            commit,
            intake_queued,
            engine_jobs,
        });
    }
}

/// Why a whole batch was not committed.
enum Failure {
    /// The database file is not the one opened.
    Moved,
    /// SQLite failed at this stage.
    Sqlite(&'static str, Arc<rusqlite::Error>),
}

impl Failure {
    /// The error each request of the batch gets.
    fn error(&self, path: &Path) -> JournalError {
        match self {
            Failure::Moved => JournalError::FileMoved {
                path: path.to_owned(),
            },
            Failure::Sqlite(stage, source) => JournalError::Batch {
                stage,
                source: Arc::clone(source),
            },
        }
    }
}

/// Runs and commits one batch; the caller answers the requests. Also returns how long
/// running the requests and the COMMIT took.
fn commit_batch(
    conn: &Connection,
    path: &Path,
    file: FileId,
    batch: &mut [Box<dyn Job>],
) -> (Result<(), Failure>, Duration, Duration) {
    let t0 = Instant::now();
    match FileId::of(path) {
        Ok(now) if now == file => {}
        _ => {
            tracing::error!(
                path = %path.display(),
                "journal file was deleted or replaced; refusing writes"
            );
            return (Err(Failure::Moved), t0.elapsed(), Duration::ZERO);
        }
    }
    let mut t1 = t0;
    let result = conn
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| ("begin", e))
        .and_then(|()| run_requests(conn, batch))
        .and_then(|()| {
            t1 = Instant::now();
            conn.execute_batch("COMMIT").map_err(|e| ("commit", e))
        });
    let (run, commit) = (t1.duration_since(t0), t1.elapsed());
    let result = result.map_err(|(stage, e)| {
        tracing::error!(stage, error = %e, requests = batch.len(), "journal batch failed");
        if !conn.is_autocommit()
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "journal rollback failed");
        }
        Failure::Sqlite(stage, Arc::new(e))
    });
    (result, run, commit)
}

/// Runs each request under its own SAVEPOINT, rolling back the ones that fail.
fn run_requests(
    conn: &Connection,
    batch: &mut [Box<dyn Job>],
) -> Result<(), (&'static str, rusqlite::Error)> {
    for job in batch.iter_mut() {
        conn.execute_batch("SAVEPOINT request")
            .map_err(|e| ("savepoint", e))?;
        if job.run(conn) {
            conn.execute_batch("RELEASE request")
                .map_err(|e| ("release", e))?;
        } else {
            // Undo this request alone. If SQLite already rolled the whole transaction
            // back (I/O error, disk full, …) the savepoint is gone and this fails.
            conn.execute_batch("ROLLBACK TO request; RELEASE request")
                .map_err(|e| ("rollback", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on a scratch database with one table, lingering `linger`.
    fn writer(linger: Duration) -> (tempfile::TempDir, Queue, Arc<Shared>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (v INTEGER);")
            .expect("schema");
        let shared = Arc::new(Shared::new());
        let file = FileId::of(&path).expect("file id");
        let (tx, _handle) = spawn(conn, path, file, Arc::clone(&shared), linger).expect("spawn");
        (dir, tx, shared)
    }

    /// Queues an insert of `v` in `lane`; the receiver gets its commit.
    fn insert(tx: &Queue, lane: Lane, v: i64) -> oneshot::Receiver<Result<(), JournalError>> {
        let (reply, answer) = oneshot::channel();
        let work: Work<()> = Box::new(move |c: &Connection| {
            c.execute("INSERT INTO t (v) VALUES (?1)", [v])
                .map(|_| ())
                .map_err(JournalError::from)
        });
        tx.send(Box::new(Pending::new(work, lane, reply)))
            .expect("writer alive");
        answer
    }

    #[tokio::test]
    async fn an_engine_batch_waits_for_a_webhook_request_and_commits_with_it() {
        let (_dir, tx, shared) = writer(Duration::from_secs(600));
        let mut engine = insert(&tx, Lane::Engine, 1);
        // Without the linger this engine write would commit alone long before 200 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(engine.try_recv().is_err(), "the engine write did not wait");
        assert_eq!(shared.commits.load(Ordering::Relaxed), 0);
        let intake = insert(&tx, Lane::Intake, 2);
        intake.await.expect("reply").expect("intake committed");
        engine.await.expect("reply").expect("engine committed");
        assert_eq!(
            shared.commits.load(Ordering::Relaxed),
            1,
            "one commit for both"
        );
        assert_eq!(shared.largest_batch.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_webhook_request_alone_never_lingers() {
        let (_dir, tx, shared) = writer(Duration::from_secs(600));
        let intake = insert(&tx, Lane::Intake, 1);
        tokio::time::timeout(Duration::from_secs(60), intake)
            .await
            .expect("committed without waiting for the linger")
            .expect("reply")
            .expect("committed");
        assert_eq!(shared.commits.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_engine_batch_commits_alone_when_its_linger_ends() {
        let (_dir, tx, shared) = writer(Duration::from_millis(20));
        let first = insert(&tx, Lane::Engine, 1);
        let second = insert(&tx, Lane::Engine, 2);
        first.await.expect("reply").expect("committed");
        second.await.expect("reply").expect("committed");
        // Both were queued within the first one's linger: one commit.
        assert_eq!(shared.commits.load(Ordering::Relaxed), 1);
        assert_eq!(shared.largest_batch.load(Ordering::Relaxed), 2);
    }
}
