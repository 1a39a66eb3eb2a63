//! Names in the replication protocol, as types: a history's [`ReplId`]
//! (Redis's `master_replid`) and a promotion [`Epoch`]. Both serialise as
//! the plain string and integer they wrap, so the wire format, the log's
//! `meta` file and INFO are unchanged.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A replication id: 40 hex characters naming one history of the stream.
/// The default is the empty id: no history recorded (a state file or
/// snapshot written before any).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReplId(String);

impl ReplId {
    /// A new history's id (random, as Redis's).
    pub fn random() -> ReplId {
        ReplId(
            (0..40)
                .map(|_| format!("{:x}", rand::random_range(0..16u8)))
                .collect(),
        )
    }

    /// The id of a history nobody has (Redis's `replid2` when unset).
    pub fn none() -> ReplId {
        ReplId("0".repeat(40))
    }

    /// Whether this is the empty id (nothing recorded).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first characters, for file names and log lines.
    pub fn short(&self) -> &str {
        self.0.get(..8).unwrap_or(&self.0)
    }
}

impl From<String> for ReplId {
    /// Ids read from files and peers are taken as they are: comparing them
    /// is all a node does with them.
    fn from(id: String) -> ReplId {
        ReplId(id)
    }
}

impl From<&str> for ReplId {
    fn from(id: &str) -> ReplId {
        ReplId(id.to_string())
    }
}

impl fmt::Display for ReplId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ReplId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplId({})", self.0)
    }
}

impl PartialEq<str> for ReplId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A promotion epoch: raised by every promotion, carried in handshakes
/// and pings, saved in the data directory. A node never follows an
/// upstream with an older one (it was replaced by a promotion).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch a promoted node takes: above everything it has seen.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialise_as_the_string_they_wrap() {
        let id = ReplId::random();
        assert_eq!(id.as_str().len(), 40);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let wire = postcard::to_allocvec(&id).unwrap();
        assert_eq!(
            wire,
            postcard::to_allocvec(&id.as_str().to_string()).unwrap()
        );
        assert_eq!(postcard::from_bytes::<ReplId>(&wire).unwrap(), id);
        assert_eq!(ReplId::none().short(), "00000000");
        let epoch = Epoch(7);
        assert_eq!(
            postcard::to_allocvec(&epoch).unwrap(),
            postcard::to_allocvec(&7u64).unwrap()
        );
        assert_eq!(epoch.next(), Epoch(8));
    }
}
