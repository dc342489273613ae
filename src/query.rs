//! `carelens query` and `carelens explain`: one SQL file, analysed, charged, released.
//!
//! Order of events for `query` (the budget is debited before a result exists):
//! prepare (parse, analyse, rewrite, calibrate — no data read) → ledger charge (or the
//! stored answer of an identical earlier query — its release, or its failure — at no cost;
//! or a refusal) → run and release → store the release in the ledger → write it out. A
//! rejection is logged at no cost; a failure after the charge is logged against it and is
//! that query's answer from then on.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use carelens_engine::{Engine, Explain, QueryError, Release};
use carelens_render::number;
use carelens_render::report::{failed_after_charge, failed_before};
pub(crate) use carelens_service::RESEARCHERS_ASK;
use carelens_service::{Caller, Service, ServiceError};
use clap::{Args, ValueEnum};

use serde_json::json;

use crate::client::{Answer, Client, api_error};
use crate::governance::{Acting, LedgerLocation, acting_user, context, note_created};

/// The query was refused (privacy analysis, policy or budget): exit code 1. The message
/// is complete as it stands (it is the rendered rejection).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// How to write a result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns with notes, for people.
    #[default]
    Table,
    /// Comma-separated values; suppressed cells show the policy's marker.
    Csv,
    /// The documented wire format (docs/wire-format.md).
    Json,
    /// Apache Parquet (needs --output); suppressed cells are null.
    Parquet,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL file.
    #[arg(value_name = "FILE.sql")]
    pub file: PathBuf,
    #[command(flatten)]
    pub location: LedgerLocation,
    #[command(flatten)]
    pub acting: Acting,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Write the result here instead of standard output.
    #[arg(long, value_name = "PATH", visible_alias = "out")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub remote: Remote,
}

/// Where a command runs: here over the catalog's files and the ledger, or on a carelens
/// server.
#[derive(Debug, Args)]
pub struct Remote {
    /// Ask the carelens server at URL instead of reading the files here (the token in
    /// CARELENS_TOKEN says who you are; --user, --config and --ledger are not used).
    #[arg(long, value_name = "URL", env = "CARELENS_SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The SQL file; or several, or folders of them, for each one's cost and the total.
    #[arg(value_name = "FILE.sql|DIR", required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub catalog: crate::cli::CatalogArgs,
    #[command(flatten)]
    pub remote: Remote,
}

pub(crate) fn read_sql(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(carelens_engine::STACK_BYTES)
        .build()
        .context("could not start the query runtime")
}

/// A rejection becomes [`Refused`] with its rendered message (locations in `source`, a
/// file name or `request N`); other errors stay errors.
pub(crate) fn refuse(err: QueryError, source: &str) -> anyhow::Error {
    match err {
        QueryError::Rejected(r) => Refused(r.render(source)).into(),
        other => anyhow::Error::new(other),
    }
}

/// `carelens explain`: one file in full; several files or a folder as a batch.
pub fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let file = match args.paths.as_slice() {
        [one] if !one.is_dir() => one,
        _ => {
            return crate::batch::explain(
                &args.paths,
                &args.catalog.config,
                args.remote.server.as_deref(),
            );
        }
    };
    let sql = read_sql(file)?;
    if let Some(url) = &args.remote.server {
        let client = Client::new(url)?;
        let answer = client.call("POST", "/explain", Some(&json!({ "sql": sql })))?;
        if answer.status != 200 {
            return Err(api_error(&answer, &file.display().to_string()));
        }
        let explained: Explain =
            serde_json::from_slice(&answer.body).context("the server's explanation")?;
        write!(
            std::io::stdout().lock(),
            "{}",
            carelens_render::explain(&explained)
        )?;
        return Ok(());
    }
    let catalog = carelens_catalog::load(&args.catalog.config)?;
    let text = runtime()?.block_on(async {
        let engine = Engine::open(&catalog).await?;
        let prepared = engine
            .prepare(&sql)
            .await
            .map_err(|e| refuse(e, &file.display().to_string()))?;
        anyhow::Ok(carelens_render::explain(&prepared.explain()))
    })?;
    write!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// `carelens query`: the service's release protocol, rendered.
pub fn query(args: QueryArgs) -> anyhow::Result<()> {
    if args.format == OutputFormat::Parquet && args.output.is_none() {
        anyhow::bail!("--format parquet needs --output PATH");
    }
    let sql = read_sql(&args.file)?;
    let source = args.file.display().to_string();
    // Before anything is spent: a result that cannot be written must not be paid for.
    if let Some(output) = &args.output {
        check_output(output)?;
    }
    if let Some(url) = &args.remote.server {
        let client = Client::new(url)?;
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message("asking the server (the budget is charged before the query runs)");
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let answer = client.call("POST", "/queries", Some(&json!({ "sql": sql })));
        spinner.finish_and_clear();
        let answer = answer?;
        if answer.status != 200 {
            return Err(api_error(&answer, &source));
        }
        return write_answered_release(
            &answer,
            "an identical query was released before",
            args.format,
            args.output.as_deref(),
        );
    }
    let ctx = context(&args.location)?;
    let caller = Caller::of(&ctx.catalog, acting_user(&args.acting)?)?;
    let release = runtime()?.block_on(async {
        let service = Service::open(ctx.catalog, &ctx.ledger_path)
            .await
            .map_err(anyhow::Error::new)?;
        note_created(&service);
        match running(service.query(&caller, &sql)).await {
            Ok(answered) => Ok(answered),
            Err(err) => Err(render_refusal(err, &source)),
        }
    })?;
    if release.cached {
        eprintln!("note: an identical query was released before: this is that answer, at no cost");
    }
    write_release(
        &release.release,
        &release.bytes,
        args.format,
        args.output.as_deref(),
        release.cached,
    )
}

/// A release a server answered with: `again` is said when it was answered again at no
/// cost, then it is written as `format` (to `output`, or standard output).
pub(crate) fn write_answered_release(
    answer: &Answer,
    again: &str,
    format: OutputFormat,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let release: Release = serde_json::from_slice(&answer.body).context("the server's release")?;
    let cached = answer.header("carelens-cached") == Some("true");
    if cached {
        eprintln!("note: {again}: this is that answer, at no cost");
    }
    write_release(&release, &answer.body, format, output, cached)
}

/// A service error as the command line says it: refusals as [`Refused`] (exit 1) with
/// their hints, failures with what was spent, other errors as they are.
pub(crate) fn render_refusal(err: ServiceError, source: &str) -> anyhow::Error {
    match err {
        ServiceError::Rejected(r) => Refused(r.render(source)).into(),
        ServiceError::ResearchersAsk => Refused(format!("error: {RESEARCHERS_ASK}")).into(),
        ServiceError::OverBudget(_) | ServiceError::BatchOverBudget { .. } => {
            let hint = err.hint().unwrap_or_default();
            Refused(format!("error: {err}\nhint: {hint}")).into()
        }
        ServiceError::Workflow(refusal) => Refused(format!("error: {refusal}")).into(),
        ServiceError::FailedAfterCharge { message, spent } => {
            anyhow::anyhow!(failed_after_charge(&message, spent))
        }
        ServiceError::FailedBefore(failure) => anyhow::anyhow!(failed_before(&failure)),
        other => anyhow::Error::new(other),
    }
}

/// Runs `work` with a spinner on standard error (hidden when it is not a terminal).
pub(crate) async fn running<T>(work: impl std::future::Future<Output = T>) -> T {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(
        "running the query (the budget is charged first; the result is released when it ends)",
    );
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let out = work.await;
    spinner.finish_and_clear();
    out
}

/// Writes a released answer in `format`, to `output` or standard output. JSON is the
/// stored wire-format bytes exactly (their SHA-256 is in the audit log); the other formats
/// are rendered from the release.
pub(crate) fn write_release(
    release: &Release,
    stored: &[u8],
    format: OutputFormat,
    output: Option<&Path>,
    again: bool,
) -> anyhow::Result<()> {
    let rendered;
    let bytes: &[u8] = match format {
        OutputFormat::Table => {
            rendered = carelens_render::table_answered(release, again).into_bytes();
            &rendered
        }
        OutputFormat::Csv => {
            rendered = carelens_render::csv(release).into_bytes();
            &rendered
        }
        OutputFormat::Json => stored,
        OutputFormat::Parquet => {
            rendered = carelens_render::parquet(release)?;
            &rendered
        }
    };
    match output {
        Some(path) => {
            write_atomically(path, bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{e:#}\nthe release is stored in the ledger all the same{} (epsilon {} for \
                     it): ask the same query again, with another --output, to get it at no \
                     cost",
                    release
                        .release_id
                        .map(|id| format!(" as release {id}"))
                        .unwrap_or_default(),
                    number(release.privacy.epsilon)
                )
            })?;
            if format != OutputFormat::Table {
                let spent = if again {
                    format!(
                        "nothing spent now (it cost epsilon {} when first released)",
                        number(release.privacy.epsilon)
                    )
                } else {
                    format!("epsilon {} spent", number(release.privacy.epsilon))
                };
                eprintln!(
                    "released: {} rows, {spent}; written to {}",
                    release.rows.len(),
                    path.display()
                );
            }
        }
        None => std::io::stdout().lock().write_all(bytes)?,
    }
    Ok(())
}

/// Checks, before anything is spent, that a result can be written at `path`: its folder
/// exists and takes files, and it is not a folder itself.
pub(crate) fn check_output(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "--output {} is a folder: give a file name (nothing was run or spent)",
            path.display()
        );
    }
    let folder = folder_of(path);
    if !folder.is_dir() {
        anyhow::bail!(
            "cannot write {}: the folder {} does not exist (nothing was run or spent)",
            path.display(),
            folder.display()
        );
    }
    probe_writable(folder)
}

/// Checks that files can be written in `folder` by writing and removing one, before
/// anything is spent.
pub(crate) fn probe_writable(folder: &Path) -> anyhow::Result<()> {
    let probe = folder.join(format!(".carelens-write-check-{}", std::process::id()));
    fs::write(&probe, b"").with_context(|| {
        format!(
            "cannot write into {} (nothing was run or spent)",
            folder.display()
        )
    })?;
    fs::remove_file(&probe).with_context(|| format!("could not remove {}", probe.display()))
}

/// The folder a file is written in.
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` whole or not at all: to a temporary file beside it, then
/// renamed over it, so a full disk or a crash never leaves half a result that looks like
/// a whole one. A path that is not a regular file (a pipe, a device) is written directly.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let special = fs::metadata(path).is_ok_and(|m| !m.is_file());
    if special {
        return fs::write(path, bytes)
            .with_context(|| format!("could not write {}", path.display()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = folder_of(path).join(format!(".{name}.carelens-{}", std::process::id()));
    let written = fs::File::create(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written.with_context(|| format!("could not write {}", path.display()))
}
