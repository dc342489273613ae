//! The carelens ledger: persistent privacy budgets, the hash-chained audit trail and the
//! release cache, in SQLite.
//!
//! Every release is charged here, in one `BEGIN IMMEDIATE` transaction, before any result
//! leaves the process; every query, released or not, is appended to the audit log.
//!
//! Layer: above `carelens-privacy`; used by the binary (see `docs/architecture.md`).
//!
//! Status: reserved. Its contents arrive with the "Privacy budget ledger" issue.
