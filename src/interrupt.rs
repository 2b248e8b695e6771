//! Cooperative interruption of long work (writing weights).
//!
//! The library installs no signal handler. A program that wants Ctrl-C to
//! stop a build cleanly registers [`flag`] with its handler (the `tfc`
//! binary does, through `signal-hook`); long loops call [`check`] between
//! blocks of work and stop with [`Interrupted`], so temporary files are
//! dropped and existing outputs stay as they were.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The work was stopped by an interrupt request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// The process-wide interrupt flag, shared with a signal handler.
pub fn flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    Arc::clone(FLAG.get_or_init(|| Arc::new(AtomicBool::new(false))))
}

/// Asks running work to stop at its next check.
pub fn request() {
    flag().store(true, Ordering::SeqCst);
}

/// Clears a request, so later work runs again.
pub fn reset() {
    flag().store(false, Ordering::SeqCst);
}

/// Whether an interrupt was requested.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

/// `Err(Interrupted)` once an interrupt was requested.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}
