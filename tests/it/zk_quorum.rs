//! The ZooKeeper quorum guard against a real three-node ensemble of Debian's ZooKeeper:
//! with all three serving, a restart of one is allowed (and runs); with one node down, a
//! restart of a second is refused with the reason, its command never runs, and the NOTICE
//! mail names the ZooKeeper node.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_healing::config::ZookeeperNode;
use kafka_healing::ingest::probe;
use kafka_healing::rules::model::Precondition;
use kafka_healing::runbook::precondition::zk::ZkGuard;
use serde_json::{Value, json};

use crate::common::{Scratch, run, stderr, stdout};
use crate::mailbox::{SmtpServer, free_port};
use crate::serve::harness::{Server, TOKEN, alert, recorded, recorder, webhook};

const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";
const T: Duration = Duration::from_secs(3);

/// One ensemble member; killed when dropped.
struct Member {
    child: Child,
    node: ZookeeperNode,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts three QuorumPeerMain nodes on loopback (4lw whitelist srvr, mntr).
fn ensemble(dir: &Path) -> Vec<Member> {
    assert!(
        Path::new(ZK_JAR).exists(),
        "{ZK_JAR} is missing: install Debian's `zookeeper` package (scripts/test does)"
    );
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> = (1..=3)
        .map(|i| format!("server.{i}=127.0.0.1:{}:{}\n", free_port(), free_port()))
        .collect();
    (1..=3)
        .map(|i| {
            let port = clients[i - 1];
            let data = dir.join(format!("zk-{i}"));
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(data.join("myid"), format!("{i}\n")).unwrap();
            let cfg = format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\n4lw.commands.whitelist=srvr,mntr\n\
                 admin.enableServer=false\n{}",
                data.display(),
                peers.concat()
            );
            let cfg_path = data.join("zoo.cfg");
            std::fs::write(&cfg_path, cfg).unwrap();
            let child = Command::new("java")
                .args([
                    "-Xmx96m",
                    "-XX:+UseSerialGC",
                    "-cp",
                    &format!("/etc/zookeeper/conf:{ZK_JAR}"),
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                ])
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(data.join("zk.log")).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .expect("java");
            Member {
                child,
                node: ZookeeperNode {
                    node_id: format!("zk-{i}"),
                    host: "127.0.0.1".into(),
                    port,
                },
            }
        })
        .collect()
}

/// The nodes' `srvr` modes (`None`: not serving), once.
async fn modes(nodes: &[ZookeeperNode]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for z in nodes {
        let r = probe::zookeeper(&z.node_id, &z.host, z.port, T, false).await;
        out.push(
            r.success
                .then(|| r.detail.rsplit(' ').next().unwrap_or("").to_string()),
        );
    }
    out
}

/// Polls until `want` serving nodes with one leader among them (at most 90 s).
async fn wait_serving(nodes: &[ZookeeperNode], want: usize) -> Vec<Option<String>> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let m = modes(nodes).await;
        let serving = m.iter().flatten().count();
        let leaders = m.iter().flatten().filter(|x| *x == "leader").count();
        if serving == want && leaders == 1 {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "the ensemble did not reach {want} serving nodes with a leader: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn config(nodes: &[ZookeeperNode], smtp: u16) -> String {
    let zk: String = nodes
        .iter()
        .map(|z| {
            format!(
                "    - {{ node_id: {}, host: {}, port: {} }}\n",
                z.node_id, z.host, z.port
            )
        })
        .collect();
    format!(
        "cluster:\n  name: zk-test\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: k1.example.com, port: 9092 }}\n  zookeeper_nodes:\n{zk}\
         server:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\nrules: [rules.yaml]\nstate: {{ path: state/journal.db }}\n\
         monitoring:\n  methods: [zookeeper]\nrecovery:\n  precondition_timeout_seconds: 3\n\
         notifications:\n  rate_limit_seconds: 0\n  retry_initial_seconds: 1\n  smtp:\n    host: 127.0.0.1\n    port: {smtp}\n    tls: none\n    from_email: kafka-healing@example.com\n    to_emails: [oncall@example.com]\n    timeout_seconds: 5\n"
    )
}

/// The zookeeper-down rule with the shipped flavour's precondition; the restart is the
/// recorder, so what ran (or did not) is on disk.
fn rules(rec: &Path) -> String {
    format!(
        "rules:\n  - name: zookeeper-down\n    matchers: ['alertname=\"ZookeeperDown\"']\n    runbook: restart-zookeeper\n\
         runbooks:\n  restart-zookeeper:\n    requires: [zookeeper_quorum_safe]\n    steps:\n      - name: restart\n        exec: [\"{}\", restarts, \"{{{{target.kind}}}}\", \"{{{{target.node_id}}}}\", \"{{{{target.host}}}}:{{{{target.port}}}}\"]\n",
        rec.display()
    )
}

fn zk_down(node: &str) -> Value {
    json!({"alertname": "ZookeeperDown", "node_id": node, "severity": "critical"})
}

/// Polls the mailbox until a message whose raw text holds `needle` arrives (at most 30 s).
async fn wait_mail_with(smtp: &SmtpServer, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((eml, _)) = smtp
            .received()
            .into_iter()
            .find(|(e, _)| e.contains(needle))
        {
            return eml;
        }
        assert!(
            Instant::now() < deadline,
            "no mail with {needle:?}: {:?}",
            smtp.envelopes()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quorum_guard_on_a_real_three_node_ensemble() {
    let s = Scratch::new();
    let mut members = ensemble(s.path());
    let nodes: Vec<ZookeeperNode> = members.iter().map(|m| m.node.clone()).collect();
    wait_serving(&nodes, 3).await;
    let guard = ZkGuard {
        ensemble: nodes.clone(),
        timeout: T,
    };
    let req = [Precondition::ZookeeperQuorumSafe];

    // All three serve: one may be restarted.
    let j = guard.judge(&req, "zk-2").await;
    assert!(j.refusal().is_none(), "{}", j.summary());
    assert_eq!(
        j.verdicts[0].reason,
        "3 of 3 voters serve, ZooKeeper node zk-2 serves, a quorum needs 2: 2 would serve \
         during its restart"
    );

    let smtp = SmtpServer::start(s.path(), &[]);
    let rec = recorder(s.path());
    let server = Server::start(&s, &config(&nodes, smtp.port), &rules(&rec));
    let (code, _) = server
        .post(&webhook("kh", vec![alert("firing", zk_down("zk-2"))]))
        .await;
    assert_eq!(code, 200);
    let list = server
        .wait_until(30, "the zk-2 restart", |l| {
            l.iter().any(|e| e["status"] == "succeeded")
        })
        .await;
    assert_eq!(list[0]["target"], "zookeeper/zk-2", "{}", json!(list));
    let calls = recorded(s.path(), "restarts");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].2,
        ["zookeeper", "zk-2", &format!("127.0.0.1:{}", nodes[1].port)]
    );
    assert!(
        calls[0].3.contains("KAFKA_HEALING_TARGET=zk-2\n"),
        "{}",
        calls[0].3
    );
    assert!(
        calls[0]
            .3
            .contains(&format!("KAFKA_HEALING_TARGET_PORT={}\n", nodes[1].port))
    );

    // zk-3 goes down; the two others keep a quorum (a new leader, if zk-3 led).
    drop(members.remove(2));
    let m = wait_serving(&nodes, 2).await;
    assert_eq!(m[2], None);
    let j = guard.judge(&req, "zk-1").await;
    let why = j.refusal().expect("refused");
    let expected = "zookeeper_quorum_safe: 2 of 3 voters serve, ZooKeeper node zk-1 serves, a \
                    quorum needs 2: restarting it would leave 1 serving, and the ensemble \
                    would lose its quorum; not serving: zk-3 (";
    assert!(why.starts_with(expected), "{why}");
    // The down node itself may be restarted: the serving count cannot drop.
    let j = guard.judge(&req, "zk-3").await;
    assert!(j.refusal().is_none(), "{}", j.summary());

    let (code, _) = server
        .post(&webhook("kh", vec![alert("firing", zk_down("zk-1"))]))
        .await;
    assert_eq!(code, 200);
    let list = server
        .wait_until(30, "the zk-1 refusal", |l| {
            l.iter().any(|e| e["status"] == "refused")
        })
        .await;
    let refused = list
        .iter()
        .find(|e| e["status"] == "refused")
        .expect("refused");
    assert_eq!(refused["target"], "zookeeper/zk-1");
    let reason = refused["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("refused before step `restart`: {expected}")),
        "{reason}"
    );
    assert_eq!(
        recorded(s.path(), "restarts").len(),
        1,
        "the refused restart never ran"
    );
    let eml = wait_mail_with(&smtp, "NOTICE").await;
    assert!(eml.contains("ZooKeeper node zk-1"), "{eml}");
}

#[test]
fn shipped_zookeeper_flavours_check_and_plan() {
    let o = run(&["test", "rules/tests/zookeeper.test.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "ok: 1 test\n");
    // The systemctl flavour loads beside the pack too.
    let s = Scratch::new();
    let root = env!("CARGO_MANIFEST_DIR");
    let cfg = std::fs::read_to_string(format!("{root}/rules/tests/zookeeper.config.yaml"))
        .unwrap()
        .replace("../kafka.yaml", &format!("{root}/rules/kafka.yaml"))
        .replace(
            "../restart/supervisorctl.yaml",
            &format!("{root}/rules/restart/systemctl.yaml"),
        )
        .replace(
            "../restart/zookeeper-supervisorctl.yaml",
            &format!("{root}/rules/restart/zookeeper-systemctl.yaml"),
        );
    let path = s.write("config.yaml", &cfg);
    let o = run(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("11 rules, 9 runbooks"),
        "{}",
        stdout(&o)
    );
}

/// A ZooKeeper node is a target like a broker for `pause`, `resume` and `reset`, named
/// `zookeeper/ID` (one path segment, `/` percent-encoded): its alert is skipped while it
/// is paused, and nothing runs. An unconfigured one is refused as before. (No ensemble:
/// the pause is decided before any precondition reads one.)
#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_targets_can_be_paused_resumed_and_reset() {
    let s = Scratch::new();
    let nodes: Vec<ZookeeperNode> = ["zk-1", "zk-2", "zk-3"]
        .map(|id| ZookeeperNode {
            node_id: id.into(),
            host: "127.0.0.1".into(),
            port: free_port(),
        })
        .to_vec();
    let rec = recorder(s.path());
    let server = Server::start(&s, &config(&nodes, free_port()), &rules(&rec));
    let cfg = server.dir.join("config.yaml");
    let cli = |args: &[&str]| {
        let mut all = vec![
            args[0],
            "-c",
            cfg.to_str().expect("utf-8"),
            "--url",
            &server.url,
        ];
        all.extend_from_slice(&args[1..]);
        run(&all)
    };
    let o = cli(&[
        "pause",
        "--target",
        "zookeeper/zk-1",
        "--for",
        "1h",
        "--reason",
        "upgrade",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("zookeeper/zk-1: paused until "),
        "{}",
        stdout(&o)
    );
    let (_, v) = server.get("/api/v1/pauses").await;
    let targets: Vec<&Value> = v["pauses"]
        .as_array()
        .expect("pauses")
        .iter()
        .map(|p| &p["target"])
        .collect();
    assert_eq!(targets, vec![&json!("zookeeper/zk-1")], "{v}");
    // Its alert is skipped with the pause's words; the restart never runs.
    let (code, _) = server
        .post(&webhook("kh", vec![alert("firing", zk_down("zk-1"))]))
        .await;
    assert_eq!(code, 200);
    let list = server.wait_until(15, "the skip", |l| !l.is_empty()).await;
    assert_eq!(
        (&list[0]["status"], &list[0]["target"]),
        (&json!("skipped"), &json!("zookeeper/zk-1")),
        "{list:?}"
    );
    let reason = list[0]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("paused: zookeeper/zk-1 is paused until "),
        "{reason}"
    );
    assert!(recorded(s.path(), "restarts").is_empty());
    // An unconfigured node is refused, as an unknown broker is.
    let o = cli(&[
        "pause",
        "--target",
        "zookeeper/zk-9",
        "--for",
        "1h",
        "--reason",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).ends_with("HTTP 400 Bad Request: `zookeeper/zk-9` is not a configured broker\n"),
        "{}",
        stderr(&o)
    );
    let o = cli(&["resume", "--target", "zookeeper/zk-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("zookeeper/zk-1: resumed"),
        "{}",
        stdout(&o)
    );
    let (_, v) = server.get("/api/v1/pauses").await;
    assert_eq!(v["pauses"], json!([]), "{v}");
    let o = cli(&["reset", "zookeeper/zk-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = cli(&["reset", "zookeeper/zk-9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("`zookeeper/zk-9` is not a configured broker"),
        "{}",
        stderr(&o)
    );
}
