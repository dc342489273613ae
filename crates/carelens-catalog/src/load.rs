//! Reading a catalog file, validating it and resolving its tables' paths.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use carelens_privacy::DisclosurePolicy;

use crate::error::{CatalogError, Problem, location};
use crate::model::{Catalog, Table};
use crate::validate::validate;

/// A catalog that parsed, passed every static check, and whose tables' paths all resolve to
/// Parquet files inside the catalog's folder.
///
/// Made by [`load`]. [`LoadedCatalog::check_files`] goes on to compare it with the files.
#[derive(Debug, Clone)]
pub struct LoadedCatalog {
    catalog: Catalog,
    path: PathBuf,
    folder: PathBuf,
    files: Vec<TableFiles>,
    /// The policy's disclosure rules, resolved (a preset's or the custom ones).
    disclosure: DisclosurePolicy,
}

/// Where one table's data is: the resolved `path` and the Parquet files under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFiles {
    path: PathBuf,
    files: Vec<PathBuf>,
    is_folder: bool,
}

impl TableFiles {
    /// The table's `path`, resolved: absolute, symbolic links followed, inside the catalog's
    /// folder. A file or a folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table's Parquet files, absolute: the file itself, or the folder's `*.parquet`
    /// files sorted by name (never empty).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Whether the table's `path` is a folder of Parquet files.
    pub fn is_folder(&self) -> bool {
        self.is_folder
    }
}

impl LoadedCatalog {
    /// The catalog as written in the file.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The catalog file, as given to [`load`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder the catalog is in (absolute, symbolic links resolved); tables' paths are
    /// relative to it. If the catalog file is itself a link, this is the folder of the link,
    /// not of its target.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The files of the table with this name, if the catalog lists it.
    pub fn table_files(&self, name: &str) -> Option<&TableFiles> {
        self.catalog
            .tables
            .iter()
            .position(|t| t.name == name)
            .and_then(|i| self.files.get(i))
    }

    /// Every table with its files, in catalog order.
    pub fn tables(&self) -> impl Iterator<Item = (&Table, &TableFiles)> {
        self.catalog.tables.iter().zip(&self.files)
    }

    /// The disclosure rules every release follows, with the name they are shown by (the
    /// preset's, or `custom`). Resolved when the catalog was loaded: never a default.
    pub fn disclosure(&self) -> (&str, DisclosurePolicy) {
        let name = match &self.catalog.policy.disclosure {
            crate::DisclosureSetting::Preset(name) => name.as_str(),
            crate::DisclosureSetting::Custom(_) => "custom",
        };
        (name, self.disclosure)
    }

    /// The ledger's SQLite file: `[ledger] path`, or [`crate::DEFAULT_LEDGER_PATH`],
    /// relative to the catalog's folder.
    pub fn ledger_path(&self) -> PathBuf {
        let relative = self
            .catalog
            .ledger
            .as_ref()
            .map_or(crate::DEFAULT_LEDGER_PATH, |l| l.path.as_str());
        self.folder.join(relative)
    }

    /// The user with this name, if the catalog lists them.
    pub fn user(&self, name: &str) -> Option<&crate::User> {
        self.catalog.users.iter().find(|u| u.name == name)
    }

    /// A version of the data: a SHA-256 over every table's name and, for each of its
    /// Parquet files, its path, size, modification time and last 64 KiB (the footer, which
    /// holds the schema, row counts, offsets and statistics of every column chunk).
    ///
    /// For a table that is a folder, the names of everything in the folder are hashed too,
    /// so a file added (or a sub-folder, a `_`- or `.`-named file) changes the version even
    /// though the engine reads only the files listed when the catalog was loaded.
    ///
    /// Any rewrite of a file changes it; the release cache is keyed by it, so changed data
    /// never serves an old release. Reads at most 64 KiB per file.
    pub fn data_version(&self) -> Result<String, CatalogError> {
        use sha2::{Digest, Sha256};
        use std::io::{Read, Seek, SeekFrom};

        const TAIL: u64 = 64 * 1024;
        let mut hasher = Sha256::new();
        for (table, files) in self.tables() {
            hasher.update(table.name.as_bytes());
            hasher.update([0]);
            if files.is_folder() {
                let io = |source| CatalogError::Io {
                    path: files.path().to_owned(),
                    source,
                };
                let mut names = std::fs::read_dir(files.path())
                    .map_err(io)?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(io)?;
                names.sort();
                for name in names {
                    hasher.update(name.as_encoded_bytes());
                    hasher.update([0]);
                }
                hasher.update([1]);
            }
            for file in files.files() {
                let io = |source| CatalogError::Io {
                    path: file.clone(),
                    source,
                };
                let mut f = std::fs::File::open(file).map_err(io)?;
                let meta = f.metadata().map_err(io)?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                let relative = file.strip_prefix(&self.folder).unwrap_or(file);
                hasher.update(relative.to_string_lossy().as_bytes());
                hasher.update([0]);
                hasher.update(meta.len().to_le_bytes());
                hasher.update(modified.to_le_bytes());
                let start = meta.len().saturating_sub(TAIL);
                f.seek(SeekFrom::Start(start)).map_err(io)?;
                let mut tail = Vec::with_capacity((meta.len() - start) as usize);
                f.read_to_end(&mut tail).map_err(io)?;
                hasher.update(&tail);
            }
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Gives up the file information and keeps the catalog.
    pub fn into_catalog(self) -> Catalog {
        self.catalog
    }
}

/// Reads the catalog at `path`, runs every static check ([`crate::validate`]) and resolves
/// each table's `path`.
///
/// A table's `path` must be relative, and must resolve — after following symbolic links —
/// to a `.parquet` file or a folder with at least one `*.parquet` file, inside the catalog's
/// folder. In a folder, only its own files whose names end in `.parquet` count (not
/// sub-folders), except hidden files and job markers whose names start with `.` or `_`.
///
/// # Errors
///
/// [`CatalogError::Io`] if the catalog or a table's folder cannot be read,
/// [`CatalogError::Parse`] if it is not a well-formed catalog, and
/// [`CatalogError::Invalid`] with every problem found otherwise.
pub fn load(path: &Path) -> Result<LoadedCatalog, CatalogError> {
    let text = fs::read_to_string(path).map_err(|source| CatalogError::Io {
        path: path.to_owned(),
        source,
    })?;
    let catalog: Catalog = toml::from_str(&text).map_err(|source| {
        let (line, column) = match source.span() {
            Some(span) => {
                let (line, column) = line_column(&text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        CatalogError::Parse {
            path: path.to_owned(),
            line,
            column,
            source: Box::new(source),
        }
    })?;

    let parent = folder_of(path);
    let folder = fs::canonicalize(parent).map_err(|source| CatalogError::Io {
        path: parent.to_owned(),
        source,
    })?;

    let mut problems = validate(&catalog);
    let mut files = Vec::with_capacity(catalog.tables.len());
    for table in &catalog.tables {
        match resolve(&folder, table)? {
            Ok(resolved) => files.push(resolved),
            Err(problem) => problems.push(problem),
        }
    }

    // Validation names an unknown disclosure preset among the problems.
    let disclosure = catalog.policy.disclosure.resolve();
    if let (true, Ok(disclosure)) = (problems.is_empty(), disclosure) {
        Ok(LoadedCatalog {
            catalog,
            path: path.to_owned(),
            folder,
            files,
            disclosure,
        })
    } else {
        Err(CatalogError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }
}

/// The folder a catalog file is in, as a path that can be canonicalised: `carelens.toml`
/// alone has an empty parent, which means the working directory.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

const PATH_HINT: &str = "write the path relative to the catalog's folder, e.g. \
                         `path = \"person.parquet\"`, and keep the extract beside the catalog";

/// Resolves one table's `path`: `Ok(Err(problem))` for a problem with the catalog,
/// `Err` when the file system fails in a way that is not about the catalog.
fn resolve(folder: &Path, table: &Table) -> Result<Result<TableFiles, Problem>, CatalogError> {
    let at = location::table_field(&table.name, "path");
    let written = table.path.as_str();
    let problem =
        |message: String, hint: &str| -> Result<Result<TableFiles, Problem>, CatalogError> {
            Ok(Err(Problem::new(&at, message, hint)))
        };

    if written.is_empty() {
        return problem("the path is empty".to_owned(), PATH_HINT);
    }
    let relative = Path::new(written);
    if relative.is_absolute() || relative.has_root() {
        return problem(format!("the path `{written}` is absolute"), PATH_HINT);
    }
    let mut depth: usize = 0;
    for component in relative.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return problem(
                        format!("the path `{written}` leads out of the catalog's folder with `..`"),
                        PATH_HINT,
                    );
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                return problem(format!("the path `{written}` is absolute"), PATH_HINT);
            }
        }
    }

    let joined = folder.join(relative);
    let resolved = match fs::canonicalize(&joined) {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return problem(
                format!(
                    "the path `{written}` does not exist (looked for {})",
                    joined.display()
                ),
                "check the spelling, or put the table's Parquet file or folder there \
                 (`carelens synth` writes a sample extract)",
            );
        }
        Err(source) => {
            return Err(CatalogError::Io {
                path: joined,
                source,
            });
        }
    };
    if !resolved.starts_with(folder) {
        return problem(
            format!(
                "the path `{written}` resolves to {}, outside the catalog's folder {}",
                resolved.display(),
                folder.display()
            ),
            "copy the files into the catalog's folder instead of linking to them, or move the \
             catalog next to the data",
        );
    }

    let metadata = fs::metadata(&resolved).map_err(|source| CatalogError::Io {
        path: resolved.clone(),
        source,
    })?;
    if metadata.is_file() {
        if !is_parquet_name(&resolved) {
            return problem(
                format!("the path `{written}` is not a `.parquet` file"),
                "name a Parquet file ending in `.parquet`, or a folder of them",
            );
        }
        return Ok(Ok(TableFiles {
            files: vec![resolved.clone()],
            path: resolved,
            is_folder: false,
        }));
    }
    if !metadata.is_dir() {
        return problem(
            format!("the path `{written}` is neither a file nor a folder"),
            "name a Parquet file ending in `.parquet`, or a folder of them",
        );
    }

    let mut files = Vec::new();
    let entries = fs::read_dir(&resolved).map_err(|source| CatalogError::Io {
        path: resolved.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| CatalogError::Io {
            path: resolved.clone(),
            source,
        })?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.starts_with('.')
            || name_str.starts_with('_')
            || !is_parquet_name(Path::new(&name))
        {
            continue;
        }
        let file = resolved.join(&name);
        let target = match fs::canonicalize(&file) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return problem(
                    format!("`{written}/{name_str}` is a broken symbolic link"),
                    "remove the link, or copy the file it meant into the folder",
                );
            }
            Err(source) => return Err(CatalogError::Io { path: file, source }),
        };
        if !target.starts_with(folder) {
            return problem(
                format!(
                    "`{written}/{name_str}` resolves to {}, outside the catalog's folder {}",
                    target.display(),
                    folder.display()
                ),
                "copy the files into the catalog's folder instead of linking to them",
            );
        }
        if target.is_file() {
            files.push(file);
        }
    }
    if files.is_empty() {
        return problem(
            format!("the folder `{written}` has no `.parquet` files"),
            "put the table's Parquet files in the folder (sub-folders are not read), or point \
             `path` at the right place",
        );
    }
    files.sort();
    Ok(Ok(TableFiles {
        path: resolved,
        files,
        is_folder: true,
    }))
}

fn is_parquet_name(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "parquet")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::test_support::{
        VALID, assert_problem, person_columns, practice_columns, write_fixture, write_fixture_with,
        write_parquet,
    };

    fn invalid(err: CatalogError) -> Vec<Problem> {
        match err {
            CatalogError::Invalid { problems, .. } => problems,
            other => panic!("expected an invalid catalog, got {other:?}"),
        }
    }

    /// The fixture with one table's `path` replaced.
    fn with_path(table: &str, path: &str) -> String {
        let old = format!("name = \"{table}\"");
        let (before, after) = VALID.split_once(&old).unwrap();
        let (kind, rest) = after.split_once("path = ").unwrap();
        let (_, rest) = rest.split_once('\n').unwrap();
        format!("{before}{old}{kind}path = {path:?}\n{rest}")
    }

    #[test]
    fn valid_catalog_loads_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path());
        let loaded = load(&path).unwrap();
        let folder = fs::canonicalize(dir.path()).unwrap();

        assert_eq!(loaded.path(), path);
        assert_eq!(loaded.folder(), folder);
        assert_eq!(loaded.catalog().tables.len(), 3);

        let person = loaded.table_files("person").unwrap();
        assert!(!person.is_folder());
        assert_eq!(person.path(), folder.join("person.parquet"));
        assert_eq!(person.files(), [folder.join("person.parquet")]);

        let encounter = loaded.table_files("encounter").unwrap();
        assert!(encounter.is_folder());
        assert_eq!(encounter.path(), folder.join("encounter"));
        assert_eq!(
            encounter.files(),
            [
                folder.join("encounter/part-0.parquet"),
                folder.join("encounter/part-1.parquet"),
            ]
        );
        assert!(loaded.table_files("nope").is_none());
        let names: Vec<&str> = loaded.tables().map(|(t, _)| t.name.as_str()).collect();
        assert_eq!(names, ["person", "encounter", "practice_lookup"]);
    }

    #[test]
    fn ledger_path_defaults_beside_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path());
        let loaded = load(&path).unwrap();
        assert_eq!(
            loaded.ledger_path(),
            loaded.folder().join(".carelens/ledger.sqlite")
        );
        assert!(loaded.user("analyst").is_none());
    }

    #[test]
    fn data_version_is_stable_and_changes_with_any_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path());
        let loaded = load(&path).unwrap();
        let v1 = loaded.data_version().unwrap();
        assert_eq!(v1.len(), 64);
        assert_eq!(
            loaded.data_version().unwrap(),
            v1,
            "same files, same version"
        );
        // Rewrite one part of a folder table with different content.
        let part = dir.path().join("encounter/part-1.parquet");
        let mut bytes = fs::read(&part).unwrap();
        bytes.push(0);
        fs::write(&part, bytes).unwrap();
        let v2 = loaded.data_version().unwrap();
        assert_ne!(v2, v1);
        // A removed file is an I/O error naming it, not a silent new version.
        fs::remove_file(&part).unwrap();
        let e = loaded.data_version().unwrap_err();
        assert!(e.to_string().contains("part-1.parquet"), "{e}");
    }

    #[test]
    fn catalog_in_the_working_directory_has_folder_dot() {
        assert_eq!(folder_of(Path::new("carelens.toml")), Path::new("."));
        assert_eq!(folder_of(Path::new("a/carelens.toml")), Path::new("a"));
        assert_eq!(folder_of(Path::new("/carelens.toml")), Path::new("/"));
    }

    #[test]
    fn folder_listing_is_sorted_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path());
        let enc = dir.path().join("encounter");
        fs::write(enc.join("_SUCCESS"), "").unwrap();
        fs::write(enc.join(".part-0.parquet.crc"), "").unwrap();
        fs::write(enc.join("._part-9.parquet"), "").unwrap();
        fs::write(enc.join("notes.txt"), "").unwrap();
        fs::create_dir(enc.join("nested.parquet")).unwrap();
        fs::create_dir(enc.join("sub")).unwrap();
        write_parquet(&enc.join("sub/part-5.parquet"), person_columns(1));
        let loaded = load(&path).unwrap();
        let names: Vec<String> = loaded
            .table_files("encounter")
            .unwrap()
            .files()
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["part-0.parquet", "part-1.parquet"]);
    }

    #[test]
    fn missing_catalog_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carelens.toml");
        let err = load(&path).unwrap_err();
        assert!(
            matches!(&err, CatalogError::Io { path: p, .. } if p == &path),
            "{err:?}"
        );
        assert_eq!(err.to_string(), format!("cannot read {}", path.display()));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn parse_error_names_the_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace(
            "{ name = \"cost_gbp\", type = \"Float64\", bounds",
            "{ name = \"cost_gbp\", type = \"Float64\", bound",
        );
        let path = write_fixture_with(dir.path(), &text);
        let err = load(&path).unwrap_err();
        let CatalogError::Parse {
            line,
            column,
            source,
            ..
        } = &err
        else {
            panic!("expected a parse error, got {err:?}");
        };
        let expected_line = VALID.lines().position(|l| l.contains("cost_gbp")).unwrap() + 1;
        assert_eq!(*line, Some(expected_line));
        assert!(column.is_some());
        assert!(
            source.message().contains("unknown field `bound`"),
            "{source}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cannot parse catalog {}:{expected_line}:{}",
                path.display(),
                column.unwrap()
            )
        );
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains(&format!("line {expected_line}")), "{cause}");
    }

    #[test]
    fn unknown_key_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace("[dataset]\n", "[dataset]\nowner = \"me\"\n");
        let path = write_fixture_with(dir.path(), &text);
        let err = load(&path).unwrap_err();
        assert!(
            matches!(err, CatalogError::Parse { line: Some(3), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé = x", 0), (1, 1));
        assert_eq!(line_column("ab\ncé = x", 3), (2, 1));
        assert_eq!(line_column("ab\ncé = x", "ab\ncé ".len()), (2, 4));
    }

    #[test]
    fn invalid_catalog_lists_static_and_path_problems_together() {
        let dir = tempfile::tempdir().unwrap();
        let text = with_path("person", "people.parquet")
            .replace("bounds = [0, 5000]", "bounds = [5000, 0]");
        let path = write_fixture_with(dir.path(), &text);
        let err = load(&path).unwrap_err();
        let shown = err.to_string();
        let problems = invalid(err);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_problem(
            &problems,
            "tables.encounter.columns.cost_gbp",
            "bounds are reversed",
        );
        assert_problem(&problems, "tables.person.path", "does not exist");
        assert!(shown.starts_with(&format!(
            "invalid catalog {} (2 problems)\n  tables.encounter.columns.cost_gbp: bounds are reversed (lo 5000 > hi 0)\n    hint: write bounds as [lo, hi] with lo <= hi\n  tables.person.path: ",
            path.display()
        )), "{shown}");
    }

    #[test]
    fn absolute_path_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let absolute = dir.path().join("person.parquet");
        let path = write_fixture_with(dir.path(), &with_path("person", absolute.to_str().unwrap()));
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(&problems, "tables.person.path", "is absolute");
    }

    #[test]
    fn parent_escape_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("extract");
        write_parquet(&dir.path().join("outside.parquet"), person_columns(3));
        let path = write_fixture_with(&inner, &with_path("person", "../outside.parquet"));
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(
            &problems,
            "tables.person.path",
            "leads out of the catalog's folder with `..`",
        );
        let path = write_fixture_with(
            &inner,
            &with_path("person", "encounter/../../outside.parquet"),
        );
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(
            &problems,
            "tables.person.path",
            "leads out of the catalog's folder",
        );
    }

    #[test]
    fn parent_inside_the_folder_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture_with(
            dir.path(),
            &with_path("person", "encounter/../person.parquet"),
        );
        let loaded = load(&path).unwrap();
        let folder = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            loaded.table_files("person").unwrap().path(),
            folder.join("person.parquet")
        );
    }

    #[test]
    fn symlink_escaping_the_folder_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("extract");
        write_parquet(&dir.path().join("outside.parquet"), person_columns(3));
        fs::create_dir_all(dir.path().join("outside_dir")).unwrap();
        write_parquet(
            &dir.path().join("outside_dir/p.parquet"),
            practice_columns(),
        );
        let path = write_fixture_with(&inner, &with_path("person", "linked.parquet"));
        symlink(
            dir.path().join("outside.parquet"),
            inner.join("linked.parquet"),
        )
        .unwrap();
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(
            &problems,
            "tables.person.path",
            "outside the catalog's folder",
        );

        // A linked folder, and a link inside a folder.
        symlink(dir.path().join("outside_dir"), inner.join("linked_dir")).unwrap();
        let path = write_fixture_with(&inner, &with_path("practice_lookup", "linked_dir"));
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(
            &problems,
            "tables.practice_lookup.path",
            "outside the catalog's folder",
        );
        symlink(
            dir.path().join("outside.parquet"),
            inner.join("encounter/part-2.parquet"),
        )
        .unwrap();
        let path = write_fixture_with(&inner, VALID);
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(
            &problems,
            "tables.encounter.path",
            "`encounter/part-2.parquet` resolves to",
        );
    }

    #[test]
    fn symlink_inside_the_folder_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture_with(dir.path(), &with_path("person", "people.parquet"));
        symlink(
            dir.path().join("person.parquet"),
            dir.path().join("people.parquet"),
        )
        .unwrap();
        let loaded = load(&path).unwrap();
        let folder = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            loaded.table_files("person").unwrap().path(),
            folder.join("person.parquet")
        );
    }

    #[test]
    fn broken_symlink_in_folder_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path());
        symlink(
            dir.path().join("gone.parquet"),
            dir.path().join("encounter/part-2.parquet"),
        )
        .unwrap();
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(&problems, "tables.encounter.path", "broken symbolic link");
    }

    #[test]
    fn missing_table_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path());
        fs::remove_file(dir.path().join("practice_lookup.parquet")).unwrap();
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(
            &problems,
            "tables.practice_lookup.path",
            "the path `practice_lookup.parquet` does not exist",
        );
    }

    #[test]
    fn empty_path_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture_with(dir.path(), &with_path("person", ""));
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(&problems, "tables.person.path", "the path is empty");
    }

    #[test]
    fn empty_folder_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path());
        for part in ["part-0.parquet", "part-1.parquet"] {
            fs::remove_file(dir.path().join("encounter").join(part)).unwrap();
        }
        fs::write(dir.path().join("encounter/_SUCCESS"), "").unwrap();
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(
            &problems,
            "tables.encounter.path",
            "the folder `encounter` has no `.parquet` files",
        );
    }

    #[test]
    fn file_without_parquet_extension_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture_with(dir.path(), &with_path("person", "person.csv"));
        fs::write(dir.path().join("person.csv"), "person_id\n1\n").unwrap();
        let problems = invalid(load(&path).unwrap_err());
        assert_problem(&problems, "tables.person.path", "is not a `.parquet` file");
    }
}
