//! The audit log: append-only and hash-chained.
//!
//! Each entry's hash is SHA-256 over its fields (each length-prefixed, in a fixed order)
//! and the previous entry's hash; the first entry's previous hash is 64 zeros. Editing,
//! deleting, inserting or reordering entries breaks the chain at the first entry touched,
//! which [`verify`] names. SQLite triggers also refuse `UPDATE` and `DELETE` on the table,
//! so an accident cannot edit it; a deliberate edit (dropping the triggers) is what the
//! chain is for.
//!
//! The chain alone cannot show that entries were cut off the *end* of the log, or that
//! someone who can write the file rewrote every hash after an edit. Record the head that
//! `carelens audit verify` prints somewhere else (a transparency register, a ticket) and
//! pass it back (`--expect-head SEQ:HASH`): [`verify`] then checks the log still holds it.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::amount::{Spend, ZcdpAmount};

/// The previous hash of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A budget was debited for a query (before it ran).
    Charged,
    /// A result was released for a charge.
    Released,
    /// An identical earlier release was served from the cache, at no cost.
    Cached,
    /// An identical earlier query failed after its charge: that failure was served, at
    /// no cost, and the query was not run (`refers_to` names the `error` entry).
    CachedFailure,
    /// A charge of the same user and query whose process stopped before its outcome was
    /// logged was taken up again, at no cost (once per charge).
    Resumed,
    /// The privacy analysis or the policy rejected the query; nothing was charged.
    Rejected,
    /// A budget could not cover the query; nothing was charged.
    Refused,
    /// The query failed after it was charged; the budget stays spent, and the failure is
    /// the query's answer from then on.
    Error,
    /// The catalog's budget for a user or the dataset was set or changed.
    Budget,
    /// A researcher asked for a cohort count (the entry's sequence number is the request id).
    RequestSubmitted,
    /// An approver approved a request (`refers_to` names it).
    RequestApproved,
    /// An approver rejected a request.
    RequestRejected,
    /// The requester released an approved request (`params` names the release).
    RequestReleased,
    /// An API token was issued for the entry's user (the entry's sequence number is the
    /// token's id; the secret is not recorded).
    TokenIssued,
    /// An API token was revoked (`refers_to` names it).
    TokenRevoked,
}

impl Event {
    /// Every kind, in the order of the documentation.
    pub const ALL: [Event; 15] = [
        Event::Budget,
        Event::Charged,
        Event::Released,
        Event::Cached,
        Event::CachedFailure,
        Event::Resumed,
        Event::Rejected,
        Event::Refused,
        Event::Error,
        Event::RequestSubmitted,
        Event::RequestApproved,
        Event::RequestRejected,
        Event::RequestReleased,
        Event::TokenIssued,
        Event::TokenRevoked,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Charged => "charged",
            Event::Released => "released",
            Event::Cached => "cached",
            Event::CachedFailure => "cached_failure",
            Event::Resumed => "resumed",
            Event::Rejected => "rejected",
            Event::Refused => "refused",
            Event::Error => "error",
            Event::Budget => "budget",
            Event::RequestSubmitted => "request_submitted",
            Event::RequestApproved => "request_approved",
            Event::RequestRejected => "request_rejected",
            Event::RequestReleased => "request_released",
            Event::TokenIssued => "token_issued",
            Event::TokenRevoked => "token_revoked",
        }
    }

    /// The kind spelled `s` (as stored), if any.
    pub fn parse(s: &str) -> Option<Event> {
        Some(match s {
            "charged" => Event::Charged,
            "released" => Event::Released,
            "cached" => Event::Cached,
            "cached_failure" => Event::CachedFailure,
            "resumed" => Event::Resumed,
            "rejected" => Event::Rejected,
            "refused" => Event::Refused,
            "error" => Event::Error,
            "budget" => Event::Budget,
            "request_submitted" => Event::RequestSubmitted,
            "request_approved" => Event::RequestApproved,
            "request_rejected" => Event::RequestRejected,
            "request_released" => Event::RequestReleased,
            "token_issued" => Event::TokenIssued,
            "token_revoked" => Event::TokenRevoked,
            _ => return None,
        })
    }
}

/// The fields of an entry that callers supply.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NewEntry<'a> {
    pub user: &'a str,
    pub role: &'a str,
    pub sql: &'a str,
    pub plan_hash: &'a str,
    pub cache_key: &'a str,
    pub params: &'a str,
    pub epsilon_units: i64,
    pub delta_units: i64,
    pub zcdp: Option<ZcdpAmount>,
    pub detail: &'a str,
    pub result_hash: &'a str,
    pub refers_to: Option<i64>,
}

/// An entry's `params` as the JSON value it holds: the stored text verbatim (so a
/// reader gets the same bytes, in the same key order), `null` for none; read back from
/// that, or from a string as older carelens wrote it.
mod params_json {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub(super) fn serialize<S: Serializer>(params: &str, s: S) -> Result<S::Ok, S::Error> {
        if params.is_empty() {
            return s.serialize_none();
        }
        match RawValue::from_string(params.to_owned()) {
            Ok(raw) => raw.serialize(s),
            // Not JSON (never written so): as text.
            Err(_) => s.serialize_str(params),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        match raw.get() {
            "null" => Ok(String::new()),
            text if text.starts_with('"') => serde_json::from_str(text).map_err(D::Error::custom),
            text => Ok(text.to_owned()),
        }
    }
}

/// One entry of the audit log, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log: 1, 2, 3, … with no gaps.
    pub seq: i64,
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// The acting user (`*dataset*` for dataset-wide budget entries).
    pub user: String,
    /// Their role at the time.
    pub role: String,
    /// What happened.
    pub event: Event,
    /// The query's SQL text.
    pub sql: String,
    /// Hash of the normalised plan.
    pub plan_hash: String,
    /// The release-cache key (plan, DP parameters, data version).
    pub cache_key: String,
    /// The DP parameters (the privacy charge, or a budget setting), as JSON text; written
    /// out as the JSON value itself (`null` when empty), not as a string holding JSON.
    #[serde(with = "params_json")]
    pub params: String,
    /// ε debited by this entry, in 10⁻¹² units (only `charged` entries debit).
    pub epsilon_units: i64,
    /// δ debited, in 10⁻¹⁸ units.
    pub delta_units: i64,
    /// ρ of a `charged` entry in 10⁻¹² units (approximate zCDP, beside its (ε, δ)); `None`
    /// on other entries and on charges logged before schema 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho_units: Option<i64>,
    /// δ of the charge's parts that are only approximately zCDP, in 10⁻¹⁸ units; with
    /// `rho_units`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho_delta_units: Option<i64>,
    /// Why a query was rejected, refused or failed.
    pub detail: String,
    /// SHA-256 of the released result.
    pub result_hash: String,
    /// The entry this one follows up (a release names its charge).
    pub refers_to: Option<i64>,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl AuditEntry {
    /// What this entry debited, in both forms (nothing unless it is a charge).
    pub fn spend(&self) -> Spend {
        Spend::of_logged(
            self.epsilon_units,
            self.delta_units,
            self.rho_units,
            self.rho_delta_units,
        )
    }

    /// The hash this entry should have, from its fields and `prev_hash`.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(b"carelens-audit-v1");
        field(self.seq.to_string().as_bytes());
        field(self.at.as_bytes());
        field(self.user.as_bytes());
        field(self.role.as_bytes());
        field(self.event.as_str().as_bytes());
        field(self.sql.as_bytes());
        field(self.plan_hash.as_bytes());
        field(self.cache_key.as_bytes());
        field(self.params.as_bytes());
        field(self.epsilon_units.to_string().as_bytes());
        field(self.delta_units.to_string().as_bytes());
        field(self.detail.as_bytes());
        field(self.result_hash.as_bytes());
        field(
            self.refers_to
                .map(|r| r.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        field(self.prev_hash.as_bytes());
        // Schema 5 adds ρ to charges. Entries without it hash as before, so a log written
        // by older carelens still verifies; one with it hashes it after a marker.
        if self.rho_units.is_some() || self.rho_delta_units.is_some() {
            let units = |u: Option<i64>| u.map(|u| u.to_string()).unwrap_or_default();
            field(b"zcdp");
            field(units(self.rho_units).as_bytes());
            field(units(self.rho_delta_units).as_bytes());
        }
        hex(&h.finalize())
    }
}

const COLUMNS: &str = "seq, at, user, role, event, sql, plan_hash, cache_key, params, \
                       epsilon_units, delta_units, detail, result_hash, refers_to, prev_hash, hash, \
                       rho_units, rho_delta_units";

fn read_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let event: String = row.get(4)?;
    Ok(AuditEntry {
        seq: row.get(0)?,
        at: row.get(1)?,
        user: row.get(2)?,
        role: row.get(3)?,
        event: Event::parse(&event).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown audit event {event:?}").into(),
            )
        })?,
        sql: row.get(5)?,
        plan_hash: row.get(6)?,
        cache_key: row.get(7)?,
        params: row.get(8)?,
        epsilon_units: row.get(9)?,
        delta_units: row.get(10)?,
        detail: row.get(11)?,
        result_hash: row.get(12)?,
        refers_to: row.get(13)?,
        prev_hash: row.get(14)?,
        hash: row.get(15)?,
        rho_units: row.get(16)?,
        rho_delta_units: row.get(17)?,
    })
}

/// The sequence number the next appended entry gets, inside the caller's transaction.
pub(crate) fn next_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit", [], |r| {
        r.get(0)
    })
}

/// Appends an entry after the current head, inside the caller's transaction.
pub(crate) fn append(
    conn: &Connection,
    event: Event,
    new: &NewEntry<'_>,
) -> rusqlite::Result<AuditEntry> {
    let head: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev_hash) = match head {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let mut entry = AuditEntry {
        seq,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        user: new.user.to_owned(),
        role: new.role.to_owned(),
        event,
        sql: new.sql.to_owned(),
        plan_hash: new.plan_hash.to_owned(),
        cache_key: new.cache_key.to_owned(),
        params: new.params.to_owned(),
        epsilon_units: new.epsilon_units,
        delta_units: new.delta_units,
        rho_units: new.zcdp.map(|z| z.rho),
        rho_delta_units: new.zcdp.map(|z| z.delta),
        detail: new.detail.to_owned(),
        result_hash: new.result_hash.to_owned(),
        refers_to: new.refers_to,
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    conn.execute(
        &format!("INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
        params![
            entry.seq,
            entry.at,
            entry.user,
            entry.role,
            entry.event.as_str(),
            entry.sql,
            entry.plan_hash,
            entry.cache_key,
            entry.params,
            entry.epsilon_units,
            entry.delta_units,
            entry.detail,
            entry.result_hash,
            entry.refers_to,
            entry.prev_hash,
            entry.hash,
            entry.rho_units,
            entry.rho_delta_units,
        ],
    )?;
    Ok(entry)
}

/// The entry with sequence number `seq`, if any.
pub(crate) fn entry_at(conn: &Connection, seq: i64) -> rusqlite::Result<Option<AuditEntry>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM audit WHERE seq = ?1"),
        params![seq],
        read_entry,
    )
    .optional()
}

/// The entries of the given kinds that follow up entry `seq` (`refers_to = seq`), in order.
pub(crate) fn follow_ups(
    conn: &Connection,
    seq: i64,
    events: &[Event],
) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM audit WHERE refers_to = ?1 ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params![seq], read_entry)?;
    let mut out = Vec::new();
    for entry in rows {
        let entry = entry?;
        if events.contains(&entry.event) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Entries in log order, optionally only from `since` (an RFC 3339 prefix such as
/// `2026-11-26`), only of `user` and only of kind `event`.
pub(crate) fn entries(
    conn: &Connection,
    since: Option<&str>,
    user: Option<&str>,
    event: Option<Event>,
) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM audit WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR user = ?2) \
         AND (?3 IS NULL OR event = ?3) ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params![since, user, event.map(Event::as_str)], read_entry)?;
    rows.collect()
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every entry is intact and in order.
    Intact {
        /// Number of entries.
        entries: i64,
        /// The last entry's sequence number and hash (0 and [`GENESIS`] when empty):
        /// record them elsewhere to detect a log cut short.
        head_seq: i64,
        /// The last entry's hash.
        head_hash: String,
    },
    /// The first entry at which the log is not what was written.
    Broken {
        /// Its sequence number (or the one expected there).
        seq: i64,
        /// What is wrong.
        problem: String,
    },
}

/// A head as `audit verify` prints it, `SEQ:HASH` (an entry number and a 64-digit hex
/// hash), as the entry number and the hash in lower case; `None` when it is not one.
pub fn parse_head(text: &str) -> Option<(i64, String)> {
    let (seq, hash) = text.split_once(':')?;
    let seq: i64 = seq.trim().parse().ok()?;
    let hash = hash.trim();
    (hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| (seq, hash.to_ascii_lowercase()))
}

/// The append-only triggers; the last two since schema 4 (tokens).
const TRIGGERS: [&str; 6] = [
    "audit_no_update",
    "audit_no_delete",
    "releases_no_update",
    "releases_no_delete",
    "tokens_no_delete",
    "tokens_revoke_only",
];

/// What breaks the hash chain at `entry`, read where entry `expected_seq` should be and
/// after an entry whose hash is `prev`: the entry it names and the problem, or `None`.
fn chain_break(entry: &AuditEntry, expected_seq: i64, prev: &str) -> Option<(i64, String)> {
    if entry.seq != expected_seq {
        return Some((
            expected_seq,
            format!(
                "entry {expected_seq} is missing or out of order (found entry {} in its place): entries were deleted, inserted or reordered",
                entry.seq
            ),
        ));
    }
    if entry.prev_hash != prev {
        return Some((
            entry.seq,
            "does not follow the previous entry (its previous-hash differs): an entry before it was changed, removed or inserted".to_owned(),
        ));
    }
    if entry.compute_hash() != entry.hash {
        return Some((
            entry.seq,
            "its contents were changed after it was written (hash mismatch)".to_owned(),
        ));
    }
    None
}

/// Walks the whole log and checks the chain and the order; that every release names an
/// earlier charge of the same user and query and no charge is released twice; that only
/// charges debit; that every stored release matches its `released` entry; and that the
/// append-only triggers are in place. With `anchor` — a head recorded elsewhere
/// (sequence number and hash) — also that the log still contains that head, which shows
/// entries cut off the end or a chain rewritten after an edit.
pub(crate) fn verify(
    conn: &Connection,
    anchor: Option<(i64, &str)>,
) -> rusqlite::Result<Verification> {
    let broken = |seq: i64, problem: String| Ok(Verification::Broken { seq, problem });
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY rowid"))?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1i64;
    let mut prev = GENESIS.to_owned();
    // charge seq -> (user, cache key, released?, plan hash)
    let mut charges: std::collections::HashMap<i64, (String, String, bool, String)> =
        Default::default();
    // release seq -> (charge seq, cache key, result hash)
    let mut releases: std::collections::HashMap<i64, (i64, String, String)> = Default::default();
    // error seq -> cache key of the failed query
    let mut errors: std::collections::HashMap<i64, String> = Default::default();
    // request id -> (requester, last event, the approved query's plan hash)
    let mut requests: std::collections::HashMap<i64, (String, Event, String)> = Default::default();
    // Token id -> (user, revoked).
    let mut tokens: std::collections::HashMap<i64, (String, bool)> = Default::default();
    let mut anchor_seen = false;
    while let Some(row) = rows.next()? {
        let entry = match read_entry(row) {
            Ok(e) => e,
            Err(e) => return broken(expected_seq, format!("unreadable entry: {e}")),
        };
        if let Some((seq, problem)) = chain_break(&entry, expected_seq, &prev) {
            return broken(seq, problem);
        }
        if let Some((seq, hash)) = anchor
            && seq == entry.seq
        {
            if hash != entry.hash {
                return broken(
                    seq,
                    "differs from the head recorded earlier: the log was rewritten from here on"
                        .to_owned(),
                );
            }
            anchor_seen = true;
        }
        let debits = entry.epsilon_units != 0
            || entry.delta_units != 0
            || entry.rho_units.is_some()
            || entry.rho_delta_units.is_some();
        if entry.epsilon_units < 0
            || entry.delta_units < 0
            || entry.rho_units.is_some_and(|u| u < 0)
            || entry.rho_delta_units.is_some_and(|u| u < 0)
            || (debits && entry.event != Event::Charged)
        {
            return broken(
                entry.seq,
                "an entry other than a charge debits a budget, or a debit is negative".to_owned(),
            );
        }
        match entry.event {
            Event::Charged => {
                charges.insert(
                    entry.seq,
                    (
                        entry.user.clone(),
                        entry.cache_key.clone(),
                        false,
                        entry.plan_hash.clone(),
                    ),
                );
            }
            Event::Released => {
                let Some(charge) = entry.refers_to.and_then(|r| charges.get_mut(&r)) else {
                    return broken(
                        entry.seq,
                        "a release that names no earlier charge".to_owned(),
                    );
                };
                if charge.0 != entry.user || charge.1 != entry.cache_key {
                    return broken(
                        entry.seq,
                        "a release whose user or query differs from its charge".to_owned(),
                    );
                }
                if charge.2 {
                    return broken(entry.seq, "a second release for the same charge".to_owned());
                }
                charge.2 = true;
                releases.insert(
                    entry.seq,
                    (
                        entry.refers_to.unwrap_or_default(),
                        entry.cache_key.clone(),
                        entry.result_hash.clone(),
                    ),
                );
            }
            Event::RequestSubmitted => {
                requests.insert(
                    entry.seq,
                    (
                        entry.user.clone(),
                        Event::RequestSubmitted,
                        entry.plan_hash.clone(),
                    ),
                );
            }
            Event::RequestApproved | Event::RequestRejected | Event::RequestReleased => {
                let Some(request) = entry.refers_to.and_then(|r| requests.get_mut(&r)) else {
                    return broken(
                        entry.seq,
                        "a request decision or release that names no request".to_owned(),
                    );
                };
                let allowed = match entry.event {
                    Event::RequestReleased => {
                        request.1 == Event::RequestApproved && request.0 == entry.user
                    }
                    _ => {
                        request.1 == Event::RequestSubmitted
                            && request.0 != entry.user
                            && matches!(entry.role.as_str(), "approver" | "admin")
                    }
                };
                if !allowed {
                    return broken(
                        entry.seq,
                        "a request changed state out of order (submitted, then approved or rejected by an approver or admin other than its requester, then released by its requester)".to_owned(),
                    );
                }
                if entry.event == Event::RequestReleased {
                    // The release it names ran the approved query: its charge's plan is the
                    // request's.
                    let ran = serde_json::from_str::<serde_json::Value>(&entry.params)
                        .ok()
                        .and_then(|p| p["release_seq"].as_i64())
                        .and_then(|seq| releases.get(&seq))
                        .and_then(|(charge, _, _)| charges.get(charge))
                        .map(|c| c.3.as_str());
                    // (The release may be another user's earlier answer to the same query.)
                    if ran != Some(request.2.as_str()) || entry.plan_hash != request.2 {
                        return broken(
                            entry.seq,
                            "a request marked released with a release of another query than the approved one".to_owned(),
                        );
                    }
                }
                request.1 = entry.event;
            }
            Event::Resumed | Event::Error => {
                let names_charge = entry
                    .refers_to
                    .and_then(|r| charges.get(&r))
                    .is_some_and(|c| c.0 == entry.user && c.1 == entry.cache_key);
                if !names_charge {
                    return broken(
                        entry.seq,
                        "names no earlier charge of the same user and query".to_owned(),
                    );
                }
                if entry.event == Event::Error {
                    errors.insert(entry.seq, entry.cache_key.clone());
                }
            }
            Event::TokenIssued => {
                tokens.insert(entry.seq, (entry.user.clone(), false));
            }
            Event::TokenRevoked => {
                let Some(token) = entry.refers_to.and_then(|r| tokens.get_mut(&r)) else {
                    return broken(entry.seq, "a revocation that names no token".to_owned());
                };
                if token.0 != entry.user || token.1 {
                    return broken(
                        entry.seq,
                        "a token revoked twice, or under another user's name".to_owned(),
                    );
                }
                token.1 = true;
            }
            Event::CachedFailure => {
                let names_failure = entry
                    .refers_to
                    .and_then(|r| errors.get(&r))
                    .is_some_and(|key| *key == entry.cache_key);
                if !names_failure {
                    return broken(
                        entry.seq,
                        "a failure served that names no earlier failure of the same query"
                            .to_owned(),
                    );
                }
            }
            _ => {}
        }
        prev = entry.hash.clone();
        expected_seq += 1;
    }
    let head_seq = expected_seq - 1;
    if let Some((seq, _)) = anchor
        && !anchor_seen
    {
        return broken(
            seq,
            format!(
                "the log ends at entry {head_seq}, before the head recorded earlier: entries were cut off its end"
            ),
        );
    }
    let mut stmt = conn.prepare("SELECT release_seq, charge_seq, cache_key, result_hash, result FROM releases ORDER BY release_seq")?;
    let mut rows = stmt.query([])?;
    let mut stored = std::collections::HashSet::new();
    while let Some(row) = rows.next()? {
        let (release_seq, charge_seq, cache_key, result_hash, result): (
            i64,
            i64,
            String,
            String,
            Vec<u8>,
        ) = (
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        );
        let matches = releases
            .get(&release_seq)
            .is_some_and(|(c, k, h)| *c == charge_seq && *k == cache_key && *h == result_hash);
        if !matches || sha256_hex(&result) != result_hash {
            return broken(
                release_seq,
                "its stored result was altered or does not match the entry".to_owned(),
            );
        }
        stored.insert(release_seq);
    }
    // And every release the log names has its stored result (a deleted one would be
    // charged and released again with fresh noise).
    if let Some(missing) = releases.keys().filter(|seq| !stored.contains(seq)).min() {
        return broken(
            *missing,
            "a release whose stored result is gone (a row of the releases table was deleted)"
                .to_owned(),
        );
    }
    // The token table (what the server accepts) says what the log says. A ledger of
    // schema 3 or older, read without migrating it, has no token table and no tokens.
    let has_tokens: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tokens')",
        [],
        |r| r.get(0),
    )?;
    let token_rows = if has_tokens {
        "SELECT issued_seq, user, revoked_seq IS NOT NULL FROM tokens"
    } else {
        "SELECT 0, '', 0 WHERE 0"
    };
    let mut stmt = conn.prepare(token_rows)?;
    let mut rows = stmt.query([])?;
    let mut in_table = 0;
    while let Some(row) = rows.next()? {
        let (id, user, revoked): (i64, String, bool) = (row.get(0)?, row.get(1)?, row.get(2)?);
        in_table += 1;
        if tokens.get(&id) != Some(&(user, revoked)) {
            return broken(
                id,
                "the token table does not match the log (a token added, moved to another user \
                 or un-revoked outside carelens)"
                    .to_owned(),
            );
        }
    }
    if in_table != tokens.len() {
        return broken(
            head_seq,
            "a token in the log is missing from the token table".to_owned(),
        );
    }
    let mut stmt = conn.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")?;
    let present: Vec<(String, String)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let expected = if has_tokens {
        &TRIGGERS[..]
    } else {
        &TRIGGERS[..4]
    };
    let all_there = expected.iter().all(|name| {
        present
            .iter()
            .any(|(n, sql)| n == name && sql.contains("RAISE(ABORT"))
    });
    if !all_there {
        return broken(
            head_seq,
            "the append-only triggers were removed or changed".to_owned(),
        );
    }
    Ok(Verification::Intact {
        entries: head_seq,
        head_seq,
        head_hash: prev,
    })
}

/// The `meta` key of the last entry whose chain was checked before a spend (`SEQ:HASH`).
const CHECKPOINT: &str = "verified_to";

/// Checks the hash chain from the last checkpoint to the log's end — cheap, as only the
/// entries written since are read — and moves the checkpoint to the end. `Some((seq,
/// problem))` if the chain is broken: the checkpoint entry changed or is gone, or an entry
/// after it does not follow its predecessor or does not match its hash. The full check
/// (`verify`: order, pairing of charges and releases, stored results) stays `audit verify`'s.
pub(crate) fn verify_since_checkpoint(
    conn: &Connection,
) -> rusqlite::Result<Option<(i64, String)>> {
    let checkpoint: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [CHECKPOINT], |r| {
            r.get(0)
        })
        .optional()?;
    let (mut expected_seq, mut prev) = (1i64, GENESIS.to_owned());
    if let Some((seq, hash)) = checkpoint.as_deref().and_then(parse_head) {
        let found: Option<String> = conn
            .query_row("SELECT hash FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
            .optional()?;
        if found.as_deref() != Some(hash.as_str()) {
            return Ok(Some((
                seq,
                "the entry checked before the last spend was changed or removed".to_owned(),
            )));
        }
        (expected_seq, prev) = (seq + 1, hash);
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM audit WHERE seq >= ?1 ORDER BY seq"
    ))?;
    let mut rows = stmt.query([expected_seq])?;
    while let Some(row) = rows.next()? {
        let entry = match read_entry(row) {
            Ok(e) => e,
            Err(e) => return Ok(Some((expected_seq, format!("unreadable entry: {e}")))),
        };
        if let Some(problem) = chain_break(&entry, expected_seq, &prev) {
            return Ok(Some(problem));
        }
        prev = entry.hash;
        expected_seq += 1;
    }
    if expected_seq > 1 {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![CHECKPOINT, format!("{}:{prev}", expected_seq - 1)],
        )?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `params` is written as the JSON value it holds, verbatim (`null` when empty), and
    /// read back to the same text — also from a string, as older carelens wrote it.
    #[test]
    fn params_are_json_values_in_json_and_read_back_exactly() {
        let entry = |params: &str| AuditEntry {
            params: params.into(),
            ..example_entry()
        };
        // Keys out of alphabetical order stay as stored.
        let charged = entry(r#"{"z":1,"items":[{"epsilon":0.5}]}"#);
        let json = serde_json::to_string(&charged).unwrap();
        assert!(
            json.contains(r#""params":{"z":1,"items":[{"epsilon":0.5}]}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<AuditEntry>(&json).unwrap(), charged);
        let none = entry("");
        let json = serde_json::to_string(&none).unwrap();
        assert!(json.contains(r#""params":null"#), "{json}");
        assert_eq!(serde_json::from_str::<AuditEntry>(&json).unwrap(), none);
        let older = json.replace(r#""params":null"#, r#""params":"{\"a\":1}""#);
        assert_eq!(
            serde_json::from_str::<AuditEntry>(&older).unwrap().params,
            r#"{"a":1}"#
        );
    }

    /// A charge entry with every field set.
    fn example_entry() -> AuditEntry {
        AuditEntry {
            seq: 1,
            at: "2026-11-26T00:00:00Z".into(),
            user: "u".into(),
            role: "analyst".into(),
            event: Event::Charged,
            sql: "SELECT 1".into(),
            plan_hash: "p".into(),
            cache_key: "k".into(),
            params: "{}".into(),
            epsilon_units: 1,
            delta_units: 0,
            detail: String::new(),
            result_hash: String::new(),
            refers_to: None,
            prev_hash: GENESIS.into(),
            hash: String::new(),
            rho_units: None,
            rho_delta_units: None,
        }
    }

    #[test]
    fn hash_depends_on_every_field() {
        let base = example_entry();
        let h = base.compute_hash();
        let variants: Vec<AuditEntry> = vec![
            AuditEntry {
                seq: 2,
                ..base.clone()
            },
            AuditEntry {
                at: "2026-11-26T00:00:01Z".into(),
                ..base.clone()
            },
            AuditEntry {
                user: "v".into(),
                ..base.clone()
            },
            AuditEntry {
                role: "admin".into(),
                ..base.clone()
            },
            AuditEntry {
                event: Event::Released,
                ..base.clone()
            },
            AuditEntry {
                sql: "SELECT 2".into(),
                ..base.clone()
            },
            AuditEntry {
                plan_hash: "q".into(),
                ..base.clone()
            },
            AuditEntry {
                cache_key: "l".into(),
                ..base.clone()
            },
            AuditEntry {
                params: "{ }".into(),
                ..base.clone()
            },
            AuditEntry {
                epsilon_units: 2,
                ..base.clone()
            },
            AuditEntry {
                delta_units: 1,
                ..base.clone()
            },
            AuditEntry {
                detail: "x".into(),
                ..base.clone()
            },
            AuditEntry {
                result_hash: "r".into(),
                ..base.clone()
            },
            AuditEntry {
                refers_to: Some(1),
                ..base.clone()
            },
            AuditEntry {
                prev_hash: "1".repeat(64),
                ..base.clone()
            },
            AuditEntry {
                rho_units: Some(0),
                rho_delta_units: Some(0),
                ..base.clone()
            },
            AuditEntry {
                rho_units: Some(1),
                ..base.clone()
            },
            AuditEntry {
                rho_delta_units: Some(1),
                ..base.clone()
            },
            // Moving a boundary between two fields must change the hash too.
            AuditEntry {
                user: "us".into(),
                role: "nalyst".into(),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.compute_hash(), h, "{v:?}");
        }
        // ρ is hashed: changing it, or its δ, changes the hash of a schema-5 charge.
        let zcdp = AuditEntry {
            rho_units: Some(5),
            rho_delta_units: Some(0),
            ..base.clone()
        };
        for v in [
            AuditEntry {
                rho_units: Some(6),
                ..zcdp.clone()
            },
            AuditEntry {
                rho_delta_units: Some(1),
                ..zcdp.clone()
            },
        ] {
            assert_ne!(v.compute_hash(), zcdp.compute_hash(), "{v:?}");
        }
    }

    /// An entry without ρ hashes exactly as schema 4 did, so older logs still verify.
    #[test]
    fn an_entry_without_rho_hashes_as_before() {
        // SHA-256 of the length-prefixed fields, computed outside carelens.
        assert_eq!(
            example_entry().compute_hash(),
            "baa87fb3e50487054c28e60fc3404e724d98ba9231310ad47ffbe6abb1febc7b"
        );
    }
}
