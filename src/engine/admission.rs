//! The webhook's admission: room in the two queue budgets, checked before a request is
//! journaled, so an alert the service answered 200 for is never skipped for a full queue.
//!
//! - [`Admission`]: diagnostics. A request of diagnostics alerts only waits for room (up to
//!   `server.admission_wait_ms`), then gets 503.
//! - [`RemediationRoom`]: disruptive and `broker_down` work. A request that would add to a
//!   full budget gets 503 at once; work accepted is never skipped for a full queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

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
    known: AtomicBool,
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

/// How full the remediation budget is (`recovery.max_queued_remediation`), as the runner
/// last published it. While it is full, the webhook refuses a request that would add
/// remediation work (503, before journaling); work it accepted is never skipped for a full
/// queue. So the budget can be overrun only by what was accepted and not decided yet
/// (bounded by `server.max_pending_alerts`), and by the self-watch's own alerts (bounded by
/// brokers × conditions): a soft bound, traded for never answering 200 and then skipping,
/// and for never refusing a replica's copy of work that is already in flight.
#[derive(Debug)]
pub struct RemediationRoom {
    /// Remediation executions queued, as the runner last published.
    queued: AtomicUsize,
    /// The budget (unbounded until the runner publishes).
    limit: AtomicUsize,
}

impl Default for RemediationRoom {
    fn default() -> Self {
        RemediationRoom {
            queued: AtomicUsize::new(0),
            limit: AtomicUsize::new(usize::MAX),
        }
    }
}

impl RemediationRoom {
    /// Publishes how many remediation executions wait and the budget.
    pub(super) fn publish(&self, queued: usize, limit: usize) {
        self.queued.store(queued, Ordering::Relaxed);
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Whether a request that would add `n` remediation plans may be taken.
    pub fn check(&self, n: usize) -> Result<(), Full> {
        let queued = self.queued.load(Ordering::Relaxed);
        let limit = self.limit.load(Ordering::Relaxed);
        if n > 0 && queued >= limit {
            return Err(Full { queued, limit });
        }
        Ok(())
    }
}

/// Why a request's remediation work is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Remediation executions queued.
    pub queued: usize,
    /// `recovery.max_queued_remediation`.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remediation_is_refused_only_while_the_budget_is_full() {
        let room = RemediationRoom::default();
        assert_eq!(room.check(5), Ok(()), "nothing published yet: taken");
        room.publish(2, 3);
        assert_eq!(room.check(1), Ok(()));
        room.publish(3, 3);
        assert_eq!(
            room.check(1),
            Err(Full {
                queued: 3,
                limit: 3
            })
        );
        assert_eq!(
            room.check(0),
            Ok(()),
            "a request without remediation is taken"
        );
    }
}
