//! Server-wide counters reported by INFO `stats`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Stats {
    /// `maxmemory`, where every command reads it cheaply (0 = none).
    pub maxmemory: AtomicU64,
    /// `slowlog-log-slower-than` and `latency-monitor-threshold`, read by
    /// every command.
    pub slowlog_slower_than: std::sync::atomic::AtomicI64,
    pub latency_threshold_ms: AtomicU64,
    /// `notify-keyspace-events`, read after every write.
    pub notify_flags: std::sync::atomic::AtomicU32,
    /// Over `maxmemory` with nothing left to evict, as found before the
    /// current command (Redis's `pre_command_oom_state`): writes that grow
    /// the data are refused.
    pub over_maxmemory: std::sync::atomic::AtomicBool,
    /// Bytes of evicted keys a snapshot in progress still holds (left out
    /// of `maxmemory` until it ends).
    pub snapshot_pinned: AtomicU64,
    /// Keys evicted at `maxmemory` (INFO `evicted_keys`).
    pub evicted_keys: AtomicU64,
    /// `used_memory` when the node was set up (INFO `used_memory_startup`).
    pub startup_memory: AtomicU64,
    /// The most `used_memory` seen (INFO `used_memory_peak`).
    pub peak_memory: AtomicU64,
    /// DEBUG SET-ACTIVE-EXPIRE 0: the cron stops sampling keys to expire
    /// (they still expire when touched).
    pub active_expire_off: std::sync::atomic::AtomicBool,
    /// DEBUG SET-DISABLE-DENY-SCRIPTS: scripts may call NOSCRIPT commands
    /// (Redis's test hook).
    pub script_deny_off: std::sync::atomic::AtomicBool,
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub commands_processed: AtomicU64,
    pub error_replies: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub ops: OpsSampler,
}

impl Stats {
    /// Copies the settings every command reads into their atomics.
    pub fn apply_settings(&self, s: &crate::config::Settings) {
        self.maxmemory.store(s.maxmemory, Ordering::Relaxed);
        self.slowlog_slower_than
            .store(s.slowlog_log_slower_than, Ordering::Relaxed);
        self.latency_threshold_ms
            .store(s.latency_monitor_threshold, Ordering::Relaxed);
        self.notify_flags
            .store(s.notify_keyspace_events, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        for counter in [
            &self.connections_received,
            &self.rejected_connections,
            &self.commands_processed,
            &self.error_replies,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.evicted_keys,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    pub fn ops_per_sec(&self) -> u64 {
        self.ops.rate()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Recent (time, commands processed) samples for `instantaneous_ops_per_sec`.
#[derive(Default)]
pub struct OpsSampler {
    samples: parking_lot::Mutex<std::collections::VecDeque<(std::time::Instant, u64)>>,
}

impl OpsSampler {
    /// Called by the cron; keeps about the last two seconds.
    pub fn sample(&self, commands: u64) {
        let mut s = self.samples.lock();
        s.push_back((std::time::Instant::now(), commands));
        while s.len() > 2
            && s.front()
                .is_some_and(|(t, _)| t.elapsed().as_secs_f64() > 2.0)
        {
            s.pop_front();
        }
    }

    pub fn rate(&self) -> u64 {
        let s = self.samples.lock();
        match (s.front(), s.back()) {
            (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => {
                ((c1 - c0) as f64 / (*t1 - *t0).as_secs_f64()) as u64
            }
            _ => 0,
        }
    }
}
