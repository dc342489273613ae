//! `carelens run`: a batch of queries, released one by one once the whole batch fits.

use std::collections::HashSet;

use carelens_engine::PreparedQuery;
use carelens_ledger::{Amount, QueryRecord};

use crate::{Caller, Released, Service, ServiceError};

/// What became of one query of a batch: released (or answered again), or why not.
pub type BatchItem = Result<Released, ServiceError>;

/// What a batch's queries cost together (`explain` of several queries), as a run of the
/// batch would charge them when none was released before: each distinct query once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCost {
    /// The total.
    pub total: Amount,
    /// How many distinct queries are paid for.
    pub distinct: usize,
    /// Per query given, whether it repeats one before it (and so is paid once, there).
    pub repeats: Vec<bool>,
}

/// The cost of running the prepared `queries` as one batch over the data of
/// `data_version` (queries released before would be answered at no cost: the ledger
/// knows those, `explain` does not ask it).
pub fn batch_cost<'a>(
    queries: impl IntoIterator<Item = &'a PreparedQuery>,
    data_version: &str,
) -> BatchCost {
    let mut seen = HashSet::new();
    let mut total = Amount::default();
    let mut repeats = Vec::new();
    for query in queries {
        let first = seen.insert(query.cache_key(data_version));
        if first {
            let charge = query.charge();
            total = total.plus(Amount::charge(charge.epsilon(), charge.delta()));
        }
        repeats.push(!first);
    }
    BatchCost {
        total,
        distinct: seen.len(),
        repeats,
    }
}

impl Service {
    /// `carelens explain` of a batch: plans each of `queries` (SQL texts) without running,
    /// spending or logging anything, and what the batch would cost (queries released
    /// before would be answered at no cost; the ledger is not asked).
    pub async fn explain_batch(
        &self,
        queries: &[String],
    ) -> Result<(Vec<Result<PreparedQuery, ServiceError>>, BatchCost), ServiceError> {
        let mut prepared = Vec::with_capacity(queries.len());
        for sql in queries {
            prepared.push(self.explain(sql).await);
        }
        let cost = batch_cost(
            prepared.iter().filter_map(|p| p.as_ref().ok()),
            self.engine().await?.data_version(),
        );
        Ok((prepared, cost))
    }

    /// Runs `queries` (SQL texts) for `caller` as one batch: each is prepared (a rejection
    /// is logged and stays that query's answer); the batch runs only if the caller's budget
    /// and the dataset's cover every query of it not answered before
    /// ([`ServiceError::BatchOverBudget`] otherwise, with nothing run or spent); then each
    /// is charged, run and stored in turn, as [`Service::release`] does. `done` is told of
    /// each query's outcome as soon as it is known (in order), for progress and for
    /// writing results while the rest run.
    ///
    /// The fit is checked, not reserved: a concurrent spender can still make a later query
    /// of the batch be refused when its turn comes.
    pub async fn run_batch(
        &self,
        caller: &Caller,
        queries: &[String],
        mut done: impl FnMut(usize, &BatchItem),
    ) -> Result<Vec<BatchItem>, ServiceError> {
        self.may_run_batches(caller)?;
        let mut prepared = Vec::with_capacity(queries.len());
        for sql in queries {
            prepared.push(match self.prepare(caller, sql).await {
                // The rejection could not be logged: nothing more should run.
                Err(e @ ServiceError::Ledger(_)) => return Err(e),
                other => other,
            });
        }
        self.check_batch(caller, &prepared).await?;
        let mut items = Vec::with_capacity(prepared.len());
        for (index, query) in prepared.into_iter().enumerate() {
            let item = match query {
                Ok(query) => self.release(caller, &query).await,
                Err(why) => Err(why),
            };
            done(index, &item);
            items.push(item);
        }
        Ok(items)
    }

    /// Whether the budgets cover the prepared queries of a batch that are not answered
    /// yet; a batch that does not fit is logged as one refusal.
    async fn check_batch(
        &self,
        caller: &Caller,
        prepared: &[Result<PreparedQuery, ServiceError>],
    ) -> Result<(), ServiceError> {
        let data_version = self
            .catalog
            .data_version()
            .map_err(ServiceError::internal)?;
        let owned: Vec<_> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|p| {
                (
                    p.sql().to_owned(),
                    p.plan_hash().to_owned(),
                    p.cache_key(&data_version),
                    p.charge(),
                )
            })
            .collect();
        let user = caller.name.clone();
        let check = self
            .with_ledger(move |ledger| {
                let records: Vec<_> = owned
                    .iter()
                    .map(|(sql, plan_hash, cache_key, charge)| {
                        let record = QueryRecord {
                            sql,
                            plan_hash,
                            cache_key,
                        };
                        (record, charge)
                    })
                    .collect();
                ledger.check_batch(&user, &records)
            })
            .await?;
        match check.refusal {
            Some(refusal) => Err(ServiceError::BatchOverBudget {
                new: check.new,
                refusal,
            }),
            None => Ok(()),
        }
    }
}
