//! Release: exact bounded aggregates in, protected result out.
//!
//! 1. The group keys: every combination of the keys' public domains (empty groups
//!    included, δ = 0), or DP key selection on the noisy person counts.
//! 2. Noise on every part (carelens-privacy, opendp samplers).
//! 3. The disclosure policy, on noisy values only: a group whose noisy person count is at
//!    or below the threshold is suppressed whole; counts are rounded.
//! 4. Post-processing: the query's own projections, `HAVING`, `ORDER BY` and `LIMIT` run
//!    in DataFusion over a table of the protected values (suppressed cells are NULL).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use carelens_privacy::{
    Alpha, COUNT_BETA, Calibration, Cell, CellStatus, DisclosurePolicy, ErrorModel, INTERVAL_BETA,
    NoiseDistribution, Noisy, Released,
};
use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, Projection,
};
use serde_json::Value;

use crate::QueryError;
use crate::analysis::{AggKind, DpAggregation, unalias};
use crate::derived::{Derived, DerivedError};
use crate::result::{CellMeta, ColumnMeta, ColumnRole, FORMAT, PrivacySummary, Release};
use crate::rewrite::{BoundedPlan, Limits, Source};

/// Most groups a public-domain release may have before key selection is used instead.
pub const MAX_PUBLIC_GROUPS: usize = 10_000;

/// The column carrying each released row's group through post-processing.
const GROUP: &str = "__carelens_group";

/// Everything the release step needs from planning.
pub(crate) struct ReleaseInput<'a> {
    pub dp: &'a DpAggregation,
    pub bounded: &'a BoundedPlan,
    pub mechanisms: &'a Calibration,
    pub limits: Limits,
    pub domains: Option<Vec<Vec<ScalarValue>>>,
    pub policy: DisclosurePolicy,
    pub policy_name: String,
    pub analysed: &'a LogicalPlan,
    pub run_limits: crate::RunLimits,
    /// When the release began: its plans and mechanisms share one time limit from here.
    pub started: tokio::time::Instant,
}

/// Runs the bounded plan, adds noise, applies the disclosure policy and the query's
/// post-processing.
pub(crate) async fn release(
    ctx: &SessionContext,
    input: ReleaseInput<'_>,
) -> Result<Release, QueryError> {
    let dp = input.dp;
    let n_keys = dp.aggregate.group_expr.len();
    let n_parts = input.bounded.parts.len();
    let batches = crate::run::collect(
        ctx,
        input.bounded.plan.clone(),
        input.run_limits,
        input.started,
    )
    .await?;

    // Exact values by key.
    let mut exact: HashMap<Vec<ScalarValue>, (i64, Vec<i64>)> = HashMap::new();
    let mut observed: Vec<Vec<ScalarValue>> = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let key = (0..n_keys)
                .map(|k| ScalarValue::try_from_array(batch.column(k), row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(QueryError::Execute)?;
            let parts = (0..n_parts)
                .map(|p| int_at(batch.column(n_keys + p), row))
                .collect::<Vec<_>>();
            let persons = int_at(batch.column(n_keys + n_parts), row);
            observed.push(key.clone());
            exact.insert(key, (persons, parts));
        }
    }

    // Which groups, and their noisy person counts.
    let mut notes = Vec::new();
    let (groups, persons): (Vec<Vec<ScalarValue>>, Vec<Option<Noisy>>) = match (
        &input.domains,
        &input.mechanisms.key_selection,
    ) {
        (Some(domains), _) => {
            // Domain values in the keys' own types (a `Utf8` literal vs a `Utf8View` key).
            let typed = domains
                .iter()
                .enumerate()
                .map(|(k, values)| {
                    let data_type = dp.aggregate.schema.field(k).data_type();
                    values
                        .iter()
                        .map(|v| v.cast_to(data_type))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(QueryError::Execute)?;
            let groups = cartesian(&typed);
            // No person-count mechanism when nothing uses the counts (calibration's
            // `PersonCounts::Unused`): nothing is measured, nothing is suppressed on them.
            let noisy = match &input.mechanisms.persons {
                Some(mechanism) => {
                    let counts: Vec<i64> = groups
                        .iter()
                        .map(|g| exact.get(g).map_or(0, |e| e.0))
                        .collect();
                    mechanism.release(&counts)?.into_iter().map(Some).collect()
                }
                None => vec![None; groups.len()],
            };
            if n_keys > 0 {
                notes.push(format!(
                    "every combination of the keys' public values is shown ({} groups), including empty ones; keys outside the public domains are not released",
                    groups.len()
                ));
            }
            (groups, noisy)
        }
        (None, Some(selection)) => {
            let counts: Vec<i64> = observed
                .iter()
                .map(|g| exact.get(g).map_or(0, |e| e.0))
                .collect();
            let kept = selection.select(&counts)?;
            let mut groups = Vec::new();
            let mut noisy = Vec::new();
            let mut selected: Vec<(Vec<ScalarValue>, Noisy)> = observed
                .into_iter()
                .zip(kept)
                .filter_map(|(g, k)| k.map(|n| (g, n)))
                .collect();
            // In key order, not the order the hash aggregation happened to produce.
            selected.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
            for (g, n) in selected {
                groups.push(g);
                noisy.push(Some(n));
            }
            notes.push(format!(
                "the group keys are not all public, so a group is shown only if its noisy person count reaches {} (DP key selection); groups with fewer people are left out",
                selection.threshold()
            ));
            (groups, noisy)
        }
        (None, None) => return Err(QueryError::Internal("no key mechanism")),
    };

    // Noise per part.
    let mut noisy_parts: Vec<Vec<Noisy>> = Vec::with_capacity(n_parts);
    for (p, mechanism) in input.mechanisms.parts.iter().enumerate() {
        let values: Vec<i64> = groups
            .iter()
            .map(|g| exact.get(g).map_or(0, |e| e.1[p]))
            .collect();
        noisy_parts.push(mechanism.release(&values)?);
    }
    drop(exact);

    // Each quantile in each group, from its histogram (sparse: only the candidates some
    // value falls on; an empty group's histogram is all zeros).
    let quantile_values = release_quantiles(ctx, &input, &groups, &noisy_parts).await?;

    // Disclosure control, on noisy values only.
    let policy = input.policy;
    let persons_dist = input.mechanisms.persons_distribution();
    if persons_dist.is_none() && input.bounded.sources.contains(&Source::Persons) {
        return Err(QueryError::Internal(
            "the query releases a person count that was not calibrated",
        ));
    }
    let populations = populations(&dp.aggregates);
    let mut cells: Vec<Vec<Cell>> = Vec::with_capacity(groups.len());
    for (g, persons_noisy) in persons.iter().enumerate() {
        // Without a person count the policy suppresses nothing (else there would be one).
        let suppressed = persons_noisy.is_some_and(|n| policy.suppresses(n));
        let count_cell = |noisy: Noisy, dist: NoiseDistribution| {
            if suppressed {
                Cell::Suppressed
            } else {
                policy.count_cell(noisy, dist)
            }
        };
        let part_cell = |p: usize| {
            let part = &input.bounded.parts[p];
            let noisy = noisy_parts[p][g];
            let dist = input.mechanisms.parts[p].distribution();
            if part.is_count {
                count_cell(noisy, dist)
            } else {
                policy
                    .sum_cell(suppressed, noisy, part.precision, dist)
                    .within(part.range.0, part.range.1)
            }
        };
        let mut row: Vec<Cell> = input
            .bounded
            .sources
            .iter()
            .map(|s| match s {
                Source::Persons => match (persons_noisy, persons_dist) {
                    (Some(noisy), Some(dist)) => count_cell(*noisy, dist),
                    // Not reached: checked above.
                    _ => Cell::Suppressed,
                },
                Source::Part(p) => part_cell(*p),
                Source::Mean { sum, count, range } => {
                    Cell::ratio(&part_cell(*sum), &part_cell(*count), 1.0).within(range.0, range.1)
                }
                // A quantile of a group too small to show is not shown: like a sum, it is
                // suppressed by the group's noisy person count.
                Source::Quantile(_) if suppressed => Cell::Suppressed,
                Source::Quantile(q) => {
                    let released = quantile_values[*q][g];
                    Cell::Released(Released {
                        value: released.value,
                        error: ErrorModel::Rank {
                            rank_error: input.mechanisms.quantiles[*q]
                                .value
                                .rank_error(INTERVAL_BETA),
                            low: released.low,
                            high: released.high,
                        },
                    })
                }
            })
            .collect();
        // Secondary suppression: an aggregate over the people a suppressed count counts
        // is suppressed with it (a sum over three people tells their number).
        for (i, population) in populations.iter().enumerate() {
            if let Some(j) = *population
                && matches!(row[j], Cell::Suppressed)
            {
                row[i] = Cell::Suppressed;
            }
        }
        cells.push(row);
    }
    if policy.suppress_at_or_below.is_some() && populations.iter().any(Option::is_some) {
        notes.push(
            "an aggregate over the same people as a person count (the same CASE condition) is \
             suppressed when that count is"
                .to_owned(),
        );
    }
    if policy.suppress_at_or_below.is_some() {
        notes.push(format!(
            "cells are suppressed ({}) when the group's noisy person count, or the noisy count itself, is {} or fewer",
            policy.marker.as_str(),
            policy.suppress_at_or_below.unwrap_or_default()
        ));
    }

    // The protected table, shaped like the aggregation's output.
    let released = released_batch(dp, &groups, &cells)?;
    let post = post_process(ctx, input.analysed, released).await?;
    let roles: Vec<ColumnRole> = dp
        .aggregates
        .iter()
        .map(|a| match a {
            AggKind::Rows | AggKind::NonNull(_) | AggKind::Persons(_) => ColumnRole::Count,
            // A sum of whole numbers ≥ 0 counts events: released as a count.
            AggKind::Sum(b) if b.counts => ColumnRole::Count,
            AggKind::Sum(_) => ColumnRole::Sum,
            AggKind::Avg(_) => ColumnRole::Mean,
            AggKind::Quantile(_) => ColumnRole::Quantile,
        })
        .collect();
    build_release(post, n_keys, &roles, &cells, input, notes)
}

/// One group's released quantile and its 95% interval.
#[derive(Debug, Clone, Copy)]
struct QuantileValue {
    value: f64,
    low: f64,
    high: f64,
}

/// Every quantile of the release in every group (`[quantile][group]`): each histogram
/// plan run once, each group's histogram read from it (zeros where no value fell), each
/// quantile released by its mechanism. The quantiles of one value in one group are then
/// put in increasing order of α — post-processing, which costs nothing and keeps deciles
/// from crossing.
async fn release_quantiles(
    ctx: &SessionContext,
    input: &ReleaseInput<'_>,
    groups: &[Vec<ScalarValue>],
    noisy_parts: &[Vec<Noisy>],
) -> Result<Vec<Vec<QuantileValue>>, QueryError> {
    let bounded = input.bounded;
    let n_keys = input.dp.aggregate.group_expr.len();
    let mut values: Vec<Vec<QuantileValue>> =
        vec![Vec::with_capacity(groups.len()); bounded.quantiles.len()];
    if bounded.quantiles.is_empty() {
        return Ok(values);
    }
    let released: Arc<HashSet<Vec<ScalarValue>>> = Arc::new(groups.iter().cloned().collect());
    for (h, histogram) in bounded.histograms.iter().enumerate() {
        let readers: Vec<usize> = (0..bounded.quantiles.len())
            .filter(|q| bounded.quantiles[*q].histogram == h)
            .collect();
        if readers.is_empty() {
            continue;
        }
        // Only the released groups' rows are kept as the plan's batches stream past: what
        // is held does not grow with the groups key selection left out.
        let last = histogram.grid.len() - 1;
        let fold = {
            let released = Arc::clone(&released);
            move |sparse: &mut HashMap<Vec<ScalarValue>, Vec<(usize, u64)>>, batch: RecordBatch| {
                for row in 0..batch.num_rows() {
                    let key = (0..n_keys)
                        .map(|k| ScalarValue::try_from_array(batch.column(k), row))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(QueryError::Execute)?;
                    if !released.contains(&key) {
                        continue;
                    }
                    let bin = usize::try_from(int_at(batch.column(n_keys), row))
                        .unwrap_or(0)
                        .min(last);
                    let n = u64::try_from(int_at(batch.column(n_keys + 1), row)).unwrap_or(0);
                    sparse.entry(key).or_default().push((bin, n));
                }
                Ok(())
            }
        };
        let sparse = crate::run::collect_with(
            ctx,
            histogram.plan.clone(),
            input.run_limits,
            input.started,
            HashMap::new(),
            fold,
        )
        .await?;
        // A lower bound on each group's number of values, right with probability at least
        // 1 − COUNT_BETA: its noisy count less the noise's half-width at 2·COUNT_BETA
        // (two-sided, so each side misses with at most COUNT_BETA).
        let values_part = histogram.values_part;
        let half_width = input.mechanisms.parts[values_part]
            .distribution()
            .half_width(Alpha::new(2.0 * COUNT_BETA).map_err(QueryError::Param)?)
            .map_err(QueryError::Accuracy)?;
        let mut counts = vec![0u64; histogram.grid.len()];
        for (g, group) in groups.iter().enumerate() {
            // The selections share the release's time limit with its plans.
            if input.started.elapsed() >= input.run_limits.time {
                return Err(QueryError::TimeLimit(input.run_limits.time));
            }
            counts.iter_mut().for_each(|c| *c = 0);
            for (bin, n) in sparse.get(group).map(Vec::as_slice).unwrap_or_default() {
                counts[*bin] = counts[*bin].saturating_add(*n);
            }
            let at_least = u64::try_from(
                noisy_parts[values_part][g]
                    .value()
                    .saturating_sub(i64::try_from(half_width).unwrap_or(i64::MAX)),
            )
            .unwrap_or(0);
            let released = readers
                .iter()
                .map(|q| input.mechanisms.quantiles[*q].release(&counts, at_least))
                .collect::<Result<Vec<_>, _>>()
                .map_err(QueryError::Quantile)?;
            let mut by_alpha: Vec<(usize, (f64, f64, f64))> =
                readers.iter().copied().zip(released).collect();
            by_alpha.sort_by(|a, b| {
                bounded.quantiles[a.0]
                    .alpha
                    .total_cmp(&bounded.quantiles[b.0].alpha)
            });
            let ordered: Vec<(f64, f64, f64)> = by_alpha.iter().map(|(_, r)| *r).collect();
            for ((q, _), value) in by_alpha.iter().zip(in_order(&ordered)) {
                values[*q].push(value);
            }
        }
    }
    Ok(values)
}

/// Quantiles of one value in one group, released as `(value, low end, high end)` in
/// increasing order of α, put in order (post-processing): the values sorted, and interval
/// i from the lowest low end of quantiles i and above to the highest high end of
/// quantiles i and below, widened to hold its value. Each interval holds its own
/// quantile's released interval, so it keeps that interval's coverage (sorting the ends
/// would not: the i-th smallest low end may be another quantile's, which makes interval
/// i miss whenever any lower quantile's low end does), and the ends rise with α.
fn in_order(released: &[(f64, f64, f64)]) -> Vec<QuantileValue> {
    let mut values: Vec<f64> = released.iter().map(|r| r.0).collect();
    values.sort_by(f64::total_cmp);
    let mut lows: Vec<f64> = released.iter().map(|r| r.1).collect();
    for i in (0..lows.len().saturating_sub(1)).rev() {
        lows[i] = lows[i].min(lows[i + 1]);
    }
    let mut high = f64::NEG_INFINITY;
    values
        .into_iter()
        .zip(lows)
        .zip(released)
        .map(|((value, low), r)| {
            high = high.max(r.2);
            QuantileValue {
                value,
                low: low.min(value),
                high: high.max(value),
            }
        })
        .collect()
}

/// For each aggregate, the person count in the same query over the same people — a
/// `COUNT(DISTINCT CASE WHEN c THEN person END)` whose condition `c` is the aggregate's own
/// (`CASE WHEN c THEN … [ELSE 0 | NULL] END`) — if there is one.
fn populations(aggregates: &[AggKind]) -> Vec<Option<usize>> {
    let argument = |a: &AggKind| match a {
        AggKind::Rows | AggKind::Persons(None) => None,
        AggKind::NonNull(e) | AggKind::Persons(Some(e)) => Some(e.clone()),
        AggKind::Sum(b) | AggKind::Avg(b) => Some(b.expr.clone()),
        AggKind::Quantile(q) => Some(q.value.expr.clone()),
    };
    let conditions: Vec<Option<Expr>> = aggregates
        .iter()
        .map(|a| argument(a).and_then(|e| condition(&e)))
        .collect();
    aggregates
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let wanted = conditions[i].as_ref()?;
            conditions.iter().enumerate().position(|(j, c)| {
                j != i
                    && matches!(aggregates[j], AggKind::Persons(Some(_)))
                    && c.as_ref() == Some(wanted)
            })
        })
        .collect()
}

/// `c` of `CASE WHEN c THEN v [ELSE 0 | ELSE NULL] END` (under casts and aliases).
fn condition(expr: &Expr) -> Option<Expr> {
    match unalias(expr) {
        Expr::Cast(c) => condition(&c.expr),
        Expr::TryCast(c) => condition(&c.expr),
        Expr::Case(case) if case.expr.is_none() && case.when_then_expr.len() == 1 => {
            let nothing = match case.else_expr.as_deref().map(unalias) {
                None => true,
                Some(Expr::Literal(v, _)) => {
                    v.is_null()
                        || v.cast_to(&DataType::Float64).ok()
                            == Some(ScalarValue::Float64(Some(0.0)))
                }
                Some(_) => false,
            };
            nothing.then(|| unalias(&case.when_then_expr[0].0).clone())
        }
        _ => None,
    }
}

/// A column's type as the wire format names it: one name for text however DataFusion
/// holds it (`Utf8View`, `LargeUtf8`, a dictionary of strings are all `Utf8`), so a
/// reader never has to know DataFusion's storage choices.
pub(crate) fn wire_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => "Utf8".to_owned(),
        DataType::Dictionary(_, values) => wire_type(values),
        other => other.to_string(),
    }
}

fn int_at(array: &ArrayRef, row: usize) -> i64 {
    if array.is_null(row) {
        return 0;
    }
    if let Some(a) = array.as_any().downcast_ref::<Int64Array>() {
        a.value(row)
    } else if let Some(a) = array.as_any().downcast_ref::<UInt64Array>() {
        i64::try_from(a.value(row)).unwrap_or(i64::MAX)
    } else {
        ScalarValue::try_from_array(array, row)
            .ok()
            .and_then(|v| v.cast_to(&DataType::Int64).ok())
            .and_then(|v| match v {
                ScalarValue::Int64(x) => x,
                _ => None,
            })
            .unwrap_or(0)
    }
}

/// Every combination of the domains, in order (the last key varies fastest).
fn cartesian(domains: &[Vec<ScalarValue>]) -> Vec<Vec<ScalarValue>> {
    let mut out: Vec<Vec<ScalarValue>> = vec![Vec::new()];
    for domain in domains {
        let mut next = Vec::with_capacity(out.len() * domain.len());
        for prefix in &out {
            for v in domain {
                let mut g = prefix.clone();
                g.push(v.clone());
                next.push(g);
            }
        }
        out = next;
    }
    out
}

/// The released values as one batch: the aggregation's columns (keys, then aggregates,
/// suppressed cells NULL), then the group index.
fn released_batch(
    dp: &DpAggregation,
    groups: &[Vec<ScalarValue>],
    cells: &[Vec<Cell>],
) -> Result<RecordBatch, QueryError> {
    let schema = dp.aggregate.schema.as_ref();
    let n_keys = dp.aggregate.group_expr.len();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let mut fields = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let array: ArrayRef = if i < n_keys {
            let values: Vec<ScalarValue> = groups.iter().map(|g| g[i].clone()).collect();
            if values.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(values).map_err(QueryError::Execute)?
            }
        } else {
            let a = i - n_keys;
            let values: Float64Array = cells.iter().map(|row| row[a].value()).collect();
            cast(&values, field.data_type()).map_err(|e| QueryError::Execute(e.into()))?
        };
        let array = if array.data_type() == field.data_type() {
            array
        } else {
            cast(&array, field.data_type()).map_err(|e| QueryError::Execute(e.into()))?
        };
        fields.push(Field::new(format!("c{i}"), field.data_type().clone(), true));
        arrays.push(array);
    }
    fields.push(Field::new(GROUP, DataType::UInt64, false));
    arrays.push(Arc::new(UInt64Array::from_iter_values(
        0..groups.len() as u64,
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| QueryError::Execute(e.into()))
}

/// The query's post-processing, run over the protected values.
struct PostProcessed {
    batches: Vec<RecordBatch>,
    plan: LogicalPlan,
    tracked: bool,
}

async fn post_process(
    ctx: &SessionContext,
    analysed: &LogicalPlan,
    released: RecordBatch,
) -> Result<PostProcessed, QueryError> {
    let schema = released.schema();
    let table =
        MemTable::try_new(schema.clone(), vec![vec![released]]).map_err(QueryError::Execute)?;
    let scan = LogicalPlanBuilder::scan("__released", provider_as_source(Arc::new(table)), None)
        .map_err(QueryError::Execute)?
        .build()
        .map_err(QueryError::Execute)?;
    let tracked = !contains_distinct(analysed);
    let plan = replace_aggregation(analysed, &scan, tracked)?;
    let batches = ctx
        .execute_logical_plan(plan.clone())
        .await
        .map_err(QueryError::Execute)?
        .collect()
        .await
        .map_err(QueryError::Execute)?;
    Ok(PostProcessed {
        batches,
        plan,
        tracked,
    })
}

fn contains_distinct(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => false,
        LogicalPlan::Distinct(_) => true,
        other => other.inputs().iter().any(|i| contains_distinct(i)),
    }
}

/// The analysed plan with its released aggregation replaced by the protected table,
/// qualified and named as the aggregation's output was; with `tracked`, every projection
/// above also carries the group index.
fn replace_aggregation(
    plan: &LogicalPlan,
    scan: &LogicalPlan,
    tracked: bool,
) -> Result<LogicalPlan, QueryError> {
    let df = |e| QueryError::Execute(e);
    match plan {
        LogicalPlan::Aggregate(aggregate) => {
            let mut exprs: Vec<Expr> = aggregate
                .schema
                .iter()
                .enumerate()
                .map(|(i, (qualifier, field))| {
                    Expr::Column(Column::new(Some("__released"), format!("c{i}")))
                        .alias_qualified(qualifier.cloned(), field.name())
                })
                .collect();
            if tracked {
                exprs.push(Expr::Column(Column::new(Some("__released"), GROUP)).alias(GROUP));
            }
            LogicalPlanBuilder::from(scan.clone())
                .project(exprs)
                .and_then(|b| b.build())
                .map_err(df)
        }
        LogicalPlan::Projection(p) => {
            let input = replace_aggregation(&p.input, scan, tracked)?;
            let mut exprs = p.expr.clone();
            if tracked {
                exprs.push(Expr::Column(Column::new_unqualified(GROUP)));
            }
            Projection::try_new(exprs, Arc::new(input))
                .map(LogicalPlan::Projection)
                .map_err(df)
        }
        other => {
            let inputs = other
                .inputs()
                .into_iter()
                .map(|i| replace_aggregation(i, scan, tracked))
                .collect::<Result<Vec<_>, _>>()?;
            other
                .with_new_exprs(other.expressions(), inputs)
                .map_err(df)
        }
    }
}

/// A derived column of the form `per · a / b` (optionally rounded) over two released
/// aggregates: a rate per 1,000, a percentage, a ratio. Its interval comes from the two
/// cells' noise (see `Cell::ratio`), widened by the rounding.
#[derive(Debug, Clone, PartialEq)]
struct Ratio {
    num: usize,
    den: usize,
    per: f64,
    rounding: f64,
}

impl Ratio {
    fn cell(&self, row: &[Cell], n_keys: usize) -> Cell {
        match (row.get(self.num - n_keys), row.get(self.den - n_keys)) {
            (Some(a), Some(b)) => Cell::ratio(a, b, self.per),
            _ => Cell::Suppressed,
        }
    }
}

/// The aggregation outputs a derived result column reads, found at the projection that
/// computes it; `None` when they cannot all be traced.
fn sources_of(plan: &LogicalPlan, index: usize) -> Option<Vec<usize>> {
    match plan {
        LogicalPlan::Projection(p) => match unalias(p.expr.get(index)?) {
            Expr::Column(c) => sources_of(&p.input, p.input.schema().index_of_column(c).ok()?),
            expr => expr
                .column_refs()
                .into_iter()
                .map(|c| lineage(&p.input, p.input.schema().index_of_column(c).ok()?))
                .collect(),
        },
        LogicalPlan::Filter(f) => sources_of(&f.input, index),
        LogicalPlan::Sort(s) => sources_of(&s.input, index),
        LogicalPlan::Limit(l) => sources_of(&l.input, index),
        LogicalPlan::SubqueryAlias(a) => sources_of(&a.input, index),
        _ => None,
    }
}

/// The ratio a result column computes, if it is one: found at the projection that
/// computes it, with both operands traced to aggregates.
fn ratio_of(plan: &LogicalPlan, index: usize, n_keys: usize) -> Option<Ratio> {
    match plan {
        LogicalPlan::Projection(p) => match unalias(p.expr.get(index)?) {
            Expr::Column(c) => {
                ratio_of(&p.input, p.input.schema().index_of_column(c).ok()?, n_keys)
            }
            expr => {
                // Integer division truncates: such a column is bounded with its truncation
                // by `derived`, not as a real ratio.
                if !crate::derived::real_valued(expr, p.input.schema()) {
                    return None;
                }
                let (num, den, per, rounding) = ratio_shape(expr)?;
                let trace = |c: &Column| {
                    let j = lineage(&p.input, p.input.schema().index_of_column(c).ok()?)?;
                    (j >= n_keys).then_some(j)
                };
                Some(Ratio {
                    num: trace(&num)?,
                    den: trace(&den)?,
                    per,
                    rounding,
                })
            }
        },
        LogicalPlan::Filter(f) => ratio_of(&f.input, index, n_keys),
        LogicalPlan::Sort(s) => ratio_of(&s.input, index, n_keys),
        LogicalPlan::Limit(l) => ratio_of(&l.input, index, n_keys),
        LogicalPlan::SubqueryAlias(a) => ratio_of(&a.input, index, n_keys),
        _ => None,
    }
}

/// Aliases, casts, and the guards `total` puts around a division: `nullif(b, 0)` and
/// `CASE WHEN b = -1 THEN -(a) ELSE a / b END`, which equal `b` and `a / b` wherever
/// the division has a value.
fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        Expr::Cast(c) => strip(&c.expr),
        Expr::TryCast(c) => strip(&c.expr),
        Expr::ScalarFunction(f)
            if f.name() == "nullif" && f.args.len() == 2 && constant(&f.args[1]) == Some(0.0) =>
        {
            strip(&f.args[0])
        }
        Expr::Case(case) if case.expr.is_none() && case.when_then_expr.len() == 1 => {
            let (when, then) = &case.when_then_expr[0];
            // `b = -1`: the compared expression, if the constant is -1.
            let tested = match when.as_ref() {
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) if constant(right) == Some(-1.0) => Some(left.as_ref()),
                _ => None,
            };
            match (then.as_ref(), case.else_expr.as_deref()) {
                (
                    Expr::Negative(negated),
                    Some(
                        divided @ Expr::BinaryExpr(BinaryExpr {
                            left,
                            op: Operator::Divide,
                            right,
                        }),
                    ),
                ) if negated == left && tested.is_some_and(|b| is_nullif_of(right, b)) => {
                    strip(divided)
                }
                _ => e,
            }
        }
        other => other,
    }
}
/// `nullif(b, 0)` of exactly `b` (casts aside).
fn is_nullif_of(e: &Expr, b: &Expr) -> bool {
    matches!(casts(e), Expr::ScalarFunction(f)
        if f.name() == "nullif" && f.args.len() == 2 && casts(&f.args[0]) == casts(b)
            && constant(&f.args[1]) == Some(0.0))
}
/// Aliases and casts only.
fn casts(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => casts(&a.expr),
        Expr::Cast(c) => casts(&c.expr),
        Expr::TryCast(c) => casts(&c.expr),
        other => other,
    }
}
fn constant(e: &Expr) -> Option<f64> {
    match strip(e) {
        Expr::Literal(v, _) => match v.cast_to(&DataType::Float64).ok()? {
            ScalarValue::Float64(Some(x)) => Some(x),
            _ => None,
        },
        _ => None,
    }
}

/// `k · a / b`, `a / b · k`, `a / (k · b)`, `ROUND(…, n)` of those: the columns, the
/// multiplier and the most rounding moves the value.
fn ratio_shape(expr: &Expr) -> Option<(Column, Column, f64, f64)> {
    /// `k · column`.
    fn scaled(e: &Expr) -> Option<(f64, Column)> {
        match strip(e) {
            Expr::Column(c) => Some((1.0, c.clone())),
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Multiply,
                right,
            }) => match (constant(left), constant(right)) {
                (Some(k), None) => scaled(right).map(|(m, c)| (k * m, c)),
                (None, Some(k)) => scaled(left).map(|(m, c)| (k * m, c)),
                _ => None,
            },
            _ => None,
        }
    }
    match strip(expr) {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Divide,
            right,
        }) => {
            let (ka, a) = scaled(left)?;
            let (kb, b) = scaled(right)?;
            (kb != 0.0).then(|| (a, b, ka / kb, 0.0))
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Multiply,
            right,
        }) => {
            let (k, inner) = match (constant(left), constant(right)) {
                (Some(k), None) => (k, right),
                (None, Some(k)) => (k, left),
                _ => return None,
            };
            let (a, b, per, rounding) = ratio_shape(inner)?;
            Some((a, b, per * k, rounding * k.abs()))
        }
        Expr::ScalarFunction(f) if f.name() == "round" => {
            let digits = f.args.get(1).and_then(constant).unwrap_or(0.0);
            let (a, b, per, rounding) = ratio_shape(f.args.first()?)?;
            Some((a, b, per, rounding + 0.5 * 10f64.powf(-digits)))
        }
        _ => None,
    }
}

/// Which column of the aggregation's output a result column is a copy of.
pub(crate) fn lineage(plan: &LogicalPlan, index: usize) -> Option<usize> {
    match plan {
        LogicalPlan::TableScan(scan) if scan.table_name.table() == "__released" => Some(index),
        LogicalPlan::Projection(p) => match unalias(p.expr.get(index)?) {
            Expr::Column(c) => lineage(&p.input, p.input.schema().index_of_column(c).ok()?),
            _ => None,
        },
        LogicalPlan::Filter(f) => lineage(&f.input, index),
        LogicalPlan::Sort(s) => lineage(&s.input, index),
        LogicalPlan::Limit(l) => lineage(&l.input, index),
        LogicalPlan::SubqueryAlias(a) => lineage(&a.input, index),
        LogicalPlan::Window(w) if index < w.input.schema().fields().len() => {
            lineage(&w.input, index)
        }
        _ => None,
    }
}

fn build_release(
    post: PostProcessed,
    n_keys: usize,
    roles: &[ColumnRole],
    cells: &[Vec<Cell>],
    input: ReleaseInput<'_>,
    notes: Vec<String>,
) -> Result<Release, QueryError> {
    let schema = post.plan.schema();
    let n_out = schema.fields().len() - usize::from(post.tracked);
    let origin: Vec<Option<usize>> = (0..n_out).map(|i| lineage(&post.plan, i)).collect();
    // The aggregates each derived column reads, where they can be traced.
    let sources: Vec<Option<Vec<usize>>> = (0..n_out)
        .map(|i| {
            if origin[i].is_none() {
                sources_of(&post.plan, i)
            } else {
                None
            }
        })
        .collect();
    let ratios: Vec<Option<Ratio>> = (0..n_out)
        .map(|i| {
            if origin[i].is_none() {
                ratio_of(&post.plan, i, n_keys)
            } else {
                None
            }
        })
        .collect();
    // Any other derived column: interval arithmetic over the cells it reads.
    let expressions: Vec<Option<Result<Derived, String>>> = (0..n_out)
        .map(|i| {
            (origin[i].is_none() && ratios[i].is_none()).then(|| Derived::of(&post.plan, i, n_keys))
        })
        .collect();
    let columns: Vec<ColumnMeta> = (0..n_out)
        .map(|i| {
            let field = schema.field(i);
            let role = match origin[i] {
                Some(j) if j < n_keys => ColumnRole::Key,
                Some(j) => roles
                    .get(j - n_keys)
                    .copied()
                    .unwrap_or(ColumnRole::Derived),
                None => ColumnRole::Derived,
            };
            ColumnMeta {
                name: field.name().clone(),
                role,
                data_type: wire_type(field.data_type()),
            }
        })
        .collect();
    let mut rows = Vec::new();
    let mut metas = Vec::new();
    for batch in &post.batches {
        let groups = if post.tracked {
            batch
                .column(n_out)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .cloned()
        } else {
            None
        };
        for r in 0..batch.num_rows() {
            let group = groups.as_ref().map(|g| g.value(r) as usize);
            let mut row = BTreeMap::new();
            let mut meta = BTreeMap::new();
            for (i, column) in columns.iter().enumerate() {
                let value =
                    ScalarValue::try_from_array(batch.column(i), r).map_err(QueryError::Execute)?;
                let mut json = to_json(&value);
                // A value computed from a suppressed cell is suppressed too, whatever the
                // expression made of the NULL (`COALESCE(n, 0)` would show a 0).
                let from_suppressed = match (&sources[i], group) {
                    (Some(read), Some(g)) => read.iter().any(|&j| {
                        j >= n_keys
                            && matches!(
                                cells.get(g).and_then(|c| c.get(j - n_keys)),
                                Some(Cell::Suppressed)
                            )
                    }),
                    _ => false,
                };
                if from_suppressed {
                    json = Value::Null;
                }
                if column.role != ColumnRole::Key {
                    let cell = match (origin[i], group) {
                        (Some(j), Some(g)) if j >= n_keys => {
                            cells.get(g).and_then(|c| c.get(j - n_keys))
                        }
                        _ => None,
                    };
                    let status = if json.is_null() {
                        CellStatus::Suppressed
                    } else {
                        CellStatus::Released
                    };
                    let derived;
                    let (cell, widen) = match (cell, &ratios[i], group) {
                        (None, Some(ratio), Some(g)) if !json.is_null() => {
                            derived = ratio.cell(&cells[g], n_keys);
                            (Some(&derived), ratio.rounding)
                        }
                        (cell, _, _) => (cell, 0.0),
                    };
                    let interval = match cell {
                        Some(Cell::Released(released)) => released
                            .interval(Alpha::FIVE_PERCENT)?
                            .filter(|iv| iv.lo.is_finite() && iv.hi.is_finite())
                            .map(|iv| outward(iv.lo - widen, iv.hi + widen)),
                        _ => None,
                    };
                    let (interval, no_interval) = match interval {
                        None if json.is_number() => derived_interval(
                            expressions[i].as_ref(),
                            group.map(|g| cells[g].as_slice()),
                            n_keys,
                            ratios[i].is_some(),
                        ),
                        interval => (interval, None),
                    };
                    meta.insert(
                        column.name.clone(),
                        CellMeta {
                            status,
                            interval,
                            no_interval,
                        },
                    );
                }
                row.insert(column.name.clone(), json);
            }
            rows.push(row);
            metas.push(meta);
        }
    }
    let charge = input.mechanisms.charge(input.bounded.part_labels());
    Ok(Release {
        format: FORMAT.into(),
        release_id: None,
        columns,
        rows,
        cells: metas,
        privacy: PrivacySummary {
            epsilon: charge.epsilon(),
            delta: charge.delta(),
            max_groups: input.limits.max_groups,
            max_rows: input.limits.max_rows,
            key_selection: input.mechanisms.key_selection.is_some(),
            disclosure: input.policy_name.clone(),
            marker: input.policy.marker.as_str().to_owned(),
        },
        notes,
    })
}

/// The interval of a numeric cell that has none of its own: its derived expression's, from
/// the group's released cells (`row`), or why it has none.
fn derived_interval(
    expression: Option<&Result<Derived, String>>,
    row: Option<&[Cell]>,
    n_keys: usize,
    ratio: bool,
) -> (Option<[f64; 2]>, Option<String>) {
    match (expression, row) {
        (Some(Ok(d)), Some(row)) => match d.interval(row, n_keys, Alpha::FIVE_PERCENT) {
            Ok(iv) => (iv.map(|iv| outward(iv.lo, iv.hi)), None),
            Err(DerivedError::None(why)) => (None, Some(why)),
            // An input's interval at α/k cannot be computed (k very large): released
            // without one, saying so; the release does not fail over a display.
            Err(DerivedError::Accuracy(e)) => (
                None,
                Some(format!(
                    "its cells' intervals cannot be computed at the confidence each needs: {e}"
                )),
            ),
        },
        (Some(Err(why)), _) => (None, Some(why.clone())),
        _ if ratio => (
            None,
            Some("a denominator's interval reaches 0, so the ratio is unbounded".into()),
        ),
        _ => (None, None),
    }
}

/// `[lo, hi]` on the wire format's grid of 1e-6, rounded outwards so that it still holds
/// what it held (rounding to the nearest could cut off a value just inside an end).
fn outward(lo: f64, hi: f64) -> [f64; 2] {
    [(lo * 1e6).floor() / 1e6, (hi * 1e6).ceil() / 1e6]
}

/// A value as JSON: numbers as numbers, dates and text as strings.
pub(crate) fn to_json(value: &ScalarValue) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => Value::from(*b),
        ScalarValue::Int8(Some(v)) => Value::from(*v),
        ScalarValue::Int16(Some(v)) => Value::from(*v),
        ScalarValue::Int32(Some(v)) => Value::from(*v),
        ScalarValue::Int64(Some(v)) => Value::from(*v),
        ScalarValue::UInt8(Some(v)) => Value::from(*v),
        ScalarValue::UInt16(Some(v)) => Value::from(*v),
        ScalarValue::UInt32(Some(v)) => Value::from(*v),
        ScalarValue::UInt64(Some(v)) => Value::from(*v),
        ScalarValue::Float32(Some(v)) => {
            serde_json::Number::from_f64(f64::from(*v)).map_or(Value::Null, Value::Number)
        }
        ScalarValue::Float64(Some(v)) => {
            serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number)
        }
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Value::from(s.clone()),
        other => Value::from(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::functions::expr_fn::round;
    use datafusion::logical_expr::{col, lit};

    use super::*;

    #[test]
    fn ordered_quantiles_keep_each_interval_around_its_own_ends() {
        // Crossed values and ends, as independent selections can give: every output
        // interval holds its own quantile's released ends and its value, and the values and
        // both ends rise with α.
        let cases: [&[(f64, f64, f64)]; 4] = [
            &[(5.0, 2.0, 9.0), (4.0, 1.0, 6.0), (8.0, 7.0, 8.0)],
            &[(1.0, 0.0, 2.0)],
            &[(3.0, 3.0, 3.0), (3.0, 0.0, 10.0), (2.0, 2.0, 2.0)],
            &[
                (50.0, 40.0, 60.0),
                (45.0, 41.0, 70.0),
                (60.0, 20.0, 61.0),
                (70.0, 65.0, 90.0),
            ],
        ];
        for released in cases {
            let out = in_order(released);
            assert_eq!(out.len(), released.len());
            for (i, (o, r)) in out.iter().zip(released).enumerate() {
                assert!(o.low <= r.1 && r.2 <= o.high, "{i}: {o:?} vs {r:?}");
                assert!(o.low <= o.value && o.value <= o.high, "{i}: {o:?}");
                if i > 0 {
                    let p = out[i - 1];
                    assert!(
                        p.value <= o.value && p.low <= o.low && p.high <= o.high,
                        "{out:?}"
                    );
                }
            }
        }
        // The first case in full: values sorted, lows from the right, highs from the left.
        let out = in_order(cases[0]);
        let got: Vec<(f64, f64, f64)> = out.iter().map(|o| (o.value, o.low, o.high)).collect();
        assert_eq!(got, [(4.0, 1.0, 9.0), (5.0, 1.0, 9.0), (8.0, 7.0, 9.0)]);
    }

    #[test]
    fn rates_and_percentages_are_recognised_as_ratios() {
        let (a, b, per, r) = ratio_shape(&(lit(1000.0) * col("a") / col("b"))).unwrap();
        assert_eq!(
            (a.name.as_str(), b.name.as_str(), per, r),
            ("a", "b", 1000.0, 0.0)
        );
        let (_, _, per, _) = ratio_shape(&(col("a") / col("b") * lit(100))).unwrap();
        assert_eq!(per, 100.0);
        let (_, _, per, _) = ratio_shape(&(col("a") / (lit(2.0) * col("b")))).unwrap();
        assert_eq!(per, 0.5);
        let rounded = round(vec![lit(100.0) * col("a") / col("b"), lit(1)]);
        let (_, _, per, r) = ratio_shape(&rounded).unwrap();
        assert_eq!(per, 100.0);
        assert!((r - 0.05).abs() < 1e-12);
        assert!(ratio_shape(&(col("a") + col("b"))).is_none());
        assert!(ratio_shape(&(col("a") / lit(2))).is_none());
        assert!(ratio_shape(&(col("a") * col("c") / col("b"))).is_none());
        // The guarded division of the total-evaluation rewrite is still a ratio...
        let schema = datafusion::arrow::datatypes::Schema::new(
            ["a", "b", "c"]
                .map(|n| datafusion::arrow::datatypes::Field::new(n, DataType::Int64, true))
                .to_vec(),
        );
        let guarded = |e: Expr| {
            crate::total::guard_divisors(
                datafusion::logical_expr::table_scan(Some("t"), &schema, None)
                    .unwrap()
                    .project(vec![e.alias("x")])
                    .unwrap()
                    .build()
                    .unwrap(),
            )
            .unwrap()
            .expressions()[0]
                .clone()
        };
        let (a, b, per, _) = ratio_shape(&guarded(lit(1000.0) * col("a") / col("b"))).unwrap();
        assert_eq!((a.name.as_str(), b.name.as_str(), per), ("a", "b", 1000.0));
        let (_, _, per, r) = ratio_shape(&guarded(round(vec![
            lit(100.0) * col("a") / col("b"),
            lit(1),
        ])))
        .unwrap();
        assert_eq!(per, 100.0);
        assert!((r - 0.05).abs() < 1e-12);
        // ...but a CASE that computes something else when b = -1 is not.
        let other = datafusion::logical_expr::when(
            col("b").eq(lit(-1i64)),
            Expr::Negative(Box::new(col("c"))),
        )
        .otherwise(col("a") / col("b"))
        .unwrap();
        assert!(ratio_shape(&other).is_none());
    }
}
