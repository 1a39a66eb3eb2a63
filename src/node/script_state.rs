//! What other clients see of a running script, without the dataset lock
//! (the script holds it): whether one runs past `busy-reply-threshold`
//! (they get `-BUSY`), whether it wrote (SCRIPT KILL is refused then), and
//! the kill request the script's hook polls.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

#[derive(Default)]
pub struct ScriptState {
    running: AtomicBool,
    started_ms: AtomicI64,
    busy: AtomicBool,
    wrote: AtomicBool,
    kill: AtomicBool,
}

/// What SCRIPT KILL gets.
#[derive(Debug, PartialEq, Eq)]
pub enum KillOutcome {
    Killing,
    NotBusy,
    Unkillable,
}

impl ScriptState {
    pub fn start(&self, now_ms: i64) {
        self.started_ms.store(now_ms, Ordering::Relaxed);
        self.wrote.store(false, Ordering::Relaxed);
        self.running.store(true, Ordering::Release);
    }

    pub fn finish(&self) {
        self.running.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
    }

    /// Clears a kill request once it was acted on (the script ended).
    pub fn clear_kill(&self) {
        self.kill.store(false, Ordering::Relaxed);
    }

    pub fn wrote(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }

    /// Called from the script's hook: marks it busy past `threshold_ms`
    /// and tells whether a kill was asked for.
    pub fn poll(&self, now_ms: i64, threshold_ms: i64) -> bool {
        if threshold_ms > 0 && now_ms - self.started_ms.load(Ordering::Relaxed) >= threshold_ms {
            self.busy.store(true, Ordering::Release);
        }
        self.kill.load(Ordering::Relaxed)
    }

    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// The node is stopping: whatever runs ends at its next hook.
    pub fn kill_for_shutdown(&self) {
        self.kill.store(true, Ordering::Relaxed);
    }

    /// SCRIPT KILL from another client while a script is busy.
    pub fn request_kill(&self) -> KillOutcome {
        if !self.is_busy() {
            return KillOutcome::NotBusy;
        }
        if self.wrote.load(Ordering::Relaxed) {
            return KillOutcome::Unkillable;
        }
        self.kill.store(true, Ordering::Relaxed);
        KillOutcome::Killing
    }
}
