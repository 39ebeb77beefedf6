//! The exposition parser against `prometheus-parse`, on the same bodies: a small (~2 KB)
//! scrape, the JMX-exporter fixture (~200 KB) and a ~20 MB body (the fixture 100 times).
//! Throughput is in bytes of body, so criterion prints MB/s.
//!
//! `cargo bench --bench expo -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafka_healing::expo::{parse, parse_into};

#[path = "support/bodies.rs"]
mod bodies;
use bodies::{JMX, small};

/// How `prometheus-parse` is fed: an iterator of owned lines.
fn prometheus_parse(body: &str) -> usize {
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines)
        .map(|s| s.samples.len())
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let bodies = [
        ("small_2k", small()),
        ("jmx_200k", JMX.to_string()),
        ("big_20m", JMX.repeat(100)),
    ];
    for (name, body) in &bodies {
        let mut group = c.benchmark_group(format!("expo/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        if body.len() > 1_000_000 {
            group.sample_size(10);
        }
        group.bench_function("ours_parse", |b| {
            b.iter(|| parse(black_box(body)).map(|v| v.len()).unwrap_or(0))
        });
        let mut out = Vec::new();
        group.bench_function("ours_parse_into_reused", |b| {
            b.iter(|| {
                out.clear();
                let _ = parse_into(black_box(body), &mut out);
                out.len()
            })
        });
        group.bench_function("prometheus_parse", |b| {
            b.iter(|| prometheus_parse(black_box(body)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
