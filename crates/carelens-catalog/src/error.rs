//! What can go wrong loading or checking a catalog, and what a problem report looks like.

use std::fmt;
use std::path::PathBuf;

/// Why a catalog could not be loaded or checked.
///
/// Every variant names the file it is about. Variants with a `#[source]` keep the underlying
/// error as their source rather than repeating its text, so print the whole chain (for
/// example anyhow's `{:#}`, or walk [`std::error::Error::source`]) to show the cause — for a
/// parse error that is where toml's line, column and caret snippet are.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file or folder could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The catalog file is not valid TOML, or has a key or value the format does not allow.
    #[error("cannot parse catalog {}{}", path.display(), position(*line, *column))]
    Parse {
        /// The catalog file.
        path: PathBuf,
        /// 1-based line of the error, when toml knows where it is.
        line: Option<usize>,
        /// 1-based column (in characters) of the error, when toml knows where it is.
        column: Option<usize>,
        /// toml's error, which shows the offending line (boxed: it is large).
        #[source]
        source: Box<toml::de::Error>,
    },

    /// The catalog parsed, but breaks one or more rules; every problem found is listed.
    #[error("{}", InvalidDisplay { path, problems })]
    Invalid {
        /// The catalog file.
        path: PathBuf,
        /// Every problem found, in catalog order.
        problems: Vec<Problem>,
    },

    /// A page of a Parquet file could not be read or decoded (`carelens catalog --deep`).
    #[error(
        "{} is damaged: a page of it cannot be read ({detail}); restore the file from the \
         extract's source before anyone queries it",
        path.display()
    )]
    Damaged {
        /// The Parquet file.
        path: PathBuf,
        /// What the reader said.
        detail: String,
    },
    /// The extract's files are not those `carelens catalog --deep` checked.
    #[error(
        "the extract's files changed since `carelens catalog --deep` checked them ({checked_at}): \
         nothing is run on them until it checks them again (the record: {})",
        path.display()
    )]
    ChangedSinceChecked {
        /// The check's record.
        path: PathBuf,
        /// When the check was made.
        checked_at: String,
    },
    /// The record of a deep check cannot be read.
    #[error(
        "the record of the last deep check, {}, cannot be read ({detail}): run \
         `carelens catalog --deep` again",
        path.display()
    )]
    BadCheckRecord {
        /// The record.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A Parquet file's footer (its schema and statistics) could not be read.
    #[error("cannot read Parquet metadata of {}", path.display())]
    Parquet {
        /// The Parquet file.
        path: PathBuf,
        /// What the Parquet reader said.
        #[source]
        source: parquet::errors::ParquetError,
    },
}

impl CatalogError {
    /// The problems of an [`CatalogError::Invalid`] catalog; empty for other errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            CatalogError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

struct InvalidDisplay<'a> {
    path: &'a PathBuf,
    problems: &'a [Problem],
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid catalog {} ({n} problem{})",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for problem in self.problems {
            write!(f, "\n  {}: {}", problem.location, problem.message)?;
            write!(f, "\n    hint: {}", problem.hint)?;
        }
        Ok(())
    }
}

/// One thing wrong with a catalog (or, in a report, one warning about it).
///
/// Messages may quote the catalog (names, declared values) and Parquet schemas (column
/// names and types), never values stored in the Parquet files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the catalog, by name: `dataset.person_column`, `tables.encounter`,
    /// `tables.encounter.columns.cost_gbp`.
    pub location: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl Problem {
    /// A problem at `location`.
    pub fn new(
        location: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Problem {
            location: location.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}\n  hint: {}",
            self.location, self.message, self.hint
        )
    }
}

/// Catalog locations by name, quoting names that are not plain identifiers the way TOML
/// quotes keys (`tables."my table"`).
pub(crate) mod location {
    use crate::validate::is_identifier;

    fn key(name: &str) -> String {
        if is_identifier(name) {
            name.to_owned()
        } else {
            format!("{name:?}")
        }
    }

    /// `tables.<table>`.
    pub(crate) fn table(table: &str) -> String {
        format!("tables.{}", key(table))
    }

    /// `tables.<table>.<field>`.
    pub(crate) fn table_field(table: &str, field: &str) -> String {
        format!("tables.{}.{field}", key(table))
    }

    /// `tables.<table>.columns.<column>`.
    pub(crate) fn column(table: &str, column: &str) -> String {
        format!("tables.{}.columns.{}", key(table), key(column))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_display_lists_every_problem() {
        let err = CatalogError::Invalid {
            path: PathBuf::from("sample-data/carelens.toml"),
            problems: vec![
                Problem::new(
                    "tables.encounter.columns.cost_gbp",
                    "bounds are reversed (lo 100 > hi 0)",
                    "write bounds as [lo, hi] with lo <= hi",
                ),
                Problem::new(
                    "tables.person.max_groups",
                    "`max_groups` is only for events tables",
                    "remove `max_groups`",
                ),
            ],
        };
        assert_eq!(
            err.to_string(),
            "invalid catalog sample-data/carelens.toml (2 problems)\n\
             \x20 tables.encounter.columns.cost_gbp: bounds are reversed (lo 100 > hi 0)\n\
             \x20   hint: write bounds as [lo, hi] with lo <= hi\n\
             \x20 tables.person.max_groups: `max_groups` is only for events tables\n\
             \x20   hint: remove `max_groups`"
        );
        assert_eq!(err.problems().len(), 2);
    }

    #[test]
    fn one_problem_is_singular() {
        let err = CatalogError::Invalid {
            path: PathBuf::from("c.toml"),
            problems: vec![Problem::new(
                "tables",
                "no table has `kind = \"person\"`",
                "add one",
            )],
        };
        assert_eq!(
            err.to_string(),
            "invalid catalog c.toml (1 problem)\n  tables: no table has `kind = \"person\"`\n    hint: add one"
        );
    }

    #[test]
    fn locations_quote_names_that_are_not_identifiers() {
        assert_eq!(
            location::column("encounter", "cost_gbp"),
            "tables.encounter.columns.cost_gbp"
        );
        assert_eq!(location::column("a b", ""), "tables.\"a b\".columns.\"\"");
        assert_eq!(
            location::table_field("person", "path"),
            "tables.person.path"
        );
    }
}
