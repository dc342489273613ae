//! The record `carelens catalog --deep` leaves beside the extract: when every page of every
//! file was read and found sound, each file's rows and SHA-256, and the extract's version
//! ([`LoadedCatalog::data_version`]: names, sizes, modification times and footers). The
//! engine compares the version with the files when it opens and refuses an extract that
//! changed since it was checked, before anyone's query is charged — a damaged page that
//! arrived after the check would otherwise be found by a query, after its charge.
//!
//! The check also establishes that each person table holds one row per person, which the
//! engine then need not count again at every start (a count over the whole table).
//! Without a record (an extract never checked deeply) the engine opens as before and
//! counts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{CatalogError, FileDigest, LoadedCatalog};

/// Where the record is, relative to the catalog's folder.
pub const CHECK_RECORD: &str = ".carelens/checked.toml";
const FORMAT: &str = "carelens.checked/1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    format: String,
    checked_at: String,
    data_version: String,
    /// The person tables found to hold one row per person.
    one_row_per_person: Vec<String>,
    files: Vec<RecordedFile>,
}

/// What a recorded deep check established about files that have not changed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFacts {
    /// When the check was made.
    pub checked_at: String,
    /// The person tables whose every row has a person id and no id two rows: the engine
    /// need not count them again.
    pub one_row_per_person: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedFile {
    file: String,
    rows: usize,
    sha256: String,
}

impl LoadedCatalog {
    /// The record's path.
    pub fn check_record_path(&self) -> PathBuf {
        self.folder().join(CHECK_RECORD)
    }

    /// Reads every page ([`LoadedCatalog::read_every_page`]) and records the result with
    /// the extract's version, checked before and after the read (files that changed while
    /// they were read are not recorded as checked). Returns the digests and the record's
    /// path, with what the check established.
    pub fn check_deeply(
        &self,
        checked_at: &str,
    ) -> Result<(Vec<FileDigest>, CheckedFacts, PathBuf), CatalogError> {
        let before = self.data_version()?;
        let (digests, one_row_per_person) = self.read_every_page_checking_people()?;
        let after = self.data_version()?;
        let path = self.check_record_path();
        if before != after {
            return Err(CatalogError::ChangedSinceChecked {
                path,
                checked_at: "while it was being read".into(),
            });
        }
        let facts = CheckedFacts {
            checked_at: checked_at.into(),
            one_row_per_person,
        };
        let record = Record {
            format: FORMAT.into(),
            checked_at: checked_at.into(),
            data_version: after,
            one_row_per_person: facts.one_row_per_person.clone(),
            files: digests
                .iter()
                .map(|d| RecordedFile {
                    file: d.shown.clone(),
                    rows: d.rows,
                    sha256: d.sha256.clone(),
                })
                .collect(),
        };
        let text = toml::to_string(&record).map_err(|e| CatalogError::BadCheckRecord {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let io = |source| CatalogError::Io {
            path: path.clone(),
            source,
        };
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(io)?;
        }
        let temp = path.with_extension("toml.new");
        std::fs::write(&temp, text).map_err(io)?;
        std::fs::rename(&temp, &path).map_err(io)?;
        Ok((digests, facts, path))
    }

    /// Whether the files, at `data_version` ([`LoadedCatalog::data_version`], as the caller
    /// read it), are still those `carelens catalog --deep` checked: `Ok(None)` without a
    /// record, and what the check established when they are.
    ///
    /// # Errors
    ///
    /// [`CatalogError::ChangedSinceChecked`] when they changed; [`CatalogError::BadCheckRecord`]
    /// when the record cannot be read.
    pub fn check_against_record(
        &self,
        data_version: &str,
    ) -> Result<Option<CheckedFacts>, CatalogError> {
        let path = self.check_record_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CatalogError::Io { path, source }),
        };
        let bad = |detail: String| CatalogError::BadCheckRecord {
            path: path.clone(),
            detail,
        };
        let record: Record = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if record.format != FORMAT {
            return Err(bad(format!("format `{}`, not `{FORMAT}`", record.format)));
        }
        if record.data_version != data_version {
            return Err(CatalogError::ChangedSinceChecked {
                path,
                checked_at: format!("at {}", record.checked_at),
            });
        }
        Ok(Some(CheckedFacts {
            checked_at: record.checked_at,
            one_row_per_person: record.one_row_per_person,
        }))
    }
}
