//! Walking a parsed expression: the direct sub-expressions of a node, so that each fold
//! over a condition (the selectors it reads, how far back it reads) names only the nodes
//! it treats specially.

use promql_parser::parser::Expr;

/// The direct sub-expressions of `e`, in the order written (selectors and literals have
/// none; a matrix selector's vector selector is not an expression of its own).
pub fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Aggregate(a) => {
            let mut v: Vec<&Expr> = a.param.as_deref().into_iter().collect();
            v.push(&a.expr);
            v
        }
        Expr::Unary(u) => vec![&u.expr],
        Expr::Binary(b) => vec![&b.lhs, &b.rhs],
        Expr::Paren(p) => vec![&p.expr],
        Expr::Subquery(s) => vec![&s.expr],
        Expr::Call(c) => c.args.args.iter().map(|a| &**a).collect(),
        Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kids(e: &str) -> Vec<String> {
        let parsed = promql_parser::parser::parse(e).expect("parses");
        children(&parsed).iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn each_node_gives_its_direct_children_in_order() {
        assert_eq!(kids("a + b"), ["a", "b"]);
        assert_eq!(kids("topk(3, x)"), ["3", "x"]);
        assert_eq!(kids("sum by (a) (x)"), ["x"]);
        assert_eq!(kids("-(x)"), ["(x)"]);
        assert_eq!(kids("(x)"), ["x"]);
        assert_eq!(kids("rate(x[5m])"), ["x[5m]"]);
        assert_eq!(kids("max_over_time(x[1h:1m])"), ["x[1h:1m]"]);
        assert_eq!(kids("x[1h:1m]"), ["x"]);
        assert!(kids("x").is_empty());
        assert!(kids("x[5m]").is_empty());
        assert!(kids("1").is_empty());
    }
}
