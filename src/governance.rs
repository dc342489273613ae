//! `carelens budget` and `carelens audit`: the ledger seen from the command line.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use carelens_catalog::LoadedCatalog;
use carelens_ledger::{Amount, AuditEntry, DATASET_USER, Event, Verification};
use carelens_render::number;
use carelens_service::{Caller, Service, ServiceError};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::client::{Client, api_error};
use crate::query::{Remote, render_refusal, runtime};

/// Where the catalog and ledger are, shared by the ledger commands.
#[derive(Debug, Args)]
pub struct LedgerLocation {
    #[command(flatten)]
    pub catalog: crate::cli::CatalogArgs,
    /// The ledger file (default: the catalog's `[ledger] path`, else
    /// `.carelens/ledger.sqlite` beside the catalog).
    #[arg(long, value_name = "PATH", env = "CARELENS_LEDGER")]
    pub ledger: Option<PathBuf>,
}

/// The acting user.
#[derive(Debug, Args)]
pub struct Acting {
    /// Who is asking (a name in the catalog's [[users]]).
    #[arg(long, value_name = "NAME", env = "CARELENS_USER")]
    pub user: Option<String>,
}

/// How to print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
}

#[derive(Debug, Args)]
pub struct BudgetArgs {
    #[command(flatten)]
    pub location: LedgerLocation,
    #[command(flatten)]
    pub acting: Acting,
    #[command(flatten)]
    pub remote: Remote,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain, order and charge/release pairs.
    Verify {
        #[command(flatten)]
        location: LedgerLocation,
        #[command(flatten)]
        remote: Remote,
        /// A head printed by an earlier `audit verify` and kept outside the ledger
        /// (`SEQ:HASH`): also check that the log still holds it, which shows entries cut
        /// off its end or a chain rewritten after an edit.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<String>,
    },
    /// Check that a release file (`carelens.release/1` JSON, as `query --format json` or
    /// `run` wrote it) is exactly what this ledger released: its SHA-256 is in a
    /// `released` entry of an intact log.
    CheckRelease {
        /// The release as received.
        #[arg(value_name = "FILE.json")]
        file: PathBuf,
        #[command(flatten)]
        location: LedgerLocation,
    },
    /// Show audit entries: your own, or everyone's for approvers and admins.
    Log {
        #[command(flatten)]
        location: LedgerLocation,
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        acting: Acting,
        /// Only entries from this date (YYYY-MM-DD) or time (RFC 3339, UTC) on.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only this user's entries (approvers and admins).
        #[arg(long, value_name = "NAME")]
        of: Option<String>,
        /// Only entries of this kind, e.g. `error` for the queries that failed after their
        /// charge, or `cached_failure` for those failures served again.
        #[arg(long, value_name = "KIND", value_parser = parse_event)]
        event: Option<Event>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// The loaded catalog and the ledger's path.
pub(crate) struct LedgerContext {
    pub(crate) catalog: LoadedCatalog,
    pub(crate) ledger_path: PathBuf,
}

pub(crate) fn context(location: &LedgerLocation) -> anyhow::Result<LedgerContext> {
    let catalog = carelens_catalog::load(&location.catalog.config)?;
    let ledger_path = location
        .ledger
        .clone()
        .unwrap_or_else(|| catalog.ledger_path());
    Ok(LedgerContext {
        catalog,
        ledger_path,
    })
}

/// Says so when opening the service created its ledger: a mistyped path would otherwise
/// pass for a new ledger with every budget full.
pub(crate) fn note_created(service: &Service) {
    if service.created_ledger() {
        eprintln!(
            "note: created a new ledger at {} (every budget starts full); if you meant an \
             existing one, check --ledger or the catalog's `ledger`",
            service.ledger_path().display()
        );
    }
}

/// The acting user's name as given (the service checks it against the catalog).
pub(crate) fn acting_user(acting: &Acting) -> anyhow::Result<&str> {
    acting
        .user
        .as_deref()
        .context("who is asking? give your user name with --user NAME or CARELENS_USER")
}

/// Opens the service over a ledger to read only (a ledger under investigation is left
/// exactly as it is; a missing one is an error, never created), and runs `work` on it.
pub(crate) fn reading<T>(
    ctx: LedgerContext,
    work: impl AsyncFnOnce(&Service) -> Result<T, ServiceError>,
) -> anyhow::Result<T> {
    runtime()?.block_on(async {
        let service = Service::open_read_only(ctx.catalog, &ctx.ledger_path).await?;
        work(&service).await.map_err(|e| render_refusal(e, ""))
    })
}

/// `carelens budget`.
pub fn budget(args: BudgetArgs) -> anyhow::Result<()> {
    let (lines, source) = match &args.remote.server {
        Some(url) => {
            let answer = Client::new(url)?.call("GET", "/budget", None)?;
            if answer.status != 200 {
                return Err(api_error(&answer, ""));
            }
            let lines: Vec<Value> =
                serde_json::from_slice(&answer.body).context("the server's budget")?;
            (lines, format!("server: {url}"))
        }
        None => {
            let ctx = context(&args.location)?;
            let caller = Caller::of(&ctx.catalog, acting_user(&args.acting)?)?;
            let source = format!("ledger: {}", ctx.ledger_path.display());
            let lines = reading(ctx, async |service| service.budget(&caller).await)?;
            (
                lines.iter().map(carelens_render::budget_json).collect(),
                source,
            )
        }
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&lines)?)?,
        Format::Table => write_budget_table(&mut out, &lines, &source)?,
    }
    Ok(())
}

/// The budget lines (as [`carelens_render::budget_json`] makes them, here or on a
/// server) as a table; `source` says where they were read.
fn write_budget_table(out: &mut impl Write, lines: &[Value], source: &str) -> anyhow::Result<()> {
    let eps = |v: &Value| number(v["epsilon"].as_f64().unwrap_or(f64::NAN));
    let delta = |v: &Value| number(v["delta"].as_f64().unwrap_or(f64::NAN));
    let num = |v: &Value| number(v.as_f64().unwrap_or(f64::NAN));
    // Under zCDP accounting every line has ρ: three more columns, and failures in ρ.
    let zcdp = lines.iter().any(|l| l["rho"].is_object());
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let (failed, failed_cost) = match l["failed"].as_object() {
                Some(f) => (
                    f.get("count").map_or("-".to_owned(), Value::to_string),
                    num(&f[if zcdp { "rho" } else { "epsilon" }]),
                ),
                None => ("-".to_owned(), "-".to_owned()),
            };
            let role = l["role"].as_str().unwrap_or_default();
            let mut row = vec![
                if role.is_empty() {
                    "(dataset)".to_owned()
                } else {
                    l["name"].as_str().unwrap_or_default().to_owned()
                },
                role.to_owned(),
                eps(&l["spent"]),
                eps(&l["remaining"]),
                eps(&l["budget"]),
                delta(&l["spent"]),
                delta(&l["remaining"]),
                delta(&l["budget"]),
            ];
            if zcdp {
                let rho = &l["rho"];
                row.extend([
                    num(&rho["spent"]),
                    num(&rho["remaining"]),
                    num(&rho["budget"]),
                ]);
            }
            row.extend([failed, failed_cost]);
            row
        })
        .collect();
    let mut header = vec![
        "who",
        "role",
        "ε spent",
        "ε left",
        "ε budget",
        "δ spent",
        "δ left",
        "δ budget",
    ];
    if zcdp {
        header.extend(["ρ spent", "ρ left", "ρ budget"]);
    }
    header.extend(["failed", if zcdp { "ρ of failed" } else { "ε of failed" }]);
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain(std::iter::once(header[i].chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &[&str]| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if i < 2 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(&header))?;
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    if zcdp {
        writeln!(
            out,
            "\ncomposed in zCDP (Gaussian noise): ρ adds up, and ε spent is ρ spent converted \
             at the budget's δ,\nwhich is why δ spent is all of it once ρ is spent; ρ budget \
             is what the budget holds at the δ key selection leaves (docs/privacy.md)"
        )?;
        writeln!(
            out,
            "failed: charged queries that failed after their charge (their ρ is in ρ spent)"
        )?;
    } else {
        writeln!(
            out,
            "\nfailed: charged queries that failed after their charge (their ε is in ε spent)"
        )?;
    }
    writeln!(out, "{source}")?;
    Ok(())
}

/// `carelens audit verify` and `carelens audit log`.
pub fn audit(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify {
            location,
            remote,
            expect_head,
        } => {
            let head = expect_head.as_deref().map(parse_head).transpose()?;
            let expected = head.is_some();
            let (verification, where_) = match &remote.server {
                Some(url) => (
                    remote_verify(url, head.as_ref())?,
                    format!("the server {url}"),
                ),
                None => {
                    let ctx = context(&location)?;
                    let where_ = ctx.ledger_path.display().to_string();
                    (
                        reading(ctx, async |service| service.verify(head).await)?,
                        where_,
                    )
                }
            };
            match verification {
                Verification::Intact {
                    entries,
                    head_seq,
                    head_hash,
                } => {
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "audit log intact: {entries} entries, every hash and link checked"
                    )?;
                    writeln!(out, "head: {head_seq}:{head_hash}")?;
                    if expected {
                        writeln!(out, "the recorded head is still in the log")?;
                    } else {
                        writeln!(
                            out,
                            "(keep the head outside the ledger and check it later with --expect-head)"
                        )?;
                    }
                    Ok(())
                }
                Verification::Broken { seq, problem } => {
                    bail!("the audit log of {where_} is broken at entry {seq}: {problem}")
                }
            }
        }
        AuditCommand::CheckRelease { file, location } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("could not read {}", file.display()))?;
            let ctx = context(&location)?;
            let ledger_path = ctx.ledger_path.clone();
            let check = reading(ctx, async |service| service.check_release(&bytes).await)?;
            if let Verification::Broken { seq, problem } = check.log {
                bail!(
                    "the audit log of {} is broken at entry {seq}: {problem}; no release in it \
                     can be vouched for",
                    ledger_path.display()
                );
            }
            match check.released {
                Some((seq, at)) => {
                    writeln!(
                        std::io::stdout().lock(),
                        "{} is release {seq} of {}, released at {at}, unchanged: its SHA-256 \
                         {} is in audit entry {seq}, and the log is intact",
                        file.display(),
                        ledger_path.display(),
                        check.result_hash
                    )?;
                    Ok(())
                }
                None => bail!(
                    "{} is not a release of {} as released: no released entry holds its \
                     SHA-256 {} (the file was changed, re-formatted, or comes from another \
                     ledger)",
                    file.display(),
                    ledger_path.display(),
                    check.result_hash
                ),
            }
        }
        AuditCommand::Log {
            location,
            remote,
            acting,
            since,
            of,
            event,
            format,
        } => {
            if let Some(since) = &since {
                check_date(since)?;
            }
            let entries = match &remote.server {
                Some(url) => remote_log(url, since.as_deref(), of.as_deref(), event)?,
                None => {
                    let ctx = context(&location)?;
                    let caller = Caller::of(&ctx.catalog, acting_user(&acting)?)?;
                    reading(ctx, async |service| {
                        service
                            .audit_log(&caller, since.as_deref(), of.as_deref(), event)
                            .await
                    })?
                }
            };
            let mut out = std::io::stdout().lock();
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?,
                Format::Table => write_log(&mut out, &entries)?,
            }
            Ok(())
        }
    }
}

/// `audit verify` on a server: its answer as the service's [`Verification`].
fn remote_verify(url: &str, head: Option<&(i64, String)>) -> anyhow::Result<Verification> {
    let path = match head {
        Some((seq, hash)) => format!("/audit/verify?expect_head={seq}:{hash}"),
        None => "/audit/verify".to_owned(),
    };
    let answer = Client::new(url)?.call("GET", &path, None)?;
    if answer.status != 200 {
        return Err(api_error(&answer, ""));
    }
    let v = answer.json()?;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let parsed = if v["intact"] == true {
        (|| {
            Some(Verification::Intact {
                entries: v["entries"].as_i64()?,
                head_seq: v["head"]["seq"].as_i64()?,
                head_hash: text(&v["head"]["hash"])?,
            })
        })()
    } else {
        (|| {
            Some(Verification::Broken {
                seq: v["broken_at"].as_i64()?,
                problem: text(&v["problem"])?,
            })
        })()
    };
    parsed.with_context(|| format!("the server's verification is not understood: {v}"))
}

/// `audit log` on a server: the entries the token's user may see, filtered there.
fn remote_log(
    url: &str,
    since: Option<&str>,
    of: Option<&str>,
    event: Option<Event>,
) -> anyhow::Result<Vec<AuditEntry>> {
    let filters: Vec<String> = [
        since.map(|s| format!("since={}", percent_encode(s))),
        of.map(|o| format!("of={}", percent_encode(o))),
        event.map(|e| format!("event={}", e.as_str())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let path = if filters.is_empty() {
        "/audit".to_owned()
    } else {
        format!("/audit?{}", filters.join("&"))
    };
    let answer = Client::new(url)?.call("GET", &path, None)?;
    if answer.status != 200 {
        return Err(api_error(&answer, ""));
    }
    serde_json::from_slice(&answer.body).context("the server's audit entries")
}

/// `text` as a URL query value: unreserved characters as they are, every other byte as
/// `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_event(text: &str) -> Result<Event, String> {
    Event::parse(text).ok_or_else(|| {
        let kinds: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
        format!("not an audit event kind; one of: {}", kinds.join(", "))
    })
}

fn parse_head(text: &str) -> anyhow::Result<(i64, String)> {
    carelens_ledger::parse_head(text).with_context(|| {
        format!("--expect-head {text:?} is not SEQ:HASH (an entry number and a 64-digit hash, as `audit verify` prints)")
    })
}

fn check_date(since: &str) -> anyhow::Result<()> {
    let date = since.get(..10).unwrap_or(since);
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").with_context(|| {
        format!("--since {since:?} is not a date; write YYYY-MM-DD, e.g. 2026-11-26")
    })?;
    Ok(())
}

fn write_log(out: &mut impl Write, entries: &[AuditEntry]) -> anyhow::Result<()> {
    if entries.is_empty() {
        writeln!(out, "no audit entries")?;
        return Ok(());
    }
    for e in entries {
        let cost = if e.epsilon_units > 0 || e.delta_units > 0 {
            let a = Amount {
                epsilon: e.epsilon_units,
                delta: e.delta_units,
            };
            format!(
                "  ε {} δ {}",
                number(a.epsilon_value()),
                number(a.delta_value())
            )
        } else {
            String::new()
        };
        let who = if e.user == DATASET_USER {
            "(dataset)"
        } else {
            e.user.as_str()
        };
        let at = e.at.get(..19).unwrap_or(&e.at);
        let of = e
            .refers_to
            .map(|r| format!(" (of entry {r})"))
            .unwrap_or_default();
        writeln!(
            out,
            "{:>5}  {at}  {who} ({})  {}{of}{cost}",
            e.seq,
            e.role,
            e.event.as_str()
        )?;
        let sql = carelens_engine::query_line(&e.sql);
        if !sql.is_empty() {
            let short: String = sql.chars().take(100).collect();
            let more = if sql.chars().count() > 100 { "…" } else { "" };
            writeln!(out, "       {short}{more}")?;
        }
        if !e.detail.is_empty() {
            writeln!(out, "       {}", e.detail)?;
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub location: LedgerLocation,
    /// The folder to write `index.html`, `register.csv` and `register.json` into (created
    /// if missing; those three files are replaced, nothing else is touched).
    #[arg(long, visible_alias = "output", value_name = "DIR")]
    pub out: PathBuf,
}

/// `carelens register`: the transparency register as static files, to publish.
pub fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let ctx = context(&args.location)?;
    let register = reading(ctx, async |service| service.register().await)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the folder {}", args.out.display()))?;
    let files = [
        ("index.html", carelens_web::register::html(&register)),
        ("register.csv", carelens_web::register::csv(&register)),
        ("register.json", carelens_web::register::json(&register)),
    ];
    for (name, text) in &files {
        crate::query::write_atomically(&args.out.join(name), text.as_bytes())?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote the transparency register of {} to {}: index.html, register.csv, register.json",
        register.dataset,
        args.out.display()
    )?;
    writeln!(
        out,
        "{} charges; ε {} spent of the cap of ε {}",
        register.charges.len(),
        number(register.spent.epsilon),
        number(register.cap.epsilon)
    )?;
    if register.log.intact {
        writeln!(
            out,
            "audit log intact; head {}:{}",
            register.log.head_seq, register.log.head_hash
        )?;
        Ok(())
    } else {
        bail!(
            "the audit log failed its check: the register says so; run `carelens audit verify` \
             for where it breaks"
        )
    }
}
