//! The carelens catalog: one TOML file (`carelens.toml`) that says which Parquet files make
//! up a care-record extract, which column is the person, how each table relates to the
//! person, and the privacy metadata the engine needs — value bounds, fixed-point precision
//! and public domains for group keys.
//!
//! Layer: above `carelens-privacy`, below the engine; the synthetic-data generator writes
//! catalogs through this model (see `docs/architecture.md`). The file format and every check
//! are described in `docs/catalog.md`.
//!
//! Three steps, each stricter than the last:
//!
//! 1. **Parse** ([`Catalog`], via serde): known keys and value types only.
//! 2. **Load** ([`load`]): parse, then every static rule ([`validate`]) — names, the person
//!    column in every private table, bounds, precision, domains, contribution bounds — and
//!    resolve each table's `path` to Parquet files inside the catalog's folder. Every
//!    problem is collected and reported at once ([`CatalogError::Invalid`]), each with a
//!    location such as `tables.encounter.columns.cost_gbp` and a hint.
//! 3. **Check the files** ([`LoadedCatalog::check_files`]): compare the catalog with the
//!    Parquet footers (schemas, row counts, null counts — no data pages, and no data value
//!    ever appears in a message), giving the [`CatalogReport`] that `carelens catalog`
//!    prints.
//!
//! Errors keep their cause as [`std::error::Error::source`] rather than repeating it, so
//! print the chain (anyhow's `{:#}` or `{:?}`): for a TOML syntax error, that is where the
//! offending line is shown.
//!
//! ```no_run
//! # fn main() -> Result<(), carelens_catalog::CatalogError> {
//! let loaded = carelens_catalog::load(std::path::Path::new("sample-data/carelens.toml"))?;
//! let report = loaded.check_files()?;
//! print!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! Parsing a catalog and checking it statically, without its files:
//!
//! ```
//! use carelens_catalog::{Catalog, TableKind};
//!
//! let catalog: Catalog = toml::from_str(r#"
//!     [dataset]
//!     name = "tiny"
//!     person_column = "person_id"
//!
//!     [[tables]]
//!     name = "person"
//!     kind = "person"
//!     path = "person.parquet"
//!     columns = [
//!       { name = "person_id", type = "Int64" },
//!       { name = "sex", type = "Utf8", domain = ["F", "M", "I", "U"] },
//!     ]
//! "#).unwrap();
//! assert_eq!(catalog.tables[0].kind, TableKind::Person);
//! assert_eq!(carelens_catalog::validate(&catalog), vec![]);
//! ```

mod checked;
mod error;
mod files;
mod governance;
mod load;
mod model;
mod report;
#[cfg(test)]
mod test_support;
mod validate;

pub use checked::{CHECK_RECORD, CheckedFacts};
pub use error::{CatalogError, Problem};
pub use files::FileDigest;
pub use governance::{DEFAULT_LEDGER_PATH, DisclosureSetting, LedgerSection, Policy, Role, User};
pub use load::{LoadedCatalog, TableFiles, load};
pub use model::{Catalog, Column, ColumnType, Dataset, Literal, PublicDomain, Table, TableKind};
pub use report::{CatalogReport, ColumnReport, TableReport, thousands};
pub use validate::{MAX_DOMAIN_RANGE, validate};
