//! Issue 16's fleet scenario through the real `serve`: 300 brokers on loopback, each
//! exporter serving the ~2,100-sample JMX body, methods `jmx` and `socket`, one rule
//! `broker-down` (`up{job="kafka"} == 0`) under `dry_run`. The store holds only the kept
//! series (the condition reads `up` alone, so no exporter series), and once every exporter
//! stops, every broker is detected.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::harness::*;
use crate::common::Scratch;

const BROKERS: usize = 300;

/// One exporter: answers every request with `body` and closes the connection (no
/// keep-alive, so stopping the accept loop stops the exporter at once).
async fn serve_exporter(l: TcpListener, body: Arc<Vec<u8>>) {
    loop {
        let Ok((mut sock, _)) = l.accept().await else {
            continue;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            // Bounded: one request head of at most 64 KiB, or 5 s.
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 65536 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if head != Ok(true) {
                return; // the socket probe: connect and close
            }
            let h = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(h.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// `n` exporters serving the ~2,100-sample test JMX body on loopback, named by `name`; the
/// `kafka_brokers` entries (metrics URL and socket on the same port) for a config.
async fn exporters(
    n: usize,
    name: impl Fn(usize) -> String,
) -> (Vec<tokio::task::JoinHandle<()>>, String) {
    let body = Arc::new(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/expo/jmx_kafka.prom"
        ))
        .unwrap(),
    );
    let mut set = Vec::new();
    let mut brokers = String::new();
    for i in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        brokers.push_str(&format!(
            "    - {{ node_id: {}, host: 127.0.0.1, port: {port}, metrics_url: 'http://127.0.0.1:{port}/metrics' }}\n",
            name(i)
        ));
        set.push(tokio::spawn(serve_exporter(l, body.clone())));
    }
    (set, brokers)
}

fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The brokers with a journaled firing self alert of `broker-down`.
fn detected(db: &std::path::Path) -> BTreeSet<String> {
    self_alerted(db, "broker-down")
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hundred_brokers_all_detected_and_only_kept_series_stored() {
    let (exporters, brokers) = exporters(BROKERS, |i| format!("b{i:03}")).await;
    let s = Scratch::new();
    let cfg = format!(
        "cluster:\n  name: fleet\n  kafka_brokers:\n{brokers}monitoring: {{ interval_seconds: 5, timeout_seconds: 3, methods: [jmx, socket] }}\nserver:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\nrules: [rules.yaml]\nstate: {{ path: state/journal.db }}\nrecovery: {{ dry_run: true, cooldown_seconds: 0 }}\n"
    );
    let rules = r#"rules:
  - name: broker-down
    matchers: ['alertname="broker-down"']
    condition:
      expr: up{job="kafka"} == 0
      for: 5s
    runbook: restart
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["/bin/true", "{{target.node_id}}"]
"#;
    let srv = Server::start(&s, &cfg, rules);
    let pid = srv.child.id();
    // Every target seen up (in some round: on a loaded machine a 3 s scrape can time out,
    // which is not what this test is about); then the store holds health series only.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen_up = BTreeSet::new();
    let m = loop {
        let m = srv.metrics().await;
        seen_up.extend(
            m.lines()
                .filter(|l| l.starts_with("kafka_healing_target_up{") && l.ends_with(" 1"))
                .map(|l| l.split(' ').next().unwrap_or_default().to_string()),
        );
        if seen_up.len() == 2 * BROKERS {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} targets seen up:\n{m}",
            seen_up.len(),
            2 * BROKERS
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let held = gauge(&m, "kafka_healing_series_in_memory").unwrap();
    let reserved = gauge(&m, "kafka_healing_series_reserved_in_memory").unwrap();
    // Per broker: up, scrape_duration_seconds, scrape_samples_scraped, and the socket
    // probe's success, duration and refused; not one of the 2,101 exporter samples.
    assert_eq!(held, (BROKERS * 6) as f64, "{m}");
    assert_eq!(reserved, held, "{m}");
    assert_eq!(gauge(&m, "kafka_healing_series_dropped"), Some(0.0), "{m}");
    let rss_up = rss_kib(pid);
    // Every exporter (and so every socket) stops.
    for h in &exporters {
        h.abort();
    }
    for h in exporters {
        let _ = h.await;
    }
    let t0 = Instant::now();
    let db = s.path().join("state/journal.db");
    let deadline = t0 + Duration::from_secs(60);
    let found = loop {
        let found = detected(&db);
        if found.len() == BROKERS {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {BROKERS} detected; log:\n{}",
            found.len(),
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let expected: BTreeSet<String> = (0..BROKERS).map(|i| format!("b{i:03}")).collect();
    assert_eq!(found, expected);
    let m = srv.metrics().await;
    eprintln!(
        "fleet: {BROKERS} of {BROKERS} detected in {:.1} s; store {held} series; RSS {} KiB up, {} KiB after",
        t0.elapsed().as_secs_f64(),
        rss_up,
        rss_kib(pid)
    );
    assert_eq!(gauge(&m, "kafka_healing_series_dropped"), Some(0.0), "{m}");
}

/// The store full, through the real `serve`: six brokers whose exporters serve the
/// 2,101-sample body, a condition that reads every exporter series (`{job="kafka"}`), and
/// `monitoring.max_series: 1000`. Series beyond the cap are dropped; `/-/ready` names the
/// brokers, `/metrics` counts the drops by target, one escalation mail (through the real
/// SMTP server) names the brokers, once per outage however many rounds drop; and the
/// reserved health budget still sees a broker die.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_store_is_said_on_ready_in_metrics_and_in_one_escalation_mail() {
    const N: usize = 6;
    let (exporters, brokers) = exporters(N, |i| format!("b{i}")).await;
    let s = Scratch::new();
    let smtp = crate::mailbox::SmtpServer::start(s.path(), &[]);
    let cfg = format!(
        "cluster:\n  name: fleet\n  kafka_brokers:\n{brokers}monitoring: {{ interval_seconds: 5, timeout_seconds: 3, methods: [jmx, socket], max_series: 1000 }}\nserver:\n  listen: 127.0.0.1:0\n  auth: {{ bearer_token: {TOKEN} }}\nrules: [rules.yaml]\nstate: {{ path: state/journal.db }}\nrecovery: {{ dry_run: true, cooldown_seconds: 0 }}\nnotifications:\n  rate_limit_seconds: 0\n  smtp: {{ host: 127.0.0.1, port: {}, tls: none, from_email: kh@example.com, to_emails: [oncall@example.com], timeout_seconds: 5 }}\n  escalation: {{ to_emails: [boss@example.com] }}\n",
        smtp.port
    );
    let rules = r#"rules:
  - name: broker-down
    matchers: ['alertname="broker-down"']
    condition:
      expr: up{job="kafka"} == 0
      for: 5s
    runbook: restart
  - name: everything
    matchers: ['alertname="everything"']
    condition:
      expr: count({job="kafka"}) < 0
    runbook: restart
runbooks:
  restart:
    steps:
      - name: restart
        exec: ["/bin/true", "{{target.node_id}}"]
"#;
    let srv = Server::start(&s, &cfg, rules);
    let ready = || async {
        let r = reqwest::get(format!("{}/-/ready", srv.url)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let text = loop {
        let (code, text) = ready().await;
        assert_eq!(code, 200, "still ready: intake and healing work");
        if text.contains("series store full") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "never full: {text}\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // 6 × 2,101 exporter series against a cap of 1,000: at least 5 brokers lose series.
    let named = (0..N)
        .filter(|i| text.contains(&format!("scrape/b{i}")))
        .count();
    assert!(named >= N - 1, "{text}");
    let m = srv.metrics().await;
    let held = gauge(&m, "kafka_healing_series_in_memory").unwrap();
    let reserved = gauge(&m, "kafka_healing_series_reserved_in_memory").unwrap();
    assert_eq!(
        held - reserved,
        1000.0,
        "the exporter cap is full, not passed: {m}"
    );
    assert_eq!(
        reserved,
        (N * 6) as f64,
        "every target's health is held: {m}"
    );
    let by_target: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("kafka_healing_series_dropped_by_target_total{target=\"scrape/b"))
        .collect();
    assert!(by_target.len() >= N - 1, "{m}");
    // One escalation mail for the outage, naming the brokers, however many rounds drop.
    let deadline = Instant::now() + Duration::from_secs(30);
    let esc = loop {
        let esc: Vec<(Vec<String>, String)> = smtp
            .envelopes()
            .into_iter()
            .filter(|(to, _)| to == &vec!["boss@example.com".to_string()])
            .collect();
        if !esc.is_empty() {
            break esc;
        }
        assert!(Instant::now() < deadline, "no escalation\n{}", srv.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        esc[0].1.contains("ESCALATION fleet: series of") && esc[0].1.contains("broker(s) dropped"),
        "{esc:?}"
    );
    let mails = smtp.received();
    let body = mails
        .iter()
        .map(|(eml, _)| eml.clone())
        .find(|eml| eml.contains("Brokers whose series were dropped"))
        .expect("escalation text");
    let listed = (0..N).filter(|i| body.contains(&format!("b{i}"))).count();
    assert!(listed >= N - 1, "{body}");
    // Two more rounds drop again: still one mail; the log said it once.
    let rounds =
        |m: &str| gauge(m, "kafka_healing_watch_round_duration_seconds_count").unwrap_or(0.0);
    let r0 = rounds(&srv.metrics().await);
    let deadline = Instant::now() + Duration::from_secs(30);
    while rounds(&srv.metrics().await) < r0 + 2.0 {
        assert!(Instant::now() < deadline, "rounds stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let to_boss = smtp
        .envelopes()
        .iter()
        .filter(|(to, _)| to == &vec!["boss@example.com".to_string()])
        .count();
    assert_eq!(to_boss, 1, "{:?}", smtp.envelopes());
    assert_eq!(
        srv.log()
            .matches("the in-memory series store is full")
            .count(),
        1,
        "{}",
        srv.log()
    );
    // The reserved budget: a broker whose exporter dies is still detected.
    exporters[3].abort();
    let db = s.path().join("state/journal.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !detected(&db).contains("b3") {
        assert!(Instant::now() < deadline, "b3 not detected\n{}", srv.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(detected(&db), BTreeSet::from(["b3".to_string()]));
}
