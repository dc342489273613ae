//! Query shapes the privacy analysis accepts (docs/engine.md, "Accepted and rejected"),
//! over the catalog's own tables and columns: per-person feature CTEs (`GROUP BY
//! person_id`), windows partitioned by the person, derived columns, `UNION`s that keep the
//! person; joins on the person (inner and left) and with public tables on a key; filters
//! with `IN (SELECT person_id ...)` and correlated `EXISTS`; and one released aggregation
//! grouped by public-domain keys or other keys, with post-processing above it.
//!
//! The expressions inside are [`crate::expr`]'s: typed, from the allowlist, with extreme
//! literals. The same seed and index always give the same query.

use carelens_catalog::{Catalog, ColumnType, Literal, PublicDomain, TableKind};
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::expr::{Col, Exprs, Rel, Ty};
use crate::sql::{Cte, Expr, Join, Query, Select, SetExpr, TableRef, Window, quote};

/// A relation queries can read: a catalog table or a CTE already written.
#[derive(Debug, Clone)]
struct Source {
    name: String,
    kind: TableKind,
    columns: Vec<Col>,
    /// At most one row per person (the person table, a `GROUP BY person_id` CTE): safe to
    /// join to anything on the person without multiplying rows.
    per_person: bool,
    /// A CTE of this query rather than a catalog table.
    cte: bool,
}

/// Writes random queries over one catalog.
#[derive(Debug, Clone)]
pub struct Generator {
    sources: Vec<Source>,
    person: String,
}

fn ty_of(t: ColumnType) -> Ty {
    match t {
        ColumnType::Int32 | ColumnType::Int64 => Ty::Int,
        ColumnType::Float64 => Ty::Float,
        ColumnType::Utf8 => Ty::Text,
        ColumnType::Boolean => Ty::Bool,
        ColumnType::Date32 => Ty::Date,
    }
}

fn literal_sql(l: &Literal) -> String {
    match l {
        Literal::Bool(b) => b.to_string().to_uppercase(),
        Literal::Int(i) if *i < 0 => format!("({i})"),
        Literal::Int(i) => i.to_string(),
        Literal::Str(s) => quote(s),
    }
}

impl Generator {
    /// A generator over the catalog's tables and columns.
    pub fn new(catalog: &Catalog) -> Self {
        let person = catalog.dataset.person_column.clone();
        let sources = catalog
            .tables
            .iter()
            .map(|t| Source {
                name: t.name.clone(),
                kind: t.kind,
                per_person: t.kind == TableKind::Person,
                cte: false,
                columns: t
                    .columns
                    .iter()
                    .map(|c| {
                        let (domain, join_to) = match c.public_domain() {
                            Some(PublicDomain::Values(v)) => {
                                (v.iter().map(literal_sql).collect(), None)
                            }
                            Some(PublicDomain::Range { lo, hi }) => (
                                [lo, (lo + hi) / 2, hi]
                                    .iter()
                                    .map(|i| literal_sql(&Literal::Int(*i)))
                                    .collect(),
                                None,
                            ),
                            Some(PublicDomain::From { table, column }) => {
                                (Vec::new(), Some((table, column)))
                            }
                            None => (Vec::new(), None),
                        };
                        Col {
                            name: c.name.clone(),
                            ty: ty_of(c.data_type),
                            person: t.kind.is_private() && c.name == person,
                            domain,
                            bounded: c.bounds.is_some(),
                            join_to,
                        }
                    })
                    .collect(),
            })
            .collect();
        Self { sources, person }
    }

    /// The query number `index` of the run seeded with `seed`.
    pub fn query(&self, seed: u64, index: u64) -> Query {
        let mixed = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut build = Build {
            g: self,
            rng: Xoshiro256PlusPlus::seed_from_u64(mixed),
            aliases: 0,
            ctes: Vec::new(),
            sources: self.sources.clone(),
        };
        build.query()
    }
}

struct Build<'g> {
    g: &'g Generator,
    rng: Xoshiro256PlusPlus,
    aliases: usize,
    ctes: Vec<Cte>,
    /// Catalog tables and the CTEs written so far.
    sources: Vec<Source>,
}

fn pick<'a, T>(rng: &mut Xoshiro256PlusPlus, items: &'a [T]) -> &'a T {
    items
        .choose(rng)
        .expect("the generator picks from non-empty lists")
}

impl Build<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    fn exprs(&mut self) -> Exprs<'_> {
        Exprs { rng: &mut self.rng }
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("t{}", self.aliases)
    }

    fn person_col(&self, alias: &str) -> Expr {
        Expr::column(alias, &self.g.person)
    }

    /// A catalog table of `kind` (events when `None` picks, the person table sometimes).
    fn table(&mut self, events_only: bool) -> Source {
        let tables: Vec<Source> = self
            .g
            .sources
            .iter()
            .filter(|s| {
                s.kind == TableKind::Events || (!events_only && s.kind == TableKind::Person)
            })
            .cloned()
            .collect();
        pick(&mut self.rng, &tables).clone()
    }

    fn rel(source: &Source, alias: &str) -> Rel {
        Rel {
            alias: alias.to_owned(),
            columns: source.columns.clone(),
        }
    }

    fn query(&mut self) -> Query {
        let n_ctes = *pick(&mut self.rng, &[0usize, 0, 1, 1, 2, 3]);
        for i in 0..n_ctes {
            let name = format!("c{i}");
            let (body, columns, per_person) = match self.below(8) {
                0..=2 => self.features(),
                3 | 4 => self.windowed(),
                5 | 6 => self.derived(),
                _ => self.union(),
            };
            self.ctes.push(Cte {
                name: name.clone(),
                body,
            });
            self.sources.push(Source {
                name,
                kind: TableKind::Events,
                columns,
                per_person,
                cte: true,
            });
        }
        let directive = self.chance(0.1).then(|| {
            (*pick(
                &mut self.rng,
                &[
                    "epsilon=0.5",
                    "max_rows=1000",
                    "max_groups=1",
                    "max_groups=1000, max_rows=1000",
                    "epsilon=2, delta=0.00001",
                ],
            ))
            .to_owned()
        });
        let body = self.released();
        Query {
            directive,
            ctes: std::mem::take(&mut self.ctes),
            body,
        }
    }

    /// `SELECT person_id, <aggregates> FROM t [WHERE] GROUP BY person_id`.
    fn features(&mut self) -> (SetExpr, Vec<Col>, bool) {
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

    fn number(&mut self, scope: &[Rel], depth: u32) -> Expr {
        let ty = *pick(&mut self.rng, &[Ty::Int, Ty::Float]);
        self.exprs().expr(scope, ty, depth)
    }

    fn any(&mut self, scope: &[Rel], depth: u32) -> Expr {
        let ty = *pick(&mut self.rng, &Ty::COMMON);
        self.exprs().expr(scope, ty, depth)
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
    fn windowed(&mut self) -> (SetExpr, Vec<Col>, bool) {
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
    fn derived(&mut self) -> (SetExpr, Vec<Col>, bool) {
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
    fn union(&mut self) -> (SetExpr, Vec<Col>, bool) {
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

    /// The outermost `SELECT`: the released aggregation and its post-processing.
    fn released(&mut self) -> Select {
        let bases: Vec<Source> = self
            .sources
            .iter()
            .filter(|s| s.kind.is_private())
            .cloned()
            .collect();
        let base = pick(&mut self.rng, &bases).clone();
        let b = self.alias();
        let mut scope = vec![Self::rel(&base, &b)];
        let mut select = Select {
            from: Some(TableRef::Named {
                name: base.name.clone(),
                alias: b.clone(),
            }),
            ..Select::default()
        };
        self.joins(&base, &b, &mut scope, &mut select);
        for _ in 0..self.below(3) {
            let c = self.exprs().condition(&scope, 3);
            select.filter.push(c);
        }
        if self.chance(0.3) {
            let s = self.subquery_filter(&b);
            select.filter.push(s);
        }
        // Group keys first, then the released aggregates, then derived values.
        let n_keys = *pick(&mut self.rng, &[0usize, 1, 1, 1, 2]);
        for i in 0..n_keys {
            let key = self.key(&scope);
            select.items.push((key, Some(format!("k{i}"))));
            select.group_by.push(Expr::lit((i + 1).to_string()));
        }
        let n_aggs = 1 + self.below(2);
        let mut aggs = Vec::new();
        for i in 0..n_aggs {
            let a = self.aggregate(&scope, &b);
            aggs.push(a.clone());
            select.items.push((a, Some(format!("a{i}"))));
        }
        if aggs.len() == 2 && self.chance(0.3) {
            let ratio = Expr::binary(
                Expr::binary(Expr::lit("1000.0"), "*", aggs[0].clone()),
                "/",
                aggs[1].clone(),
            );
            select.items.push((ratio, Some("rate".into())));
        }
        if self.chance(0.15) {
            let c = Expr::binary(
                aggs[0].clone(),
                ">",
                Expr::lit(*pick(&mut self.rng, &["10", "0", "(-1)", "1e308"])),
            );
            select.having.push(c);
        }
        if self.chance(0.2) {
            select.order_by.push((Expr::lit("1"), self.chance(0.5)));
            if self.chance(0.5) {
                select.limit = Some(*pick(&mut self.rng, &[1u64, 5, 0, 1000]));
            }
        }
        select
    }

    /// Joins on the person (to one-row-per-person relations or distinct persons, so the
    /// extreme person's 10,000 rows are not multiplied) and to public tables on a key.
    fn joins(&mut self, base: &Source, b: &str, scope: &mut Vec<Rel>, select: &mut Select) {
        // The person table, unless it is the base.
        if (base.cte || base.kind != TableKind::Person) && self.chance(0.5) {
            let person = self
                .g
                .sources
                .iter()
                .find(|s| s.kind == TableKind::Person)
                .cloned();
            if let Some(p) = person {
                let a = self.alias();
                let mut on = vec![Expr::binary(self.person_col(&a), "=", self.person_col(b))];
                let left = self.chance(0.3);
                if left && self.chance(0.3) {
                    let c = self.exprs().condition(scope, 1);
                    on.push(c);
                }
                select.joins.push(Join {
                    left,
                    table: TableRef::Named {
                        name: p.name.clone(),
                        alias: a.clone(),
                    },
                    on,
                });
                scope.push(Self::rel(&p, &a));
            }
        }
        // A per-person CTE.
        let per_person: Vec<Source> = self
            .sources
            .iter()
            .filter(|s| s.per_person && s.cte && s.name != base.name)
            .cloned()
            .collect();
        if !per_person.is_empty() && self.chance(0.6) {
            let f = pick(&mut self.rng, &per_person).clone();
            let a = self.alias();
            select.joins.push(Join {
                left: self.chance(0.5),
                table: TableRef::Named {
                    name: f.name.clone(),
                    alias: a.clone(),
                },
                on: vec![Expr::binary(self.person_col(&a), "=", self.person_col(b))],
            });
            scope.push(Self::rel(&f, &a));
        }
        // The distinct persons of an events table.
        if self.chance(0.15) {
            let t = self.table(true);
            let y = self.alias();
            let inner_scope = vec![Self::rel(&t, &y)];
            let mut inner = Select {
                distinct: true,
                items: vec![(self.person_col(&y), Some(self.g.person.clone()))],
                from: Some(TableRef::Named {
                    name: t.name.clone(),
                    alias: y,
                }),
                ..Select::default()
            };
            let c = self.exprs().condition(&inner_scope, 2);
            inner.filter.push(c);
            let a = self.alias();
            select.joins.push(Join {
                left: self.chance(0.5),
                table: TableRef::Subquery {
                    body: SetExpr::Select(Box::new(inner)),
                    alias: a.clone(),
                },
                on: vec![Expr::binary(self.person_col(&a), "=", self.person_col(b))],
            });
        }
        // A public table, on a column whose domain comes from it.
        let links: Vec<(String, Col)> = scope
            .iter()
            .flat_map(|r| {
                r.columns
                    .iter()
                    .filter(|c| c.join_to.is_some())
                    .map(move |c| (r.alias.clone(), c.clone()))
            })
            .collect();
        if !links.is_empty() && self.chance(0.3) {
            let (alias, col) = pick(&mut self.rng, &links).clone();
            let Some((table, column)) = col.join_to.clone() else {
                return;
            };
            let Some(public) = self.g.sources.iter().find(|s| s.name == table).cloned() else {
                return;
            };
            let a = self.alias();
            let mut on = vec![Expr::binary(
                Expr::column(&a, &column),
                "=",
                Expr::column(&alias, &col.name),
            )];
            if self.chance(0.2) {
                let both = vec![Self::rel(&public, &a)];
                let c = self.exprs().condition(&both, 1);
                on.push(c);
            }
            select.joins.push(Join {
                left: self.chance(0.3),
                table: TableRef::Named {
                    name: public.name.clone(),
                    alias: a.clone(),
                },
                on,
            });
            scope.push(Self::rel(&public, &a));
        }
    }

    /// `b.person_id [NOT] IN (SELECT person_id ...)` or a correlated `[NOT] EXISTS`.
    fn subquery_filter(&mut self, b: &str) -> Expr {
        let events_only = self.chance(0.8);
        let t = self.table(events_only);
        let y = self.alias();
        let scope = vec![Self::rel(&t, &y)];
        let mut inner = Select {
            from: Some(TableRef::Named {
                name: t.name.clone(),
                alias: y.clone(),
            }),
            ..Select::default()
        };
        let c = self.exprs().condition(&scope, 2);
        if self.chance(0.5) {
            inner.items.push((self.person_col(&y), None));
            inner.filter.push(c);
            Expr::InSubquery {
                expr: Box::new(self.person_col(b)),
                query: Box::new(inner),
                negated: self.chance(0.3),
            }
        } else {
            inner.items.push((Expr::lit("1"), None));
            inner
                .filter
                .push(Expr::binary(self.person_col(&y), "=", self.person_col(b)));
            inner.filter.push(c);
            Expr::Exists {
                query: Box::new(inner),
                negated: self.chance(0.3),
            }
        }
    }

    /// A group key: a public-domain column, a `CASE` with literal results, or any
    /// expression (keys without a public domain go through key selection).
    fn key(&mut self, scope: &[Rel]) -> Expr {
        let domain_cols: Vec<Expr> = scope
            .iter()
            .flat_map(|r| {
                r.columns
                    .iter()
                    .filter(|c| !c.person && (!c.domain.is_empty() || c.join_to.is_some()))
                    .map(|c| Expr::column(&r.alias, &c.name))
            })
            .collect();
        match self.below(6) {
            0..=2 if !domain_cols.is_empty() => pick(&mut self.rng, &domain_cols).clone(),
            3 => {
                let n = 1 + self.below(3);
                let whens = (0..n)
                    .map(|i| {
                        let c = self.exprs().condition(scope, 2);
                        (c, self.exprs().label(i))
                    })
                    .collect();
                let otherwise = self
                    .chance(0.7)
                    .then(|| Box::new(Expr::lit(quote("other"))));
                Expr::Case { whens, otherwise }
            }
            _ => {
                let ty = *pick(&mut self.rng, &Ty::ALL);
                self.exprs().expr(scope, ty, 2)
            }
        }
    }

    /// One released aggregate.
    fn aggregate(&mut self, scope: &[Rel], b: &str) -> Expr {
        let bounded: Vec<Expr> = scope
            .iter()
            .flat_map(|r| {
                r.columns
                    .iter()
                    .filter(|c| c.bounded)
                    .map(|c| Expr::column(&r.alias, &c.name))
            })
            .collect();
        match self.below(8) {
            0 => Expr::call("count", vec![Expr::Star]),
            1 => Expr::Function {
                name: "count".into(),
                distinct: true,
                args: vec![self.person_col(b)],
                over: None,
            },
            2 => {
                let c = self.exprs().condition(scope, 3);
                Expr::Function {
                    name: "count".into(),
                    distinct: true,
                    args: vec![Expr::Case {
                        whens: vec![(c, self.person_col(b))],
                        otherwise: None,
                    }],
                    over: None,
                }
            }
            3 => {
                let e = self.any(scope, 2);
                Expr::call("count", vec![e])
            }
            4..=6 => {
                let (lo, hi) = *pick(
                    &mut self.rng,
                    &[
                        ("0", "1"),
                        ("0", "100"),
                        ("(-100)", "100"),
                        ("0", "10000"),
                        ("(-1000000.0)", "1000000.0"),
                        ("0.0", "0.5"),
                        ("0", "1000000000000"),
                    ],
                );
                let x = self.number(scope, 3);
                let clamped = Expr::call(
                    "least",
                    vec![
                        Expr::call("greatest", vec![x, Expr::lit(lo)]),
                        Expr::lit(hi),
                    ],
                );
                let f = *pick(&mut self.rng, &["sum", "avg"]);
                Expr::call(f, vec![clamped])
            }
            _ if !bounded.is_empty() => {
                let f = *pick(&mut self.rng, &["sum", "avg"]);
                let c = pick(&mut self.rng, &bounded).clone();
                Expr::call(f, vec![c])
            }
            _ => Expr::call("count", vec![Expr::Star]),
        }
    }
}

fn person_col(name: &str) -> Col {
    Col {
        person: true,
        ..Col::derived(name, Ty::Int)
    }
}
