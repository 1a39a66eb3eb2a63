//! Per-command statistics and error counts, as Redis keeps them for INFO's
//! `commandstats`, `latencystats` and `errorstats` sections. Kept under
//! the dataset lock (every command runs there), so counting is plain
//! arithmetic.

use std::collections::{BTreeMap, HashMap};

/// Latencies by power of two of microseconds, each split in 16 linear
/// sub-buckets: percentiles within ~6 %.
const SUB: usize = 16;
const BUCKETS: usize = 40 * SUB;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < SUB as u64 {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros() as usize; // us >= 2^exp
        let shift = exp - 4;
        let sub = ((us >> shift) as usize) & (SUB - 1);
        ((exp - 3) * SUB + sub).min(BUCKETS - 1)
    }

    /// The largest value the bucket holds (as HdrHistogram reports).
    fn upper(index: usize) -> u64 {
        if index < SUB {
            return index as u64;
        }
        let exp = index / SUB + 3;
        let sub = (index % SUB) as u64;
        ((SUB as u64 + sub + 1) << (exp - 4)) - 1
    }

    pub fn record(&mut self, us: u64) {
        self.counts[Self::index(us)] += 1;
        self.total += 1;
    }

    /// Cumulative counts at powers of two of microseconds (1, 2, 4, ...),
    /// each bound listed where the count grew, up to the largest value
    /// (LATENCY HISTOGRAM's `histogram_usec`).
    pub fn log2_cumulative(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let (mut seen, mut i) = (0u64, 0usize);
        let mut last = 0u64;
        for p in 0..40u32 {
            let bound = 1u64 << p;
            while i < BUCKETS && Self::upper(i) < bound {
                seen += self.counts[i] as u64;
                i += 1;
            }
            if seen != last {
                out.push((bound, seen));
                last = seen;
            }
            if seen == self.total {
                break;
            }
        }
        out
    }

    /// The value at `p` percent, in microseconds.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let wanted = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += *c as u64;
            if seen >= wanted {
                return Self::upper(i);
            }
        }
        Self::upper(BUCKETS - 1)
    }
}

#[derive(Clone, Default)]
pub struct CommandStat {
    pub calls: u64,
    pub usec: u64,
    /// Refused before running (arity, authentication, OOM, READONLY, ...).
    pub rejected: u64,
    /// Ran and answered an error.
    pub failed: u64,
    pub latency: Histogram,
}

/// Most `command|subcommand` names interned for statistics (their text
/// is kept for the process's life, so the set is bounded).
const MAX_SUBCOMMAND_NAMES: usize = 1024;

#[derive(Default)]
pub struct CommandStats {
    commands: HashMap<&'static str, CommandStat, foldhash::fast::FixedState>,
    subcommand_names: HashMap<(&'static str, Vec<u8>), &'static str>,
    /// Error replies by their first word (`ERR`, `WRONGTYPE`, ...).
    errors: BTreeMap<String, u64>,
}

impl CommandStats {
    /// The statistics name of a container's subcommand, `config|set`
    /// (Redis 7's `cmdstat_config|set`); the container's own name for
    /// text that cannot be a subcommand or past the bound.
    pub fn subcommand_name(&mut self, command: &'static str, sub: &[u8]) -> &'static str {
        let plausible = !sub.is_empty()
            && sub.len() <= 32
            && sub
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_');
        if !plausible {
            return command;
        }
        let lower = sub.to_ascii_lowercase();
        if let Some(name) = self.subcommand_names.get(&(command, lower.clone())) {
            return name;
        }
        if self.subcommand_names.len() >= MAX_SUBCOMMAND_NAMES {
            return command;
        }
        let name: &'static str =
            Box::leak(format!("{command}|{}", String::from_utf8_lossy(&lower)).into_boxed_str());
        self.subcommand_names.insert((command, lower), name);
        name
    }

    pub fn called(&mut self, name: &'static str, usec: u64, failed: bool) {
        let s = self.commands.entry(name).or_default();
        s.calls += 1;
        s.usec += usec;
        s.failed += failed as u64;
        s.latency.record(usec);
    }

    /// A call counted when it blocked whose reply, when served, was an
    /// error.
    pub fn failed_later(&mut self, name: &'static str) {
        self.commands.entry(name).or_default().failed += 1;
    }

    pub fn rejected(&mut self, name: &'static str) {
        self.commands.entry(name).or_default().rejected += 1;
    }

    /// Counts an error reply under its prefix (Redis caps the distinct
    /// prefixes at 128; the rest count as `ERRORSTATS_DISABLED`-free
    /// overflow under their own names until then).
    pub fn error(&mut self, text: &str) {
        let prefix = text.split(' ').next().unwrap_or("ERR");
        if let Some(n) = self.errors.get_mut(prefix) {
            *n += 1;
        } else if self.errors.len() < 128 {
            self.errors.insert(prefix.to_string(), 1);
        }
    }

    pub fn reset(&mut self) {
        self.commands.clear();
        self.errors.clear();
    }

    /// Commands with any count, sorted by name.
    pub fn commands(&self) -> Vec<(&'static str, &CommandStat)> {
        let mut v: Vec<_> = self.commands.iter().map(|(k, v)| (*k, v)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_close() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.record(us);
        }
        let p50 = h.percentile(50.0);
        assert!((480..=540).contains(&p50), "{p50}");
        let p99 = h.percentile(99.0);
        assert!((980..=1060).contains(&p99), "{p99}");
        assert_eq!(Histogram::default().percentile(50.0), 0);
        for us in [0, 1, 15, 16, 17, 1000, 123_456, u32::MAX as u64] {
            let i = Histogram::index(us);
            assert!(Histogram::upper(i) >= us, "{us}");
        }
    }
}
