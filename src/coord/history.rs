//! Attempts and open circuits shared through etcd, so a failover grants no fresh
//! `max_attempts` and a circuit one instance opened holds on every instance.
//!
//! Keys under `PREFIX/CLUSTER/`:
//! - `attempts/W` — the attempts made at work `W` within the attempt window, appended by
//!   the lock holder when a run ends, attached to a lease of the window's length;
//! - `circuits/C` — an open circuit of (rule, target) `C`, without a lease: it stays until
//!   a reset or its closing by itself deletes it.
//!
//! Read in the lock transaction itself: whoever takes a lock sees every attempt and
//! circuit written before it, and decides with them (the engine's core treats them as the
//! truth in HA mode, so a reset on one instance is a reset on all).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Coordinator;
use super::etcd::{self, EtcdError, Kv};
use super::shard::fnv1a;

/// One attempt as peers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedAttempt {
    /// When it started, Unix ms.
    pub started_ms: i64,
    /// When it ended, Unix ms.
    pub finished_ms: i64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// An open circuit as peers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedCircuit {
    /// The rule.
    pub rule: String,
    /// The target (`None`: a runbook without one).
    pub target: Option<String>,
    /// Opened at, Unix ms.
    pub opened_ms: i64,
    /// Why.
    pub reason: String,
    /// Since when its problem has been resolved, if it is.
    pub healthy_since_ms: Option<i64>,
    /// Which instance opened it.
    pub instance: String,
}

/// What etcd knew about a piece of work when its lock was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shared {
    /// Its attempts within the window, oldest first.
    pub attempts: Vec<SharedAttempt>,
    /// Its (rule, target)'s open circuit, if any.
    pub circuit: Option<SharedCircuit>,
}

/// The stored value of `attempts/W`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Attempts {
    rule: String,
    target: Option<String>,
    attempts: Vec<SharedAttempt>,
}

/// Identity of a (rule, target) circuit.
pub fn circuit_identity(rule: &str, target: Option<&str>) -> String {
    format!("{rule}\u{0}{}", target.unwrap_or("-"))
}

impl Shared {
    /// Reads the two ranges the lock transaction returned (attempts, then circuit).
    pub(super) fn from_ranges(attempts: Option<&Kv>, circuit: Option<&Kv>) -> Shared {
        let mut list = attempts
            .and_then(|kv| serde_json::from_str::<Attempts>(&kv.value).ok())
            .map(|a| a.attempts)
            .unwrap_or_default();
        list.sort_by_key(|a| a.started_ms);
        Shared {
            attempts: list,
            circuit: circuit.and_then(|kv| serde_json::from_str(&kv.value).ok()),
        }
    }
}

impl Coordinator {
    pub(super) fn attempts_key(&self, work_id: &str) -> String {
        format!("{}attempts/{work_id}", self.prefix)
    }

    pub(super) fn circuit_key(&self, rule: &str, target: Option<&str>) -> String {
        let id = fnv1a(circuit_identity(rule, target).as_bytes());
        format!("{}circuits/{id:016x}", self.prefix)
    }

    /// Appends `attempt` to work `work_id`'s shared attempts (dropping those older than
    /// `window_secs`), keeping them for the window. Called by the lock holder while it
    /// still holds the lock, so no peer writes the same key meanwhile.
    pub(super) async fn record_attempt(
        &self,
        work_id: &str,
        rule: &str,
        target: Option<&str>,
        attempt: SharedAttempt,
        window_secs: u64,
    ) -> Result<(), EtcdError> {
        let key = self.attempts_key(work_id);
        let found = self.etcd.range_prefix(&key).await?;
        let mut stored = found
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| serde_json::from_str::<Attempts>(&kv.value).ok())
            .unwrap_or_default();
        let window_ms = i64::try_from(window_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let cutoff = attempt.finished_ms.saturating_sub(window_ms);
        stored.attempts.retain(|a| a.started_ms >= cutoff);
        stored.attempts.push(attempt);
        stored.rule = rule.to_string();
        stored.target = target.map(String::from);
        let lease = self.etcd.grant(window_secs.max(self.ttl.as_secs())).await?;
        let value = serde_json::to_string(&stored).map_err(|e| EtcdError::Decode(e.to_string()))?;
        self.etcd
            .txn(Vec::new(), vec![etcd::put(&key, &value, lease)], Vec::new())
            .await?;
        Ok(())
    }

    /// Records an open circuit for every instance.
    pub async fn open_circuit(&self, c: SharedCircuit) -> Result<(), EtcdError> {
        let key = self.circuit_key(&c.rule, c.target.as_deref());
        let value = serde_json::to_string(&c).map_err(|e| EtcdError::Decode(e.to_string()))?;
        self.etcd
            .txn(Vec::new(), vec![etcd::put(&key, &value, 0)], Vec::new())
            .await?;
        Ok(())
    }

    /// Updates since when an open circuit's problem has been resolved, if it is still
    /// recorded.
    pub async fn circuit_health(
        &self,
        rule: &str,
        target: Option<&str>,
        healthy_since_ms: Option<i64>,
    ) -> Result<(), EtcdError> {
        let key = self.circuit_key(rule, target);
        let found = self.etcd.range_prefix(&key).await?;
        let Some(kv) = found.iter().find(|kv| kv.key == key) else {
            return Ok(());
        };
        let Ok(mut c) = serde_json::from_str::<SharedCircuit>(&kv.value) else {
            return Ok(());
        };
        c.healthy_since_ms = healthy_since_ms;
        let value = serde_json::to_string(&c).map_err(|e| EtcdError::Decode(e.to_string()))?;
        // Only if unchanged since read: a reset meanwhile must not be undone.
        self.etcd
            .txn(
                vec![etcd::modified_at(&key, kv.mod_revision)],
                vec![etcd::put(&key, &value, 0)],
                Vec::new(),
            )
            .await?;
        Ok(())
    }

    /// Forgets, for every instance, the open circuits and attempts of the work that
    /// `covers(rule, target)` selects (a reset, or a circuit that closed by itself).
    /// Returns how many keys were deleted.
    pub async fn forget(
        &self,
        covers: impl Fn(&str, Option<&str>) -> bool,
    ) -> Result<usize, EtcdError> {
        let mut doomed = Vec::new();
        for (dir, parse) in [
            (
                "circuits/",
                parse_circuit as fn(&str) -> Option<(String, Option<String>)>,
            ),
            ("attempts/", parse_attempts),
        ] {
            let prefix = format!("{}{dir}", self.prefix);
            for kv in self.etcd.range_prefix(&prefix).await? {
                if let Some((rule, target)) = parse(&kv.value)
                    && covers(&rule, target.as_deref())
                {
                    doomed.push(etcd::delete(&kv.key));
                }
            }
        }
        let n = doomed.len();
        if n > 0 {
            self.etcd.txn(Vec::new(), doomed, Vec::new()).await?;
        }
        Ok(n)
    }
}

fn parse_circuit(v: &str) -> Option<(String, Option<String>)> {
    serde_json::from_str::<SharedCircuit>(v)
        .ok()
        .map(|c| (c.rule, c.target))
}

fn parse_attempts(v: &str) -> Option<(String, Option<String>)> {
    let v: Value = serde_json::from_str(v).ok()?;
    let rule = v["rule"].as_str()?.to_string();
    Some((rule, v["target"].as_str().map(String::from)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &str) -> Kv {
        Kv {
            key: "k".into(),
            value: value.into(),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }
    }

    #[test]
    fn shared_state_reads_back_sorted_and_ignores_garbage() {
        let a = kv(r#"{"rule":"r","target":"kafka-1","attempts":[
                {"started_ms":20,"finished_ms":25,"ok":false},
                {"started_ms":10,"finished_ms":15,"ok":false}]}"#);
        let c = kv(
            r#"{"rule":"r","target":null,"opened_ms":5,"reason":"x","healthy_since_ms":null,"instance":"ha-1"}"#,
        );
        let s = Shared::from_ranges(Some(&a), Some(&c));
        assert_eq!(
            s.attempts.iter().map(|a| a.started_ms).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert_eq!(s.circuit.as_ref().map(|c| c.target.clone()), Some(None));
        let junk = kv("{not json");
        assert_eq!(
            Shared::from_ranges(Some(&junk), Some(&junk)),
            Shared::default()
        );
        assert_eq!(
            parse_attempts(&a.value),
            Some(("r".into(), Some("kafka-1".into())))
        );
        assert_eq!(parse_circuit(&c.value), Some(("r".into(), None)));
    }

    #[test]
    fn circuit_identities_differ_per_target_and_dash() {
        assert_ne!(
            circuit_identity("r", Some("-x")),
            circuit_identity("r", None)
        );
        assert_eq!(circuit_identity("r", None), "r\u{0}-");
    }
}
