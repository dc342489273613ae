//! Fixtures shared by the unit tests: a small valid catalog and tiny Parquet files.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::error::Problem;
use crate::model::Catalog;

/// A valid catalog using every kind of table and every form of privacy metadata.
pub(crate) const VALID: &str = r#"
[dataset]
name = "tiny"
person_column = "person_id"
description = "A tiny extract for tests."

[[tables]]
name = "person"
kind = "person"
path = "person.parquet"
columns = [
  { name = "person_id", type = "Int64" },
  { name = "sex", type = "Utf8", domain = ["F", "M", "I", "U"] },
  { name = "imd_decile", type = "Int32", domain_range = [1, 10] },
  { name = "pcn_code", type = "Utf8", domain_from = "practice_lookup.pcn_code" },
  { name = "ethnicity_group", type = "Utf8", nullable = true, description = "self-reported" },
]

[[tables]]
name = "encounter"
kind = "events"
path = "encounter"
max_groups = 3
max_rows_per_group = 10
columns = [
  { name = "person_id", type = "Int64" },
  { name = "setting", type = "Utf8", domain = ["GP", "AE"] },
  { name = "start_date", type = "Date32" },
  { name = "los_days", type = "Int32", nullable = true, bounds = [0, 365] },
  { name = "cost_gbp", type = "Float64", bounds = [0, 5000], precision = 0.01 },
  { name = "care_home", type = "Boolean", domain = [true, false] },
]

[[tables]]
name = "practice_lookup"
kind = "public"
path = "practice_lookup.parquet"
columns = [
  { name = "practice_code", type = "Utf8" },
  { name = "pcn_code", type = "Utf8" },
]
"#;

/// [`VALID`], parsed.
pub(crate) fn valid_catalog() -> Catalog {
    toml::from_str(VALID).unwrap()
}

pub(crate) fn ints(values: &[Option<i64>]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

pub(crate) fn int32s(values: &[Option<i32>]) -> ArrayRef {
    Arc::new(Int32Array::from(values.to_vec()))
}

pub(crate) fn floats(values: &[Option<f64>]) -> ArrayRef {
    Arc::new(Float64Array::from(values.to_vec()))
}

pub(crate) fn strs(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

pub(crate) fn bools(values: &[Option<bool>]) -> ArrayRef {
    Arc::new(BooleanArray::from(values.to_vec()))
}

pub(crate) fn dates(values: &[Option<i32>]) -> ArrayRef {
    Arc::new(Date32Array::from(values.to_vec()))
}

/// Writes one record batch of nullable columns to a Parquet file, with statistics.
pub(crate) fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    write_parquet_with(path, columns, EnabledStatistics::Page);
}

/// Writes one record batch of nullable columns to a Parquet file.
pub(crate) fn write_parquet_with(
    path: &Path,
    columns: Vec<(&str, ArrayRef)>,
    statistics: EnabledStatistics,
) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, array)| array).collect(),
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_statistics_enabled(statistics)
        .build();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

pub(crate) fn person_columns(n: i64) -> Vec<(&'static str, ArrayRef)> {
    let ids: Vec<Option<i64>> = (1..=n).map(Some).collect();
    let n = usize::try_from(n).unwrap();
    vec![
        ("person_id", ints(&ids)),
        ("sex", strs(&vec![Some("F"); n])),
        ("imd_decile", int32s(&vec![Some(3); n])),
        ("pcn_code", strs(&vec![Some("U1"); n])),
        ("ethnicity_group", strs(&vec![None; n])),
    ]
}

pub(crate) fn encounter_columns(persons: &[i64]) -> Vec<(&'static str, ArrayRef)> {
    let n = persons.len();
    let ids: Vec<Option<i64>> = persons.iter().copied().map(Some).collect();
    vec![
        ("person_id", ints(&ids)),
        ("setting", strs(&vec![Some("GP"); n])),
        ("start_date", dates(&vec![Some(19_000); n])),
        ("los_days", int32s(&vec![None; n])),
        ("cost_gbp", floats(&vec![Some(12.5); n])),
        ("care_home", bools(&vec![Some(false); n])),
    ]
}

pub(crate) fn practice_columns() -> Vec<(&'static str, ArrayRef)> {
    vec![
        ("practice_code", strs(&[Some("J81001"), Some("J81002")])),
        ("pcn_code", strs(&[Some("U1"), Some("U2")])),
    ]
}

/// Writes [`VALID`] and its files into `dir`: 3 persons, 5 encounters in two files, 2
/// practices. Returns the catalog's path.
pub(crate) fn write_fixture(dir: &Path) -> PathBuf {
    write_fixture_with(dir, VALID)
}

/// Like [`write_fixture`], with another catalog text.
pub(crate) fn write_fixture_with(dir: &Path, catalog: &str) -> PathBuf {
    write_parquet(&dir.join("person.parquet"), person_columns(3));
    write_parquet(
        &dir.join("encounter/part-0.parquet"),
        encounter_columns(&[1, 2]),
    );
    write_parquet(
        &dir.join("encounter/part-1.parquet"),
        encounter_columns(&[1, 3, 3]),
    );
    write_parquet(&dir.join("practice_lookup.parquet"), practice_columns());
    let path = dir.join("carelens.toml");
    fs::write(&path, catalog).unwrap();
    path
}

/// Asserts that some problem is at `location` and its message contains `phrase`.
#[track_caller]
pub(crate) fn assert_problem(problems: &[Problem], location: &str, phrase: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.location == location && p.message.contains(phrase)),
        "no problem at {location} containing {phrase:?}; got:\n{}",
        problems
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
