//! Work locks with fencing.
//!
//! Keys under `PREFIX/CLUSTER/`:
//! - `locks/work/W` — one per piece of work (rule, target, params; `W` a stable hash):
//!   exactly one instance runs it, whatever number of instances got the alert;
//! - `locks/target/T` and `locks/slot/N` (N < `max_concurrent_per_cluster`) — taken with
//!   it by disruptive runbooks: one disruptive runbook per broker, and the cluster limit
//!   holds across instances;
//! - `done/W` — written when the work ends while its lock is still held, attached to a
//!   lease of its own that lasts the cooldown (or the retry delay after a failure): a peer
//!   that got the same alert sees it and does not run the work again;
//! - `steps/W` — written (with the fencing check) before each disruptive step starts and
//!   deleted when it ends, attached to a lease of its own whose TTL covers the step's
//!   deadline (its time limit for every try, the kill grace, a margin): it outlives the
//!   holder's session lease, so when the holder dies mid-step no peer takes the work
//!   before the step must have ended.
//!
//! All lock keys are taken in one transaction (all or none), attached to the instance's
//! session lease, and compared again (create revision and lease) before every disruptive
//! step. The same transaction requires that no `steps/W` key exists, for every piece of
//! work, disruptive or not: a runbook marked `disruptive: false` may still hold an `exec`
//! step, which is fenced (and recorded) like any disruptive step.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Coordinator;
use super::etcd::{self, EtcdError, Kv};
use super::history::{Shared, SharedAttempt};
use super::shard::fnv1a;

/// Why the coordination service could not decide.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// This instance holds no valid lease (etcd unreachable, or the lease was lost).
    #[error("this instance holds no valid etcd lease (etcd unreachable or lease lost)")]
    NoLease,
    /// etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// A disruptive step must not run: the lock is no longer this instance's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Fenced(pub String);

/// What to lock.
#[derive(Debug, Clone)]
pub struct WorkRequest {
    /// The work in words (`rule on target`), stored in the lock for peers to show.
    pub work: String,
    /// Stable identity of the work: rule, target and params joined.
    pub identity: String,
    /// The rule (its circuit is shared per (rule, target)).
    pub rule: String,
    /// The target broker.
    pub target: Option<String>,
    /// Whether the runbook is disruptive (takes the target and a cluster slot too).
    pub disruptive: bool,
    /// `max_concurrent_per_cluster`.
    pub slots: u32,
    /// The journal id of the execution on this instance.
    pub execution: i64,
}

/// A lock held by this instance.
#[derive(Debug, Clone)]
pub struct WorkLock {
    lease: i64,
    keys: Vec<String>,
    revision: i64,
    done_key: String,
    step_key: String,
    execution: i64,
    work: String,
    work_id: String,
    rule: String,
    target: Option<String>,
    shared: Box<Shared>,
}

/// A running step's record in etcd (`steps/W`), from [`Coordinator::begin_step`] until
/// [`Coordinator::end_step`].
#[derive(Debug)]
pub struct StepMark {
    /// The record's own lease (its TTL covers the step's deadline).
    lease: i64,
    step: String,
}

/// etcd's largest lease TTL (seconds).
const MAX_LEASE_TTL: u64 = 9_000_000_000;

/// The answer to a lock request.
#[derive(Debug, Clone)]
pub enum Acquire {
    /// The lock is this instance's.
    Acquired(WorkLock),
    /// Another execution holds it (who, in words).
    Held(String),
    /// The work was done by an instance recently (who and how, in words).
    Done(String),
    /// No instance holds the lock, but a step an instance started for this work may still
    /// run (its holder died or lost its lease mid-step): whose step and until when, in
    /// words. Ask again later.
    StepRunning(String),
}

fn describe(kv: &Kv) -> String {
    let v: Value = serde_json::from_str(&kv.value).unwrap_or(Value::Null);
    let instance = v["instance"].as_str().unwrap_or("?");
    let execution = v["execution"].as_i64().unwrap_or(0);
    let work = v["work"].as_str().unwrap_or("?");
    match v["status"].as_str() {
        Some(status) => {
            format!("instance {instance} (its execution {execution}: {work}, {status})")
        }
        None => format!("instance {instance} (its execution {execution}: {work})"),
    }
}

/// A `steps/W` record in words: whose step and until when (by the holder's clock).
fn describe_step(kv: &Kv) -> String {
    let v: Value = serde_json::from_str(&kv.value).unwrap_or(Value::Null);
    let instance = v["instance"].as_str().unwrap_or("?");
    let execution = v["execution"].as_i64().unwrap_or(0);
    let work = v["work"].as_str().unwrap_or("?");
    let step = v["step"].as_str().unwrap_or("?");
    let until = v["until"].as_str().unwrap_or("?");
    format!(
        "step `{step}` of instance {instance} (its execution {execution}: {work}), which may run until {until} (its deadline: time limit of every try, kill grace and a margin, by that instance's clock)"
    )
}

impl WorkLock {
    /// The etcd revision the lock was taken at (its fencing token).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The attempts and open circuit etcd held for this work when the lock was taken.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// A lock as if taken for `execution`, with `shared` read with it (core tests).
    #[cfg(test)]
    pub(crate) fn for_test(execution: i64, shared: Shared) -> WorkLock {
        WorkLock {
            lease: 1,
            keys: Vec::new(),
            revision: 7,
            done_key: String::new(),
            step_key: String::new(),
            execution,
            work: String::new(),
            work_id: String::new(),
            rule: String::new(),
            target: None,
            shared: Box::new(shared),
        }
    }
}

impl Coordinator {
    fn work_id(&self, identity: &str) -> String {
        format!("{:016x}", fnv1a(identity.as_bytes()))
    }

    /// Tries to take the lock for `req` (one transaction per cluster slot tried).
    pub async fn acquire(&self, req: &WorkRequest) -> Result<Acquire, CoordError> {
        let lease = self.lease().ok_or(CoordError::NoLease)?;
        let id = self.work_id(&req.identity);
        let p = &self.prefix;
        let done_key = format!("{p}done/{id}");
        // Read with the lock, in its transaction: the shared history it decides with.
        let history = [
            etcd::get(&self.attempts_key(&id)),
            etcd::get(&self.circuit_key(&req.rule, req.target.as_deref())),
        ];
        let step_key = format!("{p}steps/{id}");
        let mut base = vec![format!("{p}locks/work/{id}")];
        if req.disruptive
            && let Some(t) = &req.target
        {
            base.push(format!("{p}locks/target/{t}"));
        }
        let value = json!({
            "instance": self.instance_id,
            "execution": req.execution,
            "work": req.work,
            "lease": lease,
        })
        .to_string();
        let slots = if req.disruptive { req.slots.max(1) } else { 1 };
        let mut slot_holder = None;
        // A `done` record of this instance's own is no bar: its own policy (cooldown,
        // backoff) already decided. The transaction then requires that very record and
        // deletes it, instead of requiring none.
        let mut own_done: Option<i64> = None;
        let mut slot = 0;
        // Each extra round follows a change in etcd; a few bound it all the same.
        let mut rounds = 0;
        while slot < slots && rounds < 3 * slots + 4 {
            rounds += 1;
            let mut keys = base.clone();
            if req.disruptive {
                keys.push(format!("{p}locks/slot/{slot}"));
            }
            let mut compare: Vec<Value> = keys
                .iter()
                .chain(std::iter::once(&step_key))
                .map(|k| etcd::absent(k))
                .collect();
            let mut success: Vec<Value> =
                keys.iter().map(|k| etcd::put(k, &value, lease)).collect();
            success.extend(history.iter().cloned());
            match own_done {
                None => compare.push(etcd::absent(&done_key)),
                Some(rev) => {
                    compare.push(etcd::modified_at(&done_key, rev));
                    success.push(etcd::delete(&done_key));
                }
            }
            // Read back in this order: the done record, the lock keys, the step record.
            let failure = std::iter::once(&done_key)
                .chain(&keys)
                .chain(std::iter::once(&step_key))
                .map(|k| etcd::get(k))
                .collect();
            let r = self.etcd.txn(compare, success, failure).await?;
            if r.succeeded {
                let got = |i: usize| r.ranges.get(i).and_then(|kvs| kvs.first());
                return Ok(Acquire::Acquired(WorkLock {
                    lease,
                    keys,
                    revision: r.revision,
                    done_key,
                    step_key,
                    execution: req.execution,
                    work: req.work.clone(),
                    work_id: id,
                    rule: req.rule.clone(),
                    target: req.target.clone(),
                    shared: Box::new(Shared::from_ranges(got(0), got(1))),
                }));
            }
            let mut found = r.ranges.iter().map(|kvs| kvs.first());
            let step = r.ranges.get(keys.len() + 1).and_then(|kvs| kvs.first());
            if let Some(Some(done)) = found.next() {
                let mine = serde_json::from_str::<Value>(&done.value)
                    .is_ok_and(|v| v["instance"].as_str() == Some(self.instance_id.as_str()));
                if mine && own_done != Some(done.mod_revision) {
                    own_done = Some(done.mod_revision);
                    continue;
                }
                if !mine {
                    return Ok(Acquire::Done(describe(done)));
                }
            } else if own_done.is_some() {
                // Our record expired meanwhile: ask again without it.
                own_done = None;
                continue;
            }
            for (key, kv) in keys.iter().zip(found) {
                let Some(kv) = kv else { continue };
                if !key.contains("/locks/slot/") {
                    return Ok(Acquire::Held(describe(kv)));
                }
                slot_holder = Some(format!("cluster slot {slot} held by {}", describe(kv)));
            }
            if let Some(step) = step {
                // No lock is held, but the last holder's step may still run.
                return Ok(Acquire::StepRunning(describe_step(step)));
            }
            slot += 1;
        }
        Ok(Acquire::Held(slot_holder.unwrap_or_else(|| {
            "a concurrent change; trying again".into()
        })))
    }

    /// Confirms `lock` is still this instance's: the session lease is the lock's and
    /// alive, and (one transaction) every lock key still has the revision it was created
    /// at and the lease. Any doubt, including etcd not answering, fences.
    pub async fn fence(&self, lock: &WorkLock) -> Result<(), Fenced> {
        self.fence_with(lock, Vec::new()).await
    }

    /// The local half of the fencing check: the session lease is the lock's and alive.
    fn check_lease(&self, lock: &WorkLock) -> Result<(), Fenced> {
        if self.lease() != Some(lock.lease) {
            return Err(Fenced(format!(
                "the lease {} the lock was taken with is no longer valid (lost, or not renewed within {}s)",
                lock.lease,
                self.ttl.as_secs()
            )));
        }
        Ok(())
    }

    /// The fencing check, running `ops` in the same transaction when it holds.
    async fn fence_with(&self, lock: &WorkLock, ops: Vec<Value>) -> Result<(), Fenced> {
        self.check_lease(lock)?;
        let compare = lock
            .keys
            .iter()
            .flat_map(|k| {
                [
                    etcd::leased_by(k, lock.lease),
                    etcd::created_at(k, lock.revision),
                ]
            })
            .collect();
        match self.etcd.txn(compare, ops, Vec::new()).await {
            Ok(r) if r.succeeded => Ok(()),
            Ok(_) => Err(Fenced(format!(
                "the lock taken at revision {} is gone or was re-taken",
                lock.revision
            ))),
            Err(e) => Err(Fenced(format!("cannot confirm the lock: {e}"))),
        }
    }

    /// The work of `lock` ended: records its attempt for every instance (when it counts as
    /// one: kept `window_secs`), then releases the lock as [`release`](Self::release) does.
    pub async fn finish(
        &self,
        lock: WorkLock,
        done: Option<(&str, u64)>,
        attempt: Option<SharedAttempt>,
        window_secs: u64,
    ) {
        if let Some(a) = attempt {
            let r = self
                .record_attempt(
                    &lock.work_id,
                    &lock.rule,
                    lock.target.as_deref(),
                    a,
                    window_secs,
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, execution = lock.execution, "coordination: cannot share the attempt; a peer taking over may grant it again");
            }
        }
        self.release(lock, done).await;
    }

    /// How long a step record's lease may be granted before its step starts: the lease's
    /// TTL includes it (half the session TTL, 1–5 s).
    fn step_slack(&self) -> Duration {
        (self.ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(5))
    }

    /// Fences `lock` (as [`fence`](Self::fence)) and, in the same transaction, records in
    /// `steps/W` that step `step` starts and may run for `budget` (every try's time limit,
    /// the kill grace, a margin). The record has a lease of its own, granted first with a
    /// TTL of `budget` plus a slack, which the time from the grant to the step's start must
    /// not exceed (else: fenced). It therefore outlives this instance's death or lease
    /// loss until the step must have ended, and no peer takes the work before (see
    /// [`acquire`](Self::acquire)). Delete it with [`end_step`](Self::end_step).
    pub async fn begin_step(
        &self,
        lock: &WorkLock,
        step: &str,
        budget: Duration,
    ) -> Result<StepMark, Fenced> {
        // No lease is granted for a step that cannot start anyway.
        self.check_lease(lock)?;
        let slack = self.step_slack();
        let ttl = budget
            .saturating_add(slack)
            .as_secs_f64()
            .ceil()
            .clamp(1.0, MAX_LEASE_TTL as f64) as u64;
        let sent = Instant::now();
        let until_ms = crate::clock::now_ms()
            .saturating_add(i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX));
        let step_lease = self.etcd.grant(ttl).await.map_err(|e| {
            Fenced(format!(
                "cannot record the step's deadline in etcd (lease grant): {e}"
            ))
        })?;
        let value = json!({
            "instance": self.instance_id,
            "execution": lock.execution,
            "work": lock.work,
            "step": step,
            "budget_seconds": budget.as_secs_f64(),
            "until": crate::clock::rfc3339_ms(until_ms),
        })
        .to_string();
        let put = etcd::put(&lock.step_key, &value, step_lease);
        let mark = StepMark {
            lease: step_lease,
            step: step.to_string(),
        };
        if let Err(e) = self.fence_with(lock, vec![put]).await {
            self.end_step(mark).await;
            return Err(e);
        }
        let took = sent.elapsed();
        if took > slack {
            self.end_step(mark).await;
            return Err(Fenced(format!(
                "etcd took {took:?} to record the step's deadline (more than the {slack:?} its record allows): not started"
            )));
        }
        Ok(mark)
    }

    /// Deletes a step's record (revokes its lease) once the step has ended. Best effort:
    /// a record not deleted expires at the step's deadline (peers wait until then).
    pub async fn end_step(&self, mark: StepMark) {
        if let Err(e) = self.etcd.revoke(mark.lease).await {
            tracing::warn!(step = %mark.step, lease = mark.lease, error = %e, "coordination: cannot delete a step's record; peers wait until its deadline");
        }
    }

    /// Releases `lock` if it is still held. With `done` = (status, seconds), also records
    /// that the work ended (peers will not run it again for that long). Best effort: a
    /// lock not released vanishes with the lease.
    pub async fn release(&self, lock: WorkLock, done: Option<(&str, u64)>) {
        let compare: Vec<Value> = lock
            .keys
            .iter()
            .map(|k| etcd::leased_by(k, lock.lease))
            .collect();
        // A step record left behind (its deletion failed) goes too: the work has ended.
        let mut ops: Vec<Value> = lock
            .keys
            .iter()
            .chain(std::iter::once(&lock.step_key))
            .map(|k| etcd::delete(k))
            .collect();
        if let Some((status, secs)) = done {
            // At least one lease TTL, so that a peer waiting on this lock (it asks again
            // every quarter TTL) surely sees the record.
            match self.etcd.grant(secs.max(self.ttl.as_secs())).await {
                Ok(done_lease) => {
                    let value = json!({
                        "instance": self.instance_id,
                        "execution": lock.execution,
                        "work": lock.work,
                        "status": status,
                    })
                    .to_string();
                    ops.push(etcd::put(&lock.done_key, &value, done_lease));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "coordination: cannot record the work as done")
                }
            }
        }
        match self.etcd.txn(compare, ops, Vec::new()).await {
            Ok(r) if r.succeeded => {}
            Ok(_) => tracing::warn!(
                execution = lock.execution,
                "coordination: the lock was already gone at release"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "coordination: cannot release a lock; it ends with the lease")
            }
        }
    }
}
