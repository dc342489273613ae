//! Limits on a query's size, checked on its text before anything parses or plans it.
//!
//! Parsing, planning and the analysis walk the query's syntax tree recursively, and
//! DataFusion's planning time grows faster than linearly in the number of operators: 1 MB
//! of `OR`s overflowed the stack and took a whole batch down, and 5,000 `OR`s planned for
//! half a minute. The limits below are far above what an analyst writes (a code list
//! belongs in `IN (...)`, whose items are not operators, or in a reference table) and
//! bound the tree's depth: every level of it needs an operator, a bracket or a `CASE`.
//! The command line and the server also run queries on threads with large stacks
//! (`STACK_BYTES`), so a query within the limits plans with room to spare.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::rejection::{Rejection, RejectionKind};

/// The most bytes of SQL in one query.
pub const MAX_SQL_BYTES: usize = 100_000;
/// The most tokens (words, literals, symbols) in one query.
pub const MAX_TOKENS: usize = 20_000;
/// The most operators (`AND`, `OR`, `NOT`, comparisons, arithmetic, `IS`, `IN`, `LIKE`,
/// `BETWEEN`, casts with `::`) in one query.
pub const MAX_OPERATORS: usize = 500;
/// The deepest nesting of brackets and `CASE … END`.
pub const MAX_NESTING: usize = 32;
/// The stack a thread that plans or runs queries should have.
pub const STACK_BYTES: usize = 64 * 1024 * 1024;

/// Refuses a query over the limits, saying which and what to do.
pub(crate) fn check(sql: &str) -> Result<(), Rejection> {
    let too_big =
        |what: String, hint: &str| Err(Rejection::new(RejectionKind::TooLarge, what, hint));
    if sql.len() > MAX_SQL_BYTES {
        return too_big(
            format!(
                "the query is {} bytes long; at most {MAX_SQL_BYTES} are planned",
                sql.len()
            ),
            "put long code lists in a reference table declared in the catalog, or split the \
             query",
        );
    }
    // A text that does not tokenize is left to the parser, which says where.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let (mut count, mut operators, mut depth, mut deepest) = (0usize, 0usize, 0usize, 0usize);
    for token in &tokens {
        match token {
            Token::Whitespace(_) => continue,
            Token::LParen | Token::LBracket | Token::LBrace => depth += 1,
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            Token::Word(w) if w.quote_style.is_none() => match w.keyword {
                Keyword::CASE => depth += 1,
                Keyword::END => depth = depth.saturating_sub(1),
                Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::COLLATE => operators += 1,
                _ => {}
            },
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::StringConcat
            | Token::DoubleColon
            | Token::Caret
            | Token::Ampersand
            | Token::Pipe
            | Token::ShiftLeft
            | Token::ShiftRight
            | Token::Tilde
            | Token::ExclamationMark => operators += 1,
            _ => {}
        }
        count += 1;
        deepest = deepest.max(depth);
    }
    if count > MAX_TOKENS {
        return too_big(
            format!("the query has {count} tokens; at most {MAX_TOKENS} are planned"),
            "put long code lists in a reference table declared in the catalog, or split the \
             query",
        );
    }
    if operators > MAX_OPERATORS {
        return too_big(
            format!(
                "the query has {operators} operators (AND, OR, comparisons, arithmetic…); at \
                 most {MAX_OPERATORS} are planned"
            ),
            "write a list of values as `column IN ('a', 'b', …)` rather than a chain of \
             `OR`s, or keep the list in a reference table",
        );
    }
    if deepest > MAX_NESTING {
        return too_big(
            format!(
                "brackets or CASE expressions are nested {deepest} deep; at most {MAX_NESTING} \
                 levels are planned"
            ),
            "flatten the expression, or move steps into a WITH clause",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ors(n: usize) -> String {
        let list: Vec<String> = (0..n).map(|i| format!("code = 'C{i}'")).collect();
        format!(
            "SELECT COUNT(*) AS n FROM condition WHERE {}",
            list.join(" OR ")
        )
    }

    #[test]
    fn each_limit_is_allowed_at_its_value_and_refused_above() {
        // `code = 'Ci'` is one operator, each OR another: 2n - 1.
        assert!(check(&ors(MAX_OPERATORS / 2)).is_ok());
        let refused = check(&ors(MAX_OPERATORS / 2 + 1)).unwrap_err();
        assert_eq!(refused.kind, RejectionKind::TooLarge);
        assert!(refused.hint.contains("IN ("), "{}", refused.hint);

        let nested = |levels: usize| {
            format!(
                "SELECT COUNT(*) AS n FROM person WHERE {}1{} = 1",
                "(".repeat(levels),
                ")".repeat(levels)
            )
        };
        assert!(check(&nested(MAX_NESTING)).is_ok());
        assert!(check(&nested(MAX_NESTING + 1)).is_err());
        let cases = |levels: usize| {
            format!(
                "SELECT COUNT(*) AS n FROM person WHERE {} 1 {} = 1",
                "CASE WHEN sex = 'F' THEN ".repeat(levels),
                " END".repeat(levels)
            )
        };
        assert!(check(&cases(MAX_NESTING)).is_ok());
        assert!(check(&cases(MAX_NESTING + 1)).is_err());

        // A long IN list is not operators: thousands of codes pass.
        let codes: Vec<String> = (0..3_000).map(|i| format!("'C{i}'")).collect();
        let listed = format!(
            "SELECT COUNT(*) AS n FROM condition WHERE code IN ({})",
            codes.join(", ")
        );
        assert!(check(&listed).is_ok());

        let long = format!("SELECT 1 -- {}", "x".repeat(MAX_SQL_BYTES));
        assert!(check(&long).unwrap_err().what.contains("bytes long"));
        let tokens = format!("SELECT {}", vec!["1"; MAX_TOKENS].join(", "));
        assert!(check(&tokens).unwrap_err().what.contains("tokens"));
    }

    /// The megabyte of `OR`s that overflowed the stack is refused before parsing.
    #[test]
    fn a_megabyte_of_ors_is_refused_before_parsing() {
        let sql = ors(60_000);
        assert!(sql.len() > 1_000_000);
        let refused = check(&sql).unwrap_err();
        assert_eq!(refused.kind, RejectionKind::TooLarge);
    }
}
