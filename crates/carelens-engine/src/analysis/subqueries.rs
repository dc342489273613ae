//! Subqueries: over private data a subquery may only be `person_id IN (SELECT person_id
//! ...)` or an `EXISTS` correlated on the person, in a filter below the released
//! aggregation; anywhere else it is refused, and so is any reference from a subquery to
//! the outer query's private rows.

use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, utils::split_conjunction};

use super::relations::Relation;
use super::{Analyzer, unalias};
use crate::facts::{expr_facts, location};
use crate::rejection::{Rejection, RejectionKind};

impl Analyzer<'_> {
    pub(super) fn check_post_subqueries(&self, expr: &Expr) -> Result<(), Rejection> {
        self.deny_private_subqueries(expr, "after the released aggregation")
    }

    pub(super) fn check_subqueries(
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
    pub(super) fn deny_private_subqueries(
        &self,
        expr: &Expr,
        place: &str,
    ) -> Result<(), Rejection> {
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
}

/// Rejects a subquery that reads the outer query's private rows other than through its
/// `allowed` correlations on the person (an `EXISTS` keyed on `inner.person_id =
/// outer.person_id`). Any other outer reference — the person as a value or a key
/// (`(SELECT p.person_id FROM practice_lookup LIMIT 1)`), the person compared with
/// something that is not a person, or any private column inside a subquery — is a use
/// of private data the analysis of the subquery cannot see, so it is refused here, before
/// DataFusion plans (or fails to plan) it.
pub(super) fn outer_uses(
    subquery: &LogicalPlan,
    outer: &Relation,
    allowed: usize,
) -> Result<(), Rejection> {
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

fn subquery_rejection(what: &str) -> Rejection {
    Rejection::new(
        RejectionKind::Subquery,
        format!("{what} over private data that is not keyed on the person"),
        "use `person_id IN (SELECT person_id FROM ...)`, an EXISTS correlated on \
         `person_id`, or a join on `person_id`",
    )
}
