//! `carelens serve`: the authenticated HTTP API (carelens-server) over one catalog and
//! one ledger, until SIGTERM or Ctrl-C; then running calls finish and new ones are
//! refused.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use carelens_server::{LogFormat, Server, ServerOptions, TlsListener, load_tls};
use carelens_service::Service;
use clap::{Args, ValueEnum};

use crate::governance::{LedgerLocation, context};
use crate::query::runtime;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub location: LedgerLocation,
    /// The address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address other machines can reach. Tokens and released
    /// results then cross the network in clear text: only behind a proxy that adds TLS.
    #[arg(long)]
    pub insecure_http: bool,
    /// Calls that plan or run queries at once (more wait their turn).
    #[arg(long, value_name = "N", default_value_t = ServerOptions::default().max_running)]
    pub max_running: usize,
    /// Such calls that may wait; beyond them a call is answered 429 (try again later).
    #[arg(long, value_name = "N", default_value_t = ServerOptions::default().max_waiting)]
    pub queue: usize,
    /// How each call is logged on standard error.
    #[arg(long, value_enum, default_value_t = LogChoice::Text)]
    pub log_format: LogChoice,
    /// The public register is made again at most this often (seconds): a reader polling it
    /// learns when charges happen only to within this. 0: whenever the log has grown.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub register_refresh: u64,
    /// The query library for the web pages' Library: a folder of SQL files (such as the
    /// bundled `queries`), read again at each visit.
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,
}

/// How each call is logged.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogChoice {
    /// `key=value` lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `carelens serve`.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() {
        if !args.insecure_http {
            bail!(
                "refusing to serve plain HTTP on {}, an address other machines can reach: \
                 tokens and results would cross the network unencrypted. Give \
                 --tls-cert and --tls-key, listen on 127.0.0.1, or (only behind a proxy \
                 that adds TLS) --insecure-http",
                args.listen
            );
        }
        eprintln!(
            "WARNING: serving plain HTTP on {} (--insecure-http): API tokens and released \
             results cross the network UNENCRYPTED. Only do this behind a proxy that adds \
             TLS.",
            args.listen
        );
    }
    let ctx = context(&args.location)?;
    let options = ServerOptions {
        max_running: args.max_running.max(1),
        max_waiting: args.queue,
        log_format: match args.log_format {
            LogChoice::Text => LogFormat::Text,
            LogChoice::Json => LogFormat::Json,
        },
        register_refresh: std::time::Duration::from_secs(args.register_refresh),
        ..ServerOptions::default()
    };
    if let Some(library) = &args.library
        && !library.is_dir()
    {
        anyhow::bail!(
            "--library {}: not a folder (give the folder of SQL files, such as `queries`)",
            library.display()
        );
    }
    runtime()?.block_on(async move {
        let service = Service::open(ctx.catalog, &ctx.ledger_path)
            .await
            .context("could not open the service")?;
        crate::governance::note_created(&service);
        let server = Server::with_library(Arc::new(service), options, args.library.as_deref());
        let tcp = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("could not listen on {}", args.listen))?;
        let address = tcp.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        writeln!(
            std::io::stderr().lock(),
            "carelens serve: listening on {scheme}://{address}/api/v1 (ledger {}); \
             stop with Ctrl-C or SIGTERM",
            ctx.ledger_path.display()
        )?;
        match tls {
            Some(config) => {
                server
                    .serve(TlsListener::new(tcp, config)?, stopped())
                    .await
            }
            None => server.serve(tcp, stopped()).await,
        }
        .context("the server stopped with an error")?;
        writeln!(
            std::io::stderr().lock(),
            "carelens serve: stopped; every call that had started was answered"
        )?;
        Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    eprintln!("carelens serve: stopping; calls already running will finish");
}
