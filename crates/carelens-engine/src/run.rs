//! Running a bounded plan within limits: its own memory pool, a time limit, and a panic
//! turned into a failure instead of taking the process down.
//!
//! What a query uses — memory, time — can depend on the data, and so on one person (ten
//! thousand rows of one person joined to themselves). Plans whose work the analysis can
//! bound are bounded before the charge (`bounds.rs`); what remains is capped here, and a
//! query that reaches a cap fails like any other failure after the charge: the failure
//! is its stored outcome, served again to a retry at no cost (`docs/ledger.md`).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionContext;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;

use crate::QueryError;

/// The resources one query may use while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Bytes of memory its operators may hold (sorts and aggregations spill to disk
    /// beyond it; the rest fail).
    pub memory_bytes: usize,
    /// How long it may run.
    pub time: Duration,
    /// The most rows of a public table one private row may be joined to (checked before
    /// the charge, `bounds.rs`).
    pub max_join_fanout: u64,
    /// A release (or a failure) is held until the next multiple of this since the query
    /// started running, capped by `time`; zero holds nothing.
    pub quantum: Duration,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 4 << 30,
            time: Duration::from_secs(300),
            max_join_fanout: 1_000,
            quantum: Duration::from_secs(1),
        }
    }
}

/// Runs `plan` on a session like `ctx` but with its own memory pool of
/// `limits.memory_bytes`, stops it after `limits.time`, and reports a panic as
/// [`QueryError::Panicked`].
pub(crate) async fn collect(
    ctx: &SessionContext,
    plan: LogicalPlan,
    limits: RunLimits,
) -> Result<Vec<RecordBatch>, QueryError> {
    let runtime = RuntimeEnvBuilder::from_runtime_env(ctx.runtime_env().as_ref())
        .with_memory_pool(Arc::new(FairSpillPool::new(limits.memory_bytes)))
        .build_arc()
        .map_err(QueryError::Execute)?;
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_runtime_env(runtime)
        .build();
    let limited = SessionContext::new_with_state(state);
    let _running = crate::panics::Running::enter();
    let mut task =
        tokio::spawn(async move { limited.execute_logical_plan(plan).await?.collect().await });
    tokio::select! {
        joined = &mut task => match joined {
            Ok(result) => result.map_err(QueryError::Execute),
            Err(e) if e.is_panic() => Err(QueryError::Panicked),
            Err(_) => Err(QueryError::Internal("the query's task was cancelled")),
        },
        () = tokio::time::sleep(limits.time) => {
            task.abort();
            Err(QueryError::TimeLimit(limits.time))
        }
    }
}

/// Waits until the next multiple of `limits.quantum` since `started` (at most until
/// `limits.time`), so that a query's response time shows only which multiple of the
/// quantum its running time fell in.
pub(crate) async fn hold(started: tokio::time::Instant, limits: RunLimits) {
    let quantum = limits.quantum.as_nanos();
    if quantum == 0 {
        return;
    }
    let elapsed = started.elapsed().as_nanos();
    let target = elapsed.div_ceil(quantum).saturating_mul(quantum);
    let target = target.min(limits.time.as_nanos());
    if target > elapsed {
        let wait = u64::try_from(target - elapsed).unwrap_or(u64::MAX);
        tokio::time::sleep(Duration::from_nanos(wait)).await;
    }
}
