//! Where a finished extract goes: checking `--out` before any work, and moving the staged
//! extract into place so that `--out` is always either absent, untouched, or complete.
//!
//! Rules:
//! - `--out` must name a folder (not `.`, `..` or `/`) and must not be a symbolic link.
//! - Without `--force`, `--out` must be missing or empty, and it is never deleted: the
//!   staged extract is renamed onto it, which the operating system refuses if anything
//!   was written there in the meantime.
//! - With `--force`, `--out` may also hold an earlier extract — only the files `synth`
//!   writes and a catalog with its header — and nothing else. This is checked again just
//!   before the earlier extract is moved aside; it is deleted only after the new one is in
//!   place.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::{CATALOG_FILE, CATALOG_HEADER, SynthError, io};

/// The files of an extract, as `synth` writes them.
pub const EXTRACT_FILES: [&str; 8] = [
    "person.parquet",
    "condition.parquet",
    "encounter.parquet",
    "medication.parquet",
    "observation.parquet",
    "practice_lookup.parquet",
    "lsoa_lookup.parquet",
    CATALOG_FILE,
];

/// The checked output location: its parent folder and its own name.
pub struct Target {
    /// The folder the extract is placed in; staging happens here too (same file system).
    pub parent: PathBuf,
    /// The output folder's name.
    pub name: String,
}

/// Checks `--out` before any work is done.
pub fn check(out: &Path, force: bool) -> Result<Target, SynthError> {
    let name = match out.file_name() {
        Some(name) => name.to_string_lossy().into_owned(),
        None => return Err(SynthError::OutputNotNamed(out.to_owned())),
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(SynthError::OutputIsALink(out.to_owned()));
    }
    check_contents(out, force)?;
    Ok(Target { parent, name })
}

/// Refuses an existing `out` that must not be replaced.
fn check_contents(out: &Path, force: bool) -> Result<(), SynthError> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(SynthError::OutputIsAFile(out.to_owned()));
    }
    let entries: Vec<String> = fs::read_dir(out)
        .map_err(io("read", out))?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(io("read", out))?;
    if entries.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(SynthError::OutputNotEmpty(out.to_owned()));
    }
    let only_extract_files = entries.iter().all(|e| EXTRACT_FILES.contains(&e.as_str()));
    let written_by_synth = fs::read_to_string(out.join(CATALOG_FILE))
        .is_ok_and(|text| text.starts_with(CATALOG_HEADER));
    if only_extract_files && written_by_synth {
        Ok(())
    } else {
        Err(SynthError::NotAnExtract(out.to_owned()))
    }
}

/// Moves the finished extract in `staging` to `out`. Returns the path of a replaced
/// extract that could not be removed afterwards, if any (the new extract is in place).
pub fn place(
    staging: TempDir,
    out: &Path,
    target: &Target,
    force: bool,
) -> Result<Option<PathBuf>, SynthError> {
    let refused_because_not_empty = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists
        )
    };
    if !force || !out.exists() {
        // rename(2) replaces only a missing or empty folder; anything else is refused, so
        // whatever appeared at `out` while we worked is left alone.
        return match fs::rename(staging.path(), out) {
            Ok(()) => {
                let _ = staging.keep();
                Ok(None)
            }
            Err(e) if refused_because_not_empty(&e) => {
                Err(SynthError::OutputNotEmpty(out.to_owned()))
            }
            Err(e) => Err(io("move the finished extract to", out)(e)),
        };
    }

    // --force over an earlier extract: check again now, move it aside onto a fresh empty
    // folder, put the new one in place, then delete the old one.
    check_contents(out, true)?;
    let aside = tempfile::Builder::new()
        .prefix(&format!(".{}.replaced-", target.name))
        .tempdir_in(&target.parent)
        .map_err(io(
            "create a folder for the replaced extract in",
            &target.parent,
        ))?;
    fs::rename(out, aside.path()).map_err(io("move aside the earlier extract at", out))?;
    if let Err(e) = fs::rename(staging.path(), out) {
        // Put the earlier extract back; the staged one is removed when `staging` drops.
        let _ = fs::rename(aside.path(), out);
        let _ = aside.keep();
        return Err(io("move the finished extract to", out)(e));
    }
    let _ = staging.keep();
    let replaced = aside.path().to_owned();
    Ok(aside.close().err().map(|_| replaced))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_extract_files(dir: &Path) {
        for file in EXTRACT_FILES {
            fs::write(dir.join(file), "").unwrap();
        }
        fs::write(dir.join(CATALOG_FILE), format!("{CATALOG_HEADER}\n")).unwrap();
    }

    #[test]
    fn out_must_name_a_folder_and_not_be_a_link() {
        for path in [".", "..", "/", "x/.."] {
            assert!(
                matches!(
                    check(Path::new(path), true),
                    Err(SynthError::OutputNotNamed(_))
                ),
                "{path}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            check(&link, true),
            Err(SynthError::OutputIsALink(_))
        ));
    }

    #[test]
    fn force_replaces_only_a_folder_holding_nothing_but_an_extract() {
        let dir = tempfile::tempdir().unwrap();
        write_extract_files(dir.path());
        assert!(check(dir.path(), true).is_ok());
        assert!(matches!(
            check(dir.path(), false),
            Err(SynthError::OutputNotEmpty(_))
        ));

        fs::create_dir(dir.path().join(".git")).unwrap();
        assert!(matches!(
            check(dir.path(), true),
            Err(SynthError::NotAnExtract(_))
        ));
        fs::remove_dir(dir.path().join(".git")).unwrap();

        // A hand-written catalog (an analyst's project folder) is not an extract.
        fs::write(dir.path().join(CATALOG_FILE), "[dataset]\n").unwrap();
        assert!(matches!(
            check(dir.path(), true),
            Err(SynthError::NotAnExtract(_))
        ));
    }

    #[test]
    fn a_folder_filled_while_generating_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let target = check(&out, false).unwrap();
        let staging = tempfile::tempdir_in(dir.path()).unwrap();
        fs::write(staging.path().join("person.parquet"), "new").unwrap();
        // Someone creates `out` and writes to it while the extract is generated.
        fs::create_dir(&out).unwrap();
        fs::write(out.join("notes.txt"), "keep me").unwrap();
        let staged = staging.path().to_owned();
        assert!(matches!(
            place(staging, &out, &target, false),
            Err(SynthError::OutputNotEmpty(_))
        ));
        assert_eq!(
            fs::read_to_string(out.join("notes.txt")).unwrap(),
            "keep me"
        );
        assert!(!staged.exists(), "the staged extract is cleaned up");
    }

    #[test]
    fn force_swaps_extracts_and_leaves_nothing_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        write_extract_files(&out);
        fs::write(out.join("person.parquet"), "old").unwrap();
        let target = check(&out, true).unwrap();
        let staging = tempfile::tempdir_in(dir.path()).unwrap();
        write_extract_files(staging.path());
        fs::write(staging.path().join("person.parquet"), "new").unwrap();
        assert_eq!(place(staging, &out, &target, true).unwrap(), None);
        assert_eq!(
            fs::read_to_string(out.join("person.parquet")).unwrap(),
            "new"
        );
        let beside: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(beside.len(), 1, "only `out` is left");
    }
}
