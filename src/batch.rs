//! `carelens run` and `carelens explain` of several files: a batch of SQL files.
//!
//! Order of events for `run`: read every file → prepare each (a rejection is logged and
//! does not stop the others) → check that the whole batch fits the user's and the
//! dataset's remaining budgets, refusing it whole with nothing spent otherwise → charge,
//! run and release each query in turn under a progress bar, writing `NAME.csv` and
//! `NAME.json` → `report.html` and a summary. The exit code is 0 when every query was
//! released, 1 when some were rejected or refused, 2 when one failed.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use carelens_engine::{Engine, Explain, PreparedQuery, Release};
use carelens_ledger::Amount;
use carelens_render::report::{self, Header, Outcome, Report, ReportQuery};
use carelens_render::{ZcdpCost, cost_summary, number, zcdp_charge};
use carelens_service::{Caller, Service, batch_cost};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::client::{Client, READ_TIMEOUT, api_error};
use crate::governance::{Acting, LedgerLocation, acting_user, context, note_created};
use crate::query::{
    Refused, Remote, probe_writable, read_sql, render_refusal, runtime, write_atomically,
};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// SQL files, or folders whose `.sql` files are all run (in name order).
    #[arg(value_name = "DIR|FILE", required = true)]
    pub paths: Vec<PathBuf>,
    /// Folder for the results: one CSV and one JSON per query, and report.html (created
    /// if missing; files of the same names are replaced).
    #[arg(long, value_name = "DIR", visible_alias = "output")]
    pub out: PathBuf,
    #[command(flatten)]
    pub location: LedgerLocation,
    #[command(flatten)]
    pub acting: Acting,
    #[command(flatten)]
    pub remote: Remote,
}

/// One SQL file of a batch.
#[derive(Debug)]
pub(crate) struct SqlFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its name in the output folder and the report (the file stem, made unique).
    pub name: String,
    /// The SQL as written.
    pub sql: String,
    /// What its header comment says about it.
    pub header: Header,
}

/// The SQL files named by `paths`: files as given, folders' `.sql` files in name order.
/// A file named twice is read once; names are made unique for the output folder.
pub(crate) fn sql_files(paths: &[PathBuf]) -> anyhow::Result<Vec<SqlFile>> {
    let mut found = Vec::new();
    for path in paths {
        let meta =
            fs::metadata(path).with_context(|| format!("could not read {}", path.display()))?;
        if meta.is_dir() {
            let mut in_dir: Vec<PathBuf> = fs::read_dir(path)
                .with_context(|| format!("could not list {}", path.display()))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("could not list {}", path.display()))?;
            in_dir.retain(|p| p.extension().is_some_and(|e| e == "sql") && p.is_file());
            in_dir.sort();
            if in_dir.is_empty() {
                bail!("{} holds no .sql files", path.display());
            }
            found.extend(in_dir);
        } else {
            found.push(path.clone());
        }
    }
    let mut seen = HashSet::new();
    let mut names = BTreeSet::new();
    let mut files = Vec::new();
    for path in found {
        let canonical = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen.insert(canonical) {
            continue;
        }
        let sql = read_sql(&path)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "query".to_owned());
        let mut name = stem.clone();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{stem}-{n}");
            n += 1;
        }
        files.push(SqlFile {
            header: Header::parse(&sql),
            path,
            name,
            sql,
        });
    }
    Ok(files)
}

/// Prepares every file for `explain`: nothing is logged or spent.
async fn prepare_all(engine: &Engine, files: &[SqlFile]) -> Vec<Result<PreparedQuery, Outcome>> {
    let mut prepared = Vec::with_capacity(files.len());
    for file in files {
        prepared.push(
            engine
                .prepare(&file.sql)
                .await
                .map_err(|e| Outcome::of(&file.path.display().to_string(), Err(e.into()))),
        );
    }
    prepared
}

/// `carelens run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let files = sql_files(&args.paths)?;
    if let Some(url) = &args.remote.server {
        return run_on_server(&Client::new(url)?, &files, &args.out);
    }
    let ctx = context(&args.location)?;
    let caller = Caller::of(&ctx.catalog, acting_user(&args.acting)?)?;
    let catalog_path = ctx.catalog.path().display().to_string();
    // Before the ledger is even opened.
    check_writable(&args.out)?;
    let started = chrono::Utc::now();

    let (disclosure, outcomes, budget, unwritten) = runtime()?.block_on(async {
        let service = Service::open(ctx.catalog, &ctx.ledger_path).await?;
        note_created(&service);

        let bar = ProgressBar::new(files.len() as u64).with_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {wide_msg}")?
                .progress_chars("=> "),
        );
        bar.set_prefix("running");
        if let Some(first) = files.first() {
            bar.set_message(first.name.clone());
        }
        let queries: Vec<String> = files.iter().map(|f| f.sql.clone()).collect();
        // A file that cannot be written does not stop the batch: the release is in the
        // ledger, and the report and summary must still say what was spent.
        let mut written = Vec::with_capacity(files.len());
        let items = service
            .run_batch(&caller, &queries, |index, item| {
                if let Ok(released) = item {
                    written.push(write_release_files(
                        &args.out,
                        &files[index].name,
                        &released.release,
                        &released.bytes,
                    ));
                }
                if let Some(next) = files.get(index + 1) {
                    bar.set_message(next.name.clone());
                }
                bar.inc(1);
            })
            .await
            .map_err(|e| render_refusal(e, ""))?;
        bar.finish_and_clear();
        let mut unwritten: Vec<String> = written
            .into_iter()
            .filter_map(|w| w.err().map(|e| format!("{e:#}")))
            .collect();
        let outcomes: Vec<Outcome> = files
            .iter()
            .zip(items)
            .map(|(file, item)| Outcome::of(&file.path.display().to_string(), item))
            .collect();
        for (file, outcome) in files.iter().zip(&outcomes) {
            if !matches!(outcome, Outcome::Released { .. })
                && let Err(e) = move_aside(&args.out, &file.name)
            {
                unwritten.push(format!("{e:#}"));
            }
        }
        let budget = service.own_budget(&caller).await?;
        let (name, policy) = service.engine().await?.disclosure();
        anyhow::Ok(((name.to_owned(), policy), outcomes, budget, unwritten))
    })?;

    let (policy_name, policy) = (disclosure.0.as_str(), disclosure.1);
    let report_queries: Vec<ReportQuery> = files
        .iter()
        .map(|file| ReportQuery {
            name: file.name.clone(),
            source: file.path.display().to_string(),
            header: file.header.clone(),
        })
        .collect();
    let report = Report {
        generated: started,
        user: caller.name(),
        catalog: &catalog_path,
        policy_name,
        policy: &policy.describe(),
        marker: policy.marker.as_str(),
        small_number_rules: policy.suppress_at_or_below.is_some()
            || policy.rounding.max_error() > 0.0,
        files: &report_queries,
        outcomes: &outcomes,
        budget: &budget,
    };
    finish(
        &args.out,
        &files,
        &outcomes,
        &budget
            .iter()
            .map(carelens_render::budget_json)
            .collect::<Vec<_>>(),
        &report::render(&report),
        &unwritten,
    )
}

/// `carelens run --server URL`: the batch sent whole to the server, which checks it
/// against the budgets and releases each query in turn; the files, report and summary
/// written here as in local mode.
fn run_on_server(client: &Client, files: &[SqlFile], out: &Path) -> anyhow::Result<()> {
    check_writable(out)?;
    let queries = batch_queries(files);
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!(
        "running {} quer{} on the server (each is charged before it runs)",
        files.len(),
        if files.len() == 1 { "y" } else { "ies" }
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    // The answer starts when the last query has run: wait as long as each may take.
    let wait = READ_TIMEOUT.saturating_mul(u32::try_from(files.len()).unwrap_or(u32::MAX));
    let answer = client.call_waiting(
        "POST",
        "/batches",
        Some(&json!({ "queries": queries })),
        wait,
    );
    spinner.finish_and_clear();
    let answer = answer?;
    if answer.status != 200 {
        return Err(api_error(&answer, ""));
    }
    let batch: ServerBatch =
        serde_json::from_slice(&answer.body).context("the server's batch answer")?;
    if batch.items.len() != files.len() {
        bail!(
            "the server answered {} of the batch's {} queries",
            batch.items.len(),
            files.len()
        );
    }
    let mut outcomes = Vec::with_capacity(files.len());
    let mut unwritten = Vec::new();
    for (file, item) in files.iter().zip(batch.items) {
        let (outcome, bytes) = item
            .outcome()
            .with_context(|| format!("the server's answer for {}", file.name))?;
        let written = match &outcome {
            Outcome::Released { release, .. } => {
                write_release_files(out, &file.name, release, &bytes)
            }
            _ => move_aside(out, &file.name),
        };
        if let Err(e) = written {
            unwritten.push(format!("{e:#}"));
        }
        outcomes.push(outcome);
    }
    finish(
        out,
        files,
        &outcomes,
        &batch.budget,
        &batch.report_html,
        &unwritten,
    )
}

/// The files as a server's batch takes them: each one's name, SQL and where it is.
fn batch_queries(files: &[SqlFile]) -> Vec<Value> {
    files
        .iter()
        .map(|f| json!({ "name": f.name, "sql": f.sql, "source": f.path.display().to_string() }))
        .collect()
}

/// A batch as the server answers it (`POST /batches`).
#[derive(Deserialize)]
struct ServerBatch {
    items: Vec<ServerItem>,
    report_html: String,
    budget: Vec<Value>,
}

/// One query of a server's batch.
#[derive(Deserialize)]
struct ServerItem {
    outcome: String,
    spent: ServerAmount,
    release: Option<Box<RawValue>>,
    why: Option<String>,
}

#[derive(Deserialize)]
struct ServerAmount {
    epsilon: f64,
    delta: f64,
}

impl ServerItem {
    /// The outcome as local mode has it, and a release's stored bytes.
    fn outcome(self) -> anyhow::Result<(Outcome, Vec<u8>)> {
        let spent = Amount::charge(self.spent.epsilon, self.spent.delta);
        let why = || self.why.clone().unwrap_or_default();
        let outcome = match self.outcome.as_str() {
            "released" | "cached" => {
                let raw = self.release.context("a release without its result")?;
                let release = serde_json::from_str(raw.get()).context("a release")?;
                // The stored bytes end with a newline, which the batch's JSON leaves out.
                let bytes = format!("{}\n", raw.get()).into_bytes();
                let cached = self.outcome == "cached";
                return Ok((
                    Outcome::Released {
                        release: Box::new(release),
                        spent,
                        cached,
                    },
                    bytes,
                ));
            }
            other => not_released(other, why(), spent)?,
        };
        Ok((outcome, Vec::new()))
    }
}

/// An outcome the server names `rejected`, `refused` or `failed`, with why, as local mode
/// has it.
fn not_released(kind: &str, why: String, spent: Amount) -> anyhow::Result<Outcome> {
    Ok(match kind {
        "rejected" => Outcome::Rejected(why),
        "refused" => Outcome::Refused(why),
        "failed" => Outcome::Failed { why, spent },
        other => bail!("an outcome this client does not know: {other:?}"),
    })
}

/// Writes the report and prints the summary; the error says what was not released, or
/// what was released but could not be written.
fn finish(
    out: &Path,
    files: &[SqlFile],
    outcomes: &[Outcome],
    budget: &[Value],
    report_html: &str,
    unwritten: &[String],
) -> anyhow::Result<()> {
    let report_path = out.join("report.html");
    let mut unwritten = unwritten.to_vec();
    if let Err(e) = write_atomically(&report_path, report_html.as_bytes()) {
        unwritten.push(format!("{e:#}"));
    }
    // The summary is printed whatever could not be written: it says what was spent.
    let summary = summarise(files, outcomes, budget, &report_path);
    if !unwritten.is_empty() {
        bail!(
            "the releases are stored in the ledger, but some files could not be written (run \
             the batch again, to this or another --out folder, to write them at no cost for \
             what was released):\n{}",
            unwritten.join("\n")
        );
    }
    summary
}

/// Creates `out` if needed and checks that files can be written in it, before anything is
/// spent.
fn check_writable(out: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(out).with_context(|| format!("could not create {}", out.display()))?;
    probe_writable(out)
}

/// Writes `NAME.csv` and `NAME.json` (the stored wire-format bytes) of a released query.
fn write_release_files(
    out: &Path,
    name: &str,
    release: &Release,
    stored: &[u8],
) -> anyhow::Result<()> {
    write_atomically(
        &out.join(format!("{name}.csv")),
        carelens_render::csv(release).as_bytes(),
    )?;
    write_atomically(&out.join(format!("{name}.json")), stored)
}

/// For a query not released by this run, renames `NAME.csv` and `NAME.json` of an
/// earlier run to `NAME.previous.csv` and `NAME.previous.json` (replacing older ones), so
/// that nobody takes them for this run's results and nothing released is lost.
fn move_aside(out: &Path, name: &str) -> anyhow::Result<()> {
    for ext in ["csv", "json"] {
        let stale = out.join(format!("{name}.{ext}"));
        let kept = out.join(format!("{name}.previous.{ext}"));
        match fs::rename(&stale, &kept) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| {
                    format!("could not move the earlier {} aside", stale.display())
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Prints one line per query and the budget left; the error says what was not released.
fn summarise(
    files: &[SqlFile],
    outcomes: &[Outcome],
    budget: &[Value],
    report_path: &Path,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let width = files.iter().map(|f| f.name.len()).max().unwrap_or(5).max(5);
    writeln!(
        out,
        "{:<width$}  {:<36}  {:>8}  {:>6}",
        "query", "outcome", "epsilon", "rows"
    )?;
    let mut spent = Amount::default();
    for (file, outcome) in files.iter().zip(outcomes) {
        spent = spent.plus(outcome.spent());
        let epsilon = number(outcome.spent().epsilon_value());
        let rows = match outcome {
            Outcome::Released { release, .. } => release.rows.len().to_string(),
            _ => "-".to_owned(),
        };
        writeln!(
            out,
            "{:<width$}  {:<36}  {epsilon:>8}  {rows:>6}",
            file.name,
            outcome.label()
        )?;
    }
    let released = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Released { .. }))
        .count();
    // Under zCDP accounting the budget lines carry ρ, and the queries' ε do not add up.
    let zcdp = budget.iter().any(|line| line["rho"].is_object());
    writeln!(
        out,
        "\n{released} of {} released; epsilon {} and delta {} spent by this run{}.",
        outcomes.len(),
        number(spent.epsilon_value()),
        number(spent.delta_value()),
        if zcdp {
            " (each query's own, added up; the ledger composes in zCDP, so the budgets below \
             add up rho instead)"
        } else {
            ""
        }
    )?;
    // Lines as `carelens_render::budget_json` makes them, here or on a server.
    for line in budget {
        let who = match line["name"].as_str().unwrap_or("?") {
            "dataset" => "the dataset",
            name => name,
        };
        let value = |amount: &str, of: &str| number(line[amount][of].as_f64().unwrap_or(f64::NAN));
        let rho = if line["rho"].is_object() {
            format!(
                "; rho {} of {}",
                value("rho", "remaining"),
                value("rho", "budget")
            )
        } else {
            String::new()
        };
        writeln!(
            out,
            "left: {who}: epsilon {} of {}, delta {} of {}{rho}",
            value("remaining", "epsilon"),
            value("budget", "epsilon"),
            value("remaining", "delta"),
            value("budget", "delta")
        )?;
    }
    writeln!(out, "report: {}", report_path.display())?;
    drop(out);

    let mut problems = String::new();
    let mut failed = false;
    for (file, outcome) in files.iter().zip(outcomes) {
        let why = match outcome {
            Outcome::Released { .. } => continue,
            Outcome::Rejected(why) => why.clone(),
            Outcome::Refused(why) => format!("refused: {why}"),
            Outcome::Failed { why, spent } => {
                failed = true;
                format!(
                    "failed (epsilon {} spent): {why}",
                    number(spent.epsilon_value())
                )
            }
        };
        let _ = writeln!(
            problems,
            "\n{} ({}):\n{}",
            file.name,
            file.path.display(),
            why.trim_end()
        );
    }
    if problems.is_empty() {
        return Ok(());
    }
    let message = format!(
        "{} of {} queries were not released:{problems}",
        outcomes.len() - released,
        outcomes.len()
    );
    if failed {
        bail!(message)
    }
    Err(Refused(format!("error: {message}")).into())
}

/// `carelens explain` of several files or a folder: each query's cost and expected
/// errors, and the batch's total, without running or spending anything — here over the
/// catalog, or on the server at `server`.
pub(crate) fn explain(
    paths: &[PathBuf],
    catalog: &Path,
    server: Option<&str>,
) -> anyhow::Result<()> {
    let files = sql_files(paths)?;
    let (items, total, distinct) = match server {
        Some(url) => explain_on_server(&Client::new(url)?, &files)?,
        None => explain_here(&files, catalog)?,
    };
    render_explained(&files, &items, total, distinct)
}

/// One query of a batch explained: planned (and whether it repeats one before it, so is
/// paid once, there), or why it would not be released.
enum Explained {
    Planned { explain: Explain, repeat: bool },
    Not(Outcome),
}

/// A batch explained: each query, the total cost and how many distinct queries pay it.
type BatchExplained = (Vec<Explained>, Amount, usize);

fn explain_here(files: &[SqlFile], catalog: &Path) -> anyhow::Result<BatchExplained> {
    let catalog = carelens_catalog::load(catalog)?;
    let (prepared, data_version) = runtime()?.block_on(async {
        let engine = Engine::open(&catalog).await?;
        let prepared = prepare_all(&engine, files).await;
        anyhow::Ok((prepared, engine.data_version().to_owned()))
    })?;
    let cost = batch_cost(
        prepared.iter().filter_map(|p| p.as_ref().ok()),
        &data_version,
    );
    let mut repeats = cost.repeats.iter();
    let items = prepared
        .into_iter()
        .map(|p| match p {
            Ok(p) => Explained::Planned {
                explain: p.explain(),
                repeat: repeats.next() == Some(&true),
            },
            Err(outcome) => Explained::Not(outcome),
        })
        .collect();
    Ok((items, cost.total, cost.distinct))
}

fn explain_on_server(client: &Client, files: &[SqlFile]) -> anyhow::Result<BatchExplained> {
    let answer = client.call(
        "POST",
        "/batches/explain",
        Some(&json!({ "queries": batch_queries(files) })),
    )?;
    if answer.status != 200 {
        return Err(api_error(&answer, ""));
    }
    #[derive(Deserialize)]
    struct Answer {
        items: Vec<Item>,
        total: ServerAmount,
        distinct: usize,
    }
    #[derive(Deserialize)]
    struct Item {
        outcome: String,
        repeat: bool,
        explain: Option<Explain>,
        why: Option<String>,
    }
    let answer: Answer =
        serde_json::from_slice(&answer.body).context("the server's batch explanation")?;
    if answer.items.len() != files.len() {
        bail!(
            "the server explained {} of the batch's {} queries",
            answer.items.len(),
            files.len()
        );
    }
    let items = answer
        .items
        .into_iter()
        .map(|item| {
            let why = item.why.unwrap_or_default();
            Ok(match (item.outcome.as_str(), item.explain) {
                ("planned", Some(explain)) => Explained::Planned {
                    explain,
                    repeat: item.repeat,
                },
                (other, _) => Explained::Not(not_released(other, why, Amount::default())?),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let total = Amount::charge(answer.total.epsilon, answer.total.delta);
    Ok((items, total, answer.distinct))
}

/// Prints each query's cost (or why it would not be released) and the total; the error
/// says how many would be rejected or could not be planned.
fn render_explained(
    files: &[SqlFile],
    items: &[Explained],
    total: Amount,
    distinct: usize,
) -> anyhow::Result<()> {
    let mut out = String::new();
    let (mut refused, mut not_planned) = (0, 0);
    for (file, item) in files.iter().zip(items) {
        let _ = writeln!(out, "{} ({})", file.name, file.path.display());
        if !file.header.title.is_empty() {
            let _ = writeln!(out, "  {}", file.header.title);
        }
        match item {
            Explained::Planned { explain, repeat } => {
                if *repeat {
                    out.push_str("  the same query as one above: paid once\n");
                }
                out.push_str(&cost_summary(explain, "  "));
            }
            Explained::Not(outcome) => {
                if matches!(outcome, Outcome::Rejected(_)) {
                    refused += 1;
                } else {
                    not_planned += 1;
                }
                let why = match outcome {
                    Outcome::Rejected(why)
                    | Outcome::Refused(why)
                    | Outcome::Failed { why, .. } => why.as_str(),
                    Outcome::Released { .. } => "",
                };
                let _ = writeln!(
                    out,
                    "  {}: {}",
                    outcome.label(),
                    why.trim_end().replace('\n', "\n  ")
                );
            }
        }
        out.push('\n');
    }
    // Under zCDP accounting a budget is charged the queries' ρ, which adds up.
    let zcdp = items
        .iter()
        .filter_map(|item| match item {
            Explained::Planned {
                explain,
                repeat: false,
            } => explain.zcdp,
            _ => None,
        })
        .reduce(|sum, z| ZcdpCost {
            rho: sum.rho + z.rho,
            delta: sum.delta + z.delta,
        });
    if let Some(z) = zcdp {
        let _ = writeln!(out, "together, {}", zcdp_charge(&z));
    }
    let _ = writeln!(
        out,
        "total: epsilon {} and delta {} for {} distinct quer{} ({} rejected, {} failing to plan); queries released before are answered at no cost. `carelens budget` shows what is left.",
        number(total.epsilon_value()),
        number(total.delta_value()),
        distinct,
        if distinct == 1 { "y" } else { "ies" },
        refused,
        not_planned
    );
    write!(std::io::stdout().lock(), "{out}")?;
    if not_planned > 0 {
        bail!(
            "{not_planned} of {} queries could not be planned (see above)",
            files.len()
        );
    }
    if refused > 0 {
        return Err(Refused(format!(
            "error: {refused} of {} queries would be rejected (see above)",
            files.len()
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_give_their_sql_files_in_order_with_unique_names() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        for (d, f) in [
            (&a, "z.sql"),
            (&a, "m.sql"),
            (&a, "notes.txt"),
            (&b, "m.sql"),
        ] {
            fs::write(d.join(f), "SELECT 1").unwrap();
        }
        let files = sql_files(&[a.clone(), b.clone(), a.join("z.sql")]).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["m", "z", "m-2"]);
        let err = sql_files(&[dir.path().join("missing.sql")]).unwrap_err();
        assert!(format!("{err:#}").contains("could not read"), "{err:#}");
        let empty = dir.path().join("empty");
        fs::create_dir_all(&empty).unwrap();
        let err = sql_files(&[empty]).unwrap_err();
        assert!(err.to_string().contains("holds no .sql files"), "{err}");
    }
}
