//! An alert storm: [`STORM_ALERTS`] alerts, 90 % of them duplicates, each delivered by two
//! Alertmanager replicas at once, as fast as the server takes them. Every acknowledged alert
//! is in the journal, and each (rule, target) ran exactly once (cooldown).

use std::sync::Arc;
use std::time::Duration;

use kafka_healing::ingest::fingerprint;

use crate::common::Scratch;
use crate::serve::harness::*;

use super::*;

/// Alerts in the storm (per replica).
pub const STORM_ALERTS: usize = 100_000;
/// Distinct label sets among them: the other 90 % are repeats.
pub const STORM_UNIQUE: usize = 10_000;
/// Alerts per webhook body (one Alertmanager notification).
pub const STORM_BATCH: usize = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_duplicates_from_two_replicas_is_journaled_and_runs_once_per_target() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let srv = Server::start(
        &s,
        &config("recovery: { cooldown_seconds: 3600 }\n"),
        &storm_rules(rec.to_str().expect("utf-8 path")),
    );
    let batches = Arc::new(storm_batches(STORM_ALERTS, STORM_UNIQUE, STORM_BATCH));
    let sent = send_storm(
        srv.url.clone(),
        batches.clone(),
        2,
        4,
        Duration::from_secs(300),
    )
    .await;
    assert!(
        sent.acked.iter().all(|&n| n == 2),
        "every batch acknowledged to both replicas"
    );
    post_sentinel_and_wait(&srv).await;

    let db = journal_db(s.path());
    let per_fp = alerts_per_fingerprint(&db);
    let repeats = (STORM_ALERTS / STORM_UNIQUE) as u64;
    for i in 0..STORM_UNIQUE {
        let labels = storm_labels(i);
        let fp = fingerprint(&serde_json::from_value(labels).expect("labels"));
        assert_eq!(
            per_fp.get(&fp).copied().unwrap_or(0),
            2 * repeats,
            "alert {i} ({fp}): every acknowledged delivery is journaled"
        );
    }
    let total: u64 = per_fp.values().sum();
    assert_eq!(total, 2 * STORM_ALERTS as u64 + 1, "plus the sentinel");

    let started = started_executions(&db);
    for node in ["kafka-1", "kafka-2", "kafka-3"] {
        assert_eq!(
            started.get(&("storm".to_string(), node.to_string())),
            Some(&vec!["succeeded".to_string()]),
            "one execution on {node}: {started:?}"
        );
        assert_eq!(
            recorded(s.path(), &format!("run-{node}")).len(),
            1,
            "ran once on {node}"
        );
    }
    assert_eq!(started.len(), 4, "storm ×3 and the sentinel: {started:?}");
    assert_eq!(integrity(s.path()), "ok");
    eprintln!(
        "storm: {} alerts ×2 replicas in {} bodies, {} 503s",
        STORM_ALERTS,
        batches.len() * 2,
        sent.unavailable
    );
}
