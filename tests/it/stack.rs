//! The whole stack end to end (`scripts/kafka/stack`): a real three-node KRaft cluster
//! (Maven Central jars, JMX exporter agent) under Debian's supervisord, Debian's ZooKeeper,
//! Prometheus and Alertmanager, a real SMTP server and `kafka-healing serve` with the
//! shipped rule pack and its supervisorctl restart flavour. One test runs the scenarios of
//! issue 7 in order on one stack (starting it takes most of a minute on a busy machine):
//!
//! 1. `kill -9` of a broker → Prometheus → Alertmanager → kafka-healing restarts it (its own
//!    watch is off, so the alert can only come from Alertmanager) → under-replicated
//!    partitions, read from the brokers' real JMX metrics, back to 0 → resolved → mail.
//! 2. Prometheus and Alertmanager stopped, kafka-healing's own scrape/probes switched on by
//!    a config reload: the same failure is detected and healed by kafka-healing alone.
//! 3. ZooKeeper stopped: the ZooKeeper probe's condition fires, a NOTICE mail goes out.
//! 4. Two brokers killed at once: two restarts, never overlapping, the wait in the record.
//! 5. A broker that cannot start (broken config): failed attempts with growing backoff, the
//!    circuit opens, an escalation mail, and no further restarts.
//!
//! It prints `MEASURE` lines (failure → detection, → first step, → broker back in ISR) that
//! BENCHMARKS.md quotes. Bounded: every wait has a limit; the stack is stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Scratch;
use crate::kafka::{run_bounded, supervised_pid, supervisorctl, tail};
use crate::mailbox::{headers, parse_eml};

pub(crate) const TOKEN: &str = "stack-demo-token-0123456789";
/// Bound on one scenario's wait (kill to healed) on a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(240);
/// Bound on one supervisorctl call (a `start` waits the program's `startsecs`).
const CTL_LIMIT: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn now_ms() -> i64 {
    kafka_healing::clock::now_ms()
}

/// A running stack; `stack down` when dropped.
pub(crate) struct Stack {
    pub(crate) dir: PathBuf,
    pub(crate) info: Value,
    client: reqwest::Client,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut c = Command::new(repo().join("scripts/kafka/stack"));
        c.arg("down").arg(&self.dir);
        let _ = run_bounded(c, Duration::from_secs(120));
    }
}

impl Stack {
    pub(crate) fn up(dir: &Path, args: &[&str]) -> Stack {
        let mut c = Command::new(repo().join("scripts/kafka/stack"));
        c.arg("up")
            .arg(dir)
            .args(["--bin", env!("CARGO_BIN_EXE_kafka-healing")])
            .args(args);
        let out = run_bounded(c, Duration::from_secs(600));
        let ok = matches!(&out, Ok(o) if o.status.success());
        if !ok {
            let logs: String = ["kafka-1", "kafka-healing", "prometheus", "alertmanager"]
                .iter()
                .map(|p| {
                    format!(
                        "--- {p}:\n{}\n",
                        tail(&dir.join(format!("logs/{p}.log")), 15)
                    )
                })
                .collect();
            panic!(
                "scripts/kafka/stack up failed: {}\n{logs}",
                match out {
                    Ok(o) => format!(
                        "{}\n{}{}",
                        o.status,
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                    Err(e) => e,
                }
            );
        }
        let info: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("stack.json")).expect("stack.json"),
        )
        .expect("stack.json is JSON");
        Stack {
            dir: dir.to_path_buf(),
            info,
            client: reqwest::Client::new(),
        }
    }

    pub(crate) fn ctl(&self, args: &[&str]) -> Output {
        supervisorctl(&self.dir.join("supervisord.conf"), args, CTL_LIMIT).expect("supervisorctl")
    }

    pub(crate) fn pid(&self, program: &str) -> Option<i32> {
        supervised_pid(&self.dir.join("supervisord.conf"), program, CTL_LIMIT)
    }

    /// SIGKILLs a broker's JVM (supervisord keeps it down: autorestart=false).
    pub(crate) fn kill9(&self, program: &str) -> i32 {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = self
            .pid(program)
            .unwrap_or_else(|| panic!("{program} is not running"));
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
        pid
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.info["healing"]["url"].as_str().unwrap())
    }

    pub(crate) async fn executions(&self) -> Vec<Value> {
        let v: Value = self
            .client
            .get(self.url("/api/v1/executions?limit=1000"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("GET executions")
            .json()
            .await
            .expect("executions JSON");
        let mut list = v["executions"].as_array().cloned().unwrap_or_default();
        list.sort_by_key(|e| e["id"].as_i64());
        list
    }

    pub(crate) async fn detail(&self, id: &Value) -> Value {
        self.client
            .get(self.url(&format!("/api/v1/executions/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET execution")
            .json()
            .await
            .expect("execution JSON")
    }

    /// Polls the executions until `done` holds; panics with the logs after `LIMIT`.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let list = self.executions().await;
            if done(&list) {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {LIMIT:?}; executions: {}\nkafka-healing log:\n{}",
                serde_json::to_string_pretty(&list).unwrap_or_default(),
                tail(&self.dir.join("logs/kafka-healing.log"), 40)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The journal, read-only, beside the running server.
    fn journal(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.dir.join("state/journal.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open journal")
    }

    /// `source`, `status` and `received_ms` of a journaled alert.
    fn alert(&self, id: i64) -> (String, String, i64) {
        self.journal()
            .query_row(
                "SELECT source, status, received_ms FROM alerts WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("alert row")
    }

    /// Webhook alerts with this alertname and status, journaled after `since_ms`.
    fn webhook_alerts(&self, alertname: &str, status: &str, since_ms: i64) -> usize {
        self.journal()
            .query_row(
                "SELECT count(*) FROM alerts WHERE source = 'webhook' AND status = ?1 \
             AND received_ms >= ?2 AND json_extract(labels, '$.alertname') = ?3",
                rusqlite::params![status, since_ms, alertname],
                |r| r.get::<_, i64>(0),
            )
            .expect("count alerts") as usize
    }

    /// Subjects and recipients of the mails the SMTP server received.
    fn mails(&self) -> Vec<(String, String)> {
        let out = self.dir.join("mail");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&out)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|x| x == "eml"));
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|eml| {
                let m = parse_eml(&eml);
                (
                    headers(&m, "Subject").join(" "),
                    headers(&m, "To").join(" "),
                )
            })
            .collect()
    }

    async fn wait_mail(&self, prefix: &str) -> (String, String) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(m) = self
                .mails()
                .into_iter()
                .find(|(s, _)| s.starts_with(prefix))
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no mail `{prefix}…`; got {:?}",
                self.mails()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Each broker's (state, under-replicated partitions) from its own JMX exporter; None
    /// for a broker that does not answer.
    async fn broker_metrics(&self) -> Vec<Option<(f64, f64)>> {
        let mut out = Vec::new();
        for n in self.info["kafka"].as_array().expect("kafka") {
            let url = n["metrics_url"].as_str().expect("metrics_url");
            let body = async {
                self.client
                    .get(url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await?
                    .text()
                    .await
            };
            out.push(body.await.ok().and_then(|body| {
                let value = |name: &str| {
                    body.lines()
                        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                };
                Some((
                    value("kafka_server_kafkaserver_brokerstate ")?,
                    value("kafka_server_replicamanager_underreplicatedpartitions ")?,
                ))
            }));
        }
        out
    }

    /// Under-replicated partitions summed over the brokers; None while any broker does
    /// not answer as RUNNING (state 3).
    async fn urp(&self) -> Option<f64> {
        let mut sum = 0.0;
        for m in self.broker_metrics().await {
            match m {
                Some((3.0, urp)) => sum += urp,
                _ => return None,
            }
        }
        Some(sum)
    }

    /// Under-replicated partitions summed over the brokers that answer (for watching an
    /// outage, when one broker is down).
    async fn partial_urp(&self) -> Option<f64> {
        let answering: Vec<f64> = self
            .broker_metrics()
            .await
            .into_iter()
            .flatten()
            .map(|(_, urp)| urp)
            .collect();
        (!answering.is_empty()).then(|| answering.iter().sum())
    }

    /// Waits until every broker runs with no under-replicated partition; returns when.
    async fn wait_in_sync(&self, what: &str) -> i64 {
        let deadline = Instant::now() + LIMIT;
        loop {
            if self.urp().await == Some(0.0) {
                return now_ms();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: under-replicated partitions not back to 0 within {LIMIT:?} (now {:?})",
                self.urp().await
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Switches kafka-healing's own scrape/probes on (config rewrite + `/-/reload`).
    async fn self_watch_on(&self) {
        let cfg = self.dir.join("config.yaml");
        let text = std::fs::read_to_string(&cfg).expect("config.yaml");
        let on = format!("methods: {}", self.info["methods_on"].as_str().unwrap());
        assert!(text.contains("methods: []"), "{text}");
        std::fs::write(&cfg, text.replace("methods: []", &on)).expect("write config");
        let r = self
            .client
            .post(self.url("/-/reload"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("reload");
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
}

fn succeeded(rule: &'static str, target: &'static str, after: i64) -> impl Fn(&[Value]) -> bool {
    move |l: &[Value]| {
        l.iter().any(|e| {
            e["rule"] == rule
                && e["target"] == target
                && e["status"] == "succeeded"
                && e["id"].as_i64() > Some(after)
        })
    }
}

fn find<'a>(l: &'a [Value], rule: &str, target: &str, after: i64) -> &'a Value {
    l.iter()
        .find(|e| {
            e["rule"] == rule
                && e["target"] == target
                && e["status"] == "succeeded"
                && e["id"].as_i64() > Some(after)
        })
        .expect("the execution")
}

fn last_id(l: &[Value]) -> i64 {
    l.iter().filter_map(|e| e["id"].as_i64()).max().unwrap_or(0)
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Kill → healed for one broker: asserts the execution, its source, the ISR and the mail;
/// prints the timings.
async fn heal_one(stack: &Stack, broker: &'static str, source: &str, path: &str) {
    let before = last_id(&stack.executions().await);
    let killed_ms = now_ms();
    let pid = stack.kill9(broker);
    eprintln!("[{path}] {broker} (pid {pid}) killed");
    // Watch the real JMX metrics while it is down: the partitions it held go
    // under-replicated on the others (the metric is live, not stuck at 0).
    let mut max_urp = 0.0f64;
    let list = loop {
        let list = stack.executions().await;
        if succeeded("broker-down", broker, before)(&list) {
            break list;
        }
        if let Some(u) = stack.partial_urp().await {
            max_urp = max_urp.max(u);
        }
        assert!(
            now_ms() - killed_ms < LIMIT.as_millis() as i64,
            "[{path}] {broker} not healed within {LIMIT:?}: {}\n{}",
            serde_json::to_string_pretty(&list).unwrap_or_default(),
            tail(&stack.dir.join("logs/kafka-healing.log"), 40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ex = find(&list, "broker-down", broker, before).clone();
    let (src, status, received_ms) = stack.alert(ex["alert_id"].as_i64().expect("alert_id"));
    assert_eq!(
        (src.as_str(), status.as_str()),
        (source, "firing"),
        "[{path}] {ex}"
    );
    let d = stack.detail(&ex["id"]).await;
    let steps = d["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{d}");
    assert_eq!(steps[0]["argv"][0], "supervisorctl");
    assert_eq!(steps[0]["argv"][4], broker);
    assert_eq!(steps[0]["exit_code"], 0, "{d}");
    assert_eq!(steps[1]["status"], "succeeded", "{d}");
    assert_ne!(stack.pid(broker), Some(pid), "a new JVM");
    let in_sync_ms = stack.wait_in_sync(path).await;
    assert!(
        max_urp > 0.0,
        "[{path}] under-replicated partitions never showed while {broker} was down"
    );
    let subject = stack
        .wait_mail(&format!("[kafka-healing] RECOVERED {broker} (broker-down)"))
        .await;
    assert_eq!(
        subject,
        (
            format!("[kafka-healing] RECOVERED {broker} (broker-down) demo"),
            "oncall@example.com".to_string()
        )
    );
    let started = ex["started_ms"].as_i64().unwrap_or(0);
    eprintln!(
        "MEASURE path={path} broker={broker} detect_s={:.1} first_step_s={:.1} healed_s={:.1} in_isr_s={:.1} max_urp={max_urp}",
        secs(received_ms - killed_ms),
        secs(started - killed_ms),
        secs(ex["finished_ms"].as_i64().unwrap_or(0) - killed_ms),
        secs(in_sync_ms - killed_ms),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_stack_heals_real_brokers_through_alertmanager_and_by_itself() {
    let s = Scratch::new();
    let stack = Stack::up(&s.path().join("stack"), &["--no-self-watch"]);
    stack.wait_in_sync("stack start").await;

    // 1. Prometheus → Alertmanager → kafka-healing.
    let t0 = now_ms();
    heal_one(&stack, "kafka-2", "webhook", "alertmanager").await;
    // Alertmanager tells kafka-healing when the alert resolves (send_resolved).
    let deadline = Instant::now() + LIMIT;
    while stack.webhook_alerts("KafkaBrokerDown", "resolved", t0) == 0 {
        assert!(
            Instant::now() < deadline,
            "no resolved KafkaBrokerDown from Alertmanager"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 2. Without Prometheus and Alertmanager: kafka-healing's own scrape and probes.
    let o = stack.ctl(&["stop", "prometheus", "alertmanager"]);
    assert!(o.status.success(), "{o:?}");
    stack.self_watch_on().await;
    tokio::time::sleep(Duration::from_secs(6)).await; // one round with everything up
    heal_one(&stack, "kafka-3", "self", "self-watch").await;

    // 3. ZooKeeper stops serving: notify-only, a NOTICE mail.
    let before = last_id(&stack.executions().await);
    let o = stack.ctl(&["stop", "zookeeper"]);
    assert!(o.status.success(), "{o:?}");
    let stopped_ms = now_ms();
    let list = stack
        .wait_until("zookeeper-not-serving", |l| {
            l.iter().any(|e| {
                e["rule"] == "zookeeper-not-serving"
                    && e["status"] == "succeeded"
                    && e["id"].as_i64() > Some(before)
            })
        })
        .await;
    let zk = list
        .iter()
        .find(|e| e["rule"] == "zookeeper-not-serving")
        .expect("execution");
    assert_eq!(zk["runbook"], "notify-only");
    assert_eq!(stack.detail(&zk["id"]).await["steps"], Value::Array(vec![]));
    // Its target is the ZooKeeper node that stopped, named as one (issue 18).
    let (subject, to) = stack
        .wait_mail("[kafka-healing] NOTICE zookeeper/zk-1 (zookeeper-not-serving)")
        .await;
    assert_eq!(
        (subject.as_str(), to.as_str()),
        (
            "[kafka-healing] NOTICE zookeeper/zk-1 (zookeeper-not-serving) demo",
            "oncall@example.com"
        )
    );
    eprintln!(
        "MEASURE path=self-watch zookeeper stopped -> notice execution {:.1}s",
        secs(zk["created_ms"].as_i64().unwrap_or(0) - stopped_ms)
    );
    let o = stack.ctl(&["start", "zookeeper"]);
    assert!(o.status.success(), "{o:?}");

    // 4. Two brokers at once: one restart at a time, the other waits (recorded).
    let before = last_id(&stack.executions().await);
    stack.kill9("kafka-1");
    stack.kill9("kafka-2");
    let list = stack
        .wait_until("both brokers restarted", |l| {
            succeeded("broker-down", "kafka-1", before)(l)
                && succeeded("broker-down", "kafka-2", before)(l)
        })
        .await;
    let (a, b) = (
        find(&list, "broker-down", "kafka-1", before),
        find(&list, "broker-down", "kafka-2", before),
    );
    let span = |e: &Value| {
        (
            e["started_ms"].as_i64().unwrap_or(0),
            e["finished_ms"].as_i64().unwrap_or(0),
        )
    };
    let ((a0, a1), (b0, b1)) = (span(a), span(b));
    assert!(
        a1 <= b0 || b1 <= a0,
        "the two restarts overlapped: kafka-1 {a0}..{a1}, kafka-2 {b0}..{b1}"
    );
    let second = if a0 < b0 { b } else { a };
    let events = stack.detail(&second["id"]).await["events"].clone();
    assert!(
        events.as_array().is_some_and(|ev| ev.iter().any(|e| {
            e["kind"] == "waiting"
                && e["message"].as_str().is_some_and(|m| {
                    m.starts_with("waiting for a cluster slot") || m.starts_with("guard:")
                })
        })),
        "the second restart's wait is in the record: {events}"
    );
    stack.wait_in_sync("after two restarts").await;

    // 5. A broker that cannot start: attempts with backoff, circuit open, escalation.
    let before = last_id(&stack.executions().await);
    let props = stack.dir.join("kafka-1/server.properties");
    let mut text = std::fs::read_to_string(&props).expect("server.properties");
    text.push_str("\n# broken on purpose by the test\nnum.io.threads=not-a-number\n");
    std::fs::write(&props, text).expect("write server.properties");
    stack.kill9("kafka-1");
    let (subject, to) = stack.wait_mail("[kafka-healing] ESCALATION kafka-1 ").await;
    assert!(subject.contains("broker-down"), "{subject}");
    assert!(to.contains("sre-lead@example.com"), "{to}");
    let failed: Vec<Value> = stack
        .executions()
        .await
        .into_iter()
        .filter(|e| e["target"] == "kafka-1" && e["id"].as_i64() > Some(before))
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|e| e["status"] == "failed"),
        "{failed:?}"
    );
    let starts: Vec<i64> = failed
        .iter()
        .filter_map(|e| e["started_ms"].as_i64())
        .collect();
    for w in starts.windows(2) {
        assert!(
            w[1] - w[0] >= 2000,
            "attempts at least initial_delay apart: {starts:?}"
        );
    }
    // No restart loop: the circuit holds while the broker stays down.
    let n = failed.len();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let later = stack
        .executions()
        .await
        .into_iter()
        .filter(|e| e["target"] == "kafka-1" && e["id"].as_i64() > Some(before))
        .count();
    assert_eq!(later, n, "no execution after the circuit opened");
    eprintln!(
        "MEASURE broken broker: {n} failed attempt(s) at {:?} s after the first, then the circuit opened",
        starts
            .iter()
            .map(|s| secs(s - starts[0]))
            .collect::<Vec<_>>()
    );
    drop(stack);
}
