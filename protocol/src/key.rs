//! Hashes, node ids, the ordering key of the log and ranges over it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;

/// A 32-byte BLAKE3 hash: the identity of a log entry.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, the smallest possible value.
    pub const ZERO: Hash = Hash([0; 32]);

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<[u8; 32]> for Hash {
    fn from(b: [u8; 32]) -> Self {
        Hash(b)
    }
}

/// An author: the 32-byte ed25519 public key of a node, identical to its iroh endpoint id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &hex::encode(self.0)[..16])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The ordering key of the log: `(hlc, hash)`, compared HLC first, then hash bytes.
///
/// Because an entry's HLC exceeds its parents', key order is a topological order of the DAG,
/// and fresh writes cluster at the end of the key space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryKey {
    /// The entry's hybrid logical clock stamp.
    pub hlc: Hlc,
    /// The entry's hash.
    pub hash: Hash,
}

impl EntryKey {
    /// The smallest key: `(0, 00..00)`.
    pub const MIN: EntryKey = EntryKey {
        hlc: Hlc(0),
        hash: Hash::ZERO,
    };

    /// Builds a key.
    pub fn new(hlc: impl Into<Hlc>, hash: impl Into<Hash>) -> Self {
        EntryKey {
            hlc: hlc.into(),
            hash: hash.into(),
        }
    }

    /// The 40-byte big-endian form `hlc (8 bytes BE) || hash (32 bytes)`, whose byte order is
    /// the key order.
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[..8].copy_from_slice(&self.hlc.0.to_be_bytes());
        out[8..].copy_from_slice(&self.hash.0);
        out
    }

    /// Parses the 40-byte form produced by [`EntryKey::to_bytes`].
    pub fn from_bytes(b: &[u8; 40]) -> Self {
        let mut hlc = [0u8; 8];
        hlc.copy_from_slice(&b[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[8..]);
        EntryKey::new(Hlc(u64::from_be_bytes(hlc)), Hash(hash))
    }
}

impl fmt::Debug for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.hlc.0, &self.hash.to_hex()[..12])
    }
}

/// A half-open range `[start, end)` of the key space; `end == None` means "to the end".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Range {
    /// Inclusive lower bound.
    pub start: EntryKey,
    /// Exclusive upper bound, or `None` for the end of the key space.
    pub end: Option<EntryKey>,
}

impl Range {
    /// The whole key space.
    pub const FULL: Range = Range {
        start: EntryKey::MIN,
        end: None,
    };

    /// `[start, end)`.
    pub fn new(start: EntryKey, end: Option<EntryKey>) -> Self {
        Range { start, end }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &EntryKey) -> bool {
        *key >= self.start && self.end.is_none_or(|e| *key < e)
    }

    /// Whether the range can hold no key at all (`end <= start`).
    pub fn is_empty(&self) -> bool {
        self.end.is_some_and(|e| e <= self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_sort_like_keys() {
        let a = EntryKey::new(1, [9; 32]);
        let b = EntryKey::new(2, [0; 32]);
        let c = EntryKey::new(2, [1; 32]);
        assert!(a < b && b < c);
        assert!(a.to_bytes() < b.to_bytes() && b.to_bytes() < c.to_bytes());
        assert_eq!(EntryKey::from_bytes(&c.to_bytes()), c);
    }

    #[test]
    fn range_contains_half_open() {
        let r = Range::new(EntryKey::new(5, [0; 32]), Some(EntryKey::new(7, [0; 32])));
        assert!(r.contains(&EntryKey::new(5, [0; 32])));
        assert!(r.contains(&EntryKey::new(6, [255; 32])));
        assert!(!r.contains(&EntryKey::new(7, [0; 32])));
        assert!(!r.contains(&EntryKey::new(4, [255; 32])));
        assert!(Range::FULL.contains(&EntryKey::new(u64::MAX, [255; 32])));
    }
}
