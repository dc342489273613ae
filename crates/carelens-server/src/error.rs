//! Every error as JSON, with the status the service gives it:
//! `{"error": {"code": "...", "message": "...", "rejection": {...}}}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use carelens_service::ServiceError;
use serde_json::json;

/// Why a call got no answer.
#[derive(Debug)]
pub enum ApiError {
    /// The service's reason.
    Service(ServiceError),
    /// The request itself is malformed (not JSON, too large, a missing field).
    Request {
        /// Its status (400, 413, 415, 422).
        status: StatusCode,
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
        Self::Request {
            status: rejection.status(),
            message: rejection.body_text(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Request { status, message } => (
                status,
                json!({ "error": { "code": "bad_request", "message": message } }),
            ),
            Self::Service(err) => {
                let status = StatusCode::from_u16(err.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let message = match &err {
                    // Details of our own faults stay in the server's log, not the answer.
                    ServiceError::Ledger(_) | ServiceError::Internal(_) => {
                        eprintln!("carelens serve: {err}");
                        "an internal error; the operator's log has the details".to_owned()
                    }
                    other => other.to_string(),
                };
                let mut error = json!({ "code": err.code(), "message": message });
                if let ServiceError::Rejected(rejection) = &err {
                    error["rejection"] = json!(rejection);
                }
                (status, json!({ "error": error }))
            }
        };
        (status, Json(body)).into_response()
    }
}
