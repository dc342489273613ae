//! Shared fixtures: the binary, the committed sample data, and a larger extract generated
//! once per test run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

/// Seed and size of the committed `sample-data/` extract (also in the README).
pub const SAMPLE_SEED: u64 = 20_250_331;
/// See [`SAMPLE_SEED`].
pub const SAMPLE_PERSONS: u64 = 20_000;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The committed sample extract.
pub fn sample_data() -> PathBuf {
    repo().join("sample-data")
}

/// A copy of the sample extract in a temporary folder (the catalog refuses linked files)
/// whose catalog has `from` replaced by `to`; `from` must be in it.
pub fn sample_with_catalog_edit(from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(sample_data()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let text = std::fs::read_to_string(sample_data().join("carelens.toml")).unwrap();
    assert!(text.contains(from), "the sample catalog has no {from:?}");
    std::fs::write(dir.path().join("carelens.toml"), text.replace(from, to)).unwrap();
    dir
}

/// The `carelens` binary under test.
pub fn carelens() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carelens"));
    cmd.env_remove("CARELENS_CONFIG").env("NO_COLOR", "1");
    cmd
}

/// Runs a command and returns its output, with stdout and stderr as text.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let output = cmd.output().expect("the carelens binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// A 100,000-person extract, generated once per test run (seed 7).
pub fn extract_100k() -> &'static Path {
    static EXTRACT: OnceLock<tempfile::TempDir> = OnceLock::new();
    EXTRACT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let options = carelens_synth::Options {
                persons: 100_000,
                seed: 7,
                out: dir.path().join("extract"),
                force: false,
            };
            carelens_synth::generate(&options, &|_| {}).unwrap();
            dir
        })
        .path()
        .join("extract")
        .leak()
}

/// A DataFusion session with every table of the extract in `dir` registered under its
/// catalog name — plain, non-private DataFusion, used to check facts about the data.
pub async fn session(dir: &Path) -> SessionContext {
    let ctx = SessionContext::new();
    for table in [
        "person",
        "condition",
        "encounter",
        "medication",
        "observation",
        "practice_lookup",
        "lsoa_lookup",
    ] {
        let path = dir.join(format!("{table}.parquet"));
        ctx.register_parquet(table, path.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
    }
    ctx
}

/// Runs SQL and returns all batches.
pub async fn query(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
}

/// Runs SQL returning rows of (text key, numbers...) and returns them as
/// `(key, values)`; the first column is cast to text, the rest to f64.
pub async fn rows(ctx: &SessionContext, sql: &str) -> Vec<(String, Vec<f64>)> {
    let mut out = Vec::new();
    for batch in query(ctx, sql).await {
        let key = cast(batch.column(0), &DataType::Utf8).unwrap();
        let key = key.as_string::<i32>();
        let values: Vec<_> = (1..batch.num_columns())
            .map(|i| cast(batch.column(i), &DataType::Float64).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let k = if key.is_null(row) {
                "NULL".to_owned()
            } else {
                key.value(row).to_owned()
            };
            let v = values
                .iter()
                .map(|c| c.as_primitive::<Float64Type>().value(row))
                .collect();
            out.push((k, v));
        }
    }
    out
}

/// Runs SQL returning one row of numbers.
pub async fn numbers(ctx: &SessionContext, sql: &str) -> Vec<f64> {
    let batches = query(ctx, sql).await;
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("one row");
    (0..batch.num_columns())
        .map(|i| {
            let c = cast(batch.column(i), &DataType::Float64).unwrap();
            c.as_primitive::<Float64Type>().value(0)
        })
        .collect()
}

/// The registered-and-alive population on the index date, with age and age band: the
/// `reg` CTE of shared/QUERIES.md.
pub const REG: &str = "reg AS (
  SELECT p.*, 2025 - p.year_of_birth AS age,
         CASE WHEN 2025 - p.year_of_birth < 18 THEN '0-17' WHEN 2025 - p.year_of_birth < 40 THEN '18-39'
              WHEN 2025 - p.year_of_birth < 65 THEN '40-64' WHEN 2025 - p.year_of_birth < 75 THEN '65-74'
              WHEN 2025 - p.year_of_birth < 85 THEN '75-84' ELSE '85+' END AS age_band
  FROM person p
  WHERE p.registration_start <= DATE '2025-03-31'
    AND (p.registration_end IS NULL OR p.registration_end >= DATE '2025-03-31')
    AND (p.date_of_death IS NULL OR p.date_of_death > DATE '2025-03-31'))";
