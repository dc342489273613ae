//! The oracle's second extract: a copy of the sample extract plus one **extreme person**
//! — a new `person_id`, one row in the person table and [`EVENT_ROWS`] rows in each events
//! table, with boundary values in every column: the smallest and largest integers, 0 and
//! −1; NaN, ±∞, −0.0 and the largest floats; empty, 64 KiB and non-ASCII strings; dates
//! at `i32::MIN` and `i32::MAX` days and just inside and outside chrono's range, beside
//! ordinary ones; NULL where the column is nullable.
//!
//! Each file keeps the sample file's Arrow schema exactly (read from the file, metadata
//! included); public tables and `carelens.toml` are copied as they are.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use carelens_catalog::{Column, Literal, PublicDomain, TableKind};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    LargeStringBuilder, RecordBatch, StringBuilder, StringViewBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::FuzzError;

/// The extreme person's `person_id`: the largest pseudonym there can be.
pub const EXTREME_PERSON: i64 = i64::MAX;

/// Rows the extreme person has in each events table.
pub const EVENT_ROWS: usize = 10_000;

/// How many variants of the extreme person's one `person` row there are: minimums,
/// maximums, zeros and empties, NULLs and odd values. Their event rows are the same.
pub const VARIANTS: usize = 4;

/// 64 KiB of ASCII.
fn long_ascii() -> String {
    "x".repeat(64 * 1024)
}

/// 64 KiB of two-byte characters.
fn long_unicode() -> String {
    "ü".repeat(32 * 1024)
}

/// Days since 1970-01-01 of 2024-06-15 and 2025-03-31: ordinary dates of the extract.
const ORDINARY_DAYS: [i32; 2] = [19_889, 20_178];

/// Boundary values per type. Index 0 is the minimum, 1 the maximum, 2 zero or empty, 3 an
/// odd value (the person-row variants take these four); the rest appear in event rows.
const INT32: &[i32] = &[i32::MIN, i32::MAX, 0, -1, 1, i32::MIN + 1, i32::MAX - 1];
const INT64: &[i64] = &[i64::MIN, i64::MAX, 0, -1, 1, i64::MIN + 1, i64::MAX - 1];
const FLOAT64: &[f64] = &[
    f64::NEG_INFINITY,
    f64::INFINITY,
    -0.0,
    f64::NAN,
    f64::MIN,
    f64::MAX,
    0.0,
    f64::MIN_POSITIVE,
    5e-324,
    -1.0,
    1e300,
];
/// Days: `i32` limits, just outside and inside chrono's ±262,000 years, years 1 and 9999,
/// the epoch and the day before it.
const DATES: &[i32] = &[
    i32::MIN,
    i32::MAX,
    0,
    -1,
    -96_000_000,
    96_000_000,
    -95_000_000,
    95_000_000,
    -719_162,
    2_932_896,
];
const BOOLS: &[bool] = &[false, true, false, true];

/// Short boundary strings; index 0 is the smallest, 1 the largest code point.
fn strings() -> Vec<String> {
    [
        "",
        "\u{10ffff}",
        "0",
        "Ünïcødé ✓ 🧬 ǅ",
        "\0",
        "(",
        "\\",
        "%_",
        " ",
        "NaN",
        "-9223372036854775808",
        "9999-12-31",
        "e\u{301}",
        "\u{202e}\u{ffff}",
        "'; --",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The 64 KiB strings.
fn long_strings() -> Vec<String> {
    vec![long_ascii(), long_unicode()]
}

/// Which value a cell takes.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// An ordinary value of the column (a domain value, an ordinary date or number).
    Ordinary(usize),
    /// The boundary value at this index (wrapping).
    Boundary(usize),
    /// A 64 KiB string (the largest value for other types).
    Long(usize),
    /// NULL (where the column is nullable).
    Null,
}

/// Cells of one column: the person-table row of `variant`, or event rows.
fn picks(
    rows: usize,
    nullable: bool,
    variant: Option<usize>,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<Pick> {
    (0..rows)
        .map(|row| match variant {
            Some(1) => Pick::Long(0),
            Some(3) if nullable => Pick::Null,
            Some(v) => Pick::Boundary(v),
            None => {
                let r: f64 = rng.random();
                if row % 1_000 == 0 {
                    // The 64 KiB strings in a few rows only: 10,000 of them would be
                    // 640 MiB per column.
                    Pick::Long(row / 1_000)
                } else if nullable && r < 0.1 {
                    Pick::Null
                } else if r < 0.4 {
                    Pick::Ordinary(rng.random_range(0..1_000))
                } else {
                    Pick::Boundary(rng.random_range(0..1_000))
                }
            }
        })
        .collect()
}

/// Ordinary values of a column, from its public domain where it has one.
fn ordinary_text(column: Option<&Column>) -> Vec<String> {
    match column.and_then(Column::public_domain) {
        Some(PublicDomain::Values(values)) => values
            .iter()
            .map(|l| match l {
                Literal::Str(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => vec!["ordinary".to_owned(), "E01000001".to_owned()],
    }
}

fn ordinary_int(column: Option<&Column>) -> Vec<i64> {
    match column.and_then(Column::public_domain) {
        Some(PublicDomain::Range { lo, hi }) => vec![lo, hi, (lo + hi) / 2],
        _ => match column.and_then(|c| c.bounds) {
            Some([lo, hi]) => vec![lo as i64, hi as i64, ((lo + hi) / 2.0) as i64],
            None => vec![1, 42, 2000],
        },
    }
}

fn ordinary_float(column: Option<&Column>) -> Vec<f64> {
    match column.and_then(|c| c.bounds) {
        Some([lo, hi]) => vec![lo, hi, (lo + hi) / 2.0],
        None => vec![1.5, 42.0],
    }
}

/// One column of the extreme person's rows.
fn column_array(
    field: &Field,
    column: Option<&Column>,
    picks: &[Pick],
) -> Result<ArrayRef, FuzzError> {
    // `$long`: the values of `Pick::Long` (the maximum, for types without long values).
    macro_rules! build {
        ($builder:expr, $values:expr, $ordinary:expr, $long:expr) => {{
            let mut b = $builder;
            let values = $values;
            let ordinary = $ordinary;
            let long = $long;
            for p in picks {
                match p {
                    Pick::Null => b.append_null(),
                    Pick::Ordinary(i) => b.append_value(ordinary[i % ordinary.len()].clone()),
                    Pick::Boundary(i) => b.append_value(values[i % values.len()].clone()),
                    Pick::Long(i) => b.append_value(long[i % long.len()].clone()),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let strings = strings();
    let longs = long_strings();
    let array = match field.data_type() {
        DataType::Int32 => build!(
            Int32Builder::new(),
            INT32.to_vec(),
            ordinary_int(column)
                .into_iter()
                .map(|v| v as i32)
                .collect::<Vec<_>>(),
            [INT32[1]]
        ),
        DataType::Int64 => build!(
            Int64Builder::new(),
            INT64.to_vec(),
            ordinary_int(column),
            [INT64[1]]
        ),
        DataType::Float64 => build!(
            Float64Builder::new(),
            FLOAT64.to_vec(),
            ordinary_float(column),
            [FLOAT64[1]]
        ),
        DataType::Date32 => build!(
            Date32Builder::new(),
            DATES.to_vec(),
            ORDINARY_DAYS.to_vec(),
            [DATES[1]]
        ),
        DataType::Boolean => build!(
            BooleanBuilder::new(),
            BOOLS.to_vec(),
            [false, true],
            [BOOLS[1]]
        ),
        DataType::Utf8 => build!(StringBuilder::new(), strings, ordinary_text(column), longs),
        DataType::LargeUtf8 => build!(
            LargeStringBuilder::new(),
            strings,
            ordinary_text(column),
            longs
        ),
        DataType::Utf8View => build!(
            StringViewBuilder::new(),
            strings,
            ordinary_text(column),
            longs
        ),
        other => {
            return Err(FuzzError::Unsupported(format!(
                "column `{}` of type {other}",
                field.name()
            )));
        }
    };
    Ok(array)
}

/// The extreme person's rows for a table with `schema`.
fn extreme_batch(
    schema: &SchemaRef,
    table: &carelens_catalog::Table,
    person_column: &str,
    variant: usize,
) -> Result<RecordBatch, FuzzError> {
    let person_row = table.kind == TableKind::Person;
    let rows = if person_row { 1 } else { EVENT_ROWS };
    // One random stream per table, so every variant's event rows are the same.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(
        table.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }),
    );
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if field.name() == person_column {
            columns.push(Arc::new(datafusion::arrow::array::Int64Array::from(
                vec![EXTREME_PERSON; rows],
            )) as ArrayRef);
            continue;
        }
        let variant = person_row.then_some(variant);
        let p = picks(rows, field.is_nullable(), variant, &mut rng);
        columns.push(column_array(field, table.column(field.name()), &p)?);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Writes the sample extract of `sample_catalog` plus the extreme person (`variant` of its
/// person row, below [`VARIANTS`]) to `out`, and returns the path of the copied
/// `carelens.toml` there.
pub fn write_extract(
    sample_catalog: &Path,
    out: &Path,
    variant: usize,
) -> Result<PathBuf, FuzzError> {
    let loaded = carelens_catalog::load(sample_catalog)?;
    let person_column = loaded.catalog().dataset.person_column.clone();
    fs::create_dir_all(out).map_err(|e| FuzzError::io(out, e))?;
    let catalog_name = sample_catalog
        .file_name()
        .ok_or_else(|| FuzzError::Unsupported("a catalog path without a file name".into()))?;
    let catalog_copy = out.join(catalog_name);
    fs::copy(sample_catalog, &catalog_copy).map_err(|e| FuzzError::io(&catalog_copy, e))?;
    for (table, files) in loaded.tables() {
        if files.is_folder() {
            return Err(FuzzError::Unsupported(format!(
                "table `{}` is a folder of Parquet files",
                table.name
            )));
        }
        let source = files.path();
        let target = out.join(&table.path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| FuzzError::io(parent, e))?;
        }
        if !table.kind.is_private() {
            fs::copy(source, &target).map_err(|e| FuzzError::io(&target, e))?;
            continue;
        }
        let file = File::open(source).map_err(|e| FuzzError::io(source, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?;
        let schema = reader.schema().clone();
        let extreme = extreme_batch(&schema, table, &person_column, variant)?;
        let output = File::create(&target).map_err(|e| FuzzError::io(&target, e))?;
        let mut writer = ArrowWriter::try_new(output, schema, None)?;
        for batch in reader.build()? {
            writer.write(&batch?)?;
        }
        writer.write(&extreme)?;
        writer.close()?;
    }
    Ok(catalog_copy)
}
