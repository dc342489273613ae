//! Bounded work, decided before the charge: how many rows a join of private data with
//! public tables can make of each private row.
//!
//! A join's running time is part of what an analyst observes. A private row joined to a
//! public table on an equality matches at most `M` public rows, where `M` is the largest
//! number of public rows sharing one value of the join key — a property of public data
//! alone, computed here before anything private is read. A cross join in disguise (an
//! equality of constants, a key with one value, `ON TRUE` rewritten as an equality of
//! expressions that are equal everywhere) has `M` = the public table's size; such joins
//! are refused when `M` is over the policy's limit, so that whether one person's row is
//! present cannot cost a minute of running time. Several such joins multiply: their
//! product is held to the same limit. (A join with no equality between the private and
//! the public side is refused by the analysis.)
//!
//! Joins of private relations on the person are bounded by each person's own rows, which
//! are private: they are capped at run time instead (`run.rs`).

use std::time::Duration;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, JoinType};
use datafusion::execution::context::SessionContext;
use datafusion::functions_aggregate::expr_fn::{count, max};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, lit};

use crate::QueryError;
use crate::analysis::equality_pairs;
use crate::rejection::{Rejection, RejectionKind};

/// One join of private data with a public relation: the public side and the expressions
/// of it that the join matches on.
#[derive(Debug, Clone)]
pub(crate) struct PublicJoin {
    /// The public side's plan.
    pub plan: LogicalPlan,
    /// Its join keys (over `plan`'s schema).
    pub keys: Vec<Expr>,
}

/// Every join in `plan` (and its subqueries) of which exactly one side reads private data,
/// with the public side's equi-join keys. `is_private` says whether a plan reads private
/// data.
pub(crate) fn public_joins(
    plan: &LogicalPlan,
    is_private: &dyn Fn(&LogicalPlan) -> bool,
) -> Vec<PublicJoin> {
    let mut joins = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(join) = node {
            let (left, right) = (is_private(&join.left), is_private(&join.right));
            // Semi and anti joins keep each private row at most once.
            let fans_out = !matches!(
                join.join_type,
                JoinType::LeftSemi
                    | JoinType::LeftAnti
                    | JoinType::RightSemi
                    | JoinType::RightAnti
                    | JoinType::LeftMark
                    | JoinType::RightMark
            );
            if left != right && fans_out {
                let public_left = !left;
                let public = if public_left { &join.left } else { &join.right };
                let mut keys: Vec<Expr> = join
                    .on
                    .iter()
                    .map(|(l, r)| if public_left { l.clone() } else { r.clone() })
                    .collect();
                for (l, r) in equality_pairs(
                    join.filter.as_ref(),
                    join.left.schema(),
                    join.right.schema(),
                ) {
                    keys.push(if public_left { l } else { r });
                }
                joins.push(PublicJoin {
                    plan: public.as_ref().clone(),
                    keys,
                });
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    joins
}

/// How long computing one join's fan-out may take before the query is refused.
const FANOUT_CHECK_TIME: Duration = Duration::from_secs(20);

/// Refuses the query if some private row could become more than `max_fanout` rows
/// through the public relations it is joined to. Joins compose: a private row joined to
/// a table matching `a` rows, then to one matching `b`, can become `a·b` rows, so the
/// bound is the product over every public join of the plan (an over-estimate where the
/// joins are in separate branches, never an under-estimate).
pub(crate) async fn check_fanouts(
    ctx: &SessionContext,
    joins: &[PublicJoin],
    max_fanout: u64,
) -> Result<(), QueryError> {
    let mut product: u64 = 1;
    for join in joins {
        let fanout = match tokio::time::timeout(FANOUT_CHECK_TIME, fanout(ctx, join)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(too_large(
                    "the public side of a join is too large to check in time".to_owned(),
                ));
            }
        };
        if fanout > max_fanout {
            let keys: Vec<String> = join.keys.iter().map(|k| k.to_string()).collect();
            return Err(too_large(format!(
                "a join with a public table matches up to {fanout} of its rows to one private \
                 row (on {}); the policy allows {max_fanout}",
                keys.join(", ")
            )));
        }
        product = product.saturating_mul(fanout.max(1));
        if product > max_fanout {
            return Err(too_large(format!(
                "the query's joins with public tables together match up to {product} public \
                 rows to one private row (each join's matches multiply); the policy allows \
                 {max_fanout}"
            )));
        }
    }
    Ok(())
}

fn too_large(message: String) -> QueryError {
    Rejection::new(
        RejectionKind::Join,
        message,
        "join reference tables on a key that identifies few of their rows (e.g. \
         `practice_lookup.practice_code`); an equality of constants or of a column with one \
         value is a cross join, whose running time would depend on the private rows",
    )
    .into()
}

/// The largest number of rows of the public side that share one value of its join keys
/// (rows whose keys hold a NULL match nothing).
async fn fanout(ctx: &SessionContext, join: &PublicJoin) -> Result<u64, QueryError> {
    let plan_error = QueryError::Plan;
    let mut builder = LogicalPlanBuilder::from(join.plan.clone());
    if let Some(not_null) = join
        .keys
        .iter()
        .map(|k| k.clone().is_not_null())
        .reduce(Expr::and)
    {
        builder = builder.filter(not_null).map_err(plan_error)?;
    }
    let plan = builder
        .aggregate(join.keys.clone(), vec![count(lit(1i64)).alias("__rows")])
        .and_then(|b| {
            b.aggregate(
                Vec::<Expr>::new(),
                vec![max(Expr::Column(Column::from_name("__rows"))).alias("__max")],
            )
        })
        .and_then(|b| b.build())
        .map_err(plan_error)?;
    let batches = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(plan_error)?
        .collect()
        .await
        .map_err(plan_error)?;
    let value = batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .map(|b| datafusion::common::ScalarValue::try_from_array(b.column(0), 0))
        .transpose()
        .map_err(plan_error)?;
    Ok(match value {
        Some(datafusion::common::ScalarValue::Int64(Some(n))) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    })
}
