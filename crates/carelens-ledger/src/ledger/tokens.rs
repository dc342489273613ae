//! API tokens: who a call to `carelens serve` comes from.
//!
//! A token is a random secret shown once, when it is issued; the ledger keeps only its
//! SHA-256, the user it names, when it expires and whether it was revoked. Issuing and
//! revoking are audit entries (`token_issued`, whose sequence number is the token's id,
//! and `token_revoked`), so who could act as whom, and when, is in the hash-chained log.
//! The `tokens` table is the index the server looks a token up in; its rows can only be
//! added and revoked, once (SQLite triggers refuse anything else).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::Ledger;
use crate::audit::{self, Event, NewEntry};
use crate::error::LedgerError;

/// A token as the ledger records it (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Its id: the sequence number of its `token_issued` entry.
    pub id: i64,
    /// The user it names.
    pub user: String,
    /// When it was issued (RFC 3339, UTC).
    pub issued_at: String,
    /// When it stops being accepted (RFC 3339, UTC).
    pub expires_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

impl Ledger {
    /// Records a token for `user`, by the SHA-256 of its secret (`token_hash`, lowercase
    /// hex), accepted until `expires_at` (RFC 3339, UTC).
    pub fn issue_token(
        &mut self,
        user: &str,
        token_hash: &str,
        expires_at: &str,
    ) -> Result<TokenInfo, LedgerError> {
        let role = self.role(user)?;
        self.write(|tx, e| {
            let params = serde_json::json!({ "expires_at": expires_at }).to_string();
            let detail = format!("an API token for {user}, accepted until {expires_at}");
            let entry = audit::append(
                tx,
                Event::TokenIssued,
                &NewEntry {
                    user,
                    role: role.as_str(),
                    params: &params,
                    detail: &detail,
                    ..NewEntry::default()
                },
            )
            .map_err(e)?;
            tx.execute(
                "INSERT INTO tokens (token_hash, user, issued_seq, issued_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token_hash, user, entry.seq, entry.at, expires_at],
            )
            .map_err(e)?;
            Ok(TokenInfo {
                id: entry.seq,
                user: user.to_owned(),
                issued_at: entry.at,
                expires_at: expires_at.to_owned(),
                revoked_at: None,
            })
        })
    }

    /// Revokes token `id`: it is refused from now on. Revoking a revoked token changes
    /// nothing and says when it was revoked.
    pub fn revoke_token(&mut self, id: i64) -> Result<TokenInfo, LedgerError> {
        let budgets = self.budgets.clone();
        self.write(|tx, e| {
            let token = token_by_id(tx, id)
                .map_err(e)?
                .ok_or(LedgerError::UnknownToken { id })?;
            if token.revoked_at.is_some() {
                return Ok(token);
            }
            let role = budgets
                .user(&token.user)
                .map(|(r, _)| r.as_str())
                .unwrap_or("");
            let entry = audit::append(
                tx,
                Event::TokenRevoked,
                &NewEntry {
                    user: &token.user,
                    role,
                    detail: "the API token is revoked",
                    refers_to: Some(id),
                    ..NewEntry::default()
                },
            )
            .map_err(e)?;
            tx.execute(
                "UPDATE tokens SET revoked_seq = ?1, revoked_at = ?2 WHERE issued_seq = ?3",
                params![entry.seq, entry.at, id],
            )
            .map_err(e)?;
            Ok(TokenInfo {
                revoked_at: Some(entry.at),
                ..token
            })
        })
    }

    /// Every token, in the order issued: `user`'s only, if given.
    pub fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, LedgerError> {
        let e = |err| self.err(err);
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR user = ?1 \
                 ORDER BY issued_seq"
            ))
            .map_err(e)?;
        let rows = statement
            .query_map(params![user], read_token)
            .map_err(e)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(e)?;
        Ok(rows)
    }

    /// The user of the token whose secret hashes to `token_hash`, if it is accepted at
    /// `now` (RFC 3339, UTC): issued here, not expired, not revoked.
    pub fn token_user(&self, token_hash: &str, now: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT user FROM tokens WHERE token_hash = ?1 AND revoked_seq IS NULL \
                 AND expires_at > ?2",
                params![token_hash, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(|err| self.err(err))
    }
}

const TOKEN_COLUMNS: &str = "issued_seq, user, issued_at, expires_at, revoked_at";

fn read_token(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.get(0)?,
        user: row.get(1)?,
        issued_at: row.get(2)?,
        expires_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

fn token_by_id(conn: &rusqlite::Connection, id: i64) -> rusqlite::Result<Option<TokenInfo>> {
    conn.query_row(
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE issued_seq = ?1"),
        params![id],
        read_token,
    )
    .optional()
}
