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
mod placement;
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

/// How every catalog `synth` writes begins; `--force` replaces only folders whose catalog
/// does.
const CATALOG_HEADER: &str = "# carelens catalog of a synthetic Wessex extract";

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
    /// An earlier extract replaced with `--force` that could not be deleted afterwards
    /// (the new extract is in place; this folder can be deleted by hand).
    pub leftover: Option<PathBuf>,
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
        "refusing to replace {}: it is not a carelens extract (it holds files `carelens synth` did not write)\nhint: --force only replaces a folder that holds nothing but an earlier extract; choose a new folder",
        .0.display()
    )]
    NotAnExtract(PathBuf),
    /// The output path exists and is a file.
    #[error(
        "{} exists and is not a folder\nhint: --out names the folder to create for the extract",
        .0.display()
    )]
    OutputIsAFile(PathBuf),
    /// The output path does not name a folder of its own (`.`, `..`, `/`).
    #[error(
        "--out {} does not name a new folder\nhint: give the extract a folder of its own, e.g. --out wessex-extract",
        .0.display()
    )]
    OutputNotNamed(PathBuf),
    /// The output path is a symbolic link.
    #[error(
        "--out {} is a symbolic link\nhint: pass the folder it points to",
        .0.display()
    )]
    OutputIsALink(PathBuf),
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

pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SynthError {
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
    let target = placement::check(out, force)?;
    fs::create_dir_all(&target.parent).map_err(io("create", &target.parent))?;
    // The staging folder is removed when it drops, on every error path.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.partial-", target.name))
        .tempdir_in(&target.parent)
        .map_err(io("create a staging folder in", &target.parent))?;

    let rows = write_extract(staging.path(), persons, seed, progress)?;
    let leftover = placement::place(staging, out, &target, force)?;

    Ok(Summary {
        out: out.clone(),
        persons,
        bytes: output::folder_size(out),
        rows,
        leftover,
    })
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
        |chunk| Ok((generator.chunk(chunk)?, generator.persons_in(chunk))),
        progress,
    )?;

    let header = format!(
        "{}, written by\n\
         `carelens synth --persons {persons} --seed {seed}`. No real person is in it.\n\
         Format: docs/catalog.md. Bounds are clamps applied by the engine, not checks on data.",
        CATALOG_HEADER.trim_start_matches("# ")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn generate_with_threads(threads: usize, out: &Path) -> Summary {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let options = Options {
            persons: 2 * chunk::CHUNK_PERSONS + 1,
            seed: 99,
            out: out.to_owned(),
            force: false,
        };
        pool.install(|| generate(&options, &|_| {})).unwrap()
    }

    #[test]
    fn extracts_do_not_depend_on_the_number_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let one = generate_with_threads(1, &dir.path().join("one"));
        let four = generate_with_threads(4, &dir.path().join("four"));
        assert_eq!(one.rows, four.rows);
        for file in placement::EXTRACT_FILES {
            let a = fs::read(one.out.join(file)).unwrap();
            let b = fs::read(four.out.join(file)).unwrap();
            assert!(a == b, "{file} differs between 1 and 4 threads");
        }
    }

    #[test]
    fn progress_reaches_every_person_in_chunk_order() {
        let dir = tempfile::tempdir().unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let options = Options {
            persons: chunk::CHUNK_PERSONS + 5,
            seed: 1,
            out: dir.path().join("x"),
            force: false,
        };
        generate(&options, &|done| seen.lock().unwrap().push(done)).unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![chunk::CHUNK_PERSONS, chunk::CHUNK_PERSONS + 5]
        );
    }
}
