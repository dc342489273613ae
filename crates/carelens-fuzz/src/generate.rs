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
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::expr::{Col, Exprs, Rel, Ty};
use crate::literals::pick;
use crate::sql::{Cte, Expr, Join, Query, Select, SetExpr, TableRef, quote};

mod ctes;

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

    fn number(&mut self, scope: &[Rel], depth: u32) -> Expr {
        let ty = *pick(&mut self.rng, &[Ty::Int, Ty::Float]);
        self.exprs().expr(scope, ty, depth)
    }

    fn any(&mut self, scope: &[Rel], depth: u32) -> Expr {
        let ty = *pick(&mut self.rng, &Ty::COMMON);
        self.exprs().expr(scope, ty, depth)
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
