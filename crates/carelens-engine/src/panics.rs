//! Panics inside guarded evaluation stay silent.
//!
//! A [`crate::guard::Guard`] catches a panic of the operation it wraps and answers NULL
//! for that row. Rust's default panic hook would still print the panic's message to
//! standard error first — text that can depend on a row's value and that an analyst
//! running the command line can read. [`install`] wraps the process's hook once so that it
//! prints nothing while the current thread is inside a guard ([`Quiet`]), and only a fixed
//! line (no message, no location) for a panic while a query runs ([`Running`]) — that
//! query then fails with a fixed message. Every other panic is reported as before.

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Queries running now, in this process.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// While alive, a query is running: panics print no details.
pub(crate) struct Running(());

impl Running {
    /// Counts a running query until the value is dropped.
    pub(crate) fn enter() -> Self {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Running(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

thread_local! {
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

/// While alive, panics on this thread are not printed.
pub(crate) struct Quiet(());

impl Quiet {
    /// Marks this thread as inside guarded evaluation until the value is dropped.
    pub(crate) fn enter() -> Self {
        QUIET.with(|q| q.set(q.get() + 1));
        Quiet(())
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        QUIET.with(|q| q.set(q.get().saturating_sub(1)));
    }
}

/// Installs the quiet-inside-guards panic hook (once per process).
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) > 0 {
                return;
            }
            if RUNNING.load(Ordering::SeqCst) > 0 {
                eprintln!("carelens: a query failed with an internal fault (details withheld)");
                return;
            }
            previous(info);
        }));
    });
}
