//! The supported subset: every construct outside it is rejected by name.

use promql_parser::parser::token::{
    T_ADD, T_AVG, T_COUNT, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS,
    T_MAX, T_MIN, T_MOD, T_MUL, T_NEQ, T_POW, T_SUB, T_SUM,
};
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, VectorMatchCardinality, VectorSelector,
};

use super::PromqlError;

/// Functions taking one range selector.
pub(super) const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
];

/// Functions taking one instant vector.
pub(super) const VECTOR_FUNCTIONS: &[&str] = &["abs", "absent"];

/// Parses `expr` and checks that every construct in it is supported.
pub fn check(expr: &str) -> Result<(), PromqlError> {
    let parsed = promql_parser::parser::parse(expr).map_err(PromqlError::Parse)?;
    check_expr(&parsed)
}

fn unsupported(what: impl Into<String>) -> PromqlError {
    PromqlError::Unsupported(what.into())
}

/// Checks a parsed expression.
pub(super) fn check_expr(expr: &Expr) -> Result<(), PromqlError> {
    match expr {
        Expr::Aggregate(a) => check_aggregate(a),
        Expr::Unary(u) => check_expr(&u.expr),
        Expr::Binary(b) => check_binary(b),
        Expr::Paren(p) => check_expr(&p.expr),
        Expr::Subquery(_) => Err(unsupported("unsupported: subqueries")),
        Expr::NumberLiteral(_) => Ok(()),
        Expr::StringLiteral(_) => Err(unsupported("unsupported: string literals")),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(_) => Err(unsupported(format!(
            "unsupported: range selector outside a function (use it inside one of {})",
            RANGE_FUNCTIONS.join(", ")
        ))),
        Expr::Call(c) => check_call(c),
        Expr::Extension(_) => Err(unsupported("unsupported: extension expressions")),
    }
}

fn check_selector(vs: &VectorSelector) -> Result<(), PromqlError> {
    if vs.offset.is_some() {
        return Err(unsupported("unsupported: `offset`"));
    }
    if vs.at.is_some() {
        return Err(unsupported("unsupported: `@` modifier"));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(unsupported("unsupported: `or` inside label matchers"));
    }
    Ok(())
}

fn check_aggregate(a: &AggregateExpr) -> Result<(), PromqlError> {
    if !matches!(a.op.id(), T_SUM | T_MIN | T_MAX | T_AVG | T_COUNT) {
        return Err(unsupported(format!("unsupported aggregation `{}`", a.op)));
    }
    if a.param.is_some() {
        return Err(unsupported(format!(
            "unsupported: parameter to aggregation `{}`",
            a.op
        )));
    }
    check_expr(&a.expr)
}

fn check_binary(b: &BinaryExpr) -> Result<(), PromqlError> {
    let op = b.op.id();
    let known = matches!(
        op,
        T_ADD
            | T_SUB
            | T_MUL
            | T_DIV
            | T_MOD
            | T_POW
            | T_EQLC
            | T_NEQ
            | T_GTR
            | T_LSS
            | T_GTE
            | T_LTE
            | T_LAND
            | T_LOR
            | T_LUNLESS
    );
    if !known {
        return Err(unsupported(format!("unsupported operator `{}`", b.op)));
    }
    if let Some(m) = &b.modifier {
        match m.card {
            VectorMatchCardinality::ManyToOne(_) => {
                return Err(unsupported(
                    "unsupported: vector matching with `group_left`",
                ));
            }
            VectorMatchCardinality::OneToMany(_) => {
                return Err(unsupported(
                    "unsupported: vector matching with `group_right`",
                ));
            }
            VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {}
        }
        if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
            return Err(unsupported(
                "unsupported: `fill`/`fill_left`/`fill_right` modifiers",
            ));
        }
    }
    check_expr(&b.lhs)?;
    check_expr(&b.rhs)
}

fn check_call(c: &Call) -> Result<(), PromqlError> {
    let name = c.func.name;
    if RANGE_FUNCTIONS.contains(&name) {
        if c.args.args.len() != 1 {
            return Err(unsupported(format!(
                "unsupported: `{name}` takes exactly one range selector"
            )));
        }
        return match c.args.args[0].as_ref() {
            Expr::MatrixSelector(ms) => check_selector(&ms.vs),
            Expr::Subquery(_) => Err(unsupported("unsupported: subqueries")),
            other => Err(unsupported(format!(
                "unsupported: `{name}` of `{other}` (only a range selector like `metric[5m]`)"
            ))),
        };
    }
    if VECTOR_FUNCTIONS.contains(&name) {
        for arg in &c.args.args {
            check_expr(arg)?;
        }
        return Ok(());
    }
    Err(unsupported(format!("unsupported function `{name}`")))
}
