//! A released result and its wire format (`carelens.release/1`), documented in
//! `docs/wire-format.md`.
//!
//! The JSON is what the ledger stores and what a cached answer is served from; the faces
//! render tables, CSV and Parquet from it (`carelens-render`), never from anything
//! unprotected. This module is data only.

use std::collections::BTreeMap;

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
    /// A quantile (a median, a percentile): a candidate value chosen by the exponential
    /// mechanism; its error is in ranks (see `explain`), so it has no interval.
    Quantile,
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
    /// Why a released numeric cell has no interval (a ratio whose denominator's interval
    /// reaches 0, a derived value carelens cannot bound); absent when it has one, and for
    /// keys and suppressed cells.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub no_interval: Option<String>,
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
    /// The names of the key columns, in order.
    pub fn key_names(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.role == ColumnRole::Key)
            .map(|c| c.name.as_str())
            .collect()
    }

    /// A small release for tests of what reads releases: one row, a key with a comma in
    /// it and a suppressed count, release 7 at ε 0.5 under `nhs`.
    #[cfg(any(test, feature = "testing"))]
    pub fn example() -> Release {
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
                    no_interval: None,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let r = Release::example();
        let json = serde_json::to_string_pretty(&r).unwrap();
        let back: Release = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(json.contains("\"n\": null"));
    }
}
