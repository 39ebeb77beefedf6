//! How much history the store must keep: derived from the loaded conditions instead of a
//! fixed window. A condition at time `t` reads back as far as its longest range selector
//! (plus any `offset`, and a subquery's range on top of what it wraps); `for` holds it over
//! that many more evaluations; the instant lookback ([`LOOKBACK_DELTA_MS`]) comes on top of
//! all of it. Derived again whenever the rules change (the watcher derives it once per
//! loaded configuration).

use std::time::Duration;

use promql_parser::parser::{Expr, Offset};

use super::store::LOOKBACK_DELTA_MS;
use crate::rules::RuleSet;

/// How far before the evaluation time `expr` reads, in ms (the lookback not included).
/// Negative offsets read forward and count as 0; `@` is rejected by the condition check.
pub fn reach_ms(expr: &Expr) -> i64 {
    match expr {
        Expr::VectorSelector(vs) => offset_ms(vs.offset.as_ref()),
        Expr::MatrixSelector(ms) => {
            millis(ms.range).saturating_add(offset_ms(ms.vs.offset.as_ref()))
        }
        Expr::Subquery(sq) => millis(sq.range)
            .saturating_add(offset_ms(sq.offset.as_ref()))
            .saturating_add(reach_ms(&sq.expr)),
        _ => crate::promql::ast::children(expr)
            .into_iter()
            .map(reach_ms)
            .max()
            .unwrap_or(0),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: Option<&Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => millis(*d),
        Some(Offset::Neg(_)) | None => 0,
    }
}

/// The retention (ms) the conditions of `rules` need: the largest `reach + for` over them,
/// plus the lookback. Without conditions, the lookback alone (what `up` and the probe
/// series need to be seen at all). A condition that does not parse counts as 0 (the rule
/// loader rejects it before it gets here).
pub fn retention_ms(rules: &RuleSet) -> i64 {
    let need = rules
        .rules
        .iter()
        .filter_map(|r| r.condition.as_ref())
        .map(|c| {
            let reach = promql_parser::parser::parse(&c.expr).map_or(0, |e| reach_ms(&e));
            reach.saturating_add(c.for_ms.max(0))
        })
        .max()
        .unwrap_or(0);
    need.saturating_add(LOOKBACK_DELTA_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(e: &str) -> i64 {
        reach_ms(&promql_parser::parser::parse(e).unwrap())
    }

    #[test]
    fn reach_is_the_longest_range_with_its_offset() {
        assert_eq!(reach(r#"up{job="kafka"} == 0"#), 0);
        assert_eq!(reach("rate(x[5m]) > 1"), 300_000);
        assert_eq!(
            reach("max_over_time(a[10m]) - sum(rate(b[1h])) / c"),
            3_600_000
        );
        assert_eq!(reach("x offset 2m"), 120_000);
        assert_eq!(reach("rate(x[5m] offset 1m)"), 360_000);
        assert_eq!(reach("x offset -2m"), 0);
        // A subquery reaches its own range back, then its inner selectors' ranges.
        assert_eq!(reach("max_over_time(rate(x[2m])[30m:1m])"), 1_920_000);
        assert_eq!(reach("topk(1, rate(x[90s]))"), 90_000);
    }

    fn rules(conditions: &[(&str, &str)]) -> RuleSet {
        let mut y = String::from("rules:\n");
        for (i, (expr, hold)) in conditions.iter().enumerate() {
            y.push_str(&format!(
                "  - name: r{i}\n    condition:\n      expr: '{expr}'\n      for: {hold}\n      alertname: A{i}\n    runbook: noop\n"
            ));
        }
        y.push_str(
            "runbooks:\n  noop:\n    steps:\n      - name: noop\n        exec: [\"true\"]\n",
        );
        let (set, diags) = crate::rules::load_rule_texts(vec![("r.yaml".into(), Ok(y))]);
        assert!(!diags.has_errors(), "{diags:?}");
        set
    }

    #[test]
    fn retention_is_longest_range_plus_for_plus_lookback() {
        // The issue's fleet rule: 10 s of `for` and the 5-minute lookback.
        assert_eq!(
            retention_ms(&rules(&[(r#"up{job="kafka"} == 0"#, "10s")])),
            310_000
        );
        // The largest sum wins, not the largest range and the largest `for` apart.
        let set = rules(&[
            ("rate(a[10m]) > 1", "1m"),
            ("max_over_time(b[2m]) > 0", "15m"),
            ("c == 0", "0s"),
        ]);
        assert_eq!(retention_ms(&set), 17 * 60_000 + LOOKBACK_DELTA_MS);
        // No conditions: the lookback alone.
        assert_eq!(retention_ms(&rules(&[])), LOOKBACK_DELTA_MS);
        // A reload that drops the long rule shrinks it.
        assert_eq!(
            retention_ms(&rules(&[("rate(a[10m]) > 1", "1m")])),
            11 * 60_000 + LOOKBACK_DELTA_MS
        );
    }
}
