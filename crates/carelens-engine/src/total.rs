//! Total evaluation, the parts done on the query's plan before the analysis: a query must
//! not be able to fail, or not, depending on one person's data — a failure after the
//! budget is charged would be an answer without noise.
//!
//! Divisors and modulo operands are wrapped in `NULLIF(x, 0)` (before type coercion, which
//! then types the zero), every cast in the coerced plan becomes a `TRY_CAST` (NULL instead
//! of an error), and only the types of [`allowed_type`] may flow through a query. The
//! rest — every operation that can still fail on a value — is evaluated NULL-on-error per
//! row by the guards of `guard.rs`, applied to the bounded plan.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::functions::expr_fn::nullif;
use datafusion::logical_expr::expr_rewriter::NamePreserver;

use crate::rejection::{Rejection, RejectionKind};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, TryCast, cast, lit, when};

/// `a / b` → `CASE WHEN b = -1 THEN -a ELSE a / NULLIF(b, 0) END` (integer `MIN / -1`
/// overflows; negation wraps), `a % b` → `a % NULLIF(b, 0)`, and `abs(x)` → `abs(x::DOUBLE)`
/// (`abs` of the smallest integer overflows), everywhere in the plan. Positive literal
/// divisors are left alone.
pub(crate) fn guard_divisors(plan: LogicalPlan) -> Result<LogicalPlan, DataFusionError> {
    rewrite(plan, |e| match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Divide,
            right,
        }) if !is_positive_literal(&right) => {
            let divided = Expr::BinaryExpr(BinaryExpr {
                left: left.clone(),
                op: Operator::Divide,
                right: Box::new(nullif(*right.clone(), lit(0i64))),
            });
            match when((*right).clone().eq(lit(-1i64)), Expr::Negative(left)).otherwise(divided) {
                Ok(guarded) => Transformed::yes(guarded),
                Err(_) => Transformed::no(lit(ScalarValue::Null)),
            }
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Modulo,
            right,
        }) if !is_positive_literal(&right) => Transformed::yes(Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Modulo,
            right: Box::new(nullif(*right, lit(0i64))),
        })),
        Expr::ScalarFunction(mut f) if f.name() == "abs" => {
            f.args = f
                .args
                .into_iter()
                .map(|a| cast(a, DataType::Float64))
                .collect();
            Transformed::yes(Expr::ScalarFunction(f))
        }
        other => Transformed::no(other),
    })
}

/// Whether values of `t` may flow through a query: the catalog's types and the types the
/// allowed functions make of them (narrower and unsigned integers — `ROW_NUMBER()` is
/// unsigned —, `FLOAT`, text in every layout, timestamps without a time zone). The
/// totality test evaluates every allowed function over boundary values of exactly these
/// types, and the bounding rewrite (group keys, hashes, sums) handles exactly these, so a
/// type outside the list is refused rather than trusted: binary values (not text, so not
/// castable to text), decimals (their arithmetic fails on overflow), lists, structs,
/// maps, durations.
pub(crate) fn allowed_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Null
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Timestamp(_, None)
    )
}

/// Refuses a cast written in the query to a type outside [`allowed_type`], or a literal
/// of such a type (interval literals are allowed as operands of date arithmetic; the
/// result is a date or timestamp). Runs before type coercion: coercion may compare an
/// unsigned with a signed integer as decimals, which is total (the guards cover the rest).
pub(crate) fn check_written_types(plan: &LogicalPlan) -> Result<(), Rejection> {
    let mut found: Option<(DataType, &'static str)> = None;
    let _ = plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            let _ = e.apply(|e| {
                let bad = match e {
                    Expr::Cast(c) => Some((c.field.data_type().clone(), "a cast to")),
                    Expr::TryCast(c) => Some((c.field.data_type().clone(), "a cast to")),
                    Expr::Literal(v, _) if !matches!(v.data_type(), DataType::Interval(_)) => {
                        Some((v.data_type(), "a literal of type"))
                    }
                    _ => None,
                };
                found = found.take().or(bad.filter(|(t, _)| !allowed_type(t)));
                Ok(if found.is_some() {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            });
            if found.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found.map_or(Ok(()), |(t, what)| Err(type_rejection(&t, what)))
}

/// Refuses a plan with a column (of any node, after type coercion) of a type outside
/// [`allowed_type`], or of type NULL (`SELECT NULL AS x`: not a type aggregates take).
pub(crate) fn check_column_types(plan: &LogicalPlan) -> Result<(), Rejection> {
    let mut found: Option<DataType> = None;
    let _ = plan.apply_with_subqueries(|node| {
        found = node
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type())
            .find(|t| !allowed_type(t) || t.is_null())
            .cloned();
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found.map_or(Ok(()), |t| Err(type_rejection(&t, "a column of type")))
}

fn type_rejection(t: &DataType, what: &str) -> Rejection {
    Rejection::new(
        RejectionKind::Function,
        format!("{what} {t} is not supported"),
        "carelens computes with booleans, integers, floats (DOUBLE), text, dates and \
         timestamps; cast to one of those (`CAST(NULL AS INT)` for a column of NULLs; sums \
         are exact in carelens anyway: fixed point)",
    )
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

fn is_positive_literal(e: &Expr) -> bool {
    match e {
        Expr::Literal(v, _) => v
            .cast_to(&DataType::Float64)
            .ok()
            .is_some_and(|v| matches!(v, ScalarValue::Float64(Some(x)) if x > 0.0)),
        Expr::Cast(c) => is_positive_literal(&c.expr),
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
        assert!(
            text.contains("CASE WHEN b = Int64(-1) THEN (- a) ELSE a / nullif(b, Int64(0)) END"),
            "{text}"
        );
        assert!(text.contains("a / Int64(4)"), "{text}");
        assert!(text.contains("TRY_CAST(a AS Utf8)"), "{text}");
    }
}
