//! A release as an aligned text table, as CSV and as Parquet. Suppressed cells show the
//! disclosure policy's marker (null in Parquet).

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use carelens_engine::{ColumnMeta, ColumnRole, Release};
use carelens_privacy::number;
use parquet::arrow::ArrowWriter;
use serde_json::Value;

/// The release as CSV: a header, then one line per row.
pub fn csv(release: &Release) -> String {
    let mut out = String::new();
    let header: Vec<String> = release.columns.iter().map(|c| csv_field(&c.name)).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for row in &release.rows {
        let fields: Vec<String> = release
            .columns
            .iter()
            .map(|c| csv_field(&show(release, c, row.get(&c.name))))
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// The release as an aligned text table, with what was spent and the notes underneath.
pub fn table(release: &Release) -> String {
    table_answered(release, false)
}

/// [`table`] of an answer given `again` — an earlier release served at no cost — whose
/// footer says nothing was spent now and what the release cost when it was made.
pub fn table_answered(release: &Release, again: bool) -> String {
    let header: Vec<String> = release.columns.iter().map(|c| c.name.clone()).collect();
    let body: Vec<Vec<String>> = release
        .rows
        .iter()
        .map(|row| {
            release
                .columns
                .iter()
                .map(|c| show(release, c, row.get(&c.name)))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric: Vec<bool> = release
        .columns
        .iter()
        .map(|c| c.role != ColumnRole::Key || is_numeric_type(&c.data_type))
        .collect();
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if numeric[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&header);
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    out.push('\n');
    for row in &body {
        out.push_str(&line(row));
        out.push('\n');
    }
    let rows = format!(
        "{} row{}",
        release.rows.len(),
        if release.rows.len() == 1 { "" } else { "s" }
    );
    let cost = format!(
        "epsilon {} and delta {}",
        number(release.privacy.epsilon),
        number(release.privacy.delta)
    );
    let spent = match (again, release.release_id) {
        (false, Some(id)) => format!("{cost} spent (release {id})"),
        (false, None) => format!("{cost} spent"),
        (true, Some(id)) => {
            format!("nothing spent now: the answer of release {id}, which cost {cost}")
        }
        (true, None) => format!("nothing spent now: an earlier answer, which cost {cost}"),
    };
    let _ = writeln!(
        out,
        "\n{rows}; {spent}; disclosure policy {}.",
        release.privacy.disclosure
    );
    for note in &release.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// The release as Parquet: one column per result column (integers as Int64, other
/// numbers as Float64, booleans, everything else as text); suppressed cells are null.
pub fn parquet(release: &Release) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let batch = record_batch(release)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(out)
}

/// The release as an Arrow IPC stream (`application/vnd.apache.arrow.stream`), with the
/// columns and types of [`parquet`].
pub fn arrow_ipc(release: &Release) -> Result<Vec<u8>, ArrowError> {
    let batch = record_batch(release)?;
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &batch.schema())?;
    writer.write(&batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The release's rows as one Arrow record batch (see [`parquet`]).
fn record_batch(release: &Release) -> Result<RecordBatch, ArrowError> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for c in &release.columns {
        let values = release
            .rows
            .iter()
            .map(|r| r.get(&c.name).unwrap_or(&Value::Null));
        let t = c.data_type.as_str();
        let (data_type, array): (DataType, ArrayRef) =
            if t.starts_with("Int") || t.starts_with("UInt") {
                (
                    DataType::Int64,
                    Arc::new(values.map(Value::as_i64).collect::<Int64Array>()),
                )
            } else if t.starts_with("Float") || t.starts_with("Decimal") {
                (
                    DataType::Float64,
                    Arc::new(values.map(Value::as_f64).collect::<Float64Array>()),
                )
            } else if t == "Boolean" {
                (
                    DataType::Boolean,
                    Arc::new(values.map(Value::as_bool).collect::<BooleanArray>()),
                )
            } else {
                let text = values.map(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                });
                (DataType::Utf8, Arc::new(text.collect::<StringArray>()))
            };
        fields.push(Field::new(&c.name, data_type, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

/// One cell as text: empty for a missing key, the marker for a suppressed value.
fn show(release: &Release, column: &ColumnMeta, value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) if matches!(column.role, ColumnRole::Key | ColumnRole::Public) => {
            String::new()
        }
        None | Some(Value::Null) => release.privacy.marker.clone(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if n.is_f64() => format_float(x),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

fn is_numeric_type(t: &str) -> bool {
    t.starts_with("Int")
        || t.starts_with("UInt")
        || t.starts_with("Float")
        || t.starts_with("Decimal")
}

/// Floats in tables: at most two decimals, enough for noisy rates and means.
fn format_float(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_owned() }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Release {
        Release::example()
    }

    #[test]
    fn csv_quotes_and_marks_suppressed_cells() {
        assert_eq!(csv(&sample()), "place,n\n\"Poole, North\",*\n");
    }

    #[test]
    fn table_aligns_and_reports_the_spend() {
        let t = table(&sample());
        assert!(
            t.starts_with("place         n\n------------  -\nPoole, North  *\n"),
            "{t}"
        );
        assert!(t.contains("epsilon 0.5 and delta 0 spent (release 7)"));
        // Served again: nothing spent now, and what it cost when it was made.
        let again = table_answered(&sample(), true);
        assert!(
            again.contains(
                "nothing spent now: the answer of release 7, which cost epsilon 0.5 and delta 0;"
            ),
            "{again}"
        );
        assert!(!again.contains("0.5 and delta 0 spent"), "{again}");
    }

    #[test]
    fn parquet_has_a_null_for_a_suppressed_cell() {
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &file, &parquet(&sample()).unwrap()).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 1);
        let stats = meta.row_group(0).column(1).statistics().unwrap();
        assert_eq!(stats.null_count_opt(), Some(1));
    }
}
