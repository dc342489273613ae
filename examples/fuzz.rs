//! The long pass of the differential fuzzer (`docs/fuzzing.md`): generated queries on the
//! sample extract and on copies with one extreme person added, until the time is up.
//! Progress on stderr; each finding, shrunk, as a `.sql` file in `--out`.
//!
//! ```text
//! cargo run --release --example fuzz -- --minutes 60 --seed 7 --out fuzz-findings
//! cargo run --release --example fuzz -- --replay fuzz-findings/execute-0123abcd.sql
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use carelens_fuzz::{Config, Generator, Oracle, Verdict, extreme};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Differential fuzzer: no query may succeed or fail because of one person")]
struct Args {
    /// How long to run.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seed of the query generator (default: from the clock, printed so the run can be
    /// repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after this many queries.
    #[arg(long)]
    queries: Option<u64>,
    /// Folder for the findings' `.sql` files.
    #[arg(long, default_value = "fuzz-findings")]
    out: PathBuf,
    /// The sample extract's catalog.
    #[arg(long, default_value = "sample-data/carelens.toml")]
    catalog: PathBuf,
    /// Variants of the extreme person's person row (1 to 4).
    #[arg(long, default_value_t = extreme::VARIANTS)]
    variants: usize,
    /// Seconds one query may run on one extract before it counts as slow.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Oracle checks per shrink.
    #[arg(long, default_value_t = 300)]
    shrink_checks: usize,
    /// Print the queries of `--seed` with these numbers and stop.
    #[arg(long)]
    show: Vec<u64>,
    /// Judge these `.sql` files against every variant instead of generating queries.
    #[arg(long)]
    replay: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    // Panics in the engine are findings, caught per query: one line each, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("carelens-fuzz: the engine panicked (a finding): {info}");
    }));
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let loaded = carelens_catalog::load(&args.catalog)
        .with_context(|| format!("loading {}", args.catalog.display()))?;
    let generator = Generator::new(loaded.catalog());
    if !args.show.is_empty() {
        for i in &args.show {
            println!(
                "-- seed {seed}, query {i}\n{};\n",
                generator.query(seed, *i)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let work = tempfile::tempdir().context("creating a folder for the extreme extracts")?;
    eprintln!(
        "carelens-fuzz: writing {} extreme extract(s) under {}",
        args.variants,
        work.path().display()
    );
    let oracle = Oracle::open(
        &args.catalog,
        work.path(),
        args.variants,
        Duration::from_secs(args.timeout),
    )
    .await
    .context("opening the sample and extreme extracts")?;

    if !args.replay.is_empty() {
        let mut differs = false;
        for file in &args.replay {
            let sql = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            for variant in 0..oracle.variants() {
                let verdict = match oracle.judge(&sql, variant).await {
                    Verdict::Finding(f) => {
                        differs = true;
                        format!(
                            "finding ({}): sample {}; with the extreme person {}",
                            f.kind.as_str(),
                            f.plain,
                            f.extreme
                        )
                    }
                    Verdict::NotAccepted(reason) => format!("refused on the sample: {reason}"),
                    Verdict::Agrees => "released on both".to_owned(),
                    Verdict::FailsOnBoth(error) => format!("failed on both: {error}"),
                    Verdict::Slow { plain, extreme } => {
                        format!("slow: sample {plain}; with the extreme person {extreme}")
                    }
                };
                eprintln!("{} (variant {variant}): {verdict}", file.display());
            }
        }
        return Ok(if differs {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }

    let config = Config {
        seed,
        queries: args.queries,
        duration: Some(Duration::from_secs_f64(args.minutes * 60.0)),
        shrink: true,
        shrink_checks: args.shrink_checks,
        out: Some(args.out.clone()),
        ..Config::default()
    };
    eprintln!(
        "carelens-fuzz: seed {seed}, {} minute(s), findings to {}",
        args.minutes,
        args.out.display()
    );
    let mut last = Instant::now();
    let mut findings = 0;
    let report = carelens_fuzz::run(&oracle, &generator, &config, &mut |r| {
        let total: u64 = r.finding_counts.values().sum();
        if last.elapsed() >= Duration::from_secs(10) || total != findings {
            eprintln!("{}", r.progress());
            last = Instant::now();
            findings = total;
        }
    })
    .await;
    eprintln!("\n{}", report.summary());
    for file in &report.files {
        eprintln!("wrote {}", file.display());
    }
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
