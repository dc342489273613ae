//! The SQL the fuzzer writes, as a small syntax tree: the generator builds it, the shrinker
//! edits it, and `Display` renders it as text for the engine.
//!
//! Every compound expression is rendered in parentheses, so the tree's shape is the
//! query's meaning whatever the operators' precedence, and negative literals are
//! parenthesised so that `a - -1` can never become a `--` comment.

use std::fmt::{self, Display, Formatter};

/// A whole query: optional header directives, CTEs and the released `SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// A `-- carelens: ...` header line, without the `--`.
    pub directive: Option<String>,
    /// `WITH name AS (...)`, in order.
    pub ctes: Vec<Cte>,
    /// The outermost `SELECT`.
    pub body: Select,
}

/// One common table expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Cte {
    /// Its name.
    pub name: String,
    /// Its query.
    pub body: SetExpr,
}

/// A `SELECT`, or a `UNION` of them.
#[derive(Debug, Clone, PartialEq)]
pub enum SetExpr {
    /// One `SELECT`.
    Select(Box<Select>),
    /// `a UNION [ALL] b ...`.
    Union {
        /// `UNION ALL` rather than `UNION`.
        all: bool,
        /// The parts, at least two.
        parts: Vec<Select>,
    },
}

/// One `SELECT ... FROM ... WHERE ... GROUP BY ... HAVING ... ORDER BY ... LIMIT`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Select {
    /// `SELECT DISTINCT`.
    pub distinct: bool,
    /// The select list, each with an optional alias.
    pub items: Vec<(Expr, Option<String>)>,
    /// The first relation of `FROM`.
    pub from: Option<TableRef>,
    /// Joins after it.
    pub joins: Vec<Join>,
    /// `WHERE` conditions, `AND`ed.
    pub filter: Vec<Expr>,
    /// `GROUP BY` expressions.
    pub group_by: Vec<Expr>,
    /// `HAVING` conditions, `AND`ed.
    pub having: Vec<Expr>,
    /// `ORDER BY` expressions, each ascending or not.
    pub order_by: Vec<(Expr, bool)>,
    /// `LIMIT`.
    pub limit: Option<u64>,
}

/// A relation in `FROM`.
#[derive(Debug, Clone, PartialEq)]
pub enum TableRef {
    /// A catalog table or a CTE, with an alias.
    Named {
        /// The table or CTE.
        name: String,
        /// Its alias in this query.
        alias: String,
    },
    /// A parenthesised subquery with an alias.
    Subquery {
        /// The subquery.
        body: SetExpr,
        /// Its alias.
        alias: String,
    },
}

/// A join and its condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// `LEFT JOIN` rather than `JOIN`.
    pub left: bool,
    /// The joined relation.
    pub table: TableRef,
    /// `ON` conditions, `AND`ed.
    pub on: Vec<Expr>,
}

/// A window: `OVER (PARTITION BY ... ORDER BY ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// `PARTITION BY`.
    pub partition_by: Vec<Expr>,
    /// `ORDER BY`, each ascending or not.
    pub order_by: Vec<(Expr, bool)>,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `alias.name`.
    Column {
        /// The relation's alias.
        table: String,
        /// The column.
        name: String,
    },
    /// A literal, already in SQL syntax (`'a''b'`, `DATE '2024-01-01'`, `(-1)`).
    Literal(String),
    /// `*` (only inside `COUNT(*)`).
    Star,
    /// A prefix operator: `NOT`, `-`.
    Unary {
        /// The operator.
        op: &'static str,
        /// Its operand.
        expr: Box<Expr>,
    },
    /// An infix operator: arithmetic, comparison, `AND`, `LIKE`, `~`, `||`, ...
    Binary {
        /// Left operand.
        left: Box<Expr>,
        /// The operator as written.
        op: &'static str,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `IS NULL` or `IS NOT NULL`.
    IsNull {
        /// The operand.
        expr: Box<Expr>,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// A function call, an aggregate or a window function.
    Function {
        /// The function.
        name: String,
        /// `f(DISTINCT ...)`.
        distinct: bool,
        /// Arguments.
        args: Vec<Expr>,
        /// `OVER (...)` for window functions.
        over: Option<Box<Window>>,
    },
    /// `CAST(expr AS type)`.
    Cast {
        /// The operand.
        expr: Box<Expr>,
        /// The SQL type.
        to: &'static str,
    },
    /// `CASE WHEN ... THEN ... ELSE ... END`.
    Case {
        /// The branches.
        whens: Vec<(Expr, Expr)>,
        /// The `ELSE`, if any.
        otherwise: Option<Box<Expr>>,
    },
    /// `expr [NOT] IN (a, b, ...)`.
    InList {
        /// The operand.
        expr: Box<Expr>,
        /// The values.
        list: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `expr [NOT] BETWEEN lo AND hi`.
    Between {
        /// The operand.
        expr: Box<Expr>,
        /// Lower end.
        lo: Box<Expr>,
        /// Upper end.
        hi: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `expr [NOT] IN (SELECT ...)`.
    InSubquery {
        /// The operand.
        expr: Box<Expr>,
        /// The subquery.
        query: Box<Select>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `[NOT] EXISTS (SELECT ...)`.
    Exists {
        /// The subquery.
        query: Box<Select>,
        /// `NOT EXISTS`.
        negated: bool,
    },
}

impl Expr {
    /// `table.name`.
    pub fn column(table: &str, name: &str) -> Self {
        Expr::Column {
            table: table.to_owned(),
            name: name.to_owned(),
        }
    }

    /// A literal in SQL syntax.
    pub fn lit(sql: impl Into<String>) -> Self {
        Expr::Literal(sql.into())
    }

    /// A string literal, quoted.
    pub fn text(value: &str) -> Self {
        Expr::Literal(quote(value))
    }

    /// `left op right`.
    pub fn binary(left: Expr, op: &'static str, right: Expr) -> Self {
        Expr::Binary {
            left: Box::new(left),
            op,
            right: Box::new(right),
        }
    }

    /// A call of a scalar or aggregate function.
    pub fn call(name: &str, args: Vec<Expr>) -> Self {
        Expr::Function {
            name: name.to_owned(),
            distinct: false,
            args,
            over: None,
        }
    }

    /// `CAST(self AS to)`.
    pub fn cast(self, to: &'static str) -> Self {
        Expr::Cast {
            expr: Box::new(self),
            to,
        }
    }

    /// The expressions directly inside this one (not inside its subqueries).
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Column { .. } | Expr::Literal(_) | Expr::Star | Expr::Exists { .. } => vec![],
            Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } | Expr::Cast { expr, .. } => {
                vec![expr.as_ref()]
            }
            Expr::InSubquery { expr, .. } => vec![expr.as_ref()],
            Expr::Binary { left, right, .. } => vec![left.as_ref(), right.as_ref()],
            Expr::Function { args, over, .. } => {
                let mut out: Vec<&Expr> = args.iter().collect();
                if let Some(w) = over {
                    out.extend(&w.partition_by);
                    out.extend(w.order_by.iter().map(|(e, _)| e));
                }
                out
            }
            Expr::Case { whens, otherwise } => {
                let mut out = Vec::new();
                for (w, t) in whens {
                    out.push(w);
                    out.push(t);
                }
                out.extend(otherwise.as_deref());
                out
            }
            Expr::InList { expr, list, .. } => {
                let mut out = vec![expr.as_ref()];
                out.extend(list);
                out
            }
            Expr::Between { expr, lo, hi, .. } => vec![expr.as_ref(), lo.as_ref(), hi.as_ref()],
        }
    }

    /// Mutable access to the expressions directly inside this one.
    pub fn children_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Expr::Column { .. } | Expr::Literal(_) | Expr::Star | Expr::Exists { .. } => vec![],
            Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } | Expr::Cast { expr, .. } => {
                vec![expr.as_mut()]
            }
            Expr::InSubquery { expr, .. } => vec![expr.as_mut()],
            Expr::Binary { left, right, .. } => vec![left.as_mut(), right.as_mut()],
            Expr::Function { args, over, .. } => {
                let mut out: Vec<&mut Expr> = args.iter_mut().collect();
                if let Some(w) = over {
                    out.extend(&mut w.partition_by);
                    out.extend(w.order_by.iter_mut().map(|(e, _)| e));
                }
                out
            }
            Expr::Case { whens, otherwise } => {
                let mut out = Vec::new();
                for (w, t) in whens {
                    out.push(w);
                    out.push(t);
                }
                out.extend(otherwise.as_deref_mut());
                out
            }
            Expr::InList { expr, list, .. } => {
                let mut out = vec![expr.as_mut()];
                out.extend(list);
                out
            }
            Expr::Between { expr, lo, hi, .. } => vec![expr.as_mut(), lo.as_mut(), hi.as_mut()],
        }
    }

    /// The subquery inside this expression node, if it is one.
    pub fn subquery_mut(&mut self) -> Option<&mut Select> {
        match self {
            Expr::InSubquery { query, .. } | Expr::Exists { query, .. } => Some(query.as_mut()),
            _ => None,
        }
    }
}

/// `value` as a SQL string literal.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn list<T: Display>(f: &mut Formatter<'_>, items: &[T], sep: &str) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

struct Ordered<'a>(&'a (Expr, bool));

impl Display for Ordered<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (e, asc) = self.0;
        write!(f, "{e} {}", if *asc { "ASC" } else { "DESC" })
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column { table, name } => write!(f, "{table}.{name}"),
            Expr::Literal(sql) => f.write_str(sql),
            Expr::Star => f.write_str("*"),
            Expr::Unary { op, expr } => write!(f, "({op} {expr})"),
            Expr::Binary { left, op, right } => write!(f, "({left} {op} {right})"),
            Expr::IsNull { expr, negated } => {
                write!(f, "({expr} IS {}NULL)", if *negated { "NOT " } else { "" })
            }
            Expr::Function {
                name,
                distinct,
                args,
                over,
            } => {
                write!(f, "{name}({}", if *distinct { "DISTINCT " } else { "" })?;
                list(f, args, ", ")?;
                f.write_str(")")?;
                if let Some(w) = over {
                    f.write_str(" OVER (")?;
                    if !w.partition_by.is_empty() {
                        f.write_str("PARTITION BY ")?;
                        list(f, &w.partition_by, ", ")?;
                    }
                    if !w.order_by.is_empty() {
                        f.write_str(" ORDER BY ")?;
                        let ordered: Vec<Ordered<'_>> = w.order_by.iter().map(Ordered).collect();
                        list(f, &ordered, ", ")?;
                    }
                    f.write_str(")")?;
                }
                Ok(())
            }
            Expr::Cast { expr, to } => write!(f, "CAST({expr} AS {to})"),
            Expr::Case { whens, otherwise } => {
                f.write_str("CASE")?;
                for (w, t) in whens {
                    write!(f, " WHEN {w} THEN {t}")?;
                }
                if let Some(e) = otherwise {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            Expr::InList {
                expr,
                list: values,
                negated,
            } => {
                write!(f, "({expr} {}IN (", if *negated { "NOT " } else { "" })?;
                list(f, values, ", ")?;
                f.write_str("))")
            }
            Expr::Between {
                expr,
                lo,
                hi,
                negated,
            } => write!(
                f,
                "({expr} {}BETWEEN {lo} AND {hi})",
                if *negated { "NOT " } else { "" }
            ),
            Expr::InSubquery {
                expr,
                query,
                negated,
            } => write!(
                f,
                "({expr} {}IN ({query}))",
                if *negated { "NOT " } else { "" }
            ),
            Expr::Exists { query, negated } => {
                write!(
                    f,
                    "({}EXISTS ({query}))",
                    if *negated { "NOT " } else { "" }
                )
            }
        }
    }
}

impl Display for TableRef {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            TableRef::Named { name, alias } => write!(f, "{name} {alias}"),
            TableRef::Subquery { body, alias } => write!(f, "({body}) {alias}"),
        }
    }
}

impl Display for SetExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SetExpr::Select(s) => write!(f, "{s}"),
            SetExpr::Union { all, parts } => {
                let sep = if *all { " UNION ALL " } else { " UNION " };
                list(f, parts, sep)
            }
        }
    }
}

impl Display for Select {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        if self.distinct {
            f.write_str("DISTINCT ")?;
        }
        for (i, (e, alias)) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{e}")?;
            if let Some(a) = alias {
                write!(f, " AS {a}")?;
            }
        }
        if let Some(from) = &self.from {
            write!(f, "\nFROM {from}")?;
        }
        for j in &self.joins {
            write!(
                f,
                "\n{} {} ON ",
                if j.left { "LEFT JOIN" } else { "JOIN" },
                j.table
            )?;
            list(f, &j.on, " AND ")?;
        }
        if !self.filter.is_empty() {
            f.write_str("\nWHERE ")?;
            list(f, &self.filter, " AND ")?;
        }
        if !self.group_by.is_empty() {
            f.write_str("\nGROUP BY ")?;
            list(f, &self.group_by, ", ")?;
        }
        if !self.having.is_empty() {
            f.write_str("\nHAVING ")?;
            list(f, &self.having, " AND ")?;
        }
        if !self.order_by.is_empty() {
            f.write_str("\nORDER BY ")?;
            let ordered: Vec<Ordered<'_>> = self.order_by.iter().map(Ordered).collect();
            list(f, &ordered, ", ")?;
        }
        if let Some(n) = self.limit {
            write!(f, "\nLIMIT {n}")?;
        }
        Ok(())
    }
}

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.directive {
            writeln!(f, "-- carelens: {d}")?;
        }
        for (i, cte) in self.ctes.iter().enumerate() {
            f.write_str(if i == 0 { "WITH " } else { ",\n" })?;
            write!(f, "{} AS (\n{}\n)", cte.name, cte.body)?;
        }
        if !self.ctes.is_empty() {
            f.write_str("\n")?;
        }
        write!(f, "{}", self.body)
    }
}

impl Select {
    /// Every expression of this `SELECT` itself (not of its subqueries in `FROM`), in a
    /// fixed order.
    pub fn exprs_mut(&mut self) -> Vec<&mut Expr> {
        let mut out: Vec<&mut Expr> = self.items.iter_mut().map(|(e, _)| e).collect();
        for j in &mut self.joins {
            out.extend(&mut j.on);
        }
        out.extend(&mut self.filter);
        out.extend(&mut self.group_by);
        out.extend(&mut self.having);
        out.extend(self.order_by.iter_mut().map(|(e, _)| e));
        out
    }

    /// The `SELECT`s of subqueries in `FROM` and joins.
    pub fn from_selects_mut(&mut self) -> Vec<&mut Select> {
        let mut out = Vec::new();
        let tables = self
            .from
            .iter_mut()
            .chain(self.joins.iter_mut().map(|j| &mut j.table));
        for t in tables {
            if let TableRef::Subquery { body, .. } = t {
                out.extend(body.selects_mut());
            }
        }
        out
    }
}

impl SetExpr {
    /// The `SELECT`s of this set expression.
    pub fn selects_mut(&mut self) -> Vec<&mut Select> {
        match self {
            SetExpr::Select(s) => vec![s.as_mut()],
            SetExpr::Union { parts, .. } => parts.iter_mut().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_literals_never_make_a_comment() {
        let e = Expr::binary(Expr::column("e", "x"), "-", Expr::lit("(-1)"));
        assert_eq!(e.to_string(), "(e.x - (-1))");
        let n = Expr::Unary {
            op: "-",
            expr: Box::new(Expr::lit("(-1)")),
        };
        assert!(!n.to_string().contains("--"));
    }
}
