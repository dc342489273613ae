//! The carelens query engine: analysts' SQL to a differentially private release.
//!
//! It will build a closed DataFusion session from the catalog (`carelens-catalog`), walk the
//! `LogicalPlan` of each query to decide whether it is safe, rewrite the final aggregation
//! with person-level contribution bounding, execute it and hand the exact, bounded
//! aggregates to `carelens-privacy` for noise, key selection and disclosure control.
//!
//! Layer: above `carelens-privacy` and `carelens-catalog`; below the ledger and the binary
//! (see `docs/architecture.md`).
//!
//! Status: reserved. Its contents arrive with the "DP SQL engine" issue.
