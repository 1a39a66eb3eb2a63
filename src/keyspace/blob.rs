//! [`Blob`]: the byte string used for keys and small values.
//!
//! Most keys and values are short, so a `Blob` keeps up to 22 bytes inline
//! (no allocation) and shares longer ones behind an `Arc`, which makes the
//! clone taken for a point-in-time snapshot a reference-count increment.
//! It is 24 bytes either way.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

const INLINE_CAP: usize = 22;

#[derive(Clone)]
pub enum Blob {
    Inline { len: u8, data: [u8; INLINE_CAP] },
    Shared(Arc<[u8]>),
}

impl Blob {
    pub fn new(bytes: &[u8]) -> Blob {
        if bytes.len() <= INLINE_CAP {
            let mut data = [0u8; INLINE_CAP];
            data[..bytes.len()].copy_from_slice(bytes);
            Blob::Inline {
                len: bytes.len() as u8,
                data,
            }
        } else {
            Blob::Shared(Arc::from(bytes))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Blob::Inline { len, data } => &data[..*len as usize],
            Blob::Shared(arc) => arc,
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap memory owned beyond the 24-byte handle.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Blob::Inline { .. } => 0,
            Blob::Shared(arc) => arc.len() + 16,
        }
    }

    pub fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(self.as_bytes())
    }
}

impl From<&[u8]> for Blob {
    fn from(b: &[u8]) -> Blob {
        Blob::new(b)
    }
}

impl From<&bytes::Bytes> for Blob {
    fn from(b: &bytes::Bytes) -> Blob {
        Blob::new(b)
    }
}

impl From<&str> for Blob {
    fn from(s: &str) -> Blob {
        Blob::new(s.as_bytes())
    }
}

impl std::ops::Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for Blob {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Blob {}

impl Hash for Blob {
    /// Hashes exactly like `[u8]`, so maps keyed by `Blob` can be probed
    /// with a borrowed slice.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl PartialOrd for Blob {
    fn partial_cmp(&self, other: &Blob) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Blob {
    fn cmp(&self, other: &Blob) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_roundtrip() {
        assert_eq!(std::mem::size_of::<Blob>(), 24);
        for len in [0, 1, 22, 23, 100] {
            let bytes = vec![7u8; len];
            let blob = Blob::new(&bytes);
            assert_eq!(blob.as_bytes(), &bytes[..]);
            assert_eq!(matches!(blob, Blob::Inline { .. }), len <= INLINE_CAP);
        }
    }
}
