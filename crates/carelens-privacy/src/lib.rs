//! Differential-privacy primitives for carelens: the bottom layer of the workspace.
//!
//! This crate will hold the validated privacy parameters (`Epsilon`, `Delta`, `Bounds`),
//! the noise mechanisms built on the `opendp` crate's vetted samplers, budget composition,
//! accuracy (confidence intervals of the noise) and the disclosure policy (small-number
//! suppression and rounding decided on noisy values).
//!
//! It depends on nothing else in the workspace and knows nothing of DataFusion, tokio or
//! files: every other carelens crate builds on it (see `docs/architecture.md`).
//!
//! Status: reserved. Its contents arrive with the "Privacy core" issue.
