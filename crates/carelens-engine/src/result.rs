//! A released result and its wire format (`carelens.release/1`), documented in
//! `docs/wire-format.md`.
//!
//! The JSON is what the ledger stores and what a cached answer is served from, so the
//! table and CSV views are rendered from it, never from anything unprotected.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use carelens_privacy::CellStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The wire format's name and version.
pub const FORMAT: &str = "carelens.release/1";

/// What a column of the result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnRole {
    /// A group key (public, or selected with DP key selection).
    Key,
    /// A noisy count (of rows or persons), rounded and suppressed by the policy.
    Count,
    /// A noisy sum.
    Sum,
    /// A mean: a noisy sum over a noisy count.
    Mean,
    /// Computed after release from released values (a rate, a ratio).
    Derived,
    /// From public reference tables only: exact, no noise.
    Public,
}

/// One column of the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMeta {
    /// Its name.
    pub name: String,
    /// What it is.
    pub role: ColumnRole,
    /// Its Arrow type, e.g. `Int64`, `Utf8`.
    pub data_type: String,
}

/// The status and 95% interval of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMeta {
    /// Released or suppressed.
    pub status: CellStatus,
    /// Holds the true (bounded) value with probability at least 95%; absent for keys,
    /// suppressed cells and values whose error is not known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub interval: Option<[f64; 2]>,
}

/// The privacy side of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacySummary {
    /// ε charged.
    pub epsilon: f64,
    /// δ charged.
    pub delta: f64,
    /// L0: groups one person could add to.
    pub max_groups: u32,
    /// L∞: rows one person could add to one group.
    pub max_rows: u32,
    /// Whether the keys were selected with DP key selection (else: a public domain).
    pub key_selection: bool,
    /// The disclosure policy applied, e.g. `nhs`.
    pub disclosure: String,
    /// What a suppressed cell shows in tables and CSV.
    pub marker: String,
}

/// A released result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Always [`FORMAT`].
    pub format: String,
    /// The ledger's release id (the sequence number of its `released` entry), once stored.
    #[serde(default)]
    pub release_id: Option<i64>,
    /// The columns, in order.
    pub columns: Vec<ColumnMeta>,
    /// One object per row, keyed by column name; a suppressed cell is `null`.
    pub rows: Vec<BTreeMap<String, Value>>,
    /// Per row, each non-key cell's status and interval, keyed by column name.
    pub cells: Vec<BTreeMap<String, CellMeta>>,
    /// ε, δ and the limits.
    pub privacy: PrivacySummary,
    /// What the analyst should know to read the result.
    pub notes: Vec<String>,
}

impl Release {
    /// The result as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The result as CSV: a header, then one line per row; suppressed cells show the
    /// policy's marker.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|c| csv_field(&c.name)).collect();
        out.push_str(&header.join(","));
        out.push('\n');
        for row in &self.rows {
            let fields: Vec<String> = self
                .columns
                .iter()
                .map(|c| csv_field(&self.show(c, row.get(&c.name))))
                .collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }

    /// The result as an aligned text table, with notes underneath.
    pub fn to_table(&self) -> String {
        let header: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
        let body: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .map(|c| self.show(c, row.get(&c.name)))
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &body {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let numeric: Vec<bool> = self
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
        let _ = writeln!(
            out,
            "\n{} row{}; epsilon {} and delta {} spent{}; disclosure policy {}.",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" },
            number(self.privacy.epsilon),
            number(self.privacy.delta),
            self.release_id
                .map(|id| format!(" (release {id})"))
                .unwrap_or_default(),
            self.privacy.disclosure
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// The result as Parquet: one column per result column (integers as Int64, other
    /// numbers as Float64, booleans, everything else as text); suppressed cells are null.
    pub fn to_parquet(&self) -> Result<Vec<u8>, datafusion::error::DataFusionError> {
        use std::sync::Arc;

        use datafusion::arrow::array::{
            ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray,
        };
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::parquet::arrow::ArrowWriter;

        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for c in &self.columns {
            let values = self
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
        let batch =
            datafusion::arrow::array::RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None)?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(out)
    }

    fn show(&self, column: &ColumnMeta, value: Option<&Value>) -> String {
        match value {
            None | Some(Value::Null)
                if matches!(column.role, ColumnRole::Key | ColumnRole::Public) =>
            {
                String::new()
            }
            None | Some(Value::Null) => self.privacy.marker.clone(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if n.is_f64() => format_float(x),
                _ => n.to_string(),
            },
            Some(other) => other.to_string(),
        }
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

/// A number for people, without float noise or trailing zeros: `0`, `0.25`, `1e-5`.
pub fn number(x: f64) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if x.abs() < 1e-3 {
        let s = format!("{x:e}");
        // 1.0000000000000002e-5 -> 1e-5 when float noise is all there is.
        match s.split_once('e') {
            Some((m, e)) => {
                let m: f64 = m.parse().unwrap_or(0.0);
                let m = format!("{m:.6}");
                let m = m.trim_end_matches('0').trim_end_matches('.');
                format!("{m}e{e}")
            }
            None => s,
        }
    } else {
        let s = format!("{x:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
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
        let mut row = BTreeMap::new();
        row.insert("place".to_owned(), Value::from("Poole, North"));
        row.insert("n".to_owned(), Value::Null);
        Release {
            format: FORMAT.into(),
            release_id: Some(7),
            columns: vec![
                ColumnMeta {
                    name: "place".into(),
                    role: ColumnRole::Key,
                    data_type: "Utf8".into(),
                },
                ColumnMeta {
                    name: "n".into(),
                    role: ColumnRole::Count,
                    data_type: "Int64".into(),
                },
            ],
            rows: vec![row],
            cells: vec![BTreeMap::from([(
                "n".to_owned(),
                CellMeta {
                    status: CellStatus::Suppressed,
                    interval: None,
                },
            )])],
            privacy: PrivacySummary {
                epsilon: 0.5,
                delta: 0.0,
                max_groups: 1,
                max_rows: 1,
                key_selection: false,
                disclosure: "nhs".into(),
                marker: "*".into(),
            },
            notes: vec![],
        }
    }

    #[test]
    fn csv_quotes_and_marks_suppressed_cells() {
        assert_eq!(sample().to_csv(), "place,n\n\"Poole, North\",*\n");
    }

    #[test]
    fn json_round_trips() {
        let r = sample();
        let back: Release = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
        assert!(r.to_json().contains("\"n\": null"));
    }

    #[test]
    fn table_aligns_and_reports_the_spend() {
        let t = sample().to_table();
        assert!(
            t.starts_with("place         n\n------------  -\nPoole, North  *\n"),
            "{t}"
        );
        assert!(t.contains("epsilon 0.5 and delta 0 spent (release 7)"));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1e-6), "1e-6");
        assert_eq!(number(1.0000000000000002e-5), "1e-5");
        assert_eq!(number(0.0), "0");
    }
}
