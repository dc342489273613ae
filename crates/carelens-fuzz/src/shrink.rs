//! Shrinking a finding to a minimal query: repeatedly try a smaller variant — without a
//! CTE, a join, a condition, a select item, or with an expression replaced by one of its
//! parts or by a plain literal — and keep it while the finding persists.
//!
//! Candidates need not be valid SQL: the check (the oracle, in practice) refuses those
//! that the sample does not accept, and every kept candidate renders strictly shorter, so
//! shrinking ends.

use std::collections::HashSet;

use crate::sql::{Expr, Query, Select};

/// Calls `f` on every `SELECT` of the query, parents before children: CTE bodies, the
/// body, subqueries in `FROM` and in expressions.
fn each_select(query: &mut Query, f: &mut dyn FnMut(&mut Select)) {
    for cte in &mut query.ctes {
        for s in cte.body.selects_mut() {
            walk_select(s, f);
        }
    }
    walk_select(&mut query.body, f);
}

fn walk_select(select: &mut Select, f: &mut dyn FnMut(&mut Select)) {
    f(select);
    for sub in select.from_selects_mut() {
        walk_select(sub, f);
    }
    for e in select.exprs_mut() {
        walk_expr_selects(e, f);
    }
}

fn walk_expr_selects(expr: &mut Expr, f: &mut dyn FnMut(&mut Select)) {
    if let Some(q) = expr.subquery_mut() {
        walk_select(q, f);
    }
    for c in expr.children_mut() {
        walk_expr_selects(c, f);
    }
}

/// Calls `f` on every expression node, parents before children.
fn each_expr(query: &mut Query, f: &mut dyn FnMut(&mut Expr)) {
    each_select(query, &mut |s| {
        for e in s.exprs_mut() {
            walk_expr(e, f);
        }
    });
}

fn walk_expr(expr: &mut Expr, f: &mut dyn FnMut(&mut Expr)) {
    f(expr);
    for c in expr.children_mut() {
        walk_expr(c, f);
    }
}

/// A change to one `SELECT`.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Join(usize),
    Filter(usize),
    Having(usize),
    GroupBy(usize),
    Item(usize),
    OrderBy,
    Limit,
    Distinct,
}

fn cuts(select: &Select) -> Vec<Cut> {
    let mut out = Vec::new();
    out.extend((0..select.joins.len()).map(Cut::Join));
    out.extend((0..select.filter.len()).map(Cut::Filter));
    out.extend((0..select.having.len()).map(Cut::Having));
    out.extend((0..select.items.len()).map(Cut::Item));
    out.extend((0..select.group_by.len()).map(Cut::GroupBy));
    if !select.order_by.is_empty() {
        out.push(Cut::OrderBy);
    }
    if select.limit.is_some() {
        out.push(Cut::Limit);
    }
    if select.distinct {
        out.push(Cut::Distinct);
    }
    out
}

/// The ordinal a `GROUP BY 1` or `ORDER BY 1` literal names.
fn ordinal(e: &Expr) -> Option<usize> {
    match e {
        Expr::Literal(s) => s.parse().ok(),
        _ => None,
    }
}

fn apply(select: &mut Select, cut: Cut) {
    match cut {
        Cut::Join(i) => {
            select.joins.remove(i);
        }
        Cut::Filter(i) => {
            select.filter.remove(i);
        }
        Cut::Having(i) => {
            select.having.remove(i);
        }
        Cut::GroupBy(i) => {
            select.group_by.remove(i);
        }
        Cut::Item(i) => {
            select.items.remove(i);
            // Keep ordinals pointing at the same items.
            let position = i + 1;
            select
                .group_by
                .retain(|e| ordinal(e).is_none_or(|n| n != position));
            let renumber = |e: &mut Expr| {
                if let Some(n) = ordinal(e).filter(|n| *n > position) {
                    *e = Expr::lit((n - 1).to_string());
                }
            };
            select.group_by.iter_mut().for_each(renumber);
            select.order_by.iter_mut().for_each(|(e, _)| renumber(e));
        }
        Cut::OrderBy => select.order_by.clear(),
        Cut::Limit => select.limit = None,
        Cut::Distinct => select.distinct = false,
    }
}

/// Smaller expressions that might stand for `e`.
fn simpler(e: &Expr) -> Vec<Expr> {
    let mut out = Vec::new();
    match e {
        Expr::Case { whens, otherwise } => {
            for i in 0..whens.len() {
                if whens.len() > 1 {
                    let mut w = whens.clone();
                    w.remove(i);
                    out.push(Expr::Case {
                        whens: w,
                        otherwise: otherwise.clone(),
                    });
                }
            }
            if otherwise.is_some() {
                out.push(Expr::Case {
                    whens: whens.clone(),
                    otherwise: None,
                });
            }
        }
        Expr::Function {
            name,
            distinct,
            args,
            over,
        } if args.len() > 1 => {
            let mut fewer = args.clone();
            fewer.pop();
            out.push(Expr::Function {
                name: name.clone(),
                distinct: *distinct,
                args: fewer,
                over: over.clone(),
            });
        }
        Expr::InList {
            expr,
            list,
            negated,
        } if list.len() > 1 => out.push(Expr::InList {
            expr: expr.clone(),
            list: list[..1].to_vec(),
            negated: *negated,
        }),
        Expr::Literal(s) if s.starts_with('\'') && s.len() > 12 => {
            out.push(Expr::lit(format!("{}'", &s[..s.floor_char_boundary(8)])));
            out.push(Expr::lit("'x'"));
        }
        _ => {}
    }
    out.extend(
        e.children()
            .into_iter()
            .filter(|c| !matches!(c, Expr::Star))
            .cloned(),
    );
    let plain = matches!(e, Expr::Column { .. } | Expr::Star)
        || matches!(e, Expr::Literal(s) if s.len() <= 4);
    if !plain {
        out.extend(["NULL", "0", "1", "TRUE", "''"].map(Expr::lit));
    }
    out
}

/// Every one-step smaller variant of `query`, the biggest cuts first.
pub fn candidates(query: &Query) -> Vec<Query> {
    let mut out = Vec::new();
    for i in 0..query.ctes.len() {
        let mut q = query.clone();
        q.ctes.remove(i);
        out.push(q);
    }
    if query.directive.is_some() {
        let mut q = query.clone();
        q.directive = None;
        out.push(q);
    }
    let mut selects = Vec::new();
    each_select(&mut query.clone(), &mut |s| selects.push(cuts(s)));
    for (target, cuts) in selects.into_iter().enumerate() {
        for cut in cuts {
            let mut q = query.clone();
            let mut index = 0;
            each_select(&mut q, &mut |s| {
                if index == target {
                    apply(s, cut);
                }
                index += 1;
            });
            out.push(q);
        }
    }
    let mut nodes = Vec::new();
    each_expr(&mut query.clone(), &mut |e| nodes.push(e.clone()));
    for (target, node) in nodes.iter().enumerate() {
        for replacement in simpler(node) {
            let mut q = query.clone();
            let mut index = 0;
            each_expr(&mut q, &mut |e| {
                if index == target {
                    *e = replacement.clone();
                }
                index += 1;
            });
            out.push(q);
        }
    }
    out
}

/// Shrinks `query` while `still` holds, trying at most `max_checks` candidates, the
/// shortest first; returns the smallest query found and the number of checks made.
pub async fn shrink<F>(query: &Query, max_checks: usize, mut still: F) -> (Query, usize)
where
    F: AsyncFnMut(&Query) -> bool,
{
    let mut best = query.clone();
    let mut best_len = best.to_string().len();
    let mut tried = HashSet::new();
    let mut checks = 0;
    'search: loop {
        // The biggest cuts first: the shortest candidates that are still new.
        let mut round: Vec<(String, Query)> = candidates(&best)
            .into_iter()
            .map(|c| (c.to_string(), c))
            .filter(|(text, _)| text.len() < best_len && !tried.contains(text))
            .collect();
        round.sort_by_key(|(text, _)| text.len());
        round.dedup_by(|a, b| a.0 == b.0);
        for (text, candidate) in round {
            if checks >= max_checks {
                break 'search;
            }
            checks += 1;
            tried.insert(text.clone());
            if still(&candidate).await {
                best = candidate;
                best_len = text.len();
                continue 'search;
            }
        }
        break;
    }
    (best, checks)
}
