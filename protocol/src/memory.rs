//! [`MemoryStore`]: an in-memory [`RangeStore`] for tests, tools and small replicas.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use crate::fingerprint::Aggregate;
use crate::key::{EntryKey, Range};
use crate::store::{RangeStore, StoreError};

/// Keys per block of the prefix-sum index.
const BLOCK: usize = 16;

/// An in-memory ordered key set with `O(log n)` range queries.
///
/// Keys live in a `BTreeSet`. The first query after a change builds an index: the keys as a
/// sorted vector and the fingerprint aggregate of every prefix that ends on a multiple of 16
/// keys (about 33 bytes per key). Because aggregates form a group, a range's aggregate is the
/// difference of two prefixes plus at most 30 keys hashed at the block edges.
///
/// ```
/// use oplog_protocol::{MemoryStore, RangeStore, EntryKey, Range};
///
/// let store: MemoryStore = (1..=100u64).map(|i| EntryKey::new(i, [0; 32])).collect();
/// let r = Range::new(EntryKey::new(10, [0; 32]), Some(EntryKey::new(20, [0; 32])));
/// assert_eq!(store.count(&r).unwrap(), 10);
/// assert_eq!(store.key_at(&r, 3).unwrap(), Some(EntryKey::new(13, [0; 32])));
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    keys: BTreeSet<EntryKey>,
    index: OnceLock<Index>,
}

#[derive(Debug)]
struct Index {
    sorted: Vec<EntryKey>,
    /// `prefix[b]` = aggregate of `sorted[..b * BLOCK]`.
    prefix: Vec<Aggregate>,
}

impl Index {
    fn build(keys: &BTreeSet<EntryKey>) -> Self {
        let sorted: Vec<EntryKey> = keys.iter().copied().collect();
        let mut prefix = Vec::with_capacity(sorted.len() / BLOCK + 1);
        let mut acc = Aggregate::EMPTY;
        prefix.push(acc.clone());
        for block in sorted.chunks(BLOCK) {
            if block.len() < BLOCK {
                break;
            }
            for k in block {
                acc.add(&Aggregate::of_key(k));
            }
            prefix.push(acc.clone());
        }
        Index { sorted, prefix }
    }

    /// Aggregate of `sorted[..pos]`.
    fn prefix_at(&self, pos: usize) -> Aggregate {
        let block = (pos / BLOCK).min(self.prefix.len() - 1);
        let mut agg = self.prefix[block].clone();
        for k in &self.sorted[block * BLOCK..pos] {
            agg.add(&Aggregate::of_key(k));
        }
        agg
    }

    /// Positions `[lo, hi)` of the keys in `range`.
    fn span(&self, range: &Range) -> (usize, usize) {
        let lo = self.sorted.partition_point(|k| *k < range.start);
        let hi = match range.end {
            Some(end) => self.sorted.partition_point(|k| *k < end),
            None => self.sorted.len(),
        };
        (lo, hi.max(lo))
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; returns whether it was new.
    pub fn insert(&mut self, key: EntryKey) -> bool {
        let added = self.keys.insert(key);
        if added {
            self.index = OnceLock::new();
        }
        added
    }

    /// Removes a key; returns whether it was present.
    pub fn remove(&mut self, key: &EntryKey) -> bool {
        let removed = self.keys.remove(key);
        if removed {
            self.index = OnceLock::new();
        }
        removed
    }

    /// Whether the key is present.
    pub fn contains(&self, key: &EntryKey) -> bool {
        self.keys.contains(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// All keys in order.
    pub fn iter(&self) -> impl Iterator<Item = &EntryKey> {
        self.keys.iter()
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index::build(&self.keys))
    }
}

impl FromIterator<EntryKey> for MemoryStore {
    fn from_iter<T: IntoIterator<Item = EntryKey>>(iter: T) -> Self {
        MemoryStore {
            keys: iter.into_iter().collect(),
            index: OnceLock::new(),
        }
    }
}

impl Extend<EntryKey> for MemoryStore {
    fn extend<T: IntoIterator<Item = EntryKey>>(&mut self, iter: T) {
        self.keys.extend(iter);
        self.index = OnceLock::new();
    }
}

impl RangeStore for MemoryStore {
    fn count(&self, range: &Range) -> Result<u64, StoreError> {
        let (lo, hi) = self.index().span(range);
        Ok((hi - lo) as u64)
    }

    fn aggregate(&self, range: &Range) -> Result<Aggregate, StoreError> {
        let index = self.index();
        let (lo, hi) = index.span(range);
        if hi - lo <= 2 * BLOCK {
            return Ok(Aggregate::of_keys(&index.sorted[lo..hi]));
        }
        let mut agg = index.prefix_at(hi);
        agg.sub(&index.prefix_at(lo));
        Ok(agg)
    }

    fn key_at(&self, range: &Range, rank: u64) -> Result<Option<EntryKey>, StoreError> {
        let index = self.index();
        let (lo, hi) = index.span(range);
        let Ok(rank) = usize::try_from(rank) else {
            return Ok(None);
        };
        Ok(lo
            .checked_add(rank)
            .filter(|p| *p < hi)
            .map(|p| index.sorted[p]))
    }

    fn keys(&self, range: &Range, limit: usize) -> Result<Vec<EntryKey>, StoreError> {
        let index = self.index();
        let (lo, hi) = index.span(range);
        Ok(index.sorted[lo..hi.min(lo.saturating_add(limit))].to_vec())
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
        let k = |i: u64| EntryKey::new(i, [i as u8; 32]);
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
