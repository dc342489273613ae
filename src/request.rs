//! `carelens request`: approved cohort counts. A researcher submits a query with its
//! purpose, an approver who is not the researcher approves (possibly at a lower ε) or
//! rejects it, and the researcher releases it once; asking again shows the same answer at
//! no cost. The workflow's rules live in the ledger (`carelens_ledger::Request`); this
//! module prepares the queries, checks the plan hash and prints.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use carelens_engine::{Engine, PreparedQuery, Release, definition_tokens, number};
use carelens_ledger::{Budgets, Ledger, LedgerError, NewRequest, Request, RequestState};
use clap::{Args, Subcommand};

use crate::governance::{Acting, LedgerContext, LedgerLocation, acting_user, context};
use crate::query::{
    Answer, OutputFormat, Refused, answer, cost_summary, read_sql, refuse, running, runtime,
    write_release,
};

#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(subcommand)]
    pub command: RequestCommand,
}

/// Where the catalog and ledger are, and who is acting.
#[derive(Debug, Args)]
pub struct Who {
    #[command(flatten)]
    pub location: LedgerLocation,
    #[command(flatten)]
    pub acting: Acting,
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Ask for a cohort count: stores the SQL, its plan hash, the purpose and ε, and
    /// shows the cost and expected error. Nothing is run or spent until release.
    Submit {
        /// The SQL file.
        #[arg(value_name = "FILE.sql")]
        file: PathBuf,
        /// Why the count is needed (shown to the approver).
        #[arg(long)]
        purpose: String,
        /// ε to ask for (default: the query's own, or the policy's default).
        #[arg(long)]
        epsilon: Option<f64>,
        #[command(flatten)]
        who: Who,
    },
    /// List requests: your own, or everyone's for approvers and admins.
    List {
        #[command(flatten)]
        who: Who,
    },
    /// Show one request: its SQL, purpose, cost, any differencing flag, the decision.
    Show {
        /// The request id.
        id: i64,
        #[command(flatten)]
        who: Who,
    },
    /// Approve a request (approvers and admins; not your own).
    Approve {
        /// The request id.
        id: i64,
        /// ε to approve (default: the ε asked for).
        #[arg(long)]
        epsilon: Option<f64>,
        /// A note for the record (required for a flagged request).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        who: Who,
    },
    /// Reject a request, saying why (approvers and admins; not your own).
    Reject {
        /// The request id.
        id: i64,
        /// Why (shown to the researcher).
        #[arg(long)]
        note: String,
        #[command(flatten)]
        who: Who,
    },
    /// Release an approved request of yours: runs exactly the approved query, charges
    /// your budget and the dataset's, and releases it under the disclosure policy. A
    /// released request shows the same answer again at no cost.
    Release {
        /// The request id.
        id: i64,
        /// Run this file instead of the stored SQL; its plan must match the approved one.
        #[arg(long, value_name = "FILE.sql")]
        sql: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
        /// Write the result here instead of standard output.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        #[command(flatten)]
        who: Who,
    },
}

/// A workflow refusal is exit code 1, like any refusal; other ledger errors stay errors.
fn workflow(err: LedgerError) -> anyhow::Error {
    match err {
        LedgerError::Request { .. } | LedgerError::UnknownRequest { .. } => {
            Refused(format!("error: {err}")).into()
        }
        other => other.into(),
    }
}

fn open_ledger(ctx: &LedgerContext) -> anyhow::Result<Ledger> {
    Ok(Ledger::open(
        &ctx.ledger_path,
        Budgets::from_catalog(ctx.catalog.catalog()),
    )?)
}

/// Prepares `sql` (at `epsilon` when given); a rejection is refused with its place.
async fn prepare(
    engine: &Engine,
    sql: &str,
    epsilon: Option<f64>,
    name: &str,
) -> anyhow::Result<PreparedQuery> {
    let prepared = match epsilon {
        Some(e) => engine.prepare_with_epsilon(sql, e).await,
        None => engine.prepare(sql).await,
    };
    prepared.map_err(|e| refuse(e, name))
}

/// `carelens request`.
pub fn request(args: RequestArgs) -> anyhow::Result<()> {
    match args.command {
        RequestCommand::Submit {
            file,
            purpose,
            epsilon,
            who,
        } => submit(&file, &purpose, epsilon, &who),
        RequestCommand::List { who } => list(&who),
        RequestCommand::Show { id, who } => show(id, &who),
        RequestCommand::Approve {
            id,
            epsilon,
            note,
            who,
        } => approve(id, epsilon, &note, &who),
        RequestCommand::Reject { id, note, who } => {
            let ctx = context(&who.location)?;
            let (user, _) = acting_user(&ctx, &who.acting)?;
            let request = open_ledger(&ctx)?
                .reject_request(user, id, &note)
                .map_err(workflow)?;
            print(&describe(&request, None))
        }
        RequestCommand::Release {
            id,
            sql,
            format,
            output,
            who,
        } => release(id, sql, format, output, &who),
    }
}

fn print(text: &str) -> anyhow::Result<()> {
    write!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

fn submit(
    file: &std::path::Path,
    purpose: &str,
    epsilon: Option<f64>,
    who: &Who,
) -> anyhow::Result<()> {
    let sql = read_sql(file)?;
    let ctx = context(&who.location)?;
    let (user, _) = acting_user(&ctx, &who.acting)?;
    let name = file.display().to_string();
    let (request, cost) = runtime()?.block_on(async {
        let engine = Engine::open(&ctx.catalog).await?;
        let mut ledger = open_ledger(&ctx)?;
        let prepared = match prepare(&engine, &sql, epsilon, &name).await {
            Ok(p) => p,
            Err(e) => {
                if let Some(refused) = e.downcast_ref::<Refused>() {
                    ledger.record_rejection(user, &sql, "", &refused.0)?;
                }
                return Err(e);
            }
        };
        if prepared.params().is_none() {
            return Err(Refused(
                "error: this query reads only public reference tables: it needs no approval, \
                 run it with `carelens query`"
                    .to_owned(),
            )
            .into());
        }
        let definition = definition_tokens(&sql)?;
        let request = ledger
            .submit_request(
                user,
                &NewRequest {
                    sql: &sql,
                    plan_hash: prepared.plan_hash(),
                    purpose,
                    epsilon: prepared.charge().epsilon(),
                    definition: &definition,
                },
            )
            .map_err(workflow)?;
        anyhow::Ok((request, cost_summary(&prepared, "  ")))
    })?;
    print(&describe(&request, Some(&cost)))
}

fn list(who: &Who) -> anyhow::Result<()> {
    let ctx = context(&who.location)?;
    let (user, _) = acting_user(&ctx, &who.acting)?;
    let requests = open_ledger(&ctx)?.requests(user)?;
    let mut out = String::new();
    if requests.is_empty() {
        out.push_str("no requests\n");
    } else {
        let _ = writeln!(
            out,
            "{:>4}  {:<10}  {:<12}  {:>8}  {:<10}  {:<4}  purpose",
            "id", "state", "requester", "epsilon", "submitted", "flag"
        );
    }
    for r in &requests {
        let epsilon = r.approved_epsilon().unwrap_or(r.epsilon);
        let purpose: String = r.purpose.chars().take(50).collect();
        let _ = writeln!(
            out,
            "{:>4}  {:<10}  {:<12}  {:>8}  {:<10}  {:<4}  {purpose}",
            r.id,
            r.state.as_str(),
            r.requester,
            number(epsilon),
            r.submitted_at.get(..10).unwrap_or(&r.submitted_at),
            if r.flag.is_some() { "yes" } else { "" },
        );
    }
    print(&out)
}

fn show(id: i64, who: &Who) -> anyhow::Result<()> {
    let ctx = context(&who.location)?;
    let (user, _) = acting_user(&ctx, &who.acting)?;
    let request = open_ledger(&ctx)?.request(user, id).map_err(workflow)?;
    // The cost at the ε it would run with, from the stored SQL against today's catalog.
    let epsilon = request.approved_epsilon().unwrap_or(request.epsilon);
    let cost = runtime()?.block_on(async {
        let engine = Engine::open(&ctx.catalog).await?;
        let prepared = prepare(
            &engine,
            &request.sql,
            Some(epsilon),
            &format!("request {id}"),
        )
        .await?;
        let mut cost = cost_summary(&prepared, "  ");
        if prepared.plan_hash() != request.plan_hash {
            cost.push_str(
                "  note: the query no longer plans as it did when submitted (the catalog or \
                 data changed): it cannot be released as it stands\n",
            );
        }
        anyhow::Ok(cost)
    });
    let cost = cost.unwrap_or_else(|e| format!("  cannot be prepared now: {e}\n"));
    let mut out = describe(&request, Some(&cost));
    let _ = write!(out, "\nSQL:\n{}", request.sql);
    if !request.sql.ends_with('\n') {
        out.push('\n');
    }
    print(&out)
}

fn approve(id: i64, epsilon: Option<f64>, note: &str, who: &Who) -> anyhow::Result<()> {
    let ctx = context(&who.location)?;
    let (user, _) = acting_user(&ctx, &who.acting)?;
    let mut ledger = open_ledger(&ctx)?;
    let request = ledger.request(user, id).map_err(workflow)?;
    // The query must still prepare, at the ε to be approved (the policy's cap applies),
    // to the plan the researcher submitted.
    let at = epsilon.unwrap_or(request.epsilon);
    let (cost, params) = runtime()?.block_on(async {
        let engine = Engine::open(&ctx.catalog).await?;
        let prepared = prepare(&engine, &request.sql, Some(at), &format!("request {id}")).await?;
        if prepared.plan_hash() != request.plan_hash {
            return Err(Refused(format!(
                "error: request {id} no longer plans as it did when submitted (the catalog or \
                 data changed); reject it and ask for a new request"
            ))
            .into());
        }
        anyhow::Ok((cost_summary(&prepared, "  "), query_params(&prepared)?))
    })?;
    let request = ledger
        .approve_request(user, id, Some(at), &params, note)
        .map_err(workflow)?;
    print(&describe(&request, Some(&cost)))
}

fn release(
    id: i64,
    sql_file: Option<PathBuf>,
    format: OutputFormat,
    output: Option<PathBuf>,
    who: &Who,
) -> anyhow::Result<()> {
    if format == OutputFormat::Parquet && output.is_none() {
        anyhow::bail!("--format parquet needs --output PATH");
    }
    let sql_override = sql_file.as_deref().map(read_sql).transpose()?;
    let ctx = context(&who.location)?;
    let (user, _) = acting_user(&ctx, &who.acting)?;
    let release = runtime()?.block_on(async {
        let mut ledger = open_ledger(&ctx)?;
        let request = ledger.releasable_request(user, id).map_err(workflow)?;
        if request.state == RequestState::Released {
            let stored = ledger.request_release_again(user, id).map_err(workflow)?;
            let mut release: Release = serde_json::from_slice(&stored.result)
                .context("the ledger's stored release is not a carelens result")?;
            release.release_id = Some(stored.release_seq);
            release.notes.push(format!(
                "request {id} was released before: this is that answer, at no cost"
            ));
            return anyhow::Ok(release);
        }
        let epsilon = request
            .approved_epsilon()
            .context("an approved request without an approved epsilon")?;
        let engine = Engine::open(&ctx.catalog).await?;
        let sql = sql_override.as_deref().unwrap_or(&request.sql);
        let name = sql_file
            .as_ref()
            .map_or_else(|| format!("request {id}"), |p| p.display().to_string());
        let prepared = prepare(&engine, sql, Some(epsilon), &name).await?;
        if prepared.plan_hash() != request.plan_hash {
            return Err(Refused(format!(
                "error: this is not the query approved in request {id}: its plan differs (the \
                 SQL was changed, or the catalog changed since approval). Nothing was run or \
                 spent; submit a new request for the new query"
            ))
            .into());
        }
        let approved_params = request
            .decision
            .as_ref()
            .map(|d| d.query_params.as_str())
            .unwrap_or_default();
        let params = query_params(&prepared)?;
        if params != approved_params {
            return Err(Refused(format!(
                "error: request {id} was approved with the DP parameters {approved_params}, but \
                 this query would run with {params} (its directives or the catalog's policy \
                 changed). Nothing was run or spent; submit a new request"
            ))
            .into());
        }
        let data_version = ctx.catalog.data_version()?;
        let (release, _) =
            match running(answer(&engine, &mut ledger, user, &prepared, &data_version)).await? {
                Answer::Released { release, spent } => (release, spent),
                Answer::Cached(release) => (release, Default::default()),
                Answer::Failed { message, spent } => {
                    anyhow::bail!(
                        "request {id} failed while running: {message} (epsilon {} was spent; \
                         the request stays approved, and releasing it again gets this failure \
                         from the ledger at no cost)",
                        number(spent.epsilon_value())
                    );
                }
                Answer::FailedBefore(failure) => {
                    anyhow::bail!(
                        "request {id} failed: {}",
                        crate::query::failed_before(&failure)
                    );
                }
                Answer::Refused(refusal) => {
                    return Err(Refused(format!(
                        "error: request {id} cannot be released: {refusal}\nhint: ask your \
                         information governance team for more budget, or an approver for a \
                         smaller epsilon on a new request"
                    ))
                    .into());
                }
            };
        let release_seq = release
            .release_id
            .context("a release without its ledger id")?;
        let marked = ledger
            .mark_request_released(user, id, release_seq)
            .map_err(workflow)?;
        if marked.release_seq != Some(release_seq) {
            anyhow::bail!(
                "request {id} was released meanwhile as release {:?}; run the release again to see it",
                marked.release_seq
            );
        }
        anyhow::Ok(release)
    })?;
    write_release(&release, format, output.as_deref())
}

/// The DP parameters a prepared query runs with (ε, δ, L0, L∞), as stored at approval.
fn query_params(prepared: &PreparedQuery) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&prepared.params())?)
}

/// A request in a few lines: state, who, purpose, ε, flag, decision, and `cost` if given.
fn describe(r: &Request, cost: Option<&str>) -> String {
    let mut out = format!(
        "request {} — {}\nsubmitted by {} at {}\npurpose: {}\nepsilon asked: {}\n",
        r.id,
        r.state.as_str(),
        r.requester,
        r.submitted_at.get(..19).unwrap_or(&r.submitted_at),
        r.purpose,
        number(r.epsilon)
    );
    if let Some(flag) = &r.flag {
        let _ = writeln!(out, "FLAG: {flag}");
    }
    if let Some(d) = &r.decision {
        let verb = if r.state == RequestState::Rejected {
            "rejected"
        } else {
            "approved"
        };
        let _ = write!(
            out,
            "{verb} by {} at {}",
            d.by,
            d.at.get(..19).unwrap_or(&d.at)
        );
        if let Some(e) = d.epsilon {
            let _ = write!(out, " for epsilon {}", number(e));
        }
        if d.note.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, ": {}", d.note);
        }
    }
    if let Some(seq) = r.release_seq {
        let _ = writeln!(out, "released: release {seq}");
    }
    if let Some(cost) = cost {
        let _ = write!(out, "cost and expected error:\n{cost}");
    }
    let _ = writeln!(
        out,
        "next: {}",
        match r.state {
            RequestState::Submitted => "an approver (not the requester) approves or rejects it",
            RequestState::Approved => "its requester releases it with `carelens request release`",
            RequestState::Rejected => "nothing; submit a new request if the question changes",
            RequestState::Released =>
                "nothing; releasing it again shows the same answer at no cost",
        }
    );
    out
}
