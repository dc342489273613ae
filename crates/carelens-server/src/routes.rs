//! The routes of `/api/v1`: each reads its input, authenticates its caller, calls one
//! service operation and answers what comes back.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use carelens_ledger::{Amount, Event, Verification};
use carelens_render::report::{self, Header, Report, ReportQuery};
use carelens_service::{BatchItem, Released, ServiceError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::error::service_error_json;
use crate::limits::{Gate, queue, refuse_when_draining};
use crate::observe::{Outcome, observe};
use crate::{ApiError, AppState, Drain, ServerOptions};

/// The media type of Parquet.
const PARQUET: &str = "application/vnd.apache.parquet";
/// The media type of an Arrow IPC stream.
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// Most queries in one batch.
const MAX_BATCH: usize = 100;

/// Every route under `/api/v1`: its path, its methods (as the OpenAPI document names
/// them), whether it plans or runs queries (and so waits for a turn at the gate), and its
/// handlers. The router is built from this table and a test checks the OpenAPI document
/// against it, both ways.
pub(crate) fn api_routes() -> Vec<(
    &'static str,
    &'static [&'static str],
    bool,
    MethodRouter<AppState>,
)> {
    vec![
        ("/health", &["get"], false, get(health)),
        ("/openapi.json", &["get"], false, get(openapi)),
        ("/catalog", &["get"], false, get(catalog)),
        ("/budget", &["get"], false, get(budget)),
        ("/audit", &["get"], false, get(audit)),
        ("/audit/verify", &["get"], false, get(verify)),
        ("/metrics", &["get"], false, get(metrics)),
        ("/queries", &["post"], true, post(query)),
        ("/explain", &["post"], true, post(explain)),
        ("/batches", &["post"], true, post(batch)),
        ("/batches/explain", &["post"], true, post(explain_batch)),
        (
            "/requests",
            &["get", "post"],
            true,
            post(submit_request).get(requests),
        ),
        ("/requests/{id}", &["get"], true, get(show_request)),
        (
            "/requests/{id}/approve",
            &["post"],
            true,
            post(approve_request),
        ),
        (
            "/requests/{id}/reject",
            &["post"],
            true,
            post(reject_request),
        ),
        (
            "/requests/{id}/release",
            &["post"],
            true,
            post(release_request),
        ),
    ]
}

pub(crate) fn routes(
    options: ServerOptions,
    state: AppState,
    drain: Drain,
    gate: Arc<Gate>,
) -> Router {
    let (mut open, mut planning) = (Router::new(), Router::new());
    for (path, _, plans, handlers) in api_routes() {
        if plans {
            planning = planning.route(path, handlers);
        } else {
            open = open.route(path, handlers);
        }
    }
    // Calls that plan or run queries wait for a turn at the gate.
    let api = open.merge(planning.route_layer(from_fn_with_state(Arc::clone(&gate), queue)));
    let observer = Arc::clone(&state.observer);
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::pages::routes())
        .merge(crate::web::routes(gate, state.clone()))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(from_fn_with_state(
            options.max_body_bytes,
            crate::limits::read_body_first,
        ))
        .layer(from_fn_with_state(drain, refuse_when_draining))
        .with_state(state)
        .layer(from_fn_with_state(observer, observe))
}

type Answer = Result<Response, ApiError>;
type JsonBody<T> = Result<Json<T>, JsonRejection>;

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::Request {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such route; the API is under /api/v1 (its description: \
                  GET /api/v1/openapi.json)"
            .to_owned(),
    }
}

/// `GET /openapi.json`: the API's description (OpenAPI 3.1).
async fn openapi() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        crate::openapi::DOCUMENT,
    )
        .into_response()
}

/// `GET /catalog`: what the caller may know about the extract — the declarations for
/// everyone; row counts, the files' warnings and the users for admins only.
async fn catalog(State(state): State<AppState>, Authenticated(caller): Authenticated) -> Answer {
    Ok(Json(state.service.catalog_view(&caller).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    /// A head kept outside the ledger (`SEQ:HASH`, as an earlier verify answered it).
    expect_head: Option<String>,
}

/// `GET /audit/verify[?expect_head=SEQ:HASH]`: the audit log's own check, and whether it
/// still holds a head recorded earlier. Anyone signed in may ask: the answer says nothing
/// about what was asked.
async fn verify(
    State(state): State<AppState>,
    Authenticated(_): Authenticated,
    query: Result<Query<VerifyQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.status(), e.body_text()))?;
    let head = match query.expect_head.as_deref() {
        None => None,
        Some(text) => Some(carelens_ledger::parse_head(text).ok_or_else(|| {
            ServiceError::BadInput(format!(
                "expect_head {text:?} is not SEQ:HASH (an entry number and a 64-digit hash)"
            ))
        })?),
    };
    let answer = match state.service.verify(head).await? {
        Verification::Intact {
            entries,
            head_seq,
            head_hash,
        } => json!({
            "intact": true,
            "entries": entries,
            "head": { "seq": head_seq, "hash": head_hash },
        }),
        Verification::Broken { seq, problem } => json!({
            "intact": false,
            "broken_at": seq,
            "problem": problem,
        }),
    };
    Ok(Json(answer).into_response())
}

/// `GET /metrics`: the server's counters in the Prometheus text format; admins only
/// (they count refusals and rejections, which an operator watches and analysts need
/// not).
async fn metrics(State(state): State<AppState>, Authenticated(caller): Authenticated) -> Answer {
    state.service.may_operate(&caller, "the server's metrics")?;
    Ok((
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.observer.metrics.render(),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    queries: Vec<NamedSql>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedSql {
    name: String,
    sql: String,
    /// Where the SQL came from (the analyst's file), as the report and rejections name
    /// it; the name if not given.
    #[serde(default)]
    source: Option<String>,
}

impl NamedSql {
    fn source(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.name)
    }
}

impl Batch {
    /// The queries' SQL, if the batch has 1 to [`MAX_BATCH`] of them.
    fn sql(&self) -> Result<Vec<String>, ApiError> {
        if self.queries.is_empty() || self.queries.len() > MAX_BATCH {
            return Err(ApiError::bad_request(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("a batch has 1 to {MAX_BATCH} queries"),
            ));
        }
        Ok(self.queries.iter().map(|q| q.sql.clone()).collect())
    }
}

/// A query's outcome in a batch answer — `rejected`, `refused` or `failed`, and why in the
/// report's words — or `None` for a release.
fn not_released(outcome: &report::Outcome) -> Option<(&'static str, String)> {
    match outcome {
        report::Outcome::Released { .. } => None,
        report::Outcome::Rejected(why) => Some(("rejected", why.clone())),
        report::Outcome::Refused(why) => Some(("refused", why.clone())),
        report::Outcome::Failed { why, .. } => Some(("failed", why.clone())),
    }
}

/// `POST /batches`: several named queries, checked whole against the budgets (nothing
/// runs if they do not fit) and then released in order, each as `POST /queries` would.
async fn batch(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    body: JsonBody<Batch>,
) -> Answer {
    let Json(body) = body?;
    let sql = body.sql()?;
    let started = chrono::Utc::now();
    let items = state.service.run_batch(&caller, &sql, |_, _| {}).await?;
    let (mut released, mut cached, mut spent) = (0, 0, Amount::default());
    let mut answers = Vec::with_capacity(items.len());
    let mut outcomes = Vec::with_capacity(items.len());
    for (named, item) in body.queries.iter().zip(items) {
        let mut answer = batch_item(&named.name, &item, &mut spent)?;
        match &item {
            Ok(r) if r.cached => cached += 1,
            Ok(_) => released += 1,
            Err(_) => {}
        }
        let outcome = report::Outcome::of(named.source(), item);
        if let Some((kind, why)) = not_released(&outcome) {
            (answer.outcome, answer.why) = (kind, Some(why));
        }
        answers.push(answer);
        outcomes.push(outcome);
    }
    let queries: Vec<ReportQuery> = body
        .queries
        .iter()
        .map(|q| ReportQuery {
            name: q.name.clone(),
            source: q.source().to_owned(),
            header: Header::parse(&q.sql),
        })
        .collect();
    let (html, budget) = batch_report(&state, &caller, started, &queries, &outcomes).await?;
    let answer = BatchAnswer {
        items: answers,
        spent: amount_json(spent),
        report_html: html,
        budget: budget.iter().map(carelens_render::budget_json).collect(),
    };
    let mut response = Json(answer).into_response();
    response.extensions_mut().insert(Outcome::Batch {
        released,
        cached,
        epsilon: spent.epsilon_value(),
    });
    Ok(response)
}

/// The HTML report of a batch run for `caller` from `started`, and the caller's budget after
/// it (the API's batch answer and the library page show the same report).
pub(crate) async fn batch_report(
    state: &AppState,
    caller: &carelens_service::Caller,
    started: chrono::DateTime<chrono::Utc>,
    queries: &[ReportQuery],
    outcomes: &[report::Outcome],
) -> Result<(String, Vec<carelens_ledger::BudgetLine>), ServiceError> {
    let budget = state.service.own_budget(caller).await?;
    let (policy_name, policy) = state.service.engine().await?.disclosure();
    let html = report::render(&Report {
        generated: started,
        user: caller.name(),
        catalog: &state.service.catalog().catalog().dataset.name,
        policy_name,
        policy: &policy.describe(),
        marker: policy.marker.as_str(),
        small_number_rules: policy.suppress_at_or_below.is_some()
            || policy.rounding.max_error() > 0.0,
        files: queries,
        outcomes,
        budget: &budget,
    });
    Ok((html, budget))
}

/// `POST /batches/explain`: each query of a batch planned — its cost and expected errors,
/// or why it would be rejected — and the batch's total, without running, spending or
/// logging anything.
async fn explain_batch(
    State(state): State<AppState>,
    Authenticated(_): Authenticated,
    body: JsonBody<Batch>,
) -> Answer {
    let Json(body) = body?;
    let sql = body.sql()?;
    let (prepared, cost) = state.service.explain_batch(&sql).await?;
    let mut repeats = cost.repeats.iter();
    let items = body
        .queries
        .iter()
        .zip(prepared)
        .map(|(named, prepared)| match prepared {
            Ok(prepared) => ExplainedItem {
                name: named.name.clone(),
                outcome: "planned",
                repeat: repeats.next() == Some(&true),
                explain: Some(prepared.explain()),
                error: None,
                why: None,
            },
            Err(err) => {
                let error = service_error_json(&err).0;
                let (outcome, why) = not_released(&report::Outcome::of(named.source(), Err(err)))
                    .unwrap_or(("failed", String::new()));
                ExplainedItem {
                    name: named.name.clone(),
                    outcome,
                    repeat: false,
                    explain: None,
                    error: Some(error),
                    why: Some(why),
                }
            }
        })
        .collect();
    Ok(Json(ExplainedBatch {
        items,
        total: amount_json(cost.total),
        distinct: cost.distinct,
    })
    .into_response())
}

/// A batch explained.
#[derive(Serialize)]
struct ExplainedBatch {
    items: Vec<ExplainedItem>,
    total: Value,
    distinct: usize,
}

/// One query of a batch explained.
#[derive(Serialize)]
struct ExplainedItem {
    name: String,
    outcome: &'static str,
    /// The same query as one before it in the batch: paid once, there.
    repeat: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<carelens_engine::Explain>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

/// A batch's answer. (A struct, not a `json!` value: a [`RawValue`] inside a `Value`
/// would be parsed and written anew, and the release's bytes would not be the stored
/// ones.)
#[derive(Serialize)]
struct BatchAnswer {
    items: Vec<BatchAnswerItem>,
    spent: Value,
    report_html: String,
    /// The caller's budget and the dataset's after the batch, as `GET /budget` shows them.
    budget: Vec<Value>,
}

#[derive(Serialize)]
struct BatchAnswerItem {
    name: String,
    outcome: &'static str,
    spent: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    /// Why it was not released, in words, as the report says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

/// One query of a batch: its release as stored (the wire-format bytes, verbatim but for
/// the final newline), or its error; what it spent, added to `total`.
fn batch_item(
    name: &str,
    item: &BatchItem,
    total: &mut Amount,
) -> Result<BatchAnswerItem, ApiError> {
    Ok(match item {
        Ok(released) => {
            *total = total.plus(released.spent);
            let text = std::str::from_utf8(&released.bytes)
                .map_err(|e| ServiceError::Internal(Box::new(e)))?;
            let raw = RawValue::from_string(text.trim_end().to_owned())
                .map_err(|e| ServiceError::Internal(Box::new(e)))?;
            BatchAnswerItem {
                name: name.to_owned(),
                outcome: if released.cached {
                    "cached"
                } else {
                    "released"
                },
                spent: amount_json(released.spent),
                release: Some(raw),
                error: None,
                why: None,
            }
        }
        Err(err) => {
            let spent = match err {
                ServiceError::FailedAfterCharge { spent, .. } => *spent,
                _ => Amount::default(),
            };
            *total = total.plus(spent);
            BatchAnswerItem {
                name: name.to_owned(),
                outcome: "failed",
                spent: amount_json(spent),
                release: None,
                error: Some(service_error_json(err).0),
                why: None,
            }
        }
    })
}

fn amount_json(amount: Amount) -> Value {
    json!({ "epsilon": amount.epsilon_value(), "delta": amount.delta_value() })
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
    let Query(filter) = filter.map_err(|e| ApiError::bad_request(e.status(), e.body_text()))?;
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
    body: axum::body::Bytes,
) -> Answer {
    // No body: the approved SQL as stored. `{"sql": ...}`: the requester's copy, which must
    // plan to the approved query (refused otherwise, with nothing spent).
    let sql = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let Json(Sql { sql }) = Json::<Sql>::from_bytes(&body).map_err(ApiError::from)?;
        Some(sql)
    };
    let released = state
        .service
        .release_request(&caller, id, sql.as_deref())
        .await?;
    release_response(released, &headers)
}

/// A release as the caller asked for it (`Accept`): the stored wire-format bytes as they
/// are (JSON, the default), or CSV, Parquet or an Arrow IPC stream rendered from them.
/// Whether it was answered again at no cost and what it cost now are headers, never part
/// of the release.
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
    } else if accept.contains(ARROW_STREAM) {
        let bytes = carelens_render::arrow_ipc(&released.release)
            .map_err(|e| ServiceError::Internal(Box::new(e)))?;
        (ARROW_STREAM, bytes)
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
    response.extensions_mut().insert(Outcome::Released {
        cached: released.cached,
        epsilon: released.spent.epsilon_value(),
    });
    Ok(response)
}
