//! Who a call comes from: the bearer token's user, and no one else.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use carelens_service::{Caller, ServiceError};

use crate::{ApiError, AppState};

/// The caller of an authenticated call: the user of the call's bearer token.
pub(crate) struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(ServiceError::Unauthenticated)?;
        let caller = state.service.authenticate(token.trim()).await?;
        Ok(Self(caller))
    }
}
