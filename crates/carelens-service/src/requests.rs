//! `carelens request`: the cohort-request workflow. A researcher submits a query with its
//! purpose; an approver who is not the researcher approves it (possibly at a lower ε) or
//! rejects it; the researcher releases it once, and asking again shows the same answer at
//! no cost.
//!
//! The ledger decides what depends on a request's recorded state and on who asks, in the
//! transaction that makes the change; this module decides what depends on how the query
//! plans today: it must plan to the submitted plan, at the approved ε, with the approved
//! DP parameters.

use carelens_engine::{
    Groups, PreparedQuery, QueryParams, Rejection, RejectionKind, definition_tokens,
};
use carelens_ledger::{NewRequest, Request, RequestState, WorkflowRefusal};

use crate::{Caller, Released, Service, ServiceError};

/// A request with its query as it plans today.
pub struct ShownRequest {
    /// The request as the log records it.
    pub request: Request,
    /// The stored SQL prepared at the ε it would run with (for its cost), or why it cannot
    /// be prepared now.
    pub plan: Result<PreparedQuery, ServiceError>,
    /// Whether that plan is still the submitted one (if not, the request cannot be
    /// released as it stands).
    pub plans_as_submitted: bool,
}

impl Service {
    /// Records `caller`'s request for the count `sql` computes, at `epsilon` (default: the
    /// query's own, or the policy's). Nothing is run or spent. A rejection by the analysis
    /// is logged at no cost; a query of public tables only needs no request.
    pub async fn submit_request(
        &self,
        caller: &Caller,
        sql: &str,
        purpose: &str,
        epsilon: Option<f64>,
    ) -> Result<(Request, PreparedQuery), ServiceError> {
        let prepared = match self.plan(sql, epsilon).await {
            Err(ServiceError::Rejected(rejection)) => {
                self.log_rejection(caller, sql, "", &rejection.to_string())
                    .await?;
                return Err(ServiceError::Rejected(rejection));
            }
            other => other?,
        };
        if prepared.params().is_none() {
            return Err(WorkflowRefusal::NeedsNoApproval.into());
        }
        if let Err(rejection) = small_table(&prepared) {
            self.log_rejection(caller, sql, "", &rejection.to_string())
                .await?;
            return Err(ServiceError::Rejected(rejection));
        }
        let definition = definition_tokens(sql)?;
        let (user, sql, plan_hash, purpose) = (
            caller.name.clone(),
            sql.to_owned(),
            prepared.plan_hash().to_owned(),
            purpose.to_owned(),
        );
        let epsilon = prepared.charge().epsilon();
        let request = self
            .with_ledger(move |ledger| {
                ledger.submit_request(
                    &user,
                    &NewRequest {
                        sql: &sql,
                        plan_hash: &plan_hash,
                        purpose: &purpose,
                        epsilon,
                        definition: &definition,
                    },
                )
            })
            .await?;
        Ok((request, prepared))
    }

    /// Requests in order of submission: the caller's own, or everyone's for those who
    /// oversee (approvers and admins).
    pub async fn requests(&self, caller: &Caller) -> Result<Vec<Request>, ServiceError> {
        let user = caller.name.clone();
        self.with_ledger(move |ledger| ledger.requests(&user)).await
    }

    /// Request `id`, if the caller may see it (their own; any for those who oversee), with
    /// its query as it plans today at the ε it would run with.
    pub async fn show_request(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<ShownRequest, ServiceError> {
        let request = self.request(caller, id).await?;
        let epsilon = request.approved_epsilon().unwrap_or(request.epsilon);
        let plan = self.plan(&request.sql, Some(epsilon)).await;
        let plans_as_submitted = plan
            .as_ref()
            .is_ok_and(|p| p.plan_hash() == request.plan_hash);
        Ok(ShownRequest {
            request,
            plan,
            plans_as_submitted,
        })
    }

    /// Approves request `id` at `epsilon` (default: the ε asked for; never more), with
    /// `note` for the record. The caller must oversee and not be the requester (the ledger
    /// checks, in the approving transaction); the query must still plan, at that ε, to the
    /// submitted plan. The DP parameters it plans with are stored with the approval: the
    /// release must run with exactly these.
    pub async fn approve_request(
        &self,
        caller: &Caller,
        id: i64,
        epsilon: Option<f64>,
        note: &str,
    ) -> Result<(Request, PreparedQuery), ServiceError> {
        let request = self.request(caller, id).await?;
        let at = epsilon.unwrap_or(request.epsilon);
        let prepared = self.plan(&request.sql, Some(at)).await?;
        if prepared.plan_hash() != request.plan_hash {
            return Err(WorkflowRefusal::PlanChanged { id }.into());
        }
        let params = serde_json::to_string(&prepared.params()).map_err(ServiceError::internal)?;
        let (user, note) = (caller.name.clone(), note.to_owned());
        let request = self
            .with_ledger(move |ledger| ledger.approve_request(&user, id, Some(at), &params, &note))
            .await?;
        Ok((request, prepared))
    }

    /// Rejects request `id` with `note` saying why (for the researcher).
    pub async fn reject_request(
        &self,
        caller: &Caller,
        id: i64,
        note: &str,
    ) -> Result<Request, ServiceError> {
        let (user, note) = (caller.name.clone(), note.to_owned());
        self.with_ledger(move |ledger| ledger.reject_request(&user, id, &note))
            .await
    }

    /// Releases the caller's approved request `id`: runs exactly the approved query (the
    /// stored SQL, or `sql` if given, which must plan to the same plan) at the approved ε
    /// with the approved DP parameters, charges the caller's budget and the dataset's,
    /// and marks the request released. A released request's answer is shown again at no
    /// cost.
    pub async fn release_request(
        &self,
        caller: &Caller,
        id: i64,
        sql: Option<&str>,
    ) -> Result<Released, ServiceError> {
        let user = caller.name.clone();
        let request = self
            .with_ledger(move |ledger| ledger.releasable_request(&user, id))
            .await?;
        if request.state == RequestState::Released {
            let user = caller.name.clone();
            let stored = self
                .with_ledger(move |ledger| ledger.request_release_again(&user, id))
                .await?;
            return crate::answered_again(stored);
        }
        let epsilon = request.approved_epsilon().ok_or_else(|| {
            ServiceError::Internal("an approved request without an approved epsilon".into())
        })?;
        let prepared = self
            .plan(sql.unwrap_or(&request.sql), Some(epsilon))
            .await?;
        if prepared.plan_hash() != request.plan_hash {
            return Err(WorkflowRefusal::NotTheApprovedQuery { id }.into());
        }
        let approved = request
            .decision
            .as_ref()
            .map(|d| d.query_params.as_str())
            .unwrap_or_default();
        let now = prepared.params();
        if serde_json::from_str::<Option<QueryParams>>(approved).ok() != Some(now) {
            return Err(WorkflowRefusal::ParametersChanged {
                id,
                approved: approved.to_owned(),
                now: serde_json::to_string(&now).map_err(ServiceError::internal)?,
            }
            .into());
        }
        let released = self.answer(caller, &prepared, Some(id)).await?;
        let release_seq = released
            .release
            .release_id
            .ok_or_else(|| ServiceError::Internal("a release without its ledger id".into()))?;
        let user = caller.name.clone();
        let marked = self
            .with_ledger(move |ledger| ledger.mark_request_released(&user, id, release_seq))
            .await?;
        match marked.release_seq {
            Some(seq) if seq == release_seq => Ok(released),
            Some(seq) => Err(WorkflowRefusal::ReleasedMeanwhile {
                id,
                release_seq: seq,
            }
            .into()),
            None => Err(ServiceError::Internal(
                "a request marked released without its release".into(),
            )),
        }
    }

    /// Request `id` as the caller may see it.
    async fn request(&self, caller: &Caller, id: i64) -> Result<Request, ServiceError> {
        let user = caller.name.clone();
        self.with_ledger(move |ledger| ledger.request(&user, id))
            .await
    }
}

impl From<WorkflowRefusal> for ServiceError {
    fn from(refusal: WorkflowRefusal) -> Self {
        Self::Workflow(refusal)
    }
}

/// The most cells a request's release may have: a cohort count, or a small table of it
/// by a public key (sex, an age band, a place).
pub const MAX_REQUEST_GROUPS: usize = 12;

/// A request is a cohort count, or a small table with public keys: an approver checks one
/// definition and the few numbers it gives, not a whole breakdown released to one person.
fn small_table(prepared: &PreparedQuery) -> Result<(), Rejection> {
    let Some(protection) = prepared.explain().private else {
        return Ok(());
    };
    let groups = match &protection.groups {
        Groups::One => return Ok(()),
        Groups::Public { sizes, .. } => sizes.iter().product::<usize>(),
        Groups::Selected { .. } => usize::MAX,
    };
    if groups <= MAX_REQUEST_GROUPS {
        return Ok(());
    }
    let what = if groups == usize::MAX {
        "a request's groups must come from public domains (its keys need DP key selection)"
            .to_owned()
    } else {
        format!("a request releases at most {MAX_REQUEST_GROUPS} cells; this one has {groups}")
    };
    Err(Rejection {
        kind: RejectionKind::Unsupported,
        what,
        location: None,
        hint: "a cohort request is one count, or a small table of it by a public key (sex, an \
               age band); ask an analyst's query for breakdowns, or split the request"
            .to_owned(),
    })
}
