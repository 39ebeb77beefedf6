//! The Kafka protocol client (`kafka_healing::kafka`) against a real Apache Kafka broker
//! (KRaft, single node, started as in `kafka.rs`): ApiVersions, Metadata of a topic made
//! with Kafka's own `TopicCommand`, DescribeConfigs of the `min.insync.replicas` set on it,
//! DescribeQuorum, the cluster summary; then a SASL_SSL listener of the same broker (rcgen
//! certificates, SCRAM users added by Kafka's own storage tool, mutual TLS) with PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512 and a wrong password; then the broker SIGSTOPped (a typed
//! timeout, not a hang) and SIGCONTed (the connection re-dialed). One broker start.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_healing::config::Broker as ConfigBroker;
use kafka_healing::kafka::cluster::{
    partitions_below_min_isr_without, quorum_majority_without, summarize,
};
use kafka_healing::kafka::{BrokerInfo, ClientOptions, KafkaClient, KafkaError};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::Scratch;
use crate::kafka::{Broker, libs, run_bounded};
use crate::mailbox::free_port;

pub(crate) const TOPIC: &str = "healing-t";
const CLUSTER_ID: &str = "a2Fma2EtaGVhbGluZy10Zg";

/// CA, a broker certificate valid for `kafka.test` only (so 127.0.0.1 needs the
/// `server_name` override), and a client certificate, all PEM in `dir`.
pub(crate) fn pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kafka-healing test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str| {
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (broker_cert, broker_key) = leaf("kafka.test");
    let (client_cert, client_key) = leaf("healer");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    // Kafka's PEM keystore: the PKCS#8 key, then the chain.
    std::fs::write(dir.join("broker.pem"), format!("{broker_key}{broker_cert}")).unwrap();
    std::fs::write(dir.join("client.pem"), client_cert).unwrap();
    std::fs::write(dir.join("client.key"), client_key).unwrap();
    std::fs::write(dir.join("scram.pw"), "scram-secret\n").unwrap();
}

/// The broker's extra listener: SASL_SSL with PLAIN and SCRAM, client certificates
/// required.
pub(crate) fn sasl_ssl_props(dir: &Path, sasl_port: u16) -> String {
    let d = dir.display();
    format!(
        "listeners=PLAINTEXT://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,SASL_SSL://127.0.0.1:{sasl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:@PORT@,SASL_SSL://127.0.0.1:{sasl_port}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_healer=\"plain-secret\";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location={d}/broker.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location={d}/ca.pem
listener.name.sasl_ssl.ssl.client.auth=required
"
    )
}

/// A client made the way the service will make it: a config file with a `security:`
/// section, loaded and validated, then [`ClientOptions::from_config`].
fn client_from_config(s: &Scratch, name: &str, port: u16, security: &str) -> KafkaClient {
    let path = s.write(
        &format!("{name}.yaml"),
        &format!(
            "cluster:\n  name: t\n  kafka_brokers:\n    - {{ node_id: 1, host: 127.0.0.1, port: {port} }}\nmonitoring: {{ methods: [socket], timeout_seconds: 10 }}\nrules: []\n{security}"
        ),
    );
    let env = [("KAFKA_PW".to_string(), "plain-secret".to_string())]
        .into_iter()
        .collect();
    let loaded =
        kafka_healing::config::load_with_env(&path, env).unwrap_or_else(|e| panic!("{name}: {e}"));
    let opts = ClientOptions::from_config(
        &loaded.config.security,
        Duration::from_secs(loaded.config.monitoring.timeout_seconds),
        &loaded.base_dir,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    KafkaClient::new(opts)
}

/// Waits until every thread of `pid` is stopped (`T` in `/proc/PID/task/*/stat`), or none
/// is.
pub(crate) async fn wait_stopped(pid: i32, stopped: bool) {
    let state = || -> Vec<char> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Vec::new();
        };
        tasks
            .filter_map(|t| t.ok())
            .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            .filter_map(|st| st.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
            .collect()
    };
    for _ in 0..600 {
        let s = state();
        if !s.is_empty() && s.iter().all(|c| (*c == 'T' || *c == 't') == stopped) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "pid {pid}: threads not {} after 30s: {:?}",
        if stopped { "stopped" } else { "running" },
        state()
    );
}

pub(crate) fn create_topic(port: u16) -> Result<(), String> {
    create_topic_with(port, TOPIC, 3, 2)
}

/// Makes `topic` (RF 1) on the broker at `port` with Kafka's own TopicCommand.
pub(crate) fn create_topic_with(
    port: u16,
    topic: &str,
    partitions: u32,
    min_isr: u32,
) -> Result<(), String> {
    let (libs, _) = libs();
    let mut c = Command::new("java");
    c.args([
        "-Xmx128m",
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-cp",
    ])
    .arg(format!("{}/*", libs.display()))
    .arg("org.apache.kafka.tools.TopicCommand")
    .args(["--bootstrap-server", &format!("127.0.0.1:{port}")])
    .args(["--create", "--topic", topic, "--partitions"])
    .arg(partitions.to_string())
    .args(["--replication-factor", "1", "--config"])
    .arg(format!("min.insync.replicas={min_isr}"));
    match run_bounded(c, Duration::from_secs(120)) {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "TopicCommand failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(e),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_client_against_a_real_broker() {
    let s = Scratch::new();
    pki(s.path());
    let sasl_port = free_port();
    let scram = |m: &str| format!("{m}=[name=healer,password=scram-secret]");
    let broker = Broker::start_with(
        s.path(),
        &sasl_ssl_props(s.path(), sasl_port),
        &[
            "--add-scram".into(),
            scram("SCRAM-SHA-256"),
            "--add-scram".into(),
            scram("SCRAM-SHA-512"),
        ],
    )
    .await;
    let port = broker.port;
    // Kafka's own tool makes the topic while the SASL_SSL listener is checked.
    let topic = tokio::task::spawn_blocking(move || create_topic(port));

    // a. SASL_SSL: SCRAM-SHA-512 with a client certificate and the server name override.
    let ssl = "security:\n  ssl:\n    enabled: true\n    ca_file: ca.pem\n    cert_file: client.pem\n    key_file: client.key\n    server_name: kafka.test\n";
    let c512 = client_from_config(
        &s,
        "scram512",
        sasl_port,
        &format!(
            "{ssl}  sasl:\n    enabled: true\n    mechanism: SCRAM-SHA-512\n    username: healer\n    password_file: scram.pw\n"
        ),
    );
    let t0 = Instant::now();
    let m = c512
        .metadata("127.0.0.1", sasl_port)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "SCRAM-SHA-512 over TLS: {e}\n{}",
                crate::kafka::tail(&broker.log, 30)
            )
        });
    let first_secure = t0.elapsed();
    // Brokers advertise the listener they were asked on.
    assert_eq!(
        m.brokers,
        vec![BrokerInfo {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: i32::from(sasl_port),
            rack: None
        }]
    );
    let q = c512.describe_quorum("127.0.0.1", sasl_port).await.unwrap();
    assert_eq!(q.and_then(|q| q.leader_id), Some(1));
    assert_eq!(c512.dials(), 1, "the authenticated connection is reused");

    for (name, mech, pw) in [
        ("scram256", "SCRAM-SHA-256", "password_file: scram.pw"),
        ("plain", "PLAIN", "password: '${KAFKA_PW}'"),
    ] {
        let c = client_from_config(
            &s,
            name,
            sasl_port,
            &format!(
                "{ssl}  sasl:\n    enabled: true\n    mechanism: {mech}\n    username: healer\n    {pw}\n"
            ),
        );
        let v = c.api_versions("127.0.0.1", sasl_port).await;
        assert!(v.is_ok(), "{mech}: {v:?}");
        let m = c.metadata("127.0.0.1", sasl_port).await.unwrap();
        assert_eq!(m.cluster_id.as_deref(), Some(CLUSTER_ID), "{mech}");
    }

    // b. A wrong password is an authentication error of a live broker, never "down".
    s.write("wrong.pw", "not-the-password\n");
    let wrong = Arc::new(client_from_config(
        &s,
        "wrong",
        sasl_port,
        &format!(
            "{ssl}  sasl:\n    enabled: true\n    mechanism: SCRAM-SHA-256\n    username: healer\n    password_file: wrong.pw\n"
        ),
    ));
    let e = wrong.metadata("127.0.0.1", sasl_port).await.unwrap_err();
    match &e {
        KafkaError::Authentication {
            mechanism, message, ..
        } => {
            assert_eq!(*mechanism, "SCRAM-SHA-256");
            assert!(
                message.contains("SaslAuthenticationFailed (58)"),
                "{message}"
            );
        }
        other => panic!("expected an authentication error, got {other:?}"),
    }
    assert!(e.proves_alive());
    let summary = summarize(
        &wrong,
        &[ConfigBroker {
            node_id: "kafka-1".into(),
            host: "127.0.0.1".into(),
            port: sasl_port,
            jmx_port: None,
            metrics_url: None,
        }],
    )
    .await;
    let b = &summary.brokers[0];
    assert!(b.alive, "{b:?}");
    assert!(
        b.error
            .as_deref()
            .is_some_and(|e| e.contains("SASL authentication failed")),
        "{b:?}"
    );
    assert_eq!(summary.metadata, None);
    // Without the override, the certificate (for kafka.test) does not match 127.0.0.1.
    let no_name = client_from_config(
        &s,
        "noname",
        sasl_port,
        "security:\n  ssl: { enabled: true, ca_file: ca.pem, cert_file: client.pem, key_file: client.key }\n  sasl: { enabled: true, mechanism: PLAIN, username: healer, password: '${KAFKA_PW}' }\n",
    );
    let e = no_name
        .api_versions("127.0.0.1", sasl_port)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, KafkaError::Tls { message, .. } if message.contains("certificate")),
        "{e:?}"
    );
    assert!(!e.proves_alive());

    // c. Plaintext: ApiVersions, Metadata of the topic TopicCommand made, its min ISR.
    topic.await.unwrap().unwrap();
    let client = Arc::new(KafkaClient::new(ClientOptions::plaintext(
        Duration::from_secs(10),
    )));
    let v = client.api_versions("127.0.0.1", port).await.unwrap();
    for key in [3, 17, 18, 32, 36, 55] {
        assert!(v.ranges.contains_key(&key), "API {key} missing: {v:?}");
    }
    assert_eq!(
        v.negotiate(3, (1, 13)),
        Some(13),
        "Metadata v13 on Kafka 4.x"
    );
    let mut lat = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        client.api_versions("127.0.0.1", port).await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let m = client.metadata("127.0.0.1", port).await.unwrap();
    assert_eq!(m.cluster_id.as_deref(), Some(CLUSTER_ID));
    assert_eq!(m.controller_id, Some(1));
    assert_eq!(
        m.brokers,
        vec![BrokerInfo {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: i32::from(port),
            rack: None
        }]
    );
    let t = m
        .topics
        .iter()
        .find(|t| t.name == TOPIC)
        .unwrap_or_else(|| panic!("{TOPIC} missing: {m:?}"));
    assert!(!t.internal);
    assert_eq!(t.error_code, 0);
    let mut parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition,
                p.leader,
                p.replicas.clone(),
                p.isr.clone(),
                p.offline.clone(),
            )
        })
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        (0..3)
            .map(|i| (i, Some(1), vec![1], vec![1], vec![]))
            .collect::<Vec<_>>()
    );
    let names: Vec<String> = m.topics.iter().map(|t| t.name.clone()).collect();
    let mi = client
        .min_insync_replicas("127.0.0.1", port, &names, Some(1))
        .await
        .unwrap();
    assert_eq!(mi.topics.get(TOPIC), Some(&2), "{mi:?}");
    assert_eq!(mi.broker_default, Some(1), "Kafka's default");
    assert!(mi.errors.is_empty(), "{mi:?}");
    let q = client
        .describe_quorum("127.0.0.1", port)
        .await
        .unwrap()
        .expect("KRaft answers DescribeQuorum");
    assert_eq!(q.leader_id, Some(1));
    assert_eq!(
        q.voters
            .iter()
            .map(|r| (r.replica_id, r.lag))
            .collect::<Vec<_>>(),
        vec![(1, 0)]
    );
    assert!(q.high_watermark > 0, "{q:?}");
    assert!(q.leader_epoch >= 1, "{q:?}");
    // A single voter: the quorum survives any other node, not its own restart.
    assert!(quorum_majority_without(99, &q, 2_000).ok);
    let c = quorum_majority_without(1, &q, 2_000);
    assert_eq!(
        (c.voters, c.needed, c.caught_up, c.ok),
        (1, 1, vec![], false)
    );

    // d. The summary, and the restart_safe computation on what it found.
    let brokers = [ConfigBroker {
        node_id: "kafka-1".into(),
        host: "127.0.0.1".into(),
        port,
        jmx_port: None,
        metrics_url: None,
    }];
    let summary = summarize(&client, &brokers).await;
    assert_eq!(summary.errors, Vec::<String>::new());
    assert_eq!(summary.source.as_deref(), Some("kafka-1"));
    assert_eq!(summary.brokers.len(), 1, "{summary:?}");
    let b = &summary.brokers[0];
    assert!(b.alive && b.error.is_none(), "{b:?}");
    assert_eq!(
        b.kafka_id,
        Some(1),
        "found by host and port in the metadata"
    );
    assert_eq!(summary.alive_ids(), BTreeSet::from([1]));
    let (meta, mi) = (
        summary.metadata.as_ref().unwrap(),
        summary.min_isr.as_ref().unwrap(),
    );
    assert_eq!(summary.quorum.as_ref().and_then(|q| q.leader_id), Some(1));
    // Min ISR 2 on a single replica: below already, whatever the target.
    let other = partitions_below_min_isr_without(99, meta, mi, &summary.alive_ids());
    assert_eq!(
        other
            .iter()
            .map(|p| (
                p.topic.as_str(),
                p.partition,
                p.in_sync.clone(),
                p.target_in_sync
            ))
            .collect::<Vec<_>>(),
        (0..3)
            .map(|i| (TOPIC, i, vec![1], false))
            .collect::<Vec<_>>()
    );
    // Without broker 1, every partition of every topic has no in-sync replica left.
    let total: usize = meta.topics.iter().map(|t| t.partitions.len()).sum();
    let without = partitions_below_min_isr_without(1, meta, mi, &summary.alive_ids());
    assert_eq!(without.len(), total);
    assert!(
        without
            .iter()
            .all(|p| p.in_sync.is_empty() && p.target_in_sync)
    );
    assert_eq!(client.dials(), 1, "every request reused one connection");

    // e. SIGSTOP: the TCP port still accepts (the kernel does), nothing answers.
    let pid = Pid::from_raw(broker.pid().expect("running") as i32);
    let short = Arc::new(KafkaClient::new(ClientOptions::plaintext(
        Duration::from_secs(2),
    )));
    short.api_versions("127.0.0.1", port).await.unwrap();
    kill(pid, Signal::SIGSTOP).unwrap();
    // kill(2) only queues the signal: wait until every thread of the JVM is stopped.
    wait_stopped(pid.as_raw(), true).await;
    let t0 = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        short.api_versions("127.0.0.1", port),
    )
    .await
    .expect("the client hung on a stopped broker");
    let stopped_pooled = t0.elapsed();
    assert!(
        matches!(&r, Err(KafkaError::Timeout { request: "ApiVersions", after, .. }) if *after == Duration::from_secs(2)),
        "{r:?}"
    );
    assert!(stopped_pooled >= Duration::from_secs(2));
    let t0 = Instant::now();
    let r = short.alive("127.0.0.1", port, Duration::from_secs(2)).await;
    let stopped_alive = t0.elapsed();
    assert!(
        matches!(&r, Err(e @ KafkaError::Timeout { after, .. }) if *after == Duration::from_secs(2) && !e.proves_alive()),
        "{r:?}"
    );
    let summary = summarize(&short, &brokers).await;
    assert!(!summary.brokers[0].alive, "{summary:?}");
    assert_eq!(summary.metadata, None);
    kill(pid, Signal::SIGCONT).unwrap();
    wait_stopped(pid.as_raw(), false).await;
    // Back: the connection that timed out was dropped and is dialed anew; the other
    // client's idle connection survived the pause and is reused.
    let before = short.dials();
    let lat_back = short
        .alive("127.0.0.1", port, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        short.dials() > before,
        "re-dialed after the broker came back"
    );
    let m2 = client.metadata("127.0.0.1", port).await.unwrap();
    assert_eq!(m2.cluster_id.as_deref(), Some(CLUSTER_ID));
    assert_eq!(client.dials(), 1);

    eprintln!(
        "kafka client figures: ApiVersions on a reused plaintext connection: median {:?}, max {:?} (20 requests); \
         first Metadata over SASL_SSL (dial + TLS 1.3 with client cert + SCRAM-SHA-512 + request): {first_secure:?}; \
         SIGSTOPped broker: reused connection timed out after {stopped_pooled:?} (limit 2s), \
         alive() (2 fresh dials) failed after {stopped_alive:?} (limit 2s); alive again after SIGCONT in {lat_back:?}",
        lat[lat.len() / 2],
        lat[lat.len() - 1],
    );
}
