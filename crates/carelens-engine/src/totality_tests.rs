//! Totality as a tested property, not a list of patches.
//!
//! For every scalar function the analysis allows ([`SCALAR_FUNCTIONS`]), every operator
//! ([`OPERATORS`] and the other expression kinds), every per-person aggregate
//! ([`PERSON_AGGREGATES`]) and window function ([`WINDOW_FUNCTIONS`]), and every cast
//! between the types carelens allows ([`allowed_type`]): each argument type DataFusion
//! accepts is filled with boundary values (minimum and maximum, 0, −1, NULL, NaN, ±∞,
//! −0.0, empty and very long text, the earliest and latest dates and timestamps, …),
//! arguments the analysis requires to be literal get every boundary literal (zero,
//! negative and huge intervals, invalid units and patterns among them), and the
//! expression is planned and run the way the engine runs it — type coercion, the
//! analysis's own checks (a case the analysis rejects is not run), then the guards of
//! `guard.rs` — and must neither fail nor panic. The lists are the analysis's own, so a
//! function added to the allowlist is tested without anyone writing a case for it; a
//! function none of whose cases can be planned fails the test.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, ScalarUDF, col,
};

use crate::analysis::Analyzer;
use crate::analysis::functions::{
    OPERATORS, PART_UNITS, PERSON_AGGREGATES, SCALAR_FUNCTIONS, WINDOW_FUNCTIONS, literal_arguments,
};
use crate::guard::guard_plan;
use crate::run::{RunLimits, collect};
use crate::session::CatalogInfo;
use crate::total::{allowed_type, check_column_types, check_written_types, try_casts};

/// The types a column of an accepted query can have.
fn column_types() -> Vec<DataType> {
    let mut types = vec![
        DataType::Boolean,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::UInt8,
        DataType::UInt16,
        DataType::UInt32,
        DataType::UInt64,
        DataType::Float32,
        DataType::Float64,
        DataType::Utf8,
        DataType::LargeUtf8,
        DataType::Utf8View,
        DataType::Date32,
        DataType::Null,
    ];
    for unit in [
        TimeUnit::Second,
        TimeUnit::Millisecond,
        TimeUnit::Microsecond,
        TimeUnit::Nanosecond,
    ] {
        types.push(DataType::Timestamp(unit, None));
    }
    debug_assert!(types.iter().all(allowed_type));
    types
}

/// A smaller set for functions whose signatures DataFusion does not enumerate.
fn core_types() -> Vec<DataType> {
    vec![
        DataType::Boolean,
        DataType::Int32,
        DataType::Int64,
        DataType::Float64,
        DataType::Utf8,
        DataType::Utf8View,
        DataType::Date32,
        DataType::Timestamp(TimeUnit::Nanosecond, None),
        DataType::Null,
    ]
}

fn strings() -> Vec<Option<String>> {
    let mut s: Vec<Option<String>> = [
        "",
        "a",
        "Z",
        "é",
        "漢字",
        "\u{0}",
        " ",
        "%",
        "_",
        "\\",
        "(",
        "[",
        "*",
        "0",
        "-1",
        "1e400",
        "9223372036854775808",
        "NaN",
        "-inf",
        "2024-02-29",
        "9999-12-31 23:59:59",
        "-262144-01-01",
        "1 day",
    ]
    .iter()
    .map(|s| Some((*s).to_owned()))
    .collect();
    s.push(Some("x".repeat(70_000)));
    s.push(Some("é".repeat(5_000)));
    s.push(None);
    s
}

/// Boundary values of a type, for columns.
fn boundary(t: &DataType) -> Vec<ScalarValue> {
    use ScalarValue as S;
    macro_rules! ints {
        ($v:ident, $t:ty) => {
            vec![
                S::$v(Some(<$t>::MIN)),
                S::$v(Some(<$t>::MAX)),
                S::$v(Some(0)),
                S::$v(Some(-1)),
                S::$v(Some(1)),
                S::$v(Some(7)),
                S::$v(None),
            ]
        };
    }
    macro_rules! uints {
        ($v:ident, $t:ty) => {
            vec![
                S::$v(Some(<$t>::MAX)),
                S::$v(Some(0)),
                S::$v(Some(1)),
                S::$v(Some(7)),
                S::$v(None),
            ]
        };
    }
    macro_rules! floats {
        ($v:ident, $t:ty) => {
            vec![
                S::$v(Some(<$t>::NAN)),
                S::$v(Some(<$t>::INFINITY)),
                S::$v(Some(<$t>::NEG_INFINITY)),
                S::$v(Some(-0.0)),
                S::$v(Some(0.0)),
                S::$v(Some(<$t>::MAX)),
                S::$v(Some(<$t>::MIN)),
                S::$v(Some(<$t>::MIN_POSITIVE)),
                S::$v(Some(0.5)),
                S::$v(Some(-1.5)),
                S::$v(Some(1e15 + 0.5)),
                S::$v(None),
            ]
        };
    }
    let timestamps = |f: fn(Option<i64>, Option<Arc<str>>) -> S, scale: i64| {
        [
            Some(i64::MIN),
            Some(i64::MAX),
            Some(0),
            Some(-1),
            Some(1),
            Some(1_700_000_000 * scale),
            Some(-1_700_000_000 * scale),
            None,
        ]
        .into_iter()
        .map(|v| f(v, None))
        .collect::<Vec<_>>()
    };
    match t {
        DataType::Boolean => vec![
            S::Boolean(Some(true)),
            S::Boolean(Some(false)),
            S::Boolean(None),
        ],
        DataType::Int8 => ints!(Int8, i8),
        DataType::Int16 => ints!(Int16, i16),
        DataType::Int32 => ints!(Int32, i32),
        DataType::Int64 => ints!(Int64, i64),
        DataType::UInt8 => uints!(UInt8, u8),
        DataType::UInt16 => uints!(UInt16, u16),
        DataType::UInt32 => uints!(UInt32, u32),
        DataType::UInt64 => uints!(UInt64, u64),
        DataType::Float32 => floats!(Float32, f32),
        DataType::Float64 => floats!(Float64, f64),
        DataType::Utf8 => strings().into_iter().map(S::Utf8).collect(),
        DataType::LargeUtf8 => strings().into_iter().map(S::LargeUtf8).collect(),
        DataType::Utf8View => strings().into_iter().map(S::Utf8View).collect(),
        DataType::Date32 => [
            Some(i32::MIN),
            Some(i32::MAX),
            Some(0),
            Some(-1),
            Some(1),
            Some(19_000),
            Some(-719_162),
            Some(2_932_896),
            None,
        ]
        .into_iter()
        .map(S::Date32)
        .collect(),
        DataType::Timestamp(TimeUnit::Second, None) => timestamps(S::TimestampSecond, 1),
        DataType::Timestamp(TimeUnit::Millisecond, None) => {
            timestamps(S::TimestampMillisecond, 1_000)
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            timestamps(S::TimestampMicrosecond, 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, None) => {
            timestamps(S::TimestampNanosecond, 1_000_000_000)
        }
        DataType::Interval(unit) => intervals(*unit),
        _ => vec![S::Null],
    }
}

fn intervals(unit: IntervalUnit) -> Vec<ScalarValue> {
    use datafusion::arrow::datatypes::{IntervalDayTime, IntervalMonthDayNano};
    match unit {
        IntervalUnit::YearMonth => [0, 1, -1, 12, 12_000, i32::MAX, i32::MIN]
            .into_iter()
            .map(|m| ScalarValue::IntervalYearMonth(Some(m)))
            .collect(),
        IntervalUnit::DayTime => [
            (0, 0),
            (1, 0),
            (0, 1),
            (-1, 0),
            (366_000, 0),
            (i32::MAX, i32::MAX),
            (i32::MIN, i32::MIN),
        ]
        .into_iter()
        .map(|(d, ms)| ScalarValue::IntervalDayTime(Some(IntervalDayTime::new(d, ms))))
        .collect(),
        IntervalUnit::MonthDayNano => [
            (0, 0, 0),
            (1, 0, 0),
            (0, 1, 0),
            (0, 0, 1),
            (-1, 0, 0),
            (0, -1, 0),
            (12_000, 0, 0),
            (0, 366_000, 0),
            (0, 0, i64::MAX),
            (0, 0, i64::MIN),
            (i32::MAX, i32::MAX, i64::MAX),
            (1, 1, 1),
        ]
        .into_iter()
        .map(|(m, d, n)| {
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(m, d, n)))
        })
        .collect(),
    }
}

/// Values for an argument the analysis requires to be literal: units, lengths, digits,
/// strides — valid and invalid.
fn literals(t: &DataType) -> Vec<ScalarValue> {
    match t {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            // Every unit `date_part` takes (a superset of `date_trunc`'s), and invalid ones.
            let words = PART_UNITS
                .iter()
                .chain(&["fortnight", "", "YEAR", "%", "(", "\\"]);
            words
                .map(|w| ScalarValue::Utf8(Some((*w).to_owned())))
                .chain([ScalarValue::Utf8(None)])
                .map(|v| v.cast_to(t).unwrap_or(v))
                .collect()
        }
        t if t.is_integer() => [0i64, 1, 2, -1, 3, 10_000, 10_001, i64::MAX, i64::MIN]
            .into_iter()
            .map(|v| ScalarValue::Int64(Some(v)))
            .chain([ScalarValue::Int64(None)])
            .filter_map(|v| v.cast_to(t).ok())
            .collect(),
        _ => boundary(t),
    }
}

/// One argument of a generated call.
#[derive(Debug, Clone)]
enum Arg {
    /// A column of boundary values of this type.
    Column(DataType),
    /// This literal.
    Literal(ScalarValue),
}

/// Rows of value indexes for columns with `sizes` values each: every combination when
/// there are few, otherwise every pair of values of every two columns (the others at
/// their first value), so that three text columns do not make 17,000 rows of long text.
fn combinations(sizes: &[usize]) -> Vec<Vec<usize>> {
    let all: usize = sizes.iter().product();
    if all <= 1_000 {
        return (0..all.max(1))
            .map(|r| {
                let mut repeat = 1;
                sizes
                    .iter()
                    .map(|n| {
                        let v = (r / repeat) % n;
                        repeat *= n;
                        v
                    })
                    .collect()
            })
            .collect();
    }
    let mut rows = Vec::new();
    for i in 0..sizes.len() {
        for j in i + 1..sizes.len() {
            for a in 0..sizes[i] {
                for b in 0..sizes[j] {
                    let mut row = vec![0; sizes.len()];
                    row[i] = a;
                    row[j] = b;
                    rows.push(row);
                }
            }
        }
    }
    rows
}

/// A table of boundary values for the column arguments ([`combinations`] of them) and a
/// grouping column `g`, and the arguments as expressions over it.
fn table(args: &[Arg]) -> (RecordBatch, Vec<Expr>) {
    let columns: Vec<(usize, Vec<ScalarValue>)> = args
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            Arg::Column(t) => Some((i, boundary(t))),
            Arg::Literal(_) => None,
        })
        .collect();
    let sizes: Vec<usize> = columns.iter().map(|(_, v)| v.len()).collect();
    let combos = combinations(&sizes);
    let rows = combos.len();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let mut fields = Vec::new();
    for (c, (i, values)) in columns.iter().enumerate() {
        let column: Vec<ScalarValue> = combos.iter().map(|row| values[row[c]].clone()).collect();
        let Arg::Column(t) = &args[*i] else {
            unreachable!("only column arguments have values")
        };
        let array = ScalarValue::iter_to_array(column).expect("boundary values form an array");
        let array = datafusion::arrow::compute::cast(&array, t).expect("same type");
        fields.push(Field::new(format!("c{i}"), t.clone(), true));
        arrays.push(array);
    }
    // A grouping column for aggregates and windows: the rows in three groups.
    fields.push(Field::new("g", DataType::Int64, false));
    arrays.push(Arc::new(
        datafusion::arrow::array::Int64Array::from_iter_values((0..rows as i64).map(|r| r % 3)),
    ));
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .expect("a valid batch");
    let exprs = args
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            Arg::Column(_) => col(format!("c{i}")),
            Arg::Literal(v) => Expr::Literal(v.clone(), None),
        })
        .collect();
    (batch, exprs)
}

/// How a case's expression is planned over the boundary table.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `SELECT expr FROM t`.
    Project,
    /// `SELECT expr FROM t` for an expression the bounding rewrite writes: it is not
    /// analysed (it comes after the analysis), so the analysis's checks are skipped.
    Rewrite,
    /// `SELECT expr FROM t GROUP BY g` (an aggregate).
    Aggregate,
    /// A window node over `t` (a window function).
    Window,
}

/// What happened to one generated case.
#[derive(Debug, PartialEq, Eq, Clone, Copy, PartialOrd, Ord)]
enum Outcome {
    /// DataFusion does not plan it (a type its signature does not take).
    NotPlanned,
    /// The analysis refuses it.
    Rejected,
    /// Planned, accepted, run: it did not fail.
    Ran,
}

struct Harness {
    ctx: SessionContext,
    catalog: CatalogInfo,
    failures: Vec<String>,
    outcomes: BTreeMap<String, BTreeMap<Outcome, usize>>,
}

impl Harness {
    fn new() -> Self {
        Self {
            ctx: SessionContext::new(),
            catalog: CatalogInfo {
                person_column: "person_id".to_owned(),
                tables: BTreeMap::new(),
            },
            failures: Vec::new(),
            outcomes: BTreeMap::new(),
        }
    }

    /// Plans `make(args)` over the boundary table of `args` in `shape`, runs it through the
    /// engine's checks and guards, and records the outcome under `name`.
    async fn case(
        &mut self,
        name: &str,
        args: &[Arg],
        make: &dyn Fn(Vec<Expr>) -> Expr,
        shape: Shape,
    ) -> Outcome {
        let outcome = self.try_case(args, make, shape).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                self.failures.push(format!("{name} {args:?}: {e}"));
                Outcome::Ran
            }
        };
        *self
            .outcomes
            .entry(name.to_owned())
            .or_default()
            .entry(outcome)
            .or_default() += 1;
        outcome
    }

    async fn try_case(
        &self,
        args: &[Arg],
        make: &dyn Fn(Vec<Expr>) -> Expr,
        shape: Shape,
    ) -> Result<Outcome, String> {
        let (batch, exprs) = table(args);
        let table =
            MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(|e| e.to_string())?;
        let expr = make(exprs);
        let builder = LogicalPlanBuilder::scan("t", provider_as_source(Arc::new(table)), None)
            .map_err(|e| e.to_string())?;
        let planned = match shape {
            Shape::Project | Shape::Rewrite => builder.project(vec![expr.alias("out")]),
            Shape::Aggregate => builder.aggregate(vec![col("g")], vec![expr]),
            Shape::Window => builder.window(vec![expr]),
        };
        let Ok(plan) = planned.and_then(|b| b.build()) else {
            return Ok(Outcome::NotPlanned);
        };
        if check_written_types(&plan).is_err() {
            return Ok(Outcome::Rejected);
        }
        let state = self.ctx.state();
        let Ok(plan) = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
        else {
            return Ok(Outcome::NotPlanned);
        };
        let plan = try_casts(plan).map_err(|e| e.to_string())?;
        let checked = !matches!(shape, Shape::Rewrite);
        if checked && (check_column_types(&plan).is_err() || !self.accepted(&plan)?) {
            return Ok(Outcome::Rejected);
        }
        // An operation DataFusion cannot compile at all fails here, while the engine
        // plans the query: before the charge, whatever the data.
        let Ok(guarded) = guard_plan(plan) else {
            return Ok(Outcome::NotPlanned);
        };
        if let Some(left) = crate::guard::unguarded(&guarded) {
            return Err(format!("left unguarded: {left}"));
        }
        // The engine builds the physical plan before the charge: what fails there fails
        // whatever the data.
        if self
            .ctx
            .state()
            .create_physical_plan(&guarded)
            .await
            .is_err()
        {
            return Ok(Outcome::NotPlanned);
        }
        collect(
            &self.ctx,
            guarded,
            RunLimits::default(),
            tokio::time::Instant::now(),
        )
        .await
        .map(|_| Outcome::Ran)
        .map_err(|e| format!("{e}: {:?}", e))
    }

    /// Whether the analysis's expression checks accept every expression of `plan` (a
    /// panic of the analysis itself is a failure too).
    fn accepted(&self, plan: &LogicalPlan) -> Result<bool, String> {
        let analyzer = Analyzer {
            catalog: &self.catalog,
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            plan.expressions()
                .iter()
                .all(|e| analyzer.check_functions(e).is_ok())
        }))
        .map_err(|_| "the analysis panicked".to_owned())
    }

    fn report(&self, what: &str) {
        for (name, outcomes) in &self.outcomes {
            println!("{name}: {outcomes:?}");
        }
        let mut untested = Vec::new();
        for (name, outcomes) in &self.outcomes {
            if !outcomes.contains_key(&Outcome::Ran) {
                untested.push(name.clone());
            }
        }
        let shown: Vec<&String> = self.failures.iter().take(4000).collect();
        assert!(
            self.failures.is_empty(),
            "{} {what} cases failed; the first:\n{}",
            self.failures.len(),
            shown
                .iter()
                .map(|s| s.chars().take(400).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            untested.is_empty(),
            "no case of these {what} could be planned and run: {untested:?}"
        );
    }
}

/// Argument type lists for `udf`: DataFusion's own examples of its signature, restricted to
/// the types carelens allows (and intervals, which only appear as literals); for
/// signatures DataFusion does not enumerate (variadic functions such as `COALESCE`), every
/// list of one or two [`core_types`] and three of one type (those it does not take fail to
/// plan).
fn signatures(udf: &ScalarUDF) -> Vec<Vec<DataType>> {
    let ok = |t: &DataType| allowed_type(t) || matches!(t, DataType::Interval(_));
    let examples: Vec<Vec<DataType>> = udf
        .signature()
        .type_signature
        .get_example_types()
        .into_iter()
        .filter(|ts| ts.iter().all(ok))
        .collect();
    if !examples.is_empty() {
        return examples;
    }
    let core = core_types();
    let mut all: Vec<Vec<DataType>> = core.iter().map(|t| vec![t.clone()]).collect();
    for a in &core {
        for b in &core {
            all.push(vec![a.clone(), b.clone()]);
        }
    }
    all.extend(core.iter().map(|t| vec![t.clone(); 3]));
    all
}

/// Each way to fill `types` with columns and the literals the analysis requires:
/// positions that must be literal (or hold an interval) take each of their literal
/// values; the others are columns of boundary values.
fn fillings(name: &str, types: &[DataType]) -> Vec<Vec<Arg>> {
    let literal_required = literal_arguments(name);
    let is_literal = |i: usize, t: &DataType| {
        literal_required.contains(&i) || matches!(t, DataType::Interval(_))
    };
    let mut base: Vec<Vec<Arg>> = vec![vec![]];
    for (i, t) in types.iter().enumerate() {
        let choices: Vec<Arg> = if is_literal(i, t) {
            literals(t).into_iter().map(Arg::Literal).collect()
        } else {
            vec![Arg::Column(t.clone())]
        };
        base = base
            .into_iter()
            .flat_map(|prefix| {
                choices.iter().map(move |c| {
                    let mut p = prefix.clone();
                    p.push(c.clone());
                    p
                })
            })
            .collect();
    }
    base
}

/// `args` with one column at a time replaced by each of its boundary values as a literal
/// (functions often have a separate code path for a constant argument).
fn literal_variants(args: &[Arg]) -> Vec<Vec<Arg>> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if let Arg::Column(t) = a {
            for v in boundary(t) {
                let mut variant = args.to_vec();
                variant[i] = Arg::Literal(v);
                out.push(variant);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_allowed_scalar_function_is_total() {
    crate::panics::install();
    let mut h = Harness::new();
    let functions = h.ctx.state().scalar_functions().clone();
    for name in SCALAR_FUNCTIONS {
        let Some(udf) = functions.get(*name) else {
            h.failures
                .push(format!("{name}: not a DataFusion function"));
            continue;
        };
        let udf = Arc::clone(udf);
        let make = move |exprs: Vec<Expr>| {
            Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(&udf), exprs))
        };
        // Literal variants (a constant argument takes another code path in many
        // functions) for the first signatures of each arity that run.
        let mut variants_of_arity = BTreeMap::<usize, usize>::new();
        for types in signatures(functions.get(*name).expect("looked up above")) {
            let mut ran = None;
            for args in fillings(name, &types) {
                if h.case(name, &args, &make, Shape::Project).await == Outcome::Ran && ran.is_none()
                {
                    ran = Some(args);
                }
            }
            let Some(ran) = ran else { continue };
            let seen = variants_of_arity.entry(types.len()).or_default();
            if *seen < 3 {
                *seen += 1;
                for args in literal_variants(&ran) {
                    h.case(name, &args, &make, Shape::Project).await;
                }
            }
        }
    }
    h.report("scalar function");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_allowed_operator_and_cast_is_total() {
    crate::panics::install();
    let mut h = Harness::new();
    let types = column_types();
    let patterns: Vec<ScalarValue> = [
        "a",
        "%",
        "_%",
        "\\",
        "a\\",
        "(",
        "[",
        "*",
        "a{1000}{1000}",
        ".*",
        "^$",
        "(?i)é",
        "",
    ]
    .iter()
    .map(|p| ScalarValue::Utf8(Some((*p).to_owned())))
    .collect();
    for op in OPERATORS {
        let regex = matches!(
            op,
            Operator::RegexMatch
                | Operator::RegexIMatch
                | Operator::RegexNotMatch
                | Operator::RegexNotIMatch
        );
        let name = format!("operator {op}");
        let make = |e: Vec<Expr>| {
            Expr::BinaryExpr(BinaryExpr::new(
                Box::new(e[0].clone()),
                *op,
                Box::new(e[1].clone()),
            ))
        };
        // Columns of every type on the right, and every boundary literal (a date plus an
        // interval, a division by a literal); regular expressions take literal patterns.
        let rights: Vec<Arg> = if regex {
            patterns.iter().cloned().map(Arg::Literal).collect()
        } else {
            let intervals = [
                IntervalUnit::YearMonth,
                IntervalUnit::DayTime,
                IntervalUnit::MonthDayNano,
            ]
            .into_iter()
            .flat_map(intervals);
            types
                .iter()
                .cloned()
                .map(Arg::Column)
                .chain(
                    types
                        .iter()
                        .flat_map(boundary)
                        .chain(intervals)
                        .map(Arg::Literal),
                )
                .collect()
        };
        for left in &types {
            for right in &rights {
                h.case(
                    &name,
                    &[Arg::Column(left.clone()), right.clone()],
                    &make,
                    Shape::Project,
                )
                .await;
            }
        }
    }
    // Unary and other expression kinds.
    for t in &types {
        let column = [Arg::Column(t.clone())];
        h.case(
            "NOT",
            &column,
            &|e| Expr::Not(Box::new(e[0].clone())),
            Shape::Project,
        )
        .await;
        h.case(
            "negation",
            &column,
            &|e| Expr::Negative(Box::new(e[0].clone())),
            Shape::Project,
        )
        .await;
        h.case(
            "IS NULL",
            &column,
            &|e| e[0].clone().is_null(),
            Shape::Project,
        )
        .await;
        h.case(
            "IS TRUE",
            &column,
            &|e| e[0].clone().is_true(),
            Shape::Project,
        )
        .await;
        h.case(
            "BETWEEN",
            &[
                Arg::Column(t.clone()),
                Arg::Column(t.clone()),
                Arg::Column(t.clone()),
            ],
            &|e| e[0].clone().between(e[1].clone(), e[2].clone()),
            Shape::Project,
        )
        .await;
        h.case(
            "IN (list)",
            &[Arg::Column(t.clone()), Arg::Column(t.clone())],
            &|e| {
                e[0].clone().in_list(
                    vec![e[1].clone(), Expr::Literal(ScalarValue::Null, None)],
                    false,
                )
            },
            Shape::Project,
        )
        .await;
        h.case(
            "CASE",
            &[
                Arg::Column(DataType::Boolean),
                Arg::Column(t.clone()),
                Arg::Column(t.clone()),
            ],
            &|e| {
                datafusion::logical_expr::when(e[0].clone(), e[1].clone())
                    .otherwise(e[2].clone())
                    .expect("a CASE")
            },
            Shape::Project,
        )
        .await;
        for p in &patterns {
            for (like, name) in [(true, "LIKE"), (false, "SIMILAR TO")] {
                for case_insensitive in [false, true] {
                    let make = |e: Vec<Expr>| {
                        let l = datafusion::logical_expr::Like::new(
                            false,
                            Box::new(e[0].clone()),
                            Box::new(e[1].clone()),
                            None,
                            case_insensitive,
                        );
                        if like {
                            Expr::Like(l)
                        } else {
                            Expr::SimilarTo(l)
                        }
                    };
                    h.case(
                        name,
                        &[Arg::Column(t.clone()), Arg::Literal(p.clone())],
                        &make,
                        Shape::Project,
                    )
                    .await;
                }
            }
            let make = |e: Vec<Expr>| {
                Expr::Like(datafusion::logical_expr::Like::new(
                    false,
                    Box::new(e[0].clone()),
                    Box::new(e[1].clone()),
                    Some('\\'),
                    false,
                ))
            };
            h.case(
                "LIKE ESCAPE",
                &[Arg::Column(t.clone()), Arg::Literal(p.clone())],
                &make,
                Shape::Project,
            )
            .await;
        }
        // The rewrite's sampling hash, over the person and a key of every type (it is
        // left unguarded: it must be total on its own).
        h.case(
            "keyed_hash",
            &[Arg::Column(DataType::Int64), Arg::Column(t.clone())],
            &|e| crate::keyed_hash::keyed_hash("0123456789abcdef", e),
            Shape::Rewrite,
        )
        .await;
        // Casts to every allowed type: `CAST` (as the rewrite writes it, guarded) and
        // `TRY_CAST` (as every cast of a query becomes, unguarded).
        for to in &types {
            let to_cast = to.clone();
            h.case(
                "CAST",
                &column,
                &move |e| datafusion::logical_expr::cast(e[0].clone(), to_cast.clone()),
                Shape::Project,
            )
            .await;
            let to_try = to.clone();
            h.case(
                "TRY_CAST",
                &column,
                &move |e| datafusion::logical_expr::try_cast(e[0].clone(), to_try.clone()),
                Shape::Project,
            )
            .await;
        }
    }
    h.report("operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_allowed_aggregate_and_window_is_total() {
    crate::panics::install();
    let mut h = Harness::new();
    let state = h.ctx.state();
    let aggregates = state.aggregate_functions().clone();
    let windows = state.window_functions().clone();
    for t in column_types() {
        let column = [Arg::Column(t.clone())];
        for name in PERSON_AGGREGATES {
            let Some(udaf) = aggregates.get(*name) else {
                h.failures
                    .push(format!("{name}: not a DataFusion aggregate"));
                continue;
            };
            for distinct in [false, true] {
                let udaf = Arc::clone(udaf);
                let make = move |e: Vec<Expr>| {
                    Expr::AggregateFunction(
                        datafusion::logical_expr::expr::AggregateFunction::new_udf(
                            Arc::clone(&udaf),
                            if udaf.name() == "count" && e.is_empty() {
                                vec![]
                            } else {
                                e
                            },
                            distinct,
                            None,
                            vec![],
                            None,
                        ),
                    )
                };
                h.case(name, &column, &make, Shape::Aggregate).await;
            }
        }
        for name in WINDOW_FUNCTIONS {
            let (udwf, udaf) = (windows.get(*name).cloned(), aggregates.get(*name).cloned());
            if udwf.is_none() && udaf.is_none() {
                h.failures
                    .push(format!("{name}: not a DataFusion window function"));
                continue;
            }
            let fun = match (udwf, udaf) {
                (Some(w), _) => {
                    datafusion::logical_expr::expr::WindowFunctionDefinition::WindowUDF(w)
                }
                (None, Some(a)) => {
                    datafusion::logical_expr::expr::WindowFunctionDefinition::AggregateUDF(a)
                }
                (None, None) => unreachable!("checked above"),
            };
            // With and without an argument; ntile, lead, lag and nth_value take a literal
            // second argument.
            let arg_sets: Vec<Vec<Arg>> = vec![
                vec![],
                column.to_vec(),
                vec![column[0].clone(), Arg::Literal(ScalarValue::Int64(Some(1)))],
                vec![column[0].clone(), Arg::Literal(ScalarValue::Int64(Some(0)))],
                vec![
                    column[0].clone(),
                    Arg::Literal(ScalarValue::Int64(Some(-1))),
                ],
                vec![
                    column[0].clone(),
                    Arg::Literal(ScalarValue::Int64(Some(i64::MAX))),
                ],
                vec![Arg::Literal(ScalarValue::Int64(Some(0)))],
                vec![Arg::Literal(ScalarValue::Int64(Some(i64::MAX)))],
            ];
            for args in arg_sets {
                let fun = fun.clone();
                let make = move |e: Vec<Expr>| {
                    let order = e.first().cloned().unwrap_or_else(|| col("g"));
                    let w = datafusion::logical_expr::expr::WindowFunction::new(fun.clone(), e);
                    let w = datafusion::logical_expr::ExprFunctionExt::partition_by(
                        Expr::WindowFunction(Box::new(w)),
                        vec![col("g")],
                    );
                    let w = datafusion::logical_expr::ExprFunctionExt::order_by(
                        w,
                        vec![order.sort(true, true)],
                    );
                    w.build().expect("a window expression")
                };
                h.case(name, &args, &make, Shape::Window).await;
            }
        }
    }
    h.report("aggregate or window function");
}
