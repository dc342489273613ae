//! The request pages: list and submit, the approvers' queue, one request with its
//! decision forms, and its release. Each post checks the session's CSRF secret, then calls
//! the service operation the API's `/requests` routes call; the service decides who may
//! approve, reject or release.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use carelens_ledger::RequestState;
use carelens_service::ServiceError;
use carelens_web::query::Outcome;
use carelens_web::requests::{Draft, ListPage, RequestPage};
use serde::Deserialize;

use crate::AppState;
use crate::session::{CarriesCsrf, Posted, SignedIn};
use crate::web::{
    CsrfForm, epsilon_field, failed, html, not_released, redirect, released_outcome, status_of,
    viewer,
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/requests", get(list).post(submit))
        .route("/requests/queue", get(queue))
        .route("/requests/{id}", get(show))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/reject", post(reject))
        .route("/requests/{id}/release", post(release))
}

async fn list(State(state): State<AppState>, who: SignedIn) -> Response {
    render_list(&state, &who, false, Draft::default(), None, StatusCode::OK).await
}

async fn queue(State(state): State<AppState>, who: SignedIn) -> Response {
    if !who.caller.role().oversees() {
        return html(
            StatusCode::FORBIDDEN,
            carelens_web::problem(
                "Approvers only",
                "The approvals queue is for approvers and admins. Your own requests are under Requests.",
            ),
        );
    }
    render_list(&state, &who, true, Draft::default(), None, StatusCode::OK).await
}

async fn render_list(
    state: &AppState,
    who: &SignedIn,
    queue: bool,
    draft: Draft<'_>,
    problem: Option<(String, Option<String>)>,
    status: StatusCode,
) -> Response {
    let mut requests = match state.service.requests(&who.caller).await {
        Ok(requests) => requests,
        Err(err) => return failed(&err),
    };
    if queue {
        requests.retain(|r| r.state == RequestState::Submitted && r.requester != who.caller.name());
    }
    let asks = who.caller.role() == carelens_catalog::Role::Researcher;
    let page = ListPage {
        viewer: viewer(who),
        queue,
        requests: &requests,
        submit: (asks && !queue).then_some(draft),
        problem,
    };
    html(status, carelens_web::requests::list(&page))
}

#[derive(Deserialize)]
struct SubmitForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sql: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    epsilon: String,
}

impl CarriesCsrf for SubmitForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn submit(State(state): State<AppState>, Posted(who, form): Posted<SubmitForm>) -> Response {
    let sql = form.sql.replace("\r\n", "\n");
    let draft = Draft {
        sql: &sql,
        purpose: &form.purpose,
        epsilon: &form.epsilon,
    };
    let epsilon = match epsilon_field(&form.epsilon) {
        Ok(epsilon) => epsilon,
        Err(problem) => {
            let problem = Some((problem, None));
            return render_list(&state, &who, false, draft, problem, StatusCode::BAD_REQUEST).await;
        }
    };
    match state
        .service
        .submit_request(&who.caller, &sql, &form.purpose, epsilon)
        .await
    {
        Ok((request, _)) => redirect(&format!("/requests/{}", request.id), &[]),
        Err(err) => {
            let problem = (refusal_text(&err), err.hint().map(str::to_owned));
            render_list(&state, &who, false, draft, Some(problem), status_of(&err)).await
        }
    }
}

/// A refusal in words, with a rejection's place.
fn refusal_text(err: &ServiceError) -> String {
    match err {
        ServiceError::Rejected(rejection) => {
            let mut text = format!("Not accepted: {}.", rejection.what);
            if let Some(place) = rejection.location {
                text.push_str(&format!(" (line {}, column {})", place.line, place.column));
            }
            text.push_str(&format!(" Hint: {}", rejection.hint));
            text
        }
        other => other.to_string(),
    }
}

async fn show(State(state): State<AppState>, who: SignedIn, Path(id): Path<i64>) -> Response {
    render_request(&state, &who, id, None, StatusCode::OK).await
}

async fn render_request(
    state: &AppState,
    who: &SignedIn,
    id: i64,
    outcome: Option<Outcome<'_>>,
    status: StatusCode,
) -> Response {
    let shown = match state.service.show_request(&who.caller, id).await {
        Ok(shown) => shown,
        Err(err) => {
            return html(
                status_of(&err),
                carelens_web::problem("Request not shown", &err.to_string()),
            );
        }
    };
    let request = &shown.request;
    // The earlier request a flag points at, side by side, for those who may see it.
    let earlier = match &request.flag {
        Some(flag) => state
            .service
            .show_request(&who.caller, flag.earlier)
            .await
            .ok()
            .map(|s| s.request),
        None => None,
    };
    let explain = shown.plan.as_ref().map(|p| p.explain());
    let cost = match &explain {
        Ok(explain) => Ok(explain),
        Err(err) => Err(err.to_string()),
    };
    let mine = request.requester == who.caller.name();
    let page = RequestPage {
        viewer: viewer(who),
        request,
        cost,
        plans_as_submitted: shown.plans_as_submitted,
        earlier: earlier.as_ref(),
        may_decide: who.caller.role().oversees()
            && !mine
            && request.state == RequestState::Submitted,
        may_release: mine
            && matches!(
                request.state,
                RequestState::Approved | RequestState::Released
            ),
        outcome,
    };
    html(status, carelens_web::requests::show(&page))
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    epsilon: String,
    #[serde(default)]
    note: String,
}

impl CarriesCsrf for DecisionForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn approve(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(who, form): Posted<DecisionForm>,
) -> Response {
    let epsilon = match epsilon_field(&form.epsilon) {
        Ok(epsilon) => epsilon,
        Err(problem) => {
            return decision_refused(&state, &who, id, problem, None, StatusCode::BAD_REQUEST)
                .await;
        }
    };
    let decided = state
        .service
        .approve_request(&who.caller, id, epsilon, &form.note)
        .await;
    after_decision(&state, &who, id, decided.map(|_| ())).await
}

async fn reject(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(who, form): Posted<DecisionForm>,
) -> Response {
    let decided = state
        .service
        .reject_request(&who.caller, id, &form.note)
        .await;
    after_decision(&state, &who, id, decided.map(|_| ())).await
}

/// The request's page after a decision, or again with why it was refused.
async fn after_decision(
    state: &AppState,
    who: &SignedIn,
    id: i64,
    decided: Result<(), ServiceError>,
) -> Response {
    match decided {
        Ok(()) => redirect(&format!("/requests/{id}"), &[]),
        Err(err) => {
            let hint = err.hint().map(str::to_owned);
            decision_refused(state, who, id, err.to_string(), hint, status_of(&err)).await
        }
    }
}

async fn decision_refused(
    state: &AppState,
    who: &SignedIn,
    id: i64,
    message: String,
    hint: Option<String>,
    status: StatusCode,
) -> Response {
    render_request(
        state,
        who,
        id,
        Some(Outcome::Refused { message, hint }),
        status,
    )
    .await
}

async fn release(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(who, _): Posted<CsrfForm>,
) -> Response {
    match state.service.release_request(&who.caller, id, None).await {
        Ok(released) => {
            let parquet = carelens_render::parquet(&released.release).ok();
            let outcome = released_outcome(&released, parquet.as_deref());
            render_request(&state, &who, id, Some(outcome), StatusCode::OK).await
        }
        Err(err) => match not_released(&err) {
            Some(outcome) => render_request(&state, &who, id, Some(outcome), status_of(&err)).await,
            None => failed(&err),
        },
    }
}
