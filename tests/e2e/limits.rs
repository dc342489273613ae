//! What one query may use while it runs, and when its answer arrives: the policy's time
//! and memory limits turn a runaway query into a failure (charged, stored and served again
//! by the ledger, `query.rs`), and the response quantum holds every answer and every
//! failure to a multiple of itself.

use std::time::{Duration, Instant};

use carelens_engine::{Engine, QueryError, RunLimits};

use crate::common::sample_data;

async fn engine_with(limits: impl FnOnce(RunLimits) -> RunLimits) -> Engine {
    let catalog = carelens_catalog::load(&sample_data().join("carelens.toml")).unwrap();
    let mut engine = Engine::open(&catalog).await.unwrap();
    let current = engine.run_limits();
    engine.set_run_limits(limits(current));
    engine
}

const EVENTS_BY_SETTING: &str =
    "SELECT setting, COUNT(*) AS n, SUM(cost_gbp) AS cost FROM encounter GROUP BY setting";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_sets_the_limits() {
    let limits = engine_with(|l| l).await.run_limits();
    // sample-data/carelens.toml states the defaults.
    assert_eq!(
        limits,
        RunLimits {
            memory_bytes: 4096 << 20,
            time: Duration::from_secs(300),
            max_join_fanout: 1000,
            quantum: Duration::from_millis(1000),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_time_limit_is_stopped_and_fails_with_a_fixed_message() {
    let engine = engine_with(|l| RunLimits {
        time: Duration::from_millis(1),
        quantum: Duration::ZERO,
        ..l
    })
    .await;
    let prepared = engine.prepare(EVENTS_BY_SETTING).await.unwrap();
    let err = prepared.execute(&engine).await.unwrap_err();
    assert!(matches!(err, QueryError::TimeLimit(_)), "{err:?}");
    assert!(!err.is_rejection());
    assert_eq!(
        err.to_string(),
        "the query ran longer than the time limit of 0 s and was stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_fails_as_out_of_memory() {
    let engine = engine_with(|l| RunLimits {
        memory_bytes: 1024,
        quantum: Duration::ZERO,
        ..l
    })
    .await;
    // Each person's groups are sampled with a sort per person: it cannot run in 1 KiB.
    let prepared = engine.prepare(EVENTS_BY_SETTING).await.unwrap();
    let err = prepared.execute(&engine).await.unwrap_err();
    assert!(matches!(err, QueryError::Execute(_)), "{err:?}");
    assert!(err.to_string().contains("out of memory"), "{err}");
    // The same query within the default pool runs.
    let engine = engine_with(|l| RunLimits {
        quantum: Duration::ZERO,
        ..l
    })
    .await;
    let prepared = engine.prepare(EVENTS_BY_SETTING).await.unwrap();
    prepared.execute(&engine).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_failures_are_held_to_the_response_quantum() {
    let quantum = Duration::from_millis(700);
    let engine = engine_with(|l| RunLimits { quantum, ..l }).await;
    let prepared = engine
        .prepare("SELECT sex, COUNT(DISTINCT person_id) AS n FROM person GROUP BY sex")
        .await
        .unwrap();
    let started = Instant::now();
    prepared.execute(&engine).await.unwrap();
    assert!(started.elapsed() >= quantum, "{:?}", started.elapsed());
    // A failure is held too: one over a 1 KiB memory pool fails within milliseconds, and
    // its answer still comes at the quantum.
    let engine = engine_with(|l| RunLimits {
        quantum,
        memory_bytes: 1024,
        ..l
    })
    .await;
    let prepared = engine.prepare(EVENTS_BY_SETTING).await.unwrap();
    let started = Instant::now();
    assert!(prepared.execute(&engine).await.is_err());
    assert!(started.elapsed() >= quantum, "{:?}", started.elapsed());
}

/// A query's size is limited before it is parsed: the most operators allowed plan and
/// release through the command line (on its large stack), one more is a rejection with a
/// hint, and the megabyte of `OR`s that crashed the process is a rejection too — in a
/// batch, the other queries still run.
#[test]
fn big_queries_are_refused_before_planning_and_the_largest_allowed_runs() {
    use crate::common::{carelens, run};
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let ors = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("code = 'C{i}'")).collect();
        format!(
            "-- carelens: epsilon=0.1\nSELECT COUNT(DISTINCT person_id) AS n FROM condition \
             WHERE {}\n",
            list.join(" OR ")
        )
    };
    // n comparisons and n - 1 ORs.
    let largest = carelens_engine::MAX_OPERATORS.div_ceil(2);
    let queries = dir.path().join("q");
    std::fs::create_dir_all(&queries).unwrap();
    std::fs::write(queries.join("a_largest.sql"), ors(largest)).unwrap();
    std::fs::write(queries.join("b_one_more.sql"), ors(largest + 1)).unwrap();
    std::fs::write(queries.join("c_megabyte.sql"), ors(60_000)).unwrap();
    let out = dir.path().join("out");
    let (output, stdout, stderr) = run(carelens()
        .arg("run")
        .arg(&queries)
        .arg("--out")
        .arg(&out)
        .args(["--user", "analyst", "--config"])
        .arg(sample_data().join("carelens.toml"))
        .arg("--ledger")
        .arg(&ledger));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("1 of 3 released"), "{stdout}");
    assert!(out.join("a_largest.csv").exists());
    assert!(stderr.contains("operators"), "{stderr}");
    assert!(stderr.contains("bytes long"), "{stderr}");
    assert!(stderr.contains("IN ("), "{stderr}");
}
