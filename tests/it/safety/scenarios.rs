//! The scenarios that run on the three-broker stack (1, 2, 3, 4, 7; 6 runs 1 and 3 on a
//! ZooKeeper-mode stack). Each takes the running rig, leaves the cluster for
//! `Rig::restore`, and ends with its MEASURE line and the unsafe-action assertion.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafka_healing::clock::now_ms;
use kafka_healing::kafka::cluster::partitions_below_min_isr_without;
use kafka_healing::kafka::{ClientOptions, KafkaClient};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::rig::Rig;
use super::standin::{Mute, StandIn};
use super::{Measure, back_at, restarts_before_others_in_sync, restarts_of_answering};
use crate::kafka_client::wait_stopped;
use crate::mailbox::free_port;
use crate::stack::TOKEN;

/// Bound on one wait of a scenario (each scenario stays under 4 minutes).
const LIMIT: Duration = Duration::from_secs(100);
/// Bound on a heal: restart, then catch-up into every ISR.
const HEAL_LIMIT: Duration = Duration::from_secs(200);
/// How long "nothing runs" is watched.
const QUIET: Duration = Duration::from_secs(20);

fn is(e: &Value, rule: &str, target: &str, status: &str) -> bool {
    e["rule"] == rule && e["target"] == target && e["status"] == status
}

/// The refusal's reason without the service's "refused before step `…`: " prefix.
fn reason(e: &Value) -> String {
    super::refusal(e["reason"].as_str().unwrap_or_default()).to_string()
}

/// Event messages of an execution that report the preconditions (their outcome and the
/// time their evaluation took, as the service journals it).
async fn precondition_events(rig: &Rig, e: &Value) -> Vec<String> {
    let d = rig.stack.detail(&e["id"]).await;
    d["events"]
        .as_array()
        .map(|ev| {
            ev.iter()
                .filter_map(|x| x["message"].as_str())
                .filter(|m| {
                    let m = m.to_lowercase();
                    m.contains("precondition")
                        || m.contains("requires")
                        || ["broker_unreachable", "restart_safe", "not_starting"]
                            .iter()
                            .any(|p| m.starts_with(p))
                })
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Prints the precondition events of execution `e` and adds the evaluation time the
/// service journaled (`preconditions judged in N ms`) to `m` as `checks_ms`.
async fn record_checks(rig: &Rig, e: &Value, m: &mut Measure, tag: &str) {
    for ev in precondition_events(rig, e).await {
        eprintln!("{tag} precondition event: {ev}");
        if let Some(rest) = ev.strip_prefix("preconditions judged in ")
            && let Some(ms) = first_number(rest)
        {
            m.figure("checks_ms", ms);
        }
    }
}

/// The first integer in `s`.
fn first_number(s: &str) -> Option<usize> {
    let digits: String = s
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Scenario 1: the exporter of serving broker kafka-2 points at a closed port, then at a
/// port that speaks no HTTP. The (exporter-trusting) broker-down condition fires; the
/// restart is refused by `broker_unreachable`; a NOTICE names the exporter; no restart.
pub(crate) async fn exporter_unreachable(rig: &Rig, label: &'static str) {
    let mut m = Measure::start(label);
    let target = "kafka-2";
    let id = rig.node(target).id;
    let mute = Mute::start().await;
    let closed = format!("http://127.0.0.1:{}/metrics", free_port());
    for (phase, url) in [("closed-port", closed), ("not-http", mute.url.clone())] {
        let from = now_ms();
        rig.configure(&[(target, url.clone())]).await;
        let exporter = url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_string();
        let list = rig
            .wait_executions(from, LIMIT, |l| {
                (l.iter().any(|e| is(e, "broker-down", target, "refused"))
                    && l.iter()
                        .any(|e| is(e, "exporter-unreachable", target, "succeeded")))
                    || !rig.restarts_since(from).is_empty()
            })
            .await;
        // A restart of the serving broker fails the scenario at once, as unsafe.
        let restarts = rig.restarts_since(from);
        m.unsafe_actions.extend(restarts_of_answering(
            rig,
            &restarts,
            &rig.watcher.since(from - 2000),
        ));
        if !m.unsafe_actions.is_empty() {
            m.finish();
            return;
        }
        let list = list.unwrap_or_else(|| {
            panic!(
                "[{label} {phase}] no refused broker-down and exporter NOTICE for {target} within {LIMIT:?}: {:#?}\n{}",
                journal_executions(rig, from),
                rig.log_tail()
            )
        });
        let refused = list
            .iter()
            .find(|e| is(e, "broker-down", target, "refused"))
            .expect("refused");
        assert!(
            reason(refused).starts_with("broker_unreachable:"),
            "[{label} {phase}] {refused}"
        );
        let notice = rig
            .wait_mail(&["NOTICE", target, "exporter-unreachable"], LIMIT)
            .await;
        let mails = rig.mails();
        assert!(
            mails.iter().any(|(s, b)| s.contains("NOTICE")
                && s.contains("exporter-unreachable")
                && (s.contains(&exporter) || b.contains(&exporter))),
            "[{label} {phase}] no NOTICE naming the exporter {exporter}: {notice:?}"
        );
        assert!(
            rig.watcher
                .since(from)
                .iter()
                .all(|s| s.answering.contains(&id)),
            "[{label} {phase}] {target} stopped answering during the scenario"
        );
        assert_eq!(restarts, vec![], "[{label} {phase}] no restart at all");
        m.figure(
            &format!("{phase}_refused_after_ms"),
            refused["created_ms"].as_i64().unwrap_or(0) - from,
        );
        record_checks(rig, refused, &mut m, &format!("[{label} {phase}]")).await;
        rig.configure(&[]).await;
    }
    m.finish();
}

/// The executions since `from_ms`, for a failure message (blocking on the runtime is not
/// allowed inside a panic closure, so this reads the journal file directly).
fn journal_executions(rig: &Rig, from_ms: i64) -> Vec<(String, String, String, String)> {
    let Ok(c) = rusqlite::Connection::open_with_flags(
        rig.stack.dir.join("state/journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return Vec::new();
    };
    let Ok(mut st) = c.prepare(
        "SELECT rule, coalesce(target, ''), status, reason FROM executions WHERE created_ms >= ?1 ORDER BY id",
    ) else {
        return Vec::new();
    };
    st.query_map([from_ms], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .map(|rows| rows.filter_map(Result::ok).collect())
    .unwrap_or_default()
}

/// Scenario 2: kafka-3 hung with SIGSTOP (its port still accepts). The kafka probe sees
/// it; it is restarted (the wrapper SIGKILLs the stopped JVM first) and is back in ISR.
pub(crate) async fn hung_broker(rig: &Rig) {
    let mut m = Measure::start("2");
    let target = "kafka-3";
    let id = rig.node(target).id;
    let pid = rig.stack.pid(target).expect("kafka-3 runs");
    let from = now_ms();
    kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP");
    wait_stopped(pid, true).await;
    let stopped_ms = now_ms();
    // The port still accepts: the kafka probe, not the socket probe, must see it.
    let accepts = std::net::TcpStream::connect(("127.0.0.1", rig.node(target).port)).is_ok();
    assert!(accepts, "a stopped JVM's listener still accepts");
    // The service's kafka probe, run once by `kafka-healing scrape` on its own config.
    let cfg = rig.stack.dir.join("config.yaml");
    let out = tokio::task::spawn_blocking(move || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-healing"));
        c.arg("scrape").arg("-c").arg(cfg);
        crate::kafka::run_bounded(c, Duration::from_secs(60))
    })
    .await
    .expect("join")
    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    .unwrap_or_else(|e| panic!("[2] scrape: {e}"));
    let probe = out.lines().map(str::trim_start).find(|l| {
        l.starts_with("kafka_healing_probe_success{")
            && l.contains("method=\"kafka\"")
            && l.contains(&format!("node_id=\"{target}\""))
    });
    assert!(
        probe.is_some_and(|l| l.ends_with(" 0")),
        "[2] the kafka probe sees the hung broker: {probe:?}\n{out}"
    );
    let done = rig
        .wait_executions(from, HEAL_LIMIT, |l| {
            l.iter().any(|e| is(e, "broker-down", target, "succeeded"))
        })
        .await;
    let list = done.unwrap_or_else(|| {
        panic!(
            "[2] {target} not healed within {HEAL_LIMIT:?}: {:#?}\n{}",
            journal_executions(rig, from),
            rig.log_tail()
        )
    });

    let ex = list
        .iter()
        .find(|e| is(e, "broker-down", target, "succeeded"))
        .expect("execution");
    let restarts = rig.restarts_since(from);
    assert_eq!(
        restarts.iter().filter(|(_, n)| n == target).count(),
        1,
        "[2] one restart of {target}: {restarts:?}"
    );
    assert_ne!(rig.stack.pid(target), Some(pid), "[2] a new JVM");
    let samples = rig.watcher.since(from - 2000);
    m.unsafe_actions
        .extend(restarts_of_answering(rig, &restarts, &samples));
    let back = rig
        .watcher
        .wait_for(HEAL_LIMIT, |s| s.back(id))
        .await
        .map(|s| s.at_ms);
    // wait_in_sync passed before the execution succeeded: the watcher agrees.
    let finished = ex["finished_ms"].as_i64().unwrap_or(0);
    let back_before_end = back_at(&rig.watcher.since(from), restarts[0].0, id);
    assert!(back.is_some(), "[2] {target} never back in every ISR");
    m.figure("stop_to_restart_ms", restarts[0].0 - stopped_ms);
    m.figure(
        "stop_to_in_isr_ms",
        back_before_end.or(back).unwrap_or(0) - stopped_ms,
    );
    m.figure("stop_to_succeeded_ms", finished - stopped_ms);
    record_checks(rig, ex, &mut m, "[2]").await;
    m.finish();
}

/// Scenario 4: kafka-2 is killed; within 2 s a disruptive runbook (`requires:
/// [restart_safe]`) for healthy kafka-1 comes through the webhook, before any alert about
/// kafka-2. Refused by `restart_safe`; the reason's count equals the count computed here
/// from Metadata.
pub(crate) async fn refused_while_other_down(rig: &Rig) {
    let mut m = Measure::start("4");
    let (healthy, victim) = ("kafka-1", "kafka-2");
    let (hid, vid) = (rig.node(healthy).id, rig.node(victim).id);
    let from = now_ms();
    rig.stack.kill9(victim);
    let killed_ms = now_ms();
    let body = |status: &str| {
        json!({
            "receiver": "safety", "status": status, "version": "4", "groupKey": "{}:{}",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager.example.com", "truncatedAlerts": 0,
            "alerts": [{
                "status": status,
                "labels": {"alertname": "RollingRestart", "node_id": healthy, "severity": "warning"},
                "annotations": {"summary": "rolling restart"},
                "startsAt": "2026-11-27T23:33:11Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.com/graph"
            }]
        })
    };
    let r = reqwest::Client::new()
        .post(rig.stack.url("/api/v1/alerts"))
        .bearer_auth(TOKEN)
        .json(&body("firing"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("POST webhook");
    let posted_ms = now_ms();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // The expected count, from Metadata as it is now: replicas on kafka-2 (not
    // answering) and on kafka-1 (the target) do not count.
    let c = Arc::new(KafkaClient::new(ClientOptions::plaintext(
        Duration::from_secs(5),
    )));
    let k3 = rig.node("kafka-3");
    let md = c.metadata("127.0.0.1", k3.port).await.expect("metadata");
    let topics: Vec<String> = md.topics.iter().map(|t| t.name.clone()).collect();
    let min_isr = c
        .min_insync_replicas("127.0.0.1", k3.port, &topics, Some(k3.id))
        .await
        .expect("min isr");
    let alive: std::collections::BTreeSet<i32> = rig
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|i| *i != vid)
        .collect();
    let expected = partitions_below_min_isr_without(hid, &md, &min_isr, &alive)
        .iter()
        .filter(|r| r.target_in_sync)
        .count();
    assert!(expected > 0, "[4] the check is meaningful: {md:?}");
    let list = rig
        .wait_executions(from, LIMIT, |l| {
            l.iter().any(|e| {
                e["rule"] == "rolling-restart"
                    && e["status"] != "queued"
                    && e["status"] != "running"
            })
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "[4] the rolling restart was not decided within {LIMIT:?}: {:#?}\n{}",
                journal_executions(rig, from),
                rig.log_tail()
            )
        });
    let ex = list
        .iter()
        .find(|e| e["rule"] == "rolling-restart")
        .expect("execution");
    // A restart of the serving kafka-1 fails the scenario at once, as unsafe.
    m.unsafe_actions.extend(restarts_of_answering(
        rig,
        &rig.restarts_since(from),
        &rig.watcher.since(from - 2000),
    ));
    if !m.unsafe_actions.is_empty() {
        m.finish();
        return;
    }
    // The request is withdrawn: no re-judgement restarts kafka-1 once it is safe.
    let r = reqwest::Client::new()
        .post(rig.stack.url("/api/v1/alerts"))
        .bearer_auth(TOKEN)
        .json(&body("resolved"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("POST webhook");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(ex["status"], "refused", "[4] {ex}");
    let why = reason(ex);
    assert!(why.starts_with("restart_safe:"), "[4] {why}");
    assert_eq!(
        first_number(&why),
        Some(expected),
        "[4] the reason gives the count of partitions below min ISR ({expected}): {why}"
    );
    // No alert about kafka-2 was there when the runbook was decided.
    let first_alert = journal_executions(rig, from)
        .iter()
        .any(|(rule, target, _, _)| rule == "broker-down" && target == victim);
    let notice = rig
        .wait_mail(&["NOTICE", healthy, "rolling-restart"], LIMIT)
        .await;
    assert!(
        notice.is_some(),
        "[4] a NOTICE for the refusal: {:?}",
        rig.mails()
    );
    // kafka-2 is healed by broker-down (restart_safe passes: the target is down).
    let back = rig.watcher.wait_for(HEAL_LIMIT, |s| s.back(vid)).await;
    assert!(
        back.is_some(),
        "[4] {victim} not back within {HEAL_LIMIT:?}\n{}",
        rig.log_tail()
    );
    let restarts = rig.restarts_since(from);
    assert!(
        restarts.iter().all(|(_, n)| n == victim),
        "[4] only {victim} was restarted: {restarts:?}"
    );
    m.unsafe_actions.extend(restarts_of_answering(
        rig,
        &restarts,
        &rig.watcher.since(from - 2000),
    ));
    m.figure("post_after_kill_ms", posted_ms - killed_ms);
    m.figure("expected_below_min_isr", expected);
    m.figure("broker_down_execution_seen", first_alert);
    m.figure(
        "refused_after_post_ms",
        ex["created_ms"].as_i64().unwrap_or(0) - posted_ms,
    );
    if let Some(b) = back {
        m.figure("kill_to_in_isr_ms", b.at_ms - killed_ms);
    }
    record_checks(rig, ex, &mut m, "[4]").await;
    m.finish();
}

/// Scenario 3: kafka-1 and kafka-2 killed together. Restarted one at a time; the second
/// restart begins only after the first broker is back in the ISR of all its partitions.
pub(crate) async fn two_killed(rig: &Rig, label: &'static str) {
    let mut m = Measure::start(label);
    let victims = ["kafka-1", "kafka-2"];
    let from = now_ms();
    for v in victims {
        rig.stack.kill9(v);
    }
    let killed_ms = now_ms();
    let list = rig
        .wait_executions(from, Duration::from_secs(420), |l| {
            victims
                .iter()
                .all(|v| l.iter().any(|e| is(e, "broker-down", v, "succeeded")))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "[{label}] both brokers not healed within 420 s: {:#?}\n{}",
                journal_executions(rig, from),
                rig.log_tail()
            )
        });
    let restarts = rig.restarts_since(from);
    for v in victims {
        assert!(
            restarts.iter().any(|(_, n)| n == v),
            "[{label}] {v} restarted: {restarts:?}"
        );
    }
    let ids: Vec<i32> = victims.iter().map(|v| rig.node(v).id).collect();
    let all_back = rig
        .watcher
        .wait_for(HEAL_LIMIT, |s| ids.iter().all(|i| s.back(*i)))
        .await;
    assert!(all_back.is_some(), "[{label}] not both back in sync");
    let samples = rig.watcher.since(from - 2000);
    m.unsafe_actions
        .extend(restarts_before_others_in_sync(rig, &restarts, &samples));
    m.unsafe_actions
        .extend(restarts_of_answering(rig, &restarts, &samples));
    // The two executions never overlap (the cluster slot is held through wait_in_sync).
    let span = |v: &str| {
        list.iter()
            .find(|e| is(e, "broker-down", v, "succeeded"))
            .map(|e| {
                (
                    e["started_ms"].as_i64().unwrap_or(0),
                    e["finished_ms"].as_i64().unwrap_or(0),
                )
            })
            .unwrap_or_default()
    };
    let ((a0, a1), (b0, b1)) = (span(victims[0]), span(victims[1]));
    assert!(
        a1 <= b0 || b1 <= a0,
        "[{label}] the executions overlapped: {a0}..{a1}, {b0}..{b1}"
    );
    for (v, id) in victims.iter().zip(&ids) {
        let first = restarts.iter().find(|(_, n)| n == v).map(|(t, _)| *t);
        if let Some(t) = first
            && let Some(b) = back_at(&samples, t, *id)
        {
            m.figure(&format!("{v}_kill_to_in_isr_ms"), b - killed_ms);
            m.figure(&format!("{v}_restart_to_in_isr_ms"), b - t);
        }
    }
    m.figure("restarts", restarts.len());
    for v in victims {
        if let Some(e) = list.iter().find(|e| is(e, "broker-down", v, "succeeded")) {
            record_checks(rig, e, &mut m, &format!("[{label}] {v}")).await;
        }
    }
    m.finish();
}

/// Scenario 7: kafka-3's listener is closed and a stand-in exporter reports RECOVERY (2):
/// refused by `not_starting`, not restarted. The test then starts kafka-3 itself; once it
/// answers the stand-in reports RUNNING (3): nothing runs either.
pub(crate) async fn recovering_broker(rig: &Rig) {
    let mut m = Measure::start("7");
    let target = "kafka-3";
    let id = rig.node(target).id;
    let standin = StandIn::start(2).await;
    let from = now_ms();
    rig.configure(&[(target, standin.url.clone())]).await;
    rig.stack.kill9(target);
    let list = rig
        .wait_executions(from, LIMIT, |l| {
            l.iter().any(|e| is(e, "broker-down", target, "refused"))
                || !rig.restarts_since(from).is_empty()
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "[7] no refused broker-down for {target} within {LIMIT:?}: {:#?}\n{}",
                journal_executions(rig, from),
                rig.log_tail()
            )
        });
    // A restart while the exporter reports RECOVERY fails the scenario at once.
    for (t, n) in rig.restarts_since(from) {
        m.unsafe_actions.push(format!(
            "restart of {n} at {t} while its exporter reported RECOVERY"
        ));
    }
    if !m.unsafe_actions.is_empty() {
        m.finish();
        return;
    }
    let refused = list
        .iter()
        .find(|e| is(e, "broker-down", target, "refused"))
        .expect("refused");
    assert!(
        reason(refused).starts_with("not_starting:"),
        "[7] {refused}"
    );
    // Still RECOVERY for a while: refusals only.
    tokio::time::sleep(QUIET).await;
    let recovering_until = now_ms();
    let during = rig.restarts_since(from);
    for (t, n) in &during {
        m.unsafe_actions.push(format!(
            "restart of {n} at {t} while its exporter reported RECOVERY"
        ));
    }
    // The "recovery" ends: the broker starts, answers, and then reports RUNNING.
    let o = rig.stack.ctl(&["start", target]);
    assert!(o.status.success(), "[7] supervisorctl start: {o:?}");
    let answering = rig
        .watcher
        .wait_for(HEAL_LIMIT, |s| s.answering.contains(&id))
        .await;
    assert!(
        answering.is_some(),
        "[7] {target} does not answer after its start"
    );
    standin.set(3);
    let running_ms = now_ms();
    tokio::time::sleep(QUIET).await;
    let restarts = rig.restarts_since(from);
    m.unsafe_actions.extend(restarts_of_answering(
        rig,
        &restarts,
        &rig.watcher.since(from - 2000),
    ));
    if !m.unsafe_actions.is_empty() {
        eprintln!(
            "[7] executions: {:#?}\n{}",
            journal_executions(rig, from),
            rig.log_tail()
        );
        m.finish();
        return;
    }
    // Once RUNNING and answering, nothing runs: no execution for it gets to a step.
    let after: Vec<Value> = rig
        .executions_since(running_ms)
        .await
        .into_iter()
        .filter(|e| e["target"] == target && !e["started_ms"].is_null())
        .filter(|e| e["status"] != "refused")
        .collect();
    assert_eq!(after, Vec::<Value>::new(), "[7] nothing runs once RUNNING");
    let own: Vec<&(i64, String)> = restarts.iter().filter(|(_, n)| n == target).collect();
    assert!(
        own.is_empty(),
        "[7] {target} not restarted: {own:?}; executions: {:#?}\n{}",
        journal_executions(rig, from),
        rig.log_tail()
    );
    m.figure("recovery_watched_ms", recovering_until - from);
    m.figure(
        "refusals",
        rig.executions_since(from)
            .await
            .iter()
            .filter(|e| is(e, "broker-down", target, "refused"))
            .count(),
    );
    record_checks(rig, refused, &mut m, "[7]").await;
    m.finish();
}

/// Busy loops on every core, bounded in time; stopped when dropped.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts one busy thread per core for at most `limit`.
    pub(crate) fn start(limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let t0 = Instant::now();
                    let mut x: u64 = 1;
                    while !stop.load(Ordering::Relaxed) && t0.elapsed() < limit {
                        for _ in 0..100_000 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        }
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
