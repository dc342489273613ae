//! `carelens token`: API tokens for `carelens serve`, issued and revoked by the operator
//! (whoever runs carelens beside the ledger). A token's secret is printed once; the
//! ledger keeps only its hash.

use std::io::Write;
use std::time::Duration;

use carelens_ledger::TokenInfo;
use carelens_service::Service;
use clap::{Args, Subcommand};

use crate::governance::{LedgerLocation, context};
use crate::query::{render_refusal, runtime};

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for a user of the catalog: its secret is printed once, on standard
    /// output; give it to that user only.
    Issue {
        /// The user the token stands for (a name in the catalog's [[users]]).
        #[arg(long, value_name = "NAME")]
        user: String,
        /// How long it is accepted: a number and a unit, `d` (days), `h`, `m` or `s`.
        #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = parse_lifetime)]
        expires: Duration,
        #[command(flatten)]
        location: LedgerLocation,
    },
    /// List the tokens issued (never their secrets): id, user, issued, expires, revoked.
    List {
        /// Only this user's.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        #[command(flatten)]
        location: LedgerLocation,
    },
    /// Revoke a token: it is refused from the next call on.
    Revoke {
        /// The token's id (`carelens token list`).
        id: i64,
        #[command(flatten)]
        location: LedgerLocation,
    },
}

/// `carelens token`.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let location = match &args.command {
        TokenCommand::Issue { location, .. }
        | TokenCommand::List { location, .. }
        | TokenCommand::Revoke { location, .. } => location,
    };
    let ctx = context(location)?;
    let runtime = runtime()?;
    // Listing only reads: a missing ledger is an error, never created.
    let opened = if matches!(args.command, TokenCommand::List { .. }) {
        runtime.block_on(Service::open_read_only(ctx.catalog, &ctx.ledger_path))
    } else {
        runtime.block_on(Service::open_for_ledger(ctx.catalog, &ctx.ledger_path))
    };
    let service = opened.map_err(|e| render_refusal(e, ""))?;
    crate::governance::note_created(&service);
    let mut out = std::io::stdout().lock();
    match args.command {
        TokenCommand::Issue { user, expires, .. } => {
            let issued = runtime
                .block_on(service.issue_token(&user, expires))
                .map_err(|e| render_refusal(e, ""))?;
            writeln!(out, "{}", issued.secret)?;
            eprintln!(
                "token {} for {}, accepted until {}: the secret above is shown only now \
                 (the ledger keeps its hash); send it to {} only, who gives it as \
                 `Authorization: Bearer ...` or CARELENS_TOKEN",
                issued.info.id, issued.info.user, issued.info.expires_at, issued.info.user
            );
        }
        TokenCommand::List { user, .. } => {
            let tokens = runtime
                .block_on(service.tokens(user.as_deref()))
                .map_err(|e| render_refusal(e, ""))?;
            write!(out, "{}", list(&tokens))?;
        }
        TokenCommand::Revoke { id, .. } => {
            let token = runtime
                .block_on(service.revoke_token(id))
                .map_err(|e| render_refusal(e, ""))?;
            writeln!(
                out,
                "token {} of {} revoked at {}",
                token.id,
                token.user,
                token.revoked_at.as_deref().unwrap_or("?")
            )?;
        }
    }
    Ok(())
}

fn list(tokens: &[TokenInfo]) -> String {
    if tokens.is_empty() {
        return "no tokens\n".to_owned();
    }
    let mut out = format!(
        "{:>5}  {:<12}  {:<19}  {:<19}  revoked\n",
        "id", "user", "issued", "expires"
    );
    let short = |t: &str| t.get(..19).unwrap_or(t).to_owned();
    for t in tokens {
        out.push_str(&format!(
            "{:>5}  {:<12}  {:<19}  {:<19}  {}\n",
            t.id,
            t.user,
            short(&t.issued_at),
            short(&t.expires_at),
            t.revoked_at.as_deref().map(short).unwrap_or_default()
        ));
    }
    out
}

/// `90d`, `12h`, `30m`, `45s`: a positive whole number and a unit.
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: write a number and d, h, m or s, e.g. 90d");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    let total = n.checked_mul(seconds).filter(|s| *s > 0).ok_or_else(bad)?;
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_a_number_and_a_unit() {
        assert_eq!(parse_lifetime("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_lifetime("1s"), Ok(Duration::from_secs(1)));
        for bad in [
            "",
            "d",
            "0d",
            "90",
            "90w",
            "-1d",
            "1.5d",
            "99999999999999999d",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
