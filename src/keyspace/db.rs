//! One logical database (`SELECT n`): keys, their expiry times and the
//! WATCH registrations on them.
//!
//! Expiry follows Redis: a key past its deadline is deleted when it is next
//! touched (lazy) or when the active cycle samples it. Deleted-by-expiry keys
//! are logged in `expired` so the caller can propagate a `DEL` to replicas.
//! A replica never deletes on its own: it hides expired keys from reads and
//! waits for its primary's `DEL`, so both sides stay identical.
//!
//! Keys are kept in an insertion-ordered hash map so that random sampling
//! (RANDOMKEY, active expiry) is O(1) and SCAN can walk by position (see
//! [`Db::scan`]).

use super::blob::Blob;
use super::value::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set when a key a client WATCHes is modified; EXEC then aborts.
pub type WatchFlag = Arc<AtomicBool>;

/// How keys' access stamps are kept (Redis's `lru` field): the last
/// access in seconds (LRU, for OBJECT IDLETIME), or under an LFU
/// maxmemory policy a logarithmic access counter with the minute it was
/// last decayed (OBJECT FREQ). Switching policy reinterprets the stamps,
/// which take some time to adjust, as in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum AccessPolicy {
    #[default]
    Lru,
    Lfu {
        log_factor: u32,
        decay_minutes: u32,
    },
}

/// A new key's LFU counter, so it is not evicted at once (LFU_INIT_VAL).
const LFU_INIT: u32 = 5;

impl AccessPolicy {
    fn fresh(self, now_ms: i64) -> u32 {
        match self {
            AccessPolicy::Lru => clock_s(now_ms),
            AccessPolicy::Lfu { .. } => (minutes(now_ms) << 8) | LFU_INIT,
        }
    }

    /// The LFU counter after decay (Redis's LFUDecrAndReturn).
    fn decayed(self, stamp: u32, now_ms: i64) -> u32 {
        let AccessPolicy::Lfu { decay_minutes, .. } = self else {
            return 0;
        };
        let (last, counter) = (stamp >> 8, stamp & 0xff);
        let now = minutes(now_ms);
        let elapsed = if now >= last {
            now - last
        } else {
            65535 - last + now
        };
        let periods = elapsed.checked_div(decay_minutes).unwrap_or(0);
        counter.saturating_sub(periods)
    }

    fn touched(self, stamp: u32, now_ms: i64) -> u32 {
        match self {
            AccessPolicy::Lru => clock_s(now_ms),
            AccessPolicy::Lfu { log_factor, .. } => {
                let mut counter = self.decayed(stamp, now_ms);
                // Redis's LFULogIncr: ever less likely as the count grows.
                if counter < 255 {
                    let base = counter.saturating_sub(LFU_INIT) as f64;
                    if rand::random::<f64>() < 1.0 / (base * log_factor as f64 + 1.0) {
                        counter += 1;
                    }
                }
                (minutes(now_ms) << 8) | counter
            }
        }
    }
}

fn clock_s(now_ms: i64) -> u32 {
    (now_ms / 1000) as u32
}

fn minutes(now_ms: i64) -> u32 {
    ((now_ms / 60_000) & 0xffff) as u32
}

/// A key's value and its access stamp ([`AccessPolicy`]).
#[derive(Clone)]
struct Entry {
    value: Value,
    access: u32,
}

/// A key a command changed: `created` when the change added it (the
/// `new` notification), else any other change.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: Blob,
    pub created: bool,
}

/// One client's WATCH of one key: its dirty flag, and whether the key was
/// already logically expired when watched (deleting such a key is no
/// change; Redis's `watchedKey.expired`).
struct Watcher {
    flag: WatchFlag,
    expired: AtomicBool,
}

impl Watcher {
    fn touch(&self) {
        self.flag.store(true, Ordering::Release);
    }
}

#[derive(Default)]
pub struct Db {
    entries: Map<Blob, Entry>,
    /// The latest clock reading seen, stamped on stored values.
    clock_ms: i64,
    pub access_policy: AccessPolicy,
    expires: Map<Blob, i64>,
    watched: HashMap<Blob, Vec<Watcher>>,
    /// Keys removed by expiry since the caller last drained this log.
    pub expired: Vec<Blob>,
    /// False on replicas: expired keys are hidden, not deleted.
    pub delete_expired: bool,
    /// The running command's client is in CLIENT NO-TOUCH mode: lookups
    /// leave access stamps alone.
    pub no_touch: bool,
    /// Keyspace notifications are on: changes are recorded in `changes`.
    pub track_changes: bool,
    changes: Vec<Change>,
    pub hits: u64,
    pub misses: u64,
}

impl Clone for Db {
    /// Clones the data only (for point-in-time snapshots): WATCH
    /// registrations and logs belong to the live database.
    fn clone(&self) -> Db {
        Db {
            entries: self.entries.clone(),
            clock_ms: self.clock_ms,
            access_policy: self.access_policy,
            expires: self.expires.clone(),
            watched: HashMap::new(),
            expired: Vec::new(),
            delete_expired: self.delete_expired,
            no_touch: false,
            track_changes: false,
            changes: Vec::new(),
            hits: 0,
            misses: 0,
        }
    }
}

impl Db {
    pub fn new() -> Db {
        Db {
            delete_expired: true,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn expires_len(&self) -> usize {
        self.expires.len()
    }

    fn is_expired_at(&self, key: &[u8], now_ms: i64) -> bool {
        matches!(self.expires.get(key), Some(&at) if at <= now_ms)
    }

    /// True if the key is logically gone; deletes it (and logs it) unless
    /// this is a replica.
    fn expire_if_needed(&mut self, key: &[u8], now_ms: i64) -> bool {
        if !self.is_expired_at(key, now_ms) {
            return false;
        }
        if self.delete_expired {
            if let Some((k, _)) = self.entries.swap_remove_entry(key) {
                self.expires.swap_remove(key);
                self.touch_watchers(key);
                self.expired.push(k);
            }
        }
        true
    }

    /// Looks a key up for reading, counting a keyspace hit or miss, and
    /// marks it accessed.
    pub fn get(&mut self, key: &[u8], now_ms: i64) -> Option<&Value> {
        if self.expire_if_needed(key, now_ms) {
            self.misses += 1;
            return None;
        }
        self.clock_ms = now_ms;
        let policy = self.access_policy;
        match self.entries.get_mut(key) {
            Some(e) => {
                self.hits += 1;
                if !self.no_touch {
                    e.access = policy.touched(e.access, now_ms);
                }
                Some(&e.value)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Looks a key up without touching statistics or its access time.
    pub fn peek(&mut self, key: &[u8], now_ms: i64) -> Option<&Value> {
        if self.expire_if_needed(key, now_ms) {
            return None;
        }
        self.clock_ms = now_ms;
        self.entries.get(key).map(|e| &e.value)
    }

    /// A key's value as stored, even if it is past its expiry time (DEBUG
    /// OBJECT, which Redis answers from the raw dictionary).
    pub fn peek_stored(&self, key: &[u8]) -> Option<&Value> {
        self.entries.get(key).map(|e| &e.value)
    }

    /// Looks a key up for modification. The caller signals the change with
    /// [`Db::signal_modified`] once it has made one.
    pub fn get_mut(&mut self, key: &[u8], now_ms: i64) -> Option<&mut Value> {
        if self.expire_if_needed(key, now_ms) {
            return None;
        }
        self.clock_ms = now_ms;
        let policy = self.access_policy;
        let e = self.entries.get_mut(key)?;
        if !self.no_touch {
            e.access = policy.touched(e.access, now_ms);
        }
        Some(&mut e.value)
    }

    /// Seconds since the key was last accessed (OBJECT IDLETIME; LRU).
    pub fn idle_secs(&self, key: &[u8], now_ms: i64) -> Option<u64> {
        let e = self.entries.get(key)?;
        Some(clock_s(now_ms).saturating_sub(e.access) as u64)
    }

    /// The key's access counter (OBJECT FREQ; LFU).
    pub fn freq(&self, key: &[u8], now_ms: i64) -> Option<u32> {
        let e = self.entries.get(key)?;
        Some(self.access_policy.decayed(e.access, now_ms))
    }

    /// Sets the key's access stamp as RESTORE's IDLETIME (LRU) or FREQ
    /// (LFU) asks; the one that does not match the policy is ignored.
    pub fn set_access(
        &mut self,
        key: &[u8],
        idle_secs: Option<u64>,
        freq: Option<u8>,
        now_ms: i64,
    ) {
        let policy = self.access_policy;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        match (policy, idle_secs, freq) {
            (AccessPolicy::Lru, Some(secs), _) => {
                e.access = clock_s(now_ms).saturating_sub(secs.min(u32::MAX as u64) as u32)
            }
            (AccessPolicy::Lfu { .. }, _, Some(f)) => e.access = (minutes(now_ms) << 8) | f as u32,
            _ => {}
        }
    }

    /// Marks the key accessed (TOUCH, even for a NO-TOUCH client);
    /// whether it exists.
    pub fn touch(&mut self, key: &[u8], now_ms: i64) -> bool {
        let saved = std::mem::replace(&mut self.no_touch, false);
        let found = self.get_mut(key, now_ms).is_some();
        self.no_touch = saved;
        found
    }

    pub fn contains(&mut self, key: &[u8], now_ms: i64) -> bool {
        self.peek(key, now_ms).is_some()
    }

    /// Stores `value`, dropping any TTL unless `keep_ttl`.
    pub fn set(&mut self, key: &[u8], value: Value, keep_ttl: bool) {
        if !keep_ttl {
            self.expires.swap_remove(key);
        }
        let fresh = self.access_policy.fresh(self.clock_ms);
        match self.entries.get_mut(key) {
            Some(slot) => {
                // Overwriting keeps the key's LFU history (as Redis).
                let access = match self.access_policy {
                    AccessPolicy::Lru => fresh,
                    AccessPolicy::Lfu { .. } => slot.access,
                };
                *slot = Entry { value, access };
            }
            None => {
                let entry = Entry {
                    value,
                    access: fresh,
                };
                self.entries.insert(Blob::new(key), entry);
                if self.track_changes {
                    self.changes.push(Change {
                        key: Blob::new(key),
                        created: true,
                    });
                }
            }
        }
        self.signal_modified(key);
    }

    /// Removes a key with its TTL; the caller has already checked expiry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Value> {
        let value = self.entries.swap_remove(key)?.value;
        self.expires.swap_remove(key);
        self.signal_modified(key);
        Some(value)
    }

    /// Removes a key and returns its value and deadline (RENAME, MOVE).
    pub fn take(&mut self, key: &[u8]) -> Option<(Value, Option<i64>)> {
        let value = self.entries.swap_remove(key)?.value;
        let expire = self.expires.swap_remove(key);
        self.signal_modified(key);
        Some((value, expire))
    }

    pub fn expire_at(&self, key: &[u8]) -> Option<i64> {
        self.expires.get(key).copied()
    }

    /// Sets the absolute deadline of an existing key.
    pub fn set_expire(&mut self, key: &[u8], at_ms: i64) {
        if let Some((k, _)) = self.entries.get_key_value(key) {
            let k = k.clone();
            self.expires.insert(k, at_ms);
            self.signal_modified(key);
        }
    }

    /// Drops a key's TTL; returns whether it had one.
    pub fn persist(&mut self, key: &[u8]) -> bool {
        let had = self.expires.swap_remove(key).is_some();
        if had {
            self.signal_modified(key);
        }
        had
    }

    /// Records that a command changed `key` (for keyspace notifications,
    /// when on) and marks its WATCHers dirty.
    pub fn signal_modified(&mut self, key: &[u8]) {
        if self.track_changes {
            self.changes.push(Change {
                key: Blob::new(key),
                created: false,
            });
        }
        self.touch_watchers(key);
    }

    /// Takes the changes recorded since the last call (oldest first).
    pub fn drain_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Marks WATCHers of `key` dirty, except those that watched it
    /// already expired and now see it deleted (no logical change).
    fn touch_watchers(&self, key: &[u8]) {
        if self.watched.is_empty() {
            return;
        }
        if let Some(watchers) = self.watched.get(key) {
            let gone = !self.entries.contains_key(key);
            for w in watchers {
                if gone && w.expired.swap(false, Ordering::AcqRel) {
                    continue;
                }
                w.touch();
            }
        }
    }

    pub fn watch(&mut self, key: &[u8], flag: &WatchFlag, now_ms: i64) {
        let expired = self.is_expired_at(key, now_ms);
        let list = self.watched.entry(Blob::new(key)).or_default();
        if !list.iter().any(|w| Arc::ptr_eq(&w.flag, flag)) {
            list.push(Watcher {
                flag: flag.clone(),
                expired: AtomicBool::new(expired),
            });
        }
    }

    pub fn unwatch(&mut self, key: &[u8], flag: &WatchFlag) {
        if let Some(list) = self.watched.get_mut(key) {
            list.retain(|w| !Arc::ptr_eq(&w.flag, flag));
            if list.is_empty() {
                self.watched.remove(key);
            }
        }
    }

    /// True if `key`, watched with `flag` while it was live, has expired
    /// since (EXEC then fails as if it had been modified).
    pub fn watched_key_expired(&self, key: &[u8], flag: &WatchFlag, now_ms: i64) -> bool {
        let expired_at_watch = self.watched.get(key).is_some_and(|list| {
            list.iter()
                .any(|w| Arc::ptr_eq(&w.flag, flag) && w.expired.load(Ordering::Acquire))
        });
        !expired_at_watch && self.is_expired_at(key, now_ms)
    }

    /// Signals the watchers of keys this database's data is about to lose
    /// (FLUSHDB: `replaced_with` None) or exchange for `replaced_with`'s
    /// (SWAPDB), with Redis's rules for keys that were or become expired.
    fn signal_replaced(&self, replaced_with: Option<&Db>, now_ms: i64) {
        for (key, watchers) in &self.watched {
            let here = self.entries.contains_key(key);
            let there = replaced_with.is_some_and(|o| o.entries.contains_key(key));
            if !here && !there {
                continue;
            }
            let there_expired = replaced_with.is_some_and(|o| o.is_expired_at(key, now_ms));
            for w in watchers {
                if w.expired.load(Ordering::Acquire) {
                    if !there {
                        w.expired.store(false, Ordering::Release);
                        continue;
                    }
                    if there_expired {
                        continue;
                    }
                } else if !here && there_expired {
                    w.expired.store(true, Ordering::Release);
                    continue;
                }
                w.touch();
            }
        }
    }

    /// Signals the watchers of every key this database holds (its data is
    /// being dropped).
    pub fn signal_all_watched(&self) {
        self.signal_replaced(None, 0);
    }

    /// Swaps the data (not the WATCH registrations) with another database.
    pub fn swap_data(&mut self, other: &mut Db, now_ms: i64) {
        self.signal_replaced(Some(other), now_ms);
        other.signal_replaced(Some(self), now_ms);
        std::mem::swap(&mut self.entries, &mut other.entries);
        std::mem::swap(&mut self.expires, &mut other.expires);
    }

    /// Empties the database; returns how many keys it held.
    pub fn clear(&mut self) -> usize {
        self.signal_all_watched();
        let n = self.entries.len();
        self.entries = Map::default();
        self.expires = Map::default();
        n
    }

    /// A uniformly random live key.
    pub fn random_key(&mut self, now_ms: i64) -> Option<Blob> {
        for _ in 0..100 {
            if self.entries.is_empty() {
                return None;
            }
            let i = rand::random_range(0..self.entries.len());
            let key = self.entries.get_index(i).map(|(k, _)| k.clone())?;
            if !self.is_expired_at(&key, now_ms) {
                return Some(key);
            }
            if self.delete_expired {
                self.expire_if_needed(&key, now_ms);
            } else if self.expires.len() == self.entries.len() {
                // Replica where every key has expired: nothing to return.
                return None;
            }
        }
        None
    }

    /// Walks keys by position from the end towards the start.
    ///
    /// A cursor is one more than the next position to visit (0 = start).
    /// Deleting a key moves the last key into the hole (swap-remove), so a key
    /// only ever moves to a lower position; walking downwards therefore
    /// returns every key present for the whole scan at least once, as SCAN
    /// promises. Returns the next cursor (0 when done).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        mut visit: impl FnMut(&Blob, &Value, Option<i64>),
    ) -> u64 {
        scan_positions(self.entries.len(), cursor, count, |pos| {
            if let Some((k, e)) = self.entries.get_index(pos) {
                visit(k, &e.value, self.expires.get(k).copied());
            }
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Blob, &Value, Option<i64>)> {
        self.entries
            .iter()
            .map(|(k, e)| (k, &e.value, self.expires.get(k).copied()))
    }

    /// Up to `samples` random keys in the policy's scope with their
    /// eviction score (higher goes first): idle milliseconds (LRU), 255
    /// minus the access counter (LFU), or how soon the key expires (TTL).
    pub fn eviction_sample(
        &self,
        policy: super::evict::EvictionPolicy,
        samples: usize,
        now_ms: i64,
    ) -> Vec<(Blob, u64)> {
        use super::evict::{Rank, Victims};
        let len = match policy.victims {
            Victims::AllKeys => self.entries.len(),
            Victims::Volatile => self.expires.len(),
        };
        let mut out = Vec::with_capacity(samples.min(len));
        if len == 0 {
            return out;
        }
        for _ in 0..samples.min(len) {
            let i = rand::random_range(0..len);
            let (key, entry) = match policy.victims {
                Victims::AllKeys => match self.entries.get_index(i) {
                    Some((k, e)) => (k, e),
                    None => continue,
                },
                Victims::Volatile => match self
                    .expires
                    .get_index(i)
                    .and_then(|(k, _)| self.entries.get_key_value(k))
                {
                    Some((k, e)) => (k, e),
                    None => continue,
                },
            };
            let score = match policy.rank {
                Rank::Lru => (clock_s(now_ms).saturating_sub(entry.access) as u64) * 1000,
                Rank::Lfu => 255 - self.access_policy.decayed(entry.access, now_ms).min(255) as u64,
                Rank::Ttl => {
                    u64::MAX
                        - self
                            .expires
                            .get(key)
                            .map_or(u64::MAX, |&at| at.max(0) as u64)
                }
                Rank::Random => 0,
            };
            out.push((key.clone(), score));
        }
        out
    }

    /// A random key in the scope (the random eviction policies).
    pub fn random_victim(&self, victims: super::evict::Victims) -> Option<Blob> {
        let map_len = match victims {
            super::evict::Victims::AllKeys => self.entries.len(),
            super::evict::Victims::Volatile => self.expires.len(),
        };
        if map_len == 0 {
            return None;
        }
        let i = rand::random_range(0..map_len);
        match victims {
            super::evict::Victims::AllKeys => self.entries.get_index(i).map(|(k, _)| k.clone()),
            super::evict::Victims::Volatile => self.expires.get_index(i).map(|(k, _)| k.clone()),
        }
    }

    /// One round of active expiry: samples up to `samples` keys with a TTL
    /// and deletes the expired ones. Returns (sampled, expired).
    pub fn active_expire_round(&mut self, now_ms: i64, samples: usize) -> (usize, usize) {
        if !self.delete_expired || self.expires.is_empty() {
            return (0, 0);
        }
        let mut expired = 0;
        let sampled = samples.min(self.expires.len());
        for _ in 0..sampled {
            if self.expires.is_empty() {
                break;
            }
            let i = rand::random_range(0..self.expires.len());
            let Some((key, &at)) = self.expires.get_index(i) else {
                break;
            };
            if at <= now_ms {
                let key = key.clone();
                if self.expire_if_needed(&key, now_ms) {
                    expired += 1;
                }
            }
        }
        (sampled, expired)
    }
}

/// The SCAN cursor walk over any swap-remove indexed collection of `len`
/// elements (keys, hash fields, set members): visits up to `count`
/// positions downwards from the cursor and returns the next cursor.
/// See [`Db::scan`] for why walking downwards keeps SCAN's guarantee.
pub fn scan_positions(len: usize, cursor: u64, count: usize, mut visit: impl FnMut(usize)) -> u64 {
    let len = len as u64;
    let mut pos = if cursor == 0 || cursor > len {
        len
    } else {
        cursor
    };
    let mut visited = 0;
    while pos > 0 && visited < count.max(1) {
        pos -= 1;
        visit(pos as usize);
        visited += 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_survives_deletions() {
        let mut db = Db::new();
        for i in 0..1000 {
            db.set(format!("k{i}").as_bytes(), Value::Int(i), false);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = db.scan(cursor, 10, |k, _, _| {
                seen.insert(k.to_vec());
            });
            // Delete some keys mid-scan, never the odd ones we check below.
            round += 1;
            db.remove(format!("k{}", round * 2).as_bytes());
            if cursor == 0 {
                break;
            }
        }
        for i in (1..1000).step_by(2) {
            assert!(seen.contains(format!("k{i}").as_bytes()), "k{i} missed");
        }
    }

    #[test]
    fn lazy_and_active_expiry() {
        let mut db = Db::new();
        db.set(b"a", Value::Int(1), false);
        db.set_expire(b"a", 100);
        assert!(db.get(b"a", 99).is_some());
        assert!(db.get(b"a", 100).is_none());
        assert_eq!(db.len(), 0);
        assert_eq!(db.expired.len(), 1);
        for i in 0..100 {
            db.set(format!("x{i}").as_bytes(), Value::Int(i), false);
            db.set_expire(format!("x{i}").as_bytes(), 5);
        }
        let mut rounds = 0;
        while !db.is_empty() && rounds < 1000 {
            db.active_expire_round(10, 20);
            rounds += 1;
        }
        assert_eq!(db.len(), 0);
    }

    #[test]
    fn replica_hides_but_keeps_expired_keys() {
        let mut db = Db::new();
        db.delete_expired = false;
        db.set(b"a", Value::Int(1), false);
        db.set_expire(b"a", 100);
        assert!(db.get(b"a", 200).is_none());
        assert_eq!(db.len(), 1);
    }
}
