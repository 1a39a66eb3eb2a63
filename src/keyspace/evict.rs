//! Choosing keys to evict at `maxmemory` (Redis's `evict.c`), sans-IO.
//!
//! As Redis, eviction is approximate: each round samples `maxmemory-samples`
//! keys per database (all keys, or only those with a TTL) and merges them
//! into a small pool of the best candidates seen so far, kept across
//! rounds; the best candidate still present is evicted. The caller loops,
//! measuring the memory freed, until the node is under its limit.

use super::{Blob, Keyspace};

/// Which keys may be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victims {
    AllKeys,
    /// Only keys with a TTL.
    Volatile,
}

/// How candidates are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    /// Longest idle first.
    Lru,
    /// Lowest access counter first.
    Lfu,
    /// Nearest expiry first (volatile only).
    Ttl,
    /// Any key.
    Random,
}

/// An evicting `maxmemory-policy` (`noeviction` is the absence of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionPolicy {
    pub victims: Victims,
    pub rank: Rank,
}

/// Redis's EVPOOL_SIZE.
const POOL_SIZE: usize = 16;

/// One candidate: higher `score` is evicted first.
#[derive(Debug, Clone)]
struct Candidate {
    score: u64,
    db: usize,
    key: Blob,
}

/// The best candidates seen so far, ascending by score.
#[derive(Default)]
pub struct EvictionPool {
    candidates: Vec<Candidate>,
    /// Where the random policies look next (they rotate over databases).
    next_db: usize,
}

impl EvictionPool {
    fn offer(&mut self, c: Candidate) {
        if self
            .candidates
            .iter()
            .any(|o| o.db == c.db && o.key == c.key)
        {
            return;
        }
        if self.candidates.len() == POOL_SIZE {
            if c.score <= self.candidates[0].score {
                return;
            }
            self.candidates.remove(0);
        }
        let at = self.candidates.partition_point(|o| o.score < c.score);
        self.candidates.insert(at, c);
    }

    /// Forgets every candidate (the databases were replaced or flushed).
    pub fn clear(&mut self) {
        self.candidates.clear();
    }
}

impl Keyspace {
    /// Picks one key under `policy`, deletes it and returns it with its
    /// database and what it took ([`super::entry_bytes`]), or None when no
    /// key may be evicted (no key at all, or no key with a TTL under a
    /// volatile policy).
    pub fn evict_one(
        &mut self,
        policy: EvictionPolicy,
        samples: usize,
        now_ms: i64,
    ) -> Option<(usize, Blob, usize)> {
        let (db, key) = self.choose_victim(policy, samples, now_ms)?;
        let value = self.dbs[db].remove(&key)?;
        let bytes = super::entry_bytes(key.as_bytes(), &value);
        Some((db, key, bytes))
    }

    /// The key to evict next, still in place.
    fn choose_victim(
        &mut self,
        policy: EvictionPolicy,
        samples: usize,
        now_ms: i64,
    ) -> Option<(usize, Blob)> {
        let samples = samples.max(1);
        let in_scope = |ks: &Keyspace, db: usize| match policy.victims {
            Victims::AllKeys => ks.dbs[db].len(),
            Victims::Volatile => ks.dbs[db].expires_len(),
        };
        if policy.rank == Rank::Random {
            for _ in 0..self.dbs.len() {
                let db = self.eviction.next_db % self.dbs.len();
                self.eviction.next_db = self.eviction.next_db.wrapping_add(1);
                if in_scope(self, db) == 0 {
                    continue;
                }
                if let Some(key) = self.dbs[db].random_victim(policy.victims) {
                    return Some((db, key));
                }
            }
            return None;
        }
        loop {
            if (0..self.dbs.len()).all(|db| in_scope(self, db) == 0) {
                return None;
            }
            for db in 0..self.dbs.len() {
                if in_scope(self, db) == 0 {
                    continue;
                }
                for (key, score) in self.dbs[db].eviction_sample(policy, samples, now_ms) {
                    self.eviction.offer(Candidate { score, db, key });
                }
            }
            // Best first; a candidate may have gone since it was sampled.
            while let Some(c) = self.eviction.candidates.pop() {
                let d = &mut self.dbs[c.db];
                let eligible = match policy.victims {
                    Victims::AllKeys => d.peek_stored(&c.key).is_some(),
                    Victims::Volatile => d.expire_at(&c.key).is_some(),
                };
                if eligible {
                    return Some((c.db, c.key));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{AccessPolicy, Value};

    fn string(s: &str) -> Value {
        Value::Str(Blob::new(s.as_bytes()))
    }

    fn policy(victims: Victims, rank: Rank) -> EvictionPolicy {
        EvictionPolicy { victims, rank }
    }

    #[test]
    fn lru_evicts_the_longest_idle_keys_first() {
        let mut ks = Keyspace::new();
        let db = &mut ks.dbs[0];
        for i in 0..20 {
            db.set(format!("old{i}").as_bytes(), string("v"), false);
            db.set_access(format!("old{i}").as_bytes(), Some(1000), None, 2_000_000);
        }
        for i in 0..20 {
            db.set(format!("new{i}").as_bytes(), string("v"), false);
            db.set_access(format!("new{i}").as_bytes(), Some(0), None, 2_000_000);
        }
        // With as many samples as keys, the choice is exact.
        for _ in 0..20 {
            let (d, key, bytes) = ks
                .evict_one(policy(Victims::AllKeys, Rank::Lru), 40, 2_000_000)
                .unwrap();
            assert!(bytes > key.len());
            assert_eq!(d, 0);
            assert!(key.as_bytes().starts_with(b"old"), "{key:?}");
        }
        assert_eq!(ks.dbs[0].len(), 20);
    }

    #[test]
    fn lfu_keeps_the_frequently_used_keys() {
        let mut ks = Keyspace::new();
        ks.set_access_policy(AccessPolicy::Lfu {
            log_factor: 10,
            decay_minutes: 1,
        });
        let now = 10_000_000;
        let db = &mut ks.dbs[0];
        for i in 0..10 {
            db.set(format!("hot{i}").as_bytes(), string("v"), false);
            db.set_access(format!("hot{i}").as_bytes(), None, Some(200), now);
            db.set(format!("cold{i}").as_bytes(), string("v"), false);
            db.set_access(format!("cold{i}").as_bytes(), None, Some(1), now);
        }
        for _ in 0..10 {
            let (_, key, _) = ks
                .evict_one(policy(Victims::AllKeys, Rank::Lfu), 20, now)
                .unwrap();
            assert!(key.as_bytes().starts_with(b"cold"), "{key:?}");
        }
    }

    #[test]
    fn volatile_policies_only_take_keys_with_a_ttl() {
        let mut ks = Keyspace::new();
        let db = &mut ks.dbs[3];
        db.set(b"keep", string("v"), false);
        db.set(b"later", string("v"), false);
        db.set_expire(b"later", 9_000_000);
        db.set(b"sooner", string("v"), false);
        db.set_expire(b"sooner", 5_000_000);
        let ttl = policy(Victims::Volatile, Rank::Ttl);
        assert_eq!(
            ks.evict_one(ttl, 5, 1_000)
                .map(|(d, k, _)| (d, k.as_bytes().to_vec())),
            Some((3, b"sooner".to_vec()))
        );
        assert_eq!(
            ks.evict_one(ttl, 5, 1_000)
                .map(|(_, k, _)| k.as_bytes().to_vec()),
            Some(b"later".to_vec())
        );
        assert_eq!(ks.evict_one(ttl, 5, 1_000), None);
        let random = policy(Victims::Volatile, Rank::Random);
        assert_eq!(ks.evict_one(random, 5, 1_000), None);
        assert_eq!(ks.dbs[3].len(), 1);
        let any = policy(Victims::AllKeys, Rank::Random);
        assert_eq!(
            ks.evict_one(any, 5, 1_000)
                .map(|(_, k, _)| k.as_bytes().to_vec()),
            Some(b"keep".to_vec())
        );
        assert_eq!(ks.evict_one(any, 5, 1_000), None);
    }

    #[test]
    fn a_candidate_deleted_since_it_was_sampled_is_skipped() {
        let mut ks = Keyspace::new();
        for i in 0..5 {
            ks.dbs[0].set(format!("k{i}").as_bytes(), string("v"), false);
        }
        let lru = policy(Victims::AllKeys, Rank::Lru);
        ks.evict_one(lru, 5, 1_000).unwrap();
        // The pool still names keys that are about to go away.
        for i in 0..5 {
            ks.dbs[0].remove(format!("k{i}").as_bytes());
        }
        ks.dbs[0].set(b"last", string("v"), false);
        assert_eq!(
            ks.evict_one(lru, 5, 1_000)
                .map(|(_, k, _)| k.as_bytes().to_vec()),
            Some(b"last".to_vec())
        );
    }
}
