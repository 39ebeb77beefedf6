//! Storm and faults: bounded end-to-end tests of `kafka-healing serve` under an alert storm,
//! `kill -9`, a full journal disk, a stalling SMTP server, a step that leaves a daemon
//! behind, and a corpus of hostile label values.

mod crash;
mod daemon;
mod disk_full;
pub(crate) mod injection;
mod smtp_stall;
mod storm;

use std::path::Path;
use std::time::{Duration, Instant};

/// Whether process `pid` is gone (no such process, or a zombie waiting to be reaped).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| matches!(state, "Z" | "X")),
    }
}

/// Polls `done` every 50 ms for at most `secs` seconds; whether it held.
pub fn poll(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a pid written into `file` (by a fixture script), waiting for it at most 10 s.
pub fn read_pid(file: &Path) -> i32 {
    let mut pid = None;
    poll(10, || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        pid.is_some()
    });
    pid.unwrap_or_else(|| panic!("no pid in {}", file.display()))
}

/// SIGKILLs `pid` if it still runs (cleanup of fixtures a failed test left behind).
pub fn kill_if_alive(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// The rules of the storm tests: `Storm` alerts restart their broker (a recorder call
/// `run-NODE` per execution, disruptive, so one at a time); one `StormEnd` alert, posted
/// after the storm, runs `end`: once it has run, the engine has decided every alert
/// before it (it takes them in order).
pub fn storm_rules(rec: &str) -> String {
    format!(
        r#"rules:
  - name: storm
    matchers: ['alertname="Storm"']
    runbook: restart
  - name: storm-end
    matchers: ['alertname="StormEnd"']
    runbook: end
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["{rec}", "run-{{{{target.node_id}}}}"]
  end:
    disruptive: false
    steps:
      - name: end
        exec: ["{rec}", "end"]
"#
    )
}

/// Labels of unique alert `i` of a storm: three brokers, `i` in `instance`.
pub fn storm_labels(i: usize) -> serde_json::Value {
    serde_json::json!({
        "alertname": "Storm",
        "node_id": format!("kafka-{}", i % 3 + 1),
        "instance": format!("host-{i}:9404"),
        "severity": "critical",
    })
}

/// A storm as webhook bodies of `per_batch` alerts: `total` alerts, each of `unique` label
/// sets repeated `total / unique` times (so `1 - unique/total` of them are duplicates).
pub fn storm_batches(total: usize, unique: usize, per_batch: usize) -> Vec<(Vec<usize>, String)> {
    let seq: Vec<usize> = (0..total).map(|n| n % unique).collect();
    seq.chunks(per_batch)
        .map(|c| {
            let alerts = c
                .iter()
                .map(|&i| crate::serve::harness::alert("firing", storm_labels(i)))
                .collect();
            (c.to_vec(), crate::serve::harness::webhook("am", alerts))
        })
        .collect()
}

/// What the senders saw: per batch, how often it was acknowledged (200), and how many
/// answers were 503 or no answer at all (connection refused or reset).
#[derive(Debug, Default)]
pub struct Sent {
    /// Acknowledgements per batch index.
    pub acked: Vec<u32>,
    /// 503 answers.
    pub unavailable: u64,
    /// Requests that got no HTTP answer.
    pub no_answer: u64,
}

/// Two Alertmanager replicas: `replicas` senders post every batch, each with `in_flight`
/// requests at a time, as fast as the server answers. Like Alertmanager, a batch is sent
/// again after a 5xx or no answer until it is acknowledged; any other status fails the test.
/// Gives up (panics) after `limit`.
pub async fn send_storm(
    url: String,
    batches: std::sync::Arc<Vec<(Vec<usize>, String)>>,
    replicas: usize,
    in_flight: usize,
    limit: Duration,
) -> Sent {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let acked: Arc<Vec<AtomicU64>> =
        Arc::new((0..batches.len()).map(|_| AtomicU64::new(0)).collect());
    let unavailable = Arc::new(AtomicU64::new(0));
    let no_answer = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + limit;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..replicas {
        let next = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        for _ in 0..in_flight {
            let (next, client, batches, acked) =
                (next.clone(), client.clone(), batches.clone(), acked.clone());
            let (unavailable, no_answer) = (unavailable.clone(), no_answer.clone());
            let url = format!("{url}/api/v1/alerts");
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, body)) = batches.get(i) else {
                        return;
                    };
                    loop {
                        assert!(
                            Instant::now() < deadline,
                            "the storm did not get through in time"
                        );
                        let r = client
                            .post(&url)
                            .header(
                                "Authorization",
                                format!("Bearer {}", crate::serve::harness::TOKEN),
                            )
                            .header("Content-Type", "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        match r {
                            Ok(resp) if resp.status() == 200 => {
                                acked[i].fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Ok(resp) if resp.status().is_server_error() => {
                                unavailable.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(resp) => panic!("batch {i}: unexpected {}", resp.status()),
                            Err(_) => {
                                no_answer.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    Sent {
        acked: acked
            .iter()
            .map(|a| a.load(Ordering::Relaxed) as u32)
            .collect(),
        unavailable: unavailable.load(Ordering::Relaxed),
        no_answer: no_answer.load(Ordering::Relaxed),
    }
}

/// Opens the journal read-only (SQLite, alongside a running server).
pub fn journal_db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        dir.join("state/journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the journal")
}

/// Journal rows per alert fingerprint.
pub fn alerts_per_fingerprint(db: &rusqlite::Connection) -> std::collections::HashMap<String, u64> {
    let mut st = db
        .prepare("SELECT fingerprint, COUNT(*) FROM alerts GROUP BY fingerprint")
        .expect("prepare");
    st.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

/// Executions that started (anything but skipped, cancelled or dry_run), per
/// (rule, target): (count, statuses).
pub fn started_executions(
    db: &rusqlite::Connection,
) -> std::collections::BTreeMap<(String, String), Vec<String>> {
    let mut st = db
        .prepare(
            "SELECT rule, COALESCE(target, '-'), status FROM executions \
             WHERE started_ms IS NOT NULL OR status IN ('running', 'succeeded', 'failed', 'escalated', 'interrupted') \
             ORDER BY id",
        )
        .expect("prepare");
    let mut out: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for r in st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .expect("query")
    {
        let (rule, target, status) = r.expect("row");
        out.entry((rule, target)).or_default().push(status);
    }
    out
}

/// `PRAGMA integrity_check` of the journal: `ok` when sound.
pub fn integrity(dir: &Path) -> String {
    journal_db(dir)
        .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .expect("integrity_check")
}

/// Posts a `StormEnd` alert (until acknowledged) and waits until the engine has decided
/// it: then every alert acknowledged before it has been decided too (alerts are decided in
/// the order they are handed over). Each call's sentinel has its own label set, so its
/// decision is journaled even when the rule is in its cooldown (a skip is journaled once
/// per alert).
pub async fn post_sentinel_and_wait(srv: &crate::serve::harness::Server) {
    use crate::serve::harness::{alert, webhook};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SENTINEL: AtomicU64 = AtomicU64::new(0);
    let labels = serde_json::json!({
        "alertname": "StormEnd",
        "sentinel": SENTINEL.fetch_add(1, Ordering::Relaxed).to_string(),
    });
    let fp =
        kafka_healing::alert::fingerprint(&serde_json::from_value(labels.clone()).expect("labels"));
    let body = webhook("am", vec![alert("firing", labels)]);
    let mut ok = false;
    for _ in 0..100 {
        if srv.post(&body).await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the sentinel alert was not acknowledged");
    srv.wait_until(120, "the sentinel's decision", |l| {
        l.iter().any(|e| {
            e["rule"] == "storm-end"
                && e["fingerprint"] == fp.as_str()
                && (e["status"] == "succeeded" || e["status"] == "skipped")
        })
    })
    .await;
}
