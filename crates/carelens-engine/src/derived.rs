//! Intervals for derived columns: a result column computed from released cells (sums,
//! differences, products and ratios of them, constants, `ROUND`, `ABS`, `NULLIF`, `CASE`
//! over them) gets a 95% interval by interval arithmetic. With `k` distinct released
//! cells in the expression, each cell's interval is taken at α/k, so by the union bound
//! all of them hold their true values together with probability at least 1 − α; every
//! operation below is evaluated so that its result holds what DataFusion computes from
//! any values in its operands' intervals (read with the plan's types: integer division
//! and float-to-integer casts truncate, integer arithmetic may wrap), so the true derived
//! value is in the result with at least that probability. Where no finite interval can be
//! given (a denominator whose interval reaches 0, a value that may be `NULL` or wrap, an
//! expression it cannot read), the reason is returned and the wire format says it.

use carelens_privacy::{AccuracyError, Alpha, Cell, Interval, ratio_interval};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};

use crate::release::lineage;

/// A derived column's expression over the aggregation's outputs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Derived {
    /// A released cell: the aggregation's output column `j` (at least the number of keys).
    Cell(usize),
    /// A literal number.
    Const(f64),
    Neg(Box<Derived>),
    Abs(Box<Derived>),
    Add(Box<Derived>, Box<Derived>),
    Sub(Box<Derived>, Box<Derived>),
    Mul(Box<Derived>, Box<Derived>),
    Div(Box<Derived>, Box<Derived>),
    /// `ROUND(x, digits)`: the interval is widened by half a unit of the last digit, so it
    /// holds the rounded and the unrounded value (as a ratio's does).
    Round(Box<Derived>, i32),
    /// Truncation toward zero: DataFusion's division of integers, and a cast of a float
    /// to an integer.
    Trunc(Box<Derived>),
    /// A value of an integer type: no interval if its range may leave `i64` (DataFusion's
    /// integer arithmetic wraps).
    Integer(Box<Derived>),
    /// `NULLIF(x, k)`: no interval if the true `x` may be `k` (the value may be `NULL`).
    NullIf(Box<Derived>, f64),
    /// `CASE WHEN a op b THEN x … ELSE y END`.
    Case {
        branches: Vec<(Comparison, Derived)>,
        otherwise: Option<Box<Derived>>,
    },
}

/// `left op right` in a `CASE`'s condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Comparison {
    left: Derived,
    op: Operator,
    right: Derived,
}

/// Why a derived cell has no interval, in words for the wire format.
pub(crate) type NoInterval = String;

impl Derived {
    /// The expression of result column `index` of `plan`, found at the projection that
    /// computes it, with every column it reads traced to a released (non-key) aggregate.
    pub(crate) fn of(plan: &LogicalPlan, index: usize, n_keys: usize) -> Result<Self, NoInterval> {
        match plan {
            LogicalPlan::Projection(p) => {
                let expr = p.expr.get(index).ok_or_else(unreadable)?;
                if let Expr::Column(c) = crate::analysis::unalias(expr) {
                    let j = p
                        .input
                        .schema()
                        .index_of_column(c)
                        .map_err(|_| unreadable())?;
                    return Self::of(&p.input, j, n_keys);
                }
                let schema = p.input.schema().as_ref();
                let trace = |e: &Expr| -> Result<Derived, NoInterval> {
                    let Expr::Column(c) = e else {
                        return Err(unreadable());
                    };
                    let j = p
                        .input
                        .schema()
                        .index_of_column(c)
                        .ok()
                        .and_then(|i| lineage(&p.input, i))
                        .ok_or_else(unreadable)?;
                    if j < n_keys {
                        return Err("it reads a group key, which has no error to bound".into());
                    }
                    Ok(Derived::Cell(j))
                };
                convert(expr, schema, &trace)
            }
            LogicalPlan::Filter(f) => Self::of(&f.input, index, n_keys),
            LogicalPlan::Sort(s) => Self::of(&s.input, index, n_keys),
            LogicalPlan::Limit(l) => Self::of(&l.input, index, n_keys),
            LogicalPlan::SubqueryAlias(a) => Self::of(&a.input, index, n_keys),
            _ => Err(unreadable()),
        }
    }

    /// The distinct released cells the expression reads.
    fn cells(&self, out: &mut Vec<usize>) {
        match self {
            Derived::Cell(j) => {
                if !out.contains(j) {
                    out.push(*j);
                }
            }
            Derived::Const(_) => {}
            Derived::Neg(a)
            | Derived::Abs(a)
            | Derived::Round(a, _)
            | Derived::Trunc(a)
            | Derived::Integer(a)
            | Derived::NullIf(a, _) => a.cells(out),
            Derived::Add(a, b) | Derived::Sub(a, b) | Derived::Mul(a, b) | Derived::Div(a, b) => {
                a.cells(out);
                b.cells(out);
            }
            Derived::Case {
                branches,
                otherwise,
            } => {
                for (c, x) in branches {
                    c.left.cells(out);
                    c.right.cells(out);
                    x.cells(out);
                }
                if let Some(y) = otherwise {
                    y.cells(out);
                }
            }
        }
    }

    /// The expression's interval at `alpha` in all, from the group's cells (`row[j −
    /// n_keys]` is output column `j`): `Ok(None)` when a cell it reads is suppressed (the
    /// derived value is suppressed too), `Err` with the reason when no finite interval can
    /// be given.
    pub(crate) fn interval(
        &self,
        row: &[Cell],
        n_keys: usize,
        alpha: Alpha,
    ) -> Result<Option<Interval>, DerivedError> {
        let mut read = Vec::new();
        self.cells(&mut read);
        let each = alpha.split(read.len().max(1));
        let mut inputs = Vec::with_capacity(read.len());
        for &j in &read {
            match row.get(j - n_keys) {
                Some(Cell::Released(r)) => match r.interval(each)? {
                    Some(iv) if iv.lo.is_finite() && iv.hi.is_finite() => inputs.push((j, iv)),
                    Some(_) | None => {
                        return Err(DerivedError::None(
                            "a cell it reads has no finite interval at the confidence each \
                             of its cells needs (a quantile's interval is for 95% only)"
                                .into(),
                        ));
                    }
                },
                _ => return Ok(None),
            }
        }
        let at = |j: usize| inputs.iter().find(|(k, _)| *k == j).map(|(_, iv)| *iv);
        let iv = self.eval(&at).map_err(DerivedError::None)?;
        Ok(Some(iv))
    }

    fn eval(&self, at: &dyn Fn(usize) -> Option<Interval>) -> Result<Interval, NoInterval> {
        let point = |x: f64| Interval { lo: x, hi: x };
        let hull = |values: [f64; 4]| Interval {
            lo: values.iter().copied().fold(f64::INFINITY, f64::min),
            hi: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        };
        let iv = match self {
            Derived::Cell(j) => at(*j).ok_or_else(unreadable)?,
            Derived::Const(x) => point(*x),
            Derived::Neg(a) => {
                let a = a.eval(at)?;
                Interval {
                    lo: -a.hi,
                    hi: -a.lo,
                }
            }
            Derived::Abs(a) => {
                let a = a.eval(at)?;
                let lo = if a.lo <= 0.0 && a.hi >= 0.0 {
                    0.0
                } else {
                    a.lo.abs().min(a.hi.abs())
                };
                Interval {
                    lo,
                    hi: a.lo.abs().max(a.hi.abs()),
                }
            }
            Derived::Add(a, b) => {
                let (a, b) = (a.eval(at)?, b.eval(at)?);
                Interval {
                    lo: a.lo + b.lo,
                    hi: a.hi + b.hi,
                }
            }
            Derived::Sub(a, b) => {
                let (a, b) = (a.eval(at)?, b.eval(at)?);
                Interval {
                    lo: a.lo - b.hi,
                    hi: a.hi - b.lo,
                }
            }
            Derived::Mul(a, b) => {
                let (a, b) = (a.eval(at)?, b.eval(at)?);
                hull([a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi])
            }
            Derived::Div(a, b) => {
                let (a, b) = (a.eval(at)?, b.eval(at)?);
                ratio_interval(a, b).ok_or_else(|| {
                    "a denominator's interval reaches 0, so the ratio is unbounded".to_owned()
                })?
            }
            Derived::Trunc(a) => {
                let a = a.eval(at)?;
                Interval {
                    lo: a.lo.trunc(),
                    hi: a.hi.trunc(),
                }
            }
            Derived::Integer(a) => {
                let a = a.eval(at)?;
                // ±2^63, as floats: a range inside it cannot wrap.
                let limit = 9.223_372_036_854_775e18;
                if !(a.lo > -limit && a.hi < limit) {
                    return Err("it may overflow its integer type".into());
                }
                a
            }
            Derived::NullIf(a, k) => {
                let a = a.eval(at)?;
                if a.lo <= *k && *k <= a.hi {
                    return Err(format!(
                        "its NULLIF may be NULL for the true values (the interval reaches {k})"
                    ));
                }
                a
            }
            Derived::Round(a, digits) => {
                let a = a.eval(at)?;
                let half = 0.5 * 10f64.powi(-digits);
                Interval {
                    lo: a.lo - half,
                    hi: a.hi + half,
                }
            }
            Derived::Case {
                branches,
                otherwise,
            } => {
                // The branches the true values may take: each up to the first whose
                // condition surely holds; the `ELSE` if none surely does.
                let mut result: Option<Interval> = None;
                let mut join = |iv: Interval| {
                    result = Some(match result {
                        Some(r) => Interval {
                            lo: r.lo.min(iv.lo),
                            hi: r.hi.max(iv.hi),
                        },
                        None => iv,
                    });
                };
                let mut settled = false;
                for (condition, then) in branches {
                    match condition.truth(at)? {
                        Some(false) => continue,
                        Some(true) => {
                            join(then.eval(at)?);
                            settled = true;
                            break;
                        }
                        None => join(then.eval(at)?),
                    }
                }
                if !settled {
                    match otherwise {
                        Some(y) => join(y.eval(at)?),
                        None => {
                            return Err("its CASE has no ELSE and may be NULL for the true \
                                        values"
                                .into());
                        }
                    }
                }
                result.ok_or_else(unreadable)?
            }
        };
        if iv.lo.is_finite() && iv.hi.is_finite() && iv.lo <= iv.hi {
            Ok(iv)
        } else {
            Err("its interval is not finite".into())
        }
    }
}

impl Comparison {
    /// Whether the comparison holds for every value in its operands' intervals
    /// (`Some(true)`), for none (`Some(false)`), or may go either way (`None`).
    fn truth(&self, at: &dyn Fn(usize) -> Option<Interval>) -> Result<Option<bool>, NoInterval> {
        let (a, b) = (self.left.eval(at)?, self.right.eval(at)?);
        let (always, never) = match self.op {
            Operator::Lt => (a.hi < b.lo, a.lo >= b.hi),
            Operator::LtEq => (a.hi <= b.lo, a.lo > b.hi),
            Operator::Gt => (a.lo > b.hi, a.hi <= b.lo),
            Operator::GtEq => (a.lo >= b.hi, a.hi < b.lo),
            Operator::Eq => (
                a.lo == a.hi && b.lo == b.hi && a.lo == b.lo,
                a.hi < b.lo || b.hi < a.lo,
            ),
            Operator::NotEq => (
                a.hi < b.lo || b.hi < a.lo,
                a.lo == a.hi && b.lo == b.hi && a.lo == b.lo,
            ),
            _ => return Err(unreadable()),
        };
        Ok(if always {
            Some(true)
        } else if never {
            Some(false)
        } else {
            None
        })
    }
}

/// Why a derived interval could not be computed.
#[derive(Debug)]
pub(crate) enum DerivedError {
    /// No finite interval holds the value: the reason.
    None(NoInterval),
    /// An input's interval could not be computed.
    Accuracy(AccuracyError),
}

impl From<AccuracyError> for DerivedError {
    fn from(e: AccuracyError) -> Self {
        DerivedError::Accuracy(e)
    }
}

fn unreadable() -> NoInterval {
    "carelens does not bound this expression (it bounds +, −, ×, /, constants, ROUND, ABS \
     and CASE of released values)"
        .into()
}

/// Whether DataFusion computes `expr` (over `schema`) as the real-number function its
/// shape says: no division whose result is an integer (it truncates) and no cast to
/// anything but a float. The ratio path takes only such expressions; others are bounded
/// here, with truncation.
pub(crate) fn real_valued(expr: &Expr, schema: &DFSchema) -> bool {
    let mut real = true;
    let _ = expr.apply(|e| {
        let ok = match e {
            Expr::BinaryExpr(BinaryExpr {
                op: Operator::Divide,
                ..
            }) => e.get_type(schema).is_ok_and(|t| t.is_floating()),
            Expr::Cast(c) => {
                c.field.data_type().is_floating() || cast_literal(&c.expr, c.field.data_type())
            }
            Expr::TryCast(c) => {
                c.field.data_type().is_floating() || cast_literal(&c.expr, c.field.data_type())
            }
            _ => true,
        };
        real &= ok;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    real
}

/// Whether `expr` is a number literal that a cast to `to` leaves unchanged (the
/// analyser's `CAST(1 AS INT)`; `CAST(2.7 AS INT)` is 2 and is not).
fn cast_literal(expr: &Expr, to: &DataType) -> bool {
    let Expr::Literal(v, _) = expr else {
        return false;
    };
    let as_float = |v: &ScalarValue| match v.cast_to(&DataType::Float64) {
        Ok(ScalarValue::Float64(Some(x))) => Some(x),
        _ => None,
    };
    let cast = v.cast_to(to).ok();
    matches!((as_float(v), cast.as_ref().and_then(as_float)), (Some(a), Some(b)) if a == b)
}

/// `expr` as a [`Derived`], its columns resolved by `trace`, typed by `schema` so that
/// the arithmetic is DataFusion's: integer division and casts of floats to integers
/// truncate, integer results may wrap, `NULLIF` may give `NULL`. Text, dates, decimals
/// and anything else are not bounded.
fn convert(
    expr: &Expr,
    schema: &DFSchema,
    trace: &dyn Fn(&Expr) -> Result<Derived, NoInterval>,
) -> Result<Derived, NoInterval> {
    let boxed = |e: &Expr| convert(e, schema, trace).map(Box::new);
    let type_of = |e: &Expr| e.get_type(schema).map_err(|_| unreadable());
    let numeric = |t: &DataType| t.is_integer() || t.is_floating();
    Ok(match expr {
        Expr::Alias(a) => convert(&a.expr, schema, trace)?,
        Expr::Column(_) => {
            if !numeric(&type_of(expr)?) {
                return Err(unreadable());
            }
            trace(expr)?
        }
        Expr::Literal(v, _) => {
            if v.is_null() {
                return Err("it may be NULL".into());
            }
            if !numeric(&v.data_type()) {
                return Err(unreadable());
            }
            match v.cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(Some(x))) if x.is_finite() => Derived::Const(x),
                _ => return Err(unreadable()),
            }
        }
        Expr::Cast(datafusion::logical_expr::Cast { expr: inner, field })
        | Expr::TryCast(datafusion::logical_expr::TryCast { expr: inner, field }) => {
            let data_type = field.data_type();
            // A constant cast (the analyser's `CAST(1 AS INT)` of ROUND's digits): its
            // value as DataFusion casts it.
            if let Expr::Literal(v, _) = inner.as_ref() {
                return match v.cast_to(data_type).map(|c| c.cast_to(&DataType::Float64)) {
                    Ok(Ok(ScalarValue::Float64(Some(x))))
                        if x.is_finite() && numeric(data_type) =>
                    {
                        Ok(Derived::Const(x))
                    }
                    _ => Err(unreadable()),
                };
            }
            let from = type_of(inner)?;
            let value = boxed(inner)?;
            match (from.is_integer(), from.is_floating()) {
                // Text, decimals, and integers narrower than `i64` (which may not hold
                // the value: `TRY_CAST` gives NULL) are not bounded.
                _ if !(data_type.is_floating() || *data_type == DataType::Int64) => {
                    return Err(unreadable());
                }
                (true, _) | (_, true) if data_type.is_floating() => *value,
                (true, _) => Derived::Integer(value),
                (_, true) => Derived::Integer(Box::new(Derived::Trunc(value))),
                _ => return Err(unreadable()),
            }
        }
        Expr::Negative(a) => Derived::Neg(boxed(a)?),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let result = type_of(expr)?;
            if !numeric(&result) {
                return Err(unreadable());
            }
            let (a, b) = (boxed(left)?, boxed(right)?);
            let node = match op {
                Operator::Plus => Derived::Add(a, b),
                Operator::Minus => Derived::Sub(a, b),
                Operator::Multiply => Derived::Mul(a, b),
                Operator::Divide if result.is_integer() => {
                    Derived::Trunc(Box::new(Derived::Div(a, b)))
                }
                Operator::Divide => Derived::Div(a, b),
                _ => return Err(unreadable()),
            };
            if result.is_integer() {
                Derived::Integer(Box::new(node))
            } else {
                node
            }
        }
        Expr::ScalarFunction(f) if f.name() == "abs" && f.args.len() == 1 => {
            Derived::Abs(boxed(&f.args[0])?)
        }
        Expr::ScalarFunction(f) if f.name() == "nullif" && f.args.len() == 2 => {
            let Derived::Const(k) = convert(&f.args[1], schema, trace)? else {
                return Err(unreadable());
            };
            Derived::NullIf(boxed(&f.args[0])?, k)
        }
        Expr::ScalarFunction(f) if f.name() == "round" && !f.args.is_empty() => {
            let digits = match f.args.get(1).map(|d| convert(d, schema, trace)) {
                None => 0.0,
                Some(Ok(Derived::Const(d))) => d,
                Some(_) => return Err(unreadable()),
            };
            if digits.fract() != 0.0 || digits.abs() > 15.0 {
                return Err(unreadable());
            }
            Derived::Round(boxed(&f.args[0])?, digits as i32)
        }
        Expr::Case(case) if case.expr.is_none() => {
            let branches = case
                .when_then_expr
                .iter()
                .map(|(when, then)| {
                    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = when.as_ref() else {
                        return Err(unreadable());
                    };
                    if !(numeric(&type_of(left)?) && numeric(&type_of(right)?)) {
                        return Err(unreadable());
                    }
                    let condition = Comparison {
                        left: convert(left, schema, trace)?,
                        op: *op,
                        right: convert(right, schema, trace)?,
                    };
                    Ok((condition, convert(then, schema, trace)?))
                })
                .collect::<Result<_, NoInterval>>()?;
            let otherwise = match &case.else_expr {
                Some(e) if !matches!(e.as_ref(), Expr::Literal(v, _) if v.is_null()) => {
                    Some(boxed(e)?)
                }
                _ => None,
            };
            Derived::Case {
                branches,
                otherwise,
            }
        }
        _ => return Err(unreadable()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(lo: f64, hi: f64) -> Interval {
        Interval { lo, hi }
    }

    /// Cells 1 → [8, 12], 2 → [-1, 3], 3 → [95, 105].
    fn at(j: usize) -> Option<Interval> {
        match j {
            1 => Some(iv(8.0, 12.0)),
            2 => Some(iv(-1.0, 3.0)),
            3 => Some(iv(95.0, 105.0)),
            _ => None,
        }
    }

    fn c(j: usize) -> Box<Derived> {
        Box::new(Derived::Cell(j))
    }

    fn k(x: f64) -> Box<Derived> {
        Box::new(Derived::Const(x))
    }

    #[test]
    fn arithmetic_holds_every_value_of_its_operands() {
        let cases: [(Derived, Interval); 7] = [
            (Derived::Add(c(1), c(3)), iv(103.0, 117.0)),
            (Derived::Sub(c(3), c(1)), iv(83.0, 97.0)),
            (Derived::Mul(c(1), c(2)), iv(-12.0, 36.0)),
            (Derived::Div(c(1), c(3)), iv(8.0 / 105.0, 12.0 / 95.0)),
            (Derived::Neg(c(2)), iv(-3.0, 1.0)),
            (Derived::Abs(c(2)), iv(0.0, 3.0)),
            (
                Derived::Round(Box::new(Derived::Mul(k(100.0), c(1))), -1),
                iv(795.0, 1205.0),
            ),
        ];
        for (expr, want) in cases {
            let got = expr.eval(&at).unwrap();
            assert!(
                (got.lo - want.lo).abs() < 1e-12 && (got.hi - want.hi).abs() < 1e-12,
                "{expr:?}: {got:?}"
            );
            // Every combination of the operands' ends lands inside (the extremes of
            // these functions are at the ends, or at 0 for ABS).
            for a in [8.0, 10.0, 12.0] {
                for b in [-1.0, 0.0, 3.0] {
                    for d in [95.0, 105.0] {
                        let value = |j| match j {
                            1 => Some(iv(a, a)),
                            2 => Some(iv(b, b)),
                            _ => Some(iv(d, d)),
                        };
                        let point = expr.eval(&value).unwrap();
                        assert!(
                            got.lo <= point.lo && point.hi <= got.hi,
                            "{expr:?} at {a} {b} {d}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_denominator_reaching_zero_has_no_interval_and_says_why() {
        let why = Derived::Div(c(1), c(2)).eval(&at).unwrap_err();
        assert!(why.contains("denominator"), "{why}");
    }

    #[test]
    fn a_case_takes_every_branch_the_true_values_may_take() {
        let case = |left: Derived, otherwise: Option<Box<Derived>>| Derived::Case {
            branches: vec![(
                Comparison {
                    left,
                    op: Operator::Gt,
                    right: Derived::Const(50.0),
                },
                Derived::Const(1.0),
            )],
            otherwise,
        };
        // Surely true ([95, 105] > 50): the first branch only.
        assert_eq!(
            case(Derived::Cell(3), Some(k(0.0))).eval(&at),
            Ok(iv(1.0, 1.0))
        );
        // Surely false: the ELSE only.
        assert_eq!(
            case(Derived::Cell(1), Some(k(0.0))).eval(&at),
            Ok(iv(0.0, 0.0))
        );
        // Either way ([8, 12] · 5 = [40, 60]): both.
        let either = Derived::Mul(c(1), k(5.0));
        assert_eq!(
            case(either.clone(), Some(k(0.0))).eval(&at),
            Ok(iv(0.0, 1.0))
        );
        // Without an ELSE the true value may be NULL: no interval.
        assert!(case(either, None).eval(&at).unwrap_err().contains("NULL"));
        // Surely true without an ELSE is fine.
        assert_eq!(case(Derived::Cell(3), None).eval(&at), Ok(iv(1.0, 1.0)));
    }

    /// Each expression, read from DataFusion's own plan over a `__released` table of two
    /// integer cells `a` ∈ [7, 13], `b` ∈ [2, 4] and a float `x` ∈ [41.3, 41.9], and run
    /// by DataFusion at every integer and eleven float points of those ranges: where an
    /// interval is given, every result DataFusion computes is in it (so the true value
    /// and the released one are, whenever the cells are in their intervals); where none
    /// is, the reason is given. Integer division and casts truncate, NULLIF and a CASE
    /// without ELSE may be NULL, text is not a number.
    #[tokio::test]
    async fn intervals_hold_what_datafusion_computes_at_every_point_of_the_cells_ranges() {
        use datafusion::arrow::array::{Array, Float64Array, Int64Array};
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::datasource::MemTable;
        use datafusion::prelude::SessionContext;
        use std::sync::Arc;

        let ranges = [iv(7.0, 13.0), iv(2.0, 4.0), iv(41.3, 41.9)];
        let at = |j: usize| ranges.get(j).copied();
        let (mut a, mut b, mut x) = (Vec::new(), Vec::new(), Vec::new());
        for i in 7..=13 {
            for j in 2..=4 {
                for k in 0..=10 {
                    a.push(i);
                    b.push(j);
                    x.push(41.3 + 0.06 * f64::from(k));
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
            Field::new("x", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(a)),
                Arc::new(Int64Array::from(b)),
                Arc::new(Float64Array::from(x)),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("__released", Arc::new(table)).unwrap();
        // (expression, whether an interval is given)
        let cases = [
            ("a - 2 * b", true),
            ("a / b - 1", true),
            ("100 * a / b", true),
            ("CAST(x AS BIGINT)", true),
            ("CAST(a AS DOUBLE) / b", true),
            ("ROUND(x, 1)", true),
            ("ROUND(a, -1)", true),
            ("ABS(b - a)", true),
            ("-a + x", true),
            ("NULLIF(a, 0) + 1", true),
            ("NULLIF(a, 10) + 1", false),
            ("CASE WHEN a > 10 THEN 1.0 / 3 ELSE 0 END", true),
            ("CASE WHEN a > 5 THEN 1.0 / 3 END", true),
            ("CASE WHEN a > 10 THEN 1 END", false),
            ("CASE WHEN a = 10 THEN 1 ELSE 2 END", true),
            ("CASE WHEN a <> 10 THEN b ELSE x END", true),
            ("a / (b - 3)", false),
            ("LN(a)", false),
            ("CAST(CAST(a AS VARCHAR) AS BIGINT)", false),
            ("CAST(a AS INT) + 1", false),
            ("ROUND(CAST(a AS DOUBLE) / b, CAST(1 AS INT))", true),
            ("a * CAST(2.7 AS BIGINT)", true),
        ];
        for (sql, bounded) in cases {
            let query = format!("SELECT {sql} AS v FROM __released");
            let plan = ctx.state().create_logical_plan(&query).await.unwrap();
            let interval = Derived::of(&plan, 0, 0).and_then(|d| d.eval(&at));
            let Ok(iv) = interval else {
                assert!(!bounded, "{sql}: {interval:?}");
                continue;
            };
            assert!(bounded, "{sql}: {iv:?}, but none was expected");
            let batches = ctx.sql(&query).await.unwrap().collect().await.unwrap();
            let mut seen = 0;
            for batch in &batches {
                let column =
                    datafusion::arrow::compute::cast(batch.column(0), &DataType::Float64).unwrap();
                let values = column.as_any().downcast_ref::<Float64Array>().unwrap();
                for r in 0..values.len() {
                    assert!(
                        values.is_valid(r),
                        "{sql}: NULL at row {r}, interval {iv:?}"
                    );
                    let v = values.value(r);
                    assert!(iv.lo <= v && v <= iv.hi, "{sql}: {v} outside {iv:?}");
                    seen += 1;
                }
            }
            assert_eq!(seen, 7 * 3 * 11, "{sql}");
        }
    }

    #[test]
    fn cells_are_counted_once_for_the_union_bound() {
        let expr = Derived::Div(
            Box::new(Derived::Sub(c(3), c(1))),
            Box::new(Derived::Add(c(3), k(1.0))),
        );
        let mut read = Vec::new();
        expr.cells(&mut read);
        assert_eq!(read, vec![3, 1]);
    }
}
