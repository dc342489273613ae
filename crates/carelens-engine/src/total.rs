//! Total evaluation: a query must not be able to fail, or not, depending on one person's
//! data — a failure after the budget is charged would be an answer without noise.
//!
//! Divisors and modulo operands are wrapped in `NULLIF(x, 0)` (before type coercion, which
//! then types the zero), and every cast in the coerced plan becomes a `TRY_CAST` (NULL
//! instead of an error). Functions whose errors depend on their arguments' values
//! (`SUBSTR` with a negative length, `DATE_TRUNC` with an unknown unit) take literals
//! there, which the analysis checks. What remains — integer overflow in user arithmetic —
//! is listed in `docs/engine.md`.

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::DataFusionError;
use datafusion::functions::expr_fn::nullif;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, TryCast, lit};

/// `a / b` → `a / NULLIF(b, 0)`, `a % b` → `a % NULLIF(b, 0)`, everywhere in the plan.
pub(crate) fn guard_divisors(plan: LogicalPlan) -> Result<LogicalPlan, DataFusionError> {
    rewrite(plan, |e| match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Divide | Operator::Modulo) && !is_literal(&right) =>
        {
            Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                left,
                op,
                right: Box::new(nullif(*right, lit(0i64))),
            }))
        }
        other => Transformed::no(other),
    })
}

/// Every `CAST` becomes a `TRY_CAST` to the same type.
pub(crate) fn try_casts(plan: LogicalPlan) -> Result<LogicalPlan, DataFusionError> {
    rewrite(plan, |e| match e {
        Expr::Cast(c) => Transformed::yes(Expr::TryCast(TryCast::new(
            c.expr,
            c.field.data_type().clone(),
        ))),
        other => Transformed::no(other),
    })
}

fn is_literal(e: &Expr) -> bool {
    match e {
        Expr::Literal(v, _) => {
            !v.is_null()
                && ScalarValue::new_zero(&v.data_type())
                    .map(|zero| &zero != v)
                    .unwrap_or(false)
        }
        Expr::Cast(c) => is_literal(&c.expr),
        _ => false,
    }
}

fn rewrite(
    plan: LogicalPlan,
    f: impl Fn(Expr) -> Transformed<Expr> + Copy,
) -> Result<LogicalPlan, DataFusionError> {
    // Output names stay those of the original expressions (a projection above refers to
    // an aggregate by its name).
    plan.transform_up_with_subqueries(|node| {
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let original = names.save(&e);
            Ok(e.transform_up(|e| Ok(f(e)))?
                .update_data(|e| original.restore(e)))
        })
    })
    .and_then(|t| t.data.recompute_schema())
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{LogicalPlanBuilder, col};

    use super::*;

    #[test]
    fn divisors_are_guarded_and_casts_made_safe() {
        let plan = LogicalPlanBuilder::empty(true)
            .project(vec![lit(1i64).alias("a"), lit(2i64).alias("b")])
            .unwrap()
            .project(vec![
                (col("a") / col("b")).alias("q"),
                (col("a") / lit(4i64)).alias("literal"),
                datafusion::logical_expr::cast(
                    col("a"),
                    datafusion::arrow::datatypes::DataType::Utf8,
                )
                .alias("c"),
            ])
            .unwrap()
            .build()
            .unwrap();
        let guarded = try_casts(guard_divisors(plan).unwrap()).unwrap();
        let text = guarded.display_indent().to_string();
        assert!(text.contains("a / nullif(b, Int64(0))"), "{text}");
        assert!(text.contains("a / Int64(4)"), "{text}");
        assert!(text.contains("TRY_CAST(a AS Utf8)"), "{text}");
    }
}
