//! carelens-server: `carelens serve`, the authenticated HTTP API over carelens-service.
//!
//! Layer: the top, beside the command line (see `docs/architecture.md`). The server adds
//! transport, identity and limits and decides nothing about privacy or governance: every
//! call authenticates a bearer token to a [`carelens_service::Caller`] (the token's user,
//! with the catalog's role — nothing in a call can name another user), calls one service
//! operation and answers its data, or its [`carelens_service::ServiceError`] as JSON with
//! the error's own HTTP status. A release is answered with the stored wire-format bytes
//! (their SHA-256 is in the audit log), or rendered as CSV or Parquet by `Accept`.
//!
//! The API is under `/api/v1` (`docs/server.md`).

mod auth;
mod error;
mod limits;
mod observe;
mod openapi;
mod pages;
mod routes;
mod session;
mod tls;
mod web;
mod web_library;
mod web_requests;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use carelens_service::Service;

pub use crate::error::ApiError;
pub use crate::limits::Drain;
pub use crate::observe::{LogFormat, REQUEST_ID};
pub use crate::tls::{TlsError, TlsListener, load_tls};

/// What a server accepts.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// The largest request body, in bytes (SQL and its JSON envelope).
    pub max_body_bytes: usize,
    /// Calls that plan or run queries (`/queries`, `/explain`, `/batches`, the request
    /// workflow) at once; more wait in the queue.
    pub max_running: usize,
    /// Such calls that may wait for a turn; beyond them a call is answered 429.
    pub max_waiting: usize,
    /// How each call is logged to standard error.
    pub log_format: LogFormat,
    /// The public register is made again at most this often: a reader polling it learns
    /// when charges happen only to within this much (and the log is re-checked at most
    /// this often on their behalf). Zero: whenever the log has grown.
    pub register_refresh: std::time::Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_running: 4,
            max_waiting: 64,
            log_format: LogFormat::Text,
            register_refresh: std::time::Duration::from_secs(15 * 60),
        }
    }
}

/// What every handler shares: the one service, and the server's own bookkeeping.
#[derive(Clone)]
pub(crate) struct AppState {
    pub service: Arc<Service>,
    pub failures: Arc<auth::Failures>,
    pub observer: Arc<observe::Observer>,
    pub register: Arc<pages::RegisterCache>,
    pub sessions: Arc<session::Sessions>,
    /// The query library's folder, when the server was given one.
    pub library: Option<Arc<std::path::Path>>,
    pub runs: Arc<web_library::Runs>,
}

/// The API over one service, ready to serve.
pub struct Server {
    router: Router,
    drain: Drain,
    gate: Arc<limits::Gate>,
}

impl Server {
    /// The API's routes over `service`, with its limits and its log.
    pub fn new(service: Arc<Service>, options: ServerOptions) -> Self {
        Self::with_library(service, options, None)
    }

    /// [`Server::new`], with the query library's folder for the library page.
    pub fn with_library(
        service: Arc<Service>,
        options: ServerOptions,
        library: Option<&std::path::Path>,
    ) -> Self {
        let drain = Drain::new();
        let state = AppState {
            service,
            failures: Arc::default(),
            observer: Arc::new(observe::Observer::new(options.log_format)),
            register: Arc::new(pages::RegisterCache::new(options.register_refresh)),
            sessions: Arc::default(),
            library: library.map(Arc::from),
            runs: Arc::default(),
        };
        let gate = Arc::new(limits::Gate::new(options.max_running, options.max_waiting));
        let router = routes::routes(options, state, drain.clone(), Arc::clone(&gate));
        Self {
            router,
            drain,
            gate,
        }
    }

    /// The routes, for serving them some other way (tests call them in process).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The switch that makes the server refuse new calls (503) while running ones finish;
    /// [`Server::serve`] pulls it when its shutdown signal fires.
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Serves on `listener` (a [`tokio::net::TcpListener`] or a [`TlsListener`]) until
    /// `shutdown` resolves. Then new calls are answered 503, no new connection is
    /// accepted, and the calls already running finish — a release being made is stored
    /// and answered, also when its caller has hung up — before this returns.
    pub async fn serve<L>(
        self,
        listener: L,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()>
    where
        L: Listener<Addr = SocketAddr>,
    {
        let drain = self.drain.clone();
        let signal = async move {
            shutdown.await;
            drain.start();
        };
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener.tap_io(|_| ()), service)
            .with_graceful_shutdown(signal)
            .await?;
        // Calls whose callers hung up are still running on their own.
        self.gate.idle().await;
        Ok(())
    }
}

/// The API's routes over `service` (as [`Server::router`]).
pub fn router(service: Arc<Service>, options: ServerOptions) -> Router {
    Server::new(service, options).router()
}

#[cfg(test)]
mod tests;
