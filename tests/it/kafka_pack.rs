//! The shipped pack (`rules/kafka.yaml`, its `for` shortened) on a real `serve` against a
//! real KRaft broker whose exporter does not answer: its `metrics_url` points at a closed
//! port, and in a second server at the broker's own Kafka port (which speaks no HTTP).
//! Each gives an `exporter-unreachable` NOTICE mail naming the exporter's host:port, and
//! no `broker-down` execution or restart.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Scratch;
use crate::kafka::Broker;
use crate::mailbox::{SmtpServer, free_port, headers, parse_eml};
use crate::serve::harness::{Server, TOKEN, recorded, recorder};

/// Bound on the wait for the NOTICE (rounds every 5 s, `for: 10s`).
const DEADLINE: Duration = Duration::from_secs(90);

/// The shipped pack with `for: 1m` made 10 s, and a restart runbook that only records.
fn write_pack(dir: &Path) {
    let pack =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/kafka.yaml"))
            .expect("rules/kafka.yaml");
    assert_eq!(
        pack.matches("for: 1m").count(),
        2,
        "broker-down and exporter-unreachable"
    );
    std::fs::write(dir.join("kafka.yaml"), pack.replace("for: 1m", "for: 10s")).unwrap();
    let rec = recorder(dir);
    std::fs::write(
        dir.join("restart.yaml"),
        format!(
            "runbooks:\n  restart-broker:\n    disruptive: true\n    steps:\n      - name: restart\n        exec: [\"{}\", \"restarted\", \"{{{{target.node_id}}}}\"]\n",
            rec.display()
        ),
    )
    .unwrap();
}

fn start(s: &Scratch, kafka_port: u16, metrics_url: &str, smtp: u16) -> Server {
    write_pack(s.path());
    s.write(
        "config.yaml",
        &format!(
            "cluster:\n  name: itc\n  kafka_brokers:\n    - {{ node_id: b1, host: 127.0.0.1, port: {kafka_port}, metrics_url: '{metrics_url}' }}\n\
             monitoring: {{ interval_seconds: 5, timeout_seconds: 2, methods: [jmx, socket, kafka] }}\n\
             server:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\n\
             notifications:\n  rate_limit_seconds: 0\n  smtp:\n    host: 127.0.0.1\n    port: {smtp}\n    tls: none\n    from_email: kafka-healing@example.com\n    to_emails: [oncall@example.com]\n\
             rules: [kafka.yaml, restart.yaml]\nstate: {{ path: state/journal.db }}\n"
        ),
    );
    Server::start_in(s.path())
}

/// The text part of the first mail whose subject starts with `subject` (bounded wait).
async fn wait_notice(srv: &Server, smtp: &SmtpServer, subject: &str) -> (String, String) {
    let t0 = Instant::now();
    loop {
        for (eml, _) in smtp.received() {
            let m = parse_eml(&eml);
            let subj = headers(&m, "Subject").first().cloned().unwrap_or_default();
            if subj.starts_with(subject) {
                let text = m["parts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["type"] == "text/plain")
                    .and_then(|p| p["body"].as_str())
                    .unwrap_or("")
                    .to_string();
                return (subj, text);
            }
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "no mail `{subject}` after {DEADLINE:?}; got {:?}\nlog:\n{}",
            smtp.envelopes(),
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn rules_run(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|e| {
            format!(
                "{} {}",
                e["rule"].as_str().unwrap_or(""),
                e["status"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn exporter_unreachable_on_a_serving_broker_is_a_notice_not_a_restart() {
    let kdir = Scratch::new();
    let broker = Broker::start_with(kdir.path(), "", &[]).await;
    let closed = free_port();
    let cases = [
        (
            "closed port",
            format!("http://127.0.0.1:{closed}/metrics"),
            closed,
        ),
        (
            "no HTTP",
            format!("http://127.0.0.1:{}/metrics", broker.port),
            broker.port,
        ),
    ];
    for (what, url, exporter_port) in cases {
        let s = Scratch::new();
        let smtp = SmtpServer::start(s.path(), &[]);
        let srv = start(&s, broker.port, &url, smtp.port);
        let (subject, text) = wait_notice(
            &srv,
            &smtp,
            "[kafka-healing] NOTICE b1 (exporter-unreachable)",
        )
        .await;
        assert_eq!(
            subject, "[kafka-healing] NOTICE b1 (exporter-unreachable) itc",
            "{what}"
        );
        let instance = format!("instance=\"127.0.0.1:{exporter_port}\"");
        assert!(
            text.contains(&instance),
            "{what}: the mail names the exporter:\n{text}"
        );
        assert!(
            text.contains("Kafka's protocol"),
            "{what}: the summary:\n{text}"
        );
        // Two more rounds: still nothing for broker-down, and nothing restarted.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let list = srv.executions().await;
        let runs = rules_run(&list);
        assert!(
            runs.iter().all(|r| r.starts_with("exporter-unreachable ")),
            "{what}: {runs:?}"
        );
        assert!(
            recorded(s.path(), "restarted").is_empty(),
            "{what}: a restart ran"
        );
        let m = srv.metrics().await;
        assert!(
            m.contains(r#"kafka_healing_kafka_broker_up{cluster="itc",node_id="b1"} 1"#)
                && m.contains(r#"kafka_healing_target_up{node_id="b1",method="jmx"} 0"#),
            "{what}: {m}"
        );
    }
}
