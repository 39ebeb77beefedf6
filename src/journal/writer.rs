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
//!
//! What waits is taken in an order that bounds a webhook request's wait (a storm's
//! 500-alert requests and 1,024-decision rounds made a one-alert request wait 56 ms at p99):
//! small webhook requests go first, in a batch of their own (engine requests that fit ride
//! along), but not twice in a row while anything else waits, so nothing starves. A big
//! webhook request comes in parts of [`INTAKE_PART`] alerts (see
//! [`Journal::record_alerts_in_parts`](super::Journal::record_alerts_in_parts)); parts take
//! turns with engine work, [`INTAKE_BATCH_ROWS`] of them or about [`BATCH_ROWS`] rows of
//! engine requests per batch. Order is kept within each lane; across lanes it does not
//! matter, since the engine writes about an alert only after its webhook request was
//! committed.

use std::collections::VecDeque;
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

/// Most rows (about) in one transaction, so that a webhook request queued behind a batch
/// waits for a bounded amount of work; a single request bigger than that goes alone.
pub(crate) const BATCH_ROWS: usize = 1024;

/// A webhook request of more alerts is journaled in parts of this many (each part all or
/// none), so that a small request waits for a part, not for a whole storm request.
pub const INTAKE_PART: usize = 64;

/// Most webhook rows in a batch that is not of small requests: two parts, about 2 ms of
/// work on a busy machine (a batch of 1,024 took up to 19 ms to run and 8 ms to commit).
pub(crate) const INTAKE_BATCH_ROWS: usize = 128;

/// A webhook request of at most this many alerts is small: it goes ahead of big ones.
pub(crate) const SMALL_ROWS: usize = 16;

/// Most rows in a batch of small webhook requests (engine requests that fit ride along).
pub(crate) const SMALL_BATCH_ROWS: usize = 256;

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
    /// About how many rows it writes (1 when unknown).
    fn weight(&self) -> usize;
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
    weight: usize,
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
            weight: 1,
        }
    }

    /// The same request, writing about `rows` rows.
    pub(crate) fn weighing(mut self, rows: usize) -> Self {
        self.weight = rows.max(1);
        self
    }
}

impl<T: Send> Job for Pending<T> {
    fn lane(&self) -> Lane {
        self.lane
    }

    fn queued_at(&self) -> Instant {
        self.queued
    }

    fn weight(&self) -> usize {
        self.weight
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

/// Requests taken off the channel, by lane, in the order they came.
#[derive(Default)]
struct Waiting {
    intake: VecDeque<Box<dyn Job>>,
    engine: VecDeque<Box<dyn Job>>,
    /// The last batch took small webhook requests ahead of the rest: the next one does not.
    took_small: bool,
    /// The last other batch was the webhook lane's turn: the engine's is next.
    took_intake: bool,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.intake.is_empty() && self.engine.is_empty()
    }

    fn push(&mut self, job: Box<dyn Job>) {
        match job.lane() {
            Lane::Intake => self.intake.push_back(job),
            Lane::Engine => self.engine.push_back(job),
        }
    }

    /// Takes whatever the channel already holds.
    fn drain(&mut self, rx: &Receiver<Box<dyn Job>>) {
        for _ in 0..MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => self.push(job),
                Err(_) => break,
            }
        }
    }

    /// The next batch and its rows. Small webhook requests (at most [`SMALL_ROWS`] alerts)
    /// go ahead of big ones and of engine work, in a batch of at most [`SMALL_BATCH_ROWS`]
    /// rows, but never twice in a row while anything else waits. Otherwise webhook
    /// requests (parts of big ones, mostly) and engine requests take turns while both
    /// wait: webhook requests up to [`INTAKE_BATCH_ROWS`], engine requests up to
    /// [`BATCH_ROWS`] (a request bigger than that goes alone), each in their order, with
    /// what fits of the other lane riding along.
    fn next_batch(&mut self) -> (Vec<Box<dyn Job>>, usize) {
        let mut batch = Vec::with_capacity(16);
        let mut rows = 0;
        let others_wait =
            !self.engine.is_empty() || self.intake.iter().any(|j| j.weight() > SMALL_ROWS);
        let small_first =
            others_wait && !self.took_small && self.intake.iter().any(|j| j.weight() <= SMALL_ROWS);
        self.took_small = small_first;
        if small_first {
            let mut rest = VecDeque::with_capacity(self.intake.len());
            while let Some(job) = self.intake.pop_front() {
                if job.weight() <= SMALL_ROWS && batch.len() < MAX_BATCH {
                    rows += job.weight();
                    batch.push(job);
                } else {
                    rest.push_back(job);
                }
            }
            self.intake = rest;
            fill(&mut self.engine, &mut batch, &mut rows, SMALL_BATCH_ROWS);
            return (batch, rows);
        }
        let intake_turn = !self.intake.is_empty() && (self.engine.is_empty() || !self.took_intake);
        self.took_intake = intake_turn;
        if intake_turn {
            fill(&mut self.intake, &mut batch, &mut rows, INTAKE_BATCH_ROWS);
            fill(&mut self.engine, &mut batch, &mut rows, INTAKE_BATCH_ROWS);
        } else {
            fill(&mut self.engine, &mut batch, &mut rows, BATCH_ROWS);
            fill(&mut self.intake, &mut batch, &mut rows, BATCH_ROWS);
        }
        (batch, rows)
    }
}

/// Moves requests from the front of `queue` into `batch` while they fit in `budget` rows
/// (the first request of an empty batch always does).
fn fill(
    queue: &mut VecDeque<Box<dyn Job>>,
    batch: &mut Vec<Box<dyn Job>>,
    rows: &mut usize,
    budget: usize,
) {
    while let Some(w) = queue.front().map(|j| j.weight()) {
        if batch.len() >= MAX_BATCH || (!batch.is_empty() && *rows + w > budget) {
            return;
        }
        *rows += w;
        if let Some(job) = queue.pop_front() {
            batch.push(job);
        }
    }
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
    let mut waiting = Waiting::default();
    loop {
        if waiting.is_empty() {
            match rx.recv() {
                Ok(job) => waiting.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        waiting.drain(&rx);
        let (mut batch, rows) = waiting.next_batch();
        if waiting.is_empty() && rows < BATCH_ROWS && batch.iter().all(|j| j.lane() == Lane::Engine)
        {
            linger(&rx, &mut batch, rows, &mut waiting, started + linger_for);
        }
        commit_and_answer(&conn, path, file, shared, batch, started, &mut profile);
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "journal: closing the write connection failed");
    }
    tracing::debug!("journal writer stopped");
}

/// Adds requests to a small engine-only `batch` until `deadline`, [`BATCH_ROWS`], or a
/// webhook request (then with whatever queued behind it), whichever comes first. What does
/// not fit stays `waiting` for the next batch.
fn linger(
    rx: &Receiver<Box<dyn Job>>,
    batch: &mut Vec<Box<dyn Job>>,
    mut rows: usize,
    waiting: &mut Waiting,
    deadline: Instant,
) {
    while batch.len() < MAX_BATCH {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let job = match rx.recv_timeout(left) {
            Ok(job) => job,
            // Timed out, or every handle is gone: commit what there is.
            Err(_) => return,
        };
        let intake = job.lane() == Lane::Intake;
        if rows + job.weight() > BATCH_ROWS {
            waiting.push(job);
            return;
        }
        rows += job.weight();
        batch.push(job);
        if intake {
            waiting.drain(rx);
            // Webhook requests that fit ride along; the rest go next, first.
            fill(&mut waiting.intake, batch, &mut rows, BATCH_ROWS);
            return;
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
        weighed(tx, lane, v, 1, None)
    }

    /// Queues an insert of `v` in `lane` that counts as `rows` rows, noting `v` in `ran`
    /// when it runs.
    fn weighed(
        tx: &Queue,
        lane: Lane,
        v: i64,
        rows: usize,
        ran: Option<Arc<std::sync::Mutex<Vec<i64>>>>,
    ) -> oneshot::Receiver<Result<(), JournalError>> {
        let (reply, answer) = oneshot::channel();
        let work: Work<()> = Box::new(move |c: &Connection| {
            if let Some(ran) = ran {
                ran.lock().expect("lock").push(v);
            }
            c.execute("INSERT INTO t (v) VALUES (?1)", [v])
                .map(|_| ())
                .map_err(JournalError::from)
        });
        tx.send(Box::new(Pending::new(work, lane, reply).weighing(rows)))
            .expect("writer alive");
        answer
    }

    /// Queues an engine request that holds the writer for `ms` milliseconds, and returns
    /// once the writer runs it (so what is queued next waits behind it).
    async fn hold(tx: &Queue, ms: u64) -> oneshot::Receiver<Result<(), JournalError>> {
        let (reply, answer) = oneshot::channel();
        let (started, running) = oneshot::channel::<()>();
        let work: Work<()> = Box::new(move |_: &Connection| {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        });
        tx.send(Box::new(Pending::new(work, Lane::Engine, reply)))
            .expect("writer alive");
        running.await.expect("the held request ran");
        answer
    }

    /// With the writer held, queues a big webhook request (1, 500 alerts), an engine request
    /// (2, `engine_rows` rows) and a small webhook request (3, one alert), in that order;
    /// returns the order they ran in and the commits, the held one's included.
    async fn order_after_hold(engine_rows: usize) -> (Vec<i64>, u64) {
        let (_dir, tx, shared) = writer(Duration::ZERO);
        let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = hold(&tx, 300).await;
        let big = weighed(&tx, Lane::Intake, 1, 500, Some(ran.clone()));
        let engine = weighed(&tx, Lane::Engine, 2, engine_rows, Some(ran.clone()));
        let small = weighed(&tx, Lane::Intake, 3, 1, Some(ran.clone()));
        for r in [held, big, engine, small] {
            r.await.expect("reply").expect("committed");
        }
        let order = ran.lock().expect("lock").clone();
        (order, shared.commits.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn small_webhook_requests_go_ahead_of_big_ones_and_of_engine_work() {
        // The small request first, alone (the engine request is too big to ride along);
        // then the big webhook request, then the engine request (together over the
        // 1,024-row budget, so apart): held, small, big, engine.
        assert_eq!(order_after_hold(600).await, (vec![3, 1, 2], 4));
    }

    #[tokio::test]
    async fn engine_requests_that_fit_ride_with_small_webhook_requests() {
        // Held; small + engine; big.
        assert_eq!(order_after_hold(3).await, (vec![3, 2, 1], 3));
    }

    /// A request that only has a lane and a weight (which names it in these tests).
    struct Fake(Lane, usize);

    impl Job for Fake {
        fn lane(&self) -> Lane {
            self.0
        }
        fn queued_at(&self) -> Instant {
            Instant::now()
        }
        fn weight(&self) -> usize {
            self.1
        }
        fn run(&mut self, _: &Connection) -> bool {
            true
        }
        fn complete(self: Box<Self>) {}
        fn fail(self: Box<Self>, _: JournalError) {}
    }

    fn weights(batch: &[Box<dyn Job>]) -> Vec<usize> {
        batch.iter().map(|j| j.weight()).collect()
    }

    #[test]
    fn small_requests_never_go_first_twice_while_a_big_one_waits() {
        let mut w = Waiting::default();
        w.push(Box::new(Fake(Lane::Intake, 500)));
        w.push(Box::new(Fake(Lane::Intake, 1)));
        assert_eq!(weights(&w.next_batch().0), vec![1]);
        // A new small request arrives: the big one goes now (alone: over the webhook
        // budget), then the small one.
        w.push(Box::new(Fake(Lane::Intake, 2)));
        assert_eq!(weights(&w.next_batch().0), vec![500]);
        assert_eq!(weights(&w.next_batch().0), vec![2]);
        assert!(w.is_empty());
        // Small requests alone are simply taken in order.
        w.push(Box::new(Fake(Lane::Intake, 1)));
        w.push(Box::new(Fake(Lane::Intake, 3)));
        assert_eq!(weights(&w.next_batch().0), vec![1, 3]);
    }

    #[test]
    fn webhook_parts_and_engine_work_take_turns() {
        let mut w = Waiting::default();
        for _ in 0..5 {
            w.push(Box::new(Fake(Lane::Intake, INTAKE_PART)));
        }
        w.push(Box::new(Fake(Lane::Engine, 900)));
        w.push(Box::new(Fake(Lane::Engine, 900)));
        let p = INTAKE_PART;
        assert_eq!(weights(&w.next_batch().0), vec![p, p], "two parts");
        // The engine's turn; a part fits along, the second engine request does not.
        assert_eq!(weights(&w.next_batch().0), vec![900, p]);
        assert_eq!(weights(&w.next_batch().0), vec![p, p]);
        assert_eq!(weights(&w.next_batch().0), vec![900]);
        assert!(w.is_empty());
    }

    #[test]
    fn an_engine_batch_holds_about_batch_rows_and_a_bigger_request_goes_alone() {
        let mut w = Waiting::default();
        for rows in [700, 700, 5000, 300, 300] {
            w.push(Box::new(Fake(Lane::Engine, rows)));
        }
        assert_eq!(weights(&w.next_batch().0), vec![700]);
        assert_eq!(weights(&w.next_batch().0), vec![700]);
        assert_eq!(weights(&w.next_batch().0), vec![5000]);
        assert_eq!(weights(&w.next_batch().0), vec![300, 300]);
        assert!(w.is_empty());
    }

    #[tokio::test]
    async fn queued_webhook_requests_commit_two_parts_at_a_time() {
        let (_dir, tx, shared) = writer(Duration::ZERO);
        let held = hold(&tx, 300).await;
        let parts: Vec<_> = (0..5)
            .map(|v| weighed(&tx, Lane::Intake, v, INTAKE_PART, None))
            .collect();
        held.await.expect("reply").expect("committed");
        for r in parts {
            r.await.expect("reply").expect("committed");
        }
        // held; 2 parts; 2 parts; 1 part.
        assert_eq!(shared.commits.load(Ordering::Relaxed), 4);
        assert_eq!(shared.largest_batch.load(Ordering::Relaxed), 2);
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
