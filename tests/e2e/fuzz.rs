//! The differential fuzzer (`crates/carelens-fuzz`, `docs/fuzzing.md`): its extreme
//! extract, its verdicts and shrinker, and a short deterministic pass over the sample
//! extract. The long pass is `cargo run --release --example fuzz`.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use carelens_engine::slt;
use carelens_fuzz::extreme::{self, EVENT_ROWS, EXTREME_PERSON};
use carelens_fuzz::sql::{Cte, Expr, Query, Select, SetExpr, TableRef};
use carelens_fuzz::{Config, FindingKind, Generator, Oracle, Outcome, Verdict, compare};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::sample_data;

fn read(path: &Path) -> (datafusion::arrow::datatypes::SchemaRef, Vec<RecordBatch>) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let schema = reader.schema().clone();
    let batches = reader.build().unwrap().map(Result::unwrap).collect();
    (schema, batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_extract_is_the_sample_plus_one_person_with_boundary_values() {
    let dir = tempfile::tempdir().unwrap();
    let catalog =
        extreme::write_extract(&sample_data().join("carelens.toml"), dir.path(), 0).unwrap();
    let loaded = carelens_catalog::load(&catalog).unwrap();
    let (mut nan, mut min_date, mut long_text, mut min_int) = (false, false, false, false);
    for (table, files) in loaded.tables() {
        let (sample_schema, sample) = read(&sample_data().join(&table.path));
        let (schema, batches) = read(files.path());
        assert_eq!(schema, sample_schema, "{}: schema kept exactly", table.name);
        let rows = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>();
        let added = rows(&batches) - rows(&sample);
        let expected = match table.kind {
            carelens_catalog::TableKind::Person => 1,
            carelens_catalog::TableKind::Events => EVENT_ROWS,
            carelens_catalog::TableKind::Public => 0,
        };
        assert_eq!(added, expected, "{}", table.name);
        if expected == 0 {
            continue;
        }
        let all = datafusion::arrow::compute::concat_batches(&schema, &batches).unwrap();
        let last = all.slice(all.num_rows() - expected, expected);
        let person = last
            .column_by_name("person_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert!(person.iter().all(|p| p == Some(EXTREME_PERSON)));
        for (field, column) in last.schema().fields().iter().zip(last.columns()) {
            match field.data_type() {
                DataType::Float64 => {
                    nan |= column
                        .as_primitive::<Float64Type>()
                        .iter()
                        .any(|v| v.is_some_and(f64::is_nan));
                }
                DataType::Date32 => {
                    min_date |= column
                        .as_primitive::<Date32Type>()
                        .iter()
                        .any(|v| v == Some(i32::MIN));
                }
                DataType::Int32 => {
                    min_int |= column
                        .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                        .iter()
                        .any(|v| v == Some(i32::MIN));
                }
                DataType::Utf8 => {
                    long_text |= column
                        .as_string::<i32>()
                        .iter()
                        .any(|v| v.is_some_and(|s| s.len() >= 64 * 1024));
                }
                _ => {}
            }
            if !field.is_nullable() {
                assert_eq!(column.null_count(), 0, "{}.{}", table.name, field.name());
            }
        }
    }
    assert!(nan && min_date && long_text && min_int);
    // The engine opens it: the person table is still one row per person.
    carelens_engine::Engine::open(&loaded).await.unwrap();
}

#[test]
fn generator_is_deterministic_per_seed() {
    let catalog = carelens_catalog::load(&sample_data().join("carelens.toml")).unwrap();
    let generator = Generator::new(catalog.catalog());
    let a: Vec<String> = (0..20).map(|i| generator.query(7, i).to_string()).collect();
    let b: Vec<String> = (0..20).map(|i| generator.query(7, i).to_string()).collect();
    let c: Vec<String> = (0..20).map(|i| generator.query(8, i).to_string()).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|q| q.contains("SELECT")));
}

#[test]
fn verdicts_compare_the_kind_of_outcome_not_the_numbers() {
    let failed = || Outcome::Failed("Arrow error: overflow".into());
    let v = |plain, extreme| compare("q", 0, plain, extreme);
    assert_eq!(v(Outcome::Released, Outcome::Released), Verdict::Agrees);
    assert!(
        matches!(v(Outcome::Released, failed()), Verdict::Finding(f) if f.kind == FindingKind::Execute)
    );
    assert!(
        matches!(v(failed(), Outcome::Released), Verdict::Finding(f) if f.kind == FindingKind::Execute)
    );
    assert!(
        matches!(v(Outcome::Released, Outcome::Refused("x".into())), Verdict::Finding(f) if f.kind == FindingKind::Prepare)
    );
    assert!(
        matches!(v(Outcome::Released, Outcome::Panicked("p".into())), Verdict::Finding(f) if f.kind == FindingKind::Panic)
    );
    assert!(matches!(v(failed(), failed()), Verdict::FailsOnBoth(_)));
    assert!(matches!(
        v(Outcome::Released, Outcome::TimedOut),
        Verdict::Slow { .. }
    ));
    assert!(matches!(
        v(Outcome::Refused("r".into()), Outcome::Released),
        Verdict::NotAccepted(_)
    ));
}

#[tokio::test]
async fn shrinker_keeps_what_makes_the_finding_and_drops_the_rest() {
    let select = |filter: Vec<Expr>| Select {
        items: vec![(Expr::call("count", vec![Expr::Star]), Some("n".into()))],
        from: Some(TableRef::Named {
            name: "condition".into(),
            alias: "c".into(),
        }),
        filter,
        ..Select::default()
    };
    let culprit = Expr::binary(Expr::column("c", "code"), "~", Expr::lit("'('"));
    let query = Query {
        directive: Some("epsilon=0.5".into()),
        ctes: vec![Cte {
            name: "c0".into(),
            body: SetExpr::Select(Box::new(select(vec![]))),
        }],
        body: select(vec![
            Expr::binary(Expr::column("c", "code_system"), "=", Expr::text("SNOMED")),
            Expr::Case {
                whens: vec![(Expr::lit("TRUE"), culprit.clone())],
                otherwise: Some(Box::new(Expr::lit("FALSE"))),
            },
        ]),
    };
    let (small, checks) =
        carelens_fuzz::shrink::shrink(&query, 500, async |q: &Query| q.to_string().contains("'('"))
            .await;
    let text = small.to_string();
    assert!(text.contains("'('"), "{text}");
    assert!(small.ctes.is_empty() && small.directive.is_none(), "{text}");
    assert!(!text.contains("SNOMED") && !text.contains("CASE"), "{text}");
    assert!(checks > 0 && text.len() < query.to_string().len());
}

/// A fixed seed, a few hundred queries: none may succeed or fail depending on the extreme
/// person. Findings are shrunk and printed; the long pass is `examples/fuzz.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_never_decides_whether_a_query_succeeds() {
    let sample = sample_data().join("carelens.toml");
    let dir = tempfile::tempdir().unwrap();
    let oracle = Oracle::open(
        &sample,
        dir.path(),
        extreme::VARIANTS,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let catalog = carelens_catalog::load(&sample).unwrap();
    let generator = Generator::new(catalog.catalog());
    let config = Config {
        seed: 13,
        queries: Some(300),
        shrink_checks: 60,
        ..Config::default()
    };
    let report = carelens_fuzz::run(&oracle, &generator, &config, &mut |_| {}).await;
    eprintln!("{}", report.summary());
    // The generator must keep producing queries the engine accepts, or the pass tests
    // nothing.
    assert!(report.accepted >= 100, "{}", report.summary());
    assert!(report.findings.is_empty(), "{}", report.summary());
}

/// Every accepted regression record of the privacy reviews
/// (`crates/carelens-engine/tests/slt/review.slt`, the constructions that once failed on one
/// person's row among them) runs alike on the sample and on the sample plus each variant of
/// the extreme person: released on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_records_run_alike_with_and_without_the_extreme_person() {
    let sample = sample_data().join("carelens.toml");
    let dir = tempfile::tempdir().unwrap();
    let oracle = Oracle::open(
        &sample,
        dir.path(),
        extreme::VARIANTS,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let records = slt::parse(&slt::dir().join("review.slt"));
    let mut judged = 0;
    for record in records {
        let slt::Record::Accept { name, sql, .. } = record else {
            continue;
        };
        for variant in 0..oracle.variants() {
            let verdict = oracle.judge(&sql, variant).await;
            assert!(
                matches!(verdict, Verdict::Agrees),
                "{name} (variant {variant}): {verdict:?}"
            );
            judged += 1;
        }
    }
    assert!(judged >= 4 * 10, "{judged}");
}
