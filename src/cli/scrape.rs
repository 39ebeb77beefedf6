//! `kafka-healing scrape`: scrape and probe every target once, and show each condition's
//! current result. Nothing is remediated.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::engine::Setup;
use crate::ingest::kafka_watch::KafkaWatch;
use crate::ingest::kube_watch;
use crate::ingest::scrape::ScrapeResult;
use crate::ingest::store::{Labels, SeriesStore};
use crate::ingest::watch::{ConditionResult, Observation, evaluate, observe};
use crate::promql::KeepSet;

fn series_text(labels: &Labels, v: f64) -> String {
    let name = labels.get("__name__").cloned().unwrap_or_default();
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", v.escape_debug()))
        .collect();
    format!("{name}{{{}}} {v}", rest.join(", "))
}

/// One round's observations and conditions, with what `serve` would keep of the exporters'
/// series.
struct Round {
    obs: Vec<Observation>,
    results: Vec<(String, ConditionResult)>,
    keep: KeepSet,
    /// Exporter series kept, of all exporter series, over every scrape.
    kept: usize,
    all: usize,
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
    let round = rt.block_on(round(&setup));
    if json_out {
        print_json(&round);
    } else {
        print_text(&round);
    }
    ExitCode::SUCCESS
}

/// Observes every target once (sorted by node, then method) and evaluates the conditions.
async fn round(setup: &Setup) -> Round {
    let store = Mutex::new(SeriesStore::new(15 * 60 * 1000, 200_000));
    let client = reqwest::Client::new();
    let kafka = KafkaWatch::new();
    let mut obs = observe(setup, &client, &kafka, &store).await;
    obs.sort_by_key(|o| match o {
        Observation::Scrape(s) => (s.node_id.clone(), "jmx".to_string()),
        Observation::Probe(p) => (p.node_id.clone(), p.method.to_string()),
        Observation::Cluster(c) => ("~cluster".to_string(), c.method.to_string()),
        Observation::Pod(p) => (p.node_id.clone(), kube_watch::METHOD.to_string()),
    });
    let results = evaluate(setup, &store, now_ms());
    // What `serve` would keep of the exporters' series (health series are always kept).
    let keep = KeepSet::of_rules(&setup.rules);
    let (kept, all) = obs
        .iter()
        .filter_map(|o| match o {
            Observation::Scrape(s) => Some(kept_of(&keep, s)),
            _ => None,
        })
        .fold((0, 0), |(k, a), (k2, a2)| (k + k2, a + a2));
    Round {
        obs,
        results,
        keep,
        kept,
        all,
    }
}

/// (kept, all) of scrape `s`'s exporter series: its last three are health series.
fn kept_of(keep: &KeepSet, s: &ScrapeResult) -> (usize, usize) {
    let exporter = s.samples.len().saturating_sub(3);
    let kept = s.samples[..exporter]
        .iter()
        .filter(|(l, _)| keep.keeps_labels(l))
        .count();
    (kept, exporter)
}

/// `--json`: one document with the targets, the conditions and the kept series.
fn print_json(r: &Round) {
    let targets: Vec<_> = r.obs.iter().map(|o| target_json(&r.keep, o)).collect();
    let conditions: Vec<_> = r
        .results
        .iter()
        .map(|(rule, res)| match res {
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
            "kept": { "series": r.kept, "of": r.all, "read": r.keep.to_string() } })
    );
}

/// One observation as a `targets` entry.
fn target_json(keep: &KeepSet, o: &Observation) -> Value {
    match o {
        Observation::Scrape(s) => json!({
            "node_id": s.node_id, "method": "jmx", "up": s.up, "url": s.url,
            "duration_seconds": s.duration.as_secs_f64(),
            "samples": s.samples.len().saturating_sub(3), "kept": kept_of(keep, s).0, "error": s.error,
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
    }
}

/// The human-readable report: targets, the kept series, conditions.
fn print_text(r: &Round) {
    println!("targets:");
    for o in &r.obs {
        print_target(&r.keep, o);
    }
    if r.obs.is_empty() {
        println!("  (no targets: check cluster and monitoring.methods)");
    }
    let (kept, all, keep) = (r.kept, r.all, &r.keep);
    println!(
        "kept {kept} of {all} exporter series (the conditions read: {keep}); up, scrape, probe and Kafka-protocol series are always kept"
    );
    print_conditions(&r.results);
}

/// One observation's line, and its series where they help.
fn print_target(keep: &KeepSet, o: &Observation) {
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
                    kept_of(keep, s).0,
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

/// Each condition: no series, the series that would fire, or its error.
fn print_conditions(results: &[(String, ConditionResult)]) {
    println!("conditions:");
    for (rule, r) in results {
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
}
