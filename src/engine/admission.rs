//! The webhook's admission: room in the two queue budgets, checked before a request is
//! journaled, so an alert the service answered 200 for is never skipped for a full queue.
//!
//! - [`Admission`]: diagnostics. A request of diagnostics alerts only waits for room (up to
//!   `server.admission_wait_ms`), then gets 503.
//! - [`RemediationRoom`]: disruptive and `broker_down` work. A request that would add to a
//!   full budget gets 503 at once; its places are reserved atomically until decided.

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

/// Room in the remediation budget (`recovery.max_queued_remediation`): the runner
/// publishes how many wait after each round; the webhook reserves the places a request's
/// alerts could take before journaling it, and the runner gives them back once decided.
/// Reserved places are counted as taken until then, so two requests cannot both take the
/// last place.
#[derive(Debug)]
pub struct RemediationRoom {
    /// Remediation executions queued, as the runner last published.
    queued: AtomicUsize,
    /// Places reserved by requests whose alerts are not decided yet.
    reserved: AtomicUsize,
    /// The budget (unbounded until the runner publishes).
    limit: AtomicUsize,
}

impl Default for RemediationRoom {
    fn default() -> Self {
        RemediationRoom {
            queued: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
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

    /// `n` reserved places were decided (their work queued, ran, or collapsed).
    pub(super) fn decided(&self, n: usize) {
        let _ = self
            .reserved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                Some(r.saturating_sub(n))
            });
    }

    /// Reserves `n` places if they fit (a budget with nothing waiting or reserved takes any
    /// one request, or a request larger than the budget could never be taken); `None`
    /// when full, with how many wait and are reserved.
    pub fn reserve(self: &Arc<Self>, n: usize) -> Result<Places, Full> {
        if n == 0 {
            return Ok(Places {
                room: self.clone(),
                n: 0,
            });
        }
        let queued = self.queued.load(Ordering::Relaxed);
        let limit = self.limit.load(Ordering::Relaxed);
        match self
            .reserved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                let used = queued.saturating_add(r);
                (used == 0 || used.saturating_add(n) <= limit).then(|| r.saturating_add(n))
            }) {
            Ok(_) => Ok(Places {
                room: self.clone(),
                n,
            }),
            Err(reserved) => Err(Full {
                queued,
                reserved,
                limit,
            }),
        }
    }
}

/// Why a request's remediation work does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Remediation executions queued.
    pub queued: usize,
    /// Places reserved by requests not decided yet.
    pub reserved: usize,
    /// `recovery.max_queued_remediation`.
    pub limit: usize,
}

/// Places reserved in the remediation budget, given back when dropped unless handed over
/// with the alerts (the runner gives them back once it has decided them).
#[derive(Debug)]
pub struct Places {
    room: Arc<RemediationRoom>,
    n: usize,
}

impl Places {
    /// Hands the places over to the runner: how many it gives back once decided.
    pub(super) fn hand_over(mut self) -> usize {
        std::mem::take(&mut self.n)
    }
}

impl Drop for Places {
    fn drop(&mut self) {
        if self.n > 0 {
            self.room.decided(self.n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remediation_places_are_one_budget_reserved_until_decided() {
        let room = Arc::new(RemediationRoom::default());
        room.publish(3, 5);
        // 8 requests of 1 place each at once: the 2 places left go to two of them.
        let taken: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| room.reserve(1))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(taken.iter().filter(|r| r.is_ok()).count(), 2);
        let full = taken.iter().find_map(|r| r.as_ref().err()).copied();
        assert_eq!(
            full,
            Some(Full {
                queued: 3,
                reserved: 2,
                limit: 5
            })
        );
        // Handed over: still counted until the runner says they were decided.
        let mut places: Vec<Places> = taken.into_iter().filter_map(Result::ok).collect();
        let n = places.pop().map(Places::hand_over).unwrap_or_default();
        assert_eq!(n, 1);
        assert!(room.reserve(1).is_err(), "handed-over places still count");
        room.decided(n);
        drop(places);
        // Dropped without handing over: given back at once.
        assert!(room.reserve(2).is_ok());
        assert!(
            room.reserve(0).is_ok(),
            "a request without remediation always fits"
        );
    }

    #[test]
    fn an_empty_remediation_budget_takes_a_request_larger_than_itself() {
        let room = Arc::new(RemediationRoom::default());
        room.publish(0, 2);
        let big = room.reserve(7).expect("empty: taken");
        assert_eq!(room.reserve(1).err().map(|f| f.reserved), Some(7));
        drop(big);
        room.publish(2, 2);
        assert!(room.reserve(1).is_err(), "2 queued of 2");
    }
}
