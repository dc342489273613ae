//! Facts about each relation below the released aggregation: table scans, projections,
//! filters, per-person aggregations (`GROUP BY person_id`), windows, `DISTINCT` and
//! unions, and the nodes refused there (`ORDER BY` and `LIMIT` on private rows,
//! statements). Joins are in `joins.rs`, subqueries in `subqueries.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;

use carelens_catalog::TableKind;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{
    Aggregate, Distinct, Expr, LogicalPlan,
    expr::{AggregateFunction, WindowFunction},
};

use super::functions::{
    PERSON_AGGREGATES, WINDOW_FUNCTIONS, function_rejection, refused_expression,
};
use super::{Analyzer, unalias, unsupported};
use crate::facts::{Facts, check_person_use, expr_facts, location};
use crate::rejection::{Rejection, RejectionKind};

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

impl Analyzer<'_> {
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
                unique: !private && info.is_some_and(|c| c.unique),
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
                m.unique = false;
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
    pub(super) fn check_expr(
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
}
