//! `carelens`: privacy-preserving population analytics for shared care records.
//!
//! A thin command line over the workspace crates: argument parsing, progress, output and
//! exit codes live here; everything else lives in the libraries.

mod batch;
mod cli;
mod client;
mod governance;
mod query;
mod request;
mod serve;
mod tokens;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Exit code: the command did what was asked (for queries: a result was released).
const EXIT_OK: u8 = 0;
/// Exit code: the query was refused — by the privacy analysis, the policy or the budget.
const EXIT_REFUSED: u8 = 1;
/// Exit code: an error — bad input, configuration, I/O, or a bug.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Queries are parsed, planned and run on threads with large stacks: the command here
    // (`block_on` runs on the calling thread) and the runtime's workers.
    let command = std::thread::Builder::new()
        .name("carelens".to_owned())
        .stack_size(carelens_engine::STACK_BYTES)
        .spawn(move || dispatch(cli.command));
    let result = match command.map(|c| c.join()) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => Err(anyhow::Error::new(e).context("could not start")),
    };
    exit_code(result)
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Synth(args) => cli::synth(args),
        Command::Catalog(args) => cli::catalog(args),
        Command::Query(args) => query::query(args),
        Command::Run(args) => batch::run(args),
        Command::Explain(args) => query::explain(args),
        Command::Request(args) => request::request(args),
        Command::Budget(args) => governance::budget(args),
        Command::Audit(args) => governance::audit(args),
        Command::Register(args) => governance::register(args),
        Command::Token(args) => tokens::token(args),
        Command::Serve(args) => serve::serve(args),
    }
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(EXIT_OK),
        Err(err) if err.downcast_ref::<query::Refused>().is_some() => {
            let _ = writeln!(std::io::stderr().lock(), "{err}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {err}");
            for cause in err.chain().skip(1) {
                let _ = writeln!(stderr, "  caused by: {cause}");
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// A reader that closed the pipe (`carelens catalog | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
