//! Sorted sets: a member → score dictionary plus a skip list ordered by
//! (score, member) whose links carry spans, so rank queries, rank ranges and
//! score/lex ranges are all O(log n) — the structure Redis uses.
//!
//! Nodes live in an arena (`Vec`) and link by index; index 0 is the header.
//! Invariant: every member in `scores` has exactly one node with the same
//! score, and the level-0 chain visits them in (score, member) order.

use super::blob::Blob;
use super::value::Map;
use std::cmp::Ordering;

const MAX_LEVEL: usize = 32;
const NIL: u32 = u32::MAX;
const HEADER: u32 = 0;

#[derive(Clone, Copy, Debug)]
struct Link {
    forward: u32,
    span: u32,
}

#[derive(Clone, Debug)]
struct Node {
    member: Blob,
    score: f64,
    backward: u32,
    links: Box<[Link]>,
}

/// One end of a score range (`(1.5`, `-inf`, `5`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreBound {
    pub value: f64,
    pub exclusive: bool,
}

/// One end of a lex range (`[a`, `(b`, `-`, `+`).
#[derive(Clone, Debug, PartialEq)]
pub enum LexBound {
    NegInf,
    PosInf,
    Inclusive(Vec<u8>),
    Exclusive(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct ZSet {
    scores: Map<Blob, f64>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    tail: u32,
    level: usize,
    rng: u64,
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet::new()
    }
}

fn cmp_entry(score: f64, member: &[u8], other_score: f64, other_member: &[u8]) -> Ordering {
    score
        .partial_cmp(&other_score)
        .unwrap_or(Ordering::Equal)
        .then_with(|| member.cmp(other_member))
}

impl ScoreBound {
    fn admits_min(&self, score: f64) -> bool {
        if self.exclusive {
            score > self.value
        } else {
            score >= self.value
        }
    }
    fn admits_max(&self, score: f64) -> bool {
        if self.exclusive {
            score < self.value
        } else {
            score <= self.value
        }
    }
}

impl LexBound {
    fn admits_min(&self, m: &[u8]) -> bool {
        match self {
            LexBound::NegInf => true,
            LexBound::PosInf => false,
            LexBound::Inclusive(v) => m >= v.as_slice(),
            LexBound::Exclusive(v) => m > v.as_slice(),
        }
    }
    fn admits_max(&self, m: &[u8]) -> bool {
        match self {
            LexBound::NegInf => false,
            LexBound::PosInf => true,
            LexBound::Inclusive(v) => m <= v.as_slice(),
            LexBound::Exclusive(v) => m < v.as_slice(),
        }
    }
}

impl ZSet {
    pub fn new() -> ZSet {
        let header = Node {
            member: Blob::new(b""),
            score: 0.0,
            backward: NIL,
            links: vec![
                Link {
                    forward: NIL,
                    span: 0
                };
                MAX_LEVEL
            ]
            .into_boxed_slice(),
        };
        ZSet {
            scores: Map::default(),
            nodes: vec![header],
            free: Vec::new(),
            tail: NIL,
            level: 1,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Members with their scores, in no particular order (for digests, SCAN
    /// and random picks: `members_by_index`).
    pub fn dict(&self) -> &Map<Blob, f64> {
        &self.scores
    }

    pub fn approx_bytes(&self) -> usize {
        self.scores
            .iter()
            .map(|(m, _)| 2 * m.heap_bytes() + 120)
            .sum()
    }

    /// Sets `member`'s score, inserting it if absent. Returns the previous score.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        match self.scores.get(member).copied() {
            Some(old) if old == score => Some(old),
            Some(old) => {
                self.unlink(old, member);
                self.link(Blob::new(member), score);
                *self.scores.get_mut(member).expect("member present") = score;
                Some(old)
            }
            None => {
                let blob = Blob::new(member);
                self.link(blob.clone(), score);
                self.scores.insert(blob, score);
                None
            }
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let score = self.scores.swap_remove(member)?;
        self.unlink(score, member);
        Some(score)
    }

    /// 0-based rank in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        let mut x = HEADER;
        let mut rank = 0usize;
        for i in (0..self.level).rev() {
            loop {
                let link = self.nodes[x as usize].links[i];
                if link.forward == NIL {
                    break;
                }
                let f = &self.nodes[link.forward as usize];
                if cmp_entry(f.score, &f.member, score, member) != Ordering::Greater {
                    rank += link.span as usize;
                    x = link.forward;
                } else {
                    break;
                }
            }
            if x != HEADER && self.nodes[x as usize].member.as_bytes() == member {
                return Some(rank - 1);
            }
        }
        None
    }

    /// Iterates ascending from 0-based rank `start` (inclusive).
    pub fn iter_from_rank(&self, start: usize) -> ZIter<'_> {
        ZIter {
            set: self,
            at: self.node_at_rank(start),
            reverse: false,
        }
    }

    /// Iterates descending from 0-based ascending rank `start`.
    pub fn iter_rev_from_rank(&self, start: usize) -> ZIter<'_> {
        ZIter {
            set: self,
            at: self.node_at_rank(start),
            reverse: true,
        }
    }

    fn node_at_rank(&self, rank0: usize) -> u32 {
        if rank0 >= self.len() {
            return NIL;
        }
        let target = rank0 + 1;
        let mut x = HEADER;
        let mut traversed = 0usize;
        for i in (0..self.level).rev() {
            loop {
                let link = self.nodes[x as usize].links[i];
                if link.forward != NIL && traversed + link.span as usize <= target {
                    traversed += link.span as usize;
                    x = link.forward;
                } else {
                    break;
                }
            }
            if traversed == target {
                return x;
            }
        }
        NIL
    }

    /// 0-based rank of the first element with score admitted by `min`, or len.
    pub fn first_rank_by_score(&self, min: ScoreBound) -> usize {
        self.count_before(|n| !min.admits_min(n.score))
    }

    /// Number of elements admitted by `max` from the left (so the last
    /// admitted element has rank `result - 1`).
    pub fn end_rank_by_score(&self, max: ScoreBound) -> usize {
        self.count_before(|n| max.admits_max(n.score))
    }

    pub fn first_rank_by_lex(&self, min: &LexBound) -> usize {
        self.count_before(|n| !min.admits_min(&n.member))
    }

    pub fn end_rank_by_lex(&self, max: &LexBound) -> usize {
        self.count_before(|n| max.admits_max(&n.member))
    }

    /// Counts the leading run of elements for which `pred` holds; `pred`
    /// must be true on a prefix of the order and false after it.
    fn count_before(&self, pred: impl Fn(&Node) -> bool) -> usize {
        let mut x = HEADER;
        let mut rank = 0usize;
        for i in (0..self.level).rev() {
            loop {
                let link = self.nodes[x as usize].links[i];
                if link.forward != NIL && pred(&self.nodes[link.forward as usize]) {
                    rank += link.span as usize;
                    x = link.forward;
                } else {
                    break;
                }
            }
        }
        rank
    }

    fn random_level(&mut self) -> usize {
        let mut level = 1;
        loop {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if level < MAX_LEVEL && (self.rng & 0xFFFF) < 0x4000 {
                level += 1;
            } else {
                return level;
            }
        }
    }

    fn link(&mut self, member: Blob, score: f64) {
        let mut update = [HEADER; MAX_LEVEL];
        let mut rank = [0usize; MAX_LEVEL];
        let mut x = HEADER;
        for i in (0..self.level).rev() {
            rank[i] = if i == self.level - 1 { 0 } else { rank[i + 1] };
            loop {
                let link = self.nodes[x as usize].links[i];
                if link.forward == NIL {
                    break;
                }
                let f = &self.nodes[link.forward as usize];
                if cmp_entry(f.score, &f.member, score, &member) == Ordering::Less {
                    rank[i] += link.span as usize;
                    x = link.forward;
                } else {
                    break;
                }
            }
            update[i] = x;
        }
        let level = self.random_level();
        if level > self.level {
            for i in self.level..level {
                rank[i] = 0;
                update[i] = HEADER;
                self.nodes[HEADER as usize].links[i].span = self.len() as u32;
            }
            self.level = level;
        }
        let node = Node {
            member,
            score,
            backward: NIL,
            links: vec![
                Link {
                    forward: NIL,
                    span: 0
                };
                level
            ]
            .into_boxed_slice(),
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.nodes[idx as usize] = node;
                idx
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        for i in 0..level {
            let prev = update[i] as usize;
            let prev_link = self.nodes[prev].links[i];
            let distance = (rank[0] - rank[i]) as u32;
            self.nodes[idx as usize].links[i] = Link {
                forward: prev_link.forward,
                span: prev_link.span - distance,
            };
            self.nodes[prev].links[i] = Link {
                forward: idx,
                span: distance + 1,
            };
        }
        #[allow(clippy::needless_range_loop)] // i indexes both update[] and links[]
        for i in level..self.level {
            self.nodes[update[i] as usize].links[i].span += 1;
        }
        self.nodes[idx as usize].backward = if update[0] == HEADER { NIL } else { update[0] };
        let next = self.nodes[idx as usize].links[0].forward;
        if next != NIL {
            self.nodes[next as usize].backward = idx;
        } else {
            self.tail = idx;
        }
    }

    fn unlink(&mut self, score: f64, member: &[u8]) {
        let mut update = [HEADER; MAX_LEVEL];
        let mut x = HEADER;
        for i in (0..self.level).rev() {
            loop {
                let link = self.nodes[x as usize].links[i];
                if link.forward == NIL {
                    break;
                }
                let f = &self.nodes[link.forward as usize];
                if cmp_entry(f.score, &f.member, score, member) == Ordering::Less {
                    x = link.forward;
                } else {
                    break;
                }
            }
            update[i] = x;
        }
        let target = self.nodes[x as usize].links[0].forward;
        if target == NIL || self.nodes[target as usize].member.as_bytes() != member {
            return;
        }
        #[allow(clippy::needless_range_loop)] // i indexes both update[] and links[]
        for i in 0..self.level {
            let prev = update[i] as usize;
            if self.nodes[prev].links[i].forward == target {
                let t = self.nodes[target as usize].links[i];
                self.nodes[prev].links[i].span += t.span;
                self.nodes[prev].links[i].span -= 1;
                self.nodes[prev].links[i].forward = t.forward;
            } else {
                self.nodes[prev].links[i].span -= 1;
            }
        }
        let next = self.nodes[target as usize].links[0].forward;
        let back = self.nodes[target as usize].backward;
        if next != NIL {
            self.nodes[next as usize].backward = back;
        } else {
            self.tail = back;
        }
        while self.level > 1 && self.nodes[HEADER as usize].links[self.level - 1].forward == NIL {
            self.level -= 1;
        }
        self.nodes[target as usize].links = Box::new([]);
        self.nodes[target as usize].member = Blob::new(b"");
        self.free.push(target);
        if self.scores.is_empty() {
            // Give memory back when the set empties.
            self.nodes.truncate(1);
            self.free.clear();
        }
    }
}

/// Walks the level-0 chain from a node, forward or backward.
pub struct ZIter<'a> {
    set: &'a ZSet,
    at: u32,
    reverse: bool,
}

impl<'a> Iterator for ZIter<'a> {
    type Item = (&'a Blob, f64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == NIL {
            return None;
        }
        let node = &self.set.nodes[self.at as usize];
        self.at = if self.reverse {
            node.backward
        } else {
            node.links[0].forward
        };
        Some((&node.member, node.score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn model_order(model: &BTreeMap<Vec<u8>, f64>) -> Vec<(Vec<u8>, f64)> {
        let mut v: Vec<_> = model.iter().map(|(m, s)| (m.clone(), *s)).collect();
        v.sort_by(|a, b| cmp_entry(a.1, &a.0, b.1, &b.0));
        v
    }

    proptest! {
        #[test]
        fn matches_sorted_model(ops in proptest::collection::vec((0u8..3, 0u8..40, -5i32..5), 1..300)) {
            let mut z = ZSet::new();
            let mut model = BTreeMap::new();
            for (op, m, s) in ops {
                let member = vec![b'a' + (m % 26), m];
                match op {
                    0 | 1 => { z.insert(&member, s as f64); model.insert(member, s as f64); }
                    _ => { prop_assert_eq!(z.remove(&member), model.remove(&member)); }
                }
            }
            let expected = model_order(&model);
            let got: Vec<_> = z.iter_from_rank(0).map(|(m, s)| (m.to_vec(), s)).collect();
            prop_assert_eq!(&got, &expected);
            let rev: Vec<_> = z.iter_rev_from_rank(z.len().saturating_sub(1)).map(|(m, s)| (m.to_vec(), s)).collect();
            let mut exp_rev = expected.clone();
            exp_rev.reverse();
            prop_assert_eq!(rev, exp_rev);
            for (i, (m, _)) in expected.iter().enumerate() {
                prop_assert_eq!(z.rank(m), Some(i));
                prop_assert_eq!(z.iter_from_rank(i).next().map(|(m, _)| m.to_vec()), Some(m.clone()));
            }
            let min = ScoreBound { value: -1.0, exclusive: true };
            let max = ScoreBound { value: 2.0, exclusive: false };
            let count = expected.iter().filter(|(_, s)| *s > -1.0 && *s <= 2.0).count();
            prop_assert_eq!(z.end_rank_by_score(max).saturating_sub(z.first_rank_by_score(min)), count);
        }
    }
}
