//! How the rest of the service talks to the engine: the messages its runner takes, the
//! handle the server and `serve` hold, and the narrow [`AlertSink`] the webhook and the
//! self-watch hand alerts through.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::decide::{LockAnswer, Outcome};
use super::setup::{Setup, SetupCell};
use crate::alert::Alert;

/// What comes in to be decided, in order.
pub(super) enum Intake {
    /// Journaled alerts, with their journal ids.
    Alerts(Vec<(i64, Alert)>),
    /// Answered once everything handed over before it is decided and recorded.
    Flush(oneshot::Sender<()>),
}

/// Control messages to the runner. They go before the alerts waiting (an execution's end
/// must not wait behind a storm's backlog to free its slot).
pub(super) enum Msg {
    /// A running execution ended.
    Finished { id: i64, outcome: Outcome },
    /// Close the circuits of a target.
    Reset {
        target: String,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Use a reloaded setup.
    Reload(Arc<Setup>),
    /// Stop starting work; cancel queued work.
    Drain { reply: oneshot::Sender<()> },
    /// HA mode: the answer to a lock request for queued execution `id`.
    Lock { id: i64, answer: LockAnswer },
}

/// Alerts handed to the engine and not decided yet: the webhook's back-pressure, and the
/// `decision_backlog` metric.
#[derive(Debug, Clone)]
pub(super) struct Backlog {
    count: Arc<AtomicUsize>,
    gauge: Gauge,
}

impl Backlog {
    pub(super) fn new(gauge: Gauge) -> Backlog {
        Backlog {
            count: Arc::new(AtomicUsize::new(0)),
            gauge,
        }
    }

    pub(super) fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::Relaxed);
        self.gauge.inc_by(n as i64);
    }

    pub(super) fn done(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::Relaxed);
        self.gauge.dec_by(n as i64);
    }

    pub(super) fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Adds `n` unless that makes more than `limit` (one request alone always fits an
    /// empty backlog, or a large one could never be taken).
    fn try_add(&self, n: usize, limit: usize) -> bool {
        let ok = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c == 0 || c.saturating_add(n) <= limit).then(|| c.saturating_add(n))
            })
            .is_ok();
        if ok {
            self.gauge.inc_by(n as i64);
        }
        ok
    }
}

/// Places in the decision backlog, reserved before journaling; given back when dropped
/// unless the alerts were handed over.
#[derive(Debug)]
pub struct Reservation {
    backlog: Backlog,
    n: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.n > 0 {
            self.backlog.done(self.n);
        }
    }
}

/// Room in the diagnostics queue, published by the runner after each round, so the webhook
/// can hold back requests that would only be queued to be skipped. The room is a semaphore:
/// waiting requests are let in one by one, in order, as places free up (no herd of wakeups
/// for one place).
#[derive(Debug)]
pub struct Admission {
    /// Places left (`recovery.max_queued` minus those waiting, minus alerts let in and not
    /// decided yet).
    room: tokio::sync::Semaphore,
    /// Whether the runner has published yet (until then, no holding back).
    known: std::sync::atomic::AtomicBool,
    /// Places claimed by requests not yet handed over (being journaled).
    in_transit: AtomicUsize,
    /// The queue's size, the most one request claims.
    limit: AtomicUsize,
    /// Requests waiting for room now.
    held: AtomicUsize,
}

/// Most requests held back at once: each holds a connection, its body and its task (tens of
/// KiB), so beyond this a flood is answered 503 at once instead of held (measured: 2,000
/// held requests took peak RSS from 28 to 109 MiB).
pub const MAX_HELD: usize = 256;

impl Default for Admission {
    fn default() -> Self {
        Admission {
            room: tokio::sync::Semaphore::new(0),
            known: Default::default(),
            in_transit: AtomicUsize::new(0),
            limit: AtomicUsize::new(usize::MAX),
            held: AtomicUsize::new(0),
        }
    }
}

impl Admission {
    /// Publishes how many diagnostics wait and how many may (`recovery.max_queued`);
    /// `undecided` alerts handed over but not decided yet may still take places.
    pub(super) fn publish(&self, queued: usize, undecided: usize, limit: usize) {
        let room = limit
            .saturating_sub(queued)
            .saturating_sub(undecided)
            .saturating_sub(self.in_transit.load(Ordering::Relaxed))
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        self.limit.store(limit.max(1), Ordering::Relaxed);
        let now = self.room.available_permits();
        if room > now {
            self.room.add_permits(room - now);
        } else {
            self.room.forget_permits(now - room);
        }
        self.known.store(true, Ordering::Relaxed);
    }

    /// Whether the diagnostics queue is full.
    pub fn full(&self) -> bool {
        self.known.load(Ordering::Relaxed) && self.room.available_permits() == 0
    }

    /// Waits up to `wait` for room for `n` diagnostics alerts (at most the queue's size)
    /// and claims it. Hold the claim until the alerts are handed over.
    pub async fn claim(self: &Arc<Self>, n: usize, wait: Duration) -> Result<Claim, Refusal> {
        let n = n.clamp(1, self.limit.load(Ordering::Relaxed));
        if self.known.load(Ordering::Relaxed) {
            let want = u32::try_from(n).unwrap_or(u32::MAX);
            match self.room.try_acquire_many(want) {
                Ok(permit) => permit.forget(),
                Err(_) => {
                    // Counted while held, also when the client goes away mid-wait.
                    let _held = Held::enter(&self.held).ok_or(Refusal::TooManyHeld)?;
                    match tokio::time::timeout(wait, self.room.acquire_many(want)).await {
                        Ok(Ok(permit)) => permit.forget(),
                        _ => return Err(Refusal::StayedFull),
                    }
                }
            }
        }
        self.in_transit.fetch_add(n, Ordering::Relaxed);
        Ok(Claim {
            admission: self.clone(),
            n,
        })
    }

    /// `n` alerts whose room was claimed are handed over (or were not journaled after all).
    fn landed(&self, n: usize) {
        let _ = self
            .in_transit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(n))
            });
    }
}

/// Why a request of diagnostics alerts is not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue stayed full for the whole wait.
    StayedFull,
    /// [`MAX_HELD`] requests are held already.
    TooManyHeld,
}

/// One request held back, counted in `held` until dropped.
struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    /// Counts one more held request, unless [`MAX_HELD`] are held already.
    fn enter(held: &'a AtomicUsize) -> Option<Held<'a>> {
        held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < MAX_HELD).then_some(n + 1)
        })
        .ok()
        .map(|_| Held(held))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Room claimed in the diagnostics queue, counted until dropped (once the alerts are
/// handed over, or the request ended without them).
#[derive(Debug)]
pub struct Claim {
    admission: Arc<Admission>,
    n: usize,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.admission.landed(self.n);
    }
}

/// Where journaled alerts go to be decided. Cheap to clone.
#[derive(Clone)]
pub struct AlertSink {
    tx: mpsc::UnboundedSender<Intake>,
    backlog: Backlog,
}

impl std::fmt::Debug for AlertSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSink")
            .field("pending", &self.pending())
            .finish()
    }
}

impl AlertSink {
    pub(super) fn new(tx: mpsc::UnboundedSender<Intake>, backlog: Backlog) -> AlertSink {
        AlertSink { tx, backlog }
    }

    /// Hands journaled alerts (with their journal ids) to the engine. Never blocks; false
    /// when the engine is gone (the alerts stay undecided in the journal and are decided
    /// at the next start).
    pub fn submit(&self, alerts: Vec<(i64, Alert)>) -> bool {
        let n = alerts.len();
        self.backlog.add(n);
        let sent = self.tx.send(Intake::Alerts(alerts)).is_ok();
        if !sent {
            self.backlog.done(n);
        }
        sent
    }

    /// Alerts handed over and not decided yet.
    pub fn pending(&self) -> usize {
        self.backlog.get()
    }

    /// Reserves `n` places in the decision backlog, atomically, if that stays within
    /// `limit` (`server.max_pending_alerts`): one budget for all requests at once.
    pub fn reserve(&self, n: usize, limit: usize) -> Option<Reservation> {
        self.backlog.try_add(n, limit).then(|| Reservation {
            backlog: self.backlog.clone(),
            n,
        })
    }

    /// Hands over journaled alerts whose places `reservation` holds. Never blocks.
    pub fn submit_reserved(&self, mut reservation: Reservation, alerts: Vec<(i64, Alert)>) -> bool {
        let sent = self.tx.send(Intake::Alerts(alerts)).is_ok();
        if sent {
            // Counted until decided now; the runner gives the places back.
            reservation.n = 0;
        }
        sent
    }

    /// Waits until everything handed over before this call is decided and recorded.
    pub async fn flush(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Intake::Flush(reply)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// A handle to the running engine (cheap to clone).
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    /// The current setup (read by the server for auth and readiness).
    pub setup: SetupCell,
    /// Tracks running executions (shutdown waits on it).
    pub tracker: TaskTracker,
    /// Cancelled when running steps must be stopped (end of the shutdown grace).
    pub cancel: CancellationToken,
    /// Woken whenever a message is put in the outbox.
    pub mail_wake: Arc<Notify>,
    /// Where alerts go.
    pub alerts: AlertSink,
    /// How full the diagnostics queue is (the webhook's admission).
    pub admission: Arc<Admission>,
}

impl EngineHandle {
    /// Hands journaled alerts (with their journal ids) to the engine. Never blocks.
    pub fn submit(&self, alerts: Vec<(i64, Alert)>) -> bool {
        self.alerts.submit(alerts)
    }

    /// Alerts handed to the engine and not yet decided (the webhook's back-pressure).
    pub fn pending(&self) -> usize {
        self.alerts.pending()
    }

    /// Closes every open circuit of `target`; returns the rules that had one open.
    pub async fn reset(&self, target: &str) -> Vec<String> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reset {
            target: target.to_string(),
            reply,
        };
        if self.tx.send(msg).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Replaces the setup (after a successful reload).
    pub fn reload(&self, setup: Arc<Setup>) {
        self.setup.replace(setup.clone());
        let _ = self.tx.send(Msg::Reload(setup));
    }

    /// The current setup.
    pub fn current(&self) -> Arc<Setup> {
        self.setup.current()
    }

    /// Stops starting new work and cancels queued work; running executions go on.
    pub async fn drain(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Drain { reply }).is_ok() {
            let _ = rx.await;
        }
    }

    /// Waits until everything handed to the engine before this call is decided and
    /// recorded (executions that ended before it too).
    pub async fn flush(&self) {
        self.alerts.flush().await;
    }

    /// Shuts down: drain, let running executions finish for up to `grace`, then stop
    /// their processes (they are recorded as interrupted) and wait for the records.
    pub async fn shutdown(&self, grace: Duration) {
        self.drain().await;
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                grace_seconds = grace.as_secs(),
                "shutdown grace over: interrupting running executions"
            );
            self.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(30), self.tracker.wait()).await;
        }
        // Executions report their end to the runner; wait until it has recorded them all.
        self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> (AlertSink, mpsc::UnboundedReceiver<Intake>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (AlertSink::new(tx, Backlog::new(Gauge::default())), rx)
    }

    #[test]
    fn the_backlog_is_one_budget_for_concurrent_requests() {
        // 8 requests of 400 alerts at once against a budget of 1,000: two fit, whatever the
        // order (the limit is checked and the places taken in one step).
        let (sink, _rx) = sink();
        let taken: Vec<Option<Reservation>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| sink.reserve(400, 1000)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(taken.iter().filter(|r| r.is_some()).count(), 2);
        assert_eq!(sink.pending(), 800);
        drop(taken);
        assert_eq!(
            sink.pending(),
            0,
            "reservations not handed over are given back"
        );
    }

    #[test]
    fn an_empty_backlog_takes_any_request_and_handed_over_places_stay_counted() {
        let (sink, mut rx) = sink();
        let r = sink.reserve(5000, 1000).expect("an empty backlog takes it");
        assert!(sink.reserve(1, 1000).is_none(), "full");
        assert!(sink.submit_reserved(r, Vec::new()));
        assert_eq!(
            sink.pending(),
            5000,
            "counted until the runner decides them"
        );
        assert!(matches!(rx.try_recv(), Ok(Intake::Alerts(_))));
    }
}
