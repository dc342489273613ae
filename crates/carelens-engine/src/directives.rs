//! Per-query DP parameters, written in the SQL file.
//!
//! Two forms, which may be mixed if they agree:
//!
//! - header directives in the leading comments: `-- carelens: epsilon=0.5, max_groups=3`;
//! - the ZetaSQL/BigQuery clause `SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS(epsilon = 0.5,
//!   delta = 1e-6, max_groups_contributed = 3) …`, which DataFusion does not parse: it is
//!   read from the token stream and blanked out (replaced by spaces, so every other token
//!   keeps its line and column) before the SQL is planned.
//!
//! Keys: `epsilon`, `delta`, `max_groups` (alias `max_groups_contributed`: L0, the groups
//! one person may add to) and `max_rows` (alias `max_rows_per_group`: L∞, the rows one
//! person may add to one group).

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use serde::Serialize;

use crate::rejection::{Location, Rejection, RejectionKind};

/// DP parameters a query asked for; `None` means the policy's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct QueryOptions {
    /// ε for the whole release.
    pub epsilon: Option<f64>,
    /// δ for the whole release (used only by key selection and Gaussian noise).
    pub delta: Option<f64>,
    /// L0: groups one person may contribute to.
    pub max_groups: Option<u32>,
    /// L∞: rows one person may contribute to one group.
    pub max_rows: Option<u32>,
}

/// A query's text with its DP clause blanked out, and the options it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Directives {
    /// The SQL DataFusion should plan.
    pub sql: String,
    /// What the query asked for.
    pub options: QueryOptions,
}

const PREFIX: &str = "carelens:";
/// The header directive naming the column the report charts (`Header::chart`); allowed in
/// the header only, and no DP option.
const CHART: &str = "chart";

/// Reads the header directives and the `WITH DIFFERENTIAL_PRIVACY` clause of `sql`.
pub fn parse(sql: &str) -> Result<Directives, Rejection> {
    let mut options = QueryOptions::default();
    for (index, line) in sql.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let Some(comment) = trimmed.strip_prefix("--") else {
            break;
        };
        let Some(body) = comment.trim_start().strip_prefix(PREFIX) else {
            continue;
        };
        let location = Location {
            line: index as u64 + 1,
            column: 1,
        };
        for part in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                bad(format!(
                    "`{part}` in a `-- carelens:` directive is not `key=value`"
                ))
                .at(Some(location))
            })?;
            if key.trim() == CHART {
                // How the report draws the result, not how it is computed.
                continue;
            }
            set(&mut options, key.trim(), value.trim()).map_err(|r| r.at(Some(location)))?;
        }
    }
    let (sql, clause) = blank_clause(sql)?;
    for (key, value, location) in clause {
        set(&mut options, &key, &value).map_err(|r| r.at(Some(location)))?;
    }
    Ok(Directives { sql, options })
}

fn bad(what: String) -> Rejection {
    Rejection::new(
        RejectionKind::Parameter,
        what,
        "write e.g. `-- carelens: epsilon=0.5, max_groups=3` or \
         `SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS(epsilon = 0.5) …`; keys: epsilon, delta, \
         max_groups, max_rows (and, in the header only, chart=COLUMN for the report)",
    )
}

fn set(options: &mut QueryOptions, key: &str, value: &str) -> Result<(), Rejection> {
    fn number(key: &str, value: &str) -> Result<f64, Rejection> {
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad(format!("{key} = `{value}` is not a number")))
    }
    fn count(key: &str, value: &str) -> Result<u32, Rejection> {
        value.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
            bad(format!(
                "{key} = `{value}` is not a whole number of at least 1"
            ))
        })
    }
    fn put<T: PartialEq + Copy>(slot: &mut Option<T>, key: &str, v: T) -> Result<(), Rejection> {
        match *slot {
            Some(old) if old != v => {
                Err(bad(format!("{key} is given twice, with different values")))
            }
            _ => {
                *slot = Some(v);
                Ok(())
            }
        }
    }
    match key.to_ascii_lowercase().as_str() {
        "epsilon" => put(&mut options.epsilon, "epsilon", number(key, value)?),
        "delta" => put(&mut options.delta, "delta", number(key, value)?),
        "max_groups" | "max_groups_contributed" => {
            put(&mut options.max_groups, "max_groups", count(key, value)?)
        }
        "max_rows" | "max_rows_per_group" => {
            put(&mut options.max_rows, "max_rows", count(key, value)?)
        }
        _ => Err(bad(format!("unknown DP option `{key}`"))),
    }
}

type ClauseOptions = Vec<(String, String, Location)>;

/// Finds `WITH DIFFERENTIAL_PRIVACY OPTIONS(...)` right after a `SELECT`, returns the SQL
/// with it replaced by spaces and the key/value pairs it held.
fn blank_clause(sql: &str) -> Result<(String, ClauseOptions), Rejection> {
    let tokens = match Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() {
        Ok(t) => t,
        // Let DataFusion report the syntax error with its own message.
        Err(_) => return Ok((sql.to_owned(), Vec::new())),
    };
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let is_word = |i: usize, want: &str| {
        significant
            .get(i)
            .is_some_and(|t| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(want)))
    };
    let mut found = None;
    for (i, token) in significant.iter().enumerate() {
        let select = matches!(&token.token, Token::Word(w) if w.keyword == Keyword::SELECT);
        if select && is_word(i + 1, "WITH") && is_word(i + 2, "DIFFERENTIAL_PRIVACY") {
            if found.is_some() {
                return Err(bad(
                    "`WITH DIFFERENTIAL_PRIVACY` appears more than once".to_owned()
                ));
            }
            found = Some(i + 1);
        }
    }
    let Some(start) = found else {
        return Ok((sql.to_owned(), Vec::new()));
    };
    let here = |i: usize| {
        significant.get(i).map(|t| Location {
            line: t.span.start.line,
            column: t.span.start.column,
        })
    };
    let mut i = start + 2;
    let mut pairs = Vec::new();
    if is_word(i, "OPTIONS") {
        i += 1;
        if !matches!(significant.get(i).map(|t| &t.token), Some(Token::LParen)) {
            return Err(bad("`OPTIONS` must be followed by `(`".to_owned()).at(here(i)));
        }
        i += 1;
        loop {
            match significant.get(i).map(|t| &t.token) {
                Some(Token::RParen) => break,
                Some(Token::Word(key)) => {
                    let location = here(i).unwrap_or(Location { line: 1, column: 1 });
                    if !matches!(significant.get(i + 1).map(|t| &t.token), Some(Token::Eq)) {
                        return Err(
                            bad(format!("`{}` must be followed by `=`", key.value)).at(here(i + 1))
                        );
                    }
                    let value = match significant.get(i + 2).map(|t| &t.token) {
                        Some(Token::Number(n, _)) => n.clone(),
                        Some(Token::Minus) => match significant.get(i + 3).map(|t| &t.token) {
                            Some(Token::Number(n, _)) => {
                                i += 1;
                                format!("-{n}")
                            }
                            _ => return Err(bad("expected a number".to_owned()).at(here(i + 3))),
                        },
                        _ => {
                            return Err(
                                bad(format!("`{}` needs a number", key.value)).at(here(i + 2))
                            );
                        }
                    };
                    pairs.push((key.value.clone(), value, location));
                    i += 3;
                    match significant.get(i).map(|t| &t.token) {
                        Some(Token::Comma) => i += 1,
                        Some(Token::RParen) => {}
                        _ => {
                            return Err(
                                bad("expected `,` or `)` in OPTIONS(...)".to_owned()).at(here(i))
                            );
                        }
                    }
                }
                _ => return Err(bad("malformed OPTIONS(...)".to_owned()).at(here(i))),
            }
        }
    } else {
        // `WITH DIFFERENTIAL_PRIVACY` alone: the policy's defaults.
        i -= 1;
    }
    let (Some(first), Some(last)) = (significant.get(start), significant.get(i)) else {
        return Ok((sql.to_owned(), pairs));
    };
    let from = byte_offset(sql, first.span.start.line, first.span.start.column);
    let to = byte_offset(sql, last.span.end.line, last.span.end.column);
    let blanked: String = sql
        .char_indices()
        .map(|(at, c)| {
            if at >= from && at < to && c != '\n' && c != '\r' {
                ' '
            } else {
                c
            }
        })
        .collect();
    Ok((blanked, pairs))
}

/// The byte offset of a 1-based (line, column-in-characters) position.
fn byte_offset(sql: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (index, text) in sql.split_inclusive('\n').enumerate() {
        if index as u64 + 1 == line {
            return offset
                + text
                    .char_indices()
                    .nth(column.saturating_sub(1) as usize)
                    .map_or(text.len(), |(at, _)| at);
        }
        offset += text.len();
    }
    sql.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_directives_are_read() {
        let d = parse("-- purpose\n-- carelens: epsilon=0.5, max_groups=3\nSELECT 1").unwrap();
        assert_eq!(d.options.epsilon, Some(0.5));
        assert_eq!(d.options.max_groups, Some(3));
        assert_eq!(
            d.sql,
            "-- purpose\n-- carelens: epsilon=0.5, max_groups=3\nSELECT 1"
        );
    }

    #[test]
    fn directives_after_the_first_statement_line_are_ignored() {
        let d = parse("SELECT 1\n-- carelens: epsilon=0.5").unwrap();
        assert_eq!(d.options, QueryOptions::default());
    }

    #[test]
    fn dp_clause_is_read_and_blanked_keeping_positions() {
        let sql = "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS(epsilon = 0.25, delta = 1e-7,\n  max_groups_contributed = 2) sex,\n COUNT(*) FROM person GROUP BY sex";
        let d = parse(sql).unwrap();
        assert_eq!(d.options.epsilon, Some(0.25));
        assert_eq!(d.options.delta, Some(1e-7));
        assert_eq!(d.options.max_groups, Some(2));
        assert_eq!(d.sql.len(), sql.len());
        assert_eq!(d.sql.lines().count(), 3);
        assert!(d.sql.starts_with("SELECT "));
        assert!(!d.sql.contains("DIFFERENTIAL_PRIVACY"));
        assert!(!d.sql.contains("max_groups"));
        assert_eq!(d.sql.lines().nth(1).map(|l| l.trim()), Some("sex,"));
    }

    #[test]
    fn bare_dp_clause_uses_defaults() {
        let d = parse("SELECT WITH DIFFERENTIAL_PRIVACY COUNT(*) FROM person").unwrap();
        assert_eq!(d.options, QueryOptions::default());
        assert_eq!(
            d.sql.split_whitespace().collect::<Vec<_>>(),
            ["SELECT", "COUNT(*)", "FROM", "person"]
        );
    }

    #[test]
    fn conflicting_or_unknown_or_malformed_options_are_rejected() {
        let twice = parse(
            "-- carelens: epsilon=0.5\nSELECT WITH DIFFERENTIAL_PRIVACY OPTIONS(epsilon=1) 1",
        );
        assert!(twice.unwrap_err().what.contains("given twice"));
        let unknown = parse("-- carelens: epsilom=0.5\nSELECT 1").unwrap_err();
        assert_eq!(unknown.kind, RejectionKind::Parameter);
        assert!(unknown.what.contains("epsilom"));
        assert_eq!(unknown.location, Some(Location { line: 1, column: 1 }));
        assert!(parse("-- carelens: max_groups=0\nSELECT 1").is_err());
        assert!(parse("-- carelens: epsilon=abc\nSELECT 1").is_err());
        assert!(parse("-- carelens: epsilon\nSELECT 1").is_err());
        assert!(parse("SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS(epsilon 1) 1").is_err());
        let same = parse(
            "-- carelens: epsilon=0.5\nSELECT WITH DIFFERENTIAL_PRIVACY OPTIONS(epsilon=0.5) 1",
        );
        assert_eq!(same.unwrap().options.epsilon, Some(0.5));
    }

    #[test]
    fn the_chart_directive_is_for_the_report_and_only_in_the_header() {
        let d = parse("-- carelens: epsilon=0.5, chart=rate\nSELECT 1").unwrap();
        assert_eq!(d.options.epsilon, Some(0.5));
        assert_eq!(
            d.options,
            parse("-- carelens: epsilon=0.5\nSELECT 1").unwrap().options
        );
        let clause = parse("SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS(chart=1) 1").unwrap_err();
        assert!(
            clause.what.contains("unknown DP option `chart`"),
            "{}",
            clause.what
        );
    }
}
