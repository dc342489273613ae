//! The command line: arguments, errors people can act on, exit codes, and an output
//! folder that is either a complete extract or absent.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{carelens, run};

const EXIT_ERROR: i32 = 2;

/// Runs a command that must fail with exit code 2 and say each of `expected` on stderr.
fn fails_with(cmd: &mut Command, expected: &[&str]) {
    let (output, _, stderr) = run(cmd);
    assert_eq!(output.status.code(), Some(EXIT_ERROR), "{stderr}");
    for text in expected {
        assert!(stderr.contains(text), "missing {text:?} in:\n{stderr}");
    }
}

#[test]
fn synth_writes_a_complete_extract_that_the_catalog_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small");
    let (output, stdout, stderr) = run(carelens()
        .args(["synth", "--persons", "500", "--seed", "3", "--out"])
        .arg(&out));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("(500 persons, seed 3)"), "{stdout}");
    assert!(
        stdout.contains("person                    500 rows"),
        "{stdout}"
    );
    let (output, stdout, stderr) = run(carelens()
        .arg("catalog")
        .arg("--config")
        .arg(out.join("carelens.toml")));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("table person: person, 500 rows"),
        "{stdout}"
    );
    // Nothing but the extract is left beside it (no staging folders).
    let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1);
}

#[test]
fn synth_refuses_zero_persons() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("none");
    fails_with(
        carelens()
            .args(["synth", "--persons", "0", "--out"])
            .arg(&out),
        &["--persons must be between 1 and"],
    );
    assert!(!out.exists());
}

#[test]
fn synth_refuses_a_non_empty_folder_without_force_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("notes.txt");
    fs::write(&precious, "keep me").unwrap();
    fails_with(
        carelens()
            .args(["synth", "--persons", "10", "--out"])
            .arg(dir.path()),
        &["already exists and is not empty", "--force"],
    );
    assert_eq!(fs::read_to_string(&precious).unwrap(), "keep me");
}

#[test]
fn force_replaces_an_extract_but_never_another_folder() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("notes.txt");
    fs::write(&precious, "keep me").unwrap();
    fails_with(
        carelens()
            .args(["synth", "--persons", "10", "--force", "--out"])
            .arg(dir.path()),
        &["not a carelens extract"],
    );
    assert!(precious.exists());

    // A project folder with a hand-written catalog is not an extract either.
    fs::write(dir.path().join("carelens.toml"), "[dataset]\n").unwrap();
    fails_with(
        carelens()
            .args(["synth", "--persons", "10", "--force", "--out"])
            .arg(dir.path()),
        &["not a carelens extract"],
    );
    assert!(precious.exists());

    let out = dir.path().join("extract");
    let synth = |persons: &str| {
        run(carelens()
            .args(["synth", "--persons", persons, "--force", "--out"])
            .arg(&out))
    };
    let (first, _, stderr) = synth("20");
    assert!(first.status.success(), "{stderr}");
    let (second, stdout, stderr) = synth("30");
    assert!(second.status.success(), "{stderr}");
    assert!(stdout.contains("(30 persons"), "{stdout}");
    let catalog = fs::read_to_string(out.join("carelens.toml")).unwrap();
    assert!(catalog.contains("--persons 30 "), "{catalog}");
    // Nothing is left beside the extract: no staging or replaced folders.
    let mut beside: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["carelens.toml", "extract", "notes.txt"]);
}

#[test]
fn synth_into_a_path_below_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    fails_with(
        carelens()
            .args(["synth", "--persons", "10", "--out"])
            .arg(file.join("extract")),
        &["could not create", "a-file"],
    );
}

#[test]
fn an_interrupted_synth_leaves_no_extract() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big");
    let mut child = carelens()
        .args(["synth", "--persons", "3000000", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it is writing (its staging folder exists), then kill it mid-run.
    let started = Instant::now();
    while fs::read_dir(dir.path()).unwrap().next().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "synth never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "synth ended before it was killed: {status}"
    );
    // It was killed mid-write: its hidden staging folder is there, and the extract itself
    // does not exist.
    let staging: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        staging.len() == 1 && staging[0].starts_with(".big.partial-"),
        "{staging:?}"
    );
    assert!(!out.exists(), "an interrupted run left {}", out.display());
}

#[test]
fn catalog_errors_name_the_file_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.toml");
    fails_with(
        carelens().arg("catalog").arg("--config").arg(&missing),
        &["nowhere.toml"],
    );

    let bad = dir.path().join("carelens.toml");
    fs::write(
        &bad,
        r#"
[dataset]
name = "bad"
person_column = "person_id"

[[tables]]
name = "person"
kind = "person"
path = "../outside.parquet"
columns = [ { name = "person_id", type = "Int64" } ]
"#,
    )
    .unwrap();
    fails_with(
        carelens().arg("catalog").arg("--config").arg(&bad),
        &["carelens.toml", "tables.person", "hint:"],
    );
}

#[test]
fn catalog_output_to_a_closed_pipe_is_not_an_error() {
    let config = crate::common::sample_data().join("carelens.toml");
    let mut child = carelens()
        .arg("catalog")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, like `| head -0`
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn synth_into_an_unwritable_folder_is_a_clear_error() {
    // /proc refuses new entries even to root, unlike a chmod-ed folder.
    fails_with(
        carelens().args([
            "synth",
            "--persons",
            "10",
            "--out",
            "/proc/carelens-extract",
        ]),
        &["could not create a staging folder in /proc"],
    );
}

#[test]
fn synth_rejects_a_persons_value_that_is_not_a_number() {
    fails_with(
        carelens().args(["synth", "--persons", "many", "--out", "x"]),
        &["invalid value 'many' for '--persons"],
    );
}

#[test]
fn synth_refuses_an_out_that_names_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        carelens()
            .args(["synth", "--persons", "10", "--out", "."])
            .current_dir(dir.path()),
        &["does not name a new folder"],
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
