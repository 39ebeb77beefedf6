//! Real self-healing end to end: a real Kafka broker (KRaft single node with the JMX
//! exporter agent, as in tests/it/kafka.rs) runs under Debian's `supervisord` with a config
//! in the test's directory (scripts/kafka/supervisord.conf.in, `autorestart=false`);
//! `kafka-healing serve` watches it (JMX scrape + socket probe every 5 s). The broker's JVM
//! is SIGKILLed; the rule's condition fires, and the shipped Ansible restart flavour
//! (`rules/restart/ansible.yaml`, as shipped) runs the shipped playbook
//! (`ansible/restart-broker.yml`) for real with `ansible-playbook`: it restarts the program
//! through supervisorctl and waits for the listener; a RECOVERED email reaches a real SMTP
//! server. The rule overrides the flavour's default params (the runbook-params feature).
//!
//! Needs the Kafka jars (`bash scripts/kafka/fetch`), supervisor and ansible-core;
//! scripts/test provides them. Without them the test fails (it never skips).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::*;
use crate::common::Scratch;
use crate::kafka::{BrokerSetup, exporter_running, supervised_pid, supervisorctl, tail};
use crate::mailbox::{SmtpServer, headers, parse_eml};

const SUPERVISORD: &str = "/usr/bin/supervisord";
const SUPERVISORCTL: &str = "/usr/bin/supervisorctl";
/// Bound on a broker start (about 3.5 s on an idle machine; other tests run beside).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on one supervisorctl call.
const CTL_LIMIT: Duration = Duration::from_secs(30);
/// Bound from the kill to everything recovered.
const HEAL_TIMEOUT: Duration = Duration::from_secs(120);

/// supervisord with the broker as program `kafka-1`; everything is stopped when dropped.
pub(super) struct Supervised {
    supervisord: Option<Child>,
    /// supervisorctl's config file.
    pub(super) conf: PathBuf,
    dir: PathBuf,
    /// The broker's client listener.
    pub(super) port: u16,
    /// The JMX exporter's `/metrics` URL.
    pub(super) metrics_url: String,
}

impl Supervised {
    pub(super) fn start(dir: &Path) -> Supervised {
        assert!(
            Path::new(SUPERVISORD).exists() && Path::new(SUPERVISORCTL).exists(),
            "supervisor is not installed ({SUPERVISORD}, {SUPERVISORCTL} missing): \
             `apt-get install supervisor` (scripts/test installs it)"
        );
        let setup = BrokerSetup::prepare(dir);
        let java_args = setup.java_args.join(" ");
        let conf_in =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka/supervisord.conf.in");
        let template = std::fs::read_to_string(conf_in).expect("scripts/kafka/supervisord.conf.in");
        let conf = dir.join("supervisord.conf");
        std::fs::write(
            &conf,
            template
                .replace("@DIR@", &dir.display().to_string())
                .replace("@JAVA_ARGS@", &java_args),
        )
        .unwrap();
        let child = Command::new(SUPERVISORD)
            .args(["-n", "-c"])
            .arg(&conf)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("supervisord.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("supervisord.err")).unwrap())
            .spawn()
            .expect("spawn supervisord");
        Supervised {
            supervisord: Some(child),
            conf,
            dir: dir.to_path_buf(),
            port: setup.port,
            metrics_url: setup.metrics_url,
        }
    }

    /// `supervisorctl -c CONF ARGS…`, bounded.
    pub(super) fn ctl(&self, args: &[&str]) -> Result<Output, String> {
        supervisorctl(&self.conf, args, CTL_LIMIT)
    }

    /// The broker JVM's pid as supervisord reports it (None when not running).
    pub(super) fn pid(&self) -> Option<i32> {
        supervised_pid(&self.conf, "kafka-1", CTL_LIMIT)
    }

    fn logs(&self) -> String {
        format!(
            "supervisord.log:\n{}\nkafka-1.log:\n{}",
            tail(&self.dir.join("supervisord.log"), 20),
            tail(&self.dir.join("kafka-1.log"), 40)
        )
    }

    pub(super) fn port_open(&self) -> bool {
        std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_secs(2),
        )
        .is_ok()
    }

    /// Waits (bounded) until the broker port is open and the exporter reports state 3.
    pub(super) async fn wait_running(&mut self, limit: Duration, what: &str) -> Duration {
        let client = reqwest::Client::new();
        let t0 = Instant::now();
        loop {
            if let Some(st) = self
                .supervisord
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "supervisord exited ({st}):\n{}\n{}",
                    tail(&self.dir.join("supervisord.err"), 20),
                    self.logs()
                );
            }
            if self.port_open() && exporter_running(&client, &self.metrics_url).await {
                return t0.elapsed();
            }
            if t0.elapsed() > limit {
                panic!(
                    "{what}: the broker was not running after {limit:?} (port open: {}):\n{}",
                    self.port_open(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        // The JVM first (supervisord's pid for it), then supervisord itself.
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.ctl(&["shutdown"]);
        if let Some(mut c) = self.supervisord.take() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn smtp_cfg(port: u16) -> String {
    format!(
        "notifications:\n  rate_limit_seconds: 0\n  retry_initial_seconds: 1\n  smtp:\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    from_email: kafka-healing@example.com\n    to_emails: [oncall@example.com]\n    timeout_seconds: 5\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_broker_under_supervisord_is_restarted_by_the_shipped_ansible_playbook() {
    let s = Scratch::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kdir = s.path().join("kafka");
    std::fs::create_dir_all(&kdir).unwrap();
    let mut sup = Supervised::start(&kdir);
    let took = sup.wait_running(START_TIMEOUT, "first start").await;
    let pid0 = sup.pid().expect("supervisord reports the broker's pid");
    eprintln!(
        "kafka broker under supervisord running after {took:.1?} (pid {pid0}, port {}, exporter {})",
        sup.port, sup.metrics_url
    );

    let smtp = SmtpServer::start(s.path(), &[]);
    let cfg = format!(
        "cluster:\n  name: heal\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: {}, metrics_url: '{}' }}\nmonitoring: {{ interval_seconds: 5, timeout_seconds: 3, methods: [jmx, socket] }}\nserver:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\nrules: [rules.yaml, '{}']\nstate: {{ path: state/journal.db }}\n{}",
        sup.port,
        sup.metrics_url,
        repo.join("rules/restart/ansible.yaml").display(),
        smtp_cfg(smtp.port)
    );
    let inventory = s.path().join("inventory.ini");
    std::fs::write(&inventory, "[kafka]\nkafka-1 ansible_connection=local\n").unwrap();
    let conf = sup.conf.display().to_string();
    let playbook = repo
        .join("ansible/restart-broker.yml")
        .display()
        .to_string();
    let inventory = inventory.display().to_string();
    let rules = format!(
        r#"rules:
  - name: broker-down
    condition:
      expr: up{{job="kafka"}} == 0 or kafka_healing_probe_success{{method="socket"}} == 0
      for: 5s
      alertname: KafkaBrokerDown
      labels: {{ severity: critical }}
    runbook: restart-broker
    params:
      playbook: "{playbook}"
      inventory: "{inventory}"
      service_manager: supervisor
      supervisor_conf: "{conf}"
"#
    );
    let srv = Server::start(&s, &cfg, &rules);
    // A healthy broker: a few rounds, and nothing runs.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        srv.executions().await,
        Vec::<Value>::new(),
        "nothing runs while the broker is healthy"
    );

    // SIGKILL the JVM through supervisord; autorestart=false keeps it down.
    let killed_at = Instant::now();
    let out = sup
        .ctl(&["signal", "KILL", "kafka-1"])
        .expect("supervisorctl signal");
    assert!(
        out.status.success(),
        "supervisorctl signal KILL kafka-1: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while sup.port_open() {
        assert!(
            Instant::now() < deadline,
            "the killed broker's port stays open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("broker pid {pid0} killed; port closed");

    // The rule's execution for kafka-1 succeeds.
    let list = srv
        .wait_until(
            HEAL_TIMEOUT.as_secs(),
            "a succeeded broker-down execution",
            |l| {
                l.iter().any(|e| {
                    e["rule"] == "broker-down"
                        && e["target"] == "kafka-1"
                        && e["status"] == "succeeded"
                })
            },
        )
        .await;
    let healed_at = killed_at.elapsed();
    let ex = list
        .iter()
        .find(|e| e["status"] == "succeeded")
        .unwrap()
        .clone();
    assert!(
        list.iter()
            .all(|e| e["status"] != "failed" && e["status"] != "escalated"),
        "{}",
        json!(list)
    );
    let (st, detail) = srv.get(&format!("/api/v1/executions/{}", ex["id"])).await;
    assert_eq!(st, 200, "{detail}");
    eprintln!("execution succeeded {healed_at:.1?} after the kill: {detail}");
    let steps = detail["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{detail}");
    assert_eq!(steps[0]["name"], "restart");
    assert_eq!(steps[0]["status"], "succeeded", "{detail}");
    assert_eq!(steps[0]["exit_code"], 0);
    assert_eq!(steps[0]["argv"][0], "ansible-playbook");
    assert_eq!(steps[0]["argv"][4], "kafka-1", "--limit {detail}");
    let out = steps[0]["stdout"].as_str().unwrap_or_default();
    // The playbook ran its tasks for real on this host: restart via supervisorctl, then
    // waited for the listener; the systemd task was skipped.
    for want in [
        "TASK [Restart the supervisord program]",
        "TASK [Wait for the listener]",
        "kafka-1                    : ok=4    changed=1    unreachable=0    failed=0    skipped=1",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // The post-condition: back in the cluster, asked through Kafka's protocol.
    assert_eq!(steps[1]["name"], "wait-in-sync");
    assert_eq!(steps[1]["status"], "succeeded", "{detail}");
    assert_eq!(
        steps[1]["argv"],
        json!([
            "kafka-1",
            format!("127.0.0.1:{}", sup.port),
            "timeout=600",
            "recovery_timeout=3600"
        ])
    );
    let said = steps[1]["stdout"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("broker kafka-1 answers (ApiVersions in ")
            && said.contains(
                ", is in the ISR of all 0 partition(s) it hosts; BrokerState RUNNING (3) after "
            ),
        "{said}"
    );
    // Judged before the restart: the broker did not answer, so each precondition held.
    let events = detail["events"].as_array().expect("events");
    let judged = events
        .iter()
        .find(|e| e["kind"] == "precondition")
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default();
    for want in [
        "broker_unreachable holds (broker kafka-1 (127.0.0.1:",
        "restart_safe holds (broker kafka-1 does not answer: restarting it cannot lower availability)",
        "not_starting holds (its exporter ",
    ] {
        assert!(judged.contains(want), "missing {want:?} in {judged}");
    }

    // The broker is back: a new JVM, the port accepts connections, the exporter answers.
    let pid1 = sup.pid().expect("supervisord runs kafka-1 again");
    assert_ne!(pid0, pid1, "a new JVM");
    assert!(
        sup.port_open(),
        "the port accepts connections after wait_for"
    );
    let left = HEAL_TIMEOUT.saturating_sub(killed_at.elapsed());
    sup.wait_running(left.max(Duration::from_secs(5)), "after the heal")
        .await;
    let running_at = killed_at.elapsed();

    // The RECOVERED email.
    let mail_deadline = killed_at + HEAL_TIMEOUT;
    let subject = loop {
        let subjects: Vec<String> = smtp
            .received()
            .iter()
            .flat_map(|(eml, _)| headers(&parse_eml(eml), "Subject"))
            .collect();
        if let Some(sub) = subjects
            .iter()
            .find(|s| s.starts_with("[kafka-healing] RECOVERED kafka-1 ("))
        {
            break sub.clone();
        }
        assert!(
            Instant::now() < mail_deadline,
            "no RECOVERED mail for kafka-1; got {subjects:?}\nlog:\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        subject,
        "[kafka-healing] RECOVERED kafka-1 (broker-down) heal"
    );
    eprintln!(
        "kill -> execution succeeded {healed_at:.1?}, broker state 3 {running_at:.1?}, \
         RECOVERED mail {:.1?}",
        killed_at.elapsed()
    );
    drop(srv);
    drop(sup);
}
