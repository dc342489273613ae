//! What the privacy analysis knows about one column or expression: whether it is the
//! person, whether it is constant per person, its value bounds and its public domain.
//!
//! Bounds are interval arithmetic over the catalog's declared bounds (`+ - * /`, `CASE`,
//! `COALESCE`, `LEAST`, `GREATEST`, casts), so `LEAST(GREATEST(x, 0), 50)` is bounded even
//! when `x` is not. A domain is the finite set of values a key can take whatever the data:
//! it is computed by evaluating the expression over every combination of the public
//! domains of the columns it reads (so `(imd_decile + 1) / 2` over `1..=10` gives `1..=5`,
//! and an age-band `CASE` over `year_of_birth` gives its six labels).

use std::collections::HashSet;
use std::sync::Arc;

use carelens_privacy::Precision;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{BinaryExpr, Case, Expr, Operator};
use datafusion::physical_expr::create_physical_expr;

use crate::rejection::{Location, Rejection, RejectionKind};

/// The most key combinations the domain of one expression is computed over.
const MAX_DOMAIN_PRODUCT: usize = 20_000;

/// Facts about one column of a relation.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    /// Every value is the row's person or NULL.
    pub person: bool,
    /// One value per person: derived only from columns of one-row-per-person relations.
    pub constant: bool,
    /// Smallest possible value (−∞ when unknown; `lo > hi` when always NULL).
    pub lo: f64,
    /// Largest possible value (+∞ when unknown).
    pub hi: f64,
    /// Fixed-point unit declared for the column it comes from.
    pub precision: Option<Precision>,
    /// Every value it can take, if that is public and finite.
    pub domain: Option<Arc<Vec<ScalarValue>>>,
    /// No non-NULL value is in two rows: a public table's checked `unique_key`, read as it
    /// is (never through an expression) from a relation that only removed rows.
    pub unique: bool,
}

impl Facts {
    /// Nothing known.
    pub fn unknown() -> Self {
        Self {
            person: false,
            constant: false,
            lo: f64::NEG_INFINITY,
            hi: f64::INFINITY,
            precision: None,
            domain: None,
            unique: false,
        }
    }

    /// Whether both bounds are finite.
    pub fn bounded(&self) -> bool {
        self.lo.is_finite() && self.hi.is_finite() || self.lo > self.hi
    }

    /// The bounds, with an always-NULL value read as `[0, 0]`.
    pub fn bounds(&self) -> (f64, f64) {
        if self.lo > self.hi {
            (0.0, 0.0)
        } else {
            (self.lo, self.hi)
        }
    }
}

/// The place of the first column an expression reads, if DataFusion recorded one.
pub(crate) fn location(expr: &Expr) -> Option<Location> {
    let mut found = None;
    let _ = expr.apply(|e| {
        if let Expr::Column(c) = e
            && let Some(span) = c.spans().first()
            && span.start.line > 0
        {
            found = Some(Location {
                line: span.start.line,
                column: span.start.column,
            });
            return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

use datafusion::common::tree_node::TreeNode;

/// Computes the facts of `expr`, evaluated over a relation with `schema` and `columns`.
pub(crate) fn expr_facts(expr: &Expr, schema: &DFSchema, columns: &[Facts]) -> Facts {
    let column = |c: &datafusion::common::Column| {
        schema
            .index_of_column(c)
            .ok()
            .and_then(|i| columns.get(i).cloned())
            .unwrap_or_else(Facts::unknown)
    };
    match expr {
        Expr::Column(c) => column(c),
        Expr::Alias(a) => expr_facts(&a.expr, schema, columns),
        Expr::Literal(value, _) => literal_facts(value),
        _ => {
            let mut facts = Facts::unknown();
            facts.person = is_person_or_null(expr, schema, columns);
            let refs = expr.column_refs();
            facts.constant = !expr.is_volatile()
                && !has_subquery(expr)
                && refs.iter().all(|c| column(c).constant);
            let (lo, hi) = bounds(expr, schema, columns);
            facts.lo = lo;
            facts.hi = hi;
            facts.precision = refs
                .iter()
                .filter_map(|c| column(c).precision)
                .min_by(|a, b| a.unit().total_cmp(&b.unit()));
            facts.domain = domain(expr, schema, columns).map(Arc::new);
            facts
        }
    }
}

fn literal_facts(value: &ScalarValue) -> Facts {
    let number = value
        .cast_to(&datafusion::arrow::datatypes::DataType::Float64)
        .ok()
        .and_then(|v| match v {
            ScalarValue::Float64(x) => x,
            _ => None,
        });
    let (lo, hi) = match (value.is_null(), number) {
        (true, _) => (f64::INFINITY, f64::NEG_INFINITY),
        (false, Some(x)) => (x, x),
        (false, None) => (f64::NEG_INFINITY, f64::INFINITY),
    };
    Facts {
        person: false,
        constant: true,
        lo,
        hi,
        precision: None,
        domain: Some(Arc::new(vec![value.clone()])),
        unique: false,
    }
}

/// Whether `expr` is the person or NULL: the person column, a cast of it, or a `CASE`
/// whose every result is one of those or NULL.
fn is_person_or_null(expr: &Expr, schema: &DFSchema, columns: &[Facts]) -> bool {
    match expr {
        Expr::Column(c) => schema
            .index_of_column(c)
            .ok()
            .and_then(|i| columns.get(i))
            .is_some_and(|f| f.person),
        Expr::Alias(a) => is_person_or_null(&a.expr, schema, columns),
        Expr::Cast(c) => {
            lossless(c.field.data_type()) && is_person_or_null(&c.expr, schema, columns)
        }
        Expr::Case(Case {
            when_then_expr,
            else_expr,
            ..
        }) => {
            when_then_expr
                .iter()
                .all(|(_, then)| is_person_or_null(then, schema, columns))
                && else_expr
                    .as_deref()
                    .is_none_or(|e| is_null_literal(e) || is_person_or_null(e, schema, columns))
        }
        _ => false,
    }
}

/// Casts that keep every person distinct (the person column is an `Int64` pseudonym).
fn lossless(to: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType;
    matches!(
        to,
        DataType::Int64 | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(to, DataType::Decimal128(p, 0) if *p >= 19)
}

fn is_null_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Literal(v, _) => v.is_null(),
        Expr::Cast(c) => is_null_literal(&c.expr),
        Expr::Alias(a) => is_null_literal(&a.expr),
        _ => false,
    }
}

pub(crate) fn has_subquery(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::SetComparison(_)
        ))
    })
    .unwrap_or(true)
}

/// Interval bounds of a numeric expression; `lo > hi` means always NULL.
fn bounds(expr: &Expr, schema: &DFSchema, columns: &[Facts]) -> (f64, f64) {
    const UNKNOWN: (f64, f64) = (f64::NEG_INFINITY, f64::INFINITY);
    let of = |e: &Expr| bounds(e, schema, columns);
    let union = |a: (f64, f64), b: (f64, f64)| (a.0.min(b.0), a.1.max(b.1));
    let empty = |a: (f64, f64)| a.0 > a.1;
    match expr {
        Expr::Column(_) | Expr::Literal(..) => {
            let f = expr_facts(expr, schema, columns);
            let (lo, hi) = (f.lo, f.hi);
            // A column with a numeric public domain is bounded by it.
            if !(lo.is_finite() && hi.is_finite())
                && let Some(domain) = &f.domain
            {
                let numbers: Option<Vec<f64>> = domain
                    .iter()
                    .filter(|v| !v.is_null())
                    .map(|v| {
                        v.cast_to(&datafusion::arrow::datatypes::DataType::Float64)
                            .ok()
                            .and_then(|v| match v {
                                ScalarValue::Float64(x) => x,
                                _ => None,
                            })
                    })
                    .collect();
                if let Some(numbers) = numbers.filter(|n| !n.is_empty()) {
                    let lo = numbers.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    return (lo, hi);
                }
            }
            (lo, hi)
        }
        Expr::Alias(a) => of(&a.expr),
        Expr::Cast(c) => of(&c.expr),
        Expr::TryCast(c) => of(&c.expr),
        Expr::Negative(e) => {
            let (lo, hi) = of(e);
            (-hi, -lo)
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (a, b) = (of(left), of(right));
            if empty(a) || empty(b) {
                return (f64::INFINITY, f64::NEG_INFINITY);
            }
            let corners = |f: fn(f64, f64) -> f64| {
                let c = [f(a.0, b.0), f(a.0, b.1), f(a.1, b.0), f(a.1, b.1)];
                if c.iter().any(|x| x.is_nan()) {
                    return UNKNOWN;
                }
                (
                    c.iter().copied().fold(f64::INFINITY, f64::min),
                    c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                )
            };
            match op {
                Operator::Plus => (a.0 + b.0, a.1 + b.1),
                Operator::Minus => (a.0 - b.1, a.1 - b.0),
                Operator::Multiply => corners(|x, y| x * y),
                Operator::Divide if b.0 > 0.0 || b.1 < 0.0 => corners(|x, y| x / y),
                _ => UNKNOWN,
            }
        }
        Expr::Case(Case {
            when_then_expr,
            else_expr,
            ..
        }) => {
            let mut acc = (f64::INFINITY, f64::NEG_INFINITY);
            for (_, then) in when_then_expr {
                acc = union(acc, of(then));
            }
            if let Some(e) = else_expr {
                acc = union(acc, of(e));
            }
            acc
        }
        Expr::ScalarFunction(f) => {
            let args: Vec<(f64, f64)> = f.args.iter().map(of).collect();
            let non_empty: Vec<(f64, f64)> = args.iter().copied().filter(|a| !empty(*a)).collect();
            if non_empty.is_empty() {
                return (f64::INFINITY, f64::NEG_INFINITY);
            }
            match f.name() {
                // NULL arguments are skipped by LEAST/GREATEST.
                "least" => (
                    non_empty.iter().map(|a| a.0).fold(f64::INFINITY, f64::min),
                    non_empty.iter().map(|a| a.1).fold(f64::INFINITY, f64::min),
                ),
                "greatest" => (
                    non_empty
                        .iter()
                        .map(|a| a.0)
                        .fold(f64::NEG_INFINITY, f64::max),
                    non_empty
                        .iter()
                        .map(|a| a.1)
                        .fold(f64::NEG_INFINITY, f64::max),
                ),
                "coalesce" | "nvl" | "ifnull" => non_empty
                    .iter()
                    .copied()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), union),
                "abs" => {
                    let (lo, hi) = non_empty[0];
                    let m = lo.abs().max(hi.abs());
                    let floor = if lo <= 0.0 && hi >= 0.0 {
                        0.0
                    } else {
                        lo.abs().min(hi.abs())
                    };
                    (floor, m)
                }
                "round" | "floor" | "ceil" | "trunc" => {
                    let (lo, hi) = non_empty[0];
                    (lo - 1.0, hi + 1.0)
                }
                "nullif" => args[0],
                _ => UNKNOWN,
            }
        }
        _ => UNKNOWN,
    }
}

/// The public domain of `expr`: its value at every combination of the domains of the
/// columns it reads, when they all have one and there are few enough combinations.
fn domain(expr: &Expr, schema: &DFSchema, columns: &[Facts]) -> Option<Vec<ScalarValue>> {
    if expr.is_volatile() || has_subquery(expr) {
        return None;
    }
    let refs: Vec<_> = expr.column_refs().into_iter().cloned().collect();
    let mut inputs = Vec::with_capacity(refs.len());
    let mut product = 1usize;
    for c in &refs {
        let i = schema.index_of_column(c).ok()?;
        let values = columns.get(i)?.domain.clone()?;
        product = product.checked_mul(values.len().max(1))?;
        if product > MAX_DOMAIN_PRODUCT {
            return None;
        }
        let (qualifier, field) = schema.qualified_field(i);
        inputs.push((qualifier.cloned(), field.clone(), values));
    }
    // Every combination, as one column per input.
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(inputs.len());
    let mut repeat = 1usize;
    for (_, _, values) in inputs.iter().rev() {
        let cycle = product / (values.len().max(1) * repeat);
        let mut column = Vec::with_capacity(product);
        for _ in 0..cycle {
            for v in values.iter() {
                for _ in 0..repeat {
                    column.push(v.clone());
                }
            }
        }
        repeat *= values.len().max(1);
        arrays.push(ScalarValue::iter_to_array(column).ok()?);
    }
    arrays.reverse();
    // In the columns' own types (a domain of `Utf8` literals for a `Utf8View` column).
    let arrays: Vec<ArrayRef> = arrays
        .into_iter()
        .zip(&inputs)
        .map(|(a, (_, f, _))| datafusion::arrow::compute::cast(&a, f.data_type()).ok())
        .collect::<Option<_>>()?;
    let fields: Vec<_> = inputs
        .iter()
        .zip(&arrays)
        .map(|((q, f, _), a)| {
            (
                q.clone(),
                Arc::new(Field::new(f.name(), a.data_type().clone(), true)),
            )
        })
        .collect();
    let df_schema = DFSchema::new_with_metadata(fields, Default::default()).ok()?;
    let arrow_schema: Arc<Schema> = Arc::new(df_schema.as_arrow().clone());
    let batch = RecordBatch::try_new_with_options(
        arrow_schema,
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(product)),
    )
    .ok()?;
    // Guarded as in the plan: the values are the ones the query will compute (NULL where
    // an operation fails, text no longer than the guard allows), and evaluating them here
    // cannot fail or grow without bound either.
    let expr = crate::guard::guard_expression(expr.clone(), schema).ok()?;
    let physical = create_physical_expr(
        &expr,
        &df_schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )
    .ok()?;
    let result = physical.evaluate(&batch).ok()?.into_array(product).ok()?;
    let mut seen = HashSet::new();
    let mut values = Vec::new();
    for row in 0..result.len() {
        let v = ScalarValue::try_from_array(&result, row).ok()?;
        if seen.insert(v.clone()) {
            values.push(v);
        }
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Some(values)
}

/// Rejects any use of the person column in `expr` other than the allowed ones: passed
/// through whole (where `top` allows it), compared for equality with another person
/// column, tested for NULL, or as the result of a `CASE` (`CASE WHEN c THEN person END`).
pub(crate) fn check_person_use(
    expr: &Expr,
    top: bool,
    context: &str,
    schema: &DFSchema,
    columns: &[Facts],
) -> Result<(), Rejection> {
    let is_person = |e: &Expr| is_person_or_null(e, schema, columns);
    let walk = |e: &Expr, allowed: bool| check_person_use(e, allowed, context, schema, columns);
    match expr {
        Expr::Column(c) => {
            if !top && is_person(expr) {
                return Err(Rejection::new(
                    RejectionKind::PersonColumn,
                    format!("the person column `{}` cannot be used {context}", c.name),
                    "use the person column only to join tables (`ON a.person_id = \
                     b.person_id`), in `GROUP BY person_id` or `PARTITION BY person_id`, or \
                     to count people with `COUNT(DISTINCT person_id)`",
                )
                .at(location(expr)));
            }
            Ok(())
        }
        Expr::Alias(a) => walk(&a.expr, top),
        Expr::Cast(c) => walk(&c.expr, top && lossless(c.field.data_type())),
        Expr::IsNull(e) | Expr::IsNotNull(e) => walk(e, true),
        // Two person columns, or a person column and an outer reference (an `EXISTS`
        // correlated on the person: the subquery check then requires a person on both).
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Eq | Operator::NotEq | Operator::IsNotDistinctFrom
            ) && (is_person(left)
                || matches!(left.as_ref(), Expr::OuterReferenceColumn(..)))
                && (is_person(right)
                    || matches!(right.as_ref(), Expr::OuterReferenceColumn(..))) =>
        {
            Ok(())
        }
        Expr::Case(Case {
            expr: base,
            when_then_expr,
            else_expr,
        }) => {
            if let Some(b) = base {
                walk(b, false)?;
            }
            for (when, then) in when_then_expr {
                walk(when, false)?;
                walk(then, top)?;
            }
            if let Some(e) = else_expr {
                walk(e, top)?;
            }
            Ok(())
        }
        Expr::InSubquery(s) => walk(&s.expr, true),
        // Subquery plans are analysed on their own.
        Expr::Exists(_) | Expr::ScalarSubquery(_) => Ok(()),
        _ => {
            let mut result = Ok(());
            let _ = expr.apply_children(|child| {
                result = walk(child, false);
                Ok(if result.is_err() {
                    datafusion::common::tree_node::TreeNodeRecursion::Stop
                } else {
                    datafusion::common::tree_node::TreeNodeRecursion::Continue
                })
            });
            result
        }
    }
}
