//! The suite's rig: the three-broker stack (`scripts/kafka/stack up --no-alerting`, so the
//! service's own watch is the only source of `KafkaBrokerDown`), the service reconfigured
//! with the suite's rules (`RULES`: the old, exporter-trusting `broker-down` condition on
//! purpose, a restart runbook that requires the preconditions), the restart wrapper whose
//! log is the suite's record of every restart, and the watcher.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kafka_healing::kafka::{ClientOptions, KafkaClient};
use serde_json::Value;

use super::watcher::{Node, Watcher};
use crate::kafka::tail;
use crate::mailbox::parse_eml;
use crate::stack::{Stack, TOKEN};

/// Bound on restoring the cluster between scenarios (a broker start plus catch-up).
const RESTORE_LIMIT: Duration = Duration::from_secs(240);

/// The restart wrapper: logs `ms node_id` before anything else, SIGKILLs the program's
/// process if it still has one (a SIGSTOPped JVM: supervisord would wait on it), waits
/// (bounded) for supervisord to see it gone, then `supervisorctl start`. Absolute paths:
/// the service runs steps with a cleared environment.
const WRAPPER: &str = r#"#!/bin/sh
# restart.sh LOG SUPERVISORD_CONF PROGRAM
log="$1"; conf="$2"; prog="$3"
echo "$(/bin/date +%s%3N) $prog" >> "$log"
pid=$(/usr/bin/supervisorctl -c "$conf" pid "$prog")
case "$pid" in ''|0|*[!0-9]*) ;; *) /bin/kill -KILL "$pid" 2>/dev/null ;; esac
i=0
while [ $i -lt 100 ]; do
  case "$(/usr/bin/supervisorctl -c "$conf" status "$prog")" in
    *RUNNING*|*STOPPING*) /bin/sleep 0.1; i=$((i+1)) ;;
    *) break ;;
  esac
done
exec /usr/bin/supervisorctl -c "$conf" start "$prog"
"#;

/// The suite's rules. `broker-down` trusts a dead exporter (`up == 0`) the way the old
/// pack and Prometheus' `KafkaBrokerDown` do: the preconditions, not the condition, must
/// keep a serving broker from being restarted. `@WRAPPER@`, `@LOG@`, `@CONF@` are filled in.
const RULES: &str = r#"rules:
  - name: broker-down
    broker_down: true
    cooldown_seconds: 20
    condition:
      expr: up{job="kafka"} == 0 or kafka_healing_probe_success{method="kafka"} == 0 or kafka_healing_probe_success{method="socket"} == 0
      for: 6s
      alertname: KafkaBrokerDown
      labels: { severity: critical }
    runbook: restart-broker
  - name: exporter-unreachable
    cooldown_seconds: 0
    condition:
      expr: up{job="kafka"} == 0 and on(node_id) kafka_healing_probe_success{method="kafka"} == 1
      for: 6s
      alertname: KafkaExporterUnreachable
      labels: { severity: warning }
    runbook: notify-only
  - name: rolling-restart
    matchers: ['alertname="RollingRestart"']
    runbook: rolling-restart
runbooks:
  restart-broker:
    disruptive: true
    requires: [broker_unreachable, restart_safe, not_starting]
    steps:
      - name: restart
        exec: ["@WRAPPER@", "@LOG@", "@CONF@", "{{target.node_id}}"]
        timeout: 150s
      - name: back in sync
        wait_in_sync: { timeout: 3m, recovery_timeout: 4m }
  rolling-restart:
    disruptive: true
    requires: [restart_safe]
    steps:
      - name: restart
        exec: ["@WRAPPER@", "@LOG@", "@CONF@", "{{target.node_id}}"]
        timeout: 150s
      - name: back in sync
        wait_in_sync: { timeout: 3m, recovery_timeout: 4m }
  notify-only:
    disruptive: false
    steps: []
"#;

/// The suite's rules; with `SAFETY_NEGATIVE_CONTROL=1` in the environment, without the
/// preconditions and with a TCP wait instead of `wait_in_sync` (the service as it was
/// before issue 15): the scenarios must then fail with unsafe actions, which shows that
/// the suite detects them.
fn rules() -> String {
    if std::env::var_os("SAFETY_NEGATIVE_CONTROL").is_none() {
        return RULES.to_string();
    }
    RULES
        .lines()
        .filter(|l| !l.contains("requires:"))
        .map(|l| {
            l.replace(
                "wait_in_sync: { timeout: 3m, recovery_timeout: 4m }",
                r#"wait_for: { tcp: "127.0.0.1:{{target.port}}", timeout: 180s }"#,
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The stack, the service on the suite's rules, the wrapper's log and the watcher.
pub(crate) struct Rig {
    /// The stack (stopped when the rig is dropped).
    pub(crate) stack: Stack,
    /// The independent sampler.
    pub(crate) watcher: Watcher,
    /// The three brokers.
    pub(crate) nodes: Vec<Node>,
    /// The wrapper's log: one `ms node_id` line per restart.
    log: PathBuf,
    http: reqwest::Client,
}

impl Rig {
    /// Starts the stack in `dir` (`extra`: more `stack up` options), installs the suite's
    /// rules and waits until every broker is in sync.
    pub(crate) async fn up(dir: &Path, extra: &[&str]) -> Rig {
        let mut args = vec!["--no-alerting"];
        args.extend_from_slice(extra);
        let stack = Stack::up(dir, &args);
        let nodes: Vec<Node> = stack.info["kafka"]
            .as_array()
            .expect("stack.json kafka")
            .iter()
            .map(|n| Node {
                name: n["node_id"].as_str().expect("node_id").to_string(),
                id: n["id"].as_i64().expect("id") as i32,
                port: n["port"].as_u64().expect("port") as u16,
            })
            .collect();
        let sd = dir.join("safety");
        std::fs::create_dir_all(&sd).expect("safety dir");
        let wrapper = sd.join("restart.sh");
        std::fs::write(&wrapper, WRAPPER).expect("write wrapper");
        let mut perm = std::fs::metadata(&wrapper).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&wrapper, perm).expect("chmod");
        let log = sd.join("restarts.log");
        std::fs::write(&log, "").expect("restart log");
        let conf = stack.dir.join("supervisord.conf");
        std::fs::write(
            sd.join("rules.yaml"),
            rules()
                .replace("@WRAPPER@", &wrapper.display().to_string())
                .replace("@LOG@", &log.display().to_string())
                .replace("@CONF@", &conf.display().to_string()),
        )
        .expect("write rules");
        let rig = Rig {
            watcher: Watcher::start(nodes.clone()),
            stack,
            nodes,
            log,
            http: reqwest::Client::new(),
        };
        rig.configure(&[]).await;
        rig.restore("stack start").await;
        rig.check_min_isr().await;
        rig
    }

    /// The broker named `name`.
    pub(crate) fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no broker {name}"))
    }

    /// `demo` must have RF 3 and `min.insync.replicas` 2 (the scenarios count on it).
    async fn check_min_isr(&self) {
        let c = KafkaClient::new(ClientOptions::plaintext(Duration::from_secs(10)));
        let n = &self.nodes[0];
        let md = c.metadata("127.0.0.1", n.port).await.expect("metadata");
        let demo = md
            .topics
            .iter()
            .find(|t| t.name == "demo")
            .expect("topic demo");
        assert!(
            demo.partitions.iter().all(|p| p.replicas.len() == 3),
            "{demo:?}"
        );
        let m = c
            .min_insync_replicas("127.0.0.1", n.port, &["demo".to_string()], Some(n.id))
            .await
            .expect("DescribeConfigs");
        assert_eq!(m.of("demo"), 2, "min.insync.replicas of demo: {m:?}");
    }

    /// Writes the service's config (`metrics`: `metrics_url` overrides by node_id) and
    /// reloads it.
    pub(crate) async fn configure(&self, metrics: &[(&str, String)]) {
        let info = &self.stack.info;
        let brokers: String = info["kafka"]
            .as_array()
            .expect("kafka")
            .iter()
            .map(|n| {
                let name = n["node_id"].as_str().unwrap_or_default();
                let url = metrics
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, u)| u.clone())
                    .unwrap_or_else(|| n["metrics_url"].as_str().unwrap_or_default().into());
                format!(
                    "    - {{ node_id: {name}, host: 127.0.0.1, port: {}, metrics_url: '{url}' }}\n",
                    n["port"]
                )
            })
            .collect();
        let healing = &info["healing"];
        let url = healing["url"].as_str().expect("healing url");
        let port = url.rsplit(':').next().unwrap_or_default();
        let text = format!(
            "# Written by tests/it/safety.\nenvironment: development\ncluster:\n  name: demo\n  kafka_brokers:\n{brokers}  zookeeper_nodes:\n    - {{ node_id: zk-1, host: 127.0.0.1, port: {zk} }}\n\
monitoring: {{ interval_seconds: 5, timeout_seconds: 3, methods: [jmx, socket, kafka] }}\n\
recovery: {{ max_attempts: 10, attempt_window_seconds: 60, initial_delay_seconds: 2, backoff_multiplier: 2.0, cooldown_seconds: 15, max_concurrent_per_cluster: 1 }}\n\
notifications:\n  rate_limit_seconds: 0\n  retry_initial_seconds: 1\n  smtp: {{ host: 127.0.0.1, port: {smtp}, tls: none, from_email: kafka-healing@example.com, to_emails: [oncall@example.com], timeout_seconds: 5 }}\n\
server:\n  listen: 127.0.0.1:{port}\n  auth: {{ bearer_token_file: webhook-token }}\n\
rules: [safety/rules.yaml]\nstate: {{ path: state/journal.db }}\nlogging: {{ level: info, format: text }}\n",
            zk = info["zookeeper"]["port"],
            smtp = info["smtp"]["port"],
        );
        std::fs::write(self.stack.dir.join("config.yaml"), text).expect("write config");
        let r = self
            .http
            .post(self.stack.url("/-/reload"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("reload");
        let status = r.status();
        assert_eq!(status, 200, "reload: {:?}", r.text().await);
    }

    /// Every restart the wrapper logged: (ms, node_id).
    pub(crate) fn restarts(&self) -> Vec<(i64, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (t, n) = l.split_once(' ')?;
                Some((t.parse().ok()?, n.trim().to_string()))
            })
            .collect()
    }

    /// The restarts logged at or after `from_ms`.
    pub(crate) fn restarts_since(&self, from_ms: i64) -> Vec<(i64, String)> {
        let mut r = self.restarts();
        r.retain(|(t, _)| *t >= from_ms);
        r
    }

    /// Executions created at or after `from_ms`.
    pub(crate) async fn executions_since(&self, from_ms: i64) -> Vec<Value> {
        let mut l = self.stack.executions().await;
        l.retain(|e| e["created_ms"].as_i64().is_some_and(|c| c >= from_ms));
        l
    }

    /// Polls the executions since `from_ms` until `done` holds; `None` after `limit`.
    pub(crate) async fn wait_executions(
        &self,
        from_ms: i64,
        limit: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Option<Vec<Value>> {
        let t0 = Instant::now();
        loop {
            let l = self.executions_since(from_ms).await;
            if done(&l) {
                return Some(l);
            }
            if t0.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// (subject, body) of every mail received, oldest first.
    pub(crate) fn mails(&self) -> Vec<(String, String)> {
        let out = self.stack.dir.join("mail");
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
                let subject = crate::mailbox::headers(&m, "Subject").join(" ");
                let body: String = m["parts"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter_map(|p| p["body"].as_str())
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                (subject, body)
            })
            .collect()
    }

    /// Waits (bounded) for a mail whose subject contains every one of `words`.
    pub(crate) async fn wait_mail(
        &self,
        words: &[&str],
        limit: Duration,
    ) -> Option<(String, String)> {
        let t0 = Instant::now();
        loop {
            if let Some(m) = self
                .mails()
                .into_iter()
                .find(|(s, _)| words.iter().all(|w| s.contains(w)))
            {
                return Some(m);
            }
            if t0.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The service's log tail, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.stack.dir.join("logs/kafka-healing.log"), 40)
    }

    /// Puts the cluster back: the suite's config without overrides, every broker program
    /// running (a stopped JVM is continued first), every broker answering and in sync.
    pub(crate) async fn restore(&self, what: &str) {
        self.configure(&[]).await;
        for n in &self.nodes {
            if let Some(pid) = self.stack.pid(&n.name) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGCONT,
                );
            } else {
                let o = self.stack.ctl(&["start", &n.name]);
                eprintln!(
                    "[restore {what}] started {}: {}",
                    n.name,
                    String::from_utf8_lossy(&o.stdout).trim()
                );
            }
        }
        let ids: Vec<i32> = self.nodes.iter().map(|n| n.id).collect();
        let ok = self
            .watcher
            .wait_for(RESTORE_LIMIT, |s| ids.iter().all(|id| s.back(*id)))
            .await;
        assert!(
            ok.is_some(),
            "[restore {what}] the cluster is not back in sync within {RESTORE_LIMIT:?}: {:?}\n{}",
            self.watcher.samples().last(),
            self.log_tail()
        );
    }
}
