//! Checking a loaded catalog against its Parquet files, from their footers: schemas, row
//! counts and column-chunk null counts. No data page of a private table is read, and no
//! value from one ever appears in a message. The one exception is public data: a public
//! table's `unique_key` column is read whole (lookups are small) to check that no value is
//! in two rows, and a repeated value is named.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;

use arrow::datatypes::{DataType, Schema};
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::{CatalogError, Problem, location};
use crate::load::{LoadedCatalog, TableFiles};
use crate::model::{ColumnType, Table, TableKind};
use crate::report::{CatalogReport, ColumnReport, TableReport};

/// What a file's footer says about nulls in one top-level column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nulls {
    /// The column is required in the Parquet schema, or every chunk's null count is 0.
    None,
    /// Some chunk's statistics count at least one null.
    Some,
    /// Some chunk has no null count, and none counts nulls.
    Unknown,
}

/// What one file's footer says.
struct FileFacts {
    /// The file relative to the catalog's folder, for messages.
    shown: String,
    schema: Schema,
    rows: u64,
    nulls: HashMap<String, Nulls>,
}

impl LoadedCatalog {
    /// Compares the catalog with its Parquet files, reading only their footers, and returns
    /// the report `carelens catalog` shows.
    ///
    /// Every declared column must be in the files with a type [`ColumnType::matches`]
    /// accepts; a column declared not nullable must not have nulls according to the
    /// column-chunk statistics; all files of a table must have the same columns and types;
    /// a public table's files must not have the person column. Columns in the files that
    /// the catalog does not declare are warnings (queries cannot use them), as are
    /// non-nullable columns whose files carry no null counts.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Io`] or [`CatalogError::Parquet`] for the first file that cannot be
    /// opened or whose footer cannot be read; otherwise [`CatalogError::Invalid`] with every
    /// problem found.
    pub fn check_files(&self) -> Result<CatalogReport, CatalogError> {
        let catalog = self.catalog();
        let person = catalog.dataset.person_column.as_str();
        let mut problems = Vec::new();
        let mut tables = Vec::with_capacity(catalog.tables.len());

        for (table, table_files) in self.tables() {
            let facts = table_files
                .files()
                .iter()
                .map(|file| read_facts(self.folder(), file))
                .collect::<Result<Vec<_>, _>>()?;
            let warnings = check_table(table, person, &facts, &mut problems);
            if let (TableKind::Public, Some(key)) = (table.kind, &table.unique_key)
                && facts.iter().all(|f| f.schema.field_with_name(key).is_ok())
                && let Some(problem) = repeated_key(table, key, table_files)?
            {
                problems.push(problem);
            }
            tables.push(table_report(table, table_files, &facts, person, warnings));
        }

        if !problems.is_empty() {
            return Err(CatalogError::Invalid {
                path: self.path().to_owned(),
                problems,
            });
        }
        Ok(CatalogReport {
            dataset: catalog.dataset.name.clone(),
            description: catalog.dataset.description.clone(),
            person_column: person.to_owned(),
            tables,
        })
    }
}

/// The record batches of the Parquet file at `path`, every column or only `column`, each
/// decoding failure reported as a damaged file.
fn batches(
    path: &Path,
    column: Option<&str>,
) -> Result<impl Iterator<Item = Result<arrow::array::RecordBatch, CatalogError>>, CatalogError> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let damaged = |detail: String| CatalogError::Damaged {
        path: path.to_owned(),
        detail,
    };
    let file = File::open(path).map_err(|source| CatalogError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| damaged(e.to_string()))?;
    if let Some(column) = column {
        let index = builder
            .schema()
            .index_of(column)
            .map_err(|e| damaged(e.to_string()))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(|e| damaged(e.to_string()))?;
    Ok(reader.map(move |batch| batch.map_err(|e| damaged(e.to_string()))))
}

/// A value of a public table's `unique_key` that is in two rows or more, as a problem (the
/// value is public data, so it is named).
fn repeated_key(
    table: &Table,
    key: &str,
    files: &TableFiles,
) -> Result<Option<Problem>, CatalogError> {
    use arrow::array::Array;
    use arrow::row::{RowConverter, SortField};
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for path in files.files() {
        let damaged = |detail: String| CatalogError::Damaged {
            path: path.clone(),
            detail,
        };
        let mut converter = None;
        for batch in batches(path, Some(key))? {
            let batch = batch?;
            let column = batch.column(0);
            let converter = match &mut converter {
                Some(c) => c,
                None => converter.insert(
                    RowConverter::new(vec![SortField::new(column.data_type().clone())])
                        .map_err(|e| damaged(e.to_string()))?,
                ),
            };
            let rows = converter
                .convert_columns(std::slice::from_ref(column))
                .map_err(|e| damaged(e.to_string()))?;
            for i in 0..batch.num_rows() {
                if column.is_null(i) {
                    continue;
                }
                let count = seen.entry(rows.row(i).as_ref().to_vec()).or_default();
                *count += 1;
                if *count == 2 {
                    let value = arrow::util::display::array_value_to_string(column, i)
                        .unwrap_or_else(|_| "?".into());
                    return Ok(Some(Problem::new(
                        location::table_field(&table.name, "unique_key"),
                        format!(
                            "`{key}` is declared unique, but the value '{value}' is in two rows or more"
                        ),
                        "fix the lookup (one row per code), or remove `unique_key`: then keys from \
                         this table are sampled per person",
                    )));
                }
            }
        }
    }
    Ok(None)
}

/// One file read whole by [`LoadedCatalog::read_every_page`].
#[derive(Debug, Clone, PartialEq)]
pub struct FileDigest {
    /// The file, relative to the catalog's folder.
    pub shown: String,
    /// Its rows, counted by decoding every page.
    pub rows: usize,
    /// SHA-256 of its bytes: a content fingerprint to record beside the extract.
    pub sha256: String,
}

/// The person ids of a person table, gathered while its pages are read, to check that it
/// holds one row per person.
#[derive(Default)]
struct PersonIds {
    numbers: Vec<i64>,
    texts: Vec<String>,
    nulls: usize,
}

impl PersonIds {
    fn add(&mut self, column: &arrow::array::ArrayRef) -> Result<(), String> {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{DataType, Int64Type};
        self.nulls += column.null_count();
        if column.data_type().is_integer() {
            let ints = arrow::compute::cast(column, &DataType::Int64).map_err(|e| e.to_string())?;
            self.numbers
                .extend(ints.as_primitive::<Int64Type>().iter().flatten());
        } else {
            let texts = arrow::compute::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
            self.texts
                .extend(texts.as_string::<i32>().iter().flatten().map(str::to_owned));
        }
        Ok(())
    }

    /// Whether every row has an id and no id is on two rows.
    fn one_each(mut self) -> bool {
        self.numbers.sort_unstable();
        self.texts.sort_unstable();
        self.nulls == 0
            && self.numbers.windows(2).all(|w| w[0] != w[1])
            && self.texts.windows(2).all(|w| w[0] != w[1])
    }
}

impl LoadedCatalog {
    /// Reads every page of every file (`carelens catalog --deep`): a damaged page — which
    /// the footer check cannot see — is an error naming the file, before anyone's query
    /// reads it and fails after its charge. Returns each file's row count and fingerprint.
    pub fn read_every_page(&self) -> Result<Vec<FileDigest>, CatalogError> {
        Ok(self.read_every_page_checking_people()?.0)
    }

    /// [`LoadedCatalog::read_every_page`], also checking that each person table holds one
    /// row per person (every row has a person id, no id on two rows): the names of the
    /// person tables that do.
    pub(crate) fn read_every_page_checking_people(
        &self,
    ) -> Result<(Vec<FileDigest>, Vec<String>), CatalogError> {
        use sha2::{Digest, Sha256};
        let person = self.catalog().dataset.person_column.as_str();
        let mut digests = Vec::new();
        let mut one_each = Vec::new();
        for (table, table_files) in self.tables() {
            let mut ids = (table.kind == crate::TableKind::Person).then(PersonIds::default);
            for path in table_files.files() {
                let io = |source| CatalogError::Io {
                    path: path.clone(),
                    source,
                };
                let damaged = |detail: String| CatalogError::Damaged {
                    path: path.clone(),
                    detail,
                };
                let bytes = std::fs::read(path).map_err(io)?;
                let sha256 = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let mut rows = 0;
                for batch in batches(path, None)? {
                    let batch = batch?;
                    rows += batch.num_rows();
                    if let (Some(ids), Some(column)) = (&mut ids, batch.column_by_name(person)) {
                        ids.add(column).map_err(damaged)?;
                    }
                }
                digests.push(FileDigest {
                    shown: path
                        .strip_prefix(self.folder())
                        .unwrap_or(path)
                        .display()
                        .to_string(),
                    rows,
                    sha256,
                });
            }
            if ids.is_some_and(PersonIds::one_each) {
                one_each.push(table.name.clone());
            }
        }
        Ok((digests, one_each))
    }
}

fn read_facts(folder: &Path, path: &Path) -> Result<FileFacts, CatalogError> {
    let parquet_error = |source| CatalogError::Parquet {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| CatalogError::Io {
        path: path.to_owned(),
        source,
    })?;
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(parquet_error)?;
    let file_metadata = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(
        file_metadata.schema_descr(),
        file_metadata.key_value_metadata(),
    )
    .map_err(parquet_error)?;
    let shown = path
        .strip_prefix(folder)
        .unwrap_or(path)
        .display()
        .to_string();
    Ok(FileFacts {
        shown,
        schema,
        rows: u64::try_from(file_metadata.num_rows()).unwrap_or(0),
        nulls: null_counts(&metadata),
    })
}

/// Nulls per top-level primitive column, from the Parquet schema and column-chunk
/// statistics. Nested columns are left out (no catalog type matches them).
fn null_counts(metadata: &ParquetMetaData) -> HashMap<String, Nulls> {
    let descr = metadata.file_metadata().schema_descr();
    let mut out = HashMap::new();
    for (i, column) in descr.columns().iter().enumerate() {
        let [name] = column.path().parts() else {
            continue;
        };
        let nulls = if column.max_def_level() == 0 {
            Nulls::None
        } else {
            let mut nulls = Nulls::None;
            for row_group in metadata.row_groups() {
                let count = row_group
                    .columns()
                    .get(i)
                    .and_then(|chunk| chunk.statistics())
                    .and_then(|stats| stats.null_count_opt());
                match count {
                    Some(0) => {}
                    Some(_) => {
                        nulls = Nulls::Some;
                        break;
                    }
                    None if row_group.num_rows() == 0 => {}
                    None => nulls = Nulls::Unknown,
                }
            }
            nulls
        };
        out.insert(name.clone(), nulls);
    }
    out
}

/// Checks one table's files against its declaration, pushing problems and returning
/// warnings.
fn check_table(
    table: &Table,
    person: &str,
    facts: &[FileFacts],
    problems: &mut Vec<Problem>,
) -> Vec<Problem> {
    let mut warnings = Vec::new();
    let Some(first) = facts.first() else {
        return warnings; // load never resolves a table to no files
    };

    for other in &facts[1..] {
        if let Some(difference) = schema_difference(&first.schema, &other.schema) {
            problems.push(Problem::new(
                location::table(&table.name),
                format!(
                    "`{}` does not have the same schema as `{}`: {difference}",
                    other.shown, first.shown
                ),
                "write every file of a table with the same columns and types",
            ));
        }
    }

    for column in &table.columns {
        let at = location::column(&table.name, &column.name);
        let Some(field) = first.schema.fields().find(&column.name).map(|(_, f)| f) else {
            let near = first
                .schema
                .fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(&column.name));
            let hint = match near {
                Some(f) => format!(
                    "the file has `{}`; names are case-sensitive, so write `name = \"{}\"`",
                    f.name(),
                    f.name()
                ),
                None => format!(
                    "check the spelling, or remove the column from the catalog; the file's columns are {}",
                    column_list(&first.schema)
                ),
            };
            problems.push(Problem::new(
                at,
                format!(
                    "declared, but `{}` has no column `{}`",
                    first.shown, column.name
                ),
                hint,
            ));
            continue;
        };
        if !column.data_type.matches(field.data_type()) {
            problems.push(Problem::new(
                at.clone(),
                format!(
                    "declared {}, but `{}` stores it as {}",
                    column.data_type,
                    first.shown,
                    field.data_type()
                ),
                type_hint(column.data_type, field.data_type()),
            ));
        }
        if !column.nullable {
            let with = |wanted: Nulls| {
                facts
                    .iter()
                    .filter(|f| f.nulls.get(&column.name) == Some(&wanted))
                    .map(|f| f.shown.as_str())
                    .collect::<Vec<_>>()
            };
            let with_nulls = with(Nulls::Some);
            let unknown = with(Nulls::Unknown);
            if !with_nulls.is_empty() {
                problems.push(Problem::new(
                    at,
                    format!(
                        "declared not nullable, but the column-chunk statistics of {} count nulls",
                        file_list(&with_nulls)
                    ),
                    "declare `nullable = true`, or fix the extract so every row has a value",
                ));
            } else if !unknown.is_empty() {
                warnings.push(Problem::new(
                    at,
                    format!(
                        "declared not nullable, but {} {} no null counts in {} statistics, so this cannot be checked",
                        file_list(&unknown),
                        if unknown.len() == 1 { "has" } else { "have" },
                        if unknown.len() == 1 { "its" } else { "their" },
                    ),
                    "write the files with column statistics, or declare `nullable = true`",
                ));
            }
        }
    }

    for field in first.schema.fields() {
        if table.column(field.name()).is_some() {
            continue;
        }
        if table.kind == TableKind::Public && !person.is_empty() && field.name() == person {
            problems.push(Problem::new(
                location::table(&table.name),
                format!(
                    "the public table's file `{}` has the person column `{person}`",
                    first.shown
                ),
                "if its rows belong to people, make the table `kind = \"events\"` and declare the \
                 column; otherwise remove the column from the extract",
            ));
            continue;
        }
        warnings.push(Problem::new(
            location::table(&table.name),
            format!(
                "the column `{}` ({}) is in the files but not in the catalog, so queries cannot use it",
                field.name(),
                field.data_type()
            ),
            "declare it under the table's `columns` to make it queryable, or leave it out to keep it hidden",
        ));
    }

    warnings
}

fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("`{}`", f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn file_list(files: &[&str]) -> String {
    match files {
        [one] => format!("`{one}`"),
        [first, rest @ ..] => format!(
            "`{first}` and {} other file{}",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
        [] => String::new(),
    }
}

fn type_hint(declared: ColumnType, stored: &DataType) -> String {
    match ColumnType::from_arrow(stored) {
        Some(actual) => {
            format!("declare `type = \"{actual}\"`, or rewrite the file with {declared} values")
        }
        None => format!(
            "carelens reads {}; rewrite the column as {declared}",
            ColumnType::ALL.map(ColumnType::as_str).join(", ")
        ),
    }
}

/// How `other` differs from `first` in column names and types (order and nullability do
/// not matter), or `None` if they agree.
fn schema_difference(first: &Schema, other: &Schema) -> Option<String> {
    let types = |schema: &Schema| -> BTreeMap<String, DataType> {
        schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    let (a, b) = (types(first), types(other));
    let mut differences = Vec::new();
    for field in first.fields() {
        match b.get(field.name()) {
            None => differences.push(format!("it has no column `{}`", field.name())),
            Some(t) if t != field.data_type() => differences.push(format!(
                "its column `{}` is {t}, not {}",
                field.name(),
                field.data_type()
            )),
            Some(_) => {}
        }
    }
    for field in other.fields() {
        if !a.contains_key(field.name()) {
            differences.push(format!("it has an extra column `{}`", field.name()));
        }
    }
    if differences.is_empty() {
        None
    } else {
        Some(differences.join("; "))
    }
}

fn table_report(
    table: &Table,
    files: &TableFiles,
    facts: &[FileFacts],
    person: &str,
    warnings: Vec<Problem>,
) -> TableReport {
    TableReport {
        name: table.name.clone(),
        kind: table.kind,
        path: table.path.clone(),
        is_folder: files.is_folder(),
        files: files.files().to_vec(),
        rows: facts.iter().map(|f| f.rows).sum(),
        description: table.description.clone(),
        max_groups: table.max_groups,
        max_rows_per_group: table.max_rows_per_group,
        unique_key: table.unique_key.clone(),
        columns: table
            .columns
            .iter()
            .map(|c| ColumnReport {
                name: c.name.clone(),
                data_type: c.data_type,
                nullable: c.nullable,
                is_person: table.kind.is_private() && c.name == person,
                bounds: c.bounds,
                precision: c.precision,
                domain: c.public_domain(),
                description: c.description.clone(),
            })
            .collect(),
        warnings,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_row_per_person_means_every_row_an_id_and_no_id_twice() {
        use std::sync::Arc;
        let ints = |v: Vec<Option<i64>>| -> arrow::array::ArrayRef {
            Arc::new(arrow::array::Int64Array::from(v))
        };
        let texts = |v: Vec<Option<&str>>| -> arrow::array::ArrayRef {
            Arc::new(arrow::array::StringArray::from(v))
        };
        let check = |batches: Vec<arrow::array::ArrayRef>| {
            let mut ids = super::PersonIds::default();
            for batch in &batches {
                ids.add(batch).unwrap();
            }
            ids.one_each()
        };
        assert!(check(vec![
            ints(vec![Some(3), Some(1)]),
            ints(vec![Some(2)])
        ]));
        // The same id in two batches (two files, two row groups) is caught.
        assert!(!check(vec![
            ints(vec![Some(3), Some(1)]),
            ints(vec![Some(3)])
        ]));
        assert!(!check(vec![ints(vec![Some(1), None])]));
        assert!(check(vec![texts(vec![Some("a"), Some("b")])]));
        assert!(!check(vec![texts(vec![Some("a")]), texts(vec![Some("a")])]));
    }

    use std::fs;

    use std::sync::Arc;

    use arrow::array::{ArrayRef, UInt8Array};
    use parquet::file::properties::EnabledStatistics;

    use super::*;
    use crate::load::load;
    use crate::test_support::{
        VALID, assert_problem, encounter_columns, floats, ints, person_columns, strs,
        write_fixture, write_fixture_with, write_parquet, write_parquet_with,
    };

    fn check(dir: &Path) -> Result<CatalogReport, CatalogError> {
        load(&dir.join("carelens.toml")).unwrap().check_files()
    }

    fn invalid(result: Result<CatalogReport, CatalogError>) -> Vec<Problem> {
        match result {
            Err(CatalogError::Invalid { problems, .. }) => problems,
            other => panic!("expected an invalid catalog, got {other:?}"),
        }
    }

    #[test]
    fn valid_catalog_checks_with_row_counts() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let report = check(dir.path()).unwrap();
        let rows: Vec<(&str, u64, usize)> = report
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t.rows, t.files.len()))
            .collect();
        assert_eq!(
            rows,
            [
                ("person", 3, 1),
                ("encounter", 5, 2),
                ("practice_lookup", 2, 1)
            ]
        );
        assert_eq!(report.warnings().count(), 0, "{report}");
        assert_eq!(report.dataset, "tiny");
        assert_eq!(report.person_column, "person_id");
        let person = &report.tables[0];
        assert!(person.columns[0].is_person);
        assert!(!report.tables[2].columns.iter().any(|c| c.is_person));
    }

    #[test]
    fn wrong_type_in_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let mut columns = person_columns(3);
        columns[2] = ("imd_decile", ints(&[Some(1), Some(2), Some(3)]));
        write_parquet(&dir.path().join("person.parquet"), columns);
        let problems = invalid(check(dir.path()));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_problem(
            &problems,
            "tables.person.columns.imd_decile",
            "declared Int32, but `person.parquet` stores it as Int64",
        );
        assert_eq!(
            problems[0].hint,
            "declare `type = \"Int64\"`, or rewrite the file with Int32 values"
        );
    }

    #[test]
    fn type_the_catalog_cannot_declare_gets_a_rewrite_hint() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let pcn: ArrayRef = Arc::new(UInt8Array::from(vec![1u8, 2]));
        write_parquet(
            &dir.path().join("practice_lookup.parquet"),
            vec![
                ("practice_code", strs(&[Some("J81001"), Some("J81002")])),
                ("pcn_code", pcn),
            ],
        );
        let problems = invalid(check(dir.path()));
        assert_problem(
            &problems,
            "tables.practice_lookup.columns.pcn_code",
            "declared Utf8, but `practice_lookup.parquet` stores it as UInt8",
        );
        assert_eq!(
            problems[0].hint,
            "carelens reads Int32, Int64, Float64, Utf8, Boolean, Date32; rewrite the column as Utf8"
        );
    }

    #[test]
    fn missing_column_is_rejected_with_a_spelling_hint() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let mut columns = person_columns(3);
        columns[1].0 = "Sex";
        write_parquet(&dir.path().join("person.parquet"), columns);
        let problems = invalid(check(dir.path()));
        assert_problem(
            &problems,
            "tables.person.columns.sex",
            "declared, but `person.parquet` has no column `sex`",
        );
        assert!(
            problems[0].hint.contains("the file has `Sex`"),
            "{:?}",
            problems[0]
        );
        // The undeclared `Sex` is also reported, as a warning (not visible in an error).
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn non_nullable_column_with_nulls_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let mut columns = encounter_columns(&[1, 3, 3]);
        columns[4] = ("cost_gbp", floats(&[None, None, Some(2.0)]));
        write_parquet(&dir.path().join("encounter/part-1.parquet"), columns);
        let problems = invalid(check(dir.path()));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_problem(
            &problems,
            "tables.encounter.columns.cost_gbp",
            "declared not nullable, but the column-chunk statistics of `encounter/part-1.parquet` count nulls",
        );
        // The message says there are nulls, not how many.
        assert!(!problems[0].message.contains('2'), "{:?}", problems[0]);
    }

    #[test]
    fn nullable_column_with_nulls_is_accepted() {
        // `ethnicity_group` and `los_days` are all null in the fixture and declared nullable.
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        check(dir.path()).unwrap();
    }

    #[test]
    fn missing_null_counts_are_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        write_parquet_with(
            &dir.path().join("person.parquet"),
            person_columns(3),
            EnabledStatistics::None,
        );
        let report = check(dir.path()).unwrap();
        let warnings: Vec<Problem> = report.warnings().cloned().collect();
        assert_problem(
            &warnings,
            "tables.person.columns.sex",
            "`person.parquet` has no null counts in its statistics",
        );
        // Nullable columns need no null counts.
        assert!(
            !warnings
                .iter()
                .any(|w| w.location.ends_with("ethnicity_group"))
        );
    }

    #[test]
    fn extra_column_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let mut columns = person_columns(3);
        columns.push(("nhs_region", strs(&[Some("SW"), Some("SW"), Some("SE")])));
        write_parquet(&dir.path().join("person.parquet"), columns);
        let report = check(dir.path()).unwrap();
        let warnings: Vec<Problem> = report.warnings().cloned().collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_problem(
            &warnings,
            "tables.person",
            "the column `nhs_region` (Utf8) is in the files but not in the catalog",
        );
        assert_eq!(report.tables[0].warnings.len(), 1);
    }

    #[test]
    fn person_column_in_public_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        write_parquet(
            &dir.path().join("practice_lookup.parquet"),
            vec![
                ("practice_code", strs(&[Some("J81001")])),
                ("pcn_code", strs(&[Some("U1")])),
                ("person_id", ints(&[Some(1)])),
            ],
        );
        let problems = invalid(check(dir.path()));
        assert_problem(
            &problems,
            "tables.practice_lookup",
            "the public table's file `practice_lookup.parquet` has the person column `person_id`",
        );
    }

    #[test]
    fn multi_file_row_counts_are_summed() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        write_parquet(
            &dir.path().join("encounter/part-2.parquet"),
            encounter_columns(&[2; 7]),
        );
        let report = check(dir.path()).unwrap();
        let encounter = &report.tables[1];
        assert_eq!(encounter.rows, 2 + 3 + 7);
        assert_eq!(encounter.files.len(), 3);
    }

    #[test]
    fn multi_file_schema_mismatch_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let mut columns = encounter_columns(&[1, 3, 3]);
        columns[4] = ("cost_gbp", ints(&[Some(1), Some(2), Some(3)]));
        columns.remove(5);
        columns.push(("ward", strs(&[None, None, None])));
        write_parquet(&dir.path().join("encounter/part-1.parquet"), columns);
        let problems = invalid(check(dir.path()));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_problem(
            &problems,
            "tables.encounter",
            "`encounter/part-1.parquet` does not have the same schema as `encounter/part-0.parquet`: \
             its column `cost_gbp` is Int64, not Float64; it has no column `care_home`; \
             it has an extra column `ward`",
        );
    }

    #[test]
    fn column_order_may_differ_between_files() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let mut columns = encounter_columns(&[1, 3, 3]);
        columns.reverse();
        write_parquet(&dir.path().join("encounter/part-1.parquet"), columns);
        check(dir.path()).unwrap();
    }

    #[test]
    fn unreadable_parquet_is_a_parquet_error() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let bad = dir.path().join("encounter/part-1.parquet");
        fs::write(&bad, "not parquet at all").unwrap();
        let err = check(dir.path()).unwrap_err();
        let CatalogError::Parquet { path, .. } = &err else {
            panic!("expected a Parquet error, got {err:?}");
        };
        assert_eq!(
            path,
            &fs::canonicalize(dir.path())
                .unwrap()
                .join("encounter/part-1.parquet")
        );
        assert!(
            err.to_string()
                .starts_with("cannot read Parquet metadata of ")
        );
    }

    #[test]
    fn all_file_problems_are_collected() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace(
            "{ name = \"practice_code\", type = \"Utf8\" }",
            "{ name = \"practice_code\", type = \"Int64\" }",
        );
        write_fixture_with(dir.path(), &text);
        let mut columns = person_columns(3);
        columns.remove(1);
        write_parquet(&dir.path().join("person.parquet"), columns);
        let problems = invalid(check(dir.path()));
        let locations: Vec<&str> = problems.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(
            locations,
            [
                "tables.person.columns.sex",
                "tables.practice_lookup.columns.practice_code"
            ]
        );
    }
}
