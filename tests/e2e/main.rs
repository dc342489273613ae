//! End-to-end tests of carelens: the `carelens` binary, the committed sample data, and the
//! realism of the synthetic extract. One test binary (see `Cargo.toml`) with a module per
//! area.

#![allow(clippy::unwrap_used, missing_docs)]

mod batch;
mod cli;
mod common;
mod engine;
mod fuzz;
mod ledger;
mod limits;
mod query;
mod readme;
mod realism;
mod request;
mod sample_data;
mod serve;
