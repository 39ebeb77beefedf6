//! Binary operators: arithmetic, comparisons (filtering or `bool`) and set operators.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD, T_MUL,
    T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier};

use super::labels::{drop_name, signature};
use super::{PromqlError, Value};
use crate::ingest::store::Labels;

type Vector = Vec<(Labels, f64)>;

/// Applies `b` to its evaluated operands.
pub(super) fn eval(b: &BinaryExpr, lhs: Value, rhs: Value) -> Result<Value, PromqlError> {
    let op = b.op.id();
    let return_bool = b.return_bool();
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = apply(op, l, r)?;
            Ok(Value::Scalar(if is_comparison(op) {
                f64::from(u8::from(keep))
            } else {
                v
            }))
        }
        (Value::Vector(l), Value::Scalar(r)) => {
            vector_scalar(op, l, r, false, return_bool).map(Value::Vector)
        }
        (Value::Scalar(l), Value::Vector(r)) => {
            vector_scalar(op, r, l, true, return_bool).map(Value::Vector)
        }
        (Value::Vector(l), Value::Vector(r)) => match op {
            T_LAND => Ok(Value::Vector(and_unless(l, &r, matching, true))),
            T_LUNLESS => Ok(Value::Vector(and_unless(l, &r, matching, false))),
            T_LOR => Ok(Value::Vector(or(l, r, matching))),
            _ => one_to_one(op, l, r, matching, return_bool).map(Value::Vector),
        },
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// `lhs op rhs`: the value (for a comparison, `lhs`) and whether to keep it.
fn apply(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), PromqlError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        // Go's math.Mod: truncated, the sign of the dividend, like Rust's `%`.
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        other => {
            return Err(PromqlError::Unsupported(format!(
                "unsupported operator `{}`",
                promql_parser::parser::token::TokenType::new(other)
            )));
        }
    })
}

/// Vector and scalar (`swap`: the scalar is on the left).
fn vector_scalar(
    op: TokenId,
    v: Vector,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vector, PromqlError> {
    let comparison = is_comparison(op);
    let mut out = Vec::with_capacity(v.len());
    for (labels, x) in v {
        let (l, r) = if swap { (s, x) } else { (x, s) };
        let (mut value, keep) = apply(op, l, r)?;
        if comparison && swap {
            // The vector's value is the result, even on the right.
            value = x;
        }
        if return_bool {
            out.push((drop_name(labels), f64::from(u8::from(keep))));
        } else if keep {
            out.push((
                if comparison {
                    labels
                } else {
                    drop_name(labels)
                },
                value,
            ));
        }
    }
    Ok(out)
}

/// Two vectors matched one-to-one on their signatures.
fn one_to_one(
    op: TokenId,
    lhs: Vector,
    rhs: Vector,
    matching: Option<&LabelModifier>,
    return_bool: bool,
) -> Result<Vector, PromqlError> {
    let mut right: HashMap<String, f64> = HashMap::with_capacity(rhs.len());
    for (labels, v) in &rhs {
        if right.insert(signature(labels, matching), *v).is_some() {
            return Err(PromqlError::Eval(format!(
                "found duplicate series for the match group {} on the right hand-side of the \
                 operation; many-to-many matching not allowed: matching labels must be unique \
                 on one side",
                super::format_labels(&match_group(labels, matching))
            )));
        }
    }
    let comparison = is_comparison(op);
    let mut matched: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for (labels, l) in lhs {
        let sig = signature(&labels, matching);
        let Some(&r) = right.get(&sig) else {
            continue;
        };
        let (value, keep) = apply(op, l, r)?;
        let value = if return_bool {
            f64::from(u8::from(keep))
        } else if keep {
            value
        } else {
            continue;
        };
        let mut metric = if comparison && !return_bool {
            labels
        } else {
            drop_name(labels)
        };
        match matching {
            Some(LabelModifier::Include(on)) => metric.retain(|k, _| on.labels.contains(k)),
            Some(LabelModifier::Exclude(ign)) => metric.retain(|k, _| !ign.labels.contains(k)),
            None => {}
        }
        if !matched.insert(sig) {
            return Err(PromqlError::Eval(
                "multiple matches for labels: many-to-one matching must be explicit \
                 (group_left/group_right)"
                    .into(),
            ));
        }
        out.push((metric, value));
    }
    Ok(out)
}

/// The labels of a match group, for error messages.
fn match_group(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    let mut l = labels.clone();
    match matching {
        Some(LabelModifier::Include(on)) => l.retain(|k, _| on.labels.contains(k)),
        Some(LabelModifier::Exclude(ign)) => {
            l.retain(|k, _| !ign.labels.contains(k));
            l = drop_name(l);
        }
        None => l = drop_name(l),
    }
    l
}

/// `and` (`keep_matched`) or `unless` (`!keep_matched`): the left series whose signature
/// does (does not) occur on the right.
fn and_unless(
    lhs: Vector,
    rhs: &Vector,
    matching: Option<&LabelModifier>,
    keep_matched: bool,
) -> Vector {
    let right: HashSet<String> = rhs.iter().map(|(l, _)| signature(l, matching)).collect();
    lhs.into_iter()
        .filter(|(l, _)| right.contains(&signature(l, matching)) == keep_matched)
        .collect()
}

/// `or`: all left series, then the right series whose signature is not on the left.
fn or(lhs: Vector, rhs: Vector, matching: Option<&LabelModifier>) -> Vector {
    let left: HashSet<String> = lhs.iter().map(|(l, _)| signature(l, matching)).collect();
    let mut out = lhs;
    out.extend(
        rhs.into_iter()
            .filter(|(l, _)| !left.contains(&signature(l, matching))),
    );
    out
}
