//! Function libraries as data: each library's source (what `FUNCTION LOAD`
//! was given, shebang included) by library name.
//!
//! What a library defines is only known by running it, which is the
//! scripting engine's work (`commands`); the keyspace holds the sources,
//! because they are what snapshots, full syncs, `FUNCTION DUMP` and the
//! SYNC RDB carry, and what a node rebuilds its functions from. Unlike
//! keys, libraries are not per database and FLUSHALL leaves them.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every change gets a fresh version, unique in the process, so an engine
/// that compiled version `v` knows whether it is still current (also
/// after a snapshot or full sync replaced the libraries wholesale).
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

#[derive(Clone, Debug)]
pub struct Libraries {
    sources: BTreeMap<String, Bytes>,
    version: u64,
}

impl Default for Libraries {
    fn default() -> Self {
        Libraries {
            sources: BTreeMap::new(),
            version: next_version(),
        }
    }
}

impl PartialEq for Libraries {
    /// Same libraries, whatever their versions.
    fn eq(&self, other: &Self) -> bool {
        self.sources == other.sources
    }
}

impl Libraries {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.sources.get(name)
    }

    /// (name, source) in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.sources.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// Adds or replaces a library.
    pub fn insert(&mut self, name: String, source: Bytes) {
        self.sources.insert(name, source);
        self.version = next_version();
    }

    pub fn remove(&mut self, name: &str) -> Option<Bytes> {
        let removed = self.sources.remove(name);
        if removed.is_some() {
            self.version = next_version();
        }
        removed
    }

    pub fn clear(&mut self) {
        self.sources.clear();
        self.version = next_version();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_is_a_new_version() {
        let mut libs = Libraries::default();
        let v0 = libs.version();
        libs.insert("a".into(), Bytes::from_static(b"#!lua name=a\n"));
        let v1 = libs.version();
        assert_ne!(v0, v1);
        assert!(libs.remove("missing").is_none());
        assert_eq!(libs.version(), v1);
        libs.remove("a");
        assert_ne!(libs.version(), v1);
        assert!(libs.is_empty());
        // A fresh (loaded) set never shares a version with a live one.
        assert_ne!(Libraries::default().version(), libs.version());
    }
}
