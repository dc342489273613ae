//! Contribution bounding (DESIGN.md §3.1): the released aggregation `GROUP BY G` over a
//! private relation becomes a plain DataFusion plan whose output changes by at most a
//! known amount when one person is added or removed.
//!
//! 1. Per person and group: `GROUP BY person, G`, each aggregate's contribution capped —
//!    `COUNT(*)` at L∞ rows, a person's `SUM` total clamped to `[min(0, L∞·lo),
//!    max(0, L∞·hi)]` in fixed-point units, `AVG` as a capped numerator over a capped
//!    count, a conditional person count as 0 or 1.
//! 2. Groups per person: when some key is not constant per person, keep each person's
//!    first L0 groups in the order of a keyed hash (`ROW_NUMBER() OVER (PARTITION BY
//!    person ORDER BY keyed_hash(person, keys), keys) <= L0`, `keyed_hash.rs`).
//! 3. Across persons: `GROUP BY G`, summing contributions, with the number of persons per
//!    group (for key selection and suppression).
//!
//! A quantile needs more than one number per group: each quantile's value gets a
//! histogram plan ([`HistogramPlan`]) — per group, how many values fall on each candidate
//! of its grid, each person's values capped at L∞ per group and their groups at L0 as
//! above (the same keyed hash, so the same groups).
//!
//! No custom operators: the result can run anywhere DataFusion plans run.

use carelens_privacy::{Bounds, Grid, Precision};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DataFusionError, ScalarValue};
use datafusion::functions::expr_fn::{coalesce, greatest, isnan, least};
use datafusion::functions_aggregate::expr_fn::{count, max, sum};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_window::expr_fn::{dense_rank, row_number};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, WindowFrame, WindowFrameBound,
    WindowFrameUnits, col, lit, try_cast, when,
};

use crate::analysis::{AggKind, Bounded, DpAggregation, Quantile};
use crate::guard::guard_plan;
use crate::keyed_hash::keyed_hash;

/// Name of the column holding the number of persons per group.
pub(crate) const PERSONS: &str = "__persons";

/// One noisy column of the bounded aggregation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    /// What it measures, for the charge and `explain`.
    pub label: String,
    /// The most one person changes it in one group, in integer units.
    pub per_group: u64,
    /// The integer unit (1 for counts).
    pub precision: Precision,
    /// Whether it is a count (rounded and suppressed by the disclosure policy).
    pub is_count: bool,
    /// The range its true value cannot leave whatever the data (a sum of non-negative
    /// values is never negative); the released value is clamped to it.
    pub range: (f64, f64),
}

/// Where an aggregate's exact value is found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Source {
    /// The number of persons in the group.
    Persons,
    /// A part.
    Part(usize),
    /// A mean: a sum part over a count part, of values clamped to `range`.
    Mean {
        /// The sum part.
        sum: usize,
        /// The count part.
        count: usize,
        /// The clamp of the values, so also the range of their mean.
        range: (f64, f64),
    },
    /// A quantile ([`BoundedPlan::quantiles`]).
    Quantile(usize),
}

/// One released quantile.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuantilePart {
    /// What it measures, for the charge and `explain`.
    pub label: String,
    /// The histogram it is read from ([`BoundedPlan::histograms`]).
    pub histogram: usize,
    /// Which quantile.
    pub alpha: f64,
}

/// Per group, how many values of one bounded value fall on each candidate of its grid.
#[derive(Debug, Clone)]
pub(crate) struct HistogramPlan {
    /// Outputs the keys, then the candidate's index (`Int64`), then the number of values
    /// on it; only candidates some value falls on.
    pub plan: LogicalPlan,
    /// The candidates.
    pub grid: Grid,
    /// L∞: the most values one person has in one group.
    pub values_per_person: u32,
    /// The part of the bounded plan counting each group's values as this plan counts them
    /// (not released: a noisy lower bound on it decides where the intervals' ends may aim).
    pub values_part: usize,
}

/// The bounded plan and how to read it.
#[derive(Debug, Clone)]
pub(crate) struct BoundedPlan {
    /// Outputs the keys, then one column per part, then [`PERSONS`].
    pub plan: LogicalPlan,
    /// The noisy columns.
    pub parts: Vec<Part>,
    /// Per aggregate of the query, where its value comes from.
    pub sources: Vec<Source>,
    /// The quantiles, in the order of the query's aggregates.
    pub quantiles: Vec<QuantilePart>,
    /// One histogram per distinct quantile argument (several quantiles of one value share
    /// one).
    pub histograms: Vec<HistogramPlan>,
}

/// Contribution limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// L0: groups per person.
    pub max_groups: u32,
    /// L∞: rows per person per group.
    pub max_rows: u32,
    /// Whether L0 must be enforced (some key is not constant per person).
    pub sample_groups: bool,
}

impl BoundedPlan {
    /// Each noisy part's label, then each quantile's, in order (the charge's item
    /// labels).
    pub fn part_labels(&self) -> impl Iterator<Item = String> + '_ {
        self.parts
            .iter()
            .map(|p| p.label.clone())
            .chain(self.quantiles.iter().map(|q| q.label.clone()))
    }
}

/// Builds the bounded plan of `dp` under `limits`; `secret` keys the group-sampling hash.
pub(crate) fn bound(
    dp: &DpAggregation,
    limits: Limits,
    secret: &str,
) -> Result<BoundedPlan, DataFusionError> {
    let input = dp.aggregate.input.as_ref();
    let schema = input.schema();
    let person = dp
        .input
        .person()
        .ok_or_else(|| DataFusionError::Internal("no person column".into()))?;
    let person_col = Expr::Column(Column::from(schema.qualified_field(person)));
    let n_keys = dp.aggregate.group_expr.len();
    let keys: Vec<String> = (0..n_keys).map(|i| format!("__k{i}")).collect();
    let l_inf = i64::from(limits.max_rows);

    // Step 1: the values each row contributes.
    let mut rows = vec![person_col.clone().alias("__person")];
    for (i, g) in dp.aggregate.group_expr.iter().enumerate() {
        rows.push(g.clone().alias(&keys[i]));
    }
    let mut per_person = Vec::new();
    let mut contributions = Vec::new();
    let mut parts = Vec::new();
    let mut sources = Vec::new();
    let mut quantiles = Vec::new();
    let mut histograms: Vec<(Bounded, HistogramPlan)> = Vec::new();
    let l_inf_values = u64::from(limits.max_rows);
    for (j, kind) in dp.aggregates.iter().enumerate() {
        let label = dp.aggregate.aggr_expr[j].schema_name().to_string();
        let v = format!("__v{j}");
        let n = format!("__n{j}");
        let s = format!("__s{j}");
        let count_part = |label: String, per_group: u64| Part {
            label,
            per_group,
            precision: Precision::ONE,
            is_count: true,
            range: (0.0, f64::INFINITY),
        };
        match kind {
            AggKind::Rows => {
                per_person.push(count(lit(1i64)).alias(&n));
                contributions.push(least(vec![col(&n), lit(l_inf)]).alias(part_name(parts.len())));
                sources.push(Source::Part(parts.len()));
                parts.push(count_part(label, limits.max_rows.into()));
            }
            AggKind::NonNull(e) => {
                rows.push(e.clone().alias(&v));
                per_person.push(count(col(&v)).alias(&n));
                contributions.push(least(vec![col(&n), lit(l_inf)]).alias(part_name(parts.len())));
                sources.push(Source::Part(parts.len()));
                parts.push(count_part(label, limits.max_rows.into()));
            }
            AggKind::Persons(None) => sources.push(Source::Persons),
            AggKind::Persons(Some(e)) => {
                rows.push(
                    when(e.clone().is_not_null(), lit(1i64))
                        .otherwise(lit(0i64))?
                        .alias(&v),
                );
                per_person.push(max(col(&v)).alias(&n));
                contributions
                    .push(coalesce(vec![col(&n), lit(0i64)]).alias(part_name(parts.len())));
                sources.push(Source::Part(parts.len()));
                parts.push(count_part(label, 1));
            }
            AggKind::Sum(b) => {
                let FixedPoint {
                    value,
                    magnitude,
                    total,
                    range,
                } = fixed_point(b, limits.max_rows)?;
                rows.push(value.alias(&v));
                per_person.push(sum(col(&v)).alias(&s));
                contributions.push(
                    least(vec![
                        greatest(vec![coalesce(vec![col(&s), lit(0i64)]), lit(total.0)]),
                        lit(total.1),
                    ])
                    .alias(part_name(parts.len())),
                );
                sources.push(Source::Part(parts.len()));
                parts.push(Part {
                    label,
                    per_group: magnitude.saturating_mul(limits.max_rows.into()),
                    precision: b.precision,
                    is_count: b.counts,
                    range: sum_range(range),
                });
            }
            AggKind::Avg(b) => {
                let FixedPoint {
                    value,
                    magnitude,
                    total,
                    range,
                } = fixed_point(b, limits.max_rows)?;
                rows.push(value.alias(&v));
                per_person.push(sum(col(&v)).alias(&s));
                per_person.push(count(col(&v)).alias(&n));
                let capped = least(vec![col(&n), lit(l_inf)]);
                // mean_p · min(n, L∞), computed in floats (no integer overflow) and clamped
                // to the same range as a person's capped total, so the bound holds whatever
                // the arithmetic does: |mean_p · min(n, L∞)| ≤ L∞ · max|x|.
                let float = |e: Expr| try_cast(e, DataType::Float64);
                let mean_times_capped = float(coalesce(vec![col(&s), lit(0i64)]))
                    * float(capped.clone())
                    / float(col(&n));
                let numerator = when(
                    col(&n).gt(lit(0i64)),
                    clamp_to_int(mean_times_capped, total)?,
                )
                .otherwise(lit(0i64))?;
                let num = parts.len();
                contributions.push(numerator.alias(part_name(num)));
                parts.push(Part {
                    label: format!("{label} (sum)"),
                    per_group: magnitude.saturating_mul(limits.max_rows.into()),
                    precision: b.precision,
                    is_count: false,
                    range: sum_range(range),
                });
                contributions.push(capped.alias(part_name(num + 1)));
                parts.push(count_part(
                    format!("{label} (count)"),
                    limits.max_rows.into(),
                ));
                sources.push(Source::Mean {
                    sum: num,
                    count: num + 1,
                    range,
                });
            }
            AggKind::Quantile(Quantile { value, alpha }) => {
                let same = |b: &Bounded| {
                    b.expr == value.expr
                        && b.lo == value.lo
                        && b.hi == value.hi
                        && b.precision == value.precision
                };
                let histogram = match histograms.iter().position(|(b, _)| same(b)) {
                    Some(h) => h,
                    None => {
                        let values_part = parts.len();
                        let plan = histogram(dp, value, limits, secret, &person_col, values_part)?;
                        // Each group's number of values, capped per person as the histogram
                        // caps them (the same snapped value, the same L∞ and groups), so
                        // the part is exactly the histogram's total.
                        rows.push(snap(value, &plan.grid)?.alias(&v));
                        per_person.push(count(col(&v)).alias(&n));
                        contributions
                            .push(least(vec![col(&n), lit(l_inf)]).alias(part_name(values_part)));
                        parts.push(count_part(
                            format!(
                                "number of values of {label} (bounds its interval; not released)"
                            ),
                            l_inf_values,
                        ));
                        histograms.push((value.clone(), plan));
                        histograms.len() - 1
                    }
                };
                sources.push(Source::Quantile(quantiles.len()));
                quantiles.push(QuantilePart {
                    label,
                    histogram,
                    alpha: *alpha,
                });
            }
        }
    }
    let mut builder = LogicalPlanBuilder::from(input.clone()).project(rows)?;

    // Step 2: one row per person and group, contributions capped.
    let mut group = vec![col("__person")];
    group.extend(keys.iter().map(col));
    builder = builder.aggregate(group.clone(), per_person)?;
    let mut capped = group.clone();
    capped.extend(contributions);
    builder = builder.project(capped)?;

    // Step 3: at most L0 groups per person, those first in the order of the keyed hash
    // of the person and the keys. Ties (impossible between distinct groups but for a
    // collision of 64-bit hashes) fall back to the keys themselves, never to row order,
    // so the groups a person keeps depend only on that person's rows and the secret.
    if limits.sample_groups {
        let mut hashed = vec![col("__person")];
        hashed.extend(keys.iter().map(col));
        let mut order = vec![keyed_hash(secret, hashed).sort(true, true)];
        order.extend(keys.iter().map(|k| col(k).sort(true, true)));
        let rank = row_number()
            .partition_by(vec![col("__person")])
            .order_by(order)
            .build()?
            .alias("__rank");
        builder = keep_ranked_at_most(builder, rank, limits.max_groups)?;
    }

    // Step 4: across persons.
    let mut totals: Vec<Expr> = (0..parts.len())
        .map(|p| sum(col(part_name(p))).alias(part_name(p)))
        .collect();
    totals.push(count(lit(1i64)).alias(PERSONS));
    builder = builder.aggregate(keys.iter().map(col).collect::<Vec<_>>(), totals)?;
    Ok(BoundedPlan {
        // Every operation that can fail on some value — the query's and this rewrite's
        // own — answers NULL for that row instead (`guard.rs`).
        plan: guard_plan(builder.build()?)?,
        parts,
        sources,
        quantiles,
        histograms: histograms.into_iter().map(|(_, h)| h).collect(),
    })
}

/// The histogram plan of one quantile argument `value`:
///
/// 1. each row's value snapped onto the grid — the index of the nearest candidate, the
///    value clamped to its bounds first (NULL stays NULL and counts nowhere);
/// 2. per person, group and candidate, the number of the person's values on it;
/// 3. each person's values in a group capped at L∞: the person's candidates in the order
///    of a keyed hash of (person, keys, candidate), each keeping what is left of the L∞
///    allowance (`min(n, max(0, L∞ − before))`) — which values are kept depends only on
///    that person's rows and the secret;
/// 4. each person's groups capped at L0, in the order the bounded plan keeps them (the
///    same keyed hash of the person and the keys, ranked per group, not per row);
/// 5. across persons: per group and candidate, the number of values.
fn histogram(
    dp: &DpAggregation,
    value: &Bounded,
    limits: Limits,
    secret: &str,
    person_col: &Expr,
    values_part: usize,
) -> Result<HistogramPlan, DataFusionError> {
    let grid = Grid::new(value.lo, value.hi, value.precision.unit())
        .map_err(|e| DataFusionError::Plan(format!("the quantile's candidates: {e}")))?;
    let n_keys = dp.aggregate.group_expr.len();
    let keys: Vec<String> = (0..n_keys).map(|i| format!("__k{i}")).collect();
    let mut rows = vec![person_col.clone().alias("__person")];
    for (i, g) in dp.aggregate.group_expr.iter().enumerate() {
        rows.push(g.clone().alias(&keys[i]));
    }
    rows.push(snap(value, &grid)?.alias("__bin"));
    let mut builder =
        LogicalPlanBuilder::from(dp.aggregate.input.as_ref().clone()).project(rows)?;

    let mut person_keys = vec![col("__person")];
    person_keys.extend(keys.iter().map(col));
    let mut per_bin = person_keys.clone();
    per_bin.push(col("__bin"));
    // `count(__bin)`: a NULL value's row makes a (person, keys) row with nothing on it,
    // so the person's groups are the bounded plan's groups.
    builder = builder.aggregate(per_bin.clone(), vec![count(col("__bin")).alias("__n")])?;

    let mut order = vec![keyed_hash(secret, per_bin).sort(true, true)];
    order.push(col("__bin").sort(true, true));
    let before_and_this = Expr::from(WindowFunction::new(sum_udaf(), vec![col("__n")]))
        .partition_by(person_keys.clone())
        .order_by(order)
        .window_frame(WindowFrame::new_bounds(
            WindowFrameUnits::Rows,
            WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
            WindowFrameBound::CurrentRow,
        ))
        .build()?
        .alias("__upto");
    builder = builder.window(vec![before_and_this])?;
    let l_inf = i64::from(limits.max_rows);
    let before = col("__upto") - col("__n");
    let kept = least(vec![
        col("__n"),
        greatest(vec![lit(l_inf) - before, lit(0i64)]),
    ]);
    let mut capped = person_keys.clone();
    capped.push(col("__bin"));
    capped.push(kept.alias("__kept"));
    builder = builder.project(capped)?;

    if limits.sample_groups {
        let mut order = vec![keyed_hash(secret, person_keys.clone()).sort(true, true)];
        order.extend(keys.iter().map(|k| col(k).sort(true, true)));
        let rank = dense_rank()
            .partition_by(vec![col("__person")])
            .order_by(order)
            .build()?
            .alias("__rank");
        builder = keep_ranked_at_most(builder, rank, limits.max_groups)?;
    }

    let mut group: Vec<Expr> = keys.iter().map(col).collect();
    group.push(col("__bin"));
    builder = builder
        .filter(col("__bin").is_not_null())?
        .aggregate(group, vec![sum(col("__kept")).alias("__values")])?;
    Ok(HistogramPlan {
        plan: guard_plan(builder.build()?)?,
        grid,
        values_per_person: limits.max_rows,
        values_part,
    })
}

/// A value's candidate index on `grid`: clamped to the index range before rounding and the
/// cast, so no value can make either fail; NULL and NaN are NULL (`clamp_to_int`).
fn snap(value: &Bounded, grid: &Grid) -> Result<Expr, DataFusionError> {
    let last = i64::try_from(grid.len() - 1).unwrap_or(i64::MAX);
    let x = try_cast(value.expr.clone(), DataType::Float64);
    let position = (x - lit(grid.lo())) / lit(grid.step());
    clamp_to_int(position, (0, last))
}

/// A float clamped to `[lo, hi]`, rounded, as an integer; NULL for NULL and NaN. The clamp
/// comes before the conversion, so no value can make the cast fail: a query must not be
/// able to fail, or not, depending on one person's data. NULL and NaN are tested first
/// because `GREATEST` and `LEAST` skip NULLs (`GREATEST(NULL, 0)` is 0) and order NaN
/// above every number: clamped, a NULL would count as `lo` — in a mean's count, a sum
/// with `lo ≠ 0`, a quantile's lowest candidate — and a NaN as `hi`.
fn clamp_to_int(x: Expr, (lo, hi): (i64, i64)) -> Result<Expr, DataFusionError> {
    let clamped = least(vec![
        greatest(vec![x.clone(), lit(lo as f64)]),
        lit(hi as f64),
    ]);
    let rounded = try_cast(
        datafusion::functions::expr_fn::round(vec![clamped]),
        DataType::Int64,
    );
    when(
        x.clone().is_null().or(isnan(x)),
        lit(ScalarValue::Int64(None)),
    )
    .otherwise(rounded)
}

/// Name of part `p`'s column.
pub(crate) fn part_name(p: usize) -> String {
    format!("__c{p}")
}

/// A bounded value's fixed-point form: the row's value clamped to its bounds in integer
/// units, the bound's magnitude, the clamp of one person's total
/// (`[min(0, L∞·lo), max(0, L∞·hi)]`) and the value's range.
fn fixed_point(b: &Bounded, max_rows: u32) -> Result<FixedPoint, DataFusionError> {
    let bounds = Bounds::new(b.lo, b.hi)
        .and_then(|bounds| bounds.to_fixed(b.precision))
        .map_err(|e| DataFusionError::Plan(format!("bounds of a sum: {e}")))?;
    let unit = b.precision.unit();
    let x = try_cast(b.expr.clone(), DataType::Float64);
    let scaled = if unit <= 1.0 {
        x * lit((1.0 / unit).round())
    } else {
        x / lit(unit)
    };
    let l = i64::from(max_rows);
    Ok(FixedPoint {
        value: clamp_to_int(scaled, (bounds.lo(), bounds.hi()))?,
        magnitude: bounds.magnitude(),
        total: (
            bounds.lo().saturating_mul(l).min(0),
            bounds.hi().saturating_mul(l).max(0),
        ),
        range: (bounds.lo() as f64 * unit, bounds.hi() as f64 * unit),
    })
}

/// A bounded value in integer units of its precision.
struct FixedPoint {
    /// The row's value, clamped and in units.
    value: Expr,
    /// The largest |value| in units.
    magnitude: u64,
    /// The range of one person's total over L∞ rows, in units.
    total: (i64, i64),
    /// The range of one value in the value's own scale.
    range: (f64, f64),
}

/// The range of a sum of any number of values in `value`: it has the signs they have.
fn sum_range(value: (f64, f64)) -> (f64, f64) {
    (
        if value.0 >= 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        },
        if value.1 <= 0.0 { 0.0 } else { f64::INFINITY },
    )
}

/// The rows of `builder` whose `rank` (a window expression aliased `__rank`) is at most
/// `max_groups`, with the plan's columns as before.
fn keep_ranked_at_most(
    builder: LogicalPlanBuilder,
    rank: Expr,
    max_groups: u32,
) -> Result<LogicalPlanBuilder, DataFusionError> {
    let kept: Vec<Expr> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| col(f.name()))
        .collect();
    builder
        .window(vec![rank])?
        .filter(col("__rank").lt_eq(lit(i64::from(max_groups))))?
        .project(kept)
}
