//! A real Apache Kafka broker (KRaft, combined broker + controller, single node) with the
//! Prometheus JMX exporter agent, on 127.0.0.1: the scraper, the `scrape` command's
//! conditions and the socket probe against what a real broker exposes, then the same after
//! the broker is killed.
//!
//! The jars come from Maven Central through `scripts/kafka/fetch` (which `scripts/test`
//! runs) into `target/kafka/libs/`; the broker config template and the exporter rules are
//! in `scripts/kafka/`. Without the jars this test fails (it never skips).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kafka_healing::ingest::probe;
use kafka_healing::ingest::scrape::{ScrapeResult, scrape};

use crate::common::Scratch;
use crate::mailbox::free_port;

/// How long a broker may take to start (about 3.5 s on an idle 2-core machine; the other
/// tests run beside this one).
const START_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/kafka/libs/` and the JMX exporter agent jar in it; panics (the test fails) when
/// the jars have not been fetched.
pub(crate) fn libs() -> (PathBuf, PathBuf) {
    let libs = repo().join("target/kafka/libs");
    let find = |prefix: &str| -> Option<PathBuf> {
        std::fs::read_dir(&libs)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".jar"))
            })
    };
    let (kafka, agent) = (find("kafka_2.13-"), find("jmx_prometheus_javaagent-"));
    assert!(
        kafka.is_some() && agent.is_some(),
        "the Kafka broker jars are missing from {}: run `bash scripts/kafka/fetch` \
         (scripts/test runs it; it needs mvn and a JDK 17+)",
        libs.display()
    );
    (libs, agent.unwrap())
}

/// Runs `cmd` to completion within `limit`, returning its output.
pub(crate) fn run_bounded(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {limit:?}: killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// `supervisorctl -c CONF ARGS…`, run to completion within `limit`.
pub(crate) fn supervisorctl(conf: &Path, args: &[&str], limit: Duration) -> Result<Output, String> {
    let mut c = Command::new("/usr/bin/supervisorctl");
    c.arg("-c").arg(conf).args(args);
    run_bounded(c, limit)
}

/// The pid supervisord reports for `program` (None when it is not running).
pub(crate) fn supervised_pid(conf: &Path, program: &str, limit: Duration) -> Option<i32> {
    let o = supervisorctl(conf, &["pid", program], limit).ok()?;
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
}

/// The last `n` lines of a file, for failure messages.
pub(crate) fn tail(p: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A single-node KRaft broker prepared in a directory: config written, storage formatted.
pub(crate) struct BrokerSetup {
    /// The client (PLAINTEXT) listener.
    pub port: u16,
    /// The JMX exporter's `/metrics` URL.
    pub metrics_url: String,
    /// The JVM's arguments (after `java`): options, the exporter agent, class path, main
    /// class and the config file.
    pub java_args: Vec<String>,
}

impl BrokerSetup {
    /// Writes `server.properties` in `dir` (ephemeral ports on 127.0.0.1) and formats the
    /// storage with a fresh cluster id and this node as the only controller.
    pub(crate) fn prepare(dir: &Path) -> BrokerSetup {
        Self::prepare_with(dir, "", &[])
    }

    /// [`BrokerSetup::prepare`] with `extra` lines appended to `server.properties` (later
    /// keys override the template's; `@PORT@` and `@CONTROLLER_PORT@` are filled in) and
    /// `format_args` added to the storage format (`--add-scram …`).
    pub(crate) fn prepare_with(dir: &Path, extra: &str, format_args: &[String]) -> BrokerSetup {
        let (libs, agent) = libs();
        let cp = format!("{}/*", libs.display());
        let (port, controller_port, jmx_port) = (free_port(), free_port(), free_port());
        let template = std::fs::read_to_string(repo().join("scripts/kafka/server.properties.in"))
            .expect("scripts/kafka/server.properties.in");
        let props = dir.join("server.properties");
        std::fs::write(
            &props,
            format!("{template}\n{extra}\n")
                .replace("@PORT@", &port.to_string())
                .replace("@CONTROLLER_PORT@", &controller_port.to_string())
                .replace("@LOG_DIR@", &dir.join("kafka-data").display().to_string()),
        )
        .unwrap();
        // The cluster id is Kafka's base64url UUID form.
        let mut format = Command::new("java");
        format
            .args(["-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", &cp])
            .args(["kafka.tools.StorageTool", "format", "--standalone"])
            .args(["-t", "a2Fma2EtaGVhbGluZy10Zg", "-c"])
            .arg(&props)
            .args(format_args);
        match run_bounded(format, Duration::from_secs(60)) {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "formatting the KRaft storage failed ({}):\n{}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("formatting the KRaft storage failed: {e}"),
        }
        let java_args = vec![
            "-Xms64m".to_string(),
            "-Xmx256m".into(),
            "-XX:+UseSerialGC".into(),
            "-XX:TieredStopAtLevel=1".into(),
            "-Djava.awt.headless=true".into(),
            format!(
                "-javaagent:{}=127.0.0.1:{jmx_port}:{}",
                agent.display(),
                repo().join("scripts/kafka/jmx-exporter.yml").display()
            ),
            "-cp".into(),
            cp,
            "kafka.Kafka".into(),
            props.display().to_string(),
        ];
        BrokerSetup {
            port,
            metrics_url: format!("http://127.0.0.1:{jmx_port}/metrics"),
            java_args,
        }
    }
}

/// Whether the exporter answers and reports broker state RUNNING (3). The agent's HTTP
/// server answers before Kafka has started (JVM metrics only), so answering alone is not
/// enough.
pub(crate) async fn exporter_running(client: &reqwest::Client, metrics_url: &str) -> bool {
    let body = async {
        client
            .get(metrics_url)
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .text()
            .await
    };
    body.await.is_ok_and(|b| {
        b.lines()
            .any(|l| l == "kafka_server_kafkaserver_brokerstate 3.0")
    })
}

/// A running broker: its JVM is SIGKILLed when dropped (and when the test process dies).
pub(crate) struct Broker {
    child: Option<Child>,
    /// The client (PLAINTEXT) listener.
    pub(crate) port: u16,
    /// The JMX exporter's `/metrics` URL.
    pub(crate) metrics_url: String,
    pub(crate) log: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Broker {
    /// Formats the storage and starts the broker in `dir`; returns once it is running.
    async fn start(dir: &Path) -> Broker {
        Self::start_with(dir, "", &[]).await
    }

    /// [`Broker::start`] with extra properties and storage format arguments (see
    /// [`BrokerSetup::prepare_with`]).
    pub(crate) async fn start_with(dir: &Path, extra: &str, format_args: &[String]) -> Broker {
        let setup = BrokerSetup::prepare_with(dir, extra, format_args);
        let log = dir.join("kafka.log");
        let log_file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap()
        };
        let mut cmd = Command::new("java");
        cmd.args(&setup.java_args)
            .stdin(Stdio::null())
            .stdout(log_file())
            .stderr(log_file());
        let t0 = Instant::now();
        let child = cmd.spawn().expect("spawn java (a JDK 17+ must be on PATH)");
        let mut b = Broker {
            child: Some(child),
            port: setup.port,
            metrics_url: setup.metrics_url,
            log,
        };
        b.wait_running(t0).await;
        eprintln!(
            "kafka broker running after {:.1?} (port {}, exporter {})",
            t0.elapsed(),
            b.port,
            b.metrics_url
        );
        b
    }

    /// Waits (bounded) until the broker accepts connections and its exporter reports the
    /// broker state RUNNING (3).
    async fn wait_running(&mut self, t0: Instant) {
        let client = reqwest::Client::new();
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the Kafka broker exited early ({st}):\n{}",
                    tail(&self.log, 40)
                );
            }
            let port_open = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if port_open && exporter_running(&client, &self.metrics_url).await {
                return;
            }
            if t0.elapsed() > START_TIMEOUT {
                panic!(
                    "the Kafka broker was not running after {START_TIMEOUT:?} (port open: {port_open}):\n{}",
                    tail(&self.log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The JVM's pid while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the JVM and reaps it.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn value(r: &ScrapeResult, name: &str) -> Option<f64> {
    r.samples
        .iter()
        .find(|(l, _)| l.get("__name__").map(String::as_str) == Some(name))
        .map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread")]
async fn real_kafka_broker_scraped_probed_and_killed() {
    let s = Scratch::new();
    let mut broker = Broker::start(s.path()).await;
    let client = reqwest::Client::new();

    // a. The scraper against the real exporter.
    let r = scrape(
        &client,
        "kafka-1",
        &broker.metrics_url,
        Duration::from_secs(5),
    )
    .await;
    assert!(r.up, "scrape failed: {:?}", r.error);
    assert_eq!(r.error, None);
    assert!(
        r.samples.len() > 300,
        "only {} samples from a real broker",
        r.samples.len()
    );
    for (name, want) in [
        (
            "kafka_controller_kafkacontroller_activecontrollercount",
            1.0,
        ),
        ("kafka_server_replicamanager_underreplicatedpartitions", 0.0),
        (
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            0.0,
        ),
        ("kafka_server_kafkaserver_brokerstate", 3.0),
        ("up", 1.0),
    ] {
        assert_eq!(value(&r, name), Some(want), "{name}");
    }
    let n = value(&r, "scrape_samples_scraped").unwrap();
    assert_eq!(n as usize, r.samples.len() - 3);
    let topic_metrics: Vec<&str> = r
        .samples
        .iter()
        .filter_map(|(l, _)| l.get("__name__"))
        .map(String::as_str)
        .filter(|n| n.starts_with("kafka_server_brokertopicmetrics_"))
        .collect();
    for name in [
        "kafka_server_brokertopicmetrics_messagesin_total",
        "kafka_server_brokertopicmetrics_bytesin_total",
        "kafka_server_brokertopicmetrics_bytesout_total",
    ] {
        assert!(
            topic_metrics.contains(&name),
            "{name} missing: {topic_metrics:?}"
        );
    }
    assert!(
        value(&r, "kafka_server_brokertopicmetrics_messagesin_total").is_some_and(|v| v >= 0.0)
    );
    // The Kafka tools as the diagnostics runbooks run them (`scripts/kafka/stack`'s
    // wrappers): the mail carries their answer, not their client's INFO logging.
    tools_answer_without_logging(s.path(), broker.port);
    // Target labels as Prometheus attaches them.
    let (labels, _) = r
        .samples
        .iter()
        .find(|(l, _)| l["__name__"] == "kafka_controller_kafkacontroller_activecontrollercount")
        .unwrap();
    let jmx_port = broker
        .metrics_url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/metrics");
    assert_eq!(labels["node_id"], "kafka-1");
    assert_eq!(labels["job"], "kafka");
    assert_eq!(labels["instance"], format!("127.0.0.1:{jmx_port}"));
    let p = probe::socket("kafka-1", "127.0.0.1", broker.port, Duration::from_secs(3)).await;
    assert!(p.success, "{p:?}");

    // b. `kafka-healing scrape --json` with a config naming the broker and two conditions.
    s.write(
        "c.yaml",
        &format!(
            "cluster:\n  name: real\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: {}, metrics_url: '{}' }}\nmonitoring: {{ interval_seconds: 30, timeout_seconds: 10, methods: [jmx, socket] }}\nrules: [r.yaml]\n",
            broker.port, broker.metrics_url
        ),
    );
    s.write(
        "r.yaml",
        "rules:\n  - name: no-active-controller\n    condition: { expr: 'sum(kafka_controller_kafkacontroller_activecontrollercount) != 1' }\n    runbook: rb\n  - name: active-controller\n    condition: { expr: 'kafka_controller_kafkacontroller_activecontrollercount == 1' }\n    runbook: rb\nrunbooks:\n  rb:\n    disruptive: false\n    steps: [{ name: s, exec: ['true'] }]\n",
    );
    let cfg = s.path().join("c.yaml");
    let out = tokio::task::spawn_blocking(move || {
        crate::common::run(&["scrape", "-c", cfg.to_str().unwrap(), "--json"])
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::common::stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_str(&crate::common::stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}", crate::common::stdout(&out)));
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{targets:?}");
    let jmx = targets.iter().find(|t| t["method"] == "jmx").unwrap();
    assert_eq!(jmx["up"], true, "{jmx}");
    assert_eq!(jmx["node_id"], "kafka-1");
    assert!(jmx["samples"].as_u64().is_some_and(|n| n > 300), "{jmx}");
    let sock = targets.iter().find(|t| t["method"] == "socket").unwrap();
    assert_eq!(sock["up"], true, "{sock}");
    let cond = |rule: &str| -> serde_json::Value {
        v["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["rule"] == rule)
            .unwrap_or_else(|| panic!("no condition {rule}: {v}"))
            .clone()
    };
    assert_eq!(
        cond("no-active-controller")["series"],
        serde_json::json!([]),
        "{v}"
    );
    let present = cond("active-controller");
    let series = present["series"]
        .as_array()
        .unwrap_or_else(|| panic!("{present}"));
    assert_eq!(series.len(), 1, "{present}");
    assert_eq!(series[0]["value"], 1.0);
    assert_eq!(series[0]["labels"]["node_id"], "kafka-1");
    assert_eq!(
        series[0]["labels"],
        serde_json::json!({
            "__name__": "kafka_controller_kafkacontroller_activecontrollercount",
            "instance": format!("127.0.0.1:{jmx_port}"),
            "job": "kafka",
            "node_id": "kafka-1",
        })
    );

    // c. The broker SIGKILLed: the scrape is down and the socket probe fails.
    broker.kill();
    let r = scrape(
        &client,
        "kafka-1",
        &broker.metrics_url,
        Duration::from_secs(5),
    )
    .await;
    assert!(!r.up, "scrape of a killed broker was up");
    assert!(r.error.is_some());
    assert_eq!(value(&r, "up"), Some(0.0));
    assert_eq!(value(&r, "scrape_samples_scraped"), Some(0.0));
    let p = probe::socket("kafka-1", "127.0.0.1", broker.port, Duration::from_secs(3)).await;
    assert!(
        !p.success,
        "socket probe of a killed broker succeeded: {p:?}"
    );
}

/// `kafka-metadata-quorum.sh describe --status` against the broker at `port`: its answer on
/// stdout, and not one INFO line (slf4j-simple logs INFO by default: ~300 lines a run).
fn tools_answer_without_logging(dir: &Path, port: u16) {
    let mut c = Command::new(repo().join("scripts/kafka/stack"));
    c.arg("tools").arg(dir.join("tools"));
    let o = run_bounded(c, Duration::from_secs(30)).expect("stack tools");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let mut c = Command::new(bin.join("kafka-metadata-quorum.sh"));
    c.args(["--bootstrap-server", &format!("127.0.0.1:{port}")])
        .args(["describe", "--status"])
        .env_remove("KAFKA_LOG4J_OPTS");
    let o = run_bounded(c, Duration::from_secs(120)).expect("kafka-metadata-quorum.sh");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("LeaderId:") && out.contains("ClusterId:"),
        "{out}"
    );
    let info: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| l.contains(" INFO "))
        .collect();
    assert!(info.is_empty(), "INFO lines in the tool's output: {info:?}");
    assert!(out.lines().count() < 20, "{out}");
}
