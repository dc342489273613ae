//! Running a bounded plan within limits: its own memory pool, a time limit, and a panic
//! turned into a failure instead of taking the process down.
//!
//! What a query uses — memory, time — can depend on the data, and so on one person (ten
//! thousand rows of one person joined to themselves). Plans whose work the analysis can
//! bound are bounded before the charge (`bounds.rs`); what remains is capped here, and a
//! query that reaches a cap fails like any other failure after the charge: the failure
//! is its stored outcome, served again to a retry at no cost (`docs/ledger.md`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionContext;
use datafusion::execution::memory_pool::GreedyMemoryPool;
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

/// Runs `plan` to completion under `limits`: every batch in order. The time limit counts
/// from `started`, when the release began, so the plans of one release share one limit.
pub(crate) async fn collect(
    ctx: &SessionContext,
    plan: LogicalPlan,
    limits: RunLimits,
    started: tokio::time::Instant,
) -> Result<Vec<RecordBatch>, QueryError> {
    collect_with(ctx, plan, limits, started, Vec::new(), |batches, batch| {
        batches.push(batch);
        Ok(())
    })
    .await
}

/// Runs `plan` under `limits`, folding each batch into `state` as it comes (so what is kept
/// of the output is the fold's choice), with its own memory pool and the time left of the
/// release that began at `started`: a query whose plans together run past the limit is
/// stopped, and fails saying the policy's limit — never the time that was left, which
/// would tell how long the earlier plans took.
pub(crate) async fn collect_with<T, F>(
    ctx: &SessionContext,
    plan: LogicalPlan,
    limits: RunLimits,
    started: tokio::time::Instant,
    state: T,
    mut fold: F,
) -> Result<T, QueryError>
where
    T: Send + 'static,
    F: FnMut(&mut T, RecordBatch) -> Result<(), QueryError> + Send + 'static,
{
    use futures::StreamExt as _;

    let left = limits.time.saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err(QueryError::TimeLimit(limits.time));
    }
    // One limit on the total, not a fair share per spilling operator: a fair pool of
    // 4 GB, shared out over every aggregation and sort of every partition, made them
    // spill on a 10M-person extract while the whole process peaked at 1.7 GB (Q1 1.91x
    // plain DataFusion, against 1.11x with the pool out of the way; docs/benchmark.md).
    let runtime = RuntimeEnvBuilder::from_runtime_env(ctx.runtime_env().as_ref())
        .with_memory_pool(Arc::new(GreedyMemoryPool::new(limits.memory_bytes)))
        .build_arc()
        .map_err(QueryError::Execute)?;
    let session = SessionStateBuilder::new_from_existing(ctx.state())
        .with_runtime_env(runtime)
        .build();
    let limited = SessionContext::new_with_state(session);
    let _running = crate::panics::Running::enter();
    let deadline = Deadline::start(left);
    let mut task = tokio::spawn(async move {
        let mut state = state;
        let mut stream = limited
            .execute_logical_plan(plan)
            .await
            .map_err(QueryError::Execute)?
            .execute_stream()
            .await
            .map_err(QueryError::Execute)?;
        while let Some(batch) = stream.next().await {
            fold(&mut state, batch.map_err(QueryError::Execute)?)?;
        }
        Ok::<T, QueryError>(state)
    });
    let mut expired = deadline.expired;
    tokio::select! {
        joined = &mut task => match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(QueryError::Panicked),
            Err(_) => Err(QueryError::Internal("the query's task was cancelled")),
        },
        Ok(()) = &mut expired => {
            task.abort();
            Err(QueryError::TimeLimit(limits.time))
        }
    }
}

/// A time limit kept by a thread of its own. A tokio timer fires only when a runtime
/// worker is free to drive it, and a query's operators can keep every worker busy for
/// as long as their batches take: the limit would stretch with the work, and the work
/// with the data. The thread wakes the waiting task directly when the time is up; it
/// ends as soon as the deadline is dropped.
struct Deadline {
    /// Resolves when the time is up.
    expired: tokio::sync::oneshot::Receiver<()>,
    /// Dropped with the deadline, which stops the thread.
    _done: std::sync::mpsc::Sender<()>,
}

impl Deadline {
    fn start(limit: Duration) -> Self {
        let (fire, expired) = tokio::sync::oneshot::channel();
        let fire = Arc::new(Mutex::new(Some(fire)));
        let ring = {
            let fire = Arc::clone(&fire);
            move || {
                if let Some(fire) = fire.lock().ok().and_then(|mut f| f.take()) {
                    let _ = fire.send(());
                }
            }
        };
        let (done, stop) = std::sync::mpsc::channel::<()>();
        let watch = {
            let ring = ring.clone();
            move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(limit) {
                    ring();
                }
            }
        };
        let spawned = std::thread::Builder::new()
            .name("carelens-deadline".into())
            .spawn(watch);
        if spawned.is_err() {
            // Out of threads (not a property of the data): a runtime timer instead.
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                ring();
            });
        }
        Self {
            expired,
            _done: done,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Deadline;

    /// The runtime's only worker is stuck in a long computation (as in an operator's
    /// kernel over a large batch); the deadline still fires on time, because its own
    /// thread keeps it, and the waiting task is woken on the thread that waits for it.
    #[test]
    fn the_deadline_fires_while_every_worker_is_busy() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let waited = runtime.block_on(async {
            let deadline = Deadline::start(Duration::from_millis(200));
            tokio::spawn(async { std::thread::sleep(Duration::from_secs(3)) });
            // Let the worker pick up the busy task.
            std::thread::sleep(Duration::from_millis(50));
            let started = Instant::now();
            deadline.expired.await.expect("the deadline fires");
            started.elapsed()
        });
        assert!(waited < Duration::from_secs(2), "fired after {waited:?}");
        runtime.shutdown_background();
    }

    /// A deadline dropped before its time never fires, and its thread ends.
    #[test]
    fn a_plan_run_after_the_releases_time_is_up_fails_with_the_policys_limit() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let limits = super::RunLimits {
                time: Duration::from_millis(300),
                ..Default::default()
            };
            let ctx = datafusion::prelude::SessionContext::new();
            let plan = ctx
                .sql("SELECT 1 AS x")
                .await
                .unwrap()
                .into_unoptimized_plan();
            // The release began 200 ms ago: 100 ms are left, enough for this plan.
            let started = tokio::time::Instant::now() - Duration::from_millis(200);
            assert!(
                super::collect(&ctx, plan.clone(), limits, started)
                    .await
                    .is_ok()
            );
            // It began 400 ms ago: nothing is left, and the error names the limit (300 ms,
            // shown as whole seconds), not the time that was left.
            let started = tokio::time::Instant::now() - Duration::from_millis(400);
            match super::collect(&ctx, plan, limits, started).await {
                Err(crate::QueryError::TimeLimit(limit)) => assert_eq!(limit, limits.time),
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn a_dropped_deadline_stops_its_thread() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let Deadline { expired, _done } = Deadline::start(Duration::from_secs(3600));
            drop(_done);
            let started = Instant::now();
            assert!(expired.await.is_err(), "the sender is gone, nothing fired");
            assert!(started.elapsed() < Duration::from_secs(5));
        });
    }
}
