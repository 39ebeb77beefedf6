//! Rule unit tests (`kafka-healing test FILE…`), in the spirit of `promtool test rules`:
//! simulated series and injected Alertmanager payloads go through the same decision path as
//! `dry-run` and `serve` (conditions with their `for`, then
//! [`plan_alert`](crate::engine::plan_alert) / [`plan_payload`](crate::engine::plan_payload)), and the plans produced at given times are compared with the expected
//! ones.
//!
//! # Test file format
//!
//! ```yaml
//! # The cluster (brokers, recovery policy) and the rule files, relative to this file:
//! config: ../../examples/config.yaml
//! # ... or rule files (globs, relative to this file) with an inline `cluster:` section of
//! # the config's shape and, optionally, an inline `recovery:` section. With `config:`,
//! # `rule_files:` replaces the config's `rules:`.
//! # rule_files: [../kafka.yaml]
//! # cluster: {name: prod-east, kafka_brokers: [{node_id: kafka-1, host: k1, port: 9092}]}
//! evaluation_interval: 15s                 # default 15s
//! tests:
//!   - name: broker down is restarted
//!     interval: 15s                        # spacing of input_series values (default
//!                                          # evaluation_interval)
//!     input_series:
//!       - series: 'up{job="kafka",node_id="kafka-2"}'
//!         values: '1 1 0x4'                # promtool's expanding notation, see below
//!     alerts:                              # webhook payloads injected at a time
//!       - at: 30s
//!         file: ../../examples/alerts/firing-two-brokers.json
//!       - at: 1m                           # or inline alerts (the webhook's alert shape)
//!         alerts: [{status: firing, labels: {alertname: KafkaBrokerDown}}]
//!     expect:                              # the plans produced AT a time
//!       - at: 30s
//!         plans:
//!           - rule: broker-down            # every field is optional; only those given
//!             runbook: restart-broker      # are compared
//!             target: kafka-2              # `target: ~` expects no target
//!             status: firing               # the alert's status: firing | resolved
//!             decision: run                # run | skip
//!             reason: "matched; target kafka-2"   # exact; or `reason_contains: ...`
//!             argv:                        # each step's argv, exact
//!               - [ssh, -o, BatchMode=yes, --, kafka-2.example.com, sudo, -n, systemctl, restart, --, kafka.service]
//!               - [tcp, "kafka-2.example.com:9092"]
//!       - at: 1m
//!         plans: []                        # nothing at that time
//! ```
//!
//! With `config:`, the config loads as for `check` except that `KAFKA_HEALING__…`
//! environment overrides are ignored (a test must not depend on the shell that runs it);
//! `${NAME}` references and `*_file` secrets still resolve. An inline `cluster:` is
//! deserialized but not cross-checked the way `check` checks a config file.
//!
//! Durations are `500ms`, `15s`, `5m`, `1h30m` or a whole number of seconds. Unknown keys
//! are errors everywhere, reported with file and line.
//!
//! # Values
//!
//! `values` is promtool's expanding notation, one slot per `interval` starting at 0:
//! numbers (`1 2 3`, `Inf`, `-Inf`, `NaN`); `a+bxN` is `a a+b … a+N*b` (N+1 values),
//! `a-bxN` counts down and `axN` is `a+0xN` (so `0x4` is five zeros); `_` is a slot without
//! a sample and `_xN` is N of them; `stale` is a stale marker, as Prometheus writes when a
//! series disappears from its target. A missing sample (`_`) is not a disappearance: an
//! instant selector still sees the previous sample for 5 minutes (the lookback), so end a
//! series with `stale` (or a value the condition rejects) to make its alert resolve at once.
//!
//! # Semantics
//!
//! Time runs from 0 to the test's last `at`, in steps of `evaluation_interval`. At each
//! step T, every sample at a time ≤ T is in the series store; every rule with a condition
//! is evaluated at T and fed to its pending → firing → resolved state machine
//! ([`ConditionStates`](crate::rules::condition::ConditionStates)), so `for` works as in
//! `serve`; each alert it raises (newly firing, repeated every 5 minutes while firing, or
//! resolved) is planned with [`plan_alert`](crate::engine::plan_alert). Payloads injected
//! at T are planned with [`plan_payload`](crate::engine::plan_payload) (one per payload, so duplicates within it collapse). At each
//! `expect.at`, the plans produced at exactly that time are compared with `plans`
//! as multisets: order does not matter, and each expected plan must match a different
//! produced plan, with none left over. Times in `at` must be multiples of
//! `evaluation_interval`.
//!
//! Not simulated: the engine's history-dependent policy (cooldown, attempts, circuit
//! breaker, the guard and the cluster limit across payloads) and the executor: the
//! plans are the decisions before it, as `dry-run` shows them.

mod report;
mod run;
pub mod series;
mod spec;

use std::path::PathBuf;

use crate::config::Config;
use crate::diag::Diagnostics;
use crate::ingest::WebhookPayload;
use crate::ingest::store::Labels;
use crate::rules::RuleSet;

pub use report::{render_failure, render_plan};
pub use run::{FileReport, Mismatch, ProducedPlan, TestFailure, TestReport};
pub use series::{SeriesError, SeriesValue, parse_series, parse_values};
pub use spec::{DEFAULT_EVALUATION_INTERVAL, ExpectedDecision, ExpectedPlan, fmt_ms, load};

/// Why a test file cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum UnitTestError {
    /// The file itself cannot be read (a usage problem).
    #[error("cannot read test file {path}: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file, its config, rule files or alert files are invalid.
    #[error("invalid test file:\n{0}")]
    Invalid(Diagnostics),
}

/// A loaded test file, ready to run.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The file.
    pub path: PathBuf,
    /// The configuration the plans are made with.
    pub config: Config,
    /// The rules under test.
    pub rules: RuleSet,
    /// Step between evaluations, ms.
    pub evaluation_interval_ms: i64,
    /// The tests, in file order.
    pub tests: Vec<TestCase>,
}

/// One test.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// Its name.
    pub name: String,
    /// Line of its definition.
    pub line: Option<usize>,
    /// Input series with their samples (time ms, value); `_` slots are left out.
    pub series: Vec<InputSeries>,
    /// Payloads injected.
    pub injections: Vec<Injection>,
    /// Expectations, by time.
    pub expectations: Vec<Expectation>,
    /// The last time the test looks at, ms.
    pub end_ms: i64,
}

/// One input series.
#[derive(Debug, Clone)]
pub struct InputSeries {
    /// Its labels, `__name__` included.
    pub labels: Labels,
    /// `(time ms, value)`, increasing; never [`SeriesValue::Missing`].
    pub samples: Vec<(i64, SeriesValue)>,
}

/// A webhook payload injected at a time.
#[derive(Debug, Clone)]
pub struct Injection {
    /// When, ms.
    pub at_ms: i64,
    /// The payload.
    pub payload: WebhookPayload,
    /// Where it came from, for messages.
    pub source: String,
}

/// The plans expected at a time.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// When, ms.
    pub at_ms: i64,
    /// Line of its definition.
    pub line: Option<usize>,
    /// The plans, in any order.
    pub plans: Vec<ExpectedPlan>,
}
