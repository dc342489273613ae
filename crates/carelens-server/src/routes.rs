//! The routes of `/api/v1`: each reads its input, authenticates its caller, calls one
//! service operation and answers what comes back.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use carelens_ledger::Event;
use carelens_service::{Released, ServiceError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::{ApiError, AppState, ServerOptions};

/// The media type of Parquet.
const PARQUET: &str = "application/vnd.apache.parquet";

pub(crate) fn routes(options: ServerOptions) -> Router<AppState> {
    let api = Router::new()
        .route("/health", get(health))
        .route("/queries", post(query))
        .route("/explain", post(explain))
        .route("/budget", get(budget))
        .route("/audit", get(audit))
        .route("/requests", post(submit_request).get(requests))
        .route("/requests/{id}", get(show_request))
        .route("/requests/{id}/approve", post(approve_request))
        .route("/requests/{id}/reject", post(reject_request))
        .route("/requests/{id}/release", post(release_request));
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
}

type Answer = Result<Response, ApiError>;
type JsonBody<T> = Result<Json<T>, JsonRejection>;

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::Request {
        status: StatusCode::NOT_FOUND,
        message: "no such route; the API is under /api/v1".to_owned(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sql {
    sql: String,
}

/// `POST /queries`: the release protocol; the release as stored, or CSV or Parquet.
async fn query(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    body: JsonBody<Sql>,
) -> Answer {
    let Json(body) = body?;
    let released = state.service.query(&caller, &body.sql).await?;
    release_response(released, &headers)
}

/// `POST /explain`: what the query would cost and how accurate it would be; nothing runs
/// or is spent.
async fn explain(
    State(state): State<AppState>,
    Authenticated(_): Authenticated,
    body: JsonBody<Sql>,
) -> Answer {
    let Json(body) = body?;
    let prepared = state.service.explain(&body.sql).await?;
    Ok(Json(prepared.explain()).into_response())
}

/// `GET /budget`: the caller's budget and the dataset's (everyone's for those who
/// oversee).
async fn budget(State(state): State<AppState>, Authenticated(caller): Authenticated) -> Answer {
    let lines = state.service.budget(&caller).await?;
    let lines: Vec<Value> = lines.iter().map(carelens_render::budget_json).collect();
    Ok(Json(lines).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFilter {
    since: Option<String>,
    of: Option<String>,
    event: Option<String>,
}

/// `GET /audit?since=&of=&event=`: the caller's entries (everyone's, or `of`'s, for those
/// who oversee).
async fn audit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    filter: Result<Query<AuditFilter>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let Query(filter) = filter.map_err(|e| ApiError::Request {
        status: StatusCode::BAD_REQUEST,
        message: e.body_text(),
    })?;
    let event = filter
        .event
        .as_deref()
        .map(|e| {
            Event::parse(e)
                .ok_or_else(|| ServiceError::BadInput(format!("{e:?} is not an audit event kind")))
        })
        .transpose()?;
    let entries = state
        .service
        .audit_log(
            &caller,
            filter.since.as_deref(),
            filter.of.as_deref(),
            event,
        )
        .await?;
    Ok(Json(entries).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    sql: String,
    purpose: String,
    epsilon: Option<f64>,
}

/// `POST /requests`: a researcher asks for a cohort count; nothing runs or is spent.
async fn submit_request(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    body: JsonBody<NewRequest>,
) -> Answer {
    let Json(body) = body?;
    let (request, prepared) = state
        .service
        .submit_request(&caller, &body.sql, &body.purpose, body.epsilon)
        .await?;
    let answer = json!({ "request": request, "cost": prepared.explain() });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /requests`: the caller's requests (everyone's for those who oversee).
async fn requests(State(state): State<AppState>, Authenticated(caller): Authenticated) -> Answer {
    Ok(Json(state.service.requests(&caller).await?).into_response())
}

/// `GET /requests/{id}`: one request, with its cost as it plans today.
async fn show_request(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<i64>,
) -> Answer {
    let shown = state.service.show_request(&caller, id).await?;
    let (cost, problem) = match &shown.plan {
        Ok(prepared) => (Some(prepared.explain()), None),
        Err(e) => (
            None,
            Some(json!({ "code": e.code(), "message": e.to_string() })),
        ),
    };
    Ok(Json(json!({
        "request": shown.request,
        "cost": cost,
        "plans_as_submitted": shown.plans_as_submitted,
        "cannot_be_prepared": problem,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Approval {
    epsilon: Option<f64>,
    #[serde(default)]
    note: String,
}

/// `POST /requests/{id}/approve`: an approver (not the requester) approves, possibly at
/// a lower ε.
async fn approve_request(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<i64>,
    body: JsonBody<Approval>,
) -> Answer {
    let Json(body) = body?;
    let (request, prepared) = state
        .service
        .approve_request(&caller, id, body.epsilon, &body.note)
        .await?;
    Ok(Json(json!({ "request": request, "cost": prepared.explain() })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rejection {
    note: String,
}

/// `POST /requests/{id}/reject`: an approver (not the requester) rejects, saying why.
async fn reject_request(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<i64>,
    body: JsonBody<Rejection>,
) -> Answer {
    let Json(body) = body?;
    let request = state
        .service
        .reject_request(&caller, id, &body.note)
        .await?;
    Ok(Json(request).into_response())
}

/// `POST /requests/{id}/release`: the requester releases an approved request (again: the
/// same answer at no cost).
async fn release_request(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Answer {
    let released = state.service.release_request(&caller, id, None).await?;
    release_response(released, &headers)
}

/// A release as the caller asked for it (`Accept`): the stored wire-format bytes as they
/// are (JSON, the default), or CSV or Parquet rendered from them. Whether it was answered
/// again at no cost and what it cost now are headers, never part of the release.
fn release_response(released: Released, headers: &HeaderMap) -> Answer {
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (media, bytes) = if accept.contains("text/csv") {
        (
            "text/csv; charset=utf-8",
            carelens_render::csv(&released.release).into_bytes(),
        )
    } else if accept.contains(PARQUET) {
        let bytes = carelens_render::parquet(&released.release)
            .map_err(|e| ServiceError::Internal(Box::new(e)))?;
        (PARQUET, bytes)
    } else {
        ("application/json", released.bytes)
    };
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media));
    headers.insert(
        "carelens-cached",
        HeaderValue::from_static(if released.cached { "true" } else { "false" }),
    );
    if let Ok(spent) =
        HeaderValue::from_str(&carelens_render::number(released.spent.epsilon_value()))
    {
        headers.insert("carelens-epsilon-spent", spent);
    }
    Ok(response)
}
