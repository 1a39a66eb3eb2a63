//! The slow log and the latency monitor (Redis's `slowlog.c` and
//! `latency.c`): what took long, kept in memory for SLOWLOG and LATENCY.
//! Plain data; the command layer decides what to record and redacts
//! secrets before it gets here.

use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// Redis's SLOWLOG_ENTRY_MAX_ARGC and SLOWLOG_ENTRY_MAX_STRING.
pub const MAX_ARGS: usize = 32;
pub const MAX_ARG_BYTES: usize = 128;

/// One slow command.
#[derive(Debug, Clone)]
pub struct SlowEntry {
    pub id: u64,
    pub unix_secs: i64,
    pub usec: u64,
    /// The arguments as logged: at most [`MAX_ARGS`], each cut at
    /// [`MAX_ARG_BYTES`].
    pub args: Vec<Bytes>,
    pub peer: String,
    pub client_name: String,
}

/// The newest slow commands first.
#[derive(Default)]
pub struct SlowLog {
    entries: VecDeque<SlowEntry>,
    next_id: u64,
}

impl SlowLog {
    /// Logs a command, trimming its arguments as Redis does, and keeps
    /// the newest `max_len` entries.
    pub fn push(
        &mut self,
        args: &[Bytes],
        usec: u64,
        unix_secs: i64,
        peer: String,
        client_name: String,
        max_len: usize,
    ) {
        let keep = args.len().min(MAX_ARGS);
        let mut logged: Vec<Bytes> = Vec::with_capacity(keep);
        for (i, arg) in args.iter().take(keep).enumerate() {
            if i == MAX_ARGS - 1 && args.len() > MAX_ARGS {
                logged.push(Bytes::from(format!(
                    "... ({} more arguments)",
                    args.len() - MAX_ARGS + 1
                )));
            } else if arg.len() > MAX_ARG_BYTES {
                let mut cut = arg[..MAX_ARG_BYTES].to_vec();
                cut.extend_from_slice(
                    format!("... ({} more bytes)", arg.len() - MAX_ARG_BYTES).as_bytes(),
                );
                logged.push(Bytes::from(cut));
            } else {
                logged.push(arg.clone());
            }
        }
        self.entries.push_front(SlowEntry {
            id: self.next_id,
            unix_secs,
            usec,
            args: logged,
            peer,
            client_name,
        });
        self.next_id += 1;
        self.entries.truncate(max_len);
    }

    /// Keeps at most `max_len` entries (after `slowlog-max-len` shrank).
    pub fn trim(&mut self, max_len: usize) {
        self.entries.truncate(max_len);
    }

    /// The newest `count` entries (all for None).
    pub fn newest(&self, count: Option<usize>) -> impl Iterator<Item = &SlowEntry> {
        self.entries.iter().take(count.unwrap_or(usize::MAX))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }
}

/// Samples kept per latency event (Redis's LATENCY_TS_LEN).
const HISTORY: usize = 160;

/// One event's recent samples: (unix seconds, milliseconds), one per
/// second at most (the largest of that second), and its all-time maximum.
#[derive(Debug, Default, Clone)]
pub struct EventHistory {
    pub samples: VecDeque<(i64, u64)>,
    pub max_ms: u64,
}

/// Latency spikes by event name (`command`, `fast-command`,
/// `expire-cycle`, `eviction-cycle`, `fork`, `aof-fsync-always`).
#[derive(Default)]
pub struct LatencyMonitor {
    events: BTreeMap<&'static str, EventHistory>,
}

impl LatencyMonitor {
    pub fn add(&mut self, event: &'static str, ms: u64, unix_secs: i64) {
        let h = self.events.entry(event).or_default();
        h.max_ms = h.max_ms.max(ms);
        match h.samples.back_mut() {
            Some(last) if last.0 == unix_secs => last.1 = last.1.max(ms),
            _ => {
                h.samples.push_back((unix_secs, ms));
                if h.samples.len() > HISTORY {
                    h.samples.pop_front();
                }
            }
        }
    }

    pub fn events(&self) -> impl Iterator<Item = (&'static str, &EventHistory)> {
        self.events.iter().map(|(k, v)| (*k, v))
    }

    pub fn history(&self, event: &str) -> Option<&EventHistory> {
        self.events.get(event)
    }

    /// Forgets the named events (all when empty); how many there were.
    pub fn reset(&mut self, names: &[&str]) -> usize {
        if names.is_empty() {
            let n = self.events.len();
            self.events.clear();
            return n;
        }
        names
            .iter()
            .filter(|n| self.events.remove(**n).is_some())
            .count()
    }
}

/// Adds a sample for a non-command event (an expiry or eviction cycle,
/// a snapshot's copy, a log fsync) if it reached the threshold.
pub fn record_event(node: &super::Shared, event: &'static str, elapsed: std::time::Duration) {
    use std::sync::atomic::Ordering;
    let threshold = node.stats.latency_threshold_ms.load(Ordering::Relaxed);
    let ms = elapsed.as_millis() as u64;
    if threshold > 0 && ms >= threshold {
        node.latency
            .lock()
            .add(event, ms, super::unix_ms().div_euclid(1000));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    #[test]
    fn entries_are_newest_first_bounded_and_trimmed_as_redis() {
        let mut log = SlowLog::default();
        for i in 0..5 {
            log.push(
                &args(&["ping", &i.to_string()]),
                10,
                0,
                "p".into(),
                "".into(),
                3,
            );
        }
        assert_eq!(log.len(), 3);
        let ids: Vec<u64> = log.newest(None).map(|e| e.id).collect();
        assert_eq!(ids, vec![4, 3, 2]);
        let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        log.push(&args(&many), 1, 0, "p".into(), "".into(), 10);
        let e = log.newest(Some(1)).next().unwrap();
        assert_eq!(e.args.len(), 32);
        assert_eq!(e.args[31], "... (9 more arguments)");
        let long = "A".repeat(129);
        log.push(&args(&["sadd", &long]), 1, 0, "p".into(), "".into(), 10);
        let e = log.newest(Some(1)).next().unwrap();
        assert_eq!(e.args[1], format!("{}... (1 more bytes)", "A".repeat(128)));
    }

    #[test]
    fn latency_keeps_one_sample_per_second_and_the_maximum() {
        let mut m = LatencyMonitor::default();
        m.add("command", 300, 100);
        m.add("command", 500, 100);
        m.add("command", 400, 101);
        let h = m.history("command").unwrap();
        assert_eq!(h.samples, VecDeque::from(vec![(100, 500), (101, 400)]));
        assert_eq!(h.max_ms, 500);
        assert_eq!(m.reset(&["nothing"]), 0);
        assert_eq!(m.reset(&[]), 1);
    }
}
