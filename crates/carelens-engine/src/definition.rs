//! A query's definition as a token sequence, for spotting near-duplicate cohort requests
//! (compared by `carelens_privacy::near_duplicate`): comments and whitespace are dropped
//! (the DP directives are comments), keywords and identifiers are compared without case,
//! and literals are marked so a difference can be recognised as one constant.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use carelens_privacy::DefinitionToken;

use crate::QueryError;

/// The tokens of `sql`, comments and whitespace left out.
pub fn definition_tokens(sql: &str) -> Result<Vec<DefinitionToken>, QueryError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| QueryError::Plan(datafusion::error::DataFusionError::Plan(e.to_string())))?;
    Ok(tokens
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
        .collect())
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
        // A quoted string keeps its case; it is a different code.
        let c = definition_tokens("SELECT 1 FROM person WHERE sex = 'f'").unwrap();
        assert!(c.iter().any(|t| t.text == "'f'" && t.literal));
    }
}
