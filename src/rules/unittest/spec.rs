//! The test file as written, and its loading into a runnable [`TestFile`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::series::{SeriesValue, parse_series, parse_values};
use super::{Expectation, Injection, InputSeries, TestCase, TestFile, UnitTestError};
use crate::config::{ClusterConfig, Config, LoadError, RecoveryConfig};
use crate::diag::{Diagnostics, Severity};
use crate::ingest::{Alert, AlertStatus, WebhookPayload, fingerprint, parse_webhook};
use crate::rules::model::parse_duration;
use crate::rules::{RuleSet, load_rule_files, load_rules};
use crate::yaml::{Document, join_index, join_key};

/// Default `evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(15);

/// Most evaluation steps one test may take (a guard against `at: 1y` with `1ms` steps).
pub const MAX_STEPS: i64 = 1_000_000;

const TOP_KEYS: &[&str] = &[
    "config",
    "rule_files",
    "cluster",
    "recovery",
    "evaluation_interval",
    "tests",
];

const ALERT_KEYS: &[&str] = &[
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
];

/// `run` or `skip`, as expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedDecision {
    /// The plan runs.
    Run,
    /// The plan is skipped.
    Skip,
}

/// One expected plan; only the fields given are compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedPlan {
    /// Rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Runbook name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// Target node_id; `target: ~` (null) expects no target.
    #[serde(
        default,
        deserialize_with = "present_target",
        skip_serializing_if = "Option::is_none"
    )]
    pub target: Option<Option<String>>,
    /// The alert's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AlertStatus>,
    /// Run or skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ExpectedDecision>,
    /// The reason, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A part of the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_contains: Option<String>,
    /// Every step's argv, exactly, in order (`[]` for a skipped plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<Vec<String>>>,
    /// The runbook's preconditions, exactly, in order (`[]` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<Vec<crate::rules::model::Precondition>>,
}

fn present_target<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a broker node_id or ~ (no target), got {other}"
            )));
        }
    }))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn values_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected values like '1 2 0x4', got {other}"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSpec {
    name: String,
    #[serde(default, deserialize_with = "opt_duration")]
    interval: Option<Duration>,
    #[serde(default)]
    input_series: Vec<SeriesSpec>,
    #[serde(default)]
    alerts: Vec<InjectSpec>,
    #[serde(default)]
    expect: Vec<ExpectSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesSpec {
    series: String,
    #[serde(deserialize_with = "values_text")]
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectSpec {
    #[serde(deserialize_with = "duration")]
    at: Duration,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    alerts: Option<Vec<Map<String, Value>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    #[serde(deserialize_with = "duration")]
    at: Duration,
    plans: Vec<ExpectedPlan>,
}

/// The file being loaded: its path, document and the problems found so far.
struct Ctx {
    path: PathBuf,
    dir: PathBuf,
    doc: Document,
    diags: Diagnostics,
}

impl Ctx {
    fn error(&mut self, at: &str, message: impl std::fmt::Display) {
        self.diags.error_at(&self.path, &self.doc, at, message);
    }

    fn line(&self, at: &str) -> Option<usize> {
        self.doc.line_of(at)
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    fn take<T: DeserializeOwned>(&mut self, v: Value, at: &str) -> Option<T> {
        match crate::yaml::deserialize_at(v, at) {
            Ok(t) => Some(t),
            Err((path, msg)) => {
                self.error(&path, msg);
                None
            }
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Formats milliseconds as a duration (`45s`, `1m 30s`, `0s`).
pub fn fmt_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// Reads and checks a test file, its config and rule files, and every alert file.
pub fn load(path: &Path) -> Result<TestFile, UnitTestError> {
    let (mut ctx, mut top) = open(path)?;
    let eval_ms = evaluation_interval(&mut ctx, &mut top);
    let (config, rules) = setup(&mut ctx, &mut top);
    let tests = tests_of(&mut ctx, &mut top, eval_ms);
    if tests.is_empty() && !ctx.diags.has_errors() {
        ctx.error("tests", "no tests");
    }
    ctx.diags.items.retain(|d| d.severity == Severity::Error);
    if ctx.diags.has_errors() {
        ctx.diags.sort();
        return Err(UnitTestError::Invalid(ctx.diags));
    }
    match (config, rules) {
        (Some(config), Some(rules)) => Ok(TestFile {
            path: path.to_path_buf(),
            config,
            rules,
            evaluation_interval_ms: eval_ms,
            tests,
        }),
        _ => {
            ctx.diags.error(
                path,
                None,
                "no cluster or rules: give `config:` or `cluster:` and `rule_files:`",
            );
            Err(UnitTestError::Invalid(ctx.diags))
        }
    }
}

/// Reads and parses the file: its context and top-level mapping, its unknown keys
/// reported. `Err` when it is not a YAML mapping.
fn open(path: &Path) -> Result<(Ctx, Map<String, Value>), UnitTestError> {
    let text = std::fs::read_to_string(path).map_err(|source| UnitTestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut ctx = Ctx {
        path: path.to_path_buf(),
        dir: path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        doc: Document::default(),
        diags: Diagnostics::default(),
    };
    ctx.doc = match Document::parse(&text) {
        Ok(d) => d,
        Err(e) => {
            ctx.diags
                .error(path, Some(e.line), format!("YAML: {}", e.message));
            return Err(UnitTestError::Invalid(ctx.diags));
        }
    };
    let top = match ctx.doc.value.clone() {
        Value::Object(m) => m,
        _ => {
            ctx.diags.error(
                path,
                Some(1),
                "a test file is a mapping with `tests:` and `config:` or `rule_files:`",
            );
            return Err(UnitTestError::Invalid(ctx.diags));
        }
    };
    let unknown: Vec<String> = top
        .keys()
        .filter(|k| !TOP_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    for key in unknown {
        ctx.error(
            &key,
            format!("unknown key; a test file has {}", TOP_KEYS.join(", ")),
        );
    }
    Ok((ctx, top))
}

/// `evaluation_interval` in milliseconds (at least 1).
fn evaluation_interval(ctx: &mut Ctx, top: &mut Map<String, Value>) -> i64 {
    let interval = match top.remove("evaluation_interval") {
        Some(v) => ctx
            .take::<DurationField>(v, "evaluation_interval")
            .map(|d| d.0),
        None => Some(DEFAULT_EVALUATION_INTERVAL),
    };
    match interval {
        Some(d) if ms(d) > 0 => ms(d),
        Some(_) => {
            ctx.error("evaluation_interval", "must be at least 1ms");
            1
        }
        None => 1,
    }
}

/// The file's `tests:`, each checked; the ones with errors are left out.
fn tests_of(ctx: &mut Ctx, top: &mut Map<String, Value>, eval_ms: i64) -> Vec<TestCase> {
    match top.remove("tests") {
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| test_case(ctx, v, i, eval_ms))
            .collect(),
        Some(_) => {
            ctx.error("tests", "`tests` must be a list of tests");
            Vec::new()
        }
        None => {
            let path = ctx.path.clone();
            ctx.diags.error(
                &path,
                None,
                "missing `tests:`; a test file needs at least one test",
            );
            Vec::new()
        }
    }
}

#[derive(Deserialize)]
#[serde(transparent)]
struct DurationField(#[serde(deserialize_with = "duration")] Duration);

/// The environment for `${NAME}` references in the config, without the
/// `KAFKA_HEALING__…` overrides (a test must not depend on the shell that runs it).
fn config_env() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| !k.starts_with(crate::config::ENV_PREFIX))
        .collect()
}

/// The cluster config and rule set the tests run against.
fn setup(ctx: &mut Ctx, top: &mut Map<String, Value>) -> (Option<Config>, Option<RuleSet>) {
    // One file, or a list layered as `-c` layers them.
    let config_path = top.remove("config").and_then(|v| match v {
        Value::Array(_) => ctx.take::<Vec<String>>(v, "config"),
        other => ctx.take::<String>(other, "config").map(|c| vec![c]),
    });
    let rule_files = top
        .remove("rule_files")
        .and_then(|v| ctx.take::<Vec<String>>(v, "rule_files"));
    let cluster = top.remove("cluster");
    let recovery = top.remove("recovery");
    let (config, mut rules) = match &config_path {
        Some(cp) => {
            if cluster.is_some() || recovery.is_some() {
                let key = if cluster.is_some() {
                    "cluster"
                } else {
                    "recovery"
                };
                ctx.error(
                    key,
                    "give either `config:` or an inline `cluster:`, not both",
                );
            }
            config_file(ctx, cp, rule_files.is_none())
        }
        None => {
            let config = inline_config(ctx, cluster, recovery);
            if rule_files.is_none() {
                ctx.diags.error(
                    &ctx.path,
                    None,
                    "give `rule_files:` when there is no `config:`",
                );
            }
            (config, None)
        }
    };
    if let Some(patterns) = rule_files {
        rules = rules_from(ctx, &patterns);
    }
    (config, rules)
}

/// The config files `cp` (relative to the test file, layered in order), and their rule
/// files' rule set when `with_rules` (no `rule_files:` given).
fn config_file(
    ctx: &mut Ctx,
    cp: &[String],
    with_rules: bool,
) -> (Option<Config>, Option<RuleSet>) {
    let mut rules = None;
    let full: Vec<PathBuf> = cp.iter().map(|c| ctx.resolve(c)).collect();
    match crate::config::load_files_with_env(&full, config_env()) {
        Ok(loaded) => {
            if with_rules {
                let (set, d) = load_rules(&loaded);
                if d.has_errors() {
                    ctx.error("config", "the config's rule files are invalid:");
                    ctx.diags.extend(d);
                } else {
                    rules = Some(set);
                }
            }
            (Some(loaded.config), rules)
        }
        Err(e @ LoadError::Read { .. }) => {
            ctx.error("config", e);
            (None, None)
        }
        Err(LoadError::Invalid(d)) => {
            ctx.error(
                "config",
                format!(
                    "{} is an invalid configuration:",
                    full.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" + ")
                ),
            );
            ctx.diags.extend(d);
            (None, None)
        }
    }
}

/// A config from an inline `cluster:` (and `recovery:`); every other section takes its
/// defaults.
fn inline_config(ctx: &mut Ctx, cluster: Option<Value>, recovery: Option<Value>) -> Option<Config> {
    let Some(v) = cluster else {
        ctx.diags.error(
            &ctx.path,
            None,
            "give `config:` (a kafka-healing config file) or an inline `cluster:` section",
        );
        return None;
    };
    let cluster = ctx.take::<ClusterConfig>(v, "cluster");
    let recovery = match recovery {
        Some(v) => ctx.take::<RecoveryConfig>(v, "recovery"),
        None => Some(RecoveryConfig::default()),
    };
    let base = serde_json::json!({"cluster": {"name": "", "kafka_brokers": []}});
    if let (Some(cluster), Some(recovery), Ok(mut c)) =
        (cluster, recovery, serde_json::from_value::<Config>(base))
    {
        c.cluster = cluster;
        c.recovery = recovery;
        return Some(c);
    }
    None
}

/// The rule set of the files `rule_files:` globs name (each glob must match a file).
fn rules_from(ctx: &mut Ctx, patterns: &[String]) -> Option<RuleSet> {
    let mut files = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let at = join_index("rule_files", i);
        let full = ctx.resolve(pattern);
        match crate::rules::load::rule_files_matching(&full) {
            Ok(found) => {
                if found.is_empty() {
                    ctx.error(&at, format!("`{pattern}` matches no rule file"));
                }
                files.extend(found);
            }
            Err(e) => ctx.error(&at, format!("bad glob `{pattern}`: {e}")),
        }
    }
    let (set, d) = load_rule_files(&files);
    if d.has_errors() {
        ctx.error("rule_files", "the rule files are invalid:");
        ctx.diags.extend(d);
        None
    } else {
        Some(set)
    }
}

fn test_case(ctx: &mut Ctx, v: Value, i: usize, eval_ms: i64) -> Option<TestCase> {
    let at = join_index("tests", i);
    let spec = ctx.take::<TestSpec>(v, &at)?;
    let before = ctx.diags.error_count();
    let interval_ms = match spec.interval.map(ms) {
        Some(0) => {
            ctx.error(&join_key(&at, "interval"), "must be at least 1ms");
            1
        }
        Some(n) => n,
        None => eval_ms,
    };
    if spec.name.trim().is_empty() {
        ctx.error(&join_key(&at, "name"), "must not be empty");
    }
    let series = input_series(ctx, &at, &spec.input_series, interval_ms);
    let mut times = Times { eval_ms, end_ms: 0 };
    let injections = injections(ctx, &at, &spec.alerts, &mut times);
    let mut expectations = expectations(ctx, &at, spec.expect, &mut times);
    if expectations.is_empty() && ctx.diags.error_count() == before {
        ctx.error(&at, "the test has no `expect:`, so it checks nothing");
    }
    expectations.sort_by_key(|e| e.at_ms);
    (ctx.diags.error_count() == before).then(|| TestCase {
        name: spec.name,
        line: ctx.line(&at),
        series,
        injections,
        expectations,
        end_ms: times.end_ms,
    })
}

/// A test's `input_series`, each sample at its index times `interval_ms`; a series given
/// twice is an error.
fn input_series(
    ctx: &mut Ctx,
    at: &str,
    specs: &[SeriesSpec],
    interval_ms: i64,
) -> Vec<InputSeries> {
    let mut series: Vec<InputSeries> = Vec::new();
    for (j, s) in specs.iter().enumerate() {
        let sat = join_index(&join_key(at, "input_series"), j);
        let labels = match parse_series(&s.series) {
            Ok(l) => l,
            Err(e) => {
                ctx.error(&join_key(&sat, "series"), e);
                continue;
            }
        };
        let values = match parse_values(&s.values) {
            Ok(v) => v,
            Err(e) => {
                ctx.error(&join_key(&sat, "values"), e);
                continue;
            }
        };
        if series.iter().any(|o| o.labels == labels) {
            ctx.error(
                &join_key(&sat, "series"),
                format!("series `{}` is given twice", s.series),
            );
            continue;
        }
        let samples = values
            .into_iter()
            .enumerate()
            .filter(|(_, v)| *v != SeriesValue::Missing)
            .map(|(n, v)| ((n as i64).saturating_mul(interval_ms), v))
            .collect();
        series.push(InputSeries { labels, samples });
    }
    series
}

/// The times a test's injections and expectations name: each on an evaluation, at most
/// [`MAX_STEPS`] away; `end_ms` is the latest.
struct Times {
    eval_ms: i64,
    end_ms: i64,
}

impl Times {
    fn check(&mut self, ctx: &mut Ctx, path: &str, t: Duration) -> Option<i64> {
        let (t, eval_ms) = (ms(t), self.eval_ms);
        if t % eval_ms != 0 {
            ctx.error(
                path,
                format!(
                    "{} is not a multiple of evaluation_interval ({}): nothing is evaluated then",
                    fmt_ms(t),
                    fmt_ms(eval_ms)
                ),
            );
            return None;
        }
        if t / eval_ms > MAX_STEPS {
            ctx.error(
                path,
                format!("{} is more than {MAX_STEPS} evaluations away", fmt_ms(t)),
            );
            return None;
        }
        self.end_ms = self.end_ms.max(t);
        Some(t)
    }
}

/// A test's `alerts:`, each from a file or inline, at a checked time.
fn injections(ctx: &mut Ctx, at: &str, specs: &[InjectSpec], times: &mut Times) -> Vec<Injection> {
    let mut injections = Vec::new();
    for (j, inj) in specs.iter().enumerate() {
        let iat = join_index(&join_key(at, "alerts"), j);
        let t = times.check(ctx, &join_key(&iat, "at"), inj.at);
        let payload = match (&inj.file, &inj.alerts) {
            (Some(f), None) => alert_file(ctx, &join_key(&iat, "file"), f),
            (None, Some(list)) => inline_alerts(ctx, &join_key(&iat, "alerts"), list),
            _ => {
                ctx.error(&iat, "give exactly one of `file:` and `alerts:`");
                None
            }
        };
        if let (Some(at_ms), Some(payload)) = (t, payload) {
            let source = match &inj.file {
                Some(f) => format!("alerts from {f}"),
                None => format!("inline alerts (line {})", ctx.line(&iat).unwrap_or(0)),
            };
            injections.push(Injection {
                at_ms,
                payload,
                source,
            });
        }
    }
    injections
}

/// A test's `expect:`, one per time; `reason` and `reason_contains` exclude each other.
fn expectations(
    ctx: &mut Ctx,
    at: &str,
    specs: Vec<ExpectSpec>,
    times: &mut Times,
) -> Vec<Expectation> {
    let mut expectations: Vec<Expectation> = Vec::new();
    for (j, e) in specs.into_iter().enumerate() {
        let eat = join_index(&join_key(at, "expect"), j);
        let Some(at_ms) = times.check(ctx, &join_key(&eat, "at"), e.at) else {
            continue;
        };
        if expectations.iter().any(|o| o.at_ms == at_ms) {
            ctx.error(
                &join_key(&eat, "at"),
                format!("a second expectation at {}; merge them", fmt_ms(at_ms)),
            );
            continue;
        }
        for (k, p) in e.plans.iter().enumerate() {
            if p.reason.is_some() && p.reason_contains.is_some() {
                ctx.error(
                    &join_index(&join_key(&eat, "plans"), k),
                    "give `reason` or `reason_contains`, not both",
                );
            }
        }
        expectations.push(Expectation {
            at_ms,
            line: ctx.line(&eat),
            plans: e.plans,
        });
    }
    expectations
}

fn alert_file(ctx: &mut Ctx, at: &str, f: &str) -> Option<WebhookPayload> {
    let full = ctx.resolve(f);
    let body = match std::fs::read(&full) {
        Ok(b) => b,
        Err(e) => {
            ctx.error(at, format!("cannot read {}: {e}", full.display()));
            return None;
        }
    };
    match parse_webhook(&body) {
        Ok(p) => Some(p),
        Err(e) => {
            ctx.error(at, format!("{}: {e}", full.display()));
            None
        }
    }
}

fn inline_alerts(ctx: &mut Ctx, at: &str, list: &[Map<String, Value>]) -> Option<WebhookPayload> {
    let mut alerts = Vec::new();
    let mut ok = true;
    for (k, m) in list.iter().enumerate() {
        let aat = join_index(at, k);
        if let Some(key) = m.keys().find(|k| !ALERT_KEYS.contains(&k.as_str())) {
            ctx.error(
                &join_key(&aat, key),
                format!("unknown alert key; an alert has {}", ALERT_KEYS.join(", ")),
            );
            ok = false;
            continue;
        }
        match ctx.take::<Alert>(Value::Object(m.clone()), &aat) {
            Some(mut a) => {
                if a.fingerprint.is_empty() {
                    a.fingerprint = fingerprint(&a.labels);
                }
                alerts.push(a);
            }
            None => ok = false,
        }
    }
    ok.then(|| WebhookPayload {
        version: "4".into(),
        group_key: String::new(),
        truncated_alerts: 0,
        status: String::new(),
        receiver: "kafka-healing test".into(),
        group_labels: Default::default(),
        common_labels: Default::default(),
        common_annotations: Default::default(),
        external_url: String::new(),
        alerts,
        forged_fingerprints: Vec::new(),
    })
}
