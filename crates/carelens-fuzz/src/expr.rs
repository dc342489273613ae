//! Typed expressions over the columns in scope: the operators and the allowlisted scalar
//! functions of the analysis (`SCALAR_FUNCTIONS` in `carelens-engine`'s
//! `analysis/functions.rs`), with extreme literals — the largest and smallest integers, NaN
//! and infinities, empty and long strings, broken patterns, zero and huge intervals, invalid
//! units.

use rand::RngExt;
use rand::seq::IndexedRandom;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::literals::{
    DATES, FLOAT_TYPES, FLOATS, INT_TYPES, INTERVALS, INTS, LIKES, REGEXES, SIMILAR, TEXTS,
    TIMESTAMPS, UNITS, pick,
};
use crate::sql::{Expr, quote};

/// The SQL type an expression is generated at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Any integer type.
    Int,
    /// `DOUBLE`.
    Float,
    /// Text.
    Text,
    /// `DATE`.
    Date,
    /// `BOOLEAN`.
    Bool,
    /// `TIMESTAMP`.
    Timestamp,
    /// `BYTEA`.
    Bytes,
}

impl Ty {
    /// Every type.
    pub const ALL: [Ty; 7] = [
        Ty::Int,
        Ty::Float,
        Ty::Text,
        Ty::Date,
        Ty::Bool,
        Ty::Timestamp,
        Ty::Bytes,
    ];

    /// Types a column of a catalog table can have (and most expressions do).
    pub const COMMON: [Ty; 5] = [Ty::Int, Ty::Float, Ty::Text, Ty::Date, Ty::Bool];

    /// Whether values of this type can be summed.
    pub fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float)
    }
}

/// A column the generator may read.
#[derive(Debug, Clone)]
pub struct Col {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: Ty,
    /// Whether it is the person column (never used in calculations).
    pub person: bool,
    /// Literals of its public domain, in SQL syntax (may be empty).
    pub domain: Vec<String>,
    /// Whether the catalog declares bounds for it.
    pub bounded: bool,
    /// `domain_from = "table.column"`: a public table it joins to.
    pub join_to: Option<(String, String)>,
}

impl Col {
    /// A derived column with no catalog facts.
    pub fn derived(name: impl Into<String>, ty: Ty) -> Self {
        Col {
            name: name.into(),
            ty,
            person: false,
            domain: Vec::new(),
            bounded: false,
            join_to: None,
        }
    }
}

/// A relation in scope: its alias and columns.
#[derive(Debug, Clone)]
pub struct Rel {
    /// The alias queries use.
    pub alias: String,
    /// Its columns.
    pub columns: Vec<Col>,
}

/// Generates typed expressions.
pub struct Exprs<'r> {
    /// The random source (seeded: queries are reproducible).
    pub rng: &'r mut Xoshiro256PlusPlus,
}

impl Exprs<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// A literal of type `ty`, often an extreme one.
    pub fn literal(&mut self, ty: Ty) -> Expr {
        match ty {
            Ty::Int => Expr::lit(*pick(self.rng, INTS)),
            Ty::Float => Expr::lit(*pick(self.rng, FLOATS)),
            Ty::Text => {
                if self.chance(0.05) {
                    // A long string literal (the extract holds 64 KiB ones).
                    let n = *pick(self.rng, &[300usize, 5_000, 70_000]);
                    Expr::text(&"x".repeat(n))
                } else {
                    Expr::text(pick::<&str>(self.rng, TEXTS))
                }
            }
            Ty::Date => Expr::lit(*pick(self.rng, DATES)),
            Ty::Bool => Expr::lit(*pick(self.rng, &["TRUE", "FALSE", "CAST(NULL AS BOOLEAN)"])),
            Ty::Timestamp => Expr::lit(*pick(self.rng, TIMESTAMPS)),
            Ty::Bytes => Expr::lit(*pick(
                self.rng,
                &["CAST('abc' AS BYTEA)", "CAST('' AS BYTEA)"],
            )),
        }
    }

    /// An interval literal.
    pub fn interval(&mut self) -> Expr {
        Expr::lit(*pick(self.rng, INTERVALS))
    }

    /// A date unit for `date_part`/`date_trunc`, sometimes one they refuse.
    pub fn unit(&mut self) -> Expr {
        Expr::text(pick::<&str>(self.rng, UNITS))
    }

    /// A column of `ty` from `scope` (never the person), or a literal.
    pub fn leaf(&mut self, scope: &[Rel], ty: Ty) -> Expr {
        let columns: Vec<Expr> = scope
            .iter()
            .flat_map(|r| {
                r.columns
                    .iter()
                    .filter(|c| c.ty == ty && !c.person)
                    .map(|c| Expr::column(&r.alias, &c.name))
            })
            .collect();
        if !columns.is_empty() && self.chance(0.75) {
            pick(self.rng, &columns).clone()
        } else {
            self.literal(ty)
        }
    }

    /// An expression of type `ty` at most `depth` operators deep.
    pub fn expr(&mut self, scope: &[Rel], ty: Ty, depth: u32) -> Expr {
        if depth == 0 || self.chance(0.3) {
            return self.leaf(scope, ty);
        }
        let d = depth - 1;
        match ty {
            Ty::Int => self.int(scope, d),
            Ty::Float => self.float(scope, d),
            Ty::Text => self.text(scope, d),
            Ty::Date => self.date(scope, d),
            Ty::Bool => self.boolean(scope, d),
            Ty::Timestamp => self.timestamp(scope, d),
            Ty::Bytes => {
                if self.chance(0.8) {
                    self.expr(scope, Ty::Text, d).cast("BYTEA")
                } else {
                    self.case(scope, Ty::Bytes, d)
                }
            }
        }
    }

    /// A `CASE` with results of type `ty`.
    pub fn case(&mut self, scope: &[Rel], ty: Ty, d: u32) -> Expr {
        let n = 1 + self.below(2);
        let whens = (0..n)
            .map(|_| (self.expr(scope, Ty::Bool, d), self.expr(scope, ty, d)))
            .collect();
        let otherwise = self.chance(0.7).then(|| Box::new(self.expr(scope, ty, d)));
        Expr::Case { whens, otherwise }
    }

    /// `CAST(x AS target)` from an expression of another type.
    fn cast_to(&mut self, scope: &[Rel], target: &'static str, d: u32) -> Expr {
        let from = *pick(self.rng, &Ty::ALL);
        self.expr(scope, from, d).cast(target)
    }

    /// One of the two-argument null/order functions over `ty`.
    fn pair(&mut self, scope: &[Rel], ty: Ty, d: u32) -> Expr {
        let name = *pick(
            self.rng,
            &["coalesce", "nullif", "nvl", "ifnull", "least", "greatest"],
        );
        let args = vec![self.expr(scope, ty, d), self.expr(scope, ty, d)];
        Expr::call(name, args)
    }

    fn number(&mut self, scope: &[Rel], d: u32) -> Expr {
        let ty = if self.chance(0.5) { Ty::Int } else { Ty::Float };
        self.expr(scope, ty, d)
    }

    fn int(&mut self, scope: &[Rel], d: u32) -> Expr {
        match self.below(12) {
            0..=2 => {
                let op = *pick(self.rng, &["+", "-", "*", "/", "%"]);
                Expr::binary(
                    self.expr(scope, Ty::Int, d),
                    op,
                    self.expr(scope, Ty::Int, d),
                )
            }
            3 => Expr::call("abs", vec![self.expr(scope, Ty::Int, d)]),
            4 => {
                let f = *pick(self.rng, &["length", "char_length", "character_length"]);
                Expr::call(f, vec![self.expr(scope, Ty::Text, d)])
            }
            5 => Expr::call(
                "strpos",
                vec![self.expr(scope, Ty::Text, d), self.expr(scope, Ty::Text, d)],
            ),
            6 => {
                let to = *pick(self.rng, INT_TYPES);
                self.cast_to(scope, to, d)
            }
            7 => self.case(scope, Ty::Int, d),
            8 => self.pair(scope, Ty::Int, d),
            9 => Expr::binary(
                self.expr(scope, Ty::Date, d),
                "-",
                self.expr(scope, Ty::Date, d),
            ),
            10 => {
                let at = if self.chance(0.7) {
                    Ty::Date
                } else {
                    Ty::Timestamp
                };
                Expr::call("date_part", vec![self.unit(), self.expr(scope, at, d)])
            }
            _ => Expr::Unary {
                op: "-",
                expr: Box::new(self.expr(scope, Ty::Int, d)),
            },
        }
    }

    fn float(&mut self, scope: &[Rel], d: u32) -> Expr {
        match self.below(10) {
            0..=1 => {
                let op = *pick(self.rng, &["+", "-", "*", "/", "%"]);
                Expr::binary(self.number(scope, d), op, self.number(scope, d))
            }
            2 => {
                let f = *pick(
                    self.rng,
                    &[
                        "sqrt", "ln", "log10", "log2", "exp", "ceil", "floor", "signum", "abs",
                        "log", "round", "trunc",
                    ],
                );
                Expr::call(f, vec![self.number(scope, d)])
            }
            3 => {
                // Functions whose second argument must be a literal.
                let f = *pick(self.rng, &["round", "trunc", "power", "pow", "log"]);
                let arg = Expr::lit(*pick(
                    self.rng,
                    &[
                        "0",
                        "2",
                        "(-3)",
                        "64",
                        "1000",
                        "2147483647",
                        "(-2147483648)",
                        "9223372036854775807",
                        "0.5",
                        "1e308",
                    ],
                ));
                Expr::call(f, vec![self.number(scope, d), arg])
            }
            4 => {
                let to = *pick(self.rng, FLOAT_TYPES);
                self.cast_to(scope, to, d)
            }
            5 => self.case(scope, Ty::Float, d),
            6 => self.pair(scope, Ty::Float, d),
            7 => Expr::call(
                "date_part",
                vec![
                    Expr::text(pick::<&str>(self.rng, &["epoch", "second", "julian"])),
                    self.expr(scope, Ty::Timestamp, d),
                ],
            ),
            _ => Expr::Unary {
                op: "-",
                expr: Box::new(self.expr(scope, Ty::Float, d)),
            },
        }
    }

    fn small_int(&mut self) -> Expr {
        Expr::lit(*pick(
            self.rng,
            &[
                "0",
                "1",
                "3",
                "(-1)",
                "(-5)",
                "10000",
                "10001",
                "2147483647",
                "9223372036854775807",
                "(-9223372036854775808)",
            ],
        ))
    }

    fn text(&mut self, scope: &[Rel], d: u32) -> Expr {
        match self.below(14) {
            0 => {
                let f = *pick(
                    self.rng,
                    &["lower", "upper", "trim", "btrim", "ltrim", "rtrim"],
                );
                Expr::call(f, vec![self.expr(scope, Ty::Text, d)])
            }
            1 => {
                let mut args = vec![self.expr(scope, Ty::Text, d), self.small_int()];
                if self.chance(0.7) {
                    args.push(self.small_int());
                }
                let f = *pick(self.rng, &["substr", "substring"]);
                Expr::call(f, args)
            }
            2 => {
                let f = *pick(self.rng, &["left", "right"]);
                Expr::call(f, vec![self.expr(scope, Ty::Text, d), self.small_int()])
            }
            3 => Expr::call(
                "concat",
                vec![self.expr(scope, Ty::Text, d), self.any(scope, d)],
            ),
            4 | 5 => Expr::binary(
                self.expr(scope, Ty::Text, d),
                "||",
                self.expr(scope, Ty::Text, d),
            ),
            6 => Expr::call(
                "concat_ws",
                vec![
                    self.literal(Ty::Text),
                    self.expr(scope, Ty::Text, d),
                    self.any(scope, d),
                ],
            ),
            7 => Expr::call(
                "replace",
                vec![
                    self.expr(scope, Ty::Text, d),
                    self.expr(scope, Ty::Text, d),
                    self.expr(scope, Ty::Text, d),
                ],
            ),
            8 => Expr::call(
                "split_part",
                vec![
                    self.expr(scope, Ty::Text, d),
                    self.literal(Ty::Text),
                    self.small_int(),
                ],
            ),
            9 => {
                let f = *pick(self.rng, &["lpad", "rpad"]);
                let mut args = vec![self.expr(scope, Ty::Text, d), self.small_int()];
                if self.chance(0.5) {
                    args.push(self.expr(scope, Ty::Text, d));
                }
                Expr::call(f, args)
            }
            10 => {
                let to = *pick(self.rng, &["VARCHAR", "TEXT"]);
                self.cast_to(scope, to, d)
            }
            11 => self.expr(scope, Ty::Text, d).cast("BYTEA").cast("VARCHAR"),
            12 => self.case(scope, Ty::Text, d),
            _ => self.pair(scope, Ty::Text, d),
        }
    }

    /// An expression of any common type.
    fn any(&mut self, scope: &[Rel], d: u32) -> Expr {
        let ty = *pick(self.rng, &Ty::COMMON);
        self.expr(scope, ty, d)
    }

    fn date(&mut self, scope: &[Rel], d: u32) -> Expr {
        match self.below(7) {
            0..=2 => {
                let op = *pick(self.rng, &["+", "-"]);
                Expr::binary(self.expr(scope, Ty::Date, d), op, self.interval())
            }
            3 => {
                let from = *pick(self.rng, &[Ty::Text, Ty::Int, Ty::Timestamp]);
                self.expr(scope, from, d).cast("DATE")
            }
            4 => self.case(scope, Ty::Date, d),
            5 => self.pair(scope, Ty::Date, d),
            _ => Expr::call(
                "date_trunc",
                vec![self.unit(), self.expr(scope, Ty::Date, d)],
            )
            .cast("DATE"),
        }
    }

    fn timestamp(&mut self, scope: &[Rel], d: u32) -> Expr {
        match self.below(8) {
            0 | 1 => self.expr(scope, Ty::Date, d).cast("TIMESTAMP"),
            2 => {
                let at = if self.chance(0.6) {
                    Ty::Date
                } else {
                    Ty::Timestamp
                };
                Expr::call("date_trunc", vec![self.unit(), self.expr(scope, at, d)])
            }
            3 => {
                let mut args = vec![self.interval(), self.expr(scope, Ty::Timestamp, d)];
                if self.chance(0.5) {
                    args.push(self.literal(Ty::Timestamp));
                }
                Expr::call("date_bin", args)
            }
            4 => {
                let op = *pick(self.rng, &["+", "-"]);
                Expr::binary(self.expr(scope, Ty::Timestamp, d), op, self.interval())
            }
            5 => Expr::binary(
                self.expr(scope, Ty::Timestamp, d),
                "+",
                Expr::binary(
                    self.expr(scope, Ty::Timestamp, d),
                    "-",
                    self.expr(scope, Ty::Timestamp, d),
                ),
            ),
            6 => self.expr(scope, Ty::Text, d).cast("TIMESTAMP"),
            _ => self.case(scope, Ty::Timestamp, d),
        }
    }

    fn boolean(&mut self, scope: &[Rel], d: u32) -> Expr {
        match self.below(16) {
            0..=3 => {
                let ty = *pick(self.rng, &Ty::ALL);
                let op = *pick(self.rng, &["=", "<>", "<", "<=", ">", ">="]);
                Expr::binary(self.expr(scope, ty, d), op, self.expr(scope, ty, d))
            }
            4 | 5 => {
                let op = *pick(self.rng, &["AND", "OR"]);
                Expr::binary(
                    self.expr(scope, Ty::Bool, d),
                    op,
                    self.expr(scope, Ty::Bool, d),
                )
            }
            6 => Expr::Unary {
                op: "NOT",
                expr: Box::new(self.expr(scope, Ty::Bool, d)),
            },
            7 => Expr::IsNull {
                expr: Box::new(self.any(scope, d)),
                negated: self.chance(0.5),
            },
            8 => {
                let op = *pick(self.rng, &["LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"]);
                Expr::binary(
                    self.expr(scope, Ty::Text, d),
                    op,
                    Expr::text(pick::<&str>(self.rng, LIKES)),
                )
            }
            9 => {
                let op = *pick(self.rng, &["SIMILAR TO", "NOT SIMILAR TO"]);
                Expr::binary(
                    self.expr(scope, Ty::Text, d),
                    op,
                    Expr::text(pick::<&str>(self.rng, SIMILAR)),
                )
            }
            10 => {
                let op = *pick(self.rng, &["~", "~*", "!~", "!~*"]);
                Expr::binary(
                    self.expr(scope, Ty::Text, d),
                    op,
                    Expr::text(pick::<&str>(self.rng, REGEXES)),
                )
            }
            11 => {
                let f = *pick(self.rng, &["starts_with", "ends_with"]);
                Expr::call(
                    f,
                    vec![self.expr(scope, Ty::Text, d), self.expr(scope, Ty::Text, d)],
                )
            }
            12 => {
                let f = *pick(self.rng, &["isnan", "iszero"]);
                Expr::call(f, vec![self.number(scope, d)])
            }
            13 => {
                let ty = *pick(self.rng, &Ty::COMMON);
                Expr::Between {
                    expr: Box::new(self.expr(scope, ty, d)),
                    lo: Box::new(self.literal(ty)),
                    hi: Box::new(self.literal(ty)),
                    negated: self.chance(0.3),
                }
            }
            14 => {
                let ty = *pick(self.rng, &Ty::COMMON);
                let n = 1 + self.below(3);
                Expr::InList {
                    expr: Box::new(self.expr(scope, ty, d)),
                    list: (0..n).map(|_| self.literal(ty)).collect(),
                    negated: self.chance(0.3),
                }
            }
            _ => {
                if self.chance(0.5) {
                    self.case(scope, Ty::Bool, d)
                } else {
                    self.cast_to(scope, "BOOLEAN", d)
                }
            }
        }
    }

    /// A condition that is often true of ordinary rows: a domain value, a range, a
    /// non-null test — so that generated filters keep some rows.
    pub fn condition(&mut self, scope: &[Rel], depth: u32) -> Expr {
        let with_domain: Vec<(String, &Col)> = scope
            .iter()
            .flat_map(|r| {
                r.columns
                    .iter()
                    .filter(|c| !c.domain.is_empty() && !c.person)
                    .map(move |c| (r.alias.clone(), c))
            })
            .collect();
        if !with_domain.is_empty() && self.chance(0.35) {
            let (alias, col) = pick(self.rng, &with_domain);
            let value = Expr::lit(pick(self.rng, &col.domain).clone());
            let op = *pick(self.rng, &["=", "<>", "<=", ">="]);
            return Expr::binary(Expr::column(alias, &col.name), op, value);
        }
        if self.chance(0.2)
            && let Some(c) = self.outlier(scope)
        {
            return c;
        }
        self.expr(scope, Ty::Bool, depth)
    }

    /// A condition true only of values outside any ordinary range (NaN, a date before year
    /// 1, a 1,000-character string): in the oracle, only the extreme person's rows pass
    /// it, so what comes after it runs on their rows alone.
    fn outlier(&mut self, scope: &[Rel]) -> Option<Expr> {
        let columns: Vec<(String, Col)> = scope
            .iter()
            .flat_map(|r| {
                r.columns
                    .iter()
                    .filter(|c| !c.person)
                    .map(move |c| (r.alias.clone(), c.clone()))
            })
            .collect();
        let (alias, col) = columns.choose(self.rng)?.clone();
        let x = Expr::column(&alias, &col.name);
        let compare = |op, value: &str| Expr::binary(x.clone(), op, Expr::lit(value));
        Some(match (col.ty, self.below(2)) {
            (Ty::Int, 0) => compare(">", "2147483000"),
            (Ty::Int, _) => compare("<", "(-2147483000)"),
            (Ty::Float, 0) => Expr::call("isnan", vec![x]),
            (Ty::Float, _) => compare(">", "1e300"),
            (Ty::Text, 0) => Expr::binary(Expr::call("length", vec![x]), ">", Expr::lit("1000")),
            (Ty::Text, _) => compare("=", "''"),
            (Ty::Date, 0) => compare("<", "DATE '0001-01-01'"),
            (Ty::Date, _) => compare(">", "DATE '9999-12-31'"),
            _ => Expr::IsNull {
                expr: Box::new(x),
                negated: false,
            },
        })
    }

    /// A string literal of a domain value, or an odd one.
    pub fn label(&mut self, i: usize) -> Expr {
        if self.chance(0.1) {
            self.literal(Ty::Text)
        } else {
            Expr::lit(quote(&format!("k{i}")))
        }
    }
}
