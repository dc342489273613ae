//! The privacy analysis: walks a DataFusion `LogicalPlan` (never the SQL text) and decides
//! whether it can be released, following DESIGN.md §3.3.
//!
//! Bottom-up, every relation gets [`Relation`] facts: private or public, which column is
//! the person, and per column whether it is the person, constant per person, its bounds
//! and its public domain. Top-down from the root, the nodes above the first aggregation
//! are post-processing of released values (projections, `HAVING`, `ORDER BY`, `LIMIT`);
//! that first aggregation is the one carelens releases with differential privacy.

use std::collections::BTreeSet;
use std::sync::Arc;

use carelens_catalog::TableKind;
use carelens_privacy::Precision;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, JoinType, ScalarValue};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Distinct, Expr, ExprSchemable, LogicalPlan, Operator, Volatility,
    expr::{AggregateFunction, WindowFunction},
    utils::split_conjunction,
};

use crate::facts::{Facts, check_person_use, expr_facts, location};
use crate::rejection::{Rejection, RejectionKind};
use crate::session::CatalogInfo;

/// Scalar functions a query may call: deterministic, and none reads outside its row.
pub(crate) const SCALAR_FUNCTIONS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "round",
    "trunc",
    "power",
    "pow",
    "sqrt",
    "ln",
    "log",
    "log10",
    "log2",
    "exp",
    "signum",
    "coalesce",
    "nullif",
    "nvl",
    "ifnull",
    "least",
    "greatest",
    "date_part",
    "date_trunc",
    "date_bin",
    "datepart",
    "datetrunc",
    "lower",
    "upper",
    "substr",
    "substring",
    "left",
    "right",
    "concat",
    "concat_ws",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "length",
    "char_length",
    "character_length",
    "starts_with",
    "ends_with",
    "strpos",
    "replace",
    "split_part",
    "lpad",
    "rpad",
    "isnan",
    "iszero",
];

/// Operators a query may use. Others (bitwise operators, array and JSON operators, …) are
/// refused: every operator here is covered by the totality test.
pub(crate) const OPERATORS: &[Operator] = &[
    Operator::Eq,
    Operator::NotEq,
    Operator::Lt,
    Operator::LtEq,
    Operator::Gt,
    Operator::GtEq,
    Operator::IsDistinctFrom,
    Operator::IsNotDistinctFrom,
    Operator::And,
    Operator::Or,
    Operator::Plus,
    Operator::Minus,
    Operator::Multiply,
    Operator::Divide,
    Operator::Modulo,
    Operator::StringConcat,
    Operator::RegexMatch,
    Operator::RegexIMatch,
    Operator::RegexNotMatch,
    Operator::RegexNotIMatch,
];

/// The longest text constant a query may hold, in characters.
const MAX_TEXT_LITERAL: usize = 1_000;

/// A stride `date_bin` accepts: a positive interval of months, or of days and time.
fn positive_stride(value: &ScalarValue) -> bool {
    match value {
        ScalarValue::IntervalYearMonth(Some(m)) => *m > 0,
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds) > 0
        }
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months != 0 => {
            v.months > 0 && v.days == 0 && v.nanoseconds == 0
        }
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            i128::from(v.days) * 86_400_000_000_000 + i128::from(v.nanoseconds) > 0
        }
        _ => false,
    }
}

/// The largest `n` of a `ROWS` or `GROUPS` frame's `n PRECEDING` / `n FOLLOWING`.
const MAX_FRAME_OFFSET: u64 = 1_000_000;

/// Expressions refused whatever their arguments: operators outside [`OPERATORS`],
/// parameters, `UNNEST`, invalid literal regular expressions (rejected here rather than
/// answered NULL on every row: a mistake in the pattern deserves a message), and window
/// frames that compute their bounds from a row's value (`RANGE` with an offset: a date
/// minus an interval can overflow) or whose offsets overflow a row index.
fn refused_expression(e: &Expr) -> Option<Rejection> {
    use datafusion::logical_expr::{Like, WindowFrameBound, WindowFrameUnits};
    let pattern_error = |pattern: &Expr, case_insensitive: bool| {
        let text = match literal_value(pattern)? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
            _ => return None,
        };
        let full = if case_insensitive {
            format!("(?i){text}")
        } else {
            text
        };
        regex::Regex::new(&full).err()
    };
    match e {
        Expr::BinaryExpr(BinaryExpr { op, .. }) if !OPERATORS.contains(op) => Some(Rejection::new(
            RejectionKind::Function,
            format!("the operator `{op}` is not allowed"),
            "use comparisons, AND, OR, NOT, + - * / %, || and LIKE",
        )),
        Expr::BinaryExpr(BinaryExpr { op, right, .. })
            if matches!(
                op,
                Operator::RegexMatch
                    | Operator::RegexIMatch
                    | Operator::RegexNotMatch
                    | Operator::RegexNotIMatch
            ) =>
        {
            let insensitive = matches!(op, Operator::RegexIMatch | Operator::RegexNotIMatch);
            pattern_error(right, insensitive).map(invalid_pattern)
        }
        Expr::SimilarTo(Like {
            pattern,
            case_insensitive,
            ..
        }) => pattern_error(pattern, *case_insensitive).map(invalid_pattern),
        Expr::Placeholder(_) | Expr::Unnest(_) => Some(unsupported(&format!("`{e}`"))),
        // A long constant is repeated on every row it is computed for: 70,000 characters
        // over a million rows is 70 GB that no memory pool accounts for.
        Expr::Literal(
            ScalarValue::Utf8(Some(text))
            | ScalarValue::Utf8View(Some(text))
            | ScalarValue::LargeUtf8(Some(text)),
            _,
        ) if text.chars().count() > MAX_TEXT_LITERAL => Some(Rejection::new(
            RejectionKind::Function,
            format!(
                "a text constant of {} characters (at most {MAX_TEXT_LITERAL})",
                text.chars().count()
            ),
            "shorten the constant: codes and labels are short",
        )),
        // `replace` can multiply a text's length (each match of a short pattern by a long
        // replacement): with a replacement no longer than its pattern it never grows.
        Expr::ScalarFunction(f) if f.name() == "replace" => {
            let text = |i: usize| match f.args.get(i).and_then(literal_value) {
                Some(
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::Utf8View(Some(s))
                    | ScalarValue::LargeUtf8(Some(s)),
                ) => Some(s.chars().count()),
                _ => None,
            };
            match (text(1), text(2)) {
                (Some(from), Some(to)) if from > 0 && to <= from => None,
                (Some(_), Some(_)) => Some(Rejection::new(
                    RejectionKind::Function,
                    "`replace` with a replacement longer than the text it replaces (or an \
                     empty one to find)",
                    "replace a non-empty text by one no longer than it, e.g. \
                     `replace(code, '.', '')`: a longer replacement can multiply a text's \
                     size and so the query's memory and time",
                )),
                _ => None,
            }
        }
        Expr::WindowFunction(w)
            if !window_arguments_valid(&w.fun.name().to_ascii_lowercase(), &w.params.args) =>
        {
            Some(Rejection::new(
                RejectionKind::Window,
                format!("`{}` with these arguments", w.fun.name()),
                "LEAD and LAG take a value, a constant offset and a constant default; \
                 NTILE a constant number of buckets; NTH_VALUE a value and a constant \
                 position from 1",
            ))
        }
        Expr::WindowFunction(w) => {
            let frame = &w.params.window_frame;
            let offset = |b: &WindowFrameBound| match b {
                WindowFrameBound::Preceding(v) | WindowFrameBound::Following(v) => !v.is_null(),
                WindowFrameBound::CurrentRow => false,
            };
            // DataFusion adds a ROWS or GROUPS offset to a row's index unchecked: an
            // offset near 2^64 overflows on the second row of a partition, so whether the
            // query fails would say whether a partition has two rows.
            let huge = |b: &WindowFrameBound| match b {
                WindowFrameBound::Preceding(v) | WindowFrameBound::Following(v) => {
                    !v.is_null()
                        && v.cast_to(&DataType::UInt64)
                            .ok()
                            .and_then(|v| match v {
                                ScalarValue::UInt64(Some(n)) => Some(n),
                                _ => None,
                            })
                            .is_none_or(|n| n > MAX_FRAME_OFFSET)
                }
                WindowFrameBound::CurrentRow => false,
            };
            if frame.units == WindowFrameUnits::Range
                && (offset(&frame.start_bound) || offset(&frame.end_bound))
            {
                Some(Rejection::new(
                    RejectionKind::Window,
                    "a RANGE window frame with an offset",
                    "use ROWS BETWEEN n PRECEDING AND CURRENT ROW, or a join on person_id \
                     with a condition on the dates",
                ))
            } else if huge(&frame.start_bound) || huge(&frame.end_bound) {
                Some(Rejection::new(
                    RejectionKind::Window,
                    "a window frame offset above 1,000,000 rows",
                    "use UNBOUNDED PRECEDING or UNBOUNDED FOLLOWING for a frame without an end",
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Whether a window function's arguments have the shape DataFusion checks only when the
/// query runs: a value to read where one is needed, and constants for offsets, defaults,
/// bucket counts and positions.
fn window_arguments_valid(name: &str, args: &[Expr]) -> bool {
    let constant_int = |i: usize, least: i64| {
        args.get(i)
            .and_then(literal_value)
            .and_then(|v| v.cast_to(&DataType::Int64).ok())
            .is_some_and(|v| matches!(v, ScalarValue::Int64(Some(n)) if n >= least))
    };
    match name {
        "first_value" | "last_value" => args.len() == 1,
        "lead" | "lag" => {
            !args.is_empty()
                && args.len() <= 3
                && (args.len() < 2 || constant_int(1, 0))
                && (args.len() < 3 || args.get(2).and_then(literal_value).is_some())
        }
        "ntile" => args.len() == 1 && constant_int(0, 1),
        "nth_value" => args.len() == 2 && constant_int(1, 1),
        "row_number" | "rank" | "dense_rank" | "percent_rank" | "cume_dist" => args.is_empty(),
        _ => !args.is_empty(),
    }
}

fn invalid_pattern(error: regex::Error) -> Rejection {
    let first_line = error.to_string();
    let first_line = first_line.lines().last().unwrap_or("").trim().to_owned();
    Rejection::new(
        RejectionKind::Function,
        format!("the regular expression is not valid: {first_line}"),
        "check the pattern (SIMILAR TO and ~ take regular expressions); it is compiled \
         before the query runs",
    )
}

/// Functions that fail on some argument values (a negative length, an unknown date unit):
/// those arguments must be literals, so no row can make the query fail.
pub(crate) fn literal_arguments(name: &str) -> &'static [usize] {
    match name {
        "date_part" | "datepart" | "date_trunc" | "datetrunc" => &[0],
        "date_bin" => &[0, 2],
        "replace" => &[1, 2],
        "substr" | "substring" | "left" | "right" | "lpad" | "rpad" | "split_part" | "round"
        | "trunc" | "log" | "power" | "pow" => &[1, 2],
        _ => &[],
    }
}

/// The units `date_part` accepts.
pub(crate) const PART_UNITS: &[&str] = &[
    "year",
    "quarter",
    "month",
    "week",
    "day",
    "hour",
    "minute",
    "second",
    "millisecond",
    "microsecond",
    "nanosecond",
    "dow",
    "doy",
    "epoch",
    "isodow",
];

/// Whether a literal argument is one the function accepts: a value that fails would fail
/// only on the rows where the call is evaluated (behind a CASE, after a filter).
fn valid_literal_argument(name: &str, index: usize, value: &ScalarValue) -> bool {
    const TRUNC_UNITS: &[&str] = &[
        "microsecond",
        "millisecond",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "quarter",
        "year",
    ];
    let text = || match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.to_ascii_lowercase()),
        _ => None,
    };
    let int = || match value.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(x) => x,
        _ => None,
    };
    match (name, index) {
        ("date_trunc" | "datetrunc", 0) => {
            text().is_some_and(|u| TRUNC_UNITS.contains(&u.as_str()))
        }
        ("date_part" | "datepart", 0) => text().is_some_and(|u| PART_UNITS.contains(&u.as_str())),
        ("substr" | "substring", 2) => int().is_some_and(|n| n >= 0),
        ("split_part", 2) => int().is_some_and(|n| n != 0),
        ("date_bin", 0) => positive_stride(value),
        ("lpad" | "rpad", 1) => int().is_some_and(|n| (0..=1_000).contains(&n)),
        _ => true,
    }
}

/// The literal under casts and aliases, if `e` is one.
fn literal_value(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal_value(&c.expr),
        Expr::TryCast(c) => literal_value(&c.expr),
        Expr::Alias(a) => literal_value(&a.expr),
        _ => None,
    }
}

/// Expressions whose evaluation can fail on some values, and so must not depend on a row:
/// regular-expression and SIMILAR TO patterns computed per row, decimal arithmetic, and
/// intervals computed per row (a date plus 300,000 years overflows).
fn data_dependent_failure(e: &Expr) -> Option<&'static str> {
    use datafusion::logical_expr::{Case, Like};
    let is_interval =
        |e: &Expr| literal_value(e).is_some_and(|v| matches!(v.data_type(), DataType::Interval(_)));
    match e {
        Expr::BinaryExpr(BinaryExpr { op, right, .. })
            if matches!(
                op,
                Operator::RegexMatch
                    | Operator::RegexIMatch
                    | Operator::RegexNotMatch
                    | Operator::RegexNotIMatch
            ) && literal_value(right).is_none() =>
        {
            Some("a regular expression pattern computed per row")
        }
        Expr::SimilarTo(Like { pattern, .. }) if literal_value(pattern).is_none() => {
            Some("a SIMILAR TO pattern computed per row")
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Multiply | Operator::Divide,
            right,
        }) if is_interval(left) || is_interval(right) => Some("an interval computed per row"),
        Expr::Case(Case {
            when_then_expr,
            else_expr,
            ..
        }) if when_then_expr.iter().any(|(_, t)| is_interval(t))
            || else_expr.as_deref().is_some_and(is_interval) =>
        {
            Some("an interval computed per row")
        }
        Expr::Literal(ScalarValue::IntervalYearMonth(Some(m)), _) if m.unsigned_abs() > 12_000 => {
            Some("an interval over 1,000 years")
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(d)), _)
            if d.days.unsigned_abs() > 366_000 =>
        {
            Some("an interval over 1,000 years")
        }
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _)
            if v.months.unsigned_abs() > 12_000 || v.days.unsigned_abs() > 366_000 =>
        {
            Some("an interval over 1,000 years")
        }
        // Type coercion compares unsigned with signed integers as decimals (safe); decimal
        // arithmetic can overflow.
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Plus
                    | Operator::Minus
                    | Operator::Multiply
                    | Operator::Divide
                    | Operator::Modulo
            ) && (is_decimal(left) || is_decimal(right)) =>
        {
            Some("decimal arithmetic")
        }
        _ => None,
    }
}

/// A decimal literal or a cast to a decimal type.
fn is_decimal(e: &Expr) -> bool {
    let decimal = |t: &DataType| matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..));
    match e {
        Expr::Literal(v, _) => decimal(&v.data_type()),
        Expr::Cast(c) => decimal(c.field.data_type()),
        Expr::TryCast(c) => decimal(c.field.data_type()),
        Expr::Alias(a) => is_decimal(&a.expr),
        _ => false,
    }
}

/// Aggregates allowed per person (in a `GROUP BY person_id` sub-aggregation).
pub(crate) const PERSON_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "median",
    "bool_and",
    "bool_or",
    "first_value",
    "last_value",
];

/// Window functions allowed when partitioned by the person.
pub(crate) const WINDOW_FUNCTIONS: &[&str] = &[
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lead",
    "lag",
    "first_value",
    "last_value",
    "nth_value",
    "count",
    "sum",
    "avg",
    "min",
    "max",
];

/// Facts about a relation (the output of one plan node).
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    /// Holds rows of people (reads a `person` or `events` table).
    pub private: bool,
    /// Per output column.
    pub columns: Vec<Facts>,
    /// Whether each column is the person and never NULL.
    pub keys: Vec<bool>,
    /// Private tables read.
    pub tables: BTreeSet<String>,
}

impl Relation {
    fn public(columns: Vec<Facts>) -> Self {
        let n = columns.len();
        Self {
            private: false,
            columns,
            keys: vec![false; n],
            tables: BTreeSet::new(),
        }
    }

    /// The index of a column that is the person and never NULL.
    pub fn person(&self) -> Option<usize> {
        self.keys.iter().position(|k| *k)
    }
}

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

/// What a query is.
#[derive(Debug, Clone)]
pub(crate) enum Analysis {
    /// It reads only public tables: run it as it is.
    Public,
    /// It releases one aggregation of private data.
    Private(Box<DpAggregation>),
}

/// The analysis, over the catalog's facts.
pub(crate) struct Analyzer<'a> {
    pub catalog: &'a CatalogInfo,
}

impl Analyzer<'_> {
    /// Analyses a whole (type-coerced) plan.
    pub fn analyze(&self, plan: &LogicalPlan) -> Result<Analysis, Rejection> {
        let analysis = self.analyze_node(plan)?;
        // Default deny: a query classed as public must not read private data anywhere,
        // whatever expression or plan position a subquery hides in.
        if matches!(analysis, Analysis::Public) && self.reads_private(plan) {
            return Err(Rejection::new(
                RejectionKind::Subquery,
                "the query reads private data outside the aggregation carelens protects",
                "aggregate private tables in the outermost GROUP BY; a subquery over private \
                 data may only be `person_id IN (SELECT person_id ...)` or an EXISTS \
                 correlated on `person_id`, in a WHERE clause",
            ));
        }
        Ok(analysis)
    }

    fn analyze_node(&self, plan: &LogicalPlan) -> Result<Analysis, Rejection> {
        match plan {
            _ if is_post_processing(plan) && released_below(plan) => {
                for expr in plan.expressions() {
                    self.check_functions(&expr)?;
                    self.check_post_subqueries(&expr)?;
                }
                let inputs = plan.inputs();
                match inputs.as_slice() {
                    [input] => self.analyze_node(input),
                    _ => Err(unsupported("a post-processing step with several inputs")),
                }
            }
            LogicalPlan::Aggregate(aggregate) => self.dp_aggregation(aggregate),
            other => {
                let relation = self.relation(other)?;
                if relation.private && relation.columns.iter().any(|c| c.person) {
                    Err(Rejection::new(
                        RejectionKind::PersonColumn,
                        "the person column cannot appear in the output",
                        "count people instead, e.g. `COUNT(DISTINCT person_id)`",
                    ))
                } else if relation.private {
                    Err(Rejection::new(
                        RejectionKind::RowLevel,
                        "the query returns rows of private data, not aggregates",
                        "aggregate over people, e.g. `SELECT locality, COUNT(DISTINCT \
                         person_id) FROM person GROUP BY locality`",
                    ))
                } else {
                    Ok(Analysis::Public)
                }
            }
        }
    }

    fn check_post_subqueries(&self, expr: &Expr) -> Result<(), Rejection> {
        self.deny_private_subqueries(expr, "after the released aggregation")
    }

    fn dp_aggregation(&self, aggregate: &Aggregate) -> Result<Analysis, Rejection> {
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
                let facts = arg_facts.unwrap_or_else(Facts::unknown);
                if !facts.bounded() {
                    return Err(Rejection::new(
                        RejectionKind::Aggregate,
                        format!(
                            "`{}` has no bounds, so one person could move it without limit",
                            expr.schema_name()
                        ),
                        "declare `bounds` for the column in the catalog, or clamp it in the \
                         query: `LEAST(GREATEST(x, lo), hi)`",
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
                                || v.cast_to(&DataType::Float64).ok().is_some_and(
                                    |f| matches!(f, ScalarValue::Float64(Some(x)) if whole(x)),
                                )
                        })
                    });
                let bounded = Bounded {
                    expr: a.clone(),
                    lo,
                    hi,
                    precision,
                    counts: whole_values
                        && lo >= 0.0
                        && whole(lo)
                        && whole(hi)
                        && precision.unit() == 1.0,
                };
                Ok(if name == "sum" {
                    AggKind::Sum(bounded)
                } else {
                    AggKind::Avg(bounded)
                })
            }
            ("sum" | "avg" | "mean", true, _) => Err(Rejection::new(
                RejectionKind::Aggregate,
                format!("`{name}(DISTINCT ...)` cannot be released"),
                "drop DISTINCT, or sum per-person values computed in a `GROUP BY person_id` CTE",
            )
            .at(at)),
            (
                "min"
                | "max"
                | "median"
                | "percentile_cont"
                | "approx_percentile_cont"
                | "approx_median"
                | "quantile_cont",
                _,
                _,
            ) => Err(Rejection::new(
                RejectionKind::Aggregate,
                format!("`{name}` is an order statistic: it can be one person's value"),
                "release a mean instead (`AVG(LEAST(GREATEST(x, lo), hi))`), or counts per \
                 band (`COUNT(DISTINCT CASE WHEN x >= 21 THEN person_id END)`); MIN/MAX are \
                 allowed per person inside a `GROUP BY person_id` CTE",
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

    /// Facts about `plan`'s output, rejecting any shape the privacy model does not allow.
    pub fn relation(&self, plan: &LogicalPlan) -> Result<Relation, Rejection> {
        // Subqueries over private data are understood only in filters (keyed on the
        // person); anywhere else they are refused.
        if !matches!(plan, LogicalPlan::Filter(_)) {
            for expr in plan.expressions() {
                self.deny_private_subqueries(&expr, "here")?;
            }
        }
        match plan {
            LogicalPlan::TableScan(scan) => self.table_scan(scan),
            LogicalPlan::SubqueryAlias(alias) => self.relation(&alias.input),
            LogicalPlan::Projection(p) => {
                let input = self.relation(&p.input)?;
                let schema = p.input.schema();
                let mut columns = Vec::with_capacity(p.expr.len());
                let mut keys = Vec::with_capacity(p.expr.len());
                for expr in &p.expr {
                    self.check_expr(expr, true, "in a calculation", schema, &input)?;
                    columns.push(expr_facts(expr, schema, &input.columns));
                    keys.push(match unalias(expr) {
                        Expr::Column(c) => schema.index_of_column(c).is_ok_and(|i| input.keys[i]),
                        _ => false,
                    });
                }
                Ok(Relation {
                    private: input.private,
                    columns,
                    keys,
                    tables: input.tables,
                })
            }
            LogicalPlan::Filter(f) => {
                let input = self.relation(&f.input)?;
                self.check_expr(&f.predicate, false, "in a filter", f.input.schema(), &input)?;
                Ok(input)
            }
            LogicalPlan::Join(join) => self.join(join),
            LogicalPlan::Aggregate(a) => self.person_aggregate(a),
            LogicalPlan::Window(w) => self.window(w),
            LogicalPlan::Sort(s) => self.not_before_release(&s.input, "ORDER BY"),
            LogicalPlan::Limit(l) => self.not_before_release(&l.input, "LIMIT"),
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let relation = self.relation(input)?;
                if relation.private && relation.person().is_none() {
                    return Err(Rejection::new(
                        RejectionKind::Ordering,
                        "`DISTINCT` over private rows without the person column",
                        "keep `person_id` in the DISTINCT (`SELECT DISTINCT person_id, ...`), \
                         or count people with `COUNT(DISTINCT person_id)`",
                    ));
                }
                Ok(relation)
            }
            LogicalPlan::Distinct(Distinct::On(on)) => {
                self.not_before_release(&on.input, "DISTINCT ON")
            }
            LogicalPlan::Union(u) => self.union(u),
            LogicalPlan::Values(v) => Ok(Relation::public(vec![
                Facts::unknown();
                v.schema.fields().len()
            ])),
            LogicalPlan::EmptyRelation(e) => Ok(Relation::public(vec![
                Facts::unknown();
                e.schema.fields().len()
            ])),
            LogicalPlan::Repartition(r) => self.relation(&r.input),
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => Err(Rejection::new(
                RejectionKind::Statement,
                "`EXPLAIN` is not run inside queries",
                "use `carelens explain FILE.sql`",
            )),
            LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::DescribeTable(_) => Err(Rejection::new(
                RejectionKind::Statement,
                "only read-only SELECT queries run",
                "write one SELECT that aggregates over people",
            )),
            other => {
                let name = other.display().to_string();
                Err(unsupported(&format!(
                    "`{}`",
                    name.split(':').next().unwrap_or("this plan node")
                )))
            }
        }
    }

    fn not_before_release(&self, input: &LogicalPlan, what: &str) -> Result<Relation, Rejection> {
        let relation = self.relation(input)?;
        if relation.private {
            return Err(Rejection::new(
                RejectionKind::Ordering,
                format!("`{what}` on private rows before the released aggregation"),
                "ORDER BY and LIMIT may only sort the released result; to pick each person's \
                 latest record use `ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY ...)`",
            ));
        }
        Ok(relation)
    }

    fn table_scan(
        &self,
        scan: &datafusion::logical_expr::TableScan,
    ) -> Result<Relation, Rejection> {
        let name = scan.table_name.table();
        let Some(table) = self.catalog.tables.get(name) else {
            return Err(Rejection::new(
                RejectionKind::Table,
                format!("table `{}` is not in the catalog", scan.table_name),
                "read catalog tables only (`carelens catalog` lists them)",
            ));
        };
        let private = table.kind.is_private();
        let mut columns = Vec::new();
        let mut keys = Vec::new();
        for field in scan.projected_schema.fields() {
            let info = table.columns.get(field.name());
            let is_person = private && field.name() == &self.catalog.person_column;
            let (lo, hi) = info
                .and_then(|c| c.bounds)
                .unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
            columns.push(Facts {
                person: is_person,
                constant: table.kind == TableKind::Person || is_person,
                lo,
                hi,
                precision: info.and_then(|c| c.precision),
                domain: info.and_then(|c| c.domain.clone()),
            });
            keys.push(is_person);
        }
        Ok(Relation {
            private,
            columns,
            keys,
            tables: if private {
                BTreeSet::from([name.to_owned()])
            } else {
                BTreeSet::new()
            },
        })
    }

    fn join(&self, join: &datafusion::logical_expr::Join) -> Result<Relation, Rejection> {
        let left = self.relation(&join.left)?;
        let right = self.relation(&join.right)?;
        let n_left = left.columns.len();
        let mut columns: Vec<Facts> = left.columns.iter().chain(&right.columns).cloned().collect();
        let mut keys: Vec<bool> = left.keys.iter().chain(&right.keys).copied().collect();
        let schema = join.schema.as_ref();
        // Conditions are checked over both sides' columns together.
        let both = Relation {
            private: left.private || right.private,
            columns: columns.clone(),
            keys: keys.clone(),
            tables: left.tables.union(&right.tables).cloned().collect(),
        };
        let combined_schema = join.left.schema().join(join.right.schema()).ok();
        let cond_schema = combined_schema.as_ref().unwrap_or(schema);
        for (l, r) in &join.on {
            self.check_expr(l, true, "in a join condition", join.left.schema(), &left)?;
            self.check_expr(r, true, "in a join condition", join.right.schema(), &right)?;
        }
        if let Some(filter) = &join.filter {
            self.check_expr(filter, false, "in a join condition", cond_schema, &both)?;
        }
        // Equalities of a column of each side, as indexes into the joined columns.
        let across: Vec<(usize, usize)> = equality_pairs(
            join.filter.as_ref(),
            join.left.schema(),
            join.right.schema(),
        )
        .iter()
        .filter_map(|(l, r)| match (unalias(l), unalias(r)) {
            (Expr::Column(a), Expr::Column(b)) => Some((
                cond_schema.index_of_column(a).ok()?,
                cond_schema.index_of_column(b).ok()?,
            )),
            _ => None,
        })
        .collect();
        let on_person = join.on.iter().any(|(l, r)| {
            expr_facts(l, join.left.schema(), &left.columns).person
                && expr_facts(r, join.right.schema(), &right.columns).person
        }) || across
            .iter()
            .any(|(a, b)| both.columns[*a].person && both.columns[*b].person);
        let jt = join.join_type;
        if left.private && right.private {
            if !on_person {
                return Err(Rejection::new(
                    RejectionKind::Join,
                    "a join of two private tables that is not on the person",
                    "join private tables on the person: `ON a.person_id = b.person_id` (extra \
                     conditions may follow with AND)",
                ));
            }
            if jt == JoinType::Full {
                return Err(Rejection::new(
                    RejectionKind::Join,
                    "a FULL OUTER JOIN of private tables",
                    "use LEFT JOIN from the table that holds every person of interest",
                ));
            }
        } else if left.private || right.private {
            let keeps_public_rows = match jt {
                JoinType::Inner | JoinType::LeftSemi | JoinType::LeftAnti => !left.private,
                JoinType::RightSemi | JoinType::RightAnti => !right.private,
                JoinType::Left => !left.private,
                JoinType::Right => !right.private,
                _ => true,
            };
            let inner_like = matches!(jt, JoinType::Inner);
            if keeps_public_rows && !inner_like {
                return Err(Rejection::new(
                    RejectionKind::Join,
                    "this join keeps rows of a public table that belong to no person",
                    "join reference tables with an inner join, or LEFT JOIN from the private \
                     table to the reference table",
                ));
            }
        }
        // Outer joins: the non-preserved side may be NULL. Its columns stay constant per
        // person only when the join matches on the person alone: with any other condition
        // a person's row can be matched on some of their rows and NULL on others.
        // Both sides must be the person and never NULL: a `CASE WHEN … THEN person_id END`
        // on one side matches some of a person's rows and not others.
        let is_key = |e: &Expr, schema: &DFSchema, keys: &[bool]| match unalias(e) {
            Expr::Column(c) => schema.index_of_column(c).is_ok_and(|i| keys[i]),
            _ => false,
        };
        let only_person_equalities = join.on.iter().all(|(l, r)| {
            is_key(l, join.left.schema(), &left.keys) && is_key(r, join.right.schema(), &right.keys)
        }) && join.filter.as_ref().is_none_or(|f| {
            split_conjunction(f).iter().all(|c| match c {
                Expr::BinaryExpr(BinaryExpr {
                    left: a,
                    op: Operator::Eq,
                    right: b,
                }) => is_key(a, cond_schema, &both.keys) && is_key(b, cond_schema, &both.keys),
                _ => false,
            })
        });
        // A private relation joined to a public one must be joined on an equality between
        // them: a cross join's size (and so its running time) would depend on the data.
        if left.private != right.private {
            let equi = !join.on.is_empty()
                || !equality_pairs(
                    join.filter.as_ref(),
                    join.left.schema(),
                    join.right.schema(),
                )
                .is_empty();
            if !equi {
                return Err(Rejection::new(
                    RejectionKind::Join,
                    "a join of private data with a public table that has no equality between them",
                    "join reference tables on a key, e.g. `JOIN practice_lookup pl ON \
                     pl.practice_code = p.practice_code`",
                ));
            }
        }
        let nullable = |cols: &mut [Facts], keys: &mut [bool]| {
            for (c, k) in cols.iter_mut().zip(keys.iter_mut()) {
                *k = false;
                c.constant &= only_person_equalities;
                if let Some(domain) = &c.domain
                    && !domain.iter().any(ScalarValue::is_null)
                    && let Some(first) = domain.first()
                    && let Ok(null) = ScalarValue::try_from(first.data_type())
                {
                    let mut d = domain.as_ref().clone();
                    d.push(null);
                    c.domain = Some(Arc::new(d));
                }
            }
        };
        match jt {
            JoinType::Left => nullable(&mut columns[n_left..], &mut keys[n_left..]),
            JoinType::Right => nullable(&mut columns[..n_left], &mut keys[..n_left]),
            _ => {}
        }
        // Public columns joined to a person are not known to be constant per person
        // (the reference table's key may not be unique).
        if left.private != right.private {
            let range = if left.private {
                n_left..columns.len()
            } else {
                0..n_left
            };
            for c in &mut columns[range] {
                c.constant = false;
            }
        }
        let tables = both.tables;
        let (columns, keys) = match jt {
            JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                (columns[..n_left].to_vec(), keys[..n_left].to_vec())
            }
            JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                (columns[n_left..].to_vec(), keys[n_left..].to_vec())
            }
            _ => (columns, keys),
        };
        if columns.len() != join.schema.fields().len() {
            return Err(unsupported("this kind of join"));
        }
        Ok(Relation {
            private: left.private || right.private,
            columns,
            keys,
            tables,
        })
    }

    fn person_aggregate(&self, aggregate: &Aggregate) -> Result<Relation, Rejection> {
        let input = self.relation(&aggregate.input)?;
        let schema = aggregate.input.schema();
        for expr in aggregate.group_expr.iter().chain(&aggregate.aggr_expr) {
            self.check_functions(expr)?;
        }
        let group_keys: Vec<bool> = aggregate
            .group_expr
            .iter()
            .map(|e| match unalias(e) {
                Expr::Column(c) => schema.index_of_column(c).is_ok_and(|i| input.keys[i]),
                _ => false,
            })
            .collect();
        if input.private && !group_keys.iter().any(|k| *k) {
            return Err(Rejection::new(
                RejectionKind::Unsupported,
                "an aggregation across people before the released one",
                "aggregate once: per-person features may be computed first with `GROUP BY \
                 person_id`, and the released counts come from the outermost aggregation",
            )
            .at(aggregate.group_expr.first().and_then(location)));
        }
        let mut columns = Vec::new();
        for expr in &aggregate.group_expr {
            if matches!(expr, Expr::GroupingSet(_)) {
                return Err(unsupported("GROUPING SETS, ROLLUP and CUBE"));
            }
            self.check_expr(expr, true, "in GROUP BY", schema, &input)?;
            columns.push(expr_facts(expr, schema, &input.columns));
        }
        // Per person (plus person-constant keys) each output is one value per person.
        let per_person = aggregate
            .group_expr
            .iter()
            .zip(&columns)
            .all(|(_, f)| f.constant);
        for expr in &aggregate.aggr_expr {
            let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(expr) else {
                return Err(unsupported("an aggregate expression of this form"));
            };
            let name = func.name().to_ascii_lowercase();
            if !PERSON_AGGREGATES.contains(&name.as_str()) {
                return Err(function_rejection(&name, "per-person aggregate").at(location(expr)));
            }
            let counting_people = name == "count" && params.distinct;
            for arg in &params.args {
                self.check_expr(arg, counting_people, "inside an aggregate", schema, &input)?;
            }
            let filter = params.filter.iter().map(|f| f.as_ref());
            for e in filter.chain(params.order_by.iter().map(|s| &s.expr)) {
                self.check_expr(
                    e,
                    false,
                    "in an aggregate's FILTER or ORDER BY",
                    schema,
                    &input,
                )?;
            }
            let arg = params
                .args
                .first()
                .map(|a| expr_facts(a, schema, &input.columns));
            let mut facts = Facts::unknown();
            facts.constant = per_person && input.private;
            match (name.as_str(), arg) {
                ("count", _) => facts.lo = 0.0,
                ("min" | "max" | "first_value" | "last_value", Some(a)) => {
                    facts.lo = a.lo;
                    facts.hi = a.hi;
                    facts.precision = a.precision;
                    facts.domain = a.domain.clone();
                }
                ("avg" | "mean" | "median", Some(a)) => {
                    facts.lo = a.lo;
                    facts.hi = a.hi;
                    facts.precision = a.precision;
                }
                ("sum", Some(a)) => {
                    facts.lo = if a.lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
                    facts.hi = if a.hi <= 0.0 { 0.0 } else { f64::INFINITY };
                    facts.precision = a.precision;
                }
                ("bool_and" | "bool_or", _) => {
                    facts.domain = Some(Arc::new(vec![
                        ScalarValue::Boolean(Some(false)),
                        ScalarValue::Boolean(Some(true)),
                        ScalarValue::Boolean(None),
                    ]));
                }
                _ => {}
            }
            columns.push(facts);
        }
        let mut keys = group_keys;
        keys.resize(columns.len(), false);
        Ok(Relation {
            private: input.private,
            columns,
            keys,
            tables: input.tables,
        })
    }

    fn window(&self, window: &datafusion::logical_expr::Window) -> Result<Relation, Rejection> {
        let input = self.relation(&window.input)?;
        let schema = window.input.schema();
        let mut columns = input.columns.clone();
        let mut keys = input.keys.clone();
        for expr in &window.window_expr {
            let Expr::WindowFunction(w) = unalias(expr) else {
                return Err(unsupported("a window expression of this form"));
            };
            // The frame and the argument shapes, as for a window over released values.
            if let Some(rejection) = refused_expression(unalias(expr)) {
                return Err(rejection.at(location(expr)));
            }
            let WindowFunction { fun, params } = w.as_ref();
            let name = fun.name().to_ascii_lowercase();
            if !WINDOW_FUNCTIONS.contains(&name.as_str()) {
                return Err(function_rejection(&name, "window function").at(location(expr)));
            }
            let by_person = params.partition_by.iter().any(|e| match unalias(e) {
                Expr::Column(c) => schema.index_of_column(c).is_ok_and(|i| input.keys[i]),
                _ => false,
            });
            if input.private && !by_person {
                return Err(Rejection::new(
                    RejectionKind::Window,
                    format!("window function `{name}` is not partitioned by the person"),
                    "partition windows over private rows by the person: `OVER (PARTITION BY \
                     person_id ORDER BY ...)`",
                )
                .at(params.args.first().and_then(location)));
            }
            for e in &params.args {
                self.check_expr(e, false, "as a window function's argument", schema, &input)?;
            }
            for e in &params.partition_by {
                self.check_expr(e, true, "in a window PARTITION BY", schema, &input)?;
            }
            for s in &params.order_by {
                self.check_expr(&s.expr, false, "in a window ORDER BY", schema, &input)?;
            }
            if let Some(filter) = &params.filter {
                self.check_expr(filter, false, "in a window FILTER", schema, &input)?;
            }
            let arg = params
                .args
                .first()
                .map(|a| expr_facts(a, schema, &input.columns));
            let mut facts = Facts::unknown();
            match (name.as_str(), arg) {
                ("row_number" | "rank" | "dense_rank" | "ntile" | "count", _) => facts.lo = 0.0,
                ("percent_rank" | "cume_dist", _) => {
                    facts.lo = 0.0;
                    facts.hi = 1.0;
                }
                (
                    "lead" | "lag" | "first_value" | "last_value" | "nth_value" | "min" | "max",
                    Some(a),
                ) => {
                    facts.lo = a.lo;
                    facts.hi = a.hi;
                    facts.precision = a.precision;
                    if matches!(name.as_str(), "first_value" | "last_value" | "min" | "max") {
                        facts.domain = a.domain.clone();
                    }
                }
                ("avg", Some(a)) => {
                    facts.lo = a.lo;
                    facts.hi = a.hi;
                    facts.precision = a.precision;
                }
                _ => {}
            }
            columns.push(facts);
            keys.push(false);
        }
        if columns.len() != window.schema.fields().len() {
            return Err(unsupported("this window"));
        }
        Ok(Relation {
            private: input.private,
            columns,
            keys,
            tables: input.tables,
        })
    }

    fn union(&self, union: &datafusion::logical_expr::Union) -> Result<Relation, Rejection> {
        let inputs = union
            .inputs
            .iter()
            .map(|i| self.relation(i))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = inputs.first().cloned() else {
            return Err(unsupported("an empty UNION"));
        };
        if inputs.iter().all(|r| !r.private) {
            return Ok(Relation::public(vec![
                Facts::unknown();
                first.columns.len()
            ]));
        }
        let person = first.person();
        if person.is_none() || inputs.iter().any(|r| !r.private || r.person() != person) {
            return Err(Rejection::new(
                RejectionKind::Unsupported,
                "a UNION whose parts do not all keep the person column in the same place",
                "select `person_id` first in every part of the UNION, from private tables only",
            ));
        }
        let mut merged = first;
        for other in &inputs[1..] {
            for (m, o) in merged.columns.iter_mut().zip(&other.columns) {
                m.person &= o.person;
                m.constant = false;
                m.lo = m.lo.min(o.lo);
                m.hi = m.hi.max(o.hi);
                m.precision = match (m.precision, o.precision) {
                    (Some(a), Some(b)) => Some(if a.unit() <= b.unit() { a } else { b }),
                    _ => None,
                };
                m.domain = match (&m.domain, &o.domain) {
                    (Some(a), Some(b)) => {
                        let mut d = a.as_ref().clone();
                        for v in b.iter() {
                            if !d.contains(v) {
                                d.push(v.clone());
                            }
                        }
                        Some(Arc::new(d))
                    }
                    _ => None,
                };
            }
            for (k, o) in merged.keys.iter_mut().zip(&other.keys) {
                *k &= *o;
            }
            merged.tables.extend(other.tables.iter().cloned());
        }
        Ok(merged)
    }

    /// Checks one expression below the released aggregation: allowed functions, the
    /// person column's uses, and subqueries.
    fn check_expr(
        &self,
        expr: &Expr,
        top: bool,
        context: &str,
        schema: &DFSchema,
        relation: &Relation,
    ) -> Result<(), Rejection> {
        self.check_functions(expr)?;
        check_person_use(expr, top, context, schema, &relation.columns)?;
        self.check_subqueries(expr, schema, relation)
    }

    fn check_subqueries(
        &self,
        expr: &Expr,
        schema: &DFSchema,
        outer: &Relation,
    ) -> Result<(), Rejection> {
        let mut result = Ok(());
        let _ = expr.apply(|e| {
            let r = match e {
                Expr::InSubquery(s) => self.relation(&s.subquery.subquery).and_then(|inner| {
                    let outer_person = expr_facts(&s.expr, schema, &outer.columns).person;
                    // NOT IN is false for everyone once the subquery holds a NULL: its
                    // column must be a person that is never NULL.
                    let keyed = if s.negated {
                        inner.keys.first().copied().unwrap_or(false)
                    } else {
                        inner.columns.first().is_some_and(|c| c.person)
                    };
                    if inner.private && !(keyed && outer_person) {
                        Err(subquery_rejection("IN (SELECT ...)").at(location(&s.expr)))
                    } else if !inner.private && outer_person {
                        Err(Rejection::new(
                            RejectionKind::PersonColumn,
                            "the person column compared with values from a public table",
                            "use the person column only to join private tables and to count \
                             people",
                        )
                        .at(location(&s.expr)))
                    } else {
                        Ok(())
                    }
                }),
                Expr::SetComparison(s) if self.reads_private(&s.subquery.subquery) => {
                    Err(subquery_rejection("ANY/ALL (SELECT ...)").at(location(e)))
                }
                Expr::Exists(s) => self.relation(&s.subquery.subquery).and_then(|inner| {
                    let correlations = if inner.private {
                        self.correlated_on_person(&s.subquery.subquery, schema, outer)
                    } else {
                        0
                    };
                    if inner.private && correlations == 0 {
                        Err(subquery_rejection("EXISTS (SELECT ...)"))
                    } else {
                        outer_uses(&s.subquery.subquery, outer, correlations)
                    }
                }),
                Expr::ScalarSubquery(s) if self.reads_private(&s.subquery) => {
                    Err(subquery_rejection("a scalar subquery").at(location(e)))
                }
                Expr::ScalarSubquery(s) => self
                    .relation(&s.subquery)
                    .and_then(|_| outer_uses(&s.subquery, outer, 0)),
                _ => Ok(()),
            };
            // Every subquery's references to the outer rows, not only the kinds above.
            let r = r.and_then(|()| match (e, subquery_plan(e)) {
                (Expr::Exists(_) | Expr::ScalarSubquery(_), _) | (_, None) => Ok(()),
                (_, Some(plan)) => outer_uses(plan, outer, 0),
            });
            let stop = r.is_err();
            if stop {
                result = r;
            }
            Ok(if stop {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        });
        result
    }

    /// Rejects any subquery in `expr` that reads private data.
    fn deny_private_subqueries(&self, expr: &Expr, place: &str) -> Result<(), Rejection> {
        let mut result = Ok(());
        let _ = expr.apply(|e| {
            if let Some(plan) = subquery_plan(e)
                && self.reads_private(plan)
            {
                result = Err(Rejection::new(
                    RejectionKind::Subquery,
                    format!("a subquery over private data {place}"),
                    "a subquery over private data may only be `person_id IN (SELECT person_id \
                     ...)` or an EXISTS correlated on `person_id`, in a WHERE clause; join on \
                     person_id otherwise",
                )
                .at(location(e)));
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        result
    }

    /// Whether `plan` (or a subquery in it) scans a private table.
    pub(crate) fn reads_private(&self, plan: &LogicalPlan) -> bool {
        let mut private = false;
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                private |= self
                    .catalog
                    .tables
                    .get(scan.table_name.table())
                    .is_none_or(|t| t.kind.is_private());
            }
            Ok(if private {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        });
        private
    }

    /// How many `outer.person = inner.person` correlations over a keyed relation a
    /// subquery holds in the filters of its spine (reached through projections, aliases,
    /// other filters and LIMIT only) — not inside one branch of a UNION or the inner side
    /// of a join. Zero: the subquery is not correlated on the person.
    fn correlated_on_person(
        &self,
        plan: &LogicalPlan,
        outer_schema: &DFSchema,
        outer: &Relation,
    ) -> usize {
        let outer_person = |e: &Expr| match e {
            Expr::OuterReferenceColumn(_, c) => outer_schema
                .index_of_column(c)
                .is_ok_and(|i| outer.columns[i].person),
            _ => false,
        };
        let mut correlations = 0;
        let mut node = plan;
        loop {
            match node {
                LogicalPlan::Projection(p) => node = &p.input,
                LogicalPlan::SubqueryAlias(a) => node = &a.input,
                LogicalPlan::Limit(l) => node = &l.input,
                LogicalPlan::Filter(f) => {
                    let Ok(inner) = self.relation(&f.input) else {
                        return 0;
                    };
                    let inner_person = |e: &Expr| match unalias(e) {
                        Expr::Column(c) => f
                            .input
                            .schema()
                            .index_of_column(c)
                            .is_ok_and(|i| inner.keys[i]),
                        _ => false,
                    };
                    correlations += split_conjunction(&f.predicate)
                        .iter()
                        .filter(|c| {
                            matches!(c, Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right })
                                if (outer_person(left) && inner_person(right))
                                    || (outer_person(right) && inner_person(left)))
                        })
                        .count();
                    node = &f.input;
                }
                _ => return correlations,
            }
        }
    }

    /// Rejects scalar functions outside the allowlist, and anything volatile.
    pub(crate) fn check_functions(&self, expr: &Expr) -> Result<(), Rejection> {
        let mut result = Ok(());
        let _ = expr.apply(|e| {
            if let Some(rejection) = refused_expression(e) {
                result = Err(rejection.at(location(e)));
                return Ok(TreeNodeRecursion::Stop);
            }
            if let Some(what) = data_dependent_failure(e) {
                result = Err(Rejection::new(
                    RejectionKind::Function,
                    format!("{what} can fail on some rows and not others"),
                    "use literal patterns and intervals, and integer or float numbers: \
                     whether a query fails must not depend on one person's data",
                )
                .at(location(e)));
                return Ok(TreeNodeRecursion::Stop);
            }
            if let Expr::ScalarFunction(f) = e {
                let name = f.name().to_ascii_lowercase();
                let volatile = f.func.signature().volatility == Volatility::Volatile;
                if volatile || !SCALAR_FUNCTIONS.contains(&name.as_str()) {
                    result = Err(function_rejection(&name, "function").at(location(e)));
                    return Ok(TreeNodeRecursion::Stop);
                }
                let computed = literal_arguments(&name)
                    .iter()
                    .filter_map(|&i| f.args.get(i))
                    .find(|a| literal_value(a).is_none());
                let invalid = literal_arguments(&name).iter().find_map(|&i| {
                    let value = f.args.get(i).and_then(literal_value)?;
                    (!valid_literal_argument(&name, i, value)).then_some(value)
                });
                if let Some(value) = invalid {
                    let message = if name == "date_bin" {
                        "`date_bin` needs a positive interval as its stride".to_owned()
                    } else {
                        format!("`{name}` does not accept `{value}`")
                    };
                    result = Err(Rejection::new(
                        RejectionKind::Function,
                        message,
                        "use a valid unit, a non-negative length or a non-zero position",
                    )
                    .at(location(e)));
                    return Ok(TreeNodeRecursion::Stop);
                }
                if let Some(arg) = computed {
                    result = Err(Rejection::new(
                        RejectionKind::Function,
                        format!("`{name}` needs a literal where the query computes `{arg}`"),
                        "write the unit, length or digits as a constant: a value that fails on \
                         some rows would make the query fail, or not, depending on one person",
                    )
                    .at(location(e)));
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        result
    }
}

/// Rejects a subquery that reads the outer query's private rows other than through its
/// `allowed` correlations on the person (an `EXISTS` keyed on `inner.person_id =
/// outer.person_id`). Any other outer reference — the person as a value or a key
/// (`(SELECT p.person_id FROM practice_lookup LIMIT 1)`), the person compared with
/// something that is not a person, or any private column inside a subquery — is a use
/// of private data the analysis of the subquery cannot see, so it is refused here, before
/// DataFusion plans (or fails to plan) it.
fn outer_uses(subquery: &LogicalPlan, outer: &Relation, allowed: usize) -> Result<(), Rejection> {
    if !outer.private {
        return Ok(());
    }
    let mut references = 0usize;
    let mut first = None;
    let _ = subquery.apply_with_subqueries(|node| {
        for e in node.expressions() {
            let _ = e.apply(|x| {
                if let Expr::OuterReferenceColumn(..) = x {
                    references += 1;
                    if first.is_none() {
                        first = Some(x.to_string());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if references > allowed {
        return Err(Rejection::new(
            RejectionKind::Subquery,
            format!(
                "a subquery refers to the outer query's private rows (`{}`)",
                first.unwrap_or_default()
            ),
            "a subquery may refer to the outer rows only as `inner.person_id = \
             outer.person_id` in an EXISTS over private tables; join reference tables on \
             their key instead of correlating a subquery with them",
        ));
    }
    Ok(())
}

/// The `a = b` conjuncts of a join filter whose two sides are expressions over different
/// inputs, as (the expression over the left input, the one over the right). Casts and
/// other expressions are kept: the public side of such a pair is what a join with a
/// public table matches on (`bounds.rs`).
pub(crate) fn equality_pairs(
    filter: Option<&Expr>,
    left: &DFSchema,
    right: &DFSchema,
) -> Vec<(Expr, Expr)> {
    let Some(filter) = filter else {
        return Vec::new();
    };
    // Which input all of an expression's columns come from, if one.
    let side = |e: &Expr| {
        let refs = e.column_refs();
        if refs.is_empty() || has_subquery_or_outer(e) {
            None
        } else if refs.iter().all(|c| left.has_column(c)) {
            Some(true)
        } else if refs.iter().all(|c| right.has_column(c)) {
            Some(false)
        } else {
            None
        }
    };
    split_conjunction(filter)
        .into_iter()
        .filter_map(|c| match c {
            Expr::BinaryExpr(BinaryExpr {
                left: a,
                op: Operator::Eq,
                right: b,
            }) => match (side(a), side(b)) {
                (Some(true), Some(false)) => Some((a.as_ref().clone(), b.as_ref().clone())),
                (Some(false), Some(true)) => Some((b.as_ref().clone(), a.as_ref().clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn has_subquery_or_outer(e: &Expr) -> bool {
    e.exists(|x| Ok(matches!(x, Expr::OuterReferenceColumn(..)) || subquery_plan(x).is_some()))
        .unwrap_or(true)
}

/// The plan of a subquery expression, for every kind DataFusion has.
pub(crate) fn subquery_plan(expr: &Expr) -> Option<&LogicalPlan> {
    match expr {
        Expr::ScalarSubquery(s) => Some(&s.subquery),
        Expr::Exists(s) => Some(&s.subquery.subquery),
        Expr::InSubquery(s) => Some(&s.subquery.subquery),
        Expr::SetComparison(s) => Some(&s.subquery.subquery),
        _ => None,
    }
}

fn function_rejection(name: &str, what: &str) -> Rejection {
    Rejection::new(
        RejectionKind::Function,
        format!("{what} `{name}` is not allowed"),
        "carelens allows deterministic functions that read only their own row (e.g. \
         COALESCE, LEAST, GREATEST, DATE_TRUNC, DATE_PART, SUBSTR, ROUND); random or \
         time-dependent functions would make results unrepeatable",
    )
}

fn subquery_rejection(what: &str) -> Rejection {
    Rejection::new(
        RejectionKind::Subquery,
        format!("{what} over private data that is not keyed on the person"),
        "use `person_id IN (SELECT person_id FROM ...)`, an EXISTS correlated on \
         `person_id`, or a join on `person_id`",
    )
}

fn unsupported(what: &str) -> Rejection {
    Rejection::new(
        RejectionKind::Unsupported,
        format!("{what} is not supported by carelens yet"),
        "rewrite the query with CTEs, joins on person_id and one final GROUP BY; if you \
         think this shape is safe, tell the carelens team",
    )
}

/// The nodes that may stand above the released aggregation.
fn is_post_processing(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Distinct(Distinct::All(_))
            | LogicalPlan::Window(_)
    )
}

/// Whether a chain of post-processing nodes from `plan` down ends in an aggregation.
fn released_below(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => true,
        _ if is_post_processing(plan) => match plan.inputs().as_slice() {
            [input] => released_below(input),
            _ => false,
        },
        _ => false,
    }
}

/// The expression under any aliases.
pub(crate) fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
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
