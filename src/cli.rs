//! Subcommands: their arguments and how their results are shown.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use carelens_catalog::thousands;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// Privacy-preserving population analytics for shared care records.
#[derive(Debug, Parser)]
#[command(name = "carelens", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a synthetic Wessex-shaped care-record extract (Parquet + carelens.toml).
    Synth(SynthArgs),
    /// Check a catalog against its Parquet files and show what can be queried.
    Catalog(CatalogCommandArgs),
    /// Run one SQL file and release its result with differential privacy (charges your
    /// budget; an identical earlier query is answered from the ledger for free: with its
    /// release, or with its failure if it failed after its charge).
    Query(crate::query::QueryArgs),
    /// Run a batch of SQL files (or folders of them): check the whole batch fits the
    /// budget, release each, and write CSV, JSON and an HTML report to --out.
    Run(crate::batch::RunArgs),
    /// Show what a SQL file would cost and how accurate it would be, without running it
    /// or spending anything: limits, noise scales, expected 95% errors, rewritten plan.
    /// Given several files or a folder: each query's cost and errors, and the total.
    Explain(crate::query::ExplainArgs),
    /// Approved cohort counts: submit, list, show, approve, reject, release.
    Request(crate::request::RequestArgs),
    /// Show privacy budget spent and left, and the charged queries that failed: yours and
    /// the dataset's (everyone's for approvers and admins).
    Budget(crate::governance::BudgetArgs),
    /// Check or read the hash-chained audit log.
    Audit(crate::governance::AuditArgs),
    /// Write the public transparency register (every release's date, role, purpose and
    /// privacy spent; no results, no names) as static pages, CSV and JSON, to publish.
    Register(crate::governance::RegisterArgs),
    /// API tokens for `carelens serve`: issue (the secret is shown once), list, revoke.
    Token(crate::tokens::TokenArgs),
    /// Serve the authenticated HTTP API (docs/server.md): every call needs a token from
    /// `carelens token issue`; HTTPS with --tls-cert/--tls-key.
    Serve(crate::serve::ServeArgs),
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Number of people in the extract.
    #[arg(long, value_name = "N")]
    pub persons: u64,
    /// Seed: the same seed and size always give the same extract.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Output folder (created; must be new or empty unless --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace an earlier extract in the output folder.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// The catalog file.
    #[arg(
        long,
        value_name = "PATH",
        env = "CARELENS_CONFIG",
        default_value = "carelens.toml"
    )]
    pub config: PathBuf,
}

/// `carelens synth`.
pub fn synth(args: SynthArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let bar = ProgressBar::new(args.persons).with_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:40}] {human_pos}/{human_len} persons, {per_sec}, eta {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.set_prefix("generating");
    let options = carelens_synth::Options {
        persons: args.persons,
        seed: args.seed,
        out: args.out.clone(),
        force: args.force,
    };
    let summary = carelens_synth::generate(&options, &|done| bar.set_position(done));
    bar.finish_and_clear();
    let summary = summary.context("synthetic extract not written")?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote {} ({} persons, seed {}) in {:.1} s",
        summary.out.display(),
        thousands(summary.persons),
        args.seed,
        started.elapsed().as_secs_f64()
    )?;
    for (table, rows) in &summary.rows {
        writeln!(out, "  {table:<16} {:>12} rows", thousands(*rows))?;
    }
    writeln!(
        out,
        "  {:<16} {:>12} rows\n  {:<16} {:>12.1} MB",
        "events (total)",
        thousands(summary.event_rows()),
        "size",
        summary.bytes as f64 / 1e6
    )?;
    if let Some(leftover) = &summary.leftover {
        eprintln!(
            "warning: the replaced extract at {} could not be deleted; delete it by hand",
            leftover.display()
        );
    }
    writeln!(
        out,
        "next: carelens catalog --config {}",
        summary.out.join(carelens_synth::CATALOG_FILE).display()
    )?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct CatalogCommandArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Also read every page of every file (slow on a large extract): a damaged page is
    /// found here rather than by a query after its charge. Records the check beside the
    /// extract (`.carelens/checked.toml`: each file's rows and SHA-256, and the files'
    /// version); from then on the engine refuses files that changed since.
    #[arg(long)]
    pub deep: bool,
}

/// `carelens catalog`.
pub fn catalog(args: CatalogCommandArgs) -> anyhow::Result<()> {
    let loaded = carelens_catalog::load(&args.catalog.config)?;
    let report = loaded.check_files()?;
    let mut out = std::io::stdout().lock();
    write!(out, "{report}")?;
    if args.deep {
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message("reading every page of every file");
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let checked_at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let checked = loaded.check_deeply(&checked_at);
        spinner.finish_and_clear();
        let (digests, facts, record) = checked?;
        writeln!(out, "\nevery page read; fingerprints (SHA-256):")?;
        for d in digests {
            writeln!(out, "  {}  {}  {} rows", d.sha256, d.shown, d.rows)?;
        }
        writeln!(
            out,
            "recorded in {}: queries are refused if the files change before the next check",
            record.display()
        )?;
        for table in loaded.catalog().tables.iter().filter(|t| {
            t.kind == carelens_catalog::TableKind::Person
                && !facts.one_row_per_person.contains(&t.name)
        }) {
            writeln!(
                out,
                "warning: {} does not hold one row per person (a missing or repeated \
                 person id): the engine will refuse the extract",
                table.name
            )?;
        }
    }
    Ok(())
}
