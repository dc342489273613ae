//! carelens-render: how carelens shows its answers — a release as an aligned table, CSV or
//! Parquet, and a prepared query's cost and protection as text.
//!
//! Layer: above the engine (whose [`Release`] and [`Explain`] are data only) and below
//! every face (the command line now; the HTTP API and the web pages next), so that all
//! of them show the same release the same way. Nothing here decides anything: rendering
//! reads only released, protected values. The wire format (JSON) is not rendered here:
//! it is the stored bytes, which the service hands over as they are.

mod budget;
mod explain;
mod release;
pub mod report;

pub use budget::budget_json;
pub use carelens_engine::{Explain, Release};
pub use carelens_privacy::{ZcdpCost, number};
pub use explain::{cost_summary, explain, zcdp_charge};
pub use release::{arrow_ipc, csv, parquet, table, table_answered};
