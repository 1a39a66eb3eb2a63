//! The stream type: entries ordered by ID, grouped into nodes as Redis
//! groups them into listpacks under a radix tree, and the consumer groups
//! with their pending-entries lists.
//!
//! Nodes matter to behaviour, not only to memory: approximate trimming
//! (`MAXLEN ~`) removes whole nodes only, and a node fills up at
//! `stream-node-max-entries` entries (deleted ones included) or about
//! `stream-node-max-bytes` bytes, so `XLEN` after `XADD MAXLEN ~ 555` is
//! what Redis answers. A node's byte size is estimated with listpack's
//! element sizes; it is not a listpack.
//!
//! Everything here is sans-IO and clock-free: times come in as arguments.

use super::blob::Blob;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// An entry ID: milliseconds and a sequence number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    /// The next ID, or `None` past the largest.
    pub fn next(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (u64::MAX, u64::MAX) => None,
            (ms, u64::MAX) => Some(StreamId::new(ms + 1, 0)),
            (ms, seq) => Some(StreamId::new(ms, seq + 1)),
        }
    }

    /// The previous ID, or `None` below 0-0.
    pub fn prev(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (0, 0) => None,
            (ms, 0) => Some(StreamId::new(ms - 1, u64::MAX)),
            (ms, seq) => Some(StreamId::new(ms, seq - 1)),
        }
    }

    pub fn to_text(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// How an ID argument is read (Redis's `streamGenericParseIDOrReply`).
#[derive(Clone, Copy, Debug)]
pub struct IdSyntax {
    /// The sequence used when only milliseconds are given.
    pub missing_seq: u64,
    /// Refuse `-` and `+`.
    pub strict: bool,
    /// Accept `<ms>-*` (XADD).
    pub seq_star: bool,
}

/// A parsed ID and whether its sequence was given (false for `<ms>-*`).
pub fn parse_id(text: &[u8], syntax: IdSyntax) -> Option<(StreamId, bool)> {
    if text.len() > 127 {
        return None;
    }
    match text {
        b"-" if !syntax.strict => return Some((StreamId::MIN, true)),
        b"+" if !syntax.strict => return Some((StreamId::MAX, true)),
        _ => {}
    }
    let (ms_part, seq_part) = match text.iter().position(|&b| b == b'-') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let ms = parse_u64(ms_part)?;
    match seq_part {
        None => Some((StreamId::new(ms, syntax.missing_seq), true)),
        Some(b"*") if syntax.seq_star => Some((StreamId::new(ms, 0), false)),
        Some(seq) => Some((StreamId::new(ms, parse_u64(seq)?), true)),
    }
}

/// Redis's `string2ull`: decimal digits only, no sign, no overflow.
fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// One entry: its ID and its fields and values, alternating.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: StreamId,
    pub fields: Box<[Blob]>,
    deleted: bool,
}

impl Entry {
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&Blob, &Blob)> {
        self.fields.chunks_exact(2).map(|p| (&p[0], &p[1]))
    }
}

/// A run of consecutive entries (a listpack in Redis). Deleted entries
/// stay as tombstones until the whole node goes.
#[derive(Clone, Debug, Default)]
struct Node {
    entries: Vec<Entry>,
    live: usize,
    bytes: usize,
}

/// The bytes listpack spends on an element of `len` bytes (header, data,
/// back-length).
fn lp_element(len: usize) -> usize {
    let header = match len {
        0..=63 => 1,
        64..=4095 => 2,
        _ => 5,
    };
    let back = match header + len {
        0..=127 => 1,
        128..=16383 => 2,
        _ => 3,
    };
    header + len + back
}

/// A small integer element (flags, ID deltas, counts).
const LP_INT: usize = 2;

fn entry_bytes(fields: &[Blob]) -> usize {
    // flags, ms delta, seq delta, field count, fields and values, lp-count
    4 * LP_INT + fields.iter().map(|f| lp_element(f.len())).sum::<usize>() + LP_INT
}

fn node_overhead(fields: &[Blob]) -> usize {
    // listpack header and end, then the master entry: count, deleted,
    // field count, the field names, terminator
    7 + 3 * LP_INT
        + fields
            .iter()
            .step_by(2)
            .map(|f| lp_element(f.len()))
            .sum::<usize>()
        + LP_INT
}

/// Limits that decide when a new node starts.
#[derive(Clone, Copy, Debug)]
pub struct NodeLimits {
    pub max_entries: u64,
    pub max_bytes: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_entries: 100,
            max_bytes: 4096,
        }
    }
}

/// What trimming keeps: at most `maxlen` entries, or entries from `minid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

/// A pending entry: delivered to `consumer`, not acknowledged yet.
#[derive(Clone, Debug)]
pub struct Pending {
    pub consumer: Blob,
    pub delivery_time: i64,
    pub delivery_count: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Consumer {
    pub seen_time: i64,
    pub pel: BTreeSet<StreamId>,
}

/// `entries_read` when unknown (Redis's `SCG_INVALID_ENTRIES_READ`).
pub const ENTRIES_READ_INVALID: i64 = -1;

#[derive(Clone, Debug, Default)]
pub struct Group {
    pub last_id: StreamId,
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Pending>,
    pub consumers: BTreeMap<Blob, Consumer>,
}

impl Group {
    /// Finds or creates a consumer; true in the second field when created.
    pub fn consumer_mut(&mut self, name: &[u8], now_ms: i64) -> (&mut Consumer, bool) {
        let created = !self.consumers.contains_key(name);
        if created {
            self.consumers.insert(
                Blob::new(name),
                Consumer {
                    seen_time: now_ms,
                    pel: BTreeSet::new(),
                },
            );
        }
        let c = self.consumers.get_mut(name).expect("inserted above");
        c.seen_time = now_ms;
        (c, created)
    }

    /// Records `id` as delivered to `consumer` now (a new pending entry, or
    /// one taken over from another consumer with its count reset).
    pub fn deliver(&mut self, id: StreamId, consumer: &[u8], now_ms: i64) -> &Pending {
        if let Some(old) = self.pel.get(&id) {
            if let Some(c) = self.consumers.get_mut(old.consumer.as_bytes()) {
                c.pel.remove(&id);
            }
        }
        self.pel.insert(
            id,
            Pending {
                consumer: Blob::new(consumer),
                delivery_time: now_ms,
                delivery_count: 1,
            },
        );
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
        &self.pel[&id]
    }

    /// Drops a pending entry from the group and its consumer.
    pub fn ack(&mut self, id: StreamId) -> bool {
        let Some(p) = self.pel.remove(&id) else {
            return false;
        };
        if let Some(c) = self.consumers.get_mut(p.consumer.as_bytes()) {
            c.pel.remove(&id);
        }
        true
    }

    /// Moves a pending entry to `consumer` (which must exist).
    pub fn claim(&mut self, id: StreamId, consumer: &[u8]) {
        let Some(p) = self.pel.get_mut(&id) else {
            return;
        };
        if p.consumer.as_bytes() != consumer {
            if let Some(c) = self.consumers.get_mut(p.consumer.as_bytes()) {
                c.pel.remove(&id);
            }
            p.consumer = Blob::new(consumer);
        }
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
    }

    /// Removes a consumer and its pending entries; how many it had.
    pub fn delete_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let c = self.consumers.remove(name)?;
        for id in &c.pel {
            self.pel.remove(id);
        }
        Some(c.pel.len())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stream {
    /// Nodes keyed by their first entry's ID (the radix tree's keys).
    nodes: BTreeMap<StreamId, Node>,
    length: u64,
    pub last_id: StreamId,
    pub first_id: StreamId,
    pub max_deleted_id: StreamId,
    pub entries_added: u64,
    /// Groups by name, in byte order as Redis's radix tree keeps them.
    pub groups: BTreeMap<Blob, Group>,
}

/// Why an XADD could not add its entry.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// The ID is not above the stream's last one.
    NotGreater,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// How many nodes hold the entries (XINFO's `radix-tree-keys`).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The ID an XADD would use: `id` as given (`seq_given` false for
    /// `<ms>-*`), or the next one after the last for `*`.
    pub fn next_id(
        &self,
        given: Option<(StreamId, bool)>,
        now_ms: u64,
    ) -> Result<StreamId, AddError> {
        let id = match given {
            Some((id, true)) => id,
            Some((id, false)) if id.ms == self.last_id.ms => {
                if self.last_id.seq == u64::MAX {
                    return Err(AddError::NotGreater);
                }
                StreamId::new(id.ms, self.last_id.seq + 1)
            }
            Some((id, false)) => id,
            None if now_ms > self.last_id.ms => StreamId::new(now_ms, 0),
            None => self.last_id.next().ok_or(AddError::NotGreater)?,
        };
        if id <= self.last_id {
            return Err(AddError::NotGreater);
        }
        Ok(id)
    }

    /// Appends an entry whose ID is above the last one (see [`Stream::next_id`]).
    pub fn append(&mut self, id: StreamId, fields: Vec<Blob>, limits: NodeLimits) {
        debug_assert!(id > self.last_id);
        let total: usize = fields.iter().map(|f| f.len()).sum();
        let bytes = entry_bytes(&fields);
        let max_bytes = match limits.max_bytes {
            0 => u32::MAX as usize,
            n => n.min(u32::MAX as u64) as usize,
        };
        let start_new = match self.nodes.last_key_value() {
            None => true,
            Some((_, node)) => {
                node.bytes + total >= max_bytes
                    || (limits.max_entries > 0 && node.entries.len() as u64 >= limits.max_entries)
            }
        };
        if start_new {
            let node = Node {
                entries: Vec::new(),
                live: 0,
                bytes: node_overhead(&fields),
            };
            self.nodes.insert(id, node);
        }
        let node = self
            .nodes
            .last_entry()
            .expect("a node was just ensured")
            .into_mut();
        node.bytes += bytes;
        node.live += 1;
        node.entries.push(Entry {
            id,
            fields: fields.into_boxed_slice(),
            deleted: false,
        });
        self.length += 1;
        self.entries_added += 1;
        self.last_id = id;
        if self.length == 1 {
            self.first_id = id;
        }
    }

    /// The node that would hold `id`.
    fn node_key_for(&self, id: StreamId) -> Option<StreamId> {
        self.nodes.range(..=id).next_back().map(|(k, _)| *k)
    }

    /// The live entry with this ID.
    pub fn get(&self, id: StreamId) -> Option<&Entry> {
        let node = self.nodes.get(&self.node_key_for(id)?)?;
        let i = node.entries.binary_search_by_key(&id, |e| e.id).ok()?;
        let e = &node.entries[i];
        (!e.deleted).then_some(e)
    }

    pub fn contains(&self, id: StreamId) -> bool {
        self.get(id).is_some()
    }

    /// Live entries with IDs in `start..=end`, in order (reverse with `.rev()`).
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
    ) -> impl DoubleEndedIterator<Item = &Entry> + '_ {
        let from = if start > end {
            None
        } else {
            Some(self.node_key_for(start).unwrap_or(start))
        };
        from.into_iter()
            .flat_map(move |from| self.nodes.range(from..=end))
            .flat_map(|(_, n)| n.entries.iter())
            .filter(move |e| !e.deleted && e.id >= start && e.id <= end)
    }

    /// Deletes one entry (XDEL); whether it was there.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some(key) = self.node_key_for(id) else {
            return false;
        };
        let node = self.nodes.get_mut(&key).expect("key from the map");
        let Ok(i) = node.entries.binary_search_by_key(&id, |e| e.id) else {
            return false;
        };
        if node.entries[i].deleted {
            return false;
        }
        if node.live == 1 {
            self.nodes.remove(&key);
        } else {
            node.entries[i].deleted = true;
            node.live -= 1;
        }
        self.length -= 1;
        if id > self.max_deleted_id {
            self.max_deleted_id = id;
        }
        true
    }

    /// After deletions: the first live ID, or 0-0 when empty.
    pub fn refresh_first_id(&mut self) {
        let first = self
            .range(StreamId::MIN, StreamId::MAX)
            .next()
            .map(|e| e.id)
            .unwrap_or(StreamId::MIN);
        self.first_id = first;
    }

    /// The last live entry's ID (0-0 when empty): Redis's
    /// `streamLastValidID`.
    pub fn last_valid_id(&self) -> StreamId {
        self.range(StreamId::MIN, StreamId::MAX)
            .next_back()
            .map(|e| e.id)
            .unwrap_or(StreamId::MIN)
    }

    /// Trims as Redis's `streamTrim`: whole nodes while the rest still
    /// satisfies `trim`; then, unless `approx`, entries inside the next node.
    /// `limit` (0 = none) bounds the entries removed. Returns how many went.
    pub fn trim(&mut self, trim: Trim, approx: bool, limit: u64) -> u64 {
        let mut deleted = 0u64;
        loop {
            if let Trim::MaxLen(max) = trim {
                if self.length <= max {
                    break;
                }
            }
            let Some((&key, node)) = self.nodes.first_key_value() else {
                break;
            };
            let live = node.live as u64;
            if limit > 0 && deleted + live > limit {
                break;
            }
            let remove_node = match trim {
                Trim::MaxLen(max) => self.length - live >= max,
                Trim::MinId(min) => node.entries.last().is_some_and(|e| e.id < min),
            };
            if remove_node {
                self.nodes.remove(&key);
                self.length -= live;
                deleted += live;
                continue;
            }
            if approx {
                break;
            }
            let node = self.nodes.get_mut(&key).expect("key from the map");
            for e in node.entries.iter_mut() {
                let stop = match trim {
                    Trim::MaxLen(max) => self.length <= max,
                    Trim::MinId(min) => e.id >= min,
                };
                if stop {
                    break;
                }
                if !e.deleted {
                    e.deleted = true;
                    node.live -= 1;
                    self.length -= 1;
                    deleted += 1;
                }
            }
            break;
        }
        if self.length == 0 {
            self.first_id = StreamId::MIN;
        } else if deleted > 0 {
            self.refresh_first_id();
        }
        deleted
    }

    /// Whether `start..=end` may contain a deleted entry (Redis's
    /// `streamRangeHasTombstones`).
    pub fn range_has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.length == 0 || self.max_deleted_id.is_zero() {
            return false;
        }
        if self.first_id > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id && self.max_deleted_id <= end
    }

    /// The logical read counter of `id` when it can be known (Redis's
    /// `streamEstimateDistanceFromFirstEverEntry`), else
    /// [`ENTRIES_READ_INVALID`].
    pub fn estimate_distance(&self, id: StreamId) -> i64 {
        if self.entries_added == 0 {
            return 0;
        }
        if self.length == 0 && id <= self.last_id {
            return self.entries_added as i64;
        }
        match id.cmp(&self.last_id) {
            std::cmp::Ordering::Equal => return self.entries_added as i64,
            std::cmp::Ordering::Greater => return ENTRIES_READ_INVALID,
            std::cmp::Ordering::Less => {}
        }
        if self.max_deleted_id.is_zero() || self.max_deleted_id < self.first_id {
            match id.cmp(&self.first_id) {
                std::cmp::Ordering::Less => {
                    return (self.entries_added - self.length) as i64;
                }
                std::cmp::Ordering::Equal => {
                    return (self.entries_added - self.length + 1) as i64;
                }
                std::cmp::Ordering::Greater => {}
            }
        }
        ENTRIES_READ_INVALID
    }

    /// A group's lag (entries not yet delivered), when it can be known.
    pub fn lag(&self, group: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if group.entries_read != ENTRIES_READ_INVALID
            && !self.range_has_tombstones(group.last_id, StreamId::MAX)
        {
            return Some(self.entries_added as i64 - group.entries_read);
        }
        match self.estimate_distance(group.last_id) {
            ENTRIES_READ_INVALID => None,
            read => Some(self.entries_added as i64 - read),
        }
    }

    /// Moves a group's last-delivered ID forward to `id`, keeping its read
    /// counter: counted on by the entries passed when it is valid and no
    /// deletion lies ahead, estimated otherwise (Redis's rule when
    /// XREADGROUP delivers an entry). XCLAIM's LASTID moves the same way,
    /// so a replica applying XREADGROUP's XCLAIM effects ends with the
    /// primary's counter.
    pub fn advance_group(&mut self, group: &[u8], id: StreamId) {
        let Some(from) = self.groups.get(group).map(|g| g.last_id) else {
            return;
        };
        if id <= from {
            return;
        }
        let tombstones = self.range_has_tombstones(id, StreamId::MAX);
        let passed = match from.next() {
            Some(start) => self.range(start, id).count() as i64,
            None => 0,
        };
        let estimate = self.estimate_distance(id);
        let added = self.entries_added;
        let g = self.groups.get_mut(group).expect("looked up above");
        if g.entries_read != ENTRIES_READ_INVALID && !tombstones {
            g.entries_read += passed;
        } else if added > 0 {
            g.entries_read = estimate;
        }
        g.last_id = id;
    }

    /// The nodes in order, each as its key and its entries (tombstones
    /// included): what Redis's RDB writes as one listpack each.
    pub fn nodes(&self) -> impl Iterator<Item = (StreamId, &[Entry])> + '_ {
        self.nodes.iter().map(|(k, n)| (*k, n.entries.as_slice()))
    }

    /// Adds a node read from a file, as it was written (tombstones kept).
    /// Entries must be in order, above every node already here; the caller
    /// sets the counters and IDs the file records afterwards.
    pub fn push_node(&mut self, entries: Vec<(StreamId, Vec<Blob>, bool)>) -> Result<(), AddError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if self
            .nodes
            .last_key_value()
            .is_some_and(|(_, n)| n.entries.last().is_some_and(|e| e.id >= first.0))
        {
            return Err(AddError::NotGreater);
        }
        let master = first.0;
        let mut node = Node {
            entries: Vec::with_capacity(entries.len()),
            live: 0,
            bytes: node_overhead(&first.1),
        };
        for (id, fields, deleted) in entries {
            if node.entries.last().is_some_and(|e| e.id >= id) || fields.len() % 2 != 0 {
                return Err(AddError::NotGreater);
            }
            node.bytes += entry_bytes(&fields);
            node.live += !deleted as usize;
            node.entries.push(Entry {
                id,
                fields: fields.into_boxed_slice(),
                deleted,
            });
        }
        if node.live == 0 {
            return Ok(());
        }
        self.length += node.live as u64;
        self.nodes.insert(master, node);
        Ok(())
    }

    /// Every live entry, in order (snapshots, DEBUG DIGEST).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.range(StreamId::MIN, StreamId::MAX)
    }

    /// Approximate heap bytes (INFO memory, MEMORY USAGE).
    pub fn approx_bytes(&self) -> usize {
        let entries: usize = self.nodes.values().map(|n| n.bytes + 48).sum();
        let groups: usize = self
            .groups
            .iter()
            .map(|(name, g)| name.len() + 96 + g.pel.len() * 64 + g.consumers.len() * 64)
            .sum();
        64 + entries + groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[&str]) -> Vec<Blob> {
        pairs.iter().map(|s| Blob::new(s.as_bytes())).collect()
    }

    fn add(s: &mut Stream, ms: u64, limits: NodeLimits) -> StreamId {
        let id = s.next_id(Some((StreamId::new(ms, 0), false)), 0).unwrap();
        s.append(id, f(&["item", "v"]), limits);
        id
    }

    const STRICT: IdSyntax = IdSyntax {
        missing_seq: 0,
        strict: true,
        seq_star: false,
    };

    #[test]
    fn ids_parse_as_redis() {
        let loose = IdSyntax {
            strict: false,
            ..STRICT
        };
        assert_eq!(parse_id(b"5-3", STRICT), Some((StreamId::new(5, 3), true)));
        assert_eq!(parse_id(b"5", STRICT), Some((StreamId::new(5, 0), true)));
        assert_eq!(parse_id(b"-", STRICT), None);
        assert_eq!(parse_id(b"+", loose), Some((StreamId::MAX, true)));
        assert_eq!(parse_id(b"5-*", STRICT), None);
        let star = IdSyntax {
            seq_star: true,
            ..STRICT
        };
        assert_eq!(parse_id(b"5-*", star), Some((StreamId::new(5, 0), false)));
        assert_eq!(parse_id(b"-5", STRICT), None);
        assert_eq!(parse_id(b"5-x", STRICT), None);
        assert_eq!(parse_id(b"18446744073709551616", STRICT), None);
        assert_eq!(parse_id(b"", STRICT), None);
    }

    #[test]
    fn approximate_trim_removes_whole_nodes_only() {
        let mut s = Stream::new();
        let limits = NodeLimits::default();
        for ms in 1..=1000 {
            add(&mut s, ms, limits);
        }
        assert_eq!(s.node_count(), 10);
        assert_eq!(s.trim(Trim::MaxLen(555), true, 10_000), 400);
        assert_eq!(s.len(), 600);
        assert_eq!(s.trim(Trim::MaxLen(555), false, 0), 45);
        assert_eq!(s.len(), 555);
        assert_eq!(s.first_id, StreamId::new(446, 0));
        assert_eq!(s.range(StreamId::MIN, StreamId::MAX).count(), 555);
    }

    #[test]
    fn delete_marks_tombstones_and_drops_empty_nodes() {
        let mut s = Stream::new();
        let limits = NodeLimits {
            max_entries: 2,
            max_bytes: 4096,
        };
        let a = add(&mut s, 1, limits);
        let b = add(&mut s, 2, limits);
        let c = add(&mut s, 3, limits);
        assert_eq!(s.node_count(), 2);
        assert!(s.delete(b));
        assert!(!s.delete(b));
        assert_eq!(s.node_count(), 2);
        assert!(s.delete(a));
        assert_eq!(s.node_count(), 1);
        assert_eq!(s.max_deleted_id, b);
        s.refresh_first_id();
        assert_eq!(s.first_id, c);
        assert_eq!(
            s.range(StreamId::MIN, StreamId::MAX)
                .next_back()
                .unwrap()
                .id,
            c
        );
    }

    #[test]
    fn next_id_follows_the_last() {
        let mut s = Stream::new();
        let id = s.next_id(None, 100).unwrap();
        assert_eq!(id, StreamId::new(100, 0));
        s.append(id, f(&["a", "1"]), NodeLimits::default());
        assert_eq!(s.next_id(None, 50).unwrap(), StreamId::new(100, 1));
        assert_eq!(
            s.next_id(Some((StreamId::new(100, 0), true)), 0),
            Err(AddError::NotGreater)
        );
        assert_eq!(
            s.next_id(Some((StreamId::new(100, 0), false)), 0).unwrap(),
            StreamId::new(100, 1)
        );
    }

    #[test]
    fn lag_and_read_counter() {
        let mut s = Stream::new();
        for ms in 1..=5 {
            add(&mut s, ms, NodeLimits::default());
        }
        s.groups.insert(
            Blob::new(b"g"),
            Group {
                last_id: StreamId::MIN,
                entries_read: ENTRIES_READ_INVALID,
                ..Default::default()
            },
        );
        assert_eq!(s.lag(&s.groups[b"g".as_slice()]), Some(5));
        s.advance_group(b"g", StreamId::new(1, 0));
        assert_eq!(s.groups[b"g".as_slice()].entries_read, 1);
        s.delete(StreamId::new(3, 0));
        assert_eq!(s.lag(&s.groups[b"g".as_slice()]), None);
    }
}
