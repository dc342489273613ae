//! API tokens: who a call to the server comes from. Issued and revoked by the operator
//! (whoever runs carelens beside the ledger, `carelens token`); never through the server.
//!
//! A token is `carelens_` and 64 hex digits (256 random bits from opendp's CSPRNG), shown
//! once; the ledger keeps its SHA-256. A caller is the token's user with the catalog's
//! role, and nothing a call says can name another user.

use std::time::Duration;

use carelens_ledger::TokenInfo;

use crate::{Caller, Service, ServiceError};

/// Every token starts with this, so that a leaked one is recognisable (secret scanners,
/// logs).
pub const TOKEN_PREFIX: &str = "carelens_";

/// A token just issued: its secret (shown this once) and its record.
#[derive(Debug)]
pub struct IssuedToken {
    /// The secret to hand to its user.
    pub secret: String,
    /// What the ledger keeps.
    pub info: TokenInfo,
}

impl Service {
    /// Issues a token for the catalog's user `user`, accepted for `lifetime`.
    pub async fn issue_token(
        &self,
        user: &str,
        lifetime: Duration,
    ) -> Result<IssuedToken, ServiceError> {
        let caller = Caller::of(&self.catalog, user)?;
        let lifetime = chrono::Duration::from_std(lifetime)
            .map_err(|_| ServiceError::BadInput("the token's lifetime is too long".into()))?;
        let expires_at = chrono::Utc::now()
            .checked_add_signed(lifetime)
            .ok_or_else(|| ServiceError::BadInput("the token's lifetime is too long".into()))?;
        let secret = format!(
            "{TOKEN_PREFIX}{}",
            carelens_privacy::random_hex(32).map_err(ServiceError::internal)?
        );
        let hash = carelens_ledger::audit::sha256_hex(secret.as_bytes());
        let expires_at = timestamp(expires_at);
        let info = self
            .with_ledger(move |ledger| ledger.issue_token(&caller.name, &hash, &expires_at))
            .await?;
        Ok(IssuedToken { secret, info })
    }

    /// Every token issued (`user`'s only, if given), revoked ones too; never a secret.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, ServiceError> {
        let user = user.map(str::to_owned);
        self.with_ledger(move |ledger| ledger.tokens(user.as_deref()))
            .await
    }

    /// Revokes token `id`: refused from the next call on.
    pub async fn revoke_token(&self, id: i64) -> Result<TokenInfo, ServiceError> {
        self.with_ledger(move |ledger| ledger.revoke_token(id))
            .await
    }

    /// The caller a token stands for: its user, if the token was issued here and is
    /// neither expired nor revoked, and the user is still in the catalog. Every other case
    /// is the same [`ServiceError::Unauthenticated`], which says nothing of why.
    pub async fn authenticate(&self, secret: &str) -> Result<Caller, ServiceError> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Err(ServiceError::Unauthenticated);
        }
        let hash = carelens_ledger::audit::sha256_hex(secret.as_bytes());
        let now = timestamp(chrono::Utc::now());
        let user = self
            .with_ledger(move |ledger| ledger.token_user(&hash, &now))
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        Caller::of(&self.catalog, &user).map_err(|_| ServiceError::Unauthenticated)
    }
}

/// The ledger's spelling of a time (RFC 3339, UTC, microseconds), which orders as text.
fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
