//! Rule matching cost as the rule set grows: one alert against 10, 100, 1,000 and 10,000
//! generated rules (`benches/support/rulegen.rs`: equality, `!=`, `=~` and `!~` matchers,
//! exactly one rule matches, and it is the last one).
//!
//! - `match_only`: `Rule::matches` over every rule, what the engine filters with;
//! - `plan_alert`: `engine::plan_alert`, the engine's entry point for one alert: the same
//!   filter, then the one matching rule planned (params and steps rendered).
//!
//! `cargo bench --bench rules -- --warm-up-time 1 --measurement-time 3`

#[path = "support/rulegen.rs"]
mod rulegen;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kafka_healing::engine::plan_alert;
use kafka_healing::ingest::Alert;

fn bench(c: &mut Criterion) {
    let alert: Alert =
        serde_json::from_value(rulegen::alert_json()).expect("the benchmark alert deserializes");
    let mut group = c.benchmark_group("rules");
    for n in [10usize, 100, 1_000, 10_000] {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let cfg_path = rulegen::write(dir.path(), n).expect("writing the generated rule set");
        let loaded = kafka_healing::config::load(&cfg_path).expect("the generated config loads");
        let (rules, diags) = kafka_healing::rules::load_rules(&loaded);
        assert!(
            !diags.has_errors(),
            "generated rules have errors: {diags:?}"
        );
        assert_eq!(rules.rules.len(), n);
        let matched = plan_alert(&loaded.config, &rules, &alert);
        assert_eq!(matched.len(), 1, "exactly one rule matches");
        group.bench_with_input(BenchmarkId::new("match_only", n), &n, |b, _| {
            b.iter(|| {
                rules
                    .rules
                    .iter()
                    .filter(|r| r.matches(black_box(&alert.labels)))
                    .count()
            })
        });
        group.bench_with_input(BenchmarkId::new("plan_alert", n), &n, |b, _| {
            b.iter(|| plan_alert(&loaded.config, &rules, black_box(&alert)).len())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
