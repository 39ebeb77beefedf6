//! The safety policy, observed from outside: dedup, one disruptive action at a time,
//! cooldown, backoff, attempts, the circuit breaker and its reset, cancellation by a
//! resolved alert, and the guard.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;
use crate::common::Scratch;

fn rules(rec: &str) -> String {
    format!(
        r#"rules:
  - name: broker-down
    matchers: ['alertname="KafkaBrokerDown"']
    runbook: restart
    broker_down: true
  - name: high-cpu
    matchers: ['alertname="HighCpu"']
    runbook: restart
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["{rec}", "{{{{rule.name}}}}-{{{{target.node_id}}}}", "{{{{target.node_id}}}}"]
"#
    )
}

fn events_of(detail: &Value) -> Vec<(String, String)> {
    detail["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["kind"].as_str().unwrap_or_default().to_string(),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_copies_and_replicas_collapse_into_one_execution() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("sleep", "3");
    let srv = Server::start(&s, &config(""), &rules(rec.to_str().unwrap()));
    let a = alert("firing", down("kafka-1"));
    let bodies = [
        webhook("am-1", vec![a.clone()]),
        webhook("am-2-replica", vec![a]),
    ];
    let mut tasks = Vec::new();
    // One client (its pool opens a connection per concurrent request): building 400 would
    // starve this runtime for longer than the server's header timeout, between connect
    // and request.
    let client = reqwest::Client::new();
    for i in 0..400 {
        let body = bodies[i % 2].clone();
        let url = srv.url.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(format!("{url}/api/v1/alerts"))
                .header("Authorization", format!("Bearer {TOKEN}"))
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    let list = srv
        .wait_until(30, "the one execution to finish", |l| {
            l.iter().any(|e| e["status"] == "succeeded")
        })
        .await;
    // Copies that a loaded machine delivers only after the run ended meet its cooldown:
    // they are skipped (journaled once), never run.
    let (ran, late): (Vec<&Value>, Vec<&Value>) =
        list.iter().partition(|e| e["status"] != "skipped");
    assert_eq!(ran.len(), 1, "exactly one execution ran: {}", json!(list));
    for e in &late {
        assert!(
            e["reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("cooldown: broker-down on kafka-1 ran recently"),
            "{e}"
        );
    }
    assert_eq!(
        recorded(s.path(), "broker-down-kafka-1").len(),
        1,
        "ran once"
    );
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", ran[0]["id"]))
        .await;
    let collapsed: Vec<u64> = events_of(&detail)
        .iter()
        .filter(|(k, _)| k == "duplicates")
        .filter_map(|(_, m)| {
            m.strip_suffix(" duplicate alert(s) collapsed into this execution")?
                .parse()
                .ok()
        })
        .collect();
    match (late.is_empty(), collapsed.as_slice()) {
        // Every copy arrived while it ran.
        (true, [n]) => assert_eq!(*n, 399, "{detail}"),
        // Some came late: the others collapsed.
        (false, [n]) => assert!(*n >= 1 && *n < 399, "{detail}"),
        (false, []) => {}
        _ => panic!("one duplicates event expected: {detail}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_brokers_down_are_restarted_one_after_the_other() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("sleep", "1");
    let srv = Server::start(&s, &config(""), &rules(rec.to_str().unwrap()));
    let body =
        std::fs::read_to_string("../shared/fixtures/alertmanager-0.25/firing-two-brokers.json")
            .or_else(|_| std::fs::read_to_string("examples/alerts/firing-two-brokers.json"))
            .unwrap();
    // The fixture's brokers are kafka-2 and kafka-3 by instance kafka-N.example.com:9404.
    let body = body
        .replace("kafka-2.example.com", "k2.example.com")
        .replace("kafka-3.example.com", "k3.example.com");
    assert_eq!(srv.post(&body).await.0, 200);
    srv.wait_until(30, "both to succeed", |l| {
        l.iter().filter(|e| e["status"] == "succeeded").count() == 2
    })
    .await;
    let a = recorded(s.path(), "broker-down-kafka-2");
    let b = recorded(s.path(), "broker-down-kafka-3");
    assert_eq!((a.len(), b.len()), (1, 1));
    let (first, second) = if a[0].0 < b[0].0 {
        (&a[0], &b[0])
    } else {
        (&b[0], &a[0])
    };
    assert!(
        second.0 >= first.1,
        "never overlapping: second started {} before first ended {}",
        second.0,
        first.1
    );
    let list = srv.executions().await;
    let waited = list.iter().find(|e| e["target"] == "kafka-3").unwrap();
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", waited["id"]))
        .await;
    assert!(
        events_of(&detail).iter().any(|(k, m)| k == "waiting"
            && m.starts_with("waiting for a cluster slot: broker-down on kafka-2 running")),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backoff_attempts_circuit_reset_and_cooldown() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("exit", "1");
    let cfg =
        config("recovery: { max_attempts: 2, initial_delay_seconds: 1, cooldown_seconds: 60 }\n");
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap()));
    let body = webhook("r", vec![alert("firing", down("kafka-1"))]);
    assert_eq!(srv.post(&body).await.0, 200);
    let list = srv
        .wait_until(30, "two failed attempts", |l| {
            l.iter().filter(|e| e["status"] == "failed").count() == 2
        })
        .await;
    assert_eq!(list[0]["attempt"], 1);
    assert_eq!(list[1]["attempt"], 2);
    assert!(
        list[1]["reason"]
            .as_str()
            .unwrap()
            .contains("failed with exit status 1")
    );
    let calls = recorded(s.path(), "broker-down-kafka-1");
    assert_eq!(calls.len(), 2);
    let gap_ms = (calls[1].0 - calls[0].1) / 1_000_000;
    assert!(
        gap_ms >= 1000,
        "second attempt waited its backoff: {gap_ms} ms"
    );
    // Attempts are used up: the circuit is open and escalated.
    let (_, detail) = srv
        .get(&format!("/api/v1/executions/{}", list[1]["id"]))
        .await;
    let ev = events_of(&detail);
    assert!(
        ev.iter().any(|(k, m)| k == "circuit_opened"
            && m == "attempt 2/2 failed: no attempts left in the window"),
        "{detail}"
    );
    assert!(ev.iter().any(|(k, _)| k == "escalation"), "{detail}");
    // Alertmanager repeats the alert: nothing runs while the circuit is open.
    assert_eq!(srv.post(&body).await.0, 200);
    let list = srv
        .wait_until(10, "a skip", |l| l.iter().any(|e| e["status"] == "skipped"))
        .await;
    let skip = list.iter().find(|e| e["status"] == "skipped").unwrap();
    assert!(
        skip["reason"]
            .as_str()
            .unwrap()
            .starts_with("circuit open since "),
        "{skip}"
    );
    assert!(
        skip["reason"]
            .as_str()
            .unwrap()
            .contains("POST /api/v1/targets/kafka-1/reset")
    );
    assert_eq!(recorded(s.path(), "broker-down-kafka-1").len(), 2);
    // A human resets the target; the next alert runs again (and now succeeds).
    // (With the CLI, which finds the service and its token from the config.)
    let cfg_path = s.path().join("config.yaml");
    let cfg_path = cfg_path.to_str().unwrap();
    let o = crate::common::run(&["reset", "-c", cfg_path, "kafka-1", "--url", &srv.url]);
    assert_eq!(o.status.code(), Some(0), "{}", crate::common::stderr(&o));
    assert_eq!(
        crate::common::stdout(&o),
        "kafka-1: closed the circuit of broker-down\n"
    );
    let (st, r) = srv.post_path("/api/v1/targets/kafka-1/reset").await;
    assert_eq!(
        (st, r["closed"].clone()),
        (200, json!([])),
        "already closed"
    );
    let (st, _) = srv.post_path("/api/v1/targets/kafka-9/reset").await;
    assert_eq!(st, 404);
    let o = crate::common::run(&["reset", "-c", cfg_path, "kafka-9", "--url", &srv.url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        crate::common::stderr(&o)
            .contains("HTTP 404 Not Found: `kafka-9` is not a configured broker")
    );
    s.write("exit", "0");
    assert_eq!(srv.post(&body).await.0, 200);
    srv.wait_until(20, "a success after reset", |l| {
        l.iter().any(|e| e["status"] == "succeeded")
    })
    .await;
    // Cooldown: the same alert right after a success is skipped.
    assert_eq!(srv.post(&body).await.0, 200);
    let list = srv
        .wait_until(10, "a cooldown skip", |l| {
            l.iter().any(|e| {
                e["status"] == "skipped"
                    && e["reason"].as_str().unwrap_or("").starts_with("cooldown")
            })
        })
        .await;
    assert_eq!(
        recorded(s.path(), "broker-down-kafka-1").len(),
        3,
        "{}",
        json!(list)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resolved_alert_cancels_queued_work() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("sleep", "2");
    let srv = Server::start(&s, &config(""), &rules(rec.to_str().unwrap()));
    let body = webhook(
        "r",
        vec![
            alert("firing", down("kafka-1")),
            alert("firing", down("kafka-2")),
        ],
    );
    assert_eq!(srv.post(&body).await.0, 200);
    srv.wait_until(10, "kafka-2 queued", |l| {
        l.iter()
            .any(|e| e["target"] == "kafka-2" && e["status"] == "queued")
    })
    .await;
    assert_eq!(
        srv.post(&webhook("r", vec![alert("resolved", down("kafka-2"))]))
            .await
            .0,
        200
    );
    let list = srv
        .wait_until(20, "kafka-1 done and kafka-2 cancelled", |l| {
            l.iter()
                .any(|e| e["target"] == "kafka-1" && e["status"] == "succeeded")
                && l.iter()
                    .any(|e| e["target"] == "kafka-2" && e["status"] == "cancelled")
        })
        .await;
    let c = list.iter().find(|e| e["target"] == "kafka-2").unwrap();
    assert_eq!(c["reason"], "the alert resolved before it started");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        recorded(s.path(), "broker-down-kafka-2").is_empty(),
        "cancelled work never ran"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guard_keeps_healthy_brokers_untouched_while_one_is_down() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("exit", "1");
    // kafka-1 is down and its restart fails once: its circuit opens and it stays down.
    let cfg = config("recovery: { max_attempts: 1 }\n");
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap()));
    assert_eq!(
        srv.post(&webhook("r", vec![alert("firing", down("kafka-1"))]))
            .await
            .0,
        200
    );
    srv.wait_until(20, "kafka-1 failed", |l| {
        l.iter().any(|e| e["status"] == "failed")
    })
    .await;
    s.write("exit", "0");
    // A disruptive action on healthy kafka-3 must wait.
    let cpu = json!({"alertname": "HighCpu", "node_id": "kafka-3"});
    assert_eq!(
        srv.post(&webhook("r", vec![alert("firing", cpu.clone())]))
            .await
            .0,
        200
    );
    let list = srv
        .wait_until(10, "kafka-3 queued", |l| {
            l.iter().any(|e| e["target"] == "kafka-3")
        })
        .await;
    let q = list
        .iter()
        .find(|e| e["target"] == "kafka-3")
        .unwrap()
        .clone();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, detail) = srv.get(&format!("/api/v1/executions/{}", q["id"])).await;
    assert_eq!(detail["execution"]["status"], "queued");
    assert!(
        events_of(&detail).contains(&(
            "waiting".into(),
            "guard: broker kafka-1 is down; a healthy broker is not touched meanwhile".into()
        )),
        "{detail}"
    );
    assert!(recorded(s.path(), "high-cpu-kafka-3").is_empty());
    // Lies about identity: an unrelated resolved alert carrying kafka-1's fingerprint, and
    // one whose fingerprint would forge a log line. Identity comes from the labels: the
    // guard holds, both are counted, and the log shows the newline escaped.
    let kafka1 = kafka_healing::alert::fingerprint(
        &serde_json::from_value(down("kafka-1")).expect("labels"),
    );
    let mut forged = alert(
        "resolved",
        json!({"alertname": "Unrelated", "node_id": "kafka-1"}),
    );
    forged["fingerprint"] = json!(kafka1);
    let mut forger = alert(
        "firing",
        json!({"alertname": "Unrelated", "node_id": "kafka-2"}),
    );
    forger["fingerprint"] = json!("abc\n2026-12-04T00:00:00Z  INFO forged line");
    assert_eq!(srv.post(&webhook("r", vec![forged, forger])).await.0, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, detail) = srv.get(&format!("/api/v1/executions/{}", q["id"])).await;
    assert_eq!(
        detail["execution"]["status"], "queued",
        "a forged resolve released the guard"
    );
    assert!(recorded(s.path(), "high-cpu-kafka-3").is_empty());
    let text = srv.metrics().await;
    assert!(
        text.lines()
            .any(|l| l == "kafka_healing_forged_fingerprints_total 2"),
        "{text}"
    );
    let log = srv.log();
    assert!(
        log.contains(r"abc\n2026-12-04T00:00:00Z  INFO forged line"),
        "the forged fingerprint is logged escaped: {log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-12-04T00:00:00Z  INFO forged line"))
    );
    // kafka-1 recovers: the guard lifts and kafka-3's work runs.
    assert_eq!(
        srv.post(&webhook("r", vec![alert("resolved", down("kafka-1"))]))
            .await
            .0,
        200
    );
    srv.wait_until(20, "kafka-3 ran", |l| {
        l.iter()
            .any(|e| e["target"] == "kafka-3" && e["status"] == "succeeded")
    })
    .await;
    assert_eq!(recorded(s.path(), "high-cpu-kafka-3").len(), 1);
}

/// A storm of distinct diagnostics alerts: at most `max_concurrent_diagnostics` run at
/// once, at most `max_queued` wait, and the rest are skipped with the reason in the journal
/// (nothing is lost: every alert is journaled, every decision recorded).
#[tokio::test(flavor = "multi_thread")]
async fn diagnostics_are_bounded_in_concurrency_and_queue() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("sleep", "1");
    let rules = format!(
        r#"rules:
  - name: describe-topic
    matchers: ['alertname="TopicLag"']
    runbook: describe
    params:
      topic: {{ value: "{{{{alert.labels.topic}}}}", pattern: "[a-z0-9]+" }}
runbooks:
  describe:
    disruptive: false
    steps:
      - name: describe
        exec: ["{}", "topic-{{{{params.topic}}}}"]
"#,
        rec.display()
    );
    let srv = Server::start(
        &s,
        &config("recovery: { max_concurrent_diagnostics: 2, max_queued: 10 }\n"),
        &rules,
    );
    let alerts: Vec<Value> = (0..20)
        .map(|i| {
            alert(
                "firing",
                json!({"alertname": "TopicLag", "topic": format!("t{i}")}),
            )
        })
        .collect();
    assert_eq!(srv.post(&webhook("am", alerts)).await.0, 200);
    let list = srv
        .wait_until(60, "12 runs and 8 skips", |l| {
            l.iter().filter(|e| e["status"] == "succeeded").count() == 12
                && l.iter().filter(|e| e["status"] == "skipped").count() == 8
        })
        .await;
    let skipped: Vec<&Value> = list.iter().filter(|e| e["status"] == "skipped").collect();
    for e in &skipped {
        assert!(
            e["reason"].as_str().is_some_and(|r| r.starts_with(
                "queue full: 10 diagnostics executions already waiting (max_queued = 10)"
            )),
            "{e}"
        );
    }
    // Never more than two at once, from the recorder's start and end times.
    let mut spans: Vec<(u128, u128)> = (0..20)
        .flat_map(|i| recorded(s.path(), &format!("topic-t{i}")))
        .map(|(start, end, _, _)| (start, end))
        .collect();
    assert_eq!(spans.len(), 12);
    spans.sort_unstable();
    for (i, (start, _)) in spans.iter().enumerate() {
        let overlapping = spans[..i].iter().filter(|(_, end)| end > start).count();
        assert!(overlapping < 2, "three diagnostics at once: {spans:?}");
    }
    let mut saw_wait = false;
    for e in list.iter().filter(|e| e["status"] == "succeeded") {
        let (_, d) = srv.get(&format!("/api/v1/executions/{}", e["id"])).await;
        saw_wait |= events_of(&d).iter().any(|(k, m)| {
            k == "waiting" && m == "waiting for a diagnostics slot (max_concurrent_diagnostics = 2)"
        });
    }
    assert!(saw_wait, "a queued diagnostic records its wait");
}

/// Late and out-of-order alerts (issue 14, finding 1): a firing alert whose `endsAt` is past,
/// and a firing copy that arrives after its resolve, are journaled `skipped: stale` and run
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn stale_and_out_of_order_alerts_run_nothing() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    let srv = Server::start(&s, &config(""), &rules(rec.to_str().unwrap()));
    let mut old = alert("firing", down("kafka-3"));
    old["startsAt"] = json!("2020-01-01T00:00:00Z");
    old["endsAt"] = json!("2020-01-01T00:05:00Z");
    assert_eq!(srv.post(&webhook("r", vec![old])).await.0, 200);
    let mut resolved = alert("resolved", down("kafka-2"));
    resolved["startsAt"] = json!("2026-12-01T00:00:00Z");
    resolved["endsAt"] = json!("2026-12-01T00:01:00Z");
    assert_eq!(srv.post(&webhook("r", vec![resolved])).await.0, 200);
    let mut replay = alert("firing", down("kafka-2"));
    replay["startsAt"] = json!("2026-12-01T00:00:00Z");
    assert_eq!(srv.post(&webhook("r", vec![replay])).await.0, 200);
    let list = srv
        .wait_until(10, "two stale skips", |l| {
            l.iter()
                .filter(|e| {
                    e["status"] == "skipped"
                        && e["reason"]
                            .as_str()
                            .is_some_and(|r| r.starts_with("stale: "))
                })
                .count()
                == 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        list.iter().all(|e| e["status"] == "skipped"),
        "nothing but the skips: {list:?}"
    );
    assert!(recorded(s.path(), "broker-down-kafka-3").is_empty());
    assert!(recorded(s.path(), "broker-down-kafka-2").is_empty());
}

/// Issue 14, finding 7: a runbook without a target has a rule-level circuit, and every skip
/// names a route that closes it (`POST /api/v1/rules/{rule}/reset`, or `reset --rule` on the
/// command line); `/api/v1/targets/-/reset` says where to go instead. A step that cannot run
/// as rendered (a label over 128 KiB: E2BIG) is recorded failed but counts as no attempt,
/// is not retried and opens no circuit, however often it comes.
#[tokio::test(flavor = "multi_thread")]
async fn rule_level_circuits_close_by_route_and_unfixable_failures_count_nothing() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("exit", "1");
    let rules = format!(
        r#"rules:
  - name: report
    matchers: ['alertname="Report"']
    runbook: report
  - name: big
    matchers: ['alertname="Big"']
    runbook: echo
  - name: big-late
    matchers: ['alertname="BigLate"']
    runbook: late
runbooks:
  late:
    steps:
      - {{ name: first, exec: ["{rec}", "late-first"] }}
      - {{ name: echo, exec: ["{rec}", "big", "{{{{alert.labels.blob}}}}"] }}
  report:
    steps:
      - {{ name: report, exec: ["{rec}", "report"] }}
  echo:
    disruptive: false
    steps:
      - {{ name: echo, exec: ["{rec}", "big", "{{{{alert.labels.blob}}}}"] }}
"#,
        rec = rec.display()
    );
    let cfg = config("recovery: { max_attempts: 2, initial_delay_seconds: 1 }\n");
    let srv = Server::start(&s, &cfg, &rules);
    let report = webhook("r", vec![alert("firing", json!({"alertname": "Report"}))]);
    assert_eq!(srv.post(&report).await.0, 200);
    srv.wait_until(30, "two failed attempts", |l| {
        l.iter().filter(|e| e["status"] == "failed").count() == 2
    })
    .await;
    assert_eq!(srv.post(&report).await.0, 200);
    let list = srv
        .wait_until(10, "a skip", |l| l.iter().any(|e| e["status"] == "skipped"))
        .await;
    let skip = list.iter().find(|e| e["status"] == "skipped").unwrap();
    let reason = skip["reason"].as_str().unwrap_or_default();
    assert!(
        reason.ends_with("; close it with POST /api/v1/rules/report/reset"),
        "{reason}"
    );
    // The target route does not know `-`, and says where to go.
    let (st, v) = srv.post_path("/api/v1/targets/-/reset").await;
    assert_eq!(st, 404);
    assert_eq!(
        v["error"],
        "`-` is not a configured broker: a runbook without a target has a rule-level \
         circuit; close it with POST /api/v1/rules/RULE/reset"
    );
    // Bad input to the rule route.
    let (st, v) = srv.post_path("/api/v1/rules/nope/reset").await;
    assert_eq!(
        (st, v["error"].clone()),
        (404, json!("no rule named \"nope\" is loaded"))
    );
    let (st, _) = srv
        .post_path("/api/v1/rules/report/reset?target=kafka-9")
        .await;
    assert_eq!(st, 404);
    let (st, _) = srv.post_path("/api/v1/rules/report/reset?colour=red").await;
    assert_eq!(st, 400);
    // Another target's reset leaves it open; the CLI's `--rule` closes it.
    let (st, v) = srv
        .post_path("/api/v1/rules/report/reset?target=kafka-1")
        .await;
    assert_eq!((st, v["closed"].clone()), (200, json!([])));
    let cfg_path = s.path().join("config.yaml");
    let cfg_path = cfg_path.to_str().unwrap();
    let o = crate::common::run(&[
        "reset", "-c", cfg_path, "--rule", "report", "--url", &srv.url,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", crate::common::stderr(&o));
    assert_eq!(
        crate::common::stdout(&o),
        "report: closed the circuit on -\n"
    );
    let (st, v) = srv.post_path("/api/v1/rules/report/reset?target=-").await;
    assert_eq!(
        (st, v["closed"].clone()),
        (200, json!([])),
        "already closed"
    );
    s.write("exit", "0");
    assert_eq!(srv.post(&report).await.0, 200);
    srv.wait_until(20, "a success after the reset", |l| {
        l.iter()
            .any(|e| e["rule"] == "report" && e["status"] == "succeeded")
    })
    .await;

    // One label of 140 KiB: the OS refuses the argv (E2BIG). Delivered four times with
    // max_attempts 2: four failed runs, no retry, no circuit.
    let blob = "x".repeat(140 * 1024);
    let big = webhook(
        "r",
        vec![alert("firing", json!({"alertname": "Big", "blob": blob}))],
    );
    for n in 1..=4 {
        assert_eq!(srv.post(&big).await.0, 200);
        srv.wait_until(20, "the oversized run failed", |l| {
            l.iter()
                .filter(|e| e["rule"] == "big" && e["status"] == "failed")
                .count()
                == n
        })
        .await;
    }
    let list = srv.executions().await;
    let big_runs: Vec<&Value> = list.iter().filter(|e| e["rule"] == "big").collect();
    assert_eq!(big_runs.len(), 4, "no skip, no retry: {big_runs:?}");
    for e in &big_runs {
        assert_eq!(e["attempt"], 1, "none counted as an attempt: {e}");
        let reason = e["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("Argument list too long")
                && reason.ends_with("the step cannot run as rendered, so no attempt is counted"),
            "{reason}"
        );
    }
    let metrics = srv.metrics().await;
    assert!(
        metrics.contains("kafka_healing_circuits_open 0"),
        "{metrics}"
    );
    assert!(recorded(s.path(), "big").is_empty(), "never started");
    // Once an earlier step ran, it counts: a label must not repeat that step unbounded.
    let late = webhook(
        "r",
        vec![alert(
            "firing",
            json!({"alertname": "BigLate", "blob": "x".repeat(140 * 1024)}),
        )],
    );
    assert_eq!(srv.post(&late).await.0, 200);
    srv.wait_until(30, "two attempts, then the circuit", |l| {
        l.iter()
            .filter(|e| e["rule"] == "big-late" && e["status"] == "failed")
            .count()
            == 2
    })
    .await;
    assert_eq!(srv.post(&late).await.0, 200);
    let list = srv
        .wait_until(10, "a circuit skip", |l| {
            l.iter()
                .any(|e| e["rule"] == "big-late" && e["status"] == "skipped")
        })
        .await;
    let skip = list
        .iter()
        .find(|e| e["rule"] == "big-late" && e["status"] == "skipped")
        .unwrap();
    assert!(
        skip["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("circuit open since "),
        "{skip}"
    );
    assert_eq!(recorded(s.path(), "late-first").len(), 2);
}

/// Issue 14, finding 9: an open circuit closes by itself once its problem has stayed
/// resolved for `circuit_reset_seconds`, without a new alert, and the clock survives a
/// `kill -9` and restart (it is journaled); the next alert then gets fresh attempts.
#[tokio::test(flavor = "multi_thread")]
async fn a_circuit_closes_by_itself_after_staying_resolved_across_a_restart() {
    let s = Scratch::new();
    let rec = recorder(s.path());
    s.write("exit", "1");
    let cfg = config("recovery: { max_attempts: 1, circuit_reset_seconds: 3 }\n");
    let srv = Server::start(&s, &cfg, &rules(rec.to_str().unwrap()));
    let firing = webhook("r", vec![alert("firing", down("kafka-1"))]);
    assert_eq!(srv.post(&firing).await.0, 200);
    srv.wait_until(30, "the failed attempt", |l| {
        l.iter().any(|e| e["status"] == "failed")
    })
    .await;
    assert_eq!(circuits_open(&srv).await.as_deref(), Some("1"));
    // Resolved, then the service is killed before the 3 s are over.
    let resolved = webhook("r", vec![alert("resolved", down("kafka-1"))]);
    assert_eq!(srv.post(&resolved).await.0, 200);
    srv.wait_until(10, "the resolve decided", |_| true).await;
    let mut srv = srv;
    srv.child.kill().expect("kill");
    let _ = srv.child.wait();
    drop(srv);
    let srv = Server::start_in(s.path());
    assert_eq!(
        circuits_open(&srv).await.as_deref(),
        Some("1"),
        "still open"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while circuits_open(&srv).await.as_deref() != Some("0") {
        assert!(
            std::time::Instant::now() < deadline,
            "the circuit did not close by itself"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Closed with its event, no alert needed. A replay of the old occurrence is still
    // stale after the restart (the resolves are read back from the journal) …
    s.write("exit", "0");
    assert_eq!(srv.post(&firing).await.0, 200);
    srv.wait_until(20, "the replay skipped as stale", |l| {
        l.iter().any(|e| {
            e["status"] == "skipped" && e["reason"].as_str().unwrap_or("").starts_with("stale: ")
        })
    })
    .await;
    // … and a new occurrence gets attempt 1 again.
    let mut again = alert("firing", down("kafka-1"));
    again["startsAt"] = json!("2026-11-28T00:00:00Z");
    assert_eq!(srv.post(&webhook("r", vec![again])).await.0, 200);
    let list = srv
        .wait_until(20, "a fresh run", |l| {
            l.iter().any(|e| e["status"] == "succeeded")
        })
        .await;
    let run = list.iter().find(|e| e["status"] == "succeeded").unwrap();
    assert_eq!(run["attempt"], 1, "{run}");
    let db = rusqlite::Connection::open_with_flags(
        s.path().join("state/journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("journal");
    let closed: Vec<(Option<i64>, String)> = db
        .prepare("SELECT execution_id, message FROM events WHERE kind = 'circuit_closed'")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(
        closed,
        vec![(
            None,
            "closed by itself: the problem stayed resolved for circuit_reset_seconds (3 s); \
             the next alert gets fresh attempts"
                .to_string()
        )]
    );
}

/// The value of `kafka_healing_circuits_open`, as text.
async fn circuits_open(srv: &Server) -> Option<String> {
    srv.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("kafka_healing_circuits_open "))
        .map(str::to_string)
}
