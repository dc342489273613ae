//! The privacy analysis: walks a DataFusion `LogicalPlan` (never the SQL text) and decides
//! whether it can be released, following DESIGN.md §3.3.
//!
//! Bottom-up, every relation gets [`Relation`](relations::Relation) facts: private or
//! public, which column is the person, and per column whether it is the person, constant
//! per person, its bounds and its public domain. Top-down from the root, the nodes above the first aggregation
//! are post-processing of released values (projections, `HAVING`, `ORDER BY`, `LIMIT`);
//! that first aggregation is the one carelens releases with differential privacy.
//!
//! This file holds the entry point ([`Analyzer::analyze`]), the walk from the root through
//! post-processing to the released aggregation, and the helpers the parts share. The
//! parts, by concern:
//!
//! - `functions.rs`: what an expression may compute (the allow-lists and their checks);
//! - `relations.rs`: the facts of each plan node below the released aggregation;
//! - `joins.rs`: which joins are allowed, and the facts of a joined relation;
//! - `subqueries.rs`: where subqueries over private data may stand;
//! - `dp_aggregation.rs`: the released aggregation and its aggregates.

mod dp_aggregation;
pub(crate) mod functions;
mod joins;
mod relations;
mod subqueries;

use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};

use crate::rejection::{Rejection, RejectionKind};
use crate::session::CatalogInfo;

pub(crate) use dp_aggregation::{AggKind, Bounded, DpAggregation, Quantile};
pub(crate) use joins::equality_pairs;

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
                let person = relation.columns.iter().position(|c| c.person);
                if let (true, Some(index)) = (relation.private, person) {
                    // Where the SQL names it, when the output is a projection that kept
                    // DataFusion's spans.
                    let place = match other {
                        LogicalPlan::Projection(projection) => projection.expr.get(index),
                        _ => None,
                    }
                    .and_then(crate::facts::location);
                    Err(Rejection::new(
                        RejectionKind::PersonColumn,
                        "the person column cannot appear in the output",
                        "count people instead, e.g. `COUNT(DISTINCT person_id)`",
                    )
                    .at(place))
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
