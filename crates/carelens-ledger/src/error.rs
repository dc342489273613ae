//! What can go wrong with the ledger, worded for the person who has to fix it.

use std::path::PathBuf;

/// A ledger error. None of them ever resets or reduces a spent budget: a ledger that
/// cannot be read with confidence is refused, not recreated.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The ledger file exists but is empty: a truncated ledger would otherwise look new.
    #[error(
        "the ledger {path} is an empty file; it may have been truncated. Restore it from a \
         backup — carelens will not start a new ledger over an existing file"
    )]
    Empty {
        /// The ledger file.
        path: PathBuf,
    },
    /// A command that only reads the ledger found none: it never makes one, so a mistyped
    /// path is not mistaken for a fresh, intact ledger with full budgets.
    #[error(
        "there is no ledger at {path}: check the path (--ledger, or `ledger` in the \
         catalog). Commands that only read a ledger never create one; the first query, \
         batch, request or token creates it"
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file is not a SQLite database, or fails SQLite's integrity check.
    #[error(
        "the ledger {path} is damaged ({detail}); restore it from a backup — budgets are \
         never reset"
    )]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// A SQLite database that is not a carelens ledger.
    #[error("{path} is a SQLite database but not a carelens ledger (no ledger format marker)")]
    NotALedger {
        /// The file.
        path: PathBuf,
    },
    /// Written by a newer carelens with a schema this one does not know.
    #[error(
        "the ledger {path} has schema version {found}, newer than this carelens understands \
         ({supported}); upgrade carelens"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build understands.
        supported: i64,
    },
    /// SQLite would not use write-ahead logging (e.g. on a network file system).
    #[error(
        "the ledger {path} cannot use write-ahead logging (journal mode stayed {mode}); keep \
         it on a local disk"
    )]
    NoWal {
        /// The file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The file (or its folder) cannot be written, and the operation needs to write.
    #[error(
        "the ledger {path} is read-only; budgets cannot be charged. Ask the administrator \
         for write access to it and its folder"
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// Another process held the ledger longer than the wait allows.
    #[error(
        "the ledger {path} is locked by another process and stayed locked for {waited_ms} ms; \
         try again"
    )]
    Locked {
        /// The file.
        path: PathBuf,
        /// How long this process waited.
        waited_ms: u128,
    },
    /// A charge with an amount that is not a finite, non-negative number below 10⁶.
    #[error(
        "refusing a charge of epsilon {epsilon}, delta {delta}: not a valid privacy cost \
         (a bug in the caller)"
    )]
    BadCharge {
        /// ε asked for.
        epsilon: f64,
        /// δ asked for.
        delta: f64,
    },
    /// The charge named by a receipt was already released once.
    #[error("the charge in entry {seq} was already released; ask the query again")]
    AlreadyReleased {
        /// The charge entry.
        seq: i64,
    },
    /// The charge named by a receipt already failed: its failure is its outcome.
    #[error(
        "the charge in entry {seq} already failed; its failure is its outcome and is served \
         for the same query at no cost"
    )]
    AlreadyFailed {
        /// The charge entry.
        seq: i64,
    },
    /// This handle already runs the charge an identical query would take up.
    #[error(
        "the charge in entry {seq} for this query is still running on this ledger handle; \
         record its outcome before asking the same query again (a bug in the caller)"
    )]
    AlreadyRunning {
        /// The charge entry.
        seq: i64,
    },
    /// The marks that tell a running charge from a stopped one could not be written.
    #[error(
        "cannot mark a charge as running in {folder}; the folder beside the ledger must be \
         writable, on a local disk"
    )]
    Running {
        /// The folder of the marks.
        folder: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored release does not match its hash or its audit entry.
    #[error(
        "the stored release {release_seq} in {path} does not match its audit entry; it was \
         altered and will not be served. Run `carelens audit verify`"
    )]
    AlteredRelease {
        /// The file.
        path: PathBuf,
        /// The release id.
        release_seq: i64,
    },
    /// The log says a query was released but its stored result is gone: answering it
    /// afresh would release it twice with independent noise (an averaging attack for
    /// whoever deleted it), so nothing is spent.
    #[error(
        "the ledger {path} logs release {release_seq} of this query, but its stored result \
         is gone (the releases table was altered); nothing was run or spent. An admin should \
         run `carelens audit verify` and restore the ledger from a backup"
    )]
    LostRelease {
        /// The file.
        path: PathBuf,
        /// The `released` entry whose result is missing.
        release_seq: i64,
    },
    /// The audit log's hash chain is broken after the last point it was checked: nothing is
    /// spent on a log that may have been altered.
    #[error(
        "the audit log in {path} is broken at entry {seq} ({problem}); nothing was run or \
         spent. An admin should run `carelens audit verify` and restore the ledger from a \
         backup"
    )]
    BrokenChain {
        /// The file.
        path: PathBuf,
        /// The first entry that does not check.
        seq: i64,
        /// What is wrong with it.
        problem: String,
    },
    /// The folder for a new ledger could not be created, or the file could not be opened.
    #[error("cannot open the ledger {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The acting user is not in the catalog.
    #[error(
        "unknown user `{name}`: not listed in the catalog's [[users]]; give a listed name \
         with --user or CARELENS_USER, or ask the dataset's administrator to add you"
    )]
    UnknownUser {
        /// The name given.
        name: String,
    },
    /// The cohort-request workflow refused the action.
    #[error(transparent)]
    Workflow(#[from] crate::ledger::WorkflowRefusal),
    /// No API token has this id.
    #[error("there is no API token {id}; `carelens token list` shows them")]
    UnknownToken {
        /// The id given.
        id: i64,
    },
    /// No stored release has this id.
    #[error("there is no stored release {release_seq} in this ledger")]
    UnknownRelease {
        /// The id given.
        release_seq: i64,
    },
    /// A receipt does not match a charge in this ledger.
    #[error("receipt for entry {seq} does not match a charge in this ledger")]
    BadReceipt {
        /// The entry it names.
        seq: i64,
    },
    /// Any other SQLite failure.
    #[error("ledger {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value could not be encoded or decoded.
    #[error("ledger {path}: a stored value could not be encoded or decoded")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl LedgerError {
    /// Classifies a SQLite error on the ledger at `path`.
    pub(crate) fn sqlite(
        path: &std::path::Path,
        source: rusqlite::Error,
        waited: std::time::Duration,
    ) -> Self {
        use rusqlite::ErrorCode;
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) => LedgerError::Locked {
                path,
                waited_ms: waited.as_millis(),
            },
            Some(ErrorCode::ReadOnly) => LedgerError::ReadOnly { path },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => LedgerError::Corrupt {
                path,
                detail: source.to_string(),
            },
            _ => LedgerError::Sqlite { path, source },
        }
    }
}
