//! carelens-service: the release protocol and the governance rules, once, for every face
//! of carelens (the command line today; the HTTP API and the web pages next).
//!
//! Layer: above the engine, the ledger, the catalog and the privacy crate; below the
//! binary (see `docs/architecture.md`). Nothing above this crate decides a privacy or a
//! governance question: a face turns its input into a [`Caller`] and SQL, calls a
//! [`Service`] operation, and renders what comes back (a [`Released`] answer or a
//! [`ServiceError`], which carries its exit code and HTTP status).
//!
//! The protocol of a query (the budget is debited before a result exists):
//! prepare (parse, analyse, rewrite, calibrate — no data read; a rejection is logged at no
//! cost) → who may spend (researchers only through approved requests) → ledger charge (or
//! the stored answer of an identical earlier query — its release, or its failure — at no
//! cost; or a refusal) → run → store the release in the ledger → answer. A failure after
//! the charge is logged against it and is that query's answer from then on.
//!
//! A [`Service`] is shared by reference across threads and tasks: DataFusion work runs on
//! the caller's tokio runtime, and every ledger call runs off it, on the blocking pool,
//! through one SQLite connection behind a mutex (the ledger's own transactions and file
//! locks order charges between processes; the mutex orders them within this one).

mod batch;
mod catalog;
mod error;
mod register;
mod requests;
mod tokens;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use carelens_catalog::{LoadedCatalog, Role};
use carelens_engine::{Engine, PreparedQuery, Release};
use carelens_ledger::{
    Amount, AuditEntry, BudgetLine, Budgets, ChargeOutcome, Event, Ledger, QueryRecord, Receipt,
    StoredRelease, Verification,
};

pub use crate::batch::{BatchCost, BatchItem, batch_cost};
pub use crate::catalog::{CatalogView, DisclosureView, TableView};
pub use crate::error::{RESEARCHERS_ASK, ServiceError};
pub use crate::register::{
    Basis, Charge, ChargeStatus, LogState, Register, Spend, published_title,
};
pub use crate::requests::ShownRequest;
pub use crate::tokens::{IssuedToken, TOKEN_PREFIX};

/// Someone the face has authenticated, as the catalog knows them: made only from the
/// catalog ([`Caller::of`], [`Service::caller`]), so a role is always the catalog's, never
/// a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    name: String,
    role: Role,
}

impl Caller {
    /// The user `name` of `catalog`, whom the face has authenticated. (Also
    /// [`Service::caller`]; this one needs no open service, so a face can refuse an
    /// unknown user before it opens or creates anything.)
    pub fn of(catalog: &LoadedCatalog, name: &str) -> Result<Self, ServiceError> {
        let user = catalog
            .user(name)
            .ok_or_else(|| ServiceError::UnknownUser {
                name: name.to_owned(),
            })?;
        Ok(Self {
            name: user.name.clone(),
            role: user.role,
        })
    }

    /// The user's name in the catalog.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's role in the catalog.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// A released answer.
#[derive(Debug)]
pub struct Released {
    /// The release, with its ledger id.
    pub release: Release,
    /// The release in the wire format (`carelens.release/1` JSON), exactly as stored in
    /// the ledger: its SHA-256 is in the `released` audit entry, so anyone holding these
    /// bytes and the log can check them. A face that answers in JSON sends these bytes.
    pub bytes: Vec<u8>,
    /// What was debited for it now: nothing for an identical earlier query's answer or
    /// for an interrupted charge taken up.
    pub spent: Amount,
    /// An identical earlier query's release, served from the ledger at no cost.
    pub cached: bool,
}

/// What [`Service::check_release`] found.
#[derive(Debug)]
pub struct ReleaseCheck {
    /// SHA-256 of the bytes checked (lowercase hex).
    pub result_hash: String,
    /// The release whose stored bytes these are: its id (the sequence number of its
    /// `released` entry) and when it was released; `None` if no release has this hash.
    pub released: Option<(i64, String)>,
    /// The audit log's own check.
    pub log: Verification,
}

/// The loaded catalog, the engine over its extract and the ledger: every operation a
/// face offers.
pub struct Service {
    catalog: LoadedCatalog,
    /// Opened with the service, or on first use by one opened for reading only.
    engine: tokio::sync::OnceCell<Engine>,
    ledger: Arc<Mutex<Ledger>>,
    /// Whether opening the service created the ledger file.
    created_ledger: bool,
    ledger_path: PathBuf,
    /// One user's identical queries in flight here, one at a time: the ledger finds a
    /// second charge of a query its own handle is running "already running", so the
    /// second ask waits here for the first's outcome and then gets it at no cost.
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// How a service holds its ledger.
#[derive(Debug, Clone, Copy)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// A turn of one user's identical queries ([`Service::in_flight`]); the gate is removed
/// with the last turn.
struct Turn<'a> {
    key: String,
    gates: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Ok(mut gates) = self.gates.lock() else {
            return;
        };
        // Others waiting hold the gate too; cloning happens only under this lock.
        if gates
            .get(&self.key)
            .is_some_and(|gate| Arc::strong_count(gate) == 2)
        {
            gates.remove(&self.key);
        }
        self.guard.take();
    }
}

impl Service {
    /// Opens the engine over `catalog`'s extract and the ledger at `ledger_path` (created
    /// on first use, with the catalog's budgets). The engine opens now, so that a service
    /// that answers queries fails at its start on a bad extract.
    pub async fn open(catalog: LoadedCatalog, ledger_path: &Path) -> Result<Self, ServiceError> {
        let engine = Engine::open(&catalog)
            .await
            .map_err(ServiceError::internal)?;
        let mut service = Self::open_ledger(catalog, ledger_path, Access::ReadWrite).await?;
        service.engine = tokio::sync::OnceCell::new_with(Some(engine));
        Ok(service)
    }

    /// Opens the ledger at `ledger_path` for the operations that only keep the ledger
    /// (tokens); the engine is opened only if a query needs it.
    pub async fn open_for_ledger(
        catalog: LoadedCatalog,
        ledger_path: &Path,
    ) -> Result<Self, ServiceError> {
        Self::open_ledger(catalog, ledger_path, Access::ReadWrite).await
    }

    /// Opens the ledger at `ledger_path` for reading only (a ledger under investigation
    /// is left exactly as it is; a missing one is an error, never created), for the
    /// operations that only read it: budgets and the audit log. The engine is opened only
    /// if a query needs it (and charging one then fails: the ledger is read-only).
    pub async fn open_read_only(
        catalog: LoadedCatalog,
        ledger_path: &Path,
    ) -> Result<Self, ServiceError> {
        Self::open_ledger(catalog, ledger_path, Access::ReadOnly).await
    }

    async fn open_ledger(
        catalog: LoadedCatalog,
        ledger_path: &Path,
        access: Access,
    ) -> Result<Self, ServiceError> {
        let budgets = Budgets::from_catalog(catalog.catalog());
        let path = ledger_path.to_path_buf();
        let ledger = blocking(move || match access {
            Access::ReadOnly => Ledger::open_read_only(&path, budgets),
            Access::ReadWrite => Ledger::open(&path, budgets),
        })
        .await??;
        Ok(Self {
            created_ledger: ledger.created(),
            catalog,
            engine: tokio::sync::OnceCell::new(),
            ledger: Arc::new(Mutex::new(ledger)),
            ledger_path: ledger_path.to_path_buf(),
            in_flight: Mutex::default(),
        })
    }

    /// The catalog this service answers over.
    pub fn catalog(&self) -> &LoadedCatalog {
        &self.catalog
    }

    /// The ledger's file.
    pub fn ledger_path(&self) -> &Path {
        &self.ledger_path
    }

    /// Whether opening the service created the ledger (a new one, every budget full): the
    /// faces say so, as a mistyped path would otherwise pass unnoticed.
    pub fn created_ledger(&self) -> bool {
        self.created_ledger
    }

    /// The engine over the catalog's extract (opened now if it was not yet).
    pub async fn engine(&self) -> Result<&Engine, ServiceError> {
        self.engine
            .get_or_try_init(|| Engine::open(&self.catalog))
            .await
            .map_err(ServiceError::internal)
    }

    /// The catalog's user `name`, who the face has authenticated.
    pub fn caller(&self, name: &str) -> Result<Caller, ServiceError> {
        Caller::of(&self.catalog, name)
    }

    /// Plans `sql` for `caller` without running it or spending anything; a rejection by
    /// the privacy analysis or the policy is logged against the caller at no cost.
    pub async fn prepare(&self, caller: &Caller, sql: &str) -> Result<PreparedQuery, ServiceError> {
        match self.plan(sql, None).await {
            Err(ServiceError::Rejected(rejection)) => {
                self.log_rejection(caller, sql, "", &rejection.to_string())
                    .await?;
                Err(ServiceError::Rejected(rejection))
            }
            other => other,
        }
    }

    /// `carelens explain`: plans `sql` (its cost, mechanisms and expected errors) without
    /// running it, spending anything or logging it. Planning reads only the catalog and
    /// public reference data, so anyone may ask.
    pub async fn explain(&self, sql: &str) -> Result<PreparedQuery, ServiceError> {
        self.plan(sql, None).await
    }

    /// Plans `sql`, at `epsilon` if given instead of its own; nothing is logged.
    async fn plan(&self, sql: &str, epsilon: Option<f64>) -> Result<PreparedQuery, ServiceError> {
        let engine = self.engine().await?;
        let prepared = match epsilon {
            Some(epsilon) => engine.prepare_with_epsilon(sql, epsilon).await,
            None => engine.prepare(sql).await,
        };
        Ok(prepared?)
    }

    /// `carelens query`: plans, charges, runs and stores `sql` for `caller`.
    pub async fn query(&self, caller: &Caller, sql: &str) -> Result<Released, ServiceError> {
        let prepared = self.prepare(caller, sql).await?;
        self.release(caller, &prepared).await
    }

    /// Charges, runs and stores a query prepared with [`Service::prepare`] — the step a
    /// batch takes for each of its queries once it has shown their total cost. Researchers
    /// spend only through approved requests: their queries on private data are refused
    /// here (and logged at no cost).
    pub async fn release(
        &self,
        caller: &Caller,
        prepared: &PreparedQuery,
    ) -> Result<Released, ServiceError> {
        if !may_spend_openly(caller) && prepared.params().is_some() {
            self.log_rejection(
                caller,
                prepared.sql(),
                prepared.plan_hash(),
                RESEARCHERS_ASK,
            )
            .await?;
            return Err(ServiceError::ResearchersAsk);
        }
        self.answer(caller, prepared, None).await
    }

    /// Whether `caller` may run a batch of queries on private data (researchers may not:
    /// they spend only through requests).
    pub fn may_run_batches(&self, caller: &Caller) -> Result<(), ServiceError> {
        if may_spend_openly(caller) {
            Ok(())
        } else {
            Err(ServiceError::ResearchersAsk)
        }
    }

    /// Whether `caller` may see the operator's views of the service (its metrics): admins
    /// only.
    pub fn may_operate(&self, caller: &Caller, what: &'static str) -> Result<(), ServiceError> {
        if caller.role == Role::Admin {
            Ok(())
        } else {
            Err(ServiceError::AdminsOnly { what })
        }
    }

    /// `carelens budget`: the caller's own budget and the dataset's; every user's for
    /// those who oversee (approvers and admins).
    pub async fn budget(&self, caller: &Caller) -> Result<Vec<BudgetLine>, ServiceError> {
        let scope = (!caller.role.oversees()).then(|| caller.name.clone());
        self.with_ledger(move |ledger| ledger.budget_report(scope.as_deref()))
            .await
    }

    /// The caller's own budget and the dataset's, whatever their role (a batch's report).
    pub async fn own_budget(&self, caller: &Caller) -> Result<Vec<BudgetLine>, ServiceError> {
        let user = caller.name.clone();
        self.with_ledger(move |ledger| ledger.budget_report(Some(&user)))
            .await
    }

    /// `carelens audit verify`: the audit log's hash chain, order and charge/release
    /// pairs, and that it still holds `expect_head` (an entry number and its hash, kept
    /// outside the ledger) if given. Anyone may ask: the answer says nothing about what
    /// was asked.
    pub async fn verify(
        &self,
        expect_head: Option<(i64, String)>,
    ) -> Result<Verification, ServiceError> {
        self.with_ledger(move |ledger| match &expect_head {
            Some((seq, hash)) => ledger.verify_against((*seq, hash)),
            None => ledger.verify(),
        })
        .await
    }

    /// `carelens audit check-release`: whether `bytes` (a release as a caller received it
    /// in the wire format) are exactly a release this ledger stored — its SHA-256 is in a
    /// `released` entry — and whether the log holding that entry is intact. Anyone may
    /// ask: the answer names only the release's id and time, which the bytes carry anyway.
    pub async fn check_release(&self, bytes: &[u8]) -> Result<ReleaseCheck, ServiceError> {
        let result_hash = carelens_ledger::audit::sha256_hex(bytes);
        let hash = result_hash.clone();
        let (entry, log) = self
            .with_ledger(move |ledger| Ok((ledger.released_entry(&hash)?, ledger.verify()?)))
            .await?;
        Ok(ReleaseCheck {
            result_hash,
            released: entry.map(|e| (e.seq, e.at)),
            log,
        })
    }

    /// `carelens audit log`: audit entries from `since` on, of kind `event` if given —
    /// the caller's own, or (for those who oversee) everyone's or those of `of`.
    pub async fn audit_log(
        &self,
        caller: &Caller,
        since: Option<&str>,
        of: Option<&str>,
        event: Option<Event>,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let user = match (of, caller.role.oversees()) {
            (Some(other), true) => Some(other.to_owned()),
            (Some(other), false) if other != caller.name => {
                return Err(ServiceError::OthersEntries);
            }
            (_, true) => None,
            (_, false) => Some(caller.name.clone()),
        };
        let since = since.map(str::to_owned);
        self.with_ledger(move |ledger| {
            ledger.audit_events(since.as_deref(), user.as_deref(), event)
        })
        .await
    }

    /// The protocol: charge (or find the earlier answer, or be refused), run, store.
    async fn answer(
        &self,
        caller: &Caller,
        prepared: &PreparedQuery,
        request: Option<i64>,
    ) -> Result<Released, ServiceError> {
        let data_version = self
            .catalog
            .data_version()
            .map_err(ServiceError::internal)?;
        // Charged only while the files are those the engine checked when it opened.
        if data_version != self.engine().await?.data_version() {
            return Err(ServiceError::ExtractChanged);
        }
        let cache_key = match request {
            None => prepared.cache_key(&data_version),
            // A release under a request stays with it: the same query asked outside the
            // request (or under another) is another question, charged and released afresh
            // — the four-eyes release to one researcher is not anyone's free answer.
            Some(id) => request_key(&prepared.cache_key(&data_version), id),
        };
        let (user, sql, plan_hash) = (
            caller.name.clone(),
            prepared.sql().to_owned(),
            prepared.plan_hash().to_owned(),
        );
        let _turn = self.turn(format!("{user}\u{0}{cache_key}")).await?;
        let charge = prepared.charge();
        let outcome = self
            .with_ledger(move |ledger| {
                let record = QueryRecord {
                    sql: &sql,
                    plan_hash: &plan_hash,
                    cache_key: &cache_key,
                };
                ledger.charge(&user, &record, &charge)
            })
            .await?;
        match outcome {
            ChargeOutcome::Refused(refusal) => Err(ServiceError::OverBudget(refusal)),
            ChargeOutcome::Failed(failure) => Err(ServiceError::FailedBefore(failure)),
            ChargeOutcome::Cached(stored) => answered_again(stored),
            ChargeOutcome::Charged(receipt) => {
                let spent = if receipt.resumed {
                    Amount::default()
                } else {
                    receipt.amount
                };
                let engine = self.engine().await?;
                // The files are checked again after the run: one replaced while the query
                // read it is not what the engine checked at open, so nothing computed from
                // it is released. (The charge stands: the query ran.)
                let result = prepared.execute(engine).await.and_then(|release| {
                    let unchanged = self
                        .catalog
                        .data_version()
                        .is_ok_and(|now| now == engine.data_version());
                    if unchanged {
                        Ok(release)
                    } else {
                        Err(carelens_engine::QueryError::ExtractChangedDuringRun)
                    }
                });
                match result {
                    Ok(release) => self.store(receipt, release, spent).await,
                    Err(e) => {
                        let message = error::failure_message(e);
                        let logged = message.clone();
                        self.with_ledger(move |ledger| ledger.record_error(&receipt, &logged))
                            .await?;
                        Err(ServiceError::FailedAfterCharge { message, spent })
                    }
                }
            }
        }
    }

    /// Stores a release against its receipt, numbered with its ledger id; the answer is
    /// what the ledger stored.
    async fn store(
        &self,
        receipt: Receipt,
        mut release: Release,
        spent: Amount,
    ) -> Result<Released, ServiceError> {
        let stored = self
            .with_ledger(move |ledger| {
                ledger.record_numbered_release(&receipt, |release_seq| {
                    release.release_id = Some(release_seq);
                    wire_bytes(&release)
                })
            })
            .await?;
        Ok(Released {
            spent,
            cached: false,
            ..answered_again(stored)?
        })
    }

    async fn log_rejection(
        &self,
        caller: &Caller,
        sql: &str,
        plan_hash: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let (user, sql, plan_hash, reason) = (
            caller.name.clone(),
            sql.to_owned(),
            plan_hash.to_owned(),
            reason.to_owned(),
        );
        self.with_ledger(move |ledger| ledger.record_rejection(&user, &sql, &plan_hash, &reason))
            .await
    }

    /// Waits until no other ask with `key` runs in this service, and holds the turn.
    async fn turn(&self, key: String) -> Result<Turn<'_>, ServiceError> {
        let gate = {
            let mut gates = self
                .in_flight
                .lock()
                .map_err(|_| ServiceError::Internal("the in-flight lock was poisoned".into()))?;
            Arc::clone(gates.entry(key.clone()).or_default())
        };
        let guard = gate.lock_owned().await;
        Ok(Turn {
            key,
            gates: &self.in_flight,
            guard: Some(guard),
        })
    }

    /// Runs `work` on the ledger off the async runtime.
    async fn with_ledger<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Ledger) -> Result<T, carelens_ledger::LedgerError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let ledger = Arc::clone(&self.ledger);
        blocking(move || {
            let mut ledger = ledger
                .lock()
                .map_err(|_| ServiceError::Internal("the ledger's lock was poisoned".into()))?;
            Ok(work(&mut ledger)?)
        })
        .await?
    }
}

/// The cache key of a release made under request `id`: the query's own key, marked.
fn request_key(query_key: &str, id: i64) -> String {
    format!("{query_key}{REQUEST_MARK}{id}")
}

/// The request a charge was made under, read back from its cache key.
fn request_of_key(cache_key: &str) -> Option<i64> {
    let (_, id) = cache_key.rsplit_once(REQUEST_MARK)?;
    id.parse().ok()
}

/// What [`request_key`] puts between a query's key and the request's id.
const REQUEST_MARK: &str = ":request-";

/// Researchers have no open budget: they spend only through approved requests.
fn may_spend_openly(caller: &Caller) -> bool {
    caller.role != Role::Researcher
}

/// A release in the wire format: pretty-printed JSON and a final newline.
fn wire_bytes(release: &Release) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(release)
        .expect("a release is plain data: serialising it cannot fail");
    bytes.push(b'\n');
    bytes
}

/// A stored release as an answer given again at no cost (`cached`; the caller of a new
/// release overrides `spent` and `cached`).
fn answered_again(stored: StoredRelease) -> Result<Released, ServiceError> {
    let mut release: Release = serde_json::from_slice(&stored.result).map_err(|e| {
        ServiceError::Internal(
            format!("the ledger's stored release is not a carelens result: {e}").into(),
        )
    })?;
    // Releases stored before they carried their id.
    release.release_id.get_or_insert(stored.release_seq);
    Ok(Released {
        release,
        bytes: stored.result,
        spent: Amount::default(),
        cached: true,
    })
}

/// Runs `work` on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Internal(format!("a ledger task stopped: {e}").into()))
}

#[cfg(test)]
mod tests;
