//! Decision cost in a storm of distinct alerts (each its own work key: a non-disruptive
//! rule with a per-alert param, as `benches/run`'s phase d posts them).
//!
//! - `core_alert`: `Core::alert` alone (plan, admission, effects), with the queue full, so
//!   each alert becomes a `skipped` decision: the path a storm takes;
//! - `round_1000`: what one runner round costs for 1,000 such alerts: the core's effects
//!   turned into journal writes and committed in one transaction (a real SQLite journal
//!   with `synchronous=FULL`, fsync included);
//! - `plan_alert`: the planning part alone, for comparison.
//!
//! `cargo bench --bench decide -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kafka_healing::alert::{Alert, AlertStatus, fingerprint};
use kafka_healing::engine::Setup;
use kafka_healing::engine::decide::Core;
use kafka_healing::engine::plan_alert;
use kafka_healing::journal::Journal;

const CONFIG: &str = "cluster:
  name: prod-east
  kafka_brokers:
    - { node_id: kafka-1, host: kafka-1.example.com, port: 9092, jmx_port: 9404 }
    - { node_id: kafka-2, host: kafka-2.example.com, port: 9092, jmx_port: 9404 }
    - { node_id: kafka-3, host: kafka-3.example.com, port: 9092, jmx_port: 9404 }
rules: [rules.yaml]
state: { path: state/journal.db }
recovery: { cooldown_seconds: 0, max_attempts: 10 }
monitoring: { methods: [] }
";

const RULES: &str = r#"rules:
  - name: bench-true
    matchers: ['alertname="KafkaBenchTrue"']
    runbook: bin-true
    params:
      id: { value: "{{alert.labels.bench_id}}", pattern: "[0-9]{1,12}" }
runbooks:
  bin-true:
    disruptive: false
    steps:
      - { name: "true", exec: ["/bin/true"] }
"#;

fn alert(id: u64) -> Alert {
    let node = id % 3 + 1;
    let labels: kafka_healing::alert::LabelSet = [
        ("alertname", "KafkaBenchTrue".to_string()),
        ("bench_id", id.to_string()),
        ("cluster", "prod-east".into()),
        ("instance", format!("kafka-{node}.example.com:9404")),
        ("job", "kafka".into()),
        ("severity", "warning".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Alert {
        status: AlertStatus::Firing,
        fingerprint: fingerprint(&labels),
        labels,
        annotations: [("summary".to_string(), format!("benchmark storm {id}"))].into(),
        starts_at: "2026-11-27T23:33:11Z".into(),
        ends_at: "0001-01-01T00:00:00Z".into(),
        generator_url: "http://prometheus.example.com:9090/graph?g0.expr=bench".into(),
        external_url: "http://vm:9393".into(),
    }
}

/// A core whose queue is full (1,000 queued, 8 running), as in the middle of a storm.
fn storm_core(setup: &Arc<Setup>) -> (Core, u64) {
    let mut core = Core::new(setup.clone(), 0, None);
    let mut id = 0;
    while core.queued() < 1000 {
        id += 1;
        core.alert(0, id as i64, alert(id));
        core.tick(0);
    }
    (core, id)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    std::fs::write(dir.path().join("config.yaml"), CONFIG).expect("config");
    std::fs::write(dir.path().join("rules.yaml"), RULES).expect("rules");
    let setup = Arc::new(Setup::load(&dir.path().join("config.yaml")).expect("setup loads"));
    let mut group = c.benchmark_group("decide");

    group.throughput(Throughput::Elements(1));
    let a = alert(7);
    group.bench_function("plan_alert", |b| {
        b.iter(|| plan_alert(&setup.loaded.config, &setup.rules, black_box(&a)).len())
    });
    let (mut core, mut next) = storm_core(&setup);
    group.bench_function("core_alert", |b| {
        b.iter_batched(
            || {
                next += 1;
                (next as i64, alert(next))
            },
            |(id, a)| core.alert(0, id, a).len(),
            BatchSize::SmallInput,
        )
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (journal, _) = Journal::open(&dir.path().join("journal.db")).expect("journal");
    let (mut core, mut next) = storm_core(&setup);
    // The alerts exist in the journal, so `decided` updates touch real rows.
    let rows: Vec<_> = (1..=200_000u64)
        .map(|i| kafka_healing::journal::NewAlert::of(&alert(i), 0, "webhook", "r", "{}"))
        .collect();
    for chunk in rows.chunks(10_000) {
        rt.block_on(journal.record_alerts(chunk.to_vec()))
            .expect("alerts");
    }
    group.throughput(Throughput::Elements(1000));
    group.sample_size(20);
    group.bench_function("round_1000", |b| {
        b.iter(|| {
            let mut ops = Vec::new();
            for _ in 0..1000 {
                next += 1;
                for e in core.alert(0, next as i64, alert(next)) {
                    if let Ok(op) = e.into_write() {
                        if std::env::var("NO_DECIDED").is_ok()
                            && matches!(op, kafka_healing::journal::WriteOp::Decided(_))
                        {
                            continue;
                        }
                        ops.push(op);
                    }
                }
            }
            let n = ops.len();
            rt.block_on(journal.write(ops)).expect("commit");
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
