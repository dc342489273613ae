//! Why a service operation did not answer: one enum for every face, each reason with its
//! exit code (the command line) and its HTTP status (the API).

use carelens_engine::{QueryError, Rejection};
use carelens_ledger::{Amount, LedgerError, Refusal, StoredFailure, WorkflowRefusal};

/// Why a researcher's query on private data is refused outside the request workflow.
pub const RESEARCHERS_ASK: &str = "researchers do not have an open budget: ask for a cohort \
     count with `carelens request submit FILE.sql --purpose ...`, which an approver checks before \
     it is released once";

/// What to do about a query the budget cannot cover.
const OVER_BUDGET_HINT: &str = "ask for a smaller epsilon (`-- carelens: epsilon=...`), or ask \
     your information governance team for more budget; `carelens budget` shows what is left";
/// What to do about a batch the budget cannot cover.
const BATCH_OVER_BUDGET_HINT: &str = "run fewer queries, lower their epsilon, or ask your \
     information governance team for more budget; `carelens explain` shows each query's cost";

/// Exit code of a refusal (by the analysis, the policy, the budget or the workflow).
const EXIT_REFUSED: u8 = 1;
/// Exit code of an error (bad input, a failure, a fault).
const EXIT_ERROR: u8 = 2;

/// Why a service operation did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The privacy analysis or the policy rejected the query; logged, nothing spent.
    #[error(transparent)]
    Rejected(Rejection),
    /// A budget could not cover the query; nothing was spent and nothing ran.
    #[error("query refused: {0}")]
    OverBudget(Refusal),
    /// A researcher asked outside the request workflow; logged, nothing spent.
    #[error("{RESEARCHERS_ASK}")]
    ResearchersAsk,
    /// A batch's new queries together need more than a budget has left; nothing was run
    /// or spent (the refusal is logged as one entry naming the batch's queries).
    #[error(
        "batch refused, nothing was run or spent: its {new} new quer{} need {}",
        if *new == 1 { "y" } else { "ies" },
        refusal.shortfall()
    )]
    BatchOverBudget {
        /// How many distinct queries of the batch are not answered yet.
        new: usize,
        /// Which budget, what the batch needs and what is left.
        refusal: Refusal,
    },
    /// The cohort-request workflow refused the action (one variant per reason).
    #[error(transparent)]
    Workflow(WorkflowRefusal),
    /// The query was charged, then failed; the budget stays spent, and this failure is the
    /// query's answer from now on. `message` quotes no record values.
    #[error("{message}")]
    FailedAfterCharge {
        /// Why it failed.
        message: String,
        /// What was debited for it now (nothing for an interrupted charge taken up).
        spent: Amount,
    },
    /// An identical query failed after its charge before: that failure, served from the
    /// ledger at no cost; nothing ran.
    #[error("{}", .0.message)]
    FailedBefore(StoredFailure),
    /// Someone who does not oversee asked for other users' audit entries.
    #[error("only approvers and admins may see other users' audit entries")]
    OthersEntries,
    /// Someone who is not an admin asked for what only those who run the service see.
    #[error("only admins may see {what}")]
    AdminsOnly {
        /// What was asked for.
        what: &'static str,
    },
    /// No valid token: missing, unknown, expired or revoked, or its user left the
    /// catalog (which of these is not said).
    #[error("not signed in: give a valid API token (`carelens token issue` makes one)")]
    Unauthenticated,
    /// The input is not what the operation takes.
    #[error("{0}")]
    BadInput(String),
    /// The caller is not a user in the catalog.
    #[error("{}", LedgerError::UnknownUser { name: name.clone() })]
    UnknownUser {
        /// The name given.
        name: String,
    },
    /// The SQL could not be planned (a syntax or name error): nothing was logged or spent.
    #[error(transparent)]
    BadQuery(QueryError),
    /// The extract's files changed since the engine opened and checked them: nothing is
    /// charged against files that were not checked.
    #[error(
        "the extract's files changed since carelens opened them; nothing was run or spent. \
         Run the command again (or restart the server) so that the files are checked anew"
    )]
    ExtractChanged,
    /// The ledger could not be read or written.
    #[error(transparent)]
    Ledger(LedgerError),
    /// A fault of carelens or its environment.
    #[error(transparent)]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    /// The command line's exit code: 1 for a refusal (by the analysis, the policy, a
    /// budget or the workflow), 2 for an error.
    pub fn exit_code(&self) -> u8 {
        if self.is_refusal() {
            EXIT_REFUSED
        } else {
            EXIT_ERROR
        }
    }

    /// What the caller can do about it, when there is more to say than the message (a
    /// rejection carries its own hint).
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::OverBudget(_) => Some(OVER_BUDGET_HINT),
            Self::BatchOverBudget { .. } => Some(BATCH_OVER_BUDGET_HINT),
            _ => None,
        }
    }

    /// The HTTP status an API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Rejected(_) | Self::BadQuery(_) => 422,
            Self::OverBudget(_) | Self::BatchOverBudget { .. } | Self::ResearchersAsk => 403,
            Self::OthersEntries | Self::AdminsOnly { .. } => 403,
            Self::Workflow(WorkflowRefusal::UnknownRequest { .. }) => 404,
            Self::Workflow(w) if w.is_forbidden() => 403,
            Self::Workflow(w) if w.is_conflict() => 409,
            Self::Workflow(_) => 422,
            Self::UnknownUser { .. } | Self::Unauthenticated => 401,
            Self::BadInput(_) => 400,
            // The query's answer is a failure, stored and served again like a release.
            Self::FailedAfterCharge { .. } | Self::FailedBefore(_) => 500,
            Self::Ledger(_) | Self::Internal(_) => 500,
            Self::ExtractChanged => 503,
        }
    }

    /// A stable name for the reason, for programs (the HTTP API's `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected(_) => "rejected",
            Self::OverBudget(_) => "over_budget",
            Self::ResearchersAsk => "researchers_ask",
            Self::BatchOverBudget { .. } => "batch_over_budget",
            Self::Workflow(w) => w.code(),
            Self::FailedAfterCharge { .. } => "failed_after_charge",
            Self::FailedBefore(_) => "failed_before",
            Self::OthersEntries => "others_entries",
            Self::AdminsOnly { .. } => "admins_only",
            Self::Unauthenticated => "unauthenticated",
            Self::BadInput(_) => "bad_input",
            Self::UnknownUser { .. } => "unknown_user",
            Self::BadQuery(_) => "bad_query",
            Self::ExtractChanged => "extract_changed",
            Self::Ledger(_) => "ledger",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether this is a refusal (the analysis, the policy, a budget or the workflow said
    /// no) rather than an error.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Rejected(_)
                | Self::OverBudget(_)
                | Self::BatchOverBudget { .. }
                | Self::ResearchersAsk
                | Self::Workflow(_)
        )
    }

    pub(crate) fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }
}

impl From<LedgerError> for ServiceError {
    fn from(err: LedgerError) -> Self {
        match err {
            LedgerError::UnknownUser { name } => Self::UnknownUser { name },
            LedgerError::Workflow(refusal) => Self::Workflow(refusal),
            other => Self::Ledger(other),
        }
    }
}

impl From<QueryError> for ServiceError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::Rejected(rejection) => Self::Rejected(rejection),
            QueryError::Plan(_) => Self::BadQuery(err),
            other => Self::internal(other),
        }
    }
}

/// A failed run's message with its causes, as logged and shown ("what: why: why").
pub(crate) fn failure_message(err: QueryError) -> String {
    let mut message = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}
