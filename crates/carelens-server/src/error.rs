//! Every error as JSON, with the status the service gives it:
//! `{"error": {"code": "...", "message": "...", "refusal": false, "rejection": {...}}}`.
//! `refusal` says whether the service refused on a privacy or governance ground (an
//! analysis rejection, the budget, the workflow, a role) rather than the call being
//! malformed or failing.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use carelens_render::report;
use carelens_service::ServiceError;
use serde_json::{Value, json};

use crate::observe::Outcome;

/// Why a call got no answer.
#[derive(Debug)]
pub enum ApiError {
    /// The service's reason.
    Service(ServiceError),
    /// The request itself is malformed (not JSON, too large, a missing field).
    Request {
        /// Its status (400, 404, 413, 415, 422, 429, 503).
        status: StatusCode,
        /// A stable name for the problem: `bad_request`, `not_found`, `busy`, `stopping`.
        code: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        Self::Service(err)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::bad_request(rejection.status(), rejection.body_text())
    }
}

impl ApiError {
    /// A malformed call: `bad_request` with `status`.
    pub(crate) fn bad_request(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Request {
            status,
            code: "bad_request",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body, outcome) = match self {
            Self::Request {
                status,
                code,
                message,
            } => (
                status,
                json!({ "error": { "code": code, "message": message, "refusal": false } }),
                Outcome::Error {
                    code,
                    refusal: false,
                    detail: None,
                },
            ),
            Self::Service(err) => {
                let status = StatusCode::from_u16(err.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let (error, detail) = service_error_json(&err);
                let outcome = Outcome::Error {
                    code: err.code(),
                    refusal: err.is_refusal(),
                    detail,
                };
                (status, json!({ "error": error }), outcome)
            }
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: a 401 names the scheme the caller should use.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"carelens\""),
            );
        }
        response.extensions_mut().insert(outcome);
        response
    }
}

/// A service error as the API shows it (`code`, `message`, `refusal`, and the analysis's
/// `rejection` with its place in the SQL and its hint), and the detail withheld from the
/// caller for the operator's log: our own faults are not described to callers.
pub(crate) fn service_error_json(err: &ServiceError) -> (Value, Option<String>) {
    let (message, detail) = match err {
        ServiceError::Ledger(_) | ServiceError::Internal(_) => (
            "an internal error; the operator's log has the details".to_owned(),
            Some(err.to_string()),
        ),
        // Told as the command line tells them: what was spent, and why it is not run again.
        ServiceError::FailedAfterCharge { message, spent } => {
            (report::failed_after_charge(message, *spent), None)
        }
        ServiceError::FailedBefore(failure) => (report::failed_before(failure), None),
        other => (other.to_string(), None),
    };
    let mut error = json!({
        "code": err.code(),
        "message": message,
        "refusal": err.is_refusal(),
    });
    if let Some(hint) = err.hint() {
        error["hint"] = json!(hint);
    }
    if let ServiceError::Rejected(rejection) = err {
        error["rejection"] = json!(rejection);
    }
    (error, detail)
}
