//! The CTE shapes a query can start with: per-person features (`GROUP BY person_id`),
//! rows with windows partitioned by the person, derived columns, and `UNION`s of events
//! that keep the person. Each returns its body, its columns and whether it has at most one
//! row per person.

use super::{Build, Source, person_col};
use crate::expr::{Col, Ty};
use crate::literals::pick;
use crate::sql::{Expr, Select, SetExpr, TableRef, Window};

impl Build<'_> {
    /// `SELECT person_id, <aggregates> FROM t [WHERE] GROUP BY person_id`.
    pub(super) fn features(&mut self) -> (SetExpr, Vec<Col>, bool) {
        let events_only = self.chance(0.8);
        let t = self.table(events_only);
        let x = self.alias();
        let scope = vec![Self::rel(&t, &x)];
        let mut select = Select {
            items: vec![(self.person_col(&x), Some(self.g.person.clone()))],
            from: Some(TableRef::Named {
                name: t.name.clone(),
                alias: x.clone(),
            }),
            group_by: vec![self.person_col(&x)],
            ..Select::default()
        };
        let mut columns = vec![person_col(&self.g.person)];
        if self.chance(0.5) {
            let c = self.exprs().condition(&scope, 2);
            select.filter.push(c);
        }
        for i in 0..1 + self.below(3) {
            let name = format!("f{i}");
            let (e, ty) = match self.below(9) {
                0 => (Expr::call("count", vec![Expr::Star]), Ty::Int),
                1 => {
                    let e = self.any(&scope, 2);
                    (Expr::call("count", vec![e]), Ty::Int)
                }
                2 | 3 => {
                    let ty = *pick(&mut self.rng, &Ty::COMMON);
                    let f = *pick(&mut self.rng, &["min", "max"]);
                    (Expr::call(f, vec![self.exprs().expr(&scope, ty, 2)]), ty)
                }
                4 => {
                    let ty = *pick(&mut self.rng, &[Ty::Int, Ty::Float]);
                    (
                        Expr::call("sum", vec![self.exprs().expr(&scope, ty, 2)]),
                        ty,
                    )
                }
                5 => {
                    let f = *pick(&mut self.rng, &["avg", "median"]);
                    let e = self.number(&scope, 2);
                    (Expr::call(f, vec![e]), Ty::Float)
                }
                6 => {
                    let f = *pick(&mut self.rng, &["bool_or", "bool_and"]);
                    (
                        Expr::call(f, vec![self.exprs().expr(&scope, Ty::Bool, 2)]),
                        Ty::Bool,
                    )
                }
                7 => {
                    let e = self.any(&scope, 1);
                    (
                        Expr::Function {
                            name: "count".into(),
                            distinct: true,
                            args: vec![e],
                            over: None,
                        },
                        Ty::Int,
                    )
                }
                _ => {
                    let ty = *pick(&mut self.rng, &Ty::COMMON);
                    let f = *pick(&mut self.rng, &["first_value", "last_value"]);
                    (Expr::call(f, vec![self.exprs().expr(&scope, ty, 1)]), ty)
                }
            };
            select.items.push((e, Some(name.clone())));
            columns.push(Col::derived(name, ty));
        }
        (SetExpr::Select(Box::new(select)), columns, true)
    }

    /// Some of the table's own columns, passed through.
    fn pass_through(&mut self, t: &Source, x: &str, select: &mut Select, columns: &mut Vec<Col>) {
        for c in &t.columns {
            if !c.person && self.chance(0.4) {
                select
                    .items
                    .push((Expr::column(x, &c.name), Some(c.name.clone())));
                columns.push(c.clone());
            }
        }
    }

    /// Rows with window functions `OVER (PARTITION BY person_id ORDER BY ...)`.
    pub(super) fn windowed(&mut self) -> (SetExpr, Vec<Col>, bool) {
        let events_only = self.chance(0.9);
        let t = self.table(events_only);
        let x = self.alias();
        let scope = vec![Self::rel(&t, &x)];
        let mut select = Select {
            items: vec![(self.person_col(&x), Some(self.g.person.clone()))],
            from: Some(TableRef::Named {
                name: t.name.clone(),
                alias: x.clone(),
            }),
            ..Select::default()
        };
        let mut columns = vec![person_col(&self.g.person)];
        self.pass_through(&t, &x, &mut select, &mut columns);
        if self.chance(0.3) {
            let c = self.exprs().condition(&scope, 2);
            select.filter.push(c);
        }
        for i in 0..1 + self.below(2) {
            let order = self.any(&scope, 1);
            let window = Window {
                partition_by: vec![self.person_col(&x)],
                order_by: vec![(order, self.chance(0.5))],
            };
            let arg_ty = *pick(&mut self.rng, &Ty::COMMON);
            let (name, args, ty) = match self.below(8) {
                0 => {
                    let f = *pick(&mut self.rng, &["row_number", "rank", "dense_rank"]);
                    (f, vec![], Ty::Int)
                }
                1 => {
                    let f = *pick(&mut self.rng, &["percent_rank", "cume_dist"]);
                    (f, vec![], Ty::Float)
                }
                2 => {
                    let n = Expr::lit(*pick(
                        &mut self.rng,
                        &["4", "1", "0", "(-1)", "9223372036854775807"],
                    ));
                    ("ntile", vec![n], Ty::Int)
                }
                3 | 4 => {
                    let f = *pick(&mut self.rng, &["lead", "lag"]);
                    let mut args = vec![self.exprs().expr(&scope, arg_ty, 1)];
                    if self.chance(0.6) {
                        args.push(Expr::lit(*pick(
                            &mut self.rng,
                            &["1", "0", "(-1)", "10000", "9223372036854775807"],
                        )));
                        if self.chance(0.5) {
                            args.push(self.exprs().literal(arg_ty));
                        }
                    }
                    (f, args, arg_ty)
                }
                5 => {
                    let f = *pick(&mut self.rng, &["first_value", "last_value", "min", "max"]);
                    (f, vec![self.exprs().expr(&scope, arg_ty, 1)], arg_ty)
                }
                6 => {
                    let n = Expr::lit(*pick(
                        &mut self.rng,
                        &["1", "2", "0", "(-1)", "9223372036854775807"],
                    ));
                    (
                        "nth_value",
                        vec![self.exprs().expr(&scope, arg_ty, 1), n],
                        arg_ty,
                    )
                }
                _ => {
                    let f = *pick(&mut self.rng, &["sum", "avg", "count"]);
                    let ty = if f == "avg" { Ty::Float } else { Ty::Int };
                    let e = self.exprs().expr(&scope, Ty::Int, 1);
                    (f, vec![e], ty)
                }
            };
            let w = format!("w{i}");
            select.items.push((
                Expr::Function {
                    name: name.into(),
                    distinct: false,
                    args,
                    over: Some(Box::new(window)),
                },
                Some(w.clone()),
            ));
            columns.push(Col::derived(w, ty));
        }
        (SetExpr::Select(Box::new(select)), columns, false)
    }

    /// Rows with derived columns.
    pub(super) fn derived(&mut self) -> (SetExpr, Vec<Col>, bool) {
        let events_only = self.chance(0.5);
        let t = self.table(events_only);
        let x = self.alias();
        let scope = vec![Self::rel(&t, &x)];
        let mut select = Select {
            items: vec![(self.person_col(&x), Some(self.g.person.clone()))],
            from: Some(TableRef::Named {
                name: t.name.clone(),
                alias: x.clone(),
            }),
            ..Select::default()
        };
        let mut columns = vec![person_col(&self.g.person)];
        self.pass_through(&t, &x, &mut select, &mut columns);
        for i in 0..1 + self.below(3) {
            let ty = *pick(&mut self.rng, &Ty::ALL);
            let e = self.exprs().expr(&scope, ty, 3);
            let name = format!("d{i}");
            select.items.push((e, Some(name.clone())));
            columns.push(Col::derived(name, ty));
        }
        if self.chance(0.4) {
            let c = self.exprs().condition(&scope, 2);
            select.filter.push(c);
        }
        (SetExpr::Select(Box::new(select)), columns, t.per_person)
    }

    /// `SELECT person_id, <a date> FROM a UNION [ALL] SELECT person_id, <a date> FROM b`.
    pub(super) fn union(&mut self) -> (SetExpr, Vec<Col>, bool) {
        let mut parts = Vec::new();
        for _ in 0..2 {
            let t = self.table(true);
            let x = self.alias();
            let scope = vec![Self::rel(&t, &x)];
            let day = self.exprs().expr(&scope, Ty::Date, 1);
            let mut select = Select {
                items: vec![
                    (self.person_col(&x), Some(self.g.person.clone())),
                    (day, Some("day".into())),
                ],
                from: Some(TableRef::Named {
                    name: t.name.clone(),
                    alias: x.clone(),
                }),
                ..Select::default()
            };
            if self.chance(0.6) {
                let c = self.exprs().condition(&scope, 2);
                select.filter.push(c);
            }
            parts.push(select);
        }
        let columns = vec![person_col(&self.g.person), Col::derived("day", Ty::Date)];
        (
            SetExpr::Union {
                all: self.chance(0.5),
                parts,
            },
            columns,
            false,
        )
    }
}
