//! `kafka-healing scrape`: scrape and probe every target once, and show each condition's
//! current result. Nothing is remediated.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use serde_json::json;

use crate::clock::now_ms;
use crate::ingest::kafka_watch::KafkaWatch;
use crate::ingest::kube_watch;
use crate::ingest::store::SeriesStore;
use crate::ingest::watch::{Observation, evaluate, observe};
use crate::promql::KeepSet;

fn series_text(labels: &crate::ingest::store::Labels, v: f64) -> String {
    let name = labels.get("__name__").cloned().unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", v.escape_debug()))
        .collect();
    format!("{name}{{{}}} {v}", rest.join(", "))
}

pub(super) fn run(path: &[PathBuf], json_out: bool) -> ExitCode {
    let setup = match super::load_setup(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store = Mutex::new(SeriesStore::new(15 * 60 * 1000, 200_000));
    let client = reqwest::Client::new();
    let kafka = KafkaWatch::new();
    let mut obs = rt.block_on(observe(&setup, &client, &kafka, &store));
    obs.sort_by_key(|o| match o {
        Observation::Scrape(s) => (s.node_id.clone(), "jmx".to_string()),
        Observation::Probe(p) => (p.node_id.clone(), p.method.to_string()),
        Observation::Cluster(c) => ("~cluster".to_string(), c.method.to_string()),
        Observation::Pod(p) => (p.node_id.clone(), kube_watch::METHOD.to_string()),
    });
    let results = evaluate(&setup, &store, now_ms());
    // What `serve` would keep of the exporters' series (health series are always kept).
    let keep = KeepSet::of_rules(&setup.rules);
    let kept_of = |s: &crate::ingest::scrape::ScrapeResult| {
        let exporter = s.samples.len().saturating_sub(3);
        let kept = s.samples[..exporter]
            .iter()
            .filter(|(l, _)| keep.keeps_labels(l))
            .count();
        (kept, exporter)
    };
    let (kept, all) = obs
        .iter()
        .filter_map(|o| match o {
            Observation::Scrape(s) => Some(kept_of(s)),
            _ => None,
        })
        .fold((0, 0), |(k, a), (k2, a2)| (k + k2, a + a2));
    if json_out {
        let targets: Vec<_> = obs
            .iter()
            .map(|o| match o {
                Observation::Scrape(s) => json!({
                    "node_id": s.node_id, "method": "jmx", "up": s.up, "url": s.url,
                    "duration_seconds": s.duration.as_secs_f64(),
                    "samples": s.samples.len().saturating_sub(3), "kept": kept_of(s).0, "error": s.error,
                }),
                Observation::Probe(p) => json!({
                    "node_id": p.node_id, "method": p.method, "up": p.success,
                    "duration_seconds": p.duration.as_secs_f64(), "detail": p.detail,
                    "series": p.facts.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
                }),
                Observation::Cluster(c) => json!({
                    "node_id": "cluster", "method": c.method,
                    "duration_seconds": c.duration.as_secs_f64(), "detail": c.detail,
                    "series": c.samples.iter().map(|(l, v)| json!({"labels": l, "value": v})).collect::<Vec<_>>(),
                }),
                Observation::Pod(p) => json!({
                    "node_id": p.node_id, "method": kube_watch::METHOD, "up": p.answered(),
                    "duration_seconds": p.duration.as_secs_f64(), "detail": p.detail(),
                    "series": p.series().iter().map(|(l, v)| json!({"labels": l, "value": v})).collect::<Vec<_>>(),
                }),
            })
            .collect();
        let conditions: Vec<_> = results
            .iter()
            .map(|(rule, r)| match r {
                Ok(series) => json!({
                    "rule": rule,
                    "series": series.iter().map(|(l, v)| json!({"labels": l, "value": v})).collect::<Vec<_>>(),
                }),
                Err(e) => json!({ "rule": rule, "error": e }),
            })
            .collect();
        println!(
            "{}",
            json!({ "targets": targets, "conditions": conditions,
                "kept": { "series": kept, "of": all, "read": keep.to_string() } })
        );
        return ExitCode::SUCCESS;
    }
    println!("targets:");
    for o in &obs {
        match o {
            Observation::Scrape(s) => println!(
                "  {:<10} jmx        {:<4} {:>7.1} ms  {}",
                s.node_id,
                if s.up { "up" } else { "DOWN" },
                s.duration.as_secs_f64() * 1000.0,
                match &s.error {
                    None => format!(
                        "{} samples ({} kept) from {}",
                        s.samples.len().saturating_sub(3),
                        kept_of(s).0,
                        s.url
                    ),
                    Some(e) => format!("{}: {e}", s.url),
                }
            ),
            Observation::Probe(p) => {
                println!(
                    "  {:<10} {:<10} {:<4} {:>7.1} ms  {}",
                    p.node_id,
                    p.method,
                    if p.success { "up" } else { "DOWN" },
                    p.duration.as_secs_f64() * 1000.0,
                    p.detail
                );
                if p.method == crate::ingest::kafka_watch::names::METHOD {
                    for (l, v) in p.series() {
                        println!("    {}", series_text(&l, v));
                    }
                }
            }
            Observation::Cluster(c) => {
                println!(
                    "  {:<10} {:<10} {:<4} {:>7.1} ms  {}",
                    "cluster",
                    c.method,
                    "",
                    c.duration.as_secs_f64() * 1000.0,
                    c.detail
                );
                for (l, v) in &c.samples {
                    println!("    {}", series_text(l, *v));
                }
            }
            Observation::Pod(p) => {
                // No answer is unknown, not down.
                println!(
                    "  {:<10} {:<10} {:<4} {:>7.1} ms  {}",
                    p.node_id,
                    kube_watch::METHOD,
                    if p.answered() { "up" } else { "?" },
                    p.duration.as_secs_f64() * 1000.0,
                    p.detail()
                );
                for (l, v) in p.series() {
                    println!("    {}", series_text(&l, v));
                }
            }
        }
    }
    if obs.is_empty() {
        println!("  (no targets: check cluster and monitoring.methods)");
    }
    println!(
        "kept {kept} of {all} exporter series (the conditions read: {keep}); up, scrape, probe and Kafka-protocol series are always kept"
    );
    println!("conditions:");
    for (rule, r) in &results {
        match r {
            Ok(series) if series.is_empty() => println!("  {rule}: no series (would not fire)"),
            Ok(series) => {
                println!("  {rule}: {} series (would fire after `for`)", series.len());
                for (l, v) in series {
                    println!("    {}", series_text(l, *v));
                }
            }
            Err(e) => println!("  {rule}: error: {e}"),
        }
    }
    if results.is_empty() {
        println!("  (no rule has a condition)");
    }
    ExitCode::SUCCESS
}
