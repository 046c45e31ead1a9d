//! [`MemoryStore`]: an in-memory [`RangeStore`] for tests, tools and small replicas.

use crate::fingerprint::Aggregate;
use crate::key::{EntryKey, Range};
#[cfg(feature = "negentropy")]
use crate::negentropy;
use crate::range::index::{IndexIter, RangeIndex};
use crate::range::{RangeStore, StoreError};

/// An in-memory ordered key set with `O(log n)` range queries in both dialects.
///
/// A thin wrapper over [`RangeIndex`], the augmented B+tree the redb store uses too: inserts
/// and removals cost `O(log n)` (no rebuild), and [`snapshot`](MemoryStore::snapshot) is an
/// `O(1)` frozen copy that a reconciliation session can read while the store keeps growing.
///
/// ```
/// use oplog_protocol::{MemoryStore, RangeStore, EntryKey, Range};
///
/// let mut store: MemoryStore = (1..=100u64).map(|i| EntryKey::new(i, [0; 32])).collect();
/// let r = Range::new(EntryKey::new(10, [0; 32]), Some(EntryKey::new(20, [0; 32])));
/// assert_eq!(store.count(&r).unwrap(), 10);
/// assert_eq!(store.key_at(&r, 3).unwrap(), Some(EntryKey::new(13, [0; 32])));
///
/// let frozen = store.snapshot();
/// store.insert(EntryKey::new(15, [1; 32]));
/// assert_eq!(store.count(&r).unwrap(), 11);
/// assert_eq!(frozen.count(&r).unwrap(), 10);
/// ```
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    index: RangeIndex,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key in `O(log n)`; returns whether it was new.
    pub fn insert(&mut self, key: EntryKey) -> bool {
        self.index.insert(key)
    }

    /// Removes a key in `O(log n)`; returns whether it was present.
    pub fn remove(&mut self, key: &EntryKey) -> bool {
        self.index.remove(key)
    }

    /// Whether the key is present.
    pub fn contains(&self, key: &EntryKey) -> bool {
        self.index.contains(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        usize::try_from(self.index.len()).unwrap_or(usize::MAX)
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// All keys in order.
    pub fn iter(&self) -> IndexIter<'_> {
        self.index.iter()
    }

    /// An `O(1)` copy of the store as it is now; later changes to either do not show in the
    /// other. Answer every message of one session from one snapshot (spec section 8.12).
    #[must_use]
    pub fn snapshot(&self) -> MemoryStore {
        self.clone()
    }

    /// The index the store answers from.
    pub fn index(&self) -> &RangeIndex {
        &self.index
    }
}

impl FromIterator<EntryKey> for MemoryStore {
    fn from_iter<T: IntoIterator<Item = EntryKey>>(iter: T) -> Self {
        MemoryStore {
            index: iter.into_iter().collect(),
        }
    }
}

impl Extend<EntryKey> for MemoryStore {
    fn extend<T: IntoIterator<Item = EntryKey>>(&mut self, iter: T) {
        self.index.extend(iter);
    }
}

/// Answered by the [`RangeIndex`]: `O(log n)` per query in both dialects, no scan.
impl RangeStore for MemoryStore {
    fn count(&self, range: &Range) -> Result<u64, StoreError> {
        self.index.count(range)
    }

    fn aggregate(&self, range: &Range) -> Result<Aggregate, StoreError> {
        self.index.aggregate(range)
    }

    fn key_at(&self, range: &Range, rank: u64) -> Result<Option<EntryKey>, StoreError> {
        self.index.key_at(range, rank)
    }

    fn keys(&self, range: &Range, limit: usize) -> Result<Vec<EntryKey>, StoreError> {
        self.index.keys(range, limit)
    }

    #[cfg(feature = "negentropy")]
    fn negentropy_fingerprint(&self, range: &Range) -> Result<negentropy::Fingerprint, StoreError> {
        self.index.negentropy_fingerprint(range)
    }
}

impl<'a> IntoIterator for &'a MemoryStore {
    type Item = &'a EntryKey;
    type IntoIter = IndexIter<'a>;

    fn into_iter(self) -> IndexIter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn queries_match_a_scan(
            keys in proptest::collection::btree_set((0u64..500, any::<[u8; 1]>()), 0..300),
            a in (0u64..520, any::<u8>()), b in (0u64..520, any::<u8>()),
            open_end in any::<bool>(),
        ) {
            let mk = |(h, x): (u64, u8)| { let mut hash = [0u8; 32]; hash[0] = x; EntryKey::new(h, hash) };
            let keys: Vec<EntryKey> = keys.into_iter().map(|(h, x)| mk((h, x[0]))).collect();
            let store: MemoryStore = keys.iter().copied().collect();
            let (lo, hi) = if mk(a) <= mk(b) { (mk(a), mk(b)) } else { (mk(b), mk(a)) };
            let range = Range::new(lo, if open_end { None } else { Some(hi) });
            let inside: Vec<EntryKey> = keys.iter().copied().filter(|k| range.contains(k)).collect();
            prop_assert_eq!(store.count(&range).unwrap(), inside.len() as u64);
            prop_assert_eq!(store.aggregate(&range).unwrap(), Aggregate::of_keys(&inside));
            prop_assert_eq!(store.keys(&range, usize::MAX).unwrap(), inside.clone());
            prop_assert_eq!(store.keys(&range, 3).unwrap(), inside.iter().copied().take(3).collect::<Vec<_>>());
            for rank in [0u64, 1, 7, inside.len() as u64, u64::MAX] {
                prop_assert_eq!(store.key_at(&range, rank).unwrap(), usize::try_from(rank).ok().and_then(|r| inside.get(r).copied()));
            }
        }
    }

    #[test]
    fn index_follows_mutations() {
        let mut s = MemoryStore::new();
        let k = |i: u64| EntryKey::new(i, [i.to_le_bytes()[0]; 32]);
        for i in 0..100 {
            s.insert(k(i));
        }
        assert_eq!(s.count(&Range::FULL).unwrap(), 100);
        assert!(s.remove(&k(50)));
        assert!(!s.insert(k(49)));
        assert_eq!(s.count(&Range::FULL).unwrap(), 99);
        let all: Vec<EntryKey> = s.iter().copied().collect();
        assert_eq!(s.aggregate(&Range::FULL).unwrap(), Aggregate::of_keys(&all));
    }
}
