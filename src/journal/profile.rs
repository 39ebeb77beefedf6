//! Where the writer's time goes, logged once a second at debug level (target
//! `kafka_healing::journal::profile`) while it works: how long webhook requests waited in
//! the queue before their batch started, how long batches took to run and to commit (the
//! fsync), how batches were made up, and how long the writer thread waited for a CPU.
//! Nothing is collected unless that target is enabled.
//!
//! `RUST_LOG=warn,kafka_healing::journal::profile=debug` (or `--log` with the same
//! directive) turns it on.

use std::time::{Duration, Instant};

/// Most samples kept per window (bounds memory at any rate).
const MAX_SAMPLES: usize = 100_000;
/// How often a window is logged.
const WINDOW: Duration = Duration::from_secs(1);

/// One window's samples, in µs.
pub(crate) struct Profile {
    on: bool,
    started: Instant,
    /// Webhook requests: queued until their batch started.
    intake_wait: Vec<u32>,
    /// Webhook requests: queued until their batch committed.
    intake_total: Vec<u32>,
    /// Batches: running the requests (before COMMIT).
    run: Vec<u32>,
    /// Batches: the COMMIT (the fsync).
    commit: Vec<u32>,
    /// Requests by lane.
    intake_jobs: u64,
    engine_jobs: u64,
    /// Batches that held both lanes.
    mixed: u64,
    /// The writer thread's run-queue wait (ns, from schedstat) at the window's start.
    sched_wait: Option<u64>,
}

impl Profile {
    /// A profile that collects only when its log target is enabled.
    pub(crate) fn new() -> Profile {
        let on =
            tracing::enabled!(target: "kafka_healing::journal::profile", tracing::Level::DEBUG);
        Profile {
            on,
            started: Instant::now(),
            intake_wait: Vec::new(),
            intake_total: Vec::new(),
            run: Vec::new(),
            commit: Vec::new(),
            intake_jobs: 0,
            engine_jobs: 0,
            mixed: 0,
            sched_wait: if on { sched_wait() } else { None },
        }
    }

    /// Whether samples are taken.
    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// A batch: when it started, its requests' queueing times, its run and commit times.
    pub(crate) fn batch(&mut self, b: BatchSample) {
        if !self.on {
            return;
        }
        let us = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        if self.run.len() < MAX_SAMPLES {
            self.run.push(us(b.run));
            self.commit.push(us(b.commit));
        }
        self.intake_jobs += b.intake_queued.len() as u64;
        self.engine_jobs += b.engine_jobs;
        if b.engine_jobs > 0 && !b.intake_queued.is_empty() {
            self.mixed += 1;
        }
        for q in b.intake_queued {
            if self.intake_wait.len() < MAX_SAMPLES {
                self.intake_wait
                    .push(us(b.started.saturating_duration_since(q)));
                self.intake_total
                    .push(us(b.committed.saturating_duration_since(q)));
            }
        }
        if self.started.elapsed() >= WINDOW {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let secs = self.started.elapsed().as_secs_f64();
        let now_wait = sched_wait();
        let cpu_wait_ms = match (self.sched_wait, now_wait) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
            _ => -1.0,
        };
        tracing::debug!(
            target: "kafka_healing::journal::profile",
            secs = format!("{secs:.2}"),
            batches = self.run.len(),
            intake = self.intake_jobs,
            engine = self.engine_jobs,
            mixed = self.mixed,
            intake_wait_us = %quantiles(&mut self.intake_wait),
            intake_total_us = %quantiles(&mut self.intake_total),
            run_us = %quantiles(&mut self.run),
            commit_us = %quantiles(&mut self.commit),
            run_sum_ms = self.run.iter().map(|&x| u64::from(x)).sum::<u64>() / 1000,
            commit_sum_ms = self.commit.iter().map(|&x| u64::from(x)).sum::<u64>() / 1000,
            cpu_wait_ms = format!("{cpu_wait_ms:.1}"),
            "journal writer"
        );
        *self = Profile {
            sched_wait: now_wait,
            ..Profile::new()
        };
    }
}

/// What one batch took.
pub(crate) struct BatchSample {
    /// When its first request was taken from the queue.
    pub(crate) started: Instant,
    /// When it was committed.
    pub(crate) committed: Instant,
    /// Running its requests.
    pub(crate) run: Duration,
    /// Its COMMIT.
    pub(crate) commit: Duration,
    /// When each of its webhook requests was queued.
    pub(crate) intake_queued: Vec<Instant>,
    /// How many engine requests it held.
    pub(crate) engine_jobs: u64,
}

/// "p50/p99/max (n)" of `v`.
fn quantiles(v: &mut [u32]) -> String {
    if v.is_empty() {
        return "-".to_owned();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!("{}/{}/{} ({})", at(0.5), at(0.99), v[v.len() - 1], v.len())
}

/// This thread's time spent waiting for a CPU, in ns (Linux schedstat), if readable.
fn sched_wait() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}
