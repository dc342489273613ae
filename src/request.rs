//! `carelens request`: approved cohort counts. A researcher submits a query with its
//! purpose, an approver who is not the researcher approves (possibly at a lower ε) or
//! rejects it, and the researcher releases it once; asking again shows the same answer at
//! no cost. The workflow's rules live in carelens-service and the ledger; this module reads
//! the arguments and prints.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use carelens_engine::Explain;
use carelens_ledger::{Request, RequestState};
use carelens_render::report::failed_before;
use carelens_render::{cost_summary, number};
use carelens_service::{Caller, Service, ServiceError, ShownRequest};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{Answer, Client, api_error};
use crate::governance::{Acting, LedgerLocation, acting_user, context, note_created, reading};
use crate::query::{
    OutputFormat, Refused, Remote, check_output, read_sql, render_refusal, running, runtime,
    write_answered_release, write_release,
};

#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(subcommand)]
    pub command: RequestCommand,
}

/// Where the catalog and ledger are, and who is acting; or the server that knows.
#[derive(Debug, Args)]
pub struct Who {
    #[command(flatten)]
    pub location: LedgerLocation,
    #[command(flatten)]
    pub acting: Acting,
    #[command(flatten)]
    pub remote: Remote,
}

impl RequestCommand {
    fn who(&self) -> &Who {
        match self {
            Self::Submit { who, .. }
            | Self::List { who, .. }
            | Self::Show { who, .. }
            | Self::Approve { who, .. }
            | Self::Reject { who, .. }
            | Self::Release { who, .. } => who,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Ask for a cohort count: stores the SQL, its plan hash, the purpose and ε, and
    /// shows the cost and expected error. Nothing is run or spent until release.
    Submit {
        /// The SQL file.
        #[arg(value_name = "FILE.sql")]
        file: PathBuf,
        /// Why the count is needed: shown to the approver, and published in the
        /// transparency register once the count is released.
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
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: crate::governance::Format,
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
        #[arg(long, value_name = "PATH", visible_alias = "out")]
        output: Option<PathBuf>,
        #[command(flatten)]
        who: Who,
    },
}

/// Opens the service and finds the acting user, then runs `work` for them; a service
/// error is rendered with its place in `source` (a file name, or `request N`).
fn with_service<T>(
    who: &Who,
    work: impl AsyncFnOnce(&Service, &Caller) -> Result<T, ServiceError>,
    source: &str,
) -> anyhow::Result<T> {
    with_service_rendered(who, work, |e| render_refusal(e, source))
}

/// [`with_service`] with its own rendering of a service error.
fn with_service_rendered<T>(
    who: &Who,
    work: impl AsyncFnOnce(&Service, &Caller) -> Result<T, ServiceError>,
    render: impl FnOnce(ServiceError) -> anyhow::Error,
) -> anyhow::Result<T> {
    let ctx = context(&who.location)?;
    let caller = Caller::of(&ctx.catalog, acting_user(&who.acting)?)?;
    runtime()?.block_on(async {
        let service = Service::open(ctx.catalog, &ctx.ledger_path).await?;
        note_created(&service);
        work(&service, &caller).await.map_err(render)
    })
}

/// [`with_service`] over a ledger opened to read only ([`reading`]), for the commands
/// that only look.
fn reading_service<T>(
    who: &Who,
    work: impl AsyncFnOnce(&Service, &Caller) -> Result<T, ServiceError>,
) -> anyhow::Result<T> {
    let ctx = context(&who.location)?;
    let caller = Caller::of(&ctx.catalog, acting_user(&who.acting)?)?;
    reading(ctx, async |service| work(service, &caller).await)
}

/// `carelens request`.
pub fn request(args: RequestArgs) -> anyhow::Result<()> {
    if let Some(url) = args.command.who().remote.server.clone() {
        return remote(&Client::new(&url)?, args.command);
    }
    match args.command {
        RequestCommand::Submit {
            file,
            purpose,
            epsilon,
            who,
        } => {
            let sql = read_sql(&file)?;
            let (request, prepared) = with_service(
                &who,
                async |service, caller| {
                    service
                        .submit_request(caller, &sql, &purpose, epsilon)
                        .await
                },
                &file.display().to_string(),
            )?;
            print(&describe(
                &request,
                Some(&cost_summary(&prepared.explain(), "  ")),
            ))
        }
        RequestCommand::List { format, who } => {
            let requests =
                reading_service(&who, async |service, caller| service.requests(caller).await)?;
            print_list(&requests, format)
        }
        RequestCommand::Show { id, who } => {
            let ShownRequest {
                request,
                plan,
                plans_as_submitted,
            } = reading_service(&who, async |service, caller| {
                service.show_request(caller, id).await
            })?;
            let plan = plan
                .map(|prepared| prepared.explain())
                .map_err(|e| render_refusal(e, &format!("request {id}")).to_string());
            print(&show(request, plan, plans_as_submitted))
        }
        RequestCommand::Approve {
            id,
            epsilon,
            note,
            who,
        } => {
            let (request, prepared) = with_service(
                &who,
                async |service, caller| service.approve_request(caller, id, epsilon, &note).await,
                &format!("request {id}"),
            )?;
            print(&describe(
                &request,
                Some(&cost_summary(&prepared.explain(), "  ")),
            ))
        }
        RequestCommand::Reject { id, note, who } => {
            let request = with_service(
                &who,
                async |service, caller| service.reject_request(caller, id, &note).await,
                "",
            )?;
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

/// `carelens request … --server URL`: the same workflow over the API, printed as here.
fn remote(client: &Client, command: RequestCommand) -> anyhow::Result<()> {
    /// A request and its cost, as the server answers a submission or an approval.
    #[derive(Deserialize)]
    struct Costed {
        request: Request,
        cost: Explain,
    }
    /// A request as `GET /requests/{id}` answers it.
    #[derive(Deserialize)]
    struct Shown {
        request: Request,
        cost: Option<Explain>,
        plans_as_submitted: bool,
        cannot_be_prepared: Option<Value>,
    }
    let ok = |answer: Answer, expected: u16, source: &str| {
        if answer.status == expected {
            Ok(answer)
        } else {
            Err(api_error(&answer, source))
        }
    };
    let costed = |answer: &Answer| -> anyhow::Result<String> {
        let Costed { request, cost } =
            serde_json::from_slice(&answer.body).context("the server's request")?;
        Ok(describe(&request, Some(&cost_summary(&cost, "  "))))
    };
    match command {
        RequestCommand::Submit {
            file,
            purpose,
            epsilon,
            ..
        } => {
            let sql = read_sql(&file)?;
            let body = json!({ "sql": sql, "purpose": purpose, "epsilon": epsilon });
            let answer = client.call("POST", "/requests", Some(&body))?;
            print(&costed(&ok(answer, 201, &file.display().to_string())?)?)
        }
        RequestCommand::List { format, .. } => {
            let answer = ok(client.call("GET", "/requests", None)?, 200, "")?;
            let requests: Vec<Request> =
                serde_json::from_slice(&answer.body).context("the server's requests")?;
            print_list(&requests, format)
        }
        RequestCommand::Show { id, .. } => {
            let answer = ok(
                client.call("GET", &format!("/requests/{id}"), None)?,
                200,
                "",
            )?;
            let shown: Shown =
                serde_json::from_slice(&answer.body).context("the server's request")?;
            let plan = match (shown.cost, shown.cannot_be_prepared) {
                (Some(cost), _) => Ok(cost),
                (None, problem) => Err(problem
                    .as_ref()
                    .and_then(|p| p["message"].as_str())
                    .unwrap_or("the server did not say why")
                    .to_owned()),
            };
            print(&show(shown.request, plan, shown.plans_as_submitted))
        }
        RequestCommand::Approve {
            id, epsilon, note, ..
        } => {
            let body = json!({ "epsilon": epsilon, "note": note });
            let answer = client.call("POST", &format!("/requests/{id}/approve"), Some(&body))?;
            print(&costed(&ok(answer, 200, &format!("request {id}"))?)?)
        }
        RequestCommand::Reject { id, note, .. } => {
            let body = json!({ "note": note });
            let answer = client.call("POST", &format!("/requests/{id}/reject"), Some(&body))?;
            let answer = ok(answer, 200, "")?;
            let request: Request =
                serde_json::from_slice(&answer.body).context("the server's request")?;
            print(&describe(&request, None))
        }
        RequestCommand::Release {
            id,
            sql,
            format,
            output,
            ..
        } => {
            if format == OutputFormat::Parquet && output.is_none() {
                anyhow::bail!("--format parquet needs --output PATH");
            }
            if let Some(output) = &output {
                check_output(output)?;
            }
            // Your copy of the SQL, which the server checks plans to the approved query.
            let body = sql
                .as_deref()
                .map(read_sql)
                .transpose()?
                .map(|sql| json!({ "sql": sql }));
            let source = sql
                .as_ref()
                .map_or_else(|| format!("request {id}"), |p| p.display().to_string());
            let answer = client.call("POST", &format!("/requests/{id}/release"), body.as_ref())?;
            let answer = ok(answer, 200, &source)?;
            write_answered_release(
                &answer,
                &format!("request {id} was released before"),
                format,
                output.as_deref(),
            )
        }
    }
}

/// The requests as a table for people, or as JSON (the requests as the ledger and the
/// API hold them) for programs.
fn print_list(requests: &[Request], format: crate::governance::Format) -> anyhow::Result<()> {
    match format {
        crate::governance::Format::Table => print(&list(requests)),
        crate::governance::Format::Json => {
            print(&format!("{}\n", serde_json::to_string_pretty(requests)?))
        }
    }
}

fn print(text: &str) -> anyhow::Result<()> {
    write!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// One line per request.
fn list(requests: &[Request]) -> String {
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
    for r in requests {
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
    out
}

/// A request in full: as [`describe`], with the cost at the ε it would run with (from the
/// stored SQL against today's catalog) and the SQL.
fn show(request: Request, plan: Result<Explain, String>, plans_as_submitted: bool) -> String {
    let cost = match plan {
        Ok(explained) => {
            let mut cost = cost_summary(&explained, "  ");
            if !plans_as_submitted {
                cost.push_str(
                    "  note: the query no longer plans as it did when submitted (the catalog \
                     or data changed): it cannot be released as it stands\n",
                );
            }
            cost
        }
        Err(why) => format!("  cannot be prepared now: {why}\n"),
    };
    let mut out = describe(&request, Some(&cost));
    let _ = write!(out, "\nSQL:\n{}", request.sql);
    if !request.sql.ends_with('\n') {
        out.push('\n');
    }
    out
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
    if let Some(output) = &output {
        check_output(output)?;
    }
    let sql = sql_file.as_deref().map(read_sql).transpose()?;
    let source = sql_file
        .as_ref()
        .map_or_else(|| format!("request {id}"), |p| p.display().to_string());
    let released = with_service_rendered(
        who,
        async |service, caller| running(service.release_request(caller, id, sql.as_deref())).await,
        |e| render_release_error(e, id, &source),
    )?;
    if released.cached {
        eprintln!("note: request {id} was released before: this is that answer, at no cost");
    }
    write_release(
        &released.release,
        &released.bytes,
        format,
        output.as_deref(),
        released.cached,
    )
}

/// A failure or a budget refusal of a request's release, worded for the request; other
/// errors as any service error.
fn render_release_error(err: ServiceError, id: i64, source: &str) -> anyhow::Error {
    match err {
        ServiceError::FailedAfterCharge { message, spent } => anyhow::anyhow!(
            "request {id} failed while running: {message} (epsilon {} was spent; the request \
             stays approved, and releasing it again gets this failure from the ledger at no \
             cost)",
            number(spent.epsilon_value())
        ),
        ServiceError::FailedBefore(failure) => {
            anyhow::anyhow!("request {id} failed: {}", failed_before(&failure))
        }
        ServiceError::OverBudget(refusal) => Refused(format!(
            "error: request {id} cannot be released: {refusal}\nhint: ask your information \
             governance team for more budget, or an approver for a smaller epsilon on a new \
             request"
        ))
        .into(),
        other => render_refusal(other, source),
    }
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
