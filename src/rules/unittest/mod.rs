//! Rule unit tests (`kafka-healing test FILE…`), in the spirit of `promtool test rules`:
//! simulated series and injected Alertmanager payloads go through the same decision path as
//! `dry-run` and `serve` (conditions with their `for`, then
//! [`plan_alert`](crate::engine::plan_alert) / [`plan_payload`](crate::engine::plan_payload)), and the plans produced at given times are compared with the expected
//! ones.
//!
//! The test file format, `input_series`' value notation and what is (and is not) simulated
//! are documented once, for rule authors, in `docs/rules.md` ("Rule tests");
//! `rules/tests/kafka.test.yaml` is a complete example.

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
