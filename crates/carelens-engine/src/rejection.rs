//! Why a query was refused, in terms an analyst can act on.
//!
//! Every rejection names the construct (what), where DataFusion knows it the place in the
//! SQL (line and column), and how to fix the query (hint). Messages never contain data
//! values — only names from the query and the catalog.

use std::fmt;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use serde::{Deserialize, Serialize};

/// Which rule a query broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionKind {
    /// Not a single `SELECT` (DDL, DML, `COPY`, `SET`, `EXPLAIN`, several statements).
    Statement,
    /// A table that is not in the catalog, a file path, or a table function.
    Table,
    /// A function outside the allowlist, or a volatile one.
    Function,
    /// The person column used where it could identify someone.
    PersonColumn,
    /// Rows of private data would leave, rather than aggregates.
    RowLevel,
    /// An aggregate that cannot be released (an order statistic, an unbounded sum…).
    Aggregate,
    /// A join of private relations that is not on the person.
    Join,
    /// A window function not partitioned by the person.
    Window,
    /// `ORDER BY`, `LIMIT` or `DISTINCT` on private rows before the released aggregation.
    Ordering,
    /// A subquery over private data that is not keyed on the person.
    Subquery,
    /// A DP parameter that is malformed or above the policy's cap.
    Parameter,
    /// A shape carelens cannot yet prove safe.
    Unsupported,
    /// A column that does not exist (misspelt, or not in the table named).
    Name,
    /// The SQL does not parse.
    Syntax,
    /// The query is over a size limit (bytes, tokens, operators, nesting), checked before
    /// it is parsed.
    TooLarge,
}

/// A place in the SQL text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

/// A query the engine will not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("query rejected: {what}")]
pub struct Rejection {
    /// The rule broken.
    pub kind: RejectionKind,
    /// What is wrong, naming the construct.
    pub what: String,
    /// Where, when known.
    pub location: Option<Location>,
    /// How to fix it.
    pub hint: String,
}

impl Rejection {
    /// A rejection of `kind` saying `what`, with `hint`.
    pub(crate) fn new(
        kind: RejectionKind,
        what: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            what: what.into(),
            location: None,
            hint: hint.into(),
        }
    }

    /// The same rejection, placed at `location` unless it already has a place.
    pub(crate) fn at(mut self, location: Option<Location>) -> Self {
        if self.location.is_none() {
            self.location = location;
        }
        self
    }

    /// The rejection as the CLI prints it, with `source` (a file name) in the location.
    ///
    /// ```text
    /// error: query rejected: `person_id` cannot appear in the output
    ///   --> queries/example.sql:3:8
    /// hint: count people instead, e.g. `COUNT(DISTINCT person_id)`
    /// ```
    pub fn render(&self, source: &str) -> String {
        let mut out = format!("error: {self}\n");
        match self.location {
            Some(l) => out.push_str(&format!("  --> {source}:{}:{}\n", l.line, l.column)),
            None => out.push_str(&format!("  --> {source}\n")),
        }
        out.push_str(&format!("hint: {}", self.hint));
        out
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// Where the name `word` (a column's last part, as DataFusion names it) first appears in
/// `sql` as an identifier — outside strings and comments, compared as SQL compares names
/// (unquoted case-insensitively, quoted exactly) — for errors DataFusion reports without
/// a place (a name used only in GROUP BY, for one).
pub(crate) fn word_location(sql: &str, word: &str) -> Option<Location> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    tokens.iter().find_map(|t| match &t.token {
        Token::Word(w)
            if (w.quote_style.is_some() && w.value == word)
                || (w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word)) =>
        {
            location(t.span.start.line, t.span.start.column)
        }
        _ => None,
    })
}

/// The place just after the last token of `sql` (comments and spaces skipped): where the
/// parser ran out of SQL.
pub(crate) fn end_location(sql: &str) -> Option<Location> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let last = tokens
        .iter()
        .rev()
        .find(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))?;
    location(last.span.end.line, last.span.end.column)
}

fn location(line: u64, column: u64) -> Option<Location> {
    (line > 0 && column > 0).then_some(Location { line, column })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_what_where_and_hint() {
        let r = Rejection::new(
            RejectionKind::PersonColumn,
            "`person_id` cannot appear in the output",
            "count people instead, e.g. `COUNT(DISTINCT person_id)`",
        )
        .at(Some(Location { line: 3, column: 8 }));
        assert_eq!(
            r.render("q.sql"),
            "error: query rejected: `person_id` cannot appear in the output\n  --> q.sql:3:8\n\
             hint: count people instead, e.g. `COUNT(DISTINCT person_id)`"
        );
        assert_eq!(r.kind.to_string(), "person_column");
    }
}
