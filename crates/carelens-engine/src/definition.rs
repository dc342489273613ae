//! A query's definition as a token sequence, for spotting near-duplicate cohort requests
//! (compared by `carelens_privacy::near_duplicate`): comments and whitespace are dropped
//! (the DP directives are comments), keywords and identifiers are compared without case,
//! `AS name` aliases are dropped, and literals are marked so a difference can be
//! recognised as one constant.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use carelens_privacy::DefinitionToken;

use crate::QueryError;

/// The tokens of `sql`, comments and whitespace left out.
pub fn definition_tokens(sql: &str) -> Result<Vec<DefinitionToken>, QueryError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| QueryError::Plan(datafusion::error::DataFusionError::Plan(e.to_string())))?;
    let tokens: Vec<DefinitionToken> = tokens
        .into_iter()
        .filter_map(|t| {
            let (text, literal) = match &t {
                Token::Whitespace(_) | Token::EOF => return None,
                Token::Word(w) if w.quote_style.is_none() => (w.value.to_lowercase(), false),
                Token::Number(n, _) => (n.clone(), true),
                Token::SingleQuotedString(s)
                | Token::DoubleQuotedString(s)
                | Token::NationalStringLiteral(s)
                | Token::EscapedStringLiteral(s)
                | Token::HexStringLiteral(s) => (format!("'{s}'"), true),
                other => (other.to_string(), false),
            };
            Some(DefinitionToken { text, literal })
        })
        .collect();
    // Output and table aliases (`AS n`) name things; renaming one changes no cohort.
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let alias = tokens[i].text == "as"
            && tokens.get(i + 1).is_some_and(|t| {
                !t.literal && t.text.chars().all(|c| c.is_alphanumeric() || c == '_')
            });
        if alias {
            i += 2;
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_case_and_spacing_do_not_matter_literals_are_marked() {
        let a = definition_tokens(
            "-- carelens: epsilon=0.5\nSELECT COUNT(DISTINCT person_id) AS n\nFROM person WHERE year_of_birth > 1950 AND sex = 'F'",
        )
        .unwrap();
        let b = definition_tokens(
            "select count(distinct PERSON_ID) as n from person /* x */ where year_of_birth>1950 and sex='F'",
        )
        .unwrap();
        assert_eq!(a, b);
        let literals: Vec<&str> = a
            .iter()
            .filter(|t| t.literal)
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(literals, ["1950", "'F'"]);
        // Renaming an alias changes nothing; `AS (` of a CTE is kept.
        let renamed = definition_tokens(
            "WITH c AS (SELECT 1) SELECT COUNT(DISTINCT person_id) AS people FROM person p \
             WHERE year_of_birth > 1950 AND sex = 'F'",
        )
        .unwrap();
        let original = definition_tokens(
            "WITH c AS (SELECT 1) SELECT COUNT(DISTINCT person_id) AS n FROM person p \
             WHERE year_of_birth > 1950 AND sex = 'F'",
        )
        .unwrap();
        assert_eq!(renamed, original);
        assert!(
            original
                .windows(2)
                .any(|w| w[0].text == "as" && w[1].text == "(")
        );
        // A quoted string keeps its case; it is a different code.
        let c = definition_tokens("SELECT 1 FROM person WHERE sex = 'f'").unwrap();
        assert!(c.iter().any(|t| t.text == "'f'" && t.literal));
    }
}
