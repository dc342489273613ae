//! Cohort requests: a researcher asks for one count, an approver (not the researcher)
//! approves or rejects it, and the researcher releases it once.
//!
//! A request's state is the sequence of its audit entries — `request_submitted` (whose
//! sequence number is the request id), then `request_approved` or `request_rejected`,
//! then `request_released` — so every state change is in the hash-chained log by
//! construction, and `audit verify` checks the order. Each change is made in one
//! `BEGIN IMMEDIATE` transaction that first reads the current state, so two processes
//! cannot both make the same change.

use carelens_privacy::{DefinitionToken, Difference, near_duplicate};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::workflow::WorkflowRefusal;
use super::{Ledger, SqliteErr, StoredRelease, stored_release_at};
use crate::audit::{self, AuditEntry, Event, NewEntry};
use crate::error::LedgerError;

/// Where a request is in the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for an approver.
    Submitted,
    /// Approved; the requester may release it.
    Approved,
    /// Rejected; nothing more can happen to it.
    Rejected,
    /// Released (once).
    Released,
}

impl RequestState {
    /// The spelling in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Submitted => "submitted",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
            RequestState::Released => "released",
        }
    }
}

/// What a researcher submits.
#[derive(Debug, Clone, Copy)]
pub struct NewRequest<'a> {
    /// The SQL as written.
    pub sql: &'a str,
    /// Hash of its normalised plan: the release must run a query with the same hash.
    pub plan_hash: &'a str,
    /// Why the count is needed.
    pub purpose: &'a str,
    /// The ε asked for.
    pub epsilon: f64,
    /// The definition's tokens, compared with the requester's earlier requests.
    pub definition: &'a [DefinitionToken],
}

/// A near-duplicate of an earlier approved or released request of the same requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// The earlier request.
    pub earlier: i64,
    /// How the definitions differ.
    pub difference: Difference,
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "possible differencing: the definition differs from request {} of the same \
             researcher only in {}; together the two counts could single out the few people \
             in between",
            self.earlier, self.difference
        )
    }
}

/// An approver's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Who decided.
    pub by: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// ε approved (for an approval).
    pub epsilon: Option<f64>,
    /// The query's DP parameters as approved (JSON, for an approval): the release must
    /// run with exactly these.
    pub query_params: String,
    /// The approver's note.
    pub note: String,
}

/// A cohort request as the log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Its id: the sequence number of its `request_submitted` entry.
    pub id: i64,
    /// Who asked.
    pub requester: String,
    /// When (RFC 3339, UTC).
    pub submitted_at: String,
    /// The SQL as submitted.
    pub sql: String,
    /// The plan hash the release must match.
    pub plan_hash: String,
    /// Why the count is needed.
    pub purpose: String,
    /// ε asked for.
    pub epsilon: f64,
    /// Where it is in the workflow.
    pub state: RequestState,
    /// A near-duplicate of an earlier request, for the approver to see.
    pub flag: Option<Flag>,
    /// The approval or rejection.
    pub decision: Option<Decision>,
    /// The release it produced (the ledger's release id).
    pub release_seq: Option<i64>,
}

impl Request {
    /// The ε to release with: the approved one.
    pub fn approved_epsilon(&self) -> Option<f64> {
        match self.state {
            RequestState::Approved | RequestState::Released => {
                self.decision.as_ref().and_then(|d| d.epsilon)
            }
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Submitted {
    purpose: String,
    epsilon: f64,
    definition: Vec<DefinitionToken>,
    flag: Option<Flag>,
}

#[derive(Serialize, Deserialize)]
struct Decided {
    #[serde(default)]
    epsilon: Option<f64>,
    #[serde(default)]
    query_params: String,
    note: String,
}

#[derive(Serialize, Deserialize)]
struct ReleasedParams {
    release_seq: i64,
}

const FOLLOW_UPS: [Event; 3] = [
    Event::RequestApproved,
    Event::RequestRejected,
    Event::RequestReleased,
];

fn json_err(path: &std::path::Path) -> impl Fn(serde_json::Error) -> LedgerError + '_ {
    move |source| LedgerError::Json {
        path: path.to_path_buf(),
        source,
    }
}

/// The request with id `id` and its definition, read from the log.
fn load(
    conn: &Connection,
    id: i64,
    path: &std::path::Path,
    e: &SqliteErr<'_>,
) -> Result<(Request, Vec<DefinitionToken>), LedgerError> {
    let submitted = audit::entry_at(conn, id)
        .map_err(e)?
        .filter(|entry| entry.event == Event::RequestSubmitted)
        .ok_or(WorkflowRefusal::UnknownRequest { id })?;
    let params: Submitted = serde_json::from_str(&submitted.params).map_err(json_err(path))?;
    let mut request = Request {
        id,
        requester: submitted.user.clone(),
        submitted_at: submitted.at.clone(),
        sql: submitted.sql.clone(),
        plan_hash: submitted.plan_hash.clone(),
        purpose: params.purpose,
        epsilon: params.epsilon,
        state: RequestState::Submitted,
        flag: params.flag,
        decision: None,
        release_seq: None,
    };
    for follow in audit::follow_ups(conn, id, &FOLLOW_UPS).map_err(e)? {
        apply(&mut request, &follow, path)?;
    }
    Ok((request, params.definition))
}

fn apply(
    request: &mut Request,
    entry: &AuditEntry,
    path: &std::path::Path,
) -> Result<(), LedgerError> {
    match entry.event {
        Event::RequestApproved | Event::RequestRejected => {
            let decided: Decided = serde_json::from_str(&entry.params).map_err(json_err(path))?;
            request.state = if entry.event == Event::RequestApproved {
                RequestState::Approved
            } else {
                RequestState::Rejected
            };
            request.decision = Some(Decision {
                by: entry.user.clone(),
                at: entry.at.clone(),
                epsilon: decided.epsilon,
                query_params: decided.query_params,
                note: decided.note,
            });
        }
        Event::RequestReleased => {
            let released: ReleasedParams =
                serde_json::from_str(&entry.params).map_err(json_err(path))?;
            request.state = RequestState::Released;
            request.release_seq = Some(released.release_seq);
        }
        _ => {}
    }
    Ok(())
}

/// What the current state allows, worded for the person who tried.
fn wrong_state(request: &Request, action: &'static str) -> LedgerError {
    WorkflowRefusal::WrongState {
        id: request.id,
        state: request.state,
        action,
    }
    .into()
}

/// Whether `user` may release `request`: it is theirs, and approved (or released, to be
/// shown again).
fn releasable_by(request: &Request, user: &str) -> Result<(), LedgerError> {
    if request.requester != user {
        return Err(WorkflowRefusal::NotTheRequester {
            id: request.id,
            requester: request.requester.clone(),
        }
        .into());
    }
    match request.state {
        RequestState::Approved | RequestState::Released => Ok(()),
        _ => Err(wrong_state(request, "released")),
    }
}

impl Ledger {
    /// Records a cohort request by `user`, flagged if its definition differs from one of
    /// the same user's approved or released requests only in a constant or one list item.
    pub fn submit_request(
        &mut self,
        user: &str,
        new: &NewRequest<'_>,
    ) -> Result<Request, LedgerError> {
        let role = self.role(user)?;
        if !(new.epsilon.is_finite() && new.epsilon > 0.0) {
            return Err(LedgerError::BadCharge {
                epsilon: new.epsilon,
                delta: 0.0,
            });
        }
        if new.purpose.trim().is_empty() {
            return Err(WorkflowRefusal::NoPurpose.into());
        }
        let path = self.path.clone();
        self.write(|tx, e| {
            let flag = near_duplicate_among(tx, user, None, new.definition, &path, e)?;
            let params = serde_json::to_string(&Submitted {
                purpose: new.purpose.to_owned(),
                epsilon: new.epsilon,
                definition: new.definition.to_vec(),
                flag,
            })
            .map_err(json_err(&path))?;
            let entry = audit::append(
                tx,
                Event::RequestSubmitted,
                &NewEntry {
                    user,
                    role: role.as_str(),
                    sql: new.sql,
                    plan_hash: new.plan_hash,
                    params: &params,
                    detail: new.purpose,
                    ..NewEntry::default()
                },
            )
            .map_err(e)?;
            Ok(load(tx, entry.seq, &path, e)?.0)
        })
    }

    /// The request `id`. Researchers and analysts see their own; approvers and admins all.
    pub fn request(&self, user: &str, id: i64) -> Result<Request, LedgerError> {
        let role = self.role(user)?;
        let e = |err| self.err(err);
        let loaded = load(&self.conn, id, &self.path, &e)?;
        if loaded.0.requester != user && !role.oversees() {
            return Err(WorkflowRefusal::UnknownRequest { id }.into());
        }
        with_live_flag(&self.conn, loaded, &self.path, &e)
    }

    /// Requests in order of submission: `user`'s own, or everyone's for approvers and
    /// admins.
    pub fn requests(&self, user: &str) -> Result<Vec<Request>, LedgerError> {
        let role = self.role(user)?;
        let e = |err| self.err(err);
        let ids = submitted_ids(&self.conn, (!role.oversees()).then_some(user)).map_err(e)?;
        ids.into_iter()
            .map(|id| {
                let loaded = load(&self.conn, id, &self.path, &e)?;
                with_live_flag(&self.conn, loaded, &self.path, &e)
            })
            .collect()
    }

    /// Every request's id and stated purpose, whoever asked — for the transparency
    /// register, which publishes the purpose of each release made under a request.
    pub fn request_purposes(&self) -> Result<Vec<(i64, String)>, LedgerError> {
        let e = |err| self.err(err);
        submitted_ids(&self.conn, None)
            .map_err(e)?
            .into_iter()
            .map(|id| Ok((id, load(&self.conn, id, &self.path, &e)?.0.purpose)))
            .collect()
    }

    /// Approves request `id` at `epsilon` (default: the ε asked for; never more) with the
    /// query's DP parameters `query_params` (JSON) as the engine prepared them at that ε.
    /// The approver must be an approver or admin and not the requester; a request that
    /// nearly duplicates another of the same requester needs a note.
    pub fn approve_request(
        &mut self,
        approver: &str,
        id: i64,
        epsilon: Option<f64>,
        query_params: &str,
        note: &str,
    ) -> Result<Request, LedgerError> {
        self.decide(approver, id, Some((epsilon, query_params)), note)
    }

    /// Rejects request `id`, with a note saying why.
    pub fn reject_request(
        &mut self,
        approver: &str,
        id: i64,
        note: &str,
    ) -> Result<Request, LedgerError> {
        if note.trim().is_empty() {
            return Err(WorkflowRefusal::NoRejectionNote { id }.into());
        }
        self.decide(approver, id, None, note)
    }

    /// `approval`: `Some((ε, parameters))` to approve, `None` to reject.
    fn decide(
        &mut self,
        approver: &str,
        id: i64,
        approval: Option<(Option<f64>, &str)>,
        note: &str,
    ) -> Result<Request, LedgerError> {
        let epsilon = approval.map(|(e, _)| e);
        let role = self.role(approver)?;
        let action = if epsilon.is_some() {
            "approved"
        } else {
            "rejected"
        };
        if !role.oversees() {
            return Err(WorkflowRefusal::NotAnApprover { id, role }.into());
        }
        let path = self.path.clone();
        self.write(|tx, e| {
            let (request, definition) = load(tx, id, &path, e)?;
            if request.requester == approver {
                return Err(WorkflowRefusal::OwnRequest { id }.into());
            }
            if request.state != RequestState::Submitted {
                return Err(wrong_state(&request, action));
            }
            // The flag as it stands now: other requests may have come since submission.
            let flag =
                near_duplicate_among(tx, &request.requester, Some(id), &definition, &path, e)?;
            if let (Some(flag), Some(_)) = (&flag, epsilon)
                && note.trim().is_empty()
            {
                return Err(WorkflowRefusal::FlaggedNeedsNote {
                    id,
                    flag: flag.clone(),
                }
                .into());
            }
            let approved_epsilon = match epsilon {
                Some(Some(x)) if !(x.is_finite() && x > 0.0) => {
                    return Err(WorkflowRefusal::BadEpsilon { id, epsilon: x }.into());
                }
                Some(Some(x)) if x > request.epsilon => {
                    return Err(WorkflowRefusal::AboveAsked {
                        id,
                        epsilon: x,
                        asked: request.epsilon,
                    }
                    .into());
                }
                Some(x) => Some(x.unwrap_or(request.epsilon)),
                None => None,
            };
            let params = serde_json::to_string(&Decided {
                epsilon: approved_epsilon,
                query_params: approval.map(|(_, p)| p.to_owned()).unwrap_or_default(),
                note: note.to_owned(),
            })
            .map_err(json_err(&path))?;
            audit::append(
                tx,
                if epsilon.is_some() {
                    Event::RequestApproved
                } else {
                    Event::RequestRejected
                },
                &NewEntry {
                    user: approver,
                    role: role.as_str(),
                    plan_hash: &request.plan_hash,
                    params: &params,
                    detail: note,
                    refers_to: Some(id),
                    ..NewEntry::default()
                },
            )
            .map_err(e)?;
            Ok(load(tx, id, &path, e)?.0)
        })
    }

    /// The request `id` if `user` may release it now: theirs, and approved or already
    /// released.
    pub fn releasable_request(&self, user: &str, id: i64) -> Result<Request, LedgerError> {
        let role = self.role(user)?;
        let e = |err| self.err(err);
        let (request, _) = load(&self.conn, id, &self.path, &e)?;
        if request.requester != user && !role.oversees() {
            // Others do not learn that the request exists, or whose it is.
            return Err(WorkflowRefusal::UnknownRequest { id }.into());
        }
        releasable_by(&request, user)?;
        Ok(request)
    }

    /// Marks request `id` released by `user` with the stored release `release_seq`.
    /// Returns the request; if another process released it first, that release stands
    /// and nothing is written.
    pub fn mark_request_released(
        &mut self,
        user: &str,
        id: i64,
        release_seq: i64,
    ) -> Result<Request, LedgerError> {
        let role = self.role(user)?;
        let path = self.path.clone();
        self.write(|tx, e| {
            let (request, _) = load(tx, id, &path, e)?;
            releasable_by(&request, user)?;
            if request.state == RequestState::Released {
                return Ok(request);
            }
            let stored = stored_release_at(tx, release_seq, &path, e)?;
            let params =
                serde_json::to_string(&ReleasedParams { release_seq }).map_err(json_err(&path))?;
            audit::append(
                tx,
                Event::RequestReleased,
                &NewEntry {
                    user,
                    role: role.as_str(),
                    plan_hash: &request.plan_hash,
                    params: &params,
                    result_hash: &stored.result_hash,
                    refers_to: Some(id),
                    ..NewEntry::default()
                },
            )
            .map_err(e)?;
            Ok(load(tx, id, &path, e)?.0)
        })
    }

    /// The stored answer of a released request, for its requester, logged as a `cached`
    /// entry at no cost.
    pub fn request_release_again(
        &mut self,
        user: &str,
        id: i64,
    ) -> Result<StoredRelease, LedgerError> {
        let request = self.releasable_request(user, id)?;
        let Some(release_seq) = request.release_seq else {
            return Err(wrong_state(&request, "shown again"));
        };
        let role = self.role(user)?;
        let path = self.path.clone();
        self.write(|tx, e| {
            let stored = stored_release_at(tx, release_seq, &path, e)?;
            let detail = format!("request {id} released before: its stored answer, at no cost");
            audit::append(
                tx,
                Event::Cached,
                &NewEntry {
                    user,
                    role: role.as_str(),
                    sql: &request.sql,
                    plan_hash: &request.plan_hash,
                    detail: &detail,
                    refers_to: Some(release_seq),
                    ..NewEntry::default()
                },
            )
            .map_err(e)?;
            Ok(stored)
        })
    }
}

/// Ids of submitted requests, of `user` only when given.
fn submitted_ids(conn: &Connection, user: Option<&str>) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT seq FROM audit WHERE event = 'request_submitted' AND (?1 IS NULL OR user = ?1) ORDER BY seq",
    )?;
    let ids = stmt.query_map([user], |r| r.get(0))?;
    ids.collect()
}

/// The newest request of `user` — submitted, approved or released; not rejected, and not
/// `except` itself — whose definition `definition` nearly duplicates.
fn near_duplicate_among(
    conn: &Connection,
    user: &str,
    except: Option<i64>,
    definition: &[DefinitionToken],
    path: &std::path::Path,
    e: &SqliteErr<'_>,
) -> Result<Option<Flag>, LedgerError> {
    let ids = submitted_ids(conn, Some(user)).map_err(e)?;
    for id in ids.into_iter().rev() {
        if Some(id) == except {
            continue;
        }
        let (other, tokens) = load(conn, id, path, e)?;
        if other.state == RequestState::Rejected {
            continue;
        }
        if let Some(difference) = near_duplicate(&tokens, definition) {
            return Ok(Some(Flag {
                earlier: id,
                difference,
            }));
        }
    }
    Ok(None)
}

/// `request` with its flag as it stands now (against every other live request of its
/// requester, earlier or later).
fn with_live_flag(
    conn: &Connection,
    (mut request, definition): (Request, Vec<DefinitionToken>),
    path: &std::path::Path,
    e: &SqliteErr<'_>,
) -> Result<Request, LedgerError> {
    if request.state == RequestState::Submitted {
        request.flag = near_duplicate_among(
            conn,
            &request.requester,
            Some(request.id),
            &definition,
            path,
            e,
        )?;
    }
    Ok(request)
}
