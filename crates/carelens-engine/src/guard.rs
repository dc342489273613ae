//! Total evaluation by construction: every operation that can fail on some values runs
//! inside a guard that answers NULL, for that row only, instead of failing the query.
//!
//! Whether a query succeeds must not depend on one person's rows: a failure after the
//! budget is charged answers "did such a row exist?" without noise. Listing the failing
//! values of every function (a date plus 300 years overflows a nanosecond timestamp, a
//! zero `date_bin` stride, an invalid or oversized regular expression, …) is a list of
//! patches that the next function breaks; instead, [`guard_plan`] wraps every operation
//! that is not known to be total in a [`Guard`]: a scalar function whose arguments are the
//! operation's non-constant operands and whose body is the operation itself. The guard
//! evaluates the body over the whole batch; if that fails (or panics), it splits the batch
//! in halves and evaluates each, down to single rows, and a row that still fails is NULL.
//! The value of a row is therefore a function of that row alone — NULL where DataFusion
//! would have failed — and the query cannot fail on a value.
//!
//! The operations left unguarded ([`is_total`]) are those the totality test
//! (`totality_tests.rs`) shows never fail on any value of the types carelens allows:
//! columns, literals, comparisons, boolean logic, `CASE`, `IS NULL`, `IN (list)`, integer
//! and float `+ - *`, float division and `TRY_CAST`. Everything else — every scalar
//! function, integer division and remainder, temporal arithmetic, `LIKE`, `SIMILAR TO`
//! and regular expressions — is guarded, including the expressions the bounding rewrite
//! inserts itself.

use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

/// Wraps every operation of `plan` (and of its subqueries) that can fail on some values
/// in a [`Guard`]. Output names are kept.
pub(crate) fn guard_plan(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let schema = input_schema(&node);
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let original = names.save(&e);
            Ok(e.transform_up(|e| guard_expr(e, schema.as_ref()))?
                .update_data(|e| original.restore(e)))
        })
    })
    .and_then(|t| t.data.recompute_schema())
}

/// `e` over `schema` with every operation that can fail guarded, as [`guard_plan`] guards
/// a plan's expressions (for evaluating an expression outside a plan, over a public
/// domain).
pub(crate) fn guard_expression(e: Expr, schema: &DFSchema) -> Result<Expr> {
    Ok(e.transform_up(|e| guard_expr(e, Some(schema)))?.data)
}

/// The schema a node's expressions are evaluated over: its input's, or both inputs'
/// for a join.
fn input_schema(node: &LogicalPlan) -> Option<DFSchema> {
    match node.inputs().as_slice() {
        [one] => Some(one.schema().as_ref().clone()),
        [left, right] => left.schema().join(right.schema()).ok(),
        _ => match node {
            LogicalPlan::TableScan(scan) => Some(scan.projected_schema.as_ref().clone()),
            _ => None,
        },
    }
}

/// Guards `e` if it can fail; its operands were guarded already (bottom-up).
fn guard_expr(e: Expr, schema: Option<&DFSchema>) -> Result<Transformed<Expr>> {
    if is_total(&e, schema) || !guardable(&e) {
        return Ok(Transformed::no(e));
    }
    let mut args = Vec::new();
    let body = e
        .map_children(|child| {
            if is_constant(&child) {
                Ok(Transformed::no(child))
            } else {
                let column = Expr::Column(Column::new_unqualified(arg_name(args.len())));
                args.push(child);
                Ok(Transformed::yes(column))
            }
        })?
        .data;
    // Compiled now when the operands' types are known, so that an operation DataFusion
    // cannot run at all (a cast it does not implement) fails while the query is planned,
    // before the charge, not when it runs.
    let types: Option<Vec<DataType>> = schema.and_then(|s| {
        args.iter()
            .map(|a| a.get_type(s).ok())
            .collect::<Option<Vec<_>>>()
    });
    let guard = Guard::new(body, args.len());
    if let Some(types) = types {
        let fields: Vec<FieldRef> = types
            .into_iter()
            .map(|t| Arc::new(Field::new("", t, true)))
            .collect();
        guard.physical(&fields)?;
    }
    Ok(Transformed::yes(ScalarUDF::new_from_impl(guard).call(args)))
}

fn arg_name(i: usize) -> String {
    format!("__arg{i}")
}

/// Functions that never fail on any value of the types carelens allows, so are left
/// unguarded (the bounding rewrite uses the first six on every query; guarding them
/// would cost time and hide the plan). The totality test runs them unguarded over
/// boundary values: a function on this list that can fail fails the test.
const TOTAL_FUNCTIONS: &[&str] = &[
    "coalesce", "nvl", "ifnull", "nullif", "least", "greatest", "isnan", "iszero", "signum", "ln",
    "log10", "log2", "exp", "ceil", "floor",
];

/// Whether `e` (its own operation, not its operands) never fails on any value of the
/// types carelens allows. The totality test holds this list to account.
pub(crate) fn is_total(e: &Expr, schema: Option<&DFSchema>) -> bool {
    let numeric = |x: &Expr| {
        schema
            .and_then(|s| x.get_type(s).ok())
            .is_some_and(|t| t.is_integer() || t.is_floating() || t == DataType::Null)
    };
    let floating = |x: &Expr| {
        schema
            .and_then(|s| x.get_type(s).ok())
            .is_some_and(|t| t.is_floating())
    };
    if !guardable(e) {
        return true;
    }
    match e {
        Expr::Column(_)
        | Expr::OuterReferenceColumn(..)
        | Expr::Literal(..)
        | Expr::Not(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsNotUnknown(_)
        | Expr::Between(_)
        | Expr::InList(_)
        | Expr::Case(_) => true,
        // A guard, the sampling hash (defined for every value of every type), or a
        // function of [`TOTAL_FUNCTIONS`].
        Expr::ScalarFunction(f) => {
            let inner: &dyn std::any::Any = f.func.inner().as_ref();
            inner.is::<Guard>()
                || inner.is::<crate::keyed_hash::KeyedHash>()
                || TOTAL_FUNCTIONS.contains(&f.name())
                // Rounding a float to an integer value cannot overflow (an integer rounded
                // to tens can).
                || (f.name() == "round" && f.args.len() == 1 && floating(&f.args[0]))
        }
        Expr::Negative(x) => floating(x),
        // `TRY_CAST` answers NULL for a value it cannot convert, but fails outright on
        // some (a date out of chrono's range formatted as text): only casts between
        // numbers, booleans and text are total.
        Expr::TryCast(c) => schema
            .and_then(|s| c.expr.get_type(s).ok())
            .is_some_and(|from| total_cast(&from, c.field.data_type())),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
            | Operator::And
            | Operator::Or => true,
            // Integer + - * wrap (DataFusion's default); floats go to ±∞ or NaN.
            Operator::Plus | Operator::Minus | Operator::Multiply => {
                numeric(left) && numeric(right)
            }
            Operator::Divide | Operator::Modulo => floating(left) && floating(right),
            _ => false,
        },
        _ => false,
    }
}

/// Casts that never fail on a value: between numbers and booleans, and from those or text
/// to text.
fn total_cast(from: &DataType, to: &DataType) -> bool {
    let plain = |t: &DataType| t.is_integer() || t.is_floating() || *t == DataType::Boolean;
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    from == to || (plain(from) && plain(to)) || ((plain(from) || text(from)) && text(to))
}

/// Whether `e` can run inside a guard: a row operation, not an aggregate, window or
/// subquery (the totality test covers the aggregates and windows the analysis allows;
/// subqueries are plans, guarded on their own) nor an alias.
fn guardable(e: &Expr) -> bool {
    !matches!(
        e,
        Expr::AggregateFunction(_)
            | Expr::WindowFunction(_)
            | Expr::ScalarSubquery(_)
            | Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::SetComparison(_)
            | Expr::GroupingSet(_)
            | Expr::Placeholder(_)
            | Expr::Unnest(_)
            | Expr::Alias(_)
    )
}

/// A constant: no column, outer reference, subquery, aggregate or window in it. Constants
/// stay inside the guard's body, so functions that need a literal argument (a unit, a
/// pattern) still get one.
fn is_constant(e: &Expr) -> bool {
    !e.exists(|x| {
        Ok(matches!(
            x,
            Expr::Column(_)
                | Expr::OuterReferenceColumn(..)
                | Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::SetComparison(_)
                | Expr::AggregateFunction(_)
                | Expr::WindowFunction(_)
                | Expr::Placeholder(_)
                | Expr::Unnest(_)
        ))
    })
    .unwrap_or(false)
}

/// A guard's body compiled for its arguments' types.
type Compiled = (Vec<DataType>, Arc<dyn PhysicalExpr>);

/// `body` over arguments `__arg0 … __argN`, NULL for every row where it fails.
pub(crate) struct Guard {
    body: Expr,
    name: String,
    signature: Signature,
    /// The body compiled for the argument types it was last called with.
    compiled: Mutex<Option<Compiled>>,
}

impl Guard {
    fn new(body: Expr, arity: usize) -> Self {
        let signature = if arity == 0 {
            Signature::nullary(Volatility::Immutable)
        } else {
            Signature::any(arity, Volatility::Immutable)
        };
        Self {
            name: format!("null_on_error[{body}]"),
            body,
            signature,
            compiled: Mutex::new(None),
        }
    }

    fn schema(arg_fields: &[FieldRef]) -> Schema {
        Schema::new(
            arg_fields
                .iter()
                .enumerate()
                .map(|(i, f)| Field::new(arg_name(i), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    fn df_schema(arg_fields: &[FieldRef]) -> Result<DFSchema> {
        DFSchema::try_from(Self::schema(arg_fields))
    }

    fn physical(&self, arg_fields: &[FieldRef]) -> Result<Arc<dyn PhysicalExpr>> {
        let types: Vec<DataType> = arg_fields.iter().map(|f| f.data_type().clone()).collect();
        let mut compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((t, p)) = compiled.as_ref()
            && *t == types
        {
            return Ok(Arc::clone(p));
        }
        let physical = create_physical_expr(
            &self.body,
            &Self::df_schema(arg_fields)?,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )?;
        *compiled = Some((types, Arc::clone(&physical)));
        Ok(physical)
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("body", &self.body).finish()
    }
}

impl PartialEq for Guard {
    fn eq(&self, other: &Self) -> bool {
        self.body == other.body && self.signature == other.signature
    }
}

impl Eq for Guard {}

impl Hash for Guard {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.body.hash(state);
    }
}

impl ScalarUDFImpl for Guard {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let fields: Vec<FieldRef> = arg_types
            .iter()
            .map(|t| Arc::new(Field::new("", t.clone(), true)))
            .collect();
        self.body.get_type(&Self::df_schema(&fields)?)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<FieldRef> {
        let data_type = self.body.get_type(&Self::df_schema(args.arg_fields)?)?;
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let physical = self.physical(&args.arg_fields)?;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Self::schema(&args.arg_fields)),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        let data_type = args.return_field.data_type();
        evaluate_total(physical.as_ref(), &batch, data_type).map(ColumnarValue::Array)
    }
}

/// `physical` over `batch`; where that fails, over each half, down to single rows, which
/// are NULL if they still fail. Failures are rare, so this costs a few extra evaluations
/// per failing row, not one per row.
fn evaluate_total(
    physical: &dyn PhysicalExpr,
    batch: &RecordBatch,
    data_type: &DataType,
) -> Result<ArrayRef> {
    let rows = batch.num_rows();
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        let _quiet = crate::panics::Quiet::enter();
        physical
            .evaluate(batch)
            .and_then(|v| v.into_array(rows))
            .ok()
            .filter(|a| a.len() == rows && a.data_type() == data_type)
    }));
    if let Ok(Some(array)) = attempt {
        return cap_text(array);
    }
    if rows <= 1 {
        return Ok(new_null_array(data_type, rows));
    }
    let mid = rows / 2;
    let first = evaluate_total(physical, &batch.slice(0, mid), data_type)?;
    let second = evaluate_total(physical, &batch.slice(mid, rows - mid), data_type)?;
    Ok(concat(&[first.as_ref(), second.as_ref()])?)
}

/// The longest text or binary value a guarded operation yields, in bytes: a value any
/// longer is NULL. Text grows only through guarded operations (`||`, `concat`, `lpad`,
/// `replace`, …), so this bounds every value a query makes: without it, a chain of
/// `s || s` doubles one row's text to gigabytes, and the time and memory that takes
/// would say whether the row exists. 4,096 bytes hold the longest text constant (1,000
/// characters) and the widest `lpad`/`rpad` (1,000 characters) in any encoding.
pub(crate) const MAX_TEXT_BYTES: i64 = 4_096;

/// `array` with every text or binary value longer than [`MAX_TEXT_BYTES`] made NULL.
fn cap_text(array: ArrayRef) -> Result<ArrayRef> {
    use datafusion::arrow::array::{BooleanArray, Scalar};
    use datafusion::arrow::compute::kernels::cmp::gt;
    use datafusion::arrow::compute::kernels::length::length;
    use datafusion::arrow::compute::kernels::zip::zip;
    use datafusion::arrow::compute::{cast, or_kleene};
    let sized = matches!(
        array.data_type(),
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    );
    if !sized {
        return Ok(array);
    }
    let lengths = cast(&length(array.as_ref())?, &DataType::Int64)?;
    let limit = datafusion::arrow::array::Int64Array::new_scalar(MAX_TEXT_BYTES);
    let too_long = gt(&lengths, &limit)?;
    // The slots to empty: the values too long, and every NULL. A NULL made by masking
    // (`nullif`, a guard's own mask) can keep the bytes it hid, and some kernels
    // (DataFusion's `||` over string views) compute every slot before applying the
    // mask: hidden bytes would go on doubling where the cap cannot see them. A new array
    // holds nothing in a NULL slot.
    let empty = match array.logical_nulls() {
        Some(nulls) if nulls.null_count() > 0 => {
            let is_null = BooleanArray::new(!nulls.inner(), None);
            or_kleene(&too_long, &is_null)?
        }
        _ if too_long.true_count() == 0 => return Ok(array),
        _ => too_long,
    };
    let null = Scalar::new(new_null_array(array.data_type(), 1));
    Ok(zip(&empty, &null, &array)?)
}

/// Whether any expression of `plan` still holds an operation the guard would wrap: the
/// plan is total as far as row operations go when this is false.
#[cfg(test)]
pub(crate) fn unguarded(plan: &LogicalPlan) -> Option<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let schema = input_schema(node);
        for e in node.expressions() {
            let _ = e.apply(|x| {
                if !is_total(x, schema.as_ref()) && guardable(x) {
                    found = Some(x.to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Date32Array, RecordBatch, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::datasource::{MemTable, provider_as_source};
    use datafusion::execution::context::SessionContext;
    use datafusion::logical_expr::{LogicalPlanBuilder, cast, col, lit};
    use datafusion::scalar::ScalarValue;

    use super::*;

    /// 2000-01-01 + 240 years fits a nanosecond timestamp; 2030-01-01 + 240 years does not.
    #[tokio::test]
    async fn a_failing_row_is_null_and_only_that_row() {
        let days = |y: i32| (y - 1970) * 365 + (y - 1969) / 4;
        let dates: Date32Array = vec![Some(days(2000)), Some(days(2030)), None, Some(0)]
            .into_iter()
            .collect();
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(dates)]).unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        let interval = ScalarValue::new_interval_mdn(240 * 12, 0, 0);
        let plan = LogicalPlanBuilder::scan("t", provider_as_source(Arc::new(table)), None)
            .unwrap()
            .project(vec![
                (cast(col("d"), DataType::Timestamp(TimeUnit::Nanosecond, None)) + lit(interval))
                    .alias("later"),
            ])
            .unwrap()
            .build()
            .unwrap();
        let ctx = SessionContext::new();
        let state = ctx.state();
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .unwrap();
        // Unguarded, the overflow fails the whole query.
        assert!(
            ctx.execute_logical_plan(plan.clone())
                .await
                .unwrap()
                .collect()
                .await
                .is_err()
        );
        let guarded = guard_plan(plan).unwrap();
        assert!(unguarded(&guarded).is_none());
        let batches = ctx
            .execute_logical_plan(guarded)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let later = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        let valid: Vec<bool> = (0..later.len()).map(|i| later.is_valid(i)).collect();
        assert_eq!(valid, [true, false, false, true]);
        // 1970-01-01 + 240 years = 2210-01-01, 7,573,651,200 s after the epoch.
        assert_eq!(later.value(3), 7_573_651_200 * 1_000_000_000);
    }

    /// A guarded operation's text or binary value over the cap is NULL, in every text and
    /// binary type, and only where it is over.
    #[test]
    fn values_over_the_text_cap_are_null_in_every_sized_type() {
        use datafusion::arrow::array::{
            BinaryArray, BinaryViewArray, LargeBinaryArray, LargeStringArray, StringArray,
            StringViewArray,
        };
        let cap = usize::try_from(MAX_TEXT_BYTES).unwrap();
        let values = [
            Some("a".repeat(cap)),
            Some("b".repeat(cap + 1)),
            None,
            Some(String::new()),
        ];
        let text = || values.iter().map(|v| v.as_deref());
        let bytes = || values.iter().map(|v| v.as_deref().map(str::as_bytes));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(text().collect::<StringArray>()),
            Arc::new(text().collect::<LargeStringArray>()),
            Arc::new(text().collect::<StringViewArray>()),
            Arc::new(bytes().collect::<BinaryArray>()),
            Arc::new(bytes().collect::<LargeBinaryArray>()),
            Arc::new(bytes().collect::<BinaryViewArray>()),
        ];
        for array in arrays {
            let data_type = array.data_type().clone();
            let capped = cap_text(array).unwrap();
            assert_eq!(capped.data_type(), &data_type);
            let valid: Vec<bool> = (0..capped.len()).map(|i| capped.is_valid(i)).collect();
            assert_eq!(valid, [true, false, false, true], "{data_type}");
            // The slot made NULL holds nothing: an operation that reads masked slots
            // (string views) finds an empty value, not the long one.
            if let Some(views) = capped.as_any().downcast_ref::<StringViewArray>() {
                assert_eq!(views.views()[1] as u32, 0, "{data_type}");
            }
            if let Some(strings) = capped.as_any().downcast_ref::<StringArray>() {
                assert_eq!(strings.value_length(1), 0, "{data_type}");
            }
        }
        // A NULL made by masking keeps the bytes it hides until the cap empties it.
        let masked = datafusion::arrow::compute::nullif(
            &StringViewArray::from(vec!["a value hidden by a mask, not removed"]),
            &datafusion::arrow::array::BooleanArray::from(vec![true]),
        )
        .unwrap();
        let hidden = |a: &ArrayRef| {
            a.as_any()
                .downcast_ref::<StringViewArray>()
                .unwrap()
                .views()[0] as u32
        };
        assert!(masked.is_null(0) && hidden(&masked) > 0);
        let cleaned = cap_text(masked).unwrap();
        assert!(cleaned.is_null(0));
        assert_eq!(hidden(&cleaned), 0);
    }
}
