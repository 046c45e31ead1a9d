//! The in-memory augmented B+tree that answers the reconciler's range queries.
//!
//! Leaves hold sorted [`EntryKey`]s (at most [`LEAF_MAX`]); every node caches the number of
//! keys below it and their fingerprint [`Aggregate`]. A range's count is a difference of two
//! ranks and its aggregate a difference of two prefix aggregates, each found on one
//! root-to-leaf descent: `O(log n)` node visits, at most [`INNER_MAX`] aggregate additions per
//! level and at most `LEAF_MAX / 2` keys hashed at each end.
//!
//! The set only grows (the store never removes an applied entry), so the tree only supports
//! insertion; nodes live in one arena vector and are addressed by index.

use std::thread;

use oplog_protocol::{Aggregate, EntryKey, Range};

/// Most keys in a leaf before it splits in two.
pub(crate) const LEAF_MAX: usize = 32;
/// Most children of an inner node before it splits in two.
pub(crate) const INNER_MAX: usize = 32;
/// Keys per leaf when the tree is built from a sorted scan (room left for later inserts).
const LEAF_FILL: usize = 24;
/// Children per inner node when the tree is built from a sorted scan.
const INNER_FILL: usize = 24;
/// Ranges with at most this many keys are aggregated by hashing their keys directly.
const DIRECT_MAX: u64 = 16;

#[derive(Debug, Clone)]
enum Node {
    Leaf {
        keys: Vec<EntryKey>,
        agg: Aggregate,
    },
    Inner {
        children: Vec<usize>,
        /// `firsts[i]` is the smallest key below `children[i]`.
        firsts: Vec<EntryKey>,
        count: u64,
        agg: Aggregate,
    },
}

enum Inserted {
    Present,
    Added,
    /// The node split; the new right sibling is this arena index.
    Split(usize),
}

/// An ordered, insert-only set of keys with `O(log n)` rank, select and range aggregates.
#[derive(Debug, Clone)]
pub(crate) struct KeyIndex {
    nodes: Vec<Node>,
    root: usize,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            nodes: vec![Node::Leaf {
                keys: Vec::new(),
                agg: Aggregate::EMPTY,
            }],
            root: 0,
        }
    }
}

impl KeyIndex {
    /// Builds the tree from keys in strictly ascending order, hashing them on all cores.
    pub(crate) fn from_sorted(keys: Vec<EntryKey>) -> Self {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        if keys.is_empty() {
            return KeyIndex::default();
        }
        let chunks: Vec<&[EntryKey]> = keys.chunks(LEAF_FILL).collect();
        let threads = thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let per_thread = chunks.len().div_ceil(threads).max(1);
        let aggs: Vec<Aggregate> = if chunks.len() < 64 || threads == 1 {
            chunks
                .iter()
                .map(|c| Aggregate::of_keys(c.iter()))
                .collect()
        } else {
            thread::scope(|s| {
                let handles: Vec<_> = chunks
                    .chunks(per_thread)
                    .map(|part| {
                        s.spawn(move || {
                            part.iter()
                                .map(|c| Aggregate::of_keys(c.iter()))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("hashing thread does not panic"))
                    .collect()
            })
        };
        let mut nodes = Vec::with_capacity(chunks.len() + chunks.len() / INNER_FILL + 8);
        let mut level: Vec<usize> = Vec::with_capacity(chunks.len());
        for (chunk, agg) in chunks.into_iter().zip(aggs) {
            let mut leaf_keys = Vec::with_capacity(LEAF_MAX + 1);
            leaf_keys.extend_from_slice(chunk);
            level.push(nodes.len());
            nodes.push(Node::Leaf {
                keys: leaf_keys,
                agg,
            });
        }
        let mut index = KeyIndex { nodes, root: 0 };
        while level.len() > 1 {
            let mut next = Vec::with_capacity(level.len() / INNER_FILL + 1);
            for group in level.chunks(INNER_FILL) {
                let id = index.new_inner(group.to_vec());
                next.push(id);
            }
            level = next;
        }
        index.root = level[0];
        index
    }

    fn new_inner(&mut self, children: Vec<usize>) -> usize {
        let mut agg = Aggregate::EMPTY;
        let mut count = 0;
        let mut firsts = Vec::with_capacity(children.len());
        for &c in &children {
            agg.add(self.agg(c));
            count += self.count_of(c);
            firsts.push(self.first(c));
        }
        self.nodes.push(Node::Inner {
            children,
            firsts,
            count,
            agg,
        });
        self.nodes.len() - 1
    }

    fn count_of(&self, id: usize) -> u64 {
        match &self.nodes[id] {
            Node::Leaf { keys, .. } => keys.len() as u64,
            Node::Inner { count, .. } => *count,
        }
    }

    fn agg(&self, id: usize) -> &Aggregate {
        match &self.nodes[id] {
            Node::Leaf { agg, .. } | Node::Inner { agg, .. } => agg,
        }
    }

    fn first(&self, id: usize) -> EntryKey {
        match &self.nodes[id] {
            Node::Leaf { keys, .. } => keys.first().copied().unwrap_or(EntryKey::MIN),
            Node::Inner { firsts, .. } => firsts.first().copied().unwrap_or(EntryKey::MIN),
        }
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> u64 {
        self.count_of(self.root)
    }

    /// The aggregate of every key.
    pub(crate) fn total(&self) -> &Aggregate {
        self.agg(self.root)
    }

    /// Adds a key; returns whether it was new.
    pub(crate) fn insert(&mut self, key: EntryKey) -> bool {
        let term = Aggregate::of_key(&key);
        match self.insert_at(self.root, key, &term) {
            Inserted::Present => false,
            Inserted::Added => true,
            Inserted::Split(right) => {
                let old = self.root;
                self.root = self.new_inner(vec![old, right]);
                true
            }
        }
    }

    fn insert_at(&mut self, id: usize, key: EntryKey, term: &Aggregate) -> Inserted {
        let (slot, child) = match &mut self.nodes[id] {
            Node::Leaf { keys, agg } => {
                let Err(pos) = keys.binary_search(&key) else {
                    return Inserted::Present;
                };
                keys.insert(pos, key);
                agg.add(term);
                if keys.len() <= LEAF_MAX {
                    return Inserted::Added;
                }
                let right = keys.split_off(keys.len() / 2);
                let right_agg = Aggregate::of_keys(right.iter());
                agg.sub(&right_agg);
                let mut right_keys = Vec::with_capacity(LEAF_MAX + 1);
                right_keys.extend_from_slice(&right);
                self.nodes.push(Node::Leaf {
                    keys: right_keys,
                    agg: right_agg,
                });
                return Inserted::Split(self.nodes.len() - 1);
            }
            Node::Inner {
                children, firsts, ..
            } => {
                let slot = firsts.partition_point(|f| *f <= key).saturating_sub(1);
                (slot, children[slot])
            }
        };
        let result = self.insert_at(child, key, term);
        let split_first = match result {
            Inserted::Present => return Inserted::Present,
            Inserted::Split(right) => Some((right, self.first(right))),
            Inserted::Added => None,
        };
        let Node::Inner {
            children,
            firsts,
            count,
            agg,
        } = &mut self.nodes[id]
        else {
            unreachable!("descended from an inner node");
        };
        *count += 1;
        agg.add(term);
        if key < firsts[slot] {
            firsts[slot] = key;
        }
        let Some((right, right_first)) = split_first else {
            return Inserted::Added;
        };
        children.insert(slot + 1, right);
        firsts.insert(slot + 1, right_first);
        if children.len() <= INNER_MAX {
            return Inserted::Added;
        }
        let mid = children.len() / 2;
        let right_children = children.split_off(mid);
        firsts.truncate(mid);
        let new_id = self.new_inner(right_children);
        let (moved_count, moved_agg) = (self.count_of(new_id), self.agg(new_id).clone());
        if let Node::Inner { count, agg, .. } = &mut self.nodes[id] {
            *count -= moved_count;
            agg.sub(&moved_agg);
        }
        Inserted::Split(new_id)
    }

    /// Number of keys strictly below `key`.
    pub(crate) fn rank(&self, key: &EntryKey) -> u64 {
        let mut id = self.root;
        let mut below = 0;
        loop {
            match &self.nodes[id] {
                Node::Leaf { keys, .. } => {
                    return below + keys.partition_point(|k| k < key) as u64;
                }
                Node::Inner {
                    children, firsts, ..
                } => {
                    let slot = firsts.partition_point(|f| f <= key).saturating_sub(1);
                    below += children[..slot]
                        .iter()
                        .map(|&c| self.count_of(c))
                        .sum::<u64>();
                    id = children[slot];
                }
            }
        }
    }

    /// The aggregate of the keys strictly below `key`.
    fn prefix(&self, key: &EntryKey) -> Aggregate {
        let mut id = self.root;
        let mut acc = Aggregate::EMPTY;
        loop {
            match &self.nodes[id] {
                Node::Leaf { keys, agg } => {
                    let pos = keys.partition_point(|k| k < key);
                    if pos <= keys.len() / 2 {
                        acc.add(&Aggregate::of_keys(keys[..pos].iter()));
                    } else {
                        acc.add(agg);
                        acc.sub(&Aggregate::of_keys(keys[pos..].iter()));
                    }
                    return acc;
                }
                Node::Inner {
                    children, firsts, ..
                } => {
                    let slot = firsts.partition_point(|f| f <= key).saturating_sub(1);
                    for &c in &children[..slot] {
                        acc.add(self.agg(c));
                    }
                    id = children[slot];
                }
            }
        }
    }

    /// Positions `[lo, hi)` of the keys in `range`.
    pub(crate) fn span(&self, range: &Range) -> (u64, u64) {
        let lo = self.rank(&range.start);
        let hi = match &range.end {
            Some(end) => self.rank(end),
            None => self.len(),
        };
        (lo, hi.max(lo))
    }

    /// The key of 0-based position `pos`, if there is one.
    pub(crate) fn select(&self, mut pos: u64) -> Option<EntryKey> {
        let mut id = self.root;
        loop {
            match &self.nodes[id] {
                Node::Leaf { keys, .. } => {
                    return usize::try_from(pos).ok().and_then(|p| keys.get(p).copied());
                }
                Node::Inner { children, .. } => {
                    let mut next = None;
                    for &c in children {
                        let n = self.count_of(c);
                        if pos < n {
                            next = Some(c);
                            break;
                        }
                        pos -= n;
                    }
                    id = next?;
                }
            }
        }
    }

    /// Up to `limit` keys from position `pos` on, in order.
    pub(crate) fn keys_from(&self, pos: u64, limit: usize) -> Vec<EntryKey> {
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit > 0 {
            self.collect(self.root, pos, limit, &mut out);
        }
        out
    }

    fn collect(&self, id: usize, mut skip: u64, limit: usize, out: &mut Vec<EntryKey>) {
        match &self.nodes[id] {
            Node::Leaf { keys, .. } => {
                let start = usize::try_from(skip).unwrap_or(usize::MAX).min(keys.len());
                let take = (limit - out.len()).min(keys.len() - start);
                out.extend_from_slice(&keys[start..start + take]);
            }
            Node::Inner { children, .. } => {
                for &c in children {
                    let n = self.count_of(c);
                    if skip >= n {
                        skip -= n;
                        continue;
                    }
                    self.collect(c, skip, limit, out);
                    skip = 0;
                    if out.len() >= limit {
                        return;
                    }
                }
            }
        }
    }

    /// The aggregate of the keys in `range`.
    pub(crate) fn aggregate(&self, range: &Range) -> Aggregate {
        let (lo, hi) = self.span(range);
        if hi - lo <= DIRECT_MAX {
            return Aggregate::of_keys(self.keys_from(lo, (hi - lo) as usize).iter());
        }
        let mut agg = match &range.end {
            Some(end) => self.prefix(end),
            None => self.total().clone(),
        };
        agg.sub(&self.prefix(&range.start));
        agg
    }

    /// Every key in order (for verification).
    pub(crate) fn all_keys(&self) -> Vec<EntryKey> {
        self.keys_from(0, usize::try_from(self.len()).unwrap_or(usize::MAX))
    }

    /// Approximate heap bytes held by the tree.
    pub(crate) fn heap_bytes(&self) -> usize {
        let node = std::mem::size_of::<Node>();
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Leaf { keys, .. } => node + keys.capacity() * std::mem::size_of::<EntryKey>(),
                Node::Inner {
                    children, firsts, ..
                } => {
                    node + children.capacity() * std::mem::size_of::<usize>()
                        + firsts.capacity() * std::mem::size_of::<EntryKey>()
                }
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oplog_protocol::{MemoryStore, RangeStore};
    use proptest::prelude::*;

    fn mk(h: u64, x: u8) -> EntryKey {
        let mut hash = [0u8; 32];
        hash[0] = x;
        hash[1] = (h % 251) as u8;
        EntryKey::new(h, hash)
    }

    fn check_against(index: &KeyIndex, reference: &MemoryStore, range: &Range) {
        assert_eq!(
            index.span(range).1 - index.span(range).0,
            reference.count(range).unwrap()
        );
        assert_eq!(index.aggregate(range), reference.aggregate(range).unwrap());
        let (lo, _) = index.span(range);
        for rank in [0u64, 1, 5, 17, 40] {
            let expect = reference.key_at(range, rank).unwrap();
            let got = index.select(lo + rank).filter(|k| range.contains(k));
            assert_eq!(got, expect);
        }
        assert_eq!(
            index
                .keys_from(lo, 50)
                .into_iter()
                .filter(|k| range.contains(k))
                .collect::<Vec<_>>(),
            reference.keys(range, 50).unwrap()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn matches_memory_store(
            keys in proptest::collection::vec((0u64..3000, any::<u8>()), 0..2500),
            bulk in 0usize..2500,
            ranges in proptest::collection::vec(((0u64..3100, any::<u8>()), (0u64..3100, any::<u8>()), any::<bool>()), 8),
        ) {
            let keys: Vec<EntryKey> = keys.into_iter().map(|(h, x)| mk(h, x)).collect();
            let split = bulk.min(keys.len());
            let mut first: Vec<EntryKey> = keys[..split].to_vec();
            first.sort();
            first.dedup();
            let mut index = KeyIndex::from_sorted(first);
            let mut reference: MemoryStore = keys[..split].iter().copied().collect();
            for k in &keys[split..] {
                prop_assert_eq!(index.insert(*k), reference.insert(*k));
            }
            prop_assert_eq!(index.len(), reference.len() as u64);
            prop_assert_eq!(index.all_keys(), reference.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(index.total(), &reference.aggregate(&Range::FULL).unwrap());
            for (a, b, open) in ranges {
                let (a, b) = (mk(a.0, a.1), mk(b.0, b.1));
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                check_against(&index, &reference, &Range::new(lo, if open { None } else { Some(hi) }));
                // reversed (empty) ranges count nothing
                if lo != hi {
                    let r = Range::new(hi, Some(lo));
                    prop_assert_eq!(index.span(&r).1 - index.span(&r).0, 0);
                    prop_assert_eq!(index.aggregate(&r), Aggregate::EMPTY);
                }
            }
        }
    }

    #[test]
    fn ascending_and_descending_inserts_stay_shallow() {
        for descending in [false, true] {
            let mut index = KeyIndex::default();
            let n = 20_000u64;
            for i in 0..n {
                let h = if descending { n - i } else { i + 1 };
                assert!(index.insert(EntryKey::new(h, [0; 32])));
            }
            assert_eq!(index.len(), n);
            let mut depth = 0;
            let mut id = index.root;
            while let Node::Inner { children, .. } = &index.nodes[id] {
                depth += 1;
                id = children[0];
            }
            // 20 000 keys in half-full leaves of 16 and inner nodes of 16: depth <= 3
            assert!(depth <= 3, "depth {depth}");
            assert_eq!(index.select(0), Some(EntryKey::new(1, [0; 32])));
            assert_eq!(index.select(n - 1), Some(EntryKey::new(n, [0; 32])));
            assert_eq!(index.select(n), None);
        }
    }
}
