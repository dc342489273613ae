//! The carelens ledger: persistent privacy budgets, the hash-chained audit trail and the
//! release cache, in one SQLite file.
//!
//! Layer: above `carelens-privacy` and `carelens-catalog` (budgets and users come from the
//! catalog); used by the binary (see `docs/architecture.md`). The file format is in
//! `docs/ledger.md`.
//!
//! The life of a query:
//!
//! 1. [`Ledger::charge`] — in one `BEGIN IMMEDIATE` transaction: serve an identical earlier
//!    query's answer at no cost — its release, or the failure it ended in — or check the
//!    user's and the dataset's budgets and debit both, or refuse. The outcome is in the
//!    audit log before the call returns.
//! 2. The engine runs the query and adds noise.
//! 3. [`Ledger::record_release`] — store the result and log its release (with the result's
//!    hash) in one transaction; only then may the result be written anywhere. Or
//!    [`Ledger::record_error`] — the query failed; the budget stays spent, and that failure
//!    is the query's answer from then on, so retrying a failure is never a free new run.
//!
//! A crash after 1 leaves the budget spent (fail closed) and no result out; asking again
//! takes up that charge instead of debiting twice — once: a charge whose process stops a
//! second time is logged as failed. Rejected and refused queries are logged at no cost
//! ([`Ledger::record_rejection`]).
//!
//! ```
//! use carelens_ledger::{Amount, Budgets, ChargeOutcome, Ledger, QueryRecord, Verification};
//! use carelens_catalog::Role;
//! use carelens_privacy::{ChargeItem, MechanismKind, PrivacyCharge};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let budgets = Budgets {
//!     accounting: carelens_privacy::Accounting::Basic,
//!     dataset: Amount::budget(10.0, 1e-5),
//!     users: vec![("ana".into(), Role::Analyst, Amount::budget(1.0, 1e-6))],
//! };
//! let mut ledger = Ledger::open(&dir.path().join("ledger.sqlite"), budgets)?;
//! let charge = PrivacyCharge::new(vec![ChargeItem {
//!     label: "count(*)".into(),
//!     mechanism: MechanismKind::DiscreteLaplace,
//!     epsilon: 0.5,
//!     delta: 0.0,
//!     max_groups: 1,
//!     per_group_sensitivity: 1,
//!     scale: 2.0,
//!     threshold: None,
//!     rho: None,
//! }]);
//! let query = QueryRecord { sql: "SELECT count(*) FROM person", plan_hash: "p1", cache_key: "k1" };
//! let ChargeOutcome::Charged(receipt) = ledger.charge("ana", &query, &charge)? else {
//!     panic!("a fresh budget covers 0.5");
//! };
//! ledger.record_release(&receipt, b"count: 20000")?;
//! // The same question again: the same answer, at no cost.
//! assert!(matches!(ledger.charge("ana", &query, &charge)?, ChargeOutcome::Cached(_)));
//! assert_eq!(ledger.budget_report(Some("ana"))?[1].spent.epsilon_value(), 0.5);
//! assert!(matches!(ledger.verify()?, Verification::Intact { .. }));
//! # Ok(())
//! # }
//! ```

mod amount;
pub mod audit;
mod error;
mod ledger;

pub use amount::{Amount, DELTA_UNITS, EPSILON_UNITS, RHO_UNITS, Spend, ZcdpAmount};
pub use audit::{AuditEntry, Event, Verification, parse_head};
pub use error::LedgerError;
pub use ledger::{
    BatchCheck, BudgetLine, Budgets, ChargeOutcome, DATASET_USER, DEFAULT_WAIT, Decision, Failures,
    Flag, Ledger, NewRequest, QueryRecord, Receipt, Refusal, Request, RequestState, SCHEMA_VERSION,
    STOPPED_TWICE, StoredFailure, StoredRelease, TokenInfo, Which, WorkflowRefusal, ZcdpLine,
    ZcdpRefusal,
};

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod token_tests;
#[cfg(test)]
mod zcdp_tests;
