//! The record `carelens catalog --deep` leaves beside the extract: when every page of every
//! file was read and found sound, each file's rows and SHA-256, and the extract's version
//! ([`LoadedCatalog::data_version`]: names, sizes, modification times and footers). The
//! engine compares the version with the files when it opens and refuses an extract that
//! changed since it was checked, before anyone's query is charged — a damaged page that
//! arrived after the check would otherwise be found by a query, after its charge.
//!
//! Without a record (an extract never checked deeply) the engine opens as before; the
//! record is the operator's promise, kept by the engine.

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
    files: Vec<RecordedFile>,
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
    /// path.
    pub fn check_deeply(
        &self,
        checked_at: &str,
    ) -> Result<(Vec<FileDigest>, PathBuf), CatalogError> {
        let before = self.data_version()?;
        let digests = self.read_every_page()?;
        let after = self.data_version()?;
        let path = self.check_record_path();
        if before != after {
            return Err(CatalogError::ChangedSinceChecked {
                path,
                checked_at: "while it was being read".into(),
            });
        }
        let record = Record {
            format: FORMAT.into(),
            checked_at: checked_at.into(),
            data_version: after,
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
        Ok((digests, path))
    }

    /// Whether the files are still those `carelens catalog --deep` checked: `Ok(None)`
    /// without a record, `Ok(Some(when))` when they are.
    ///
    /// # Errors
    ///
    /// [`CatalogError::ChangedSinceChecked`] when they changed; [`CatalogError::BadCheckRecord`]
    /// when the record cannot be read.
    pub fn check_against_record(&self) -> Result<Option<String>, CatalogError> {
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
        if record.data_version != self.data_version()? {
            return Err(CatalogError::ChangedSinceChecked {
                path,
                checked_at: format!("at {}", record.checked_at),
            });
        }
        Ok(Some(record.checked_at))
    }
}
