//! Scraping against a real local HTTP server: plain, gzip and trickled (lines cut across
//! chunks) bodies, a slow endpoint, a
//! truncated body, HTTP 500, a malformed body and a closed port. A raw TCP server lets the
//! test send exactly the bytes a broken exporter would.

use std::io::Write;
use std::time::{Duration, Instant};

use kafka_healing::ingest::scrape::scrape;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::mailbox::free_port;

const BODY: &str = "# HELP kafka_server_replicamanager_underreplicatedpartitions Under-replicated\n\
# TYPE kafka_server_replicamanager_underreplicatedpartitions gauge\n\
kafka_server_replicamanager_underreplicatedpartitions 2.0\n\
kafka_log_log_size{topic=\"orders\",partition=\"0\",instance=\"exporter-own\"} 1024\n";

fn gzip(s: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(s.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// Serves each connection by the request path; returns the port.
async fn exporter() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let head = |len: usize, extra: &str| {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n"
                    )
                };
                let out: Vec<u8> = match path.as_str() {
                    "/plain" => [head(BODY.len(), "").into_bytes(), BODY.as_bytes().to_vec()].concat(),
                    "/gzip" => {
                        let z = gzip(BODY);
                        [head(z.len(), "Content-Encoding: gzip\r\n").into_bytes(), z].concat()
                    }
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        [head(BODY.len(), "").into_bytes(), BODY.as_bytes().to_vec()].concat()
                    }
                    "/trickle" => {
                        // Chunked transfer in 7-byte pieces: lines arrive cut anywhere.
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                            .await;
                        for piece in BODY.as_bytes().chunks(7) {
                            let mut c = format!("{:x}\r\n", piece.len()).into_bytes();
                            c.extend_from_slice(piece);
                            c.extend_from_slice(b"\r\n");
                            let _ = s.write_all(&c).await;
                            let _ = s.flush().await;
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        b"0\r\n\r\n".to_vec()
                    }
                    "/truncated" => [head(BODY.len() + 500, "").into_bytes(), BODY.as_bytes().to_vec()].concat(),
                    "/garbage" => {
                        let b = "metric{label=\"unterminated} 1\n";
                        [head(b.len(), "").into_bytes(), b.as_bytes().to_vec()].concat()
                    }
                    _ => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom".to_vec(),
                };
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

fn value(r: &kafka_healing::ingest::scrape::ScrapeResult, name: &str) -> Option<f64> {
    r.samples
        .iter()
        .find(|(l, _)| l["__name__"] == name)
        .map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_and_gzip_bodies_with_target_labels() {
    let port = exporter().await;
    let c = reqwest::Client::new();
    for path in ["plain", "gzip", "trickle"] {
        let url = format!("http://127.0.0.1:{port}/{path}");
        let r = scrape(&c, "kafka-1", &url, Duration::from_secs(2)).await;
        assert!(r.up, "{path}: {r:?}");
        assert_eq!(
            value(&r, "kafka_server_replicamanager_underreplicatedpartitions"),
            Some(2.0)
        );
        assert_eq!(value(&r, "up"), Some(1.0));
        assert_eq!(value(&r, "scrape_samples_scraped"), Some(2.0));
        let (labels, v) = r
            .samples
            .iter()
            .find(|(l, _)| l["__name__"] == "kafka_log_log_size")
            .unwrap();
        assert_eq!(*v, 1024.0);
        assert_eq!(labels["instance"], format!("127.0.0.1:{port}"));
        assert_eq!(
            labels["exported_instance"], "exporter-own",
            "the exporter's own label is kept aside"
        );
        assert_eq!(labels["node_id"], "kafka-1");
        assert_eq!(labels["job"], "kafka");
        assert_eq!(labels["topic"], "orders");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_down_with_a_reason() {
    let port = exporter().await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}/{p}");
    let t0 = Instant::now();
    let r = scrape(&c, "kafka-1", &url("slow"), Duration::from_millis(500)).await;
    assert!(!r.up);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "bounded by the timeout"
    );
    assert!(r.error.as_deref().unwrap().contains("within"), "{r:?}");
    assert_eq!(value(&r, "up"), Some(0.0));
    assert_eq!(r.samples.len(), 3, "only the synthesized series");
    for (p, want) in [
        ("truncated", "reading the body"),
        ("500", "HTTP 500"),
        ("garbage", "malformed exposition: line 1"),
    ] {
        let r = scrape(&c, "kafka-1", &url(p), Duration::from_secs(2)).await;
        assert!(!r.up, "{p}");
        assert!(
            r.error.as_deref().unwrap().contains(want),
            "{p}: {:?}",
            r.error
        );
        assert_eq!(value(&r, "scrape_samples_scraped"), Some(0.0));
    }
    let r = scrape(
        &c,
        "kafka-1",
        &format!("http://127.0.0.1:{}/metrics", free_port()),
        Duration::from_secs(2),
    )
    .await;
    assert!(!r.up);
    assert_eq!(value(&r, "up"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn scrape_command_shows_targets_and_conditions() {
    let port = exporter().await;
    let s = crate::common::Scratch::new();
    let closed = free_port();
    s.write(
        "c.yaml",
        &format!(
            "cluster:\n  name: t\n  kafka_brokers:\n    - {{ node_id: kafka-1, host: 127.0.0.1, port: {closed}, metrics_url: 'http://127.0.0.1:{port}/plain' }}\nmonitoring: {{ interval_seconds: 30, timeout_seconds: 2, methods: [jmx, socket] }}\nrules: [r.yaml]\n"
        ),
    );
    s.write(
        "r.yaml",
        "rules:\n  - name: urp\n    condition: { expr: 'kafka_server_replicamanager_underreplicatedpartitions > 1' }\n    runbook: rb\n  - name: quiet\n    condition: { expr: 'up == 0' }\n    runbook: rb\nrunbooks:\n  rb:\n    disruptive: false\n    steps: [{ name: s, exec: ['true'] }]\n",
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
    let v: serde_json::Value = serde_json::from_str(&crate::common::stdout(&out)).unwrap();
    let targets = v["targets"].as_array().unwrap();
    let jmx = targets.iter().find(|t| t["method"] == "jmx").unwrap();
    assert_eq!(
        (jmx["up"].clone(), jmx["samples"].clone()),
        (serde_json::json!(true), serde_json::json!(2))
    );
    // The conditions read the URP gauge and `up`: one of the two exporter series is kept.
    assert_eq!(jmx["kept"], 1, "{jmx}");
    assert_eq!(
        v["kept"],
        serde_json::json!({
            "series": 1, "of": 2,
            "read": "kafka_server_replicamanager_underreplicatedpartitions, up"
        })
    );
    let sock = targets.iter().find(|t| t["method"] == "socket").unwrap();
    assert_eq!(sock["up"], false, "nothing listens on the broker port");
    let urp = v["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "urp")
        .unwrap();
    assert_eq!(urp["series"][0]["value"], 2.0);
    assert_eq!(urp["series"][0]["labels"]["node_id"], "kafka-1");
    let quiet = v["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "quiet")
        .unwrap();
    assert_eq!(quiet["series"], serde_json::json!([]));
}
