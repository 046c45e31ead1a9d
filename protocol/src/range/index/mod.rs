//! [`RangeIndex`]: the augmented B+tree every store of this workspace answers range queries
//! from, with `O(1)` immutable snapshots.
//!
//! Leaves hold sorted [`EntryKey`]s (at most 32, in the node itself); every node caches the
//! number of keys below it, their 4096-bit fingerprint [`Aggregate`] and, with the `negentropy`
//! feature, their Negentropy id sum; inner nodes also keep their children's counts (their
//! separators, counts and child pointers in the node itself, like a leaf's keys), and
//! leaves the aggregate of their first 12 keys (a checkpoint). Both sums form groups, so a
//! range is measured in one descent: down the path both bounds share, then the children
//! strictly between them, then one path per bound, taking at every node whichever side of
//! the cut needs fewer additions (the node's total less the other side when that is
//! shorter). Inside a leaf the part below a bound is expanded from the nearest of its start,
//! its checkpoint and its end: at most 6 keys of a bulk-built leaf of 24. A small per-index
//! memo keeps recent leaf edges, the last range's positions and the last leaf a select
//! ended in, because reconciliation measures adjacent ranges and asks for adjacent ranks
//! (see `memo.rs`). Count, rank and `key_at` are descents on counts.
//!
//! Memory (`heap_bytes`, 10^6 keys): about 106 bytes per key built from sorted keys or grown
//! by appending in key order (a node that overflows at its end keeps the bulk fill), 115 grown
//! in random order; plus at most 40 memo aggregates (21 KB) per index or snapshot in use.
//!
//! Nodes are shared through `Arc`: [`RangeIndex::snapshot`] copies one pointer, and a later
//! insert copies only the nodes on its path that a snapshot still shares
//! (copy-on-write), so a snapshot never changes and costs nothing until the index diverges.

mod memo;
mod node;

use std::sync::{Arc, Mutex};

use crate::fingerprint::Aggregate;
use crate::key::{EntryKey, Range};
#[cfg(feature = "negentropy")]
use crate::negentropy::{self, Accumulator};
use crate::range::{RangeStore, StoreError};

use memo::EdgeMemo;
use node::{Node, Summary, INNER_FILL, LEAF_FILL};

/// Why [`RangeIndex::from_sorted`] refused its input: the keys are not strictly ascending,
/// which in a store means the scanned table is damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexBuildError {
    /// Key `position` (0-based) is smaller than the key before it.
    #[error("key {position} ({key:?}) is below the key before it: the keys are not sorted")]
    Unsorted {
        /// Position of the offending key.
        position: u64,
        /// The offending key.
        key: EntryKey,
    },
    /// Key `position` (0-based) equals the key before it.
    #[error("key {position} ({key:?}) repeats the key before it: keys must be distinct")]
    Duplicate {
        /// Position of the repeated key.
        position: u64,
        /// The repeated key.
        key: EntryKey,
    },
}

/// An ordered set of [`EntryKey`]s with `O(log n)` count, rank, `key_at`, fingerprint
/// aggregate and Negentropy fingerprint of any range, `O(log n + limit)` key listing,
/// `O(log n)` insertion and `O(1)` snapshots.
///
/// Cloning is the same as [`snapshot`](RangeIndex::snapshot): the copies share nodes and
/// diverge by copy-on-write.
///
/// ```
/// use oplog_protocol::{EntryKey, Range, RangeIndex, RangeStore};
///
/// let mut index = RangeIndex::from_sorted((1..=100u64).map(|i| EntryKey::new(i, [0; 32])).collect())?;
/// let snapshot = index.snapshot();
/// index.insert(EntryKey::new(1000, [0; 32]));
/// assert_eq!(index.count(&Range::FULL)?, 101);
/// assert_eq!(snapshot.count(&Range::FULL)?, 100); // unchanged by the later insert
/// let r = Range::new(EntryKey::new(10, [0; 32]), Some(EntryKey::new(20, [0; 32])));
/// assert_eq!(snapshot.key_at(&r, 3)?, Some(EntryKey::new(13, [0; 32])));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RangeIndex {
    root: Arc<Node>,
    /// Leaf edges of recent aggregate queries; cleared by every change (see `memo.rs`).
    /// Boxed, so that an index stays two pointers wide inside the futures that hold one.
    memo: Box<Mutex<EdgeMemo>>,
}

impl Default for RangeIndex {
    fn default() -> Self {
        RangeIndex::with_root(Arc::new(Node::EMPTY_LEAF))
    }
}

impl Clone for RangeIndex {
    /// A snapshot: shares every node and starts with an empty memo of its own.
    fn clone(&self) -> Self {
        RangeIndex::with_root(self.root.clone())
    }
}

impl RangeIndex {
    fn with_root(root: Arc<Node>) -> Self {
        RangeIndex {
            root,
            memo: Box::default(),
        }
    }

    /// The memo, emptied, before a change to the tree.
    fn forget_edges(&mut self) {
        match self.memo.get_mut() {
            Ok(memo) => memo.clear(),
            // A thread panicked while holding the memo: start a new one.
            Err(_) => *self.memo = Mutex::default(),
        }
    }

    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the index from strictly ascending keys in `O(n)`, hashing on this thread.
    ///
    /// Fails, without panicking, if a key is not greater than the one before it.
    pub fn from_sorted(keys: Vec<EntryKey>) -> Result<Self, IndexBuildError> {
        Self::from_sorted_parallel(keys, 1)
    }

    /// Like [`from_sorted`](RangeIndex::from_sorted), but hashes the keys on up to `threads`
    /// scoped threads (the hashing is nearly all of the work; `0` counts as `1`).
    // takes the Vec as `from_sorted` does; a slice would change a signature callers use
    #[allow(clippy::needless_pass_by_value)]
    pub fn from_sorted_parallel(
        keys: Vec<EntryKey>,
        threads: usize,
    ) -> Result<Self, IndexBuildError> {
        check_sorted(&keys)?;
        if keys.is_empty() {
            return Ok(RangeIndex::default());
        }
        let chunks: Vec<&[EntryKey]> = keys.chunks(LEAF_FILL).collect();
        let threads = threads.max(1);
        let sums: Vec<(Summary, Aggregate)> = if threads == 1 || chunks.len() < 64 {
            chunks.iter().map(|c| node::leaf_sums(c)).collect()
        } else {
            let per_thread = chunks.len().div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = chunks
                    .chunks(per_thread)
                    .map(|part| {
                        (
                            part,
                            s.spawn(move || {
                                part.iter().map(|c| node::leaf_sums(c)).collect::<Vec<_>>()
                            }),
                        )
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|(part, h)| {
                        // A hashing thread cannot panic; should it, hash its part here.
                        h.join()
                            .unwrap_or_else(|_| part.iter().map(|c| node::leaf_sums(c)).collect())
                    })
                    .collect()
            })
        };
        let mut level: Vec<Arc<Node>> = chunks
            .into_iter()
            .zip(sums)
            .map(|(chunk, sum)| Arc::new(Node::leaf(node::LeafKeys::from_slice(chunk), sum)))
            .collect();
        while level.len() > 1 {
            level = level
                .chunks(INNER_FILL)
                .map(|group| Arc::new(Node::inner(group)))
                .collect();
        }
        let root = level.pop().unwrap_or_else(|| Arc::new(Node::EMPTY_LEAF));
        Ok(RangeIndex::with_root(root))
    }

    /// An immutable copy of the index as it is now, in `O(1)`: later inserts into `self` (or
    /// into the copy) do not show in the other.
    #[must_use]
    pub fn snapshot(&self) -> RangeIndex {
        self.clone()
    }

    /// Adds a key in `O(log n)`; returns whether it was new.
    pub fn insert(&mut self, key: EntryKey) -> bool {
        if self.root.contains(&key) {
            return false;
        }
        self.forget_edges();
        let term = Summary::of_key(&key);
        if let Some(right) = node::insert(&mut self.root, key, &term) {
            let left = self.root.clone();
            self.root = Arc::new(Node::inner(&[left, right]));
        }
        true
    }

    /// Removes a key in `O(log n)`; returns whether it was present. Nodes that become small are
    /// not merged, so the tree keeps the depth of the largest size it reached.
    pub fn remove(&mut self, key: &EntryKey) -> bool {
        if !self.root.contains(key) {
            return false;
        }
        self.forget_edges();
        let term = Summary::of_key(key);
        if node::remove(&mut self.root, key, &term) {
            self.root = Arc::new(Node::EMPTY_LEAF);
        }
        loop {
            let only = match &*self.root {
                Node::Inner { children, .. } if children.len() == 1 => children[0].clone(),
                _ => break,
            };
            self.root = only;
        }
        true
    }

    /// Whether the key is present.
    pub fn contains(&self, key: &EntryKey) -> bool {
        self.root.contains(key)
    }

    /// Number of keys.
    pub fn len(&self) -> u64 {
        self.root.count()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fingerprint aggregate of every key.
    pub fn total(&self) -> &Aggregate {
        &self.root.sum().agg
    }

    /// Number of keys strictly below `key`.
    pub fn rank(&self, key: &EntryKey) -> u64 {
        self.root.rank(key)
    }

    /// The key of 0-based position `pos` in the whole set.
    pub fn select(&self, pos: u64) -> Option<EntryKey> {
        let (leaf, base) = node::leaf_at(&self.root, pos)?;
        let Node::Leaf { keys, .. } = &**leaf else {
            return None;
        };
        usize::try_from(pos - base)
            .ok()
            .and_then(|i| keys.get(i).copied())
    }

    /// Positions `[lo, hi)` of the keys in `range` (`lo == hi` for an empty range).
    pub fn span(&self, range: &Range) -> (u64, u64) {
        let lo = self.rank(&range.start);
        let hi = match &range.end {
            Some(end) => self.rank(end),
            None => self.len(),
        };
        (lo, hi.max(lo))
    }

    /// [`span`](RangeIndex::span), remembered for the last range asked about (see `memo.rs`).
    fn memo_span(&self, range: &Range) -> (u64, u64) {
        match self.memo.try_lock() {
            Ok(mut memo) => memo.span(range, || self.span(range)),
            Err(_) => self.span(range),
        }
    }

    /// [`select`](RangeIndex::select), from the leaf of the last select if `pos` lies in it.
    fn memo_select(&self, pos: u64) -> Option<EntryKey> {
        let Ok(mut memo) = self.memo.try_lock() else {
            return self.select(pos);
        };
        if let Some(k) = memo.key_in_leaf(pos) {
            return Some(k);
        }
        let (leaf, base) = node::leaf_at(&self.root, pos)?;
        memo.leaf = Some((leaf.clone(), base));
        memo.key_in_leaf(pos)
    }

    /// Up to `limit` keys from position `pos` on, in order.
    pub fn keys_from(&self, pos: u64, limit: usize) -> Vec<EntryKey> {
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit > 0 {
            self.root.collect(pos, limit, &mut out);
        }
        out
    }

    /// Every key in order.
    pub fn all_keys(&self) -> Vec<EntryKey> {
        self.keys_from(0, usize::try_from(self.len()).unwrap_or(usize::MAX))
    }

    /// All keys in order, without copying them out.
    pub fn iter(&self) -> IndexIter<'_> {
        IndexIter {
            stack: vec![(&*self.root, 0)],
            leaf: [].iter(),
        }
    }

    /// The measure of the keys in `range`, with leaf edges measured by `edge`.
    fn measure<M: node::Measure>(
        &self,
        range: &Range,
        edge: &mut dyn FnMut(&node::LeafRef<'_, M>, usize) -> M,
    ) -> M {
        self.root.range(&range.start, range.end.as_ref(), edge)
    }

    /// The fingerprint aggregate of the keys in `range`.
    ///
    /// Leaf edges (the part of a leaf below a bound) are remembered in a small per-index memo,
    /// since reconciliation measures adjacent ranges that share their bounds; the memo is
    /// skipped, never waited for, if another thread is using it.
    pub fn range_aggregate(&self, range: &Range) -> Aggregate {
        match self.memo.try_lock() {
            Ok(mut memo) => self.measure(range, &mut |leaf, pos| memo.below(leaf, pos)),
            Err(_) => self.measure(range, &mut node::leaf_below),
        }
    }

    /// The Negentropy accumulator (id sum and count) of the keys in `range`.
    #[cfg(feature = "negentropy")]
    pub fn range_accumulator(&self, range: &Range) -> Accumulator {
        self.measure(range, &mut node::leaf_below)
    }

    /// Approximate heap bytes held by the tree (nodes shared with snapshots counted in full).
    pub fn heap_bytes(&self) -> usize {
        self.root.heap_bytes()
    }

    /// Levels of inner nodes above the leaves (0 for a single leaf).
    pub fn depth(&self) -> usize {
        self.root.depth()
    }
}

fn check_sorted(keys: &[EntryKey]) -> Result<(), IndexBuildError> {
    for (i, w) in keys.windows(2).enumerate() {
        let position = i as u64 + 1;
        if w[1] == w[0] {
            return Err(IndexBuildError::Duplicate {
                position,
                key: w[1],
            });
        }
        if w[1] < w[0] {
            return Err(IndexBuildError::Unsorted {
                position,
                key: w[1],
            });
        }
    }
    Ok(())
}

impl FromIterator<EntryKey> for RangeIndex {
    /// Collects keys in any order, duplicates allowed: sorted and deduplicated, then built in
    /// `O(n log n)`.
    fn from_iter<T: IntoIterator<Item = EntryKey>>(iter: T) -> Self {
        let mut keys: Vec<EntryKey> = iter.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        // Sorted and deduplicated just above, so the build cannot refuse them.
        Self::from_sorted(keys).unwrap_or_default()
    }
}

impl Extend<EntryKey> for RangeIndex {
    fn extend<T: IntoIterator<Item = EntryKey>>(&mut self, iter: T) {
        for k in iter {
            self.insert(k);
        }
    }
}

/// Iterator over the keys of a [`RangeIndex`] in order; see [`RangeIndex::iter`].
#[derive(Debug)]
pub struct IndexIter<'a> {
    /// Inner nodes still being walked, with the next child to visit.
    stack: Vec<(&'a Node, usize)>,
    leaf: std::slice::Iter<'a, EntryKey>,
}

impl<'a> IntoIterator for &'a RangeIndex {
    type Item = &'a EntryKey;
    type IntoIter = IndexIter<'a>;

    fn into_iter(self) -> IndexIter<'a> {
        self.iter()
    }
}

impl<'a> Iterator for IndexIter<'a> {
    type Item = &'a EntryKey;

    fn next(&mut self) -> Option<&'a EntryKey> {
        loop {
            if let Some(k) = self.leaf.next() {
                return Some(k);
            }
            let (node, next) = self.stack.pop()?;
            match node {
                Node::Leaf { keys, .. } => self.leaf = keys.iter(),
                Node::Inner { children, .. } => {
                    if let Some(child) = children.get(next) {
                        self.stack.push((node, next + 1));
                        self.stack.push((child, 0));
                    }
                }
            }
        }
    }
}

/// Every query is answered from the tree alone in `O(log n)` (`keys`: `O(log n + limit)`),
/// including the Negentropy fingerprint (feature `negentropy`), which never scans.
impl RangeStore for RangeIndex {
    fn count(&self, range: &Range) -> Result<u64, StoreError> {
        let (lo, hi) = self.memo_span(range);
        Ok(hi - lo)
    }

    fn aggregate(&self, range: &Range) -> Result<Aggregate, StoreError> {
        Ok(self.range_aggregate(range))
    }

    fn key_at(&self, range: &Range, rank: u64) -> Result<Option<EntryKey>, StoreError> {
        let (lo, hi) = self.memo_span(range);
        Ok(lo
            .checked_add(rank)
            .filter(|p| *p < hi)
            .and_then(|p| self.memo_select(p)))
    }

    fn keys(&self, range: &Range, limit: usize) -> Result<Vec<EntryKey>, StoreError> {
        let (lo, hi) = self.memo_span(range);
        let n = usize::try_from(hi - lo).unwrap_or(usize::MAX).min(limit);
        Ok(self.keys_from(lo, n))
    }

    #[cfg(feature = "negentropy")]
    fn negentropy_fingerprint(&self, range: &Range) -> Result<negentropy::Fingerprint, StoreError> {
        Ok(self.range_accumulator(range).fingerprint())
    }
}

#[cfg(test)]
mod tests;
