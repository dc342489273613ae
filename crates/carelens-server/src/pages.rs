//! The web pages beside the API. Now: the public transparency register at `/register`,
//! with `/register.csv` and `/register.json` — no sign-in, nothing in them but the fields
//! the service decided public.
//!
//! Anyone may ask, so the register is made again at most once per
//! [`crate::ServerOptions::register_refresh`] (15 minutes by default): a reader polling it
//! learns when charges happen only to within that, and cannot make the server re-read and
//! re-check the whole log more often. With a zero refresh it is made whenever the log has
//! grown (and at least once a minute). Callers in between are answered the same bytes, and
//! callers at the same time wait for one making.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Mutex;

use crate::{ApiError, AppState};

/// How long a made register is served while the log has not grown (its check of the log
/// stays fresh).
const FRESH: Duration = Duration::from_secs(60);

/// The register as last made, in its three forms.
pub(crate) struct Made {
    length: i64,
    at: Instant,
    html: String,
    csv: String,
    json: String,
}

/// The last made register, shared by the server's calls, and how often it is made again.
pub(crate) struct RegisterCache {
    last: Mutex<Option<Arc<Made>>>,
    refresh: Duration,
}

impl RegisterCache {
    pub(crate) fn new(refresh: Duration) -> Self {
        Self {
            last: Mutex::new(None),
            refresh,
        }
    }
}

/// The public pages.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/register", get(register_html))
        .route("/register.csv", get(register_csv))
        .route("/register.json", get(register_json))
}

async fn register_html(State(state): State<AppState>) -> Result<Response, ApiError> {
    let made = made(&state).await?;
    Ok(answer("text/html; charset=utf-8", made.html.clone()))
}

async fn register_csv(State(state): State<AppState>) -> Result<Response, ApiError> {
    let made = made(&state).await?;
    Ok(answer("text/csv; charset=utf-8", made.csv.clone()))
}

async fn register_json(State(state): State<AppState>) -> Result<Response, ApiError> {
    let made = made(&state).await?;
    Ok(answer("application/json", made.json.clone()))
}

fn answer(media_type: &'static str, body: String) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(media_type)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(crate::web::POLICY),
            ),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                axum::http::header::X_FRAME_OPTIONS,
                HeaderValue::from_static("DENY"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The register, made again when the log has grown or the last one is a minute old.
async fn made(state: &AppState) -> Result<Arc<Made>, ApiError> {
    let mut cache = state.register.last.lock().await;
    if let Some(made) = cache.as_ref()
        && made.at.elapsed() < state.register.refresh
    {
        return Ok(Arc::clone(made));
    }
    let length = state.service.log_length().await?;
    if let Some(made) = cache.as_ref()
        && made.length == length
        && made.at.elapsed() < FRESH
    {
        return Ok(Arc::clone(made));
    }
    let register = state.service.register().await?;
    let made = Arc::new(Made {
        length,
        at: Instant::now(),
        html: carelens_web::register::html(&register),
        csv: carelens_web::register::csv(&register),
        json: carelens_web::register::json(&register),
    });
    *cache = Some(Arc::clone(&made));
    Ok(made)
}
