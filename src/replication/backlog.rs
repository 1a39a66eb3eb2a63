//! The replication backlog: the most recent bytes of the stream, kept so a
//! replica that reconnects can continue from its offset instead of copying
//! the whole data set again.
//!
//! Invariant: the backlog holds exactly the stream bytes
//! `[start_offset, end_offset)`; appending past the capacity trims from the
//! front. A read that starts before `start_offset` is the typed answer
//! [`Compacted`] ("that history is gone, do a full sync").

use std::collections::VecDeque;

/// The requested offset is no longer (or not yet) in the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offset {requested} is outside the backlog [{start}, {end}]")]
pub struct Compacted {
    pub requested: u64,
    pub start: u64,
    pub end: u64,
}

#[derive(Debug)]
pub struct Backlog {
    bytes: VecDeque<u8>,
    start_offset: u64,
    capacity: usize,
}

impl Backlog {
    /// An empty backlog whose next byte will be at `offset`.
    pub fn new(offset: u64, capacity: usize) -> Backlog {
        Backlog { bytes: VecDeque::new(), start_offset: offset, capacity: capacity.max(1) }
    }

    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    pub fn end_offset(&self) -> u64 {
        self.start_offset + self.bytes.len() as u64
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        self.trim();
    }

    pub fn append(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        self.trim();
    }

    fn trim(&mut self) {
        if self.bytes.len() > self.capacity {
            let excess = self.bytes.len() - self.capacity;
            self.bytes.drain(..excess);
            self.start_offset += excess as u64;
        }
    }

    /// Whether a replica needing `offset` next can be served from here.
    pub fn covers(&self, offset: u64) -> bool {
        offset >= self.start_offset && offset <= self.end_offset()
    }

    /// Up to `max` bytes starting at `from`.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<u8>, Compacted> {
        if !self.covers(from) {
            return Err(Compacted { requested: from, start: self.start_offset, end: self.end_offset() });
        }
        let skip = (from - self.start_offset) as usize;
        let take = (self.bytes.len() - skip).min(max);
        let (a, b) = self.bytes.as_slices();
        let mut out = Vec::with_capacity(take);
        if skip < a.len() {
            let end = (skip + take).min(a.len());
            out.extend_from_slice(&a[skip..end]);
            out.extend_from_slice(&b[..take - (end - skip)]);
        } else {
            let s = skip - a.len();
            out.extend_from_slice(&b[s..s + take]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn reads_equal_what_was_written(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..40), cap in 1usize..300, from_frac in 0.0f64..=1.0, max in 1usize..400) {
            let mut backlog = Backlog::new(1000, cap);
            let mut all = Vec::new();
            for c in &chunks {
                backlog.append(c);
                all.extend_from_slice(c);
            }
            let end = 1000 + all.len() as u64;
            prop_assert_eq!(backlog.end_offset(), end);
            prop_assert_eq!(backlog.len(), all.len().min(cap));
            let start = backlog.start_offset();
            let from = start + ((end - start) as f64 * from_frac) as u64;
            let got = backlog.read(from, max).unwrap();
            let i = (from - 1000) as usize;
            prop_assert_eq!(&got[..], &all[i..(i + max).min(all.len())]);
            if start > 1000 {
                prop_assert!(backlog.read(start - 1, max).is_err());
            }
            prop_assert!(backlog.read(end + 1, max).is_err());
        }
    }
}
