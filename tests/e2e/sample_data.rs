//! The committed `sample-data/` extract is exactly what `carelens synth` makes from its
//! seed and size, and its catalog checks clean against its files.

use std::fs::File;
use std::path::Path;

use datafusion::arrow::array::{RecordBatch, RecordBatchReader};
use datafusion::arrow::compute::concat_batches;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{SAMPLE_PERSONS, SAMPLE_SEED, carelens, run, sample_data};

fn read_table(path: &Path) -> RecordBatch {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    concat_batches(&schema, &batches).unwrap()
}

#[test]
fn synth_reproduces_the_committed_sample_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("regenerated");
    let options = carelens_synth::Options {
        persons: SAMPLE_PERSONS,
        seed: SAMPLE_SEED,
        out: out.clone(),
        force: false,
    };
    carelens_synth::generate(&options, &|_| {}).unwrap();

    let committed = sample_data();
    // `.carelens/` is the default ledger folder beside the catalog, made by running the
    // README's main job (and git-ignored): not part of the extract.
    let mut names: Vec<String> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".carelens")
        .collect();
    names.sort();
    let mut regenerated: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    regenerated.sort();
    assert_eq!(names, regenerated, "same files");
    assert_eq!(names.len(), 8, "seven tables and the catalog: {names:?}");

    for name in &names {
        let (a, b) = (committed.join(name), out.join(name));
        if name.ends_with(".parquet") {
            let (a, b) = (read_table(&a), read_table(&b));
            assert_eq!(a.num_rows(), b.num_rows(), "{name}: row count");
            assert!(
                a == b,
                "{name}: content differs from a fresh `carelens synth`"
            );
        } else {
            let (a, b) = (
                std::fs::read_to_string(a).unwrap(),
                std::fs::read_to_string(b).unwrap(),
            );
            assert_eq!(a, b, "{name} differs from a fresh `carelens synth`");
        }
    }
    assert_eq!(
        read_table(&committed.join("person.parquet")).num_rows() as u64,
        SAMPLE_PERSONS
    );
}

#[test]
fn sample_data_is_small_enough_for_git() {
    let bytes: u64 = std::fs::read_dir(sample_data())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(bytes < 20_000_000, "sample-data is {bytes} bytes");
}

#[test]
fn catalog_command_checks_the_sample_data() {
    let config = sample_data().join("carelens.toml");
    let (output, stdout, stderr) = run(carelens().arg("catalog").arg("--config").arg(&config));
    assert!(output.status.success(), "{stderr}");
    for expected in [
        "person column person_id",
        "table person: person, 20,000 rows, person.parquet",
        "table encounter: events,",
        "table practice_lookup: public,",
        "cost_gbp            Float64            bounds [0, 10000], precision 0.01",
        "domain from practice_lookup.locality",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    assert!(!stdout.to_lowercase().contains("warning"), "{stdout}");
}

#[test]
fn catalog_config_comes_from_the_environment() {
    let config = sample_data().join("carelens.toml");
    let (output, stdout, stderr) = run(carelens().arg("catalog").env("CARELENS_CONFIG", &config));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("table person: person, 20,000 rows"),
        "{stdout}"
    );
}
