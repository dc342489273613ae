//! Synthetic, Wessex-shaped care-record extract for carelens.
//!
//! `generate` writes every table of the extract described in `shared/DATA.md` — `person`,
//! `condition`, `encounter`, `medication`, `observation` and the public reference tables
//! `practice_lookup` and `lsoa_lookup` — as zstd-compressed Parquet, with a ready
//! `carelens.toml` catalog beside them.
//!
//! The data are made up but shaped like the real thing: the age structure of Dorset and of
//! Hampshire and the Isle of Wight, conditions that depend on age, sex, deprivation and
//! each other, heavy-tailed hospital use with winter peaks, treatments and measurements
//! that follow conditions, and deliberate warts (missing ethnicity, LSOAs outside the
//! lookup, de-registered and dead people, sparse cells). See `docs/synthetic-data.md`.
//!
//! Deterministic: the same `--persons` and `--seed` give the same extract, on any number
//! of threads. People are generated in fixed chunks, each from its own seed, in parallel;
//! one writer thread per table streams them to Parquet, so memory stays bounded. Output
//! goes to a staging folder that is renamed into place only when complete.
//!
//! Layer: beside the engine, depending only on `carelens-catalog` (for the catalog it
//! writes) and on arrow/parquet (see `docs/architecture.md`).
//!
//! ```no_run
//! use carelens_synth::{Options, generate};
//!
//! let options = Options { persons: 1_000, seed: 42, out: "extract".into(), force: false };
//! let summary = generate(&options, &|_persons_done| {})?;
//! assert_eq!(summary.persons, 1_000);
//! # Ok::<(), carelens_synth::SynthError>(())
//! ```

mod calendar;
mod catalog;
mod chunk;
mod clinical;
mod geography;
mod ids;
mod output;
mod person;
mod records;
mod sampling;
mod tables;

use std::fs;
use std::path::{Path, PathBuf};

use arrow::error::ArrowError;

pub use catalog::extract_catalog;

use crate::chunk::Generator;
use crate::geography::Geography;
use crate::person::Population;
use crate::records::Distributions;

/// The largest extract `generate` accepts: ten times Wessex.
pub const MAX_PERSONS: u64 = 30_000_000;

/// The catalog's file name inside an extract.
pub const CATALOG_FILE: &str = "carelens.toml";

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of people (1 to [`MAX_PERSONS`]).
    pub persons: u64,
    /// Seed: the same seed and size give the same extract.
    pub seed: u64,
    /// Output folder; created, or replaced if `force` is set.
    pub out: PathBuf,
    /// Replace an existing extract in `out`.
    pub force: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The output folder.
    pub out: PathBuf,
    /// Number of people.
    pub persons: u64,
    /// `(table, rows)` for every table, in catalog order.
    pub rows: Vec<(String, u64)>,
    /// Total size of the extract in bytes.
    pub bytes: u64,
}

impl Summary {
    /// Rows in the four events tables together.
    pub fn event_rows(&self) -> u64 {
        self.rows
            .iter()
            .filter(|(name, _)| {
                matches!(
                    name.as_str(),
                    catalog::CONDITION
                        | catalog::ENCOUNTER
                        | catalog::MEDICATION
                        | catalog::OBSERVATION
                )
            })
            .map(|(_, rows)| rows)
            .sum()
    }
}

/// Why an extract could not be generated. Nothing is left in the output folder when
/// generation fails.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// `--persons` out of range.
    #[error("--persons must be between 1 and {max}, got {persons}")]
    PersonsOutOfRange {
        /// The requested number.
        persons: u64,
        /// [`MAX_PERSONS`].
        max: u64,
    },
    /// The output folder exists, is not empty, and `--force` was not given.
    #[error(
        "{} already exists and is not empty\nhint: choose a new folder, or pass --force to replace an earlier extract",
        .0.display()
    )]
    OutputNotEmpty(PathBuf),
    /// `--force` was given for a folder that does not hold an extract.
    #[error(
        "refusing to replace {}: it is not a carelens extract (no {CATALOG_FILE} in it)\nhint: --force only replaces a folder written by `carelens synth`; choose a new folder",
        .0.display()
    )]
    NotAnExtract(PathBuf),
    /// The output path exists and is a file.
    #[error("{} exists and is not a folder", .0.display())]
    OutputIsAFile(PathBuf),
    /// A file-system operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done, e.g. "create".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a Parquet file failed.
    #[error("could not write {}", path.display())]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The Parquet writer's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building a record batch failed (a bug: schemas come from the catalog).
    #[error("could not assemble a record batch")]
    Arrow(#[from] ArrowError),
    /// Serialising the catalog failed (a bug).
    #[error("could not serialise the catalog")]
    Catalog(#[from] toml::ser::Error),
    /// A writer thread panicked (a bug).
    #[error("a Parquet writer thread panicked")]
    WriterPanicked,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SynthError {
    let path = path.to_owned();
    move |source| SynthError::Io {
        action,
        path,
        source,
    }
}

/// Generates an extract. `progress` is called with the number of people written so far.
pub fn generate(options: &Options, progress: &(dyn Fn(u64) + Sync)) -> Result<Summary, SynthError> {
    let Options {
        persons,
        seed,
        ref out,
        force,
    } = *options;
    if persons == 0 || persons > MAX_PERSONS {
        return Err(SynthError::PersonsOutOfRange {
            persons,
            max: MAX_PERSONS,
        });
    }
    check_output(out, force)?;

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io("create", &parent))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "extract".to_owned());
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(&parent)
        .map_err(io("create a staging folder in", &parent))?;

    let rows = write_extract(staging.path(), persons, seed, progress)?;

    // Move the finished extract into place. An earlier extract (with --force) is moved
    // aside first and removed only after the new one is in place.
    let staged = staging.keep();
    let mut aside = None;
    if out.exists() {
        let old = parent.join(format!(".{name}.replaced-{}", std::process::id()));
        fs::rename(out, &old).map_err(io("move aside", out))?;
        aside = Some(old);
    }
    if let Err(e) = fs::rename(&staged, out) {
        if let Some(old) = &aside {
            let _ = fs::rename(old, out);
        }
        let _ = fs::remove_dir_all(&staged);
        return Err(io("move the finished extract to", out)(e));
    }
    if let Some(old) = aside {
        fs::remove_dir_all(&old).map_err(io("remove the replaced extract at", &old))?;
    }

    Ok(Summary {
        out: out.clone(),
        persons,
        bytes: output::folder_size(out),
        rows,
    })
}

/// Refuses an output path that must not be written to.
fn check_output(out: &Path, force: bool) -> Result<(), SynthError> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(SynthError::OutputIsAFile(out.to_owned()));
    }
    let mut entries = fs::read_dir(out).map_err(io("read", out))?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !force {
        return Err(SynthError::OutputNotEmpty(out.to_owned()));
    }
    if !out.join(CATALOG_FILE).is_file() {
        return Err(SynthError::NotAnExtract(out.to_owned()));
    }
    Ok(())
}

/// Writes every table and the catalog into `dir`; returns rows per table.
fn write_extract(
    dir: &Path,
    persons: u64,
    seed: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<(String, u64)>, SynthError> {
    let geo = Geography::get();
    let catalog = extract_catalog(persons, seed);
    let schema = |name: &str| {
        catalog
            .table(name)
            .map(tables::schema_of)
            .unwrap_or_else(|| unreachable!("the extract catalog lists {name}"))
    };
    let path = |name: &str| dir.join(format!("{name}.parquet"));

    let (practice, lsoa) = output::reference_batches(
        geo,
        &schema(catalog::PRACTICE_LOOKUP),
        &schema(catalog::LSOA_LOOKUP),
    )?;
    let practice_rows = output::write_parquet(
        &path(catalog::PRACTICE_LOOKUP),
        practice.schema(),
        [practice],
    )?;
    let lsoa_rows = output::write_parquet(&path(catalog::LSOA_LOOKUP), lsoa.schema(), [lsoa])?;

    let private = [
        catalog::PERSON,
        catalog::CONDITION,
        catalog::ENCOUNTER,
        catalog::MEDICATION,
        catalog::OBSERVATION,
    ];
    let generator = Generator {
        seed,
        persons,
        geo,
        population: Population::new(geo),
        dist: Distributions::new(),
        schemas: private.map(schema),
    };
    let counts = output::write_private_tables(
        private.map(path),
        private.map(schema),
        generator.chunks(),
        |chunk| {
            let batches = generator.chunk(chunk)?;
            Ok((batches.batches, generator.persons_in(chunk)))
        },
        progress,
    )?;

    let header = format!(
        "carelens catalog of a synthetic Wessex extract, written by\n\
         `carelens synth --persons {persons} --seed {seed}`. No real person is in it.\n\
         Format: docs/catalog.md. Bounds are clamps applied by the engine, not checks on data."
    );
    let toml = catalog.to_toml(&header)?;
    let catalog_path = dir.join(CATALOG_FILE);
    fs::write(&catalog_path, toml).map_err(io("write", &catalog_path))?;

    let mut rows: Vec<(String, u64)> = private
        .iter()
        .zip(counts)
        .map(|(name, n)| ((*name).to_owned(), n))
        .collect();
    rows.push((catalog::PRACTICE_LOOKUP.to_owned(), practice_rows));
    rows.push((catalog::LSOA_LOOKUP.to_owned(), lsoa_rows));
    Ok(rows)
}
