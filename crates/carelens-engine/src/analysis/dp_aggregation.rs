//! The released aggregation: its group keys (never the person) and its aggregates —
//! `COUNT(*)`, `COUNT(expr)`, `COUNT(DISTINCT person)`, `SUM` or `AVG` of a bounded
//! value with the fixed-point precision it is summed in, and quantiles of a bounded value
//! (`MEDIAN`, `PERCENTILE_CONT`, `APPROX_PERCENTILE_CONT`, `APPROX_MEDIAN`).

use std::collections::BTreeSet;

use carelens_privacy::Precision;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Aggregate, Expr, ExprSchemable, expr::AggregateFunction};

use super::relations::Relation;
use super::subqueries::{outer_uses, subquery_plan};
use super::{Analysis, Analyzer, unalias, unsupported};
use crate::facts::{Facts, check_person_use, expr_facts, location};
use crate::rejection::{Rejection, RejectionKind};

/// One aggregate of the released aggregation.
#[derive(Debug, Clone)]
pub(crate) enum AggKind {
    /// `COUNT(*)`.
    Rows,
    /// `COUNT(expr)`.
    NonNull(Expr),
    /// `COUNT(DISTINCT person)` (`None`), or of an expression that is the person or NULL.
    Persons(Option<Expr>),
    /// `SUM(expr)`, clamped to bounds and summed in fixed point.
    Sum(Bounded),
    /// `AVG(expr)`: a bounded sum over a count.
    Avg(Bounded),
    /// A quantile of a bounded value (`MEDIAN(x)`, `PERCENTILE_CONT(p) WITHIN GROUP
    /// (ORDER BY x)`, …).
    Quantile(Quantile),
}

/// A quantile of a bounded value.
#[derive(Debug, Clone)]
pub(crate) struct Quantile {
    /// The value, its bounds and precision (the candidates' grid).
    pub value: Bounded,
    /// Which quantile: 0.5 for a median; `1 − p` for `WITHIN GROUP (ORDER BY x DESC)`.
    pub alpha: f64,
}

/// A bounded numeric argument.
#[derive(Debug, Clone)]
pub(crate) struct Bounded {
    pub expr: Expr,
    pub lo: f64,
    pub hi: f64,
    pub precision: Precision,
    /// Every value is a whole number at least 0 (an indicator such as `CASE WHEN c THEN 1
    /// ELSE 0 END`, a number of rows): its sum counts events, and is released under the
    /// disclosure policy's rules for counts.
    pub counts: bool,
}

/// The released aggregation, analysed.
#[derive(Debug, Clone)]
pub(crate) struct DpAggregation {
    /// The aggregation node as planned.
    pub aggregate: Aggregate,
    /// Facts about its input.
    pub input: Relation,
    /// Facts about each group key.
    pub keys: Vec<Facts>,
    /// Each aggregate, in output order.
    pub aggregates: Vec<AggKind>,
}

impl Analyzer<'_> {
    pub(super) fn dp_aggregation(&self, aggregate: &Aggregate) -> Result<Analysis, Rejection> {
        let input = self.relation(&aggregate.input)?;
        for expr in aggregate.group_expr.iter().chain(&aggregate.aggr_expr) {
            self.check_functions(expr)?;
            self.deny_private_subqueries(expr, "in the released aggregation")?;
            let mut result = Ok(());
            let _ = expr.apply(|e| {
                if let Some(plan) = subquery_plan(e) {
                    result = result.clone().and_then(|()| outer_uses(plan, &input, 0));
                }
                Ok(TreeNodeRecursion::Continue)
            });
            result?;
        }
        if !input.private {
            return Ok(Analysis::Public);
        }
        if input.person().is_none() {
            return Err(Rejection::new(
                RejectionKind::RowLevel,
                "the rows being aggregated lost their person column",
                "keep `person_id` in every CTE and subquery over private tables, so carelens \
                 can bound each person's contribution",
            ));
        }
        let schema = aggregate.input.schema();
        let mut keys = Vec::with_capacity(aggregate.group_expr.len());
        let mut names = BTreeSet::new();
        for expr in &aggregate.group_expr {
            if matches!(expr, Expr::GroupingSet(_)) {
                return Err(unsupported("GROUPING SETS, ROLLUP and CUBE"));
            }
            if !names.insert(unalias(expr).schema_name().to_string()) {
                return Err(Rejection::new(
                    RejectionKind::Unsupported,
                    format!("`{}` is a group key twice", unalias(expr)),
                    "group by it once; select it under two names in an outer query if you \
                     need both",
                )
                .at(location(expr)));
            }
            let refers_to_person = expr.column_refs().iter().any(|c| {
                schema
                    .index_of_column(c)
                    .is_ok_and(|i| input.columns[i].person)
            });
            if refers_to_person {
                return Err(Rejection::new(
                    RejectionKind::PersonColumn,
                    "the person column cannot be a group key of the released aggregation: \
                     that would release one row per person",
                    "group by person-level features in a CTE first (`GROUP BY person_id`), \
                     then count people per feature value",
                )
                .at(location(expr)));
            }
            keys.push(expr_facts(expr, schema, &input.columns));
        }
        let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
        for expr in &aggregate.aggr_expr {
            aggregates.push(self.dp_aggregate(expr, schema, &input)?);
        }
        Ok(Analysis::Private(Box::new(DpAggregation {
            aggregate: aggregate.clone(),
            input,
            keys,
            aggregates,
        })))
    }

    fn dp_aggregate(
        &self,
        expr: &Expr,
        schema: &DFSchema,
        input: &Relation,
    ) -> Result<AggKind, Rejection> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(expr) else {
            return Err(unsupported("an aggregate expression of this form"));
        };
        let name = func.name().to_ascii_lowercase();
        let at = params.args.first().and_then(location);
        if params.filter.is_some() {
            return Err(Rejection::new(
                RejectionKind::Aggregate,
                format!("`{name}(...) FILTER (WHERE ...)` is not supported yet"),
                "put the condition in a CASE inside the aggregate, e.g. \
                 `COUNT(DISTINCT CASE WHEN cond THEN person_id END)`",
            )
            .at(at));
        }
        let arg = params.args.first();
        let arg_facts = arg.map(|a| expr_facts(a, schema, &input.columns));
        let is_key = |a: &Expr| match unalias(a) {
            Expr::Column(c) => schema.index_of_column(c).is_ok_and(|i| input.keys[i]),
            _ => false,
        };
        match (name.as_str(), params.distinct, arg) {
            ("count", false, Some(Expr::Literal(v, _))) if !v.is_null() => Ok(AggKind::Rows),
            ("count", false, None) => Ok(AggKind::Rows),
            ("count", true, Some(a)) if arg_facts.as_ref().is_some_and(|f| f.person) => {
                Ok(AggKind::Persons((!is_key(a)).then(|| a.clone())))
            }
            ("count", true, _) => Err(Rejection::new(
                RejectionKind::Aggregate,
                "`COUNT(DISTINCT ...)` of anything but the person cannot be bounded per person",
                "count people with `COUNT(DISTINCT person_id)` or `COUNT(DISTINCT CASE WHEN \
                 cond THEN person_id END)`; to count distinct values, group by the value \
                 instead",
            )
            .at(at)),
            ("count", false, Some(a)) => {
                check_person_use(a, false, "inside COUNT", schema, &input.columns)
                    .map_err(|r| r.at(at))?;
                Ok(AggKind::NonNull(a.clone()))
            }
            ("sum" | "avg" | "mean", false, Some(a)) => {
                check_person_use(a, false, "inside SUM or AVG", schema, &input.columns)?;
                let bounded = bounded_argument(expr, a, schema, input, at)?;
                Ok(if name == "sum" {
                    AggKind::Sum(bounded)
                } else {
                    AggKind::Avg(bounded)
                })
            }
            (
                "median" | "approx_median" | "percentile_cont" | "approx_percentile_cont",
                false,
                Some(a),
            ) => {
                check_person_use(a, false, "inside a quantile", schema, &input.columns)?;
                let alpha =
                    quantile_alpha(&name, &params.args, &params.order_by).map_err(|r| r.at(at))?;
                let mut value = bounded_argument(expr, a, schema, input, at)?;
                // Whole numbers — an integer, also as `PERCENTILE_CONT` reads it (cast to a
                // float), or a rounded value cast to an integer — need no grid finer than 1
                // (whole days, not 0.01 day; a rounded HbA1c, not tenths).
                let whole = a.get_type(schema).is_ok_and(|t| t.is_integer())
                    || uncast_type(a, schema).is_some();
                if whole && value.precision.unit() < 1.0 {
                    value.precision = Precision::ONE;
                }
                if let Err(e) =
                    carelens_privacy::Grid::new(value.lo, value.hi, value.precision.unit())
                {
                    return Err(Rejection::new(
                        RejectionKind::Aggregate,
                        format!(
                            "`{}`: its bounds [{}, {}] in steps of {} give no candidates for \
                             the quantile ({e})",
                            expr.schema_name(),
                            short(value.lo),
                            short(value.hi),
                            short(value.precision.unit())
                        ),
                        "clamp the value in the query to a range of at least two steps that \
                         a number can hold exactly: `LEAST(GREATEST(x, lo), hi)`",
                    )
                    .at(at));
                }
                Ok(AggKind::Quantile(Quantile { value, alpha }))
            }
            ("sum" | "avg" | "mean", true, _) => Err(Rejection::new(
                RejectionKind::Aggregate,
                format!("`{name}(DISTINCT ...)` cannot be released"),
                "drop DISTINCT, or sum per-person values computed in a `GROUP BY person_id` CTE",
            )
            .at(at)),
            ("min" | "max", _, _) => Err(Rejection::new(
                RejectionKind::Aggregate,
                format!("`{name}` is one person's value: it cannot be released"),
                format!(
                    "release a high or low percentile instead, e.g. `PERCENTILE_CONT({}) \
                     WITHIN GROUP (ORDER BY x)`; MIN/MAX are allowed per person inside a \
                     `GROUP BY person_id` CTE",
                    if name == "min" { "0.05" } else { "0.95" }
                ),
            )
            .at(at)),
            (
                "median" | "approx_median" | "percentile_cont" | "approx_percentile_cont",
                true,
                _,
            ) => Err(Rejection::new(
                RejectionKind::Aggregate,
                format!("`{name}(DISTINCT ...)` cannot be released"),
                "drop DISTINCT: the quantile is over every value, each person's capped at \
                 max_rows",
            )
            .at(at)),
            _ => Err(Rejection::new(
                RejectionKind::Aggregate,
                format!("`{name}` cannot be released with differential privacy"),
                "release COUNT, COUNT(DISTINCT person_id), SUM or AVG of a bounded value",
            )
            .at(at)),
        }
    }
}

/// The bounds and precision of a summed, averaged or ranked argument `a` of `expr`;
/// rejected when it has no bounds.
fn bounded_argument(
    expr: &Expr,
    a: &Expr,
    schema: &DFSchema,
    input: &Relation,
    at: Option<crate::rejection::Location>,
) -> Result<Bounded, Rejection> {
    let facts = expr_facts(a, schema, &input.columns);
    if !facts.bounded() {
        return Err(Rejection::new(
            RejectionKind::Aggregate,
            format!(
                "`{}` has no bounds, so one person could move it without limit",
                expr.schema_name()
            ),
            "declare `bounds` for the column in the catalog, or clamp it in the query: \
             `LEAST(GREATEST(x, lo), hi)`",
        )
        .at(at));
    }
    let (lo, hi) = facts.bounds();
    let data_type = a.get_type(schema).unwrap_or(DataType::Float64);
    let precision = facts
        .precision
        .unwrap_or_else(|| default_precision(&data_type, lo, hi));
    let whole = |x: f64| x.is_finite() && x.fract() == 0.0;
    let whole_values = data_type.is_integer()
        || facts.domain.as_ref().is_some_and(|d| {
            d.iter().all(|v| {
                v.is_null()
                    || v.cast_to(&DataType::Float64)
                        .ok()
                        .is_some_and(|f| matches!(f, ScalarValue::Float64(Some(x)) if whole(x)))
            })
        });
    Ok(Bounded {
        expr: a.clone(),
        lo,
        hi,
        precision,
        counts: whole_values && lo >= 0.0 && whole(lo) && whole(hi) && precision.unit() == 1.0,
    })
}

/// Which quantile a quantile aggregate asks for: 0.5 for `MEDIAN`; the literal `p` of
/// `PERCENTILE_CONT(p)` / `APPROX_PERCENTILE_CONT(x, p)`, as `1 − p` when the values are
/// ordered descending (as DataFusion reads it).
fn quantile_alpha(
    name: &str,
    args: &[Expr],
    order_by: &[datafusion::logical_expr::SortExpr],
) -> Result<f64, Rejection> {
    let descending = order_by.first().is_some_and(|s| !s.asc);
    let p = match (name, args) {
        ("median" | "approx_median", [_]) => 0.5,
        ("percentile_cont" | "approx_percentile_cont", [_, p]) => {
            literal_f64(p).ok_or_else(|| {
                Rejection::new(
                    RejectionKind::Aggregate,
                    format!("the percentile of `{name}` must be a number written in the query"),
                    "e.g. `PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY x)`",
                )
            })?
        }
        _ => {
            return Err(Rejection::new(
                RejectionKind::Aggregate,
                format!("`{name}` with these arguments cannot be released"),
                "write `MEDIAN(x)` or `PERCENTILE_CONT(p) WITHIN GROUP (ORDER BY x)`, with no \
                 further arguments",
            ));
        }
    };
    let alpha = if descending { 1.0 - p } else { p };
    let steps = alpha * carelens_privacy::quantile::ALPHA_DENOMINATOR as f64;
    if !(alpha > 0.0 && alpha < 1.0) || (steps - steps.round()).abs() > 1e-6 || steps.round() < 1.0
    {
        return Err(Rejection::new(
            RejectionKind::Aggregate,
            format!("the percentile {p} cannot be released"),
            "ask for a percentile strictly between 0 and 1 in steps of 0.0001 (a minimum or \
             maximum is one person's value: use e.g. 0.05 or 0.95)",
        ));
    }
    Ok(alpha)
}

/// The integer type of `e` under casts from an integer type to a float type, if it is one.
fn uncast_type(e: &Expr, schema: &DFSchema) -> Option<DataType> {
    match unalias(e) {
        Expr::Cast(datafusion::logical_expr::Cast { expr, field })
        | Expr::TryCast(datafusion::logical_expr::TryCast { expr, field })
            if field.data_type().is_floating() =>
        {
            let inner = expr.get_type(schema).ok()?;
            if inner.is_integer() {
                Some(inner)
            } else {
                uncast_type(expr, schema)
            }
        }
        _ => None,
    }
}

/// A number for a message: exponent form when it would be long.
fn short(x: f64) -> String {
    if x != 0.0 && !(1e-3..1e9).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        carelens_privacy::number(x)
    }
}

/// The number a literal (under casts) holds.
fn literal_f64(e: &Expr) -> Option<f64> {
    match unalias(e) {
        Expr::Literal(v, _) => match v.cast_to(&DataType::Float64).ok()? {
            ScalarValue::Float64(Some(x)) => Some(x),
            _ => None,
        },
        Expr::Cast(c) => literal_f64(&c.expr),
        Expr::TryCast(c) => literal_f64(&c.expr),
        _ => None,
    }
}

/// The fixed-point unit for a sum whose column declares none: 1 for integers; for
/// floats, four decimal digits below the largest bound (rounding moves a value by at most
/// 1/20,000 of the bound).
fn default_precision(data_type: &DataType, lo: f64, hi: f64) -> Precision {
    if data_type.is_integer() {
        return Precision::ONE;
    }
    let magnitude = lo.abs().max(hi.abs());
    if magnitude <= 0.0 {
        return Precision::ONE;
    }
    let exponent = magnitude.log10().floor() as i32 - 4;
    Precision::new(10f64.powi(exponent.clamp(-9, 9))).unwrap_or(Precision::ONE)
}
