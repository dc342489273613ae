//! Spotting differencing: two released counts whose definitions differ only in a
//! constant (`HbA1c > 58` then `> 57`, an age bound, a date) or by one code in a list.
//! Subtracting them reveals the few people in between, however each was protected on its
//! own — noise composes, but a pair like this is worth an approver's second look.
//!
//! Definitions are compared as token sequences (the engine makes them from the SQL,
//! comments and whitespace left out, literals marked). This is a screen, not a proof: a
//! predicate rewritten another way (`BETWEEN 41 AND 70` for `>= 41 AND <= 70`) is not
//! recognised; the budget's composition is what bounds the leak in every case.

use serde::{Deserialize, Serialize};

/// One token of a query's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionToken {
    /// Its text: lower case for keywords and unquoted identifiers, as written otherwise.
    pub text: String,
    /// Whether it is a literal (a number or a quoted string).
    pub literal: bool,
}

/// How a definition differs from an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// One constant changed.
    Constant {
        /// The earlier value.
        before: String,
        /// The new value.
        after: String,
    },
    /// One comparison operator changed (`>` to `>=`: exactly the people on the bound).
    Operator {
        /// The earlier operator.
        before: String,
        /// The new one.
        after: String,
    },
    /// The same definition again (with other DP parameters or on other data it would be
    /// answered with fresh noise, which averages away).
    Repeat,
    /// One item was added to or removed from a list.
    ListItem {
        /// The item.
        item: String,
        /// Added (else removed).
        added: bool,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Constant { before, after } => {
                write!(f, "one constant ({before} became {after})")
            }
            Difference::Operator { before, after } => {
                write!(f, "one comparison ({before} became {after})")
            }
            Difference::Repeat => write!(f, "nothing: it is the same definition again"),
            Difference::ListItem { item, added: true } => {
                write!(f, "one list item ({item} added)")
            }
            Difference::ListItem { item, added: false } => {
                write!(f, "one list item ({item} removed)")
            }
        }
    }
}

/// How `new` differs from `earlier`, if only in one constant, one comparison operator or
/// one list item — or not at all.
pub fn near_duplicate(earlier: &[DefinitionToken], new: &[DefinitionToken]) -> Option<Difference> {
    const COMPARISONS: [&str; 6] = ["<", "<=", ">", ">=", "=", "<>"];
    if earlier.len() == new.len() {
        let mut differing = earlier.iter().zip(new).filter(|(a, b)| a != b);
        let Some((a, b)) = differing.next() else {
            return Some(Difference::Repeat);
        };
        if differing.next().is_some() {
            return None;
        }
        if a.literal && b.literal {
            return Some(Difference::Constant {
                before: a.text.clone(),
                after: b.text.clone(),
            });
        }
        let comparison = |t: &DefinitionToken| !t.literal && COMPARISONS.contains(&t.text.as_str());
        return (comparison(a) && comparison(b)).then(|| Difference::Operator {
            before: a.text.clone(),
            after: b.text.clone(),
        });
    }
    let (short, long, added) = if earlier.len() + 2 == new.len() {
        (earlier, new, true)
    } else if new.len() + 2 == earlier.len() {
        (new, earlier, false)
    } else {
        return None;
    };
    let first = short
        .iter()
        .zip(long)
        .position(|(a, b)| a != b)
        .unwrap_or(short.len());
    // The extra item is `literal ,` at the first difference, or `, literal` just before it.
    let is_comma = |t: &DefinitionToken| !t.literal && t.text == ",";
    for start in [first, first.saturating_sub(1)] {
        let Some(pair) = long.get(start..start + 2) else {
            continue;
        };
        let item = match (pair[0].literal, pair[1].literal) {
            (true, false) if is_comma(&pair[1]) => &pair[0],
            (false, true) if is_comma(&pair[0]) => &pair[1],
            _ => continue,
        };
        if long[..start] == short[..start] && long[start + 2..] == short[start..] {
            return Some(Difference::ListItem {
                item: item.text.clone(),
                added,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens of a whitespace-separated definition; quoted or numeric words are literals.
    fn tokens(s: &str) -> Vec<DefinitionToken> {
        s.split_whitespace()
            .map(|w| DefinitionToken {
                text: w.to_owned(),
                literal: w.starts_with('\'') || w.chars().all(|c| c.is_ascii_digit() || c == '.'),
            })
            .collect()
    }

    #[test]
    fn one_changed_constant_is_a_near_duplicate() {
        let a = tokens("select count ( * ) from t where hba1c > 58 and age between 40 and 70");
        let b = tokens("select count ( * ) from t where hba1c > 57 and age between 40 and 70");
        assert_eq!(
            near_duplicate(&a, &b),
            Some(Difference::Constant {
                before: "58".into(),
                after: "57".into()
            })
        );
        let dated = tokens("where d > date '2025-03-31'");
        let moved = tokens("where d > date '2025-03-30'");
        assert!(matches!(
            near_duplicate(&dated, &moved),
            Some(Difference::Constant { .. })
        ));
    }

    #[test]
    fn one_list_item_more_or_less_is_a_near_duplicate() {
        let a = tokens("where code in ( 'A' , 'B' , 'C' )");
        let b = tokens("where code in ( 'A' , 'B' )");
        let c = tokens("where code in ( 'B' , 'C' )");
        let removed = |item: &str| {
            Some(Difference::ListItem {
                item: item.into(),
                added: false,
            })
        };
        assert_eq!(near_duplicate(&a, &b), removed("'C'"));
        assert_eq!(near_duplicate(&a, &c), removed("'A'"));
        assert_eq!(
            near_duplicate(&b, &a),
            Some(Difference::ListItem {
                item: "'C'".into(),
                added: true
            })
        );
    }

    #[test]
    fn a_flipped_comparison_or_a_repeat_is_a_near_duplicate() {
        let a = tokens("where hba1c > 58");
        let b = tokens("where hba1c >= 58");
        assert_eq!(
            near_duplicate(&a, &b),
            Some(Difference::Operator {
                before: ">".into(),
                after: ">=".into()
            })
        );
        assert_eq!(near_duplicate(&a, &a), Some(Difference::Repeat));
        // A changed keyword is not a comparison.
        assert_eq!(
            near_duplicate(&tokens("where a and b"), &tokens("where a or b")),
            None
        );
    }

    #[test]
    fn other_changes_are_not() {
        let a = tokens("select count ( * ) from t where hba1c > 58 and age > 40");
        // Two constants changed.
        let b = tokens("select count ( * ) from t where hba1c > 57 and age > 41");
        assert_eq!(near_duplicate(&a, &b), None);
        // A column changed, not a constant.
        let c = tokens("select count ( * ) from t where hba1c > 58 and bmi > 40");
        assert_eq!(near_duplicate(&a, &c), None);
        // An unrelated cohort.
        let d = tokens("select count ( * ) from af left join ac on x = y where ac.x is null");
        assert_eq!(near_duplicate(&a, &d), None);
        // Two tokens more, but not a list item.
        let e = tokens("select count ( * ) from t where hba1c > 58 and age > 40 and x");
        assert_eq!(near_duplicate(&a, &e), None);
    }
}
