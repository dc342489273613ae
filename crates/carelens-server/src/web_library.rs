//! The library page: the folder of SQL files given to `carelens serve --library`, each
//! query's cost, a run of the whole library as one batch (the service's `run_batch`, as
//! `POST /api/v1/batches`) and its report, and the earlier runs of this server.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use carelens_engine::Header;
use carelens_ledger::Amount;
use carelens_render::report::{self, ReportQuery};
use carelens_service::ServiceError;
use carelens_web::library::{LibraryPage, LibraryQuery, RunSummary};

use crate::AppState;
use crate::session::{Posted, SignedIn};
use crate::web::{CsrfForm, failed, html, redirect, status_of, viewer};

/// Runs kept at once; the oldest are forgotten first.
const MAX_RUNS: usize = 50;

/// One run of the library.
struct Run {
    user: String,
    at: String,
    released: usize,
    queries: usize,
    epsilon: f64,
    report: String,
}

/// The library's runs on this server, numbered from 1.
#[derive(Default)]
pub(crate) struct Runs(Mutex<(usize, Vec<(usize, Run)>)>);

impl Runs {
    fn add(&self, run: Run) -> usize {
        let mut runs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        runs.0 += 1;
        let id = runs.0;
        runs.1.push((id, run));
        if runs.1.len() > MAX_RUNS {
            runs.1.remove(0);
        }
        id
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/library", get(library))
        .route("/library/run", post(run))
        .route("/library/runs/{id}", get(report_of))
}

/// The library's queries: the folder's `*.sql` files in name order, as (name, SQL).
fn read_library(folder: &Path) -> Result<Vec<(String, String)>, ServiceError> {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .map_err(|e| {
            ServiceError::Internal(format!("the library {}: {e}", folder.display()).into())
        })?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql") && path.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sql = std::fs::read_to_string(&path).map_err(|e| {
                ServiceError::Internal(format!("the library file {}: {e}", path.display()).into())
            })?;
            Ok((name, sql))
        })
        .collect()
}

fn may_read(who: &SignedIn, user: &str) -> bool {
    who.caller.name() == user || who.caller.role().oversees()
}

async fn library(State(state): State<AppState>, who: SignedIn) -> Response {
    render(&state, &who, None, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    who: &SignedIn,
    problem: Option<(String, Option<String>)>,
    status: StatusCode,
) -> Response {
    let files = match state.library.as_deref().map(read_library).transpose() {
        Ok(files) => files.unwrap_or_default(),
        Err(err) => return failed(&err),
    };
    let sql: Vec<String> = files.iter().map(|(_, sql)| sql.clone()).collect();
    let (prepared, cost) = match state.service.explain_batch(&sql).await {
        Ok(explained) => explained,
        Err(err) => return failed(&err),
    };
    let headers: Vec<Header> = files.iter().map(|(_, sql)| Header::parse(sql)).collect();
    let mut repeats = cost.repeats.iter();
    let queries: Vec<LibraryQuery<'_>> = files
        .iter()
        .zip(&headers)
        .zip(&prepared)
        .map(|(((name, _), header), prepared)| LibraryQuery {
            name,
            header,
            cost: match prepared {
                Ok(query) => {
                    let charge = query.charge();
                    let repeat = repeats.next().copied().unwrap_or(false);
                    Ok((charge.epsilon(), charge.delta(), repeat))
                }
                Err(ServiceError::Rejected(rejection)) => Err(rejection.what.clone()),
                Err(other) => Err(other.to_string()),
            },
        })
        .collect();
    let runs = state.runs.0.lock().unwrap_or_else(PoisonError::into_inner);
    let summaries: Vec<RunSummary<'_>> = runs
        .1
        .iter()
        .rev()
        .filter(|(_, run)| may_read(who, &run.user))
        .map(|(id, run)| RunSummary {
            id: *id,
            user: &run.user,
            at: &run.at,
            released: run.released,
            queries: run.queries,
            epsilon: run.epsilon,
        })
        .collect();
    let page = LibraryPage {
        viewer: viewer(who),
        configured: state.library.is_some(),
        queries: &queries,
        total: cost.total,
        may_run: state.service.may_run_batches(&who.caller).is_ok(),
        runs: &summaries,
        problem,
    };
    html(status, carelens_web::library::page(&page))
}

async fn run(State(state): State<AppState>, Posted(who, _): Posted<CsrfForm>) -> Response {
    let Some(folder) = state.library.as_deref() else {
        return redirect("/library", &[]);
    };
    let files = match read_library(folder) {
        Ok(files) => files,
        Err(err) => return failed(&err),
    };
    let started = chrono::Utc::now();
    let sql: Vec<String> = files.iter().map(|(_, sql)| sql.clone()).collect();
    let items = match state.service.run_batch(&who.caller, &sql, |_, _| {}).await {
        Ok(items) => items,
        Err(err) => {
            let problem = (err.to_string(), err.hint().map(str::to_owned));
            return render(&state, &who, Some(problem), status_of(&err)).await;
        }
    };
    let mut spent = Amount::default();
    let mut released = 0;
    let mut outcomes = Vec::with_capacity(items.len());
    for ((name, _), item) in files.iter().zip(items) {
        if let Ok(r) = &item {
            spent = spent.plus(r.spent);
            released += 1;
        }
        outcomes.push(report::Outcome::of(&format!("{name}.sql"), item));
    }
    let queries: Vec<ReportQuery> = files
        .iter()
        .map(|(name, sql)| ReportQuery {
            name: name.clone(),
            source: format!("{name}.sql"),
            header: Header::parse(sql),
        })
        .collect();
    let report = match crate::routes::batch_report(
        &state,
        &who.caller,
        started,
        &queries,
        &outcomes,
    )
    .await
    {
        Ok((report, _)) => report,
        Err(err) => return failed(&err),
    };
    let id = state.runs.add(Run {
        user: who.caller.name().to_owned(),
        at: started.format("%Y-%m-%d %H:%M").to_string(),
        released,
        queries: files.len(),
        epsilon: spent.epsilon_value(),
        report,
    });
    redirect(&format!("/library/runs/{id}"), &[])
}

async fn report_of(
    State(state): State<AppState>,
    who: SignedIn,
    UrlPath(id): UrlPath<usize>,
) -> Response {
    let runs = state.runs.0.lock().unwrap_or_else(PoisonError::into_inner);
    match runs
        .1
        .iter()
        .find(|(n, run)| *n == id && may_read(&who, &run.user))
    {
        Some((_, run)) => html(StatusCode::OK, run.report.clone()),
        None => html(
            StatusCode::NOT_FOUND,
            carelens_web::problem(
                "No such run",
                "There is no run with that number that you may read (runs are kept until the server restarts).",
            ),
        ),
    }
}
