//! The web pages beside the API. Now: the public transparency register at `/register`,
//! with `/register.csv` and `/register.json` — no sign-in, nothing in them but the fields
//! the service decided public.
//!
//! Anyone may ask, so the register is made at most once per change of the audit log (and
//! at least once a minute, so that its check of the log is fresh): callers in between
//! are answered the same bytes, and callers at the same time wait for one making.

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

/// How long a made register is served while the log has not grown.
const FRESH: Duration = Duration::from_secs(60);

/// The register as last made, in its three forms.
pub(crate) struct Made {
    length: i64,
    at: Instant,
    html: String,
    csv: String,
    json: String,
}

/// The last made register, shared by the server's calls.
#[derive(Default)]
pub(crate) struct RegisterCache(Mutex<Option<Arc<Made>>>);

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
        ],
        body,
    )
        .into_response()
}

/// The register, made again when the log has grown or the last one is a minute old.
async fn made(state: &AppState) -> Result<Arc<Made>, ApiError> {
    let mut cache = state.register.0.lock().await;
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
