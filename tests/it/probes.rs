//! Probes against real servers: Debian's ZooKeeper (serving standalone, and a lone
//! ensemble member that is not serving), an open and a closed TCP port, an HTTP endpoint.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_healing::ingest::probe;

use crate::common::Scratch;
use crate::mailbox::free_port;

const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

/// A ZooKeeper server from Debian's `zookeeper` package, run with the machine's JDK.
struct Zk {
    child: Child,
    port: u16,
}

impl Drop for Zk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Zk {
    /// Starts a node; `ensemble` adds two peers that never start (the node is then not
    /// serving: no quorum).
    fn start(dir: &Path, ensemble: bool) -> Zk {
        assert!(
            Path::new(ZK_JAR).exists(),
            "{ZK_JAR} is missing: install Debian's `zookeeper` package (scripts/test does)"
        );
        let port = free_port();
        let data = dir.join(format!("zk-{port}"));
        std::fs::create_dir_all(&data).unwrap();
        let mut cfg = format!(
            "tickTime=500\ninitLimit=5\nsyncLimit=2\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n4lw.commands.whitelist=srvr,mntr,ruok\nadmin.enableServer=false\n",
            data.display()
        );
        if ensemble {
            std::fs::write(data.join("myid"), "1\n").unwrap();
            for i in 1..=3 {
                cfg.push_str(&format!(
                    "server.{i}=127.0.0.1:{}:{}\n",
                    free_port(),
                    free_port()
                ));
            }
        }
        let cfg_path = data.join("zoo.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let main = if ensemble {
            "org.apache.zookeeper.server.quorum.QuorumPeerMain"
        } else {
            "org.apache.zookeeper.server.ZooKeeperServerMain"
        };
        let child = Command::new("java")
            .args([
                "-Xmx128m",
                "-cp",
                &format!("/etc/zookeeper/conf:{ZK_JAR}"),
                main,
            ])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(data.join("zk.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("java");
        let zk = Zk { child, port };
        // Ready when the port accepts connections (bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "ZooKeeper did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        zk
    }
}

const T: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_serving_and_not_serving() {
    let s = Scratch::new();
    let zk = Zk::start(s.path(), false);
    // Right after its port opens a node may still say it is not serving: that is a real
    // answer; wait (bounded) until it serves.
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = probe::zookeeper("zk-1", "127.0.0.1", zk.port, T, true).await;
        if r.success || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(r.success, "{r:?}");
    assert_eq!(
        r.detail,
        format!("127.0.0.1:{} serving, mode standalone", zk.port)
    );
    let fact = |name: &str| r.facts.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(fact("kafka_healing_zookeeper_mode_standalone"), Some(1.0));
    assert_eq!(fact("kafka_healing_zookeeper_mode_leader"), Some(0.0));
    assert!(
        fact("kafka_healing_zookeeper_num_alive_connections").is_some_and(|v| v >= 1.0),
        "mntr read: {r:?}"
    );
    let series = r.series();
    let success = series
        .iter()
        .find(|(l, _)| l["__name__"] == "kafka_healing_probe_success")
        .unwrap();
    assert_eq!(
        (
            success.0["node_id"].as_str(),
            success.0["method"].as_str(),
            success.1
        ),
        ("zk-1", "zookeeper", 1.0)
    );

    let lone = Zk::start(s.path(), true);
    let r = probe::zookeeper("zk-2", "127.0.0.1", lone.port, T, true).await;
    assert!(!r.success, "{r:?}");
    assert!(
        r.detail.ends_with("not currently serving requests"),
        "{}",
        r.detail
    );
    assert!(
        r.facts.is_empty(),
        "no mntr from a node that is not serving"
    );
    drop(zk);
    let r = probe::zookeeper("zk-1", "127.0.0.1", free_port(), T, true).await;
    assert!(!r.success);
    assert!(r.detail.contains("refused"), "{}", r.detail);
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_and_http_probes() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let r = probe::socket("kafka-1", "127.0.0.1", port, T).await;
    assert!(r.success, "{r:?}");
    let closed = free_port();
    let r = probe::socket("kafka-1", "127.0.0.1", closed, T).await;
    assert!(!r.success);
    assert!(r.detail.contains("refused"), "{}", r.detail);
    assert_eq!(r.series()[0].1, 0.0);
    // HTTP: 200 is up, 500 is down, a silent server times out.
    let app = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "ok" }))
        .route(
            "/err",
            axum::routing::get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c = reqwest::Client::new();
    assert!(
        probe::http("kafka-1", &c, &format!("http://{addr}/ok"), T)
            .await
            .success
    );
    let r = probe::http("kafka-1", &c, &format!("http://{addr}/err"), T).await;
    assert!(!r.success);
    assert!(
        r.detail.ends_with("HTTP 500 Internal Server Error"),
        "{}",
        r.detail
    );
    let t0 = Instant::now();
    let r = probe::http(
        "kafka-1",
        &c,
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(500),
    )
    .await;
    assert!(!r.success);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "bounded by the timeout"
    );
    assert!(r.detail.contains("no answer within"), "{}", r.detail);
}
