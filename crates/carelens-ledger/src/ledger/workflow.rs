//! Why the cohort-request workflow refused an action: one variant per reason, each worded
//! for the person who tried, with what to do instead.
//!
//! The ledger decides the reasons that depend on a request's recorded state and on who is
//! asking (in the transaction that would make the change); the service decides the ones
//! that depend on how the query plans today (`PlanChanged`, `NotTheApprovedQuery`,
//! `ParametersChanged`, `NeedsNoApproval`).

use carelens_catalog::Role;

use super::requests::{Flag, RequestState};

/// Why the cohort-request workflow refused an action.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowRefusal {
    /// No request has this id — or none the asker may see: others do not learn that a
    /// request exists, or whose it is.
    #[error("there is no cohort request {id}; `carelens request list` shows yours")]
    UnknownRequest {
        /// The id given.
        id: i64,
    },
    /// A request was submitted without its purpose.
    #[error("a request needs its purpose: say why the count is needed with --purpose")]
    NoPurpose,
    /// A rejection without a note for the researcher.
    #[error("a rejection needs a note for the researcher: say why with --note")]
    NoRejectionNote {
        /// The request.
        id: i64,
    },
    /// Someone who is not an approver or admin tried to decide.
    #[error("only an approver or admin can decide on a request; you are listed as {role}")]
    NotAnApprover {
        /// The request.
        id: i64,
        /// The asker's role.
        role: Role,
    },
    /// An approver tried to decide on their own request.
    #[error("request {id} is your own: another approver must decide on it (four eyes)")]
    OwnRequest {
        /// The request.
        id: i64,
    },
    /// Someone other than the requester tried to release a request.
    #[error("request {id} is {requester}'s: only its requester can release it")]
    NotTheRequester {
        /// The request.
        id: i64,
        /// Whose it is.
        requester: String,
    },
    /// The request's state does not allow the action.
    #[error(
        "request {id} is {}: it cannot be {action} ({})",
        state.as_str(),
        what_next(*state)
    )]
    WrongState {
        /// The request.
        id: i64,
        /// Where it is in the workflow.
        state: RequestState,
        /// What was tried (`approved`, `rejected`, `released`, `shown again`).
        action: &'static str,
    },
    /// A flagged request may be approved only with a note saying why the pair is safe.
    #[error(
        "request {id} is flagged — {flag}. Approve it only with a --note saying why the pair \
         is safe to release (or reject it)"
    )]
    FlaggedNeedsNote {
        /// The request.
        id: i64,
        /// The near-duplicate it resembles.
        flag: Flag,
    },
    /// The ε to approve is not a positive number.
    #[error("epsilon {epsilon} is not a positive number")]
    BadEpsilon {
        /// The request.
        id: i64,
        /// The ε given.
        epsilon: f64,
    },
    /// An approver may lower a request's cost, not raise it.
    #[error(
        "epsilon {epsilon} is more than the {asked} asked for: an approver may lower a \
         request's cost, not raise it"
    )]
    AboveAsked {
        /// The request.
        id: i64,
        /// The ε given.
        epsilon: f64,
        /// The ε asked for.
        asked: f64,
    },
    /// The query reads only public reference tables: it needs no approval.
    #[error(
        "this query reads only public reference tables: it needs no approval, run it with \
         `carelens query`"
    )]
    NeedsNoApproval,
    /// The stored query no longer plans as it did when submitted.
    #[error(
        "request {id} no longer plans as it did when submitted (the catalog or data \
         changed); reject it and ask for a new request"
    )]
    PlanChanged {
        /// The request.
        id: i64,
    },
    /// The query given at release is not the approved one.
    #[error(
        "this is not the query approved in request {id}: its plan differs (the SQL was \
         changed, or the catalog changed since approval). Nothing was run or spent; submit a \
         new request for the new query"
    )]
    NotTheApprovedQuery {
        /// The request.
        id: i64,
    },
    /// The query would run with other DP parameters than the approved ones.
    #[error(
        "request {id} was approved with the DP parameters {approved}, but this query would \
         run with {now} (its directives or the catalog's policy changed). Nothing was run or \
         spent; submit a new request"
    )]
    ParametersChanged {
        /// The request.
        id: i64,
        /// As approved.
        approved: String,
        /// As the query would run today.
        now: String,
    },
    /// Another release of the request was recorded first; that one stands.
    #[error(
        "request {id} was released meanwhile as release {release_seq}; release it again to \
         see that answer"
    )]
    ReleasedMeanwhile {
        /// The request.
        id: i64,
        /// The release that stands.
        release_seq: i64,
    },
}

impl WorkflowRefusal {
    /// A stable name for the reason, for programs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownRequest { .. } => "unknown_request",
            Self::NoPurpose => "no_purpose",
            Self::NoRejectionNote { .. } => "no_rejection_note",
            Self::NotAnApprover { .. } => "not_an_approver",
            Self::OwnRequest { .. } => "own_request",
            Self::NotTheRequester { .. } => "not_the_requester",
            Self::WrongState { .. } => "wrong_state",
            Self::FlaggedNeedsNote { .. } => "flagged_needs_note",
            Self::BadEpsilon { .. } => "bad_epsilon",
            Self::AboveAsked { .. } => "above_asked",
            Self::NeedsNoApproval => "needs_no_approval",
            Self::PlanChanged { .. } => "plan_changed",
            Self::NotTheApprovedQuery { .. } => "not_the_approved_query",
            Self::ParametersChanged { .. } => "parameters_changed",
            Self::ReleasedMeanwhile { .. } => "released_meanwhile",
        }
    }

    /// Whether the refusal is about who asked (rather than what or when): the asker may
    /// not do this at all.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Self::NotAnApprover { .. } | Self::OwnRequest { .. } | Self::NotTheRequester { .. }
        )
    }

    /// Whether the refusal is about the request's state now (another action, or a
    /// change of the catalog or data, came first).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::WrongState { .. }
                | Self::PlanChanged { .. }
                | Self::ParametersChanged { .. }
                | Self::ReleasedMeanwhile { .. }
        )
    }
}

/// What a request's state allows next, worded for the person who tried something else.
fn what_next(state: RequestState) -> &'static str {
    match state {
        RequestState::Submitted => "it is waiting for an approver",
        RequestState::Approved => "it is approved and waiting for its requester to release it",
        RequestState::Rejected => "it was rejected; submit a new request if the question changed",
        RequestState::Released => {
            "it was released; `carelens request release` shows the answer again"
        }
    }
}
