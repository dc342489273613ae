//! A differential fuzzer for carelens: **whether a query succeeds must never depend on one
//! person.** A query that fails only when some person's row is present answers "is this
//! row there?" without noise (a privacy review recovered a year of birth that way).
//!
//! The [`Generator`] writes SQL in the shapes the privacy analysis accepts, over the
//! catalog's tables, with extreme literals. The [`Oracle`] runs each query on the sample
//! extract and on a copy with one extreme person added ([`extreme`]): boundary values in
//! every column. A query the sample accepts must then be released on both or fail on
//! both; a difference, or any panic, is a [`Finding`], which [`run`] shrinks to a minimal
//! query ([`shrink`]) and writes as a `.sql` file.
//!
//! Layer: a test tool beside the workspace, above `carelens-engine` and
//! `carelens-catalog`; used by the end-to-end tests (a short pass) and by `examples/fuzz.rs`
//! (the long pass). How to run it: `docs/fuzzing.md`.
//!
//! ```no_run
//! # async fn run() -> Result<(), carelens_fuzz::FuzzError> {
//! use std::path::Path;
//! use std::time::Duration;
//!
//! let sample = Path::new("sample-data/carelens.toml");
//! let work = Path::new("target/fuzz-work");
//! let oracle = carelens_fuzz::Oracle::open(sample, work, 2, Duration::from_secs(30)).await?;
//! let catalog = carelens_catalog::load(sample)?;
//! let generator = carelens_fuzz::Generator::new(catalog.catalog());
//! let config = carelens_fuzz::Config { queries: Some(300), ..Default::default() };
//! let report = carelens_fuzz::run(&oracle, &generator, &config, &mut |_| {}).await;
//! assert!(report.findings.is_empty(), "{}", report.summary());
//! # Ok(())
//! # }
//! ```

pub mod expr;
pub mod extreme;
mod generate;
mod literals;
mod oracle;
pub mod shrink;
pub mod sql;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use generate::Generator;
pub use oracle::{Finding, FindingKind, Oracle, Outcome, Verdict, compare};

/// Why the fuzzer could not start or write its findings.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// The sample catalog did not load.
    #[error("the catalog could not be loaded")]
    Catalog(#[from] carelens_catalog::CatalogError),
    /// The engine could not open an extract.
    #[error("the engine could not open the extract")]
    Session(#[from] carelens_engine::SessionError),
    /// A file could not be read or written.
    #[error("could not read or write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file could not be read or written.
    #[error("a Parquet file could not be read or written")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// The extreme rows did not fit the sample's schema.
    #[error("the extreme person's rows do not fit the table's schema")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// The extract has something the fuzzer does not handle.
    #[error("the fuzzer does not handle {0}")]
    Unsupported(String),
}

impl FuzzError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        FuzzError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// What a fuzz pass does.
#[derive(Debug, Clone)]
pub struct Config {
    /// The generator's seed (queries only; never noise).
    pub seed: u64,
    /// Stop after this many generated queries.
    pub queries: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Shrink findings before reporting them.
    pub shrink: bool,
    /// At most this many oracle checks per shrink.
    pub shrink_checks: usize,
    /// Keep (shrink and write) at most this many findings with the same signature; the
    /// rest are only counted.
    pub shrink_per_signature: usize,
    /// Write each finding as a `.sql` file here.
    pub out: Option<PathBuf>,
    /// Queries judged at the same time (the engine spends much of a query waiting, and
    /// the machine may have several cores); findings are still handled in query order.
    pub parallel: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 13,
            queries: None,
            duration: None,
            shrink: true,
            shrink_checks: 200,
            shrink_per_signature: 1,
            out: None,
            parallel: 8,
        }
    }
}

/// What a pass found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Queries generated.
    pub generated: u64,
    /// Queries `prepare` accepted on the sample.
    pub accepted: u64,
    /// Queries released on both extracts.
    pub agreed: u64,
    /// Why the sample refused the rest, by the first line of the reason, with counts.
    pub refusals: BTreeMap<String, u64>,
    /// Accepted queries that failed on both extracts, by the shape of the error: how
    /// many, and the first of them (shrunk when the config says so).
    pub fails_on_both: BTreeMap<String, (u64, String)>,
    /// Queries that timed out on one side or both.
    pub slow: Vec<String>,
    /// Findings, shrunk when the config says so; one per signature.
    pub findings: Vec<Finding>,
    /// How many findings each signature had before deduplication.
    pub finding_counts: BTreeMap<String, u64>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// How long the pass ran.
    pub elapsed: Duration,
}

impl Report {
    /// One line of progress.
    pub fn progress(&self) -> String {
        format!(
            "{:>6.0}s  generated {}  accepted {}  released on both {}  failed on both {}  slow {}  findings {} ({} distinct)",
            self.elapsed.as_secs_f64(),
            self.generated,
            self.accepted,
            self.agreed,
            self.fails_on_both.values().map(|(n, _)| n).sum::<u64>(),
            self.slow.len(),
            self.finding_counts.values().sum::<u64>(),
            self.findings.len()
        )
    }

    /// The counts, every finding with its outcomes and SQL, and the failures on both.
    pub fn summary(&self) -> String {
        let mut out = self.progress();
        out.push('\n');
        for f in &self.findings {
            let _ = writeln!(
                out,
                "\n== finding ({}; {} times): extreme person variant {}\n   sample:  {}\n   extreme: {}\n{}\n",
                f.kind.as_str(),
                self.finding_counts
                    .get(&f.signature())
                    .copied()
                    .unwrap_or(1),
                f.variant,
                one_line(&f.plain.to_string()),
                one_line(&f.extreme.to_string()),
                f.sql
            );
        }
        for (error, (n, sql)) in &self.fails_on_both {
            let _ = writeln!(
                out,
                "\n-- fails on both extracts ({n} times): {}\n{sql}\n",
                one_line(error)
            );
        }
        for sql in self.slow.iter().take(3) {
            let _ = writeln!(
                out,
                "\n-- slow (past the timeout on one extract or both)\n{sql}\n"
            );
        }
        if !self.refusals.is_empty() {
            out.push_str("\nrefused by prepare on the sample:\n");
            let mut by_count: Vec<_> = self.refusals.iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(a.1));
            for (reason, n) in by_count.iter().take(15) {
                let _ = writeln!(out, "  {n:>5}  {reason}");
            }
        }
        out
    }
}

fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(300).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// The `.sql` file of a finding: its outcomes as comments, then the query.
pub fn finding_file(finding: &Finding) -> String {
    let origin = finding
        .generated
        .map(|(seed, index)| format!("; from query {index} of seed {seed}"))
        .unwrap_or_default();
    let what = match finding.kind {
        FindingKind::Panic => "the engine panics".to_owned(),
        kind => format!("{} differs with the extreme person", kind.as_str()),
    };
    format!(
        "-- finding: {what} (carelens-fuzz, variant {}{origin})\n\
         -- sample extract:       {}\n\
         -- with extreme person:  {}\n{}\n",
        finding.variant,
        one_line(&finding.plain.to_string()),
        one_line(&finding.extreme.to_string()),
        finding.sql
    )
}

fn write_finding(dir: &Path, finding: &Finding) -> Result<PathBuf, FuzzError> {
    use std::hash::{Hash, Hasher};
    std::fs::create_dir_all(dir).map_err(|e| FuzzError::io(dir, e))?;
    let mut hasher = std::hash::DefaultHasher::new();
    finding.sql.hash(&mut hasher);
    let path = dir.join(format!(
        "{}-{:016x}.sql",
        finding.kind.as_str(),
        hasher.finish()
    ));
    std::fs::write(&path, finding_file(finding)).map_err(|e| FuzzError::io(&path, e))?;
    Ok(path)
}

/// Runs a fuzz pass: generates queries from `config.seed`, judges each with the oracle
/// (query `i` against extreme variant `i` modulo their number; `config.parallel` at a
/// time), shrinks and writes the findings, and calls `progress` after every query.
pub async fn run(
    oracle: &Oracle,
    generator: &Generator,
    config: &Config,
    progress: &mut dyn FnMut(&Report),
) -> Report {
    let start = Instant::now();
    let mut report = Report::default();
    let mut kept: BTreeMap<String, usize> = BTreeMap::new();
    let mut next = 0u64;
    loop {
        let remaining = config.queries.map_or(u64::MAX, |n| n.saturating_sub(next));
        if remaining == 0 || config.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        // A batch judged at the same time, then handled one by one in query order.
        let batch = remaining.min(config.parallel.max(1) as u64);
        let mut tasks = Vec::new();
        for index in next..next + batch {
            let query = generator.query(config.seed, index);
            let sql = query.to_string();
            let variant = index as usize % oracle.variants();
            let task_oracle = oracle.clone();
            let task_sql = sql.clone();
            let task = tokio::spawn(async move { task_oracle.judge(&task_sql, variant).await });
            tasks.push((query, sql, task));
        }
        next += batch;
        for (index, (query, sql, task)) in (next - batch..).zip(tasks) {
            // `judge` catches the engine's panics itself; a panic here is the fuzzer's.
            let verdict = task.await.expect("the oracle does not panic");
            report.generated += 1;
            record(
                &mut report,
                &mut kept,
                oracle,
                config,
                (&query, index),
                sql,
                verdict,
            )
            .await;
            report.elapsed = start.elapsed();
            progress(&report);
        }
    }
    report.elapsed = start.elapsed();
    report
}

/// Adds one verdict to the report; a new finding is shrunk and written.
async fn record(
    report: &mut Report,
    kept: &mut BTreeMap<String, usize>,
    oracle: &Oracle,
    config: &Config,
    (query, index): (&sql::Query, u64),
    sql: String,
    verdict: Verdict,
) {
    match verdict {
        Verdict::NotAccepted(reason) => {
            let key: String = one_line(reason.lines().next().unwrap_or_default())
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .take(120)
                .collect();
            *report.refusals.entry(key).or_default() += 1;
        }
        Verdict::Agrees => {
            report.accepted += 1;
            report.agreed += 1;
        }
        Verdict::FailsOnBoth(error) => {
            report.accepted += 1;
            let key = Outcome::Failed(error).signature();
            if let Some(entry) = report.fails_on_both.get_mut(&key) {
                entry.0 += 1;
                return;
            }
            let mut side = Vec::new();
            let sql = if config.shrink {
                let variant = index as usize;
                let (small, _) = shrink::shrink(
                    query,
                    config.shrink_checks,
                    async |c: &sql::Query| match oracle.judge(&c.to_string(), variant).await {
                        Verdict::FailsOnBoth(e) => Outcome::Failed(e).signature() == key,
                        Verdict::Finding(f) => {
                            side.push((c.clone(), f));
                            false
                        }
                        _ => false,
                    },
                )
                .await;
                small.to_string()
            } else {
                sql
            };
            report.fails_on_both.insert(key, (1, sql));
            keep_side(report, kept, oracle, config, side).await;
        }
        Verdict::Slow { .. } => {
            report.accepted += 1;
            report.slow.push(sql);
        }
        Verdict::Finding(mut finding) => {
            report.accepted += 1;
            finding.generated = Some((config.seed, index));
            count(report, &finding);
            if kept.get(&finding.signature()).copied().unwrap_or(0) >= config.shrink_per_signature {
                return;
            }
            let mut side = Vec::new();
            let finding = if config.shrink {
                minimise(oracle, query, finding, config.shrink_checks, &mut side).await
            } else {
                finding
            };
            keep(report, kept, config, finding);
            for (q, finding) in side {
                count(report, &finding);
                if kept.get(&finding.signature()).copied().unwrap_or(0)
                    >= config.shrink_per_signature
                {
                    continue;
                }
                // Met while shrinking another finding: shrink it too (once).
                let finding =
                    minimise(oracle, &q, finding, config.shrink_checks, &mut Vec::new()).await;
                keep(report, kept, config, finding);
            }
        }
    }
}

/// Findings met while shrinking another: counted, and shrunk and kept like the rest.
async fn keep_side(
    report: &mut Report,
    kept: &mut BTreeMap<String, usize>,
    oracle: &Oracle,
    config: &Config,
    side: Vec<(sql::Query, Finding)>,
) {
    for (query, finding) in side {
        count(report, &finding);
        if kept.get(&finding.signature()).copied().unwrap_or(0) >= config.shrink_per_signature {
            continue;
        }
        let finding = minimise(
            oracle,
            &query,
            finding,
            config.shrink_checks,
            &mut Vec::new(),
        )
        .await;
        keep(report, kept, config, finding);
    }
}

fn count(report: &mut Report, finding: &Finding) {
    *report
        .finding_counts
        .entry(finding.signature())
        .or_default() += 1;
}

/// Writes and lists a finding, unless enough with its signature are kept already.
fn keep(
    report: &mut Report,
    kept: &mut BTreeMap<String, usize>,
    config: &Config,
    finding: Finding,
) {
    let seen = kept.entry(finding.signature()).or_default();
    if *seen >= config.shrink_per_signature {
        return;
    }
    *seen += 1;
    if let Some(dir) = &config.out {
        match write_finding(dir, &finding) {
            Ok(path) => report.files.push(path),
            Err(e) => eprintln!("carelens-fuzz: {e}"),
        }
    }
    if !report.findings.iter().any(|f| f.sql == finding.sql) {
        report.findings.push(finding);
    }
}

/// Shrinks a finding's query while the oracle still finds the same difference. Other
/// findings met on the way (a candidate that panics) are added to `side`.
async fn minimise(
    oracle: &Oracle,
    query: &sql::Query,
    finding: Finding,
    max_checks: usize,
    side: &mut Vec<(sql::Query, Finding)>,
) -> Finding {
    let signature = finding.signature();
    let variant = finding.variant;
    let mut last = finding.clone();
    let (small, _) = shrink::shrink(query, max_checks, async |candidate: &sql::Query| {
        let sql = candidate.to_string();
        match oracle.judge(&sql, variant).await {
            Verdict::Finding(f) if f.signature() == signature => {
                last = f;
                true
            }
            Verdict::Finding(f) => {
                side.push((candidate.clone(), f));
                false
            }
            _ => false,
        }
    })
    .await;
    if last.sql == small.to_string() {
        Finding {
            generated: finding.generated,
            ..last
        }
    } else {
        finding
    }
}
