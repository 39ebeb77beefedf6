//! Self-watch rounds at scale, against real loopback servers: 40 exporters that accept and
//! never answer and one that answers a byte every 100 ms delay none of the healthy ones
//! (all run at once, each bounded by its timeout); with the checks limited to one at a
//! time, those still queued at the round's deadline are missed, stored as nothing, and
//! counted.

use std::sync::Arc;
use std::time::Duration;

use kafka_healing::clock::now_ms;
use kafka_healing::engine::{Engine, Setup};
use kafka_healing::ingest::watch::Watcher;
use kafka_healing::journal::Journal;
use kafka_healing::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::Scratch;

const BODY: &str = "# TYPE kafka_server_replicamanager_underreplicatedpartitions gauge\n\
kafka_server_replicamanager_underreplicatedpartitions 2\n";

#[derive(Clone, Copy)]
enum Kind {
    Healthy,
    /// Accepts, reads the request, never answers (the socket stays open).
    Hang,
    /// Answers one byte every 100 ms: about 10 s for the whole response.
    Trickle,
}

async fn server(kind: Kind) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                match kind {
                    Kind::Healthy => {
                        let _ = s.write_all(resp.as_bytes()).await;
                    }
                    Kind::Hang => {
                        // Bounded: longer than any round here.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Kind::Trickle => {
                        for b in resp.as_bytes() {
                            if s.write_all(&[*b]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// A watcher over brokers `ports` (node_id 1, 2, … in order) with `jmx` only.
async fn watcher(
    s: &Scratch,
    ports: &[u16],
    timeout_s: u64,
    limit: Option<usize>,
) -> (Watcher, Arc<Metrics>) {
    let brokers: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "    - {{ node_id: {}, host: 127.0.0.1, port: 9, metrics_url: \"http://127.0.0.1:{p}/metrics\" }}\n",
                i + 1
            )
        })
        .collect();
    s.write(
        "rules/r.yaml",
        "rules:\n  - name: down\n    condition:\n      expr: up == 0\n      for: 20s\n      alertname: Down\n    runbook: noop\n\
         \x20 - name: urp\n    condition:\n      expr: kafka_server_replicamanager_underreplicatedpartitions > 5\n      for: 20s\n      alertname: Urp\n    runbook: noop\n\
         runbooks:\n  noop:\n    steps:\n      - name: noop\n        exec: [\"true\"]\n",
    );
    let cfg = s.write(
        "config.yaml",
        &format!(
            "cluster:\n  name: test\n  kafka_brokers:\n{brokers}\
             monitoring: {{ interval_seconds: 5, timeout_seconds: {timeout_s}, methods: [jmx] }}\n\
             rules:\n  - rules/*.yaml\n"
        ),
    );
    let setup = Setup::load(&cfg).expect("valid config");
    let (journal, _) = Journal::open(&s.path().join("journal.db")).expect("journal");
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::start(journal.clone(), Arc::new(setup), metrics.clone());
    let w = Watcher::new(
        journal,
        engine.setup.clone(),
        engine.alerts.clone(),
        metrics.clone(),
        Duration::from_secs(15 * 60),
    )
    .with_concurrency_limit(limit);
    (w, metrics)
}

/// The value of an unlabelled metric on `/metrics`.
fn metric(m: &Metrics, name: &str) -> f64 {
    let text = m.encode();
    let prefix = format!("kafka_healing_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// `expr` in the watcher's store: node_id → value.
fn values(w: &Watcher, expr: &str) -> Vec<(String, f64)> {
    let store = w.store.lock().unwrap();
    let mut v: Vec<(String, f64)> = kafka_healing::promql::eval(expr, &store, now_ms())
        .unwrap()
        .into_series()
        .into_iter()
        .map(|(l, v)| (l.get("node_id").cloned().unwrap_or_default(), v))
        .collect();
    v.sort_by(|a, b| {
        a.0.parse::<u32>()
            .unwrap()
            .cmp(&b.0.parse::<u32>().unwrap())
    });
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_and_trickling_exporters_delay_no_healthy_one() {
    let s = Scratch::new();
    // 40 hung first, then the trickling one, then 3 healthy ones: a queue of 8 at a time
    // (the old bound) would reach the healthy ones only after 5 waves of the 1 s timeout,
    // past the 5 s round.
    let mut ports = Vec::new();
    for _ in 0..40 {
        ports.push(server(Kind::Hang).await);
    }
    ports.push(server(Kind::Trickle).await);
    for _ in 0..3 {
        ports.push(server(Kind::Healthy).await);
    }
    let (mut w, m) = watcher(&s, &ports, 1, None).await;
    w.round().await;

    let up = values(&w, "up");
    assert_eq!(up.len(), 44, "every check reported: {up:?}");
    for (node, v) in &up {
        let n: usize = node.parse().unwrap();
        let want = if n >= 42 { 1.0 } else { 0.0 };
        assert_eq!(*v, want, "up of broker {node}");
    }
    // The healthy ones' own samples arrived within the round.
    assert_eq!(
        values(&w, "kafka_server_replicamanager_underreplicatedpartitions"),
        [
            ("42".to_string(), 2.0),
            ("43".to_string(), 2.0),
            ("44".to_string(), 2.0)
        ]
    );
    assert_eq!(metric(&m, "watch_round_missed_targets"), 0.0);
    assert_eq!(metric(&m, "watch_missed_targets_total"), 0.0);
    assert_eq!(metric(&m, "watch_round_targets"), 44.0);
    // 44 checks, under the floor of 64: all at once.
    assert_eq!(metric(&m, "watch_concurrency"), 44.0);
    // The hung ones took their whole timeout (a lower bound; no upper one is asserted).
    let took = metric(&m, "watch_round_last_duration_milliseconds");
    assert!(took >= 1000.0, "round took {took} ms");
    assert_eq!(metric(&m, "watch_round_duration_seconds_count"), 1.0);
    // Retention from the one condition: 20 s of `for` plus the 5-minute lookback.
    assert_eq!(metric(&m, "series_retention_seconds"), 320.0);
    assert_eq!(w.store.lock().unwrap().retention_ms(), 320_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_still_queued_at_the_deadline_are_missed_and_counted() {
    let s = Scratch::new();
    let ports = [
        server(Kind::Hang).await,
        server(Kind::Hang).await,
        server(Kind::Healthy).await,
    ];
    // One check at a time, 2 s timeout, a 3 s round: broker 1 times out at 2 s, broker 2
    // is still waiting (until 4 s) at the deadline, broker 3 never started.
    let (mut w, m) = watcher(&s, &ports, 2, Some(1)).await;
    w.round_until(tokio::time::Instant::now() + Duration::from_secs(3))
        .await;
    // Which check takes the one permit first is up to the scheduler: a hung one times out
    // at 2 s (up 0) and the next may be the healthy one (up 1) or the other hung one; at
    // least one check is still waiting or queued at 3 s. Whatever finished is stored with
    // its true value, whatever did not is missed, nothing is both.
    let check = |w: &Watcher| {
        let up = values(w, "up");
        for (node, v) in &up {
            let want = if node == "3" { 1.0 } else { 0.0 };
            assert_eq!(*v, want, "up of broker {node}");
        }
        up.len()
    };
    let stored = check(&w);
    let missed = metric(&m, "watch_round_missed_targets");
    assert!((1.0..=2.0).contains(&missed), "missed {missed}");
    assert_eq!(stored as f64 + missed, 3.0, "each check stored or missed");
    assert_eq!(metric(&m, "watch_missed_targets_total"), missed);
    assert_eq!(metric(&m, "watch_round_targets"), 3.0);
    assert_eq!(metric(&m, "watch_concurrency"), 1.0);
    // A second round: the counter adds up, the gauge shows the last round only.
    w.round_until(tokio::time::Instant::now() + Duration::from_secs(3))
        .await;
    check(&w);
    let again = metric(&m, "watch_round_missed_targets");
    assert!((1.0..=2.0).contains(&again), "missed {again}");
    assert_eq!(metric(&m, "watch_missed_targets_total"), missed + again);
    assert_eq!(metric(&m, "watch_round_duration_seconds_count"), 2.0);
}
