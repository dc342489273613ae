//! The ledger: opening the SQLite file safely, charging budgets, recording releases and
//! serving the release cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

use carelens_catalog::{Catalog, Role};
use carelens_privacy::{Accounting, PrivacyCharge};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde::Serialize;

use crate::amount::{Amount, Spend, ZcdpAmount};
use crate::audit::{self, AuditEntry, Event, NewEntry, Verification};
use crate::error::LedgerError;

mod requests;
mod running;
mod tokens;
mod workflow;

pub use requests::{Decision, Flag, NewRequest, Request, RequestState};
use running::{Mark, Running};
pub use tokens::TokenInfo;
pub use workflow::WorkflowRefusal;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 5;

/// The marker in the `meta` table that says a SQLite file is a carelens ledger.
const FORMAT: &str = "carelens-ledger";

/// The user name of dataset-wide budget entries in the audit log.
pub const DATASET_USER: &str = "*dataset*";

/// Migrations, in order: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE audit (
    seq           INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    user          TEXT NOT NULL,
    role          TEXT NOT NULL,
    event         TEXT NOT NULL,
    sql           TEXT NOT NULL,
    plan_hash     TEXT NOT NULL,
    cache_key     TEXT NOT NULL,
    params        TEXT NOT NULL,
    epsilon_units INTEGER NOT NULL,
    delta_units   INTEGER NOT NULL,
    detail        TEXT NOT NULL,
    result_hash   TEXT NOT NULL,
    refers_to     INTEGER,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_user_event ON audit (user, event);
CREATE INDEX audit_by_refers_to ON audit (refers_to);
CREATE INDEX audit_by_event ON audit (event);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE releases (
    cache_key   TEXT PRIMARY KEY,
    charge_seq  INTEGER NOT NULL UNIQUE,
    release_seq INTEGER NOT NULL,
    result      BLOB NOT NULL,
    result_hash TEXT NOT NULL
) STRICT;

CREATE TRIGGER releases_no_update BEFORE UPDATE ON releases
BEGIN SELECT RAISE(ABORT, 'stored releases are immutable'); END;
CREATE TRIGGER releases_no_delete BEFORE DELETE ON releases
BEGIN SELECT RAISE(ABORT, 'stored releases are immutable'); END;
"#,
    // Version 2: cohort requests, whose state is the sequence of their audit entries (the
    // new event kinds are why older builds must not read this ledger).
    r#"
CREATE INDEX audit_by_refers_to_event ON audit (refers_to, event);
"#,
    // Version 3: a failure after the charge is the question's answer, served again at no
    // cost (`cached_failure` entries); this index finds a question's stored failure. Older
    // builds must not use this ledger: they would take up a failed charge and run it again
    // for free.
    r#"
CREATE INDEX audit_by_cache_key_event ON audit (cache_key, event);
"#,
    // Version 4: API tokens for `carelens serve` (`token_issued` and `token_revoked`
    // entries; the table is the index a call's token is looked up in, by its hash). Older
    // builds must not use this ledger: they do not know the new entries.
    r#"
CREATE TABLE tokens (
    token_hash  TEXT PRIMARY KEY,
    user        TEXT NOT NULL,
    issued_seq  INTEGER NOT NULL UNIQUE,
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_seq INTEGER,
    revoked_at  TEXT
) STRICT;

CREATE TRIGGER tokens_no_delete BEFORE DELETE ON tokens
BEGIN SELECT RAISE(ABORT, 'tokens are kept for the record: revoke one instead'); END;
CREATE TRIGGER tokens_revoke_only BEFORE UPDATE ON tokens
WHEN OLD.revoked_seq IS NOT NULL
  OR NEW.token_hash IS NOT OLD.token_hash OR NEW.user IS NOT OLD.user
  OR NEW.issued_seq IS NOT OLD.issued_seq OR NEW.issued_at IS NOT OLD.issued_at
  OR NEW.expires_at IS NOT OLD.expires_at
BEGIN SELECT RAISE(ABORT, 'a token can only be revoked, once'); END;
"#,
    // Version 5: a charge's cost in approximate zCDP (ρ, and the δ of its parts that are
    // only approximately zCDP) beside its (ε, δ), for budgets composed in zCDP. Earlier
    // charges keep NULL and are read as δ-approximately ε²/2-zCDP from their (ε, δ)
    // (`ZcdpAmount::of_basic`); the log is append-only, so nothing is rewritten. Older
    // builds must not use this ledger: they would neither hash nor count ρ.
    r#"
ALTER TABLE audit ADD COLUMN rho_units INTEGER;
ALTER TABLE audit ADD COLUMN rho_delta_units INTEGER;
"#,
];

/// The budgets the catalog grants: each user's, and the dataset's.
#[derive(Debug, Clone, PartialEq)]
pub struct Budgets {
    /// How every budget composes its charges: basic, or zCDP (the policy's noise decides).
    /// The rule a new ledger records and keeps; an existing ledger keeps its own
    /// ([`Ledger::accounting`]).
    pub accounting: Accounting,
    /// The dataset's total.
    pub dataset: Amount,
    /// Each user: name, role and budget.
    pub users: Vec<(String, Role, Amount)>,
}

impl Budgets {
    /// The budgets in a catalog's `[policy]` and `[[users]]`.
    pub fn from_catalog(catalog: &Catalog) -> Self {
        Budgets {
            accounting: Accounting::for_noise(catalog.policy.noise),
            dataset: Amount::budget(
                catalog.policy.dataset_epsilon.value(),
                catalog.policy.dataset_delta.value(),
            ),
            users: catalog
                .users
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        u.role,
                        Amount::budget(u.epsilon.value(), u.delta.value()),
                    )
                })
                .collect(),
        }
    }

    fn user(&self, name: &str) -> Option<(Role, Amount)> {
        self.users
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, role, budget)| (*role, *budget))
    }
}

/// Maps a SQLite error on this ledger to a [`LedgerError`].
type SqliteErr<'a> = dyn Fn(rusqlite::Error) -> LedgerError + 'a;

/// The largest ε or δ one charge may carry; anything larger is a bug, not a query.
const MAX_CHARGE: f64 = 1e6;

/// How long to wait for another process that holds the ledger.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// An open ledger. One per thread (it holds a SQLite connection); any number of threads
/// and processes may open the same file.
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    budgets: Budgets,
    wait: Duration,
    /// The charges this handle runs (set up by [`Ledger::open`]; read-only handles charge
    /// nothing).
    running: Option<Running>,
    /// Whether this handle created the ledger file.
    created: bool,
}

/// What the engine tells the ledger about a query.
#[derive(Debug, Clone, Copy)]
pub struct QueryRecord<'a> {
    /// The SQL text as written.
    pub sql: &'a str,
    /// Hash of the normalised plan.
    pub plan_hash: &'a str,
    /// The release-cache key: a hash of the normalised plan, the DP parameters and the
    /// data version.
    pub cache_key: &'a str,
}

/// Proof that a query's budget was debited: present it to record the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The `charged` entry.
    pub seq: i64,
    /// Who was charged.
    pub user: String,
    /// The cache key of the query charged.
    pub cache_key: String,
    /// What was debited.
    pub amount: Amount,
    /// Whether this takes up an earlier charge of the same user and query whose process
    /// stopped before its outcome was logged (nothing was debited this time).
    pub resumed: bool,
}

/// Which budget could not cover a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// The user's own budget.
    User,
    /// The dataset's total budget.
    Dataset,
}

/// A charge the budgets could not cover; nothing was debited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the query would cost alone.
    pub requested: Amount,
    /// What was left, as (ε, δ).
    pub remaining: Amount,
    /// Which budget.
    pub which: Which,
    /// Under zCDP accounting, the same in ρ: what the budget is held to.
    pub zcdp: Option<ZcdpRefusal>,
}

/// A refusal under zCDP accounting, in ρ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZcdpRefusal {
    /// What the query would add.
    pub requested: ZcdpAmount,
    /// The ρ left: what the budget holds at its δ, less what is spent.
    pub remaining_rho: i64,
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Which::User => "your budget",
            Which::Dataset => "the dataset's total budget",
        })
    }
}

impl Refusal {
    /// What was asked and what is left: "epsilon 0.5 and delta 0, but your budget has
    /// epsilon 0.2 and delta 0 left", or in ρ under zCDP accounting.
    pub fn shortfall(&self) -> String {
        if let Some(z) = &self.zcdp {
            return format!(
                "rho {} (zCDP; delta {}), but {} has rho {} left (epsilon {} and delta {} \
                 once converted)",
                trim(z.requested.rho_value()),
                trim(z.requested.delta_value()),
                self.which,
                trim(z.remaining_rho as f64 / crate::amount::RHO_UNITS),
                trim(self.remaining.epsilon_value()),
                trim(self.remaining.delta_value()),
            );
        }
        format!(
            "epsilon {} and delta {}, but {} has epsilon {} and delta {} left",
            trim(self.requested.epsilon_value()),
            trim(self.requested.delta_value()),
            self.which,
            trim(self.remaining.epsilon_value()),
            trim(self.remaining.delta_value()),
        )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the query needs {}", self.shortfall())
    }
}

/// A number without float noise in its last digits.
fn trim(x: f64) -> String {
    let s = format!("{x:.12}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A stored release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRelease {
    /// The result as the engine serialised it.
    pub result: Vec<u8>,
    /// SHA-256 of `result`.
    pub result_hash: String,
    /// The `released` entry that first stored it: the release id.
    pub release_seq: i64,
    /// The charge it was paid for.
    pub charge_seq: i64,
}

/// A stored failure: an identical query was charged and failed (or stopped its process
/// twice). The failure is that question's answer, as a release would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFailure {
    /// Why it failed, as logged (the engine's message, which quotes no record values).
    pub message: String,
    /// The charge that paid for the run that failed.
    pub charge_seq: i64,
    /// The `error` entry that logged the failure.
    pub error_seq: i64,
}

/// The outcome of [`Ledger::charge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Debited (or an interrupted charge taken up): run the query, then
    /// [`Ledger::record_release`] or [`Ledger::record_error`].
    Charged(Receipt),
    /// An identical release exists: here it is, at no cost.
    Cached(StoredRelease),
    /// An identical query failed after its charge: that failure is the answer, at no
    /// cost, and the query must not run.
    Failed(StoredFailure),
    /// A budget could not cover it; nothing was debited.
    Refused(Refusal),
}

/// What one try of [`Ledger::charge`] decided inside its transaction.
enum Step {
    /// An outcome, and the mark of a charge this handle now runs (or has just failed).
    Done(ChargeOutcome, Option<Mark>),
    /// The user's charge of this query is running in another handle: wait for it, then
    /// ask again.
    Wait(i64),
}

/// What [`Ledger::charge`] was asked, checked.
#[derive(Clone, Copy)]
struct Asked<'a> {
    user: &'a str,
    role: Role,
    budget: Amount,
    query: &'a QueryRecord<'a>,
    requested: Spend,
    params_json: &'a str,
}

/// The failure logged for a charge taken up once whose process stopped again.
pub const STOPPED_TWICE: &str = "the query stopped the process twice before its outcome was \
     logged (its charge was already taken up once); it is logged as failed and is not run again";

/// The outcome of [`Ledger::check_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCheck {
    /// What the queries not yet released cost together, alone (Σε, Σδ).
    pub total: Amount,
    /// The same in approximate zCDP (Σρ, Σδ): what a zCDP budget is charged.
    pub total_zcdp: ZcdpAmount,
    /// How many distinct queries are not yet released (and are paid for).
    pub new: usize,
    /// How many distinct queries are already released (free).
    pub cached: usize,
    /// How many distinct queries already failed after a charge (their failure is served
    /// again, free).
    pub failed: usize,
    /// Why the batch does not fit, if it does not; then it was logged and must not run.
    pub refusal: Option<Refusal>,
}

/// Spent and remaining budget of one user or of the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetLine {
    /// The user name, or [`DATASET_USER`].
    pub name: String,
    /// Their role (empty for the dataset).
    pub role: String,
    /// The budget granted.
    pub budget: Amount,
    /// Spent so far.
    pub spent: Amount,
    /// Left (never negative, even if the catalog's budget was lowered below the spend).
    pub remaining: Amount,
    /// Under zCDP accounting, the spend in ρ, of which `spent` is the conversion.
    pub zcdp: Option<ZcdpLine>,
    /// Charged queries whose outcome was a failure, and what they cost (included in
    /// `spent`). On the dataset's line only when the report covers every user: `None`
    /// otherwise, as it would tell about other users' queries.
    pub failed: Option<Failures>,
}

/// A budget line in ρ, under zCDP accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ZcdpLine {
    /// Spent: Σρ, and Σδ of the parts only approximately zCDP.
    pub spent: ZcdpAmount,
    /// The ρ the budget holds at what those parts leave of its δ.
    pub capacity_rho: i64,
    /// Left: capacity less spent, never negative.
    pub remaining_rho: i64,
}

impl ZcdpLine {
    fn new(spent: ZcdpAmount, budget: Amount) -> Self {
        let capacity_rho = spent.capacity(budget);
        Self {
            spent,
            capacity_rho,
            remaining_rho: capacity_rho.saturating_sub(spent.rho).max(0),
        }
    }
}

/// Charged queries that failed: how many, and what they cost together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Failures {
    /// How many charges ended in a failure.
    pub count: u64,
    /// What those charges cost alone, added up (Σε, Σδ).
    pub spent: Amount,
    /// The same in ρ (what a zCDP budget was charged for them).
    pub spent_zcdp: ZcdpAmount,
}

impl Ledger {
    /// Opens the ledger at `path`, creating it (and its folder) if there is no file, and
    /// records any change of the catalog's budgets in the audit log.
    ///
    /// An existing file is never replaced: an empty, damaged or foreign file, a newer
    /// schema, or a read-only file is an error.
    pub fn open(path: &Path, budgets: Budgets) -> Result<Self, LedgerError> {
        Self::open_with_wait(path, budgets, DEFAULT_WAIT)
    }

    /// [`Ledger::open`], waiting at most `wait` for other processes holding the file.
    pub fn open_with_wait(
        path: &Path,
        budgets: Budgets,
        wait: Duration,
    ) -> Result<Self, LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        };
        let created = match std::fs::metadata(path) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_new(path)?,
            Err(source) => return Err(open_err(source)),
        };
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if meta.len() == 0 {
            return Err(LedgerError::Empty {
                path: path.to_path_buf(),
            });
        }
        if meta.permissions().readonly() {
            return Err(LedgerError::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut ledger = Self::connect(path, flags, budgets, wait)?;
        // SQLite falls back to read-only when it cannot write the file (another owner).
        if ledger
            .conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| ledger.err(e))?
        {
            return Err(LedgerError::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        ledger.prepare()?;
        ledger.sync_budgets()?;
        ledger.running = Some(Running::beside(path).map_err(open_err)?);
        ledger.created = created;
        Ok(ledger)
    }

    /// Opens an existing ledger for reading only (budgets, audit log, verification): works
    /// on a read-only file, and never writes.
    pub fn open_read_only(path: &Path, budgets: Budgets) -> Result<Self, LedgerError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() == 0 => {
                return Err(LedgerError::Empty {
                    path: path.to_path_buf(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LedgerError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(LedgerError::Open {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let ledger = Self::connect(path, flags, budgets, DEFAULT_WAIT)?;
        ledger.integrity_check()?;
        ledger.check_schema()?;
        ledger.read_older_charges().map_err(|e| ledger.err(e))?;
        let mut ledger = ledger;
        ledger.budgets.accounting =
            ledger_accounting(&ledger.conn, ledger.budgets.accounting, false)
                .map_err(|e| ledger.err(e))?;
        Ok(ledger)
    }

    fn connect(
        path: &Path,
        flags: OpenFlags,
        budgets: Budgets,
        wait: Duration,
    ) -> Result<Self, LedgerError> {
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| LedgerError::sqlite(path, e, wait))?;
        let ledger = Ledger {
            conn,
            path: path.to_path_buf(),
            budgets,
            wait,
            running: None,
            created: false,
        };
        ledger.conn.busy_timeout(wait).map_err(|e| ledger.err(e))?;
        Ok(ledger)
    }

    fn err(&self, e: rusqlite::Error) -> LedgerError {
        LedgerError::sqlite(&self.path, e, self.wait)
    }

    /// How this ledger's budgets compose charges (recorded with the ledger; see
    /// [`Budgets::accounting`] for a new one).
    pub fn accounting(&self) -> Accounting {
        self.budgets.accounting
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether opening it created the file (a new ledger, every budget full).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction — the write lock is taken at the
    /// start, so what `body` reads cannot change before it writes — and commits if `body`
    /// succeeds. `body` gets the transaction and the ledger's SQLite error mapping.
    fn write<T>(
        &mut self,
        body: impl FnOnce(&Transaction<'_>, &SqliteErr<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        transaction(&mut self.conn, &self.path, self.wait, body)
    }

    /// The marks of the charges this handle runs; only a handle opened for writing has them.
    fn running(&mut self) -> Result<&mut Running, LedgerError> {
        self.running.as_mut().ok_or_else(|| LedgerError::ReadOnly {
            path: self.path.clone(),
        })
    }

    /// Integrity check, journal mode, schema version and marker; migrates an older schema.
    fn prepare(&mut self) -> Result<(), LedgerError> {
        self.integrity_check()?;
        // A file that is not a ledger is refused before anything in it changes (switching
        // to WAL would rewrite its header).
        self.check_schema()?;
        // WAL lets readers work while one process charges; FULL makes every committed
        // charge durable before the result is released.
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(LedgerError::NoWal {
                path: self.path.clone(),
                mode,
            });
        }
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| self.err(e))?;
        let (path, wait) = (self.path.clone(), self.wait);
        let e = |err| LedgerError::sqlite(&path, err, wait);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(e)?;
        check_version(&path, version)?;
        migrate(&tx, version).map_err(e)?;
        let accounting = ledger_accounting(&tx, self.budgets.accounting, true).map_err(e)?;
        tx.commit().map_err(e)?;
        self.budgets.accounting = accounting;
        self.check_schema()
    }

    /// A ledger written before schema 5, read without migrating it, has no ρ columns: a
    /// temporary view (this connection's only) shows its log with them empty, as a
    /// migrated ledger's earlier entries are. Nothing is written to the file.
    fn read_older_charges(&self) -> rusqlite::Result<()> {
        let has_rho: bool = self.conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('audit') WHERE name = 'rho_units'",
            [],
            |r| r.get(0),
        )?;
        if !has_rho {
            self.conn.execute_batch(
                "CREATE TEMP VIEW audit AS
                 SELECT *, NULL AS rho_units, NULL AS rho_delta_units, rowid AS rowid
                 FROM main.audit",
            )?;
        }
        Ok(())
    }

    fn integrity_check(&self) -> Result<(), LedgerError> {
        let result: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if result != "ok" {
            return Err(LedgerError::Corrupt {
                path: self.path.clone(),
                detail: result,
            });
        }
        Ok(())
    }

    fn check_schema(&self) -> Result<(), LedgerError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        check_version(&self.path, version)?;
        let format: Option<String> = match self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .optional()
        {
            Ok(f) => f,
            Err(e) if e.to_string().contains("no such table") => None,
            Err(e) => return Err(self.err(e)),
        };
        if format.as_deref() != Some(FORMAT) {
            return Err(LedgerError::NotALedger {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Appends a `budget` entry for every user (and the dataset) whose budget in the
    /// catalog differs from the last one recorded, so budget changes are in the audit log.
    fn sync_budgets(&mut self) -> Result<(), LedgerError> {
        let mut wanted: Vec<(String, String, Amount)> =
            vec![(DATASET_USER.to_owned(), String::new(), self.budgets.dataset)];
        for (name, role, amount) in &self.budgets.users {
            wanted.push((name.clone(), role.as_str().to_owned(), *amount));
        }
        let path = self.path.clone();
        self.write(|tx, e| {
        for (name, role, amount) in wanted {
            let params_json = serde_json::to_string(&BudgetSetting {
                role: &role,
                budget: amount,
            })
            .map_err(|source| LedgerError::Json {
                path: path.clone(),
                source,
            })?;
            let last: Option<String> = tx
                .query_row(
                    "SELECT params FROM audit WHERE event = 'budget' AND user = ?1 ORDER BY seq DESC LIMIT 1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(e)?;
            if last.as_deref() != Some(params_json.as_str()) {
                audit::append(
                    tx,
                    Event::Budget,
                    &NewEntry {
                        user: &name,
                        role: &role,
                        params: &params_json,
                        detail: if last.is_some() {
                            "budget changed in the catalog"
                        } else {
                            "budget granted in the catalog"
                        },
                        ..NewEntry::default()
                    },
                )
                .map_err(e)?;
            }
        }
        Ok(())
        })
    }

    /// The role of a user the catalog lists.
    pub fn role(&self, user: &str) -> Result<Role, LedgerError> {
        self.grant(user).map(|(role, _)| role)
    }

    /// The role and budget the catalog grants `user`.
    fn grant(&self, user: &str) -> Result<(Role, Amount), LedgerError> {
        self.budgets
            .user(user)
            .ok_or_else(|| LedgerError::UnknownUser {
                name: user.to_owned(),
            })
    }

    /// Charges `user` for `charge` — or serves the answer an identical query already has,
    /// or refuses — in one `BEGIN IMMEDIATE` transaction, so concurrent charges can never
    /// overspend either budget. Every outcome is in the audit log when this returns.
    ///
    /// An identical query's answer is its release ([`ChargeOutcome::Cached`]) or, if it
    /// failed after its charge, that failure ([`ChargeOutcome::Failed`]); either is served
    /// to any user at no cost, so asking again never runs a failed query for free.
    ///
    /// If this user has an earlier charge for the same query with no outcome logged: while
    /// another handle runs it, this waits for its outcome and asks again; if its process
    /// stopped, that charge is taken up ([`Receipt::resumed`]) instead of debiting again —
    /// once. A charge already taken up once whose process stopped again is logged as
    /// failed (the query stopped the process twice), and that failure is its answer.
    ///
    /// Keep this handle until the charge's outcome is recorded with
    /// [`Ledger::record_release`] or [`Ledger::record_error`]: it holds the mark that says
    /// the charge is running.
    pub fn charge(
        &mut self,
        user: &str,
        query: &QueryRecord<'_>,
        charge: &PrivacyCharge,
    ) -> Result<ChargeOutcome, LedgerError> {
        let (role, budget) = self.grant(user)?;
        let valid = |x: f64| x.is_finite() && (0.0..=MAX_CHARGE).contains(&x);
        if !valid(charge.epsilon()) || !valid(charge.delta()) {
            return Err(LedgerError::BadCharge {
                epsilon: charge.epsilon(),
                delta: charge.delta(),
            });
        }
        let zcdp = charge.zcdp();
        if !valid(zcdp.rho) || !valid(zcdp.delta) {
            return Err(LedgerError::BadCharge {
                epsilon: charge.epsilon(),
                delta: charge.delta(),
            });
        }
        let requested = Spend {
            basic: Amount::charge(charge.epsilon(), charge.delta()),
            zcdp: ZcdpAmount::charge(zcdp),
        };
        let params_json = serde_json::to_string(charge).map_err(|source| LedgerError::Json {
            path: self.path.clone(),
            source,
        })?;
        let asked = Asked {
            user,
            role,
            budget,
            query,
            requested,
            params_json: &params_json,
        };
        loop {
            match self.charge_step(&asked)? {
                Step::Done(outcome, mark) => {
                    if let Some(mark) = mark {
                        let running = self.running()?;
                        running.keep(mark);
                        if let ChargeOutcome::Failed(failure) = &outcome {
                            running.finish(failure.charge_seq);
                        }
                    }
                    return Ok(outcome);
                }
                Step::Wait(seq) => {
                    let running = self.running()?;
                    running
                        .wait_for(seq)
                        .map_err(|source| LedgerError::Running {
                            folder: running.folder().to_path_buf(),
                            source,
                        })?;
                }
            }
        }
    }

    /// One try of [`Ledger::charge`]: everything it decides, in one transaction.
    fn charge_step(&mut self, asked: &Asked<'_>) -> Result<Step, LedgerError> {
        let Asked {
            user,
            role,
            budget,
            query,
            requested,
            params_json,
        } = *asked;
        let dataset_budget = self.budgets.dataset;
        let accounting = self.budgets.accounting;
        let running = self.running.as_ref().ok_or_else(|| LedgerError::ReadOnly {
            path: self.path.clone(),
        })?;
        let path = &self.path;
        let mark_err = |source| LedgerError::Running {
            folder: running.folder().to_path_buf(),
            source,
        };
        transaction(&mut self.conn, path, self.wait, |tx, e| {
            let entry = |epsilon_units, delta_units, detail, refers_to| NewEntry {
                user,
                role: role.as_str(),
                sql: query.sql,
                plan_hash: query.plan_hash,
                cache_key: query.cache_key,
                params: params_json,
                epsilon_units,
                delta_units,
                zcdp: None,
                detail,
                result_hash: "",
                refers_to,
            };

            if let Some(stored) = self_check(stored_release(tx, query.cache_key).map_err(e)?, path)?
            {
                let new = entry(
                    0,
                    0,
                    "identical to an earlier release",
                    Some(stored.release_seq),
                );
                audit::append(tx, Event::Cached, &new).map_err(e)?;
                return Ok(Step::Done(ChargeOutcome::Cached(stored), None));
            }

            // No stored result, but the log says it was released: the result was deleted.
            let lost: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM audit WHERE cache_key = ?1 AND event = 'released'
                     ORDER BY seq LIMIT 1",
                    params![query.cache_key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(e)?;
            if let Some(release_seq) = lost {
                return Err(LedgerError::LostRelease {
                    path: path.clone(),
                    release_seq,
                });
            }
            audit::verify_since_checkpoint(tx)
                .map_err(e)?
                .map_or(Ok(()), |(seq, problem)| {
                    Err(LedgerError::BrokenChain {
                        path: path.clone(),
                        seq,
                        problem,
                    })
                })?;

            if let Some(failure) = stored_failure(tx, query.cache_key).map_err(e)? {
                let detail = format!(
                    "identical to an earlier query that failed after its charge (entry {}): \
                     that failure is served, and the query is not run again",
                    failure.error_seq
                );
                let new = entry(0, 0, &detail, Some(failure.error_seq));
                audit::append(tx, Event::CachedFailure, &new).map_err(e)?;
                return Ok(Step::Done(ChargeOutcome::Failed(failure), None));
            }

            let orphan: Option<(i64, i64, i64)> = tx
                .query_row(
                    "SELECT c.seq, c.epsilon_units, c.delta_units FROM audit c
                     WHERE c.event = 'charged' AND c.user = ?1 AND c.cache_key = ?2
                       AND c.params = ?3
                       AND NOT EXISTS (SELECT 1 FROM audit r WHERE r.refers_to = c.seq
                                       AND r.event IN ('released', 'error'))
                     ORDER BY c.seq DESC LIMIT 1",
                    params![user, query.cache_key, params_json],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(e)?;
            if let Some((seq, epsilon, delta)) = orphan {
                if running.holds(seq) {
                    return Err(LedgerError::AlreadyRunning { seq });
                }
                let Some(mark) = running.try_take(seq).map_err(mark_err)? else {
                    return Ok(Step::Wait(seq));
                };
                // Nobody runs it: its process stopped before logging an outcome.
                let taken_up_before = audit::follow_ups(tx, seq, &[Event::Resumed])
                    .map_err(e)?
                    .len();
                if taken_up_before > 0 {
                    let failed =
                        audit::append(tx, Event::Error, &entry(0, 0, STOPPED_TWICE, Some(seq)))
                            .map_err(e)?;
                    let failure = StoredFailure {
                        message: STOPPED_TWICE.to_owned(),
                        charge_seq: seq,
                        error_seq: failed.seq,
                    };
                    return Ok(Step::Done(ChargeOutcome::Failed(failure), Some(mark)));
                }
                let new = entry(
                    0,
                    0,
                    "takes up a charge of the same query whose process stopped before its \
                     outcome was logged",
                    Some(seq),
                );
                audit::append(tx, Event::Resumed, &new).map_err(e)?;
                let receipt = Receipt {
                    seq,
                    user: user.to_owned(),
                    cache_key: query.cache_key.to_owned(),
                    amount: Amount { epsilon, delta },
                    resumed: true,
                };
                return Ok(Step::Done(ChargeOutcome::Charged(receipt), Some(mark)));
            }

            let limits = Limits {
                accounting,
                user,
                budget,
                dataset_budget,
            };
            let refusal = uncovered(tx, &limits, requested).map_err(e)?;
            if let Some(refusal) = refusal {
                let detail = refusal.to_string();
                let new = entry(0, 0, &detail, None);
                audit::append(tx, Event::Refused, &new).map_err(e)?;
                return Ok(Step::Done(ChargeOutcome::Refused(refusal), None));
            }
            let new = NewEntry {
                zcdp: Some(requested.zcdp),
                ..entry(requested.basic.epsilon, requested.basic.delta, "", None)
            };
            let charged = audit::append(tx, Event::Charged, &new).map_err(e)?;
            let mark = running
                .try_take(charged.seq)
                .map_err(mark_err)?
                .ok_or_else(|| {
                    mark_err(std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        format!(
                            "the mark of the new charge {} is held elsewhere",
                            charged.seq
                        ),
                    ))
                })?;
            let receipt = Receipt {
                seq: charged.seq,
                user: user.to_owned(),
                cache_key: query.cache_key.to_owned(),
                amount: requested.basic,
                resumed: false,
            };
            Ok(Step::Done(ChargeOutcome::Charged(receipt), Some(mark)))
        })
    }

    /// Checks, before a batch runs, that `user`'s budget and the dataset's can cover every
    /// query of it that is not already answered (a release, or a failure after its charge,
    /// is served again for free; a query twice in the batch is paid once). A batch that
    /// does not fit is logged as one `refused` entry naming its queries; nothing is debited
    /// either way.
    ///
    /// This is a check, not a reservation: each query is still charged on its own when it
    /// runs, so a concurrent spender can make a later query of the batch be refused.
    pub fn check_batch(
        &mut self,
        user: &str,
        queries: &[(QueryRecord<'_>, &PrivacyCharge)],
    ) -> Result<BatchCheck, LedgerError> {
        let (role, budget) = self.grant(user)?;
        let limits = Limits {
            accounting: self.budgets.accounting,
            user,
            budget,
            dataset_budget: self.budgets.dataset,
        };
        let path = self.path.clone();
        self.write(|tx, e| {
            let mut seen = std::collections::HashSet::new();
            let mut total = Spend::default();
            let (mut new, mut cached, mut failed) = (0, 0, 0);
            for (query, charge) in queries {
                if !seen.insert(query.cache_key) {
                    continue;
                }
                if self_check(stored_release(tx, query.cache_key).map_err(e)?, &path)?.is_some() {
                    cached += 1;
                } else if stored_failure(tx, query.cache_key).map_err(e)?.is_some() {
                    failed += 1;
                } else {
                    new += 1;
                    total = total.plus(Spend {
                        basic: Amount::charge(charge.epsilon(), charge.delta()),
                        zcdp: ZcdpAmount::charge(charge.zcdp()),
                    });
                }
            }
            // A batch that costs nothing is never refused (a budget lowered below what was
            // spent still lets released answers be fetched).
            let refusal = if new == 0 {
                None
            } else {
                uncovered(tx, &limits, total).map_err(e)?
            };
            if let Some(refusal) = &refusal {
                let sql: Vec<&str> = queries.iter().map(|(q, _)| q.sql).collect();
                let detail = format!(
                    "batch of {} queries refused before running: {refusal}",
                    queries.len()
                );
                let entry = NewEntry {
                    user,
                    role: role.as_str(),
                    sql: &sql.join("\n;\n"),
                    detail: &detail,
                    ..NewEntry::default()
                };
                audit::append(tx, Event::Refused, &entry).map_err(e)?;
            }
            Ok(BatchCheck {
                total: total.basic,
                total_zcdp: total.zcdp,
                new,
                cached,
                failed,
                refusal,
            })
        })
    }

    /// Stores the result of a charged query and logs its release. Returns the release to
    /// hand out: this one, or — if an identical query was released meanwhile — that one,
    /// so that the same question always gets the same answer.
    pub fn record_release(
        &mut self,
        receipt: &Receipt,
        result: &[u8],
    ) -> Result<StoredRelease, LedgerError> {
        self.record_numbered_release(receipt, |_| result.to_vec())
    }

    /// [`Ledger::record_release`] of the bytes `result` makes from the release's id (the
    /// sequence number its `released` entry gets), so that the stored bytes — whose
    /// SHA-256 the entry holds — can carry their own id. `result` is called only if the
    /// release is new.
    pub fn record_numbered_release(
        &mut self,
        receipt: &Receipt,
        result: impl FnOnce(i64) -> Vec<u8>,
    ) -> Result<StoredRelease, LedgerError> {
        let path = self.path.clone();
        let stored = self.write(|tx, e| {
            let charge = charge_for(tx, receipt, e)?;
            let base = NewEntry {
                user: &charge.user,
                role: &charge.role,
                sql: &charge.sql,
                plan_hash: &charge.plan_hash,
                cache_key: &charge.cache_key,
                params: &charge.params,
                ..NewEntry::default()
            };
            let stored = stored_release(tx, &charge.cache_key).map_err(e)?;
            if let Some(stored) = self_check(stored, &path)? {
                let served = NewEntry {
                    detail: "identical to an earlier release",
                    refers_to: Some(stored.release_seq),
                    ..base
                };
                audit::append(tx, Event::Cached, &served).map_err(e)?;
                return Ok(stored);
            }
            no_outcome_yet(tx, charge.seq, e)?;
            let release_seq = audit::next_seq(tx).map_err(e)?;
            let result = result(release_seq);
            let result_hash = audit::sha256_hex(&result);
            let release = NewEntry {
                result_hash: &result_hash,
                refers_to: Some(charge.seq),
                ..base
            };
            let released = audit::append(tx, Event::Released, &release).map_err(e)?;
            debug_assert_eq!(
                released.seq, release_seq,
                "one writer inside the transaction"
            );
            tx.execute(
                "INSERT INTO releases (cache_key, charge_seq, release_seq, result, result_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    charge.cache_key,
                    charge.seq,
                    released.seq,
                    result,
                    result_hash
                ],
            )
            .map_err(e)?;
            Ok(StoredRelease {
                result,
                result_hash,
                release_seq: released.seq,
                charge_seq: charge.seq,
            })
        })?;
        self.running()?.finish(receipt.seq);
        Ok(stored)
    }

    /// Logs that a charged query failed before release. The budget stays spent, and the
    /// failure is the query's outcome: asking the same query again (any user, same cache
    /// key) is answered with it at no cost ([`ChargeOutcome::Failed`]) and never runs it.
    /// `message` is shown to whoever asks again, so it must quote no record values.
    pub fn record_error(&mut self, receipt: &Receipt, message: &str) -> Result<(), LedgerError> {
        self.write(|tx, e| {
            let charge = charge_for(tx, receipt, e)?;
            no_outcome_yet(tx, charge.seq, e)?;
            let failure = NewEntry {
                user: &charge.user,
                role: &charge.role,
                sql: &charge.sql,
                plan_hash: &charge.plan_hash,
                cache_key: &charge.cache_key,
                params: &charge.params,
                detail: message,
                refers_to: Some(charge.seq),
                ..NewEntry::default()
            };
            audit::append(tx, Event::Error, &failure).map_err(e)?;
            Ok(())
        })?;
        self.running()?.finish(receipt.seq);
        Ok(())
    }

    /// Logs a query the privacy analysis or the policy rejected. Costs nothing.
    pub fn record_rejection(
        &mut self,
        user: &str,
        sql: &str,
        plan_hash: &str,
        reason: &str,
    ) -> Result<(), LedgerError> {
        let role = self.role(user)?;
        self.write(|tx, e| {
            let rejection = NewEntry {
                user,
                role: role.as_str(),
                sql,
                plan_hash,
                detail: reason,
                ..NewEntry::default()
            };
            audit::append(tx, Event::Rejected, &rejection).map_err(e)?;
            Ok(())
        })
    }

    /// Spent and remaining budget of `user`, or of every user when `None`, with the
    /// charged queries that failed; the dataset's line comes first.
    pub fn budget_report(&self, user: Option<&str>) -> Result<Vec<BudgetLine>, LedgerError> {
        let e = |err| self.err(err);
        let accounting = self.budgets.accounting;
        let zcdp_line = |spent: Spend, budget: Amount| match accounting {
            Accounting::Basic => None,
            Accounting::Zcdp => Some(ZcdpLine::new(spent.zcdp, budget)),
        };
        let dataset_spent = spent(&self.conn, None).map_err(e)?;
        let dataset_shown = dataset_spent.against(accounting, self.budgets.dataset);
        let dataset_failed = match user {
            None => Some(failures(&self.conn, None).map_err(e)?),
            Some(_) => None,
        };
        let mut lines = vec![BudgetLine {
            name: DATASET_USER.to_owned(),
            role: String::new(),
            budget: self.budgets.dataset,
            spent: dataset_shown,
            remaining: self.budgets.dataset.minus(dataset_shown),
            zcdp: zcdp_line(dataset_spent, self.budgets.dataset),
            failed: dataset_failed,
        }];
        for (name, role, budget) in &self.budgets.users {
            if user.is_some_and(|u| u != name) {
                continue;
            }
            let s = spent(&self.conn, Some(name)).map_err(e)?;
            let shown = s.against(accounting, *budget);
            lines.push(BudgetLine {
                name: name.clone(),
                role: role.as_str().to_owned(),
                budget: *budget,
                spent: shown,
                remaining: budget.minus(shown),
                zcdp: zcdp_line(s, *budget),
                failed: Some(failures(&self.conn, Some(name)).map_err(e)?),
            });
        }
        if let Some(u) = user
            && lines.len() == 1
        {
            return Err(LedgerError::UnknownUser { name: u.to_owned() });
        }
        Ok(lines)
    }

    /// The audit log, optionally from a date (`2026-11-26` or a full RFC 3339 time) and for
    /// one user.
    pub fn audit_log(
        &self,
        since: Option<&str>,
        user: Option<&str>,
    ) -> Result<Vec<AuditEntry>, LedgerError> {
        self.audit_events(since, user, None)
    }

    /// [`Ledger::audit_log`], only the entries of kind `event` when given (e.g.
    /// [`Event::Error`]: the queries that failed after their charge).
    pub fn audit_events(
        &self,
        since: Option<&str>,
        user: Option<&str>,
        event: Option<Event>,
    ) -> Result<Vec<AuditEntry>, LedgerError> {
        audit::entries(&self.conn, since, user, event).map_err(|e| self.err(e))
    }

    /// The number of entries in the audit log (its last entry's sequence number).
    pub fn log_length(&self) -> Result<i64, LedgerError> {
        Ok(audit::next_seq(&self.conn).map_err(|e| self.err(e))? - 1)
    }

    /// The `released` entry of the stored release whose bytes hash to `result_hash`
    /// (SHA-256, lowercase hex), if this ledger holds one.
    pub fn released_entry(&self, result_hash: &str) -> Result<Option<AuditEntry>, LedgerError> {
        let e = |err| self.err(err);
        let seq: Option<i64> = self
            .conn
            .query_row(
                "SELECT release_seq FROM releases WHERE result_hash = ?1",
                params![result_hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        match seq {
            Some(seq) => audit::entry_at(&self.conn, seq).map_err(e),
            None => Ok(None),
        }
    }

    /// Checks the whole audit log (see [`crate::audit`]).
    pub fn verify(&self) -> Result<Verification, LedgerError> {
        audit::verify(&self.conn, None).map_err(|e| self.err(e))
    }

    /// [`Ledger::verify`], and also that the log still holds `head` (sequence number and
    /// hash), recorded earlier outside the ledger.
    pub fn verify_against(&self, head: (i64, &str)) -> Result<Verification, LedgerError> {
        audit::verify(&self.conn, Some(head)).map_err(|e| self.err(e))
    }
}

/// Runs `body` in one `BEGIN IMMEDIATE` transaction on `conn` (see [`Ledger::write`]).
fn transaction<T>(
    conn: &mut Connection,
    path: &Path,
    wait: Duration,
    body: impl FnOnce(&Transaction<'_>, &SqliteErr<'_>) -> Result<T, LedgerError>,
) -> Result<T, LedgerError> {
    let e = move |err| LedgerError::sqlite(path, err, wait);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(e)?;
    let out = body(&tx, &e)?;
    tx.commit().map_err(e)?;
    Ok(out)
}

#[derive(Serialize)]
struct BudgetSetting<'a> {
    role: &'a str,
    budget: Amount,
}

/// The `charged` entry a receipt names, if it matches the receipt's user and query.
fn charge_for(
    tx: &Transaction<'_>,
    receipt: &Receipt,
    e: &SqliteErr<'_>,
) -> Result<AuditEntry, LedgerError> {
    audit::entry_at(tx, receipt.seq)
        .map_err(e)?
        .filter(|c| {
            c.event == Event::Charged && c.user == receipt.user && c.cache_key == receipt.cache_key
        })
        .ok_or(LedgerError::BadReceipt { seq: receipt.seq })
}

/// Refuses a second outcome for the charge `seq`: a charge is released once or fails once.
fn no_outcome_yet(tx: &Transaction<'_>, seq: i64, e: &SqliteErr<'_>) -> Result<(), LedgerError> {
    let outcome = audit::follow_ups(tx, seq, &[Event::Released, Event::Error]).map_err(e)?;
    match outcome.first().map(|o| o.event) {
        Some(Event::Released) => Err(LedgerError::AlreadyReleased { seq }),
        Some(_) => Err(LedgerError::AlreadyFailed { seq }),
        None => Ok(()),
    }
}

/// The first failure logged for a query with this cache key, if any.
fn stored_failure(conn: &Connection, cache_key: &str) -> rusqlite::Result<Option<StoredFailure>> {
    conn.query_row(
        "SELECT seq, refers_to, detail FROM audit
         WHERE cache_key = ?1 AND event = 'error' AND refers_to IS NOT NULL
         ORDER BY seq LIMIT 1",
        params![cache_key],
        |r| {
            Ok(StoredFailure {
                error_seq: r.get(0)?,
                charge_seq: r.get(1)?,
                message: r.get(2)?,
            })
        },
    )
    .optional()
}

/// The charges of `user` (or everyone's when `None`) whose outcome is a failure.
fn failures(conn: &Connection, user: Option<&str>) -> rusqlite::Result<Failures> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.epsilon_units, c.delta_units, c.rho_units, c.rho_delta_units
         FROM audit c
         WHERE c.event = 'charged' AND (?1 IS NULL OR c.user = ?1)
           AND EXISTS (SELECT 1 FROM audit f WHERE f.refers_to = c.seq AND f.event = 'error')
           AND NOT EXISTS (SELECT 1 FROM audit r WHERE r.refers_to = c.seq AND r.event = 'released')",
    )?;
    let (count, total) = add_up(&mut stmt.query(params![user])?)?;
    Ok(Failures {
        count,
        spent: total.basic,
        spent_zcdp: total.zcdp,
    })
}

/// The budgets a charge must fit, and how they compose.
struct Limits<'a> {
    accounting: Accounting,
    user: &'a str,
    budget: Amount,
    dataset_budget: Amount,
}

/// Why the user's budget or the dataset's cannot cover `requested` on top of what is
/// spent, if either cannot, under the accounting of `limits`. A process started with an
/// older catalog must not spend beyond a budget another process has since logged as
/// lowered: the smaller of the two is used.
fn uncovered(
    conn: &Connection,
    limits: &Limits<'_>,
    requested: Spend,
) -> rusqlite::Result<Option<Refusal>> {
    let budget = lower(limits.budget, logged_budget(conn, limits.user)?);
    let dataset_budget = lower(limits.dataset_budget, logged_budget(conn, DATASET_USER)?);
    let user_spent = spent(conn, Some(limits.user))?;
    let dataset_spent = spent(conn, None)?;
    let refusal = |spent: Spend, budget: Amount, which: Which| {
        let after = spent.plus(requested).against(limits.accounting, budget);
        if after.fits(budget) {
            return None;
        }
        let zcdp = match limits.accounting {
            Accounting::Basic => None,
            Accounting::Zcdp => Some(ZcdpRefusal {
                requested: requested.zcdp,
                remaining_rho: ZcdpLine::new(spent.zcdp, budget).remaining_rho,
            }),
        };
        Some(Refusal {
            requested: requested.basic,
            remaining: budget.minus(spent.against(limits.accounting, budget)),
            which,
            zcdp,
        })
    };
    Ok(refusal(user_spent, budget, Which::User)
        .or_else(|| refusal(dataset_spent, dataset_budget, Which::Dataset)))
}

/// Counts and adds up charges (rows of ε, δ, ρ and ρ's δ units), in both forms. A charge
/// logged before schema 5 has no ρ and is read from its (ε, δ) ([`ZcdpAmount::of_basic`]).
fn add_up(rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<(u64, Spend)> {
    let mut count = 0;
    let mut total = Spend::default();
    while let Some(r) = rows.next()? {
        let spend = Spend::of_logged(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        count += 1;
        total = total.plus(spend);
    }
    Ok((count, total))
}

/// Total debited to `user` (or to everyone when `None`).
fn spent(conn: &Connection, user: Option<&str>) -> rusqlite::Result<Spend> {
    let mut stmt = conn.prepare_cached(
        "SELECT epsilon_units, delta_units, rho_units, rho_delta_units FROM audit
         WHERE event = 'charged' AND (?1 IS NULL OR user = ?1)",
    )?;
    Ok(add_up(&mut stmt.query(params![user])?)?.1)
}

/// The budget last logged for `name` (a user or [`DATASET_USER`]), if any.
fn logged_budget(conn: &Connection, name: &str) -> rusqlite::Result<Option<Amount>> {
    let params_json: Option<String> = conn
        .query_row(
            "SELECT params FROM audit WHERE user = ?1 AND event = 'budget' ORDER BY seq DESC LIMIT 1",
            params![name],
            |r| r.get(0),
        )
        .optional()?;
    Ok(params_json
        .and_then(|p| serde_json::from_str::<StoredBudget>(&p).ok())
        .map(|b| b.budget))
}

#[derive(serde::Deserialize)]
struct StoredBudget {
    budget: Amount,
}

fn lower(a: Amount, b: Option<Amount>) -> Amount {
    match b {
        Some(b) => Amount {
            epsilon: a.epsilon.min(b.epsilon),
            delta: a.delta.min(b.delta),
        },
        None => a,
    }
}

/// A stored release, and whether it is intact: its result hashes to the hash of its
/// `released` audit entry, which names its charge and cache key.
fn self_check(
    found: Option<(StoredRelease, bool)>,
    path: &Path,
) -> Result<Option<StoredRelease>, LedgerError> {
    match found {
        None => Ok(None),
        Some((stored, true)) => Ok(Some(stored)),
        Some((stored, false)) => Err(LedgerError::AlteredRelease {
            path: path.to_path_buf(),
            release_seq: stored.release_seq,
        }),
    }
}

/// The stored release whose `released` entry is `release_seq`, checked intact.
fn stored_release_at(
    conn: &Connection,
    release_seq: i64,
    path: &Path,
    e: &SqliteErr<'_>,
) -> Result<StoredRelease, LedgerError> {
    let cache_key: Option<String> = conn
        .query_row(
            "SELECT cache_key FROM releases WHERE release_seq = ?1",
            params![release_seq],
            |r| r.get(0),
        )
        .optional()
        .map_err(e)?;
    let found = match &cache_key {
        Some(key) => stored_release(conn, key).map_err(e)?,
        None => None,
    };
    match found {
        Some((stored, true)) if stored.release_seq == release_seq => Ok(stored),
        Some((stored, _)) => Err(LedgerError::AlteredRelease {
            path: path.to_path_buf(),
            release_seq: stored.release_seq,
        }),
        None => Err(LedgerError::UnknownRelease { release_seq }),
    }
}

fn stored_release(
    conn: &Connection,
    cache_key: &str,
) -> rusqlite::Result<Option<(StoredRelease, bool)>> {
    let found = conn
        .query_row(
            "SELECT r.result, r.result_hash, r.release_seq, r.charge_seq,
                    a.event = 'released' AND a.refers_to = r.charge_seq
                    AND a.cache_key = r.cache_key AND a.result_hash = r.result_hash
             FROM releases r LEFT JOIN audit a ON a.seq = r.release_seq
             WHERE r.cache_key = ?1",
            params![cache_key],
            |r| {
                Ok((
                    StoredRelease {
                        result: r.get(0)?,
                        result_hash: r.get(1)?,
                        release_seq: r.get(2)?,
                        charge_seq: r.get(3)?,
                    },
                    r.get::<_, Option<bool>>(4)?.unwrap_or(false),
                ))
            },
        )
        .optional()?;
    Ok(found.map(|(stored, linked)| {
        let intact = linked && audit::sha256_hex(&stored.result) == stored.result_hash;
        (stored, intact)
    }))
}

/// Refuses schema versions this build cannot read: newer ones, negative ones, and 0 (every
/// ledger this code creates starts at version 1, so a version-0 file is not a ledger).
fn check_version(path: &Path, version: i64) -> Result<(), LedgerError> {
    if version > SCHEMA_VERSION {
        return Err(LedgerError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 0 {
        return Err(LedgerError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("schema version {version}"),
        });
    }
    if version == 0 {
        return Err(LedgerError::NotALedger {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// How this ledger's budgets compose its charges: fixed for the ledger's life, and recorded
/// in its `meta` table (`accounting`). A ledger without the record takes `preferred` (the
/// catalog's, from its noise) if it has no charge yet, and basic composition otherwise —
/// its charges were admitted that way (schema 4 and older knew no other). With `record`
/// (a handle that may write, inside its transaction) the choice is written.
///
/// A catalog that changes its noise later changes the noise, not the rule: mixing rules
/// within one log would not be a privacy filter (docs/privacy.md). Every charge is both
/// (ε, δ)-DP and approximately zCDP, so either rule counts any charge truly.
fn ledger_accounting(
    conn: &Connection,
    preferred: Accounting,
    record: bool,
) -> rusqlite::Result<Accounting> {
    let recorded: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'accounting'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match recorded.as_deref() {
        Some("basic") => return Ok(Accounting::Basic),
        Some("zcdp") => return Ok(Accounting::Zcdp),
        Some(other) => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown accounting {other:?} in the ledger's meta table").into(),
            ));
        }
        None => {}
    }
    let charged: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM audit WHERE event = 'charged')",
        [],
        |r| r.get(0),
    )?;
    let accounting = if charged {
        Accounting::Basic
    } else {
        preferred
    };
    if record {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('accounting', ?1)",
            params![match accounting {
                Accounting::Basic => "basic",
                Accounting::Zcdp => "zcdp",
            }],
        )?;
    }
    Ok(accounting)
}

/// Runs the migrations from schema `version` to [`SCHEMA_VERSION`].
fn migrate(conn: &Connection, version: i64) -> rusqlite::Result<()> {
    let from = usize::try_from(version).unwrap_or(0);
    for (step, migration) in MIGRATIONS.iter().enumerate().skip(from) {
        conn.execute_batch(migration)?;
        if step == 0 {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('format', ?1), ('created', ?2)",
                params![FORMAT, chrono::Utc::now().to_rfc3339()],
            )?;
        }
        conn.pragma_update(None, "user_version", step as i64 + 1)?;
    }
    Ok(())
}

/// Creates a new ledger at `path` atomically: the schema is written to a temporary file in
/// the same folder, which is then hard-linked into place. Another process never sees a
/// half-made ledger (an empty file would look like a truncated one), and if two processes
/// create it at once, one wins and the other uses it. Whether this one made it.
fn create_new(path: &Path) -> Result<bool, LedgerError> {
    let open_err = |source| LedgerError::Open {
        path: path.to_path_buf(),
        source,
    };
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(open_err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = folder.join(format!(".{name}.new-{}-{nanos}", std::process::id()));
    let built = (|| -> rusqlite::Result<()> {
        let mut conn = Connection::open_with_flags(
            &temp,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        let tx = conn.transaction()?;
        migrate(&tx, 0)?;
        tx.commit()
    })();
    let linked = built
        .map_err(|e| LedgerError::sqlite(path, e, Duration::ZERO))
        .and_then(|()| match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(true),
            // Another process made it first: this one uses theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(open_err(e)),
        });
    let _ = std::fs::remove_file(&temp);
    linked
}
