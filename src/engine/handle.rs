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

use super::admission::{Admission, RemediationRoom};
use super::decide::{LockAnswer, Outcome};
use super::pause::{Pause, PauseError, PauseRequest, PauseScope};
use super::policy::Scope;
use super::setup::{Setup, SetupCell};
use super::why::Silenced;
use crate::alert::Alert;

/// What comes in to be decided, in order.
pub(super) enum Intake {
    /// Journaled alerts, with their journal ids.
    Alerts(Vec<(i64, Alert)>),
    /// Journaled self-watch alerts, each with the Alertmanager silence that matches it,
    /// if one does.
    Watched(Vec<(i64, Alert, Option<Silenced>)>),
    /// Answered once everything handed over before it is decided and recorded.
    Flush(oneshot::Sender<()>),
}

/// Control messages to the runner. They go before the alerts waiting (an execution's end
/// must not wait behind a storm's backlog to free its slot).
pub(super) enum Msg {
    /// A running execution ended.
    Finished { id: i64, outcome: Outcome },
    /// Close the circuits in a scope.
    Reset {
        scope: Scope,
        reply: oneshot::Sender<Vec<(String, Option<String>)>>,
    },
    /// Use a reloaded setup.
    Reload(Arc<Setup>),
    /// Stop starting work; cancel queued work.
    Drain { reply: oneshot::Sender<()> },
    /// HA mode: the answer to a lock request for queued execution `id`.
    Lock { id: i64, answer: LockAnswer },
    /// Set a pause (journaled before it acts).
    Pause {
        request: PauseRequest,
        reply: oneshot::Sender<Result<Pause, PauseError>>,
    },
    /// End a pause early (journaled before it acts); `None` when none was in force.
    Resume {
        scope: PauseScope,
        reply: oneshot::Sender<Result<Option<Pause>, PauseError>>,
    },
    /// The pauses in force.
    Pauses { reply: oneshot::Sender<Vec<Pause>> },
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

    /// Hands journaled self-watch alerts to the engine, each with the Alertmanager silence
    /// that matches it (its work is then skipped, [`Skip::Silenced`](super::why::Skip)).
    /// Never blocks; false when the engine is gone.
    pub fn submit_watched(&self, alerts: Vec<(i64, Alert, Option<Silenced>)>) -> bool {
        let n = alerts.len();
        self.backlog.add(n);
        let sent = self.tx.send(Intake::Watched(alerts)).is_ok();
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

    /// Hands over journaled alerts whose places `reservation` holds (places they do not
    /// take are given back). Never blocks.
    pub fn submit_reserved(&self, mut reservation: Reservation, alerts: Vec<(i64, Alert)>) -> bool {
        let n = alerts.len();
        let sent = self.tx.send(Intake::Alerts(alerts)).is_ok();
        if sent {
            // Counted until decided now; the runner gives the places back.
            reservation.n = reservation.n.saturating_sub(n);
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
    /// How full the remediation budget is (reserved by the webhook before journaling).
    pub remediation: Arc<RemediationRoom>,
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
        let closed = self.reset_scope(Scope::target(target)).await;
        closed.into_iter().map(|(rule, _)| rule).collect()
    }

    /// Closes every open circuit in `scope` and forgets its attempts; returns the circuits
    /// that were open, as (rule, target).
    pub async fn reset_scope(&self, scope: Scope) -> Vec<(String, Option<String>)> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Reset { scope, reply }).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Sets a pause: journaled, then in force, before this returns.
    pub async fn pause(&self, request: PauseRequest) -> Result<Pause, PauseError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Pause { request, reply })
            .map_err(|_| PauseError::Stopped)?;
        rx.await.map_err(|_| PauseError::Stopped)?
    }

    /// Ends the pause of `scope` early: journaled, then lifted, before this returns. The
    /// pause that ended, or `None` when none was in force.
    pub async fn resume(&self, scope: PauseScope) -> Result<Option<Pause>, PauseError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Resume { scope, reply })
            .map_err(|_| PauseError::Stopped)?;
        rx.await.map_err(|_| PauseError::Stopped)?
    }

    /// The pauses in force (empty when the engine is gone).
    pub async fn pauses(&self) -> Vec<Pause> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Pauses { reply }).is_err() {
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

    /// `n` journaled alerts (ids 1..=n).
    fn alerts(n: usize) -> Vec<(i64, Alert)> {
        let a = Alert::firing(Default::default());
        (1..=n as i64).map(|id| (id, a.clone())).collect()
    }

    #[test]
    fn an_empty_backlog_takes_any_request_and_handed_over_places_stay_counted() {
        let (sink, mut rx) = sink();
        let r = sink.reserve(5000, 1000).expect("an empty backlog takes it");
        assert!(sink.reserve(1, 1000).is_none(), "full");
        assert!(sink.submit_reserved(r, alerts(5000)));
        assert_eq!(
            sink.pending(),
            5000,
            "counted until the runner decides them"
        );
        assert!(matches!(rx.try_recv(), Ok(Intake::Alerts(a)) if a.len() == 5000));
    }

    #[test]
    fn places_of_alerts_not_handed_over_are_given_back() {
        // A request of 200 alerts whose second part could not be journaled: 136 handed over.
        let (sink, _rx) = sink();
        let r = sink.reserve(200, 1000).expect("room");
        assert!(sink.submit_reserved(r, alerts(136)));
        assert_eq!(
            sink.pending(),
            136,
            "the 64 not journaled are not waited for"
        );
    }
}
