//! Label-set helpers shared by operators and aggregations.

use promql_parser::parser::LabelModifier;

use crate::ingest::store::Labels;

/// The metric name label.
pub(super) const NAME: &str = "__name__";

/// `labels` without `__name__`.
pub(super) fn drop_name(mut labels: Labels) -> Labels {
    labels.remove(NAME);
    labels
}

/// The key two series are matched on: with `on(ls)` only the labels `ls`, otherwise every
/// label except `__name__` and those of `ignoring(ls)`. Encoded as `name\xffvalue\xff…`.
pub(super) fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> String {
    let mut out = String::new();
    let keep = |k: &str| match matching {
        Some(LabelModifier::Include(on)) => on.labels.iter().any(|l| l == k),
        Some(LabelModifier::Exclude(ign)) => k != NAME && !ign.labels.iter().any(|l| l == k),
        None => k != NAME,
    };
    for (k, v) in labels {
        if keep(k) {
            out.push_str(k);
            out.push('\u{ff}');
            out.push_str(v);
            out.push('\u{ff}');
        }
    }
    out
}

/// The group an aggregation puts a series in: `by(ls)` keeps the labels `ls`, `without(ls)`
/// drops them and `__name__`, no clause drops everything.
pub(super) fn grouping(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(by)) => labels
            .iter()
            .filter(|(k, _)| by.labels.iter().any(|l| l == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(LabelModifier::Exclude(without)) => labels
            .iter()
            .filter(|(k, _)| k.as_str() != NAME && !without.labels.iter().any(|l| l == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => Labels::new(),
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
    fn signatures() {
        let a = l(&[("__name__", "a"), ("job", "kafka"), ("instance", "b1")]);
        let b = l(&[("__name__", "b"), ("job", "kafka"), ("instance", "b1")]);
        assert_eq!(signature(&a, None), signature(&b, None));
        let on = LabelModifier::include(vec!["job"]);
        assert_eq!(signature(&a, Some(&on)), "job\u{ff}kafka\u{ff}");
        let ign = LabelModifier::exclude(vec!["instance"]);
        assert_eq!(signature(&a, Some(&ign)), "job\u{ff}kafka\u{ff}");
    }

    #[test]
    fn groupings() {
        let a = l(&[("__name__", "a"), ("job", "kafka"), ("instance", "b1")]);
        let by = LabelModifier::include(vec!["job", "missing"]);
        assert_eq!(grouping(&a, Some(&by)), l(&[("job", "kafka")]));
        let without = LabelModifier::exclude(vec!["instance"]);
        assert_eq!(grouping(&a, Some(&without)), l(&[("job", "kafka")]));
        assert!(grouping(&a, None).is_empty());
    }
}
