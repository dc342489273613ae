//! Benchmark: carelens against plain DataFusion on the population-health queries.
//!
//! For every `accept` record of `crates/carelens-engine/tests/slt/queries.slt` (QUERIES.md
//! Q1..Q10 and C1..C3, in the versions carelens releases) it times
//!
//! - **plain**: the same SQL text in a plain DataFusion `SessionContext` with the extract's
//!   Parquet files registered, all batches collected, and
//! - **carelens**: `Engine::prepare` + `PreparedQuery::execute` (analysis, rewrite,
//!   bounded plan, noise, disclosure control, post-processing; no ledger),
//!
//! interleaved, one warm-up and [`REPS`] timed runs each, and reports the medians. To see
//! where carelens's time goes it also times **bounded**: only the rewritten plan
//! (`PreparedQuery::rewritten_plan`, prepared once beforehand) run in the plain session —
//! carelens's execution minus noise, disclosure control and post-processing. Peak
//! memory comes from child processes (this binary re-executed with `--child QUERY MODE
//! DIR`), each opening its session, running one query once and reporting `VmHWM` from
//! `/proc/self/status`: once after opening, and once after the query with the high-water
//! mark reset in between (`echo 5 > /proc/self/clear_refs`), so that what opening costs
//! (carelens checks that the person table has one row per person) and what the query costs
//! can be told apart.
//!
//! **Accuracy**: every timed carelens release is compared with plain DataFusion's answer
//! to the same SQL, cell by cell (rows matched by their keys): the relative error of each
//! released count, sum, mean and derived cell, and the share of the true answer's cells
//! that were released (not suppressed, not left out by key selection). The error includes
//! everything carelens does to a query — noise, the per-person bounds (L0, L∞, clamps),
//! rounding — against the answer without any of it. `CARELENS_BENCH_TRUTH=FILE` also
//! writes plain DataFusion's answers as JSON, to score another build's releases the same
//! way (`scripts/bench-accuracy.py`).
//!
//! **The query library as one batch**: `queries/*.sql`, every file in turn in one child
//! process, in plain DataFusion and in carelens, with each process's peak memory (the
//! `library` pseudo-query: `cargo bench --bench engine -- library` runs only that).
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/bench-target cargo bench --bench engine            # every query
//! CARGO_TARGET_DIR=/work/bench-target cargo bench --bench engine -- Q1 C2   # some
//! ```
//!
//! Environment: `CARELENS_BENCH_DATA` (the extract's folder, generated once if missing;
//! default `target/bench-data/1m` under the repository), `CARELENS_BENCH_PERSONS`
//! (default 1,000,000), `CARELENS_BENCH_REPS` (timed runs, default 5). See
//! `docs/benchmark.md`. `CARELENS_BENCH_TRUTH` as above; `CARELENS_BENCH_SLT` another
//! `.slt` file's `accept` records instead of `queries.slt`'s (`benches/accuracy.slt`: the
//! query shapes issue 17's changes to sampling, lookups and the ε split affect).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use carelens_catalog::LoadedCatalog;
use carelens_engine::slt::{self, error_chain};
use carelens_engine::{ColumnRole, Engine, Release};
use datafusion::arrow::array::{Array, Float64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

/// Timed runs per query and mode (after one warm-up), unless `CARELENS_BENCH_REPS` says.
const REPS: usize = 5;
/// Persons in the generated extract, unless `CARELENS_BENCH_PERSONS` says.
const PERSONS: u64 = 1_000_000;
/// Seed of the generated extract.
const SEED: u64 = 1;

/// The ways a query is run (`Bounded` is timed only, not measured for memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Carelens,
    Bounded,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Carelens => "carelens",
            Mode::Bounded => "bounded",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "plain" => Some(Mode::Plain),
            "carelens" => Some(Mode::Carelens),
            _ => None,
        }
    }
}

/// One accepted query of `queries.slt`.
#[derive(Debug, Clone)]
struct Query {
    /// `Q1`, `Q5`, `C2`, ...: the first word of the record's name.
    id: String,
    /// The record's full name.
    name: String,
    sql: String,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `accept` records of the engine's `queries.slt` (or of the file
/// `CARELENS_BENCH_SLT` names), `{{name}}` expanded from `define` records (format:
/// `crates/carelens-engine/tests/slt/README.md`).
fn queries() -> Vec<Query> {
    let file = std::env::var_os("CARELENS_BENCH_SLT")
        .map_or_else(|| slt::dir().join("queries.slt"), PathBuf::from);
    slt::parse(&file)
        .into_iter()
        .filter_map(|record| match record {
            slt::Record::Accept { name, sql, .. } => Some(Query {
                id: name.split_whitespace().next().unwrap_or(&name).to_owned(),
                name,
                sql,
            }),
            slt::Record::Reject { .. } => None,
        })
        .collect()
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// The extract's folder: `CARELENS_BENCH_DATA`, or `target/bench-data/1m` in the repository.
fn data_dir(persons: u64) -> PathBuf {
    match std::env::var_os("CARELENS_BENCH_DATA") {
        Some(dir) => PathBuf::from(dir),
        None if persons == PERSONS => repo().join("target/bench-data/1m"),
        None => repo().join(format!("target/bench-data/{persons}")),
    }
}

/// Generates the extract unless its catalog is already there; checks it has `persons`.
fn ensure_extract(dir: &Path, persons: u64) -> LoadedCatalog {
    let catalog_path = dir.join(carelens_synth::CATALOG_FILE);
    if catalog_path.exists() {
        eprintln!("using the extract in {}", dir.display());
    } else {
        eprintln!(
            "generating {persons} persons (seed {SEED}) into {} ...",
            dir.display()
        );
        let start = Instant::now();
        let options = carelens_synth::Options {
            persons,
            seed: SEED,
            out: dir.to_owned(),
            force: false,
        };
        let summary = carelens_synth::generate(&options, &|_| {}).unwrap();
        eprintln!(
            "  {} event rows, {:.1} MB, in {:.1} s",
            summary.event_rows(),
            summary.bytes as f64 / 1e6,
            start.elapsed().as_secs_f64()
        );
    }
    let loaded = carelens_catalog::load(&catalog_path).unwrap();
    // As an operator would once per extract (`carelens catalog --deep`): the deep check's
    // record lets `Engine::open` trust the one-row-per-person fact instead of counting.
    if !loaded.check_record_path().exists() {
        let start = Instant::now();
        loaded
            .check_deeply("benchmark")
            .expect("deep check of the benchmark extract");
        eprintln!(
            "  deep check (catalog --deep) recorded in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    let name = &loaded.catalog().dataset.name;
    assert!(
        name.contains(&format!("({persons} persons,")),
        "{} holds `{name}`, not {persons} persons: remove it or set CARELENS_BENCH_DATA",
        dir.display()
    );
    loaded
}

/// A plain DataFusion session with every catalog table registered from its Parquet files,
/// as `Engine::open` registers them, but none of carelens's restrictions.
async fn plain_context(loaded: &LoadedCatalog) -> SessionContext {
    let ctx = SessionContext::new();
    for (table, files) in loaded.tables() {
        ctx.register_parquet(
            &table.name,
            files.path().to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
    ctx
}

/// What one run produced.
struct Run {
    total: Duration,
    /// carelens only: the time `prepare` took.
    prepare: Duration,
    rows: usize,
    output: Output,
}

/// A run's answer, kept to score carelens's releases against plain DataFusion's.
enum Output {
    Plain(Vec<RecordBatch>),
    Release(Box<Release>),
    Ignored,
}

async fn run_plain(ctx: &SessionContext, sql: &str) -> Result<Run, String> {
    let start = Instant::now();
    let df = ctx.sql(sql).await.map_err(|e| error_chain(&e))?;
    let batches = df.collect().await.map_err(|e| error_chain(&e))?;
    Ok(Run {
        total: start.elapsed(),
        prepare: Duration::ZERO,
        rows: batches.iter().map(|b| b.num_rows()).sum(),
        output: Output::Plain(batches),
    })
}

/// The engine over `loaded`, without the policy's response quantum: the quantum is a
/// deliberate hold of every answer to the next multiple of it (1 s by default), not work,
/// and would make every query here take a whole number of seconds.
async fn open_engine(loaded: &carelens_catalog::LoadedCatalog) -> Engine {
    let mut engine = Engine::open(loaded).await.unwrap();
    engine.set_run_limits(carelens_engine::RunLimits {
        quantum: std::time::Duration::ZERO,
        ..engine.run_limits()
    });
    engine
}

async fn run_carelens(engine: &Engine, sql: &str) -> Result<Run, String> {
    let start = Instant::now();
    let prepared = engine.prepare(sql).await.map_err(|e| error_chain(&e))?;
    let prepare = start.elapsed();
    let release = prepared
        .execute(engine)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(Run {
        total: start.elapsed(),
        prepare,
        rows: release.rows.len(),
        output: Output::Release(Box::new(release)),
    })
}

/// Runs a plan (carelens's rewritten plan) in the plain session.
async fn run_bounded(ctx: &SessionContext, plan: Option<&LogicalPlan>) -> Result<Run, String> {
    let plan = plan.ok_or("no rewritten plan")?.clone();
    let start = Instant::now();
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| error_chain(&e))?;
    let batches = df.collect().await.map_err(|e| error_chain(&e))?;
    Ok(Run {
        total: start.elapsed(),
        prepare: Duration::ZERO,
        rows: batches.iter().map(|b| b.num_rows()).sum(),
        output: Output::Ignored,
    })
}

/// One cell of plain DataFusion's answer: as text (how keys are matched) and, when the
/// column is numeric, as a number.
#[derive(Debug, Clone, serde::Serialize)]
struct TrueCell {
    text: String,
    value: Option<f64>,
}

/// Plain DataFusion's answer, one map per row from column name to cell.
type TrueRows = Vec<BTreeMap<String, TrueCell>>;

/// What a NULL key looks like on both sides of the comparison.
const NULL_TEXT: &str = "NULL";

fn true_rows(batches: &[RecordBatch]) -> TrueRows {
    let options = FormatOptions::default().with_null(NULL_TEXT);
    let mut rows = Vec::new();
    for batch in batches {
        let mut columns = Vec::new();
        for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &options).unwrap();
            let numeric = field.data_type().is_numeric();
            let numbers = numeric.then(|| cast(array, &DataType::Float64).unwrap());
            columns.push((field.name().clone(), formatter, numbers));
        }
        for i in 0..batch.num_rows() {
            let mut row = BTreeMap::new();
            for (name, formatter, numbers) in &columns {
                let value = numbers.as_ref().and_then(|n| {
                    let n = n.as_any().downcast_ref::<Float64Array>().unwrap();
                    n.is_valid(i).then(|| n.value(i))
                });
                let text = formatter.value(i).to_string();
                row.insert(name.clone(), TrueCell { text, value });
            }
            rows.push(row);
        }
    }
    rows
}

/// A released key as text, the way [`true_rows`] writes it.
fn key_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => NULL_TEXT.to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How close carelens's releases of one query came to plain DataFusion's answer.
#[derive(Debug, Default)]
struct Accuracy {
    /// `|released - true| / |true|` of every released non-key cell whose true value is
    /// not zero, over all timed releases.
    relative_errors: Vec<f64>,
    /// Non-key numeric cells of the true answer with a non-zero value, over all releases.
    true_cells: usize,
    /// Of those, how many the release showed.
    released_cells: usize,
}

impl Accuracy {
    /// Scores one release against the true rows.
    fn add(&mut self, release: &Release, truth: &TrueRows) {
        let keys = release.key_names();
        let scored: Vec<&str> = release
            .columns
            .iter()
            .filter(|c| !matches!(c.role, ColumnRole::Key | ColumnRole::Public))
            .map(|c| c.name.as_str())
            .collect();
        let index: HashMap<Vec<&str>, &BTreeMap<String, TrueCell>> = truth
            .iter()
            .filter_map(|row| {
                let key: Option<Vec<&str>> = keys
                    .iter()
                    .map(|k| row.get(*k).map(|c| c.text.as_str()))
                    .collect();
                Some((key?, row))
            })
            .collect();
        for row in truth {
            self.true_cells += scored
                .iter()
                .filter(|c| row.get(**c).and_then(|t| t.value).is_some_and(|v| v != 0.0))
                .count();
        }
        for (row, cells) in release.rows.iter().zip(&release.cells) {
            let key_texts: Vec<String> = keys
                .iter()
                .map(|k| key_text(row.get(*k).unwrap_or(&serde_json::Value::Null)))
                .collect();
            let key: Vec<&str> = key_texts.iter().map(String::as_str).collect();
            let Some(true_row) = index.get(&key) else {
                continue;
            };
            for column in &scored {
                let truth = true_row.get(*column).and_then(|t| t.value);
                let released = row.get(*column).and_then(serde_json::Value::as_f64);
                let shown = cells
                    .get(*column)
                    .is_some_and(|c| c.status == carelens_privacy::CellStatus::Released);
                if let (Some(t), Some(v), true) = (truth, released, shown)
                    && t != 0.0
                {
                    self.released_cells += 1;
                    self.relative_errors.push((v - t).abs() / t.abs());
                }
            }
        }
    }

    /// The `q`-quantile (0..=1) of the relative errors.
    fn quantile(&self, q: f64) -> Option<f64> {
        let mut e = self.relative_errors.clone();
        if e.is_empty() {
            return None;
        }
        e.sort_by(f64::total_cmp);
        let i = ((e.len() - 1) as f64 * q).round() as usize;
        Some(e[i])
    }
}

fn fmt_percent(x: Option<f64>) -> String {
    match x {
        Some(x) if x < 0.1 => format!("{:.2}%", x * 100.0),
        Some(x) => format!("{:.1}%", x * 100.0),
        None => "-".to_owned(),
    }
}

/// The library's queries (`queries/*.sql`), by file name.
fn library() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("queries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Whether every group key is constant per person (L0 = 1, no group sampling), read from
/// `explain`, and the rewritten plan; `None`s if the query does not prepare.
async fn inspect(engine: &Engine, sql: &str) -> (Option<bool>, Option<LogicalPlan>) {
    let Ok(prepared) = engine.prepare(sql).await else {
        return (None, None);
    };
    let constant = prepared.explain().private.map(|p| !p.groups_sampled);
    (constant, prepared.rewritten_plan().cloned())
}

/// `/proc/loadavg`'s 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A `kB` field of `/proc/self/status`, e.g. `VmHWM` (peak resident set size).
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The pseudo-query that runs every query of the library in turn.
const LIBRARY: &str = "library";

/// The child: open the session, run one query once (or nothing, for `open`; or the whole
/// library, for [`LIBRARY`]), print the peak resident set size after opening and during
/// the query, and the query's wall-clock time.
fn child(runtime: &tokio::runtime::Runtime, dir: &Path, query_id: &str, mode: &str) {
    let loaded = carelens_catalog::load(&dir.join(carelens_synth::CATALOG_FILE)).unwrap();
    let query = queries().into_iter().find(|q| q.id == query_id);
    let mode = Mode::parse(mode).unwrap();
    runtime.block_on(async {
        let (ctx, engine) = match mode {
            Mode::Plain => (Some(plain_context(&loaded).await), None),
            Mode::Carelens | Mode::Bounded => (None, Some(open_engine(&loaded).await)),
        };
        println!("open_VmHWM_kB {}", status_kb("VmHWM"));
        println!("open_VmRSS_kB {}", status_kb("VmRSS"));
        // Reset the high-water mark to the current resident set (Linux >= 4.0).
        if std::fs::write("/proc/self/clear_refs", "5").is_err() {
            eprintln!("could not reset VmHWM; the query's peak includes opening");
        }
        let sqls: Vec<String> = match &query {
            Some(q) => vec![q.sql.clone()],
            None if query_id == LIBRARY => library().into_iter().map(|(_, sql)| sql).collect(),
            None => Vec::new(),
        };
        let start = Instant::now();
        for sql in &sqls {
            let result = match (&ctx, &engine) {
                (Some(ctx), _) => run_plain(ctx, sql).await.map(|_| ()),
                (_, Some(engine)) => run_carelens(engine, sql).await.map(|_| ()),
                _ => Ok(()),
            };
            if let Err(e) = result {
                eprintln!("error: {e}");
            }
        }
        println!("elapsed_ms {}", start.elapsed().as_millis());
    });
    println!("query_VmHWM_kB {}", status_kb("VmHWM"));
}

/// Peak memory of one child, in MB.
#[derive(Debug, Clone, Copy)]
struct Peak {
    /// Peak after opening the session.
    open: f64,
    /// Resident after opening the session.
    resident: f64,
    /// Peak from the start of the query (at least `resident`).
    query: f64,
    /// The query's wall-clock time, ms.
    elapsed: f64,
}

impl Peak {
    /// The process's peak.
    fn total(self) -> f64 {
        self.open.max(self.query)
    }
}

/// Runs the child for `query` (`open` for no query) and `mode`.
fn peak(dir: &Path, query: &str, mode: Mode) -> Option<Peak> {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--child", query, mode.name()])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mb = |key: &str| -> Option<f64> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb as f64 / 1024.0)
    };
    let peak = (|| {
        Some(Peak {
            open: mb("open_VmHWM_kB")?,
            resident: mb("open_VmRSS_kB")?,
            query: mb("query_VmHWM_kB")?,
            elapsed: stdout
                .lines()
                .find_map(|l| l.strip_prefix("elapsed_ms "))?
                .trim()
                .parse()
                .ok()?,
        })
    })();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if peak.is_none() || !output.status.success() || !stderr.trim().is_empty() {
        eprintln!(
            "child {query} {} ({}): {}",
            mode.name(),
            output.status,
            stderr.trim()
        );
    }
    peak
}

fn median(xs: &[Duration]) -> Option<f64> {
    let mut ms: Vec<f64> = xs.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    Some(if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    })
}

/// The results for one query.
struct Measured {
    query: Query,
    constant: Option<bool>,
    plain: Vec<Duration>,
    carelens: Vec<Duration>,
    prepare: Vec<Duration>,
    bounded: Vec<Duration>,
    rows: (usize, usize),
    errors: Vec<String>,
    peak: (Option<Peak>, Option<Peak>),
    accuracy: Accuracy,
    /// Plain DataFusion's answer (from the last timed run).
    truth: TrueRows,
}

fn fmt_ms(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "error".to_owned(),
    }
}

fn fmt_mb(x: Option<f64>) -> String {
    x.map_or("error".to_owned(), |x| format!("{x:.0}"))
}

fn fmt_peak(x: Option<Peak>, f: fn(Peak) -> f64) -> String {
    fmt_mb(x.map(f))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    if args.first().map(String::as_str) == Some("--child") {
        let [_, query, mode, dir] = &args[..] else {
            panic!("usage: --child QUERY MODE DIR");
        };
        child(&runtime, Path::new(dir), query, mode);
        return;
    }
    // `cargo test --benches` runs bench binaries without `--bench`: do not run for minutes.
    if !args.iter().any(|a| a == "--bench") {
        println!("carelens engine benchmark: run it with `cargo bench --bench engine`");
        return;
    }
    let wanted: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();

    let persons = env_number("CARELENS_BENCH_PERSONS", PERSONS);
    let reps = env_number("CARELENS_BENCH_REPS", REPS).max(1);
    let dir = data_dir(persons);
    let loaded = ensure_extract(&dir, persons);
    let dir = loaded.folder().to_owned();
    let queries: Vec<Query> = queries()
        .into_iter()
        .filter(|q| wanted.is_empty() || wanted.iter().any(|w| **w == q.id))
        .collect();
    let with_library = wanted.is_empty() || wanted.iter().any(|w| *w == LIBRARY);
    assert!(
        !queries.is_empty() || with_library,
        "no query matches {wanted:?}"
    );
    let load_at_start = load_average();

    let (engine, ctx, open) = runtime.block_on(async {
        let start = Instant::now();
        let ctx = plain_context(&loaded).await;
        let plain = start.elapsed();
        let start = Instant::now();
        let engine = open_engine(&loaded).await;
        (engine, ctx, (plain, start.elapsed()))
    });
    eprintln!(
        "{} queries, 1 warm-up + {reps} timed runs each, plain, carelens and bounded interleaved",
        queries.len()
    );

    let mut results = Vec::new();
    for query in queries {
        let (constant, rewritten) = runtime.block_on(inspect(&engine, &query.sql));
        let mut m = Measured {
            constant,
            query,
            plain: Vec::new(),
            carelens: Vec::new(),
            prepare: Vec::new(),
            bounded: Vec::new(),
            rows: (0, 0),
            errors: Vec::new(),
            peak: (None, None),
            accuracy: Accuracy::default(),
            truth: Vec::new(),
        };
        let mut releases = Vec::new();
        for rep in 0..=reps {
            // Alternate which mode goes first, so neither always runs on a warmer cache.
            let order = if rep % 2 == 0 {
                [Mode::Plain, Mode::Carelens, Mode::Bounded]
            } else {
                [Mode::Bounded, Mode::Carelens, Mode::Plain]
            };
            for mode in order {
                let result = runtime.block_on(async {
                    match mode {
                        Mode::Plain => run_plain(&ctx, &m.query.sql).await,
                        Mode::Carelens => run_carelens(&engine, &m.query.sql).await,
                        Mode::Bounded => run_bounded(&ctx, rewritten.as_ref()).await,
                    }
                });
                match result {
                    Ok(run) if rep > 0 => match (mode, run.output) {
                        (Mode::Plain, output) => {
                            m.plain.push(run.total);
                            m.rows.0 = run.rows;
                            if let Output::Plain(batches) = output {
                                m.truth = true_rows(&batches);
                            }
                        }
                        (Mode::Carelens, output) => {
                            m.carelens.push(run.total);
                            m.prepare.push(run.prepare);
                            m.rows.1 = run.rows;
                            if let Output::Release(release) = output {
                                releases.push(release);
                            }
                        }
                        (Mode::Bounded, _) => m.bounded.push(run.total),
                    },
                    Ok(_) => {}
                    Err(e) => {
                        let e = format!("{} {}: {e}", m.query.id, mode.name());
                        if !m.errors.contains(&e) {
                            m.errors.push(e);
                        }
                    }
                }
            }
        }
        for release in &releases {
            m.accuracy.add(release, &m.truth);
        }
        m.peak = (
            peak(&dir, &m.query.id, Mode::Plain),
            peak(&dir, &m.query.id, Mode::Carelens),
        );
        let (p, c) = (median(&m.plain), median(&m.carelens));
        eprintln!(
            "{:<4} plain {:>8} ms  carelens {:>8} ms  ({})",
            m.query.id,
            fmt_ms(p),
            fmt_ms(c),
            m.query.name
        );
        for e in &m.errors {
            eprintln!("     {e}");
        }
        results.push(m);
    }
    let baseline = (
        peak(&dir, "open", Mode::Plain),
        peak(&dir, "open", Mode::Carelens),
    );
    let library_peaks = with_library.then(|| {
        eprintln!("the query library as one batch, plain and carelens ...");
        (
            peak(&dir, LIBRARY, Mode::Plain),
            peak(&dir, LIBRARY, Mode::Carelens),
        )
    });
    if let Some(path) = std::env::var_os("CARELENS_BENCH_TRUTH") {
        let truth: BTreeMap<&str, serde_json::Value> = results
            .iter()
            .map(|m| {
                let answer = serde_json::json!({ "sql": m.query.sql, "rows": m.truth });
                (m.query.id.as_str(), answer)
            })
            .collect();
        std::fs::write(&path, serde_json::to_string(&truth).unwrap()).unwrap();
        eprintln!(
            "plain DataFusion's answers written to {}",
            path.to_string_lossy()
        );
    }

    println!();
    println!(
        "{persons} persons, {reps} timed runs after 1 warm-up; medians; peak = VmHWM of a child process running the query once"
    );
    println!(
        "load average (1, 5, 15 min) at start: {load_at_start}; at end: {}",
        load_average()
    );
    println!();
    println!(
        "| query | person-constant keys | plain DataFusion median ms | carelens median ms | ratio | peak MB plain | peak MB carelens |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for m in &results {
        let (p, c) = (median(&m.plain), median(&m.carelens));
        let ratio = match (p, c) {
            (Some(p), Some(c)) if p > 0.0 => format!("{:.2}x", c / p),
            _ => "-".to_owned(),
        };
        let constant = match m.constant {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        println!(
            "| {} | {constant} | {} | {} | {ratio} | {} | {} |",
            m.query.id,
            fmt_ms(p),
            fmt_ms(c),
            fmt_peak(m.peak.0, Peak::total),
            fmt_peak(m.peak.1, Peak::total)
        );
    }
    println!();
    println!(
        "opening the session: plain {:.0} ms, peak {} MB, resident {} MB; carelens {:.0} ms, peak {} MB, resident {} MB",
        open.0.as_secs_f64() * 1e3,
        fmt_peak(baseline.0, |p| p.open),
        fmt_peak(baseline.0, |p| p.resident),
        open.1.as_secs_f64() * 1e3,
        fmt_peak(baseline.1, |p| p.open),
        fmt_peak(baseline.1, |p| p.resident),
    );
    println!();
    println!(
        "| query | carelens prepare median ms | bounded plan alone median ms | peak MB from query start, plain | same, carelens | rows plain | rows carelens | name |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for m in &results {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            m.query.id,
            fmt_ms(median(&m.prepare)),
            fmt_ms(median(&m.bounded)),
            fmt_peak(m.peak.0, |p| p.query),
            fmt_peak(m.peak.1, |p| p.query),
            m.rows.0,
            m.rows.1,
            m.query.name
        );
    }
    println!();
    println!(
        "| query | released cells | relative error, median | 90th percentile | largest | cells of the true answer released |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for m in &results {
        let a = &m.accuracy;
        let share = (a.true_cells > 0).then(|| a.released_cells as f64 / a.true_cells as f64);
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            m.query.id,
            a.released_cells,
            fmt_percent(a.quantile(0.5)),
            fmt_percent(a.quantile(0.9)),
            fmt_percent(a.quantile(1.0)),
            fmt_percent(share),
        );
    }
    if let Some((plain, carelens)) = library_peaks {
        println!();
        println!(
            "the query library ({} files) as one batch in one process: plain DataFusion {} ms, peak {} MB; carelens {} ms, peak {} MB",
            library().len(),
            fmt_ms(plain.map(|p| p.elapsed)),
            fmt_peak(plain, Peak::total),
            fmt_ms(carelens.map(|p| p.elapsed)),
            fmt_peak(carelens, Peak::total),
        );
    }
    let errors: Vec<&String> = results.iter().flat_map(|m| &m.errors).collect();
    if !errors.is_empty() {
        println!();
        println!("errors:");
        for e in errors {
            println!("- {e}");
        }
    }
}
