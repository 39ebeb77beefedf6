//! High availability: several instances share the work through etcd.
//!
//! Each instance keeps one *session lease* alive (renewed every third of its TTL) and
//! registers under `PREFIX/CLUSTER/members/ID` with it. Before running an execution the
//! engine takes a [`WorkLock`](lock::WorkLock) attached to that lease, and the executor
//! *fences* every disruptive step: one etcd transaction confirms that the lock keys still
//! exist with the revision they were created at and the same lease. A dead instance's
//! lease expires after the TTL; its locks and membership vanish with it, so a peer takes
//! over the work and its share of the self-watch targets ([`shard`]). A step it was running
//! is recorded with its deadline under a lease of its own ([`Coordinator::begin_step`]):
//! the peer waits until that step must have ended.
//!
//! Fail safe: without a valid lease nothing disruptive runs.

pub mod etcd;
pub mod history;
pub mod lock;
pub mod shard;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::etcd::{Access, Etcd, EtcdError};
use crate::config::CoordinationConfig;
use crate::metrics::Metrics;

pub use history::{Shared, SharedAttempt, SharedCircuit};
pub use lock::{Acquire, CoordError, Fenced, StepMark, WorkLock, WorkRequest};

/// The lease as this instance knows it.
#[derive(Debug, Clone, Copy, Default)]
struct Session {
    /// Lease id; 0 when there is none.
    lease: i64,
    /// Until when the lease is surely alive: the send time of the last successful
    /// grant or renewal plus the TTL (the server restarted its clock later than that).
    valid_until: Option<Instant>,
    /// Whether the last exchange with etcd succeeded.
    up: bool,
    /// Since when etcd has not answered (or since start, before the first answer).
    down_since: Option<Instant>,
    /// Failed exchanges in a row (the log says so at the first and then now and then).
    failures: u32,
}

/// This instance's membership in the group, its lease and the locks taken with it.
pub struct Coordinator {
    instance_id: String,
    /// `key_prefix` + cluster name + `/`.
    prefix: String,
    ttl: Duration,
    etcd: Etcd,
    session: Mutex<Session>,
    members: RwLock<Option<Vec<String>>>,
    metrics: Arc<Metrics>,
}

/// The instance id when the config sets none: the host name, else `kafka-healing-PID`.
pub fn default_instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("kafka-healing-{}", std::process::id()))
}

/// Margin kept before the lease's end: a step is not started in the lease's last moment.
const MARGIN: Duration = Duration::from_millis(500);

impl Coordinator {
    /// A coordinator for `cluster` as configured (`ca_pem`: the contents of `ca_file`);
    /// nothing is sent until [`run`](Self::run).
    pub fn new(
        cfg: &CoordinationConfig,
        cluster: &str,
        ca_pem: Option<Vec<u8>>,
        metrics: Arc<Metrics>,
    ) -> Result<Coordinator, EtcdError> {
        let ttl = Duration::from_secs(cfg.lease_ttl_seconds.max(2));
        // A request must end well within the renewal period.
        let timeout = (ttl / 3).clamp(Duration::from_millis(500), Duration::from_secs(5));
        let access = Access {
            credentials: cfg
                .username
                .clone()
                .zip(cfg.password.as_ref().map(|p| p.expose().to_string())),
            ca_pem,
        };
        Ok(Coordinator {
            instance_id: cfg.instance_id.clone().unwrap_or_else(default_instance_id),
            prefix: format!("{}{}/", cfg.key_prefix, cluster),
            ttl,
            etcd: Etcd::new(cfg.endpoints.clone(), timeout, access)?,
            session: Mutex::new(Session {
                down_since: Some(Instant::now()),
                ..Session::default()
            }),
            members: RwLock::new(None),
            metrics,
        })
    }

    /// This instance's id among its peers.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The lease TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often a blocked lock is tried again.
    pub fn retry_period(&self) -> Duration {
        (self.ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(2))
    }

    fn session(&self) -> Session {
        match self.session.lock() {
            Ok(s) => *s,
            Err(p) => *p.into_inner(),
        }
    }

    fn set_session(&self, f: impl FnOnce(&mut Session)) {
        match self.session.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// The lease, when it is surely alive for at least a short margin more.
    pub fn lease(&self) -> Option<i64> {
        let s = self.session();
        match s.valid_until {
            Some(t) if s.lease != 0 && Instant::now() + MARGIN < t => Some(s.lease),
            _ => None,
        }
    }

    /// Whether etcd answered the last exchange and the lease is valid.
    pub fn is_up(&self) -> bool {
        self.session().up && self.lease().is_some()
    }

    /// How long coordination has been unavailable (`None` while it works). Counted from
    /// the start until the first lease, so a slow first contact is not an outage yet.
    pub fn down_for(&self) -> Option<Duration> {
        let s = self.session();
        match (s.up && self.lease().is_some(), s.down_since) {
            (true, _) => None,
            (false, Some(t)) => Some(t.elapsed()),
            (false, None) => Some(Duration::ZERO),
        }
    }

    /// The live members (sorted), or `None` while etcd is not reachable.
    pub fn members(&self) -> Option<Vec<String>> {
        if !self.is_up() {
            return None;
        }
        match self.members.read() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Keeps the lease and the membership alive until `cancel`; then revokes the lease,
    /// which releases this instance's locks and shard at once.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let period = self.ttl / 3;
        loop {
            self.tick().await;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
        }
        let lease = self.session().lease;
        if lease != 0 {
            self.set_session(|s| {
                *s = Session {
                    down_since: Some(Instant::now()),
                    ..Session::default()
                }
            });
            match self.etcd.revoke(lease).await {
                Ok(()) => info!(
                    lease,
                    "coordination: lease revoked, locks and shard released"
                ),
                Err(e) => {
                    warn!(error = %e, "coordination: cannot revoke the lease; it expires by itself")
                }
            }
        }
        self.metrics.coordination_up.set(0);
    }

    /// One renewal (or registration) and a refresh of the member list.
    async fn tick(&self) {
        let sent = Instant::now();
        let before = self.session();
        let result = match before.lease {
            0 => self.register(sent).await,
            lease => match self.etcd.keepalive(lease).await {
                Ok(ttl) if ttl > 0 => {
                    self.set_session(|s| s.valid_until = Some(sent + self.ttl));
                    Ok(())
                }
                Ok(_) => {
                    self.lost(lease, "etcd says the lease expired");
                    self.register(sent).await
                }
                Err(e) => Err(e),
            },
        };
        let result = match result {
            Ok(()) => self.refresh_members().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                if !before.up {
                    info!(instance = %self.instance_id, "coordination: etcd reachable, lease held");
                }
                self.set_session(|s| {
                    s.up = true;
                    s.down_since = None;
                    s.failures = 0;
                });
                self.metrics.coordination_up.set(1);
            }
            Err(e) => {
                if before.failures.is_multiple_of(60) {
                    warn!(error = %e, failures = before.failures + 1, "coordination DOWN: no remediation runs until etcd answers again");
                }
                self.set_session(|s| {
                    s.up = false;
                    s.down_since.get_or_insert_with(Instant::now);
                    s.failures = s.failures.saturating_add(1);
                });
                self.metrics.coordination_up.set(0);
                let s = self.session();
                if s.lease != 0 && s.valid_until.is_none_or(|t| Instant::now() >= t) {
                    self.lost(s.lease, "not renewed within its TTL");
                }
            }
        }
    }

    fn lost(&self, lease: i64, why: &str) {
        warn!(
            lease,
            why, "coordination: LEASE LOST: locks held with it are void"
        );
        self.metrics.coordination_lease_lost.inc();
        self.set_session(|s| {
            s.lease = 0;
            s.valid_until = None;
        });
    }

    async fn register(&self, sent: Instant) -> Result<(), EtcdError> {
        let lease = self.etcd.grant(self.ttl.as_secs()).await?;
        let key = format!("{}members/{}", self.prefix, self.instance_id);
        let value = serde_json::json!({"instance": self.instance_id}).to_string();
        self.etcd
            .txn(Vec::new(), vec![etcd::put(&key, &value, lease)], Vec::new())
            .await?;
        self.set_session(|s| {
            s.lease = lease;
            s.valid_until = Some(sent + self.ttl);
        });
        info!(instance = %self.instance_id, lease, "coordination: registered");
        Ok(())
    }

    async fn refresh_members(&self) -> Result<(), EtcdError> {
        let prefix = format!("{}members/", self.prefix);
        let mut ids: Vec<String> = self
            .etcd
            .range_prefix(&prefix)
            .await?
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_string))
            .collect();
        ids.sort();
        self.metrics.coordination_members.set(ids.len() as i64);
        let changed = {
            let mut m = match self.members.write() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            let changed = m.as_ref() != Some(&ids);
            *m = Some(ids.clone());
            changed
        };
        if changed {
            info!(members = ?ids, "coordination: membership changed");
        }
        Ok(())
    }

    /// Whether this instance watches `target` (`kafka/ID` or `zookeeper/ID`): its owner
    /// among the live members. While the member list is unknown, every target is watched
    /// (watching is read-only; remediation stays behind the locks).
    pub fn owns(&self, members: Option<&[String]>, target: &str) -> bool {
        let Some(members) = members else {
            return true;
        };
        let mut all = members.to_vec();
        if !all.iter().any(|m| m == &self.instance_id) {
            all.push(self.instance_id.clone());
        }
        shard::owner(&all, target) == Some(self.instance_id.as_str())
    }
}
