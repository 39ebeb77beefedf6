//! The journal against real SQLite files: round trips, group commit, per-request
//! rollback inside a batch, crash recovery, filters, and write failures surfacing as
//! errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kafka_healing::journal::{
    CANCELLED_REASON, Circuit, Event, ExecStatus, ExecutionFilter, INTERRUPTED_REASON, Journal,
    JournalError, NewAlert, NewExecution, StepRecord, StepStatus, WriteOp,
};
use serde_json::json;

/// A fresh directory and the journal path inside it (in a subdirectory that does not
/// exist yet, so `open` has to create it).
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state").join("journal.db");
    (dir, path)
}

fn open(path: &Path) -> Journal {
    let (j, interrupted) = Journal::open(path).expect("open journal");
    assert!(
        interrupted.is_empty(),
        "nothing to recover: {interrupted:?}"
    );
    j
}

fn alert(fp: &str, n: usize) -> NewAlert {
    NewAlert {
        received_ms: 1_700_000_000_000 + n as i64,
        source: "webhook".into(),
        receiver: "kafka-healing".into(),
        group_key: "{}:{alertname=\"KafkaBrokerDown\"}".into(),
        external_url: "http://am.example.com:9093".into(),
        fingerprint: fp.into(),
        status: "firing".into(),
        labels: BTreeMap::from([
            ("alertname".into(), "KafkaBrokerDown".into()),
            ("instance".into(), format!("k{n}.example.com:9404")),
            (
                "weird".into(),
                "quote\" back\\slash é 🚀 ; $(rm -rf /)\n".into(),
            ),
        ]),
        annotations: BTreeMap::from([("summary".into(), "broker down".into())]),
        starts_at: "2024-05-01T10:00:00Z".into(),
        ends_at: "0001-01-01T00:00:00Z".into(),
        generator_url: "http://prom.example.com/graph?g0.expr=up".into(),
    }
}

fn execution(
    rule: &str,
    target: Option<&str>,
    status: ExecStatus,
    created_ms: i64,
) -> NewExecution {
    NewExecution {
        id: None,
        alert_id: None,
        rule: rule.into(),
        runbook: format!("{rule}-runbook"),
        target: target.map(str::to_owned),
        fingerprint: "fp0".into(),
        status,
        reason: "matched".into(),
        dry_run: false,
        disruptive: true,
        attempt: 1,
        plan: json!([{ "name": "restart", "argv": ["systemctl", "restart", "kafka"] }]),
        created_ms,
    }
}

fn step(index: u32, status: StepStatus) -> StepRecord {
    StepRecord {
        index,
        name: format!("step-{index}"),
        kind: "exec".into(),
        argv: vec!["sh".into(), "-c".into(), "echo 'a b' \"c\"".into()],
        status,
        exit_code: Some(index as i32),
        signal: None,
        attempts: 1 + index,
        started_ms: 1_000 + i64::from(index),
        duration_ms: 250,
        stdout: format!("line one\nline two é\0nul {index}"),
        stderr: String::new(),
        stdout_truncated: index.is_multiple_of(2),
        stderr_truncated: false,
        error: None,
    }
}

fn event(execution_id: Option<i64>, kind: &str, at_ms: i64) -> Event {
    Event {
        at_ms,
        execution_id,
        rule: Some("broker-down".into()),
        target: Some("kafka-1".into()),
        kind: kind.into(),
        message: format!("{kind} happened"),
    }
}

/// A second, ordinary SQLite connection to the journal file, as another process would
/// have: used to hold the write lock (so requests pile up into one batch) and to install
/// a trigger that makes chosen inserts fail.
fn side_connection(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("side connection");
    c.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trips_every_type() {
    let (_dir, path) = scratch();
    let j = open(&path);
    assert!(j.is_healthy());

    // Alerts: ids in order, every field back byte for byte.
    let alerts = vec![alert("fp-a", 1), alert("fp-a", 2), alert("fp-b", 3)];
    let ids = j
        .record_alerts(alerts.clone())
        .await
        .expect("record alerts");
    assert_eq!(ids.len(), 3);
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    assert_eq!(
        j.alerts_by_fingerprint("fp-a").expect("read"),
        vec![(ids[0], alerts[0].clone()), (ids[1], alerts[1].clone())]
    );
    assert_eq!(
        j.alerts_by_fingerprint("fp-b").expect("read"),
        vec![(ids[2], alerts[2].clone())]
    );
    assert!(j.alerts_by_fingerprint("nope").expect("read").is_empty());
    assert_eq!(j.alert_count().expect("count"), 3);
    assert_eq!(
        j.record_alerts(Vec::new()).await.expect("empty"),
        Vec::<i64>::new()
    );

    // Executions, one per status, with and without target and alert.
    let statuses = [
        ExecStatus::Queued,
        ExecStatus::Running,
        ExecStatus::Succeeded,
        ExecStatus::Failed,
        ExecStatus::Escalated,
        ExecStatus::Cancelled,
        ExecStatus::Interrupted,
        ExecStatus::Skipped,
        ExecStatus::DryRun,
    ];
    for (n, status) in statuses.into_iter().enumerate() {
        let mut e = execution("broker-down", Some("kafka-1"), status, 5_000 + n as i64);
        if n % 2 == 0 {
            e.target = None;
            e.alert_id = Some(ids[0]);
            e.dry_run = true;
            e.disruptive = false;
            e.attempt = 7;
            e.plan = json!({ "nested": [1, 2.5, null, "x"] });
        }
        let id = j.create_execution(e.clone()).await.expect("create");
        let (got, steps, events) = j.get_execution(id).expect("get").expect("exists");
        assert!(steps.is_empty() && events.is_empty());
        assert_eq!(got.id, id);
        assert_eq!(got.alert_id, e.alert_id);
        assert_eq!(got.rule, e.rule);
        assert_eq!(got.runbook, e.runbook);
        assert_eq!(got.target, e.target);
        assert_eq!(got.fingerprint, e.fingerprint);
        assert_eq!(got.status, status);
        assert_eq!(got.reason, e.reason);
        assert_eq!(got.dry_run, e.dry_run);
        assert_eq!(got.disruptive, e.disruptive);
        assert_eq!(got.attempt, e.attempt);
        assert_eq!(got.plan, e.plan);
        assert_eq!(got.created_ms, e.created_ms);
        let started = (status == ExecStatus::Running).then_some(e.created_ms);
        assert_eq!(got.started_ms, started, "{status:?}");
        let finished = status.is_terminal().then_some(e.created_ms);
        assert_eq!(got.finished_ms, finished, "{status:?}");
    }
    assert!(j.get_execution(999_999).expect("get").is_none());

    // Steps (every status, recorded out of order) and events.
    let id = j
        .create_execution(execution("r", Some("kafka-2"), ExecStatus::Running, 9_000))
        .await
        .expect("create");
    let mut all = vec![
        step(2, StepStatus::TimedOut),
        step(0, StepStatus::Succeeded),
        step(3, StepStatus::NotRun),
        step(1, StepStatus::Failed),
    ];
    all[0].signal = Some(9);
    all[0].exit_code = None;
    all[0].stderr = "killed\n".repeat(1000);
    all[0].stderr_truncated = true;
    all[2].error = Some("an earlier step aborted".into());
    for s in &all {
        j.record_step(id, s.clone()).await.expect("record step");
    }
    let e1 = event(Some(id), "queued", 1);
    let e2 = Event {
        rule: None,
        target: None,
        ..event(Some(id), "escalation", 2)
    };
    j.add_event(e1.clone()).await.expect("event");
    j.add_event(e2.clone()).await.expect("event");
    j.add_event(event(None, "duplicate", 3))
        .await
        .expect("free event");
    let (_, steps, events) = j.get_execution(id).expect("get").expect("exists");
    all.sort_by_key(|s| s.index);
    assert_eq!(steps, all);
    assert_eq!(events, vec![e1, e2]);
    // The same step index twice is refused.
    assert!(
        j.record_step(id, step(0, StepStatus::Succeeded))
            .await
            .is_err()
    );

    // Circuits: open, re-open (upsert), close.
    let c1 = Circuit {
        rule: "broker-down".into(),
        target: "kafka-1".into(),
        opened_ms: 10,
        reason: "3 failures".into(),
        healthy_since_ms: None,
    };
    let c2 = Circuit {
        rule: "disk".into(),
        target: "-".into(),
        opened_ms: 11,
        reason: "escalated".into(),
        healthy_since_ms: None,
    };
    j.open_circuit(c2.clone()).await.expect("open");
    j.open_circuit(c1.clone()).await.expect("open");
    assert_eq!(
        j.open_circuits().expect("read"),
        vec![c1.clone(), c2.clone()]
    );
    let c1b = Circuit {
        opened_ms: 20,
        reason: "again".into(),
        ..c1.clone()
    };
    j.open_circuit(c1b.clone()).await.expect("upsert");
    assert_eq!(j.open_circuits().expect("read"), vec![c1b, c2.clone()]);
    // Since when its problem is resolved: recorded, and cleared when it fires again.
    let health = |since: Option<i64>| WriteOp::CircuitHealth {
        rule: "disk".into(),
        target: "-".into(),
        healthy_since_ms: since,
    };
    j.write(vec![health(Some(15))]).await.expect("health");
    assert_eq!(
        j.open_circuits().expect("read")[1].healthy_since_ms,
        Some(15)
    );
    j.write(vec![health(None)]).await.expect("health");
    assert_eq!(j.open_circuits().expect("read")[1], c2);
    assert!(
        j.close_circuit("broker-down", "kafka-1")
            .await
            .expect("close")
    );
    assert!(
        !j.close_circuit("broker-down", "kafka-1")
            .await
            .expect("close again")
    );
    assert!(
        !j.close_circuit("disk", "kafka-1")
            .await
            .expect("other target")
    );
    assert_eq!(j.open_circuits().expect("read"), vec![c2]);

    // Everything survives a reopen (the two `running` executions come back interrupted).
    drop(j);
    let (j, interrupted) = Journal::open(&path).expect("reopen");
    let mut back: Vec<_> = interrupted.iter().map(|e| e.rule.as_str()).collect();
    back.sort_unstable();
    assert_eq!(back, ["broker-down", "r"]);
    assert_eq!(j.alert_count().expect("count"), 3);
    let (_, steps, _) = j.get_execution(id).expect("get").expect("exists");
    assert_eq!(steps, all);
    assert_eq!(j.open_circuits().expect("read").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_status_sets_times_and_reason() {
    let (_dir, path) = scratch();
    let j = open(&path);
    let id = j
        .create_execution(execution("r", Some("kafka-1"), ExecStatus::Queued, 100))
        .await
        .expect("create");

    j.set_status(id, ExecStatus::Running, None, 200)
        .await
        .expect("run");
    let (e, _, _) = j.get_execution(id).expect("get").expect("exists");
    assert_eq!(
        (e.status, e.started_ms, e.finished_ms),
        (ExecStatus::Running, Some(200), None)
    );
    assert_eq!(e.reason, "matched", "None keeps the reason");

    j.set_status(
        id,
        ExecStatus::Failed,
        Some("step restart exited 1".into()),
        300,
    )
    .await
    .expect("finish");
    let (e, _, _) = j.get_execution(id).expect("get").expect("exists");
    assert_eq!(e.status, ExecStatus::Failed);
    assert_eq!((e.started_ms, e.finished_ms), (Some(200), Some(300)));
    assert_eq!(e.reason, "step restart exited 1");

    // Terminal states never change again; unknown ids are errors.
    let err = j
        .set_status(id, ExecStatus::Running, None, 400)
        .await
        .expect_err("terminal");
    assert!(
        matches!(err, JournalError::AlreadyFinished { id: i, .. } if i == id),
        "{err}"
    );
    let err = j
        .set_status(123_456, ExecStatus::Running, None, 400)
        .await
        .expect_err("unknown");
    assert!(
        matches!(err, JournalError::NoSuchExecution(123_456)),
        "{err}"
    );
    let (e, _, _) = j.get_execution(id).expect("get").expect("exists");
    assert_eq!((e.status, e.finished_ms), (ExecStatus::Failed, Some(300)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn group_commit_batches_concurrent_writes() {
    let (_dir, path) = scratch();
    let j = open(&path);
    let before = j.commits();
    let tasks: Vec<_> = (0..500)
        .map(|n| {
            let j = j.clone();
            tokio::spawn(async move { j.record_alerts(vec![alert(&format!("fp-{n}"), n)]).await })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        let got = t.await.expect("task").expect("record");
        assert_eq!(got.len(), 1);
        ids.extend(got);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 500, "ids are distinct");
    assert_eq!(j.alert_count().expect("count"), 500);
    let commits = j.commits() - before;
    let stats = j.stats();
    eprintln!("500 concurrent record_alerts: {commits} commits, {stats:?}");
    assert!(commits >= 1);
    assert!(
        commits < 500,
        "no batching: {commits} commits for 500 writes"
    );
    assert!(stats.largest_batch > 1, "{stats:?}");
    assert_eq!(stats.failed_batches, 0);
}

/// Holds the write lock from a second connection and queues a one-alert request, which the
/// writer's first batch then waits with in BEGIN (busy timeout): what is queued next waits
/// behind it. Returns the lock's connection (`COMMIT` releases it), the commits so far and
/// the first request.
async fn held_after_first(
    j: &Journal,
    path: &Path,
) -> (
    rusqlite::Connection,
    u64,
    tokio::task::JoinHandle<Result<Vec<i64>, JournalError>>,
) {
    let side = side_connection(path);
    side.execute_batch("BEGIN IMMEDIATE")
        .expect("hold write lock");
    let before = j.commits();
    let first = {
        let j = j.clone();
        tokio::spawn(async move { j.record_alerts(vec![alert("first", 0)]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    (side, before, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_requests_commit_in_one_transaction() {
    // Deterministic batching: another connection holds the write lock, so the writer's
    // first batch waits in BEGIN (busy timeout) while 100 more requests queue; once the
    // lock is released exactly two commits happen: the first request, then the rest.
    let (_dir, path) = scratch();
    let j = open(&path);
    let (side, before, first) = held_after_first(&j, &path).await;
    let rest: Vec<_> = (1..=100)
        .map(|n| {
            let j = j.clone();
            tokio::spawn(async move { j.record_alerts(vec![alert("rest", n)]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        j.commits(),
        before,
        "nothing commits while the lock is held"
    );
    side.execute_batch("COMMIT").expect("release write lock");
    first.await.expect("task").expect("first");
    for t in rest {
        t.await.expect("task").expect("rest");
    }
    assert_eq!(j.commits() - before, 2, "{:?}", j.stats());
    assert!(j.stats().largest_batch >= 100, "{:?}", j.stats());
    assert_eq!(j.alerts_by_fingerprint("rest").expect("read").len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_big_request_is_journaled_in_parts_and_a_small_one_is_not_kept_behind_it() {
    // The write lock is held (as in the test above) while a 500-alert request and then a
    // one-alert request queue: the small one commits right after the first batch, before
    // any part of the big one, and the big one in parts of INTAKE_PART, two per commit.
    let (_dir, path) = scratch();
    let j = open(&path);
    let (side, before, first) = held_after_first(&j, &path).await;
    let big = {
        let j = j.clone();
        let alerts: Vec<_> = (0..500).map(|n| alert("big", n)).collect();
        tokio::spawn(async move { j.record_alerts(alerts).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let small = {
        let j = j.clone();
        tokio::spawn(async move { j.record_alerts(vec![alert("small", 1)]).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    side.execute_batch("COMMIT").expect("release write lock");
    first.await.expect("task").expect("first");
    let big = big.await.expect("task").expect("big");
    let small = small.await.expect("task").expect("small");
    assert_eq!(big.len(), 500);
    assert!(
        big.windows(2).all(|w| w[0] < w[1]),
        "ids in the alerts' order"
    );
    assert!(
        small[0] < big[0],
        "small {small:?} committed before the big one's parts"
    );
    let parts = 500usize.div_ceil(kafka_healing::journal::INTAKE_PART) as u64;
    assert_eq!(
        j.commits() - before,
        1 + 1 + parts.div_ceil(2),
        "first; small; parts two by two: {:?}",
        j.stats()
    );
    let stored = j.alerts_by_fingerprint("big").expect("read");
    assert_eq!(stored.len(), 500);
    // Each alert under its own id, in order.
    for ((id, a), (want, n)) in stored.iter().zip(big.iter().zip(0..)) {
        assert_eq!((*id, a.received_ms), (*want, alert("big", n).received_ms));
    }
}

#[tokio::test]
async fn a_failed_part_leaves_the_others_journaled_and_says_which() {
    let (_dir, path) = scratch();
    let j = open(&path);
    let side = side_connection(&path);
    side.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON alerts WHEN NEW.fingerprint = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned alert'); END;",
    )
    .expect("trigger");
    let part = kafka_healing::journal::INTAKE_PART;
    // Three parts; the second holds the poisoned alert.
    let alerts: Vec<_> = (0..3 * part)
        .map(|n| alert(if n == part + 5 { "poison" } else { "fine" }, n))
        .collect();
    let recorded = j.record_alerts_in_parts(alerts.clone()).await;
    assert!(recorded.error.is_some(), "the poisoned part failed");
    let journaled: Vec<bool> = recorded.ids.iter().map(Option::is_some).collect();
    let mut want = vec![true; 3 * part];
    want[part..2 * part].fill(false);
    assert_eq!(journaled, want, "parts 1 and 3 journaled, part 2 not");
    assert_eq!(
        j.alerts_by_fingerprint("fine").expect("read").len(),
        2 * part
    );
    // The all-or-error form reports the same failure.
    assert!(j.record_alerts(alerts).await.is_err());
    assert_eq!(
        j.alerts_by_fingerprint("fine").expect("read").len(),
        4 * part
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_request_does_not_poison_its_batch() {
    let (_dir, path) = scratch();
    let j = open(&path);
    let exec = j
        .create_execution(execution("r", Some("kafka-1"), ExecStatus::Running, 1))
        .await
        .expect("create");
    let side = side_connection(&path);
    // Makes the insert of an alert with fingerprint "poison" fail, after the alerts
    // before it in the same request were inserted: only a per-request SAVEPOINT undoes
    // those.
    side.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON alerts WHEN NEW.fingerprint = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned alert'); END;",
    )
    .expect("trigger");

    // Hold the write lock so that everything below lands in one batch.
    side.execute_batch("BEGIN IMMEDIATE")
        .expect("hold write lock");
    let before = j.commits();
    let opener = {
        let j = j.clone();
        tokio::spawn(async move { j.add_event(event(None, "opener", 0)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut good = Vec::new();
    for n in 0..20u32 {
        let j1 = j.clone();
        good.push(tokio::spawn(async move {
            j1.record_step(exec, step(n, StepStatus::Succeeded)).await
        }));
        if n == 5 {
            let j2 = j.clone();
            let missing_step =
                tokio::spawn(
                    async move { j2.record_step(987_654, step(0, StepStatus::Failed)).await },
                );
            let j3 = j.clone();
            let missing_event =
                tokio::spawn(async move { j3.add_event(event(Some(987_654), "orphan", 1)).await });
            let j4 = j.clone();
            let poisoned = tokio::spawn(async move {
                j4.record_alerts(vec![alert("half", 1), alert("half", 2), alert("poison", 3)])
                    .await
            });
            let j5 = j.clone();
            let missing_status = tokio::spawn(async move {
                j5.set_status(987_654, ExecStatus::Succeeded, None, 2).await
            });
            good.push(tokio::spawn(async move {
                let e = missing_step.await.expect("task");
                assert!(e.is_err(), "record_step for a missing execution must fail");
                let e = missing_event.await.expect("task");
                assert!(e.is_err(), "event for a missing execution must fail");
                let e = poisoned.await.expect("task");
                assert!(e.is_err(), "poisoned alerts must fail");
                let e = missing_status.await.expect("task");
                assert!(
                    matches!(e, Err(JournalError::NoSuchExecution(987_654))),
                    "{e:?}"
                );
                Ok(())
            }));
        }
    }
    let j6 = j.clone();
    let good_alerts = tokio::spawn(async move {
        j6.record_alerts(vec![alert("fine", 1), alert("fine", 2)])
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    side.execute_batch("COMMIT").expect("release write lock");

    opener.await.expect("task").expect("opener");
    for t in good {
        t.await
            .expect("task")
            .expect("valid write in the same batch");
    }
    assert_eq!(good_alerts.await.expect("task").expect("alerts").len(), 2);
    assert_eq!(
        j.commits() - before,
        2,
        "one batch for everything queued: {:?}",
        j.stats()
    );

    let (_, steps, _) = j.get_execution(exec).expect("get").expect("exists");
    assert_eq!(steps.len(), 20);
    assert!(
        j.alerts_by_fingerprint("half").expect("read").is_empty(),
        "a failed request leaves nothing behind"
    );
    assert_eq!(j.alerts_by_fingerprint("fine").expect("read").len(), 2);
    assert!(j.is_healthy(), "a failed request is not a failed journal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopen_after_crash_interrupts_running_and_cancels_queued() {
    let (dir, path) = scratch();
    let j = open(&path);
    let running = j
        .create_execution(execution(
            "broker-down",
            Some("kafka-1"),
            ExecStatus::Queued,
            10,
        ))
        .await
        .expect("create");
    j.set_status(
        running,
        ExecStatus::Running,
        Some("restarting kafka-1".into()),
        20,
    )
    .await
    .expect("running");
    j.record_step(running, step(0, StepStatus::Succeeded))
        .await
        .expect("step");
    let queued = j
        .create_execution(execution(
            "broker-down",
            Some("kafka-2"),
            ExecStatus::Queued,
            30,
        ))
        .await
        .expect("create");
    let done = j
        .create_execution(execution("disk", None, ExecStatus::Queued, 40))
        .await
        .expect("create");
    j.set_status(done, ExecStatus::Succeeded, None, 50)
        .await
        .expect("done");

    // Crash snapshot: copy the database and its WAL while the journal is still open and
    // never shut down, as a power cut would leave them (every acknowledged write is
    // committed and fsynced, so it is in these two files).
    let crashed = dir.path().join("crashed").join("journal.db");
    std::fs::create_dir_all(crashed.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&path, &crashed).expect("copy db");
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    if wal.exists() {
        std::fs::copy(&wal, format!("{}-wal", crashed.display())).expect("copy wal");
    }

    // The original, dropped without finishing the running execution, and the snapshot
    // must recover the same way.
    drop(j);
    for p in [&path, &crashed] {
        let before = kafka_healing::clock::now_ms();
        let (j, interrupted) = Journal::open(p).expect("reopen");
        assert_eq!(interrupted.len(), 1, "{interrupted:?}");
        let e = &interrupted[0];
        assert_eq!(e.id, running);
        assert_eq!(e.status, ExecStatus::Interrupted);
        assert_eq!(
            e.reason,
            format!("restarting kafka-1; {INTERRUPTED_REASON}")
        );
        assert!(e.finished_ms.is_some_and(|t| t >= before), "{e:?}");
        assert_eq!(e.started_ms, Some(20));

        let (stored, steps, events) = j.get_execution(running).expect("get").expect("exists");
        assert_eq!(&stored, e, "what open returned is what is stored");
        assert_eq!(steps.len(), 1);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, "interrupted");
        assert_eq!(events[0].rule.as_deref(), Some("broker-down"));
        assert_eq!(events[0].target.as_deref(), Some("kafka-1"));

        let (q, _, events) = j.get_execution(queued).expect("get").expect("exists");
        assert_eq!(q.status, ExecStatus::Cancelled);
        assert_eq!(q.reason, CANCELLED_REASON);
        assert!(q.finished_ms.is_some());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "cancelled");

        let (d, _, events) = j.get_execution(done).expect("get").expect("exists");
        assert_eq!((d.status, d.finished_ms), (ExecStatus::Succeeded, Some(50)));
        assert!(events.is_empty());

        // Recovery happens once.
        drop(j);
        let (j, again) = Journal::open(p).expect("reopen again");
        assert!(again.is_empty(), "{again:?}");
        let (_, _, events) = j.get_execution(running).expect("get").expect("exists");
        assert_eq!(events.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn filters_and_limits() {
    let (_dir, path) = scratch();
    let j = open(&path);
    // 12 executions: rules a/b, targets kafka-1/kafka-2/none, created at 100..=1200.
    let mut ids = Vec::new();
    for n in 0..12i64 {
        let rule = if n % 2 == 0 { "a" } else { "b" };
        let target = match n % 3 {
            0 => Some("kafka-1"),
            1 => Some("kafka-2"),
            _ => None,
        };
        let status = if n % 4 == 0 {
            ExecStatus::Skipped
        } else {
            ExecStatus::Queued
        };
        let id = j
            .create_execution(execution(rule, target, status, (n + 1) * 100))
            .await
            .expect("create");
        ids.push(id);
    }
    let list = |f: ExecutionFilter| -> Vec<i64> {
        j.list_executions(&f)
            .expect("list")
            .into_iter()
            .map(|e| e.id)
            .collect()
    };
    let pick = |ns: &[usize]| -> Vec<i64> { ns.iter().map(|&n| ids[n]).collect() };

    assert_eq!(
        list(ExecutionFilter::default()),
        pick(&[11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    );
    let status = |s| ExecutionFilter {
        status: Some(s),
        ..Default::default()
    };
    assert_eq!(list(status(ExecStatus::Skipped)), pick(&[8, 4, 0]));
    assert_eq!(list(status(ExecStatus::Running)), pick(&[]));
    let rule = ExecutionFilter {
        rule: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(list(rule), pick(&[11, 9, 7, 5, 3, 1]));
    let target = ExecutionFilter {
        target: Some("kafka-2".into()),
        ..Default::default()
    };
    assert_eq!(list(target), pick(&[10, 7, 4, 1]));
    let since = ExecutionFilter {
        since_ms: Some(1000),
        ..Default::default()
    };
    assert_eq!(list(since), pick(&[11, 10, 9]));
    let limit = ExecutionFilter {
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(list(limit), pick(&[11, 10]));
    let all = ExecutionFilter {
        status: Some(ExecStatus::Queued),
        rule: Some("a".into()),
        target: Some("kafka-1".into()),
        since_ms: Some(200),
        limit: Some(10),
    };
    assert_eq!(list(all), pick(&[6]));

    // recent_executions: oldest first; None means every target.
    let ids_of = |v: Vec<kafka_healing::journal::Execution>| -> Vec<i64> {
        v.into_iter().map(|e| e.id).collect()
    };
    assert_eq!(
        ids_of(
            j.recent_executions("a", Some("kafka-1"), 0)
                .expect("recent")
        ),
        pick(&[0, 6])
    );
    assert_eq!(
        ids_of(
            j.recent_executions("a", Some("kafka-1"), 101)
                .expect("recent")
        ),
        pick(&[6])
    );
    assert_eq!(
        ids_of(j.recent_executions("a", None, 500).expect("recent")),
        pick(&[4, 6, 8, 10])
    );
    assert!(
        j.recent_executions("zzz", None, 0)
            .expect("recent")
            .is_empty()
    );

    // Same created time: newest id first.
    let t1 = j
        .create_execution(execution("tie", None, ExecStatus::Queued, 5))
        .await
        .expect("create");
    let t2 = j
        .create_execution(execution("tie", None, ExecStatus::Queued, 5))
        .await
        .expect("create");
    let tie = ExecutionFilter {
        rule: Some("tie".into()),
        ..Default::default()
    };
    assert_eq!(list(tie), vec![t2, t1]);

    // Default limit 100, cap 1000.
    let tasks: Vec<_> = (0..1001)
        .map(|n| {
            let j = j.clone();
            tokio::spawn(async move {
                j.create_execution(execution("many", None, ExecStatus::Skipped, 10_000 + n))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("create");
    }
    let many = |limit| ExecutionFilter {
        rule: Some("many".into()),
        limit,
        ..Default::default()
    };
    assert_eq!(list(many(None)).len(), 100);
    assert_eq!(list(many(Some(5000))).len(), 1000);
    assert_eq!(list(many(Some(1000))).len(), 1000);
    let newest = j.list_executions(&many(Some(1))).expect("list");
    assert_eq!(newest[0].created_ms, 11_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_do_not_wait_behind_writes() {
    let (_dir, path) = scratch();
    let j = open(&path);
    j.record_alerts(vec![alert("x", 1)]).await.expect("record");
    // Another connection holds the write lock with an uncommitted insert; the writer is
    // stuck in BEGIN for the busy timeout, yet reads answer at once with committed data.
    let side = side_connection(&path);
    side.execute_batch(
        "BEGIN IMMEDIATE; INSERT INTO alerts (received_ms, source, receiver, group_key, \
         external_url, fingerprint, status, labels, annotations, starts_at, ends_at, \
         generator_url) VALUES (0, '', '', '', '', 'x', '', '{}', '{}', '', '', '');",
    )
    .expect("hold write lock");
    let pending = {
        let j = j.clone();
        tokio::spawn(async move { j.record_alerts(vec![alert("y", 2)]).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    assert_eq!(j.alert_count().expect("count"), 1);
    assert_eq!(j.alerts_by_fingerprint("x").expect("read").len(), 1);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "reads waited {:?}",
        t.elapsed()
    );
    side.execute_batch("COMMIT").expect("release");
    pending.await.expect("task").expect("record after release");
    assert_eq!(j.alert_count().expect("count"), 3);
}

/// Replaces the database, its WAL and shared-memory files with directories. Works as
/// root (unlike chmod, which root ignores): the open connection still writes to the
/// unlinked old inode, which nobody could ever read again, so the journal must notice.
fn replace_with_directories(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if p.exists() {
            std::fs::remove_file(&p).expect("remove");
        }
    }
    std::fs::create_dir(path).expect("mkdir in place of the db");
    std::fs::create_dir(format!("{}-wal", path.display())).expect("mkdir in place of the wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_fails_when_file_replaced_by_directory() {
    let (_dir, path) = scratch();
    let j = open(&path);
    let id = j
        .create_execution(execution("r", None, ExecStatus::Running, 1))
        .await
        .expect("create");
    assert!(j.is_healthy());
    replace_with_directories(&path);

    let err = j
        .record_alerts(vec![alert("lost", 1)])
        .await
        .expect_err("must fail");
    assert!(matches!(err, JournalError::FileMoved { .. }), "{err}");
    assert!(!j.is_healthy(), "health reports the broken journal");
    let err = j
        .set_status(id, ExecStatus::Succeeded, None, 2)
        .await
        .expect_err("must fail");
    assert!(matches!(err, JournalError::FileMoved { .. }), "{err}");
    assert!(
        j.record_step(id, step(0, StepStatus::Succeeded))
            .await
            .is_err()
    );
    assert_eq!(j.stats().commits, 1);

    // Reopening on a directory is an error too, not a panic.
    drop(j);
    assert!(Journal::open(&path).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_fails_when_file_deleted() {
    let (_dir, path) = scratch();
    let j = open(&path);
    j.record_alerts(vec![alert("a", 1)]).await.expect("record");
    std::fs::remove_file(&path).expect("delete db");
    let err = j
        .record_alerts(vec![alert("b", 1)])
        .await
        .expect_err("must fail");
    assert!(matches!(err, JournalError::FileMoved { .. }), "{err}");
    assert!(!j.is_healthy());
}

#[test]
fn open_fails_cleanly_on_unusable_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Parent is a regular file: no directory can be created there, root or not.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("write");
    let err = Journal::open(&file.join("journal.db")).expect_err("under a file");
    assert!(matches!(err, JournalError::Io { .. }), "{err}");
    // The path itself is a directory.
    let err = Journal::open(dir.path()).expect_err("a directory");
    assert!(matches!(err, JournalError::Sqlite(_)), "{err}");
    // Not an SQLite file.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).expect("write");
    assert!(Journal::open(&junk).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_last_handle_drains_and_closes() {
    let (_dir, path) = scratch();
    let j = open(&path);
    let clone = j.clone();
    drop(j);
    assert!(clone.is_healthy(), "a remaining clone keeps the writer");
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let j = clone.clone();
            tokio::spawn(async move { j.record_alerts(vec![alert("d", n)]).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("record");
    }
    drop(clone);
    // The writer was joined and the database closed cleanly: SQLite removes the WAL when
    // the last connection closes after a checkpoint.
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert!(!wal.exists(), "WAL left behind: the writer did not close");
    let j = open(&path);
    assert_eq!(j.alert_count().expect("count"), 50);
}

#[test]
fn handle_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Journal>();
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let (first, _) = Journal::open(&path).unwrap();
    let err = Journal::open(&path).expect_err("second open must fail");
    let text = err.to_string();
    assert!(
        text.contains("is in use by another kafka-healing process"),
        "{text}"
    );
    assert!(
        text.contains(&format!("(pid {})", std::process::id())),
        "{text}"
    );
    // Readers are fine meanwhile.
    assert!(Journal::open_read_only(&path).is_ok());
    drop(first);
    assert!(
        Journal::open(&path).is_ok(),
        "free again once the first is gone"
    );
}

/// A journal of schema version 2 (circuits without `healthy_since_ms`) opens: the column is
/// added, its open circuits are kept, and the version is 3.
#[tokio::test]
async fn a_version_2_journal_gets_the_circuit_health_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).expect("create");
        c.execute_batch(
            "CREATE TABLE circuits (rule TEXT NOT NULL, target TEXT NOT NULL, \
             opened_ms INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (rule, target)) \
             WITHOUT ROWID; \
             INSERT INTO circuits VALUES ('broker-down', 'kafka-1', 5, 'old'); \
             PRAGMA user_version = 2;",
        )
        .expect("old schema");
    }
    let (j, _) = Journal::open(&path).expect("open and migrate");
    assert_eq!(
        j.open_circuits().expect("read"),
        vec![Circuit {
            rule: "broker-down".into(),
            target: "kafka-1".into(),
            opened_ms: 5,
            reason: "old".into(),
            healthy_since_ms: None,
        }]
    );
    drop(j);
    let c = rusqlite::Connection::open(&path).expect("reopen");
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(v, 4);
}

/// A journal of schema version 3, whose `executions` CHECK knows no `refused`, opens: the
/// table is rebuilt with its rows, ids, steps and id sequence kept, and a precondition's
/// refusal can then be recorded (before the rebuild SQLite refused the write).
#[tokio::test]
async fn a_version_3_journal_can_record_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v3.db");
    let (j, _) = Journal::open(&path).expect("create");
    let done = j
        .create_execution(execution(
            "broker-down",
            Some("kafka-3"),
            ExecStatus::Running,
            5,
        ))
        .await
        .expect("create");
    j.record_step(done, step(0, StepStatus::Succeeded))
        .await
        .expect("step");
    j.set_status(done, ExecStatus::Succeeded, None, 8)
        .await
        .expect("ends");
    let id = j
        .create_execution(execution(
            "broker-down",
            Some("kafka-1"),
            ExecStatus::Queued,
            10,
        ))
        .await
        .expect("create");
    drop(j);
    {
        // Back to version 3's table, as a journal of the previous release has it.
        let c = rusqlite::Connection::open(&path).expect("reopen");
        let sql: String = c
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'executions'",
                [],
                |r| r.get(0),
            )
            .expect("ddl");
        let old = sql
            .replace("'dry_run',\n                    'refused'", "'dry_run'")
            .replacen("CREATE TABLE executions", "CREATE TABLE executions_v3", 1);
        assert!(!old.contains("refused"), "{old}");
        c.execute_batch(&format!(
            "PRAGMA foreign_keys = OFF; {old}; INSERT INTO executions_v3 SELECT * FROM executions; \
             DROP TABLE executions; ALTER TABLE executions_v3 RENAME TO executions; \
             PRAGMA user_version = 3;"
        ))
        .expect("old schema");
        let refused = c.execute(
            "UPDATE executions SET status = 'refused' WHERE id = ?1",
            [id],
        );
        assert!(refused.is_err(), "the old CHECK refuses `refused`");
    }
    let (j, _) = Journal::open(&path).expect("open and migrate");
    // The queued one was cancelled at the start (as any queued work is); a new one is
    // refused, with the next id.
    let next = j
        .create_execution(execution(
            "broker-down",
            Some("kafka-2"),
            ExecStatus::Running,
            30,
        ))
        .await
        .expect("create");
    assert_eq!(next, id + 1, "the id sequence continues");
    j.set_status(
        next,
        ExecStatus::Refused,
        Some("broker_unreachable: it answers".into()),
        40,
    )
    .await
    .expect("a refusal is recorded");
    let d = j.get_execution(next).expect("read").expect("there");
    assert_eq!(d.0.status, ExecStatus::Refused);
    let d = j.get_execution(done).expect("read").expect("there");
    assert_eq!(
        (d.0.status, d.1.len()),
        (ExecStatus::Succeeded, 1),
        "rows and steps kept"
    );
    drop(j);
    let c = rusqlite::Connection::open(&path).expect("reopen");
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(v, 4);
    let fk: i64 = c
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("fk check");
    assert_eq!(fk, 0);
}
