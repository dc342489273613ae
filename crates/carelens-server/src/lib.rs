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
mod routes;

use std::sync::Arc;

use axum::Router;
use carelens_service::Service;

pub use crate::error::ApiError;

/// What a server accepts.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// The largest request body, in bytes (SQL and its JSON envelope).
    pub max_body_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
        }
    }
}

/// What every handler shares: the one service.
#[derive(Clone)]
pub(crate) struct AppState {
    pub service: Arc<Service>,
}

/// The API's routes over `service`.
pub fn router(service: Arc<Service>, options: ServerOptions) -> Router {
    routes::routes(options).with_state(AppState { service })
}

/// Serves `router` on `listener` until `shutdown` resolves; calls already running finish
/// (a release being made is stored and answered), new connections are refused.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
