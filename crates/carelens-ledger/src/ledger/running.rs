//! Which charges are running now.
//!
//! A charge with no outcome in the log (no `released` or `error` entry) is either still
//! running somewhere or its process stopped (killed, power cut) before logging one. The log
//! cannot tell the two apart, and they need different answers: a second ask of a running
//! query should wait for its answer, and only a stopped one may be taken up (`resumed`).
//!
//! So the handle that runs a charge holds an exclusive advisory lock (`flock`) on a file
//! named after it, in a folder beside the ledger (`ledger.sqlite-running/charge-17`), from
//! the transaction that charges or takes it up until its outcome is logged. The operating
//! system drops the lock however the process ends, so a file nobody holds means a stopped
//! process. Locks are per open file, so two handles in one process exclude each other too.
//!
//! Marks are taken inside the ledger's `BEGIN IMMEDIATE` transaction, so two askers never
//! both find a charge stopped and take it up; waiting happens outside it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The marks this ledger handle holds, and where marks live.
#[derive(Debug)]
pub(super) struct Running {
    folder: PathBuf,
    held: HashMap<i64, File>,
}

/// A mark taken in a transaction, kept by [`Running::keep`] once it commits (dropped,
/// and so released, if it does not).
#[derive(Debug)]
pub(super) struct Mark {
    seq: i64,
    file: File,
}

impl Running {
    /// Marks for the ledger at `ledger` (an existing file: its canonical path names the
    /// folder, so every process finds the same one however it spells the path).
    pub(super) fn beside(ledger: &Path) -> io::Result<Self> {
        let ledger = std::fs::canonicalize(ledger)?;
        let name = ledger
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Running {
            folder: ledger.with_file_name(format!("{name}-running")),
            held: HashMap::new(),
        })
    }

    /// The folder of the marks (for error messages).
    pub(super) fn folder(&self) -> &Path {
        &self.folder
    }

    fn file(&self, seq: i64) -> PathBuf {
        self.folder.join(format!("charge-{seq}"))
    }

    /// Whether this handle itself runs charge `seq`.
    pub(super) fn holds(&self, seq: i64) -> bool {
        self.held.contains_key(&seq)
    }

    /// The mark of charge `seq`, if nobody holds it; `None` while another handle (in this
    /// process or another) runs it.
    pub(super) fn try_take(&self, seq: i64) -> io::Result<Option<Mark>> {
        std::fs::create_dir_all(&self.folder)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.file(seq))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Mark { seq, file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Keeps a mark taken in a transaction that has committed, until [`Running::finish`].
    pub(super) fn keep(&mut self, mark: Mark) {
        self.held.insert(mark.seq, mark.file);
    }

    /// Blocks until nobody runs charge `seq` (its runner logged an outcome or stopped).
    pub(super) fn wait_for(&self, seq: i64) -> io::Result<()> {
        let file = match File::open(self.file(seq)) {
            Ok(f) => f,
            // Removed: its outcome is logged.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        file.lock()?;
        file.unlock()
    }

    /// Charge `seq`'s outcome is logged: its mark is removed and, if this handle holds
    /// it, released. (A charge whose outcome is logged is never checked again, so removing
    /// its mark races with nobody; a waiter that opened it already is woken by the
    /// release.)
    pub(super) fn finish(&mut self, seq: i64) {
        let _ = std::fs::remove_file(self.file(seq));
        self.held.remove(&seq);
    }
}
