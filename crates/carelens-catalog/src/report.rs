//! What `carelens catalog` shows: each table, its size, its columns and their privacy
//! metadata, and warnings — the page a newcomer reads to learn what they may query.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use crate::error::Problem;
use crate::model::{ColumnType, PublicDomain, TableKind};

/// The result of [`crate::LoadedCatalog::check_files`]: the catalog as checked against its
/// Parquet files.
///
/// Its [`Display`](fmt::Display) is a plain-text summary that depends only on the catalog
/// and the files' schemas and row counts (no absolute paths), so it is stable across
/// machines.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogReport {
    /// The dataset's name.
    pub dataset: String,
    /// The dataset's description.
    pub description: Option<String>,
    /// The column that identifies a person.
    pub person_column: String,
    /// Every table, in catalog order.
    pub tables: Vec<TableReport>,
}

/// One table as checked against its files.
#[derive(Debug, Clone, PartialEq)]
pub struct TableReport {
    /// The name queries use.
    pub name: String,
    /// Person, events or public.
    pub kind: TableKind,
    /// The `path` as written in the catalog.
    pub path: String,
    /// Whether `path` is a folder of Parquet files.
    pub is_folder: bool,
    /// The Parquet files read (absolute paths).
    pub files: Vec<PathBuf>,
    /// Rows in all the files together.
    pub rows: u64,
    /// The table's description.
    pub description: Option<String>,
    /// Default L0 (`max_groups`), if declared.
    pub max_groups: Option<u32>,
    /// Default L∞ (`max_rows_per_group`), if declared.
    pub max_rows_per_group: Option<u32>,
    /// A public table's `unique_key`, checked: no value in two rows.
    pub unique_key: Option<String>,
    /// The declared columns, in catalog order.
    pub columns: Vec<ColumnReport>,
    /// Things that are allowed but worth knowing, such as columns in the files that the
    /// catalog does not declare.
    pub warnings: Vec<Problem>,
}

/// One declared column with its privacy metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnReport {
    /// The column's name.
    pub name: String,
    /// Its declared type (which the files agree with).
    pub data_type: ColumnType,
    /// Whether it may hold nulls.
    pub nullable: bool,
    /// Whether it is the person column.
    pub is_person: bool,
    /// `[lo, hi]` clamp for sums and averages.
    pub bounds: Option<[f64; 2]>,
    /// Fixed-point step for sums.
    pub precision: Option<f64>,
    /// Its public domain, if it has one.
    pub domain: Option<PublicDomain>,
    /// The column's description.
    pub description: Option<String>,
}

impl ColumnReport {
    /// The column's privacy metadata in words, e.g. `bounds [0, 5000], precision 0.01`;
    /// empty when it has none.
    pub fn privacy(&self) -> String {
        if self.is_person {
            return "person column: count or join people with it; never output".to_owned();
        }
        let mut parts = Vec::new();
        if let Some([lo, hi]) = self.bounds {
            parts.push(format!("bounds [{lo}, {hi}]"));
        }
        if let Some(precision) = self.precision {
            parts.push(format!("precision {precision}"));
        }
        if let Some(domain) = &self.domain {
            parts.push(domain.to_string());
        }
        parts.join(", ")
    }
}

impl CatalogReport {
    /// Every warning of every table, in catalog order.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.tables.iter().flat_map(|t| &t.warnings)
    }
}

impl TableReport {
    /// What the kind means for someone writing queries, including the contribution bounds
    /// of an events table.
    pub fn kind_note(&self) -> String {
        match self.kind {
            TableKind::Person => "one row per person; its columns describe the person".to_owned(),
            TableKind::Public => match &self.unique_key {
                Some(key) => format!(
                    "public reference data with no people in it; read and join it freely; \
                     `{key}` is unique (checked), so a join on it from a person's column keeps \
                     this table's columns constant per person"
                ),
                None => {
                    "public reference data with no people in it; read and join it freely".to_owned()
                }
            },
            TableKind::Events => {
                let groups = match self.max_groups {
                    Some(1) => "1 group".to_owned(),
                    Some(n) => format!("{n} groups"),
                    None => "the query's number of groups".to_owned(),
                };
                let rows = match self.max_rows_per_group {
                    Some(1) => "1 row per group".to_owned(),
                    Some(n) => format!("{n} rows per group"),
                    None => "the query's number of rows per group".to_owned(),
                };
                format!(
                    "many rows per person; each person counts in at most {groups} (L0), with at most {rows} (L∞)"
                )
            }
        }
    }
}

/// Free text on one line: runs of white space, newlines included, become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A count with thousands separators (`1,234,567`), as every carelens report shows counts.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for TableReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = format!(
            "{} row{}",
            thousands(self.rows),
            if self.rows == 1 { "" } else { "s" }
        );
        let location = if self.is_folder {
            let n = self.files.len();
            format!(
                "{}/ ({n} file{})",
                self.path.trim_end_matches('/'),
                if n == 1 { "" } else { "s" }
            )
        } else {
            self.path.clone()
        };
        writeln!(
            f,
            "table {}: {}, {rows}, {location}",
            self.name,
            self.kind.as_str()
        )?;
        if let Some(description) = &self.description {
            writeln!(f, "  {}", one_line(description))?;
        }
        writeln!(f, "  {}", self.kind_note())?;

        let name_width = self
            .columns
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0);
        let type_width = self
            .columns
            .iter()
            .map(|c| c.data_type.as_str().len())
            .max()
            .unwrap_or(0);
        let nullable_width = if self.columns.iter().any(|c| c.nullable) {
            "nullable".len()
        } else {
            0
        };
        for column in &self.columns {
            let mut line = format!(
                "  {:name_width$}  {:type_width$}",
                column.name,
                column.data_type.as_str()
            );
            if nullable_width > 0 {
                let nullable = if column.nullable { "nullable" } else { "" };
                let _ = write!(line, "  {nullable:nullable_width$}");
            }
            let mut privacy = column.privacy();
            if self.kind.is_private()
                && column.data_type.is_numeric()
                && column.bounds.is_none()
                && column.domain.is_none()
                && !column.is_person
            {
                if !privacy.is_empty() {
                    privacy.push_str(", ");
                }
                privacy.push_str("no bounds: clamp it in SQL to sum or average it");
            }
            if !privacy.is_empty() {
                let _ = write!(line, "  {privacy}");
            }
            if let Some(description) = &column.description {
                let _ = write!(line, "  -- {}", one_line(description));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        for warning in &self.warnings {
            writeln!(f, "  warning: {}: {}", warning.location, warning.message)?;
            writeln!(f, "    hint: {}", warning.hint)?;
        }
        Ok(())
    }
}

/// ```text
/// dataset tiny
/// person column person_id
///
/// table person: person, 3 rows, person.parquet
///   one row per person; its columns describe the person
///   person_id  Int64  person column: count or join people with it; never output
///   sex        Utf8   domain 4 values: "F", "M", "I", "U"
/// ```
impl fmt::Display for CatalogReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset {}", self.dataset)?;
        if let Some(description) = &self.description {
            writeln!(f, "  {}", one_line(description))?;
        }
        writeln!(f, "person column {}", self.person_column)?;
        for table in &self.tables {
            writeln!(f)?;
            write!(f, "{table}")?;
        }
        let warnings = self.warnings().count();
        if warnings > 0 {
            writeln!(f)?;
            writeln!(
                f,
                "{warnings} warning{}",
                if warnings == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load;
    use crate::test_support::{VALID, person_columns, strs, write_fixture_with, write_parquet};

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(2_600_000), "2,600,000");
    }

    #[test]
    fn display_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID
            .replace(", nullable = true, bounds = [0, 365] }", ", nullable = true }")
            .replace(
                "max_groups = 3\n",
                "max_groups = 3\ndescription = \"\"\"\nActivity across settings:\n  GP and A&E.\"\"\"\n",
            );
        let path = write_fixture_with(dir.path(), &text);
        let mut columns = person_columns(3);
        columns.push(("nhs_region", strs(&[Some("SW"), Some("SW"), Some("SE")])));
        write_parquet(&dir.path().join("person.parquet"), columns);
        let report = load(&path).unwrap().check_files().unwrap();

        let expected = r#"dataset tiny
  A tiny extract for tests.
person column person_id

table person: person, 3 rows, person.parquet
  one row per person; its columns describe the person
  person_id        Int64            person column: count or join people with it; never output
  sex              Utf8             domain 4 values: "F", "M", "I", "U"
  imd_decile       Int32            domain 1..=10
  pcn_code         Utf8             domain from practice_lookup.pcn_code
  ethnicity_group  Utf8   nullable  -- self-reported
  warning: tables.person: the column `nhs_region` (Utf8) is in the files but not in the catalog, so queries cannot use it
    hint: declare it under the table's `columns` to make it queryable, or leave it out to keep it hidden

table encounter: events, 5 rows, encounter/ (2 files)
  Activity across settings: GP and A&E.
  many rows per person; each person counts in at most 3 groups (L0), with at most 10 rows per group (L∞)
  person_id   Int64              person column: count or join people with it; never output
  setting     Utf8               domain 2 values: "GP", "AE"
  start_date  Date32
  los_days    Int32    nullable  no bounds: clamp it in SQL to sum or average it
  cost_gbp    Float64            bounds [0, 5000], precision 0.01
  care_home   Boolean            domain 2 values: true, false

table practice_lookup: public, 2 rows, practice_lookup.parquet
  public reference data with no people in it; read and join it freely
  practice_code  Utf8
  pcn_code       Utf8

1 warning
"#;
        assert_eq!(report.to_string(), expected);
    }

    #[test]
    fn events_table_without_contribution_bounds_says_per_query() {
        let report = TableReport {
            name: "medication".into(),
            kind: TableKind::Events,
            path: "medication".into(),
            is_folder: true,
            files: vec![PathBuf::from("/x/medication/a.parquet")],
            rows: 1_234_567,
            description: None,
            max_groups: None,
            unique_key: None,
            max_rows_per_group: Some(1),
            columns: vec![],
            warnings: vec![],
        };
        assert_eq!(
            report.to_string(),
            "table medication: events, 1,234,567 rows, medication/ (1 file)\n  many rows per person; \
             each person counts in at most the query's number of groups (L0), with at most 1 row \
             per group (L∞)\n"
        );
    }

    #[test]
    fn long_domains_are_abbreviated() {
        let domain = PublicDomain::Values((1..=20).map(crate::model::Literal::Int).collect());
        assert_eq!(
            domain.to_string(),
            "domain 20 values: 1, 2, 3, 4, 5, 6, 7, 8, ... (12 more)"
        );
        let one = PublicDomain::Values(vec![crate::model::Literal::Str("x".into())]);
        assert_eq!(one.to_string(), "domain 1 value: \"x\"");
    }
}
