//! What other clients see of a running script, without the dataset lock
//! (the script holds it): whether one runs past `busy-reply-threshold`
//! (they get `-BUSY`), whether it wrote (SCRIPT KILL is refused then), and
//! the kill request the script's hook polls, and what FUNCTION STATS
//! tells of it.

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

#[derive(Default)]
pub struct ScriptState {
    running: AtomicBool,
    started_ms: AtomicI64,
    busy: AtomicBool,
    wrote: AtomicBool,
    kill: AtomicBool,
    /// When the running script last tried to leave its runtime thread.
    left_thread_ms: AtomicI64,
    current: parking_lot::Mutex<Option<Running>>,
}

/// What runs: an EVAL script or a function (they are killed by different
/// commands), its name and the command that called it.
#[derive(Clone, Debug)]
pub struct Running {
    pub function: bool,
    pub name: String,
    pub command: Vec<Bytes>,
    /// The function libraries and functions loaded (FUNCTION STATS,
    /// answered while the function holds the data).
    pub libraries: usize,
    pub functions: usize,
}

/// What SCRIPT KILL gets.
#[derive(Debug, PartialEq, Eq)]
pub enum KillOutcome {
    Killing,
    NotBusy,
    Unkillable,
    /// SCRIPT KILL for a function, or FUNCTION KILL for a script.
    OtherKind,
}

impl ScriptState {
    pub fn start(&self, now_ms: i64, running: Running) {
        *self.current.lock() = Some(running);
        self.started_ms.store(now_ms, Ordering::Relaxed);
        self.wrote.store(false, Ordering::Relaxed);
        self.left_thread_ms.store(i64::MIN, Ordering::Relaxed);
        self.running.store(true, Ordering::Release);
    }

    /// Whether a busy script should (try to) leave its runtime thread
    /// ([`leave_runtime_thread`]): at once, then every 100 ms, as a try
    /// can miss (the runtime taken back before another thread picked it
    /// up) and a thread that already left passes quickly.
    pub fn should_leave_thread(&self, now_ms: i64) -> bool {
        if !self.is_busy() {
            return false;
        }
        let last = self.left_thread_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < 100 {
            return false;
        }
        self.left_thread_ms.store(now_ms, Ordering::Relaxed);
        true
    }

    pub fn finish(&self) {
        self.running.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        *self.current.lock() = None;
    }

    /// What runs, and for how many milliseconds, if anything does.
    pub fn current(&self, now_ms: i64) -> Option<(Running, i64)> {
        let running = self.current.lock().clone()?;
        Some((running, now_ms - self.started_ms.load(Ordering::Relaxed)))
    }

    /// Whether the running script has written (it can no longer fail
    /// cleanly, nor be killed).
    pub fn has_written(&self) -> bool {
        self.wrote.load(Ordering::Relaxed)
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

    /// Whether a busy script is a function (FUNCTION KILL stops it) rather
    /// than an EVAL script (SCRIPT KILL does).
    pub fn busy_is_function(&self) -> bool {
        self.current.lock().as_ref().is_some_and(|r| r.function)
    }

    /// SCRIPT KILL (`function` false) or FUNCTION KILL from another client
    /// while a script is busy.
    pub fn request_kill(&self, function: bool) -> KillOutcome {
        if !self.is_busy() {
            return KillOutcome::NotBusy;
        }
        if self.busy_is_function() != function {
            return KillOutcome::OtherKind;
        }
        if self.wrote.load(Ordering::Relaxed) {
            return KillOutcome::Unkillable;
        }
        self.kill.store(true, Ordering::Relaxed);
        KillOutcome::Killing
    }
}

/// Called from a busy script's hook: the runtime thread the script runs on
/// is handed to the other tasks (they answer BUSY and take SCRIPT KILL)
/// while the script goes on here. Scripts that end in time never pay for
/// the hand-off. Without a multi-thread runtime (tests of the command
/// layer alone) nothing happens.
pub fn leave_runtime_thread() {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let on_worker =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if on_worker {
        // The pause lets another thread pick the runtime up before this
        // one could take it back; a thread that already gave it away
        // passes through at once.
        tokio::task::block_in_place(|| std::thread::sleep(std::time::Duration::from_millis(2)));
    }
}
