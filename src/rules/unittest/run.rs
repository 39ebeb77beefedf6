//! Running tests: the simulated clock, the decision path, and the comparison.

use std::path::PathBuf;

use serde::Serialize;

use super::series::SeriesValue;
use super::spec::{ExpectedDecision, ExpectedPlan};
use super::{TestCase, TestFile};
use crate::engine::{Decision, Plan, plan_alert, plan_payload};
use crate::ingest::store::{LOOKBACK_DELTA_MS, Labels, SeriesStore, is_health, stale_marker};
use crate::ingest::{Alert, AlertStatus};
use crate::promql::{KeepSet, Query, format_labels};
use crate::rules::Rule;
use crate::rules::condition::ConditionStates;

/// A plan produced during a test, with what raised it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProducedPlan {
    /// Rule name.
    pub rule: String,
    /// Runbook name.
    pub runbook: String,
    /// Target node_id.
    pub target: Option<String>,
    /// The alert's status.
    pub status: AlertStatus,
    /// Run or skip.
    pub decision: Decision,
    /// Why.
    pub reason: String,
    /// Each step's argv.
    pub argv: Vec<Vec<String>>,
    /// The runbook's preconditions.
    pub requires: Vec<crate::rules::model::Precondition>,
    /// What raised the alert: a rule's condition or an injected payload, and the alert.
    pub source: String,
}

impl ProducedPlan {
    fn new(p: Plan, source: String) -> ProducedPlan {
        ProducedPlan {
            rule: p.rule,
            runbook: p.runbook,
            target: p.target,
            status: p.status,
            decision: p.decision,
            reason: p.reason,
            argv: p.steps.into_iter().map(|s| s.argv).collect(),
            requires: p.requires,
            source,
        }
    }
}

/// The plans at an expectation's time differ from the expected ones.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    /// When, ms.
    pub at_ms: i64,
    /// Line of the expectation.
    pub line: Option<usize>,
    /// The expected plans.
    pub expected: Vec<ExpectedPlan>,
    /// The plans produced.
    pub got: Vec<ProducedPlan>,
    /// Expected plans (indexes into `expected`) that no produced plan matched, each with
    /// the closest produced plan (index into `got`) when there is one.
    pub missing: Vec<(usize, Option<usize>)>,
    /// Produced plans (indexes into `got`) that no expected plan matched.
    pub unexpected: Vec<usize>,
}

/// Why a test failed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TestFailure {
    /// The plans at an expectation's time are not the expected ones.
    Mismatch(Mismatch),
    /// A rule's condition could not be evaluated (reported once per rule).
    Eval {
        /// When, ms.
        at_ms: i64,
        /// The rule.
        rule: String,
        /// The evaluation error.
        error: String,
    },
}

fn is_health_labels(l: &Labels) -> bool {
    l.get("__name__").is_some_and(|n| is_health(n))
}

/// The outcome of one test.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    /// Test name.
    pub name: String,
    /// Line of its definition.
    pub line: Option<usize>,
    /// Whether it passed.
    pub passed: bool,
    /// Its failures, in time order.
    pub failures: Vec<TestFailure>,
    /// Input series no condition reads: dropped, as `serve` drops them while scraping.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
}

/// The outcome of a test file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file.
    pub file: PathBuf,
    /// One report per test.
    pub tests: Vec<TestReport>,
}

impl FileReport {
    /// Number of failed tests.
    pub fn failed(&self) -> usize {
        self.tests.iter().filter(|t| !t.passed).count()
    }
}

impl TestFile {
    /// Runs every test.
    pub fn run(&self) -> FileReport {
        FileReport {
            file: self.path.clone(),
            tests: self.tests.iter().map(|t| self.run_test(t)).collect(),
        }
    }

    /// Runs one test.
    pub fn run_test(&self, t: &TestCase) -> TestReport {
        let step = self.evaluation_interval_ms.max(1);
        let conditions: Vec<(&Rule, Result<Query, String>)> = self
            .rules
            .rules
            .iter()
            .filter_map(|r| {
                let c = r.condition.as_ref()?;
                Some((r, Query::parse(&c.expr).map_err(|e| e.to_string())))
            })
            .collect();
        let retention = t
            .end_ms
            .saturating_add(LOOKBACK_DELTA_MS)
            .saturating_add(3_600_000);
        // The kept set of `serve`: a series no condition reads never reaches its store, so
        // it does not reach this one either (and the report names it).
        let keep = KeepSet::of_rules(&self.rules);
        let read: Vec<bool> = t
            .series
            .iter()
            .map(|s| keep.keeps_labels(&s.labels) || is_health_labels(&s.labels))
            .collect();
        let unread: Vec<String> = t
            .series
            .iter()
            .zip(&read)
            .filter(|(_, r)| !**r)
            .map(|(s, _)| format_labels(&s.labels))
            .collect();
        let mut replay = Replay {
            store: SeriesStore::new(retention, t.series.len().saturating_add(1)),
            next: vec![0usize; t.series.len()],
            states: ConditionStates::default(),
            failures: Vec::new(),
            eval_failed: Vec::new(),
        };
        let mut now = 0i64;
        while now <= t.end_ms {
            replay.feed(t, &read, now);
            let mut produced = replay.evaluate(self, &conditions, now);
            produced.extend(self.injected(t, now));
            if let Some(e) = t.expectations.iter().find(|e| e.at_ms == now)
                && let Some(m) = compare(&e.plans, produced)
            {
                replay.failures.push(TestFailure::Mismatch(Mismatch {
                    at_ms: now,
                    line: e.line,
                    ..m
                }));
            }
            now = now.saturating_add(step);
        }
        TestReport {
            name: t.name.clone(),
            line: t.line,
            passed: replay.failures.is_empty(),
            failures: replay.failures,
            unread,
        }
    }

    /// The plans of the alerts injected at `now`, each naming where its alert came from.
    fn injected(&self, t: &TestCase, now: i64) -> Vec<ProducedPlan> {
        let mut produced = Vec::new();
        for inj in t.injections.iter().filter(|i| i.at_ms == now) {
            let set = plan_payload(&self.config, &self.rules, &inj.payload);
            for p in set.plans {
                let alert = inj
                    .payload
                    .alerts
                    .iter()
                    .find(|a| a.fingerprint == p.fingerprint);
                let source = match alert {
                    Some(a) => format!("{}: {}", inj.source, describe_alert(a)),
                    None => inj.source.clone(),
                };
                produced.push(ProducedPlan::new(p, source));
            }
        }
        produced
    }
}

/// One test's replay: the series store as `serve` would fill it, the conditions' states,
/// and the failures so far.
struct Replay {
    store: SeriesStore,
    /// Per input series, the index of its next sample.
    next: Vec<usize>,
    states: ConditionStates,
    failures: Vec<TestFailure>,
    /// Rules whose condition failed to evaluate (reported once each).
    eval_failed: Vec<String>,
}

impl Replay {
    /// Stores every sample of a read series that is due by `now`.
    fn feed(&mut self, t: &TestCase, read: &[bool], now: i64) {
        for ((s, k), _) in t
            .series
            .iter()
            .zip(self.next.iter_mut())
            .zip(read)
            .filter(|(_, r)| **r)
        {
            while let Some((ts, v)) = s.samples.get(*k).filter(|(ts, _)| *ts <= now) {
                let value = match v {
                    SeriesValue::Value(x) => *x,
                    SeriesValue::Stale => stale_marker(),
                    SeriesValue::Missing => {
                        *k += 1;
                        continue;
                    }
                };
                self.store.insert(s.labels.clone(), *ts, value);
                *k += 1;
            }
        }
    }

    /// Evaluates every condition at `now`: the plans of the alerts they fire or resolve;
    /// a condition that cannot be evaluated is a failure, once per rule.
    fn evaluate(
        &mut self,
        file: &TestFile,
        conditions: &[(&Rule, Result<Query, String>)],
        now: i64,
    ) -> Vec<ProducedPlan> {
        let mut produced = Vec::new();
        for (rule, query) in conditions {
            let result = match query {
                Ok(q) => q.eval(&self.store, now).map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            match result {
                Ok(v) => {
                    for alert in self.states.step(rule, &v.into_series(), now) {
                        let source = format!(
                            "condition of rule {}: {}",
                            rule.name,
                            describe_alert(&alert)
                        );
                        produced.extend(
                            plan_alert(&file.config, &file.rules, &alert)
                                .into_iter()
                                .map(|p| ProducedPlan::new(p, source.clone())),
                        );
                    }
                }
                Err(error) => {
                    if !self.eval_failed.contains(&rule.name) {
                        self.eval_failed.push(rule.name.clone());
                        self.failures.push(TestFailure::Eval {
                            at_ms: now,
                            rule: rule.name.clone(),
                            error,
                        });
                    }
                }
            }
        }
        produced
    }
}

/// `KafkaBrokerDown{instance="…", …} (firing)`.
fn describe_alert(a: &Alert) -> String {
    let name = a.labels.get("alertname").map_or("", String::as_str);
    let rest: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}=\"{}\"", v.escape_debug()))
        .collect();
    format!("{name}{{{}}} ({})", rest.join(", "), a.status.as_str())
}

/// The fields of `e` that `g` does not have, as `field: expected …, got …`.
pub(super) fn differences(e: &ExpectedPlan, g: &ProducedPlan) -> Vec<String> {
    let mut out = Vec::new();
    let mut diff = |field: &str, want: String, got: String| {
        out.push(format!("{field}: expected {want}, got {got}"));
    };
    if let Some(r) = &e.rule
        && r != &g.rule
    {
        diff("rule", r.clone(), g.rule.clone());
    }
    if let Some(r) = &e.runbook
        && r != &g.runbook
    {
        diff("runbook", r.clone(), g.runbook.clone());
    }
    if let Some(t) = &e.target
        && t != &g.target
    {
        let show = |t: &Option<String>| t.clone().unwrap_or_else(|| "none".into());
        diff("target", show(t), show(&g.target));
    }
    if let Some(s) = e.status
        && s != g.status
    {
        diff("status", s.as_str().into(), g.status.as_str().into());
    }
    if let Some(d) = e.decision {
        let same = matches!(
            (d, g.decision),
            (ExpectedDecision::Run, Decision::Run) | (ExpectedDecision::Skip, Decision::Skip)
        );
        if !same {
            let word = |run: bool| if run { "run" } else { "skip" }.to_string();
            diff(
                "decision",
                word(d == ExpectedDecision::Run),
                word(g.decision == Decision::Run),
            );
        }
    }
    if let Some(r) = &e.reason
        && r != &g.reason
    {
        diff("reason", format!("{r:?}"), format!("{:?}", g.reason));
    }
    if let Some(r) = &e.reason_contains
        && !g.reason.contains(r.as_str())
    {
        out.push(format!(
            "reason: expected it to contain {r:?}, got {:?}",
            g.reason
        ));
    }
    if let Some(r) = &e.requires
        && r != &g.requires
    {
        let names = |v: &[crate::rules::model::Precondition]| {
            v.iter().map(|p| p.as_str()).collect::<Vec<_>>()
        };
        out.push(format!(
            "requires: expected {:?}, got {:?}",
            names(r),
            names(&g.requires)
        ));
    }
    if let Some(a) = &e.argv
        && a != &g.argv
    {
        if a.len() != g.argv.len() {
            out.push(format!(
                "argv: expected {} steps, got {}",
                a.len(),
                g.argv.len()
            ));
        }
        for (i, (want, got)) in a.iter().zip(&g.argv).enumerate() {
            if want != got {
                out.push(format!(
                    "argv of step {}: expected {:?}, got {:?}",
                    i + 1,
                    want,
                    got
                ));
            }
        }
    }
    out
}

/// Compares as multisets (a maximum bipartite matching of expected to produced plans);
/// `None` when every expected plan matches a different produced plan and none is left.
fn compare(expected: &[ExpectedPlan], got: Vec<ProducedPlan>) -> Option<Mismatch> {
    let fits: Vec<Vec<bool>> = expected
        .iter()
        .map(|e| got.iter().map(|g| differences(e, g).is_empty()).collect())
        .collect();
    // owner[j] = the expected plan matched to got[j].
    let mut owner: Vec<Option<usize>> = vec![None; got.len()];
    for i in 0..expected.len() {
        let mut seen = vec![false; got.len()];
        augment(i, &fits, &mut owner, &mut seen);
    }
    let matched: Vec<bool> = (0..expected.len())
        .map(|i| owner.contains(&Some(i)))
        .collect();
    let unexpected: Vec<usize> = (0..got.len()).filter(|j| owner[*j].is_none()).collect();
    if unexpected.is_empty() && matched.iter().all(|m| *m) {
        return None;
    }
    let missing = (0..expected.len())
        .filter(|i| !matched[*i])
        .map(|i| {
            let pool: Vec<usize> = if unexpected.is_empty() {
                (0..got.len()).collect()
            } else {
                unexpected.clone()
            };
            let closest = pool
                .into_iter()
                .min_by_key(|j| differences(&expected[i], &got[*j]).len());
            (i, closest)
        })
        .collect();
    Some(Mismatch {
        at_ms: 0,
        line: None,
        expected: expected.to_vec(),
        got,
        missing,
        unexpected,
    })
}

fn augment(i: usize, fits: &[Vec<bool>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for j in 0..owner.len() {
        if fits[i][j] && !seen[j] {
            seen[j] = true;
            let free = match owner[j] {
                None => true,
                Some(other) => augment(other, fits, owner, seen),
            };
            if free {
                owner[j] = Some(i);
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(rule: &str, target: &str, decision: Decision) -> ProducedPlan {
        ProducedPlan {
            rule: rule.into(),
            runbook: "rb".into(),
            target: Some(target.into()),
            status: AlertStatus::Firing,
            decision,
            reason: format!("matched; target {target}"),
            argv: vec![vec!["echo".into(), target.into()]],
            requires: vec![crate::rules::model::Precondition::RestartSafe],
            source: String::new(),
        }
    }

    fn want(rule: Option<&str>, target: Option<&str>) -> ExpectedPlan {
        ExpectedPlan {
            rule: rule.map(String::from),
            target: target.map(|t| Some(t.to_string())),
            ..Default::default()
        }
    }

    #[test]
    fn multiset_matching_is_order_insensitive_and_needs_augmenting() {
        let g = vec![
            got("a", "kafka-1", Decision::Run),
            got("a", "kafka-2", Decision::Run),
        ];
        // The first expectation fits both; a greedy match could take kafka-2 and strand
        // the second expectation.
        let e = vec![want(Some("a"), None), want(None, Some("kafka-2"))];
        assert!(compare(&e, g.clone()).is_none());
        let e = vec![want(None, Some("kafka-2")), want(None, Some("kafka-1"))];
        assert!(compare(&e, g.clone()).is_none());
    }

    #[test]
    fn missing_and_unexpected_are_reported_with_the_closest_plan() {
        let g = vec![
            got("a", "kafka-1", Decision::Run),
            got("a", "kafka-2", Decision::Run),
        ];
        let mut e1 = want(Some("a"), Some("kafka-2"));
        e1.decision = Some(ExpectedDecision::Skip);
        let m =
            compare(&[want(Some("a"), Some("kafka-1")), e1.clone()], g.clone()).expect("mismatch");
        assert_eq!(m.missing, vec![(1, Some(1))]);
        assert_eq!(m.unexpected, vec![1]);
        assert_eq!(
            differences(&e1, &g[1]),
            vec!["decision: expected skip, got run".to_string()]
        );
        // Fewer expected than produced: the extra one is unexpected.
        let m = compare(&[want(Some("a"), None)], g.clone()).expect("mismatch");
        assert!(m.missing.is_empty());
        assert_eq!(m.unexpected.len(), 1);
        // Nothing expected, nothing produced.
        assert!(compare(&[], Vec::new()).is_none());
        let m = compare(&[want(Some("a"), None)], Vec::new()).expect("mismatch");
        assert_eq!(m.missing, vec![(0, None)]);
    }

    #[test]
    fn field_differences() {
        let g = got("a", "kafka-1", Decision::Run);
        let e = ExpectedPlan {
            target: Some(None),
            reason_contains: Some("nope".into()),
            argv: Some(vec![vec!["echo".into(), "kafka-9".into()]]),
            status: Some(AlertStatus::Resolved),
            ..Default::default()
        };
        let d = differences(&e, &g);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d[0].starts_with("target: expected none, got kafka-1"));
        assert!(d.iter().any(|x| x.starts_with("argv of step 1")));
        let e = ExpectedPlan {
            requires: Some(vec![crate::rules::model::Precondition::BrokerUnreachable]),
            ..Default::default()
        };
        assert_eq!(
            differences(&e, &g),
            vec![r#"requires: expected ["broker_unreachable"], got ["restart_safe"]"#.to_string()]
        );
    }
}
