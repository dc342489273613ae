//! The catalog file's data model: what `carelens.toml` may say, exactly as it is written.
//!
//! Deserialising checks only the shape (known keys, types of values). Everything that needs
//! more than one value at a time, or the Parquet files, is checked by validation.

use serde::{Deserialize, Serialize};

use crate::governance::{LedgerSection, Policy, User};

/// A whole catalog: the dataset, its tables and their privacy metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// What the extract is and which column identifies a person.
    pub dataset: Dataset,
    /// The privacy policy: per-query ε and δ, noise, disclosure rules, dataset budget.
    #[serde(default)]
    pub policy: Policy,
    /// Where the budget ledger and audit log are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerSection>,
    /// The people who may query the extract, their roles and budgets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
    /// The tables of the extract, in the order they are listed.
    pub tables: Vec<Table>,
}

/// The dataset as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// A human-readable name, shown in outputs and the audit log.
    pub name: String,
    /// The column that identifies the privacy unit (the person) in every private table.
    pub person_column: String,
    /// Free text: where the extract came from, what it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// How a table relates to the privacy unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// One row per person. Its columns are person-constant.
    Person,
    /// Many rows per person (diagnoses, encounters, prescriptions, measurements).
    Events,
    /// Reference data with no person in it (lookups); may be read freely.
    Public,
}

impl TableKind {
    /// Whether rows of this table belong to people, so that queries over it must be
    /// protected.
    pub fn is_private(self) -> bool {
        !matches!(self, TableKind::Public)
    }

    /// The spelling used in the catalog file.
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Person => "person",
            TableKind::Events => "events",
            TableKind::Public => "public",
        }
    }
}

/// One table of the extract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// The name queries use for it.
    pub name: String,
    /// Whether it is a person table, an events table or public reference data.
    pub kind: TableKind,
    /// A Parquet file, or a folder of Parquet files, relative to the catalog's folder.
    pub path: String,
    /// Free text shown by `carelens catalog`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default L0: how many groups of a released aggregation one person may contribute to
    /// through this table (events tables only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_groups: Option<u32>,
    /// Default L∞: how many of one person's rows count in one group (events tables only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_group: Option<u32>,
    /// Public tables only: a column whose non-NULL values are unique in the file (a lookup's
    /// code). Checked against the file whenever the engine opens the extract; a join that
    /// matches it on a person-constant column keeps the table's columns constant per
    /// person (docs/engine.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// The columns queries may use, in file order.
    pub columns: Vec<Column>,
}

/// One column of a table, with its privacy metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The column's name in the Parquet file and in queries.
    pub name: String,
    /// The declared logical type; the Parquet file must agree.
    #[serde(rename = "type")]
    pub data_type: ColumnType,
    /// Whether the column may hold nulls.
    #[serde(default, skip_serializing_if = "is_false")]
    pub nullable: bool,
    /// Free text shown by `carelens catalog`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `[lo, hi]`: the clamp applied to each value before it is summed or averaged. A
    /// declaration about the analysis, not a constraint on the data: values outside are
    /// clamped, never rejected (checking them against the data would leak it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<[f64; 2]>,
    /// Fixed-point step for sums, e.g. `0.01` for pounds and pence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// The public set of values this column can take, e.g. `["F", "M", "I", "U"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Vec<Literal>>,
    /// `"table.column"`: take the public domain from a column of a public table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_from: Option<String>,
    /// `[lo, hi]`: every integer from `lo` to `hi` inclusive is a public value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_range: Option<[i64; 2]>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A literal value in a public domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
}

impl std::fmt::Display for Literal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// The logical column types a catalog can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// UTF-8 string (stored as Utf8, LargeUtf8 or Utf8View).
    Utf8,
    /// Boolean.
    Boolean,
    /// Calendar date, days since 1970-01-01.
    Date32,
}

impl ColumnType {
    /// Every type a catalog can declare, in the order the docs list them.
    pub const ALL: [ColumnType; 6] = [
        ColumnType::Int32,
        ColumnType::Int64,
        ColumnType::Float64,
        ColumnType::Utf8,
        ColumnType::Boolean,
        ColumnType::Date32,
    ];

    /// The catalog type that [`matches`](Self::matches) an Arrow type, if there is one.
    pub fn from_arrow(arrow: &arrow::datatypes::DataType) -> Option<ColumnType> {
        Self::ALL.into_iter().find(|t| t.matches(arrow))
    }

    /// The spelling used in the catalog file.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Int32 => "Int32",
            ColumnType::Int64 => "Int64",
            ColumnType::Float64 => "Float64",
            ColumnType::Utf8 => "Utf8",
            ColumnType::Boolean => "Boolean",
            ColumnType::Date32 => "Date32",
        }
    }

    /// Whether values are numbers that can be bounded and summed.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ColumnType::Int32 | ColumnType::Int64 | ColumnType::Float64
        )
    }

    /// Whether an Arrow type read from a Parquet file stores this logical type.
    pub fn matches(self, arrow: &arrow::datatypes::DataType) -> bool {
        use arrow::datatypes::DataType as A;
        match self {
            ColumnType::Int32 => matches!(arrow, A::Int32),
            ColumnType::Int64 => matches!(arrow, A::Int64),
            ColumnType::Float64 => matches!(arrow, A::Float64),
            ColumnType::Utf8 => matches!(arrow, A::Utf8 | A::LargeUtf8 | A::Utf8View),
            ColumnType::Boolean => matches!(arrow, A::Boolean),
            ColumnType::Date32 => matches!(arrow, A::Date32),
        }
    }

    /// The Arrow type a writer of this column should use.
    pub fn arrow_type(self) -> arrow::datatypes::DataType {
        use arrow::datatypes::DataType as A;
        match self {
            ColumnType::Int32 => A::Int32,
            ColumnType::Int64 => A::Int64,
            ColumnType::Float64 => A::Float64,
            ColumnType::Utf8 => A::Utf8,
            ColumnType::Boolean => A::Boolean,
            ColumnType::Date32 => A::Date32,
        }
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Catalog {
    /// The table with this name, if the catalog lists it.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Writes the catalog as TOML, with a comment header.
    pub fn to_toml(&self, header: &str) -> Result<String, toml::ser::Error> {
        let body = toml::to_string(self)?;
        let mut out = String::with_capacity(header.len() + body.len() + 1);
        for line in header.lines() {
            out.push('#');
            if !line.is_empty() {
                out.push(' ');
                out.push_str(line);
            }
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&body);
        Ok(out)
    }
}

impl Table {
    /// The column with this name, if the table declares it.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl Column {
    /// The column's public domain, if it declares one.
    ///
    /// A validated catalog declares at most one of `domain`, `domain_from` and
    /// `domain_range`; if an unvalidated one declares several, the first in that order wins.
    /// A `domain_from` without a `.` gives `None` (validation reports it).
    pub fn public_domain(&self) -> Option<PublicDomain> {
        if let Some(values) = &self.domain {
            return Some(PublicDomain::Values(values.clone()));
        }
        if let Some(from) = &self.domain_from {
            let (table, column) = from.split_once('.')?;
            return Some(PublicDomain::From {
                table: table.to_owned(),
                column: column.to_owned(),
            });
        }
        self.domain_range
            .map(|[lo, hi]| PublicDomain::Range { lo, hi })
    }

    /// A column with a name and type and no privacy metadata.
    pub fn new(name: impl Into<String>, data_type: ColumnType) -> Self {
        Column {
            name: name.into(),
            data_type,
            nullable: false,
            description: None,
            bounds: None,
            precision: None,
            domain: None,
            domain_from: None,
            domain_range: None,
        }
    }
}

/// Where a column's public values come from: the one form of `domain`, `domain_from` or
/// `domain_range` a column declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicDomain {
    /// `domain = [...]`: these values, in the order listed.
    Values(Vec<Literal>),
    /// `domain_from = "table.column"`: the values of a column of a public table.
    From {
        /// The public table.
        table: String,
        /// Its column.
        column: String,
    },
    /// `domain_range = [lo, hi]`: every integer from `lo` to `hi` inclusive.
    Range {
        /// The smallest value.
        lo: i64,
        /// The largest value.
        hi: i64,
    },
}

impl PublicDomain {
    /// How many values a `domain` list shows before it is abbreviated in [`Display`].
    ///
    /// [`Display`]: std::fmt::Display
    pub const SHOWN_VALUES: usize = 8;
}

/// `domain 4 values: "F", "M", "I", "U"`, `domain from practice_lookup.pcn_code`,
/// `domain 1..=10`. Lists longer than [`PublicDomain::SHOWN_VALUES`] are abbreviated.
impl std::fmt::Display for PublicDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicDomain::Values(values) => {
                let n = values.len();
                write!(f, "domain {n} value{}", if n == 1 { "" } else { "s" })?;
                for (i, value) in values.iter().take(Self::SHOWN_VALUES).enumerate() {
                    f.write_str(if i == 0 { ": " } else { ", " })?;
                    write!(f, "{value}")?;
                }
                if n > Self::SHOWN_VALUES {
                    write!(f, ", ... ({} more)", n - Self::SHOWN_VALUES)?;
                }
                Ok(())
            }
            PublicDomain::From { table, column } => write!(f, "domain from {table}.{column}"),
            PublicDomain::Range { lo, hi } => write!(f, "domain {lo}..={hi}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::valid_catalog;

    #[test]
    fn integer_bounds_in_toml_read_as_floats() {
        let catalog = valid_catalog();
        let encounter = catalog.table("encounter").unwrap();
        assert_eq!(
            encounter.column("los_days").unwrap().bounds,
            Some([0.0, 365.0])
        );
    }

    #[test]
    fn to_toml_round_trips_with_a_comment_header() {
        let catalog = valid_catalog();
        let text = catalog.to_toml("written by a test\n\nsecond line").unwrap();
        assert!(
            text.starts_with("# written by a test\n#\n# second line\n\n[dataset]\n"),
            "{text}"
        );
        let again: Catalog = toml::from_str(&text).unwrap();
        assert_eq!(again, catalog);
    }

    #[test]
    fn public_domain_of_each_form() {
        let catalog = valid_catalog();
        let person = catalog.table("person").unwrap();
        let domain = |name: &str| person.column(name).unwrap().public_domain();
        assert_eq!(
            domain("sex"),
            Some(PublicDomain::Values(
                ["F", "M", "I", "U"]
                    .map(|s| Literal::Str(s.into()))
                    .to_vec()
            ))
        );
        assert_eq!(
            domain("imd_decile"),
            Some(PublicDomain::Range { lo: 1, hi: 10 })
        );
        assert_eq!(
            domain("pcn_code"),
            Some(PublicDomain::From {
                table: "practice_lookup".into(),
                column: "pcn_code".into()
            })
        );
        assert_eq!(domain("ethnicity_group"), None);
        let mut malformed = Column::new("x", ColumnType::Utf8);
        malformed.domain_from = Some("no_dot".into());
        assert_eq!(malformed.public_domain(), None);
    }

    #[test]
    fn column_type_from_arrow() {
        use arrow::datatypes::DataType as A;
        assert_eq!(ColumnType::from_arrow(&A::Utf8View), Some(ColumnType::Utf8));
        assert_eq!(
            ColumnType::from_arrow(&A::LargeUtf8),
            Some(ColumnType::Utf8)
        );
        assert_eq!(ColumnType::from_arrow(&A::Date32), Some(ColumnType::Date32));
        assert_eq!(ColumnType::from_arrow(&A::UInt8), None);
        for t in ColumnType::ALL {
            assert_eq!(ColumnType::from_arrow(&t.arrow_type()), Some(t));
        }
    }
}
