//! Issue 15's adversarial suite: the service's preconditions (`requires:`) and
//! `wait_in_sync` against a real cluster, judged by the suite's own records, not the
//! service's.
//!
//! **Unsafe action**, as counted here (each scenario asserts 0):
//! - a restart (a line the restart wrapper `rig::WRAPPER` logs before it touches the
//!   broker) of a broker that answered ApiVersions in the watcher's last sample before the
//!   restart began (scenarios 1, 2, 4, 5, 7), or, in scenario 7, any restart while the
//!   stand-in exporter reported RECOVERY;
//! - a restart that began while a broker restarted earlier in the scenario was not yet
//!   registered and in the ISR of every partition it hosts (scenario 3). Evidence is the
//!   first watcher sample with Metadata taken after the restart began still showing that
//!   broker out of an ISR (ISR membership of a recovering broker only grows, so it was out
//!   at the start too). A rejoin within one sample period (~0.2–1 s) of the restart cannot
//!   be told apart and is not counted: never a false positive from timing.
//!
//! The watcher (`watcher.rs`) samples every broker with the crate's `KafkaClient` every
//! ~200 ms. One stack start runs the KRaft scenarios 1, 2, 4, 3 and 7 in order, restoring
//! the cluster between them; scenario 5 has its own single-node SASL_SSL KRaft broker;
//! scenario 6 (ZooKeeper mode: scenarios 1 and 3) one more stack. Each scenario prints
//! `MEASURE scenario=N start_ms=… end_ms=… unsafe=0` and more figures.

mod rig;
mod sasl;
mod scenarios;
mod standin;
mod watcher;

use rig::Rig;
use watcher::{Sample, at};

use crate::common::Scratch;

/// A scenario's record.
#[derive(Debug)]
pub(crate) struct Measure {
    /// Scenario number (as in the issue).
    pub(crate) scenario: &'static str,
    /// Start (ms since the epoch).
    pub(crate) start_ms: i64,
    /// End.
    pub(crate) end_ms: i64,
    /// Unsafe actions found, described.
    pub(crate) unsafe_actions: Vec<String>,
    /// More `key=value` figures for the MEASURE line.
    pub(crate) figures: Vec<(String, String)>,
}

impl Measure {
    /// A record starting now.
    pub(crate) fn start(scenario: &'static str) -> Measure {
        Measure {
            scenario,
            start_ms: kafka_healing::clock::now_ms(),
            end_ms: 0,
            unsafe_actions: Vec::new(),
            figures: Vec::new(),
        }
    }

    /// Adds a figure.
    pub(crate) fn figure(&mut self, k: &str, v: impl std::fmt::Display) {
        self.figures.push((k.to_string(), v.to_string()));
    }

    /// Ends the record: prints the MEASURE line, asserts no unsafe action.
    pub(crate) fn finish(mut self) {
        self.end_ms = kafka_healing::clock::now_ms();
        let more: String = self
            .figures
            .iter()
            .map(|(k, v)| format!(" {k}={v}"))
            .collect();
        eprintln!(
            "MEASURE scenario={} start_ms={} end_ms={} unsafe={}{more}",
            self.scenario,
            self.start_ms,
            self.end_ms,
            self.unsafe_actions.len()
        );
        assert!(
            self.unsafe_actions.is_empty(),
            "scenario {}: unsafe actions: {:#?}",
            self.scenario,
            self.unsafe_actions
        );
    }
}

/// Restarts (ms, node_id) whose target answered ApiVersions in the last sample before.
pub(crate) fn restarts_of_answering(
    rig: &Rig,
    restarts: &[(i64, String)],
    samples: &[Sample],
) -> Vec<String> {
    restarts
        .iter()
        .filter_map(|(t, name)| {
            let id = rig.node(name).id;
            let s = at(samples, *t)?;
            s.answering.contains(&id).then(|| {
                format!(
                    "restart of {name} at {t}: it answered ApiVersions in the sample of {}",
                    s.at_ms
                )
            })
        })
        .collect()
}

/// Restarts that began while a broker restarted earlier was not yet back in every ISR.
pub(crate) fn restarts_before_others_in_sync(
    rig: &Rig,
    restarts: &[(i64, String)],
    samples: &[Sample],
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (t, name)) in restarts.iter().enumerate() {
        for (tj, other) in &restarts[..i] {
            if other == name {
                continue;
            }
            let id = rig.node(other).id;
            let first_after = samples
                .iter()
                .find(|s| s.at_ms >= *t && s.under_min_isr.is_some());
            if let Some(s) = first_after
                && !s.in_sync.contains(&id)
            {
                out.push(format!(
                    "restart of {name} at {t} began while {other} (restarted at {tj}) was not \
                     back in every ISR (sample of {}: in sync {:?})",
                    s.at_ms, s.in_sync
                ));
            }
        }
    }
    out
}

/// A refused execution's reason from the precondition's name on: the service writes
/// "refused before step `restart`: restart_safe: …".
pub(crate) fn refusal(reason: &str) -> &str {
    match reason.strip_prefix("refused before step `") {
        Some(rest) => rest.split_once("`: ").map_or(rest, |(_, r)| r),
        None => reason,
    }
}

/// The first sample at or after `from_ms` in which broker `id` answers and is in every
/// ISR: its time.
pub(crate) fn back_at(samples: &[Sample], from_ms: i64, id: i32) -> Option<i64> {
    samples
        .iter()
        .find(|s| s.at_ms >= from_ms && s.back(id))
        .map(|s| s.at_ms)
}

/// The KRaft scenarios on one stack: 1 (both exporter faults), 2, 4, 3, 7.
#[tokio::test(flavor = "multi_thread")]
async fn safety_kraft_scenarios_on_one_stack() {
    let s = Scratch::new();
    let rig = Rig::up(&s.path().join("stack"), &[]).await;
    scenarios::exporter_unreachable(&rig, "1").await;
    rig.restore("after 1").await;
    scenarios::hung_broker(&rig).await;
    rig.restore("after 2").await;
    scenarios::refused_while_other_down(&rig).await;
    rig.restore("after 4").await;
    scenarios::two_killed(&rig, "3").await;
    rig.restore("after 3").await;
    scenarios::recovering_broker(&rig).await;
    rig.restore("after 7").await;
}

/// Scenario 6: scenarios 1 and 3 on a ZooKeeper-mode cluster (Kafka 3.9.1).
#[tokio::test(flavor = "multi_thread")]
async fn safety_zookeeper_mode_scenarios_1_and_3() {
    let s = Scratch::new();
    let rig = Rig::up(&s.path().join("stack"), &["--zookeeper"]).await;
    scenarios::exporter_unreachable(&rig, "6.1").await;
    rig.restore("after 6.1").await;
    scenarios::two_killed(&rig, "6.3").await;
    rig.restore("after 6.3").await;
}

/// For BENCHMARKS.md: scenario 1 ten times while busy loops load every core; 0 restarts.
/// Run by hand: `cargo test --locked --test it safety_exporter_under_load -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark (about 10 minutes): run by hand for BENCHMARKS.md"]
async fn safety_exporter_under_load() {
    let s = Scratch::new();
    let rig = Rig::up(&s.path().join("stack"), &[]).await;
    let load = scenarios::Load::start(std::time::Duration::from_secs(15 * 60));
    let t0 = kafka_healing::clock::now_ms();
    for i in 0..10 {
        scenarios::exporter_unreachable(&rig, "1-loaded").await;
        eprintln!("MEASURE scenario=1-loaded round={i} done");
        rig.restore("loaded round").await;
    }
    drop(load);
    let restarts = rig.restarts_since(t0);
    eprintln!(
        "MEASURE scenario=1-loaded rounds=10 restarts={} seconds={:.0}",
        restarts.len(),
        (kafka_healing::clock::now_ms() - t0) as f64 / 1000.0
    );
    assert!(restarts.is_empty(), "{restarts:?}");
}
