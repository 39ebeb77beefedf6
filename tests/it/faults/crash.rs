//! `kill -9` of the server in the middle of a storm, while a runbook step runs. After a
//! restart (same port, the senders retrying what was not acknowledged, as Alertmanager does):
//! no acknowledged alert is missing, every step that started is in the record, and nothing
//! ran twice (the recorder's files count the runs).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kafka_healing::ingest::fingerprint;

use crate::common::Scratch;
use crate::mailbox::free_port;
use crate::serve::harness::*;

use super::storm::STORM_BATCH;
use super::*;

/// Alerts per replica in this storm (smaller than the plain storm's: it only has to be
/// running when the server is killed).
const CRASH_ALERTS: usize = 30_000;
/// Distinct label sets among them.
const CRASH_UNIQUE: usize = 3_000;

const NODES: [&str; 3] = ["kafka-1", "kafka-2", "kafka-3"];

/// Process ids of the recorder calls for `name` (from its `name.PID` files).
fn recorder_pids(dir: &Path, name: &str) -> Vec<i32> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix(&format!("{name}."))?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_storm_and_step_loses_no_alert_and_runs_nothing_twice() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("sleep", "30");
    let port = free_port();
    let cfg = config("recovery: { cooldown_seconds: 3600 }\n")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let mut srv = Server::start(&s, &cfg, &storm_rules(rec.to_str().expect("utf-8 path")));
    let batches = Arc::new(storm_batches(CRASH_ALERTS, CRASH_UNIQUE, STORM_BATCH));
    let storm = tokio::spawn(send_storm(
        srv.url.clone(),
        batches.clone(),
        2,
        4,
        Duration::from_secs(300),
    ));

    // Kill once a step runs and a quarter of the storm is journaled.
    let dir = s.path().to_path_buf();
    let quarter = (CRASH_ALERTS / 2) as i64;
    let ready = tokio::task::spawn_blocking(move || {
        poll(120, || {
            let running = NODES
                .iter()
                .any(|n| !recorded(&dir, &format!("run-{n}")).is_empty());
            let journaled: i64 = journal_db(&dir)
                .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
                .unwrap_or(0);
            running && journaled >= quarter
        })
    })
    .await
    .expect("poll");
    assert!(
        ready,
        "no step running with the storm under way; log:\n{}",
        srv.log()
    );
    srv.child.kill().expect("kill -9");
    srv.child.wait().expect("reap");
    drop(srv);
    // The killed server's step would run on: stop it (its group) and let runs be quick.
    let first: Vec<(&str, i32)> = NODES
        .iter()
        .flat_map(|n| {
            recorder_pids(s.path(), &format!("run-{n}"))
                .into_iter()
                .map(move |p| (*n, p))
        })
        .collect();
    assert_eq!(first.len(), 1, "one step was running: {first:?}");
    let (killed_node, killed_pid) = first[0];
    let others: Vec<&str> = NODES
        .iter()
        .copied()
        .filter(|n| *n != killed_node)
        .collect();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(killed_pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    s.write("sleep", "0");

    let srv = Server::start_in(s.path());
    let sent = storm.await.expect("storm task");
    assert!(
        sent.no_answer > 0,
        "the storm was under way when the server died"
    );
    let first_stats = (sent.no_answer, sent.unavailable);
    assert!(
        sent.acked.iter().all(|&n| n == 2),
        "every batch acknowledged to both replicas"
    );
    post_sentinel_and_wait(&srv).await;
    // The two other brokers' executions were queued at the crash (cancelled at the
    // restart) and run after it on the storm's later alerts.
    wait_db(s.path(), 60, "the queued brokers to run", |db| {
        others.iter().all(|n| succeeded_on(db, n) >= 1)
    });

    let db = journal_db(s.path());
    let per_fp = alerts_per_fingerprint(&db);
    let mut acked_per_fp = std::collections::HashMap::<String, u64>::new();
    for ((members, _), n) in batches.iter().zip(&sent.acked) {
        for &i in members {
            let fp = fingerprint(&serde_json::from_value(storm_labels(i)).expect("labels"));
            *acked_per_fp.entry(fp).or_default() += u64::from(*n);
        }
    }
    assert_eq!(acked_per_fp.len(), CRASH_UNIQUE);
    for (fp, acked) in &acked_per_fp {
        let journaled = per_fp.get(fp).copied().unwrap_or(0);
        assert!(
            journaled >= *acked,
            "alert {fp}: acknowledged {acked} times, journaled {journaled}"
        );
    }
    let interrupted: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM executions WHERE rule = 'storm' AND status = 'interrupted'",
            [],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(interrupted, 1, "the killed step is recorded as interrupted");
    let undecided: i64 = db
        .query_row("SELECT COUNT(*) FROM undecided", [], |r| r.get(0))
        .expect("query");
    assert_eq!(
        undecided, 0,
        "alerts journaled before the kill and not decided then are decided after the restart"
    );
    assert_runs_match_record(s.path());
    assert_eq!(integrity(s.path()), "ok");

    // More of the storm (new label sets: each cooldown skip is journaled once per alert),
    // then a second kill -9 and restart: the cooldowns of kafka-2 and kafka-3 survive it
    // however many skips were journaled after their runs.
    let more = Arc::new(
        storm_batches(2 * CRASH_UNIQUE, 2 * CRASH_UNIQUE, STORM_BATCH)
            .split_off(CRASH_UNIQUE / STORM_BATCH),
    );
    let sent = send_storm(srv.url.clone(), more, 1, 4, Duration::from_secs(120)).await;
    assert!(sent.acked.iter().all(|&n| n == 1));
    post_sentinel_and_wait(&srv).await;
    // Brokers in their cooldown now (the killed one too, if its retry already succeeded).
    let cooling: Vec<(&str, usize)> = NODES
        .iter()
        .filter(|n| succeeded_on(&journal_db(s.path()), n) >= 1)
        .map(|n| (*n, recorded(s.path(), &format!("run-{n}")).len()))
        .collect();
    assert!(cooling.len() >= 2, "{cooling:?}");
    let mut srv = srv;
    srv.child.kill().expect("kill -9");
    srv.child.wait().expect("reap");
    drop(srv);
    let srv = Server::start_in(s.path());
    let again = storm_batches(CRASH_UNIQUE, CRASH_UNIQUE, STORM_BATCH);
    for (_, body) in &again {
        assert_eq!(srv.post(body).await.0, 200);
    }
    post_sentinel_and_wait(&srv).await;
    for (node, runs) in cooling {
        assert_eq!(
            recorded(s.path(), &format!("run-{node}")).len(),
            runs,
            "{node} ran again within its cooldown after a restart: {}",
            history(s.path(), node)
        );
    }
    assert_runs_match_record(s.path());
    assert_eq!(integrity(s.path()), "ok");
    eprintln!(
        "crash storm: {} bodies ×2, {} without answer, {} 503s",
        batches.len(),
        first_stats.0,
        first_stats.1
    );
}

/// Succeeded `storm` executions on `node`.
fn succeeded_on(db: &rusqlite::Connection, node: &str) -> i64 {
    db.query_row(
        "SELECT COUNT(*) FROM executions WHERE rule = 'storm' AND target = ?1 AND status = 'succeeded'",
        [node],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// Polls the journal until `done` holds (at most `secs` seconds).
fn wait_db(dir: &Path, secs: u64, what: &str, done: impl Fn(&rusqlite::Connection) -> bool) {
    let ok = poll(secs, || done(&journal_db(dir)));
    assert!(
        ok,
        "timed out waiting for {what}: {:?}",
        started_executions(&journal_db(dir))
    );
}

/// Every recorder run (its `KAFKA_HEALING_EXECUTION_ID`) is a started `storm` execution in
/// the journal, and no execution ran twice.
fn assert_runs_match_record(dir: &Path) {
    let mut ran: Vec<i64> = ["kafka-1", "kafka-2", "kafka-3"]
        .iter()
        .flat_map(|n| recorded(dir, &format!("run-{n}")))
        .map(|(_, _, _, env)| {
            env.lines()
                .find_map(|l| l.strip_prefix("KAFKA_HEALING_EXECUTION_ID="))
                .and_then(|v| v.parse().ok())
                .expect("execution id in the recorder's environment")
        })
        .collect();
    ran.sort();
    let db = journal_db(dir);
    let mut st = db
        .prepare(
            "SELECT id FROM executions WHERE rule = 'storm' AND \
             status IN ('running', 'succeeded', 'failed', 'escalated', 'interrupted') ORDER BY id",
        )
        .expect("prepare");
    let record: Vec<i64> = st
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(
        ran, record,
        "runs (by execution id) against the journal's started executions"
    );
}

/// The non-skipped `storm` executions on `node`, for failure messages.
fn history(dir: &Path, node: &str) -> String {
    let db = journal_db(dir);
    let mut st = db
        .prepare(
            "SELECT id, status, attempt, created_ms, reason FROM executions \
             WHERE rule = 'storm' AND target = ?1 AND status != 'skipped' ORDER BY id",
        )
        .expect("prepare");
    st.query_map([node], |r| {
        Ok(format!(
            "#{} {} attempt {} at {}: {}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?
        ))
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect::<Vec<_>>()
    .join("\n")
}
