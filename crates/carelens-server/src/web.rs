//! The signed-in web pages: sign-in and sign-out, and the analysts' query page. Each
//! handler reads its form, checks the session and the form's CSRF secret, calls one
//! service operation — the same the API calls — and renders what came back with
//! carelens-web. Nothing here decides about privacy or governance.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use carelens_service::{Caller, ServiceError};
use carelens_web::query::{Outcome, QueryPage};
use serde::Deserialize;

use crate::limits::{Gate, queue};
use crate::session::{
    self, CarriesCsrf, Posted, SESSION_COOKIE, SIGNIN_COOKIE, SignedIn, form_is_genuine,
    set_cookie, signed_in,
};
use crate::{AppState, auth};

/// What pages may load: their own inline style and SVG, images as data; no scripts, no
/// frames, forms only to this site.
pub(crate) const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                      form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page routes; the query page's post waits for a turn at the gate, as the API's
/// queries do.
pub(crate) fn routes(gate: Arc<Gate>, state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/signin", get(signin_form).post(signin))
        .route("/signout", post(signout))
        .route("/audit", get(audit_page))
        .merge(
            Router::new()
                .route("/query", get(query_page).post(query_post))
                .merge(crate::web_library::routes())
                .merge(crate::web_requests::routes())
                // A turn at the gate (as the API's query routes), asked for only by a
                // signed-in person: a caller without a session is sent to sign in at
                // once, not queued.
                .route_layer(from_fn_with_state(gate, queue))
                .route_layer(from_fn_with_state(state, signed_in_first)),
        )
}

/// Middleware outside the gate on the pages that wait for a turn: a caller without a live
/// session is sent to sign in at once and takes no place in the queue.
async fn signed_in_first(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match signed_in(&state, request.headers()).await {
        Some(who) => {
            // The handler's `SignedIn` is this one: the token is not authenticated twice.
            request.extensions_mut().insert(who);
            next.run(request).await
        }
        None => redirect("/signin", &[]),
    }
}

/// Who is looking, for a page.
pub(crate) fn viewer(who: &SignedIn) -> carelens_web::Viewer<'_> {
    carelens_web::Viewer {
        user: who.caller.name(),
        role: who.caller.role().as_str(),
        oversees: who.caller.role().oversees(),
        csrf: &who.csrf,
    }
}

/// An HTML page with the site's security headers.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            (
                axum::http::header::X_FRAME_OPTIONS,
                HeaderValue::from_static("DENY"),
            ),
            (
                axum::http::header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `303 See Other` to `to`, setting `cookies`.
pub(crate) fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response();
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

pub(crate) fn failed(err: &ServiceError) -> Response {
    html(
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        carelens_web::problem("Something went wrong", &err.to_string()),
    )
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Some(_) => redirect("/query", &[]),
        None => redirect("/signin", &[]),
    }
}

/// The sign-in form, with a fresh secret in its own cookie.
async fn signin_form() -> Response {
    signin_page(StatusCode::OK, None)
}

fn signin_page(status: StatusCode, problem: Option<&str>) -> Response {
    let secret = match session::signin_secret() {
        Ok(secret) => secret,
        Err(err) => return failed(&err),
    };
    let mut response = html(status, carelens_web::signin(&secret, problem));
    if let Ok(cookie) = HeaderValue::from_str(&set_cookie(SIGNIN_COOKIE, &secret, None)) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
struct SigninForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

async fn signin(
    State(state): State<AppState>,
    address: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Response {
    let expected = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or("");
    if !form_is_genuine(&headers, &form.csrf, expected) {
        return signin_page(
            StatusCode::FORBIDDEN,
            Some("This form had expired or did not come from this site. Please sign in again."),
        );
    }
    let token = form.token.trim().to_owned();
    match state.service.authenticate(&token).await {
        Ok(_) => match state.sessions.start(token) {
            Ok(id) => redirect(
                "/query",
                &[
                    set_cookie(SESSION_COOKIE, &id, Some(session::LIFETIME)),
                    set_cookie(SIGNIN_COOKIE, "", Some(std::time::Duration::ZERO)),
                ],
            ),
            Err(err) => failed(&err),
        },
        Err(_) => {
            // Counted and slowed as a wrong bearer token is.
            if let Some(axum::Extension(ConnectInfo(address))) = address {
                let delay = state
                    .failures
                    .fail(auth::guesser(address.ip()), Instant::now());
                tokio::time::sleep(delay).await;
            }
            signin_page(
                StatusCode::UNAUTHORIZED,
                Some("That token is not accepted: it may be mistyped, expired or revoked."),
            )
        }
    }
}

/// A form that carries only the session's CSRF secret.
#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

impl CarriesCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl CarriesCsrf for QueryForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// An optional ε typed into a form: `None` when left empty.
pub(crate) fn epsilon_field(text: &str) -> Result<Option<f64>, String> {
    match text.trim() {
        "" => Ok(None),
        text => text
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("ε must be a number, not `{text}`")),
    }
}

async fn signout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(_, _): Posted<CsrfForm>,
) -> Response {
    if let Some(id) = session::cookie(&headers, SESSION_COOKIE) {
        state.sessions.end(id);
    }
    redirect(
        "/signin",
        &[set_cookie(
            SESSION_COOKIE,
            "",
            Some(std::time::Duration::ZERO),
        )],
    )
}

pub(crate) fn forbidden_form() -> Response {
    html(
        StatusCode::FORBIDDEN,
        carelens_web::problem(
            "Form refused",
            "This form did not carry this session's security code (it may be from an old page or \
             another site). Nothing was done. Open the page again and retry.",
        ),
    )
}

async fn query_page(State(state): State<AppState>, who: SignedIn) -> Response {
    render_query(&state, &who, "", None).await
}

#[derive(Deserialize)]
struct QueryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sql: String,
    #[serde(default)]
    action: String,
}

async fn query_post(
    State(state): State<AppState>,
    Posted(who, form): Posted<QueryForm>,
) -> Response {
    let sql = form.sql.replace("\r\n", "\n");
    match form.action.as_str() {
        "explain" => match state.service.explain(&sql).await {
            Ok(prepared) => {
                let explain = prepared.explain();
                render_query(&state, &who, &sql, Some(Outcome::Explained(&explain))).await
            }
            Err(err) => refused(&state, &who, &sql, err).await,
        },
        "release" => match state.service.query(&who.caller, &sql).await {
            Ok(released) => {
                let parquet = carelens_render::parquet(&released.release).ok();
                let outcome = released_outcome(&released, parquet.as_deref());
                render_query(&state, &who, &sql, Some(outcome)).await
            }
            Err(err) => refused(&state, &who, &sql, err).await,
        },
        _ => html(
            StatusCode::BAD_REQUEST,
            carelens_web::problem("Unknown action", "Choose Explain or Release."),
        ),
    }
}

/// What the page says of a service error that stopped a query or a release: a rejection
/// with its place, a failure with what was spent, anything else with its hint; `None` for
/// an internal error, shown as a failure page.
pub(crate) fn not_released(err: &ServiceError) -> Option<Outcome<'_>> {
    Some(match err {
        ServiceError::Rejected(rejection) => Outcome::Rejected(rejection),
        ServiceError::FailedAfterCharge { message, spent } => Outcome::Refused {
            message: carelens_render::report::failed_after_charge(message, *spent),
            hint: None,
        },
        ServiceError::FailedBefore(failure) => Outcome::Refused {
            message: carelens_render::report::failed_before(failure),
            hint: None,
        },
        ServiceError::Internal(_) => return None,
        other => Outcome::Refused {
            message: other.to_string(),
            hint: other.hint().map(str::to_owned),
        },
    })
}

/// The status a page answers a service error with.
pub(crate) fn status_of(err: &ServiceError) -> StatusCode {
    StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
}

/// A release's outcome for a page, with its Parquet rendering.
pub(crate) fn released_outcome<'a>(
    released: &'a carelens_service::Released,
    parquet: Option<&'a [u8]>,
) -> Outcome<'a> {
    Outcome::Released {
        release: &released.release,
        bytes: &released.bytes,
        parquet,
        spent: released.spent,
        cached: released.cached,
    }
}

/// The page again with why the query was not released.
async fn refused(state: &AppState, who: &SignedIn, sql: &str, err: ServiceError) -> Response {
    let Some(outcome) = not_released(&err) else {
        return failed(&err);
    };
    let mut response = render_query(state, who, sql, Some(outcome)).await;
    *response.status_mut() = status_of(&err);
    response
}

async fn render_query(
    state: &AppState,
    who: &SignedIn,
    sql: &str,
    outcome: Option<Outcome<'_>>,
) -> Response {
    let caller: &Caller = &who.caller;
    let (catalog, budget) = match (
        state.service.catalog_view(caller).await,
        state.service.own_budget(caller).await,
    ) {
        (Ok(catalog), Ok(budget)) => (catalog, budget),
        (Err(err), _) | (_, Err(err)) => return failed(&err),
    };
    let page = QueryPage {
        viewer: viewer(who),
        sql,
        catalog: &catalog,
        budget: &budget,
        outcome,
    };
    html(StatusCode::OK, carelens_web::query::page(&page))
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    since: String,
    #[serde(default)]
    of: String,
    #[serde(default)]
    event: String,
}

async fn audit_page(
    State(state): State<AppState>,
    who: SignedIn,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let filter = query.map(|q| q.0).unwrap_or_default();
    // A query string that does not read as filters is shown unfiltered.
    let nonempty = |text: &str| {
        Some(text.trim())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    let (since, of) = (nonempty(&filter.since), nonempty(&filter.of));
    let event = nonempty(&filter.event).map(|e| {
        carelens_ledger::Event::parse(&e).ok_or(format!("`{e}` is not a kind of audit entry"))
    });
    let oversees = who.caller.role().oversees();
    let (entries, problem) = match event.transpose() {
        Err(problem) => (Vec::new(), Some(problem)),
        Ok(event) => match state
            .service
            .audit_log(&who.caller, since.as_deref(), of.as_deref(), event)
            .await
        {
            Ok(entries) => (entries, None),
            Err(err @ (ServiceError::BadInput(_) | ServiceError::OthersEntries)) => {
                (Vec::new(), Some(err.to_string()))
            }
            Err(err) => return failed(&err),
        },
    };
    let budget = match state.service.budget(&who.caller).await {
        Ok(budget) => budget,
        Err(err) => return failed(&err),
    };
    let (verification, register) = if oversees {
        match (
            state.service.verify(None).await,
            state.service.register().await,
        ) {
            (Ok(v), Ok(r)) => (Some(v), Some(r)),
            (Err(err), _) | (_, Err(err)) => return failed(&err),
        }
    } else {
        (None, None)
    };
    let page = carelens_web::audit::AuditPage {
        viewer: viewer(&who),
        filter: carelens_web::audit::Filter {
            since: &filter.since,
            of: &filter.of,
            event: &filter.event,
        },
        entries: &entries,
        problem,
        verification: verification.as_ref(),
        budget: &budget,
        register: register.as_ref(),
    };
    let status = if page.problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html(status, carelens_web::audit::page(&page))
}
