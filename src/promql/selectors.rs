//! The kept set: the series the loaded conditions can ever read.
//!
//! Every vector selector of every condition (inside functions, aggregations, binary
//! operations, range selectors and subqueries alike) contributes its metric name and label
//! matchers. A sample that no selector matches can never change a condition's result, so
//! the self-watch drops it while parsing the exposition. A selector without a metric name
//! (`{job="kafka"}`) keeps every series its matchers accept; an expression that cannot be
//! parsed keeps everything (conservative: such a rule is refused at load anyway).

use std::collections::HashSet;
use std::fmt;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr};

use crate::ingest::store::Labels;

/// Series of one metric name per broker, for [`KeepSet::series_per_broker`]: the JMX body
/// of `tests/data/expo/jmx_kafka.prom` has 2,101 samples over 62 names (34 on average; the
/// per-partition ones 120 to 360).
pub const SERIES_PER_NAME: usize = 40;

/// Series of a full Kafka JMX scrape (issue 16: about 6,000).
pub const SERIES_PER_SCRAPE: usize = 6_000;

/// One selector of a condition: an exact metric name (when it has one) and its matchers.
#[derive(Debug, Clone)]
pub struct Selector {
    /// The metric name written before the braces, when there is one.
    pub name: Option<String>,
    /// Matchers that must all accept (`__name__` ones included).
    pub matchers: Vec<Matcher>,
    /// Alternative matcher groups (`{a="1" or b="2"}`): any one group accepting suffices.
    pub or_matchers: Vec<Vec<Matcher>>,
    /// The selector as written.
    pub text: String,
}

impl Selector {
    /// Whether a series named `name` may match, judging by the name alone.
    fn may_match_name(&self, name: &str) -> bool {
        if let Some(n) = &self.name {
            return n == name;
        }
        let name_ok = |ms: &[Matcher]| {
            ms.iter()
                .filter(|m| m.name == "__name__")
                .all(|m| m.is_match(name))
        };
        name_ok(&self.matchers) || self.or_matchers.iter().any(|g| name_ok(g))
    }

    /// Whether the series with this name and label lookup (a missing label is `""`) matches.
    fn matches<'a>(&self, name: &str, label: &impl Fn(&str) -> Option<&'a str>) -> bool {
        if self.name.as_deref().is_some_and(|n| n != name) {
            return false;
        }
        let all = |ms: &[Matcher]| {
            ms.iter().all(|m| {
                let v = if m.name == "__name__" {
                    name
                } else {
                    label(&m.name).unwrap_or("")
                };
                m.is_match(v)
            })
        };
        all(&self.matchers) || self.or_matchers.iter().any(|g| all(g))
    }

    /// Whether the selector pins its metric name to one value.
    pub fn exact_name(&self) -> Option<&str> {
        if let Some(n) = &self.name {
            return Some(n);
        }
        if !self.or_matchers.is_empty() {
            return None;
        }
        self.matchers
            .iter()
            .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
            .map(|m| m.value.as_str())
    }
}

/// The selectors of a set of conditions.
#[derive(Debug, Clone, Default)]
pub struct KeepSet {
    selectors: Vec<Selector>,
    /// Exact names, for the fast check while parsing.
    names: HashSet<String>,
    /// Whether some selector has no exact name (its matchers decide).
    open: bool,
    /// Whether everything is kept (an expression could not be parsed, or [`KeepSet::all`]).
    all: bool,
}

impl KeepSet {
    /// A set keeping every series (`kafka-healing scrape`, the preconditions).
    pub fn all() -> KeepSet {
        KeepSet {
            all: true,
            ..KeepSet::default()
        }
    }

    /// The selectors of `exprs`.
    pub fn of_exprs<'a>(exprs: impl IntoIterator<Item = &'a str>) -> KeepSet {
        let mut k = KeepSet::default();
        for e in exprs {
            match parser::parse(e) {
                Ok(expr) => walk(&expr, &mut k.selectors),
                Err(_) => k.all = true,
            }
        }
        for s in &k.selectors {
            match s.exact_name() {
                Some(n) => {
                    k.names.insert(n.to_string());
                }
                None => k.open = true,
            }
        }
        k
    }

    /// The selectors of every condition of `rules`.
    pub fn of_rules(rules: &crate::rules::RuleSet) -> KeepSet {
        KeepSet::of_exprs(
            rules
                .rules
                .iter()
                .filter_map(|r| r.condition.as_ref().map(|c| c.expr.as_str())),
        )
    }

    /// The selectors, in condition order.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    /// Whether everything is kept.
    pub fn keeps_all(&self) -> bool {
        self.all
    }

    /// Whether a series named `name` may be kept (the check made before its labels are
    /// parsed).
    pub fn may_keep_name(&self, name: &str) -> bool {
        self.all
            || self.names.contains(name)
            || (self.open && self.selectors.iter().any(|s| s.may_match_name(name)))
    }

    /// Whether the series with this name and label lookup is kept.
    pub fn keeps<'a>(&self, name: &str, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.all || self.selectors.iter().any(|s| s.matches(name, &label))
    }

    /// Estimated exporter series kept per broker: [`SERIES_PER_NAME`] for each distinct
    /// exact metric name, and a whole scrape ([`SERIES_PER_SCRAPE`]) when some selector
    /// has no exact name or everything is kept; never more than a whole scrape.
    pub fn series_per_broker(&self) -> usize {
        if self.all || self.open {
            return SERIES_PER_SCRAPE;
        }
        (self.names.len() * SERIES_PER_NAME).min(SERIES_PER_SCRAPE)
    }

    /// Whether the series with these labels (`__name__` included) is kept.
    pub fn keeps_labels(&self, labels: &Labels) -> bool {
        let name = labels.get("__name__").map_or("", String::as_str);
        self.keeps(name, |k| labels.get(k).map(String::as_str))
    }
}

impl fmt::Display for KeepSet {
    /// The selectors, comma-separated (`everything` when all is kept).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all {
            return write!(f, "everything");
        }
        if self.selectors.is_empty() {
            return write!(f, "nothing");
        }
        let mut seen = HashSet::new();
        let mut first = true;
        for s in &self.selectors {
            if !seen.insert(s.text.as_str()) {
                continue;
            }
            if !first {
                write!(f, ", ")?;
            }
            write!(f, "{}", s.text)?;
            first = false;
        }
        Ok(())
    }
}

/// Collects every vector selector under `e`.
fn walk(e: &Expr, out: &mut Vec<Selector>) {
    match e {
        Expr::VectorSelector(vs) => out.push(selector(vs)),
        Expr::MatrixSelector(ms) => out.push(selector(&ms.vs)),
        _ => {
            for c in super::ast::children(e) {
                walk(c, out);
            }
        }
    }
}

fn selector(vs: &parser::VectorSelector) -> Selector {
    let mut plain = vs.clone();
    plain.offset = None;
    plain.at = None;
    Selector {
        name: vs.name.clone(),
        matchers: vs.matchers.matchers.clone(),
        or_matchers: vs.matchers.or_matchers.clone(),
        text: Expr::VectorSelector(plain).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_inside_everything_are_found() {
        let k = KeepSet::of_exprs([
            "sum by (node_id) (rate(a_total{x=\"1\"}[5m])) > 0 and on(node_id) b",
            "max_over_time((c + 1)[10m:1m]) > scalar_missing_fn_is_fine",
            "absent(d{job=\"kafka\"}) or -e",
            "topk(3, f)",
        ]);
        let names: Vec<_> = k
            .selectors()
            .iter()
            .filter_map(|s| s.exact_name())
            .collect();
        assert_eq!(
            names,
            vec![
                "a_total",
                "b",
                "c",
                "scalar_missing_fn_is_fine",
                "d",
                "e",
                "f"
            ]
        );
        assert!(!k.keeps_all());
        assert!(k.may_keep_name("a_total") && !k.may_keep_name("g"));
        // Matchers decide, a missing label being "".
        assert!(k.keeps_labels(&l(&[("__name__", "a_total"), ("x", "1")])));
        assert!(!k.keeps_labels(&l(&[("__name__", "a_total"), ("x", "2")])));
        assert!(!k.keeps_labels(&l(&[("__name__", "d")])));
        assert!(k.keeps_labels(&l(&[("__name__", "d"), ("job", "kafka")])));
        assert_eq!(
            k.to_string(),
            "a_total{x=\"1\"}, b, c, scalar_missing_fn_is_fine, d{job=\"kafka\"}, e, f"
        );
    }

    #[test]
    fn selectors_without_a_name_keep_what_their_matchers_match() {
        let k = KeepSet::of_exprs(["count({job=\"kafka\", __name__=~\"kafka_.*\"}) > 0"]);
        assert!(k.may_keep_name("kafka_x"));
        assert!(!k.may_keep_name("jvm_x"));
        assert!(k.keeps_labels(&l(&[("__name__", "kafka_x"), ("job", "kafka")])));
        assert!(!k.keeps_labels(&l(&[("__name__", "kafka_x"), ("job", "zk")])));
        let any = KeepSet::of_exprs(["{job=\"kafka\"}"]);
        assert!(any.may_keep_name("anything"));
    }

    #[test]
    fn unparseable_keeps_all_and_none_keeps_nothing() {
        let k = KeepSet::of_exprs(["up{"]);
        assert!(k.keeps_all() && k.may_keep_name("x"));
        assert_eq!(k.to_string(), "everything");
        assert_eq!(k.series_per_broker(), SERIES_PER_SCRAPE);
        let two = KeepSet::of_exprs(["a > 0", "rate(b[1m]) > a"]);
        assert_eq!(two.series_per_broker(), 2 * SERIES_PER_NAME);
        let none = KeepSet::of_exprs([]);
        assert!(!none.may_keep_name("up"));
        assert_eq!(none.to_string(), "nothing");
    }
}
