//! Joins: which joins of private relations are allowed (two private sides on the person,
//! not FULL OUTER; a public side matched on an equality, its unmatched rows never kept),
//! and the facts of the joined relation (the nullable side of an outer join, public
//! columns joined to a person).

use std::sync::Arc;

use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, JoinType, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, utils::split_conjunction};

use super::relations::Relation;
use super::subqueries::subquery_plan;
use super::{Analyzer, unalias, unsupported};
use crate::facts::{Facts, expr_facts};
use crate::rejection::{Rejection, RejectionKind};

impl Analyzer<'_> {
    pub(super) fn join(
        &self,
        join: &datafusion::logical_expr::Join,
    ) -> Result<Relation, Rejection> {
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
        // Public columns joined to a person are constant per person only when all of the
        // person's rows match the same public row, or all match none: every condition is
        // `private = public` with the private side constant per person, one public side is
        // the table's checked unique key, and there is no other condition. Otherwise (a
        // key that is not unique matches several rows) they are not known to be constant.
        if left.private != right.private {
            // The conditions as (left, right) equalities: `on` (after DataFusion's
            // extraction), and the filter's conjuncts (before it) — all of them, or none.
            let filter_pairs = equality_pairs(
                join.filter.as_ref(),
                join.left.schema(),
                join.right.schema(),
            );
            let filter_conjuncts = join
                .filter
                .as_ref()
                .map_or(0, |f| split_conjunction(f).len());
            let pairs: Vec<(Expr, Expr)> = join.on.iter().cloned().chain(filter_pairs).collect();
            let only_equalities = pairs.len() == join.on.len() + filter_conjuncts;
            let facts: Vec<(Facts, Facts)> = pairs
                .iter()
                .map(|(l, r)| sides(l, r, join, &left, &right))
                .collect();
            let unique_match = only_equalities
                && facts
                    .iter()
                    .all(|(private, _)| private.constant && !private.person)
                && facts.iter().any(|(_, public)| public.unique);
            let range = if left.private {
                n_left..columns.len()
            } else {
                0..n_left
            };
            for c in &mut columns[range] {
                c.constant = unique_match;
            }
        }
        // A join can repeat any row of either side.
        for c in &mut columns {
            c.unique = false;
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
}

/// The facts of one equality `l = r` (`l` over the left input) of a join between a private
/// and a public relation: the private side's, then the public side's.
fn sides(
    l: &Expr,
    r: &Expr,
    join: &datafusion::logical_expr::Join,
    left: &Relation,
    right: &Relation,
) -> (Facts, Facts) {
    let l = expr_facts(l, join.left.schema(), &left.columns);
    let r = expr_facts(r, join.right.schema(), &right.columns);
    if left.private { (l, r) } else { (r, l) }
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
