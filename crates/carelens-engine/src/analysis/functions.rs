//! What an expression may compute, wherever it stands in the plan: the allow-lists of
//! scalar functions, operators, per-person aggregates and window functions, and the checks
//! that do not depend on the relation — arguments that must be valid literals, regular
//! expressions, long text constants, intervals and decimal arithmetic that could fail on
//! one row and not another, and window frames and arguments.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, Volatility};

use super::{Analyzer, unsupported};
use crate::facts::location;
use crate::rejection::{Rejection, RejectionKind};

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
pub(super) fn refused_expression(e: &Expr) -> Option<Rejection> {
    use datafusion::logical_expr::{Like, WindowFrameBound, WindowFrameUnits};
    let pattern_error = |pattern: &Expr, case_insensitive: bool| {
        let text = literal_text(literal_value(pattern)?)?.to_owned();
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
            let text = |i: usize| {
                let value = f.args.get(i).and_then(literal_value)?;
                literal_text(value).map(|s| s.chars().count())
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
            .and_then(literal_int)
            .is_some_and(|n| n >= least)
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
    let text = || literal_text(value).map(str::to_ascii_lowercase);
    match (name, index) {
        ("date_trunc" | "datetrunc", 0) => {
            text().is_some_and(|u| TRUNC_UNITS.contains(&u.as_str()))
        }
        ("date_part" | "datepart", 0) => text().is_some_and(|u| PART_UNITS.contains(&u.as_str())),
        ("substr" | "substring", 2) => literal_int(value).is_some_and(|n| n >= 0),
        ("split_part", 2) => literal_int(value).is_some_and(|n| n != 0),
        ("date_bin", 0) => positive_stride(value),
        ("lpad" | "rpad", 1) => literal_int(value).is_some_and(|n| (0..=1_000).contains(&n)),
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

/// The text of a string literal, of any of Arrow's string types.
fn literal_text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        _ => None,
    }
}

/// A literal cast to a 64-bit integer, if the cast succeeds and is not NULL.
fn literal_int(value: &ScalarValue) -> Option<i64> {
    match value.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(x) => x,
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

impl Analyzer<'_> {
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

pub(super) fn function_rejection(name: &str, what: &str) -> Rejection {
    Rejection::new(
        RejectionKind::Function,
        format!("{what} `{name}` is not allowed"),
        "carelens allows deterministic functions that read only their own row (e.g. \
         COALESCE, LEAST, GREATEST, DATE_TRUNC, DATE_PART, SUBSTR, ROUND); random or \
         time-dependent functions would make results unrepeatable",
    )
}
